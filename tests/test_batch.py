"""``pianomtl batch``: planning, per-file work, resume, the tables, and the Ray job surviving a killed worker.

The fast tests run the batch with ``engine="local"`` (the same worker, in this process);
one test runs it on a local Ray instance of two worker processes and kills one mid-job.
Inputs are the rendered fixture clip (real FluidSynth audio) copied into small trees,
plus a file that is not audio at all.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pianomtl.batch.plan import PART_ROWS, SourceError, plan_entries, read_plan, write_plan
from pianomtl.batch.run import run_batch
from pianomtl.batch.tables import manifest_schema, notes_schema
from pianomtl.batch.work import WORK_FOLDER
from pianomtl.cli import main
from pianomtl.constants import SAMPLE_RATE

pq = pytest.importorskip("pyarrow.parquet")
pc = pytest.importorskip("pyarrow.compute")


def _tree(folder: Path, clip: Path) -> Path:
    """``a.wav``, ``a.flac`` (same stem), ``sub/b.wav``, and ``broken.wav`` (not audio) under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(clip, folder / "a.wav")
    samples, rate = sf.read(str(clip), dtype="float32")
    sf.write(str(folder / "a.flac"), samples, rate, format="FLAC", subtype="PCM_16")
    (folder / "sub").mkdir(exist_ok=True)
    sf.write(str(folder / "sub" / "b.wav"), samples[::-1].copy(), rate, subtype="PCM_16")
    (folder / "broken.wav").write_bytes(b"RIFF, but not a wave file at all")
    return folder


def _manifest(out: Path, source: Path) -> dict[str, dict]:
    """The run manifest's rows by input path relative to ``source``."""
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    return {Path(r["file"]).relative_to(source).as_posix(): r for r in rows}


def test_plan_mirrors_the_tree_and_keeps_duplicate_stems_apart(tmp_path: Path) -> None:
    source = tmp_path / "in"
    for name in ("a.wav", "a.flac", "x/a.wav", "x/notes.txt", "b.WAV"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(b"")
    work = tmp_path / "work"
    work.mkdir()
    stems = {Path(e.path).relative_to(source).as_posix(): e.stem for e in plan_entries(str(source), work)}
    assert stems == {"a.flac": "a", "a.wav": "a.wav", "b.WAV": "b", "x/a.wav": "x/a"}  # sorted: a.flac first
    assert not (work / "stems.sqlite").exists()  # the on-disk index is removed

    glob_stems = {e.stem for e in plan_entries(str(source / "**" / "*.wav"), work)}
    assert glob_stems == {"a", "x/a"}  # a glob is matched as given (case-sensitive), mirrored below its fixed prefix

    listing = tmp_path / "list.txt"
    listing.write_text(f"# inputs\n{source / 'a.wav'}\n\nin/x/a.wav\n")
    assert [e.stem for e in plan_entries(str(listing), work)] == ["in/a", "in/x/a"]  # relative to the list's folder
    table = tmp_path / "list.csv"
    table.write_text("path,output\nin/a.wav,first\nin/x/a.wav,\n")
    assert [e.stem for e in plan_entries(str(table), work)] == ["first", "in/x/a"]
    with pytest.raises(SourceError, match="'path' column"):
        (tmp_path / "bad.csv").write_text("file\nin/a.wav\n")
        list(plan_entries(str(tmp_path / "bad.csv"), work))
    with pytest.raises(SourceError, match="no such folder"):
        list(plan_entries(str(tmp_path / "missing"), work))


def test_plan_parts_stream_a_large_manifest(tmp_path: Path) -> None:
    """A manifest longer than a part is written as several Parquet parts and read back in order."""
    import pyarrow as pa

    count = 2 * PART_ROWS + 5
    manifest = tmp_path / "m.parquet"
    pq.write_table(pa.table({"path": [f"/archive/{i:06d}.flac" for i in range(count)]}), manifest)
    plan, rows = write_plan(str(manifest), tmp_path)
    assert rows == count and len(list(plan.glob("part-*.parquet"))) == 3
    back = list(read_plan(plan))
    assert len(back) == count and back[0] == ("/archive/000000.flac", "archive/000000")
    assert back[-1][0] == f"/archive/{count - 1:06d}.flac"


def test_batch_records_failures_and_resumes_only_what_is_missing(tmp_path: Path, rendered_clip) -> None:
    source = _tree(tmp_path / "in", rendered_clip.wav)
    out = tmp_path / "out"
    first = run_batch(str(source), out, formats=("mid", "json"), retries=1, engine="local", progress=None)
    rows = _manifest(out, source)
    assert first.manifest == {"done": 3, "failed": 1}
    assert {name: r["status"] for name, r in rows.items()} == {
        "a.flac": "done",
        "a.wav": "done",
        "broken.wav": "failed",
        "sub/b.wav": "done",
    }
    broken = rows["broken.wav"]
    assert broken["attempts"] == 2 and "broken.wav" in broken["error"] and "\n" not in broken["error"]
    for stem in ("a", "a.wav", "sub/b"):  # the duplicate stem got its own outputs
        assert (out / f"{stem}.mid").is_file() and (out / f"{stem}.json").is_file()
    assert not list(out.rglob("*.part*"))  # no temporary file left behind
    assert rows["a.wav"]["model_version"].startswith(("v", "unknown")) and len(rows["a.wav"]["input_hash"]) == 32

    notes = pq.read_table(out / "notes.parquet")
    assert notes.schema.equals(notes_schema())
    assert pq.read_schema(out / "manifest.parquet").equals(manifest_schema())
    per_file = notes.group_by("file").aggregate([("key", "count")]).to_pylist()
    counts = {Path(r["file"]).name: r["key_count"] for r in per_file}
    assert "broken.wav" not in counts and counts["a.wav"] == counts["a.flac"] > 0
    a_notes = [r for r in notes.to_pylist() if r["file"].endswith("a.wav") and r["event"] == "note"]
    assert {r["key"] for r in a_notes} >= {n.key for n in rendered_clip.performance.notes[:4]}
    assert all(r["velocity"] is None for r in notes.to_pylist() if r["event"] == "pedal")

    # second run: one output removed, one input changed, one new file; the rest is skipped untouched
    (out / "sub" / "b.mid").unlink()
    samples, rate = sf.read(str(source / "a.flac"), dtype="float32")
    sf.write(str(source / "a.flac"), samples * 0.5, rate, format="FLAC", subtype="PCM_16")
    shutil.copy(rendered_clip.wav, source / "sub" / "new.wav")
    untouched = (out / "a.wav.mid").stat().st_mtime_ns
    second = run_batch(str(source), out, formats=("mid", "json"), retries=0, engine="local", progress=None)
    assert second.this_run == {"skipped": 1, "done": 3, "failed": 1}
    rows = _manifest(out, source)
    redone = {name for name, r in rows.items() if r["run"] == second.run}
    assert redone == {"a.flac", "sub/b.wav", "sub/new.wav", "broken.wav"}
    assert rows["a.wav"]["run"] == first.run and (out / "a.wav.mid").stat().st_mtime_ns == untouched
    notes = pq.read_table(out / "notes.parquet").to_pylist()
    files = {r["file"] for r in notes}
    assert len(files) == 4  # every done file once: earlier runs' notes kept, a.flac's replaced, not doubled
    assert sum(r["file"].endswith("a.flac") for r in notes) == counts["a.flac"]


def test_batch_command_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["batch", str(tmp_path / "nothing"), "-o", str(tmp_path / "out"), "--local"]) == 2
    assert "no such folder" in capsys.readouterr().err.strip()
    (tmp_path / "empty").mkdir()
    assert main(["batch", str(tmp_path / "empty"), "-o", str(tmp_path / "out"), "--local"]) == 2
    assert "no audio files" in capsys.readouterr().err
    model = tmp_path / "m.pt"
    model.write_bytes(b"")
    assert main(["batch", str(tmp_path / "empty"), "-o", str(tmp_path / "out"), "--model", str(model)]) == 2
    assert "ONNX" in capsys.readouterr().err


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").is_file() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


