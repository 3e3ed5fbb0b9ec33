"""Random excerpts of cached recordings for training, with bounded memory.

An excerpt is ``frames`` consecutive output frames plus the ±5 frames of input
context the networks need; at a recording's edges the first/last frame is
repeated, exactly as at inference time. Only the rows of each excerpt are read
from the memory-mapped cache, so memory does not grow with the corpus.
"""

from __future__ import annotations

import numpy as np
import torch

from pianomtl.core.features import context_indices
from pianomtl.data.feature_augment import band_octaves, equalise, random_equaliser
from pianomtl.data.store import CacheError, Recording

__all__ = ["ExcerptSampler", "context_indices"]


class ExcerptSampler:
    """Draws batches of excerpts, each recording weighted by its number of frames.

    ``rank``/``world_size`` give each distributed process its own random stream
    (a distributed sampler for random-excerpt training: ranks never share draws).
    ``equaliser_probability``: share of excerpts given a random equaliser and level
    (:mod:`pianomtl.data.feature_augment`); its draws come from the same stream, so a resumed
    run continues exactly.
    """

    def __init__(
        self,
        recordings: list[Recording],
        frames: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        equaliser_probability: float = 0.0,
    ) -> None:
        self.recordings = [r for r in recordings if len(r) >= frames]
        if not self.recordings:
            raise CacheError(f"no cached recording has at least {frames} frames")
        lengths = np.array([len(r) - frames + 1 for r in self.recordings], dtype=np.float64)
        self.weights = lengths / lengths.sum()
        self.frames = frames
        self.batch_size = batch_size
        self.rng = np.random.default_rng([seed, rank, world_size])
        if not 0.0 <= equaliser_probability <= 1.0:
            raise ValueError(f"equaliser probability must be in [0, 1], got {equaliser_probability}")
        self.equaliser_probability = equaliser_probability
        self._octaves = band_octaves()

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch: features ``[B, frames+10, 144]`` float32, labels ``[B, frames, 353]`` uint8."""
        choices = self.rng.choice(len(self.recordings), size=self.batch_size, p=self.weights)
        features, labels = [], []
        for index in choices:
            recording = self.recordings[index]
            start = int(self.rng.integers(0, len(recording) - self.frames + 1))
            excerpt = recording.features[context_indices(start, self.frames, len(recording))]
            if self.equaliser_probability > 0 and self.rng.random() < self.equaliser_probability:
                excerpt = equalise(excerpt, random_equaliser(self.rng, self._octaves))
            features.append(excerpt)
            labels.append(recording.labels[start : start + self.frames])
        return torch.from_numpy(np.stack(features)), torch.from_numpy(np.stack(labels))

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state
