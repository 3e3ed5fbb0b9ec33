"""Grids of training runs and the paper's result tables (Tables I–IV).

A sweep file (JSON, or TOML read with :mod:`tomllib`) names the cache, an output
folder, settings shared by every run, and the grid::

    {
      "cache": "cache/synth",
      "out": "runs/paper_hard",
      "fixed": {"steps": 20000, "batch_size": 8, "restarts": 2},
      "grid": {"model": ["hard"], "lr": [0.01, 0.05]},
      "combos": [{"lambda_vel": 0, "lambda_sus": 0}, {"lambda_vel": 0.01, "lambda_sus": 0.1}]
    }

Keys (in ``fixed``, as ``grid`` axes, or in ``combos``): ``model`` (hard,
cross-stitch), ``gradient`` (full, detached), ``init`` (balanced, imbalanced),
``lambda_on`` … ``lambda_sus`` (task weights λ, default 1), and any field of
:class:`pianomtl.train.loop.TrainConfig` (``lr``, ``steps``, ``batch_size``, ``seed``,
``restarts`` …). The runs are the Cartesian product of the ``grid`` axes, times
the ``combos`` list when given (for grids that are not products, such as the 11 λ
rows of Table I). Each run trains in ``out/<name>``, its name made from its
setting (``hard_lr0.01_vel0.1_sus0.01``, ``cross-stitch_detached_balanced_lr0.05``).

Runs go one after another, or ``--jobs N`` at a time in separate processes. A run
stores ``result.json`` (atomically, by :func:`pianomtl.train.loop.train`) the moment it
ends, so an interrupted sweep loses at most the unfinished runs' progress since
their last checkpoint: running the same command again skips finished and unstable
runs and resumes interrupted ones from ``checkpoint.pt``.

After the runs (and after each one finishes), ``out/tables.md`` and
``out/tables.csv`` hold one table per (model family, learning rate) — the layout of
the paper's Tables I–IV: one row per setting, On/Int/Off F1 and Vel/Sus R² on the
validation split, ``-`` for an unstable setting (diverged after all restarts),
``–`` for a task trained with λ = 0 (the paper prints nothing there), ``…`` for a
run not finished yet, then the mean and (population) standard deviation of each
column over the rows with a value. ``--plot-alphas`` draws each cross-stitch run's
learned α matrices, one heatmap per layer, into ``out/alphas/<name>.png``.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from pianomtl.constants import BINARY_TASKS, TASKS
from pianomtl.core.files import write_json_atomic, write_text_atomic
from pianomtl.train.loop import DEFAULT_LAMBDAS, TrainConfig, train

MODEL_KEYS = ("model", "gradient", "init", "small", "large", "head")
LAMBDA_KEYS = tuple(f"lambda_{t}" for t in TASKS)
TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig) if f.name not in ("cache", "out", "model", "lambdas"))
KNOWN_KEYS = (*MODEL_KEYS, *LAMBDA_KEYS, *TRAIN_KEYS)
DEFAULTS = {
    "model": "hard",
    "gradient": "full",
    "init": "imbalanced",  # ModelConfig's and `pianomtl train`'s default
    "small": None,  # widths: None = the architecture's paper default
    "large": None,
    "head": None,
    **{f"lambda_{t}": v for t, v in DEFAULT_LAMBDAS.items()},
}

# Settings that do not change what a run computes: a finished run is reused when only these differ.
IGNORED_FOR_IDENTITY = ("cache", "out", "threads", "device", "validate_every", "checkpoint_every")

FAMILY_TITLES = {"hard": "Hard sharing", "cross-stitch": "Cross-stitch"}
PAPER_TABLES = {("hard", 0.01): "I", ("hard", 0.05): "II", ("cross-stitch", 0.01): "III", ("cross-stitch", 0.05): "IV"}
TYPE_NAMES = {"detached": "Det", "full": "Full"}
INIT_NAMES = {"balanced": "Bal", "imbalanced": "Imb"}
MEASURE_HEADERS = {"on": "On F1", "int": "Int F1", "off": "Off F1", "vel": "Vel R²", "sus": "Sus R²"}

UNSTABLE = "-"
UNTRAINED_TASK = "–"
PENDING = "…"


class SweepError(ValueError):
    """The sweep file is malformed."""


@dataclass(frozen=True)
class Setting:
    """One point of the grid: its name, its values and the training configuration."""

    name: str
    values: dict
    config: TrainConfig

    @property
    def folder(self) -> Path:
        return Path(self.config.out)

    @property
    def family(self) -> str:
        return self.values["model"]


# -- reading a sweep file and expanding the grid --------------------------------------------


def load_sweep(path: str | Path) -> dict:
    """Read a sweep file (``.json`` or ``.toml``)."""
    path = Path(path)
    text = path.read_bytes()
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                raise SweepError(f"{path}: TOML needs Python 3.11 or later; use JSON") from None
            spec = tomllib.loads(text.decode())
        else:
            spec = json.loads(text)
    except ValueError as error:  # tomllib.TOMLDecodeError and JSONDecodeError are ValueErrors
        raise SweepError(f"{path}: {error}") from None
    if not isinstance(spec, dict):
        raise SweepError(f"{path}: expected an object at the top level")
    return spec


def _format_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def setting_name(values: dict, extra_keys: list[str]) -> str:
    """A folder name that identifies a setting: family, cross-stitch type, lr, λ ≠ 1, other axes."""
    parts = [values["model"]]
    if values["model"] != "hard":
        parts += [values["gradient"], values["init"]]
    parts.append(f"lr{_format_value(values['lr'])}")
    for task in TASKS:
        weight = values[f"lambda_{task}"]
        # hard sharing: λ_vel and λ_sus always named (the axes of Tables I–II)
        if weight != 1 or (values["model"] == "hard" and task in ("vel", "sus")):
            parts.append(f"{task}{_format_value(weight)}")
    for key in extra_keys:
        parts.append(f"{key.replace('_', '-')}{_format_value(values[key])}")
    return "_".join(parts).replace("/", "-")


def expand(spec: dict, cache: str | None = None, out: str | None = None, threads: int | None = None) -> list[Setting]:
    """All settings of a sweep spec, in table order (``cache``/``out``/``threads`` override the spec)."""
    unknown_top = set(spec) - {"cache", "out", "fixed", "grid", "combos", "description", "name"}
    if unknown_top:
        raise SweepError(f"unknown top-level keys: {', '.join(sorted(unknown_top))}")
    cache = cache or spec.get("cache")
    out = out or spec.get("out")
    if not cache or not out:
        raise SweepError("the sweep needs 'cache' and 'out' (in the file or as --cache/--out)")
    fixed = dict(spec.get("fixed", {}))
    grid = dict(spec.get("grid", {}))
    combos = list(spec.get("combos", [{}])) or [{}]
    for source, keys in (("fixed", fixed), ("grid", grid), *(("combos", c) for c in combos)):
        bad = set(keys) - set(KNOWN_KEYS)
        if bad:
            raise SweepError(f"unknown keys in {source}: {', '.join(sorted(bad))} (known: {', '.join(KNOWN_KEYS)})")
    for key, axis in grid.items():
        if not isinstance(axis, list) or not axis:
            raise SweepError(f"grid axis '{key}' must be a non-empty list")
    if "lr" not in fixed and "lr" not in grid and not any("lr" in c for c in combos):
        raise SweepError("no learning rate: give 'lr' in fixed, grid or combos")
    if threads is not None:
        fixed["threads"] = threads

    # keys that vary but are not already part of a name (model type, lr and λ always are)
    varying = [k for k in [*grid, *(k for c in combos for k in c)] if k not in (*MODEL_KEYS, "lr", *LAMBDA_KEYS)]
    extra_keys = list(dict.fromkeys(varying))
    settings: list[Setting] = []
    seen: dict[str, dict] = {}
    for point in itertools.product(*grid.values()):
        for combo in combos:
            values = {**DEFAULTS, **fixed, **dict(zip(grid, point, strict=True)), **combo}
            if values["model"] not in FAMILY_TITLES:
                raise SweepError(f"unknown model '{values['model']}' (hard, cross-stitch)")
            if values["model"] == "hard":  # not used by hard sharing: keep them out of identity and names
                values["gradient"], values["init"] = DEFAULTS["gradient"], DEFAULTS["init"]
            name = setting_name(values, extra_keys)
            if name in seen:
                if seen[name] == values:
                    continue  # e.g. a gradient axis crossed with the hard model
                raise SweepError(f"two settings share the folder name {name}")
            seen[name] = values
            settings.append(Setting(name, values, _train_config(values, cache, str(Path(out) / name))))
    return settings


def _train_config(values: dict, cache: str, out: str) -> TrainConfig:
    from pianomtl.models.registry import ModelConfig

    widths = {k: values.get(k) for k in ("small", "large", "head")}
    if values["model"] == "hard":
        model = ModelConfig(name="hard", **widths)
    else:
        model = ModelConfig(name=values["model"], gradient=values["gradient"], init=values["init"], **widths)
    lambdas = {t: float(values[f"lambda_{t}"]) for t in TASKS}
    options = {k: values[k] for k in TRAIN_KEYS if k in values}
    return TrainConfig(cache=str(cache), out=out, model=model.to_dict(), lambdas=lambdas, **options)


# -- running ------------------------------------------------------------------------------------


def read_result(folder: str | Path) -> dict | None:
    """The ``result.json`` of a run folder, or None when the run has not ended."""
    path = Path(folder) / "result.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def is_done(result: dict | None) -> bool:
    return result is not None and result.get("status") in ("finished", "unstable")


def _identity(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in IGNORED_FOR_IDENTITY}


def config_differences(setting: Setting, result: dict) -> list[str]:
    """Fields in which a stored result's configuration differs from the setting's."""
    stored, wanted = _identity(result.get("config", {})), _identity(asdict(setting.config))
    return sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))


def _train_worker(config: dict) -> dict:
    """Process-pool entry: train one run (resuming), return a short summary."""
    result = train(TrainConfig(**config), resume=True)
    return {"status": result["status"], "validation": result.get("validation", {})}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_sweep(
    settings: list[Setting],
    out: str | Path,
    jobs: int = 1,
    plot_alphas: bool = False,
    title: str = "",
) -> dict:
    """Train every setting that has not ended, re-rendering the tables after each run.

    Returns ``{"trained": [...], "skipped": [...], "failed": {name: error}}``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    todo, skipped = [], []
    for setting in settings:
        result = read_result(setting.folder)
        if is_done(result):
            differences = config_differences(setting, result)
            if differences:
                _log(
                    f"warning: {setting.name} ended with a different {', '.join(differences)}; "
                    "its result is kept (delete the folder to retrain)"
                )
            skipped.append(setting.name)
        else:
            todo.append(setting)
    _log(f"sweep: {len(settings)} settings, {len(skipped)} already done, {len(todo)} to train")
    _write_manifest(settings, out)
    trained: list[str] = []
    failed: dict[str, str] = {}

    def finished(setting: Setting, summary: dict | None, error: BaseException | None) -> None:
        if error is not None:
            failed[setting.name] = f"{type(error).__name__}: {error}"
            _log(f"sweep: {setting.name} failed: {failed[setting.name]}")
        else:
            trained.append(setting.name)
            _log(f"sweep: {setting.name} {summary['status']}")
        render_tables(settings, out, title=title)
        _write_manifest(settings, out)

    if jobs <= 1 or len(todo) <= 1:
        for setting in todo:
            try:
                summary = _train_worker(asdict(setting.config))
            except Exception as error:  # a broken run must not stop the others
                finished(setting, None, error)
            else:
                finished(setting, summary, None)
    else:
        context = multiprocessing.get_context("spawn")  # no forked torch/OpenMP state
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            pending = {pool.submit(_train_worker, asdict(s.config)): s for s in todo}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    setting = pending.pop(future)
                    error = future.exception()
                    finished(setting, None if error else future.result(), error)
    render_tables(settings, out, title=title)
    if plot_alphas:
        for path in plot_all_alphas(settings, out):
            _log(f"sweep: wrote {path}")
    return {"trained": trained, "skipped": skipped, "failed": failed}


