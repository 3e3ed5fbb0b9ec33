"""Sweeps: grid expansion, the paper's configs, seeds, tables, resumability, α plots, learning curves."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pianomtl import cli
from pianomtl.constants import TASKS
from pianomtl.core.files import write_json_atomic
from pianomtl.models.registry import ModelConfig, build_model
from pianomtl.train import loop
from pianomtl.train.sweep import SweepError, expand, load_sweep, run_sweep
from pianomtl.train.tables import (
    NO_SCORE,
    PENDING,
    UNSTABLE,
    UNTRAINED_TASK,
    build_tables,
    learning_curves,
    plot_all_alphas,
    plot_learning_curves,
    render_tables,
    tables_markdown,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TABLE_I_LAMBDAS = [(0, 0), (0, 0.01), (0, 0.1), (0.01, 0), (0.01, 0.01), (0.01, 0.1), (0.1, 0), (0.1, 0.01), (0.1, 0.1)]
TABLE_I_LAMBDAS += [(0.5, 0), (1, 0)]
TABLE_III = {  # paper Table III (cross-stitch, η = 0.01): On, Int, Off F1, Vel, Sus R²
    ("detached", "balanced"): [0.8271, 0.7844, 0.4909, 0.7270, 0.1455],
    ("detached", "imbalanced"): [0.8321, 0.7915, 0.5057, 0.7392, 0.1603],
    ("full", "balanced"): [0.8257, 0.8053, 0.5287, 0.7118, 0.1750],
    ("full", "imbalanced"): [0.8265, 0.8016, 0.5240, 0.7223, 0.1741],
}


def fake_result(folder: Path, status: str, scores: list[float] | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    validation = dict(zip(TASKS, scores, strict=True)) if scores else {}
    write_json_atomic(folder / "result.json", {"status": status, "validation": validation})


def test_paper_hard_config_is_table_i_and_ii(tmp_path: Path) -> None:
    settings = expand(load_sweep(CONFIGS / "paper_hard.json"), cache="c", out=str(tmp_path))
    assert len(settings) == 22 and len({s.name for s in settings}) == 22
    tables = build_tables(settings)
    assert [(t.family, t.lr) for t in tables] == [("hard", 0.01), ("hard", 0.05)]
    for table in tables:
        assert table.key_columns == ["λ_vel", "λ_sus"]
        assert [(s["setting"].values["lambda_vel"], s["setting"].values["lambda_sus"]) for s in table.rows] == (
            TABLE_I_LAMBDAS
        )
        assert all(s["setting"].config.lambdas["on"] == 1 for s in table.rows)
    assert "(cf. paper Table I)" in tables[0].title and "(cf. paper Table II)" in tables[1].title
    assert settings[4].name == "hard_lr0.01_vel0.01_sus0.01"
    assert settings[4].folder == tmp_path / "hard_lr0.01_vel0.01_sus0.01"


def test_paper_cross_stitch_config_is_table_iii_and_iv(tmp_path: Path) -> None:
    settings = expand(load_sweep(CONFIGS / "paper_cross_stitch.json"), cache="c", out=str(tmp_path))
    assert len(settings) == 8
    for setting in settings:
        assert setting.config.lambdas == dict.fromkeys(TASKS, 1.0)
        assert ModelConfig.from_dict(setting.config.model).name == "cross-stitch"
    table = build_tables(settings)[0]
    assert table.key_columns == ["Type", "Init"]
    assert [row["keys"] for row in table.rows] == [["Det", "Bal"], ["Det", "Imb"], ["Full", "Bal"], ["Full", "Imb"]]
    assert settings[0].name == "cross-stitch_detached_balanced_lr0.01"


def test_small_config_expands(tmp_path: Path) -> None:
    settings = expand(load_sweep(CONFIGS / "small.json"), cache="c", out=str(tmp_path))
    assert [s.family for s in settings] == ["hard"] * 3 + ["cross-stitch"] * 2
    assert all(s.config.threads == 1 for s in settings)


def test_every_shipped_config_expands(tmp_path: Path) -> None:
    """A typo in a committed sweep file (an unknown key, a bad value) fails here, not hours into a grid."""
    for path in sorted(CONFIGS.glob("*.json")):
        settings = expand(load_sweep(path), cache="c", out=str(tmp_path))
        assert settings and len({s.name for s in settings}) == len(settings), path.name


def test_sgd_config_measures_the_papers_optimiser_on_rows_1_and_6(tmp_path: Path) -> None:
    settings = expand(load_sweep(CONFIGS / "cpu_compact_4000_sgd.json"), cache="c", out=str(tmp_path))
    assert {s.config.optimizer for s in settings} == {"sgd"} and {s.config.steps for s in settings} == {4000}
    assert [(s.values["lr"], s.values["lambda_vel"], s.values["lambda_sus"]) for s in settings] == [
        (0.0009, 0, 0), (0.0009, 1, 1), (0.009, 0, 0), (0.009, 1, 1)
    ]  # fmt: skip
    assert all(len(s.folders) == 2 for s in settings)  # two seeds each


def test_tables_separate_optimisers_and_name_them(tmp_path: Path) -> None:
    spec = {
        "cache": "c",
        "out": str(tmp_path),
        "fixed": {"model": "hard", "lr": 0.01},
        "grid": {"optimizer": ["adam", "sgd"]},
    }
    tables = build_tables(expand(spec))
    titles = ["Hard sharing, SGD η = 0.01 (cf. paper Table I)", "Hard sharing, Adam η = 0.01"]
    assert [t.title for t in tables] == titles
    assert [len(t.rows) for t in tables] == [1, 1]


def test_a_column_tied_everywhere_has_no_bold_best(tmp_path: Path) -> None:
    fixed = {"model": "hard", "lr": 0.01}
    settings = expand({"cache": "c", "out": str(tmp_path), "fixed": fixed, "grid": {"lambda_vel": [0.1, 1]}})
    for setting, velocity in zip(settings, (0.2, 0.4), strict=True):  # SGD stuck at the prior: every F1 is 0
        fake_result(setting.folder, "finished", [0.0, 0.0, 0.0, velocity, 0.1])
    markdown = tables_markdown(build_tables(settings))
    assert "| 1 | 0.1 | 1 | 0.0000 | 0.0000 | 0.0000 | 0.2000 | 0.1000 |" in markdown
    assert "| 2 | 1 | 1 | 0.0000 | 0.0000 | 0.0000 | **0.4000** | 0.1000 |" in markdown


def test_tables_reproduce_the_papers_mean_and_std(tmp_path: Path) -> None:
    spec = {
        "cache": "c",
        "out": str(tmp_path),
        "fixed": {"model": "cross-stitch", "lr": 0.01},
        "grid": {"gradient": ["detached", "full"], "init": ["balanced", "imbalanced"]},
    }
    settings = expand(spec)
    for setting in settings:
        fake_result(setting.folder, "finished", TABLE_III[(setting.values["gradient"], setting.values["init"])])
    paths = render_tables(settings, tmp_path)
    markdown = paths["md"].read_text()
    paper = {"mean": [0.8278, 0.7957, 0.5123, 0.7251, 0.1637], "std": [0.0025, 0.0082, 0.0151, 0.0098, 0.0120]}
    for label, expected in paper.items():  # population std; the paper rounded from unrounded scores
        line = next(line for line in markdown.splitlines() if f"| {label} |" in line)
        values = [float(v) for v in line.strip("| ").split("|")[-5:]]
        assert values == pytest.approx(expected, abs=1.5e-4), label
    assert "| 2 | Det | Imb | **0.8321** |" in markdown  # best of each column in bold
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [r["row"] for r in rows] == ["1", "2", "3", "4", "mean", "std"]
    assert float(rows[0]["on_f1"]) == pytest.approx(0.8271)


def test_tables_mark_unstable_untrained_and_pending(tmp_path: Path) -> None:
    spec = {
        "cache": "c",
        "out": str(tmp_path),
        "grid": {"model": ["hard"], "lr": [0.01]},
        "combos": [
            {"lambda_vel": 0, "lambda_sus": 0},
            {"lambda_vel": 0.1, "lambda_sus": 0.01},
            {"lambda_vel": 1, "lambda_sus": 0.1},
            {"lambda_vel": 0.5, "lambda_sus": 0},
        ],
    }
    settings = expand(spec)
    fake_result(settings[0].folder, "finished", [0.8, 0.7, 0.5, 0.3, 0.2])
    fake_result(settings[1].folder, "finished", [0.9, 0.8, 0.6, 0.5, 0.1])
    fake_result(settings[2].folder, "unstable")
    table = build_tables(settings)[0]
    cells = [row["cells"] for row in table.rows]
    assert cells[0]["vel"] == UNTRAINED_TASK and cells[0]["sus"] == UNTRAINED_TASK  # λ = 0: nothing to report
    assert cells[0]["on"] == 0.8
    assert all(cells[2][t] == UNSTABLE for t in TASKS)
    assert cells[3]["on"] == PENDING and cells[3]["sus"] == UNTRAINED_TASK
    stats = table.statistics()
    assert stats["mean"]["on"] == pytest.approx(0.85) and stats["std"]["on"] == pytest.approx(0.05)
    assert stats["mean"]["vel"] == pytest.approx(0.5)  # only the row that trained vel
    markdown = render_tables(settings, tmp_path)["md"].read_text()
    assert f"| 3 | 1 | 0.1 | {' | '.join([UNSTABLE] * 5)} |" in markdown


def test_bad_sweep_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="unknown keys"):
        expand({"cache": "c", "out": "o", "fixed": {"lr": 0.1, "learning_rate": 1}})
    with pytest.raises(SweepError, match="learning rate"):
        expand({"cache": "c", "out": "o", "grid": {"model": ["hard"]}})
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    assert cli.main(["sweep", str(bad)]) == 2


def test_toml_sweep_and_list(tmp_path: Path, capsys) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        f'cache = "c"\nout = "{tmp_path / "runs"}"\n[fixed]\nlr = 0.05\n[grid]\nmodel = ["hard", "cross-stitch"]\n'
        'gradient = ["full", "detached"]\n'
    )
    assert cli.main(["sweep", str(path), "--list"]) == 0
    listed = capsys.readouterr().out.split("\n")
    # hard ignores the gradient axis: 1 + 2 settings
    assert [line.split()[-1] for line in listed if line] == [
        "hard_lr0.05_vel1_sus1",
        "cross-stitch_full_imbalanced_lr0.05",
        "cross-stitch_detached_imbalanced_lr0.05",
    ]


def test_sweep_skips_finished_runs_and_retrains_a_deleted_one(cache: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    spec = {
        "cache": str(cache),
        "out": str(tmp_path / "runs"),
        "fixed": {
            "model": "hard", "batch_size": 2, "sequence_frames": 12, "steps": 2, "validate_every": 2,
            "checkpoint_every": 2, "validation_frames": 150, "threads": 1, "restarts": 0,
        },
        "grid": {"lr": [0.01, 1e6]},
    }  # fmt: skip
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(spec))
    assert cli.main(["sweep", str(path)]) == 0
    settings = expand(spec)
    stable, exploding = settings
    results = {s.name: json.loads((s.folder / "result.json").read_text()) for s in settings}
    assert results[stable.name]["status"] == "finished"
    assert results[exploding.name]["status"] == "unstable"
    markdown = (tmp_path / "runs" / "tables.md").read_text()
    assert f"| 1 | 1 | 1 | {' | '.join([UNSTABLE] * 5)} |" in markdown  # the η = 1e6 table
    manifest = json.loads((tmp_path / "runs" / "sweep.json").read_text())
    assert [s["status"] for s in manifest["settings"]] == ["finished", "unstable"]

    unstable_stamp = (exploding.folder / "result.json").stat().st_mtime_ns
    for item in stable.folder.iterdir():  # delete one run entirely
        if item.is_file():
            item.unlink()
    summary = run_sweep(settings, tmp_path / "runs")
    assert summary == {
        "trained": [stable.name], "skipped": [exploding.name], "failed": {}, "resumed": [], "extended": []
    }  # fmt: skip
    assert (exploding.folder / "result.json").stat().st_mtime_ns == unstable_stamp
    retrained = json.loads((stable.folder / "result.json").read_text())
    assert retrained["status"] == "finished"
    for task in TASKS:  # same seed, same data: the same run again
        assert np.isclose(retrained["validation"][task], results[stable.name]["validation"][task], equal_nan=True)

    # a third time: nothing to do
    assert run_sweep(settings, tmp_path / "runs")["trained"] == []


def test_plot_alphas_of_cross_stitch_runs(tmp_path: Path) -> None:
    spec = {"cache": "c", "out": str(tmp_path), "fixed": {"lr": 0.01}, "grid": {"model": ["hard", "cross-stitch"]}}
    settings = expand(spec)
    for setting in settings:
        model = build_model(ModelConfig.from_dict(setting.config.model))
        setting.folder.mkdir(parents=True)
        torch.save(
            {"model_config": setting.config.model, "model": model.state_dict(), "step": 0},
            setting.folder / "checkpoint.pt",
        )
    written = plot_all_alphas(settings, tmp_path)
    assert written == [tmp_path / "alphas" / f"{settings[1].name}.png"]
    assert written[0].read_bytes()[:4] == b"\x89PNG"


def test_only_trains_the_chosen_settings_and_their_alphas_outlive_the_checkpoints(
    cache: Path, tmp_path: Path, capsys
) -> None:
    """A grid finished across machines that keep only the repository: ``--only`` picks rows, α live in result.json."""
    torch.set_num_threads(1)
    spec = {
        "cache": str(cache),
        "out": str(tmp_path / "runs"),
        "fixed": {
            "lr": 0.01, "batch_size": 2, "sequence_frames": 12, "steps": 2, "validate_every": 2, "small": 4,
            "large": 8, "checkpoint_every": 2, "validation_frames": 150, "threads": 1, "restarts": 0,
        },
        "grid": {"model": ["hard", "cross-stitch"]},
    }  # fmt: skip
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(spec))
    assert cli.main(["sweep", str(path), "--only", "no-such-row"]) == 2
    assert "no setting of" in capsys.readouterr().err
    assert cli.main(["sweep", str(path), "--only", "cross-stitch"]) == 0
    hard, stitched = expand(spec)
    assert not (hard.folder / "result.json").exists()  # not chosen: not trained, shown pending
    assert f"| {PENDING} |" in (tmp_path / "runs" / "tables.md").read_text()
    manifest = json.loads((tmp_path / "runs" / "sweep.json").read_text())  # the whole grid, not the chosen rows
    assert [row["status"] for row in manifest["settings"]] == ["pending", "finished"]
    result = json.loads((stitched.folder / "result.json").read_text())
    assert result["status"] == "finished"
    alphas = np.asarray(result["alphas"])
    assert alphas.shape == (5, len(TASKS), len(TASKS))  # four stem units and the head's
    (stitched.folder / "checkpoint.pt").unlink()  # what a clone of the repository has: no weights
    (stitched.folder / "best.pt").unlink(missing_ok=True)
    assert plot_all_alphas([hard, stitched], tmp_path) == [tmp_path / "alphas" / f"{stitched.name}.png"]


def fake_log(folder: Path, rows: list[tuple[int, list[float] | None]]) -> None:
    """A run's log.csv as training writes it: validation columns filled only on validated rows."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["step,lr,loss," + ",".join(TASKS) + ",frames_per_s," + ",".join(f"val_{t}" for t in TASKS)]
    for step, scores in rows:
        validation = ",".join(str(v) for v in scores) if scores else "," * (len(TASKS) - 1)
        lines.append(f"{step},0.01,0.5,{','.join(['0.1'] * len(TASKS))},100,{validation}")
    (folder / "log.csv").write_text("\n".join(lines) + "\n")


