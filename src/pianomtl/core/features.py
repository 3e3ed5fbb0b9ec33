"""The semi-logarithmic filtered spectrogram the seed paper's networks read.

It reproduces madmom's ``LogarithmicFilteredSpectrogram`` (frame size 4096, 50 fps,
24 bands per octave from 30 Hz to 10 kHz around 440 Hz, area-normalised triangular
filters, duplicate filters merged, ``log10(1 + x)``), because that is the input the
paper's models and their predecessor ("ADSR" CNN) were designed for: 144 bins,
linear below about 400 Hz (where FFT bins are coarser than semitones) and two
bins per semitone above.

The filterbank is built once in numpy (it is a constant). The transform has two
backends with the same arithmetic (float32, within 1e-6 of each other): numpy
(``np.fft.rfft``; needs no torch, the default on the CPU) and torch
(:class:`~pianomtl.core.torch_features.LogFilteredSpectrogram`: batches, runs on the
model's device, the default elsewhere).

Framing: ``N`` samples give ``ceil(N / 882)`` frames; frame ``t`` is centred on
sample ``t * 882`` and covers samples ``[t*882 - 2048, t*882 + 2048)``, zero
outside the signal (:func:`frame_span`; with the filterbank in :mod:`pianomtl.core.framing`,
which both backends import). One framer applies it:
:class:`StreamingSpectrogram`, which takes samples as they arrive; the whole-signal
:func:`spectrogram` is that framer fed once.

:func:`context_indices` is the one rule for the ±5 frames of network context at a
recording's edges (the first/last frame repeated): inference, the training sampler and
:func:`pianomtl.models.layers.pad_context` all use it.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import numpy as np

from pianomtl.constants import CONTEXT, FRAME_SIZE, HOP_SIZE, N_BINS
from pianomtl.core.framing import (  # re-exported: the definitions both backends share
    N_FFT_BINS,
    _window_and_bank,
    centre_frequencies,
    fft_bin_frequencies,
    filterbank,
    frame_count,
    frame_span,
    hann_window,
    log_band_frequencies,
)

__all__ = [
    "FFT_BACKENDS",
    "N_FFT_BINS",
    "StreamingSpectrogram",
    "centre_frequencies",
    "context_indices",
    "default_fft_backend",
    "fft_bin_frequencies",
    "filterbank",
    "frame_count",
    "frame_span",
    "frames_to_features",
    "hann_window",
    "log_band_frequencies",
    "spectrogram",
]


@functools.lru_cache(maxsize=1)
def _sparse_bank() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The filterbank's non-zeros: ``(FFT bins, weights, first entry of each filter)``, filter by filter.

    Each FFT bin feeds at most two triangles (1,672 non-zeros of 2048 × 144), so applying
    them directly is cheaper than the dense product, and needs no BLAS threads: a dense
    ``[n, 2048] @ [2048, 144]`` in multithreaded OpenBLAS took 0.15 s instead of 0.5 ms for
    50 frames on a loaded 2-core machine (its threads spin against the other processes).
    """
    bank = filterbank()
    filters, bins = np.nonzero(bank.T)
    weights = bank[bins, filters].astype(np.float32)
    starts = np.searchsorted(filters, np.arange(bank.shape[1]))
    return bins, weights, starts


def context_indices(start: int, frames: int, n_frames: int, context: int = CONTEXT) -> np.ndarray:
    """Row indices of frames ``[start-5, start+frames+5)`` of an ``n_frames``-frame recording, edges repeated.

    ``features[context_indices(a, n, len(features))]`` is the network input ``[n + 10, 144]``
    for output frames ``[a, a + n)`` (``context`` frames each side; 5 for every model).
    """
    if n_frames < 1:
        raise ValueError("context padding needs at least one frame")
    return np.clip(np.arange(start - context, start + frames + context), 0, n_frames - 1)


def frames_to_features(frames: np.ndarray) -> np.ndarray:
    """``[n, 4096]`` float32 signal frames → ``[n, 144]`` features (the numpy backend)."""
    window = _window_and_bank()[0]
    bins, weights, starts = _sparse_bank()
    spectrum = np.abs(np.fft.rfft(frames * window, n=FRAME_SIZE, axis=-1)[..., : bins.max() + 1])
    filtered = np.add.reduceat(spectrum[..., bins] * weights, starts, axis=-1)
    return np.log10(np.float32(1.0) + filtered)


FFT_BACKENDS: tuple[str, ...] = ("numpy", "torch")
SPECTROGRAM_CHUNK_FRAMES = {"cpu": 256, "other": 2048}
"""Frames per FFT batch: small on a CPU (the temporaries stay in cache; same result, faster)."""
PUSH_BLOCK_SAMPLES = 1 << 20
"""Longer pushes are framed in blocks of this many samples (bounds the framer's own copies)."""


def _is_cpu(device: Any) -> bool:
    return device is None or str(device).split(":")[0] == "cpu"


def default_fft_backend(device: Any = None) -> str:
    """``"numpy"`` on the CPU, ``"torch"`` on any other device.

    On the CPU the two run at the same speed (``benchmarks/startup.py`` measures both),
    and numpy needs no torch: the lean install has none, and importing it costs seconds.
    """
    return "numpy" if _is_cpu(device) else "torch"


