"""The job's two tables, compiled from the per-file records in plan order: notes and run manifest.

``OUT/notes.parquet`` — every note and pedal press of every file done, one row each:
:data:`NOTES_SCHEMA` (``file``, ``event`` = ``note`` | ``pedal``, ``key`` = MIDI key, or
64 — the sustain controller's number — for a pedal press, ``onset`` / ``offset`` in
seconds, ``velocity`` 1–127, null for the pedal).

``OUT/manifest.parquet`` — one row per planned file: :data:`MANIFEST_SCHEMA` (status
``done`` / ``failed`` / ``pending``, the error, seconds, attempts, model version, input
hash, the run that did it, host and process).

Compiling from the records (rather than appending what a run saw) makes the tables the
same whatever the history: a resumed job's table has the files of every earlier run
exactly once, a file redone after its input changed replaces its old rows, and a worker
killed mid-file cannot leave half a file's notes in the table. Memory stays bounded:
records are read one at a time and written in row groups of :data:`ROW_GROUP` rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pianomtl.batch.plan import read_plan
from pianomtl.batch.work import MANIFEST_COLUMNS, read_record, record_path
from pianomtl.core.files import atomic_write

NOTES_FILE = "notes.parquet"
MANIFEST_FILE = "manifest.parquet"
ROW_GROUP = 65536
PEDAL_KEY = 64
"""A pedal press's ``key``: the sustain pedal's controller number (CC64)."""


def notes_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("file", pa.string()),
            ("event", pa.string()),
            ("key", pa.int16()),
            ("onset", pa.float64()),
            ("offset", pa.float64()),
            ("velocity", pa.int16()),
        ]
    )


def manifest_schema() -> Any:
    import pyarrow as pa

    return pa.schema([(name, getattr(pa, kind)()) for name, kind in MANIFEST_COLUMNS.items()])


class _Columns:
    """Rows gathered column-wise and flushed to a Parquet writer every :data:`ROW_GROUP` rows."""

    def __init__(self, writer: Any, schema: Any) -> None:
        self.writer, self.schema = writer, schema
        self.columns: dict[str, list[Any]] = {name: [] for name in schema.names}

    def add(self, **values: Any) -> None:
        for name, column in self.columns.items():
            column.append(values.get(name))
        if len(self.columns["file"]) >= ROW_GROUP:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if self.columns["file"]:
            self.writer.write_table(pa.table(self.columns, schema=self.schema))
            for column in self.columns.values():
                column.clear()


def compile_tables(out: Path, plan: Path) -> dict[str, int]:
    """Write ``OUT/notes.parquet`` and ``OUT/manifest.parquet`` (atomically) from the records.

    Returns the manifest's count per status.
    """
    import pyarrow.parquet as pq

    counts: dict[str, int] = {}

    def write_both(notes_path: Path, manifest_path: Path) -> None:
        with (
            pq.ParquetWriter(notes_path, notes_schema()) as notes_writer,
            pq.ParquetWriter(manifest_path, manifest_schema()) as manifest_writer,
        ):
            notes = _Columns(notes_writer, notes_schema())
            manifest = _Columns(manifest_writer, manifest_schema())
            for path, stem in read_plan(plan):
                record = read_record(record_path(out, stem)) if stem else None
                if record is None or record.get("file") != path:
                    record = {"file": path, "stem": stem, "status": "pending" if stem else "failed"}
                    if not stem:
                        record["error"] = f"{path}: its output name clashes with two other inputs' (rename it)"
                counts[record["status"]] = counts.get(record["status"], 0) + 1
                manifest.add(**{k: _value(record.get(k), kind) for k, kind in MANIFEST_COLUMNS.items()})
                if record["status"] != "done":
                    continue
                for key, onset, offset, velocity in record.get("notes", []):
                    notes.add(file=path, event="note", key=key, onset=onset, offset=offset, velocity=velocity)
                for onset, offset in record.get("pedal", []):
                    notes.add(file=path, event="pedal", key=PEDAL_KEY, onset=onset, offset=offset)
            notes.flush()
            manifest.flush()

    # Both tables are written under temporary names, then moved into place: the manifest first, the notes after it.
    atomic_write(
        out / NOTES_FILE, lambda notes_path: atomic_write(out / MANIFEST_FILE, lambda m: write_both(notes_path, m))
    )
    return counts


def _value(value: Any, kind: str) -> Any:
    if value is None or value == "":
        return "" if kind == "string" else None
    return value
