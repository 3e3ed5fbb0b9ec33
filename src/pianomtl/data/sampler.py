"""Random excerpts of cached recordings for training, with bounded memory.

An excerpt is ``frames`` consecutive output frames plus the ±5 frames of input
context the networks need; at a recording's edges the first/last frame is
repeated, exactly as at inference time. Only the rows of each excerpt are read
from the memory-mapped cache, so memory does not grow with the corpus.
"""

from __future__ import annotations

import numpy as np
import torch

from pianomtl.constants import CONTEXT
from pianomtl.data.store import CacheError, Recording


def context_indices(start: int, frames: int, n_frames: int) -> np.ndarray:
    """Row indices of frames ``[start-5, start+frames+5)`` with edges repeated."""
    return np.clip(np.arange(start - CONTEXT, start + frames + CONTEXT), 0, n_frames - 1)


class ExcerptSampler:
    """Draws batches of excerpts, each recording weighted by its number of frames.

    ``rank``/``world_size`` give each distributed process its own random stream
    (a distributed sampler for random-excerpt training: ranks never share draws).
    """

    def __init__(
        self,
        recordings: list[Recording],
        frames: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.recordings = [r for r in recordings if len(r) >= frames]
        if not self.recordings:
            raise CacheError(f"no cached recording has at least {frames} frames")
        lengths = np.array([len(r) - frames + 1 for r in self.recordings], dtype=np.float64)
        self.weights = lengths / lengths.sum()
        self.frames = frames
        self.batch_size = batch_size
        self.rng = np.random.default_rng([seed, rank, world_size])

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch: features ``[B, frames+10, 144]`` float32, labels ``[B, frames, 353]`` uint8."""
        choices = self.rng.choice(len(self.recordings), size=self.batch_size, p=self.weights)
        features, labels = [], []
        for index in choices:
            recording = self.recordings[index]
            start = int(self.rng.integers(0, len(recording) - self.frames + 1))
            features.append(recording.features[context_indices(start, self.frames, len(recording))])
            labels.append(recording.labels[start : start + self.frames])
        return torch.from_numpy(np.stack(features)), torch.from_numpy(np.stack(labels))

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state