@pytest.mark.slow
def test_ray_job_survives_a_killed_worker(tmp_path: Path, rendered_clip) -> None:
    """Two Ray worker processes; one is killed (SIGKILL) after the first file is recorded; the job
    still ends with every file done exactly once (one record, one MIDI, its notes once in the table)."""
    ray = pytest.importorskip("ray")
    source = tmp_path / "in"
    source.mkdir()
    long = np.tile(rendered_clip.samples, 8)  # 24 s per file: the kill lands while files are in flight
    for index in range(8):
        sf.write(str(source / f"take{index}.wav"), long, SAMPLE_RATE, subtype="PCM_16")
    out = tmp_path / "out"
    records = out / WORK_FOLDER / "records"
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    summary: dict = {}
    try:
        job = threading.Thread(
            target=lambda: summary.update(
                result=run_batch(str(source), out, engine="ray", workers=2, retries=0, progress=None)
            )
        )
        job.start()
        deadline = time.monotonic() + 240
        while not list(records.glob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.05)
        first = json.loads(next(records.glob("*.json")).read_text())
        killed = first["pid"]
        os.kill(killed, signal.SIGKILL)  # a worker this test's Ray instance started
        job.join(timeout=300)
        assert not job.is_alive()
        pids = {json.loads(p.read_text())["pid"] for p in records.glob("*.json")}
    finally:
        ray.shutdown()
    result = summary["result"]
    assert result.manifest == {"done": 8}
    manifest = pq.read_table(out / "manifest.parquet").to_pylist()
    assert sorted(Path(r["file"]).name for r in manifest) == [f"take{i}.wav" for i in range(8)]
    assert len(list(records.glob("*.json"))) == 8 and len(list(out.glob("*.mid"))) == 8
    assert len(pids - {killed}) >= 1  # the rest was done by the other worker and/or the killed one's replacement
    notes = pq.read_table(out / "notes.parquet")
    per_file = {r["file"]: r["key_count"] for r in notes.group_by("file").aggregate([("key", "count")]).to_pylist()}
    expected = {r["file"]: len(json.loads((records / f"{r['stem']}.json").read_text())["notes"]) for r in manifest}
    only_notes = notes.filter(pc.equal(notes["event"], "note")).group_by("file").aggregate([("key", "count")])
    notes_only = {r["file"]: r["key_count"] for r in only_notes.to_pylist()}
    assert notes_only == expected and set(per_file) == set(expected)
    # every worker process of the job is gone after the shutdown
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in pids)
