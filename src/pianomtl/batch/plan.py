"""A batch's source → Parquet plan parts (input path, output stem), streamed.

The source is a folder (searched recursively), a glob pattern, or a manifest: CSV or
Parquet with a ``path`` column (and optionally an ``output`` column, the output stem
relative to OUT), or a text file with one path per line (blank lines and ``#`` comments
skipped). Relative paths in a manifest are relative to the manifest's folder.

Each input's outputs mirror its path below the *root* (the folder given, the glob's
fixed prefix, the manifest's folder, or ``root=``): ``IN/x/a.wav`` → ``OUT/x/a.mid``. A
path outside the root mirrors its whole path (``/data/x/a.wav`` → ``OUT/data/x/a.mid``).
Two inputs with one stem (``a.wav`` and ``a.flac`` in one folder) do not overwrite each
other: the first in source order keeps ``a``, a later one is ``a.flac`` (its extension
kept), and a third clash is refused for that file alone (a plan row with an error).

Memory: nothing holds the list of inputs. A folder is walked one directory at a time,
a glob by :func:`glob.iglob`, a CSV or text file line by line, a Parquet file batch by
batch; the stems seen so far live in a temporary SQLite index on disk; rows go out in
parts of :data:`PART_ROWS` (what Ray Data then reads in parallel, block by block).
"""

from __future__ import annotations

import csv
import glob
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath

from pianomtl.core.audio import AUDIO_EXTENSIONS  # what a folder or glob search picks up (a manifest's paths: any name)

PART_ROWS = 4096
"""Rows per plan part: small enough to spread over workers early, large enough to stay few files."""

MANIFEST_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
"""Manifest formats by suffix; any other existing file is a text list of paths."""


class SourceError(ValueError):
    """The source cannot be read as a folder, glob or manifest (one line naming it)."""


@dataclass(frozen=True)
class Entry:
    """One input: its path and its output stem relative to OUT (``x/a`` for ``x/a.mid``)."""

    path: str
    stem: str


def source_kind(source: str) -> str:
    """``folder``, ``glob``, ``csv``, ``parquet`` or ``text``; :class:`SourceError` if none fits."""
    path = Path(source)
    if path.is_dir():
        return "folder"
    if glob.has_magic(source):
        return "glob"
    if path.is_file():
        return MANIFEST_SUFFIXES.get(path.suffix.lower(), "text")
    raise SourceError(f"{source}: no such folder or manifest, and not a glob pattern")


def default_root(source: str, kind: str) -> Path:
    """The folder outputs mirror from: the folder itself, the glob's fixed prefix, the manifest's folder."""
    if kind == "folder":
        return Path(source)
    if kind == "glob":
        fixed = []
        for part in PurePath(source).parts:
            if glob.has_magic(part):
                break
            fixed.append(part)
        return Path(*fixed) if fixed else Path(".")
    return Path(source).parent


def output_stem(path: Path, root: Path) -> str:
    """``path`` below ``root`` without its suffix, as a POSIX string; a path outside ``root`` keeps all its parts."""
    try:
        relative = path.absolute().relative_to(root.absolute())
    except ValueError:
        relative = Path(*path.absolute().parts[1:])
    return relative.with_suffix("").as_posix()


