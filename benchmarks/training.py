"""Training throughput of each model family through the real training loop.

    python benchmarks/training.py [--quick] [--threads N] [--cache DIR] [--json PATH]

Each row times :meth:`pianomtl.train.loop.Run.train_step` — sampling excerpts from a
memory-mapped cache, forward in sequence form, the five task losses weighted by λ,
backward, and the SGD-Nesterov update — for hard sharing and the two cross-stitch
types, and reports output frames per second (batch × sequence frames × steps / s).
Unlike ``benchmarks/models.py`` (the networks alone on random tensors) this
includes the data path and the optimiser, so it is what ``pianomtl train`` and
``pianomtl sweep`` runs will see.

Without ``--cache`` a throw-away cache of random features and labels (store format,
4 recordings × 30 s) is written to a temporary folder; the numbers do not depend
on the audio. The full run adds the paper's exact minibatch form (64 single frames,
``--sequence-frames 1``) for comparison.

``run(quick)`` returns the rows as JSON-able dicts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from pianomtl.constants import BINARY_TASKS, FPS, N_BINS
from pianomtl.core.targets import LABEL_SLICES, N_LABELS
from pianomtl.data import store
from pianomtl.models.registry import ModelConfig
from pianomtl.train.loop import Run, TrainConfig

FAMILIES = {
    "hard": ModelConfig("hard"),
    "cross-stitch full": ModelConfig("cross-stitch", gradient="full", init="imbalanced"),
    "cross-stitch detached": ModelConfig("cross-stitch", gradient="detached", init="imbalanced"),
}


def random_cache(root: Path, recordings: int = 4, seconds: float = 30.0, seed: int = 0) -> Path:
    """A cache in the store's format holding random features and sparse random labels."""
    rng = np.random.default_rng(seed)
    (root / "arrays").mkdir(parents=True, exist_ok=True)
    entries = []
    n_frames = round(seconds * FPS)
    for index in range(recordings):
        name = f"random_{index}"
        features = rng.random((n_frames, N_BINS), dtype=np.float32)
        values = rng.integers(1, 128, (n_frames, N_LABELS), dtype=np.uint8)
        for task in BINARY_TASKS:  # on/int/off are 0/1; vel/sus hold 1–127
            values[:, LABEL_SLICES[task]] = 1
        labels = np.where(rng.random((n_frames, N_LABELS)) < 0.05, values, 0).astype(np.uint8)
        np.save(root / f"arrays/{name}.features.npy", features)
        np.save(root / f"arrays/{name}.labels.npy", labels)
        entry = store.Entry(
            name=name,
            split="train",
            n_frames=n_frames,
            features=f"arrays/{name}.features.npy",
            labels=f"arrays/{name}.labels.npy",
            audio_path="",
            midi_path="",
            source_stamp="",
        )
        entries.append(asdict(entry))
    store.write_json_atomic(root / store.INDEX_NAME, {"version": store.FORMAT_VERSION, "entries": entries})
    return root


def measure(
    cache: Path,
    model: ModelConfig,
    batch_size: int,
    sequence_frames: int,
    steps: int,
    warmup: int,
    threads: int,
    out: Path,
) -> dict:
    """Median time of one training step (after ``warmup`` steps) and the derived throughput."""
    config = TrainConfig(
        cache=str(cache),
        out=str(out),
        model=model.to_dict(),
        lr=1e-4,  # small: the benchmark must not diverge, and the rate does not change the cost
        batch_size=batch_size,
        sequence_frames=sequence_frames,
        threads=threads,
    )
    run = Run(config, seed=0, resume=False)
    for _ in range(warmup):
        run.train_step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        run.train_step()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    frames = batch_size * sequence_frames
    return {
        "model": model.label(),
        "parameters": int(sum(p.numel() for p in run.model.parameters())),
        "batch": f"{batch_size}×{sequence_frames}",
        "frames_per_step": frames,
        "threads": torch.get_num_threads(),
        "ms_per_step": 1000 * seconds,
        "frames_per_s": frames / seconds,
        "steps_timed": steps,
    }


def run(quick: bool = True, threads: int = 1, cache: str | Path | None = None) -> list[dict]:
    """One row per model family (and, in the full run, the paper's 64 × 1 form for each)."""
    if quick:
        shapes, steps, warmup = [(2, 16)], 3, 1
    else:
        shapes, steps, warmup = [(8, 64), (64, 1)], 10, 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="pianomtl-bench-") as folder:
        root = Path(folder)
        data = Path(cache) if cache else random_cache(root / "cache", recordings=2 if quick else 4)
        for batch_size, frames in shapes:
            for family, model in FAMILIES.items():
                row = measure(data, model, batch_size, frames, steps, warmup, threads, root / "run")
                rows.append({"family": family, **row})
    return rows


def format_rows(rows: list[dict]) -> str:
    header = f"{'family':<24} {'params':>9} {'batch':>7} {'threads':>7} {'ms/step':>9} {'frames/s':>9}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['family']:<24} {row['parameters']:>9,} {row['batch']:>7} {row['threads']:>7} "
            f"{row['ms_per_step']:>9.1f} {row['frames_per_s']:>9.0f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny batches, 3 timed steps (seconds)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--cache", default=None, help="time on this feature cache instead of random data")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    rows = run(quick=args.quick, threads=args.threads, cache=args.cache)
    print(f"training throughput (pianomtl.train.loop.Run.train_step), {os.cpu_count()} CPUs visible")
    print(format_rows(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
