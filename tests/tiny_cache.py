"""A tiny feature cache for training/evaluation tests (train: 2 × 3 s, validation: 1 × 3 s).

The recordings are rendered with FluidSynth (FluidR3) from small performances and
written in MAESTRO's layout (``maestro-v3.0.0.csv`` with ``split, midi_filename,
audio_filename, duration``, FLAC + MIDI files). The cache is then made by
``pianomtl.data.store.prepare`` when ``pianomtl.data.maestro`` (the dataset reader)
exists, else directly with ``store.compute_pair`` and an ``index.json`` in the
store's format. Building is idempotent, so several test modules can share one cache
under pytest's session temporary folder.
"""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import asdict
from pathlib import Path

import numpy as np

from pianomtl.constants import SAMPLE_RATE
from pianomtl.core.midi import Note, PedalEvent, Performance, write_midi

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
SECONDS = 3.0


def performances() -> dict[tuple[str, str], Performance]:
    """``{(split, name): performance}``: chords, single notes, pedal, varied velocities."""
    base = [
        Note(48, 0.10, 0.40, 90),
        Note(60, 0.40, 0.70, 70),
        Note(64, 0.40, 0.70, 60),
        Note(67, 0.70, 0.85, 110),
        Note(72, 1.00, 1.20, 50),
        Note(55, 1.30, 1.50, 100),
        Note(64, 1.60, 1.75, 80),
        Note(76, 2.00, 2.30, 120),
        Note(36, 2.30, 2.60, 95),
    ]
    pedal = [PedalEvent(1.25, 127), PedalEvent(1.90, 0)]

    def shifted(semitones: int, delay: float, velocity_scale: float) -> Performance:
        notes = [
            Note(
                n.key + semitones, n.onset + delay, n.offset + delay, int(np.clip(n.velocity * velocity_scale, 1, 127))
            )
            for n in base
        ]
        return Performance(notes, [PedalEvent(p.time + delay, p.value) for p in pedal])

    return {
        ("train", "train_a"): shifted(0, 0.0, 1.0),
        ("train", "train_b"): shifted(3, 0.15, 0.8),
        ("validation", "validation_a"): shifted(-2, 0.05, 0.9),
    }


def write_dataset(root: Path) -> Path:
    """Render the performances into a MAESTRO-layout folder; returns it."""
    import soundfile as sf

    from pianomtl.synthesis.fluidsynth import render

    dataset = root / "dataset"
    rows = []
    for (split, name), performance in performances().items():
        folder = dataset / split
        folder.mkdir(parents=True, exist_ok=True)
        audio = render(performance, SOUNDFONT, duration=SECONDS)
        audio = (audio * (0.5 / max(float(np.max(np.abs(audio))), 1e-6))).astype(np.float32)
        sf.write(str(folder / f"{name}.flac"), audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        write_midi(folder / f"{name}.midi", performance)
        rows.append(
            {
                "split": split,
                "midi_filename": f"{split}/{name}.midi",
                "audio_filename": f"{split}/{name}.flac",
                "duration": SECONDS,
            }
        )
    with (dataset / "maestro-v3.0.0.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["split", "midi_filename", "audio_filename", "duration"])
        writer.writeheader()
        writer.writerows(rows)
    return dataset


def _prepare_directly(dataset: Path, cache: Path) -> None:
    """The store's format without the dataset reader: compute_pair per row, then index.json."""
    from pianomtl.data import store

    (cache / "arrays").mkdir(parents=True, exist_ok=True)
    entries = []
    with (dataset / "maestro-v3.0.0.csv").open() as handle:
        for row in csv.DictReader(handle):
            audio, midi = dataset / row["audio_filename"], dataset / row["midi_filename"]
            features, labels = store.compute_pair(audio, midi)
            name = Path(row["midi_filename"]).stem
            entry = store.store_pair(cache, name, row["split"], audio, midi, features, labels)
            entries.append(asdict(entry))
    store.write_json_atomic(cache / store.INDEX_NAME, {"version": store.FORMAT_VERSION, "entries": entries})


def build(root: Path) -> Path:
    """The cache folder under ``root`` (built on first use)."""
    cache = root / "cache"
    if (cache / "index.json").exists():
        return cache
    root.mkdir(parents=True, exist_ok=True)
    dataset = write_dataset(root)
    if importlib.util.find_spec("pianomtl.data.maestro") is not None:
        from pianomtl.data.store import prepare

        summary = prepare(dataset, cache, workers=1)
        assert not summary["failed"], summary["failed"]
    else:
        _prepare_directly(dataset, cache)
    return cache


def available() -> str | None:
    """Why the cache cannot be built here (missing SoundFont / FluidSynth), or None."""
    if not SOUNDFONT.is_file():
        return f"{SOUNDFONT} missing (install Debian's fluid-soundfont-gm)"
    from pianomtl.synthesis.fluidsynth import RenderError, _write_float

    try:
        _write_float()
    except RenderError as error:
        return str(error)
    return None