class StreamingSpectrogram:
    """Spectrogram frames computed as samples arrive, equal to the whole-signal transform.

    Frame ``t`` covers samples ``[t·882 − 2048, t·882 + 2048)`` (zero outside the
    signal); it is computed once all its samples have arrived, or at :meth:`finish`.
    Only the samples still needed by future frames are kept. Frames go into one
    preallocated array (``expected_frames`` sizes it; it grows if the guess was
    short): keeping many small arrays alive between the large temporaries of the
    FFT fragments glibc's heap, which then grows by megabytes per block.

    ``backend``: ``"numpy"`` or ``"torch"`` (``None``: :func:`default_fft_backend` for
    ``device``); the torch backend runs on ``device``.
    """

    def __init__(
        self,
        device: Any = "cpu",
        chunk_frames: int | None = None,
        expected_frames: int = 0,
        backend: str | None = None,
    ) -> None:
        self.backend = backend or default_fft_backend(device)
        if self.backend not in FFT_BACKENDS:
            raise ValueError(f"unknown FFT backend {self.backend!r}; choose from {FFT_BACKENDS}")
        if self.backend == "numpy" and not _is_cpu(device):
            raise ValueError(f"the numpy FFT backend runs on the CPU, not {device}")
        self.device = "cpu" if device is None else device
        if self.backend == "torch":
            from pianomtl.core.torch_features import segment_transform

            self._segment_features = segment_transform(self.device)
        else:
            self._segment_features = _numpy_segment_features
        self.chunk_frames = chunk_frames or SPECTROGRAM_CHUNK_FRAMES["cpu" if _is_cpu(device) else "other"]
        half = FRAME_SIZE // 2
        self.buffer = np.zeros(half, dtype=np.float32)  # the zeros before the signal
        self.buffer_start = -half  # absolute sample index of buffer[0]
        self.n_samples = 0
        self.next_frame = 0
        self.stored_from = 0  # absolute index of features[0]: frames before it were handed out by take()
        self.features = np.empty((max(expected_frames, 1), N_BINS), dtype=np.float32)

    def push(self, samples: np.ndarray) -> None:
        samples = np.asarray(samples, dtype=np.float32)
        for first in range(0, len(samples), PUSH_BLOCK_SAMPLES):
            block = samples[first : first + PUSH_BLOCK_SAMPLES]
            self.buffer = np.concatenate([self.buffer, block])
            self.n_samples += len(block)
            ready = (self.buffer_start + len(self.buffer) - FRAME_SIZE // 2) // HOP_SIZE + 1
            self._emit(ready)

    def take(self) -> np.ndarray:
        """The frames computed since the last :meth:`take` (``[n, 144]``), no longer stored here.

        A live stream takes the frames as they come, so the framer's memory stays
        bounded however long it runs; :meth:`finish` then returns only the frames not taken.
        """
        count = self.next_frame - self.stored_from
        frames = self.features[:count].copy()
        self.stored_from = self.next_frame
        return frames

    def finish(self) -> np.ndarray:
        """All ``ceil(N / 882)`` frames (those not handed out by :meth:`take`) as a ``[T, 144]`` float32 array."""
        total = frame_count(self.n_samples)
        needed = frame_span(0, total)[1] - (self.buffer_start + len(self.buffer))
        if needed > 0:
            self.buffer = np.concatenate([self.buffer, np.zeros(needed, dtype=np.float32)])
        self._emit(total)
        self.buffer = np.zeros(0, dtype=np.float32)
        features = self.features[: self.next_frame - self.stored_from]
        if len(features) < 0.9 * len(self.features):
            features = features.copy()  # do not hold on to a much larger allocation
        self.features = np.empty((0, N_BINS), dtype=np.float32)
        return features

    def _emit(self, stop: int) -> None:
        for start in range(self.next_frame, stop, self.chunk_frames):
            end = min(start + self.chunk_frames, stop)
            first, last = frame_span(start, end)
            segment = self.buffer[first - self.buffer_start : last - self.buffer_start]
            low, high = start - self.stored_from, end - self.stored_from  # rows of features[]
            if high > len(self.features):
                grown = np.empty((max(high, 2 * len(self.features)), N_BINS), dtype=np.float32)
                grown[:low] = self.features[:low]
                self.features = grown
            self.features[low:high] = self._segment_features(segment)
        if stop <= self.next_frame:
            return
        self.next_frame = stop
        keep_from = frame_span(stop, stop + 1)[0] - self.buffer_start
        self.buffer = self.buffer[keep_from:].copy()
        self.buffer_start += keep_from


def _numpy_segment_features(segment: np.ndarray) -> np.ndarray:
    """Features of the frames of ``segment`` (a :func:`frame_span`'s samples), numpy backend."""
    frames = np.lib.stride_tricks.sliding_window_view(segment, FRAME_SIZE)[::HOP_SIZE]
    return frames_to_features(frames)


def spectrogram(samples: Any, device: Any = "cpu", backend: str | None = None) -> np.ndarray:
    """Features of a mono 44.1 kHz signal as a ``[frames, 144]`` float32 numpy array.

    The :class:`StreamingSpectrogram` fed the whole signal at once (one framing rule).
    ``samples``: a 1-D numpy array (or torch tensor).
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(samples, torch.Tensor):
        samples = samples.detach().cpu().numpy()
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"spectrogram expects a mono signal [samples], got shape {list(samples.shape)}")
    framer = StreamingSpectrogram(device, expected_frames=frame_count(len(samples)), backend=backend)
    framer.push(samples)
    return framer.finish()


def __getattr__(name: str) -> Any:
    if name == "LogFilteredSpectrogram":  # the torch backend's module, imported on first use
        from pianomtl.core.torch_features import LogFilteredSpectrogram

        return LogFilteredSpectrogram
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
