"""MIDI in and out: notes (key, onset, offset, velocity) and the sustain-pedal curve.

mido does the file format and the tempo map (iterating a ``MidiFile`` yields
messages with times in seconds, tempo changes applied, tracks merged), so type 0
and type 1 files read the same. This module only turns messages into notes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import mido
import numpy as np
from numpy.typing import ArrayLike

from pianomtl.constants import MIDI_MAX, PEDAL_CC, PEDAL_DOWN_ABOVE
from pianomtl.core.files import atomic_write

TICKS_PER_BEAT = 480
TEMPO_US_PER_BEAT = 500_000  # 120 bpm: 960 ticks per second, about 1 ms resolution


class MidiError(ValueError):
    """A MIDI file cannot be used; the message names the file and the reason."""


NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def key_name(key: int) -> str:
    """Scientific pitch name of a MIDI key (60 → ``C4``, 73 → ``C#5``, 21 → ``A0``)."""
    return f"{NOTE_NAMES[key % 12]}{key // 12 - 1}"


class Note(NamedTuple):
    """One played note: MIDI key number, onset and offset in seconds, velocity 1–127.

    A tuple, so it unpacks (``key, onset, offset, velocity = note``) and compares by value.

    >>> note = Note(key=73, onset=1.0, offset=1.5, velocity=64)
    >>> note.name, note.duration
    ('C#5', 0.5)
    """

    key: int
    onset: float
    offset: float
    velocity: int

    @property
    def name(self) -> str:
        """The key's scientific pitch name (``Note(73, 0.0, 0.5, 64).name == "C#5"``)."""
        return key_name(self.key)

    @property
    def duration(self) -> float:
        """Offset minus onset, in seconds."""
        return self.offset - self.onset


class PedalEvent(NamedTuple):
    """A sustain-pedal (CC64) value change at ``time`` seconds, value 0–127.

    The decoders write 127 (down) and 0 (up), or the curve's own values with
    ``half_pedal``; a MIDI file's pedal is down above 64.
    """

    time: float
    value: int


@dataclass
class Performance:
    """What a piano MIDI file says: notes sorted by onset, and the pedal curve."""

    notes: list[Note] = field(default_factory=list)
    pedal: list[PedalEvent] = field(default_factory=list)

    @property
    def end_time(self) -> float:
        """The time of the last note offset or pedal event (0 for an empty file)."""
        ends = [n.offset for n in self.notes] + [p.time for p in self.pedal]
        return max(ends, default=0.0)

    def note_array(self) -> np.ndarray:
        """Notes as a ``[N, 4]`` float64 array with columns key, onset, offset, velocity."""
        if not self.notes:
            return np.zeros((0, 4))
        return np.asarray(self.notes, dtype=np.float64)


def read_midi(path: str | Path) -> Performance:
    """Read all notes and CC64 events of a type 0 or 1 MIDI file (all channels merged).

    A key struck again while still held ends the held note at the new onset; notes
    never released end at the file's last event.
    """
    path = Path(path)
    if not path.exists():
        raise MidiError(f"{path}: file not found")
    try:
        midi_file = mido.MidiFile(str(path))
    except (OSError, EOFError, ValueError, KeyError, IndexError) as error:
        raise MidiError(f"{path}: not a readable MIDI file ({error})") from None
    if midi_file.type == 2:  # checked first: mido refuses to merge (iterate) type 2 tracks
        raise MidiError(f"{path}: MIDI type 2 (independent sequences) is not supported")
    messages = list(midi_file)
    now = 0.0
    held: dict[int, tuple[float, int]] = {}
    notes: list[Note] = []
    pedal: list[PedalEvent] = []
    for message in messages:
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            if message.note in held:
                onset, velocity = held.pop(message.note)
                notes.append(Note(message.note, onset, now, velocity))
            held[message.note] = (now, message.velocity)
        elif message.type in ("note_off", "note_on"):
            if message.note in held:
                onset, velocity = held.pop(message.note)
                notes.append(Note(message.note, onset, now, velocity))
        elif message.type == "control_change" and message.control == PEDAL_CC:
            pedal.append(PedalEvent(now, int(message.value)))
    for key, (onset, velocity) in held.items():
        notes.append(Note(key, onset, now, velocity))
    notes.sort(key=lambda n: (n.onset, n.key))
    return Performance(notes, pedal)


def next_strike_index(onsets: ArrayLike, keys: ArrayLike | None = None) -> np.ndarray:
    """For each note, the index of the next note of its key (``-1``: the key is not struck again).

    The re-strike rule, one for the whole package (targets, MIDI files, renderers, decoders):
    **a key struck again ends its held note** at the new onset, whatever its offset says.
    A key's notes follow one another in order of onset, notes at the same onset in the
    order given (the earlier one ends at once, as when a MIDI file strikes a held key
    again). ``onsets`` in any unit (seconds, frames, samples); ``keys=None``: one key.
    """
    onsets = np.asarray(onsets, dtype=np.float64)
    keys = np.zeros(len(onsets), dtype=np.int64) if keys is None else np.asarray(keys)
    order = np.lexsort((np.arange(len(onsets)), onsets, keys))
    result = np.full(len(onsets), -1, dtype=np.int64)
    same_key = keys[order[1:]] == keys[order[:-1]]
    result[order[:-1][same_key]] = order[1:][same_key]
    return result


def next_strike_time(onsets: ArrayLike, keys: ArrayLike | None = None, never: float = np.inf) -> np.ndarray:
    """For each note, the onset of the next note of its key, where the re-strike rule ends it
    (:func:`next_strike_index`); ``never`` where the key is not struck again."""
    onsets = np.asarray(onsets, dtype=np.float64)
    following = next_strike_index(onsets, keys)
    return np.where(following >= 0, onsets[following], never)


def seconds_to_ticks(seconds: float) -> int:
    return round(seconds * TICKS_PER_BEAT * 1e6 / TEMPO_US_PER_BEAT)


MAJOR_KEYS = ("Cb", "Gb", "Db", "Ab", "Eb", "Bb", "F", "C", "G", "D", "A", "E", "B", "F#", "C#")
MINOR_KEYS = ("Abm", "Ebm", "Bbm", "Fm", "Cm", "Gm", "Dm", "Am", "Em", "Bm", "F#m", "C#m", "G#m", "D#m", "A#m")
"""Key signatures by number of fifths, -7 (index 0) to +7, as MIDI key-signature events name them."""


@dataclass(frozen=True)
class MeterMap:
    """Where the beats fall, so that a MIDI file's bars follow the music (issue 26).

    Written by :func:`write_midi` as a tempo map (one tempo event per beat), a time
    signature (a pickup bar first when the music starts before a downbeat) and a key
    signature; the notes keep their times in seconds, only their ticks change. The
    beats come from :mod:`pianomtl.score` (estimated from the notes); this type is here
    because the MIDI writer, low in the package, must not depend on the estimator.
    """

    beats: tuple[float, ...]
    """Every beat in seconds, strictly increasing, starting at 0.0; past the last one the last tempo holds."""
    beats_per_bar: int = 4
    first_downbeat: int = 0
    """Index in :attr:`beats` of the first beat that starts a bar (beats before it: a pickup)."""
    key_fifths: int = 0
    """Sharps (positive) or flats (negative) of the key signature, -7 to 7."""
    key_minor: bool = False

    def __post_init__(self) -> None:
        beats = np.asarray(self.beats, dtype=np.float64)
        if len(beats) < 2 or beats[0] != 0.0 or np.any(np.diff(beats) <= 0):
            raise ValueError("a meter map needs two or more strictly increasing beats starting at 0.0")
        if not 1 <= self.beats_per_bar <= 16 or not 0 <= self.first_downbeat < len(beats):
            raise ValueError(f"bad bar: {self.beats_per_bar} beats per bar, first downbeat {self.first_downbeat}")
        if not -7 <= self.key_fifths <= 7:
            raise ValueError(f"key signature of {self.key_fifths} fifths")

    @cached_property
    def _beat_array(self) -> np.ndarray:
        return np.asarray(self.beats, dtype=np.float64)

    def beat_position(self, seconds: float) -> float:
        """The (fractional) beat index of a time: linear between beats, the last tempo after them."""
        beats = self._beat_array
        index = min(max(int(np.searchsorted(beats, seconds, side="right")) - 1, 0), len(beats) - 2)
        return index + (seconds - beats[index]) / (beats[index + 1] - beats[index])

    def ticks(self, seconds: float) -> int:
        return max(round(self.beat_position(seconds) * TICKS_PER_BEAT), 0)

    def meta_events(self) -> list[tuple[int, mido.MetaMessage]]:
        """``(tick, event)`` of the tempo map, time signatures and key signature."""
        events = []
        for index, (start, stop) in enumerate(zip(self.beats[:-1], self.beats[1:], strict=True)):
            tempo = min(max(round((stop - start) * 1e6), 1), 0xFFFFFF)
            events.append((index * TICKS_PER_BEAT, mido.MetaMessage("set_tempo", tempo=tempo)))
        pickup = self.first_downbeat % self.beats_per_bar
        if pickup:
            events.append((0, mido.MetaMessage("time_signature", numerator=pickup, denominator=4)))
        events.append(
            (pickup * TICKS_PER_BEAT, mido.MetaMessage("time_signature", numerator=self.beats_per_bar, denominator=4))
        )
        names = MINOR_KEYS if self.key_minor else MAJOR_KEYS
        events.append((0, mido.MetaMessage("key_signature", key=names[self.key_fifths + 7])))
        return events


def write_midi(
    path: str | Path,
    performance: Performance,
    program: int = 0,
    overwrite: bool = True,
    meter: MeterMap | None = None,
) -> None:
    """Write notes and pedal as a type 1 MIDI file (one piano track), atomically.

    ``meter``: write its tempo map, time and key signature, and place the notes by it
    (their times in seconds stay as they are, to the tick); ``None``: today's fixed
    120 bpm file with no time signature. ``overwrite=False``: :class:`FileExistsError`
    if ``path`` exists when the file is moved into place
    (:func:`pianomtl.core.files.atomic_write`).
    """
    path = Path(path)
    to_ticks = meter.ticks if meter is not None else seconds_to_ticks
    events: list[tuple[int, int, mido.Message]] = []  # (tick, order, message)
    # MIDI cannot hold one key twice: a note ends where its key is struck again (as read_midi reads it)
    following = next_strike_time([n.onset for n in performance.notes], [n.key for n in performance.notes])
    for note, cut in zip(performance.notes, following, strict=True):
        velocity = int(np.clip(round(note.velocity), 1, MIDI_MAX))
        start = to_ticks(note.onset)
        stop = max(to_ticks(note.offset), start + 1)
        if cut < np.inf:
            stop = min(stop, to_ticks(cut))
        # at equal ticks: releases first, then pedal, then new notes, so re-strikes stay separate
        events.append((start, 2, mido.Message("note_on", note=int(note.key), velocity=velocity)))
        events.append((stop, 0, mido.Message("note_off", note=int(note.key), velocity=0)))
    for event in performance.pedal:
        value = int(np.clip(round(event.value), 0, MIDI_MAX))
        events.append((to_ticks(event.time), 1, mido.Message("control_change", control=PEDAL_CC, value=value)))
    meta = meter.meta_events() if meter is not None else [(0, mido.MetaMessage("set_tempo", tempo=TEMPO_US_PER_BEAT))]
    events.extend((tick, -1, message) for tick, message in meta)  # at equal ticks: tempo before notes
    events.sort(key=lambda e: (e[0], e[1]))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name="Piano", time=0))
    track.append(mido.Message("program_change", program=program, time=0))
    previous = 0
    for tick, _, message in events:
        track.append(message.copy(time=tick - previous))
        previous = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    midi_file = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    midi_file.tracks.append(track)
    atomic_write(path, lambda target: midi_file.save(str(target)), overwrite=overwrite)