def test_learning_curves_of_every_row_on_one_figure(tmp_path: Path, capsys) -> None:
    spec = {
        "cache": "c",
        "out": str(tmp_path),
        "fixed": {"model": "hard", "lr": 0.01},
        "combos": [{"lambda_vel": 0, "lambda_sus": 0}, {"lambda_vel": 0.1, "lambda_sus": 0}],
        "seeds": 2,
    }
    simplest, with_velocity = expand(spec)
    fake_log(simplest.folders[0], [(50, None), (100, [0.5, 0.4, 0.1, 9.0, 9.0]), (200, [0.7, 0.6, 0.3, 9.0, 9.0])])
    # seed 1 was interrupted and resumed: step 100 logged twice, the later row counts
    fake_log(simplest.folders[1], [(100, [0.1, 0.1, 0.1, 9.0, 9.0]), (100, [0.7, 0.6, 0.3, 9.0, 9.0])])
    fake_log(with_velocity.folders[0], [(100, [0.6, 0.5, 0.2, 0.3, float("nan")])])  # seed 1 not started
    curves = learning_curves([simplest, with_velocity])
    assert [c["label"] for c in curves] == ["hard λ_vel=0 λ_sus=0", "hard λ_vel=0.1 λ_sus=0"]
    first = curves[0]["points"]
    assert [p["step"] for p in first] == [100, 200]
    assert first[0]["int"] == pytest.approx((0.5, 0.4, 0.6, 2))  # mean, min, max, seeds
    assert first[1]["on"] == pytest.approx((0.7, 0.7, 0.7, 1))
    assert "vel" not in first[0] and "sus" not in first[0]  # λ = 0: not trained, not drawn
    assert curves[1]["points"][0]["vel"] == pytest.approx((0.3, 0.3, 0.3, 1)) and "sus" not in curves[1]["points"][0]

    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(spec))
    assert cli.main(["sweep", str(path), "--tables-only", "--plot-curves"]) == 0
    assert f"wrote {tmp_path / 'curves.png'}" in capsys.readouterr().err
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader((tmp_path / "curves.csv").open()))
    assert len(rows) == 3 + 3 + 4  # (on, int, off) × 2 updates, then on/int/off/vel at one
    assert rows[0] == {"setting": "hard λ_vel=0 λ_sus=0", "step": "100", "task": "on", "mean": "0.600000",
                       "min": "0.500000", "max": "0.700000", "seeds": "2"}  # fmt: skip


