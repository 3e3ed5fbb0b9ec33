"""Frame activations → notes and sustain-pedal events (the decoders).

Decoding is a pure function of the activations (the network's outputs at 50 fps:
``on``/``int``/``off`` probabilities ``[T, 88]``, ``vel`` ``[T, 88]`` and ``sus``
``[T, 1]`` in [0, 1]) and a few thresholds (:class:`DecoderParams`). Frame ``t`` is
the time ``t / 50`` s, the centre of the frame, as in :mod:`pianomtl.core.targets`.

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
  lifts; a lower threshold under the pedal trades a little frame precision for much
  more frame recall (measurements in docs/experiments.md §7).
* **Velocity** is the maximum of the velocity head over the onset frame ±1, times
  127, rounded and clipped to 1–127.

``method="hmm"`` decodes the notes instead with a per-key hidden Markov model in
the spirit of the predecessor paper's ADSR decoding (:func:`hmm_note_spans`):
states *off*, *attack* and *sounding*, the network's outputs read as the states'
frame likelihoods, and a Viterbi path per key. A note starts where an attack run
starts (its onset is the run's middle frame) and ends where the path leaves
*sounding*. It can start a note on a weak onset peak where ``int`` rises clearly,
and will not start one where an onset peak is not followed by sound.

The threshold decoder's rules are functions (:func:`merge_peak`, :func:`note_end`,
:func:`note_velocity`, :class:`PedalHysteresis`, :func:`note_frame_thresholds`) shared with
:class:`~pianomtl.transcription.causal.CausalDecoder`, which decides the same notes frame
by frame for live transcription (:mod:`pianomtl.transcription.stream`).

Pedal: the ``sus`` curve goes through a hysteresis (down when it rises above
``pedal_high``, up when it falls below ``pedal_low``), giving CC64 127/0 events. A
change between frames ``t-1`` and ``t`` is placed half-way, at ``(t - 0.5) / 50`` s.
With ``half_pedal`` the curve's own values are written instead (CC64 = 127·sus,
only when they moved by ``pedal_step`` or more), keeping partial pedalling.
"""

from __future__ import annotations

import dataclasses
import difflib
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from pianomtl.constants import FPS, MIDI_MAX, MIN_KEY, N_KEYS
from pianomtl.core.midi import Note, PedalEvent, Performance, next_strike_time

NOTE_METHODS = ("threshold", "hmm")


@dataclass(frozen=True)
class Limit:
    """What a decoder option accepts: its kind, its range (``low``/``high``, ``None``: unbounded) and a help line.

    Why here: :class:`DecoderParams` checks itself with these, the CLI's
    ``--onset-threshold`` … options and the page's slider limits
    (``/api/config``'s ``decoder``) are generated from them, so a range is written once.
    """

    kind: type
    help: str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple[str, ...] = ()
    optional: bool = False
    """``None`` is allowed (it means the help's fallback)."""

    def check(self, name: str, value: object) -> None:
        """Raise :class:`ValueError` (one line, naming the option) unless ``value`` fits."""
        if value is None and self.optional:
            return
        if self.kind is bool:
            if not isinstance(value, bool | np.bool_):
                raise ValueError(f"{name} must be True or False, got {value!r}")
            return
        if self.kind is str:
            if value not in self.choices:
                raise ValueError(f"{name} must be one of {', '.join(self.choices)}, got {value!r}")
            return
        whole = self.kind is int
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
            raise ValueError(f"{name} must be {'a whole number' if whole else 'a number'}, got {value!r}")
        if whole and float(value) != int(value):
            raise ValueError(f"{name} must be a whole number, got {value!r}")
        if not np.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
        below = self.low is not None and (value <= self.low if self.open_low else value < self.low)
        above = self.high is not None and (value >= self.high if self.open_high else value > self.high)
        if below or above:
            raise ValueError(f"{name} must be in {self.describe()}, got {value!r}")

    def describe(self) -> str:
        """The range as text: ``[0, 1]``, ``(0, 1)``, ``≥ 1``, ``threshold|hmm``."""
        if self.choices:
            return "|".join(self.choices)
        if self.kind is bool:
            return "True|False"
        if self.high is None:
            return f"{'>' if self.open_low else '≥'} {self.low:g}" if self.low is not None else "any number"
        low = "" if self.low is None else f"{self.low:g}"
        return f"{'(' if self.open_low else '['}{low}, {self.high:g}{')' if self.open_high else ']'}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for the page: ``{"kind", "min", "max", "choices", "optional", "help"}``."""
        return {
            "kind": self.kind.__name__,
            "min": self.low,
            "max": self.high,
            "choices": list(self.choices),
            "optional": self.optional,
            "help": self.help,
        }


