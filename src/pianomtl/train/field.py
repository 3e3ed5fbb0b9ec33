"""The field test: a transcriber scored end to end on pianos, rooms and playing it never trained on.

Why a test of its own: the project's test split is two MAESTRO pieces, dry, pedal down most of
the time, on one held-out SoundFont. A transcriber that only meets that can still write pedal
over every piece played without it, or miss the top octaves of an unfamiliar piano. The field
corpus (``pianomtl synth --recipe field``, :func:`pianomtl.synthesis.corpus.plan_field`) plays
the test pieces as performed and with the pedal removed, on MuseScore's grand and on held-out
instruments of the project's two piano engines, each through a room, noise and an effect chain
(EQ, compression, clipping, lossy codecs), plus music that has no pedal at all.

:func:`field_test` transcribes every recording of a split with a model exactly as a user does
(:class:`pianomtl.transcription.pipeline.Transcriber`: audio file → MIDI-ready notes and pedal)
and scores it:

* note-level F1 (onset; onset + offset; onset + offset + velocity) with mir_eval against the
  pedal-extended reference (:func:`pianomtl.core.scoring.note_scores`), summed over recordings;
* decoded frame F1: the decoded notes rasterised as the ``int`` targets, against the reference's;
* pedal F1 over the frames of the recordings that have pedal (CC64 above 64);
* how many pedal-free recordings get any pedal written — the error users see first.

Every measure is also broken down by piano (timbre), so a weakness on one instrument shows.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pianomtl.constants import FPS, PEDAL_DOWN_ABOVE
from pianomtl.core.metrics import BinaryCounts
from pianomtl.core.midi import Performance, read_midi
from pianomtl.core.scoring import MEASURES, aggregate_scores, note_scores
from pianomtl.core.targets import compute_labels, pedal_curve, to_float
from pianomtl.data.maestro import read_dataset


@dataclass
class _Tally:
    """Sums over the recordings of one group (all, or one piano)."""

    notes: list[dict[str, float]] = field(default_factory=list)
    frames: BinaryCounts = field(default_factory=BinaryCounts)
    pedal: BinaryCounts = field(default_factory=BinaryCounts)
    pedal_free: int = 0
    pedal_free_with_pedal: int = 0
    recordings: int = 0

    def report(self) -> dict[str, Any]:
        total = aggregate_scores(self.notes) if self.notes else {}
        out: dict[str, Any] = {name: round(float(total.get(f"{name}_f1", 0.0)), 4) for name in MEASURES}
        out["frame"] = round(self.frames.scores()["f1"], 4)
        out["pedal"] = round(self.pedal.scores()["f1"], 4) if self.pedal.tp + self.pedal.fn > 0 else None
        out["pedal_free_with_pedal"] = f"{self.pedal_free_with_pedal}/{self.pedal_free}"
        out["recordings"] = self.recordings
        return out


def pedal_down(pedal: list, n_frames: int) -> np.ndarray:
    """Frames where CC64 is above the label threshold, from pedal events (estimated or reference)."""
    return pedal_curve(list(pedal), n_frames) > PEDAL_DOWN_ABOVE


def score_recording(reference: Performance, notes: list, pedal: list, duration: float) -> dict[str, Any]:
    """Every field measure of one recording (note scores, frame and pedal masks) against its reference."""
    n_frames = int(np.ceil(duration * FPS)) + 1
    target = to_float(compute_labels(reference, n_frames))["int"] > 0
    decoded = to_float(compute_labels(Performance(list(notes), []), n_frames))["int"] > 0
    estimated_pedal, reference_pedal = pedal_down(pedal, n_frames), pedal_down(reference.pedal, n_frames)
    return {
        "notes": note_scores(reference, notes),
        "frames": (decoded, target),
        "pedal": (estimated_pedal, reference_pedal),
        "has_pedal": bool(reference_pedal.any()),
        "wrote_pedal": bool(estimated_pedal.any()),
    }


def field_test(corpus: str | Path, split: str = "test", model: Any = None, **transcriber_options: Any) -> dict:
    """Transcribe and score every recording of ``split`` of a field corpus; ``{"all": …, "by_piano": {…}}``.

    ``model``: a model file or object as :class:`~pianomtl.transcription.pipeline.Transcriber` takes it
    (``None``: the bundled model); ``transcriber_options``: its other options (decoder settings, backend).
    """
    import csv

    from pianomtl.transcription.pipeline import Transcriber

    corpus = Path(corpus)
    records = read_dataset(corpus, split)
    if not records:
        raise ValueError(f"{corpus}: no recordings in split {split!r}")
    rows = {}
    csv_path = corpus / "pianomtl_corpus.csv"
    if csv_path.is_file():
        with open(csv_path, newline="") as handle:
            rows = {row["audio_filename"]: row for row in csv.DictReader(handle)}
    transcriber = Transcriber(model, **transcriber_options)
    groups: dict[str, _Tally] = defaultdict(_Tally)
    for record in records:
        result = transcriber(str(record.audio_path))
        reference = read_midi(record.midi_path)
        scored = score_recording(reference, result.notes, result.pedal, result.duration)
        row = rows.get(str(Path(record.audio_path).relative_to(corpus)), {})
        piano = row.get("timbre", "unknown")
        pedal_free = row.get("pedal_free", "0") == "1" or not scored["has_pedal"]
        for tally in (groups["all"], groups[piano]):
            tally.recordings += 1
            tally.notes.append(scored["notes"])
            tally.frames.add(*scored["frames"])
            if scored["has_pedal"]:
                tally.pedal.add(*scored["pedal"])
            if pedal_free:
                tally.pedal_free += 1
                tally.pedal_free_with_pedal += int(scored["wrote_pedal"])
    report = {"all": groups.pop("all").report(), "by_piano": {k: v.report() for k, v in sorted(groups.items())}}
    report["split"] = split
    report["corpus"] = corpus.name
    return report


def format_report(report: dict) -> str:
    """A markdown table: one row for all recordings, one per piano."""
    columns = ("note", "note_offset", "note_offset_velocity", "frame", "pedal", "pedal_free_with_pedal", "recordings")
    header = "| piano | note F1 | + offset | + offset + velocity | frame F1 | pedal F1 | pedal-free with pedal | n |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    for name, row in [("all", report["all"]), *report["by_piano"].items()]:
        cells = ["–" if row[c] is None else (f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]))
                 for c in columns]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(report: dict, path: str | Path) -> None:
    from pianomtl.core.files import write_json_atomic

    write_json_atomic(Path(path), report)

