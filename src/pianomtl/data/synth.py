"""``pianomtl synth``: render a MAESTRO-layout corpus from performance MIDI.

Output (``--out DIR``)::

    DIR/pianomtl_corpus.csv            split, midi_filename, audio_filename, duration, + render settings
    DIR/train/train_00000_maestro-Maestro_5_salamander.flac / .midi
    DIR/validation/…  DIR/test/…

Recipe (defaults; splits are by piece, so no music is shared between them):

- **test**: consecutive 15–30 s excerpts of Maestro_3 and Maestro_10, rendered only
  with the held-out timbre (MuseScore General, bank 0 program 0), no augmentation;
- **validation**: consecutive excerpts of Maestro_9 with the training timbres in turn,
  no augmentation;
- **train**: random 15–30 s excerpts of the other 7 MAESTRO pieces (60 %), POP909
  (10 %) and procedural material (30 %), with MIDI augmentation (transpose ±3 keeping
  keys in 21–108, tempo ×0.85–1.15, velocity curve γ ∈ [0.8, 1.25]) and audio
  augmentation (synthetic room reverb RT60 0.2–1 s or none, gentle EQ tilt, white or
  pink noise at 25–60 dB SNR, peak level), with the training timbres Salamander,
  FluidR3 and TimGM.

``--recipe piano`` makes the project's own piano engine (:mod:`pianomtl.data.piano`:
dampers, pedal physics, sympathetic strings) the main training timbre, "grand", half
of the items, each item a different instrument (a :class:`~pianomtl.data.piano.PianoVariant`
drawn from the item's seed and recorded as JSON in the CSV's ``instrument`` column);
the Salamander SoundFont, FluidR3, TimGM, sf_GMbank and TiMidity's freepats share the
rest. MuseScore's grand stays out of training: it is the test timbre.

The ground-truth ``.midi`` is exactly what was rendered: augmented, velocity clamped
to what the timbre can sound, times rounded to the MIDI file's 1/960 s tick.

Every item is planned from ``numpy.random.default_rng((seed, split, index))``, so a
seed gives the same corpus on any machine and with any number of workers. Each
item's files are written atomically; rerunning the command renders only what is
missing, and the CSV is rewritten (atomically) from the files that exist.
"""

from __future__ import annotations

import argparse
import csv
import functools
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from pianomtl.constants import MAX_KEY, MIN_KEY, PEDAL_CC, SAMPLE_RATE
from pianomtl.core.files import atomic_write
from pianomtl.core.midi import Performance, write_midi
from pianomtl.data import material
from pianomtl.data.assets import AssetError

CSV_NAME = "pianomtl_corpus.csv"
SPLITS = ("train", "validation", "test")
SPLIT_CODE = {"train": 0, "validation": 1, "test": 2}
RENDER_TAIL_S = 1.0
"""Audio rendered after the last note offset / pedal lift."""
FLUID_BLOCK = 64
"""FluidSynth's internal block size (samples)."""


@dataclass(frozen=True)
class Timbre:
    name: str
    path: str  # a SoundFont, "salamander" (built at set-up) or, for TiMidity, its .cfg
    bank: int = 0
    program: int = 0
    min_velocity: int = 1  # lowest velocity that still sounds
    gain: float = 0.5
    engine: str = "fluidsynth"  # or "timidity" (its own envelopes), or "piano" (pianomtl.data.piano)
    package: str = ""  # the Debian package(s) that install it (named in the missing-file error)

    def soundfont(self) -> Path:
        if self.engine == "piano":  # the Salamander samples: the built SF2 and the release samples
            from pianomtl.data.assets import require_salamander_release, require_salamander_sf2

            require_salamander_release()
            return require_salamander_sf2()
        if self.path == "salamander":
            from pianomtl.data.assets import require_salamander_sf2

            return require_salamander_sf2()
        path = Path(self.path)
        missing_engine = self.engine == "timidity" and shutil.which("timidity") is None
        if not path.is_file() or missing_engine:
            what = "timidity" if missing_engine else f"{self.name} SoundFont at {path}"
            raise AssetError(f"{what} not found; install the Debian package(s) '{self.package}'")
        return path


