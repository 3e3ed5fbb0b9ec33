"""The feature/target cache that training and evaluation read (made by ``pianomtl prepare``).

Format, and why: one pair of ``.npy`` files per recording (``features`` float32
``[T, 144]``, ``labels`` uint8 ``[T, 353]``, see :mod:`pianomtl.core.targets`) plus an
``index.json``. ``.npy`` files open with ``numpy.load(mmap_mode="r")``, so a corpus
of any size is read by random access through the page cache without loading it
into RAM, with no extra dependency (HDF5/zarr add little for fixed-shape arrays
read in contiguous frame ranges). Each file is written to a temporary name and
renamed, so an interrupted ``prepare`` leaves only complete entries, and a rerun
computes just what is missing or whose source changed. ``prepare --split X`` merges
into the index: the entries of other splits stay listed (one ``prepare`` at a time per
cache, under a lock, so two cannot drop each other's entries). A split whose index
entries and ``arrays/`` disagree (arrays missing, or arrays no entry lists) is named as
such rather than reported empty.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pianomtl.constants import N_BINS
from pianomtl.core.audio import AudioError, load
from pianomtl.core.features import spectrogram
from pianomtl.core.files import LockedError, atomic_write, exclusive_lock, write_json_atomic
from pianomtl.core.midi import MidiError, read_midi
from pianomtl.core.targets import N_LABELS, compute_labels

INDEX_NAME = "index.json"
FAILURES_NAME = "failures.json"
LOCK_NAME = ".prepare.lock"
FEATURES_SUFFIX = ".features.npy"
FORMAT_VERSION = 1


class CacheError(ValueError):
    """A cache folder is missing, incomplete or of another format."""


@dataclass(frozen=True)
class Entry:
    """One cached recording: where its arrays are and what it came from."""

    name: str
    split: str
    n_frames: int
    features: str  # path relative to the cache root
    labels: str
    audio_path: str
    midi_path: str
    source_stamp: str  # size and mtime of audio and MIDI, to notice changed sources


def _stamp(*paths: Path) -> str:
    parts = []
    for path in paths:
        stat = path.stat()
        parts.append(f"{stat.st_size}:{int(stat.st_mtime)}")
    return "|".join(parts)


def _safe_name(name: str) -> str:
    return name.replace("/", "__").replace("\\", "__")


def _save_atomic(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda target: np.save(target, array))


def compute_pair(audio_path: Path, midi_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of one recording, with equal frame counts."""
    features = spectrogram(load(audio_path))
    labels = compute_labels(read_midi(midi_path), len(features))
    return features, labels


def store_pair(
    root: Path, name: str, split: str, audio_path: Path, midi_path: Path, features: np.ndarray, labels: np.ndarray
) -> Entry:
    """Write one recording's arrays atomically under ``root/arrays`` and describe them."""
    stem = _safe_name(name)
    features_rel, labels_rel = f"arrays/{stem}{FEATURES_SUFFIX}", f"arrays/{stem}.labels.npy"
    _save_atomic(root / features_rel, features.astype(np.float32))
    _save_atomic(root / labels_rel, labels)
    return Entry(
        name=name,
        split=split,
        n_frames=len(features),
        features=features_rel,
        labels=labels_rel,
        audio_path=str(audio_path),
        midi_path=str(midi_path),
        source_stamp=_stamp(audio_path, midi_path),
    )


def _prepare_one(record_fields: dict, cache_root: str) -> tuple[str, dict | None, str | None]:
    """Worker: compute and store one record; returns (name, entry dict, error)."""
    import torch

    torch.set_num_threads(1)  # the pool already uses one process per core
    name = record_fields["name"]
    audio_path, midi_path = Path(record_fields["audio_path"]), Path(record_fields["midi_path"])
    try:
        features, labels = compute_pair(audio_path, midi_path)
    except (AudioError, MidiError, OSError, ValueError) as error:
        return name, None, str(error)
    entry = store_pair(Path(cache_root), name, record_fields["split"], audio_path, midi_path, features, labels)
    return name, asdict(entry), None


def prepare(dataset: str | Path, cache: str | Path, workers: int = 2, split: str | None = None) -> dict:
    """Compute features and labels of every record of ``dataset`` into ``cache``.

    Returns a summary ``{"stored": n, "reused": n, "failed": {name: reason}}``.
    Unreadable pairs are reported (and listed in ``failures.json``), never stored.
    With ``split``, the index keeps every entry of the other splits (merged, written
    atomically); without, it lists exactly the dataset's recordings. A second
    ``prepare`` on the same cache while one runs is a :class:`CacheError`.
    """
    from pianomtl.data.maestro import read_dataset

    cache = Path(cache)
    records = read_dataset(dataset, split=split)  # DatasetError before anything is created
    (cache / "arrays").mkdir(parents=True, exist_ok=True)
    try:
        with exclusive_lock(cache / LOCK_NAME):
            return _prepare_locked(records, cache, workers, split)
    except LockedError as error:
        raise CacheError(f"{error} (another `pianomtl prepare`); wait for it to finish") from None


