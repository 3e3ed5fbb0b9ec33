"""Live transcription: audio blocks in, note and pedal events out while the piano plays.

>>> from pianomtl import Stream
>>> stream = Stream(rate=48000, channels=2)
>>> for block in blocks:                       # any length: 1 sample or 10 s
...     for event in stream.feed(block):
...         print(event.to_json())
>>> final = stream.close()                     # flushes, ends every held note

Every stage runs incrementally, and what it computes equals the offline pipeline
(:class:`~pianomtl.transcription.pipeline.Transcriber`) on the same audio:

* **Features** — the project's one framer
  (:class:`~pianomtl.core.features.StreamingSpectrogram`): a frame is computed as soon
  as its last sample arrives (2048 samples, 46 ms, after its centre). Other rates are
  resampled block by block (:class:`~pianomtl.core.audio.BlockResampler`, the file
  reader's), after averaging the channels.
* **Network** — for each new frame ``f`` the network sees frames ``f−10 … f``, so
  frame ``f−5`` gets its *exact* outputs (the same 11-frame window as offline, the
  first frame repeated before the start, the last one after the end at
  :meth:`Stream.close`). A recurrent model (``recurrent`` / ``forward_with_state``)
  carries its state from frame to frame. Each pass is the offline runner's
  :class:`~pianomtl.transcription.inference.NetworkStep`.
* **Decoder** — :class:`~pianomtl.transcription.causal.CausalDecoder`, the offline
  threshold decoder decided frame by frame: on the exact outputs its notes and pedal
  are exactly the offline ones.

**Early onsets.** Exact outputs wait for 5 frames (100 ms) of look-ahead and a peak
is decided one frame after it: with the 46 ms of the FFT window a note-on would come
≈ 170 ms after the key is struck. So note-ons are *announced early*, from the
network's outputs with only ``lookahead`` future frames (default 3; the frames
beyond the newest one repeated, exactly what offline transcription computes at the end
of a recording): a note-on is emitted when that provisional onset probability first
reaches ``onset_threshold`` + 0.1 (:data:`EARLY_MARGIN`; the rising edge instead of the peak), at the frame of the
provisional peak (the crossing frame or the next one, whichever is higher), with the
velocity rule of the offline decoder (the maximum over the frame ±1) applied to the
provisional velocities. The exact decoder then **confirms** it (an exact onset of the
key within ±2 frames, :data:`CONFIRM_FRAMES`), or **retracts** it (a note_off
``min_frames`` after it, as soon as no exact onset can match), and emits the note-ons
the early detector missed, late but exact. Note ends and the pedal always come from the
exact decoder. ``lookahead=5`` turns early onsets off: every event is then exactly the
offline decoder's, at ≈ 170 ms. ``docs/streaming.md`` has the measured latencies and
the agreement with offline transcription.

Events carry ``time`` (when it happened in the audio, s) and ``emitted_at`` (how much
audio had been fed when it was emitted, s); the events, apart from ``emitted_at``, do
not depend on how the audio was cut into blocks. ``close()`` always ends every
note it started: each ``note_on`` gets its ``note_off``.

Input: ``feed`` takes ``[n]`` (mono, or interleaved when ``channels > 1``; an
incomplete last sample frame waits for the next block), ``[n, channels]`` or
``[channels, n]`` arrays, float or integer. NaN and infinite samples are treated as
silence (a :class:`StreamWarning`, once); samples at full scale are used as they are
(a warning, once). A different ``rate=`` or channel count mid-stream is refused
(``ValueError``): one stream is one signal.
"""

from __future__ import annotations

import json
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pianomtl.constants import CONTEXT, FPS, MIN_KEY, N_BINS, N_KEYS, SAMPLE_RATE
from pianomtl.core.audio import MAX_FILE_CHANNELS, BlockResampler, check_sample_rate, integers_to_float
from pianomtl.core.features import StreamingSpectrogram
from pianomtl.core.midi import Note, PedalEvent, Performance, write_midi
from pianomtl.transcription.backends import load_network
from pianomtl.transcription.causal import CausalDecoder, Decision
from pianomtl.transcription.decoders import DecoderOptions, DecoderParams, merge_decoder, note_velocity
from pianomtl.transcription.inference import NetworkStep