TIMBRES: dict[str, Timbre] = {
    "salamander": Timbre("salamander", "salamander"),
    # the project's own piano from the Salamander samples; every item plays its own PianoVariant
    "grand": Timbre("grand", "salamander", engine="piano"),
    # min_velocity: C4's first 200 ms at -75 dBFS or louder (gain 0.5); below it a note is inaudible once the
    # item is normalised and noise is added. Measured: FluidR3/TimGM -112 dB at velocity 1, -72 dB at 10;
    # MuseScore silent at 1–2, -79 dB at 3; Salamander -69 dB at 1.
    "fluidr3": Timbre("fluidr3", "/usr/share/sounds/sf2/FluidR3_GM.sf2", min_velocity=8, package="fluid-soundfont-gm"),
    "timgm": Timbre("timgm", "/usr/share/sounds/sf2/TimGM6mb.sf2", min_velocity=8, package="timgm6mb-soundfont"),
    "musescore": Timbre(
        "musescore",
        "/usr/share/sounds/sf3/MuseScore_General.sf3",
        min_velocity=4,
        package="musescore-general-soundfont",
    ),
    # Two more training timbres (opt-in: --timbres). sf_GMbank follows FluidR3's velocity curve 3 dB louder
    # (C4, RMS of the first 200 ms); freepats through TiMidity spans 64 dB from velocity 1 to 127, and
    # velocity 4 sits 50 dB under 127, where FluidR3's velocity 8 sits 48 dB under.
    "gmbank": Timbre("gmbank", "/usr/share/sounds/sf2/sf_GMbank.sf2", min_velocity=8, package="csound-soundfont"),
    "freepats": Timbre(
        "freepats", "/etc/timidity/freepats.cfg", min_velocity=4, engine="timidity", package="timidity freepats"
    ),
}


@dataclass
class Config:
    seed: int = 0
    train_hours: float = 3.0
    valid_minutes: float = 12.0
    test_minutes: float = 12.0
    train_timbres: tuple[str, ...] = ("salamander", "fluidr3", "timgm")
    train_timbre_weights: tuple[float, ...] | None = None  # default: grand (else Salamander) 0.5, others share 0.5
    test_timbres: tuple[str, ...] = ("musescore",)
    sources: tuple[str, ...] = ("maestro", "pop909", "procedural")
    source_weights: dict[str, float] = field(default_factory=lambda: {"maestro": 0.6, "pop909": 0.1, "procedural": 0.3})
    test_pieces: tuple[str, ...] = ("Maestro_3", "Maestro_10")
    valid_pieces: tuple[str, ...] = ("Maestro_9",)
    min_length: float = 15.0
    max_length: float = 30.0


@dataclass
class Item:
    """One planned recording: what to render and how; the corpus CSV row comes from it."""

    split: str
    index: int
    source: str
    timbre: str
    seed: int
    start: float = 0.0
    transpose: int = 0
    stretch: float = 1.0
    gamma: float = 1.0
    reverb_rt60: float = 0.0  # 0: no reverb
    drr_db: float = 0.0
    eq_tilt_db: float = 0.0
    noise: str = "none"  # none, white, pink
    snr_db: float = 0.0
    peak_db: float = -3.0
    instrument: str = ""  # the piano engine's PianoVariant as JSON (other engines: empty)
    duration: float = 0.0
    performance: Performance = field(default_factory=Performance, repr=False)

    @property
    def name(self) -> str:
        source = self.source.replace("/", "-")
        return f"{self.split}/{self.split}_{self.index:05d}_{source}_{self.timbre}"

    @property
    def audio_filename(self) -> str:
        return self.name + ".flac"

    @property
    def midi_filename(self) -> str:
        return self.name + ".midi"

    def row(self) -> dict[str, object]:
        row: dict[str, object] = {
            "split": self.split,
            "midi_filename": self.midi_filename,
            "audio_filename": self.audio_filename,
            "duration": f"{self.duration:.6f}",
        }
        for f in fields(self):
            if f.name not in ("split", "duration", "performance", "index"):
                value = getattr(self, f.name)
                row[f.name] = f"{value:.4f}" if isinstance(value, float) else value
        row["notes"] = len(self.performance.notes)
        return row


CSV_COLUMNS = [
    "split", "midi_filename", "audio_filename", "duration", "source", "timbre", "seed", "start", "transpose",
    "stretch", "gamma", "reverb_rt60", "drr_db", "eq_tilt_db", "noise", "snr_db", "peak_db", "notes", "instrument",
]  # fmt: skip