def _walk(folder: Path) -> Iterator[Path]:
    """Audio files below ``folder``, sorted within each directory, one directory listed at a time."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as error:
        raise SourceError(f"{folder}: cannot list ({error.strerror})") from None
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(Path(entry.path))
        elif entry.is_file() and Path(entry.name).suffix.lower() in AUDIO_EXTENSIONS:
            yield Path(entry.path)


def _manifest_rows(source: Path, kind: str) -> Iterator[tuple[str, str | None]]:
    """``(path, output stem or None)`` per manifest row, streamed."""
    if kind == "text":
        with source.open(encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if line and not line.startswith("#"):
                    yield line, None
    elif kind == "csv":
        with source.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or "path" not in reader.fieldnames:
                raise SourceError(f"{source}: a CSV manifest needs a 'path' column (found {reader.fieldnames})")
            for row in reader:
                if row.get("path"):
                    yield row["path"], row.get("output") or None
    else:
        import pyarrow.parquet as pq

        try:
            reader = pq.ParquetFile(source)
        except Exception as error:  # pyarrow's own exception types
            raise SourceError(f"{source}: not a readable Parquet file ({error})") from None
        names = reader.schema_arrow.names
        if "path" not in names:
            raise SourceError(f"{source}: a Parquet manifest needs a 'path' column (found {names})")
        columns = ["path", *(["output"] if "output" in names else [])]
        for batch in reader.iter_batches(batch_size=PART_ROWS, columns=columns):
            paths = batch.column("path").to_pylist()
            outputs = batch.column("output").to_pylist() if "output" in columns else [None] * len(paths)
            for path, output in zip(paths, outputs, strict=True):
                if path:
                    yield path, output


def entries(source: str) -> Iterator[tuple[Path, str | None]]:
    """``(input path, explicit output stem or None)`` of every input of ``source``, streamed."""
    kind = source_kind(source)
    if kind == "folder":
        for path in _walk(Path(source)):
            yield path, None
    elif kind == "glob":
        for name in glob.iglob(source, recursive=True):
            path = Path(name)
            if path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS:
                yield path, None
    else:
        base = Path(source).parent
        for name, output in _manifest_rows(Path(source), kind):
            path = Path(name)
            yield (path if path.is_absolute() else base / path), output


class StemIndex:
    """The output stems taken so far, in an SQLite file (a million stems stay on disk, not in memory)."""

    def __init__(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self.path = path
        self.connection = sqlite3.connect(path)
        self.connection.execute("PRAGMA journal_mode=OFF")
        self.connection.execute("PRAGMA synchronous=OFF")
        self.connection.execute("CREATE TABLE stems (stem TEXT PRIMARY KEY)")

    def claim(self, stem: str) -> bool:
        """Take ``stem`` (case-folded: two stems differing only in case clash on some file systems)."""
        try:
            self.connection.execute("INSERT INTO stems VALUES (?)", (stem.casefold(),))
        except sqlite3.IntegrityError:
            return False
        return True

    def close(self) -> None:
        self.connection.close()
        self.path.unlink(missing_ok=True)


def plan_entries(source: str, work: Path, root: str | Path | None = None) -> Iterator[Entry]:
    """Every input of ``source`` with its unique output stem (the rule of the module docstring).

    A third clash yields an entry whose stem is empty: the worker records it as failed
    with the reason, the rest of the batch goes on.
    """
    kind = source_kind(source)
    base = Path(root) if root is not None else default_root(source, kind)
    index = StemIndex(work / "stems.sqlite")
    try:
        for path, explicit in entries(source):
            stem = explicit.strip("/") if explicit else output_stem(path, base)
            if not index.claim(stem):
                stem = f"{stem}{path.suffix.lower()}"
                if not index.claim(stem):
                    stem = ""
            yield Entry(str(path), stem)
    finally:
        index.close()


def write_plan(source: str, work: Path, root: str | Path | None = None) -> tuple[Path, int]:
    """Write the plan of ``source`` as Parquet parts under ``work/plan``; ``(plan folder, rows)``.

    Parts from an earlier plan are removed first (a resumed job plans again: the source
    may have grown). Raises :class:`SourceError` for an unreadable source or an empty one.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = work / "plan"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.parquet"):
        old.unlink()
    schema = pa.schema([("path", pa.string()), ("stem", pa.string())])
    paths: list[str] = []
    stems: list[str] = []
    parts = rows = 0

    def flush() -> None:
        nonlocal parts
        if paths:
            table = pa.table({"path": paths, "stem": stems}, schema=schema)
            pq.write_table(table, folder / f"part-{parts:06d}.parquet")
            parts += 1
            paths.clear()
            stems.clear()

    for entry in plan_entries(source, work, root):
        paths.append(entry.path)
        stems.append(entry.stem)
        rows += 1
        if len(paths) >= PART_ROWS:
            flush()
    flush()
    if rows == 0:
        raise SourceError(f"{source}: no audio files found (looked for {', '.join(AUDIO_EXTENSIONS)})")
    return folder, rows


def read_plan(folder: Path, batch_rows: int = PART_ROWS) -> Iterator[tuple[str, str]]:
    """``(path, stem)`` of every planned input, in plan order, one part at a time."""
    import pyarrow.parquet as pq

    for part in sorted(folder.glob("part-*.parquet")):
        for batch in pq.ParquetFile(part).iter_batches(batch_size=batch_rows):
            yield from zip(batch.column("path").to_pylist(), batch.column("stem").to_pylist(), strict=True)