DEFAULT_LOOKAHEAD = 3
"""Future frames the early onset detector waits for (60 ms); :data:`CONTEXT` (5) is exact decoding only."""
EARLY_MARGIN = 0.1
"""Early note-ons need the provisional onset probability at ``onset_threshold`` + this.

Without its last frames of context the network is less sure, and a provisional
crossing the exact decoder does not confirm costs a retracted note (a false positive
against offline). Measured on 10 test-split recordings and a 45 s rendered clip
(lookahead 3, 20 ms blocks; ``docs/streaming.md``): margin 0 → agreement F1 0.994,
p95 look-ahead 125 ms; 0.1 → 0.998, 137 ms (more notes left to the exact decoder,
emitted late)."""
CONFIRM_FRAMES = 2
"""An exact onset within this many frames (40 ms) of an early note-on confirms it."""
DISTRUST_FRAMES = 25
"""After an early note-on of a key is retracted, the key's note-ons wait for the exact
decoder this many frames (0.5 s): the provisional view is wrong there (in fast repeated
notes, whose later strikes the offline decoder does not see either, it would announce
note after note that the exact decoder then retracts)."""
MIN_PUSH_SECONDS = 0.001
"""Blocks shorter than this are gathered before framing (1-sample blocks stay cheap; ≤ 1 ms later)."""
EVENT_TYPES = ("note_on", "note_off", "pedal_on", "pedal_off")


class StreamWarning(UserWarning):
    """Something about the input was repaired or may be wrong (NaN, clipping, a cut-off sample)."""