def _write_manifest(settings: list[Setting], out: Path) -> None:
    rows = []
    for setting in settings:
        result = read_result(setting.folder)
        rows.append(
            {
                "name": setting.name,
                "values": setting.values,
                "status": result.get("status") if result else "pending",
                "validation": result.get("validation", {}) if result else {},
            }
        )
    write_json_atomic(out / "sweep.json", {"settings": rows})


# -- tables ---------------------------------------------------------------------------------------


@dataclass
class Table:
    """One of the paper-style tables: a model family at one learning rate."""

    family: str
    lr: float
    key_columns: list[str]
    rows: list[dict]  # {"keys": [...], "cells": {task: float | str}, "setting": Setting, "status": str}

    @property
    def title(self) -> str:
        paper = PAPER_TABLES.get((self.family, self.lr))
        suffix = f" (cf. paper Table {paper})" if paper else ""
        return f"{FAMILY_TITLES[self.family]}, η = {_format_value(self.lr)}{suffix}"

    def statistics(self) -> dict[str, dict[str, float]]:
        """Mean and population std of each measure over the rows that have a value."""
        stats: dict[str, dict[str, float]] = {"mean": {}, "std": {}}
        for task in TASKS:
            values = [row["cells"][task] for row in self.rows if isinstance(row["cells"][task], float)]
            values = [v for v in values if math.isfinite(v)]
            stats["mean"][task] = float(np.mean(values)) if values else math.nan
            stats["std"][task] = float(np.std(values)) if values else math.nan
        return stats


