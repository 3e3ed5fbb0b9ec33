"""Build a mono SoundFont (SF2) of the Salamander Grand Piano V3 from its npm OGGs.

Why a SoundFont rather than an own sampler: FluidSynth then does pitch shifting,
velocity layers, note-off/pedal handling and mixing, in C, exactly as for the
other (Debian) pianos, so every timbre goes through one renderer.

What the build does to the 30 notes (A0 … C8, every 3 semitones) × 16 layers:

- downmix to mono, resample 48 → 32 kHz (the features stop at 10 kHz);
- trim the silent lead-in (6–23 ms in the originals) so the attack starts within a
  couple of milliseconds of note-on, and the inaudible tail (below −70 dB re peak);
- **measure each sample's pitch** (strongest of the first partials, searched ±1.6
  semitones around the labelled pitch). A sample more than 50 cents off its label
  is retuned to what it really sounds (the one labelled C8 sounds C♯8, ~4433 Hz);
  one whose pitch cannot be measured is dropped;
- map each key 21–108 to the sample nearest in (measured) pitch; FluidSynth
  shifts it;
- velocity layer *i* of 16 covers MIDI velocities ⌈127(i−1)/16⌉+1 … ⌊127 i/16⌋, with
  a small extra velocity→attenuation (the SF2 default of 96 dB is replaced by
  :data:`VELOCITY_ATTENUATION_CB`) so velocities inside a layer differ too, and the
  default velocity→filter modulator switched off (the layers carry the timbre);
- damper release: a 0.25 s fade after note-off (or after the pedal lifts) for keys
  below 89; the top keys of a grand have no dampers and ring out (3 s release).
"""

from __future__ import annotations

import re
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from pianomtl.constants import MAX_KEY, MIN_KEY
from pianomtl.core.files import atomic_write

SAMPLE_RATE = 32000
LAYERS = 16
DAMPED_RELEASE_S = 0.25
UNDAMPED_RELEASE_S = 3.0
FIRST_UNDAMPED_KEY = 89
VELOCITY_ATTENUATION_CB = 300
RETUNE_THRESHOLD_CENTS = 50.0
LEAD_IN_S = 0.001
TAIL_DB = -70.0

_NOTE = re.compile(r"^([A-G])(#?)(-?\d)v(\d+)\.ogg$")
_PITCH_CLASS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def parse_name(name: str) -> tuple[int, int] | None:
    """``"D#3v12.ogg"`` → (MIDI key 51, layer 12); None for other files."""
    match = _NOTE.match(name)
    if match is None:
        return None
    letter, sharp, octave, layer = match.groups()
    return 12 * (int(octave) + 1) + _PITCH_CLASS[letter] + (1 if sharp else 0), int(layer)


def velocity_range(layer: int, layers: int = LAYERS) -> tuple[int, int]:
    """MIDI velocities played by velocity layer ``layer`` (1-based) of ``layers``."""
    low = (127 * (layer - 1)) // layers + 1
    high = (127 * layer) // layers
    return low, high


def measure_pitch(samples: np.ndarray, sample_rate: float, label: int) -> float | None:
    """Sounding pitch (fractional MIDI number) of a piano note labelled ``label``.

    Looks, for partials k = 1 … 4 below 12 kHz, for the spectral peak within ±1.6
    semitones of k·f(label) in a 0.4 s window just after the attack, takes the
    strongest, and converts its deviation to the fundamental. None when no partial
    stands clearly (20 dB) above the spectrum around it.
    """
    start = int(np.argmax(np.abs(samples) > 0.1 * np.max(np.abs(samples)))) + int(0.03 * sample_rate)
    segment = samples[start : start + int(0.4 * sample_rate)]
    if len(segment) < int(0.05 * sample_rate):
        return None
    n_fft = 1 << 18
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment)), n_fft))
    frequencies = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    f0 = 440.0 * 2.0 ** ((label - 69) / 12.0)
    best: tuple[float, float] | None = None  # (magnitude, pitch)
    for k in range(1, 5):
        centre = k * f0
        if centre > 12000:
            break
        inside = (frequencies >= centre * 2 ** (-1.6 / 12)) & (frequencies <= centre * 2 ** (1.6 / 12))
        if not inside.any():
            continue
        index = np.flatnonzero(inside)[np.argmax(spectrum[inside])]
        magnitude = spectrum[index]
        if magnitude < 10.0 * np.median(spectrum[inside]):  # < 20 dB above its surroundings
            continue
        # parabolic interpolation of the peak on log magnitude
        a, b, c = np.log(spectrum[index - 1 : index + 2] + 1e-12)
        offset = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
        frequency = (index + offset) * sample_rate / n_fft / k
        pitch = 69.0 + 12.0 * np.log2(frequency / 440.0)
        if best is None or magnitude > best[0]:
            best = (magnitude, pitch)
    return None if best is None else best[1]


