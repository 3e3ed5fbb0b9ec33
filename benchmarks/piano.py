"""Speed of the project's piano engine (pianomtl.synthesis.piano): × real time on one core.

Usage: ``python benchmarks/piano.py [--seconds 30] [--runs 5] [--pieces 4]``

Renders ``--pieces`` excerpts of ``--seconds`` each (MAESTRO performances, with their
continuous pedal, when the set-up assets are present; procedural material otherwise),
each ``--runs`` times with a fresh random :class:`~pianomtl.synthesis.piano.PianoVariant` per
run, as the corpus does per item. The process is pinned to one CPU and numpy/scipy to
one thread, and times are CPU seconds of this process (``time.process_time``), so a
machine shared with other jobs still measures one core's work; wall-clock speed is shown
beside it. Per excerpt:

- variant: building an instrument from a variant (string banks, body and microphone filters), ms;
- render: the render alone, × real time (median of the runs);
- item: variant + render, as ``pianomtl synth`` pays per item, × real time (median).

The floor of issue #15 is 20× real time on one core (item column).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import statistics
import time

import numpy as np

from pianomtl.constants import SAMPLE_RATE
from pianomtl.core.midi import Performance
from pianomtl.synthesis import material, piano, sources

FLOOR = 20.0


def excerpts(count: int, seconds: float) -> list[tuple[str, Performance]]:
    """``count`` excerpts: MAESTRO pieces from their middle when fetched, else procedural material."""
    if sources.has_midi():
        pieces = material.load_midi_sources()
        names = sorted((n for n in pieces if n.startswith("Maestro_")), key=lambda n: int(n.split("_")[1]))
        chosen = []
        for name in names[:count]:
            piece = pieces[name]
            start = max(0.0, piece.end_time / 2 - seconds / 2)
            chosen.append((name, material.excerpt(piece, round(start, 3), seconds)))
        return chosen
    return [(f"procedural_{i}", material.procedural(np.random.default_rng(i), seconds)) for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds per excerpt (30)")
    parser.add_argument("--runs", type=int, default=5, help="renders per excerpt, each a new variant (5)")
    parser.add_argument("--pieces", type=int, default=4, help="excerpts (4)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    bank = piano.require_bank()
    rng = np.random.default_rng(0)
    piano.render(Performance(), SAMPLE_RATE, piano.PianoVariant(), bank=bank)  # imports out of the timing
    rows = []
    total_audio = total_item = 0.0
    for name, performance in excerpts(args.pieces, args.seconds):
        n_samples = round((performance.end_time + 1.0) * SAMPLE_RATE)
        audio = n_samples / SAMPLE_RATE
        expand, render, wall = [], [], []
        for _ in range(args.runs):
            variant = piano.PianoVariant.draw(rng)
            began = time.process_time()
            piano.expand(variant)
            expand.append(time.process_time() - began)
            began, began_wall = time.process_time(), time.perf_counter()
            piano.render(performance, n_samples, variant, bank=bank)
            render.append(time.process_time() - began)
            wall.append(time.perf_counter() - began_wall)
        item = statistics.median(e + r for e, r in zip(expand, render, strict=True))
        total_audio += audio
        total_item += item
        rows.append(
            f"{name:<14} {audio:6.1f} s {len(performance.notes):6d} {len(performance.pedal):6d} "
            f"{1000 * statistics.median(expand):8.0f} ms {audio / statistics.median(render):8.1f}x "
            f"{audio / item:8.1f}x {audio / statistics.median(wall):8.1f}x"
        )
    header = (
        f"{'excerpt':<14} {'audio':>8} {'notes':>6} {'pedal':>6} {'variant':>11} {'render':>9} {'item':>9} {'wall':>9}"
    )
    print(header)
    print("-" * len(header))
    print("\n".join(rows))
    print("-" * len(header))
    overall = total_audio / total_item
    verdict = "meets" if overall >= FLOOR else "misses"
    runs = f"median of {args.runs} runs"
    print(f"all excerpts: {overall:.1f}x real time per item on one core ({runs}; floor {FLOOR:.0f}x: {verdict})")


if __name__ == "__main__":
    main()
