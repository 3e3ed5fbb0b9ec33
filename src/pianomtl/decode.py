"""Frame activations → notes and sustain-pedal events, and note-level scores.

Decoding is a pure function of the activations (the network's outputs at 50 fps:
``on``/``int``/``off`` probabilities ``[T, 88]``, ``vel`` ``[T, 88]`` and ``sus``
``[T, 1]`` in [0, 1]) and a few thresholds (:class:`DecoderParams`). Frame ``t`` is
the time ``t / 50`` s, the centre of the frame, as in :mod:`pianomtl.targets`.

Notes (a threshold decoder in the spirit of Onsets & Frames):

* **Onsets** are peaks of the onset head, per key, at or above ``onset_threshold``.
  The training labels are widened by a 3-frame maximum filter, so a confident onset
  is a plateau about three frames wide: a plateau counts once, at its middle, and
  peaks closer than ``onset_merge_frames`` to a kept peak of the same key are merged
  into it (the higher one wins).
* A note lasts at least ``min_frames`` frames. After that it ends at the first of:
  a frame where ``int`` falls below ``frame_threshold``; a peak of the offset head at
  or above ``offset_threshold`` (the middle of the widened offset label is the first
  frame after the note, exactly where ``int`` would drop); the next onset of the
  same key (a re-struck key ends the held note); the end of the recording.
* **Under the sustain pedal** (where the decoded pedal is down) a note continues while
  ``int`` stays at or above ``pedal_frame_threshold`` instead. A pedal-held note keeps
  sounding after its key is released, but its sound decays, and the network, which
  hears 11 frames (0.22 s), grows unsure whether a faint partial is still "a note":
  its ``int`` output fades far below the key-down threshold long before the pedal
  lifts. Measured on the v3 model's validation split (onset threshold 0.5), 0.01 under
  the pedal instead of 0.2 raised the decoded notes' frame recall from 0.74 to 0.83, at
  precision 0.91 instead of 0.95 (docs/experiments.md §7).
* **Velocity** is the maximum of the velocity head over the onset frame ±1, times
  127, rounded and clipped to 1–127.

``method="hmm"`` decodes the notes instead with a per-key hidden Markov model in
the spirit of the predecessor paper's ADSR decoding (:func:`hmm_note_spans`):
states *off*, *attack* and *sounding*, the network's outputs read as the states'
frame likelihoods, and a Viterbi path per key. A note starts where an attack run
starts (its onset is the run's middle frame) and ends where the path leaves
*sounding*. It can start a note on a weak onset peak where ``int`` rises clearly,
and will not start one where an onset peak is not followed by sound.

Pedal: the ``sus`` curve goes through a hysteresis (down when it rises above
``pedal_high``, up when it falls below ``pedal_low``), giving CC64 127/0 events. A
change between frames ``t-1`` and ``t`` is placed half-way, at ``(t - 0.5) / 50`` s.
With ``half_pedal`` the curve's own values are written instead (CC64 = 127·sus,
only when they moved by ``pedal_step`` or more), keeping partial pedalling.

Note-level evaluation (:func:`note_scores`) wraps ``mir_eval`` with the field's
conventions: onset tolerance 50 ms; "note" F1 ignores offsets; "note with offset"
F1 also needs the offset within 20 % of the note's length or 50 ms; the velocity
variant adds ``mir_eval.transcription_velocity``'s velocity match. **Reference
offsets are pedal-extended** (:func:`pianomtl.midi.sustain_notes`), the MAESTRO /
Onsets-and-Frames convention, which is also what the ``int`` head is trained on.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
from scipy.signal import find_peaks

from pianomtl.constants import FPS, MIDI_MAX, MIN_KEY, N_KEYS, PEDAL_DOWN_ABOVE
from pianomtl.metrics import BinaryCounts
from pianomtl.midi import Note, PedalEvent, Performance, sustain_notes
from pianomtl.targets import pedal_curve

ONSET_TOLERANCE = 0.05
"""Seconds: an estimated onset within this of a reference onset matches (mir_eval default)."""
OFFSET_RATIO = 0.2
OFFSET_MIN_TOLERANCE = 0.05


NOTE_METHODS = ("threshold", "hmm")


@dataclass(frozen=True)
class DecoderParams:
    """Thresholds of the decoder; tuned on validation data by :func:`tune`."""

    onset_threshold: float = 0.5
    """Minimum onset-head peak that starts a note."""
    frame_threshold: float = 0.5
    """A note continues while the ``int`` head is at or above this."""
    offset_threshold: float = 0.5
    """An offset-head peak at or above this ends a note (above 1: offsets from ``int`` only)."""
    min_frames: int = 2
    """Shortest note in frames (2 frames = 40 ms); offsets are only looked for after it."""
    onset_merge_frames: int = 2
    """Onset peaks of one key closer than this many frames are one onset."""
    pedal_high: float = 0.6
    """The pedal goes down when ``sus`` rises above this (CC64 ≈ 76)."""
    pedal_low: float = 0.4
    """The pedal comes up when ``sus`` falls below this (CC64 ≈ 51)."""
    half_pedal: bool = False
    """Write the continuous pedal curve (partial pedalling) instead of 0/127 events."""
    pedal_step: int = 8
    """With ``half_pedal``: a new CC64 event only when the value moved by this much."""
    method: str = "threshold"
    """Note decoder: ``threshold`` (peak picking) or ``hmm`` (per-key Viterbi, :func:`hmm_note_spans`)."""
    hmm_onset_prior: float = 0.3
    """HMM: transition probability per frame that a silent or sounding key is struck
    (the default is the best on validation for the v2 model; see :data:`HMM_ONSET_GRID`)."""
    hmm_end_prior: float = 0.3
    """HMM: transition probability per frame that a sounding note ends."""
    pedal_frame_threshold: float | None = None
    """Threshold decoder: while the decoded pedal is down a note continues while ``int``
    is at or above this (``None``: ``frame_threshold`` everywhere)."""

    def __post_init__(self) -> None:
        if self.method not in NOTE_METHODS:
            raise ValueError(f"method must be one of {', '.join(NOTE_METHODS)}, got {self.method!r}")
        for name in ("hmm_onset_prior", "hmm_end_prior"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {value}")
        if self.hmm_onset_prior + self.hmm_end_prior >= 1.0:
            raise ValueError("hmm_onset_prior + hmm_end_prior must be below 1 (a sounding key's three ways on)")
        if self.min_frames < 1:
            raise ValueError(f"min_frames must be at least 1, got {self.min_frames}")
        if self.onset_merge_frames < 1:
            raise ValueError(f"onset_merge_frames must be at least 1, got {self.onset_merge_frames}")
        if not self.pedal_low <= self.pedal_high:
            raise ValueError(f"pedal_low ({self.pedal_low}) must not exceed pedal_high ({self.pedal_high})")
        if self.pedal_frame_threshold is not None and not 0.0 <= self.pedal_frame_threshold <= 1.0:
            raise ValueError(f"pedal_frame_threshold must be in [0, 1] or None, got {self.pedal_frame_threshold}")
        if self.pedal_step < 1:
            raise ValueError(f"pedal_step must be at least 1, got {self.pedal_step}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> DecoderParams:
        """Build from a dict; keys this version does not know are ignored with a warning."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            warnings.warn(f"ignoring unknown decoder parameters: {', '.join(unknown)}", stacklevel=2)
        return cls(**{k: v for k, v in values.items() if k in known})


