"""``ModelConfig``: everything that decides a model's parameters and maths (not its speed).

It lives apart from :mod:`pianomtl.models.registry` so that the networks can import
it at run time: the registry imports the networks (to map names to classes), and the
networks need the config type, so keeping both in one module made an import circle
that only ``TYPE_CHECKING`` guards held together. This module imports no network.

A config is JSON-safe through :meth:`ModelConfig.to_dict` / :meth:`ModelConfig.from_dict`
and rebuilds the identical architecture with :func:`~pianomtl.models.registry.build_model`
— which is what a checkpoint stores next to its ``state_dict``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

GRADIENTS = ("full", "detached")
INITS = ("balanced", "imbalanced")

DEFAULT_WIDTHS: dict[str, dict[str, int]] = {
    "hard": {"small": 32, "large": 96, "head": 10},
    "cross-stitch": {"small": 24, "large": 48, "head": 10},
    "hard+rnn": {"small": 16, "large": 48, "head": 10},
    "hard+keyrnn": {"small": 16, "large": 48, "head": 10},
}
"""Feature maps per architecture: ``small`` (the two 3×3 stem convs), ``large`` (the
1×35 and 5×1 stem convs), ``head`` (each task's 3×3 head conv). Cross-stitch numbers are
per column; they keep its parameter count within +18 % of hard sharing (tested ±25 %).
The sequence families (``hard+rnn``, ``hard+keyrnn``) default to the bundled v5 model's
compact stem (16/48/10), so that stem can be warm-started from it unchanged
(:func:`~pianomtl.models.sequence.load_stem_from`).
The keys are the architecture names (:data:`ARCHITECTURES`)."""

ARCHITECTURES: tuple[str, ...] = tuple(DEFAULT_WIDTHS)
"""Every architecture name; :data:`~pianomtl.models.registry.MODELS` maps each to its class."""

SEQUENCE_ARCHITECTURES: tuple[str, ...] = ("hard+rnn", "hard+keyrnn")
"""Architectures with a sequence stage (the ones that read :data:`SEQUENCE_KEYS`)."""

CELLS = ("lstm", "gru")
"""Recurrent cells of the sequence families; LSTM is the default because PyTorch runs it
much faster on a CPU (the :mod:`pianomtl.models.sequence` docstring says why)."""

DEFAULT_SEQUENCE: dict[str, dict[str, int | str]] = {
    "hard+rnn": {"embed": 128, "hidden": 192, "cell": "lstm"},
    "hard+keyrnn": {"embed": 64, "hidden": 48, "cell": "lstm"},
}
"""Sequence-stage defaults per sequence architecture, with the ``cell`` type (:data:`CELLS`).
``hard+rnn``: ``embed`` units of the per-frame embedding, ``hidden`` units of each of its
two recurrent layers (per direction). ``hard+keyrnn``: ``embed`` units of the
recording-wide context layer, ``hidden`` units of the per-key layer (one set of weights
run on every key)."""

SEQUENCE_KEYS: tuple[str, ...] = ("embed", "hidden", "cell", "bidirectional")
"""The config fields only the sequence families have (absent from the others' dicts)."""


@dataclass
class ModelConfig:
    """Everything that defines a model's architecture (see :data:`DEFAULT_WIDTHS`).

    ``gradient`` ("full" | "detached") and ``init`` ("balanced" | "imbalanced") are the
    cross-stitch options of paper §IV/§V; hard sharing ignores them. Widths left at
    ``None`` take the architecture's defaults, so ``ModelConfig("cross-stitch")`` is the
    paper's network.

    ``embed``, ``hidden``, ``cell`` and ``bidirectional`` (:data:`SEQUENCE_KEYS`) belong
    to the sequence families (:data:`SEQUENCE_ARCHITECTURES`): left at ``None`` they take
    :data:`DEFAULT_SEQUENCE`; the paper's families reject them (a value they would
    ignore would not survive the JSON round trip, see :meth:`to_dict`).
    ``bidirectional=True`` is the non-causal ablation twin (it cannot stream).
    """

    name: str = "hard"
    small: int | None = None
    large: int | None = None
    head: int | None = None
    gradient: str = "full"
    init: str = "imbalanced"
    dropout: float = 0.1
    noise_sigma: float = 0.1
    embed: int | None = None
    hidden: int | None = None
    cell: str | None = None
    bidirectional: bool = False

    def __post_init__(self) -> None:
        if self.name not in ARCHITECTURES:
            raise ValueError(f"unknown model {self.name!r}; choose from {sorted(ARCHITECTURES)}")
        if self.gradient not in GRADIENTS:
            raise ValueError(f"unknown gradient mode {self.gradient!r}; choose from {GRADIENTS}")
        if self.init not in INITS:
            raise ValueError(f"unknown cross-stitch init {self.init!r}; choose from {INITS}")
        sizes: dict[str, int | str] = dict(DEFAULT_WIDTHS[self.name])
        if self.sequence:
            sizes.update(DEFAULT_SEQUENCE[self.name])
            default_cell = str(sizes.pop("cell"))
            self.cell = self.cell or default_cell
            if self.cell not in CELLS:
                raise ValueError(f"unknown recurrent cell {self.cell!r}; choose from {CELLS}")
        else:
            extra = [key for key in SEQUENCE_KEYS if getattr(self, key)]
            if extra:
                raise ValueError(f"{self.name!r} has no sequence stage; {extra} apply to {SEQUENCE_ARCHITECTURES}")
        for key, value in sizes.items():
            if getattr(self, key) is None:
                setattr(self, key, value)
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key} must be a positive number of units")
            setattr(self, key, int(getattr(self, key)))
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.noise_sigma < 0:
            raise ValueError(f"noise_sigma must be >= 0, got {self.noise_sigma}")
        self.dropout = float(self.dropout)
        self.noise_sigma = float(self.noise_sigma)
        self.bidirectional = bool(self.bidirectional)

    @property
    def sequence(self) -> bool:
        """Whether this architecture has a sequence stage (reads :data:`SEQUENCE_KEYS`)."""
        return self.name in SEQUENCE_ARCHITECTURES

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict (strings, ints, floats, bools).

        The paper's families leave out the sequence keys, so their dicts are exactly
        what checkpoints written before the sequence families held: code that compares
        a checkpoint's stored config with a run's (fine-tuning, resuming) still matches.
        """
        data = asdict(self)
        if not self.sequence:
            for key in SEQUENCE_KEYS:
                del data[key]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (they would be silently lost)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown ModelConfig keys: {sorted(unknown)}")
        return cls(**data)

    def label(self) -> str:
        """Short human-readable name, e.g. ``cross-stitch/detached/imbalanced`` or ``hard+rnn/lstm/bidirectional``."""
        if self.name == "hard":
            return "hard"
        if self.sequence:
            return f"{self.name}/{self.cell}" + ("/bidirectional" if self.bidirectional else "")
        return f"{self.name}/{self.gradient}/{self.init}"


__all__ = [
    "ARCHITECTURES",
    "CELLS",
    "DEFAULT_SEQUENCE",
    "DEFAULT_WIDTHS",
    "GRADIENTS",
    "INITS",
    "SEQUENCE_ARCHITECTURES",
    "SEQUENCE_KEYS",
    "ModelConfig",
]