def test_curves_of_an_earlier_render_are_drawn_beside_the_live_runs(tmp_path: Path, capsys) -> None:
    """--curves-from: rows whose run folders are gone (another machine) come back from their curves.csv."""
    spec = {
        "cache": "c",
        "out": str(tmp_path / "then"),
        "fixed": {"model": "hard", "lr": 0.01},
        "combos": [{"lambda_vel": 0, "lambda_sus": 0}, {"lambda_vel": 0.1, "lambda_sus": 0}],
    }
    simplest, with_velocity = expand(spec)
    fake_log(simplest.folder, [(100, [0.5, 0.4, 0.1, 9.0, 9.0]), (200, [0.7, 0.6, 0.3, 9.0, 9.0])])
    fake_log(with_velocity.folder, [(100, [0.1, 0.1, 0.1, 0.2, 9.0])])
    earlier = tmp_path / "earlier.csv"
    assert plot_learning_curves(expand(spec), spec["out"]) is not None
    (tmp_path / "then" / "curves.csv").rename(earlier)
    # later, elsewhere: only the second row's logs exist, with new numbers
    spec["out"] = str(tmp_path / "now")
    fake_log(expand(spec)[1].folder, [(100, [0.2, 0.2, 0.2, 0.3, 9.0])])
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(spec))
    assert cli.main(["sweep", str(path), "--tables-only", "--plot-curves", "--curves-from", str(earlier)]) == 0
    rows = list(csv.DictReader((tmp_path / "now" / "curves.csv").open()))
    by_setting = {(r["setting"], r["step"], r["task"]): float(r["mean"]) for r in rows}
    assert by_setting[("hard λ_vel=0.1 λ_sus=0", "100", "vel")] == 0.3  # the live run wins over the earlier 0.2
    assert by_setting[("hard λ_vel=0 λ_sus=0", "200", "int")] == 0.6  # drawn from the earlier render alone
    assert len(rows) == 4 + 3 * 2
    earlier.write_text("not,a\ncurves,table\n")
    assert cli.main(["sweep", str(path), "--tables-only", "--plot-curves", "--curves-from", str(earlier)]) == 2
    assert f"{earlier}: not a curves.csv" in capsys.readouterr().err


