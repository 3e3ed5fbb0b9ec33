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


# ---------------------------------------------------------------- the effect chain of the v8 recipe

EQ_BAND_HZ = (32.0, 12000.0)
EQ_GAIN_DB = (-10.0, 5.0)
CODECS = ("mp3", "ogg")


def draw_effects(rng: np.random.Generator) -> dict[str, object]:
    """Random settings of the chain that recordings in the wild go through (JSON-safe).

    The ranges follow the published recipe of the most robust open transcriber (Transkun's
    augmentation): up to four peaking EQ bands between 32 Hz and 12 kHz at −10…+5 dB, a
    compressor, pink noise at 6–30 dB SNR, gain into a clipper, and a lossy codec — each
    present or not, drawn apart.
    """
    effects: dict[str, object] = {}
    bands = int(rng.integers(0, 5))
    if bands:
        low, high = np.log(EQ_BAND_HZ[0]), np.log(EQ_BAND_HZ[1])
        effects["eq"] = [
            [round(float(np.exp(rng.uniform(low, high))), 1), round(float(rng.uniform(*EQ_GAIN_DB)), 2),
             round(float(rng.uniform(0.5, 3.0)), 2)]
            for _ in range(bands)
        ]  # fmt: skip
    if rng.random() < 0.3:
        effects["compress"] = [round(float(rng.uniform(-30.0, -10.0)), 1), round(float(rng.uniform(2.0, 8.0)), 1)]
    if rng.random() < 0.15:
        effects["clip_db"] = round(float(rng.uniform(1.0, 9.0)), 1)  # drive into a hard clip at full scale
    if rng.random() < 0.25:  # a noisy room or a phone: far below the item's own noise (25–60 dB)
        effects["noise_snr_db"] = round(float(rng.uniform(6.0, 30.0)), 1)
        effects["noise_seed"] = int(rng.integers(0, 2**31 - 1))
    if rng.random() < 0.35:
        effects["codec"] = str(rng.choice(CODECS))
        effects["quality"] = round(float(rng.uniform(0.05, 0.6)), 2)  # soundfile's compression level (0 best)
    return effects


def _peaking(x: np.ndarray, frequency: float, gain_db: float, q: float) -> np.ndarray:
    """One peaking-EQ biquad (the Audio EQ Cookbook's), applied forward only (as a real equaliser)."""
    from scipy.signal import lfilter

    w = 2 * np.pi * min(frequency, 0.45 * SAMPLE_RATE) / SAMPLE_RATE
    a = 10 ** (gain_db / 40)
    alpha = np.sin(w) / (2 * q)
    b = np.array([1 + alpha * a, -2 * np.cos(w), 1 - alpha * a])
    den = np.array([1 + alpha / a, -2 * np.cos(w), 1 - alpha / a])
    return lfilter(b / den[0], den / den[0], x)


def _compress(x: np.ndarray, threshold_db: float, ratio: float) -> np.ndarray:
    """A feed-forward compressor on the peak envelope (5 ms attack, 120 ms release), make-up to the old peak."""
    from scipy.signal import lfilter

    peak = float(np.max(np.abs(x))) + 1e-12
    level = np.abs(x) / peak
    release = np.exp(-1.0 / (0.12 * SAMPLE_RATE))
    envelope = lfilter([1 - release], [1, -release], level)  # smooth follower (attack ≈ release here, cheap)
    envelope = np.maximum(envelope, 1e-6)
    over = np.maximum(20 * np.log10(envelope) - threshold_db, 0.0)
    y = x * 10 ** (-over * (1 - 1 / ratio) / 20)
    return y * peak / (float(np.max(np.abs(y))) + 1e-12)


def _codec(x: np.ndarray, codec: str, quality: float) -> np.ndarray:
    """A round trip through a lossy codec (libsndfile's MP3 or Ogg Vorbis encoder), same length."""
    import io

    import soundfile

    buffer = io.BytesIO()
    fmt, subtype = ("MP3", "MPEG_LAYER_III") if codec == "mp3" else ("OGG", "VORBIS")
    scale = 0.9 / max(float(np.max(np.abs(x))), 1e-9)
    soundfile.write(buffer, (x * scale).astype(np.float32), SAMPLE_RATE, format=fmt, subtype=subtype,
                    compression_level=quality)  # fmt: skip
    buffer.seek(0)
    decoded, _ = soundfile.read(buffer, dtype="float64")
    decoded = decoded.reshape(len(decoded), -1).mean(axis=1) / scale
    if codec == "mp3":  # the encoder's delay: align on the cross-correlation peak within 3000 samples
        lag = _lag(x, decoded, 3000)
        decoded = decoded[lag:]
    out = np.zeros_like(x)
    out[: min(len(x), len(decoded))] = decoded[: len(x)]
    return out


def _lag(reference: np.ndarray, delayed: np.ndarray, limit: int) -> int:
    """The delay (0…limit samples) of ``delayed`` behind ``reference`` that best aligns them."""
    n = min(len(reference), len(delayed), 20 * SAMPLE_RATE)
    from scipy.signal import correlate

    scores = correlate(delayed[: n + limit], reference[:n], mode="valid", method="fft")[: limit + 1]
    return int(np.argmax(scores))


def apply_effects(x: np.ndarray, effects: dict[str, object]) -> np.ndarray:
    """``x`` through the chain :func:`draw_effects` described (EQ → compressor → noise → clipper → codec); float32.

    Onsets stay where they were: the filters are causal with a delay well under a frame, and
    the codec's delay is measured and removed, so the labels still hold.
    """
    y = np.asarray(x, dtype=np.float64)
    for frequency, gain_db, q in effects.get("eq", []):  # type: ignore[union-attr]
        y = _peaking(y, float(frequency), float(gain_db), float(q))
    if "compress" in effects:
        threshold, ratio = effects["compress"]  # type: ignore[misc]
        y = _compress(y, float(threshold), float(ratio))
    if "noise_snr_db" in effects:
        noise_rng = np.random.default_rng(int(effects.get("noise_seed", 0)))  # type: ignore[call-overload]
        active = y[np.abs(y) > 1e-4]
        power = float(np.mean(active**2)) if len(active) else 1e-8
        snr_db = float(effects["noise_snr_db"])  # type: ignore[arg-type]
        y = y + coloured_noise(noise_rng, len(y), "pink") * np.sqrt(power * 10 ** (-snr_db / 10))
    peak = float(np.max(np.abs(y))) + 1e-12
    if "clip_db" in effects:
        y = np.clip(y / peak * 10 ** (float(effects["clip_db"]) / 20), -1.0, 1.0) * peak  # type: ignore[arg-type]
    if "codec" in effects:
        y = _codec(y, str(effects["codec"]), float(effects.get("quality", 0.3)))  # type: ignore[arg-type]
    return y.astype(np.float32)
