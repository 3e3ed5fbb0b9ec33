"""Run a network over a whole recording in chunks, exactly as if it ran at once.

Each chunk of output frames ``[a, b)`` receives input rows ``[a-5, b+5)`` (edges
repeated at the recording's ends), and every output frame depends only on its own
11-frame window, so chunked results equal whole-file results to float precision:
there are no seams. Memory is bounded by the chunk size, not the recording length.
The chunk size is a speed choice only: on a CPU, chunks of :data:`CPU_CHUNK_FRAMES`
keep each layer's maps near the caches and run faster than whole minutes (measured in
``benchmarks/RESULTS.md``); GPUs get :data:`DEFAULT_CHUNK_FRAMES` (fewer, larger kernels).

A causal recurrent model (``model.recurrent``, e.g. ``hard+gru``) also depends on every
earlier frame: its state (``initial_state`` / ``forward_with_state``) is carried from
one chunk to the next, so chunked output again equals whole-file output; a
bidirectional one (``causal`` false) runs the whole recording in one pass.

Torch is imported only for torch models: an
:class:`~pianomtl.transcription.onnx_model.OnnxModel` runs on numpy arrays alone.

``precision="bf16"`` runs the network under bfloat16 autocast (torch models only):
about 2.5× faster on CPUs with AMX / AVX512-BF16 and on GPUs, at the price of
activations that differ from float32 by up to a few 1e-3 (so a few decoded onsets may
move or flip near the thresholds). The default ``"fp32"`` is exact.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from pianomtl.constants import BINARY_TASKS, CONTEXT, N_BINS, TASK_WIDTH, TASKS
from pianomtl.core.features import context_indices

if TYPE_CHECKING:
    import torch

DEFAULT_CHUNK_FRAMES = 3000  # 60 s of audio per forward pass (GPUs, other devices)
CPU_CHUNK_FRAMES = 512  # ≈10 s per forward pass on a CPU
PRECISIONS = ("fp32", "bf16")


def _device_type(device: str | torch.device) -> str:
    return str(device).split(":")[0]


def default_chunk_frames(device: str | torch.device = "cpu") -> int:
    """Frames per forward pass: :data:`CPU_CHUNK_FRAMES` on a CPU, else :data:`DEFAULT_CHUNK_FRAMES`."""
    return CPU_CHUNK_FRAMES if _device_type(device) == "cpu" else DEFAULT_CHUNK_FRAMES


def is_torch_module(model: Any) -> bool:
    """Whether ``model`` is a ``torch.nn.Module`` (without importing torch if nothing has)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def carries_state(model: Any) -> bool:
    """Whether chunks of ``model`` must be chained through its state (a causal recurrent model)."""
    return bool(getattr(model, "recurrent", False)) and bool(getattr(model, "causal", True))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, without overflow for large negative logits."""
    return np.exp(-np.logaddexp(np.float32(0.0), -x)).astype(np.float32, copy=False)


def needs_whole_recording(model: Any) -> bool:
    """Whether ``model`` is a non-causal recurrent one (bidirectional): it sees the whole recording in one pass."""
    return bool(getattr(model, "recurrent", False)) and not carries_state(model)


class NetworkStep:
    """One forward pass of a network on ``[rows, 144]`` features → probabilities and values ``[frames, width]``.

    The one network step of offline, chunked and live inference (:func:`run_model`,
    :class:`~pianomtl.transcription.stream.Stream`): called with or without a recurrent
    model's state, ``on``/``int``/``off`` logits through the sigmoid (torch's for a torch
    model, :func:`sigmoid` for arrays), every head as float32 numpy. ``model``: a torch
    module (run on ``device`` under inference mode, in bfloat16 autocast with
    ``precision="bf16"``) or anything called on numpy arrays (an
    :class:`~pianomtl.transcription.onnx_model.OnnxModel`).
    """

    def __init__(self, model: Any, device: Any = "cpu", precision: str = "fp32") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose from {PRECISIONS}")
        self.model = model
        self.device = device
        self.torch = is_torch_module(model)
        if precision != "fp32" and not self.torch:
            raise ValueError(f"precision {precision!r} needs the torch backend")
        self.bf16 = precision == "bf16"
        self.stateful = carries_state(model)

    def initial_state(self) -> Any:
        """A recurrent model's state before the first frame (``None`` for a stateless model)."""
        if not self.stateful:
            return None
        if self.torch:
            import torch

            with torch.inference_mode():
                return self.model.initial_state(1)
        return self.model.initial_state(1)

    def _forward(self, x: Any, state: Any) -> tuple[dict[str, Any], Any]:
        """The model on one batch of one window, through its state if it carries one."""
        if self.stateful:
            return self.model.forward_with_state(x, state)
        return self.model(x), state

    def __call__(self, rows: np.ndarray, state: Any = None) -> tuple[dict[str, np.ndarray], Any]:
        """``(outputs by task, the state after these rows)`` for one window of input rows."""
        if self.torch:
            import torch

            with torch.inference_mode():
                x = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32)).unsqueeze(0).to(self.device)
                device_type = torch.device(self.device).type
                with torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.bf16):
                    result, state = self._forward(x, state)
                outputs = {}
                for task in TASKS:
                    value = result[task][0]
                    if task in BINARY_TASKS:
                        value = torch.sigmoid(value)
                    outputs[task] = value.float().cpu().numpy()
            return outputs, state
        result, state = self._forward(np.ascontiguousarray(rows, dtype=np.float32)[None], state)
        outputs = {}
        for task in TASKS:
            value = np.asarray(result[task][0], dtype=np.float32)
            outputs[task] = sigmoid(value) if task in BINARY_TASKS else value
        return outputs, state


