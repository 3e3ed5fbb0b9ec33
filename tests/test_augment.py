"""The equaliser augmentation: exact on the features, deterministic in the sampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pianomtl.core.features import LogFilteredSpectrogram
from pianomtl.data import feature_augment
from pianomtl.data.sampler import ExcerptSampler
from pianomtl.data.store import open_split


@pytest.fixture(scope="module")
def recordings(cache: Path):
    return open_split(cache, "train")


def test_a_gain_on_the_audio_equals_the_gain_on_the_features() -> None:
    """Scaling the waveform by g scales every band magnitude by g: equalise must give the same features."""
    rng = np.random.default_rng(0)
    audio = torch.from_numpy(rng.normal(scale=0.1, size=44100).astype(np.float64))
    spectrogram = LogFilteredSpectrogram().double()
    quiet = spectrogram(audio * 0.25).numpy()
    predicted = feature_augment.equalise(spectrogram(audio).numpy(), np.full(144, 20 * np.log10(0.25)))
    np.testing.assert_allclose(predicted, quiet, rtol=1e-9, atol=1e-12)


def test_equalising_twice_adds_the_gains() -> None:
    rng = np.random.default_rng(1)
    features = rng.uniform(0, 3, size=(20, 144))
    a, b = feature_augment.random_equaliser(rng), feature_augment.random_equaliser(rng)
    np.testing.assert_allclose(
        feature_augment.equalise(feature_augment.equalise(features, a), b), feature_augment.equalise(features, a + b)
    )
    np.testing.assert_allclose(feature_augment.equalise(features, np.zeros(144)), features, rtol=1e-12)
    assert feature_augment.equalise(features.astype(np.float32), a).dtype == np.float32


def test_random_equalisers_stay_within_their_ranges() -> None:
    rng = np.random.default_rng(2)
    octaves = feature_augment.band_octaves()
    gains = np.stack([feature_augment.random_equaliser(rng, octaves) for _ in range(500)])
    reach = feature_augment.BUMPS * feature_augment.BUMP_DB
    low = feature_augment.LEVEL_DB[0] + np.minimum(
        feature_augment.TILT_DB_PER_OCTAVE[0] * octaves, feature_augment.TILT_DB_PER_OCTAVE[1] * octaves
    )
    high = feature_augment.LEVEL_DB[1] + np.maximum(
        feature_augment.TILT_DB_PER_OCTAVE[0] * octaves, feature_augment.TILT_DB_PER_OCTAVE[1] * octaves
    )
    assert (gains >= low - reach).all() and (gains <= high + reach).all()
    assert gains.std(axis=0).min() > 2.0, "the equaliser barely varies"
    assert np.mean(gains[:, 0] > gains[:, -1]) > 0.6, "darker (low bands up) should be the more common tilt"


def test_sampler_equaliser_changes_features_not_labels(recordings) -> None:
    # one excerpt per batch: the equaliser's draws come after the excerpt's own, from the same stream
    plain = ExcerptSampler(recordings, 12, 1, seed=5)
    off = ExcerptSampler(recordings, 12, 1, seed=5, equaliser_probability=0.0)
    on = ExcerptSampler(recordings, 12, 1, seed=5, equaliser_probability=1.0)
    features, labels = plain.sample()
    features_off, labels_off = off.sample()
    features_on, labels_on = on.sample()
    assert torch.equal(features, features_off) and torch.equal(labels, labels_off)  # p = 0 draws nothing extra
    assert torch.equal(labels, labels_on)
    assert not torch.equal(features, features_on)
    again = ExcerptSampler(recordings, 12, 1, seed=5, equaliser_probability=1.0).sample()[0]
    assert torch.equal(again, features_on)
    with pytest.raises(ValueError, match="equaliser probability"):
        ExcerptSampler(recordings, 12, 3, equaliser_probability=1.5)


def test_silent_bands_stay_silent(tmp_path: Path) -> None:
    features = np.zeros((4, 144), dtype=np.float32)
    np.testing.assert_array_equal(feature_augment.equalise(features, np.full(144, 12.0)), features)
