"""The spectrogram's torch backend: :func:`pianomtl.core.features.frames_to_features` in torch.

Same window, filterbank and arithmetic (float32) as the numpy backend, batched over
any leading dimensions and on any device. :class:`~pianomtl.core.features.StreamingSpectrogram`
uses it through :func:`segment_transform`; training code that wants features of a batch
of signals on a GPU calls :class:`LogFilteredSpectrogram` directly. Both frame by
:func:`~pianomtl.core.framing.frame_span`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from pianomtl.constants import FRAME_SIZE, HOP_SIZE, N_BINS
from pianomtl.core.framing import N_FFT_BINS, filterbank, frame_count, frame_span, hann_window


class LogFilteredSpectrogram(torch.nn.Module):
    """``[..., samples]`` at 44.1 kHz → ``[..., frames, 144]`` log filtered magnitudes."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", torch.from_numpy(hann_window().copy()))
        self.register_buffer("bank", torch.from_numpy(filterbank().astype(np.float32)))

    def frames_to_features(self, frames: torch.Tensor) -> torch.Tensor:
        """``[..., n, 4096]`` signal frames → ``[..., n, 144]`` features."""
        spectrum = torch.fft.rfft(frames * self.window, n=FRAME_SIZE)[..., :N_FFT_BINS].abs()
        return torch.log10(1.0 + spectrum @ self.bank)

    def forward(self, samples: torch.Tensor, chunk_frames: int = 2048) -> torch.Tensor:
        """Compute features chunk by chunk so memory stays bounded for long recordings."""
        n_samples = samples.shape[-1]
        n_frames = frame_count(n_samples)
        outputs = []
        for first in range(0, n_frames, chunk_frames):
            last = min(first + chunk_frames, n_frames)  # exclusive
            start, stop = frame_span(first, last)
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


def segment_transform(device: Any = "cpu") -> Callable[[np.ndarray], np.ndarray]:
    """``segment → [n, 144]`` features of the frames of a :func:`~pianomtl.core.framing.frame_span`, on ``device``."""
    module = _module(str(device))

    @torch.inference_mode()
    def transform(segment: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(np.ascontiguousarray(segment)).to(module.bank.device)
        return module.frames_to_features(tensor.unfold(-1, FRAME_SIZE, HOP_SIZE)).cpu().numpy()

    return transform