# -- notes -------------------------------------------------------------------------


def _check_activations(activations: dict[str, np.ndarray]) -> int:
    n_frames = len(activations["on"])
    for task in ("on", "int", "off", "vel"):
        shape = np.shape(activations[task])
        if shape != (n_frames, N_KEYS):
            raise ValueError(f"activations[{task!r}] has shape {shape}, expected ({n_frames}, {N_KEYS})")
    return n_frames


def pick_onsets(on: np.ndarray, threshold: float, merge_frames: int = 2) -> list[np.ndarray]:
    """Onset frames of each key: peaks of ``on[:, k]`` at or above ``threshold``.

    A flat-topped peak (the 3-frame widened label) counts once at its middle; peaks
    of a key closer than ``merge_frames`` to the previous kept one are merged (the
    higher survives). Returns one sorted int array per key.
    """
    n_frames = len(on)
    result: list[np.ndarray] = []
    empty = np.zeros(0, dtype=np.int64)
    if n_frames == 0:
        return [empty] * on.shape[1]
    above = np.asarray(on) >= threshold
    candidates = set(np.flatnonzero(above.any(axis=0)).tolist())
    for key in range(on.shape[1]):
        if key not in candidates:
            result.append(empty)
            continue
        # pad below any probability so peaks at the first/last frame are found
        padded = np.concatenate([[-1.0], np.asarray(on[:, key], dtype=np.float64), [-1.0]])
        peaks, _ = find_peaks(padded, height=threshold)
        peaks = peaks - 1
        if len(peaks) > 1:
            heights = on[peaks, key]
            kept: list[int] = [int(peaks[0])]
            for peak, height in zip(peaks[1:], heights[1:], strict=True):
                if peak - kept[-1] < merge_frames:
                    if height > on[kept[-1], key]:
                        kept[-1] = int(peak)
                else:
                    kept.append(int(peak))
            peaks = np.asarray(kept, dtype=np.int64)
        result.append(peaks.astype(np.int64))
    return result


def _offset_peaks(off: np.ndarray, threshold: float) -> list[np.ndarray]:
    """Offset-head peaks per key (plateaus at their middle), no merging."""
    if threshold > 1.0:
        return [np.zeros(0, dtype=np.int64)] * off.shape[1]
    return pick_onsets(off, threshold, merge_frames=1)


