"""The dataset reader: real MAESTRO layouts (v1–v3 CSV/JSON) and our own corpus CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from pianomtl.constants import SAMPLE_RATE
from pianomtl.core.audio import load, write_flac
from pianomtl.core.midi import Note, PedalEvent, Performance, read_midi, write_midi
from pianomtl.data.maestro import DatasetError, Record, read_dataset
from pianomtl.synthesis import corpus, engines, timbres

FLUID_R3 = Path(timbres.TIMBRES["fluidr3"].path)

ROWS = [
    # (split, year folder, stem)
    ("train", "2004", "MIDI-Unprocessed_XP_01_R1_2004_01-02_ORIG_MID--AUDIO_01_R1_2004_01_Track01_wav"),
    ("validation", "2006", "MIDI-Unprocessed_02_R1_2006_01-04_ORIG_MID--AUDIO_02_R1_2006_01_Track01_wav"),
    ("test", "2008", "MIDI-Unprocessed_03_R1_2008_01-04_ORIG_MID--AUDIO_03_R1_2008_01_Track01_wav"),
]


@pytest.fixture(scope="module")
def fake_maestro(tmp_path_factory) -> Path:
    """A MAESTRO-like folder: year sub-folders with .midi + audio, rendered by FluidSynth."""
    if not FLUID_R3.is_file():
        pytest.skip("Debian package fluid-soundfont-gm not installed")
    root = tmp_path_factory.mktemp("maestro")
    for number, (_, year, stem) in enumerate(ROWS):
        (root / year).mkdir(exist_ok=True)
        performance = Performance(
            [Note(60 + number, 0.1, 0.6, 80), Note(64 + number, 0.4, 0.9, 60)], [PedalEvent(0.0, 0)]
        )
        write_midi(root / year / f"{stem}.midi", performance)
        audio = engines.render_performance(performance, "fluidr3", int(1.5 * SAMPLE_RATE))
        write_flac(root / year / f"{stem}.flac", audio)
    return root


def maestro_rows() -> list[dict[str, object]]:
    return [
        {
            "canonical_composer": "Composer",
            "canonical_title": f"Piece {number}",
            "split": split,
            "year": int(year),
            "midi_filename": f"{year}/{stem}.midi",
            "audio_filename": f"{year}/{stem}.flac",
            "duration": 1.5,
        }
        for number, (split, year, stem) in enumerate(ROWS)
    ]


def check_records(root: Path, records: list[Record]) -> None:
    assert [r.split for r in records] == ["train", "validation", "test"]
    for record in records:
        assert record.audio_path.is_file() and record.midi_path.is_file()
        assert record.name == str(record.audio_path.relative_to(root).with_suffix(""))
        assert record.duration == pytest.approx(1.5)
        assert len(read_midi(record.midi_path).notes) == 2
        assert len(load(record.audio_path)) == int(1.5 * SAMPLE_RATE)
    assert [r.name for r in read_dataset(root, split="test")] == [records[2].name]


def test_maestro_csv(fake_maestro, tmp_path):
    root = tmp_path / "csv"
    root.mkdir()
    for item in fake_maestro.iterdir():
        (root / item.name).symlink_to(item)
    with open(root / "maestro-v2.0.0.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(maestro_rows()[0]))
        writer.writeheader()
        writer.writerows(maestro_rows())
    check_records(root, read_dataset(root))


def test_maestro_v3_json_column_oriented(fake_maestro, tmp_path):
    root = tmp_path / "v3"
    root.mkdir()
    for item in fake_maestro.iterdir():
        (root / item.name).symlink_to(item)
    rows = maestro_rows()
    columns = {key: {str(i): row[key] for i, row in enumerate(rows)} for key in rows[0]}
    (root / "maestro-v3.0.0.json").write_text(json.dumps(columns))
    check_records(root, read_dataset(root))
    # the index file itself may be given
    assert read_dataset(root / "maestro-v3.0.0.json") == read_dataset(root)


def test_maestro_v1_json_list_and_newest_index_wins(fake_maestro, tmp_path):
    root = tmp_path / "v1"
    root.mkdir()
    for item in fake_maestro.iterdir():
        (root / item.name).symlink_to(item)
    (root / "maestro-v1.0.0.json").write_text(json.dumps(maestro_rows()[:1]))
    assert len(read_dataset(root)) == 1
    (root / "maestro-v2.0.0.json").write_text(json.dumps(maestro_rows()))
    check_records(root, read_dataset(root))


def test_our_corpus_reads_like_maestro(tmp_path):
    if not FLUID_R3.is_file():
        pytest.skip("Debian package fluid-soundfont-gm not installed")
    config = corpus.Config(
        train_hours=3 / 3600,
        valid_minutes=2 / 60,
        test_minutes=2 / 60,
        train_timbres=("fluidr3",),
        test_timbres=("fluidr3",),
        sources=("procedural",),
        min_length=1.0,
        max_length=1.5,
    )
    corpus.synthesize(tmp_path, config, workers=1, progress=False)
    records = read_dataset(tmp_path)
    items = corpus.plan(config)
    assert [r.name for r in records] == [i.name for i in items]
    assert {r.split for r in records} == {"train", "validation", "test"}
    for record, item in zip(records, items, strict=True):
        assert record.duration == pytest.approx(item.duration, abs=1e-5)
        assert len(load(record.audio_path)) == round(item.duration * SAMPLE_RATE)
        assert np.isfinite(record.duration)
    assert all(r.split == "train" for r in read_dataset(tmp_path, "train"))


def test_errors_are_one_line_and_name_the_folder(tmp_path):
    with pytest.raises(DatasetError) as error:
        read_dataset(tmp_path)
    assert str(tmp_path) in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(DatasetError, match="not found"):
        read_dataset(tmp_path / "missing")
    (tmp_path / "maestro-v2.0.0.csv").write_text("split,midi_filename,audio_filename\ntrain,a.midi,a.wav\n")
    with pytest.raises(DatasetError, match="lacks duration"):
        read_dataset(tmp_path)
    (tmp_path / "maestro-v2.0.0.csv").write_text(
        "split,midi_filename,audio_filename,duration\ntrain,a.midi,a.wav,1\ntrain,a.midi,a.wav,1\n"
    )
    with pytest.raises(DatasetError, match="twice"):
        read_dataset(tmp_path)
    with pytest.raises(DatasetError, match="unknown split"):
        read_dataset(tmp_path, split="dev")
    (tmp_path / "maestro-v3.0.0.json").write_text("[1, 2")
    with pytest.raises(DatasetError, match="cannot read index"):
        read_dataset(tmp_path)
