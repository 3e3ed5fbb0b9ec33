"""Key and pitch spelling: Krumhansl–Schmuckler key finding, then note names from the key.

The key is the major or minor profile (Krumhansl & Kessler 1982) best correlated with
the piece's pitch-class histogram, each note weighted by its length (capped at 2 s:
a held final chord should not outvote the melody). Pitch spelling follows the key:
the scale's own names, the raised leading tone in minor (G♯ in A minor), and other
chromatic notes as sharps in sharp keys and flats in flat keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pianomtl.core.midi import Note

MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
"""Krumhansl & Kessler's probe-tone ratings, tonic first."""

STEPS = ("C", "D", "E", "F", "G", "A", "B")
NATURAL = (0, 2, 4, 5, 7, 9, 11)


@dataclass(frozen=True)
class Key:
    """A key: tonic pitch class (0 = C), mode, and its signature in fifths (−7 … 7)."""

    tonic: int
    minor: bool

    @property
    def fifths(self) -> int:
        """Sharps (+) or flats (−) of the signature, enharmonic keys resolved to at most 6 (F♯ not G♭... both 6)."""
        major_tonic = (self.tonic + 3) % 12 if self.minor else self.tonic
        fifths = (major_tonic * 7) % 12  # C=0, G=1, D=2 ... F=11
        return fifths - 12 if fifths > 6 else fifths

    @property
    def name(self) -> str:
        step, alter = spell(self.tonic + 60, self)
        return f"{step}{'#' * alter if alter > 0 else 'b' * -alter} {'minor' if self.minor else 'major'}"


def estimate_key(notes: list[Note]) -> Key:
    """The Krumhansl–Schmuckler key of the notes (C major for no notes)."""
    if not notes:
        return Key(0, False)
    histogram = np.zeros(12)
    for note in notes:
        histogram[note.key % 12] += min(max(note.offset - note.onset, 0.05), 2.0)
    best, best_r = Key(0, False), -np.inf
    for tonic in range(12):
        for minor, profile in ((False, MAJOR_PROFILE), (True, MINOR_PROFILE)):
            r = np.corrcoef(histogram, np.roll(profile, tonic))[0, 1] if histogram.std() > 0 else 0.0
            if r > best_r:
                best, best_r = Key(tonic, minor), r
    return best


def _scale_names(key: Key) -> dict[int, tuple[str, int]]:
    """Pitch class → (step, alter) for the seven notes of the key's signature."""
    names: dict[int, tuple[str, int]] = {}
    fifths = key.fifths
    sharps = ("F", "C", "G", "D", "A", "E", "B")[: max(fifths, 0)]
    flats = ("B", "E", "A", "D", "G", "C", "F")[: max(-fifths, 0)]
    for step, natural in zip(STEPS, NATURAL, strict=True):
        alter = 1 if step in sharps else -1 if step in flats else 0
        names[(natural + alter) % 12] = (step, alter)
    return names


def spell(key_number: int, key: Key) -> tuple[str, int]:
    """``(step, alter)`` of a MIDI key in ``key``: ``spell(68, A minor) == ("G", 1)``."""
    names = _scale_names(key)
    pc = key_number % 12
    if pc in names:
        return names[pc]
    if key.minor and pc == (key.tonic + 11) % 12:  # the raised leading tone
        step_index = (STEPS.index(names[(key.tonic + 10) % 12][0])) if (key.tonic + 10) % 12 in names else None
        if step_index is not None:
            step = STEPS[step_index]
            return step, names[(key.tonic + 10) % 12][1] + 1
    if key.fifths >= 0:  # chromatic: sharpen the note below
        step, alter = names.get((pc - 1) % 12, ("", 0))
        if step and alter <= 0:
            return step, alter + 1
    step, alter = names.get((pc + 1) % 12, ("", 0))
    if step and alter >= 0:
        return step, alter - 1
    step, alter = names.get((pc - 1) % 12, ("C", 0))
    return step, alter + 1
