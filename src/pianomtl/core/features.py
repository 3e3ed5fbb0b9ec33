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
outside the signal (:func:`frame_span`). One framer applies it:
:class:`StreamingSpectrogram`, which takes samples as they arrive; the whole-signal
:func:`spectrogram` is that framer fed once.

:func:`context_indices` is the one rule for the ±5 frames of network context at a
recording's edges (the first/last frame repeated): inference, the training sampler and
:func:`pianomtl.models.layers.pad_context` all use it.
"""

from __future__ import annotations

import functools
import math
import sys
from typing import Any

import numpy as np

from pianomtl.constants import (
    BANDS_PER_OCTAVE,
    CONTEXT,
    FMAX,
    FMIN,
    FRAME_SIZE,
    FREF,
    HOP_SIZE,
    N_BINS,
    SAMPLE_RATE,
)

N_FFT_BINS = FRAME_SIZE // 2
"""FFT bins kept (Nyquist dropped, as madmom does)."""


def frame_count(n_samples: int) -> int:
    """Number of feature frames for ``n_samples`` samples: ``ceil(n / 882)``."""
    return math.ceil(n_samples / HOP_SIZE)


def log_band_frequencies() -> np.ndarray:
    """Band frequencies ``fref * 2**(k/24)`` covering [FMIN, FMAX] (before bin mapping)."""
    left = math.floor(math.log2(FMIN / FREF) * BANDS_PER_OCTAVE)
    right = math.ceil(math.log2(FMAX / FREF) * BANDS_PER_OCTAVE)
    frequencies = FREF * 2.0 ** (np.arange(left, right) / BANDS_PER_OCTAVE)
    frequencies = frequencies[np.searchsorted(frequencies, FMIN) :]
    return frequencies[: np.searchsorted(frequencies, FMAX, "right")]


def fft_bin_frequencies() -> np.ndarray:
    """Centre frequency (Hz) of each of the kept FFT bins."""
    return np.arange(N_FFT_BINS) * (SAMPLE_RATE / FRAME_SIZE)


def _nearest_unique_bins(frequencies: np.ndarray, bin_frequencies: np.ndarray) -> np.ndarray:
    """Map each frequency to its nearest FFT bin and drop duplicates (madmom's rule)."""
    indices = np.clip(bin_frequencies.searchsorted(frequencies), 1, len(bin_frequencies) - 1)
    left = bin_frequencies[indices - 1]
    right = bin_frequencies[indices]
    indices = np.sort(indices - (frequencies - left < right - frequencies))
    return indices[np.concatenate([[True], np.diff(indices) != 0])]  # np.unique, without importing numpy.ma


@functools.lru_cache(maxsize=1)
def _filterbank_and_centres() -> tuple[np.ndarray, np.ndarray]:
    bin_frequencies = fft_bin_frequencies()
    bins = _nearest_unique_bins(log_band_frequencies(), bin_frequencies)
    n_filters = len(bins) - 2
    bank = np.zeros((N_FFT_BINS, n_filters), dtype=np.float64)
    centres = np.zeros(n_filters)
    for index in range(n_filters):
        start, centre, stop = (int(b) for b in bins[index : index + 3])
        if stop - start < 2:  # too narrow for a triangle: a single bin
            centre, stop = start, start + 1
        shape = np.concatenate(
            [
                np.linspace(0.0, 1.0, centre - start, endpoint=False),
                np.linspace(1.0, 0.0, stop - centre, endpoint=False),
            ]
        )
        bank[start:stop, index] = shape / shape.sum()
        centres[index] = bin_frequencies[centre]
    if n_filters != N_BINS:  # a changed constant would silently change every model's input
        raise RuntimeError(f"filterbank has {n_filters} bins, expected {N_BINS}")
    bank.setflags(write=False)
    centres.setflags(write=False)
    return bank, centres


def filterbank() -> np.ndarray:
    """The ``[2048, 144]`` filterbank matrix (each column sums to 1)."""
    return _filterbank_and_centres()[0]


def centre_frequencies() -> np.ndarray:
    """Centre frequency in Hz of each of the 144 feature bins."""
    return _filterbank_and_centres()[1]


def hann_window() -> np.ndarray:
    """The symmetric Hann window of ``FRAME_SIZE`` samples madmom uses (float32; torch's default is periodic)."""
    return _window_and_bank()[0]


@functools.lru_cache(maxsize=1)
def _window_and_bank() -> tuple[np.ndarray, np.ndarray]:
    window = np.hanning(FRAME_SIZE).astype(np.float32)
    bank = np.ascontiguousarray(filterbank(), dtype=np.float32)
    window.setflags(write=False)
    bank.setflags(write=False)
    return window, bank


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


def frame_span(first: int, last: int) -> tuple[int, int]:
    """Samples ``[start, stop)`` that frames ``[first, last)`` cover (zero outside the signal): the framing rule."""
    half = FRAME_SIZE // 2
    return first * HOP_SIZE - half, (last - 1) * HOP_SIZE + half


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
