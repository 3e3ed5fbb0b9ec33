"""The 144-bin log filtered spectrogram: shape, framing, filterbank, batching, madmom."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pianomtl.constants import FPS, N_BINS, SAMPLE_RATE
from pianomtl.core.features import (
    LogFilteredSpectrogram,
    centre_frequencies,
    filterbank,
    frame_count,
    spectrogram,
)
from pianomtl.core.targets import LABEL_SLICES, compute_labels

HOP = 882
FRAME = 4096


def noisy_clip(samples: np.ndarray, seed: int = 0) -> np.ndarray:
    """The rendered piano plus a little white noise, so that no bin is exactly silent."""
    rng = np.random.default_rng(seed)
    return (samples + 0.01 * rng.standard_normal(len(samples))).astype(np.float32)


# ---------------------------------------------------------------- an independent reference


def reference_filterbank() -> tuple[np.ndarray, np.ndarray]:
    """The filterbank built from its definition (docs/design.md), without the module's helpers."""
    df = SAMPLE_RATE / FRAME  # FFT bin spacing, about 10.77 Hz
    frequencies = [440.0 * 2.0 ** (k / 24) for k in range(-24 * 8, 24 * 8)]
    frequencies = [f for f in frequencies if 30.0 <= f <= 10000.0]
    bins = sorted({math.floor(f / df + 0.5) for f in frequencies})  # nearest FFT bin, unique
    bank = np.zeros((FRAME // 2, len(bins) - 2))
    centres = np.zeros(len(bins) - 2)
    for i in range(len(bins) - 2):
        start, peak, stop = bins[i], bins[i + 1], bins[i + 2]
        if stop - start < 2:  # a single bin
            bank[start, i] = 1.0
            centres[i] = start * df
            continue
        for b in range(start, peak):  # rising edge, 0 at `start`
            bank[b, i] = (b - start) / (peak - start)
        for b in range(peak, stop):  # falling edge, 1 at `peak`, never reaching 0
            bank[b, i] = 1.0 - (b - peak) / (stop - peak)
        bank[:, i] /= bank[:, i].sum()  # unit area
        centres[i] = peak * df
    return bank, centres


def reference_spectrogram(samples: np.ndarray) -> np.ndarray:
    """Frames centred on t*882, symmetric Hann, |FFT| of 4096 without Nyquist, filterbank, log10(1+x)."""
    samples = samples.astype(np.float64)
    n_frames = -(-len(samples) // HOP)
    padded = np.concatenate([np.zeros(FRAME // 2), samples, np.zeros(FRAME)])
    frames = np.stack([padded[t * HOP : t * HOP + FRAME] for t in range(n_frames)])
    magnitude = np.abs(np.fft.rfft(frames * np.hanning(FRAME), axis=-1))[:, : FRAME // 2]
    return np.log10(1.0 + magnitude @ reference_filterbank()[0])


# ---------------------------------------------------------------- the filterbank


def test_filterbank_matches_its_definition() -> None:
    bank, centres = reference_filterbank()
    assert bank.shape == (2048, N_BINS) == filterbank().shape
    np.testing.assert_allclose(filterbank(), bank, rtol=0, atol=1e-12)
    np.testing.assert_allclose(centre_frequencies(), centres, rtol=0, atol=1e-9)


def test_filterbank_properties() -> None:
    bank = filterbank()
    assert N_BINS == 144
    np.testing.assert_allclose(bank.sum(axis=0), 1.0, atol=1e-12)
    assert np.all(bank >= 0)
    assert len(np.unique(bank.T, axis=0)) == N_BINS  # no duplicate filters left
    centres = centre_frequencies()
    assert np.all(np.diff(centres) > 0)
    assert 40 < centres[0] < 50 and 9500 < centres[-1] < 10000  # about 43 Hz … 9.7 kHz
    # low filters are single FFT bins (linear region); high filters are two per semitone
    assert np.count_nonzero(bank[:, 0]) == 1
    ratios = centres[-20:][1:] / centres[-20:][:-1]
    assert np.all(np.abs(np.log2(ratios) * 24 - 1) < 0.3)


# ---------------------------------------------------------------- framing


@pytest.mark.parametrize("n", [1, 500, 881, 882, 883, 882 * 7, 882 * 7 + 1, 10000])
def test_frame_count(n: int) -> None:
    expected = math.ceil(n / 882)
    assert frame_count(n) == expected
    features = spectrogram(np.zeros(n, dtype=np.float32))
    assert features.shape == (expected, N_BINS)
    assert features.dtype == np.float32


def test_empty_signal_gives_no_frames() -> None:
    assert frame_count(0) == 0
    assert spectrogram(np.zeros(0, dtype=np.float32)).shape == (0, N_BINS)


def test_matches_independent_numpy_reference(rendered_clip) -> None:
    samples = noisy_clip(rendered_clip.samples)[: 882 * 40 + 123]  # not a multiple of the hop
    ours = spectrogram(samples)
    reference = reference_spectrogram(samples)
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)


def test_frame_centres_on_its_time() -> None:
    """A click at sample t*882 is strongest in frame t (frames are centred, not left-aligned)."""
    for t in (0, 3, 10):
        signal = np.zeros(882 * 20, dtype=np.float32)
        signal[t * 882] = 1.0
        energy = spectrogram(signal).sum(axis=1)
        assert int(np.argmax(energy)) == t
        assert energy[t + 3] == 0.0  # the window reaches ±2048 samples, under 2.33 hops


def test_fifty_frames_per_second_on_rendered_clip(rendered_clip) -> None:
    features = spectrogram(rendered_clip.samples)
    assert features.shape == (frame_count(len(rendered_clip.samples)), N_BINS)
    assert abs(features.shape[0] - FPS * rendered_clip.seconds) <= 1
    assert np.all(np.isfinite(features)) and np.all(features >= 0)


def test_spectral_flux_rises_at_labelled_onsets(rendered_clip) -> None:
    features = spectrogram(rendered_clip.samples)
    flux = np.concatenate([[0.0], np.maximum(np.diff(features, axis=0), 0).sum(axis=1)])
    labels = compute_labels(rendered_clip.performance, len(features))
    onset_frames = np.flatnonzero(labels[:, LABEL_SLICES["on"]].any(axis=1))  # widened to ±1 frame
    assert len(onset_frames) >= 3 * len(rendered_clip.performance.notes) - 3
    other_frames = np.setdiff1d(np.arange(len(features)), onset_frames)
    rng = np.random.default_rng(1)
    random_frames = rng.choice(other_frames, size=len(onset_frames), replace=False)
    assert flux[onset_frames].mean() > 3 * flux[random_frames].mean()
    # every single onset stands out: its strongest flux within ±1 frame beats most random frames
    for note in rendered_clip.performance.notes:
        a = round(note.onset * FPS)
        assert flux[a - 1 : a + 2].max() > np.quantile(flux[other_frames], 0.75)


# ---------------------------------------------------------------- batching and chunking


def test_batch_equals_per_item(rendered_clip) -> None:
    clip = noisy_clip(rendered_clip.samples)[: 882 * 30]
    batch = np.stack([clip, 0.5 * clip[::-1], np.roll(clip, 1000)])
    module = LogFilteredSpectrogram()
    with torch.no_grad():
        together = module(torch.from_numpy(batch))
        assert together.shape == (3, 30, N_BINS)
        for index, item in enumerate(batch):
            np.testing.assert_allclose(together[index].numpy(), spectrogram(item), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chunk_frames", [1, 7, 64])
def test_chunked_equals_unchunked(rendered_clip, chunk_frames: int) -> None:
    clip = torch.from_numpy(noisy_clip(rendered_clip.samples)[: 882 * 50 + 17])
    module = LogFilteredSpectrogram()
    with torch.no_grad():
        whole = module(clip, chunk_frames=4096)
        chunked = module(clip, chunk_frames=chunk_frames)
    assert whole.shape == chunked.shape == (51, N_BINS)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- madmom, the reference implementation


def test_matches_madmom(rendered_clip) -> None:
    pytest.importorskip("madmom", reason="scripts/install_madmom_reference.sh installs it")
    from madmom.audio.signal import Signal
    from madmom.audio.spectrogram import LogarithmicFilteredSpectrogram

    samples = noisy_clip(rendered_clip.samples)[: len(rendered_clip.samples) - 300]  # not a hop multiple
    signal = Signal(samples, sample_rate=SAMPLE_RATE, num_channels=1)
    madmom_spectrogram = LogarithmicFilteredSpectrogram(
        signal,
        num_channels=1,
        sample_rate=SAMPLE_RATE,
        frame_size=4096,
        fps=50,
        num_bands=24,
        fmin=30,
        fmax=10000,
        fref=440,
        norm_filters=True,
        unique_filters=True,
    )
    reference = np.asarray(madmom_spectrogram, dtype=np.float64)
    ours = spectrogram(samples).astype(np.float64)
    assert ours.shape == reference.shape == (frame_count(len(samples)), N_BINS)
    relative = np.abs(ours - reference) / np.abs(reference)
    print(f"madmom: max relative difference {relative.max():.2e}, max absolute {np.abs(ours - reference).max():.2e}")
    assert relative.max() < 1e-3, f"max relative difference {relative.max():.2e}"
    # madmom keeps its filterbank in float32
    np.testing.assert_allclose(filterbank(), np.asarray(madmom_spectrogram.filterbank), rtol=0, atol=1e-7)
