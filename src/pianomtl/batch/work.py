"""One file of a batch: skip it if done, else transcribe it, write its outputs, then its record.

The record (``OUT/.batch/records/<stem>.json``) is written last and atomically, after
every output: it is the proof that a file is done. A worker killed mid-file leaves at
most some whole outputs (each written atomically) and no record, so the file is simply
done again; a restarted job skips a file only when its record says ``done``, the input's
hash (BLAKE2b of its bytes) and the model version are unchanged and every output asked for exists.

:class:`Worker` is the stateful part: one :class:`~pianomtl.transcription.pipeline.Transcriber`
(one ONNX session, one intra-op thread) for the worker's lifetime, so the model is
loaded once per worker, not once per file. Ray Data calls it with batches of plan rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pianomtl.core.files import write_json_atomic
from pianomtl.core.midi import pedal_down_intervals

WRITERS = {"mid": "to_midi", "csv": "to_csv", "json": "to_json"}
"""Per-file output format → the :class:`~pianomtl.transcription.result.Transcription` writer (atomic) that writes it."""

FORMATS = tuple(WRITERS)

RECORDS = "records"
"""Folder of the per-file records inside the job's work folder (``OUT/.batch``)."""

WORK_FOLDER = ".batch"
"""The job's own files under OUT: plan, records, lock."""

HASH_CHUNK = 1 << 20


def input_hash(path: str | Path) -> str:
    """BLAKE2b-128 of the file's bytes, hex: what "the same input" means to a resumed job."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def record_path(out: Path, stem: str) -> Path:
    return out / WORK_FOLDER / RECORDS / f"{stem}.json"


def output_paths(out: Path, stem: str, formats: tuple[str, ...]) -> dict[str, Path]:
    """``{format: OUT/<stem>.<format>}``."""
    target = out / stem
    return {kind: target.with_name(f"{target.name}.{kind}") for kind in formats}


def read_record(path: Path) -> dict[str, Any] | None:
    """A file's record, or ``None`` if it has none (or an unreadable one: then the file is redone)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def model_version(metadata: dict[str, Any], path: str | None) -> str:
    """``<bundle version>+<first 12 hex of the model file's SHA-256>``: which weights made a transcription."""
    version = str(metadata.get("version", "unknown"))
    if path and Path(path).is_file():
        version += "+" + hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    return version


@dataclass(frozen=True)
class Settings:
    """What every worker of one job shares (plain data: it travels to Ray workers by pickle)."""

    out: str
    formats: tuple[str, ...] = ("mid",)
    retries: int = 2
    model: str | None = None
    run: str = ""


class Worker:
    """A stateful transcriber for one worker process: the model loaded once, files one by one."""

    def __init__(self, settings: Settings) -> None:
        from pianomtl.transcription.onnx_model import default_onnx_path
        from pianomtl.transcription.pipeline import Transcriber

        self.settings = settings
        self.out = Path(settings.out)
        # One intra-op thread: the batch's parallelism is one worker per core, and a
        # session that spreads over the other cores only competes with its neighbours.
        self.transcriber = Transcriber(settings.model, backend="onnxruntime", threads=1)
        path = settings.model or str(default_onnx_path())
        self.version = model_version(self.transcriber.metadata, path)
        self.host = socket.gethostname()

    def process(self, path: str, stem: str) -> dict[str, Any]:
        """Do one file (or skip it); returns the manifest row (without the notes)."""
        started = time.perf_counter()
        row: dict[str, Any] = {"file": path, "stem": stem, "status": "failed", "error": "", "attempts": 0}
        if not stem:
            row["error"] = f"{path}: its output name clashes with two other inputs' (rename it)"
            return self._finish(row, None, started)
        record = record_path(self.out, stem)
        outputs = output_paths(self.out, stem, self.settings.formats)
        try:
            digest = input_hash(path)
        except OSError as error:
            row["error"] = f"{path}: cannot read ({error.strerror or error})"
            return self._finish(row, None, started)
        previous = read_record(record)
        if (
            previous is not None
            and previous.get("status") == "done"
            and previous.get("input_hash") == digest
            and previous.get("file") == path
            and previous.get("model_version") == self.version  # another model: the file is done again
            and all(p.is_file() for p in outputs.values())
        ):
            return {**_manifest_row(previous), "status": "skipped"}
        row["input_hash"] = digest
        result = None
        for attempt in range(1, self.settings.retries + 2):
            row["attempts"] = attempt
            try:
                result = self.transcriber(path, keep_activations=False)
                for kind, target in outputs.items():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    getattr(result, WRITERS[kind])(target)
                row["status"], row["error"] = "done", ""
                break
            except Exception as error:  # any failure of one file is recorded, the batch goes on
                row["error"] = _one_line(error, path)
                result = None
        return self._finish(row, result, started)

    def _finish(self, row: dict[str, Any], result: Any, started: float) -> dict[str, Any]:
        row.update(
            seconds=round(time.perf_counter() - started, 4),
            model_version=self.version,
            run=self.settings.run,
            host=self.host,
            pid=os.getpid(),
            duration=round(result.duration, 4) if result is not None else None,
            finished=round(time.time(), 3),
        )
        row.setdefault("input_hash", "")
        if row["stem"]:
            full = {**row, **_events(result)}
            target = record_path(self.out, row["stem"])
            target.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(target, full)
        return row

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Ray Data's entry: a batch of plan rows (``path``, ``stem``) → their manifest rows."""
        rows = [self.process(str(p), str(s)) for p, s in zip(batch["path"], batch["stem"], strict=True)]
        return {key: _column([r.get(key) for r in rows], kind) for key, kind in MANIFEST_COLUMNS.items()}


MANIFEST_COLUMNS: dict[str, str] = {
    "file": "string",
    "stem": "string",
    "status": "string",  # done, failed, skipped (done by an earlier run), pending (in the manifest only)
    "error": "string",
    "seconds": "float64",  # wall time of this file in its worker, reading to the record
    "attempts": "int32",
    "model_version": "string",
    "input_hash": "string",
    "run": "string",  # the run that did the file
    "host": "string",
    "pid": "int64",
    "duration": "float64",  # seconds of audio
    "finished": "float64",  # when the file's record was written, UNIX time (throughput from the manifest alone)
}
"""What a worker returns per file, and the run manifest's columns (Arrow type names)."""


def _column(values: list[Any], kind: str) -> np.ndarray:
    """One typed column (missing values: "" for strings, NaN for floats, 0 for integers)."""
    if kind == "string":
        return np.array(["" if v is None else str(v) for v in values], dtype=object)
    if kind.startswith("float"):
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return np.array([0 if v is None else int(v) for v in values], dtype=np.int64)


def _manifest_row(record: dict[str, Any]) -> dict[str, Any]:
    return {key: record.get(key) for key in MANIFEST_COLUMNS}


def _events(result: Any) -> dict[str, list[list[float]]]:
    """The record's ``notes`` (key, onset, offset, velocity) and ``pedal`` (onset, offset) lists."""
    if result is None:
        return {"notes": [], "pedal": []}
    notes = [[n.key, round(n.onset, 4), round(n.offset, 4), n.velocity] for n in result.notes]
    pedal = [[round(a, 4), round(b, 4)] for a, b in pedal_down_intervals(result.pedal, result.duration)]
    return {"notes": notes, "pedal": pedal}


def _one_line(error: BaseException, path: str) -> str:
    """The error as one line naming the file (the package's own errors already name it)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if path in text or Path(path).name in text else f"{path}: {text}"
