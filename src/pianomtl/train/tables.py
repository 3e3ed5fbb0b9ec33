"""The paper's result tables (Tables I–IV) and α heat maps, drawn from a sweep's run folders.

:func:`render_tables` writes ``out/tables.md`` and ``out/tables.csv``: one table per
(model family, learning rate) — the layout of the paper's Tables I–IV: one row per
setting, On/Int/Off F1 and Vel/Sus R² on the validation split, then the mean and
(population) standard deviation of each column over the rows with a value. Tables
render from whatever has finished; a cell is marked

- ``-`` for an unstable setting (every seed diverged after all restarts),
- ``–`` for a task trained with λ = 0 (the paper prints nothing there),
- ``…`` for a setting none of whose runs has finished yet,
- ``n/a`` for a task a finished run reported no score for.

A setting run with several seeds (:mod:`pianomtl.train.sweep`'s ``seeds``) shows
``mean ± spread`` over the seeds that finished, the spread being half the range,
(max − min) / 2 — with two seeds the two runs lie exactly at mean ± spread — and a
*Seeds* column counts finished / all seeds (and unstable ones). The tables' mean and
std rows and the bold best value use each setting's mean.

:func:`plot_all_alphas` draws each cross-stitch run's learned α matrices, one heat
map per layer, into ``out/alphas/<run>.png``; :func:`plot_learning_curves` draws every
setting's validation scores against the update, all rows on one figure
(``out/curves.png``, the numbers in ``out/curves.csv``).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pianomtl.constants import BINARY_TASKS, TASKS
from pianomtl.core.files import atomic_write, write_text_atomic
from pianomtl.train.config import OPTIMIZERS
from pianomtl.train.sweep import LAMBDA_KEYS, TRAIN_KEYS, Setting, format_value, read_result

FAMILY_TITLES = {"hard": "Hard sharing", "cross-stitch": "Cross-stitch"}
PAPER_TABLES = {("hard", 0.01): "I", ("hard", 0.05): "II", ("cross-stitch", 0.01): "III", ("cross-stitch", 0.05): "IV"}
TYPE_NAMES = {"detached": "Det", "full": "Full"}
INIT_NAMES = {"balanced": "Bal", "imbalanced": "Imb"}
OPTIMIZER_NAMES = {"sgd": "SGD", "adam": "Adam"}  # a title for each of config.OPTIMIZERS
MEASURE_HEADERS = {"on": "On F1", "int": "Int F1", "off": "Off F1", "vel": "Vel R²", "sus": "Sus R²"}

UNSTABLE = "-"
UNTRAINED_TASK = "–"
PENDING = "…"
NO_SCORE = "n/a"


@dataclass
class Table:
    """One of the paper-style tables: a model family with one optimiser at one learning rate.

    Each row: ``{"keys": [...], "cells": {task: mean | marker}, "spread": {task: float},
    "seeds": {"finished": n, "unstable": n, "total": n}, "setting": Setting, "status": str}``.
    """

    family: str
    lr: float
    key_columns: list[str]
    rows: list[dict]
    optimizer: str = "sgd"

    @property
    def title(self) -> str:
        """Family, optimiser and rate; the paper's table number where the paper trained the same (it used SGD)."""
        paper = PAPER_TABLES.get((self.family, self.lr)) if self.optimizer == "sgd" else None
        suffix = f" (cf. paper Table {paper})" if paper else ""
        optimizer = OPTIMIZER_NAMES[self.optimizer]
        return f"{FAMILY_TITLES[self.family]}, {optimizer} η = {format_value(self.lr)}{suffix}"

    @property
    def seeded(self) -> bool:
        """Whether any setting of the table runs with more than one seed."""
        return any(row["seeds"]["total"] > 1 for row in self.rows)

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
        return format_value(setting.values[f"lambda_{column[2:]}"])
    return format_value(setting.values[column])


def half_range(values: list[float]) -> float:
    """(max − min) / 2 of the finite values; NaN with fewer than two."""
    finite = [v for v in values if math.isfinite(v)]
    return (max(finite) - min(finite)) / 2 if len(finite) > 1 else math.nan