# ---------------------------------------------------------------- planning


def _item_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLIT_CODE[split], index])


def _finish(item: Item, performance: Performance, augment: bool, rng: np.random.Generator) -> Item:
    """Apply MIDI augmentation (train), velocity clamp and quantisation; fix the duration."""
    if augment:
        low, high = material.transpose_range(performance, 3)
        item.transpose = int(rng.integers(low, high + 1)) if high >= low else 0
        performance = material.transpose(performance, item.transpose)
        performance = material.stretch(performance, item.stretch)
        item.gamma = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
        performance = material.velocity_curve(performance, item.gamma)
    performance = material.clamp_velocity(performance, TIMBRES[item.timbre].min_velocity)
    item.performance = material.quantize(performance)
    if TIMBRES[item.timbre].engine == "piano":  # its own stream: the item's other draws stay as they were
        from pianomtl.data.piano import PianoVariant

        variant_rng = np.random.default_rng([item.seed, SPLIT_CODE[item.split], item.index, 2])
        item.instrument = PianoVariant.draw(variant_rng).to_json()
    n_samples = round((item.performance.end_time + RENDER_TAIL_S) * SAMPLE_RATE)
    item.duration = n_samples / SAMPLE_RATE
    return item


def _audio_settings(item: Item, rng: np.random.Generator) -> None:
    if rng.random() < 0.65:
        item.reverb_rt60 = float(rng.uniform(0.2, 1.0))
        item.drr_db = float(rng.uniform(-2.0, 12.0))
    if rng.random() < 0.7:
        item.eq_tilt_db = float(rng.uniform(-5.0, 5.0))
    if rng.random() < 0.85:
        item.noise = str(rng.choice(["white", "pink"]))
        item.snr_db = float(rng.uniform(25.0, 60.0))
    item.peak_db = float(rng.uniform(-14.0, -1.0))


MAIN_TIMBRES = ("grand", "salamander")
"""The first of these among the training timbres gets half the items by default; the others share the rest."""

RECIPES: dict[str, tuple[tuple[str, ...], tuple[float, ...] | None]] = {
    "soundfonts": (Config().train_timbres, None),
    "piano": (("grand", "salamander", "fluidr3", "timgm", "gmbank", "freepats"), (0.5, 0.1, 0.1, 0.1, 0.1, 0.1)),
}
"""``--recipe``: training timbres and their weights. "piano": the project's piano engine as the main source."""


def _train_weights(config: Config) -> np.ndarray:
    timbres = config.train_timbres
    if config.train_timbre_weights is not None:
        weights = np.asarray(config.train_timbre_weights, dtype=float)
        if len(weights) != len(timbres) or not np.all(weights >= 0) or weights.sum() <= 0:
            raise ValueError(f"timbre weights {config.train_timbre_weights} do not fit the timbres {timbres}")
        return weights / weights.sum()
    main = next((t for t in MAIN_TIMBRES if t in timbres), None)
    if main is None or len(timbres) == 1:
        return np.full(len(timbres), 1.0 / len(timbres))
    return np.array([0.5 if t == main else 0.5 / (len(timbres) - 1) for t in timbres])


def _consecutive_items(
    split: str, config: Config, sources: dict[str, Performance], pieces: Iterable[str], budget: float, timbres
) -> list[Item]:
    """Back-to-back excerpts of each piece until its share of ``budget`` seconds is used."""
    items: list[Item] = []
    pieces = list(pieces)
    index = 0
    remaining = budget
    for number, piece in enumerate(pieces):
        performance = sources[piece]
        share = remaining / (len(pieces) - number)  # a short piece leaves its unused share to the next
        used = 0.0
        start = performance.notes[0].onset
        while used < share and start < performance.end_time - 2.0:
            rng = _item_rng(config.seed, split, index)
            length = float(rng.uniform(config.min_length, config.max_length))
            piece_excerpt = material.excerpt(performance, round(start, 3), length)
            timbre = timbres[index % len(timbres)]
            item = Item(split, index, f"maestro/{piece}", timbre, config.seed, start=round(start, 3))
            item = _finish(item, piece_excerpt, False, rng)
            start += length
            index += 1
            if not item.performance.notes:
                continue
            items.append(item)
            used += item.duration
        remaining -= used
    return items


