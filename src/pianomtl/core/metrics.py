"""**Framewise** measures of the seed paper (eq. 1–6): what the network's frames score.

Two modules score, by what they compare: this one compares *frames* (activations
against frame targets, no decoding); :mod:`pianomtl.core.scoring` compares *notes*
(decoded notes against reference notes, mir_eval's conventions).

Framewise P/R/F1 sum true/false positives over all frames and keys of a whole split
before dividing (eq. 1–3), and R² is ``1 - SSE/SST`` over all frames of the split
(eq. 6). Both are accumulated recording by recording so that a split never has to
be in memory at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pianomtl.constants import BINARY_TASKS, REGRESSION_TASKS, TASKS

DEFAULT_THRESHOLD = 0.5


@dataclass
class BinaryCounts:
    """Running TP/FP/FN for one binary task."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, prediction: np.ndarray, target: np.ndarray) -> None:
        predicted, actual = prediction.astype(bool), target.astype(bool)
        self.tp += int(np.count_nonzero(predicted & actual))
        self.fp += int(np.count_nonzero(predicted & ~actual))
        self.fn += int(np.count_nonzero(~predicted & actual))

    def scores(self) -> dict[str, float]:
        precision = self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0
        recall = self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "f1": f1}


@dataclass
class RegressionSums:
    """Running sums for R² = 1 - SSE/SST, with SST around the mean of all targets."""

    n: int = 0
    sum_y: float = 0.0
    sum_y2: float = 0.0
    sse: float = 0.0

    def add(self, prediction: np.ndarray, target: np.ndarray) -> None:
        y = target.astype(np.float64).ravel()
        self.n += y.size
        self.sum_y += float(y.sum())
        self.sum_y2 += float(np.dot(y, y))
        difference = prediction.astype(np.float64).ravel() - y
        self.sse += float(np.dot(difference, difference))

    def r2(self) -> float:
        if self.n == 0:
            return float("nan")
        sst = self.sum_y2 - self.sum_y**2 / self.n
        return 1.0 - self.sse / sst if sst > 0 else float("nan")


@dataclass
class FramewiseEvaluator:
    """Accumulates the paper's framewise measures over many recordings."""

    thresholds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(BINARY_TASKS, DEFAULT_THRESHOLD))
    counts: dict[str, BinaryCounts] = field(default_factory=lambda: {t: BinaryCounts() for t in BINARY_TASKS})
    sums: dict[str, RegressionSums] = field(default_factory=lambda: {t: RegressionSums() for t in REGRESSION_TASKS})

    def add(self, predictions: dict[str, np.ndarray], targets: dict[str, np.ndarray]) -> None:
        """Add one recording: probabilities (on/int/off) or values (vel/sus) and float targets."""
        for task in BINARY_TASKS:
            self.counts[task].add(predictions[task] >= self.thresholds[task], targets[task] >= 0.5)
        for task in REGRESSION_TASKS:
            self.sums[task].add(predictions[task], targets[task])

    def results(self) -> dict[str, dict[str, float]]:
        """``{task: {precision, recall, f1}}`` for on/int/off and ``{task: {r2}}`` for vel/sus."""
        out: dict[str, dict[str, float]] = {t: self.counts[t].scores() for t in BINARY_TASKS}
        out.update({t: {"r2": self.sums[t].r2()} for t in REGRESSION_TASKS})
        return out


def headline(results: dict[str, dict[str, float]]) -> dict[str, float]:
    """The five numbers of the paper's tables: On/Int/Off F1, Vel/Sus R²."""
    return {t: results[t]["f1"] if t in BINARY_TASKS else results[t]["r2"] for t in TASKS}