def summarise(setting: Setting) -> dict:
    """A setting's row over its seeds' ``result.json``: status, cells, spreads and seed counts."""
    results = [read_result(folder) for folder in setting.folders]
    statuses = [(result or {}).get("status", "pending") for result in results]
    finished = [result for result, status in zip(results, statuses, strict=True) if status == "finished"]
    counts = {"finished": len(finished), "unstable": statuses.count("unstable"), "total": len(statuses)}
    status = statuses[0] if len(set(statuses)) == 1 else "partial"  # "partial": seeds disagree or are missing
    cells: dict[str, float | str] = {}
    spread: dict[str, float] = {}
    for task in TASKS:
        scores = [(r.get("validation") or {}).get(task) for r in finished]
        scores = [float(v) for v in scores if v is not None]
        spread[task] = half_range(scores)
        if setting.values[f"lambda_{task}"] == 0:
            cells[task] = UNTRAINED_TASK
        elif finished:
            finite = [v for v in scores if math.isfinite(v)]
            cells[task] = float(np.mean(finite)) if finite else math.nan
        else:
            cells[task] = PENDING
    if status == "unstable":  # the paper's "-": nothing to report, not even λ = 0 dashes
        cells = dict.fromkeys(TASKS, UNSTABLE)
    return {"status": status, "cells": cells, "spread": spread, "seeds": counts}


def build_tables(settings: list[Setting]) -> list[Table]:
    """Group settings into tables by (family, optimiser, lr): paper order, SGD before Adam, rates ascending.

    Why the optimiser: a rate means something else for SGD than for Adam, so rows trained
    with different optimisers are never one table (a sweep may hold both).
    """
    groups: dict[tuple[str, str, float], list[Setting]] = {}
    for setting in settings:
        key = (setting.family, setting.config.optimizer, float(setting.values["lr"]))
        groups.setdefault(key, []).append(setting)
    tables = []
    order = sorted(groups, key=lambda key: (list(FAMILY_TITLES).index(key[0]), OPTIMIZERS.index(key[1]), key[2]))
    for family, optimizer, lr in order:
        members = groups[(family, optimizer, lr)]
        columns = _key_columns(family, members)
        rows = []
        for setting in members:
            row = summarise(setting)
            row.update(keys=[_key_cell(setting, c) for c in columns], setting=setting)
            rows.append(row)
        tables.append(Table(family, lr, columns, rows, optimizer))
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


def _format_cell(value: float | str, spread: float = math.nan) -> str:
    if isinstance(value, str):
        return value
    if not math.isfinite(value):
        return NO_SCORE
    return f"{value:.4f} ± {spread:.4f}" if math.isfinite(spread) else f"{value:.4f}"


def _seeds_cell(counts: dict) -> str:
    text = str(counts["total"]) if counts["finished"] == counts["total"] else f"{counts['finished']}/{counts['total']}"
    return text + (f" ({counts['unstable']} {UNSTABLE})" if counts["unstable"] else "")


