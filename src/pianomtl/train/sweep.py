"""Grids of training runs: read a sweep file, expand its grid, train what has not ended.

A sweep file (JSON, or TOML read with :mod:`tomllib`) names the cache, an output
folder, settings shared by every run, the grid and, optionally, the seeds::

    {
      "cache": "cache/synth",
      "out": "runs/paper_hard",
      "fixed": {"steps": 20000, "batch_size": 8, "restarts": 2},
      "grid": {"model": ["hard"], "lr": [0.01, 0.05]},
      "combos": [{"lambda_vel": 0, "lambda_sus": 0}, {"lambda_vel": 0.01, "lambda_sus": 0.1}],
      "seeds": 2
    }

Keys (in ``fixed``, as ``grid`` axes, or in ``combos``): ``model`` (hard,
cross-stitch), ``gradient`` (full, detached), ``init`` (balanced, imbalanced),
``lambda_on`` … ``lambda_sus`` (task weights λ, default 1), and any field of
:class:`pianomtl.train.config.TrainConfig` (``lr``, ``steps``, ``batch_size``, ``seed``,
``restarts`` …). The settings are the Cartesian product of the ``grid`` axes, times
the ``combos`` list when given (for grids that are not products, such as the 11 λ
rows of Table I). Each setting trains in ``out/<name>``, its name made from its
setting (``hard_lr0.01_vel0.1_sus0.01``, ``cross-stitch_detached_balanced_lr0.05``).

``seeds`` (or ``pianomtl sweep --seeds N``) repeats every setting with several seeds,
so each table cell can report a mean and a spread: ``N`` means the setting's ``seed``
(default 0) and the ``N - 1`` after it, a list names the seeds. The run with the
setting's own ``seed`` stays in ``out/<name>``, every other seed trains in
``out/<name>_seed<S>`` — so a grid that ran with one seed keeps its runs when more
seeds are asked for.

Runs go one after another, or ``jobs`` at a time in separate processes. A run stores
``result.json`` (atomically, by :func:`pianomtl.train.loop.train`) the moment it ends
and ``checkpoint.pt`` every ``checkpoint_every`` updates, so a grid can run across
several sittings: running it again skips finished and unstable runs, resumes an
interrupted run from its checkpoint, and extends a finished run whose ``steps`` has
since grown (the only difference allowed; a finished run that differs otherwise is
kept with a warning — delete its folder to retrain). ``out/sweep.json`` lists every
run and its status. The tables and α heat maps are drawn by :mod:`pianomtl.train.tables`.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from pianomtl.constants import TASKS
from pianomtl.core.files import write_json_atomic
from pianomtl.train.config import DEFAULT_LAMBDAS, TrainConfig

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

FAMILIES = ("hard", "cross-stitch")  # in the paper's table order
TOP_LEVEL_KEYS = ("cache", "out", "fixed", "grid", "combos", "seeds", "description", "name")


class SweepError(ValueError):
    """The sweep file is malformed."""


@dataclass(frozen=True)
class Setting:
    """One point of the grid: its name, its values and one training configuration per seed.

    ``configs[0]`` is the first seed's run; a setting without ``seeds`` has exactly one.
    """

    name: str
    values: dict
    configs: tuple[TrainConfig, ...]

    @property
    def config(self) -> TrainConfig:
        return self.configs[0]

    @property
    def folder(self) -> Path:
        return Path(self.config.out)

    @property
    def folders(self) -> list[Path]:
        """Every seed's run folder, in seed order."""
        return [Path(config.out) for config in self.configs]

    @property
    def seeds(self) -> list[int]:
        return [config.seed for config in self.configs]

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