def _frame_thresholds(activations: dict[str, np.ndarray], params: DecoderParams) -> np.ndarray | float:
    """The ``int`` threshold a note must stay at: per frame ``[T, 1]`` where the pedal lowers it."""
    sus = activations.get("sus")
    if params.pedal_frame_threshold is None or sus is None:
        return params.frame_threshold
    down = pedal_down_frames(sus, params)
    return np.where(down, params.pedal_frame_threshold, params.frame_threshold)[:, None]


def _note_ends(
    onsets: list[np.ndarray],
    frame: np.ndarray,
    offsets: list[np.ndarray],
    params: DecoderParams,
    thresholds: np.ndarray | float,
) -> list[tuple[int, int, int]]:
    """``(key column, start frame, end frame)`` of every note (end exclusive).

    ``thresholds``: the ``int`` threshold, a number or one per frame (``[T, 1]``,
    :func:`_frame_thresholds`).
    """
    n_frames = len(frame)
    below = np.asarray(frame) < thresholds
    notes: list[tuple[int, int, int]] = []
    for key, starts in enumerate(onsets):
        if len(starts) == 0:
            continue
        inactive = np.flatnonzero(below[:, key])
        key_offsets = offsets[key]
        for index, start in enumerate(starts):
            earliest = start + params.min_frames
            limit = int(starts[index + 1]) if index + 1 < len(starts) else n_frames
            end = limit
            position = np.searchsorted(inactive, earliest)
            if position < len(inactive):
                end = min(end, int(inactive[position]))
            position = np.searchsorted(key_offsets, earliest)
            if position < len(key_offsets):
                end = min(end, int(key_offsets[position]))
            notes.append((key, int(start), end))
    return notes


def _velocity(vel: np.ndarray, key: int, start: int) -> int:
    window = vel[max(start - 1, 0) : start + 2, key]
    return int(np.clip(np.rint(float(np.max(window)) * MIDI_MAX), 1, MIDI_MAX))


def decode_notes(activations: dict[str, np.ndarray], params: DecoderParams | None = None) -> list[Note]:
    """Notes (key, onset s, offset s, velocity 1–127) sorted by onset, then key."""
    params = params or DecoderParams()
    _check_activations(activations)
    if params.method == "hmm":
        return _notes_from_spans(activations, hmm_note_spans(activations, params))
    onsets = pick_onsets(activations["on"], params.onset_threshold, params.onset_merge_frames)
    return _notes_from_onsets(activations, onsets, params)


def _notes_from_onsets(
    activations: dict[str, np.ndarray], onsets: list[np.ndarray], params: DecoderParams
) -> list[Note]:
    offsets = _offset_peaks(activations["off"], params.offset_threshold)
    thresholds = _frame_thresholds(activations, params)
    return _notes_from_spans(activations, _note_ends(onsets, activations["int"], offsets, params, thresholds))


def _notes_from_spans(activations: dict[str, np.ndarray], spans: list[tuple[int, int, int]]) -> list[Note]:
    vel = activations["vel"]
    notes = [Note(MIN_KEY + key, start / FPS, end / FPS, _velocity(vel, key, start)) for key, start, end in spans]
    notes.sort(key=lambda n: (n.onset, n.key))
    return notes


# -- per-key HMM ---------------------------------------------------------------------

OFF, ATTACK, SOUNDING = 0, 1, 2
_PROBABILITY_FLOOR = 1e-6


def _hmm_log_transitions(params: DecoderParams) -> np.ndarray:
    """``[from, to]`` log transition probabilities of the off/attack/sounding chain.

    Off stays off or is struck; an attack (the onset label is 3 frames wide) stays
    or turns into sound; a sounding key goes on, is struck again, or ends.
    """
    strike, end = params.hmm_onset_prior, params.hmm_end_prior
    matrix = np.zeros((3, 3))
    matrix[OFF] = (1 - strike, strike, 0.0)
    matrix[ATTACK] = (0.0, 0.5, 0.5)
    matrix[SOUNDING] = (end, strike, 1 - strike - end)
    with np.errstate(divide="ignore"):
        return np.log(matrix)