def tables_markdown(tables: list[Table], title: str = "") -> str:
    """The tables as markdown, best value (of the settings' means) of each column in bold."""
    lines = [f"# {title or 'Sweep results'}", ""]
    legend = (
        "Each run's final validation scores (the first `validation_frames` frames of each validation recording; "
        "`pianomtl evaluate` scores whole recordings). "
        f"F1 for on/int/off, R² for vel/sus. `{UNSTABLE}`: unstable (diverged after all "
        f"restarts); `{UNTRAINED_TASK}`: task not trained (λ = 0); `{PENDING}`: not finished yet; "
        f"`{NO_SCORE}`: no score reported. Mean and std (population) over the rows with a value."
    )
    if any(table.seeded for table in tables):
        legend += (
            " With several seeds, a cell is the mean over the seeds that finished ± half their range "
            "((max − min) / 2); *Seeds*: seeds finished (of all, when some are missing; "
            f"`{UNSTABLE}` counts unstable ones)."
        )
    lines.append(legend)
    for table in tables:
        seeded = table.seeded
        header = ["#", *table.key_columns, *(["Seeds"] if seeded else []), *(MEASURE_HEADERS[t] for t in TASKS)]
        lines += ["", f"## {table.title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        best = {}
        for task in TASKS:
            values = [r["cells"][task] for r in table.rows if isinstance(r["cells"][task], float)]
            values = [v for v in values if math.isfinite(v)]
            best[task] = max(values) if len(set(values)) > 1 else None  # a tie everywhere marks nothing
        for number, row in enumerate(table.rows, 1):
            cells = []
            for task in TASKS:
                text = _format_cell(row["cells"][task], row["spread"][task])
                if best[task] is not None and row["cells"][task] == best[task]:
                    text = f"**{text}**"
                cells.append(text)
            seeds = [_seeds_cell(row["seeds"])] if seeded else []
            lines.append("| " + " | ".join([str(number), *row["keys"], *seeds, *cells]) + " |")
        stats = table.statistics()
        for label in ("mean", "std"):
            # the label goes in the last key column, as in the paper (or in "#" when there is none)
            keys = ["", *[""] * len(table.key_columns)]
            keys[-1] = label
            measures = [_format_cell(stats[label][t]) for t in TASKS]
            lines.append("| " + " | ".join([*keys, *([""] if seeded else []), *measures]) + " |")
    return "\n".join(lines) + "\n"


def tables_csv(tables: list[Table]) -> str:
    """Every row of every table (and the mean/std rows) as CSV, one line per setting.

    A setting's measures are the mean over its finished seeds, ``*_spread`` half their
    range (empty with one seed); ``runs`` names the run folders, ``;``-separated.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    measures = [f"{t}_{'f1' if t in BINARY_TASKS else 'r2'}" for t in TASKS]
    writer.writerow(
        [
            "table", "row", "model", "gradient", "init", "lr", *LAMBDA_KEYS, "status",
            "seeds_finished", "seeds_total", *measures, *(f"{m}_spread" for m in measures), "run",
        ]
    )  # fmt: skip

    def number(value: object) -> str:
        return f"{value:.6f}" if isinstance(value, float) and math.isfinite(value) else ""

    for table in tables:
        for index, row in enumerate(table.rows, 1):
            values = row["setting"].values
            hard = values["model"] == "hard"
            model_keys = [values["model"], "" if hard else values["gradient"], "" if hard else values["init"]]
            cells = [number(row["cells"][t]) for t in TASKS]
            spreads = [number(row["spread"][t]) for t in TASKS]
            lambdas = [values[k] for k in LAMBDA_KEYS]
            seeds = [row["seeds"]["finished"], row["seeds"]["total"]]
            runs = ";".join(folder.name for folder in row["setting"].folders)
            writer.writerow(
                [table.title, index, *model_keys, values["lr"], *lambdas, row["status"], *seeds, *cells, *spreads, runs]
            )
        for label, stats in table.statistics().items():
            cells = [number(stats[t]) for t in TASKS]
            lambdas, spreads = [""] * len(LAMBDA_KEYS), [""] * len(TASKS)
            status_and_seeds = ["", "", ""]
            writer.writerow(
                [table.title, label, table.family, "", "", table.lr, *lambdas, *status_and_seeds, *cells, *spreads, ""]
            )
    return buffer.getvalue()


def render_tables(settings: list[Setting], out: str | Path, title: str = "") -> dict[str, Path]:
    """Write ``tables.md`` and ``tables.csv`` into ``out`` from the runs' ``result.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
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
    """``out/alphas/<run>.png`` for every cross-stitch run (each seed's) with recorded or saved α.

    The α of a finished run come from its ``result.json`` (recorded there so that the
    heat maps outlive the checkpoints: a results folder kept without them still draws);
    an unfinished run's from its latest ``checkpoint.pt``.
    """
    written = []
    for setting in settings:
        if setting.family != "cross-stitch":
            continue
        for folder in setting.folders:
            found = run_alphas(folder)
            if found is None:
                continue
            alphas, step = found
            target = Path(out) / "alphas"
            target.mkdir(parents=True, exist_ok=True)
            path = target / f"{folder.name}.png"
            plot_alphas(alphas, path, title=f"{folder.name} (step {step})")
            written.append(path)
    return written


def run_alphas(folder: Path) -> tuple[list, int | None] | None:
    """A cross-stitch run's α matrices and their update: from ``result.json``, else ``checkpoint.pt``."""
    result = read_result(folder) or {}
    if result.get("alphas"):
        return [np.asarray(alpha) for alpha in result["alphas"]], result.get("steps")
    checkpoint = folder / "checkpoint.pt"
    if not checkpoint.exists():
        return None
    from pianomtl.train.evaluate import load_for_evaluation

    model, info = load_for_evaluation(checkpoint)
    alphas = list(model.alphas())
    return (alphas, info.get("step")) if alphas else None


# -- learning curves ------------------------------------------------------------------------------


def read_curve(folder: str | Path) -> dict[int, dict[str, float]]:
    """``{update: {task: validation score}}`` from a run's ``log.csv`` (rows with a validation)."""
    path = Path(folder) / "log.csv"
    if not path.exists():
        return {}
    curve: dict[int, dict[str, float]] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            scores = {t: float(row[f"val_{t}"]) for t in TASKS if row.get(f"val_{t}") not in (None, "")}
            if scores:
                curve[int(row["step"])] = scores  # a resumed run logs a step again: the last one counts
    return curve


def setting_label(setting: Setting, columns: list[str]) -> str:
    """A row's key cells as a legend entry, e.g. ``hard λ_vel=0.1 λ_sus=0`` or ``cross-stitch Det/Bal``."""
    cells = [f"{c}={_key_cell(setting, c)}" if c.startswith("λ_") else _key_cell(setting, c) for c in columns]
    return " ".join([setting.family, *(["/".join(cells)] if setting.family == "cross-stitch" else cells)])


def learning_curves(settings: list[Setting]) -> list[dict]:
    """Per setting: its label and, per validated update, each task's mean and range over the seeds that logged it."""
    curves = []
    for table in build_tables(settings):
        for row in table.rows:
            setting = row["setting"]
            runs = [read_curve(folder) for folder in setting.folders]
            points = []
            for step in sorted({step for run in runs for step in run}):
                point: dict = {"step": step}
                for task in TASKS:
                    if setting.values[f"lambda_{task}"] == 0:
                        continue
                    values = [
                        run[step][task] for run in runs if step in run and math.isfinite(run[step].get(task, math.nan))
                    ]
                    if values:
                        point[task] = (float(np.mean(values)), min(values), max(values), len(values))
                points.append(point)
            if points:
                curves.append({"label": setting_label(setting, table.key_columns), "points": points})
    return curves


def read_curves_csv(path: str | Path) -> list[dict]:
    """Curves as :func:`learning_curves` returns them, read back from a ``curves.csv`` an earlier render wrote.

    A grid that outlived its run folders (trained on another machine, its logs gone)
    still has its rendered curves; :func:`plot_learning_curves` draws them beside the
    live ones. Raises :class:`ValueError` naming the file when it is not such a table.
    """
    path = Path(path)
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
        by_label: dict[str, dict[int, dict]] = {}
        for row in rows:
            point = by_label.setdefault(row["setting"], {}).setdefault(int(row["step"]), {"step": int(row["step"])})
            point[row["task"]] = (float(row["mean"]), float(row["min"]), float(row["max"]), int(row["seeds"]))
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: not a curves.csv of `pianomtl sweep --plot-curves` ({error})") from None
    return [{"label": label, "points": [points[s] for s in sorted(points)]} for label, points in by_label.items()]


def plot_learning_curves(
    settings: list[Setting], out: str | Path, earlier: list[dict] | None = None
) -> dict[str, Path] | None:
    """``out/curves.png`` (one panel per task, a line per setting: mean over seeds, band = range) and ``curves.csv``.

    ``earlier``: curves from :func:`read_curves_csv`, drawn for the settings that have no
    live run logs here (a setting's own logs win). ``None`` when there is nothing to draw.
    """
    curves = learning_curves(settings)
    live = {curve["label"] for curve in curves}
    curves += [curve for curve in earlier or [] if curve["label"] not in live and curve["points"]]
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["setting,step,task,mean,min,max,seeds"]
    figure, axes = plt.subplots(1, len(TASKS), figsize=(4.0 * len(TASKS), 3.6), squeeze=False)
    try:
        for index, curve in enumerate(curves):
            colour = plt.get_cmap("tab10")(index % 10)
            style = "-" if index < 10 else "--"
            for task, axis in zip(TASKS, axes[0], strict=True):
                points = [(p["step"], *p[task]) for p in curve["points"] if task in p]
                for step, mean, low, high, seeds in points:
                    lines.append(f'"{curve["label"]}",{step},{task},{mean:.6f},{low:.6f},{high:.6f},{seeds}')
                if not points:
                    continue
                steps, means, lows, highs = (np.array(column) for column in list(zip(*points, strict=True))[:4])
                axis.plot(steps, means, style, color=colour, marker=".", label=curve["label"] if task == "on" else None)
                axis.fill_between(steps, lows, highs, color=colour, alpha=0.15, linewidth=0)
        for task, axis in zip(TASKS, axes[0], strict=True):
            axis.set_title(f"validation {MEASURE_HEADERS[task]}", fontsize="small")
            axis.set_xlabel("update", fontsize="small")
            axis.grid(alpha=0.3)
        figure.legend(loc="lower center", ncol=min(len(curves), 4), fontsize="x-small", bbox_to_anchor=(0.5, -0.12))
        figure.tight_layout()
        paths = {"png": out / "curves.png", "csv": out / "curves.csv"}
        atomic_write(paths["png"], lambda target: figure.savefig(target, dpi=100, bbox_inches="tight", format="png"))
        write_text_atomic(paths["csv"], "\n".join(lines) + "\n")
    finally:
        plt.close(figure)
    return paths
