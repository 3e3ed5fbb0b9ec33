"""Performance MIDI to render: real performances, procedural material, excerpts, augmentation.

Sources:

- the 10 MAESTRO performances and 4 POP909 songs shipped in the miditok 3.1.0 sdist
  (fetched at set-up, see :mod:`pianomtl.synthesis.sources`);
- :func:`procedural`: generated piano textures (scales, chords, arpeggios,
  melody + accompaniment, repeated notes, wide dynamics over all 88 keys) with
  pedalling that includes gradual, half-pedal CC64 values.

Every function here is pure: ``Performance`` in, new ``Performance`` out, randomness
only from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pianomtl.constants import MAX_KEY, MIDI_MAX, MIN_KEY, PEDAL_DOWN_ABOVE
from pianomtl.core.files import atomic_write
from pianomtl.core.midi import Note, PedalEvent, Performance, next_strike_time, read_midi

TICK_SECONDS = 1.0 / 960.0
"""Time resolution of :func:`pianomtl.core.midi.write_midi`; rendered times are rounded to it."""

CACHE_VERSION = 1
RING_OUT_S = 1.0
"""After an excerpt's end, held notes may continue this long before keys and pedal are released."""


# ---------------------------------------------------------------- sources


def load_midi_sources() -> dict[str, Performance]:
    """All real performances by name (``Maestro_1`` … ``Maestro_10``, ``POP909_008`` …)."""
    from pianomtl.synthesis.sources import require_maestro_midi, require_pop909_midi

    paths = require_maestro_midi() + require_pop909_midi()
    return {path.stem: _cached_source(path) for path in paths}


def _cached_source(path: Path) -> Performance:
    """``read_source`` with the parsed result kept beside the file (mido needs ~1 s per MAESTRO file)."""
    cache = path.with_name(path.name + ".parsed.pkl")
    stamp = (path.stat().st_size, path.stat().st_mtime_ns, CACHE_VERSION)
    try:
        with open(cache, "rb") as handle:
            saved_stamp, notes, pedal = pickle.load(handle)
        if saved_stamp == stamp:
            return Performance([Note(*n) for n in notes], [PedalEvent(*e) for e in pedal])
    except (OSError, EOFError, ValueError, TypeError, pickle.UnpicklingError):
        pass
    performance = read_source(path)
    try:
        parsed = (stamp, [tuple(n) for n in performance.notes], [tuple(e) for e in performance.pedal])
        atomic_write(cache, lambda target: target.write_bytes(pickle.dumps(parsed)))
    except OSError:  # a read-only asset folder: parse every time
        pass
    return performance


def read_source(path: str | Path) -> Performance:
    return keep_piano_range(read_midi(path))


def keep_piano_range(performance: Performance) -> Performance:
    """Drop notes outside the 88 keys and notes of zero length."""
    notes = [n for n in performance.notes if MIN_KEY <= n.key <= MAX_KEY and n.offset > n.onset]
    return Performance(notes, sorted(performance.pedal, key=lambda e: e.time))


# ---------------------------------------------------------------- excerpts


def pedal_value_at(pedal: list[PedalEvent], time: float) -> int:
    """CC64 value in force at ``time`` (0 before the first event)."""
    value = 0
    for event in pedal:
        if event.time > time:
            break
        value = event.value
    return value


def excerpt(performance: Performance, start: float, length: float, ring_out: float = RING_OUT_S) -> Performance:
    """The notes struck in ``[start, start + length)``, shifted to start at 0.

    The pedal state at ``start`` is carried in as an event at time 0. Notes may keep
    sounding (key held or pedal down) up to ``length + ring_out``; there every key is
    released and the pedal lifted, so labels and audio agree on where sound stops.
    """
    end = start + length
    stop = length + ring_out
    notes = [
        Note(n.key, n.onset - start, min(n.offset - start, stop), n.velocity)
        for n in performance.notes
        if start <= n.onset < end
    ]
    pedal = [PedalEvent(0.0, pedal_value_at(performance.pedal, start))]
    pedal += [PedalEvent(e.time - start, e.value) for e in performance.pedal if start < e.time < start + stop]
    if pedal[-1].value != 0:
        pedal.append(PedalEvent(stop, 0))
    return Performance(sorted(notes, key=lambda n: (n.onset, n.key)), pedal)


def random_excerpt(
    performance: Performance, rng: np.random.Generator, length: float, tries: int = 20
) -> tuple[float, Performance]:
    """A random excerpt of ``length`` seconds with at least a few notes; returns (start, excerpt)."""
    first = performance.notes[0].onset if performance.notes else 0.0
    last = max(first, performance.end_time - length)
    best: tuple[float, Performance] | None = None
    for _ in range(tries):
        start = float(rng.uniform(first, last)) if last > first else first
        start = round(start, 3)
        piece = excerpt(performance, start, length)
        if len(piece.notes) >= 5:
            return start, piece
        if best is None or len(piece.notes) > len(best[1].notes):
            best = (start, piece)
    assert best is not None
    return best


