"""Learning-rate range test (paper §V; Smith, "Cyclical Learning Rates", ref. [18]).

Starting from a tiny rate (1e-8), the rate grows by a constant factor every update
step, ``ηᵢ = start · (end/start)^(i/(steps-1))``, while the training loss is
recorded. The test stops when the loss diverges — it becomes NaN/inf, or its
exponentially smoothed value exceeds ``diverge_factor`` (4) times the smallest
smoothed value so far — or when ``end`` is reached. The suggested rate is the rate
at the smoothed loss's minimum divided by 10 ("decrease it by about an order of
magnitude"): a conservative, stable rate.

The updates are those of a real training run: the same :class:`pianomtl.train.loop.Run`
(model, optimiser — SGD-Nesterov as in the paper, or Adam —, task weights λ, excerpt
sampler, loss), only with the rate schedule replaced, so the test measures exactly what
``pianomtl train`` with the same ``--optimizer`` will do. Adam's rate means something
else than SGD's (a step size per parameter, not a multiple of the gradient), so each
optimiser needs its own test.

Outputs in ``--out``: ``lr_find.csv`` (step, lr, loss, smoothed loss, per-task
losses), ``lr_find.png`` (loss against log-scaled rate, minimum and suggestion
marked) and ``lr_find.json`` (summary with the suggestion). The command line is
:mod:`pianomtl.cli.lr_find`.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from pianomtl.constants import TASKS
from pianomtl.core.files import write_json_atomic
from pianomtl.train.loop import Diverged, Run, TrainConfig

DEFAULT_START = 1e-8
DEFAULT_END = 10.0
DEFAULT_STEPS = 2000
DEFAULT_SMOOTHING = 0.98
DEFAULT_DIVERGE_FACTOR = 4.0
SUGGESTION_DIVISOR = 10.0


@dataclass
class RangeTest:
    """The recorded curve of one range test and what it suggests."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    task_losses: list[dict[str, float]] = field(default_factory=list)
    stop_reason: str = "end"
    optimizer: str = ""

    @property
    def best_index(self) -> int | None:
        finite = [(v, i) for i, v in enumerate(self.smoothed) if math.isfinite(v)]
        return min(finite)[1] if finite else None

    @property
    def best_lr(self) -> float:
        index = self.best_index
        return self.lrs[index] if index is not None else math.nan

    @property
    def suggestion(self) -> float:
        """The rate at the smoothed loss minimum, divided by 10."""
        return self.best_lr / SUGGESTION_DIVISOR

    def summary(self) -> dict:
        index = self.best_index
        return {
            "suggested_lr": self.suggestion,
            "min_loss_lr": self.best_lr,
            "min_smoothed_loss": self.smoothed[index] if index is not None else math.nan,
            "steps_run": len(self.lrs),
            "last_lr": self.lrs[-1] if self.lrs else math.nan,
            "stop_reason": self.stop_reason,
            "optimizer": self.optimizer,
        }


def exponential_rate(step: int, start: float, end: float, steps: int) -> float:
    """The rate of update ``step`` (0-based) of an exponential sweep from ``start`` to ``end``."""
    if steps <= 1:
        return start
    return start * (end / start) ** (step / (steps - 1))


class Smoother:
    """Bias-corrected exponential moving average (as in fastai's LR finder)."""

    def __init__(self, beta: float = DEFAULT_SMOOTHING) -> None:
        self.beta, self.average, self.count = beta, 0.0, 0

    def __call__(self, value: float) -> float:
        self.count += 1
        self.average = self.beta * self.average + (1 - self.beta) * value
        return self.average / (1 - self.beta**self.count)


class _RangeTestRun(Run):
    """A training run whose learning rate follows the exponential range-test schedule."""

    def __init__(self, config: TrainConfig, start: float, end: float, steps: int) -> None:
        super().__init__(config, seed=config.seed, resume=False)
        self.start, self.end, self.total = start, end, steps

    def learning_rate(self) -> float:
        return exponential_rate(self.step, self.start, self.end, self.total)


