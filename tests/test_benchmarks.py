"""Smoke tests of the benchmark scripts (tiny sizes: they check the plumbing, not speed)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import peers  # noqa: E402
import run as bench_run  # noqa: E402
import transcription  # noqa: E402
from pianomtl.core.midi import Note, Performance, write_midi  # noqa: E402
from pianomtl.models.registry import ModelConfig  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def test_training_forms_time_the_same_outputs_both_ways() -> None:
    row = bench_run.training_forms(ModelConfig("hard", small=4, large=8, head=2), batch=2, frames=6, repeats=1)
    assert row["frames_per_step"] == 12
    assert row["max_output_difference"] < 1e-5  # sequence form == window form
    assert row["train_seq_fps"] > 0 and row["train_window_fps"] > 0 and row["infer_fps"] > 0
    assert row["ratio"] == pytest.approx(row["train_seq_fps"] / row["train_window_fps"])
    assert row["mac_ratio"] > 1


def test_floors_say_pass_or_by_how_much() -> None:
    training = [{"variant": "x", "ratio": 4.0}]
    rows = [
        {"config": "torch", "minutes": 60.0, "model": "m", "rtf": 150.0, "peak_rss_mb": 2000.0},
        {"config": "torch", "minutes": 1.0, "model": "m", "rtf": 90.0, "peak_rss_mb": 500.0},
    ]
    floors = bench_run.floors(training, rows)
    assert [f["pass"] for f in floors] == [False, True, False]
    assert floors[0]["factor"] == pytest.approx(0.4)
    assert floors[1]["value"] == 150.0  # the longest recording decides
    quick = bench_run.floors([], rows[1:])
    assert quick[-1]["pass"] is None  # no hour measured


def test_transcription_child_reports_stages_rtf_and_memory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PIANOMTL_HOME", str(tmp_path))
    audio = tmp_path / "noise.flac"
    sf.write(str(audio), np.random.default_rng(0).normal(0, 0.1, 3 * 44100).astype(np.float32), 44100)
    model, description = transcription.model_argument("random")
    assert Path(model).is_file() and "random" in description
    row = transcription.measure(audio, model, threads=1)
    assert row["duration_s"] == pytest.approx(3.0)
    assert set(row["seconds"]) == {"features", "network", "decode", "write", "total"}
    assert row["rtf"] > 0 and row["peak_rss_mb"] > 50 and row["frames"] == 150
    assert "3m" not in transcription.format_rows([{**row, "config": "torch", "model": description}])


def test_looped_audio_has_the_wanted_length(tmp_path: Path) -> None:
    dataset = tmp_path / "dataset"
    (dataset / "test").mkdir(parents=True)
    sf.write(str(dataset / "test" / "a.flac"), np.zeros(44100 * 2, np.float32), 44100)
    write_midi(dataset / "test" / "a.midi", Performance([Note(60, 0.1, 0.5, 80)], []))
    (dataset / "maestro-v3.0.0.csv").write_text(
        "split,midi_filename,audio_filename,duration\ntest,test/a.midi,test/a.flac,2.0\n"
    )
    path = transcription.looped_audio(0.1, dataset, folder=tmp_path / "bench")  # 6 s from a 2 s file
    assert sf.info(str(path)).frames == round(0.1 * 60 * 44100)
    assert transcription.looped_audio(0.1, dataset, folder=tmp_path / "bench") == path  # reused


def test_peer_scores_use_mir_eval_note_level(tmp_path: Path) -> None:
    midi = tmp_path / "ref.midi"
    write_midi(midi, Performance([Note(60, 1.0, 1.5, 80), Note(64, 2.0, 2.5, 70)], []))

    class Record:
        audio_path, midi_path = tmp_path / "a.flac", midi

    outputs = [{"path": str(tmp_path / "a.flac"), "duration": 10.0, "seconds": 0.5, "notes": [[1.01, 1.5, 60, 80]]}]
    row = peers.score([Record()], outputs)
    assert row["note_precision"] == 1.0 and row["note_recall"] == 0.5
    assert row["rtf"] == pytest.approx(20.0)
    table = peers.format_rows([{**row, "system": "x", "kind": "madmom"}])
    assert "n/a" in table  # no velocity from this peer
