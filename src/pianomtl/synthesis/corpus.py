"""Plan and render a MAESTRO-layout corpus from performance MIDI (``pianomtl synth``).

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

``--recipe piano`` makes the project's own piano engine (:mod:`pianomtl.synthesis.piano`:
dampers, pedal physics, sympathetic strings) the main training timbre, "grand", half
of the items, each item a different instrument (a :class:`~pianomtl.synthesis.piano.PianoVariant`
drawn from the item's seed and recorded as JSON in the CSV's ``instrument`` column);
the Salamander SoundFont, FluidR3, TimGM, sf_GMbank and TiMidity's freepats share the
rest. MuseScore's grand stays out of training: it is the test timbre.

The ground-truth ``.midi`` is exactly what was rendered: augmented, velocity clamped
to what the timbre can sound, times rounded to the MIDI file's 1/960 s tick.

Every item is planned from ``numpy.random.default_rng((seed, split, index))``, so a
seed gives the same corpus on any machine and with any number of workers. Each
item's files are written atomically; rerunning the command renders only what is
missing, and the CSV is rewritten (atomically) from the files that exist.

The timbres are in :mod:`pianomtl.synthesis.timbres`, the engines that play them in
:mod:`pianomtl.synthesis.engines`, the room, EQ and noise in :mod:`pianomtl.synthesis.audio_augment`;
this module plans the items and renders them in parallel. The command line is
:mod:`pianomtl.cli.synth`.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from pianomtl.constants import SAMPLE_RATE
from pianomtl.core.files import atomic_write
from pianomtl.core.midi import Performance, write_midi
from pianomtl.synthesis import material
from pianomtl.synthesis.audio_augment import apply_effects, augment_audio, draw_effects
from pianomtl.synthesis.engines import render_performance
from pianomtl.synthesis.timbres import DEFAULT_TEST_TIMBRES, DEFAULT_TRAIN_TIMBRES, MAIN_TIMBRES, TIMBRES

CSV_NAME = "pianomtl_corpus.csv"
SPLITS = ("train", "validation", "test")
SPLIT_CODE = {"train": 0, "validation": 1, "test": 2}
RENDER_TAIL_S = 1.0
"""Audio rendered after the last note offset / pedal lift."""


@dataclass
class Config:
    seed: int = 0
    train_hours: float = 3.0
    valid_minutes: float = 12.0
    test_minutes: float = 12.0
    train_timbres: tuple[str, ...] = DEFAULT_TRAIN_TIMBRES
    train_timbre_weights: tuple[float, ...] | None = None  # default: grand (else Salamander) 0.5, others share 0.5
    test_timbres: tuple[str, ...] = DEFAULT_TEST_TIMBRES
    sources: tuple[str, ...] = ("maestro", "pop909", "procedural")
    source_weights: dict[str, float] = field(default_factory=lambda: {"maestro": 0.6, "pop909": 0.1, "procedural": 0.3})
    test_pieces: tuple[str, ...] = ("Maestro_3", "Maestro_10")
    valid_pieces: tuple[str, ...] = ("Maestro_9",)
    min_length: float = 15.0
    max_length: float = 30.0
    pedal_free_share: float = 0.0  # train items of real performances played without pedal (CC64 removed)
    high_share: float = 0.0  # train items transposed up by up to two octaves (the top keys seen often)
    effects_share: float = 0.0  # train items through the effect chain (EQ bands, compressor, clipper, codec)
    field: bool = False  # the field test instead (plan_field): held-out pianos, pedal-free twins, rooms and codecs


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
    instrument: str = ""  # the piano engine's PianoVariant or the modal engine's ModalPiano as JSON (others: empty)
    pedal_free: int = 0  # 1: the performance's sustain pedal was removed (notes end at key release)
    effects: str = ""  # the effect chain's settings as JSON (audio_augment.draw_effects; empty: none)
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
    "pedal_free", "effects",
]  # fmt: skip


# ---------------------------------------------------------------- planning


def _item_rng(seed: int, split: str, index: int, *stream: int) -> np.random.Generator:
    """The random stream of one item: planning (no ``stream``), audio augmentation (1), instrument (2),
    the v8 recipe's choices (3: pedal-free, high transposition, effect chain), so that a recipe without
    them draws exactly what it drew before they existed."""
    return np.random.default_rng([seed, SPLIT_CODE[split], index, *stream])


def _finish(
    item: Item, performance: Performance, augment: bool, rng: np.random.Generator, config: Config | None = None
) -> Item:
    """Apply MIDI augmentation (train), velocity clamp and quantisation; fix the duration.

    With ``config`` (training items), the v8 choices are drawn from the item's stream 3: the
    pedal removed from a real performance (``pedal_free_share``), a transposition up by as much
    as two octaves (``high_share``: the top keys, rare in real music, are where models miss most)
    and the effect chain (``effects_share``).
    """
    if augment:
        low, high = material.transpose_range(performance, 3)
        item.transpose = int(rng.integers(low, high + 1)) if high >= low else 0
        if config is not None:
            extra = _item_rng(item.seed, item.split, item.index, 3)
            if item.source != "procedural" and extra.random() < config.pedal_free_share:
                item.pedal_free = 1
                performance = Performance(list(performance.notes), [])
            up = material.transpose_range(performance, 24)[1]
            if extra.random() < config.high_share and up > 3:
                item.transpose = int(extra.integers(4, up + 1))
            if extra.random() < config.effects_share:
                item.effects = json.dumps(draw_effects(extra), separators=(",", ":"))
        performance = material.transpose(performance, item.transpose)
        performance = material.stretch(performance, item.stretch)
        item.gamma = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
        performance = material.velocity_curve(performance, item.gamma)
    performance = material.clamp_velocity(performance, TIMBRES[item.timbre].min_velocity)
    item.performance = material.quantize(performance)
    if TIMBRES[item.timbre].engine == "piano":  # its own stream: the item's other draws stay as they were
        from pianomtl.synthesis.piano import PianoVariant

        variant_rng = _item_rng(item.seed, item.split, item.index, 2)
        item.instrument = PianoVariant.draw(variant_rng).to_json()
    elif TIMBRES[item.timbre].engine == "modal":
        from pianomtl.synthesis.modal import ModalPiano

        item.instrument = ModalPiano.draw(_item_rng(item.seed, item.split, item.index, 2)).to_json()
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


FIELD_TIMBRES = ("musescore", "grand", "modal")
"""The field test's pianos: MuseScore's grand (never trained on), and held-out instruments of both own engines
(drawn from the field split's own streams, so no training item plays them)."""
FIELD_PEDAL_FREE_SHARE = 0.2
"""Share of the field test's time given to procedural music, which has no pedal at all."""


def _field_items(split: str, config: Config, sources: dict[str, Performance], pieces: Iterable[str]) -> list[Item]:
    """The field test (or, for ``validation``, its twin): each excerpt of the pieces twice, as played and with
    the pedal removed, each rendition on another of :data:`FIELD_TIMBRES` through its own room, microphone,
    noise and effect chain (always some reverb and noise; a lossy codec on about a third), plus procedural
    pedal-free pieces. Everything is drawn from the split's streams: another seed gives other conditions."""
    budget = (config.test_minutes if split == "test" else config.valid_minutes) * 60
    base = _consecutive_items(split, config, sources, pieces, budget * (1 - FIELD_PEDAL_FREE_SHARE) / 2, ("musescore",))
    items: list[Item] = []
    for rendition in base:
        for pedal_free in (0, 1):
            index = 2 * rendition.index + pedal_free
            rng = _item_rng(config.seed, split, index, 3)
            timbre = FIELD_TIMBRES[(rendition.index + pedal_free) % len(FIELD_TIMBRES)]
            performance = rendition.performance
            if pedal_free:
                performance = Performance(list(performance.notes), [])
            item = Item(split, index, rendition.source, timbre, config.seed, start=rendition.start)
            item.pedal_free = pedal_free
            items.append(_field_conditions(_finish(item, performance, False, rng), rng))
    used = 0.0
    index = 2 * (max((i.index for i in base), default=0) + 1)
    while used < budget * FIELD_PEDAL_FREE_SHARE:
        rng = _item_rng(config.seed, split, index)
        item = Item(split, index, "procedural", FIELD_TIMBRES[index % len(FIELD_TIMBRES)], config.seed)
        item.pedal_free = 1
        piece = material.procedural(rng, float(rng.uniform(config.min_length, config.max_length)))
        item = _field_conditions(_finish(item, Performance(list(piece.notes), []), False, rng), rng)
        items.append(item)
        used += item.duration
        index += 1
    return items


def _field_conditions(item: Item, rng: np.random.Generator) -> Item:
    """A room, a microphone's noise and an effect chain for a field-test item (always reverb and noise)."""
    item.reverb_rt60 = float(rng.uniform(0.3, 1.2))
    item.drr_db = float(rng.uniform(-3.0, 10.0))
    item.eq_tilt_db = float(rng.uniform(-4.0, 4.0))
    item.noise = str(rng.choice(["white", "pink"]))
    item.snr_db = float(rng.uniform(20.0, 45.0))
    item.peak_db = float(rng.uniform(-12.0, -1.0))
    item.effects = json.dumps(draw_effects(rng), separators=(",", ":"))
    return item


def plan_field(config: Config, sources: dict[str, Performance]) -> list[Item]:
    """The field test (``--recipe field``): the test pieces as ``test``, the validation pieces as ``validation``."""
    return _field_items("test", config, sources, config.test_pieces) + _field_items(
        "validation", config, sources, config.valid_pieces
    )


def plan(config: Config, sources: dict[str, Performance] | None = None) -> list[Item]:
    """Every item of the corpus, deterministically from the config (cheap: no audio)."""
    if sources is None:
        sources = load_sources(config)
    if config.field:
        return plan_field(config, sources)
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
        item = _finish(item, performance, True, rng, config)
        _audio_settings(item, rng)
        items.append(item)
        used += item.duration
        index += 1
    return items


# ---------------------------------------------------------------- rendering


def render_item(item: Item, out: Path) -> tuple[str, float, float]:
    """Render one item's audio and MIDI into ``out`` (atomically); returns (name, audio s, wall s)."""
    began = time.perf_counter()
    audio_path = out / item.audio_filename
    midi_path = out / item.midi_filename
    audio_path.parent.mkdir(parents=True, exist_ok=True)
    n_samples = round(item.duration * SAMPLE_RATE)
    dry = render_performance(item.performance, item.timbre, n_samples, item.instrument)
    wet = augment_audio(
        dry,
        _item_rng(item.seed, item.split, item.index, 1),
        reverb_rt60=item.reverb_rt60,
        drr_db=item.drr_db,
        eq_tilt_db=item.eq_tilt_db,
        noise=item.noise,
        snr_db=item.snr_db,
        peak_db=item.peak_db,
    )
    if item.effects:
        wet = apply_effects(wet, json.loads(item.effects))
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
