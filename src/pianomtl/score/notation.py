"""The score itself: a music21 piano score (two staves by hand, voices, ties, rests, key, pedal, dynamics).

What music21 does well it does here: bars (``makeMeasures``), voices where notes
overlap within a staff (``makeVoices``), ties across bar lines (``makeTies``), rests,
beams and MusicXML. What it does not do is written here: which notes form a chord,
how long a note is written when the next chord comes before it is released (the
written length stops at the next chord unless the note is held a beat or more past
it — then it is a second voice), pitch names from the key (:mod:`pianomtl.score.key`),
dynamics from velocities (one mark per bar where the bar's level changes class) and
pedal marks from the CC64 curve.
"""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from typing import Any

import numpy as np

from pianomtl.core.midi import MeterMap, Note, PedalEvent, pedal_down_intervals
from pianomtl.score.hands import LEFT, RIGHT
from pianomtl.score.key import Key, spell
from pianomtl.score.quantize import QuantisedNote, bar_origin

DYNAMICS = ((0, "pp"), (40, "p"), (55, "mp"), (68, "mf"), (82, "f"), (100, "ff"))
"""Lowest median velocity of a bar for each dynamic mark."""

HOLD_PAST_NEXT = Fraction(1)
LEGATO = Fraction(3, 4)
"""A note lasting this fraction of the time to its hand's next chord is written up to that chord."""
"""Beats a note must sound past the next chord of its hand to be written as a second voice."""

PEDAL_MIN_BEATS = 1.0
PEDAL_MERGE_BEATS = 0.5
"""Pedal marks: presses shorter than a beat are not marked (a reader's score shows the pedalling's
shape, not every flutter of the decoded curve); a release shorter than half a beat joins two presses."""

UNMETERED_TEXT = "senza misura (free rhythm: bar lines are a nominal grid)"


def dynamic_of(velocity: float) -> str:
    mark = DYNAMICS[0][1]
    for lowest, name in DYNAMICS:
        if velocity >= lowest:
            mark = name
    return mark


def _voices(notes: list[QuantisedNote]) -> list[list[tuple[Fraction, Fraction, list[QuantisedNote]]]]:
    """One hand's notes as up to two voices of ``(start, length, chord notes)``."""
    by_start: dict[Fraction, list[QuantisedNote]] = defaultdict(list)
    for note in notes:
        by_start[note.start].append(note)
    starts = sorted(by_start)
    main: list[tuple[Fraction, Fraction, list[QuantisedNote]]] = []
    second: list[tuple[Fraction, Fraction, list[QuantisedNote]]] = []
    second_free = Fraction(0)
    for position, start in enumerate(starts):
        chord = by_start[start]
        following = starts[position + 1] if position + 1 < len(starts) else None
        longest = max(n.length for n in chord)
        if following is None:
            main.append((start, longest, chord))
            continue
        gap = following - start
        held = [n for n in chord if n.length >= gap + HOLD_PAST_NEXT]
        if held and len(held) < len(chord) and second_free <= start:
            length = min(n.length for n in held)
            second.append((start, length, held))
            second_free = start + length
            chord = [n for n in chord if n not in held]
            longest = max(n.length for n in chord)
        # legato: a note released within the last quarter of the gap is written up to the next chord
        main.append((start, gap if longest >= gap * LEGATO else longest, chord))
    return [main, second] if second else [main]


