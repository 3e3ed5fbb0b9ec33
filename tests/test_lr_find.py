"""The learning-rate range test: schedule, smoothing, suggestion, and a real run's outputs."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pianomtl import cli
from pianomtl.train.lr_find import RangeTest, Smoother, exponential_rate, save


def test_exponential_schedule_spans_start_to_end() -> None:
    rates = [exponential_rate(i, 1e-8, 10.0, 91) for i in range(91)]
    assert rates[0] == pytest.approx(1e-8) and rates[-1] == pytest.approx(10.0)
    ratios = np.array(rates[1:]) / np.array(rates[:-1])
    assert np.allclose(ratios, ratios[0])  # a constant factor per step
    assert ratios[0] == pytest.approx(10 ** (9 / 90))


def test_smoother_is_bias_corrected() -> None:
    smoother = Smoother(0.98)
    assert [smoother(2.0) for _ in range(5)] == pytest.approx([2.0] * 5)  # no pull towards 0 at the start


def test_suggestion_is_the_minimum_rate_over_ten() -> None:
    lrs = list(np.logspace(-6, 0, 61))
    losses = [1.0 + (math.log10(lr) + 2) ** 2 for lr in lrs]  # minimum at 1e-2
    curve = RangeTest(lrs=lrs, losses=losses, smoothed=losses, task_losses=[{}] * len(lrs))
    assert curve.best_lr == pytest.approx(1e-2)
    assert curve.suggestion == pytest.approx(1e-3)
    curve.smoothed[-1] = math.nan  # a NaN at the end (divergence) is ignored
    assert curve.suggestion == pytest.approx(1e-3)
    assert math.isnan(RangeTest().suggestion)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_range_test_writes_curve_plot_and_suggestion(cache: Path, tmp_path: Path, capsys, optimizer: str) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "lr"
    code = cli.main(
        [
            "lr-find", "--cache", str(cache), "--out", str(out), "--model", "hard",
            "--batch-size", "2", "--sequence-frames", "12", "--threads", "1",
            "--start", "1e-4", "--end", "1e3", "--steps", "30", "--smoothing", "0.7", "--optimizer", optimizer,
        ]
    )  # fmt: skip
    assert code == 0
    summary = json.loads((out / "lr_find.json").read_text())
    assert 1e-5 <= summary["suggested_lr"] <= 1e2
    assert summary["optimizer"] == optimizer
    assert summary["suggested_lr"] == pytest.approx(summary["min_loss_lr"] / 10)
    # 1e3 is far beyond stable: the test stops early, by the 4×-minimum rule or a NaN loss
    assert summary["stop_reason"] in ("diverged", "nan") and summary["steps_run"] < 30
    with (out / "lr_find.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == summary["steps_run"]
    assert set(rows[0]) >= {"step", "lr", "loss", "smoothed", "on", "sus"}
    rates = [float(r["lr"]) for r in rows]
    assert rates[0] == pytest.approx(1e-4) and rates == sorted(rates)
    png = (out / "lr_find.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "suggested learning rate" in capsys.readouterr().out


def test_save_handles_a_curve_that_ends_in_nan(tmp_path: Path) -> None:
    curve = RangeTest(
        lrs=[1e-3, 1e-2, 1e-1], losses=[2.0, 1.5, math.nan], smoothed=[2.0, 1.7, math.nan], task_losses=[{}] * 3
    )
    curve.task_losses = [dict.fromkeys(("on", "int", "off", "vel", "sus"), 0.1)] * 3
    paths = save(curve, tmp_path)
    assert all(p.exists() for p in paths.values())
    assert json.loads(paths["json"].read_text())["suggested_lr"] == pytest.approx(1e-3)
