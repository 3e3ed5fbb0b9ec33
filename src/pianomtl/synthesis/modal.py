"""A parametric piano: every instrument synthesised from physical parameters, no recordings.

Why: a model trained on a handful of sampled pianos learns those pianos. Real instruments
differ in string inharmonicity, hammer position and felt hardness, how fast the partials
decay (and in two stages, as coupled unison strings do), how detuned the unisons are, the
soundboard and the room. This engine draws each of those from ranges measured on real
pianos (docs/piano.md cites them) for every corpus item, so a corpus holds as many pianos
as items, and plays them with the same mechanics as the sample engine — dampers, half
pedal, re-strikes, sympathetic strings, release and pedal noises, body registers and
microphone — by handing :func:`pianomtl.synthesis.piano.render` a sample bank synthesised
here instead of the Salamander recordings.

A note of key ``k`` at velocity ``v`` is a sum of partials of two (three) slightly detuned
strings, ``f_n = n f0 √(1 + B n²)`` (B from :func:`~pianomtl.synthesis.strings.inharmonicity_curve`
times the instrument's scale), with amplitudes shaped by the hammer's striking point
(``|sin(π n β)|``, the comb of a hammer at β of the speaking length) and a felt low-pass
whose corner rises with velocity (a harder, faster hammer excites more partials), each
decaying in two stages, ``(1 − w) e^{−t/τ₁} + w e^{−t/τ₂}``, with ``1/τ₁`` growing with
frequency as ``σ₁ + σ₃ f²`` (the usual string loss model). A short filtered knock marks the
hammer's impact. The partials are synthesised on an FFT grid per decay class (one inverse
FFT per class and note), so a bank of 30 keys × 3 layers costs well under a second.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass

import numpy as np

from pianomtl.constants import MAX_KEY, MIDI_MAX, MIN_KEY, N_KEYS
from pianomtl.core.midi import Performance
from pianomtl.synthesis.piano import PianoError, PianoVariant, instrument_fields, render
from pianomtl.synthesis.salamander import LAYERS, velocity_range
from pianomtl.synthesis.salamander import SAMPLE_RATE as RATE
from pianomtl.synthesis.sample_bank import LEVEL_WINDOW_S, SampleBank
from pianomtl.synthesis.strings import inharmonicity_curve, unison_strings

BANK_KEY_STEP = 4
"""Keys synthesised: every fourth from A0 (22 keys); the others are pitch-shifted by at most 2 semitones."""
BANK_VELOCITIES = (24, 64, 112)
"""Velocities of the synthesised layers (the 16 layer slots of a bank map to the nearest)."""
MAX_PARTIAL_HZ = 14000.0
MAX_PARTIALS = 90
DECAY_CLASSES = (4, 1)
"""Decay classes per note and stage on the FFT grid (log spaced); a class decays at the rate of its loudest partial."""
SAMPLE_S_BASS, SAMPLE_S_TREBLE = 6.5, 1.2
"""Length of a synthesised note at A0 and C8 (log-interpolated between): long enough to ring under the pedal."""
FADE_S = 0.25
RELEASE_S = 0.12


@dataclass(frozen=True)
class ModalPiano:
    """One synthetic instrument's strings and hammers; the rest (dampers, body, room) is ``mechanics``.

    Ranges (see :meth:`draw` and docs/piano.md): inharmonicity scale 0.6–2.5 × a grand's B
    curve (uprights have shorter, stiffer bass strings), striking point 1/7–1/10 of the
    string, felt corner 0.6–2.5 kHz at mf with a velocity exponent 0.5–1.4, prompt-decay
    T60 at C4 2–8 s, aftersound 3–8 × longer at −8…−22 dB, unison spread 0.2–3 cents.
    """

    seed: int = 0
    inharmonicity: float = 1.0
    strike_point: float = 0.125
    felt_corner_hz: float = 1200.0
    felt_velocity_exponent: float = 0.9
    felt_slope: float = 4.0
    prompt_t60_s: float = 4.0
    high_loss: float = 1.5  # σ₃ relative: 1 kHz above f0 a partial decays (1 + high_loss) × faster than f0
    aftersound_ratio: float = 5.0
    aftersound_db: float = -14.0
    unison_cents: float = 1.0
    knock_db: float = -24.0
    dynamics_db: float = 34.0  # level from velocity 1 to 127 (a grand's range is 30–40 dB)
    brightness_tilt: float = 0.5  # partial amplitudes fall as n^-tilt before the felt corner
    mechanics: PianoVariant = dataclasses.field(default_factory=PianoVariant)

    def __post_init__(self) -> None:
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool) or self.seed < 0:
            raise PianoError(f"modal piano: seed must be an integer >= 0, not {self.seed!r}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if f.name not in ("seed", "mechanics") and not (number and math.isfinite(value)):
                raise PianoError(f"modal piano: {f.name} must be a finite number, not {value!r}")
        positive = ("inharmonicity", "felt_corner_hz", "felt_slope", "prompt_t60_s", "aftersound_ratio")
        for name in positive:
            if not getattr(self, name) > 0:
                raise PianoError(f"modal piano: {name} must be > 0, not {getattr(self, name)!r}")
        if not 0.02 <= self.strike_point <= 0.5:
            raise PianoError(f"modal piano: strike_point must be in [0.02, 0.5], not {self.strike_point!r}")

    @classmethod
    def draw(cls, rng: np.random.Generator) -> ModalPiano:
        """A random instrument, from a small upright to a concert grand."""

        def uniform(low: float, high: float) -> float:
            return round(float(rng.uniform(low, high)), 4)

        def log_uniform(low: float, high: float) -> float:
            return round(float(np.exp(rng.uniform(np.log(low), np.log(high)))), 4)

        mechanics = PianoVariant.draw(rng)
        # the sample engine's layer shifts and dynamics belong to its recordings; here the hammer does that
        mechanics = dataclasses.replace(mechanics, hardness=0.0, hardness_slope=0.0, key_timbre=0.0,
                                        dynamics_db=uniform(0.0, 6.0))  # fmt: skip
        return cls(
            seed=int(rng.integers(0, 2**31 - 1)),
            inharmonicity=log_uniform(0.6, 2.5),
            strike_point=round(1.0 / uniform(7.0, 10.0), 4),
            felt_corner_hz=log_uniform(600.0, 2500.0),
            felt_velocity_exponent=uniform(0.5, 1.4),
            felt_slope=uniform(2.5, 6.0),
            prompt_t60_s=log_uniform(2.0, 8.0),
            high_loss=log_uniform(0.5, 4.0),
            aftersound_ratio=uniform(3.0, 8.0),
            aftersound_db=uniform(-22.0, -8.0),
            unison_cents=log_uniform(0.2, 3.0),
            knock_db=uniform(-34.0, -18.0),
            dynamics_db=uniform(28.0, 42.0),
            brightness_tilt=uniform(0.2, 0.9),
            mechanics=mechanics,
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ModalPiano:
        values = instrument_fields(cls, text, "modal piano", nested=("mechanics",))
        mechanics_text = json.dumps(values.pop("mechanics", {}))
        mechanics = PianoVariant(**instrument_fields(PianoVariant, mechanics_text, "modal piano mechanics"))
        return cls(**values, mechanics=mechanics)


def _length(key: int) -> int:
    fraction = (key - MIN_KEY) / (MAX_KEY - MIN_KEY)
    return int(RATE * SAMPLE_S_BASS * (SAMPLE_S_TREBLE / SAMPLE_S_BASS) ** fraction)


def _note(piano: ModalPiano, key: int, velocity: float, rng: np.random.Generator) -> np.ndarray:
    """One note of ``key`` at ``velocity``, float32 at :data:`RATE`, peak level set by the velocity."""
    from scipy import fft

    f0 = 440.0 * 2.0 ** ((key - 69) / 12)
    b = float(inharmonicity_curve(np.array([key]))[0]) * piano.inharmonicity
    n = np.arange(1, MAX_PARTIALS + 1)
    frequency = n * f0 * np.sqrt(1 + b * n**2)
    keep = frequency < MAX_PARTIAL_HZ
    n, frequency = n[keep], frequency[keep]
    loudness = velocity / MIDI_MAX
    corner = piano.felt_corner_hz * (2 * loudness) ** piano.felt_velocity_exponent * 2 ** ((key - 60) / 36)
    amplitude = np.maximum(np.abs(np.sin(np.pi * n * piano.strike_point)), 0.03) * n**-piano.brightness_tilt
    amplitude /= np.sqrt(1 + (frequency / corner) ** piano.felt_slope)
    # the register's decay: long in the bass, short in the treble (prompt T60 ∝ f0^-0.6 around C4)
    t60 = piano.prompt_t60_s * np.clip((f0 / 261.6) ** -0.6, 0.15, 4.0)
    # losses grow with frequency above the fundamental (σ₃ f²); a treble fundamental still rings 1–2 s
    rate1 = np.log(1000.0) / t60 * (1 + piano.high_loss * ((frequency - f0) / 1000.0) ** 2)
    rate2 = rate1 / piano.aftersound_ratio
    weight2 = 10 ** (piano.aftersound_db / 20)
    strings = unison_strings(key)
    key_rng = np.random.default_rng([piano.seed, 8, key])  # the key's strings: the same in every layer
    detune = key_rng.normal(0.0, 1.0, strings) * piano.unison_cents
    detune -= detune.mean()
    length = _length(key)
    size = fft.next_fast_len(length, real=True)
    t = np.arange(length, dtype=np.float32) / np.float32(RATE)
    audio = np.zeros(length, dtype=np.float32)
    phases = np.exp(1j * key_rng.uniform(0, 2 * np.pi, (strings, len(n))))  # one phase per string and partial
    stages = ((rate1, 1 - weight2, DECAY_CLASSES[0]), (rate2, weight2, DECAY_CLASSES[1]))
    for stage_rates, stage_weight, count in stages:  # single precision: twice as fast, 1e-7 is plenty here
        edges = np.geomspace(stage_rates.min() * 0.999, stage_rates.max() * 1.001, count + 1)
        classes = np.clip(np.searchsorted(edges, stage_rates) - 1, 0, count - 1)
        for c in np.unique(classes):
            members = classes == c
            spectrum = np.zeros(size // 2 + 1, dtype=np.complex64)
            for string, cents in enumerate(detune):
                bins = np.round(frequency[members] * 2 ** (cents / 1200) * size / RATE).astype(np.int64)
                values = amplitude[members] * phases[string, members] * (size / 2) / strings
                np.add.at(spectrum, bins, values)
            class_rate = float(stage_rates[members][np.argmax(amplitude[members])])  # the loudest member's decay
            envelope = np.exp(np.float32(-class_rate) * t)
            envelope *= np.float32(stage_weight)
            part = fft.irfft(spectrum, size)[:length]
            part *= envelope
            audio += part
    attack = int(0.002 * RATE / (0.5 + loudness))  # harder blows, shorter contact
    audio[:attack] *= 0.5 * (1 - np.cos(np.linspace(0, np.pi, attack)))
    knock_length = int(0.03 * RATE)
    knock = rng.standard_normal(knock_length) * np.exp(-np.arange(knock_length) / (0.006 * RATE))
    knock = np.convolve(knock, np.ones(6) / 6, mode="same")  # a dull thud: the key bed and the hammer shank
    peak = float(np.max(np.abs(audio[: int(0.05 * RATE)]))) + 1e-12
    audio[:knock_length] += knock / (np.max(np.abs(knock)) + 1e-12) * peak * 10 ** (piano.knock_db / 20) * loudness
    fade = int(FADE_S * RATE)
    audio[-fade:] *= 0.5 * (1 + np.cos(np.linspace(0, np.pi, fade)))
    level_db = piano.dynamics_db * (np.log10(max(velocity, 1.0) / MIDI_MAX) / np.log10(MIDI_MAX))
    return (audio / peak * 10 ** ((level_db - 6.0) / 20)).astype(np.float32)


def _release(key: int, rng: np.random.Generator) -> np.ndarray:
    """A damper landing on its string: a short low-passed burst, duller in the bass."""
    length = int(RELEASE_S * RATE)
    t = np.arange(length) / RATE
    burst = rng.standard_normal(length) * np.exp(-t / 0.015)
    width = int(np.clip(40 - (key - MIN_KEY) * 0.35, 6, 40))
    burst = np.convolve(burst, np.ones(width) / width, mode="same")
    f0 = 440.0 * 2.0 ** ((key - 69) / 12)
    burst += 0.5 * np.sin(2 * np.pi * f0 * t) * np.exp(-t / 0.02) * np.std(burst) * 3
    return (burst / (np.max(np.abs(burst)) + 1e-12)).astype(np.float32)


@functools.lru_cache(maxsize=2)
def build_bank(piano: ModalPiano) -> SampleBank:
    """The instrument's notes (every :data:`BANK_KEY_STEP`-th key × :data:`BANK_VELOCITIES`) and release
    sounds, laid out as the sample engine reads a recorded bank. Deterministic from the piano's seed."""
    rng = np.random.default_rng([piano.seed, 7])
    keys = list(range(MIN_KEY, MAX_KEY + 1, BANK_KEY_STEP))
    if keys[-1] != MAX_KEY:
        keys.append(MAX_KEY)
    pieces, start, stop, pitch, layer_of = [], [], [], [], []
    position = 0
    for key in keys:
        for layer, velocity in enumerate(BANK_VELOCITIES):
            note = np.round(np.clip(_note(piano, key, velocity, rng), -1.0, 1.0) * 32767).astype(np.int16)
            pieces.append(note)
            start.append(position)
            position += len(note)
            stop.append(position)
            pitch.append(float(key))
            layer_of.append(layer)
    samples = np.concatenate(pieces)
    pitch_array = np.array(pitch)
    centres = [np.mean(velocity_range(slot)) for slot in range(1, LAYERS + 1)]
    nearest_layer = [int(np.argmin([abs(c - v) for v in BANK_VELOCITIES])) for c in centres]
    table = np.zeros((N_KEYS, LAYERS), dtype=np.int64)
    key_index = np.argmin(np.abs(np.arange(MIN_KEY, MAX_KEY + 1)[:, None] - np.array(keys)[None, :]), axis=1)
    for slot, layer in enumerate(nearest_layer):
        table[:, slot] = key_index * len(BANK_VELOCITIES) + layer
    window = int(LEVEL_WINDOW_S * RATE)
    heads = [samples[a : min(b, a + window)] / 32768.0 for a, b in zip(start, stop, strict=True)]
    levels = np.array([np.sqrt(np.mean(head**2)) for head in heads])
    release = np.stack([_release(key, rng) for key in range(MIN_KEY, MAX_KEY + 1)])
    return SampleBank(
        samples, np.array(start, dtype=np.int64), np.array(stop, dtype=np.int64), pitch_array, table,
        20 * np.log10(levels[table] + 1e-9), release,
    )  # fmt: skip


def render_modal(performance: Performance, n_samples: int, piano: ModalPiano | None = None) -> np.ndarray:
    """Mono float32 audio (``n_samples`` at the corpus rate) of ``performance`` on a synthetic piano."""
    piano = piano or ModalPiano()
    mechanics = dataclasses.replace(piano.mechanics, inharmonicity=piano.inharmonicity)  # one string model
    return render(performance, n_samples, mechanics, bank=build_bank(piano))