def _prepare_locked(records: list, cache: Path, workers: int, split: str | None) -> dict:
    """:func:`prepare`'s work, with the cache's lock held."""
    existing = {e.name: e for e in load_index(cache, missing_ok=True)}
    names = {record.name for record in records}
    kept = [] if split is None else [e for e in existing.values() if e.name not in names and e.split != split]
    entries: dict[str, Entry] = {}
    todo = []
    for record in records:
        old = existing.get(record.name)
        try:
            stamp = _stamp(record.audio_path, record.midi_path)
        except OSError:
            stamp = None
        if (
            old is not None
            and old.source_stamp == stamp
            and old.split == record.split
            and (cache / old.features).exists()
            and (cache / old.labels).exists()
        ):
            entries[record.name] = old
        else:
            todo.append(
                {
                    "name": record.name,
                    "split": record.split,
                    "audio_path": str(record.audio_path),
                    "midi_path": str(record.midi_path),
                }
            )
    reused = len(entries)
    failed: dict[str, str] = {}

    def save_index() -> None:
        ordered = [asdict(e) for e in kept] + [asdict(entries[r.name]) for r in records if r.name in entries]
        write_json_atomic(cache / INDEX_NAME, {"version": FORMAT_VERSION, "entries": ordered})

    if todo:
        with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = [pool.submit(_prepare_one, item, str(cache)) for item in todo]
            for done, future in enumerate(tqdm(as_completed(futures), total=len(futures), desc="prepare"), 1):
                name, entry, error = future.result()
                if error is not None:
                    failed[name] = error
                    tqdm.write(f"skipped {error}", file=sys.stderr)
                else:
                    entries[name] = Entry(**entry)
                if done % 20 == 0:
                    save_index()  # progress survives an interruption
    save_index()
    write_json_atomic(cache / FAILURES_NAME, failed)
    return {"stored": len(entries) - reused, "reused": reused, "failed": failed}


def load_index(cache: str | Path, missing_ok: bool = False) -> list[Entry]:
    """The entries of a cache folder (empty if ``missing_ok`` and there is none)."""
    path = Path(cache) / INDEX_NAME
    if not path.exists():
        if missing_ok:
            return []
        raise CacheError(f"{cache}: no {INDEX_NAME}; run `pianomtl prepare --dataset DIR --cache {cache}` first")
    payload = json.loads(path.read_text())
    if payload.get("version") != FORMAT_VERSION:
        raise CacheError(f"{path}: cache format {payload.get('version')}, expected {FORMAT_VERSION}; prepare again")
    return [Entry(**e) for e in payload["entries"]]


class Recording:
    """Memory-mapped arrays of one cached recording."""

    def __init__(self, root: Path, entry: Entry) -> None:
        self.entry = entry
        self.features = np.load(root / entry.features, mmap_mode="r")
        self.labels = np.load(root / entry.labels, mmap_mode="r")
        if self.features.shape != (entry.n_frames, N_BINS) or self.labels.shape != (entry.n_frames, N_LABELS):
            raise CacheError(f"{root / entry.features}: shape does not match the index; prepare again")

    def __len__(self) -> int:
        return self.entry.n_frames


def unlisted_arrays(cache: str | Path, entries: list[Entry]) -> list[str]:
    """Names of the recordings whose arrays are in ``arrays/`` but that no index entry lists."""
    listed = {Path(e.features).name for e in entries}
    folder = Path(cache) / "arrays"
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(FEATURES_SUFFIX)] for p in folder.glob(f"*{FEATURES_SUFFIX}") if p.name not in listed)


def open_split(cache: str | Path, split: str) -> list[Recording]:
    """All cached recordings of one split, memory-mapped.

    :class:`CacheError` for a split with no entries — saying so when ``arrays/`` holds
    recordings the index does not list (an index that disagrees with its arrays) — and
    for an entry whose arrays are missing or unreadable.
    """
    root = Path(cache)
    entries = load_index(root)
    chosen = [e for e in entries if e.split == split]
    if not chosen:
        unlisted = unlisted_arrays(root, entries)
        if unlisted:
            raise CacheError(
                f"{cache}: {INDEX_NAME} lists no recordings in split '{split}', but arrays/ holds {len(unlisted)} "
                f"recording(s) it does not list ({', '.join(unlisted[:3])}{', …' if len(unlisted) > 3 else ''}): "
                f"the index disagrees with its arrays; run `pianomtl prepare --split {split}` again"
            )
        raise CacheError(f"{cache}: no recordings in split '{split}'")
    recordings = []
    for entry in chosen:
        missing = [name for name in (entry.features, entry.labels) if not (root / name).is_file()]
        if missing:
            raise CacheError(
                f"{root / missing[0]}: listed in {INDEX_NAME} for {entry.name!r} but missing: the index disagrees "
                "with its arrays; run `pianomtl prepare` again"
            )
        try:
            recordings.append(Recording(root, entry))
        except (ValueError, OSError) as error:  # CacheError is a ValueError: a shape the index does not give
            if isinstance(error, CacheError):
                raise
            raise CacheError(f"{root / entry.features}: unreadable cached array ({error}); prepare again") from None
    return recordings