def build(
    quantised: list[QuantisedNote],
    hands: np.ndarray,
    meter: MeterMap,
    key: Key,
    tempo: float,
    pedal: list[PedalEvent] | None = None,
    notes: list[Note] | None = None,
    unmetered: bool = False,
    title: str | None = None,
) -> Any:
    """A music21 ``Score`` with a piano's two staves; see the module's docstring.

    ``hands[q.index]`` is the hand of each quantised note; ``notes`` (the performance,
    same indices) and ``pedal`` place the pedal marks.
    """
    from music21 import chord as m21chord
    from music21 import clef, expressions, instrument, layout, metadata, note, stream
    from music21 import key as m21key
    from music21 import meter as m21meter
    from music21 import pitch as m21pitch
    from music21 import tempo as m21tempo
    from music21.stream import makeNotation

    score = stream.Score()
    score.metadata = metadata.Metadata()
    score.metadata.title = title or "Transcription"
    score.metadata.composer = "pianomtl"
    bar_length = meter.beats_per_bar
    staves = []
    per_hand: dict[int, list[QuantisedNote]] = {RIGHT: [], LEFT: []}
    for q in quantised:
        per_hand[int(hands[q.index])].append(q)
    last_end = max((q.start + q.length for q in quantised), default=Fraction(bar_length))
    for hand in (RIGHT, LEFT):
        staff = stream.PartStaff()
        staff.id = "right" if hand == RIGHT else "left"
        staff.partName = "Piano" if hand == RIGHT else ""
        staff.insert(0, instrument.Piano())
        staff.insert(0, clef.TrebleClef() if hand == RIGHT else clef.BassClef())
        staff.insert(0, m21key.KeySignature(key.fifths))
        signature = m21meter.TimeSignature(f"{bar_length}/4")
        staff.insert(0, signature)
        if hand == RIGHT:
            staff.insert(0, m21tempo.MetronomeMark(number=round(tempo), referent=note.Note(type="quarter")))
            if unmetered:
                staff.insert(0, expressions.TextExpression(UNMETERED_TEXT))
        for voice in _voices(per_hand[hand]):
            for start, length, members in voice:
                pitches = []
                for q in sorted(members, key=lambda n: n.key):
                    step, alter = spell(q.key, key)
                    natural = "C D EF G A B".index(step)
                    octave = (q.key - natural - alter) // 12 - 1
                    pitch = m21pitch.Pitch(step=step, octave=octave)
                    if alter:  # (an explicit 0 would print a natural sign on every note)
                        pitch.accidental = m21pitch.Accidental(alter)
                    pitches.append(pitch)
                unique = list({p.nameWithOctave: p for p in pitches}.values())
                element = note.Note(unique[0]) if len(unique) == 1 else m21chord.Chord(unique)
                element.quarterLength = float(length) if length.denominator in (1, 2, 4, 8, 16) else length
                velocity = int(np.median([q.velocity for q in members]))
                element.volume.velocity = velocity
                staff.insert(float(start) if start.denominator in (1, 2, 4) else start, element)
        if hand == RIGHT:
            _add_dynamics(staff, quantised, bar_length, last_end)
        staves.append(staff)
    for staff in staves:
        # pad the shorter staff so both end at the same bar line
        bars = int(np.ceil(float(last_end) / bar_length)) or 1
        missing = bars * bar_length - staff.highestTime
        if missing > 0:
            staff.insert(staff.highestTime, note.Rest(quarterLength=missing))
        staff.makeMeasures(inPlace=True)
        for measure in staff.getElementsByClass(stream.Measure):
            measure.makeVoices(inPlace=True, fillGaps=True)
            if measure.voices:
                for voice in measure.voices:
                    voice.makeRests(refStreamOrTimeRange=(0, bar_length), fillGaps=True, inPlace=True)
            else:
                measure.makeRests(refStreamOrTimeRange=(0, bar_length), fillGaps=True, inPlace=True)
        staff.makeTies(inPlace=True)
        # accidentals against the key signature, decided here: left to the export, the upper staff's
        # were shown on every note of the signature (C♯ in F♯ minor)
        makeNotation.makeAccidentalsInMeasureStream(staff, useKeySignature=m21key.KeySignature(key.fifths))
    if pedal and notes:
        _add_pedal(staves[1], pedal, notes, meter)
    first_start = min((q.start for q in quantised), default=Fraction(0))
    if 0 < first_start < bar_length:  # the music starts after the first bar line: a pickup bar
        for staff in staves:
            _anacrusis(staff, first_start)
    group = layout.StaffGroup(staves, name="Piano", abbreviation="Pno.", symbol="brace", barTogether=True)
    for staff in staves:
        score.insert(0, staff)
    score.insert(0, group)
    return score


def _anacrusis(staff: Any, shift: Fraction) -> None:
    """Make the first bar a pickup: drop what lies before ``shift`` (rests), move the rest left, later bars too."""
    from music21 import note, stream

    measures = list(staff.getElementsByClass(stream.Measure))
    first = measures[0]
    amount = float(shift)
    containers = list(first.voices) or [first]
    for container in containers:
        for element in list(container.notesAndRests):
            start = float(element.offset)
            end = start + float(element.quarterLength)
            if end <= amount + 1e-9:
                container.remove(element)
            elif start < amount - 1e-9:
                if not isinstance(element, note.Rest):
                    return  # a note across the pickup's start (should not happen): leave the bar whole
                element.quarterLength = end - amount
                container.setElementOffset(element, 0.0)
            else:
                container.setElementOffset(element, start - amount)
    for element in first.getElementsByClass(("Dynamic", "TextExpression", "MetronomeMark")):
        first.setElementOffset(element, max(0.0, float(element.offset) - amount))
    first.paddingLeft = amount
    first.number = 0
    for number, measure in enumerate(measures[1:], start=1):
        staff.setElementOffset(measure, float(measure.offset) - amount)
        measure.number = number


def _add_dynamics(staff: Any, quantised: list[QuantisedNote], bar_length: int, end: Fraction) -> None:
    """A dynamic mark at every bar whose median velocity falls in another class than the previous bar's."""
    from music21 import dynamics

    bars: dict[int, list[int]] = defaultdict(list)
    for q in quantised:
        bars[int(q.start // bar_length)].append(q.velocity)
    previous = None
    for bar in sorted(bars):
        mark = dynamic_of(float(np.median(bars[bar])))
        if mark != previous:
            staff.insert(bar * bar_length, dynamics.Dynamic(mark))
            previous = mark


def _add_pedal(staff: Any, pedal: list[PedalEvent], notes: list[Note], meter: MeterMap) -> None:
    """Ped. … * marks (music21 ``PedalMark`` spanners) over the notes of the lower staff each press covers."""
    from music21 import expressions, note

    origin = bar_origin(meter, min(n.onset for n in notes))
    elements = [
        e for e in staff.recurse().getElementsByClass((note.Note, "Chord")) if not e.tie or e.tie.type == "start"
    ]
    if not elements:
        return
    positions = np.array([float(e.getOffsetInHierarchy(staff)) for e in elements])
    end = max(n.offset for n in notes)
    presses: list[list[float]] = []
    for down, up in pedal_down_intervals(pedal, end):
        start_beat, stop_beat = meter.beat_position(down) - origin, meter.beat_position(up) - origin
        if presses and start_beat - presses[-1][1] < PEDAL_MERGE_BEATS:
            presses[-1][1] = stop_beat  # a quick change: one mark
        else:
            presses.append([start_beat, stop_beat])
    for start_beat, stop_beat in presses:
        if stop_beat - start_beat < PEDAL_MIN_BEATS:
            continue
        inside = np.flatnonzero((positions >= start_beat - 0.25) & (positions < stop_beat - 0.125))
        if len(inside) == 0:
            continue
        mark = expressions.PedalMark(elements[inside[0]], elements[inside[-1]])
        mark.placement = "below"
        staff.insert(0, mark)