def pedal_down_intervals(pedal: list[PedalEvent], end_time: float = np.inf) -> list[tuple[float, float]]:
    """Time intervals ``[start, stop)`` during which CC64 is above the threshold."""
    intervals: list[tuple[float, float]] = []
    down_since: float | None = None
    for event in sorted(pedal, key=lambda e: e.time):
        is_down = event.value > PEDAL_DOWN_ABOVE
        if is_down and down_since is None:
            down_since = event.time
        elif not is_down and down_since is not None:
            intervals.append((down_since, event.time))
            down_since = None
    if down_since is not None:
        intervals.append((down_since, max(end_time, down_since)))
    return intervals


def sustain_notes(performance: Performance) -> list[Note]:
    """Notes with offsets moved to where the damper really falls (paper §III).

    A key released while the pedal is down keeps sounding until the pedal lifts;
    a note is cut where the same key is struck again. Offsets never move earlier
    than the key release.
    """
    intervals = pedal_down_intervals(performance.pedal, performance.end_time)
    starts = np.array([a for a, _ in intervals])
    extended: list[Note] = []
    for note in performance.notes:
        offset = note.offset
        index = int(np.searchsorted(starts, offset, side="right")) - 1
        if index >= 0 and intervals[index][0] <= offset < intervals[index][1]:
            offset = intervals[index][1]
        extended.append(note._replace(offset=offset))
    following = next_strike_time([n.onset for n in extended], [n.key for n in extended])
    result = [
        note._replace(offset=float(cut)) if cut < note.offset else note
        for note, cut in zip(extended, following, strict=True)
    ]
    result.sort(key=lambda n: (n.onset, n.key))
    return result