def _procedural_items(split: str, config: Config, budget: float, timbres, augment: bool) -> list[Item]:
    items: list[Item] = []
    used = 0.0
    index = 0
    while used < budget:
        rng = _item_rng(config.seed, split, index)
        length = float(rng.uniform(config.min_length, config.max_length))
        timbre = timbres[index % len(timbres)]
        item = Item(split, index, "procedural", timbre, config.seed)
        item = _finish(item, material.procedural(rng, length), augment, rng)
        if augment:
            _audio_settings(item, rng)
        items.append(item)
        used += item.duration
        index += 1
    return items


def load_sources(config: Config) -> dict[str, Performance]:
    """The MIDI sources the config needs (none when it uses only procedural material)."""
    if not ({"maestro", "pop909"} & set(config.sources)):
        return {}
    return material.load_midi_sources()


def plan(config: Config, sources: dict[str, Performance] | None = None) -> list[Item]:
    """Every item of the corpus, deterministically from the config (cheap: no audio)."""
    if sources is None:
        sources = load_sources(config)
    for timbre in (*config.train_timbres, *config.test_timbres):
        if timbre not in TIMBRES:
            raise ValueError(f"unknown timbre {timbre!r}; choose from {', '.join(TIMBRES)}")
    items: list[Item] = []
    if "maestro" in config.sources:
        items += _consecutive_items(
            "test", config, sources, config.test_pieces, config.test_minutes * 60, config.test_timbres
        )
        items += _consecutive_items(
            "validation", config, sources, config.valid_pieces, config.valid_minutes * 60, config.train_timbres
        )
    else:
        items += _procedural_items("test", config, config.test_minutes * 60, config.test_timbres, False)
        items += _procedural_items("validation", config, config.valid_minutes * 60, config.train_timbres, False)

    held_out = set(config.test_pieces) | set(config.valid_pieces)
    maestro = [name for name in sources if name.startswith("Maestro_") and name not in held_out]
    pop909 = [name for name in sources if name.startswith("POP909_")]
    kinds = [k for k in ("maestro", "pop909", "procedural") if k in config.sources]
    kinds = [k for k in kinds if k == "procedural" or (maestro if k == "maestro" else pop909)]
    if not kinds:
        raise ValueError("no training material: the sources given hold no training pieces")
    kind_weights = np.array([config.source_weights.get(k, 0.0) for k in kinds])
    kind_weights = kind_weights / kind_weights.sum()
    timbre_weights = _train_weights(config)
    budget = config.train_hours * 3600
    used = 0.0
    index = 0
    while used < budget:
        rng = _item_rng(config.seed, "train", index)
        kind = kinds[int(rng.choice(len(kinds), p=kind_weights))]
        timbre = config.train_timbres[int(rng.choice(len(config.train_timbres), p=timbre_weights))]
        stretch_factor = float(rng.uniform(0.85, 1.15))
        length = float(rng.uniform(config.min_length, config.max_length))
        if kind == "procedural":
            item = Item("train", index, "procedural", timbre, config.seed, stretch=stretch_factor)
            performance = material.procedural(rng, length / stretch_factor)
        else:
            names = maestro if kind == "maestro" else pop909
            lengths = np.array([sources[n].end_time for n in names])
            piece = names[int(rng.choice(len(names), p=lengths / lengths.sum()))]
            start, performance = material.random_excerpt(sources[piece], rng, length / stretch_factor)
            item = Item("train", index, f"{kind}/{piece}", timbre, config.seed, start=start, stretch=stretch_factor)
        item = _finish(item, performance, True, rng)
        _audio_settings(item, rng)
        items.append(item)
        used += item.duration
        index += 1
    return items


# ---------------------------------------------------------------- rendering


@functools.cache
def _synth(timbre_name: str):  # type: ignore[no-untyped-def]
    """A FluidSynth instance with the timbre's SoundFont loaded, one per process and timbre."""
    from pianomtl.data.render import load_synth

    timbre = TIMBRES[timbre_name]
    synth, font_id = load_synth(timbre.soundfont(), SAMPLE_RATE, timbre.gain)
    _settle(synth, font_id, timbre, warm_up=True)
    return synth, font_id