@dataclass(frozen=True)
class StreamEvent:
    """One event: ``type`` (``note_on``, ``note_off``, ``pedal_on``, ``pedal_off``), ``time``
    (s into the audio), ``emitted_at`` (s of audio fed when it was emitted); note events
    also ``key`` (MIDI 21–108) and ``velocity`` (1–127, a note_off repeats its note's)."""

    type: str
    time: float
    emitted_at: float
    key: int | None = None
    velocity: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"type", "time", "key", "velocity", "emitted_at"}`` (no key/velocity for the pedal)."""
        result: dict[str, Any] = {"type": self.type, "time": round(self.time, 6)}
        if self.key is not None:
            result["key"] = self.key
            result["velocity"] = self.velocity
        result["emitted_at"] = round(self.emitted_at, 6)
        return result

    def to_json(self) -> str:
        """:meth:`to_dict` as one line of JSON (what ``pianomtl stream`` prints)."""
        return json.dumps(self.to_dict())


@dataclass
class _Sounding:
    """A note the stream has started and not yet ended."""

    onset: int  # frame
    velocity: int
    exact_onset: int | None  # the exact decoder's onset it stands for (None: early, unconfirmed)
    crossing: int = -1  # an early note-on's frame where the provisional onset probability crossed


@dataclass
class _Input:
    """Block conversion state: the rate, channels, an incomplete interleaved sample frame, warnings given."""

    rate: float
    channels: int
    partial: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    warned: set[str] = field(default_factory=set)

    def warn_once(self, kind: str, message: str) -> None:
        if kind not in self.warned:
            self.warned.add(kind)
            warnings.warn(message, StreamWarning, stacklevel=4)

    def mono(self, samples: Any) -> np.ndarray:
        """One block as mono float32 (channels averaged), NaN/inf as silence."""
        try:
            array = np.asarray(samples)
        except (ValueError, TypeError) as error:
            raise TypeError(f"stream: not a sample array ({str(error).splitlines()[0]})") from None
        if (
            array.dtype == object
            or array.dtype == np.bool_
            or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer))
        ):
            raise TypeError(f"stream: samples must be integer or float numbers, got dtype {array.dtype}")
        channels = self.channels
        if array.ndim == 2:
            if array.shape[1] != channels and array.shape[0] == channels:
                array = array.T  # channels-first
            if array.shape[1] != channels:
                raise ValueError(
                    f"stream: a block of shape {list(array.shape)} does not have the stream's {channels} "
                    "channel(s); the channel count cannot change mid-stream (start a new Stream)"
                )
        elif array.ndim != 1:
            raise ValueError(f"stream: expected a 1-D or 2-D block of samples, got shape {list(array.shape)}")
        array = integers_to_float(array)
        if array.ndim == 1 and channels > 1:  # interleaved: keep an incomplete sample frame for the next block
            if len(self.partial):
                array = np.concatenate([self.partial, array])
            whole = len(array) - len(array) % channels
            self.partial = array[whole:].copy()
            array = array[:whole].reshape(-1, channels)
        mono = array.mean(axis=1, dtype=np.float32) if array.ndim == 2 else array.astype(np.float32, copy=False)
        finite = np.isfinite(mono)
        if not finite.all():
            self.warn_once("nan", "stream: NaN or infinite samples in the input are treated as silence")
            mono = np.where(finite, mono, np.float32(0.0))
        if len(mono) and float(np.max(np.abs(mono))) >= 1.0:
            self.warn_once("clip", "stream: the signal reaches full scale; it may be clipped")
        return mono


class Stream:
    """Live transcription of one signal: audio blocks in, note and pedal events out as they are decided.

    ::

        stream = Stream(rate=48000, channels=2)
        for block in blocks:                    # any length: 1 sample or 10 s
            for event in stream.feed(block):    # StreamEvents: note_on, note_off, pedal_on, pedal_off
                print(event.to_json())
        final = stream.close()                  # flushes, ends every held note

    Each stage equals the offline pipeline on the same audio; note-ons are announced
    early and then confirmed or retracted (:mod:`pianomtl.transcription.stream` explains
    how, and ``docs/streaming.md`` gives the latencies).

    ``rate``/``channels``: the input's sample rate (Hz) and channel count, fixed for
    the stream. ``model``, ``decoder``, ``device``, ``backend``, ``threads``: as for
    :class:`~pianomtl.transcription.pipeline.Transcriber` (the bundled model by
    default), or pass a loaded ``transcriber``. ``lookahead``: future frames (0–5) the
    early note-ons wait for; 5 = no early note-ons, every event exactly offline.
    ``early_threshold``: the provisional onset probability an early note-on needs
    (default ``onset_threshold`` + :data:`EARLY_MARGIN`).
    The model's decoder must be the threshold one (an HMM needs the whole recording:
    its parameters' threshold rules are used instead, with a warning).
    """

    def __init__(
        self,
        rate: float = SAMPLE_RATE,
        channels: int = 1,
        model: Any = None,
        *,
        decoder: DecoderOptions = None,
        lookahead: int = DEFAULT_LOOKAHEAD,
        early_threshold: float | None = None,
        device: Any = "cpu",
        backend: str | None = None,
        threads: int = 0,
        transcriber: Any = None,
    ) -> None:
        rate = check_sample_rate(rate, "stream")
        if (
            isinstance(channels, bool)
            or not isinstance(channels, int | np.integer)
            or not 1 <= channels <= MAX_FILE_CHANNELS  # what transcribe reads from a file, so stream reads it too
        ):
            raise ValueError(
                f"stream: channels must be a whole number from 1 to {MAX_FILE_CHANNELS}, got {channels!r}"
            )
        if isinstance(lookahead, bool) or not isinstance(lookahead, int | np.integer) or not 0 <= lookahead <= CONTEXT:
            raise ValueError(
                f"stream: lookahead must be a whole number of frames from 0 to {CONTEXT}, got {lookahead!r}"
            )
        if transcriber is None:  # anything with .model, .device and .decoder will do (a Transcriber)
            transcriber = load_network(model, device=device, backend=backend, threads=threads)
        params = merge_decoder(transcriber.decoder, decoder)  # a dict changes only the options it names
        if params.method != "threshold":
            warnings.warn(
                f"stream: the {params.method!r} note decoder needs the whole recording; streaming uses the "
                "threshold decoder's rules with the same thresholds",
                StreamWarning,
                stacklevel=2,
            )
        self.params: DecoderParams = params
        self.early_threshold = (
            min(params.onset_threshold + EARLY_MARGIN, 1.0) if early_threshold is None else float(early_threshold)
        )
        self.lookahead = int(lookahead)
        self.device = transcriber.device
        self.network = NetworkStep(transcriber.model, self.device)  # the step offline inference runs too
        if self.network.torch:
            transcriber.model.eval()
        self.state = self.network.initial_state()  # a recurrent model's state after the last exact frame
        self.input = _Input(rate, int(channels))
        self.resampler = BlockResampler(rate, "stream")  # the file reader's resampler
        self.framer = StreamingSpectrogram(self.device)
        self.decoder = CausalDecoder(params)
        self.pending: list[np.ndarray] = []
        self.pending_count = 0
        self.min_push = max(1, round(rate * MIN_PUSH_SECONDS))
        self.fed = 0  # input samples (per channel) consumed
        self.n_frames = 0  # feature frames received
        self.recent = np.zeros((0, N_BINS), dtype=np.float32)  # the last 2·CONTEXT + 1 feature frames
        self.previous_view = np.full(N_KEYS, -1.0)  # provisional onset probability of the last early frame
        self.exact_last_onset = np.full(N_KEYS, -(10**9), dtype=np.int64)
        self.confirmed: list[set[int]] = [set() for _ in range(N_KEYS)]  # exact onsets an early note-on stands for
        self.distrust_until = np.full(N_KEYS, -1, dtype=np.int64)  # no early note-ons before this frame
        self.sounding: dict[int, _Sounding] = {}
        self.unconfirmed: dict[int, deque[_Sounding]] = {}  # per key: early notes no exact onset has confirmed yet
        self.pedal_down = False
        self.outbox: list[tuple[str, float, int | None, int | None]] = []
        self.events: list[StreamEvent] = []
        self.notes: list[Note] = []
        self.pedal: list[PedalEvent] = []
        self.closed = False

    # -- public ------------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """The input's sample rate in Hz (fixed for the stream)."""
        return self.input.rate

    @property
    def channels(self) -> int:
        """The input's channel count (fixed for the stream)."""
        return self.input.channels

    @property
    def seconds_fed(self) -> float:
        """Seconds of audio fed so far."""
        return self.fed / self.input.rate

    def feed(self, samples: Any, rate: float | None = None) -> list[StreamEvent]:
        """Take the next block of samples; returns the events decided so far (possibly none).

        ``rate``: optional, the block's sample rate — a rate other than the stream's is
        refused with a ``ValueError`` (one stream is one signal; start a new one).
        """
        if self.closed:
            raise RuntimeError("stream: feed() after close(); start a new Stream")
        if rate is not None and float(rate) != self.input.rate:
            raise ValueError(
                f"stream: the sample rate changed from {self.input.rate:g} Hz to {float(rate):g} Hz mid-stream; "
                "one stream is one signal (resample the input, or close this stream and start a new one)"
            )
        mono = self.input.mono(samples)
        self.fed += len(mono)
        if len(mono):
            self.pending.append(mono)
            self.pending_count += len(mono)
        if self.pending_count >= self.min_push:
            self._push(last=False)
        return self._flush_outbox()

    def close(self) -> list[StreamEvent]:
        """End of the signal: decide everything left and end every held note; returns the last events."""
        if self.closed:
            return []
        self.closed = True
        if len(self.input.partial):
            self.input.warn_once(
                "partial",
                f"stream: the input ended inside a sample frame ({len(self.input.partial)} of "
                f"{self.input.channels} channel values); that incomplete frame is dropped",
            )
        if self.fed == 0:
            return []
        self._push(last=True)
        tail = self.framer.finish()
        for row in tail:
            self._frame(row)
        self._finish_exact()
        for key in sorted(self.sounding):  # nothing should be left; never leave a note hanging
            self._end(key, max(self.n_frames, self.sounding[key].onset + 1))
        if self.pedal_down:
            self._pedal(False, self.n_frames / FPS)
        return self._flush_outbox()

    def performance(self) -> Performance:
        """The notes ended so far and the pedal events, as a :class:`~pianomtl.core.midi.Performance`."""
        notes = sorted(self.notes, key=lambda n: (n.onset, n.key))
        return Performance(notes, list(self.pedal))

    def write_midi(self, path: str | Path) -> Path:
        """Write what was emitted (notes and CC64) as a MIDI file, atomically."""
        path = Path(path)
        write_midi(path, self.performance())
        return path

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- audio → frames -----------------------------------------------------------------

    def _push(self, last: bool) -> None:
        mono = np.concatenate(self.pending) if self.pending else np.zeros(0, dtype=np.float32)
        self.pending, self.pending_count = [], 0
        mono = self.resampler(mono, last=last)
        if len(mono):
            self.framer.push(mono)
        for row in self.framer.take():
            self._frame(row)

    # -- frames → network → decoders -------------------------------------------------------

    def _rows(self, first: int, last: int, newest: int) -> np.ndarray:
        """Network input for output frames ``[first, last]``: rows ``first−5 … last+5``, clipped to ``[0, newest]``."""
        indices = np.clip(np.arange(first - CONTEXT, last + CONTEXT + 1), 0, newest)
        start = self.n_frames - len(self.recent)
        return self.recent[indices - start]

    def _frame(self, row: np.ndarray) -> None:
        """A new feature frame ``f``: exact outputs of frame ``f − 5``, the early view, decisions."""
        f = self.n_frames
        self.recent = np.concatenate([self.recent[-2 * CONTEXT :], row[None]])
        self.n_frames = f + 1
        exact_frame = f - CONTEXT
        early = self.lookahead < CONTEXT
        last = f - self.lookahead + 1 if early else exact_frame
        view: dict[str, np.ndarray] | None = None
        if self.network.stateful:
            if exact_frame >= 0:
                outputs, state = self.network(self._rows(exact_frame, exact_frame, f), self.state)
                self._exact({task: v[:1] for task, v in outputs.items()})
            first = max(exact_frame, 0)
            if early and last >= first:
                view, _ = self.network(self._rows(first, last, f), self.state)
                view_first = first
            if exact_frame >= 0:
                self.state = state
        else:
            if last < 0:
                return  # no exact frame and no early frame yet
            first = exact_frame
            outputs, _ = self.network(self._rows(first, last, f))
            if exact_frame >= 0:
                self._exact({task: v[:1] for task, v in outputs.items()})
            view, view_first = outputs, first
        if early and view is not None:
            self._early(f - self.lookahead, view, view_first)

    def _finish_exact(self) -> None:
        """The recording's last frames (the last frame repeated after the end, as offline), then the end."""
        first = max(self.n_frames - CONTEXT, 0)
        if self.n_frames and first < self.n_frames:
            newest = self.n_frames - 1
            outputs, state = self.network(self._rows(first, newest, newest), self.state)
            if self.network.stateful:
                self.state = state
            self._exact(outputs)
        self._apply(self.decoder.finish())
        self._retract_unconfirmed(finished=True)

    def _exact(self, outputs: dict[str, np.ndarray]) -> None:
        self._apply(self.decoder.step(outputs))
        self._retract_unconfirmed(finished=False)

    def _early(self, t: int, view: dict[str, np.ndarray], view_first: int) -> None:
        """The early onset detector at frame ``t`` (its view has ``lookahead`` future frames)."""
        if t < 0:
            return
        threshold = self.early_threshold

        def rows(name: str, a: int, b: int) -> np.ndarray:  # view frames [a, b] (those that exist)
            a = max(a, 0, view_first)
            return view[name][a - view_first : b - view_first + 1]

        current = rows("on", t, t)[0].astype(np.float64)
        crossed = np.flatnonzero((current >= threshold) & (self.previous_view < threshold))
        self.previous_view = current
        if not len(crossed):
            return
        horizon = self.decoder.onset_horizon()
        following = rows("on", t + 1, t + 1)
        for key in crossed.tolist():
            onset = t + 1 if len(following) and following[0, key] > current[key] else t
            if t < self.distrust_until[key]:
                continue  # a recent early note-on of this key was retracted
            if t - CONFIRM_FRAMES <= int(self.exact_last_onset[key]) <= onset + CONFIRM_FRAMES:
                continue  # the exact decoder has already started this note
            if horizon[key] > onset + CONFIRM_FRAMES:
                continue  # the exact decoder has already decided there is no onset here
            velocity = note_velocity(rows("vel", t - 1, t + 1)[:, key])
            if key in self.sounding:  # a re-strike ends the held note
                self._end(key, max(onset, self.sounding[key].onset + 1))
            self.sounding[key] = _Sounding(onset, velocity, None, crossing=t)
            self.unconfirmed.setdefault(key, deque()).append(self.sounding[key])
            self._note_on(key, onset, velocity)

    def _apply(self, decisions: list[Decision]) -> None:
        """Turn the exact decoder's decisions into events, reconciled with the early note-ons."""
        for decision in decisions:
            key = decision.key
            if decision.kind == "onset":  # an exact onset, decided (its note_on may wait for the previous note's end)
                self.exact_last_onset[key] = decision.frame
                self._confirm(key, decision.frame)
            elif decision.kind == "note_on":
                if decision.frame in self.confirmed[key]:
                    self.confirmed[key].discard(decision.frame)
                    continue  # an early note-on already stands for it
                sounding = self.sounding.get(key)
                if sounding is not None and sounding.onset > decision.frame:
                    continue  # the output has moved on to a newer note of the key: too late for this one
                if sounding is not None:
                    self._end(key, max(decision.frame, sounding.onset + 1))
                self.sounding[key] = _Sounding(decision.frame, decision.velocity, decision.frame)
                self._note_on(key, decision.frame, decision.velocity)
            elif decision.kind == "note_off":
                sounding = self.sounding.get(key)
                if sounding is not None and sounding.exact_onset == decision.onset:
                    self._end(key, max(decision.frame, sounding.onset + 1))
            else:
                self._pedal(decision.kind == "pedal_on", decision.time)

    def _confirm(self, key: int, onset: int) -> None:
        """An exact onset confirms the key's oldest early note-on within :data:`CONFIRM_FRAMES` of it."""
        waiting = self.unconfirmed.get(key)
        while waiting and waiting[0].onset + CONFIRM_FRAMES < onset:  # exact onsets come in order: too old
            self._retract(key, waiting.popleft())
        if waiting and waiting[0].crossing - CONFIRM_FRAMES <= onset:
            note = waiting.popleft()
            note.exact_onset = onset  # it now ends where the exact note ends
            self.confirmed[key].add(onset)

    def _retract_unconfirmed(self, finished: bool) -> None:
        """Retract early notes that no exact onset can confirm any more."""
        if not self.unconfirmed:
            return
        horizon = self.decoder.onset_horizon()
        for key in sorted(self.unconfirmed):
            waiting = self.unconfirmed[key]
            while waiting and (finished or horizon[key] > waiting[0].onset + CONFIRM_FRAMES):
                self._retract(key, waiting.popleft())
            if not waiting:
                del self.unconfirmed[key]

    def _retract(self, key: int, note: _Sounding) -> None:
        """An early note-on the exact decoder did not confirm: ended ``min_frames`` after it if still sounding."""
        self.distrust_until[key] = note.crossing + DISTRUST_FRAMES
        if self.sounding.get(key) is note:
            self._end(key, note.onset + self.params.min_frames)

    # -- events ---------------------------------------------------------------------------

    def _note_on(self, key: int, frame: int, velocity: int) -> None:
        self.outbox.append(("note_on", frame / FPS, MIN_KEY + key, int(velocity)))

    def _end(self, key: int, frame: int) -> None:
        sounding = self.sounding.pop(key)
        self.outbox.append(("note_off", frame / FPS, MIN_KEY + key, sounding.velocity))
        self.notes.append(Note(MIN_KEY + key, sounding.onset / FPS, frame / FPS, sounding.velocity))

    def _pedal(self, down: bool, time: float) -> None:
        self.pedal_down = down
        self.outbox.append(("pedal_on" if down else "pedal_off", time, None, None))
        self.pedal.append(PedalEvent(time, 127 if down else 0))

    def _flush_outbox(self) -> list[StreamEvent]:
        emitted_at = self.seconds_fed
        events = [StreamEvent(kind, time, emitted_at, key, velocity) for kind, time, key, velocity in self.outbox]
        self.outbox.clear()
        self.events.extend(events)
        return events


__all__ = ["CONFIRM_FRAMES", "DEFAULT_LOOKAHEAD", "Stream", "StreamEvent", "StreamWarning"]
