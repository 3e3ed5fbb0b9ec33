"""The page's piano sound: a few sampled notes per octave, rendered on first use into a cache folder.

The page plays a transcription with WebAudio: every note is the nearest of
:data:`SAMPLE_KEYS` (one every three semitones, A0 … C8: 30 notes) played at a
``playbackRate`` of at most ±1.5 semitones, with a gain from its velocity. Nothing is
committed or shipped: the first time a page asks for the piano, the samples are
rendered with the best engine this installation has, and kept as 16-bit mono WAV
files (about 4 MB in all) under ``$PIANOMTL_HOME/web-piano/<engine>-v<N>/``:

1. ``grand`` — the project's own piano (:mod:`pianomtl.synthesis.piano`, the Salamander
   grand with its dampers and resonance), when the ``[train]`` extra and the
   Salamander samples of ``python -m pianomtl.synthesis.sources`` are there (≈ 10 s, once);
2. ``fluidsynth`` — a General MIDI SoundFont's acoustic grand through FluidSynth
   (:mod:`pianomtl.synthesis.fluidsynth`), when pyfluidsynth and a SoundFont are installed;
3. ``synth`` — a small additive piano model in numpy (inharmonic partials, per-partial
   decay, a soft hammer): always available, so the lean install plays something too.

Each note is rendered held (no damper, no pedal) for :func:`sample_seconds` (longer in
the bass, where strings ring longer) and faded out over its last 0.3 s; the page ends
a note at its decoded offset with a short release of its own. One velocity (``VELOCITY``)
is rendered; softer and louder notes are the same sample at another gain.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pianomtl.constants import MAX_KEY, MIN_KEY, SAMPLE_RATE
from pianomtl.core.files import atomic_write, pianomtl_home, write_text_atomic

log = logging.getLogger(__name__)

SAMPLE_KEYS: tuple[int, ...] = tuple(range(MIN_KEY, MAX_KEY + 1, 3))
"""The rendered keys: A0 (21), C1, D#1 … C8 (108), every third semitone."""
VELOCITY = 96
"""The one velocity rendered (the page scales the gain for others)."""
RATE = 22050
"""Sample rate of the cached WAV files (the browser resamples; partials above 11 kHz are lost)."""
FADE_SECONDS = 0.3
FORMAT_VERSION = 1
"""Bump when the rendering changes: a new cache folder is made."""
ENGINES = ("grand", "fluidsynth", "synth")
SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)
"""General MIDI SoundFonts looked for by the ``fluidsynth`` engine (Debian's, then other distributions')."""


def sample_seconds(key: int) -> float:
    """Length of a key's sample: 6 s at A0 falling to 2 s at C8 (treble strings die away sooner)."""
    return float(np.interp(key, (MIN_KEY, MAX_KEY), (6.0, 2.0)))


def default_cache() -> Path:
    """``$PIANOMTL_HOME/web-piano`` (default ``~/.cache/pianomtl/web-piano``)."""
    return pianomtl_home() / "web-piano"


@dataclass(frozen=True)
class PianoSamples:
    """The rendered samples on disk: ``folder/<key>.wav`` for each of ``keys``."""

    engine: str
    folder: Path
    keys: tuple[int, ...]
    rate: int

    def path(self, key: int) -> Path:
        return self.folder / f"{key}.wav"

    def manifest(self) -> dict:
        return {"engine": self.engine, "keys": list(self.keys), "rate": self.rate, "velocity": VELOCITY}


# ---------------------------------------------------------------- engines: each renders {key: float32 at RATE}


def _slice_notes(audio: np.ndarray, starts: list[int], rate: int) -> dict[int, np.ndarray]:
    import soxr

    notes = {}
    for key, start in zip(SAMPLE_KEYS, starts, strict=True):
        piece = audio[start : start + int(sample_seconds(key) * rate)]
        notes[key] = soxr.resample(piece, rate, RATE).astype(np.float32) if rate != RATE else piece
    return notes


def _sequence(gap: float) -> tuple[list, list[float], float]:
    """One note per sample key, each held for its length, ``gap`` seconds apart: (notes, onsets, total s)."""
    from pianomtl.core.midi import Note

    notes, onsets, time = [], [], 0.1
    for key in SAMPLE_KEYS:
        length = sample_seconds(key)
        notes.append(Note(key, time, time + length + 0.05, VELOCITY))
        onsets.append(time)
        time += length + gap
    return notes, onsets, time + 0.5


def render_grand() -> dict[int, np.ndarray]:
    """The project's own piano (needs scipy and the Salamander samples; raises otherwise)."""
    from pianomtl.core.midi import Performance
    from pianomtl.synthesis import piano

    bank = piano.require_bank()  # AssetError (one line) when the samples are not fetched
    notes, onsets, total = _sequence(gap=1.5)  # one note's release and damping end before the next
    audio = piano.render(Performance(notes, []), int(total * SAMPLE_RATE), bank=bank)
    return _slice_notes(audio, [round(t * SAMPLE_RATE) for t in onsets], SAMPLE_RATE)


