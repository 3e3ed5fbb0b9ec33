"""Beats, downbeats, tempo and metre from transcribed notes (numpy only, nothing learnt, nothing downloaded).

The transcription already knows when every note starts and how hard it was struck —
a cleaner onset signal than any audio novelty curve. So:

1. **onset strength**: each note onset adds ``0.5 + velocity / 127`` to a 100 fps curve
   (a chord counts more than a note, a loud note more than a soft one), compressed with
   a square root and smoothed by a 20 ms Gaussian (spread chords merge);
2. **tempo**: the curve's autocorrelation over 40–220 bpm, weighted by a log-normal
   prior around 100 bpm (one octave wide) and with the comb of its multiples (a true
   beat period recurs at 2×, 3×, 4×), picks the beat period;
3. **beats**: dynamic programming (Ellis 2007): the best chain of beats that sits on
   strong onsets while each inter-beat interval stays near the one before it (a
   log-ratio penalty against the *local* period, so rubato is followed);
4. **downbeats and metre**: every beat gets an accent from the notes near it — the
   onset strength at it, how low its bass is, how long its notes last, how much the
   harmony (pitch-class profile) changes there — and the metre (2, 3 or 4 beats) and
   phase whose downbeats stand out most are chosen;
5. **confidence**: how many onsets fall on a subdivision grid of the beats, against a
   random placement. Below :data:`CONFIDENT` the music is called unmetered (free
   rhythm): the score is still written, at a nominal grid, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pianomtl.core.midi import MeterMap, Note

FPS = 100
"""Frames per second of the onset-strength curve (10 ms: finer than the 50 fps transcription)."""

MIN_BPM, MAX_BPM, PRIOR_BPM = 40.0, 220.0, 85.0
PRIOR_OCTAVES = 0.75
"""The tempo range searched and the centre of the log-normal prior (one octave standard deviation)."""

TIGHTNESS = 60.0
"""Weight of the DP's log-ratio penalty on changes of the inter-beat interval (Ellis used 100 for pop
music in strict time; lower follows rubato)."""

GLOBAL_PULL = 0.25
"""Weight, relative to :data:`TIGHTNESS`, of the DP's penalty against the piece's period (the local
interval's penalty has weight 1): keeps a chain from drifting to another tempo octave."""

CONFIDENT = 0.8
"""Below this :attr:`BeatGrid.confidence` the notes are called unmetered (free rhythm). Measured: random
onsets (exponential gaps, 30–100 notes, 8 sequences) 0.50–0.76 — the beat tracker bends its beats
towards them, so chance does better than uniform phases would —; the benchmark's performances
(seed 1) 0.89–1.00; a transcribed chorale 0.86."""

METRES = (4, 3, 2)
METRE_PRIOR = {4: 1.0, 3: 1.0, 2: 0.85}
"""Beats per bar considered and their weight: 2/4's downbeat pattern is 4/4's half-bar one, so 4 is
preferred where both fit."""

SALIENCE = {"accent": 2.0, "bass": 1.0, "held": 1.0, "change": 1.0, "density": 0.5}
"""Weights of a beat's features in its downbeat salience (each z-scored over the piece). The accent's
2.0 was chosen on the benchmark's seed-0 performances, whose player accents downbeats (+10 velocity):
with pianists who do not, bass, length and harmony change carry the decision (docs/score.md)."""

HALVE_ABOVE_BPM = 120.0
HALVE_CONTRAST = 1.4
"""When beats are taken two at a time (:func:`tactus`): faster than this, and a downbeat contrast this many
times stronger in pairs."""

NEAR = 0.07
"""Seconds: an onset this close to a beat belongs to it (mir_eval's beat window, 70 ms)."""


@dataclass(frozen=True)
class BeatGrid:
    """What the notes say about time: every beat, which start bars, and how sure that is."""

    beats: np.ndarray
    """Beat times in seconds over the notes (increasing; may be empty for no notes)."""
    beats_per_bar: int
    first_downbeat: int
    """Index in :attr:`beats` of the first beat that starts a bar."""
    tempo: float
    """Median tempo in beats per minute."""
    confidence: float
    """0–1: how much better the onsets fit the beats' subdivisions than random placement would."""

    @property
    def metered(self) -> bool:
        return self.confidence >= CONFIDENT and len(self.beats) >= 4

    @property
    def downbeats(self) -> np.ndarray:
        return self.beats[self.first_downbeat :: self.beats_per_bar]

    def extended(self, start: float = 0.0, stop: float | None = None) -> np.ndarray:
        """The beats continued backwards to ``start`` and forwards past ``stop`` at the edge tempi.

        The first returned beat is exactly ``start`` (the time before the first real beat,
        up to 1.5 periods, gets a beat of its own); the last is at or after ``stop``.
        """
        beats = list(self.beats) if len(self.beats) >= 2 else [start + 0.5, start + 1.0]
        first_period = beats[1] - beats[0]
        while beats[0] - first_period > start + 0.5 * first_period:
            beats.insert(0, beats[0] - first_period)
        if beats[0] > start:
            beats.insert(0, start)
        elif beats[0] < start:
            beats = [start, *[b for b in beats if b > start]]
        last_period = beats[-1] - beats[-2]
        stop = beats[-1] if stop is None else stop
        while beats[-1] < stop:
            beats.append(beats[-1] + last_period)
        return np.asarray(beats)

    def meter_map(self, end: float, key_fifths: int = 0, key_minor: bool = False) -> MeterMap:
        """A :class:`~pianomtl.core.midi.MeterMap` from time 0 to past ``end`` for the MIDI writer."""
        beats = self.extended(0.0, end)
        first = self.beats[self.first_downbeat] if len(self.beats) else beats[0]
        index = int(np.argmin(np.abs(beats - first)))
        return MeterMap(tuple(float(b) for b in beats), self.beats_per_bar, index, key_fifths, key_minor)


def onset_weight(note: Note, metrical: bool = False) -> float:
    """How much a note's onset says about the beat: louder more; with ``metrical``, longer and lower more.

    The metrical weight is for choosing the tempo: a run of short notes repeats at the
    sub-beat, the long and low notes under it at the beat and the bar.
    """
    weight = 0.5 + note.velocity / 127
    if metrical:
        weight *= 1 + np.log2(1 + min(max(note.offset - note.onset, 0.0), 2.0) / 0.15)
        weight *= 1 + max(0.0, (72 - note.key) / 24)
    return weight


def onset_strength(notes: list[Note], fps: int = FPS, metrical: bool = False) -> np.ndarray:
    """The onset-strength curve of the notes: weighted impulses, square-root compressed, 20 ms smoothed."""
    if not notes:
        return np.zeros(1)
    frames = np.array([round(n.onset * fps) for n in notes])
    curve = np.zeros(int(frames.max()) + fps)
    np.add.at(curve, frames, [onset_weight(n, metrical) for n in notes])
    curve = np.sqrt(curve)
    sigma = 0.02 * fps
    taps = np.arange(-3 * round(sigma), 3 * round(sigma) + 1)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    return np.convolve(curve, kernel / kernel.max(), mode="same")


def local_autocorrelation(curve: np.ndarray, fps: int = FPS, window: float = 8.0) -> np.ndarray:
    """The autocorrelation averaged over 8 s windows (hop 2 s), each normalised: a tempogram's mean.

    Over a whole piece rubato smears the long lags (a beat period recurs at slightly
    different lags); within a few seconds the tempo barely moves.
    """
    size = int(window * fps)
    if len(curve) <= size:
        starts = [0]
        size = len(curve)
    else:
        starts = list(range(0, len(curve) - size + 1, 2 * fps))
    total = np.zeros(size)
    for start in starts:
        segment = curve[start : start + size]
        centred = segment - segment.mean()
        spectrum = np.fft.rfft(centred, 2 * size)
        acf = np.fft.irfft(spectrum * np.conj(spectrum))[:size]
        if acf[0] > 1e-12:
            total += acf / acf[0] * (size / np.maximum(size - np.arange(size), 1))  # unbiased
    return total / len(starts)


def estimate_period(curve: np.ndarray, fps: int = FPS) -> float:
    """The beat period in frames: autocorrelation with a comb over multiples and a log-normal tempo prior."""
    acf = local_autocorrelation(curve, fps)
    n = len(acf)
    lags = np.arange(int(fps * 60 / MAX_BPM), int(fps * 60 / MIN_BPM) + 1)
    lags = lags[lags * 2 < n] if np.any(lags * 2 < n) else lags[:1]

    def at(lag: np.ndarray) -> np.ndarray:
        lag = np.clip(np.round(lag).astype(int), 0, n - 1)
        return np.maximum(acf[lag], 0)

    comb = at(lags) + 0.5 * at(2 * lags) + 0.33 * at(3 * lags) + 0.25 * at(4 * lags)
    bpm = 60 * fps / lags
    prior = np.exp(-0.5 * (np.log2(bpm / PRIOR_BPM) / PRIOR_OCTAVES) ** 2)
    best = int(lags[int(np.argmax(comb * prior))])
    # parabolic refinement of the peak
    if 1 <= best < n - 1:
        a, b, c = acf[best - 1], acf[best], acf[best + 1]
        denominator = a - 2 * b + c
        if denominator < 0:
            return best + 0.5 * (a - c) / denominator
    return float(best)


def track_beats(curve: np.ndarray, period: float, tightness: float = TIGHTNESS) -> np.ndarray:
    """Beat frames by dynamic programming (Ellis 2007), the interval penalised against the previous one.

    ``score[t] = strength[t] + max_p (score[p] - tightness * log((t - p) / local[p])²)`` over
    predecessors ``p`` 0.5–2 periods back, where ``local[p]`` is the interval that led to
    ``p`` (the global period where none did): tempo may drift beat by beat, not jump.
    """
    n = len(curve)
    strength = curve / (curve.std() + 1e-12)
    score = strength.copy()
    back = np.full(n, -1)
    local = np.full(n, float(period))
    lo, hi = max(round(period * 0.5), 1), round(period * 2.0)
    for t in range(lo, n):
        start = max(t - hi, 0)
        previous = np.arange(start, t - lo + 1)
        if len(previous) == 0:
            continue
        interval = t - previous
        # against the local interval and, more weakly, the global period (stops slow drift to octaves)
        penalty = tightness * np.log(interval / local[previous]) ** 2
        penalty += GLOBAL_PULL * tightness * np.log(interval / period) ** 2
        candidate = score[previous] - penalty
        best = int(np.argmax(candidate))
        if candidate[best] > 0:
            score[t] = strength[t] + candidate[best]
            back[t] = previous[best]
            local[t] = interval[best]
    # the chain ends at the best score among the last period's frames
    tail = np.arange(max(n - round(period) - 1, 0), n)
    t = int(tail[np.argmax(score[tail])])
    chain = [t]
    while back[t] >= 0:
        t = int(back[t])
        chain.append(t)
    return np.asarray(chain[::-1], dtype=np.float64)


def _beat_features(notes: list[Note], beats: np.ndarray) -> np.ndarray:
    """Per beat: accent, bass depth, note length, harmony change, density — z-scored, summed with weights."""
    onsets = np.array([n.onset for n in notes])
    keys = np.array([n.key for n in notes])
    velocity = np.array([n.velocity for n in notes], dtype=np.float64)
    length = np.array([n.offset - n.onset for n in notes])
    period = np.median(np.diff(beats)) if len(beats) > 1 else 0.5
    window = min(NEAR, 0.2 * period)
    nearest = np.argmin(np.abs(onsets[:, None] - beats[None, :]), axis=1)
    on_beat = np.abs(onsets - beats[nearest]) <= window
    count = len(beats)
    accent = np.zeros(count)
    bass = np.full(count, np.nan)
    held = np.zeros(count)
    density = np.zeros(count)
    for index in range(count):
        mine = on_beat & (nearest == index)
        if mine.any():
            accent[index] = velocity[mine].max() / 127
            bass[index] = -keys[mine].min()
            held[index] = np.log2(1 + length[mine].max() / period)
            density[index] = mine.sum()
    bass = np.where(np.isnan(bass), np.nanmin(bass) if np.isfinite(bass).any() else 0, bass)
    # harmony: pitch-class profile of the notes sounding in each beat's span
    edges = np.append(beats - 0.25 * period, beats[-1] + 0.75 * period)
    chroma = np.zeros((count, 12))
    offsets = onsets + length
    for index in range(count):
        lo, hi = edges[index], edges[index + 1]
        overlap = np.clip(np.minimum(offsets, hi) - np.maximum(onsets, lo), 0, None)
        np.add.at(chroma[index], keys % 12, overlap)
    norms = np.linalg.norm(chroma, axis=1, keepdims=True)
    chroma = chroma / np.maximum(norms, 1e-9)
    change = np.zeros(count)
    change[1:] = 1 - np.sum(chroma[1:] * chroma[:-1], axis=1)
    change[0] = change[1:].mean() if count > 1 else 0

    def z(values: np.ndarray) -> np.ndarray:
        spread = values.std()
        return (values - values.mean()) / spread if spread > 1e-9 else np.zeros_like(values)

    features = {"accent": accent, "bass": bass, "held": held, "change": change, "density": density}
    return sum(SALIENCE[name] * z(values) for name, values in features.items())


def choose_metre(notes: list[Note], beats: np.ndarray) -> tuple[int, int]:
    """``(beats per bar, index of the first downbeat)``: the metre and phase whose downbeats stand out most."""
    return _metre_and_contrast(notes, beats)[0]


def _metre_and_contrast(notes: list[Note], beats: np.ndarray) -> tuple[tuple[int, int], float]:
    if len(beats) < 4:
        return (4, 0), 0.0
    salience = _beat_features(notes, beats)
    best, best_score = (4, 0), -np.inf
    for metre in METRES:
        if len(beats) < 2 * metre:
            continue
        for phase in range(metre):
            mask = (np.arange(len(beats)) - phase) % metre == 0
            contrast = salience[mask].mean() - salience[~mask].mean()
            score = contrast * METRE_PRIOR[metre]
            if score > best_score:
                best, best_score = (metre, phase), score
    return best, float(best_score)


def tactus(notes: list[Note], beats: np.ndarray) -> np.ndarray:
    """Every other beat where the beats found are a fast sub-beat: quick (over :data:`HALVE_ABOVE_BPM`)
    and with bars that stand out far more (:data:`HALVE_CONTRAST` times the downbeat contrast) when
    counted in pairs of them.

    A texture of running eighths or sixteenths repeats at the sub-beat as strongly as at
    the beat, so the tempo estimate can land an octave high; the metre then tells: bars
    of real beats have clear downbeats, bars of sub-beats blur them.
    """
    if len(beats) < 16 or 60 / np.median(np.diff(beats)) <= HALVE_ABOVE_BPM:
        return beats
    _, contrast = _metre_and_contrast(notes, beats)
    halves = [beats[phase::2] for phase in (0, 1)]
    scores = [_metre_and_contrast(notes, half)[1] for half in halves]
    best = int(np.argmax(scores))
    return halves[best] if scores[best] > HALVE_CONTRAST * max(contrast, 1e-9) else beats


def grid_confidence(onsets: np.ndarray, beats: np.ndarray) -> float:
    """How much better than chance the onsets sit on a quarter- or third-of-a-beat grid (0–1).

    Each onset's phase within its beat is compared with the nearest of the grid's
    points; a random placement lands within the tolerance ``random_hit`` of the time.
    ``(hit - random_hit) / (1 - random_hit)``, clipped to 0–1.
    """
    if len(beats) < 3 or len(onsets) == 0:
        return 0.0
    inside = onsets[(onsets >= beats[0] - 0.05) & (onsets <= beats[-1] + 0.05)]
    if len(inside) == 0:
        return 0.0
    position = np.interp(inside, beats, np.arange(len(beats)), left=0, right=len(beats) - 1)
    phase = position - np.floor(position)
    grid = np.array([0, 0.25, 0.5, 0.75, 1.0, 1 / 3, 2 / 3])
    distance = np.min(np.abs(phase[:, None] - grid[None, :]), axis=1)
    tolerance = 0.06
    random_hit = 0.42  # measure of [0, 1] within 0.06 of those 7 points (5 + 2 interior bands)
    hit = float(np.mean(distance <= tolerance))
    return float(np.clip((hit - random_hit) / (1 - random_hit), 0, 1))


def cluster_onsets(notes: list[Note], gap: float = 0.035) -> np.ndarray:
    """Onset times with a spread chord (onsets less than ``gap`` apart) counted once, at its first note."""
    onsets = np.sort(np.array([n.onset for n in notes]))
    if len(onsets) == 0:
        return onsets
    keep = np.concatenate([[True], np.diff(onsets) > gap])
    return onsets[keep]


def track(notes: list[Note]) -> BeatGrid:
    """Beats, metre and confidence from notes (see the module's docstring). Fewer than 4 onsets: unmetered."""
    onsets = cluster_onsets(notes)
    if len(onsets) < 4:
        beats = onsets if len(onsets) >= 2 else np.zeros(0)
        tempo = 60 / np.median(np.diff(onsets)) if len(onsets) >= 2 else 120.0
        return BeatGrid(np.asarray(beats, dtype=np.float64), 4, 0, float(tempo), 0.0)
    curve = onset_strength(notes, metrical=True)
    period = estimate_period(curve)
    frames = track_beats(curve, period)
    beats = frames / FPS
    lo, hi = onsets[0] - NEAR, onsets[-1] + NEAR
    beats = beats[(beats >= lo) & (beats <= hi)]
    if len(beats) < 2:
        return BeatGrid(beats, 4, 0, 60 * FPS / period, 0.0)
    beats = tactus(notes, beats)
    metre, first = choose_metre(notes, beats)
    tempo = float(60 / np.median(np.diff(beats)))
    return BeatGrid(beats, metre, first, tempo, grid_confidence(onsets, beats))
