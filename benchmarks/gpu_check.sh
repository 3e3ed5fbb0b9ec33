#!/usr/bin/env bash
# GPU check (one GPU, under 5 minutes): training frames/s with `--device cuda --amp`
# (bf16 autocast), inference real-time factor, and what the paper's whole schedule
# (680,000 updates × 64 frames ≈ 43.5 M frames) would take at the measured rate
# (goal: under 10 minutes on one H100).
#
#   benchmarks/gpu_check.sh                 # on a machine with a CUDA GPU
#   DEVICE=cpu QUICK=1 benchmarks/gpu_check.sh   # dry run of the same code path on a CPU
#
# Training is timed two ways for each model and batch shape:
#   loop    — pianomtl.train.loop.Run.train_step: excerpts sampled from a memory-mapped
#             feature cache on the CPU, copied to the GPU, forward, 5 losses, backward,
#             SGD-Nesterov step (what `pianomtl train --device cuda --amp` does);
#   compute — the same update on batches already on the GPU (the ceiling a perfect
#             data pipeline would reach; if loop ≪ compute, the sampler is the limit).
# The cache is random features/labels in the store's format (speed does not depend on
# the data). Transcription runs `benchmarks/transcription.py` children with
# --device cuda (spectrogram computed on the GPU too) on 10 minutes of audio.
# Output: a table on stdout and $OUT/gpu_check.json (or ./gpu_check.json).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
"$PYTHON" -c "import pianomtl" 2>/dev/null || "$PYTHON" -m pip install --quiet -e . --no-deps
export DEVICE="${DEVICE:-cuda}" QUICK="${QUICK:-0}" RESULT="${OUT:-.}/gpu_check.json"

"$PYTHON" - <<'PY'
import json, os, statistics, sys, tempfile, time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, "benchmarks")
from pianomtl.constants import FPS, N_BINS, TASKS
from pianomtl.data import store
from pianomtl.models.registry import ModelConfig
from pianomtl.core.targets import N_LABELS
from pianomtl.train.loop import Run, TrainConfig, task_losses

device, quick = os.environ["DEVICE"], os.environ["QUICK"] == "1"
PAPER_FRAMES = 680_000 * 64
if device.startswith("cuda"):
    if not torch.cuda.is_available():
        sys.exit("no CUDA device visible (run with DEVICE=cpu QUICK=1 for a dry run)")
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    name = torch.cuda.get_device_name(0)
else:
    name = "cpu (dry run)"
print(f"device: {name}; torch {torch.__version__}; amp bf16", flush=True)


def random_cache(root: Path, recordings: int = 8, seconds: float = 120.0) -> Path:
    rng = np.random.default_rng(0)
    (root / "arrays").mkdir(parents=True, exist_ok=True)
    entries, frames = [], round(seconds * FPS)
    for i in range(recordings):
        np.save(root / f"arrays/r{i}.features.npy", rng.random((frames, N_BINS), dtype=np.float32))
        np.save(root / f"arrays/r{i}.labels.npy", (rng.random((frames, N_LABELS)) < 0.05).astype(np.uint8))
        entries.append(asdict(store.Entry(f"r{i}", "train", frames, f"arrays/r{i}.features.npy",
                                          f"arrays/r{i}.labels.npy", "", "", "")))
    store.write_json_atomic(root / store.INDEX_NAME, {"version": store.FORMAT_VERSION, "entries": entries})
    return root


def sync() -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


models = {"default hard 16/48/10": ModelConfig("hard", small=16, large=48, head=10), "paper hard": ModelConfig("hard"),
          "paper cross-stitch": ModelConfig("cross-stitch", gradient="detached")}
shapes = [(4, 32)] if quick else [(64, 128), (256, 128), (512, 256)]
steps, warmup = (2, 1) if quick else (20, 5)
rows = []
deadline = time.perf_counter() + (60 if quick else 170)  # leave time for transcription
with tempfile.TemporaryDirectory() as folder:
    cache = random_cache(Path(folder) / "cache", recordings=2 if quick else 8, seconds=20 if quick else 120)
    for label, model in models.items():
        for batch, frames in shapes:
            if time.perf_counter() > deadline:
                print(f"(time budget: skipping {label} {batch}×{frames})", flush=True)
                continue
            config = TrainConfig(cache=str(cache), out=str(Path(folder) / "run"), model=model.to_dict(), lr=1e-4,
                                 batch_size=batch, sequence_frames=frames, device=device, amp=True)
            try:
                run = Run(config, seed=0, resume=False)
                loop = timed(run.train_step, steps, warmup)
                x, y = (t.to(device) for t in run.sampler.sample())

                def compute():
                    with torch.autocast(run.device.type, dtype=torch.bfloat16):
                        out = run.model(x)
                    loss = sum(task_losses(out, y)[t] for t in TASKS)
                    run.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    run.optimizer.step()

                pure = timed(compute, steps, warmup)
            except torch.OutOfMemoryError:
                print(f"{label} {batch}×{frames}: out of memory", flush=True)
                torch.cuda.empty_cache()
                continue
            n = batch * frames
            row = {"model": label, "batch": f"{batch}×{frames}", "loop_fps": n / loop, "compute_fps": n / pure,
                   "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None}
            row["paper_schedule_min_loop"] = PAPER_FRAMES / row["loop_fps"] / 60
            row["paper_schedule_min_compute"] = PAPER_FRAMES / row["compute_fps"] / 60
            rows.append(row)
            print(f"{label:<22} {row['batch']:>8}  loop {row['loop_fps']:>10,.0f} f/s  compute "
                  f"{row['compute_fps']:>10,.0f} f/s  paper schedule {row['paper_schedule_min_loop']:7.1f} min "
                  f"(compute-bound {row['paper_schedule_min_compute']:.1f} min)", flush=True)
            del run

import transcription as tb

minutes = 0.5 if quick else 10.0
audio = tb.looped_audio(minutes, dataset=Path("/work/corpus"))
model_path, description = tb.model_argument(None)
inference = []
for precision in ("fp32", "bf16"):
    r = tb.measure(audio, model_path, device=device, precision=precision, repeats=1 if not quick else 1)
    inference.append({"precision": precision, **{k: r[k] for k in ("minutes", "rtf", "network_fps", "seconds",
                                                                     "peak_rss_mb", "process_wall_s")}})
    s = r["seconds"]
    print(f"transcribe {r['minutes']:.1f} min, {precision}: {r['rtf']:,.0f}× real time (features {s['features']:.2f} s, "
          f"network {s['network']:.2f} s = {r['network_fps']:,.0f} f/s, decode {s['decode']:.2f} s, write "
          f"{s['write']:.2f} s; process {r['process_wall_s']:.1f} s) [{description}]", flush=True)

best = max(rows, key=lambda r: r["loop_fps"]) if rows else None
if best:
    verdict = "meets" if best["paper_schedule_min_loop"] < 10 else "misses"
    print(f"\nbest training rate: {best['loop_fps']:,.0f} frames/s ({best['model']}, {best['batch']}): the paper's "
          f"43.5 M frames take {best['paper_schedule_min_loop']:.1f} min — {verdict} the 10-minute goal")
Path(os.environ["RESULT"]).write_text(json.dumps({"device": name, "training": rows, "transcription": inference},
                                                 indent=1))
PY
