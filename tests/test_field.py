"""The field test end to end: a small field corpus rendered, transcribed with the bundled model and scored."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from pianomtl.synthesis import corpus, sources


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pianomtl.cli", *args], capture_output=True, text=True, timeout=600)


def test_a_missing_corpus_is_one_line(tmp_path):
    result = _run("field-test", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "nowhere" in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(not sources.has_midi(), reason="the MAESTRO MIDI are fetched by scripts/setup.sh")
def test_field_corpus_rendered_transcribed_and_scored(tmp_path):
    out = tmp_path / "field"
    config = corpus.Config(seed=3, test_minutes=1.0, valid_minutes=0.0, field=True)
    summary = corpus.synthesize(out, config, workers=1, progress=False)
    assert summary["complete"] == summary["items"] > 0
    with open(out / corpus.CSV_NAME, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "test"]
    pedal_free = sum(r["pedal_free"] == "1" for r in rows)
    assert pedal_free and {r["timbre"] for r in rows} <= set(corpus.FIELD_TIMBRES)
    report_path = tmp_path / "report.json"
    result = _run("field-test", str(out), "--json", str(report_path))
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())
    overall = report["all"]
    assert overall["recordings"] == len(rows)
    assert overall["pedal_free_with_pedal"].endswith(f"/{pedal_free}")
    assert 0.3 < overall["note"] <= 1.0 and 0.0 < overall["frame"] <= 1.0  # the bundled model finds most notes
    assert set(report["by_piano"]) == {r["timbre"] for r in rows}
    assert "| all |" in result.stdout
