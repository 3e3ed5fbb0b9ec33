"""A sample-based piano of the project's own: dampers, pedal, sympathetic strings, many instruments.

Why not only FluidSynth and TiMidity: a SoundFont player's sustain pedal merely *holds*
notes. On a piano the pedal lifts every damper, so undamped strings ring in sympathy
with what is played, a key released under the pedal sounds on until the dampers fall
(with a soft thud), half-pedalling damps partly, and the top keys have no dampers at
all. Training audio without that teaches the pedal head nothing. This engine plays a
:class:`~pianomtl.core.midi.Performance` from the Salamander grand's multi-samples and
models those mechanics; docs/piano.md describes the physics and the numbers.

What it reads (fetched at set-up, see :mod:`pianomtl.synthesis.sources`):

- the 480 note samples (30 keys × 16 velocity layers) out of the SoundFont that
  :mod:`pianomtl.synthesis.salamander` builds: already mono, 32 kHz, lead-in trimmed and
  with the measured tuning (a sample's sounding pitch is its root key minus its pitch
  correction). Reading the SF2's sample chunk through a memory map costs nothing and is
  shared between worker processes; decoding the 480 OGGs would take half a minute;
- the 88 release samples ``release/rel1.ogg … rel88.ogg`` (A0 … C8): damper and key
  noise, played where a damper falls on a sounding string.

How a render works (all vectorised numpy/scipy, at the samples' 32 kHz, resampled once
at the end to :data:`~pianomtl.constants.SAMPLE_RATE`):

1. the pedal curve becomes a damper *lift* in [0, 1] (CC64 ≤ 64: dampers on the strings,
   as the labels say "up"; ≥ :data:`PEDAL_FULL_LIFT`: fully off; in between: half-pedal,
   partial damping), smoothed over the dampers' travel, and its running integral of
   damper contact ``C(t) = ∫ (1 − lift)``;
2. every note is a voice: its two neighbouring velocity layers cross-faded, pitch-shifted
   (linear interpolation) to the variant's tuning, and an envelope whose damping
   exponent grows as ``rate(key) · ΔC`` while its key is up: with the pedal down ΔC
   stays 0 and the string rings on; half-pedal lets it grow at a fraction of the rate;
   keys from :data:`~pianomtl.synthesis.salamander.FIRST_UNDAMPED_KEY` on have no damper;
3. where a damper lands on a string (key release, or the pedal lifting later) the key's
   release sample sounds; pedal down/up adds a quiet mechanical thump;
4. sympathetic resonance: the dry sound drives a bank of string modes (every key's
   unison strings, inharmonic partials, per-register decay times). The damped strings'
   bank is driven only while the dampers are lifted and damped with the same ``C(t)``
   (exactly, as a separable convolution); the top strings' bank always rings;
5. per-register body/soundboard filters (minimum phase, so onsets stay put), a
   microphone at a random distance (direct sound, early reflections, a short room), one
   final band-limited resample to the output rate.

:class:`PianoVariant` makes many pianos from one: velocity curve, hammer hardness,
stretch tuning, unison detune, inharmonicity, damper strength, upright-like bass decay,
body envelopes, per-key gain/timbre jitter, resonance level, microphone distance — drawn
from a seed, JSON-safe, so a corpus item records the instrument it was rendered with.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass

import numpy as np

from pianomtl.constants import MAX_KEY, MIDI_MAX, MIN_KEY, N_KEYS, PEDAL_DOWN_ABOVE, SAMPLE_RATE
from pianomtl.core.midi import Performance, next_strike_index
from pianomtl.synthesis import body
from pianomtl.synthesis.salamander import FIRST_UNDAMPED_KEY, LAYERS, velocity_range
from pianomtl.synthesis.salamander import SAMPLE_RATE as RATE
from pianomtl.synthesis.sample_bank import SampleBank, require_bank
from pianomtl.synthesis.strings import interp_keys, string_bank, unison_strings

# ---------------------------------------------------------------- the instrument's fixed numbers

PEDAL_FULL_LIFT = 100
"""CC64 value from which the dampers are fully off the strings; between
:data:`~pianomtl.constants.PEDAL_DOWN_ABOVE` and this, half-pedal (partial damping)."""
PEDAL_TRAVEL_S = 0.015
"""Damper travel time: the lift follows the pedal through a moving average this long."""
DAMPER_CONTACT_LIFT = 0.5
"""A falling damper "lands" (release sample) where the lift drops below this."""
DAMPER_T60_KEYS = (21, 48, 72, 88)
DAMPER_T60_S = (1.6, 0.6, 0.3, 0.18)
"""Time for a damper to silence its string by 60 dB, per register (the long, heavy bass
strings are damped slowest); interpolated log-linearly between these keys."""
ENVELOPE_FLOOR = 1e-4
"""A voice stops when its damping has brought it 80 dB down."""
RESTRIKE_KEEP = 0.5
"""A string struck again while still sounding keeps this much of its old vibration
(the hammer's contact damps it briefly; the new vibration adds to what remains)."""
RESTRIKE_RAMP_S = 0.005
UNISON_WEIGHT = 0.3
"""Share of a voice played a unison's detune apart (keys with more than one string)…"""
UNISON_S, UNISON_FADE_S = 3.0, 0.5
"""… for its first 3 s, then faded out over 0.5 s (see :func:`_add_unison`)."""
BODY_CENTRES = (30, 50, 70, 95)
"""Keys at the centre of the four body/soundboard registers; a voice is split linearly between neighbours."""
MASTER_GAIN = 0.5
"""Output scale, as FluidSynth's gain in :mod:`pianomtl.synthesis.timbres` (peaks are normalised later anyway)."""
RESAMPLE_UP, RESAMPLE_DOWN = 441, 320
assert SAMPLE_RATE * RESAMPLE_DOWN == RATE * RESAMPLE_UP, "output / sample rate must be 441 / 320"
CHUNK = 16384


class PianoError(ValueError):
    """The piano cannot play this input; the one-line message says why."""


# ---------------------------------------------------------------- instrument variants


@dataclass(frozen=True)
class PianoVariant:
    """One instrument derived from the sampled grand; JSON-safe (a corpus item records it).

    The defaults are the grand as sampled (neutral), recorded close up.
    """

    seed: int = 0
    velocity_gamma: float = 1.0  # velocity curve: effective = 127 (v / 127) ** gamma
    dynamics_db: float = 12.0  # extra level span from the top layer down to the bottom one
    hardness: float = 0.0  # velocity layers (timbre) shifted by this many layers at equal loudness
    hardness_slope: float = 0.0  # … plus this many more at ff than at pp (hammer hardness vs velocity)
    stretch_cents: float = 0.0  # extra stretch tuning at the keyboard's ends (bass flat, treble sharp)
    tuning_jitter_cents: float = 0.0  # per-key tuning error (standard deviation)
    unison_detune_cents: float = 1.0  # spread of a key's unison strings (standard deviation)
    inharmonicity: float = 1.0  # scales the strings' inharmonicity coefficient B
    damper_scale: float = 1.0  # scales the damper decay times
    bass_decay: float = 0.0  # extra decay (1/s) of A0, falling to 0 at C4: an upright's shorter bass
    body_db: float = 0.0  # depth (standard deviation, dB) of the register body envelopes
    key_gain_db: float = 0.0  # per-key gain jitter (standard deviation, dB)
    key_timbre: float = 0.0  # per-key timbre jitter (standard deviation, velocity layers)
    resonance_db: float = -20.0  # sympathetic string gain at exact resonance
    mic_distance: float = 0.5  # metres: direct / room balance, air and off-axis high loss
    room_rt60: float = 0.4  # seconds, the room around the piano (the corpus may add a hall)
    release_db: float = -40.0  # release (damper) sample peak level at mid velocity, re full scale
    pedal_noise_db: float = -52.0  # pedal thump level re full scale

    def __post_init__(self) -> None:
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool) or self.seed < 0:
            raise PianoError(f"piano variant: seed must be an integer >= 0, not {self.seed!r}")
        for name in ("velocity_gamma", "damper_scale", "mic_distance", "room_rt60"):
            if not getattr(self, name) > 0:
                raise PianoError(f"piano variant: {name} must be > 0, not {getattr(self, name)!r}")

    @classmethod
    def draw(cls, rng: np.random.Generator) -> PianoVariant:
        """A random instrument: ranges around the sampled grand, from uprights to bright grands."""

        def uniform(low: float, high: float) -> float:
            return round(float(rng.uniform(low, high)), 4)

        upright = rng.random() < 0.35
        return cls(
            seed=int(rng.integers(0, 2**31 - 1)),
            velocity_gamma=round(float(np.exp(rng.uniform(np.log(0.75), np.log(1.35)))), 4),
            dynamics_db=uniform(6.0, 18.0),
            hardness=uniform(-3.0, 3.0),
            hardness_slope=uniform(-2.0, 2.0),
            stretch_cents=uniform(-10.0, 15.0),
            tuning_jitter_cents=uniform(0.0, 3.0),
            unison_detune_cents=uniform(0.2, 2.5),
            inharmonicity=uniform(0.7, 1.5),
            damper_scale=uniform(0.7, 1.5),
            bass_decay=uniform(0.4, 1.5) if upright else 0.0,
            body_db=uniform(1.0, 4.0),
            key_gain_db=uniform(0.2, 1.5),
            key_timbre=uniform(0.1, 0.6),
            resonance_db=uniform(-28.0, -14.0),
            mic_distance=round(float(np.exp(rng.uniform(np.log(0.3), np.log(4.0)))), 4),
            room_rt60=uniform(0.2, 0.7),
            release_db=uniform(-46.0, -34.0),
            pedal_noise_db=uniform(-58.0, -46.0),
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> PianoVariant:
        return cls(**instrument_fields(cls, text, "piano variant"))


def instrument_fields(cls: type, text: str, what: str, nested: tuple[str, ...] = ()) -> dict:
    """The fields of an instrument described by ``text`` (what a corpus CSV's ``instrument`` column holds), checked:
    JSON, an object, no unknown field, every value a finite number (or, for the ``nested`` fields, an object);
    else a one-line :class:`PianoError` naming ``what``."""
    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        raise PianoError(f"{what} is not JSON ({error})") from None
    names = {f.name for f in dataclasses.fields(cls)}
    if not isinstance(values, dict) or set(values) - names:
        unknown = sorted(set(values) - names) if isinstance(values, dict) else values
        raise PianoError(f"{what}: unknown fields {unknown}")
    for name, value in values.items():
        if name in nested:
            if not isinstance(value, dict):
                raise PianoError(f"{what}: {name} must be an object, not {value!r}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise PianoError(f"{what}: {name} must be a finite number, not {value!r}")
    return values


# ---------------------------------------------------------------- a variant, expanded


@dataclass
class Instrument:
    """Per-key arrays and filters of one :class:`PianoVariant` (built once per variant)."""

    variant: PianoVariant
    tuning: np.ndarray  # [N_KEYS] pitch offset in semitones from equal temperament
    gain_db: np.ndarray  # [N_KEYS]
    timbre: np.ndarray  # [N_KEYS] layer shift
    damper_rate: np.ndarray  # [N_KEYS] 1/s exponent rate with the damper fully on (0: no damper)
    bass_decay: np.ndarray  # [N_KEYS] extra decay rate 1/s
    unison: np.ndarray  # [N_KEYS] cents between a key's first two strings (0: one string)
    filters: np.ndarray  # [G, m] float32 per body register: (body + top strings' resonance) ∗ microphone
    bank_damped: np.ndarray  # sympathetic response of the damped strings, at RATE
    resonance_rate: float  # damping rate of the sympathetic strings with the dampers on


@functools.lru_cache(maxsize=4)
def expand(variant: PianoVariant) -> Instrument:
    """Everything a render needs from the variant, deterministically from its seed."""
    rng = np.random.default_rng([variant.seed, 1])
    keys = np.arange(MIN_KEY, MAX_KEY + 1)
    d = (keys - 66) / 42.0
    stretch = variant.stretch_cents * np.sign(d) * np.abs(d) ** 2.5
    tuning = (stretch + rng.normal(0.0, 1.0, N_KEYS) * variant.tuning_jitter_cents) / 100.0
    gain_db = rng.normal(0.0, 1.0, N_KEYS) * variant.key_gain_db
    timbre = rng.normal(0.0, 1.0, N_KEYS) * variant.key_timbre
    t60 = interp_keys(keys, DAMPER_T60_KEYS, DAMPER_T60_S) * variant.damper_scale
    damper_rate = np.where(keys < FIRST_UNDAMPED_KEY, np.log(1000.0) / t60, 0.0)
    bass_decay = variant.bass_decay * np.clip((60 - keys) / 39.0, 0.0, 1.0)

    microphone = body.microphone(rng, variant)
    bodies = body.bodies(rng, variant.body_db, len(BODY_CENTRES))

    res_rng = np.random.default_rng([variant.seed, 2])
    gain = 10 ** (variant.resonance_db / 20)
    damped = keys[keys < FIRST_UNDAMPED_KEY]
    top = keys[keys >= FIRST_UNDAMPED_KEY]
    unison = res_rng.normal(0.0, 1.0, (N_KEYS, 3)) * variant.unison_detune_cents
    strings = np.array([unison_strings(int(key)) for key in keys])
    voice_unison = np.where(strings > 1, unison[:, 1] - unison[:, 0], 0.0)
    bank_damped = string_bank(damped, tuning, unison, variant.inharmonicity, gain, res_rng).astype(np.float32)
    bank_top = string_bank(top, tuning, unison, variant.inharmonicity, gain, res_rng)
    # each register's path to the microphone: its body filter plus the always-free top strings' answer
    from scipy.signal import fftconvolve

    length = max(body.BODY_TAPS, len(bank_top))
    filters = []
    for register in bodies:
        path = np.zeros(length)
        path[: len(register)] += register
        path[: len(bank_top)] += bank_top
        filters.append(fftconvolve(microphone, path))
    resonance_rate = float(np.log(1000.0) / (interp_keys(np.array([60]), DAMPER_T60_KEYS, DAMPER_T60_S)[0]))
    return Instrument(
        variant, tuning, gain_db, timbre, damper_rate, bass_decay, voice_unison, np.array(filters, dtype=np.float32),
        bank_damped, resonance_rate / variant.damper_scale,
    )  # fmt: skip


# ---------------------------------------------------------------- input checks


def _check(performance: Performance, n_samples: int) -> None:
    if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise PianoError(f"n_samples must be a positive integer, not {n_samples!r}")
    for note in performance.notes:
        key, onset, offset, velocity = note
        if not (MIN_KEY <= key <= MAX_KEY and float(key).is_integer()):
            raise PianoError(f"note {tuple(note)}: key outside the piano ({MIN_KEY}–{MAX_KEY})")
        if not (1 <= velocity <= MIDI_MAX):
            raise PianoError(f"note {tuple(note)}: velocity outside 1–{MIDI_MAX}")
        if not (math.isfinite(onset) and math.isfinite(offset) and 0 <= onset <= offset):
            raise PianoError(f"note {tuple(note)}: times must be finite with 0 <= onset <= offset")
    for event in performance.pedal:
        if not (math.isfinite(event.time) and event.time >= 0 and 0 <= event.value <= MIDI_MAX):
            raise PianoError(f"pedal event {tuple(event)}: time must be >= 0 and value 0–{MIDI_MAX}")


# ---------------------------------------------------------------- rendering


def pedal_lift(value: np.ndarray | float) -> np.ndarray:
    """Damper lift in [0, 1] for CC64 values: 0 up to the label threshold, 1 from :data:`PEDAL_FULL_LIFT`."""
    value = np.asarray(value, dtype=np.float64)
    return np.clip((value - PEDAL_DOWN_ABOVE) / (PEDAL_FULL_LIFT - PEDAL_DOWN_ABOVE), 0.0, 1.0)


def _lift_curve(performance: Performance, n: int) -> np.ndarray:
    events = sorted(performance.pedal, key=lambda e: e.time)
    starts = np.array([min(n, round(e.time * RATE)) for e in events] + [n], dtype=np.int64)
    values = np.concatenate([[0.0], pedal_lift([e.value for e in events])])
    # the value in force at each sample: the last event at or before it (0 before the first)
    target = values[np.searchsorted(starts[:-1], np.arange(n), side="right")] if events else np.zeros(n)
    width = max(1, int(PEDAL_TRAVEL_S * RATE))
    padded = np.concatenate([np.zeros(width), target])
    running = np.cumsum(padded)
    smooth = (running[width:] - running[:-width]) / width
    return np.clip(smooth, 0.0, 1.0)


def _resample(source: np.ndarray, ratio: float, length: int) -> np.ndarray:
    """``source`` read at positions ``k · ratio`` (linear interpolation), chunked to stay in cache."""
    out = np.empty(length, dtype=np.float32)
    base = np.arange(min(CHUNK, length), dtype=np.float32) * np.float32(ratio)
    for begin in range(0, length, CHUNK):
        count = min(CHUNK, length - begin)
        position = begin * ratio
        first = int(position)
        local = base[:count] + np.float32(position - first)
        index = local.astype(np.int32)
        fraction = local - index
        segment = source[first : first + int(local[-1]) + 2]
        low = segment[index]
        high = segment[np.minimum(index + 1, len(segment) - 1)]
        np.subtract(high, low, out=high)
        np.multiply(high, fraction, out=high)
        np.add(low, high, out=out[begin : begin + count])
    return out


@dataclass
class _Voice:
    key: int
    on: int  # sample index of the strike (RATE)
    off: int  # key release, or the next strike of the key if that comes first
    next_on: int  # next strike of the same key (n: none)
    velocity: float
    successor: _Voice | None = None  # the key's next note


def _layer_position(velocity: np.ndarray, gamma: float) -> np.ndarray:
    """Continuous velocity-layer position 1 … 16 of (curved) velocities, through the layers' centres."""
    centres = np.array([np.mean(velocity_range(layer)) for layer in range(1, LAYERS + 1)])
    effective = MIDI_MAX * (np.asarray(velocity, dtype=np.float64) / MIDI_MAX) ** gamma
    position = np.interp(effective, centres, np.arange(1, LAYERS + 1))
    # below the softest layer's centre, go on at its slope (the level keeps falling; the timbre stays)
    below = effective < centres[0]
    position[below] = 1.0 - (centres[0] - effective[below]) / (centres[1] - centres[0])
    return position


def _level_at(level_db: np.ndarray, key: int, position: float) -> float:
    row = level_db[key - MIN_KEY]
    return float(np.interp(position, np.arange(1, LAYERS + 1), row))


def render(
    performance: Performance,
    n_samples: int,
    variant: PianoVariant | None = None,
    release_samples: bool = True,
    bank: SampleBank | None = None,
) -> np.ndarray:
    """Mono float32 audio (``n_samples`` at :data:`~pianomtl.constants.SAMPLE_RATE`) of ``performance``.

    Deterministic: the same performance and variant give the same samples.
    ``release_samples=False`` leaves out the damper/release samples (to hear what they add).
    """
    _check(performance, n_samples)
    variant = variant or PianoVariant()
    bank = bank or require_bank()
    instrument = expand(variant)
    n = -(-n_samples * RESAMPLE_DOWN // RESAMPLE_UP) + 1  # internal samples covering the output
    lift = _lift_curve(performance, n)
    contact = np.concatenate([[0.0], np.cumsum(1.0 - lift) / RATE])[:n]  # C(t): seconds of damper contact
    buses = np.zeros((len(BODY_CENTRES), n), dtype=np.float32)
    voices = _voices(performance, n)
    rng = np.random.default_rng([variant.seed, 3])
    jitter = rng.normal(0.0, 1.0, len(voices))  # drawn for every note, so the pedal never shifts the stream
    next_low = _next_below(lift, DAMPER_CONTACT_LIFT)
    releases: list[tuple[int, int, float]] = []  # (sample index, key, level dB)
    loudness = _layer_position(np.array([v.velocity for v in voices]), variant.velocity_gamma)
    for voice, position, extra in zip(voices, loudness, jitter, strict=True):
        _play(voice, float(position), instrument, bank, contact, buses, n)
        if not release_samples or voice.key >= FIRST_UNDAMPED_KEY or voice.off >= voice.next_on or voice.off >= n:
            continue  # no damper, or the key was struck again before it came up
        landing = int(next_low[voice.off])
        if landing < min(voice.next_on, n):
            level = variant.release_db + 6.0 * (float(position) - 8.5) / 7.5 + 2.0 * float(extra)
            releases.append((landing, voice.key, level))
    _add_releases(releases, bank, buses, n)
    _add_pedal_noise(lift, variant, buses, n)
    excitation = buses.sum(axis=0)
    resonance = _damped_resonance(excitation, lift, contact, instrument)
    if resonance is not None:
        buses[1] += resonance.astype(np.float32)
    return _finish(buses, instrument, n_samples)


def _voices(performance: Performance, n: int) -> list[_Voice]:
    """Notes as voices in sample time, each knowing its key's next strike (re-strikes)."""
    notes = performance.notes
    voices: list[_Voice] = []
    for note in notes:
        on = round(note.onset * RATE)
        voices.append(_Voice(int(note.key), on, max(on, round(note.offset * RATE)), n, float(note.velocity)))
    following = next_strike_index([n.onset for n in notes], [n.key for n in notes])
    for voice, successor in zip(voices, following.tolist(), strict=True):
        if successor >= 0:
            voice.successor = voices[successor]
            voice.next_on = voice.successor.on
            voice.off = min(voice.off, voice.next_on)
    order = sorted(range(len(notes)), key=lambda i: (notes[i].onset, i))
    return [voices[i] for i in order if voices[i].on < n]


def _next_below(lift: np.ndarray, threshold: float) -> np.ndarray:
    """For each sample, the first sample at or after it where the lift is below ``threshold`` (n: never)."""
    n = len(lift)
    index = np.where(lift < threshold, np.arange(n), n)
    return np.minimum.accumulate(index[::-1])[::-1]


def _play(
    voice: _Voice,
    loudness: float,
    instrument: Instrument,
    bank: SampleBank,
    contact: np.ndarray,
    buses: np.ndarray,
    n: int,
) -> None:
    """Mix one note into the body buses.

    ``loudness`` is the note's (curved) velocity-layer position; the layers actually played
    (timbre) are shifted from it by the hammer hardness and the key's timbre jitter, and
    the gain restores the loudness of ``loudness`` (the layers' measured levels).
    """
    variant = instrument.variant
    k = voice.key - MIN_KEY
    slope = variant.hardness_slope * (loudness - 8.5) / 7.5
    timbre = float(np.clip(loudness + variant.hardness + slope + instrument.timbre[k], 1.0, LAYERS))
    low = int(np.floor(timbre))
    fraction = timbre - low
    high = min(low + 1, LAYERS)
    gain_db = _level_at(bank.level_db, voice.key, loudness) - _level_at(bank.level_db, voice.key, timbre)
    gain_db = float(np.clip(gain_db, -12.0, 12.0))  # timbre moved, loudness kept
    gain_db += variant.dynamics_db * (loudness - LAYERS) / (LAYERS - 1) + instrument.gain_db[k]
    gain = 10 ** (gain_db / 20) / 32768.0

    parts = [(int(bank.table[k, low - 1]), 1.0 - fraction)]
    if high != low:
        parts.append((int(bank.table[k, high - 1]), fraction))
    parts = [(sample, weight) for sample, weight in parts if weight > 0.01]
    pitch = bank.pitch[parts[0][0]]
    ratio = 2.0 ** ((voice.key + instrument.tuning[k] - pitch) / 12.0)
    detune = instrument.unison[k]
    reach = ratio * 2.0 ** (max(detune, 0.0) / 1200.0)  # the faster of the two unison readers
    length_source = max(int(bank.stop[s] - bank.start[s]) for s, _ in parts)
    length, exponent = _damping(voice, instrument, contact, min(int((length_source - 2) / reach), n - voice.on))
    if length <= 0:
        return
    needed = min(length_source, int(length * reach) + 3)  # only the part of the samples that will sound
    source = np.zeros(needed + 2, dtype=np.float32)
    for sample, weight in parts:
        data = bank.samples[bank.start[sample] : min(bank.stop[sample], bank.start[sample] + needed)]
        data = data.astype(np.float32) * np.float32(weight * gain)
        if abs(bank.pitch[sample] - pitch) > 0.01:  # a layer retuned differently: shift it onto the first
            shift = 2.0 ** ((bank.pitch[sample] - pitch) / 12.0)
            data = _resample(np.append(data, np.float32(0)), shift, int((len(data) - 1) / shift))
        used = min(len(data), len(source))  # a layer shifted down comes out longer than needed
        source[:used] += data[:used]
    audio = _resample(source, ratio, length)
    if detune != 0.0:  # a second unison string, slightly detuned: the partials beat, k · f0 · detune apart
        _add_unison(audio, source, ratio * 2.0 ** (detune / 1200.0))
    if exponent is not None:
        audio *= np.exp(-exponent)
    _mix(buses, voice.key, voice.on, audio)


def _add_unison(audio: np.ndarray, source: np.ndarray, ratio: float) -> None:
    """Mix a detuned reading of ``source`` into ``audio`` (in place), fading back to one reading.

    Over the first :data:`UNISON_S` the voice is (1 − w) · main + w · detuned; then, over
    :data:`UNISON_FADE_S`, the detuned share fades out and the main one returns to full.
    The recorded samples carry the sampled piano's own unison beating all along; the
    variant's extra detune matters where the note is loud, and stopping it there halves the
    cost of pedalled, many-voiced passages.
    """
    span = min(len(audio), int((UNISON_S + UNISON_FADE_S) * RATE))
    hold = min(span, int(UNISON_S * RATE))
    weight = np.full(span, UNISON_WEIGHT, dtype=np.float32)
    weight[hold:] = np.linspace(UNISON_WEIGHT, 0.0, span - hold, dtype=np.float32)
    detuned = _resample(source, ratio, span)
    head = audio[:span]
    head += weight * (detuned - head)


def _damping(voice: _Voice, instrument: Instrument, contact: np.ndarray, length: int) -> tuple[int, np.ndarray | None]:
    """How long the voice sounds, and its envelope exponent (None: no damping at all).

    The exponent adds the upright-like extra decay, ``rate(key) · ΔC`` over every stretch
    in which the key is up (from this note's release to the key's next strike, and from
    that note's release on …), and ``−ln`` :data:`RESTRIKE_KEEP` at each re-strike. The
    voice ends where the exponent passes ``−ln`` :data:`ENVELOPE_FLOOR`; ``C`` being
    monotonic, that point is found by bisection before anything is computed.
    """
    k = voice.key - MIN_KEY
    rate = float(instrument.damper_rate[k])
    floor = float(-np.log(ENVELOPE_FLOOR))
    drop = float(-np.log(RESTRIKE_KEEP))
    end = voice.on + length
    stretches: list[tuple[int, int]] = []  # damped stretches [a, b)
    strikes: list[int] = []
    reached = 0.0
    up_start, up_stop, chain = voice.off, voice.next_on, voice
    while up_start < end:
        if rate > 0 and up_stop > up_start:
            stop = min(up_stop, end)
            dead = int(np.searchsorted(contact, contact[up_start] + (floor - reached) / rate))
            if dead < stop:
                end = max(dead, up_start + 1)
                stretches.append((up_start, end))
                break
            stretches.append((up_start, stop))
            reached += rate * (contact[stop - 1] - contact[up_start])
        if up_stop >= end or chain.successor is None:
            break
        strikes.append(up_stop)  # struck again: the old vibration partly stays
        reached += drop
        chain = chain.successor
        up_start, up_stop = chain.off, chain.next_on
    length = end - voice.on
    bass = float(instrument.bass_decay[k])
    if not stretches and not strikes and bass == 0.0:
        return length, None
    exponent = np.zeros(length, dtype=np.float32)
    if bass > 0:
        exponent += np.arange(length, dtype=np.float32) * np.float32(bass / RATE)
    for a, b in stretches:
        steps = (rate * (contact[a:b] - contact[a])).astype(np.float32)
        exponent[a - voice.on : b - voice.on] += steps
        exponent[b - voice.on :] += steps[-1]
    ramp = int(RESTRIKE_RAMP_S * RATE)
    for at in strikes:
        s = at - voice.on
        count = min(ramp, length - s)
        exponent[s : s + count] += np.float32(drop) * np.linspace(0, 1, count, endpoint=False, dtype=np.float32)
        exponent[s + count :] += np.float32(drop)
    length = int(np.searchsorted(exponent, floor))  # monotonic: the first sample past the floor
    return length, exponent[:length]


def _mix(buses: np.ndarray, key: int, start: int, audio: np.ndarray) -> None:
    """Add ``audio`` into the two body registers around ``key`` (linear weights)."""
    centres = BODY_CENTRES
    if key <= centres[0]:
        pairs = [(0, 1.0)]
    elif key >= centres[-1]:
        pairs = [(len(centres) - 1, 1.0)]
    else:
        upper = int(np.searchsorted(centres, key, side="right"))
        w = (key - centres[upper - 1]) / (centres[upper] - centres[upper - 1])
        pairs = [(upper - 1, 1.0 - w), (upper, w)]
    stop = start + len(audio)
    for bus, weight in pairs:
        if weight > 0:
            buses[bus, start:stop] += audio * np.float32(weight)


def _add_releases(releases: list[tuple[int, int, float]], bank: SampleBank, buses: np.ndarray, n: int) -> None:
    """Release samples where dampers land; many landing at once (the pedal lifts) share one thud's energy."""
    if not releases:
        return
    slot = np.array([at // int(0.01 * RATE) for at, _, _ in releases])
    _, inverse, counts = np.unique(slot, return_inverse=True, return_counts=True)
    for (at, key, level_db), together in zip(releases, counts[inverse], strict=True):
        sample = bank.release[key - MIN_KEY]
        stop = min(n, at + len(sample))
        gain = np.float32(10 ** (level_db / 20) / np.sqrt(together))
        _mix(buses, key, at, sample[: stop - at] * gain)


def _add_pedal_noise(lift: np.ndarray, variant: PianoVariant, buses: np.ndarray, n: int) -> None:
    """A soft low thump where the dampers leave (pedal down) or meet (pedal up) the strings."""
    from scipy.signal import lfilter

    moving = np.flatnonzero(np.diff((lift > 0).astype(np.int8)))
    rng = np.random.default_rng([variant.seed, 4])
    for at in moving:
        down = lift[at + 1] > 0
        length = int(0.08 * RATE)
        t = np.arange(length) / RATE
        burst = rng.standard_normal(length) * np.exp(-t / (0.012 if down else 0.02))
        cutoff = np.exp(-2 * np.pi * (600.0 if down else 300.0) / RATE)
        burst = lfilter([1 - cutoff], [1, -cutoff], burst)
        burst *= 10 ** ((variant.pedal_noise_db - (4.0 if down else 0.0)) / 20) / (np.max(np.abs(burst)) + 1e-12)
        stop = min(n, at + 1 + length)
        buses[1, at + 1 : stop] += burst[: stop - at - 1].astype(np.float32)


def _damped_resonance(
    excitation: np.ndarray, lift: np.ndarray, contact: np.ndarray, instrument: Instrument
) -> np.ndarray | None:
    """Sympathetic vibration of the damped strings, driven and let ring only while the dampers are lifted.

    A string bank driven by ``e`` and damped at ``rate · dC/dt`` answers
    ``y(t) = exp(−rate C(t)) · [(e · lift · exp(rate C)) ∗ h](t)``: the damping separates,
    so the time-varying system is a plain convolution between two gains. Runs of lifted
    dampers are convolved one by one (with the exponent bounded), each until it has died out.
    """
    from scipy.signal import fftconvolve

    bank = instrument.bank_damped
    rate = instrument.resonance_rate
    n = len(excitation)
    active = lift > 0
    if not active.any():
        return None
    edges = np.flatnonzero(np.diff(np.concatenate([[0], active.astype(np.int8), [0]])))
    runs = list(zip(edges[::2], edges[1::2], strict=True))
    merged: list[list[int]] = []
    for a, b in runs:  # join runs whose gap is short: the input between them is zero, so joining is exact
        if merged and rate * (contact[min(b, n - 1)] - contact[merged[-1][0]]) < 20 and a - merged[-1][1] < RATE // 2:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    out = np.zeros(n, dtype=np.float32)  # float32 throughout: the FFTs run 3–4× faster, 1e-7 precision
    for a, b in merged:
        reference = contact[a]
        drive = excitation[a:b] * (lift[a:b] * np.exp(rate * (contact[a:b] - reference))).astype(np.float32)
        dead = int(np.searchsorted(contact, contact[b - 1] + 12.0 / rate, side="right"))
        stop = min(n, b + len(bank) - 1, max(dead, b))
        y = fftconvolve(drive, bank[: stop - a])[: stop - a]
        out[a:stop] += y * np.exp(-rate * (contact[a:stop] - reference)).astype(np.float32)
    return out


def _finish(buses: np.ndarray, instrument: Instrument, n_samples: int) -> np.ndarray:
    """Each register through its path to the microphone, in one spectrum; band-limited resample to the output.

    The spectrum is computed at 32 kHz with a size ``320 m`` and read out with an inverse
    FFT of size ``441 m``: the resample to 44.1 kHz is exact (zero-padding) and costs nothing extra.
    """
    from scipy import fft

    n = buses.shape[1]
    needed = n + instrument.filters.shape[1]
    m = 2 * fft.next_fast_len(-(-needed // (2 * RESAMPLE_DOWN)), real=True)
    size = RESAMPLE_DOWN * m
    spectrum = np.zeros(size // 2 + 1, dtype=np.complex64)
    for bus, path in zip(buses, instrument.filters, strict=True):
        if bus.any():
            spectrum += fft.rfft(bus, size) * fft.rfft(path, size)
    spectrum[-1] = 0.0  # the old Nyquist bin (16 kHz) is no longer one
    out_size = RESAMPLE_UP * m
    wide = np.zeros(out_size // 2 + 1, dtype=np.complex64)
    wide[: len(spectrum)] = spectrum
    audio = fft.irfft(wide, out_size)[:n_samples]
    return (audio * np.float32(MASTER_GAIN * RESAMPLE_UP / RESAMPLE_DOWN)).astype(np.float32)
