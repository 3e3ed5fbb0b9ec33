"""Live transcription: latency, CPU cost and agreement with offline transcription.

    python benchmarks/latency.py [--seconds 45] [--blocks 10,20] [--lookahead 3] [--threads 1]
                                 [--dataset DIR] [--json PATH]

A clip of procedural piano material (:func:`pianomtl.synthesis.material.procedural`, seed 0)
is rendered with FluidSynth through FluidR3 (as ``tests/conftest.py`` does) and fed to
:class:`pianomtl.Stream` in blocks of 10 ms and 20 ms, as a sound card would deliver
it. For every reference note that a streamed note-on matches (same key, onset within
50 ms) the **delay** is the time from the reference onset to the moment the note-on
is available: ``emitted_at`` (the audio fed up to the end of the block that produced
it; this is the look-ahead and the block wait) plus the wall time of that ``feed``
call (the computation). Printed: median and 95th percentile of the delay, its two
parts, the CPU time per second of audio (``time.process_time`` over the whole stream;
the fraction of one core needed to keep up), the slowest block against the block's own
length, and the note F1 between the streamed notes and offline transcription of the
same audio (:func:`pianomtl.core.scoring.note_scores`, 50 ms onset tolerance).

``--dataset DIR`` (a MAESTRO-layout corpus such as the one ``pianomtl synth`` writes)
adds the agreement with offline transcription on its test split (20 ms blocks).
The look-ahead is fixed by the design (``docs/streaming.md``): half the FFT window
(2048 samples, 46 ms) + ``lookahead`` frames of network context (60 ms by default) +
the onset decision (the rising edge of the onset probability: no extra frame) + the
wait for the end of the block.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from pianomtl.constants import FRAME_SIZE, SAMPLE_RATE
from pianomtl.core.midi import Note, Performance

FLUID_R3 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
MATCH_SECONDS = 0.05
FLOORS = {"median_ms": 120.0, "p95_ms": 160.0, "core_fraction": 0.25, "agreement_f1": 0.99}


def rendered_clip(seconds: float = 45.0, seed: int = 0) -> tuple[np.ndarray, Performance]:
    """``(mono float32 audio at 44.1 kHz, its performance)``: procedural material through FluidR3."""
    from pianomtl.synthesis.fluidsynth import render
    from pianomtl.synthesis.material import procedural

    performance = procedural(np.random.default_rng(seed), seconds)
    audio = render(performance, FLUID_R3, duration=seconds + 1.0)
    audio = (audio * (0.5 / max(float(np.abs(audio).max()), 1e-6))).astype(np.float32)
    return audio, performance


def stream_audio(transcriber: Any, audio: np.ndarray, rate: float, block_seconds: float, lookahead: int) -> dict:
    """Feed ``audio`` block by block; the events with the wall time of the call that emitted them."""
    from pianomtl.transcription.stream import Stream

    stream = Stream(rate, 1, transcriber=transcriber, lookahead=lookahead)
    block = max(1, round(block_seconds * rate))
    timed: list[tuple[Any, float]] = []
    block_times: list[float] = []
    cpu_start = time.process_time()
    for first in range(0, len(audio), block):
        start = time.perf_counter()
        events = stream.feed(audio[first : first + block])
        elapsed = time.perf_counter() - start
        block_times.append(elapsed)
        timed.extend((event, elapsed) for event in events)
    start = time.perf_counter()
    events = stream.close()
    timed.extend((event, time.perf_counter() - start) for event in events)
    cpu = time.process_time() - cpu_start
    return {"stream": stream, "timed": timed, "cpu": cpu, "block_times": block_times, "block": block / rate}


def delays(timed: list[tuple[Any, float]], reference: list[Note]) -> dict[str, list[float]]:
    """Per matched reference note: look-ahead (``emitted_at − onset``) and computation (the call's wall time)."""
    by_key: dict[int, list[tuple[Any, float]]] = {}
    for event, wall in timed:
        if event.type == "note_on":
            by_key.setdefault(event.key, []).append((event, wall))
    lookahead, computation = [], []
    for note in reference:
        candidates = [(e, w) for e, w in by_key.get(note.key, []) if abs(e.time - note.onset) <= MATCH_SECONDS]
        if candidates:
            event, wall = min(candidates, key=lambda c: abs(c[0].time - note.onset))
            lookahead.append(event.emitted_at - note.onset)
            computation.append(wall)
    return {"lookahead": lookahead, "computation": computation}


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def measure_clip(
    transcriber: Any, audio: np.ndarray, performance: Performance, blocks_ms: list[float], lookahead: int
) -> list[dict]:
    from pianomtl.core.scoring import note_scores

    offline = transcriber(audio, sr=SAMPLE_RATE, keep_activations=False)
    rows = []
    for block_ms in blocks_ms:
        run = stream_audio(transcriber, audio, SAMPLE_RATE, block_ms / 1000.0, lookahead)
        parts = delays(run["timed"], performance.notes)
        total = [a + b for a, b in zip(parts["lookahead"], parts["computation"], strict=True)]
        seconds = len(audio) / SAMPLE_RATE
        streamed = run["stream"].performance().notes
        agreement = note_scores(offline.notes, streamed)["note_f1"]
        rows.append(
            {
                "block_ms": block_ms,
                "lookahead": lookahead,
                "notes_matched": len(total),
                "reference_notes": len(performance.notes),
                "median_ms": 1000 * statistics.median(total),
                "p95_ms": 1000 * _percentile(total, 95),
                "lookahead_median_ms": 1000 * statistics.median(parts["lookahead"]),
                "lookahead_p95_ms": 1000 * _percentile(parts["lookahead"], 95),
                "computation_median_ms": 1000 * statistics.median(parts["computation"]),
                "computation_p95_ms": 1000 * _percentile(parts["computation"], 95),
                "cpu_per_audio_second": run["cpu"] / seconds,
                "slowest_block_ms": 1000 * max(run["block_times"]),
                "agreement_f1": agreement,
            }
        )
    return rows


def dataset_agreement(transcriber: Any, dataset: Path, lookahead: int, block_ms: float = 20.0) -> dict:
    """Note F1 between streamed and offline transcription over a corpus's test split (counts summed)."""
    import soundfile as sf

    from pianomtl.core.scoring import aggregate_scores, note_scores
    from pianomtl.data.maestro import read_dataset

    scores = []
    for record in read_dataset(dataset, split="test"):
        offline = transcriber(record.audio_path, keep_activations=False)
        audio, rate = sf.read(str(record.audio_path), dtype="float32", always_2d=True)
        run = stream_audio(transcriber, audio.mean(axis=1), rate, block_ms / 1000.0, lookahead)
        scores.append(note_scores(offline.notes, run["stream"].performance().notes))
    total = aggregate_scores(scores)
    return {
        "files": len(scores),
        "offline_notes": int(total["n_reference"]),
        "streamed_notes": int(total["n_estimated"]),
        "agreement_f1": total["note_f1"],
        "precision": total["note_precision"],
        "recall": total["note_recall"],
    }


def format_rows(rows: list[dict]) -> str:
    header = (
        "| block | delay median | delay p95 | look-ahead median / p95 | computation median / p95 "
        "| CPU per s of audio | slowest block | agreement F1 |"
    )
    lines = [header, "|" + "---|" * 8]
    for r in rows:
        lines.append(
            f"| {r['block_ms']:g} ms | {r['median_ms']:.0f} ms | {r['p95_ms']:.0f} ms "
            f"| {r['lookahead_median_ms']:.0f} / {r['lookahead_p95_ms']:.0f} ms "
            f"| {r['computation_median_ms']:.1f} / {r['computation_p95_ms']:.1f} ms "
            f"| {1000 * r['cpu_per_audio_second']:.0f} ms ({100 * r['cpu_per_audio_second']:.0f} % of a core) "
            f"| {r['slowest_block_ms']:.0f} ms | {r['agreement_f1']:.4f} |"
        )
    return "\n".join(lines)


def lookahead_budget(lookahead: int) -> str:
    half_window = 1000 * FRAME_SIZE / 2 / SAMPLE_RATE
    decision = (
        "20 ms (exact decoding: the onset peak is decided one frame after it)"
        if lookahead >= 5
        else "0 ms (early note-on at the rising edge of the onset probability)"
    )
    return (
        f"algorithmic look-ahead: {half_window:.1f} ms (half the FFT window) + {20 * lookahead} ms "
        f"({lookahead} frames of network context) + {decision} "
        f"+ the wait for the block's end (half a block on average); ±10 ms of frame grid"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=45.0, help="length of the rendered clip")
    parser.add_argument("--blocks", default="10,20", help="input block lengths in ms, comma-separated")
    parser.add_argument(
        "--lookahead", type=int, default=None, help="early note-on look-ahead in frames (default: the stream's)"
    )
    parser.add_argument("--threads", type=int, default=1, help="network threads (1: a live stream's setting)")
    parser.add_argument("--backend", default=None, help="torch or onnxruntime (default: the transcriber's)")
    parser.add_argument("--dataset", type=Path, default=None, help="also measure agreement on this corpus's test split")
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from pianomtl.transcription.pipeline import Transcriber
    from pianomtl.transcription.stream import DEFAULT_LOOKAHEAD

    lookahead = DEFAULT_LOOKAHEAD if args.lookahead is None else args.lookahead
    transcriber = Transcriber(backend=args.backend, threads=args.threads)
    audio, performance = rendered_clip(args.seconds)
    blocks = [float(b) for b in args.blocks.split(",") if b.strip()]
    rows = measure_clip(transcriber, audio, performance, blocks, lookahead)
    print(
        f"clip: {len(audio) / SAMPLE_RATE:.1f} s, {len(performance.notes)} notes (procedural, FluidR3); "
        f"backend {transcriber.backend}, {args.threads} thread(s), lookahead {lookahead}"
    )
    print(lookahead_budget(lookahead))
    print(format_rows(rows))
    result: dict[str, Any] = {"rows": rows, "backend": transcriber.backend, "threads": args.threads}
    if args.dataset is not None:
        agreement = dataset_agreement(transcriber, args.dataset, lookahead)
        print(f"test split of {args.dataset}: {agreement}")
        result["dataset"] = agreement
    failed: list[str] = []
    for r in rows:
        checks = {
            "median_ms": r["median_ms"] <= FLOORS["median_ms"],
            "p95_ms": r["p95_ms"] <= FLOORS["p95_ms"],
            "core_fraction": r["cpu_per_audio_second"] <= FLOORS["core_fraction"],
            "agreement_f1": r["agreement_f1"] >= FLOORS["agreement_f1"],
        }
        failed += [
            f"{r['block_ms']:g} ms block: {name} misses its floor {FLOORS[name]}"
            for name, ok in checks.items()
            if not ok
        ]
    for line in failed:
        print(f"FLOOR MISSED: {line}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