def render_fluidsynth() -> dict[int, np.ndarray]:
    """A General MIDI acoustic grand through FluidSynth (needs pyfluidsynth and a SoundFont)."""
    from pianomtl.core.midi import Performance
    from pianomtl.synthesis.fluidsynth import render

    soundfont = next((Path(p) for p in SOUNDFONTS if Path(p).is_file()), None)
    if soundfont is None:
        raise FileNotFoundError(f"no General MIDI SoundFont found (looked for {', '.join(SOUNDFONTS)})")
    notes, onsets, total = _sequence(gap=1.0)
    audio = render(Performance(notes, []), soundfont, duration=total)
    return _slice_notes(audio, [round(t * SAMPLE_RATE) for t in onsets], SAMPLE_RATE)


def synth_note(key: int, seconds: float, rate: int = RATE) -> np.ndarray:
    """One note of the additive piano model: inharmonic partials of a struck string, two
    slightly detuned unison strings, brighter attack, partial decay faster with height."""
    f0 = 440.0 * 2.0 ** ((key - 69) / 12)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    inharmonicity = 1e-4 * 2.0 ** ((key - 21) / 24)  # B grows towards the treble
    decay = float(np.interp(key, (21, 60, 108), (7.0, 3.0, 0.8)))  # s to -60 dB of the fundamental
    out = np.zeros(n)
    for partial in range(1, 40):
        frequency = partial * f0 * np.sqrt(1.0 + inharmonicity * partial**2)
        if frequency > 0.45 * rate:
            break
        amplitude = partial**-1.1 * np.exp(-(((partial * f0) / 4000.0) ** 2))  # hammer felt: soft top
        t60 = decay / (1.0 + 0.35 * (partial - 1))
        envelope = np.exp(-6.9 * t / t60)
        for detune in (-0.0008, 0.0008):  # two unison strings beat slowly
            out += 0.5 * amplitude * envelope * np.sin(2 * np.pi * frequency * (1 + detune) * t + partial)
    attack = np.minimum(t / 0.002, 1.0)
    thump = 0.15 * np.exp(-t / 0.01) * np.sin(2 * np.pi * min(f0, 200.0) * t)  # the hammer's knock
    return ((out * attack + thump) / max(np.max(np.abs(out)), 1e-9)).astype(np.float32)


def render_synth() -> dict[int, np.ndarray]:
    return {key: synth_note(key, sample_seconds(key)) for key in SAMPLE_KEYS}


RENDERERS: dict[str, Callable[[], dict[int, np.ndarray]]] = {
    "grand": render_grand,
    "fluidsynth": render_fluidsynth,
    "synth": render_synth,
}


# ---------------------------------------------------------------- the cache


def _write(folder: Path, notes: dict[int, np.ndarray]) -> None:
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    peak = max(float(np.max(np.abs(a))) for a in notes.values()) or 1.0  # one gain: keys keep their balance
    fade = int(FADE_SECONDS * RATE)
    for key, audio in notes.items():
        audio = audio * (0.9 / peak)
        tail = min(fade, len(audio))
        audio[len(audio) - tail :] *= np.linspace(1.0, 0.0, tail)
        atomic_write(folder / f"{key}.wav", lambda t, a=audio: sf.write(str(t), a, RATE, subtype="PCM_16"))


class PianoCache:
    """The samples of the first engine that works, rendered once (thread-safe) and then read from disk."""

    def __init__(self, root: str | Path | None = None, engines: tuple[str, ...] = ENGINES) -> None:
        unknown = [e for e in engines if e not in RENDERERS]
        if unknown:
            raise ValueError(f"unknown piano engine(s) {unknown}; choose from {', '.join(ENGINES)}")
        self.root = Path(root) if root is not None else default_cache()
        self.engines = engines
        self.lock = threading.Lock()
        self.samples: PianoSamples | None = None

    def _folder(self, engine: str) -> Path:
        return self.root / f"{engine}-v{FORMAT_VERSION}"

    def _cached(self, engine: str) -> PianoSamples | None:
        folder = self._folder(engine)
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError):
            return None
        samples = PianoSamples(engine, folder, tuple(manifest.get("keys", ())), int(manifest.get("rate", RATE)))
        if samples.keys == SAMPLE_KEYS and all(samples.path(k).is_file() for k in samples.keys):
            return samples
        return None

    def get(self) -> PianoSamples:
        """The samples: from the cache, else rendered now (seconds) by the first engine that works."""
        with self.lock:
            if self.samples is not None:
                return self.samples
            for engine in self.engines:  # a better engine rendered earlier wins over a worse one now
                cached = self._cached(engine)
                if cached is not None:
                    self.samples = cached
                    return cached
            errors = []
            for engine in self.engines:
                try:
                    notes = RENDERERS[engine]()
                except Exception as error:  # a missing extra, SoundFont or asset: try the next engine
                    errors.append(f"{engine}: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
                    log.info("piano samples: engine %s unavailable (%s)", engine, errors[-1])
                    continue
                folder = self._folder(engine)
                _write(folder, notes)
                samples = PianoSamples(engine, folder, SAMPLE_KEYS, RATE)
                write_text_atomic(folder / "manifest.json", json.dumps(samples.manifest()) + "\n")
                self.samples = samples
                return samples
            raise RuntimeError("no piano engine could render the page's samples: " + "; ".join(errors))
