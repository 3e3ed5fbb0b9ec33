"""Notes and pedal → the five frame targets of the seed paper (§III, Fig. 2d).

Targets are stored compactly as one ``uint8`` matrix ``[frames, 353]`` (on, int,
off, velocity 0–127, sustain 0–127), so a corpus fits on disk and in page cache;
:func:`to_float` turns it into the ``[0, 1]`` targets the losses see.

Frame conventions (frame ``t`` is centred at ``t / 50`` s):

* onset frame ``a = round(onset * 50)``; end frame ``e = round(offset * 50)`` of the
  pedal-corrected, re-strike-cut offset, at least ``a + 1`` so that a note shorter
  than a frame still owns its onset frame;
* ``int`` covers frames ``[a, e)``; ``off`` marks frame ``e``; ``vel`` holds the
  velocity on frame ``a`` (maximum where two notes of a key share a frame);
* ``sus`` is the CC64 value in force at each frame, continuous (half-pedal kept);
* ``on``, ``off`` and ``vel`` are widened by a temporal maximum filter of length 3;
* keys outside A0–C8 are dropped with a warning; notes whose onset frame lies past
  the last frame (``a >= n_frames``) are dropped; notes running past the last frame
  are cut there (no ``off`` label).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.ndimage import maximum_filter1d

from pianomtl.constants import FPS, MIDI_MAX, MIN_KEY, N_KEYS, TARGET_MAX_FILTER, TASK_WIDTH, TASKS
from pianomtl.core.midi import Note, PedalEvent, Performance, sustain_notes

LABEL_SLICES: dict[str, slice] = {}
_start = 0
for _task in TASKS:
    LABEL_SLICES[_task] = slice(_start, _start + TASK_WIDTH[_task])
    _start += TASK_WIDTH[_task]
N_LABELS = _start  # 353
del _start, _task

WIDENED_TASKS = ("on", "off", "vel")


def time_to_frame(seconds: np.ndarray | float) -> np.ndarray:
    """Index of the frame whose centre is nearest to each time."""
    return np.rint(np.asarray(seconds, dtype=np.float64) * FPS).astype(np.int64)


def pedal_curve(pedal: list[PedalEvent], n_frames: int) -> np.ndarray:
    """CC64 value (0–127) in force at each frame centre; 0 before the first event."""
    if not pedal:
        return np.zeros(n_frames, dtype=np.uint8)
    events = sorted(pedal, key=lambda e: e.time)
    times = np.array([e.time for e in events])
    values = np.array([e.value for e in events], dtype=np.uint8)
    frame_times = np.arange(n_frames) / FPS
    index = np.searchsorted(times, frame_times + 1e-9, side="right") - 1
    return np.where(index >= 0, values[np.maximum(index, 0)], 0).astype(np.uint8)


def playable_notes(notes: list[Note]) -> list[Note]:
    """Drop notes outside the 88 piano keys, warning once with their count."""
    kept = [n for n in notes if MIN_KEY <= n.key < MIN_KEY + N_KEYS]
    if len(kept) < len(notes):
        warnings.warn(f"dropped {len(notes) - len(kept)} notes outside the piano range A0–C8", stacklevel=3)
    return kept


def compute_labels(performance: Performance, n_frames: int) -> np.ndarray:
    """The ``[n_frames, 353]`` uint8 label matrix for a performance (see module doc)."""
    labels = np.zeros((n_frames, N_LABELS), dtype=np.uint8)
    on = labels[:, LABEL_SLICES["on"]]
    active = labels[:, LABEL_SLICES["int"]]
    off = labels[:, LABEL_SLICES["off"]]
    velocity = labels[:, LABEL_SLICES["vel"]]
    notes = playable_notes(sustain_notes(performance))
    for note in notes:
        column = note.key - MIN_KEY
        start = int(time_to_frame(note.onset))
        if start >= n_frames or start < 0:
            continue
        end = max(int(time_to_frame(note.offset)), start + 1)
        on[start, column] = 1
        active[start : min(end, n_frames), column] = 1
        if end < n_frames:
            off[end, column] = 1
        velocity[start, column] = max(velocity[start, column], int(np.clip(note.velocity, 0, MIDI_MAX)))
    for task in WIDENED_TASKS:
        block = labels[:, LABEL_SLICES[task]]
        block[:] = maximum_filter1d(block, size=TARGET_MAX_FILTER, axis=0, mode="constant")
    labels[:, LABEL_SLICES["sus"].start] = pedal_curve(performance.pedal, n_frames)
    return labels


def to_float(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Split a label matrix (``[..., 353]`` uint8) into the five float32 targets in [0, 1]."""
    targets = {}
    for task in TASKS:
        block = labels[..., LABEL_SLICES[task]].astype(np.float32)
        targets[task] = block / MIDI_MAX if task in ("vel", "sus") else block
    return targets