def _settle(synth, font_id: int, timbre: Timbre, warm_up: bool = False) -> None:  # type: ignore[no-untyped-def]
    """Bring the synth to the same state before every item, so renders are reproducible.

    FluidSynth's first use of a sample differs slightly from later ones, and
    ``system_reset`` leaves sounding voices alone: so play and discard every key at every
    velocity once after loading, silence all voices after each reset, and render (discard) a little
    silence so the freed voices leave the mixer.
    """
    from pianomtl.data.render import _write_float

    _, write_float = _write_float()
    scratch = np.zeros(8 * FLUID_BLOCK, dtype=np.float32)

    def reset() -> None:
        synth.system_reset()  # controllers and programs; it leaves sounding voices alone
        synth.program_select(0, font_id, timbre.bank, timbre.program)
        synth.cc(0, PEDAL_CC, 0)
        synth.all_sounds_off(0)  # silences at once (before system_reset it would be undone)
        write_float(synth.synth, len(scratch), scratch.ctypes.data, 0, 1, scratch.ctypes.data, 0, 1)

    reset()
    if warm_up:  # every sample of every key and velocity zone once
        for velocity in range(1, 128):
            for key in range(MIN_KEY, MAX_KEY + 1):
                synth.noteon(0, key, velocity)
            write_float(synth.synth, FLUID_BLOCK, scratch.ctypes.data, 0, 1, scratch.ctypes.data, 0, 1)
            synth.all_sounds_off(0)
        reset()