def _chunk_frames(model: Any, chunk_frames: int, n_frames: int) -> int:
    return max(n_frames, 1) if needs_whole_recording(model) else chunk_frames


def run_model(
    model: Any,
    features: np.ndarray | FrameFeed,
    chunk_frames: int | None = None,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Probabilities (on/int/off) and values (vel/sus) ``[T, width]`` for ``[T, 144]`` features.

    ``model``: a torch module, or an :class:`~pianomtl.transcription.onnx_model.OnnxModel`
    (any object with the same call, or ``initial_state`` / ``forward_with_state``).
    ``features``: the spectrogram, or a :class:`FrameFeed` that another thread is still
    filling (each chunk runs as soon as its frames are there; same result).
    ``chunk_frames``: output frames per forward pass (``None``: :func:`default_chunk_frames`).
    ``precision``: ``"fp32"`` (exact) or ``"bf16"`` (autocast; torch models only, see the module docstring).
    ``progress``: called after each chunk with ``(frames done, total frames)`` (a progress bar;
    with a feed, the total is its expected length until the reading ends).
    """
    chunk_frames = chunk_frames or default_chunk_frames(device)
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {PRECISIONS}")
    if isinstance(features, FrameFeed):
        if needs_whole_recording(model):
            features = features.wait_all()
        else:
            features.wait_started()  # the reader has declared the length by then: outputs sized once
            windows = _feed_windows(features, chunk_frames)
            outputs = _Outputs(features.expected_frames)
            _run_windows(model, windows, outputs, device, precision, lambda done: features.total_hint(done), progress)
            return outputs.trimmed(features.wait_all().shape[0])
    n_frames = len(features)
    windows = _windows(features, _chunk_frames(model, chunk_frames, n_frames))
    outputs = _Outputs(n_frames)
    _run_windows(model, windows, outputs, device, precision, lambda done: n_frames, progress)
    return outputs.trimmed(n_frames)


class FrameFeed:
    """Spectrogram frames that a reading thread hands over while the network already runs.

    Why: reading, resampling and the FFT take a core for about a sixth of the network's
    time, while the network's recurrent stage keeps only one of two cores busy; run side
    by side, the file is transcribed in about the network's time alone
    (benchmarks/RESULTS.md). The reader calls :meth:`put` with new frames and
    :meth:`close` at the end (with the exception that stopped it, if any); the network
    waits in :meth:`window` for the frames a chunk needs. :meth:`cancel` makes the next
    :meth:`put` raise :class:`FeedCancelled`, so a reader stops when its consumer failed.
    """

    def __init__(self, expected_frames: int = 0) -> None:
        import threading

        self.expected_frames = max(int(expected_frames), 0)
        self._condition = threading.Condition()
        self._frames = np.empty((max(self.expected_frames, 1), N_BINS), dtype=np.float32)
        self._count = 0
        self._closed = False
        self._cancelled = False
        self._error: BaseException | None = None

    def expect(self, frames: int) -> None:
        """The reader's estimate of the total (a file header's length), before its first :meth:`put`:
        the buffer is allocated once at that size (doubling from nothing would peak at three
        times the spectrogram on an hour of audio)."""
        with self._condition:
            self.expected_frames = max(int(frames), 0)
            if self._count == 0 and len(self._frames) < self.expected_frames:
                self._frames = np.empty((self.expected_frames, N_BINS), dtype=np.float32)

    def put(self, frames: np.ndarray) -> None:
        with self._condition:
            if self._cancelled:
                raise FeedCancelled("the network stopped reading")
            end = self._count + len(frames)
            if end > len(self._frames):  # the header's length was short (or unknown): grow
                grown = np.empty((max(end, 2 * len(self._frames)), N_BINS), dtype=np.float32)
                grown[: self._count] = self._frames[: self._count]
                self._frames = grown
            self._frames[self._count : end] = frames
            self._count = end
            self._condition.notify_all()

    def close(self, error: BaseException | None = None) -> None:
        with self._condition:
            self._closed, self._error = True, error
            self._condition.notify_all()

    def cancel(self) -> None:
        with self._condition:
            self._cancelled = True

    def _wait(self, stop: int) -> tuple[int, bool]:
        """Block until ``stop`` frames exist or the reading ended; ``(frames there, ended)``."""
        with self._condition:
            while self._count < stop and not self._closed:
                self._condition.wait()
            if self._error is not None:
                raise self._error
            return self._count, self._closed

    def window(self, start: int, frames: int) -> np.ndarray | None:
        """Input rows for output frames ``[start, start+frames)`` when they no longer depend on the
        recording's end, else ``None`` once the reading has ended (the caller then knows the length)."""
        count, _ = self._wait(start + frames + CONTEXT)
        if count < start + frames + CONTEXT:
            return None
        with self._condition:  # a copy: put() may move the array
            return np.array(self._frames[context_indices(start, frames, count)], dtype=np.float32)

    def wait_started(self) -> None:
        """Block until the first frames arrived or the reading ended."""
        self._wait(1)

    def wait_all(self) -> np.ndarray:
        """All frames, once the reading has ended."""
        self._wait(sys.maxsize)
        return self._frames[: self._count]

    def total_hint(self, done: int) -> int:
        """The total frames to report progress against: the expected length, or what is known."""
        with self._condition:
            return self._count if self._closed else max(self.expected_frames, done)