@dataclass
class Sample:
    label: int  # MIDI key the file name says
    layer: int
    pitch: float  # MIDI key it sounds (fractional), as used for mapping
    data: np.ndarray  # int16 mono at SAMPLE_RATE

    @property
    def root(self) -> int:
        return round(self.pitch)

    @property
    def correction_cents(self) -> int:
        return round((self.root - self.pitch) * 100)


def prepare_sample(path: Path, label: int, layer: int) -> tuple[Sample | None, float | None]:
    """Load, measure, trim and convert one OGG. Returns (sample or None if dropped, measured pitch)."""
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    measured = measure_pitch(mono, rate, label)
    if measured is None:
        return None, None
    pitch = float(label) if abs(measured - label) * 100 <= RETUNE_THRESHOLD_CENTS else measured
    mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    magnitude = np.abs(mono)
    peak = float(magnitude.max())
    if peak <= 0:
        return None, measured
    start = max(0, int(np.argmax(magnitude > 0.1 * peak)) - int(LEAD_IN_S * SAMPLE_RATE))
    # lead-in: start just before the attack, short fade-in against a click
    above = np.flatnonzero(magnitude > peak * 10 ** (TAIL_DB / 20))
    stop = int(above[-1]) + 1 if len(above) else len(mono)
    mono = mono[start:stop].copy()
    fade_in = min(len(mono), int(0.0005 * SAMPLE_RATE))
    mono[:fade_in] *= np.linspace(0.0, 1.0, fade_in, endpoint=False)
    fade_out = min(len(mono), int(0.05 * SAMPLE_RATE))
    mono[len(mono) - fade_out :] *= np.linspace(1.0, 0.0, fade_out)
    data = np.clip(np.round(mono * 32767.0), -32768, 32767).astype(np.int16)
    return Sample(label, layer, pitch, data), measured


def _chunk(tag: bytes, payload: bytes) -> bytes:
    if len(payload) % 2:
        payload += b"\0"
    return tag + struct.pack("<I", len(payload)) + payload


def _list(kind: bytes, *chunks: bytes) -> bytes:
    return _chunk(b"LIST", kind + b"".join(chunks))


def _name(text: str) -> bytes:
    return text.encode("ascii")[:19].ljust(20, b"\0")


# SF2 generator numbers
GEN_RELEASE_VOL_ENV = 38
GEN_INSTRUMENT = 41
GEN_KEY_RANGE = 43
GEN_VEL_RANGE = 44
GEN_SAMPLE_ID = 53
GEN_SAMPLE_MODES = 54
GEN_INITIAL_FILTER_FC = 8
GEN_INITIAL_ATTENUATION = 48


def _timecents(seconds: float) -> int:
    return round(1200 * np.log2(seconds))


