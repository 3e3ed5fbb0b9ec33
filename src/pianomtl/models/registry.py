"""The registry of architectures by name (and, re-exported, their configuration).

``MODELS`` maps the names accepted by ``--model`` to the classes:

* ``hard`` — :class:`~pianomtl.models.hard_sharing.HardSharingNet`;
* ``cross-stitch`` — :class:`~pianomtl.models.cross_stitch.CrossStitchNet`;
* ``hard+rnn`` — :class:`~pianomtl.models.sequence.HardRNNNet` (the hard-sharing stem
  and a causal LSTM (or GRU) stage; not one of the paper's networks);
* ``hard+keyrnn`` — :class:`~pianomtl.models.keywise.KeyRNNNet` (the hard-sharing front
  end and a causal recurrent stage run on every key; not one of the paper's networks).

:class:`~pianomtl.models.config.ModelConfig` lives in :mod:`pianomtl.models.config`
(no network imports there, so the networks can import it); it is re-exported here for
the callers that import it from this module.
"""

from __future__ import annotations

from typing import Any

from pianomtl.models.config import ARCHITECTURES, DEFAULT_WIDTHS, GRADIENTS, INITS, ModelConfig
from pianomtl.models.cross_stitch import CrossStitchNet
from pianomtl.models.hard_sharing import HardSharingNet
from pianomtl.models.keywise import KeyRNNNet
from pianomtl.models.layers import MultitaskNet
from pianomtl.models.sequence import HardRNNNet

MODELS: dict[str, type[MultitaskNet]] = {
    "hard": HardSharingNet,
    "cross-stitch": CrossStitchNet,
    "hard+rnn": HardRNNNet,
    "hard+keyrnn": KeyRNNNet,
}
assert tuple(MODELS) == ARCHITECTURES, "every configurable architecture needs a class (and vice versa)"


def build_model(config: ModelConfig | dict[str, Any] | str) -> MultitaskNet:
    """A freshly (Glorot-)initialised model for ``config`` (a config, its dict, or a name)."""
    if isinstance(config, str):
        config = ModelConfig(name=config)
    elif isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    return MODELS[config.name](config)


def model_names() -> list[str]:
    """Names accepted by ``--model``."""
    return list(MODELS)


__all__ = ["DEFAULT_WIDTHS", "GRADIENTS", "INITS", "MODELS", "ModelConfig", "build_model", "model_names"]