def _option(default: Any, limit: Limit) -> Any:
    return field(default=default, metadata={"limit": limit})


PROBABILITY = {"kind": float, "low": 0.0, "high": 1.0}


@dataclass(frozen=True)
class DecoderParams:
    """The decoder's options; the bundled model's are tuned on validation data (:mod:`pianomtl.train.tuning`).

    Each field carries its :class:`Limit` (``dataclasses.fields(DecoderParams)[i].metadata["limit"]``,
    or :meth:`limits`): a value out of range is a :class:`ValueError` at construction.
    Change some options of a decoder with :meth:`replace`, which keeps the others
    (a model's tuned frame and pedal thresholds survive a new onset threshold):

    >>> tuned = DecoderParams(frame_threshold=0.3, pedal_high=0.5, pedal_low=0.3)
    >>> tuned.replace(onset_threshold=0.4).frame_threshold
    0.3
    >>> tuned.replace(onset_treshold=0.4)
    Traceback (most recent call last):
    ...
    ValueError: unknown decoder option 'onset_treshold'; did you mean onset_threshold?
    """

    onset_threshold: float = _option(0.5, Limit(**PROBABILITY, help="minimum onset-head peak that starts a note"))
    frame_threshold: float = _option(
        0.5, Limit(**PROBABILITY, help="a note continues while the int (sounding) head is at or above this")
    )
    offset_threshold: float = _option(
        0.5,
        Limit(float, "an offset-head peak at or above this ends a note (above 1: offsets from the int head only)", 0.0),
    )
    min_frames: int = _option(2, Limit(int, "shortest note in frames (2 = 40 ms); offsets looked for after it", 1))
    onset_merge_frames: int = _option(2, Limit(int, "onset peaks of one key closer than this are one onset", 1))
    pedal_high: float = _option(0.6, Limit(**PROBABILITY, help="the pedal goes down when sus rises above this"))
    pedal_low: float = _option(0.4, Limit(**PROBABILITY, help="the pedal comes up when sus falls below this"))
    half_pedal: bool = _option(
        False, Limit(bool, "write the continuous pedal curve (partial pedalling) instead of 0/127 events")
    )
    pedal_step: int = _option(
        8, Limit(int, "with half_pedal: a new CC64 event only when the value moved by this much", 1, 127)
    )
    method: str = _option(
        "threshold",
        Limit(str, "note decoder: threshold (peak picking) or hmm (per-key Viterbi)", choices=NOTE_METHODS),
    )
    hmm_onset_prior: float = _option(
        0.3,
        Limit(float, "hmm: per-frame probability that a key is struck", 0.0, 1.0, open_low=True, open_high=True),
    )
    hmm_end_prior: float = _option(
        0.3,
        Limit(float, "hmm: per-frame probability that a sounding note ends", 0.0, 1.0, open_low=True, open_high=True),
    )
    pedal_frame_threshold: float | None = _option(
        None,
        Limit(
            **PROBABILITY,
            optional=True,
            help="threshold decoder: the frame threshold while the decoded pedal is down (None: frame_threshold)",
        ),
    )

    def __post_init__(self) -> None:
        for item in fields(self):
            item.metadata["limit"].check(item.name, getattr(self, item.name))
        if self.hmm_onset_prior + self.hmm_end_prior >= 1.0:
            raise ValueError("hmm_onset_prior + hmm_end_prior must be below 1 (a sounding key's three ways on)")
        if not self.pedal_low <= self.pedal_high:
            raise ValueError(f"pedal_low ({self.pedal_low}) must not exceed pedal_high ({self.pedal_high})")

    @classmethod
    def limits(cls) -> dict[str, Limit]:
        """Every option's :class:`Limit`, by name (what the CLI and the page are generated from)."""
        return {item.name: item.metadata["limit"] for item in fields(cls)}

    @classmethod
    def check_names(cls, names: Iterable[str]) -> None:
        """Raise :class:`ValueError` naming the first option ``DecoderParams`` does not have (and a near miss)."""
        known = [item.name for item in fields(cls)]
        for name in names:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"did you mean {close[0]}?" if close else f"choose from {', '.join(known)}"
                raise ValueError(f"unknown decoder option {name!r}; {hint}")

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Each option's name and range, on its own (before a model and its decoder are loaded).

        The checks between options (``pedal_low`` ≤ ``pedal_high``) wait for the decoder
        they change: a model's tuned values may make a lone option fit.
        """
        cls.check_names(options)
        limits = cls.limits()
        for name, value in options.items():
            limits[name].check(name, value)

    def replace(self, **options: Any) -> DecoderParams:
        """A copy with the options named changed and every other kept; unknown names and bad values raise."""
        self.check_names(options)
        return dataclasses.replace(self, **options) if options else self

    def to_dict(self) -> dict[str, Any]:
        """Every option by name (plain data: what model files and the JSON output store)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> DecoderParams:
        """Build from a stored dict (a model file's); keys this version does not know are ignored with a warning.

        Lenient on purpose, for files written by a newer version; options a user
        typed go through :meth:`replace`, which refuses unknown names.
        """
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            warnings.warn(f"ignoring unknown decoder parameters: {', '.join(unknown)}", stacklevel=2)
        return cls(**{k: v for k, v in values.items() if k in known})