def consecutive_starts(performance: Performance, lengths: list[float]) -> list[float]:
    """Start times of back-to-back excerpts of the given lengths, from the first note on."""
    start = performance.notes[0].onset if performance.notes else 0.0
    starts = []
    for length in lengths:
        starts.append(round(start, 3))
        start += length
    return starts


# ---------------------------------------------------------------- augmentation


def transpose(performance: Performance, semitones: int) -> Performance:
    notes = [n._replace(key=n.key + semitones) for n in performance.notes]
    if any(not MIN_KEY <= n.key <= MAX_KEY for n in notes):
        raise ValueError(f"transposing by {semitones} leaves the 88 keys")
    return Performance(notes, list(performance.pedal))


def transpose_range(performance: Performance, limit: int) -> tuple[int, int]:
    """Smallest and largest shift within ±``limit`` keeping every note inside 21–108."""
    if not performance.notes:
        return 0, 0
    keys = [n.key for n in performance.notes]
    return max(-limit, MIN_KEY - min(keys)), min(limit, MAX_KEY - max(keys))


def stretch(performance: Performance, factor: float) -> Performance:
    """Scale every time by ``factor`` (> 1 is slower)."""
    notes = [n._replace(onset=n.onset * factor, offset=n.offset * factor) for n in performance.notes]
    pedal = [e._replace(time=e.time * factor) for e in performance.pedal]
    return Performance(notes, pedal)


def velocity_curve(performance: Performance, gamma: float) -> Performance:
    """v' = 127 · (v / 127) ^ γ, rounded, kept in 1–127."""
    notes = [
        n._replace(velocity=int(np.clip(round(MIDI_MAX * (n.velocity / MIDI_MAX) ** gamma), 1, MIDI_MAX)))
        for n in performance.notes
    ]
    return Performance(notes, list(performance.pedal))


def clamp_velocity(performance: Performance, low: int, high: int = MIDI_MAX) -> Performance:
    notes = [n._replace(velocity=int(np.clip(n.velocity, low, high))) for n in performance.notes]
    return Performance(notes, list(performance.pedal))


def quantize(performance: Performance, step: float = TICK_SECONDS) -> Performance:
    """Round times to the MIDI writer's tick so the written file equals what was rendered.

    Notes shorter than a tick become one tick long; repeated pedal values are merged.
    """

    def q(t: float) -> float:
        return round(t / step) * step

    notes = []
    for n in performance.notes:
        onset = q(n.onset)
        notes.append(Note(int(n.key), onset, max(q(n.offset), onset + step), int(n.velocity)))
    pedal: list[PedalEvent] = []
    for e in sorted(performance.pedal, key=lambda e: e.time):
        event = PedalEvent(q(e.time), int(e.value))
        if pedal and pedal[-1].time == event.time:
            pedal[-1] = event
        elif not pedal or pedal[-1].value != event.value:
            pedal.append(event)
    # the same key struck twice at one time is one note (the louder, the longer)
    merged: dict[tuple[int, float], Note] = {}
    for n in notes:
        other = merged.get((n.key, n.onset))
        if other is not None:
            n = n._replace(velocity=max(n.velocity, other.velocity), offset=max(n.offset, other.offset))
        merged[(n.key, n.onset)] = n
    notes = sorted(merged.values(), key=lambda n: (n.onset, n.key))
    # a key struck again before its previous note ends: end the previous note at the new onset
    following = next_strike_time([n.onset for n in notes], [n.key for n in notes])
    notes = [
        n._replace(offset=max(float(cut), n.onset + step)) if n.offset > cut else n
        for n, cut in zip(notes, following, strict=True)
    ]
    notes = [n for n in notes if n.offset > n.onset]
    return Performance(notes, pedal)


# ---------------------------------------------------------------- procedural material

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
_CHORDS = ((0, 4, 7), (0, 3, 7), (0, 4, 7, 10), (0, 3, 7, 10), (0, 4, 7, 11), (0, 3, 6), (0, 5, 7), (0, 4, 8))


def _scale_keys(root: int, mode: tuple[int, ...]) -> np.ndarray:
    keys = [k for k in range(MIN_KEY, MAX_KEY + 1) if (k - root) % 12 in mode]
    return np.array(keys)


