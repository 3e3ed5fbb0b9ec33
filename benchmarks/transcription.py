"""End-to-end transcription speed and memory: audio file in → MIDI file out.

    python benchmarks/transcription.py [--quick] [--minutes 1,10,60] [--model PATH|default|random]
                                       [--backend torch,onnxruntime] [--threads N] [--json PATH]

Each measurement runs in a fresh Python process (this file with ``--child``), so that
its peak resident memory (``ru_maxrss`` of that process, read by the parent with
``os.wait4``) is the memory transcription needs, and nothing is shared with earlier
measurements. In the child:

1. the model is loaded and the pipeline warmed up on 2 s of noise (once, as the
   ``pianomtl transcribe`` command does for a batch of files);
2. the recording is transcribed stage by stage, each timed: *features* (read the file
   in blocks, resample if needed, spectrogram — :meth:`Transcriber.features`),
   *network* (chunked, seam-free — :meth:`Transcriber.activations`), *decoding*
   (:func:`pianomtl.transcription.decoders.decode`) and *writing* the MIDI file. These are exactly the
   steps of :meth:`Transcriber.__call__` + :meth:`Transcription.to_midi`.

Real-time factor (RTF) here is **audio seconds per wall second** ("× real time";
higher is faster), of the whole file-in → MIDI-out pipeline. The process's total wall
time (interpreter start, imports and model loading included) is reported beside it.

The audio is the project's test split (``/work/corpus`` or ``--dataset``: MuseScore
piano, pieces never trained on) concatenated and looped to the wanted length, written
once as 16-bit FLAC under ``$PIANOMTL_HOME/bench`` (default ``~/.cache/pianomtl/bench``).
Without a dataset, a FluidSynth rendering of random notes is looped instead.

``run(quick)`` returns the rows as JSON-able dicts for ``benchmarks/run.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_DATASET = Path("/work/corpus")
DEFAULT_ARCHITECTURE = {"name": "hard", "small": 16, "large": 48, "head": 10}
"""The bundled default model's architecture (used with random weights when it is not built yet)."""

VARIANTS: list[dict[str, Any]] = [
    {"label": "torch", "backend": "torch"},
    {"label": "onnxruntime", "backend": "onnxruntime"},
    {"label": "torch bf16", "backend": "torch", "precision": "bf16"},
]
"""Configurations measured side by side (``label`` + keyword arguments of :func:`measure`).

``torch`` is ``--backend torch`` (float32, exact); ``onnxruntime`` is what
``pianomtl transcribe`` does by default with the bundled model on the CPU (and
``--backend onnxruntime``); ``torch bf16`` is ``--precision bf16``.
:func:`measure` also takes ``chunk_frames`` / ``spectrogram_chunk`` to time other
chunk sizes (how the defaults were chosen, see ``RESULTS.md``)."""

RTF_FLOOR = 100.0  # × real time, end to end, default model
RSS_FLOOR_MB = 1500.0  # peak resident memory for a 1-hour recording


def bench_home() -> Path:
    from pianomtl.synthesis.sources import home

    return home() / "bench"


# -- audio ------------------------------------------------------------------------------------


def _test_files(dataset: Path) -> list[Path]:
    from pianomtl.data.maestro import read_dataset

    return [Path(r.audio_path) for r in read_dataset(dataset, split="test")]


def _synthetic_source(folder: Path) -> list[Path]:
    """One minute of random piano-range notes (when no dataset is at hand).

    Rendered by FluidSynth through FluidR3 when both are installed, else as decaying
    harmonic tones in numpy (speed does not depend on the timbre).
    """
    import numpy as np
    import soundfile as sf

    from pianomtl.constants import SAMPLE_RATE
    from pianomtl.core.midi import Note, Performance

    path = folder / "synthetic_source.flac"
    if path.exists():
        return [path]
    rng = np.random.default_rng(0)
    notes, time_s = [], 0.0
    while time_s < 58.0:
        for key in rng.choice(np.arange(30, 100), size=int(rng.integers(1, 4)), replace=False):
            notes.append(Note(int(key), time_s, time_s + float(rng.uniform(0.1, 0.8)), int(rng.integers(30, 120))))
        time_s += float(rng.uniform(0.1, 0.4))
    try:
        from pianomtl.synthesis.fluidsynth import render

        audio = render(Performance(notes, []), "/usr/share/sounds/sf2/FluidR3_GM.sf2", duration=60.0)
    except Exception:  # no FluidSynth or SoundFont here: additive tones
        audio = np.zeros(60 * SAMPLE_RATE, dtype=np.float32)
        for note in notes:
            start, length = int(note.onset * SAMPLE_RATE), int((note.offset - note.onset + 0.3) * SAMPLE_RATE)
            t = np.arange(min(length, len(audio) - start)) / SAMPLE_RATE
            f0 = 440.0 * 2 ** ((note.key - 69) / 12)
            tone = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6) if f0 * h < SAMPLE_RATE / 2)
            audio[start : start + len(t)] += (note.velocity / 127) * np.exp(-3 * t) * tone
    audio = (audio * (0.5 / max(float(np.abs(audio).max()), 1e-6))).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return [path]


