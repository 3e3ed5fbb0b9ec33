"""A tour of pianomtl's Python API, cell by cell (``# %%`` cells run in Jupyter, VS Code or as a script).

    python examples/python_api.py                 # a synthetic phrase, made below
    python examples/python_api.py take.flac       # your own recording

Everything here is the public API of ``import pianomtl`` (reference: docs/api.md).
"""

# %% A recording: your file, or two seconds of a toy "piano" made of decaying harmonic tones
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

import pianomtl

SR = 44100


def toy_phrase(keys: tuple[int, ...] = (60, 64, 67, 72), step: float = 0.4) -> np.ndarray:
    """Each key struck ``step`` s after the previous one: six decaying harmonics, a short attack."""
    total = np.zeros(int(SR * (step * len(keys) + 1.0)), dtype=np.float32)
    t = np.arange(int(SR * 1.2)) / SR
    for i, key in enumerate(keys):
        f0 = 440.0 * 2 ** ((key - 69) / 12)
        tone = sum(np.sin(2 * np.pi * f0 * h * t) / h**1.5 for h in range(1, 7) if f0 * h < SR / 2)
        tone = tone * np.exp(-3 * t) * np.minimum(1.0, t / 0.003)
        start = int(SR * step * i)
        total[start : start + len(t)] += 0.25 * tone.astype(np.float32)
    return total


audio = sys.argv[1] if len(sys.argv) > 1 else toy_phrase()
print("input:", audio if isinstance(audio, str) else f"{len(audio) / SR:.1f} s of samples at {SR} Hz")

# %% Transcribe with the bundled model; the result holds notes, pedal and the network's activations
result = pianomtl.transcribe(audio, sr=None if isinstance(audio, str) else SR)
print(f"{len(result.notes)} notes, {len(result.pedal)} pedal events in {result.duration:.2f} s")
for note in result.notes[:8]:
    print(f"  {note.name:>4}  onset {note.onset:6.3f} s  lasts {note.duration:5.3f} s  velocity {note.velocity}")

# %% The decoder: the model's tuned options, and a change of one of them (the others are kept)
print("tuned:", {k: v for k, v in result.decoder.to_dict().items() if k.endswith("threshold")})
stricter = result.redecode(onset_threshold=0.9)  # no audio, no network: only the decoder runs again
print(f"onset_threshold 0.9: {len(stricter.notes)} notes (frame threshold still {stricter.decoder.frame_threshold})")
try:
    result.redecode(onset_treshold=0.9)
except ValueError as error:
    print("a typo is an error:", error)

# %% Write it: every format of pianomtl.FORMATS, atomically
folder = Path(tempfile.mkdtemp(prefix="pianomtl-example-"))
for name in pianomtl.FORMATS:
    print("wrote", result.write(folder / f"take.{name}"))

# %% As a table (needs pandas) and as plain data
try:
    print(result.to_dataframe().head())
except ImportError as error:
    print(error)
print(sorted(result.to_dict()))

# %% Live: the same audio fed in 20 ms blocks to a Stream, events as they are decided
if not isinstance(audio, str):
    stream = pianomtl.Stream(rate=SR, transcriber=pianomtl.Transcriber())
    events = []
    for start in range(0, len(audio), SR // 50):
        events += stream.feed(audio[start : start + SR // 50])
    events += stream.close()
    ons = [e for e in events if e.type == "note_on"]
    print(f"stream: {len(ons)} note-ons, first at {ons[0].time:.3f} s" if ons else "stream: no notes")
    print(f"stream and offline agree on {len(stream.performance().notes)} vs {len(result.notes)} notes")