class _Writer:
    """Collects notes and pedal events of a procedural performance."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.notes: list[Note] = []
        self.pedal: list[PedalEvent] = []

    def note(self, key: int, onset: float, duration: float, velocity: float) -> None:
        key = int(key)
        if MIN_KEY <= key <= MAX_KEY and duration > 0.01:
            self.notes.append(Note(key, onset, onset + duration, int(np.clip(round(velocity), 1, MIDI_MAX))))

    def pedal_ramp(self, time: float, start: int, stop: int, seconds: float) -> None:
        """A gradual pedal movement: CC64 events every ~15 ms from ``start`` to ``stop``."""
        steps = max(1, int(seconds / 0.015))
        for i in range(1, steps + 1):
            self.pedal.append(PedalEvent(time + seconds * i / steps, round(start + (stop - start) * i / steps)))

    def pedal_segments(self, changes: list[float], end: float) -> None:
        """Pedal down after each change time (legato pedalling), with varied depth and speed."""
        style = self.rng.choice(["full", "half", "mixed"], p=[0.5, 0.2, 0.3])
        value = 0
        for index, time in enumerate(changes):
            if index and value > 0:
                # lift just after the new onsets, then press again
                lift = float(self.rng.uniform(0.03, 0.12))
                self.pedal_ramp(time + 0.01, value, int(self.rng.integers(0, 30)), lift)
                time = time + 0.01 + lift
                value = self.pedal[-1].value
            if style == "full" or (style == "mixed" and self.rng.random() < 0.5):
                depth = int(self.rng.integers(90, 128))
            else:  # half pedal: around and above the threshold
                depth = int(self.rng.integers(PEDAL_DOWN_ABOVE - 24, PEDAL_DOWN_ABOVE + 30))
            self.pedal_ramp(time + 0.02, value, depth, float(self.rng.uniform(0.04, 0.2)))
            value = depth
        if value > 0:
            self.pedal_ramp(end, value, 0, float(self.rng.uniform(0.05, 0.2)))


def _contour(rng: np.random.Generator, n: int, low: float = 15, high: float = 120) -> np.ndarray:
    """A dynamics contour over ``n`` events: crescendo, diminuendo, hairpin or flat, plus jitter."""
    a, b = sorted(rng.uniform(low, high, size=2))
    shape = rng.integers(4)
    x = np.linspace(0, 1, max(n, 1))
    base = {0: a + (b - a) * x, 1: b - (b - a) * x, 2: a + (b - a) * np.sin(np.pi * x), 3: np.full_like(x, (a + b) / 2)}
    return base[int(shape)] + rng.normal(0, 6, size=x.shape)


def _scales(w: _Writer, t: float, seconds: float) -> float:
    rng = w.rng
    mode = [_MAJOR, _MINOR, tuple(range(12))][rng.integers(3)]
    keys = _scale_keys(int(rng.integers(12)), mode)
    step = float(rng.uniform(0.06, 0.35))
    n = int(seconds / step)
    span = int(rng.integers(8, min(len(keys), 36)))
    first = int(rng.integers(0, len(keys) - span))
    path = np.concatenate([np.arange(first, first + span), np.arange(first + span, first, -1)])
    velocity = _contour(rng, n)
    legato = float(rng.uniform(0.6, 1.3))
    for i in range(n):
        w.note(keys[path[i % len(path)]], t + i * step + rng.normal(0, 0.005), step * legato, velocity[i])
    return t + n * step


def _chords(w: _Writer, t: float, seconds: float) -> float:
    rng = w.rng
    changes = []
    while seconds > 0:
        duration = float(rng.uniform(0.25, 2.0))
        root = int(rng.integers(MIN_KEY, MAX_KEY - 12))
        chord = _CHORDS[rng.integers(len(_CHORDS))]
        keys = {root + interval + 12 * int(rng.integers(0, 3)) for interval in chord}
        if rng.random() < 0.5:
            keys.add(root - 12)
        velocity = float(rng.uniform(10, 127))
        for key in keys:
            w.note(key, t + abs(rng.normal(0, 0.008)), duration * rng.uniform(0.5, 1.0), velocity + rng.normal(0, 5))
        changes.append(t)
        t += duration
        seconds -= duration
    if rng.random() < 0.6:
        w.pedal_segments(changes, t)
    return t


def _arpeggios(w: _Writer, t: float, seconds: float) -> float:
    rng = w.rng
    changes = []
    step = float(rng.uniform(0.05, 0.25))
    while seconds > 0:
        root = int(rng.integers(MIN_KEY, 80))
        chord = _CHORDS[rng.integers(len(_CHORDS))]
        octaves = int(rng.integers(1, 4))
        keys = [root + 12 * o + i for o in range(octaves) for i in chord]
        if rng.random() < 0.5:
            keys = keys + keys[-2:0:-1]
        velocity = _contour(rng, len(keys))
        changes.append(t)
        hold = float(rng.uniform(0.1, 1.0)) * step * len(keys)
        for i, key in enumerate(keys):
            w.note(key, t + i * step, max(step, hold - i * step), velocity[i])
        t += step * len(keys)
        seconds -= step * len(keys)
    if rng.random() < 0.7:
        w.pedal_segments(changes, t)
    return t


def _melody_accompaniment(w: _Writer, t: float, seconds: float) -> float:
    rng = w.rng
    mode = [_MAJOR, _MINOR][rng.integers(2)]
    tonic = int(rng.integers(12))
    keys = _scale_keys(tonic, mode)
    beat = float(rng.uniform(0.3, 0.7))
    bars = max(1, int(seconds / (4 * beat)))
    melody_index = int(np.searchsorted(keys, rng.integers(64, 90)))
    loud = float(rng.uniform(50, 115))
    changes = []
    pattern = rng.integers(3)  # Alberti, waltz-like, block
    for bar in range(bars):
        start = t + bar * 4 * beat
        changes.append(start)
        root = int(rng.integers(36, 55))
        root -= (root - tonic) % 12
        chord = [root + i for i in _CHORDS[int(rng.integers(2))]]
        soft = loud * float(rng.uniform(0.45, 0.8))
        if pattern == 0:
            order = [0, 2, 1, 2] * 2
            for i, c in enumerate(order):
                w.note(chord[c] + 12, start + i * beat / 2, beat / 2, soft + rng.normal(0, 4))
        elif pattern == 1:
            w.note(chord[0], start, beat, soft + 8)
            for i in (1, 2, 3):
                for c in chord[1:]:
                    w.note(c + 12, start + i * beat, beat * 0.6, soft + rng.normal(0, 4))
        else:
            for c in chord:
                w.note(c, start, 4 * beat * 0.95, soft)
        position = 0.0
        while position < 4 * beat - 1e-6:
            length = beat * float(rng.choice([0.5, 1.0, 1.0, 2.0]))
            length = min(length, 4 * beat - position)
            melody_index = int(np.clip(melody_index + rng.integers(-3, 4), 0, len(keys) - 1))
            w.note(keys[melody_index], start + position + rng.normal(0, 0.006), length * 0.95, loud + rng.normal(0, 7))
            position += length
    end = t + bars * 4 * beat
    if rng.random() < 0.7:
        w.pedal_segments(changes, end)
    return end


def _repeated(w: _Writer, t: float, seconds: float) -> float:
    rng = w.rng
    while seconds > 0:
        key = int(rng.integers(MIN_KEY, MAX_KEY + 1))
        rate = float(rng.uniform(3, 14))
        count = int(rng.integers(4, 24))
        gap = float(rng.uniform(0.02, 0.5)) / rate
        velocity = _contour(rng, count, 10, 127)
        extra = [key + 12] if rng.random() < 0.3 and key + 12 <= MAX_KEY else []
        for i in range(count):
            for k in [key, *extra]:
                w.note(k, t + i / rate, 1 / rate - gap, velocity[i])
        t += count / rate + 0.2
        seconds -= count / rate + 0.2
    return t


def _dynamics(w: _Writer, t: float, seconds: float) -> float:
    """Isolated notes and dyads anywhere on the keyboard at any velocity (1–127)."""
    rng = w.rng
    while seconds > 0:
        gap = float(rng.uniform(0.1, 0.8))
        count = 1 if rng.random() < 0.6 else 2
        for key in rng.integers(MIN_KEY, MAX_KEY + 1, size=count):
            w.note(int(key), t, float(rng.uniform(0.1, 1.5)), float(rng.integers(1, MIDI_MAX + 1)))
        t += gap
        seconds -= gap
    return t


PATTERNS: dict[str, Callable[[_Writer, float, float], float]] = {
    "scales": _scales,
    "chords": _chords,
    "arpeggios": _arpeggios,
    "melody": _melody_accompaniment,
    "repeated": _repeated,
    "dynamics": _dynamics,
}


def procedural(rng: np.random.Generator, seconds: float) -> Performance:
    """About ``seconds`` of generated piano music: a sequence of random textures (4–12 s each)."""
    w = _Writer(rng)
    t = 0.0
    names = list(PATTERNS)
    while t < seconds:
        name = names[int(rng.integers(len(names)))]
        length = min(float(rng.uniform(4, 12)), seconds - t + 0.5)
        t = PATTERNS[name](w, t, length) + float(rng.uniform(0.0, 0.4))
    notes = sorted((n for n in w.notes if n.onset < seconds), key=lambda n: (n.onset, n.key))
    notes = [n._replace(onset=max(0.0, n.onset)) for n in notes]
    return excerpt(Performance(notes, sorted(w.pedal, key=lambda e: e.time)), 0.0, seconds)