def looped_audio(minutes: float, dataset: Path | None = DEFAULT_DATASET, folder: Path | None = None) -> Path:
    """A mono 44.1 kHz FLAC of ``minutes`` made by concatenating the test recordings in a loop.

    Written block by block (never the whole signal in memory) and reused when present.
    """
    import numpy as np
    import soundfile as sf

    from pianomtl.constants import SAMPLE_RATE

    folder = folder or bench_home()
    folder.mkdir(parents=True, exist_ok=True)
    label = f"{minutes:g}".replace(".", "_")
    if dataset is not None and Path(dataset).exists():
        sources, tag = _test_files(Path(dataset)), "test"
    else:
        sources, tag = _synthetic_source(folder), "synthetic"
    path = folder / f"{tag}_loop_{label}min.flac"
    wanted = round(minutes * 60 * SAMPLE_RATE)
    if path.exists() and sf.info(str(path)).frames == wanted:
        return path
    temporary = path.with_name(path.name + ".part.flac")
    written = 0
    with sf.SoundFile(str(temporary), "w", SAMPLE_RATE, 1, "PCM_16", format="FLAC") as out:
        while written < wanted:
            for source in sources:
                samples, rate = sf.read(str(source), dtype="float32", always_2d=True)
                if rate != SAMPLE_RATE:
                    raise ValueError(f"{source}: {rate} Hz; the loop needs {SAMPLE_RATE} Hz sources")
                mono = samples.mean(axis=1)
                take = min(len(mono), wanted - written)
                out.write(np.clip(mono[:take], -1.0, 1.0 - 2**-15))
                written += take
                if written >= wanted:
                    break
    os.replace(temporary, path)
    return path


# -- the model --------------------------------------------------------------------------------


def model_argument(model: str | None, folder: Path | None = None) -> tuple[str, str]:
    """``(value for --model of the child, description)``: the bundle, a file, or random weights."""
    from pianomtl.transcription.model_file import default_model_path, has_default_model

    if model in (None, "default"):
        if has_default_model():
            return str(default_model_path()), "default (bundled)"
        model = "random"
    if model == "random":
        return random_checkpoint(folder or bench_home()), "default architecture, random weights"
    return str(model), Path(model).name


def random_checkpoint(folder: Path) -> str:
    """A checkpoint-format file of the default architecture with seed-0 random weights."""
    import torch

    from pianomtl.models.registry import ModelConfig, build_model

    path = folder / "random_hard_16_48_10.pt"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        config = ModelConfig(**DEFAULT_ARCHITECTURE)
        model = build_model(config)
        torch.save({"model_config": config.to_dict(), "model": model.state_dict(), "step": 0}, path)
    return str(path)


# -- one measurement in a fresh process --------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    """Runs in the measured process: load, warm up, transcribe stage by stage; print JSON."""
    started = time.perf_counter()
    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from pianomtl.core import features as features_module
    from pianomtl.transcription.decoders import decode
    from pianomtl.transcription.pipeline import Transcriber
    from pianomtl.transcription.result import Transcription

    if args.spectrogram_chunk:
        features_module.SPECTROGRAM_CHUNK_FRAMES.update(dict.fromkeys(("cpu", "other"), args.spectrogram_chunk))

    imported = time.perf_counter()
    options: dict[str, Any] = {"device": args.device, "backend": args.backend}
    if args.chunk_frames:
        options["chunk_frames"] = args.chunk_frames
    if args.precision != "fp32":
        options["precision"] = args.precision
    transcriber = Transcriber(args.model, **options)
    loaded = time.perf_counter()
    rng = np.random.default_rng(0)
    transcriber(rng.normal(0, 0.1, 88200).astype(np.float32), sr=44100, keep_activations=False)  # warm-up
    warmed = time.perf_counter()
    runs = []
    notes = 0
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        features, duration, source = transcriber.features(args.audio)
        t1 = time.perf_counter()
        activations = transcriber.activations(features)
        t2 = time.perf_counter()
        performance = decode(activations, transcriber.decoder)
        t3 = time.perf_counter()
        Transcription(performance.notes, performance.pedal, None, duration, transcriber.decoder, source).to_midi(
            args.midi
        )
        t4 = time.perf_counter()
        notes = len(performance.notes)
        frames = len(features)
        del features, activations, performance
        runs.append({"features": t1 - t0, "network": t2 - t1, "decode": t3 - t2, "write": t4 - t3, "total": t4 - t0})
    median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    peak_kb = 0  # this process's own high-water mark (ru_maxrss would include the parent's, copied at fork)
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak_kb = int(line.split()[1])
    except OSError:
        import resource

        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "duration_s": duration,
                "seconds": median,
                "repeats": args.repeats,
                "notes": notes,
                "import_s": imported - started,
                "load_s": loaded - imported,
                "warmup_s": warmed - loaded,
                "threads": torch.get_num_threads(),
                "backend": transcriber.backend,
                "chunk_frames": transcriber.chunk_frames,
                "precision": getattr(transcriber, "precision", "fp32"),
                "frames": frames,
                "peak_kb": peak_kb,
            }
        )
    )


