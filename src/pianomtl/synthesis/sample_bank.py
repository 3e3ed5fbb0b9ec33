"""The Salamander grand's samples as the sample engine plays them: a memory-mapped SF2 and release samples.

:func:`load_bank` reads the SoundFont that :mod:`pianomtl.synthesis.salamander` builds (480
notes, 30 keys × 16 velocity layers, mono 32 kHz, tuned) through a memory map, so that worker
processes share it, and decodes the 88 release (damper) samples. A :class:`SampleBank` is all
:func:`pianomtl.synthesis.piano.render` needs of an instrument's recordings; the parametric
engine (:mod:`pianomtl.synthesis.modal`) synthesises one of its own.
"""

from __future__ import annotations

import functools
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pianomtl.constants import MAX_KEY, MIN_KEY, N_KEYS
from pianomtl.synthesis.salamander import LAYERS
from pianomtl.synthesis.salamander import SAMPLE_RATE as RATE

RELEASE_FILE = re.compile(r"^rel(\d+)\.ogg$")
RELEASE_LEAD_IN_LEVEL = 0.01
"""A release sample starts where it first reaches 1 % of its peak (its silent lead-in is cut)."""
LEVEL_WINDOW_S = 0.2
"""The first 200 ms of a sample define its loudness (to decouple timbre and loudness)."""


class BankError(ValueError):
    """The sample files are not what the engine expects; the one-line message says why."""


@dataclass
class SampleBank:
    """The Salamander samples as the engine uses them (loaded once per process)."""

    samples: np.ndarray  # int16, the SF2's sample chunk (memory-mapped)
    start: np.ndarray  # [n] first point of each sample in ``samples``
    stop: np.ndarray  # [n]
    pitch: np.ndarray  # [n] sounding pitch (fractional MIDI key), as measured at the build
    table: np.ndarray  # [N_KEYS, LAYERS] the sample each key plays per layer (nearest in pitch)
    level_db: np.ndarray  # [N_KEYS, LAYERS] loudness (RMS dB of the first 200 ms) of that sample
    release: np.ndarray  # [N_KEYS, m] float32 release samples at RATE


def _sf2_chunks(data: np.ndarray) -> dict[bytes, tuple[int, int]]:
    """Offsets and sizes of the leaf chunks of a RIFF file."""
    if bytes(data[:4]) != b"RIFF" or bytes(data[8:12]) != b"sfbk":
        raise BankError("not a SoundFont (RIFF sfbk) file")
    chunks: dict[bytes, tuple[int, int]] = {}

    def walk(position: int, end: int) -> None:
        while position + 8 <= end:
            tag = bytes(data[position : position + 4])
            size = struct.unpack("<I", bytes(data[position + 4 : position + 8]))[0]
            if tag == b"LIST":
                walk(position + 12, position + 8 + size)
            else:
                chunks[tag] = (position + 8, size)
            position += 8 + size + (size & 1)

    walk(12, len(data))
    return chunks


@functools.cache
def load_bank(sf2: str, release_dir: str) -> SampleBank:
    """Map the SF2 built by :mod:`pianomtl.synthesis.salamander` and decode the release samples."""
    import soundfile
    import soxr

    data = np.memmap(sf2, dtype=np.uint8, mode="r")
    chunks = _sf2_chunks(data)
    offset, size = chunks[b"smpl"]
    samples = np.frombuffer(data, dtype="<i2", count=size // 2, offset=offset)
    offset, size = chunks[b"shdr"]
    headers = bytes(data[offset : offset + size])
    start, stop, pitch, label, layer = [], [], [], [], []
    for index in range(size // 46 - 1):  # the last header is the terminal "EOS"
        name, first, last, _, _, rate, root, correction, _, _ = struct.unpack(
            "<20sIIIIIBbHH", headers[index * 46 : (index + 1) * 46]
        )
        match = re.match(rb"s(\d+)v(\d+)_", name)
        if match is None or rate != RATE:
            raise BankError(f"{sf2}: sample {name!r} is not from pianomtl's Salamander build")
        start.append(first)
        stop.append(last)
        pitch.append(root - correction / 100.0)  # salamander.Sample: correction = (root − pitch) · 100
        label.append(int(match.group(1)))
        layer.append(int(match.group(2)))
    pitch_array, layer_array = np.array(pitch), np.array(layer)
    table = np.zeros((N_KEYS, LAYERS), dtype=np.int64)
    keys = np.arange(MIN_KEY, MAX_KEY + 1)
    for number in range(1, LAYERS + 1):
        members = np.flatnonzero(layer_array == number)
        if len(members) == 0:
            raise BankError(f"{sf2}: velocity layer {number} has no samples")
        nearest = np.argmin(np.abs(keys[:, None] - pitch_array[members][None, :]), axis=1)
        table[:, number - 1] = members[nearest]
    start_array, stop_array = np.array(start, dtype=np.int64), np.array(stop, dtype=np.int64)
    window = int(LEVEL_WINDOW_S * RATE)
    heads = [samples[a : min(b, a + window)].astype(np.float64) / 32768 for a, b in zip(start, stop, strict=True)]
    levels = np.array([np.sqrt(np.mean(head**2)) for head in heads])
    level_db = 20 * np.log10(levels[table] + 1e-9)

    release: list[np.ndarray] = [np.zeros(0, np.float32)] * N_KEYS
    for path in Path(release_dir).glob("rel*.ogg"):
        match = RELEASE_FILE.match(path.name)
        if match is None or not 1 <= int(match.group(1)) <= N_KEYS:
            continue
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        mono = soxr.resample(audio.mean(axis=1), rate, RATE).astype(np.float32)
        # trim the silent lead-in (5–50 ms in the files), as the SF2 build does for the notes
        first = int(np.argmax(np.abs(mono) > RELEASE_LEAD_IN_LEVEL * np.max(np.abs(mono))))
        release[int(match.group(1)) - 1] = mono[max(0, first - int(0.001 * RATE)) :]
    missing = [MIN_KEY + i for i, r in enumerate(release) if len(r) == 0]
    if missing:
        raise BankError(f"{release_dir}: release samples missing for keys {missing[:5]}…")
    length = max(len(r) for r in release)
    release_array = np.zeros((N_KEYS, length), np.float32)
    for index, sample in enumerate(release):
        release_array[index, : len(sample)] = sample / (np.max(np.abs(sample)) + 1e-9)  # peak 1: level set per variant
    return SampleBank(samples, start_array, stop_array, pitch_array, table, level_db, release_array)


def require_bank() -> SampleBank:
    """The sample bank, or the one-line :class:`~pianomtl.synthesis.sources.AssetError` naming what is missing."""
    from pianomtl.synthesis import sources

    sf2 = sources.require_salamander_sf2()
    release = sources.require_salamander_release()
    return load_bank(str(sf2), str(release))
