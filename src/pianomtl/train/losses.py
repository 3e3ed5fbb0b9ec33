"""The training losses: ``L = Σ λᵐ Lᵐ`` per task, and the optional velocity ranking term.

Binary cross-entropy (on logits) for on/int/off and mean squared error for vel/sus —
MSE because R² (what the paper reports for these regressions) is exactly
``1 - MSE/Var``, so minimising MSE maximises the reported measure, and the
straight-through ReLU output keeps its gradient linear. Apart from the loop so that a
benchmark or test of the loss needs no run (``benchmarks/run.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pianomtl.constants import BINARY_TASKS, TASKS
from pianomtl.core.targets import LABEL_SLICES


def task_losses(outputs: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-task mean losses for a batch of uint8 labels ``[B, T, 353]``."""
    targets = to_float_tensor(labels)
    losses = {}
    for task in TASKS:
        prediction = outputs[task].float()
        if task in BINARY_TASKS:
            losses[task] = F.binary_cross_entropy_with_logits(prediction, targets[task])
        else:
            losses[task] = F.mse_loss(prediction, targets[task])
    return losses


VEL_RANK_MARGIN = 8 / 127
"""True velocities closer than this are not ranked (ties, and what a player cannot tell apart)."""

VEL_RANK_SCALE = 10.0
"""Logit per unit of estimated velocity (the whole range 0–127) in the ranking loss: a tenth of
the range is one nat."""

VEL_RANK_SPREAD = 0.13
"""The spread term's unit: a typical spread of the velocities struck in an excerpt (as a share of
127; 0.133 on the validation split). A per-excerpt spread would explode on excerpts played at one
velocity (a scale at a fixed dynamic: σ ≈ 0)."""

VEL_RANK_MAX_POSITIONS = 1024
"""Struck (key, frame) positions ranked per excerpt at most (pairs grow with its square)."""


def velocity_ranking_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Order and spread of the velocities struck within each excerpt.

    ``prediction`` and ``target`` ``[B, T, 88]`` (target: velocity/127 on the widened onset
    frames, 0 elsewhere). The squared error at an excerpt's struck positions splits into
    a difference of means, a difference of spreads and a disagreement of order. Against
    the absolute velocities of many pianos, at random levels (``--equaliser``), the mean is
    not knowable from one excerpt, and the squared error teaches a hedge that also blurs
    the order. This loss adds, with the squared error kept for the mean:

    * **order** — RankNet: every pair whose true velocities differ by more than
      :data:`VEL_RANK_MARGIN` adds ``softplus(−k·(v̂_louder − v̂_softer))`` (mean over
      pairs; ``k``: :data:`VEL_RANK_SCALE`), blind to the offset;
    * **spread** — ``(σ̂ − σ)² / s²`` of the excerpt's estimates against its true
      velocities (``s``: :data:`VEL_RANK_SPREAD`): RankNet alone rewards ever larger gaps
      (measured: the estimates' standard deviation grew from 0.21 to 0.36 of the range in
      200 updates and velocity R² fell from 0.81 to 0.38). Ranking standardised estimates
      instead improved the order less and let the spread and the mean drift further, and a
      term on the mean as well held the loss near 2.8, the hedge again (docs/experiments.md §11).

    Mean over the excerpts that have a pair to rank (0 without).
    """
    losses = []
    for predicted, true in zip(prediction, target, strict=True):
        struck = true > 0
        values, truth = predicted[struck], true[struck]
        if len(values) > VEL_RANK_MAX_POSITIONS:  # an evenly spread, deterministic subset
            keep = torch.linspace(0, len(values) - 1, VEL_RANK_MAX_POSITIONS, device=values.device).long()
            values, truth = values[keep], truth[keep]
        louder = (truth[:, None] - truth[None, :]) > VEL_RANK_MARGIN
        if louder.any():
            order = F.softplus(-VEL_RANK_SCALE * (values[:, None] - values[None, :])[louder]).mean()
            losses.append(order + (values.std() - truth.std()) ** 2 / VEL_RANK_SPREAD**2)
    return torch.stack(losses).mean() if losses else prediction.sum() * 0.0


def to_float_tensor(labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Torch version of :func:`pianomtl.core.targets.to_float` (no numpy round trip)."""
    scale = {"vel": 1 / 127, "sus": 1 / 127}
    return {t: labels[..., LABEL_SLICES[t]].float() * scale.get(t, 1.0) for t in TASKS}
