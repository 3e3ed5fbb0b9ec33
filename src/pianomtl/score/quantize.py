"""Seconds to beats: note onsets and lengths snapped to a beat grid of quarters or thirds.

Every note's onset and offset become beat positions through the meter map (linear
between beats), counted from the first bar line. Each beat is then divided in four
(sixteenths in 4/4) or in three (triplet eighths), whichever fits that beat's onsets
better (thirds only if clearly better: straight rhythm is the common case), and every
onset snaps to its beat's grid. A length snaps to its onset's grid too (a triplet's length
in thirds), at least one step.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from pianomtl.core.midi import MeterMap, Note

DIVISIONS = (4, 3)
TRIPLET_MARGIN = 0.6
"""Thirds are chosen for a beat only if their snapping error is below this fraction of quarters' error."""


@dataclass(frozen=True)
class QuantisedNote:
    """One note on the grid: its performance, and its place in the score in beats from the first bar line."""

    index: int
    """Index of the note in the list given to :func:`quantise`."""
    key: int
    velocity: int
    start: Fraction
    length: Fraction


def bar_origin(meter: MeterMap, first_onset: float | None = None) -> int:
    """The beat index of the first bar line: the first downbeat, or one bar before it when the music
    starts before it (a pickup bar, written with rests before the pickup notes)."""
    first = meter.first_downbeat
    if first_onset is not None and meter.beat_position(first_onset) >= first - 1 / 8:
        return first
    return first - meter.beats_per_bar * max(1, -(-first // meter.beats_per_bar))


def _snap(position: float, division: int) -> Fraction:
    return Fraction(round(position * division), division)


def quantise(notes: list[Note], meter: MeterMap) -> list[QuantisedNote]:
    """Notes on the beat grid of ``meter`` (see the module's docstring), in the order given."""
    if not notes:
        return []
    origin = bar_origin(meter, min(n.onset for n in notes))
    starts = np.array([meter.beat_position(n.onset) for n in notes]) - origin
    ends = np.array([meter.beat_position(n.offset) for n in notes]) - origin
    beat_of = np.floor(starts + 1 / 8).astype(int)  # an onset just before a beat belongs to it
    division: dict[int, int] = {}
    for beat in np.unique(beat_of):
        phases = starts[beat_of == beat]
        errors = {d: float(np.mean(np.abs(phases * d - np.round(phases * d)) / d)) for d in DIVISIONS}
        division[int(beat)] = 3 if errors[3] < TRIPLET_MARGIN * errors[4] else 4
    result = []
    for index, note in enumerate(notes):
        d = division[int(beat_of[index])]
        start = max(_snap(starts[index], d), Fraction(0))
        length = max(_snap(ends[index] - float(start), d), Fraction(1, d))  # on the onset's grid: writable
        result.append(QuantisedNote(index, note.key, note.velocity, start, length))
    return result
