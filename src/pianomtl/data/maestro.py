"""Read a dataset in MAESTRO's layout: a real MAESTRO download (v1–v3) or our own corpus.

A dataset folder holds audio + MIDI pairs and one index file listing them with
their split and duration:

- ``pianomtl_corpus.csv`` (written by ``pianomtl synth``);
- ``maestro-v*.csv`` (v1.0.0, v2.0.0, v3.0.0): one row per recording;
- ``maestro-v*.json``: v1/v2 hold a list of row dicts, v3 is column-oriented
  (``{"split": {"0": "train", …}, "midi_filename": {"0": …}, …}``).

All yield the same :class:`Record`. File paths in the index are relative to the folder.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

CORPUS_INDEX = "pianomtl_corpus.csv"
REQUIRED = ("split", "midi_filename", "audio_filename", "duration")
SPLITS = ("train", "validation", "test")


class DatasetError(ValueError):
    """A dataset folder cannot be read; the message names the folder and the problem."""


@dataclass(frozen=True)
class Record:
    """One recording of a dataset: its split, its MIDI and audio files, its length in seconds."""

    split: str
    midi_path: Path
    audio_path: Path
    duration: float
    name: str  # unique id: the audio path relative to the dataset root, without extension


def _version_key(path: Path) -> tuple[int, ...]:
    match = re.search(r"maestro-v(\d+)(?:\.(\d+))?(?:\.(\d+))?", path.name)
    if match is None:
        return (0,)
    return tuple(int(part) for part in match.groups() if part is not None)


def find_index(root: Path) -> Path:
    """The index file of ``root``: our corpus CSV, else the newest ``maestro-v*.csv``/``.json``."""
    if root.is_file():
        return root
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    corpus = root / CORPUS_INDEX
    if corpus.is_file():
        return corpus
    candidates = sorted(
        [*root.glob("maestro-v*.csv"), *root.glob("maestro-v*.json")],
        key=lambda p: (_version_key(p), p.suffix == ".csv"),
    )
    if not candidates:
        raise DatasetError(
            f"{root}: no dataset index found (expected {CORPUS_INDEX}, maestro-v*.csv or maestro-v*.json)"
        )
    return candidates[-1]


def _rows_from_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _rows_from_json(path: Path) -> list[dict[str, object]]:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if isinstance(data, list):  # v1/v2: a list of records
        return data
    if isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):  # v3: column-oriented
        columns = {key: value for key, value in data.items()}
        keys = sorted(next(iter(columns.values())).keys(), key=lambda k: int(k) if str(k).isdigit() else str(k))
        return [{column: values.get(key) for column, values in columns.items()} for key in keys]
    raise DatasetError(f"{path}: not a MAESTRO JSON index (expected a list of records or a dict of columns)")


def read_dataset(root: str | Path, split: str | None = None) -> list[Record]:
    """All records of the dataset at ``root`` (a folder, or its index file), optionally of one split.

    Raises :class:`DatasetError` (one line, naming the folder and problem) when no
    index is found, it cannot be parsed, or it lacks a required column.
    """
    root = Path(root).expanduser()
    index = find_index(root)
    folder = index.parent
    try:
        rows = _rows_from_json(index) if index.suffix == ".json" else _rows_from_csv(index)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as error:
        raise DatasetError(f"{folder}: cannot read index {index.name} ({error})") from None
    if split is not None and split not in SPLITS and not any(r.get("split") == split for r in rows):
        raise DatasetError(f"{folder}: unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    records: list[Record] = []
    seen: set[str] = set()
    for number, row in enumerate(rows, start=1):
        missing = [column for column in REQUIRED if row.get(column) in (None, "")]
        if missing:
            raise DatasetError(f"{folder}: {index.name} row {number} lacks {', '.join(missing)}")
        if split is not None and row["split"] != split:
            continue
        audio = PurePosixPath(str(row["audio_filename"]))
        name = str(audio.with_suffix(""))
        if name in seen:
            raise DatasetError(f"{folder}: {index.name} lists {audio} twice")
        seen.add(name)
        try:
            duration = float(row["duration"])  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise DatasetError(f"{folder}: {index.name} row {number} has a bad duration {row['duration']!r}") from None
        records.append(
            Record(
                split=str(row["split"]),
                midi_path=folder / str(row["midi_filename"]),
                audio_path=folder / str(audio),
                duration=duration,
                name=name,
            )
        )
    return records
