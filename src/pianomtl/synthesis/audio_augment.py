"""Audio augmentation of the rendered corpus: a synthetic room, an EQ tilt, noise, a peak level.

Applied to the waveform once, when :mod:`pianomtl.synthesis.corpus` renders an item, with the
settings drawn at planning and written in the corpus CSV. Not to be confused with
:mod:`pianomtl.data.feature_augment`, the random equaliser applied to the cached
spectrogram at every training step.
"""

from __future__ import annotations

import numpy as np

from pianomtl.constants import SAMPLE_RATE


def room_impulse_response(rng: np.random.Generator, rt60: float, drr_db: float) -> np.ndarray:
    """Synthetic room: direct path, a few early reflections, exponentially decaying noise tail.

    The tail darkens with time (a one-pole low-pass per 50 ms block), as air and walls
    absorb high frequencies faster; ``drr_db`` is the direct-to-reverberant energy ratio.
    """
    from scipy.signal import lfilter

    n = int(min(1.5 * rt60, 1.5) * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.908 * t / rt60)
    predelay = int(rng.uniform(0.005, 0.02) * SAMPLE_RATE)
    tail[:predelay] = 0.0
    for delay in rng.uniform(0.003, 0.03, size=6):
        tail[int(delay * SAMPLE_RATE)] += rng.uniform(-0.6, 0.6) * np.sqrt(np.mean(tail[predelay:] ** 2) * 50)
    bright = lfilter([0.5], [1, -0.5], tail)  # gentle overall darkening
    mix = np.exp(-t / max(rt60, 1e-3))  # later parts lean on the low-passed version
    tail = mix * tail + (1 - mix) * bright
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail**2))
    ir = tail.astype(np.float64)
    ir[0] += 1.0
    return ir


def tilt_eq(samples: np.ndarray, tilt_db: float) -> np.ndarray:
    """A gentle spectral tilt about 800 Hz: highs up and lows down by ±tilt/2 dB (first order)."""
    from scipy.signal import butter, lfilter

    if tilt_db == 0.0:
        return samples
    b, a = butter(1, 800.0, fs=SAMPLE_RATE)
    low = lfilter(b, a, samples)
    high = samples - low
    g = 10 ** (tilt_db / 40)
    return low / g + high * g


def coloured_noise(rng: np.random.Generator, n: int, colour: str) -> np.ndarray:
    """``n`` samples of unit-variance white or pink (1/f power) noise."""
    white = rng.standard_normal(n)
    if colour == "white":
        return white
    from scipy.fft import irfft, next_fast_len, rfft

    size = next_fast_len(n, real=True)  # an item's length may have large prime factors: slow FFT
    spectrum = rfft(white, size)
    f = np.fft.rfftfreq(size, 1 / SAMPLE_RATE)
    spectrum /= np.sqrt(np.maximum(f, 20.0))
    pink = irfft(spectrum, size)[:n]
    return pink / (np.std(pink) + 1e-12)


def augment_audio(
    dry: np.ndarray,
    rng: np.random.Generator,
    *,
    reverb_rt60: float = 0.0,
    drr_db: float = 0.0,
    eq_tilt_db: float = 0.0,
    noise: str = "none",
    snr_db: float = 0.0,
    peak_db: float = -3.0,
) -> np.ndarray:
    """``dry`` through a room (``reverb_rt60`` > 0), the EQ tilt, added ``noise`` (none, white,
    pink) at ``snr_db`` below the signal's active power, scaled to the peak ``peak_db``; float32.

    ``rng`` draws the room and the noise (the corpus gives each item its own stream).
    """
    from scipy.signal import fftconvolve

    x = dry.astype(np.float64)
    if reverb_rt60 > 0:
        x = fftconvolve(x, room_impulse_response(rng, reverb_rt60, drr_db))[: len(x)]
    x = tilt_eq(x, eq_tilt_db)
    if noise != "none":
        active = x[np.abs(x) > 1e-4]
        power = float(np.mean(active**2)) if len(active) else 1e-8
        x = x + coloured_noise(rng, len(x), noise) * np.sqrt(power * 10 ** (-snr_db / 10))
    peak = float(np.max(np.abs(x)))
    if peak > 0:
        x *= 10 ** (peak_db / 20) / peak
    return x.astype(np.float32)
