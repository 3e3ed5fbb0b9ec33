"""A score played like a person would: expressive performance MIDI with its ground truth (needs music21).

For the benchmark and the tests: a music21 score (the bundled corpus has Bach chorales,
Mozart's K. 545, Joplin, Clara Schumann's polonaises) becomes a :class:`Performance` with
rubato (a slow tempo curve around a base tempo, a ritardando at the end), spread chords,
a timing jitter of up to ±20 ms, and dynamics (a phrase arch, accented downbeats, a
louder top line), together with the truth a score-from-recording must find: every
beat and downbeat in seconds, the metre, the key signature, and each note's hand,
score position and written length.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from pianomtl.core.midi import Note, Performance


@dataclass
class Truth:
    """What the score says about a performance of it."""

    performance: Performance
    beats: np.ndarray
    downbeats: np.ndarray
    beats_per_bar: int
    key_fifths: int
    tempo: float
    """Mean tempo in beats per minute."""
    hands: np.ndarray
    """Per note of :attr:`performance` (0 right / upper staff, 1 left)."""
    positions: list[Fraction]
    """Per note: onset in beats from the first bar line."""
    lengths: list[Fraction]
    """Per note: written length in beats."""
    bar_of: list[int]
    """Per note: bar number (0 = the first full or pickup bar)."""


def _frac(value: float) -> Fraction:
    return Fraction(value).limit_denominator(48)


def perform(
    score: Any,
    seed: int = 0,
    bpm: float | None = None,
    rubato: float = 0.08,
    spread: float = 0.03,
    jitter: float = 0.02,
    max_bars: int | None = None,
    right_parts: int | None = None,
) -> Truth:
    """Play ``score`` (a music21 ``Score``) expressively; see the module's docstring.

    ``right_parts``: how many of the score's parts (from the top) the right hand plays
    (default: the upper half — a piano score's upper staff, a chorale's soprano and alto).
    ``max_bars``: only the first bars (a pickup bar counts as one).
    """
    from music21 import key as m21key
    from music21 import meter

    rng = np.random.default_rng(seed)
    score = score.stripTies(inPlace=False)
    parts = list(score.parts)
    right_parts = len(parts) // 2 if right_parts is None else right_parts
    first = parts[0]
    measures = list(first.getElementsByClass("Measure"))
    if max_bars is not None:
        measures = measures[:max_bars]
    signatures = list(first.recurse().getElementsByClass(meter.TimeSignature))
    signature = signatures[0] if signatures else meter.TimeSignature("4/4")
    beat = _frac(signature.beatDuration.quarterLength)
    per_bar = int(signature.beatCount)
    keys = list(score.recurse().getElementsByClass((m21key.KeySignature, m21key.Key)))
    fifths = int(keys[0].sharps) if keys else 0
    end_ql = _frac(measures[-1].offset + measures[-1].duration.quarterLength)
    # the beat grid in quarter lengths, pickup bars counted from their end
    beat_ql: list[Fraction] = []
    downbeat_ql: list[Fraction] = []
    for measure in measures:
        start = _frac(measure.offset)
        length = _frac(measure.duration.quarterLength)
        full = beat * per_bar
        bar_start = start + length - full if length < full and measure is measures[0] else start
        if bar_start == start:
            downbeat_ql.append(start)
        k = 0
        while bar_start + k * beat < start + length:
            if bar_start + k * beat >= start:
                beat_ql.append(bar_start + k * beat)
            k += 1
    bar_origin = downbeat_ql[0] - (beat * per_bar if downbeat_ql[0] > 0 else 0)
    # tempo curve: seconds per beat as a function of score position
    base = bpm if bpm is not None else float(rng.uniform(66, 108))
    total_beats = float(end_ql / beat)
    phrase = float(rng.uniform(4, 8)) * per_bar  # a phrase of 4-8 bars, in beats
    grid = np.linspace(0, total_beats, int(total_beats * 48) + 2)
    wobble = np.convolve(rng.normal(0, 1, len(grid)), np.ones(96) / np.sqrt(96), mode="same")
    factor = 1 + rubato * np.sin(2 * np.pi * grid / phrase + rng.uniform(0, 6.3)) + 0.3 * rubato * wobble
    factor *= 1 + 0.25 * np.clip((grid - (total_beats - 4)) / 4, 0, 1)  # final ritardando
    seconds_per_beat = 60 / base * factor
    clock = np.concatenate([[0], np.cumsum(np.diff(grid) * seconds_per_beat[1:])]) + 0.5

    def time_of(ql: Fraction) -> float:
        return float(np.interp(float(ql / beat), grid, clock))

    events: list[tuple[float, int, float, int, int, Fraction, Fraction]] = []
    for part_index, part in enumerate(parts):
        hand = 0 if part_index < right_parts else 1
        for element in part.flatten().notes:
            offset = _frac(element.getOffsetInHierarchy(part))
            if offset >= end_ql:
                continue
            length = _frac(element.duration.quarterLength)
            if length <= 0:
                continue  # grace notes
            for pitch in getattr(element, "pitches", ()):
                events.append((0.0, int(pitch.midi), 0.0, 0, hand, offset, length))
    if not events:
        raise ValueError("the score has no notes in the bars asked for")
    # timing: one jitter per (hand, onset), chords spread upwards now and then
    notes: list[Note] = []
    truth_rows = []
    groups: dict[tuple[int, Fraction], list[int]] = {}
    for index, event in enumerate(events):
        groups.setdefault((event[4], event[5]), []).append(index)
    onset_of = np.zeros(len(events))
    for (_, offset), members in groups.items():
        shift = float(np.clip(rng.normal(0, jitter / 2), -jitter, jitter))
        arpeggio = spread / max(len(members) - 1, 1) if len(members) > 1 and rng.random() < 0.3 else 0.0
        for rank, index in enumerate(sorted(members, key=lambda i: events[i][1])):
            onset_of[index] = time_of(offset) + shift + rank * arpeggio + rng.uniform(-0.004, 0.004)
    downbeat_set = set(downbeat_ql)
    top_of = {k: max(events[i][1] for i in m) for k, m in groups.items()}
    for index, (_, key_number, _, _, hand, offset, length) in enumerate(events):
        arch = 12 * np.sin(np.pi * float(offset / end_ql))
        accent = 10 if offset in downbeat_set else 0
        melody = 8 if hand == 0 and key_number == top_of[(hand, offset)] else 0
        velocity = int(np.clip(52 + arch + accent + melody + rng.normal(0, 5), 20, 120))
        onset = float(onset_of[index])
        offset_s = time_of(offset + length) - 0.1 * (time_of(offset + length) - time_of(offset)) - 0.01
        notes.append(Note(key_number, onset, max(offset_s, onset + 0.05), velocity))
        bar = int((offset - bar_origin) // (beat * per_bar))
        truth_rows.append((hand, (offset - bar_origin) / beat, length / beat, bar))
    order = sorted(range(len(notes)), key=lambda i: (notes[i].onset, notes[i].key))
    first_onset = min(n.onset for n in notes)
    last_onset = max(n.onset for n in notes)
    beats = np.array([time_of(q) for q in beat_ql])
    beats = beats[(beats >= first_onset - 0.07) & (beats <= last_onset + 0.07)]
    downbeats = np.array([time_of(q) for q in downbeat_ql])
    downbeats = downbeats[(downbeats >= first_onset - 0.07) & (downbeats <= last_onset + 0.07)]
    tempo = 60 * (len(beats) - 1) / (beats[-1] - beats[0]) if len(beats) > 1 else base
    return Truth(
        performance=Performance([notes[i] for i in order], []),
        beats=beats,
        downbeats=downbeats,
        beats_per_bar=per_bar,
        key_fifths=fifths,
        tempo=float(tempo),
        hands=np.array([truth_rows[i][0] for i in order]),
        positions=[truth_rows[i][1] for i in order],
        lengths=[truth_rows[i][2] for i in order],
        bar_of=[truth_rows[i][3] for i in order],
    )