def _hmm_log_emissions(on: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """``[T, 88, 3]`` log likelihoods of each state from the onset and ``int`` heads."""
    on = np.clip(np.asarray(on, dtype=np.float64), _PROBABILITY_FLOOR, 1 - _PROBABILITY_FLOOR)
    frame = np.clip(np.asarray(frame, dtype=np.float64), _PROBABILITY_FLOOR, 1 - _PROBABILITY_FLOOR)
    return np.stack(
        [np.log1p(-on) + np.log1p(-frame), np.log(on), np.log1p(-on) + np.log(frame)],
        axis=-1,
    )


HMM_CHUNK_FRAMES = 1500
"""The Viterbi runs on 30 s chunks side by side (vectorised over chunks × keys) ..."""
HMM_MARGIN_FRAMES = 250
"""... each decoded with 5 s of context on both sides, whose path is thrown away: a
path forgets where it started within a few frames of clear evidence, so the kept
parts equal one Viterbi pass over the whole file (checked on every validation and test
recording of the corpus; ``tests/test_decode.py`` checks it on a small scale)."""
HMM_BLOCK_ROWS = 2048
"""Chunk × key rows decoded at once: bounds the memory of emissions and backpointers."""


def _viterbi(emissions: np.ndarray, transitions: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Best state paths ``[rows, T]`` for emissions ``[rows, T, 3]`` (all rows at once).

    Written out for the off/attack/sounding chain's allowed moves (off ← off,
    sounding; attack ← any; sounding ← attack, sounding) on contiguous per-state
    vectors: half the arithmetic of a generic 3×3 max-plus step, and no gathers.
    """
    n_rows, n_frames, _ = emissions.shape
    t = transitions
    e_off, e_attack, e_sound = (np.ascontiguousarray(emissions[:, :, k].T) for k in range(3))  # [T, rows]
    off, attack, sound = (start[:, k] + emissions[:, 0, k] for k in range(3))
    # backpointers: the predecessor state of each state at each frame
    from_off = np.empty((n_frames, n_rows), dtype=np.int8)  # OFF or SOUNDING
    from_attack = np.empty((n_frames, n_rows), dtype=np.int8)  # any
    from_sound = np.empty((n_frames, n_rows), dtype=np.int8)  # ATTACK or SOUNDING
    for f in range(1, n_frames):
        stay_off, sound_to_off = off + t[OFF, OFF], sound + t[SOUNDING, OFF]
        off_to_attack, stay_attack = off + t[OFF, ATTACK], attack + t[ATTACK, ATTACK]
        sound_to_attack = sound + t[SOUNDING, ATTACK]
        attack_to_sound, stay_sound = attack + t[ATTACK, SOUNDING], sound + t[SOUNDING, SOUNDING]
        choice = sound_to_off > stay_off
        from_off[f] = np.where(choice, SOUNDING, OFF)
        new_off = np.where(choice, sound_to_off, stay_off)
        best_attack = np.maximum(off_to_attack, stay_attack)
        from_attack[f] = np.where(stay_attack > off_to_attack, ATTACK, OFF)
        choice = sound_to_attack > best_attack
        from_attack[f][choice] = SOUNDING
        new_attack = np.maximum(best_attack, sound_to_attack)
        choice = stay_sound > attack_to_sound
        from_sound[f] = np.where(choice, SOUNDING, ATTACK)
        new_sound = np.where(choice, stay_sound, attack_to_sound)
        off, attack, sound = new_off + e_off[f], new_attack + e_attack[f], new_sound + e_sound[f]
    pointers = np.stack([from_off, from_attack, from_sound], axis=2)  # [T, rows, state]
    path = np.empty((n_rows, n_frames), dtype=np.int8)
    state = np.argmax(np.stack([off, attack, sound], axis=1), axis=1)
    rows = np.arange(n_rows)
    for f in range(n_frames - 1, -1, -1):
        path[:, f] = state
        state = pointers[f, rows, state]
    return path


def _chunk_windows(n_frames: int, chunk: int, margin: int) -> list[tuple[int, int, int, int]]:
    """``(window start, window stop, keep start, keep stop)`` per chunk; all windows equally long.

    The first window starts at frame 0 and the last ends at the last frame, so the
    recording's own start and end are decoded exactly as in one pass.
    """
    width = chunk + 2 * margin
    if n_frames <= width:
        return [(0, n_frames, 0, n_frames)]
    windows = []
    for keep_start in range(0, n_frames, chunk):
        window_start = min(max(keep_start - margin, 0), n_frames - width)
        windows.append((window_start, window_start + width, keep_start, min(keep_start + chunk, n_frames)))
    return windows


def hmm_states(
    activations: dict[str, np.ndarray],
    params: DecoderParams,
    chunk_frames: int = HMM_CHUNK_FRAMES,
    margin_frames: int = HMM_MARGIN_FRAMES,
) -> np.ndarray:
    """The Viterbi state path ``[T, 88]`` (0 off, 1 attack, 2 sounding) of every key.

    The path starts off (or, inside the file, anywhere: a chunk's context decides) and
    may end in any state. Chunks of ``chunk_frames`` with ``margin_frames`` of context
    on each side run side by side (:data:`HMM_CHUNK_FRAMES`).
    """
    on, frame = activations["on"], activations["int"]
    n_frames, n_keys = np.shape(on)
    path = np.zeros((n_frames, n_keys), dtype=np.int8)
    if n_frames == 0:
        return path
    transitions = _hmm_log_transitions(params)
    windows = _chunk_windows(n_frames, chunk_frames, margin_frames)
    file_start = np.log(np.array([1 - 2 * _PROBABILITY_FLOOR, _PROBABILITY_FLOOR, _PROBABILITY_FLOOR]))
    anywhere = np.log(np.full(3, 1 / 3))
    per_block = max(1, HMM_BLOCK_ROWS // n_keys)
    for first in range(0, len(windows), per_block):
        block = windows[first : first + per_block]
        emissions = np.concatenate(
            [_hmm_log_emissions(on[a:b], frame[a:b]).transpose(1, 0, 2) for a, b, _, _ in block]
        )  # [chunks × keys, width, 3]
        start = np.concatenate([np.tile(file_start if a == 0 else anywhere, (n_keys, 1)) for a, _, _, _ in block])
        block_path = _viterbi(emissions, transitions, start).reshape(len(block), n_keys, -1)
        for (window_start, _, keep_start, keep_stop), chunk_path in zip(block, block_path, strict=True):
            path[keep_start:keep_stop] = chunk_path[:, keep_start - window_start : keep_stop - window_start].T
    return path


def hmm_note_spans(activations: dict[str, np.ndarray], params: DecoderParams) -> list[tuple[int, int, int]]:
    """``(key column, onset frame, end frame)`` of the notes on the Viterbi paths.

    A note begins at each run of *attack* frames (onset: the run's middle) and ends
    at the first *off* frame after the run or at the next onset of the key; a note
    shorter than ``min_frames`` is kept at that length, as in the threshold decoder.
    """
    path = hmm_states(activations, params)
    n_frames = len(path)
    spans: list[tuple[int, int, int]] = []
    for key in range(path.shape[1]):
        states = path[:, key]
        attack = states == ATTACK
        if not attack.any():
            continue
        edges = np.diff(np.concatenate([[0], attack.astype(np.int8), [0]]))
        run_starts, run_stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        onsets = (run_starts + run_stops - 1) // 2
        boundaries = np.flatnonzero(states == OFF)
        for index, (onset, run_stop) in enumerate(zip(onsets.tolist(), run_stops.tolist(), strict=True)):
            limit = int(onsets[index + 1]) if index + 1 < len(onsets) else n_frames  # a re-strike ends the note
            position = np.searchsorted(boundaries, run_stop)
            end = min(limit, int(boundaries[position])) if position < len(boundaries) else limit
            spans.append((key, onset, max(end, min(onset + params.min_frames, limit))))
    return spans


# -- pedal -------------------------------------------------------------------------


def _change_time(frame: int) -> float:
    """A change first seen at frame ``t`` happened between frames ``t-1`` and ``t``."""
    return max(frame - 0.5, 0.0) / FPS


def _sus_curve(sus: np.ndarray) -> np.ndarray:
    curve = np.asarray(sus, dtype=np.float64).reshape(len(sus), -1)[:, 0] if len(sus) else np.zeros(0)
    return np.nan_to_num(curve, nan=0.0)


def pedal_down_frames(sus: np.ndarray, params: DecoderParams | None = None) -> np.ndarray:
    """Boolean ``[T]``: the pedal is down at frame ``t`` (hysteresis ``pedal_high``/``pedal_low``)."""
    params = params or DecoderParams()
    down = np.zeros(len(sus), dtype=bool)
    state = False
    for t, value in enumerate(_sus_curve(sus)):
        if not state and value > params.pedal_high:
            state = True
        elif state and value < params.pedal_low:
            state = False
        down[t] = state
    return down


def decode_pedal(sus: np.ndarray, params: DecoderParams | None = None) -> list[PedalEvent]:
    """CC64 events from the ``sus`` curve (``[T]`` or ``[T, 1]``, values in [0, 1])."""
    params = params or DecoderParams()
    if params.half_pedal:
        values = np.clip(np.rint(_sus_curve(sus) * MIDI_MAX), 0, MIDI_MAX).astype(int)
        events: list[PedalEvent] = []
        last = 0
        for t, value in enumerate(values):
            moved = abs(value - last) >= params.pedal_step
            reaches_end = value != last and value in (0, MIDI_MAX)
            if moved or reaches_end:
                events.append(PedalEvent(_change_time(t), int(value)))
                last = int(value)
        return events
    down = pedal_down_frames(sus, params)
    changes = np.flatnonzero(np.diff(np.concatenate([[False], down]).astype(np.int8)))
    return [PedalEvent(_change_time(int(t)), MIDI_MAX if down[t] else 0) for t in changes]


def decode(activations: dict[str, np.ndarray], params: DecoderParams | None = None) -> Performance:
    """Notes and pedal events of a recording's activations."""
    params = params or DecoderParams()
    notes = decode_notes(activations, params)
    sus = activations.get("sus")
    pedal = decode_pedal(sus, params) if sus is not None else []
    return Performance(notes, pedal)


# -- note-level evaluation ----------------------------------------------------------


def _mir_eval_arrays(notes: Sequence[Note]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intervals ``[N, 2]`` (s), pitches (Hz) and velocities for mir_eval.

    mir_eval rejects zero-length intervals, so offsets are kept at least 1 ms after onsets.
    """
    import mir_eval

    if not notes:
        return np.zeros((0, 2)), np.zeros(0), np.zeros(0)
    array = np.asarray([(n.onset, n.offset, n.key, n.velocity) for n in notes], dtype=np.float64)
    intervals = np.stack([array[:, 0], np.maximum(array[:, 1], array[:, 0] + 1e-3)], axis=1)
    return intervals, mir_eval.util.midi_to_hz(array[:, 2]), array[:, 3]


def reference_notes(reference: Performance | Sequence[Note], pedal_extended: bool = True) -> list[Note]:
    """The notes a transcription is scored against: pedal-extended by default (MAESTRO)."""
    if isinstance(reference, Performance):
        return sustain_notes(reference) if pedal_extended else list(reference.notes)
    return list(reference)


def note_scores(
    reference: Performance | Sequence[Note],
    estimated_notes: Sequence[Note] | Performance,
    pedal_extended: bool = True,
) -> dict[str, float]:
    """mir_eval note-level precision/recall/F1 of a transcription against a reference.

    ``reference``: a :class:`Performance` (its offsets are pedal-extended with
    :func:`~pianomtl.midi.sustain_notes` unless ``pedal_extended=False``) or a list of
    notes used as given. Returns ``note_{precision,recall,f1}`` (onsets within 50 ms),
    ``note_offset_*`` (and offsets within max(20 %, 50 ms)), ``note_offset_velocity_*``
    (and velocity, mir_eval's rule), plus ``n_reference``, ``n_estimated`` and the
    matched counts ``*_matched`` for summing over a corpus (:func:`aggregate_scores`).
    Empty reference or estimate give zeros (no crash).
    """
    import mir_eval

    ref = reference_notes(reference, pedal_extended)
    est = list(estimated_notes.notes if isinstance(estimated_notes, Performance) else estimated_notes)
    ref_intervals, ref_pitches, ref_velocities = _mir_eval_arrays(ref)
    est_intervals, est_pitches, est_velocities = _mir_eval_arrays(est)
    scores: dict[str, float] = {"n_reference": float(len(ref)), "n_estimated": float(len(est))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mir_eval warns about empty note lists
        for name, offset_ratio in (("note", None), ("note_offset", OFFSET_RATIO)):
            if len(ref) and len(est):
                matched = len(
                    mir_eval.transcription.match_notes(
                        ref_intervals,
                        ref_pitches,
                        est_intervals,
                        est_pitches,
                        onset_tolerance=ONSET_TOLERANCE,
                        offset_ratio=offset_ratio,
                        offset_min_tolerance=OFFSET_MIN_TOLERANCE,
                    )
                )
            else:
                matched = 0
            scores.update(_prf(name, matched, len(ref), len(est)))
        if len(ref) and len(est):
            matched = len(
                mir_eval.transcription_velocity.match_notes(
                    ref_intervals,
                    ref_pitches,
                    ref_velocities,
                    est_intervals,
                    est_pitches,
                    est_velocities,
                    onset_tolerance=ONSET_TOLERANCE,
                    offset_ratio=OFFSET_RATIO,
                    offset_min_tolerance=OFFSET_MIN_TOLERANCE,
                )
            )
        else:
            matched = 0
        scores.update(_prf("note_offset_velocity", matched, len(ref), len(est)))
    return scores


MEASURES = ("note", "note_offset", "note_offset_velocity")


def _prf(name: str, matched: int, n_reference: int, n_estimated: int) -> dict[str, float]:
    precision = matched / n_estimated if n_estimated else 0.0
    recall = matched / n_reference if n_reference else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        f"{name}_precision": precision,
        f"{name}_recall": recall,
        f"{name}_f1": f1,
        f"{name}_matched": float(matched),
    }


def aggregate_scores(scores: Iterable[dict[str, float]]) -> dict[str, float]:
    """Corpus-level scores: matched, reference and estimated note counts summed first.

    (mir_eval scores one recording; averaging per-recording F1 would weigh a short
    piece like a long one.)
    """
    scores = list(scores)
    n_reference = int(sum(s["n_reference"] for s in scores))
    n_estimated = int(sum(s["n_estimated"] for s in scores))
    total: dict[str, float] = {"n_reference": float(n_reference), "n_estimated": float(n_estimated)}
    for name in MEASURES:
        matched = int(sum(s[f"{name}_matched"] for s in scores))
        total.update(_prf(name, matched, n_reference, n_estimated))
    return total


# -- threshold tuning ---------------------------------------------------------------

ONSET_GRID = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
FRAME_GRID = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
OFFSET_GRID = (0.3, 0.5, 0.7, 1.01)  # 1.01: offsets from int alone
HMM_ONSET_GRID = (0.1, 0.2, 0.3, 0.4)
HMM_END_GRID = (0.1, 0.2, 0.3, 0.4)
"""The HMM's best "priors" on validation data are large (0.3/0.3 for the v2 model): with
the heads' posteriors read as likelihoods they act as weights against over-confident
emissions rather than as real rates of key strikes."""
PEDAL_FRAME_GRID = (None, 0.1, 0.03, 0.01, 0.003)  # None: no lower threshold under the pedal
PEDAL_GRID = ((0.6, 0.4), (0.5, 0.3), (0.4, 0.2), (0.3, 0.15))  # (pedal_high, pedal_low)


@dataclass
class TuningResult:
    """What :func:`tune` chose and what each decoder scored on the tuning data."""

    params: DecoderParams
    scores: dict[str, dict[str, float]]
    """Per method: corpus note-level scores (:func:`aggregate_scores`) of its best setting."""


def _corpus_scores(
    activations_list: Sequence[dict[str, np.ndarray]], references: Sequence[list[Note]], decode_one
) -> dict[str, float]:
    return aggregate_scores(
        note_scores(reference, decode_one(activations, index))
        for index, (activations, reference) in enumerate(zip(activations_list, references, strict=True))
    )


def tune(
    activations_list: Sequence[dict[str, np.ndarray]],
    reference_performances_list: Sequence[Performance],
    base: DecoderParams | None = None,
    onset_grid: Sequence[float] = ONSET_GRID,
    frame_grid: Sequence[float] = FRAME_GRID,
    offset_grid: Sequence[float] = OFFSET_GRID,
    methods: Sequence[str] = NOTE_METHODS,
    hmm_onset_grid: Sequence[float] = HMM_ONSET_GRID,
    hmm_end_grid: Sequence[float] = HMM_END_GRID,
    pedal_frame_grid: Sequence[float | None] = PEDAL_FRAME_GRID,
    pedal_grid: Sequence[tuple[float, float]] = PEDAL_GRID,
) -> TuningResult:
    """Grid-search each note decoder on validation recordings; keep the best on note F1.

    First the pedal hysteresis (``pedal_high``, ``pedal_low``) that maximises framewise
    F1 of pedal-down frames against the references' CC64 (when the activations have
    ``sus`` and the references have pedal events; it also decides where notes are
    pedal-held).

    Threshold decoder, two stages, because note F1 (onsets only) does not depend on
    the frame and offset thresholds: the onset threshold is the one nearest 0.5 whose
    corpus note F1 is within one standard error of the best
    (:func:`_one_standard_error_choice`); with it fixed, the frame, offset and
    pedal-frame thresholds maximise corpus note-with-offset F1 (ties: nearest 0.5).
    HMM decoder: the two priors maximise note F1, then note-with-offset F1 breaks
    ties, then the first in the grid.
    Scores are summed over recordings (:func:`aggregate_scores`).
    """
    if len(activations_list) != len(reference_performances_list):
        raise ValueError("tune needs one reference performance per activation set")
    unknown = sorted(set(methods) - set(NOTE_METHODS))
    if unknown or not methods:
        raise ValueError(f"methods must be among {', '.join(NOTE_METHODS)}, got {list(methods)}")
    base = base or DecoderParams()
    base = _tune_pedal(activations_list, reference_performances_list, base, pedal_grid)
    references = [reference_notes(p) for p in reference_performances_list]
    candidates: dict[str, tuple[DecoderParams, dict[str, float]]] = {}
    if "threshold" in methods:
        candidates["threshold"] = _tune_threshold(
            activations_list,
            references,
            replace(base, method="threshold"),
            onset_grid,
            frame_grid,
            offset_grid,
            pedal_frame_grid,
        )
    if "hmm" in methods:
        candidates["hmm"] = _tune_hmm(
            activations_list, references, replace(base, method="hmm"), hmm_onset_grid, hmm_end_grid
        )
    best = max(candidates, key=lambda m: (candidates[m][1]["note_f1"], candidates[m][1]["note_offset_f1"]))
    return TuningResult(candidates[best][0], {m: scores for m, (_, scores) in candidates.items()})


def _one_standard_error_choice(scored: dict[float, dict[str, float]]) -> float:
    """The onset threshold nearest 0.5 whose note F1 is within one standard error of the best.

    The one-standard-error rule of model selection (Breiman et al., 1984): validation F1
    is an estimate, ``sqrt(F1 (1 - F1) / n_reference)`` its binomial standard error, and
    thresholds closer than that are not told apart by the data. The top of the F1 curve
    is flat (0.966–0.969 for onset thresholds 0.6–0.8 on the v4 model's 4,304 validation
    notes), so plain argmax picks among near-ties by noise; among them the neutral 0.5
    of a sigmoid output is preferred, since a timbre the network has not heard lowers its
    onset confidence (docs/experiments.md §7).
    """
    best_f1 = max(scores["note_f1"] for scores in scored.values())
    n_reference = max(scores["n_reference"] for scores in scored.values())
    tolerance = float(np.sqrt(best_f1 * (1.0 - best_f1) / max(n_reference, 1.0)))
    near_best = [t for t, scores in scored.items() if scores["note_f1"] >= best_f1 - tolerance]
    return min(near_best, key=lambda t: (abs(t - 0.5), -scored[t]["note_f1"]))


def _tune_threshold(
    activations_list: Sequence[dict[str, np.ndarray]],
    references: Sequence[list[Note]],
    base: DecoderParams,
    onset_grid: Sequence[float],
    frame_grid: Sequence[float],
    offset_grid: Sequence[float],
    pedal_frame_grid: Sequence[float | None] = (None,),
) -> tuple[DecoderParams, dict[str, float]]:
    def corpus(params: DecoderParams, onsets_per_recording: list[list[np.ndarray]]) -> dict[str, float]:
        return _corpus_scores(
            activations_list, references, lambda acts, i: _notes_from_onsets(acts, onsets_per_recording[i], params)
        )

    def onsets_for(threshold: float) -> list[list[np.ndarray]]:
        return [pick_onsets(a["on"], threshold, base.onset_merge_frames) for a in activations_list]

    scored = {
        threshold: corpus(replace(base, onset_threshold=threshold), onsets_for(threshold)) for threshold in onset_grid
    }
    best_onset = _one_standard_error_choice(scored)
    onsets = onsets_for(best_onset)
    best = replace(base, onset_threshold=best_onset)
    tuned, tuned_scores = best, {"note_offset_f1": -1.0}
    grid = sorted(
        itertools.product(frame_grid, offset_grid, pedal_frame_grid),
        key=lambda v: (abs(v[0] - 0.5) + abs(v[1] - 0.5), v[2] is not None),
    )
    for frame_threshold, offset_threshold, pedal_frame_threshold in grid:
        if pedal_frame_threshold is not None and pedal_frame_threshold >= frame_threshold:
            continue
        candidate = replace(
            best,
            frame_threshold=frame_threshold,
            offset_threshold=offset_threshold,
            pedal_frame_threshold=pedal_frame_threshold,
        )
        scores = corpus(candidate, onsets)
        if scores["note_offset_f1"] > tuned_scores["note_offset_f1"]:
            tuned, tuned_scores = candidate, scores
    return tuned, tuned_scores


def pedal_frame_counts(
    activations_list: Sequence[dict[str, np.ndarray]],
    references: Sequence[Performance],
    params: DecoderParams,
    counts: BinaryCounts | None = None,
) -> BinaryCounts:
    """Decoded pedal-down frames against the references' (CC64 above 64), counted over all
    recordings (added to ``counts`` if given)."""
    counts = counts if counts is not None else BinaryCounts()
    for activations, reference in zip(activations_list, references, strict=True):
        estimated = pedal_down_frames(activations["sus"], params)
        counts.add(estimated, pedal_curve(reference.pedal, len(estimated)) > PEDAL_DOWN_ABOVE)
    return counts


def _tune_pedal(
    activations_list: Sequence[dict[str, np.ndarray]],
    references: Sequence[Performance],
    base: DecoderParams,
    pedal_grid: Sequence[tuple[float, float]],
) -> DecoderParams:
    """``base`` with the pedal hysteresis of best pedal-frame F1 (unchanged without pedal data)."""
    if not pedal_grid or not all("sus" in a for a in activations_list) or not any(r.pedal for r in references):
        return base
    best, best_f1 = base, -1.0
    for high, low in pedal_grid:
        candidate = replace(base, pedal_high=high, pedal_low=low)
        f1 = pedal_frame_counts(activations_list, references, candidate).scores()["f1"]
        if f1 > best_f1:
            best, best_f1 = candidate, f1
    return best


def _tune_hmm(
    activations_list: Sequence[dict[str, np.ndarray]],
    references: Sequence[list[Note]],
    base: DecoderParams,
    onset_grid: Sequence[float],
    end_grid: Sequence[float],
) -> tuple[DecoderParams, dict[str, float]]:
    tuned, tuned_scores = base, {"note_f1": -1.0, "note_offset_f1": -1.0}
    for onset_prior, end_prior in itertools.product(onset_grid, end_grid):
        if onset_prior + end_prior >= 1.0:
            continue
        candidate = replace(base, hmm_onset_prior=onset_prior, hmm_end_prior=end_prior)
        scores = _corpus_scores(
            activations_list, references, lambda acts, _, params=candidate: decode_notes(acts, params)
        )
        if (scores["note_f1"], scores["note_offset_f1"]) > (tuned_scores["note_f1"], tuned_scores["note_offset_f1"]):
            tuned, tuned_scores = candidate, scores
    return tuned, tuned_scores