def test_pool_workers_end_when_their_sweep_is_killed(tmp_path: Path) -> None:
    """A sweep process killed on its own takes its workers with it (they would train on unseen)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "sweep_parent.py"
    script.write_text(
        "import multiprocessing, os, sys, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from pianomtl.train.sweep import exit_with_parent\n"
        "if __name__ == '__main__':\n"
        "    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn'),\n"
        "                               initializer=exit_with_parent, initargs=(os.getpid(), 0.1))\n"
        "    print(pool.submit(os.getpid).result(), flush=True)\n"
        "    pool.submit(time.sleep, 60)\n"
        "    time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    worker = int(parent.stdout.readline())
    os.kill(worker, 0)  # alive while the sweep is
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    pytest.fail("the pool worker outlived its sweep")


@pytest.mark.slow
def test_parallel_sweep(cache: Path, tmp_path: Path) -> None:
    spec = {
        "cache": str(cache),
        "out": str(tmp_path / "runs"),
        "fixed": {"model": "hard", "batch_size": 2, "sequence_frames": 12, "steps": 2, "threads": 1},
        "grid": {"lr": [0.01, 0.02]},
    }
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(spec))
    assert cli.main(["sweep", str(path), "--jobs", "2"]) == 0
    for setting in expand(spec):
        assert json.loads((setting.folder / "result.json").read_text())["status"] == "finished"


def test_seeds_repeat_every_setting_in_its_own_folder(tmp_path: Path, capsys) -> None:
    spec = {"cache": "c", "out": str(tmp_path), "fixed": {"lr": 0.01, "seed": 3}, "grid": {"model": ["hard"]}}
    (setting,) = expand(spec)
    assert setting.seeds == [3] and setting.folders == [tmp_path / "hard_lr0.01_vel1_sus1"]
    (setting,) = expand({**spec, "seeds": 2})
    # the setting's own seed keeps the plain folder: a one-seed grid keeps its runs when seeds are added
    assert setting.seeds == [3, 4]
    assert setting.folders == [tmp_path / "hard_lr0.01_vel1_sus1", tmp_path / "hard_lr0.01_vel1_sus1_seed4"]
    assert [c.seed for c in setting.configs] == [3, 4] and setting.config.out == str(setting.folders[0])
    (setting,) = expand({**spec, "seeds": [7, 3]}, seeds=None)
    assert [f.name for f in setting.folders] == ["hard_lr0.01_vel1_sus1_seed7", "hard_lr0.01_vel1_sus1"]
    assert expand({**spec, "seeds": [7, 3]}, seeds=1)[0].seeds == [3]  # --seeds overrides the file
    for bad in (0, [], [1, 1], "2", True):
        with pytest.raises(SweepError, match="seeds"):
            expand({**spec, "seeds": bad})
    path = tmp_path / "s.json"
    path.write_text(json.dumps(spec))
    assert cli.main(["sweep", str(path), "--seeds", "2", "--list"]) == 0
    listed = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert listed == [["pending", "hard_lr0.01_vel1_sus1"], ["pending", "hard_lr0.01_vel1_sus1_seed4"]]
    assert cli.main(["sweep", str(path), "--seeds", "0", "--list"]) == 2


def test_tables_report_mean_and_half_range_over_seeds(tmp_path: Path) -> None:
    spec = {
        "cache": "c",
        "out": str(tmp_path),
        "fixed": {"model": "hard", "lr": 0.01},
        "combos": [{"lambda_vel": 0.1}, {"lambda_vel": 0.5}, {"lambda_vel": 1}, {"lambda_vel": 0}],
        "seeds": 2,
    }
    both, one, mixed, untried = expand(spec)
    fake_result(both.folders[0], "finished", [0.80, 0.70, 0.50, 0.30, 0.20])
    fake_result(both.folders[1], "finished", [0.90, 0.60, 0.50, float("nan"), 0.10])
    fake_result(one.folders[0], "finished", [0.60, 0.60, 0.40, 0.20, 0.10])  # seed 1 not run yet
    fake_result(mixed.folders[0], "unstable")
    fake_result(mixed.folders[1], "finished", [0.70, 0.50, 0.30, 0.10, 0.05])
    table = build_tables([both, one, mixed, untried])[0]
    rows = table.rows
    assert rows[0]["cells"]["on"] == pytest.approx(0.85) and rows[0]["spread"]["on"] == pytest.approx(0.05)
    assert rows[0]["cells"]["vel"] == pytest.approx(0.30) and np.isnan(rows[0]["spread"]["vel"])  # one finite score
    assert rows[1]["cells"]["on"] == pytest.approx(0.60) and np.isnan(rows[1]["spread"]["on"])
    assert [r["status"] for r in rows] == ["finished", "partial", "partial", "pending"]
    assert rows[2]["seeds"] == {"finished": 1, "unstable": 1, "total": 2}
    assert rows[3]["cells"]["on"] == PENDING and rows[3]["cells"]["vel"] == UNTRAINED_TASK
    assert table.statistics()["mean"]["on"] == pytest.approx((0.85 + 0.60 + 0.70) / 3)  # over settings' means

    paths = render_tables([both, one, mixed, untried], tmp_path)
    markdown = paths["md"].read_text()
    assert "| # | λ_vel | λ_sus | Seeds | On F1 |" in markdown
    assert "| 1 | 0.1 | 1 | 2 | **0.8500 ± 0.0500** | **0.6500 ± 0.0500** | **0.5000 ± 0.0000** | **0.3000** |" in (
        markdown
    )
    assert "| 2 | 0.5 | 1 | 1/2 | 0.6000 |" in markdown
    assert f"| 3 | 1 | 1 | 1/2 (1 {UNSTABLE}) | 0.7000 |" in markdown
    assert f"| 4 | 0 | 1 | 0/2 | {PENDING} | {PENDING} | {PENDING} | {UNTRAINED_TASK} | {PENDING} |" in markdown
    assert "half their range" in markdown and f"`{NO_SCORE}`" in markdown  # the legend says what ± means
    csv_rows = list(csv.DictReader(paths["csv"].open()))
    assert [r["row"] for r in csv_rows] == ["1", "2", "3", "4", "mean", "std"]
    assert float(csv_rows[0]["on_f1"]) == pytest.approx(0.85)
    assert float(csv_rows[0]["on_f1_spread"]) == pytest.approx(0.05)
    assert csv_rows[1]["on_f1_spread"] == ""
    assert (csv_rows[1]["seeds_finished"], csv_rows[1]["seeds_total"]) == ("1", "2")
    assert csv_rows[0]["run"] == "hard_lr0.01_vel0.1_sus1;hard_lr0.01_vel0.1_sus1_seed1"


def test_an_interrupted_grid_resumes_across_sittings(cache: Path, tmp_path: Path, monkeypatch) -> None:
    """Sitting 1 is killed inside the second run; sitting 2 finishes it from its checkpoint
    without retraining the first; sitting 3 adds a seed and a longer budget (extends the finished run)."""
    torch.set_num_threads(1)
    spec = {
        "cache": str(cache),
        "out": str(tmp_path / "runs"),
        "fixed": {
            "model": "hard", "batch_size": 2, "sequence_frames": 12, "steps": 4, "validate_every": 2,
            "checkpoint_every": 2, "validation_frames": 150, "threads": 1, "restarts": 0,
        },
        "grid": {"lr": [0.01, 0.005]},  # (η = 0.02 diverges at step 3 on this cache)
    }  # fmt: skip
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(spec))
    first, second = expand(spec)
    steps: list[str] = []  # the run folder of every update trained
    original = loop.Run.train_step
    interrupt_at = [7]  # the 3rd update of the second run (its checkpoint holds step 2)

    def counting(self: loop.Run) -> dict:
        if len(steps) + 1 == interrupt_at[0]:
            raise KeyboardInterrupt
        steps.append(self.out.name)
        return original(self)

    monkeypatch.setattr(loop.Run, "train_step", counting)
    assert cli.main(["sweep", str(path)]) == 130  # interrupted
    assert steps == [first.name] * 4 + [second.name] * 2
    assert (second.folder / "checkpoint.pt").exists() and not (second.folder / "result.json").exists()
    markdown = (tmp_path / "runs" / "tables.md").read_text()  # rendered after the first run
    assert f"| 1 | 1 | 1 | {' | '.join([PENDING] * 5)} |" in markdown  # the η = 0.005 table: not finished
    assert "| 1 | 1 | 1 | 0." in markdown  # the η = 0.01 table: finished

    # sitting 2: the first run is not touched, the second continues from step 2
    first_stamp = (first.folder / "result.json").stat().st_mtime_ns
    first_result = (first.folder / "result.json").read_text()
    steps.clear()
    interrupt_at[0] = -1
    summary = run_sweep(expand(spec), tmp_path / "runs")
    assert summary["skipped"] == [first.name] and summary["trained"] == [second.name]
    assert summary["resumed"] == [second.name] and summary["extended"] == []
    assert steps == [second.name] * 2
    assert (first.folder / "result.json").stat().st_mtime_ns == first_stamp
    assert (first.folder / "result.json").read_text() == first_result
    resumed = json.loads((second.folder / "result.json").read_text())
    assert resumed["status"] == "finished" and resumed["steps"] == 4
    assert run_sweep(expand(spec), tmp_path / "runs")["trained"] == []  # nothing left

    # sitting 3: two seeds of the first setting, six updates: seed 0 extended by 2, seed 1 trained
    spec3 = {**spec, "fixed": {**spec["fixed"], "steps": 6}, "grid": {"lr": [0.01]}, "seeds": 2}
    path.write_text(json.dumps(spec3))
    steps.clear()
    assert cli.main(["sweep", str(path)]) == 0
    (setting,) = expand(spec3)
    assert steps == [first.name] * 2 + [f"{first.name}_seed1"] * 6
    for folder in setting.folders:
        result = json.loads((folder / "result.json").read_text())
        assert result["status"] == "finished" and result["steps"] == 6
    markdown = (tmp_path / "runs" / "tables.md").read_text()
    assert "| # | λ_vel | λ_sus | Seeds |" in markdown and "| 1 | 1 | 1 | 2 | " in markdown and " ± " in markdown
    manifest = json.loads((tmp_path / "runs" / "sweep.json").read_text())
    assert [(r["run"], r["seed"], r["steps"]) for r in manifest["settings"][0]["runs"]] == [
        (first.name, 0, 6),
        (f"{first.name}_seed1", 1, 6),
    ]