def format_value(value: object) -> str:
    """A grid value as it appears in names and tables (floats in ``%g``)."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def setting_name(values: dict, extra_keys: list[str]) -> str:
    """A folder name that identifies a setting: family, cross-stitch type, lr, λ ≠ 1, other axes."""
    parts = [values["model"]]
    if values["model"] != "hard":
        parts += [values["gradient"], values["init"]]
    parts.append(f"lr{format_value(values['lr'])}")
    for task in TASKS:
        weight = values[f"lambda_{task}"]
        # hard sharing: λ_vel and λ_sus always named (the axes of Tables I–II)
        if weight != 1 or (values["model"] == "hard" and task in ("vel", "sus")):
            parts.append(f"{task}{format_value(weight)}")
    for key in extra_keys:
        parts.append(f"{key.replace('_', '-')}{format_value(values[key])}")
    return "_".join(parts).replace("/", "-")


def seed_list(seeds: object, base: int) -> list[int]:
    """The seeds of a setting whose own seed is ``base``: ``None`` → ``[base]``, ``N`` → ``base … base+N-1``."""
    if seeds is None:
        return [base]
    if isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 1:
        return [base + offset for offset in range(seeds)]
    if (
        isinstance(seeds, list)
        and seeds
        and all(isinstance(seed, int) and not isinstance(seed, bool) for seed in seeds)
        and len(set(seeds)) == len(seeds)
    ):
        return list(seeds)
    raise SweepError(f"'seeds' must be a count ≥ 1 or a non-empty list of distinct integers, not {seeds!r}")


def run_folder(out: str | Path, name: str, seed: int, base: int) -> Path:
    """``out/<name>`` for the setting's own seed, ``out/<name>_seed<S>`` for the others."""
    return Path(out) / (name if seed == base else f"{name}_seed{seed}")


def expand(
    spec: dict,
    cache: str | None = None,
    out: str | None = None,
    threads: int | None = None,
    seeds: int | list[int] | None = None,
) -> list[Setting]:
    """All settings of a sweep spec, in table order (``cache``/``out``/``threads``/``seeds`` override the spec)."""
    unknown_top = set(spec) - set(TOP_LEVEL_KEYS)
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
    seeds = spec.get("seeds") if seeds is None else seeds
    seed_list(seeds, 0)  # reject a malformed value before anything else

    # keys that vary but are not already part of a name (model type, lr and λ always are)
    varying = [k for k in [*grid, *(k for c in combos for k in c)] if k not in (*MODEL_KEYS, "lr", *LAMBDA_KEYS)]
    extra_keys = list(dict.fromkeys(varying))
    settings: list[Setting] = []
    seen: dict[str, dict] = {}
    for point in itertools.product(*grid.values()):
        for combo in combos:
            values = {**DEFAULTS, **fixed, **dict(zip(grid, point, strict=True)), **combo}
            if values["model"] not in FAMILIES:
                raise SweepError(f"unknown model '{values['model']}' (hard, cross-stitch)")
            if values["model"] == "hard":  # not used by hard sharing: keep them out of identity and names
                values["gradient"], values["init"] = DEFAULTS["gradient"], DEFAULTS["init"]
            name = setting_name(values, extra_keys)
            if name in seen:
                if seen[name] == values:
                    continue  # e.g. a gradient axis crossed with the hard model
                raise SweepError(f"two settings share the folder name {name}")
            seen[name] = values
            config = _train_config(values, cache, str(Path(out) / name))
            configs = tuple(
                replace(config, seed=seed, out=str(run_folder(out, name, seed, config.seed)))
                for seed in seed_list(seeds, config.seed)
            )
            settings.append(Setting(name, values, configs))
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


def config_differences(config: TrainConfig, result: dict) -> list[str]:
    """Fields in which a stored result's configuration differs from ``config``."""
    stored, wanted = _identity(result.get("config", {})), _identity(asdict(config))
    return sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))


def run_state(config: TrainConfig) -> tuple[str, list[str]]:
    """What a sweep does with one run, and the configuration fields its stored result differs in.

    ``"new"`` (train from scratch), ``"resume"`` (an interrupted run: continue from
    ``checkpoint.pt``), ``"extend"`` (finished with fewer ``steps`` than asked, nothing
    else changed: continue to the new total), or ``"done"`` (finished or unstable: keep).
    """
    folder = Path(config.out)
    result = read_result(folder)
    if not is_done(result):
        return ("resume" if (folder / "checkpoint.pt").exists() else "new"), []
    differences = config_differences(config, result)
    if differences == ["steps"] and result.get("status") == "finished" and result.get("steps", 0) < config.steps:
        return "extend", differences
    return "done", differences


def _train_worker(config: dict) -> dict:
    """Process-pool entry: train one run (resuming), return a short summary."""
    from pianomtl.train.loop import train  # torch: only in the processes that train

    result = train(TrainConfig(**config), resume=True)
    return {"status": result["status"], "validation": result.get("validation", {})}


PARENT_CHECK_SECONDS = 2.0
"""How often a pool worker checks that the sweep which started it is still there."""


