"""The two architecture families of the seed paper (§IV) as PyTorch modules.

* ``hard`` — :class:`HardSharingNet`: shared conv stem, one small head per task;
* ``cross-stitch`` — :class:`CrossStitchNet`: one column per task, cross-stitch units
  after every layer, ``gradient`` "full" | "detached", ``init`` "balanced" | "imbalanced".

Build one by name with :func:`build_model` (``build_model(ModelConfig("cross-stitch",
gradient="detached"))``); every model takes ``[B, T + 10, 144]`` spectrogram frames
(pad with :func:`pad_context`) and returns ``{task: [B, T, width]}`` for the five
tasks — logits for on/int/off (:meth:`MultitaskNet.predict` applies the sigmoids).
"""

from __future__ import annotations

from pianomtl.models.cross_stitch import CrossStitchNet
from pianomtl.models.hard_sharing import HardSharingNet
from pianomtl.models.layers import (
    AdditiveGaussianNoise,
    ConvBlock,
    CrossStitch,
    GaussianDropout,
    MultitaskNet,
    StraightThroughReLU,
    TaskDense,
    count_macs,
    glorot_init_,
    macs_per_frame,
    pad_context,
    straight_through_relu,
    window_forward,
)
from pianomtl.models.registry import MODELS, ModelConfig, build_model, model_names

__all__ = [
    "MODELS",
    "AdditiveGaussianNoise",
    "ConvBlock",
    "CrossStitch",
    "CrossStitchNet",
    "GaussianDropout",
    "HardSharingNet",
    "ModelConfig",
    "MultitaskNet",
    "StraightThroughReLU",
    "TaskDense",
    "build_model",
    "count_macs",
    "glorot_init_",
    "macs_per_frame",
    "model_names",
    "pad_context",
    "straight_through_relu",
    "window_forward",
]
