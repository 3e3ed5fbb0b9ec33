"""Start-up of a one-off ``pianomtl transcribe``: the lean install (ONNX) beside the torch path.

    python benchmarks/startup.py [--runs 7] [--seconds 1] [--lean-venv DIR] [--json PATH]

Times the whole command, ``pianomtl transcribe FILE -o DIR --overwrite``, as a user
runs it (a new process each time: interpreter start, imports, model load, features,
network, decoding, MIDI writing), side by side in one run, the configurations
interleaved so that a change of machine load hits all alike:

* **lean, onnxruntime** — ``pip install pianomtl`` (no torch) in its own virtual
  environment: the bundled ``default.onnx``. The environment is made once under
  ``--lean-venv`` (default ``$PIANOMTL_HOME/bench/lean-venv``) and the wheel of this
  tree reinstalled into it at each run (``pip`` from its cache, no torch);
* **full, default** — this interpreter's install (torch present), default options:
  the bundled model in onnxruntime all the same (torch is never imported);
* **full, torch** — this interpreter's install with ``--backend torch`` (``default.pt``);
* **python -c pass** — the interpreter alone, for scale.

Reports the median and the spread (min–max) of the wall time of ``--runs`` runs per
row, the median CPU time (user + system) of the process — which, unlike the wall
time, does not grow with the load of a shared machine — the load average during the
runs, and the lean install's size on disk. The audio is ``--seconds`` of the test split (or a
synthetic rendering, see ``transcription.looped_audio``), as 16-bit FLAC.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import transcription  # its looped_audio

ROOT = Path(__file__).resolve().parent.parent
FLOOR_S = 1.0
"""``pianomtl transcribe`` on a 1-second file, lean install, 2 cores: at most this wall time."""


def folder_size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


def build_wheel(out: Path) -> Path:
    """The wheel of this tree (no build isolation: the tree's own setuptools), built from a copy.

    pip builds in the source folder: from the checkout itself it would leave ``build/`` and
    an egg-info there, and a stale ``build/lib`` carries deleted modules into later wheels.
    """
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("pianomtl-*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="pianomtl-wheel-") as scratch:
        source = Path(scratch)
        shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, source / name)
        command = [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(source),
        ]
        subprocess.run(command, check=True, capture_output=True, timeout=900)
    return next(out.glob("pianomtl-*.whl"))


def lean_venv(folder: Path, wheel: Path) -> Path:
    """A virtual environment with the wheel and its runtime dependencies only; returns its ``pianomtl``."""
    python = folder / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=900)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, str(wheel)], check=True, capture_output=True, timeout=900)
    subprocess.run([*pip, "--force-reinstall", "--no-deps", str(wheel)], check=True, capture_output=True, timeout=900)
    check = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print(u.find_spec('torch') is None)"],
        capture_output=True,
        text=True,
        check=True,
    )
    if check.stdout.strip() != "True":
        raise RuntimeError(f"{folder} has torch installed: not a lean environment")
    return folder / "bin" / "pianomtl"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_command(command: list[str]) -> tuple[float, float]:
    """``(wall seconds, CPU seconds)`` of one run of ``command``."""
    cpu = _children_cpu()
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return elapsed, _children_cpu() - cpu


def measure(runs: int, seconds: float, venv: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    audio = transcription.looped_audio(seconds / 60.0)
    with tempfile.TemporaryDirectory() as scratch:
        wheel = build_wheel(Path(scratch) / "dist")
        wheel_mb = wheel.stat().st_size / 1e6
        lean = lean_venv(venv, wheel)
        out = Path(scratch) / "out"
        full = [sys.executable, "-m", "pianomtl.cli"]
        transcribe = ["transcribe", str(audio), "-o", str(out), "--overwrite"]
        rows = {
            "lean install (no torch), default: onnxruntime": [str(lean), *transcribe],
            "full install, default: onnxruntime": [*full, *transcribe],
            "full install, --backend torch": [*full, *transcribe, "--backend", "torch"],
            "python -c pass": [sys.executable, "-c", "pass"],
        }
        for command in rows.values():  # warm the file cache and check each command works
            time_command(command)
        times: dict[str, list[tuple[float, float]]] = {label: [] for label in rows}
        load_before = os.getloadavg()[0]
        for _ in range(runs):
            for label, command in rows.items():
                times[label].append(time_command(command))
        load = (load_before + os.getloadavg()[0]) / 2
    results = []
    for label, values in times.items():
        walls = [wall for wall, _ in values]
        results.append(
            {
                "config": label,
                "audio_s": seconds,
                "median_s": statistics.median(walls),
                "min_s": min(walls),
                "max_s": max(walls),
                "cpu_s": statistics.median(cpu for _, cpu in values),
                "runs": len(values),
            }
        )
    info = {"lean_venv_mb": folder_size_mb(venv), "audio": str(audio), "wheel_mb": wheel_mb, "load": load}
    return results, info


def format_rows(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    lines = [
        "| `pianomtl transcribe`, one file | audio | median wall | min–max | median CPU | runs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['config']} | {row['audio_s']:g} s | **{row['median_s']:.2f} s** | "
            f"{row['min_s']:.2f}–{row['max_s']:.2f} s | {row['cpu_s']:.2f} s | {row['runs']} |"
        )
    lines.append("")
    lines.append(f"load average during the runs: {info['load']:.1f} on {os.cpu_count()} cores")
    lines.append(f"lean virtual environment on disk: {info['lean_venv_mb']:.0f} MB (wheel {info['wheel_mb']:.1f} MB)")
    lean = next(r for r in rows if r["config"].startswith("lean"))
    if lean["audio_s"] <= 1.0:
        verdict = "pass" if lean["median_s"] <= FLOOR_S else f"MISS by {lean['median_s'] / FLOOR_S:.2f}x"
        lines.append(f"floor: lean install, 1 s file, <= {FLOOR_S:g} s wall: {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per configuration (median reported; default 7)")
    parser.add_argument("--seconds", type=float, default=1.0, help="audio length (default 1 s)")
    parser.add_argument("--lean-venv", type=Path, default=None, help="where the lean environment lives")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    venv = args.lean_venv or transcription.bench_home() / "lean-venv"
    rows, info = measure(args.runs, args.seconds, venv)
    print(format_rows(rows, info))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, **info}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
