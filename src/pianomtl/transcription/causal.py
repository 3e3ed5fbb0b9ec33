"""The threshold decoder run causally: frame activations in, note and pedal decisions out.

:class:`CausalDecoder` takes the network's outputs a few frames at a time and decides
every note start, note end and pedal change as soon as later frames can no longer
change it. Its decisions are exactly those of the offline threshold decoder
(:func:`pianomtl.transcription.decoders.decode` with ``method="threshold"``) on the
same activations: the rules are the offline ones, shared as functions
(:func:`~pianomtl.transcription.decoders.merge_peak`,
:func:`~pianomtl.transcription.decoders.note_end`,
:func:`~pianomtl.transcription.decoders.note_velocity`,
:class:`~pianomtl.transcription.decoders.PedalHysteresis`,
:func:`~pianomtl.transcription.decoders.note_frame_thresholds`), and ``tests/test_stream.py``
checks the equality on real activations.

When each decision is made (``t``: the frame just received):

* an **onset** peak is decided when the curve first falls after its flat top: a
  single-frame peak at ``t − 1`` (one frame, 20 ms, of decision delay), a flat top
  ``[a, b]`` at ``t = b + 1`` (its middle ``(a + b) // 2`` is the onset);
  ``onset_merge_frames > 2`` delays it until no later peak can merge into it;
* a **note end** when its frame is known and no undecided onset or offset peak can lie
  before it: usually the frame where ``int`` drops, or where an offset peak is decided;
* a **pedal** change at once (the hysteresis needs only past frames).

Memory is bounded: only the frames that an undecided peak or a held note may still
need are kept.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

import numpy as np

from pianomtl.constants import N_KEYS
from pianomtl.transcription.decoders import (
    DecoderParams,
    PedalHysteresis,
    _change_time,
    _sus_curve,
    merge_peak,
    note_end,
    note_frame_thresholds,
    note_velocity,
)

NEVER = np.iinfo(np.int64).max // 4
"""A horizon beyond any frame (after the end of the recording)."""


class Decision(NamedTuple):
    """A decoder decision: ``note_on`` / ``note_off`` at ``frame`` (key column 0–87,
    velocity 1–127; a note_off carries its note's onset frame as ``onset``), or
    ``pedal_on`` / ``pedal_off`` at ``time`` seconds (between two frames). ``onset``
    decisions announce an onset as soon as its peak is decided, before its ``note_on``
    (which waits until the key's previous note has ended)."""

    kind: str
    frame: int
    key: int = -1
    velocity: int = 0
    onset: int = -1
    time: float = 0.0


class PeakTracker:
    """Peaks of ``n`` curves decided frame by frame, by the offline rule.

    The rule of :func:`~pianomtl.transcription.decoders.find_peaks` on the curve padded
    with ``-1`` at both ends, as :func:`~pianomtl.transcription.decoders.pick_onsets`
    calls it: a run of equal values with lower values on both sides, at or above
    ``threshold`` (compared in float64), counts once at its middle (rounded down); then
    :func:`~pianomtl.transcription.decoders.merge_peak` with ``merge_frames``.
    """

    def __init__(self, n: int, threshold: float, merge_frames: int) -> None:
        self.threshold = float(threshold)
        self.merge_frames = merge_frames
        self.value = np.full(n, -1.0)  # the current run's value (the -1 pad before frame 0)
        self.start = np.full(n, -1, dtype=np.int64)  # the current run's first frame
        self.rising = np.zeros(n, dtype=bool)  # the run's left neighbour is lower
        self.kept = np.full(n, -1, dtype=np.int64)  # a peak not yet sealed by merging (-1: none)
        self.kept_height = np.zeros(n)
        self.frame = 0  # frames seen
        self.done = False

    def push(self, row: np.ndarray) -> list[tuple[int, int]]:
        """Take the next frame's values ``[n]``; returns the peaks ``(column, frame)`` decided now."""
        return self._step(np.asarray(row, dtype=np.float64), advance=True)

    def finish(self) -> list[tuple[int, int]]:
        """The end of the curve (the ``-1`` pad): decides every remaining peak."""
        sealed = self._step(np.full(len(self.value), -1.0), advance=False)
        for column in np.flatnonzero(self.kept >= 0):
            sealed.append((int(column), int(self.kept[column])))
        self.kept[:] = -1
        self.done = True
        return sealed

    def horizon(self) -> np.ndarray:
        """Per column: every peak before this frame has been returned (sealed)."""
        if self.done:
            return np.full(len(self.value), NEVER, dtype=np.int64)
        open_run = self.rising & (self.value >= self.threshold)
        result = np.where(open_run, self.start, self.frame)
        return np.where(self.kept >= 0, np.minimum(result, self.kept), result)

    def _step(self, x: np.ndarray, advance: bool) -> list[tuple[int, int]]:
        t = self.frame
        changed = x != self.value
        ends = changed & self.rising & (x < self.value) & (self.value >= self.threshold)
        sealed: list[tuple[int, int]] = []
        for column in np.flatnonzero(ends):
            peak = int(self.start[column] + t - 1) // 2
            kept = None if self.kept[column] < 0 else (int(self.kept[column]), float(self.kept_height[column]))
            now, done = merge_peak(kept, peak, float(self.value[column]), self.merge_frames)
            self.kept[column], self.kept_height[column] = now
            if done is not None:
                sealed.append((int(column), done[0]))
        self.rising[changed] = x[changed] > self.value[changed]
        self.start[changed] = t
        self.value[changed] = x[changed]
        if advance:
            self.frame = t + 1
            # a kept peak is final once no later peak can come within merge_frames of it
            pending = np.flatnonzero(self.kept >= 0)
            if len(pending):
                open_run = self.rising[pending] & (self.value[pending] >= self.threshold)
                earliest_next = np.where(open_run, self.start[pending], self.frame)
                for column in pending[earliest_next >= self.kept[pending] + self.merge_frames]:
                    sealed.append((int(column), int(self.kept[column])))
                    self.kept[column] = -1
        return sealed


class _History:
    """Per-frame rows kept from frame ``base`` on (velocity, int below threshold, offset peaks)."""

    def __init__(self) -> None:
        self.base = 0
        self.count = 0
        self.vel = np.zeros((64, N_KEYS), dtype=np.float32)
        self.inactive = np.zeros((64, N_KEYS), dtype=bool)
        self.offset = np.zeros((64, N_KEYS), dtype=bool)

    def append(self, vel: np.ndarray, inactive: np.ndarray) -> None:
        if self.count == len(self.vel):
            for name in ("vel", "inactive", "offset"):
                old = getattr(self, name)
                grown = np.zeros((2 * len(old), N_KEYS), dtype=old.dtype)
                grown[: self.count] = old[: self.count]
                setattr(self, name, grown)
        self.vel[self.count] = vel
        self.inactive[self.count] = inactive
        self.offset[self.count] = False
        self.count += 1

    def drop_before(self, frame: int) -> None:
        cut = min(max(frame - self.base, 0), self.count)
        if cut < 64 or cut < self.count // 2:
            return  # trim in batches (each trim copies the rows kept)
        for name in ("vel", "inactive", "offset"):
            array = getattr(self, name)
            array[: self.count - cut] = array[cut : self.count]
        self.count -= cut
        self.base += cut

    def frames(self, flags: np.ndarray, key: int, start: int, stop: int) -> np.ndarray:
        """Frames in ``[start, stop)`` whose ``flags`` (``inactive`` / ``offset``) are set for ``key``."""
        low, high = max(start - self.base, 0), min(stop - self.base, self.count)
        if high <= low:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(flags[low:high, key]) + (low + self.base)


class CausalDecoder:
    """The offline threshold decoder, decided frame by frame (see the module docstring).

    ``step(outputs)`` takes the next frames' activations (``on``/``int``/``off``/``vel``
    ``[n, 88]``, ``sus`` ``[n, 1]``) and returns the :class:`Decision` s made, in order;
    ``finish()`` ends the recording (notes still held end at its last frame, as
    offline). :meth:`onset_horizon` tells, per key, before which frame every onset has
    been decided.
    """

    def __init__(self, params: DecoderParams | None = None) -> None:
        self.params = params or DecoderParams()
        self.onsets = PeakTracker(N_KEYS, self.params.onset_threshold, self.params.onset_merge_frames)
        # an offset threshold above 1 switches offset peaks off (as offline); values never exceed 1
        self.offsets = PeakTracker(N_KEYS, self.params.offset_threshold, 1)
        self.pedal = PedalHysteresis(self.params)
        self.history = _History()
        self.frame = 0
        self.held = np.full(N_KEYS, -1, dtype=np.int64)  # onset frame of the held note per key (-1: none)
        self.held_velocity = np.zeros(N_KEYS, dtype=np.int64)
        self.clear = np.zeros(N_KEYS, dtype=np.int64)  # no end candidate of the held note before this frame
        self.queue: list[deque[tuple[int, int]]] = [deque() for _ in range(N_KEYS)]  # decided onsets waiting
        self.known = np.zeros(N_KEYS, dtype=np.int64)  # every onset and offset peak before this frame is decided
        self.finished = False

    def onset_horizon(self) -> np.ndarray:
        """``[88]``: every onset of the key before this frame has been decided."""
        return self.onsets.horizon()

    def step(self, outputs: dict[str, np.ndarray]) -> list[Decision]:
        if self.finished:
            raise RuntimeError("the decoder has finished")
        decisions: list[Decision] = []
        for index in range(len(outputs["on"])):
            self._frame({task: values[index] for task, values in outputs.items()}, decisions)
        return decisions

    def finish(self) -> list[Decision]:
        """The end of the recording: decide every remaining peak and end every held note."""
        decisions: list[Decision] = []
        if self.finished:
            return decisions
        self._mark_offsets(self.offsets.finish())
        onsets = self.onsets.finish()
        self.finished = True
        self._queue_onsets(onsets, decisions)
        for key in range(N_KEYS):
            self._resolve(key, decisions)
        return decisions

    def _frame(self, row: dict[str, np.ndarray], decisions: list[Decision]) -> None:
        t = self.frame
        params = self.params
        was_down = self.pedal.down
        down = self.pedal.update(_sus_curve(np.asarray(row["sus"]).reshape(1, -1)))[0]
        if down != was_down:
            decisions.append(Decision("pedal_on" if down else "pedal_off", t, time=_change_time(t)))
        if params.pedal_frame_threshold is None:
            threshold: float | np.ndarray = params.frame_threshold  # compared as offline: a float32 scalar
        else:
            threshold = note_frame_thresholds(np.array([down]), params)
        self.history.append(row["vel"], row["int"] < threshold)
        self._mark_offsets(self.offsets.push(row["off"]))
        onsets = self.onsets.push(row["on"])
        self.frame = t + 1
        onset_horizon = self.onsets.horizon()
        self.known = np.minimum(np.minimum(onset_horizon, self.offsets.horizon()), self.frame)
        self._queue_onsets(onsets, decisions)
        for key in np.flatnonzero(self.held >= 0).tolist() + [k for k, _ in onsets]:
            self._resolve(int(key), decisions)
        keep = min(int(onset_horizon.min()) - 1, int(self.known.min()))
        if (self.held >= 0).any():
            keep = min(keep, int(self.clear[self.held >= 0].min()))
        self.history.drop_before(keep)

    def _mark_offsets(self, peaks: list[tuple[int, int]]) -> None:
        for key, frame in peaks:
            if frame >= self.history.base:
                self.history.offset[frame - self.history.base, key] = True

    def _queue_onsets(self, onsets: list[tuple[int, int]], decisions: list[Decision]) -> None:
        history = self.history
        for key, frame in sorted(onsets, key=lambda item: item[1]):
            low, high = max(frame - 1, 0) - history.base, min(frame + 2 - history.base, history.count)
            velocity = note_velocity(history.vel[low:high, key])
            self.queue[key].append((frame, velocity))
            decisions.append(Decision("onset", frame, key, velocity))

    def _resolve(self, key: int, decisions: list[Decision]) -> None:
        """End the held note of ``key`` if its end is decided; start queued notes."""
        min_frames = self.params.min_frames
        queue = self.queue[key]
        while True:
            start = int(self.held[key])
            if start < 0:
                if not queue:
                    return
                onset, velocity = queue.popleft()
                self.held[key], self.held_velocity[key] = onset, velocity
                self.clear[key] = onset + min_frames
                decisions.append(Decision("note_on", onset, key, velocity))
                continue
            # every candidate end before `known` is known: int frames, offset peaks, onsets
            known = self.frame if self.finished else int(self.known[key])
            following = queue[0][0] if queue else None
            limit = known if following is None else min(following, known)
            scan_from = int(self.clear[key])
            inactive = self.history.frames(self.history.inactive, key, scan_from, known)
            offsets = self.history.frames(self.history.offset, key, scan_from, known)
            end = note_end(start, limit, inactive, offsets, min_frames)
            if end < known or end == following or self.finished:
                decisions.append(Decision("note_off", end, key, int(self.held_velocity[key]), onset=start))
                self.held[key] = -1
                continue
            self.clear[key] = max(scan_from, known)
            return


__all__ = ["CausalDecoder", "Decision", "PeakTracker"]