def range_test(
    config: TrainConfig,
    start: float = DEFAULT_START,
    end: float = DEFAULT_END,
    steps: int = DEFAULT_STEPS,
    smoothing: float = DEFAULT_SMOOTHING,
    diverge_factor: float = DEFAULT_DIVERGE_FACTOR,
    progress: bool = True,
) -> RangeTest:
    """Run the range test for ``config`` (its ``lr`` and ``steps`` are ignored).

    Nothing is written to ``config.out`` here; see :func:`save`.
    """
    if not 0 < start < end:
        raise ValueError(f"need 0 < start < end, got start={start}, end={end}")
    # The run's own explosion guard would stop the test before our criterion does.
    config = replace(config, lr=start, steps=steps, explode_factor=math.inf)
    run = _RangeTestRun(config, start, end, steps)
    result = RangeTest(optimizer=config.optimizer)
    smoother = Smoother(smoothing)
    best = math.inf
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc="lr-find", unit="step")
    try:
        for _ in range(steps):
            lr = run.learning_rate()
            try:
                stats = run.train_step()
            except Diverged:
                result.lrs.append(lr)
                result.losses.append(math.nan)
                result.smoothed.append(math.nan)
                result.task_losses.append(dict.fromkeys(TASKS, math.nan))
                result.stop_reason = "nan"
                break
            smooth = smoother(stats["loss"])
            result.lrs.append(lr)
            result.losses.append(stats["loss"])
            result.smoothed.append(smooth)
            result.task_losses.append({t: stats[t] for t in TASKS})
            best = min(best, smooth)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(lr=f"{lr:.2e}", loss=f"{smooth:.4f}")
            if smooth > diverge_factor * best:
                result.stop_reason = "diverged"
                break
    finally:
        if bar is not None:
            bar.close()
    return result


def save(result: RangeTest, out: str | Path, title: str = "") -> dict[str, Path]:
    """Write the curve as CSV, PNG and a JSON summary into ``out``; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "lr_find.csv", "png": out / "lr_find.png", "json": out / "lr_find.json"}
    with paths["csv"].open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "lr", "loss", "smoothed", *TASKS])
        for step, (lr, loss, smooth, tasks) in enumerate(
            zip(result.lrs, result.losses, result.smoothed, result.task_losses, strict=True)
        ):
            writer.writerow([step, f"{lr:.6e}", loss, smooth, *(tasks[t] for t in TASKS)])
    plot(result, paths["png"], title=title)
    write_json_atomic(paths["json"], result.summary())
    return paths


def plot(result: RangeTest, path: str | Path, title: str = "") -> None:
    """Loss and smoothed loss against the (log-scaled) learning rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    try:
        axes.plot(result.lrs, result.losses, color="0.75", linewidth=0.8, label="loss")
        axes.plot(result.lrs, result.smoothed, color="C0", linewidth=1.5, label="smoothed loss")
        index = result.best_index
        if index is not None:
            axes.axvline(result.best_lr, color="C3", linestyle=":", label=f"minimum at η={result.best_lr:.3g}")
            axes.axvline(result.suggestion, color="C2", linestyle="--", label=f"suggested η={result.suggestion:.3g}")
            finite = [v for v in result.smoothed if math.isfinite(v)]
            low, high = min(finite), result.smoothed[0]
            if math.isfinite(high) and high > low:
                axes.set_ylim(low - 0.1 * (high - low), high + 0.6 * (high - low))
        axes.set_xscale("log")
        axes.set_xlabel("learning rate η")
        axes.set_ylabel("training loss Σ λᵐ Lᵐ")
        axes.set_title(title or "learning-rate range test")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(loc="upper left", fontsize="small")
        figure.tight_layout()
        figure.savefig(path, dpi=100)
    finally:
        plt.close(figure)