DecoderOptions = DecoderParams | Mapping[str, Any] | None
"""What ``decoder=`` accepts: full parameters, a partial mapping of options (overrides only those), or ``None``."""


def merge_decoder(base: DecoderParams, decoder: DecoderOptions = None, **options: Any) -> DecoderParams:
    """``base`` (a model's tuned decoder) with ``decoder`` and ``options`` applied on top.

    ``decoder``: a :class:`DecoderParams` replaces ``base`` whole; a mapping changes only
    the options it names (``{"onset_threshold": 0.5}`` keeps ``base``'s frame and pedal
    thresholds). ``options`` (keywords) are applied last. Unknown names raise
    :class:`ValueError`.
    """
    if isinstance(decoder, DecoderParams):
        base = decoder
    elif decoder is not None:
        if not isinstance(decoder, Mapping):
            raise TypeError(f"decoder must be DecoderParams, a dict of options or None, got {type(decoder).__name__}")
        base = base.replace(**decoder)
    return base.replace(**options)


# -- notes -------------------------------------------------------------------------


def _check_activations(activations: dict[str, np.ndarray]) -> int:
    n_frames = len(activations["on"])
    for task in ("on", "int", "off", "vel"):
        shape = np.shape(activations[task])
        if shape != (n_frames, N_KEYS):
            raise ValueError(f"activations[{task!r}] has shape {shape}, expected ({n_frames}, {N_KEYS})")
    return n_frames