def _key_cell(setting: Setting, column: str) -> str:
    if column == "Type":
        return TYPE_NAMES[setting.values["gradient"]]
    if column == "Init":
        return INIT_NAMES[setting.values["init"]]
    if column.startswith("λ_"):
        return _format_value(setting.values[f"lambda_{column[2:]}"])
    return _format_value(setting.values[column])


def _cells(setting: Setting, result: dict | None) -> tuple[str, dict]:
    status = result.get("status", "pending") if result else "pending"
    cells: dict[str, float | str] = {}
    validation = (result or {}).get("validation") or {}
    for task in TASKS:
        if status == "unstable":
            cells[task] = UNSTABLE
        elif setting.values[f"lambda_{task}"] == 0:
            cells[task] = UNTRAINED_TASK
        elif status != "finished":
            cells[task] = PENDING
        else:
            value = validation.get(task)
            cells[task] = float(value) if value is not None else math.nan
    return status, cells


def build_tables(settings: list[Setting]) -> list[Table]:
    """Group settings into tables by (family, lr), in order of first appearance."""
    groups: dict[tuple[str, float], list[Setting]] = {}
    for setting in settings:
        groups.setdefault((setting.family, float(setting.values["lr"])), []).append(setting)
    tables = []
    order = sorted(groups, key=lambda key: (list(FAMILY_TITLES).index(key[0]), key[1]))
    for family, lr in order:
        members = groups[(family, lr)]
        columns = _key_columns(family, members)
        rows = []
        for setting in members:
            status, cells = _cells(setting, read_result(setting.folder))
            keys = [_key_cell(setting, c) for c in columns]
            rows.append({"keys": keys, "cells": cells, "setting": setting, "status": status})
        tables.append(Table(family, lr, columns, rows))
    return tables


