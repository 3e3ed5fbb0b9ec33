"""``pianomtl demo``: the main job end to end, on a recording with known ground truth.

It renders a short piano piece with a timbre the bundled model never heard in
training (MuseScore's grand piano) — a passage of a held-out MAESTRO performance
when the corpus material is installed, otherwise a generated piece — then
transcribes it with the bundled model, writes the MIDI and a plot, and scores the
transcription against the ground truth with mir_eval (pedal-extended offsets).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from pianomtl.constants import SAMPLE_RATE
from pianomtl.core.audio import write_flac
from pianomtl.core.midi import Performance, write_midi
from pianomtl.core.scoring import note_scores
from pianomtl.synthesis.fluidsynth import render
from pianomtl.synthesis.material import excerpt, load_midi_sources, procedural
from pianomtl.synthesis.sources import AssetError
from pianomtl.synthesis.timbres import TIMBRES

DEMO_PIECE = "Maestro_10"  # a test-split piece: never in training
DEMO_START_SECONDS = 30.0
DEMO_SECONDS = 20.0
DEMO_TIMBRE = "musescore"  # the held-out timbre


def demo_performance(seconds: float = DEMO_SECONDS) -> tuple[Performance, str]:
    """The demo's ground truth and a description of where it came from."""
    try:
        source = load_midi_sources()[DEMO_PIECE]
        return excerpt(
            source, DEMO_START_SECONDS, seconds
        ), f"{DEMO_PIECE} (MAESTRO, test split) from {DEMO_START_SECONDS:.0f} s"
    except (AssetError, KeyError):
        return procedural(np.random.default_rng(20261127), seconds), "a generated piece (corpus material not installed)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo", help="folder for the recording, MIDI and plot (default ./demo)")
    parser.add_argument("--seconds", type=float, default=DEMO_SECONDS, help="length of the demo piece")
    parser.add_argument("--model", default=None, help="model file (default: the bundled model)")


def run(args: argparse.Namespace) -> int:
    from pianomtl.transcription.pipeline import transcribe

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    reference, description = demo_performance(args.seconds)
    audio = render(reference, TIMBRES[DEMO_TIMBRE].soundfont())
    audio *= 0.5 / max(float(np.max(np.abs(audio))), 1e-9)
    recording = out / "demo.flac"
    write_flac(recording, audio)
    write_midi(out / "demo_reference.mid", reference)
    print(f"rendered {description} with the {DEMO_TIMBRE} piano: {recording} ({len(audio) / SAMPLE_RATE:.1f} s)")

    started = time.perf_counter()
    transcription = transcribe(recording, model=args.model)
    elapsed = time.perf_counter() - started
    transcription.to_midi(out / "demo.mid")
    from pianomtl.transcription.plot import plot_transcription

    plot_transcription(transcription, out / "demo.png")
    scores = note_scores(reference, transcription.notes)
    print(
        f"transcribed in {elapsed:.1f} s ({transcription.duration / elapsed:.0f}× real time): "
        f"{len(transcription.notes)} notes, {len(transcription.pedal)} pedal events"
    )
    print(f"  MIDI: {out / 'demo.mid'}   plot: {out / 'demo.png'}   reference: {out / 'demo_reference.mid'}")
    line = "  note F1 {note_f1:.3f} (P {note_precision:.3f}, R {note_recall:.3f})"
    line += " · with offsets {note_offset_f1:.3f} · with offsets and velocity {note_offset_velocity_f1:.3f}"
    print(line.format(**scores) + "   [mir_eval, 50 ms onsets, pedal-extended offsets]")
    return 0
