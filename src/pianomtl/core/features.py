"""The semi-logarithmic filtered spectrogram the seed paper's networks read.

It reproduces madmom's ``LogarithmicFilteredSpectrogram`` (frame size 4096, 50 fps,
24 bands per octave from 30 Hz to 10 kHz around 440 Hz, area-normalised triangular
filters, duplicate filters merged, ``log10(1 + x)``), because that is the input the
paper's models and their predecessor ("ADSR" CNN) were designed for: 144 bins,
linear below about 400 Hz (where FFT bins are coarser than semitones) and two
bins per semitone above.

The filterbank is built once in numpy (it is a constant); the transform runs in
torch so that it batches and runs on whatever device the model uses.

Framing: ``N`` samples give ``ceil(N / 882)`` frames; frame ``t`` is centred on
sample ``t * 882`` and covers samples ``[t*882 - 2048, t*882 + 2048)``, zero
outside the signal.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from pianomtl.constants import (
    BANDS_PER_OCTAVE,
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
    indices = indices - (frequencies - left < right - frequencies)
    return np.unique(indices)


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


class LogFilteredSpectrogram(torch.nn.Module):
    """``[..., samples]`` at 44.1 kHz → ``[..., frames, 144]`` log filtered magnitudes."""

    def __init__(self) -> None:
        super().__init__()
        # numpy.hanning is the *symmetric* Hann window madmom uses (torch's default is periodic)
        self.register_buffer("window", torch.from_numpy(np.hanning(FRAME_SIZE).astype(np.float32)))
        self.register_buffer("bank", torch.from_numpy(filterbank().astype(np.float32)))

    def frames_to_features(self, frames: torch.Tensor) -> torch.Tensor:
        """``[..., n, 4096]`` signal frames → ``[..., n, 144]`` features."""
        spectrum = torch.fft.rfft(frames * self.window, n=FRAME_SIZE)[..., :N_FFT_BINS].abs()
        return torch.log10(1.0 + spectrum @ self.bank)

    def forward(self, samples: torch.Tensor, chunk_frames: int = 2048) -> torch.Tensor:
        """Compute features chunk by chunk so memory stays bounded for long recordings."""
        n_samples = samples.shape[-1]
        n_frames = frame_count(n_samples)
        half = FRAME_SIZE // 2
        outputs = []
        for first in range(0, n_frames, chunk_frames):
            last = min(first + chunk_frames, n_frames)  # exclusive
            start = first * HOP_SIZE - half
            stop = (last - 1) * HOP_SIZE + half
            segment = samples[..., max(start, 0) : min(stop, n_samples)]
            segment = torch.nn.functional.pad(segment, (max(0, -start), max(0, stop - n_samples)))
            frames = segment.unfold(-1, FRAME_SIZE, HOP_SIZE)
            outputs.append(self.frames_to_features(frames))
        if not outputs:
            return samples.new_zeros((*samples.shape[:-1], 0, N_BINS))
        return torch.cat(outputs, dim=-2)


@functools.lru_cache(maxsize=4)
def _module(device: str) -> LogFilteredSpectrogram:
    return LogFilteredSpectrogram().to(device)


@torch.inference_mode()
def spectrogram(samples: np.ndarray | torch.Tensor, device: str = "cpu") -> np.ndarray:
    """Features of a mono 44.1 kHz signal as a ``[frames, 144]`` float32 numpy array."""
    tensor = torch.as_tensor(np.asarray(samples, dtype=np.float32), device=device)
    return _module(device)(tensor).cpu().numpy()
