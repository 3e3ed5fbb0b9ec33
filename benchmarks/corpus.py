"""Corpus generation speed per timbre: audio-seconds rendered per wall-second, one process.

Usage: ``python benchmarks/corpus.py [--seconds 120] [--timbres salamander,fluidr3,timgm,musescore]``

For each timbre, plans training items (procedural material, plus MAESTRO excerpts when
the set-up assets are present) until ``--seconds`` of audio, then times:

- load: creating the synth and loading (and warming up) the SoundFont, once per process;
- synth: FluidSynth rendering alone (44.1 kHz);
- item: the whole item as ``pianomtl synth`` does it (render, reverb/EQ/noise, FLAC + MIDI).

Speeds are × real time for one process; ``pianomtl synth --workers N`` scales them by about
N on N free cores. Timbres whose SoundFont is missing are listed as skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from pianomtl.constants import SAMPLE_RATE
from pianomtl.synthesis import corpus, engines, sources, timbres


def items_for(timbre: str, seconds: float) -> list[corpus.Item]:
    material_sources = ("maestro", "procedural") if sources.has_midi() else ("procedural",)
    config = corpus.Config(
        seed=1, train_hours=seconds / 3600, valid_minutes=0, test_minutes=0, train_timbres=(timbre,),
        test_timbres=(timbre,), sources=material_sources,
    )  # fmt: skip
    return [item for item in corpus.plan(config) if item.split == "train"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="audio seconds per timbre (120)")
    parser.add_argument("--timbres", default=",".join(timbres.TIMBRES))
    args = parser.parse_args()
    rows = []
    for timbre in args.timbres.split(","):
        try:
            timbres.TIMBRES[timbre].soundfont()
        except sources.AssetError as error:
            rows.append((timbre, f"skipped: {error}"))
            continue
        items = items_for(timbre, args.seconds)
        audio = sum(item.duration for item in items)
        began = time.perf_counter()
        engines._synth(timbre)
        load = time.perf_counter() - began
        began = time.perf_counter()
        for item in items:
            engines.render_performance(item.performance, timbre, round(item.duration * SAMPLE_RATE))
        render = time.perf_counter() - began
        with tempfile.TemporaryDirectory() as folder:
            corpus.render_item(dataclasses.replace(items[0]), Path(folder))  # imports (scipy.signal) out of the timing
            began = time.perf_counter()
            for item in items:
                corpus.render_item(dataclasses.replace(item), Path(folder))
            whole = time.perf_counter() - began
        notes = sum(len(item.performance.notes) for item in items)
        rows.append(
            (timbre, f"{load:6.1f} s  {audio:7.0f} s  {notes:6d}  {audio / render:7.0f}x  {audio / whole:7.0f}x")
        )
    print(f"{'timbre':<11}  {'load':>8}  {'audio':>9}  {'notes':>6}  {'synth':>8}  {'item':>8}")
    for timbre, text in rows:
        print(f"{timbre:<11}  {text}")


if __name__ == "__main__":
    main()
