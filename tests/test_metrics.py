"""The paper's framewise measures (eq. 1–6) against independent computations on random data."""

from __future__ import annotations

import math

import mir_eval
import numpy as np
import pytest

from pianomtl.constants import BINARY_TASKS, N_KEYS, REGRESSION_TASKS, TASKS
from pianomtl.core.metrics import BinaryCounts, FramewiseEvaluator, RegressionSums, headline


def random_recording(rng: np.random.Generator, n_frames: int) -> tuple[dict, dict]:
    """Predictions (probabilities / values) and float targets like a network's and the cache's."""
    predictions, targets = {}, {}
    for task in BINARY_TASKS:
        targets[task] = (rng.random((n_frames, N_KEYS)) < 0.1).astype(np.float32)
        # correlated with the target, so P/R/F1 are far from 0 and 1
        predictions[task] = np.clip(0.4 * targets[task] + 0.6 * rng.random((n_frames, N_KEYS)), 0, 1)
    targets["vel"] = np.where(rng.random((n_frames, N_KEYS)) < 0.05, rng.integers(1, 128, (n_frames, N_KEYS)), 0)
    targets["vel"] = (targets["vel"] / 127).astype(np.float32)
    predictions["vel"] = (targets["vel"] + 0.1 * rng.standard_normal((n_frames, N_KEYS))).astype(np.float32)
    targets["sus"] = (rng.integers(0, 128, (n_frames, 1)) / 127).astype(np.float32)
    predictions["sus"] = (0.7 * targets["sus"] + 0.2 * rng.random((n_frames, 1))).astype(np.float32)
    return predictions, targets


def reference_prf(predictions: list[np.ndarray], targets: list[np.ndarray], threshold: float) -> tuple[float, ...]:
    """P, R, F1 from per-frame counts summed over frames (eq. 1–3), scored by mir_eval.multipitch."""
    tp_per_frame, n_ref_per_frame, n_est_per_frame = [], [], []
    for prediction, target in zip(predictions, targets, strict=True):
        for frame_prediction, frame_target in zip(prediction, target, strict=True):
            estimated = {k for k, p in enumerate(frame_prediction) if p >= threshold}
            reference = {k for k, y in enumerate(frame_target) if y >= 0.5}
            tp_per_frame.append(len(estimated & reference))
            n_ref_per_frame.append(len(reference))
            n_est_per_frame.append(len(estimated))
    precision, recall, _ = mir_eval.multipitch.compute_accuracy(
        np.array(tp_per_frame), np.array(n_ref_per_frame), np.array(n_est_per_frame)
    )
    f1 = 2 * precision * recall / (precision + recall)
    return precision, recall, f1


def reference_r2(predictions: list[np.ndarray], targets: list[np.ndarray]) -> float:
    """Eq. 6 written as 1 - mean squared error / variance, over all frames of all recordings."""
    y = np.concatenate([t.ravel() for t in targets]).astype(np.float64)
    y_hat = np.concatenate([p.ravel() for p in predictions]).astype(np.float64)
    return 1.0 - np.mean((y - y_hat) ** 2) / np.var(y)


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_framewise_measures_match_independent_computation(threshold: float) -> None:
    rng = np.random.default_rng(7)
    recordings = [random_recording(rng, n) for n in (37, 120, 5)]
    evaluator = FramewiseEvaluator(thresholds=dict.fromkeys(BINARY_TASKS, threshold))
    for predictions, targets in recordings:
        evaluator.add(predictions, targets)
    results = evaluator.results()
    for task in BINARY_TASKS:
        precision, recall, f1 = reference_prf(
            [p[task] for p, _ in recordings], [t[task] for _, t in recordings], threshold
        )
        assert results[task]["precision"] == pytest.approx(precision, abs=1e-12)
        assert results[task]["recall"] == pytest.approx(recall, abs=1e-12)
        assert results[task]["f1"] == pytest.approx(f1, abs=1e-12)
        assert 0.05 < f1 < 0.95
    for task in REGRESSION_TASKS:
        expected = reference_r2([p[task] for p, _ in recordings], [t[task] for _, t in recordings])
        assert results[task]["r2"] == pytest.approx(expected, abs=1e-9)
    assert headline(results) == {t: results[t]["f1"] if t in BINARY_TASKS else results[t]["r2"] for t in TASKS}


def test_accumulating_recordings_equals_one_concatenated_recording() -> None:
    rng = np.random.default_rng(3)
    recordings = [random_recording(rng, n) for n in (10, 30, 1)]
    separate, joined = FramewiseEvaluator(), FramewiseEvaluator()
    for predictions, targets in recordings:
        separate.add(predictions, targets)
    joined.add(
        {t: np.concatenate([p[t] for p, _ in recordings]) for t in TASKS},
        {t: np.concatenate([y[t] for _, y in recordings]) for t in TASKS},
    )
    a, b = separate.results(), joined.results()
    for task in TASKS:
        for key in a[task]:
            assert a[task][key] == pytest.approx(b[task][key], rel=1e-12, abs=1e-12)


def test_threshold_is_inclusive_and_edge_cases() -> None:
    counts = BinaryCounts()
    counts.add(np.array([0.5, 0.49, 1.0]) >= 0.5, np.array([1, 1, 0]) >= 0.5)
    assert (counts.tp, counts.fp, counts.fn) == (1, 1, 1)
    empty = BinaryCounts().scores()
    assert empty == {"precision": 0.0, "recall": 0.0, "f1": 0.0}  # no positives anywhere: 0, no crash


def test_r2_reference_points() -> None:
    y = np.array([0.0, 0.2, 0.4, 1.0])
    perfect, mean, constant = RegressionSums(), RegressionSums(), RegressionSums()
    perfect.add(y, y)
    mean.add(np.full_like(y, y.mean()), y)
    assert perfect.r2() == pytest.approx(1.0)
    assert mean.r2() == pytest.approx(0.0, abs=1e-12)
    constant.add(np.array([0.1, 0.2]), np.array([0.5, 0.5]))
    assert math.isnan(constant.r2())  # no variance: undefined, not a division error
    assert math.isnan(RegressionSums().r2())
    worse = RegressionSums()
    worse.add(-y, y)
    assert worse.r2() < 0  # worse than predicting the mean


def test_counts_that_are_equal_still_score():
    """tp = fp = fn: precision, recall and F1 are all 0.5 (a guard on ``tp - fp`` would give 0)."""
    assert BinaryCounts(tp=2, fp=2, fn=2).scores() == {"precision": 0.5, "recall": 0.5, "f1": 0.5}
    assert BinaryCounts(tp=3, fp=3, fn=0).scores() == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3)}


def test_a_probability_or_target_exactly_on_the_threshold_counts_as_on():
    evaluator = FramewiseEvaluator(thresholds=dict.fromkeys(BINARY_TASKS, 0.5))
    on_the_edge = {task: np.full((2, N_KEYS), 0.5) for task in TASKS}
    evaluator.add(on_the_edge, on_the_edge)
    for task in BINARY_TASKS:
        assert (evaluator.counts[task].tp, evaluator.counts[task].fp, evaluator.counts[task].fn) == (2 * N_KEYS, 0, 0)
