"""Model configuration and the registry of architectures by name.

``ModelConfig`` holds everything that decides a model's parameters and maths (not
its speed), is JSON-safe through :meth:`ModelConfig.to_dict` /
:meth:`ModelConfig.from_dict`, and rebuilds the identical architecture with
:func:`build_model` — which is what a checkpoint stores next to its ``state_dict``.

``MODELS`` maps the names accepted by ``--model`` to the classes:

* ``hard`` — :class:`~pianomtl.models.hard_sharing.HardSharingNet`;
* ``cross-stitch`` — :class:`~pianomtl.models.cross_stitch.CrossStitchNet`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from pianomtl.models.cross_stitch import CrossStitchNet
from pianomtl.models.hard_sharing import HardSharingNet
from pianomtl.models.layers import MultitaskNet

GRADIENTS = ("full", "detached")
INITS = ("balanced", "imbalanced")

DEFAULT_WIDTHS: dict[str, dict[str, int]] = {
    "hard": {"small": 32, "large": 96, "head": 10},
    "cross-stitch": {"small": 24, "large": 48, "head": 10},
}
"""Feature maps per architecture: ``small`` (the two 3×3 stem convs), ``large`` (the
1×35 and 5×1 stem convs), ``head`` (each task's 3×3 head conv). Cross-stitch numbers are
per column; they keep its parameter count within +18 % of hard sharing (tested ±25 %)."""


@dataclass
class ModelConfig:
    """Everything that defines a model's architecture (see :data:`DEFAULT_WIDTHS`).

    ``gradient`` ("full" | "detached") and ``init`` ("balanced" | "imbalanced") are the
    cross-stitch options of paper §IV/§V; hard sharing ignores them. Widths left at
    ``None`` take the architecture's defaults, so ``ModelConfig("cross-stitch")`` is the
    paper's network.
    """

    name: str = "hard"
    small: int | None = None
    large: int | None = None
    head: int | None = None
    gradient: str = "full"
    init: str = "imbalanced"
    dropout: float = 0.1
    noise_sigma: float = 0.1

    def __post_init__(self) -> None:
        if self.name not in MODELS:
            raise ValueError(f"unknown model {self.name!r}; choose from {sorted(MODELS)}")
        if self.gradient not in GRADIENTS:
            raise ValueError(f"unknown gradient mode {self.gradient!r}; choose from {GRADIENTS}")
        if self.init not in INITS:
            raise ValueError(f"unknown cross-stitch init {self.init!r}; choose from {INITS}")
        for key, value in DEFAULT_WIDTHS[self.name].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key} must be a positive number of feature maps")
            setattr(self, key, int(getattr(self, key)))
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.noise_sigma < 0:
            raise ValueError(f"noise_sigma must be >= 0, got {self.noise_sigma}")
        self.dropout = float(self.dropout)
        self.noise_sigma = float(self.noise_sigma)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict (strings, ints, floats)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (they would be silently lost)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown ModelConfig keys: {sorted(unknown)}")
        return cls(**data)

    def label(self) -> str:
        """Short human-readable name, e.g. ``cross-stitch/detached/imbalanced``."""
        if self.name == "hard":
            return "hard"
        return f"{self.name}/{self.gradient}/{self.init}"


MODELS: dict[str, type[MultitaskNet]] = {
    "hard": HardSharingNet,
    "cross-stitch": CrossStitchNet,
}


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