def find_peaks(x: np.ndarray, height: float) -> np.ndarray:
    """Indices of the local maxima of ``x`` at or above ``height``: ``scipy.signal.find_peaks(x, height=height)[0]``.

    A maximum is a run of equal values with lower neighbours on both sides (so never
    the first or last sample); a flat run counts once, at its middle (rounded down).
    In numpy, so transcription needs no scipy.
    """
    x = np.asarray(x)
    if len(x) < 3:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], x[1:] != x[:-1]]))
    ends = np.append(starts[1:] - 1, len(x) - 1)
    values = x[starts]
    peak = np.zeros(len(starts), dtype=bool)
    peak[1:-1] = (values[1:-1] > values[:-2]) & (values[1:-1] > values[2:])
    peak &= values >= height
    return ((starts[peak] + ends[peak]) // 2).astype(np.int64)


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
        peaks = find_peaks(padded, threshold)
        peaks = peaks - 1
        if len(peaks) > 1:
            kept: list[int] = []
            current: tuple[int, float] | None = None
            for peak, height in zip(peaks.tolist(), on[peaks, key].tolist(), strict=True):
                current, sealed = merge_peak(current, peak, height, merge_frames)
                if sealed is not None:
                    kept.append(sealed[0])
            assert current is not None
            peaks = np.asarray([*kept, current[0]], dtype=np.int64)
        result.append(peaks.astype(np.int64))
    return result


def merge_peak(
    kept: tuple[int, float] | None, peak: int, height: float, merge_frames: int
) -> tuple[tuple[int, float], tuple[int, float] | None]:
    """One step of onset merging (shared by :func:`pick_onsets` and the causal decoder).

    ``kept``: the last kept ``(frame, height)`` peak of a key (``None`` before the first).
    A peak closer than ``merge_frames`` to it is the same onset (the higher one wins, the
    earlier on a tie); a farther one starts a new onset and seals the kept one. Returns
    ``(the kept peak now, the sealed previous peak or None)``.
    """
    if kept is None:
        return (peak, height), None
    if peak - kept[0] < merge_frames:
        return ((peak, height) if height > kept[1] else kept), None
    return (peak, height), kept


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
    return note_frame_thresholds(pedal_down_frames(sus, params), params)[:, None]


def note_frame_thresholds(down: np.ndarray, params: DecoderParams) -> np.ndarray:
    """The ``int`` threshold of each frame from the decoded pedal state ``down`` (float64):
    ``pedal_frame_threshold`` where the pedal is down, else ``frame_threshold``."""
    return np.where(down, params.pedal_frame_threshold, params.frame_threshold)


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
        for start, limit in zip(starts, next_strike_time(starts, never=n_frames), strict=True):
            notes.append((key, int(start), note_end(int(start), int(limit), inactive, offsets[key], params.min_frames)))
    return notes


def note_end(start: int, limit: int, inactive: np.ndarray, offsets: np.ndarray, min_frames: int) -> int:
    """End frame (exclusive) of a note starting at ``start`` (shared with the causal decoder).

    ``limit``: the key's next onset (a re-strike ends the held note) or the end of the
    recording; ``inactive``: sorted frames where ``int`` is below its threshold;
    ``offsets``: sorted offset-head peaks. After ``min_frames`` the note ends at the
    first of these; it never outlasts ``limit``.
    """
    earliest = start + min_frames
    end = limit
    for frames in (inactive, offsets):
        position = np.searchsorted(frames, earliest)
        if position < len(frames):
            end = min(end, int(frames[position]))
    return end


def note_velocity(values: np.ndarray) -> int:
    """MIDI velocity (1–127) from the velocity head over the onset frame ±1: the maximum × 127."""
    return int(np.clip(np.rint(float(np.max(values)) * MIDI_MAX), 1, MIDI_MAX))


def _velocity(vel: np.ndarray, key: int, start: int) -> int:
    return note_velocity(vel[max(start - 1, 0) : start + 2, key])


def decode_notes(activations: dict[str, np.ndarray], params: DecoderParams | None = None) -> list[Note]:
    """Notes (key, onset s, offset s, velocity 1–127) sorted by onset, then key."""
    params = params or DecoderParams()
    _check_activations(activations)
    if params.method == "hmm":
        return _notes_from_spans(activations, hmm_note_spans(activations, params))
    onsets = pick_onsets(activations["on"], params.onset_threshold, params.onset_merge_frames)
    return notes_from_onsets(activations, onsets, params)


def notes_from_onsets(
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
        limits = next_strike_time(onsets, never=n_frames).astype(int).tolist()  # a re-strike ends the note
        for onset, run_stop, limit in zip(onsets.tolist(), run_stops.tolist(), limits, strict=True):
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


class PedalHysteresis:
    """The pedal state frame by frame: down when ``sus`` rises above ``pedal_high``, up when
    it falls below ``pedal_low`` (shared by :func:`pedal_down_frames` and the causal decoder)."""

    def __init__(self, params: DecoderParams) -> None:
        self.high, self.low = params.pedal_high, params.pedal_low
        self.down = False

    def update(self, curve: np.ndarray) -> np.ndarray:
        """Boolean ``[n]`` pedal state at each of the next ``n`` frames of the ``sus`` curve
        (float64, NaN already zero: :func:`_sus_curve`)."""
        down = np.zeros(len(curve), dtype=bool)
        state = self.down
        for t, value in enumerate(curve):
            if not state and value > self.high:
                state = True
            elif state and value < self.low:
                state = False
            down[t] = state
        self.down = state
        return down


def pedal_down_frames(sus: np.ndarray, params: DecoderParams | None = None) -> np.ndarray:
    """Boolean ``[T]``: the pedal is down at frame ``t`` (hysteresis ``pedal_high``/``pedal_low``)."""
    return PedalHysteresis(params or DecoderParams()).update(_sus_curve(sus))


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