def _key_columns(family: str, members: list[Setting]) -> list[str]:
    def varies(key: str) -> bool:
        return len({json.dumps(s.values[key]) for s in members}) > 1

    columns = []
    if family == "cross-stitch":
        columns += ["Type", "Init"]
    for task in TASKS:
        key = f"lambda_{task}"
        always = family == "hard" and task in ("vel", "sus")
        if always or varies(key) or any(s.values[key] != 1 for s in members):
            columns.append(f"λ_{task}")
    other = [k for k in TRAIN_KEYS if k != "lr" and k in members[0].values and varies(k)]
    return columns + other


def _format_cell(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return f"{value:.4f}" if math.isfinite(value) else "n/a"


def tables_markdown(tables: list[Table], title: str = "") -> str:
    """The tables as markdown, best value of each column in bold."""
    lines = [f"# {title or 'Sweep results'}", ""]
    lines.append(
        "Each run's final validation scores (the first `validation_frames` frames of each validation recording; "
        "`pianomtl evaluate` scores whole recordings). "
        f"F1 for on/int/off, R² for vel/sus. `{UNSTABLE}`: unstable (diverged after all "
        f"restarts); `{UNTRAINED_TASK}`: task not trained (λ = 0); `{PENDING}`: not finished. "
        "Mean and std (population) over the rows with a value."
    )
    for table in tables:
        header = ["#", *table.key_columns, *(MEASURE_HEADERS[t] for t in TASKS)]
        lines += ["", f"## {table.title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        best = {}
        for task in TASKS:
            values = [r["cells"][task] for r in table.rows if isinstance(r["cells"][task], float)]
            values = [v for v in values if math.isfinite(v)]
            best[task] = max(values) if len(values) > 1 else None
        for number, row in enumerate(table.rows, 1):
            cells = []
            for task in TASKS:
                text = _format_cell(row["cells"][task])
                if best[task] is not None and row["cells"][task] == best[task]:
                    text = f"**{text}**"
                cells.append(text)
            lines.append("| " + " | ".join([str(number), *row["keys"], *cells]) + " |")
        stats = table.statistics()
        for label in ("mean", "std"):
            # the label goes in the last key column, as in the paper (or in "#" when there is none)
            keys = ["", *[""] * len(table.key_columns)]
            keys[-1] = label
            measures = [_format_cell(stats[label][t]) for t in TASKS]
            lines.append("| " + " | ".join([*keys, *measures]) + " |")
    return "\n".join(lines) + "\n"


def tables_csv(tables: list[Table]) -> str:
    """Every row of every table (and the mean/std rows) as CSV, one line per run."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    measures = [f"{t}_{'f1' if t in BINARY_TASKS else 'r2'}" for t in TASKS]
    writer.writerow(["table", "row", "model", "gradient", "init", "lr", *LAMBDA_KEYS, "status", *measures, "run"])
    for table in tables:
        for number, row in enumerate(table.rows, 1):
            values = row["setting"].values
            hard = values["model"] == "hard"
            model_keys = [values["model"], "" if hard else values["gradient"], "" if hard else values["init"]]
            cells = [f"{v:.6f}" if isinstance(v, float) and math.isfinite(v) else "" for v in row["cells"].values()]
            lambdas = [values[k] for k in LAMBDA_KEYS]
            name = row["setting"].name
            writer.writerow([table.title, number, *model_keys, values["lr"], *lambdas, row["status"], *cells, name])
        for label, stats in table.statistics().items():
            cells = [f"{stats[t]:.6f}" if math.isfinite(stats[t]) else "" for t in TASKS]
            blanks = [""] * len(LAMBDA_KEYS)
            writer.writerow([table.title, label, table.family, "", "", table.lr, *blanks, "", *cells, ""])
    return buffer.getvalue()


def render_tables(settings: list[Setting], out: str | Path, title: str = "") -> dict[str, Path]:
    """Write ``tables.md`` and ``tables.csv`` into ``out`` from the runs' ``result.json``."""
    out = Path(out)
    tables = build_tables(settings)
    paths = {"md": out / "tables.md", "csv": out / "tables.csv"}
    for key, text in (("md", tables_markdown(tables, title)), ("csv", tables_csv(tables))):
        write_text_atomic(paths[key], text)
    return paths


# -- cross-stitch α -----------------------------------------------------------------------------


def plot_alphas(alphas: list, path: str | Path, title: str = "") -> None:
    """Heatmaps of per-layer α matrices (row m: the task whose input is mixed; column m′: the source)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrices = [np.asarray(a.detach().cpu() if hasattr(a, "detach") else a, dtype=np.float64) for a in alphas]
    if not matrices:
        raise ValueError("no α matrices to plot")
    size = matrices[0].shape[0]
    labels = list(TASKS) if size == len(TASKS) else [str(i) for i in range(size)]
    low = min(0.0, min(float(m.min()) for m in matrices))
    high = max(1.0, max(float(m.max()) for m in matrices))
    figure, axes = plt.subplots(1, len(matrices), figsize=(2.6 * len(matrices) + 1.2, 3.2), squeeze=False)
    try:
        image = None
        for layer, (matrix, axis) in enumerate(zip(matrices, axes[0], strict=True)):
            image = axis.imshow(matrix, cmap="viridis", vmin=low, vmax=high)
            axis.set_title(f"layer {layer + 1}", fontsize="small")
            axis.set_xticks(range(size), labels, fontsize="x-small")
            axis.set_yticks(range(size), labels if layer == 0 else [""] * size, fontsize="x-small")
            axis.set_xlabel("from task m′", fontsize="x-small")
            if layer == 0:
                axis.set_ylabel("to task m", fontsize="x-small")
            if size <= 8:
                for i in range(size):
                    for j in range(size):
                        value = matrix[i, j]
                        shade = "black" if value > low + 0.6 * (high - low) else "white"
                        axis.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6, color=shade)
        figure.colorbar(image, ax=list(axes[0]), shrink=0.8)
        figure.suptitle(title or "cross-stitch α", fontsize="small")
        figure.savefig(path, dpi=100, bbox_inches="tight")
    finally:
        plt.close(figure)


def plot_all_alphas(settings: list[Setting], out: str | Path) -> list[Path]:
    """``out/alphas/<name>.png`` for every cross-stitch run that has a checkpoint."""
    from pianomtl.train.evaluate import load_model

    written = []
    for setting in settings:
        checkpoint = setting.folder / "checkpoint.pt"
        if setting.family != "cross-stitch" or not checkpoint.exists():
            continue
        model, info = load_model(checkpoint)
        if not hasattr(model, "alphas"):
            continue
        folder = Path(out) / "alphas"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{setting.name}.png"
        plot_alphas(list(model.alphas()), path, title=f"{setting.name} (step {info.get('step')})")
        written.append(path)
    return written


# -- command line -----------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="sweep file (.json or .toml), e.g. configs/small.json")
    parser.add_argument("--cache", default=None, help="override the sweep file's cache")
    parser.add_argument("--out", default=None, help="override the sweep file's output folder")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at the same time (processes)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads per run (default: the file's, else cores/jobs)"
    )
    parser.add_argument("--list", action="store_true", help="print the settings and their status, train nothing")
    parser.add_argument("--tables-only", action="store_true", help="only render the tables from finished runs")
    parser.add_argument("--plot-alphas", action="store_true", help="heatmaps of each cross-stitch run's α per layer")


def run(args: argparse.Namespace) -> int:
    try:
        spec = load_sweep(args.config)
        threads = args.threads
        if threads is None and args.jobs > 1 and "threads" not in spec.get("fixed", {}):
            threads = max(1, (os.cpu_count() or 1) // args.jobs)
        settings = expand(spec, cache=args.cache, out=args.out, threads=threads)
    except (OSError, SweepError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out or spec["out"])
    title = spec.get("name") or spec.get("description") or Path(args.config).stem
    if args.list:
        for setting in settings:
            result = read_result(setting.folder)
            print(f"{(result or {}).get('status', 'pending'):<10} {setting.name}")
        return 0
    if args.tables_only:
        out.mkdir(parents=True, exist_ok=True)
        paths = render_tables(settings, out, title=title)
        if args.plot_alphas:
            plot_all_alphas(settings, out)
        print(paths["md"].read_text())
        return 0
    started = time.perf_counter()
    summary = run_sweep(settings, out, jobs=args.jobs, plot_alphas=args.plot_alphas, title=title)
    print((out / "tables.md").read_text())
    print(
        f"trained {len(summary['trained'])}, skipped {len(summary['skipped'])}, failed {len(summary['failed'])} "
        f"in {time.perf_counter() - started:.0f} s; tables in {out / 'tables.md'} and {out / 'tables.csv'}"
    )
    return 1 if summary["failed"] else 0
