"""The framing rule and the filterbank: the definitions both spectrogram backends share.

Why a module of its own: :mod:`pianomtl.core.features` (numpy, and the framer that
chooses a backend) and :mod:`pianomtl.core.torch_features` (torch) both compute
:func:`filterbank` and :func:`hann_window` on frames placed by :func:`frame_span`;
with these here, each backend imports them and ``features`` imports the torch backend
without the torch backend importing ``features`` back (no cycle). The maths is
explained in :mod:`pianomtl.core.features`; its names are re-exported there.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from pianomtl.constants import BANDS_PER_OCTAVE, FMAX, FMIN, FRAME_SIZE, FREF, HOP_SIZE, N_BINS, SAMPLE_RATE

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


def frame_span(first: int, last: int) -> tuple[int, int]:
    """Samples ``[start, stop)`` that frames ``[first, last)`` cover (zero outside the signal): the framing rule."""
    half = FRAME_SIZE // 2
    return first * HOP_SIZE - half, (last - 1) * HOP_SIZE + half
