"""Training-time equaliser and level augmentation on the log filtered spectrogram.

Feature-side: a random equaliser drawn for each training excerpt by the sampler
(:mod:`pianomtl.data.sampler`), applied exactly to the cached features. Not to be
confused with :mod:`pianomtl.synthesis.audio_augment`, the room, EQ tilt and noise rendered
into the corpus's audio once, by ``pianomtl synth``.

Why: the corpus has three training pianos, and the held-out one (MuseScore) is
darker and quieter than all of them at low velocities — a model trained without this
augmentation missed far more of its soft notes than of its loud ones
(docs/experiments.md §5). Rendering more
pianos costs minutes per hour of audio; a random equaliser on each excerpt costs
nothing and gives every excerpt a new spectral envelope and level.

The features are ``F = log10(1 + |X| W)`` (:mod:`pianomtl.core.features`), so a gain
``g_b`` on band ``b``'s magnitude is exactly ``log10(1 + g_b (10**F - 1))``; as the
bands are narrow, that is also what an equaliser on the audio does.
"""

from __future__ import annotations

import numpy as np

from pianomtl.core.features import centre_frequencies

EQ_REFERENCE_HZ = 1000.0
"""Frequency where the tilt is 0 dB."""
LEVEL_DB = (-9.0, 6.0)
"""Range of the broadband gain (dB): recordings come at any level."""
TILT_DB_PER_OCTAVE = (-2.5, 1.5)
"""Range of the spectral slope: darker more often than brighter (soft playing and most pianos are dark)."""
BUMPS = 2
"""Number of bell-shaped boosts/cuts (formants of a body or a room)."""
BUMP_DB = 6.0
"""Largest boost or cut of a bell (dB)."""
BUMP_WIDTH_OCTAVES = (0.3, 1.2)
"""Range of a bell's standard deviation (octaves)."""
BUMP_CENTRE_HZ = (60.0, 6000.0)


def band_octaves() -> np.ndarray:
    """Each filterbank band's distance from :data:`EQ_REFERENCE_HZ` in octaves."""
    return np.log2(np.asarray(centre_frequencies()) / EQ_REFERENCE_HZ)


def random_equaliser(rng: np.random.Generator, octaves: np.ndarray | None = None) -> np.ndarray:
    """A random per-band gain in dB: level + tilt + :data:`BUMPS` bells."""
    octaves = band_octaves() if octaves is None else octaves
    gain = rng.uniform(*LEVEL_DB) + rng.uniform(*TILT_DB_PER_OCTAVE) * octaves
    low, high = np.log2(np.asarray(BUMP_CENTRE_HZ) / EQ_REFERENCE_HZ)
    for _ in range(BUMPS):
        centre = rng.uniform(low, high)
        width = rng.uniform(*BUMP_WIDTH_OCTAVES)
        gain = gain + rng.uniform(-BUMP_DB, BUMP_DB) * np.exp(-0.5 * ((octaves - centre) / width) ** 2)
    return gain


def equalise(features: np.ndarray, gain_db: np.ndarray) -> np.ndarray:
    """``features`` (``[..., 144]`` log10(1 + magnitude)) with each band's magnitude scaled by ``gain_db``."""
    magnitude = np.power(10.0, features.astype(np.float64)) - 1.0
    scaled = np.log10(1.0 + np.maximum(magnitude, 0.0) * np.power(10.0, np.asarray(gain_db) / 20.0))
    return scaled.astype(features.dtype)