def write_sf2(path: Path, samples: list[Sample], name: str = "Salamander Grand") -> None:
    """Write one preset (bank 0, program 0) with one instrument zone per (key range, layer)."""
    # sample data: each sample followed by 46 zero points (SF2 requirement)
    pieces: list[bytes] = []
    headers: list[bytes] = []
    position = 0
    for index, sample in enumerate(samples):
        n = len(sample.data)
        headers.append(
            _name(f"s{sample.label}v{sample.layer}_{index}")
            + struct.pack("<IIIII", position, position + n, position, position + n, SAMPLE_RATE)
            + struct.pack("<Bb", sample.root, sample.correction_cents)
            + struct.pack("<HH", 0, 1)
        )
        pieces.append(sample.data.astype("<i2").tobytes() + b"\0" * (46 * 2))
        position += n + 46
    headers.append(_name("EOS") + b"\0" * 26)

    # instrument zones: global zone (modulators), then key×layer zones
    igen: list[bytes] = []
    imod: list[bytes] = []
    ibag: list[bytes] = []

    def gen(operator: int, amount: int | tuple[int, int]) -> bytes:
        if isinstance(amount, tuple):
            return struct.pack("<HBB", operator, amount[0], amount[1])
        return struct.pack("<Hh", operator, amount)

    # global zone: override the default velocity→attenuation (960 cB) and velocity→filter modulators
    ibag.append(struct.pack("<HH", len(igen), len(imod)))
    imod.append(struct.pack("<HHhHH", 0x0502, GEN_INITIAL_ATTENUATION, VELOCITY_ATTENUATION_CB, 0, 0))
    imod.append(struct.pack("<HHhHH", 0x0102, GEN_INITIAL_FILTER_FC, 0, 0x0C02, 0))
    igen.append(gen(GEN_SAMPLE_MODES, 0))
    by_layer: dict[int, list[int]] = {}
    for index, sample in enumerate(samples):
        by_layer.setdefault(sample.layer, []).append(index)
    for layer in sorted(by_layer):
        indices = sorted(by_layer[layer], key=lambda i: samples[i].pitch)
        pitches = np.array([samples[i].pitch for i in indices])
        keys = np.arange(MIN_KEY, MAX_KEY + 1)
        nearest = np.argmin(np.abs(keys[:, None] - pitches[None, :]), axis=1)
        velocities = velocity_range(layer)
        for position_in_layer, sample_index in enumerate(indices):
            mapped = keys[nearest == position_in_layer]
            if len(mapped) == 0:
                continue
            low, high = int(mapped.min()), int(mapped.max())
            # split a zone where the damper boundary falls inside it
            ranges = [(low, high)]
            if low < FIRST_UNDAMPED_KEY <= high:
                ranges = [(low, FIRST_UNDAMPED_KEY - 1), (FIRST_UNDAMPED_KEY, high)]
            for key_low, key_high in ranges:
                release = DAMPED_RELEASE_S if key_high < FIRST_UNDAMPED_KEY else UNDAMPED_RELEASE_S
                ibag.append(struct.pack("<HH", len(igen), len(imod)))
                igen.append(gen(GEN_KEY_RANGE, (key_low, key_high)))
                igen.append(gen(GEN_VEL_RANGE, velocities))
                igen.append(gen(GEN_RELEASE_VOL_ENV, _timecents(release)))
                igen.append(gen(GEN_SAMPLE_ID, sample_index))
    ibag.append(struct.pack("<HH", len(igen), len(imod)))
    igen.append(b"\0" * 4)
    imod.append(b"\0" * 10)
    inst = [_name("Salamander") + struct.pack("<H", 0), _name("EOI") + struct.pack("<H", len(ibag) - 1)]

    pgen = [gen(GEN_INSTRUMENT, 0), b"\0" * 4]
    pbag = [struct.pack("<HH", 0, 0), struct.pack("<HH", 1, 0)]
    pmod = [b"\0" * 10]
    phdr = [
        _name(name) + struct.pack("<HHHIII", 0, 0, 0, 0, 0, 0),
        _name("EOP") + struct.pack("<HHHIII", 0, 0, 1, 0, 0, 0),
    ]
    info = _list(
        b"INFO",
        _chunk(b"ifil", struct.pack("<HH", 2, 1)),
        _chunk(b"isng", b"EMU8000\0"),
        _chunk(b"INAM", name.encode("ascii") + b"\0"),
        _chunk(b"ICMT", b"Salamander Grand Piano V3 by Alexander Holm (CC-BY 3.0), mono build by pianomtl\0"),
    )
    sdta = _list(b"sdta", _chunk(b"smpl", b"".join(pieces)))
    pdta = _list(
        b"pdta",
        _chunk(b"phdr", b"".join(phdr)),
        _chunk(b"pbag", b"".join(pbag)),
        _chunk(b"pmod", b"".join(pmod)),
        _chunk(b"pgen", b"".join(pgen)),
        _chunk(b"inst", b"".join(inst)),
        _chunk(b"ibag", b"".join(ibag)),
        _chunk(b"imod", b"".join(imod)),
        _chunk(b"igen", b"".join(igen)),
        _chunk(b"shdr", b"".join(headers)),
    )
    body = b"sfbk" + info + sdta + pdta
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda target: target.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body))


def build_sf2(ogg_dir: str | Path, output: str | Path, log=None) -> list[str]:  # type: ignore[no-untyped-def]
    """Build the SoundFont from ``ogg_dir/v1 … v16/*.ogg``; returns the tuning report lines."""
    ogg_dir = Path(ogg_dir)
    log = log or (lambda message: print(f"[salamander] {message}", file=sys.stderr, flush=True))
    samples: list[Sample] = []
    report: list[str] = []
    files = sorted(p for p in ogg_dir.glob("v*/*.ogg") if parse_name(p.name) is not None)
    if not files:
        raise FileNotFoundError(f"{ogg_dir}: no Salamander OGG files (v1 … v16/*.ogg)")
    for path in files:
        parsed = parse_name(path.name)
        assert parsed is not None
        label, layer = parsed
        sample, measured = prepare_sample(path, label, layer)
        if sample is None:
            line = f"{path.parent.name}/{path.name}: dropped (pitch not measurable)"
        elif sample.pitch != float(label):
            line = f"{path.parent.name}/{path.name}: labelled {label}, sounds {measured:.2f}: retuned"
        else:
            samples.append(sample)
            continue
        report.append(line)
        log(line)
        if sample is not None:
            samples.append(sample)
    output = Path(output)
    write_sf2(output, samples)
    log(f"{len(samples)} of {len(files)} samples written to {output} ({output.stat().st_size / 1e6:.0f} MB)")
    return report


if __name__ == "__main__":
    build_sf2(sys.argv[1], sys.argv[2])
