"""Piano strings as vibrating systems: unisons per key, inharmonicity, and a bank of free strings.

Shared by the project's two piano engines: the sample engine (:mod:`pianomtl.synthesis.piano`)
uses the string bank for sympathetic resonance; the parametric engine
(:mod:`pianomtl.synthesis.modal`) synthesises every note's partials from the same
inharmonicity curve, so that both pianos' strings obey one model.
"""

from __future__ import annotations

import numpy as np

from pianomtl.constants import MIN_KEY
from pianomtl.synthesis.salamander import SAMPLE_RATE as RATE

STRINGS_PER_KEY = ((21, 1), (29, 2), (48, 3))
"""(first key, unison strings): single wound strings in the low bass, pairs, then triples."""
RESONANCE_S = 3.0
"""Length of the sympathetic string bank's impulse response (a fade over its last third)."""
RESONANCE_FMAX = 6000.0
RESONANCE_FFT = 1 << 18
"""FFT size the string bank is synthesised on (0.12 Hz bins: mode frequencies within 1 cent above 120 Hz)."""
RESONANCE_T60_CLASSES = 8


def unison_strings(key: int) -> int:
    return [count for first, count in STRINGS_PER_KEY if key >= first][-1]


def interp_keys(keys: np.ndarray, anchors: tuple[int, ...], values: tuple[float, ...]) -> np.ndarray:
    return np.exp(np.interp(keys, anchors, np.log(values)))


def inharmonicity_curve(keys: np.ndarray) -> np.ndarray:
    """String inharmonicity coefficient B per key (order of magnitude of a grand: Fletcher & Rossing)."""
    return interp_keys(keys, (21, 40, 60, 88, 108), (4e-4, 1.5e-4, 3e-4, 1.5e-3, 1e-2))


def string_bank(
    keys: np.ndarray, tuning: np.ndarray, unison: np.ndarray, inharmonicity: float, gain: float, rng
) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Impulse response of a set of free strings seen from the bridge: a sum of damped partials.

    Each key's unison strings (slightly detuned) contribute partials ``j f0 √(1 + B j²)``
    below :data:`RESONANCE_FMAX`, decaying faster the higher they are (T60 from 6 s in the
    bass to under 1 s at 6 kHz), with amplitudes such that a sinusoid at a partial's
    frequency is answered at ``gain`` × 1/√j (split between the unisons). The sum is
    synthesised on an FFT grid per decay class, so thousands of modes cost a few FFTs.
    """
    if len(keys) == 0:
        return np.zeros(1)
    frequency, amplitude, t60 = [], [], []
    for key in keys:
        index = key - MIN_KEY
        f0 = 440.0 * 2.0 ** ((key - 69) / 12 + tuning[index] / 12)
        b = inharmonicity_curve(np.array([key]))[0] * inharmonicity
        j = np.arange(1, max(2, int(RESONANCE_FMAX / f0) + 1))
        partials = j * f0 * np.sqrt(1 + b * j**2)
        keep = partials < RESONANCE_FMAX
        j, partials = j[keep], partials[keep]
        strings = unison_strings(int(key))
        for string in range(strings):
            frequency.append(partials * 2 ** (unison[index, string] / 1200))
            amplitude.append(np.full(len(j), 1.0 / strings) / np.sqrt(j))
            t60.append(np.clip(6.0 * (partials / 100.0) ** -0.5, 0.6, 6.0))
    f = np.concatenate(frequency)
    a = np.concatenate(amplitude) * gain
    decay = np.concatenate(t60)
    tau = decay / np.log(1000.0)
    a = a * 2.0 / (tau * RATE)  # peak gain of a damped sinusoid filter: a · τ · rate / 2
    n_out = int(RESONANCE_S * RATE)
    t = np.arange(n_out) / RATE
    bins = np.round(f * RESONANCE_FFT / RATE).astype(np.int64)
    phases = np.exp(2j * np.pi * rng.random(len(f)))
    edges = np.geomspace(0.6, 6.0, RESONANCE_T60_CLASSES + 1)
    classes = np.clip(np.searchsorted(edges, decay) - 1, 0, RESONANCE_T60_CLASSES - 1)
    response = np.zeros(n_out)
    for c in range(RESONANCE_T60_CLASSES):
        members = classes == c
        if not members.any():
            continue
        spectrum = np.zeros(RESONANCE_FFT // 2 + 1, dtype=np.complex128)
        np.add.at(spectrum, bins[members], a[members] * phases[members] * (RESONANCE_FFT / 2))
        class_tau = np.sqrt(edges[c] * edges[c + 1]) / np.log(1000.0)
        response += np.fft.irfft(spectrum, RESONANCE_FFT)[:n_out] * np.exp(-t / class_tau)
    fade = n_out // 3
    response[-fade:] *= 0.5 * (1 + np.cos(np.linspace(0, np.pi, fade)))
    return response