class FeedCancelled(RuntimeError):
    """Raised in a reader thread by :meth:`FrameFeed.put` after :meth:`FrameFeed.cancel`."""


class _Outputs:
    """One array per head, filled chunk by chunk.

    No list of small per-chunk arrays that would stay alive between the network's large
    temporaries (glibc then cannot give the heap back, and an hour's RSS grows by ~1.5 GB)
    and no concatenated second copy; grown only when a feed outruns its expected length.
    """

    def __init__(self, capacity: int) -> None:
        self.arrays = {t: np.empty((max(capacity, 1), TASK_WIDTH[t]), dtype=np.float32) for t in TASKS}

    def store(self, task: str, start: int, values: np.ndarray) -> None:
        array = self.arrays[task]
        if start + len(values) > len(array):
            grown = np.empty((max(start + len(values), 2 * len(array)), array.shape[1]), dtype=np.float32)
            grown[:start] = array[:start]
            self.arrays[task] = array = grown
        array[start : start + len(values)] = values

    def trimmed(self, n_frames: int) -> dict[str, np.ndarray]:
        return {t: a[:n_frames] for t, a in self.arrays.items()}


def _windows(features: np.ndarray, chunk_frames: int, first: int = 0) -> Any:
    """``(start, frames, [frames + 10, 144] input)`` per chunk from ``first``, edges repeated.

    (:func:`context_indices`.)
    """
    n_frames = len(features)
    for start in range(first, n_frames, chunk_frames):
        frames = min(chunk_frames, n_frames - start)
        yield start, frames, np.asarray(features[context_indices(start, frames, n_frames)], dtype=np.float32)


def _feed_windows(feed: FrameFeed, chunk_frames: int) -> Any:
    """:func:`_windows` over a :class:`FrameFeed`: interior chunks as their frames arrive, the rest at the end."""
    start = 0
    while True:
        ready = feed.window(start, chunk_frames)
        if ready is None:  # the reading has ended: the last chunks see the recording's true end
            yield from _windows(feed.wait_all(), chunk_frames, first=start)
            return
        yield start, chunk_frames, ready
        start += chunk_frames


def _run_windows(
    model: Any,
    windows: Any,
    outputs: _Outputs,
    device: Any,
    precision: str,
    total: Callable[[int], int],
    progress: Callable[[int, int], None] | None,
) -> None:
    """Each window through :class:`NetworkStep`, the state carried from one to the next."""
    step = NetworkStep(model, device, precision)
    was_training = getattr(model, "training", False) if step.torch else False
    if step.torch:
        model.eval()
    try:
        state = step.initial_state()
        for start, frames, window in windows:
            result, state = step(window, state)
            for task in TASKS:
                outputs.store(task, start, result[task])
            del result
            if progress is not None:
                progress(start + frames, total(start + frames))
    finally:
        if step.torch:
            model.train(was_training)
