"""Throughput of ``pianomtl batch``: files per second on Ray (every core) against one process on one core.

    python benchmarks/batch.py [--files 12] [--seconds 60] [--workers 0] [--json PATH]

The inputs are ``--files`` different stretches of ``--seconds`` each of the looped
benchmark audio (:func:`transcription.looped_audio`: the test split, or a FluidSynth
rendering where there is none), written as 16-bit FLAC. Two jobs transcribe them, each in
a fresh process and into a fresh output folder:

* **one core**: ``run_batch(engine="local")`` in a process pinned to one core
  (``sched_setaffinity``): the same worker (one ONNX session, one intra-op thread), no Ray;
* **Ray**: ``run_batch(engine="ray")`` with a local Ray instance, one worker per core.

Each job's *total* wall time includes everything (interpreter, imports, Ray's start and
its workers' model loading: what a user waits for); its *steady* rate is read from the
manifest's ``finished`` times — files finished after the second one, divided by the time
from the second to the last — the rate an archive of thousands of files runs at, once
the fixed start-up is paid. The floor (issue 28) is on the steady rate: Ray ≥ 1.8× one core.
The machine's load average is printed beside the table: on a shared machine the ratio
measures the cores that were free, not the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

FLOOR = 1.8
"""Ray's steady files/s over one core's, on this 2-core machine (issue 28)."""

CHILD = """
import json, os, sys, time
from pianomtl.batch.run import run_batch
engine, source, out = sys.argv[1:4]
if engine == "local":
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
summary = run_batch(source, out, engine=engine, retries=0, progress=None)
print(json.dumps({"manifest": summary.manifest}))
"""


def make_inputs(folder: Path, files: int, seconds: float) -> list[Path]:
    """``files`` FLAC files of ``seconds`` each, consecutive stretches of the looped benchmark audio."""
    import soundfile as sf

    from transcription import looped_audio

    source = looped_audio(files * seconds / 60)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    with sf.SoundFile(str(source)) as handle:
        for index in range(files):
            samples = handle.read(int(seconds * handle.samplerate), dtype="float32")
            path = folder / f"piece{index:03d}.flac"
            sf.write(str(path), samples, handle.samplerate, format="FLAC", subtype="PCM_16")
            paths.append(path)
    return paths


def job(engine: str, source: Path, out: Path) -> dict[str, Any]:
    """Run one job in a fresh process; its total wall, steady files/s and manifest counts."""
    import pyarrow.parquet as pq

    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, engine, str(source), str(out)], capture_output=True, text=True, check=False
    )
    total = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{engine} job failed:\n{done.stderr[-3000:]}")
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    finished = sorted(r["finished"] for r in rows if r["status"] == "done")
    steady = (len(finished) - 2) / (finished[-1] - finished[1]) if len(finished) > 2 else float("nan")
    audio = sum(r["duration"] or 0.0 for r in rows)
    return {
        "engine": engine,
        "files": len(rows),
        "done": len(finished),
        "total_s": total,
        "files_per_s_total": len(rows) / total,
        "files_per_s_steady": steady,
        "audio_s": audio,
        "median_file_s": sorted(r["seconds"] for r in rows)[len(rows) // 2],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="pianomtl-batch-bench-") as folder:
        source = Path(folder) / "in"
        make_inputs(source, args.files, args.seconds)
        rows = [job("local", source, Path(folder) / "out-local"), job("ray", source, Path(folder) / "out-ray")]
    load_after = os.getloadavg()
    local, ray = rows
    ratio_steady = ray["files_per_s_steady"] / local["files_per_s_steady"]
    ratio_total = ray["files_per_s_total"] / local["files_per_s_total"]
    print(f"{args.files} files × {args.seconds:g} s, {os.cpu_count()} CPUs")
    print("| job | files/s steady | files/s total | total wall s | median s per file (in its worker) |")
    print("|---|---:|---:|---:|---:|")
    for row, label in ((local, "one process, one core"), (ray, "Ray, one worker per core")):
        print(
            f"| {label} | {row['files_per_s_steady']:.3f} | {row['files_per_s_total']:.3f} | "
            f"{row['total_s']:.1f} | {row['median_file_s']:.2f} |"
        )
    print(f"| Ray / one core | {ratio_steady:.2f}× | {ratio_total:.2f}× | | |")
    print(
        f"load average (1, 5, 15 min): before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
        f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
    )
    verdict = "meets" if ratio_steady >= FLOOR else "misses"
    print(f"steady-state ratio {ratio_steady:.2f}× {verdict} the floor of {FLOOR}×")
    if args.json:
        payload = {
            "rows": rows,
            "ratio_steady": ratio_steady,
            "ratio_total": ratio_total,
            "load_before": load_before,
            "load_after": load_after,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