def measure(
    audio: Path,
    model: str,
    backend: str = "torch",
    threads: int = 0,
    device: str = "cpu",
    chunk_frames: int = 0,
    spectrogram_chunk: int = 0,
    precision: str = "fp32",
    repeats: int = 1,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One child process transcribing ``audio``; its timings, RTF and peak RSS."""
    midi = bench_home() / f"out_{os.getpid()}.mid"
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--audio", str(audio), "--model", model]
    command += ["--backend", backend, "--threads", str(threads), "--device", device, "--midi", str(midi)]
    command += ["--chunk-frames", str(chunk_frames), "--repeats", str(repeats), "--precision", precision]
    command += ["--spectrogram-chunk", str(spectrogram_chunk)]
    env = {**os.environ, **(extra_env or {})}
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        began = time.perf_counter()
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, text=True, env=env)
        _, status, usage = os.wait4(process.pid, 0)  # reap it ourselves: this gives *its* rusage
        wall = time.perf_counter() - began
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        output, errors = stdout.read(), stderr.read()
    midi.unlink(missing_ok=True)
    if process.returncode != 0:
        raise RuntimeError(f"transcription child failed ({process.returncode}): {errors.strip()[-2000:]}")
    result = json.loads(output.strip().splitlines()[-1])
    seconds = result["seconds"]
    duration = result["duration_s"]
    return {
        **result,
        "audio": str(audio),
        "minutes": duration / 60,
        "rtf": duration / seconds["total"],  # × real time, file in → MIDI out
        "share": {k: seconds[k] / seconds["total"] for k in ("features", "network", "decode", "write")},
        "network_fps": result["frames"] / seconds["network"],
        "peak_rss_mb": result["peak_kb"] / 1024,  # the child's VmHWM (its peak resident memory)
        "ru_maxrss_mb": usage.ru_maxrss / 1024,  # for reference: also counts the parent's RSS at fork
        "process_wall_s": wall,
        "process_rtf": duration / wall,
        "device": device,
    }


def run(
    quick: bool = False,
    minutes: list[float] | None = None,
    model: str | None = None,
    backends: list[str] | None = None,
    threads: int = 0,
    dataset: Path | None = DEFAULT_DATASET,
    variants: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Rows for each (configuration, length): 1, 10 and 60 min (``quick``: 1 min only)."""
    minutes = minutes or ([1.0] if quick else [1.0, 10.0, 60.0])
    model_path, description = model_argument(model)
    if variants is None:
        variants = [v for v in VARIANTS if backends is None or v["label"] in backends]
    rows = []
    for length in minutes:
        audio = looped_audio(length, dataset)
        for variant in variants:
            options = {k: v for k, v in variant.items() if k != "label"}
            repeats = 3 if length <= 1 else 1
            row = measure(audio, model_path, threads=threads, repeats=repeats, **options)
            rows.append({"config": variant["label"], "model": description, **row})
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'config':<25} {'audio':>6} {'features':>9} {'network':>8} {'decode':>7} {'write':>6} {'total':>7} "
        f"{'× real time':>11} {'net f/s':>8} {'peak RSS':>9} {'process':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        s = r["seconds"]
        lines.append(
            f"{r['config']:<25} {r['minutes']:>4.0f}m {s['features']:>8.2f}s {s['network']:>7.2f}s "
            f"{s['decode']:>6.2f}s {s['write']:>5.2f}s {s['total']:>6.2f}s {r['rtf']:>10.0f}x {r['network_fps']:>8.0f} "
            f"{r['peak_rss_mb']:>6.0f} MB {r['process_wall_s']:>7.1f}s"
        )
    if rows:
        lines.append(
            f"(model: {rows[0]['model']}; {rows[0]['threads']} threads; times are medians of "
            f"{rows[0]['repeats']} runs for 1 min, one run otherwise; 'process' = the child's whole wall time "
            "incl. Python start, imports, model load and warm-up)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 minute of audio only")
    parser.add_argument("--minutes", default=None, help="comma-separated lengths (default 1,10,60)")
    parser.add_argument("--model", default=None, help="bundle/checkpoint/.onnx, 'default' or 'random'")
    parser.add_argument("--configs", default=None, help="comma-separated labels of VARIANTS (default: all)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in the child (0: default)")
    parser.add_argument("--dataset", default=str(DEFAULT_DATASET), help="MAESTRO-layout folder whose test split loops")
    parser.add_argument("--json", default=None, help="also write the rows here")
    # the child's options
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--audio", help=argparse.SUPPRESS)
    parser.add_argument("--midi", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help="torch device for the child")
    parser.add_argument("--chunk-frames", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="torch", help=argparse.SUPPRESS)
    parser.add_argument("--spectrogram-chunk", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    minutes = [float(m) for m in args.minutes.split(",")] if args.minutes else None
    rows = run(
        quick=args.quick,
        minutes=minutes,
        model=args.model,
        backends=args.configs.split(",") if args.configs else None,
        threads=args.threads,
        dataset=Path(args.dataset),
    )
    print(format_rows(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
