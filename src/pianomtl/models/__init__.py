"""The architecture families: the seed paper's two (§IV) and one beyond it, as PyTorch modules.

* ``hard`` — :class:`HardSharingNet`: shared conv stem, one small head per task;
* ``cross-stitch`` — :class:`CrossStitchNet`: one column per task, cross-stitch units
  after every layer, ``gradient`` "full" | "detached", ``init`` "balanced" | "imbalanced";

and two families beyond the paper (for notes held longer than the 11-frame window; see
:mod:`pianomtl.models.sequence` and :mod:`pianomtl.models.keywise`):

* ``hard+rnn`` — :class:`HardRNNNet`: the hard-sharing stem, then causal onset and frame
  LSTMs (or GRUs; ``recurrent = True``: chunked inference carries its state through
  :meth:`HardRNNNet.forward_with_state`; ``bidirectional=True`` is the ablation twin);
* ``hard+keyrnn`` — :class:`KeyRNNNet`: the hard-sharing front end, then a causal
  recording-wide context LSTM and one small LSTM run on every key (same state interface).

Build one by name with :func:`build_model` (``build_model(ModelConfig("cross-stitch",
gradient="detached"))``); every model takes ``[B, T + 10, 144]`` spectrogram frames
(pad with :func:`pad_context`) and returns ``{task: [B, T, width]}`` for the five
tasks — logits for on/int/off (:meth:`MultitaskNet.predict` applies the sigmoids).
"""

from __future__ import annotations

from pianomtl.models.config import ModelConfig
from pianomtl.models.cross_stitch import CrossStitchNet
from pianomtl.models.hard_sharing import HardSharingNet
from pianomtl.models.keywise import KeyRNNNet
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
from pianomtl.models.registry import MODELS, build_model, model_names
from pianomtl.models.sequence import HardRNNNet, load_stem_from

__all__ = [
    "MODELS",
    "AdditiveGaussianNoise",
    "ConvBlock",
    "CrossStitch",
    "CrossStitchNet",
    "GaussianDropout",
    "HardRNNNet",
    "HardSharingNet",
    "KeyRNNNet",
    "ModelConfig",
    "MultitaskNet",
    "StraightThroughReLU",
    "TaskDense",
    "build_model",
    "count_macs",
    "glorot_init_",
    "load_stem_from",
    "macs_per_frame",
    "model_names",
    "pad_context",
    "straight_through_relu",
    "window_forward",
]
