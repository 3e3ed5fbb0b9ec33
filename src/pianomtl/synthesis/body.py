"""The piano's body and the microphone: the filters every piano engine's strings are heard through.

Shared by the sample engine (:mod:`pianomtl.synthesis.piano`) and the parametric one
(:mod:`pianomtl.synthesis.modal`, through it): per-register soundboard/body envelopes (minimum
phase, so onsets stay put) and a microphone at a distance in a small room.
"""

from __future__ import annotations

import numpy as np

from pianomtl.synthesis.salamander import SAMPLE_RATE as RATE

BODY_TAPS = 2048
BODY_GRID = 8192


def minimum_phase(log_magnitude: np.ndarray) -> np.ndarray:
    """Minimum-phase spectrum (same grid, rfft layout) of a real log-magnitude, by the folded cepstrum."""
    n = 2 * (len(log_magnitude) - 1)
    cepstrum = np.fft.irfft(log_magnitude, n)
    fold = np.zeros(n)
    fold[0] = cepstrum[0]
    fold[1 : n // 2] = 2 * cepstrum[1 : n // 2]
    fold[n // 2] = cepstrum[n // 2]
    return np.exp(np.fft.rfft(fold))


def bodies(rng: np.random.Generator, depth_db: float, registers: int) -> list[np.ndarray]:
    """Minimum-phase FIRs (so onsets stay put) with a smooth random log-magnitude per register.

    The envelope is a few cosines over log frequency above 80 Hz (flat below: a body's
    low resonances are few and broad), scaled to ``depth_db`` standard deviation.
    """
    grid = np.fft.rfftfreq(BODY_GRID, 1.0 / RATE)
    u = np.log2(np.maximum(grid, 80.0) / 80.0) / np.log2(RATE / 2 / 80.0)
    fade = np.ones(BODY_TAPS)
    fade[-BODY_TAPS // 8 :] = 0.5 * (1 + np.cos(np.linspace(0, np.pi, BODY_TAPS // 8)))
    bodies = []
    for _ in range(registers):
        weights = rng.normal(0.0, 1.0, 5) / np.arange(1, 6) ** 0.5
        phases = rng.uniform(0, 2 * np.pi, 5)
        shape = sum(w * np.cos(np.pi * (i + 1) * u + p) for i, (w, p) in enumerate(zip(weights, phases, strict=True)))
        shape = shape / (np.std(shape) + 1e-12) * depth_db
        response = np.fft.irfft(minimum_phase(shape * np.log(10) / 20), BODY_GRID)[:BODY_TAPS] * fade
        bodies.append(response if depth_db > 0 else np.eye(1, BODY_TAPS)[0])
    return bodies


def microphone(rng: np.random.Generator, variant) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Direct sound, early reflections (lid, floor, near walls) and a short diffuse tail.

    The direct-to-reverberant ratio falls with distance, 20·log10(1.5 m / distance) dB
    (about 1.5 m critical distance for a piano in a living room or studio).
    """
    rt60 = max(variant.room_rt60, 0.05)
    n = int(min(1.2 * rt60, 1.0) * RATE)
    t = np.arange(n) / RATE
    tail = rng.standard_normal(n) * np.exp(-np.log(1000.0) * t / rt60)
    tail[: int(0.008 * RATE)] = 0.0
    drr_db = 20 * np.log10(1.5 / variant.mic_distance)
    tail *= np.sqrt(10 ** (-drr_db / 10) / (np.sum(tail**2) + 1e-12))
    ir = tail
    ir[0] += 1.0
    for delay in rng.uniform(0.0015, 0.025, size=5):
        ir[int(delay * RATE)] += rng.uniform(-0.3, 0.3) * min(1.0, variant.mic_distance / 1.5 + 0.2)
    # air absorption and the lid's directivity off axis: 1.2 dB per metre lost at 10 kHz (zero phase, very short)
    size = 2 * len(ir)
    spectrum = np.fft.rfft(ir, size)
    spectrum *= 10 ** (-1.2 * variant.mic_distance * (np.fft.rfftfreq(size, 1.0 / RATE) / 10000.0) ** 2 / 20)
    return np.fft.irfft(spectrum, size)[: len(ir)]
