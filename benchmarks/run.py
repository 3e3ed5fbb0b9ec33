"""All speed and memory benchmarks in one run: a table on stdout, everything in JSON.

    python benchmarks/run.py [--quick] [--json out.json] [--threads N] [--model PATH|default|random]
                             [--minutes 1,10,60] [--no-transcription]

Sections (each reuses a benchmark module's ``run()``):

1. **Model variants** (``benchmarks/models.py``): parameters, multiply-adds per output
   frame, inference (forward) frames/s in sequence form — for the paper's five
   variants and the bundled default model's architecture (hard sharing 16/48/10).
2. **Training, sequence form vs window form** (here): one SGD-Nesterov update
   (forward, the five task losses of :func:`pianomtl.train.loop.task_losses`, backward, step)
   on the *same* B × T output frames, once as B excerpts of T + 10 frames (sequence
   form: one convolution pass per excerpt) and once as B·T separate 11-frame windows
   (the naive form; the paper's minibatch is 64 such windows). The outputs of the two
   forms are compared in eval mode (max |difference|). Floor: sequence ≥ 10× window.
3. **End-to-end transcription** (``benchmarks/transcription.py``): file in → MIDI out,
   each in a fresh process, on 1, 10 and 60 minutes of the test split looped
   (``--quick``: 1 minute), with features / network / decoding / writing timed apart,
   real-time factor (× real time) and peak RSS. Floors: the default model ≥ 100× real
   time; peak RSS ≤ 1.5 GB on one hour.

Numbers are medians over repeats; ratios are of numbers measured in this same run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch

import models as model_bench
import transcription as transcription_bench
from pianomtl.constants import CONTEXT, N_BINS, TASKS
from pianomtl.core.targets import N_LABELS
from pianomtl.models import ModelConfig, build_model, window_forward
from pianomtl.train.loop import task_losses

DEFAULT_ARCHITECTURE = ModelConfig(**transcription_bench.DEFAULT_ARCHITECTURE)
TRAIN_FLOOR = 10.0  # sequence-form training frames/s ÷ window-form frames/s
RTF_FLOOR = transcription_bench.RTF_FLOOR
RSS_FLOOR_MB = transcription_bench.RSS_FLOOR_MB


# -- machine -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
    }
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
        info["cpu"] = fields.get("Model name", "").strip()
        info["cores_per_socket"] = fields.get("Core(s) per socket", "").strip()
        flags = fields.get("Flags", "").split()
        info["cpu_features"] = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8") if f in flags]
    except (OSError, subprocess.CalledProcessError):
        info["cpu"] = platform.processor()
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return info


# -- training: sequence form vs window form ------------------------------------------------------


def _median_seconds(fn, repeats: int, warmup: int = 1) -> float:  # type: ignore[no-untyped-def]
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def training_forms(config: ModelConfig, batch: int, frames: int, repeats: int) -> dict[str, Any]:
    """Frames/s of one training update in sequence form and in window form, on the same frames."""
    torch.manual_seed(0)
    model = build_model(config)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, nesterov=True)
    generator = torch.Generator().manual_seed(0)
    features = torch.rand(batch, frames + 2 * CONTEXT, N_BINS, generator=generator) * 2
    labels = (torch.rand(batch, frames, N_LABELS, generator=generator) < 0.05).to(torch.uint8)
    # the same B·T output frames as B·T separate windows of 11 frames (one output frame each)
    windows = features.unfold(1, 2 * CONTEXT + 1, 1).permute(0, 1, 3, 2).reshape(batch * frames, -1, N_BINS)
    window_labels = labels.reshape(batch * frames, 1, N_LABELS)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        losses = task_losses(model(x), y)
        total = sum(losses[t] for t in TASKS)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()

    model.train()
    sequence = _median_seconds(lambda: step(features, labels), repeats)
    window = _median_seconds(lambda: step(windows, window_labels), repeats)
    model.eval()
    with torch.no_grad():  # identical outputs: the network seen both ways (noise layers off in eval)
        a, b = model(features), window_forward(model, features)
        difference = max(float((a[t] - b[t]).abs().max()) for t in TASKS)
    with torch.inference_mode():
        inference = _median_seconds(lambda: model(features), repeats)
    n = batch * frames
    macs_frame, macs_window = model.macs_per_frame(), model.macs_per_frame(window=True)
    return {
        "variant": config.label() if config != DEFAULT_ARCHITECTURE else "default hard 16/48/10",
        "config": config.to_dict(),
        "params": model.num_parameters(),
        "macs_per_frame": macs_frame,
        "macs_per_window": macs_window,
        "infer_fps": n / inference,
        "frames_per_step": n,
        "batch": f"{batch}×{frames} vs {n}×1",
        "train_seq_fps": n / sequence,
        "train_window_fps": n / window,
        "ratio": window / sequence,
        "mac_ratio": macs_window / macs_frame,
        "max_output_difference": difference,
        "threads": torch.get_num_threads(),
    }


def training_rows(quick: bool) -> list[dict[str, Any]]:
    batch, frames, repeats = (4, 32, 3) if quick else (8, 64, 5)
    variants = model_bench.VARIANTS[:2] + model_bench.VARIANTS[3:4] if quick else model_bench.VARIANTS
    configs = [DEFAULT_ARCHITECTURE, *variants]
    return [training_forms(config, batch, frames, repeats) for config in configs]


def model_rows(quick: bool) -> list[dict[str, Any]]:
    """``benchmarks/models.py``'s rows: the paper's variants, network alone, both forms."""
    return model_bench.run(quick=quick)


# -- floors and the table ---------------------------------------------------------------------


def _verdict(value: float, floor: float, higher_is_better: bool = True) -> dict[str, Any]:
    passed = value >= floor if higher_is_better else value <= floor
    factor = value / floor if higher_is_better else floor / value
    return {"value": value, "threshold": floor, "pass": passed, "factor": factor}


def floors(training: list[dict], transcription: list[dict]) -> list[dict[str, Any]]:
    out = []
    for row in training:
        out.append(
            {
                "name": f"training seq ≥ {TRAIN_FLOOR:g}× window: {row['variant']}",
                **_verdict(row["ratio"], TRAIN_FLOOR),
                "unit": "×",
            }
        )
    default_rows = [r for r in transcription if r["config"] == "torch"]
    if default_rows:
        longest = max(default_rows, key=lambda r: r["minutes"])
        out.append(
            {
                "name": f"transcribe ≥ {RTF_FLOOR:g}× real time "
                f"({longest['minutes']:.0f} min, torch, {longest['model']})",
                **_verdict(longest["rtf"], RTF_FLOOR),
                "unit": "× real time",
            }
        )
        hour = [r for r in default_rows if r["minutes"] >= 59]
        if hour:
            out.append(
                {
                    "name": f"peak RSS ≤ {RSS_FLOOR_MB:g} MB for 1 hour (torch)",
                    **_verdict(hour[0]["peak_rss_mb"], RSS_FLOOR_MB, higher_is_better=False),
                    "unit": "MB",
                }
            )
        else:
            out.append(
                {"name": f"peak RSS ≤ {RSS_FLOOR_MB:g} MB for 1 hour", "pass": None, "note": "not measured (--quick)"}
            )
    return out


def format_report(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"pianomtl benchmarks — {m['date']} — {m.get('cpu', '?')}, {m['cpus']} CPUs, torch {m['torch']}, "
        f"{m['threads']} threads{' (quick)' if report['quick'] else ''}",
        "",
        "Model variants, network alone (benchmarks/models.py; random weights)",
        model_bench.format_table(report["models"]),
    ]
    lines += ["", "Training update, sequence form vs 11-frame window form (same output frames), and inference"]
    header = (
        f"{'variant':<32} {'params':>8} {'MMAC/f':>6} {'frames':>6} {'train seq':>9} {'train win':>9} {'ratio':>6} "
        f"{'MACs':>5} {'|Δout|':>7} {'floor ≥10×':>10} {'infer f/s':>9}"
    )
    lines += [header, "-" * len(header)]
    for r in report["training"]:
        verdict = "pass" if r["ratio"] >= TRAIN_FLOOR else f"miss ×{TRAIN_FLOOR / r['ratio']:.1f}"
        lines.append(
            f"{r['variant']:<32} {r['params']:>8,} {r['macs_per_frame'] / 1e6:>6.1f} {r['frames_per_step']:>6} "
            f"{r['train_seq_fps']:>9.0f} {r['train_window_fps']:>9.0f} {r['ratio']:>5.1f}x {r['mac_ratio']:>4.1f}x "
            f"{r['max_output_difference']:>7.0e} {verdict:>10} {r['infer_fps']:>9.0f}"
        )
    lines.append(
        "(frames/s of output frames; train = forward + 5 losses + backward + SGD step; 'MACs' = multiply-adds of "
        "an 11-frame window ÷ per frame in sequence form, the ratio if both ran equally efficiently; "
        "infer = forward in sequence form, eval mode)"
    )
    if report.get("transcription"):
        lines += ["", "End-to-end transcription (file in → MIDI out; fresh process each)"]
        lines.append(transcription_bench.format_rows(report["transcription"]))
    lines += ["", "Floors"]
    for f in report["floors"]:
        if f.get("pass") is None:
            lines.append(f"  [ -- ] {f['name']}: {f.get('note', '')}")
            continue
        unit = f.get("unit", "")
        if f["pass"]:
            margin = f"{f['factor']:.2f}× better than the floor"
        else:
            margin = f"misses by a factor {1 / f['factor']:.2f} (floor {f['threshold']:g} {unit})"
        lines.append(f"  [{'pass' if f['pass'] else 'MISS'}] {f['name']}: {f['value']:.1f} {unit} — {margin}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, 3 variants, 1 minute of audio")
    parser.add_argument("--json", default=None, help="write the full results here")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--model", default=None, help="model for transcription: path, 'default' or 'random'")
    parser.add_argument("--minutes", default=None, help="audio lengths for transcription (default 1,10,60)")
    parser.add_argument("--backends", default=None, help="comma-separated transcription configs (default: all)")
    parser.add_argument("--dataset", default=str(transcription_bench.DEFAULT_DATASET))
    parser.add_argument("--no-transcription", action="store_true", help="skip section 3")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    began = time.perf_counter()
    report: dict[str, Any] = {"machine": machine(), "quick": args.quick}
    report["models"] = model_rows(args.quick)
    report["training"] = training_rows(args.quick)
    if not args.no_transcription:
        minutes = [float(x) for x in args.minutes.split(",")] if args.minutes else None
        variants = transcription_variants(args.backends.split(",") if args.backends else None)
        report["transcription"] = transcription_bench.run(
            quick=args.quick,
            minutes=minutes,
            model=args.model,
            threads=args.threads,
            dataset=Path(args.dataset),
            variants=variants,
        )
    report["floors"] = floors(report["training"], report.get("transcription", []))
    report["wall_seconds"] = time.perf_counter() - began
    print(format_report(report))
    print(f"\n({report['wall_seconds']:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return 0


def transcription_variants(names: list[str] | None) -> list[dict[str, Any]]:
    """The transcription configurations compared side by side (``names`` selects some)."""
    variants = transcription_bench.VARIANTS
    if names:
        unknown = set(names) - {v["label"] for v in variants}
        if unknown:
            labels = [v["label"] for v in variants]
            raise SystemExit(f"unknown transcription config {sorted(unknown)}; choose from {labels}")
        variants = [v for v in variants if v["label"] in names]
    return variants


if __name__ == "__main__":
    raise SystemExit(main())