def render_performance(performance: Performance, timbre_name: str, n_samples: int, instrument: str = "") -> np.ndarray:
    """Render with the process's preloaded synth (the events of :func:`render.synth_events`).

    ``instrument``: for the piano engine, the item's :class:`~pianomtl.data.piano.PianoVariant`
    as JSON (empty: the grand as sampled).
    """
    from pianomtl.data.render import play, synth_events

    if TIMBRES[timbre_name].engine == "piano":
        from pianomtl.data import piano

        variant = piano.PianoVariant.from_json(instrument) if instrument else piano.PianoVariant()
        return piano.render(performance, n_samples, variant)
    if TIMBRES[timbre_name].engine == "timidity":
        return render_timidity(performance, TIMBRES[timbre_name], n_samples)
    synth, font_id = _synth(timbre_name)
    # FluidSynth applies events at its internal 64-sample block boundaries and keeps its block phase
    # across calls: render whole blocks so that every item starts in the same phase (reproducible).
    whole_blocks = -(-n_samples // FLUID_BLOCK) * FLUID_BLOCK
    audio = play(synth, synth_events(performance), whole_blocks, SAMPLE_RATE)
    _settle(synth, font_id, TIMBRES[timbre_name])
    return audio[:n_samples]


TIMIDITY_AMPLIFY = 25
"""TiMidity's volume in percent: low, so that loud pedalled chords do not clip (24-bit output keeps the soft)."""


def render_timidity(performance: Performance, timbre: Timbre, n_samples: int) -> np.ndarray:
    """Mono float32 audio of ``performance`` rendered by the TiMidity++ command line.

    Effects off (the corpus adds its own room), no polyphony reduction, 24-bit output, and
    ``--preserve-silence``: by default TiMidity drops the silence before the first note, which
    would shift every onset by the first note's time. Sound starts 0.5 ms after each note-on
    (measured); the audio is cut or padded to ``n_samples``. CC64 = 64 is sent as 63: TiMidity
    holds notes from 64 on (measured), the labels from 65.
    """
    import soundfile

    from pianomtl.data.render import RenderError, synth_pedal_value

    pedal = [event._replace(value=synth_pedal_value(event.value)) for event in performance.pedal]
    with tempfile.TemporaryDirectory(prefix="pianomtl-timidity-") as folder:
        midi_path, wav_path = Path(folder) / "in.mid", Path(folder) / "out.wav"
        write_midi(midi_path, Performance(performance.notes, pedal), program=timbre.program)
        command = [
            "timidity", "-c", str(timbre.soundfont()), "-s", str(SAMPLE_RATE), "-OwM2s", "-o", str(wav_path),
            f"-A{TIMIDITY_AMPLIFY}", "-p", "256", "--no-polyphony-reduction", "--preserve-silence",
            "-EFreverb=d", "-EFchorus=d", str(midi_path),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0 or not wav_path.is_file():
            raise RenderError(f"timidity failed on {timbre.name}: {result.stderr.strip()[-200:]}")
        audio, _ = soundfile.read(wav_path, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    return np.pad(audio[:n_samples], (0, max(0, n_samples - len(audio))))


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


def augment_audio(item: Item, dry: np.ndarray) -> np.ndarray:
    from scipy.signal import fftconvolve

    rng = np.random.default_rng([item.seed, SPLIT_CODE[item.split], item.index, 1])
    x = dry.astype(np.float64)
    if item.reverb_rt60 > 0:
        x = fftconvolve(x, room_impulse_response(rng, item.reverb_rt60, item.drr_db))[: len(x)]
    x = tilt_eq(x, item.eq_tilt_db)
    if item.noise != "none":
        active = x[np.abs(x) > 1e-4]
        power = float(np.mean(active**2)) if len(active) else 1e-8
        x = x + coloured_noise(rng, len(x), item.noise) * np.sqrt(power * 10 ** (-item.snr_db / 10))
    peak = float(np.max(np.abs(x)))
    if peak > 0:
        x *= 10 ** (item.peak_db / 20) / peak
    return x.astype(np.float32)


def render_item(item: Item, out: Path) -> tuple[str, float, float]:
    """Render one item's audio and MIDI into ``out`` (atomically); returns (name, audio s, wall s)."""
    began = time.perf_counter()
    audio_path = out / item.audio_filename
    midi_path = out / item.midi_filename
    audio_path.parent.mkdir(parents=True, exist_ok=True)
    n_samples = round(item.duration * SAMPLE_RATE)
    dry = render_performance(item.performance, item.timbre, n_samples, item.instrument)
    wet = augment_audio(item, dry)
    from pianomtl.core.audio import write_flac

    write_midi(midi_path, item.performance)
    write_flac(audio_path, wet, SAMPLE_RATE)  # written last: its presence marks the item complete
    return item.name, item.duration, time.perf_counter() - began


def _render_in_worker(args: tuple[Item, str]) -> tuple[str, float, float]:
    item, out = args
    return render_item(item, Path(out))


def is_complete(item: Item, out: Path) -> bool:
    return (out / item.audio_filename).is_file() and (out / item.midi_filename).is_file()


def write_csv(items: list[Item], out: Path) -> int:
    """Rewrite the corpus CSV (atomically) listing the items whose files exist; returns the count."""
    rows = [item.row() for item in items if is_complete(item, out)]

    def write(target: Path) -> None:
        with open(target, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(out / CSV_NAME, write)
    return len(rows)


def synthesize(out: str | Path, config: Config, workers: int = 2, progress: bool = True) -> dict[str, float]:
    """Plan and render the corpus into ``out``, skipping complete items; returns a summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    items = plan(config)
    todo = [item for item in items if not is_complete(item, out)]
    for timbre in {item.timbre for item in todo}:
        TIMBRES[timbre].soundfont()  # fail early, with the one-line message, if one is missing
    began = time.perf_counter()
    audio_seconds = 0.0
    from tqdm import tqdm

    bar = tqdm(total=len(todo), unit="item", disable=not progress, desc="synth", dynamic_ncols=True)
    last_csv = time.monotonic()
    try:
        if workers <= 1:
            results: Iterable[tuple[str, float, float]] = (render_item(item, out) for item in todo)
            pool = None
        else:
            import multiprocessing

            pool = multiprocessing.get_context("spawn").Pool(workers)
            # longest first, so the last worker does not finish alone on a long item
            order = sorted(todo, key=lambda i: (i.timbre != "musescore", -i.duration))
            results = pool.imap_unordered(_render_in_worker, [(item, str(out)) for item in order], chunksize=1)
        for _, seconds, _ in results:
            audio_seconds += seconds
            bar.update(1)
            bar.set_postfix(speed=f"{audio_seconds / (time.perf_counter() - began):.0f}x")
            if time.monotonic() - last_csv > 60:
                write_csv(items, out)
                last_csv = time.monotonic()
        if pool is not None:
            pool.close()
            pool.join()
    finally:
        bar.close()
        complete = write_csv(items, out)
    wall = time.perf_counter() - began
    return {
        "items": len(items),
        "complete": complete,
        "rendered": len(todo),
        "audio_seconds": audio_seconds,
        "wall_seconds": wall,
        "speed": audio_seconds / wall if wall > 0 else 0.0,
        "hours": {split: sum(i.duration for i in items if i.split == split) / 3600 for split in SPLITS},
    }


# ---------------------------------------------------------------- command line


def _timbre_list(text: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in names if t not in TIMBRES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown timbre(s) {unknown}; choose from {', '.join(TIMBRES)}")
    return names


def _weight_list(text: str) -> tuple[float, ...]:
    try:
        weights = tuple(float(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"timbre weights must be comma-separated numbers, not {text!r}") from None
    if not weights or min(weights) < 0 or sum(weights) <= 0:
        raise argparse.ArgumentTypeError(f"timbre weights must be >= 0 with a positive sum, not {text!r}")
    return weights


def _source_list(text: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in names if t not in ("maestro", "pop909", "procedural")]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown source(s) {unknown}; choose from maestro, pop909, procedural")
    return names


def configure(parser: argparse.ArgumentParser) -> None:
    defaults = Config()
    parser.add_argument("--out", required=True, help="output folder (MAESTRO layout)")
    parser.add_argument("--hours", type=float, default=defaults.train_hours, help="hours of training audio (3)")
    parser.add_argument("--valid-minutes", type=float, default=defaults.valid_minutes, help="validation minutes (12)")
    parser.add_argument("--test-minutes", type=float, default=defaults.test_minutes, help="test minutes (12)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--recipe", choices=sorted(RECIPES), default="soundfonts",
        help="training timbres and weights: soundfonts (salamander,fluidr3,timgm; default) or piano "
        f"({','.join(RECIPES['piano'][0])}, the own piano engine on half the items)",
    )  # fmt: skip
    parser.add_argument(
        "--timbres", type=_timbre_list, default=None,
        help=f"training/validation timbres, comma-separated, from {', '.join(TIMBRES)} "
        f"(default: the recipe's, {','.join(defaults.train_timbres)})",
    )  # fmt: skip
    parser.add_argument(
        "--timbre-weights", type=_weight_list, default=None,
        help="their shares, comma-separated in the order of --timbres (default: grand, else salamander, "
        "gets half, the others share the rest)",
    )  # fmt: skip
    parser.add_argument(
        "--test-timbres", type=_timbre_list, default=defaults.test_timbres,
        help=f"held-out test timbres (default {','.join(defaults.test_timbres)})",
    )  # fmt: skip
    parser.add_argument(
        "--sources", type=_source_list, default=defaults.sources,
        help="material: maestro,pop909,procedural (without maestro, validation/test are procedural too)",
    )  # fmt: skip
    parser.add_argument("--test-pieces", default=",".join(defaults.test_pieces), help="pieces held out for test")
    parser.add_argument("--valid-pieces", default=",".join(defaults.valid_pieces), help="pieces for validation")
    parser.add_argument("--workers", type=int, default=2, help="parallel processes (2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    timbres, weights = RECIPES[args.recipe]
    if args.timbres is not None:
        timbres, weights = args.timbres, None
    if args.timbre_weights is not None:
        weights = args.timbre_weights
    config = Config(
        seed=args.seed,
        train_hours=args.hours,
        valid_minutes=args.valid_minutes,
        test_minutes=args.test_minutes,
        train_timbres=timbres,
        train_timbre_weights=weights,
        test_timbres=args.test_timbres,
        sources=args.sources,
        test_pieces=tuple(p for p in args.test_pieces.split(",") if p),
        valid_pieces=tuple(p for p in args.valid_pieces.split(",") if p),
    )
    try:
        summary = synthesize(args.out, config, workers=args.workers, progress=not args.no_progress)
    except (AssetError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    hours = ", ".join(f"{split} {h:.2f} h" for split, h in summary["hours"].items())
    print(
        f"{summary['complete']}/{summary['items']} items in {args.out} ({hours}); rendered {summary['rendered']} "
        f"({summary['audio_seconds'] / 3600:.2f} h of audio) in {summary['wall_seconds']:.0f} s, "
        f"{summary['speed']:.0f}x real time"
    )
    return 0 if summary["complete"] == summary["items"] else 1