def exit_with_parent(parent: int, interval: float = PARENT_CHECK_SECONDS) -> None:
    """Pool-worker initialiser: end this process once ``parent`` (the sweep) is gone.

    A sweep killed on its own (``kill PID``, not Ctrl-C, which reaches the whole process
    group) would otherwise leave its workers training on, unseen; a sweep started again
    would then find their runs locked (:data:`~pianomtl.train.loop.LOCK_NAME`) and the
    cores busy. The worker's run resumes from its last checkpoint next time.
    """

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:  # re-parented: the sweep is gone
                os._exit(1)

    threading.Thread(target=watch, name="sweep-parent-watch", daemon=True).start()


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def select_settings(settings: list[Setting], only: Sequence[str] = ()) -> list[Setting]:
    """The settings whose name contains one of the texts ``only`` (``sweep --only``); all of them when empty."""
    return [s for s in settings if any(text in s.name for text in only)] if only else list(settings)


def run_sweep(
    settings: list[Setting],
    out: str | Path,
    jobs: int = 1,
    on_progress: Callable[[], None] | None = None,
    only: Sequence[str] = (),
) -> dict:
    """Train every run (every seed of every setting) that has not ended; ``on_progress()`` after each.

    ``only``: train just the settings whose name contains one of these texts (``sweep
    --only``); the manifest ``sweep.json`` still lists the whole grid.

    Finished and unstable runs are kept, interrupted ones resumed from their checkpoint,
    finished ones whose ``steps`` grew extended (see :func:`run_state`). Returns
    ``{"trained": [...], "skipped": [...], "failed": {run: error}, "resumed": [...],
    "extended": [...]}`` by run folder name; ``trained`` includes the resumed and
    extended runs that ended this time.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    todo: list[TrainConfig] = []
    skipped: list[str] = []
    states: dict[str, str] = {}
    chosen = select_settings(settings, only)
    for setting in chosen:
        for config in setting.configs:
            name = Path(config.out).name
            state, differences = run_state(config)
            states[name] = state
            if state == "done":
                if differences:
                    _log(
                        f"warning: {name} ended with a different {', '.join(differences)}; "
                        "its result is kept (delete the folder to retrain)"
                    )
                skipped.append(name)
            else:
                todo.append(config)
    resumed = [n for n, s in states.items() if s == "resume"]
    extended = [n for n, s in states.items() if s == "extend"]
    _log(
        f"sweep: {len(chosen)} settings, {len(states)} runs: {len(skipped)} already done, {len(todo)} to train "
        f"({len(resumed)} resumed from a checkpoint, {len(extended)} extended)"
    )
    write_manifest(settings, out)
    trained: list[str] = []
    failed: dict[str, str] = {}

    def finished(config: TrainConfig, summary: dict | None, error: BaseException | None) -> None:
        name = Path(config.out).name
        if error is not None:
            failed[name] = f"{type(error).__name__}: {error}"
            _log(f"sweep: {name} failed: {failed[name]}")
        else:
            trained.append(name)
            _log(f"sweep: {name} {summary['status']}")
        write_manifest(settings, out)
        if on_progress is not None:
            on_progress()

    if jobs <= 1 or len(todo) <= 1:
        for config in todo:
            try:
                summary = _train_worker(asdict(config))
            except Exception as error:  # a broken run must not stop the others
                finished(config, None, error)
            else:
                finished(config, summary, None)
    else:
        context = multiprocessing.get_context("spawn")  # no forked torch/OpenMP state
        with ProcessPoolExecutor(
            max_workers=jobs, mp_context=context, initializer=exit_with_parent, initargs=(os.getpid(),)
        ) as pool:
            pending = {pool.submit(_train_worker, asdict(c)): c for c in todo}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    config = pending.pop(future)
                    error = future.exception()
                    finished(config, None if error else future.result(), error)
    return {"trained": trained, "skipped": skipped, "failed": failed, "resumed": resumed, "extended": extended}


def write_manifest(settings: list[Setting], out: str | Path) -> None:
    """``out/sweep.json``: every setting with its values and each seed's run status and scores."""
    rows = []
    for setting in settings:
        runs = []
        for config in setting.configs:
            result = read_result(config.out) or {}
            runs.append(
                {
                    "run": Path(config.out).name,
                    "seed": config.seed,
                    "status": result.get("status", "pending"),
                    "steps": result.get("steps"),
                    "validation": result.get("validation", {}),
                }
            )
        statuses = {run["status"] for run in runs}
        status = statuses.pop() if len(statuses) == 1 else "partial"
        rows.append({"name": setting.name, "values": setting.values, "status": status, "runs": runs})
    write_json_atomic(Path(out) / "sweep.json", {"settings": rows})
