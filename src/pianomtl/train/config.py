"""What one training run is: :class:`TrainConfig`, its options and their checks (no torch on import).

Why apart from the loop: the sweep files, the tables and ``pianomtl train --help`` read
the options (their names, defaults, choices) without training anything; this module
imports neither torch nor tqdm, so they stay cheap. The networks' options are
:class:`~pianomtl.models.config.ModelConfig`'s, checked when a config is made.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

from pianomtl.constants import TASKS
from pianomtl.core.devices import check_device


def _default_model() -> dict:
    """The paper's hard-sharing network with its default widths."""
    from pianomtl.models.config import ModelConfig

    return ModelConfig(name="hard").to_dict()


DEFAULT_LAMBDAS = {"on": 1.0, "int": 1.0, "off": 1.0, "vel": 1.0, "sus": 1.0}


OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("constant", "cosine")


def _whole(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _cli(help: str, **options: object) -> dict:
    """A :class:`TrainConfig` field's metadata: its command-line help and argparse options (choices, metavar)."""
    return {"help": help, **options}


@dataclass
class TrainConfig:
    """Everything a run needs; saved in every checkpoint so it can be resumed or audited.

    Each field's ``metadata["help"]`` is its command-line help: ``pianomtl train``
    offers every field as ``--field-name`` with this default (``model`` as the
    architecture options, ``lambdas`` as ``--lambda-TASK``). Values are checked here,
    so a bad one is a one-line :class:`ValueError` from the API and the command alike.
    """

    cache: str = field(metadata=_cli("feature cache made by `pianomtl prepare`"))
    out: str = field(metadata=_cli("run folder (checkpoints, logs, result.json)"))
    model: dict = field(
        default_factory=_default_model, metadata=_cli("architecture (ModelConfig dict)")
    )
    lambdas: dict = field(default_factory=lambda: dict(DEFAULT_LAMBDAS), metadata=_cli("task weights λ"))
    lr: float = field(default=0.01, metadata=_cli("learning rate η"))
    momentum: float = field(default=0.9, metadata=_cli("SGD momentum (Nesterov)"))
    optimizer: str = field(
        default="sgd",
        metadata=_cli("sgd: SGD + Nesterov momentum (the paper); adam: faster on small budgets", choices=OPTIMIZERS),
    )
    lr_schedule: str = field(
        default="constant", metadata=_cli("constant, or cosine: decay to 0 over the run", choices=LR_SCHEDULES)
    )
    batch_size: int = field(default=8, metadata=_cli("excerpts per minibatch"))
    sequence_frames: int = field(default=64, metadata=_cli("output frames per excerpt"))
    steps: int = field(default=5000, metadata=_cli("number of updates"))
    validate_every: int = field(default=1000, metadata=_cli("updates between validations (best.pt)"))
    checkpoint_every: int = field(default=250, metadata=_cli("updates between checkpoints (checkpoint.pt)"))
    validation_frames: int = field(
        default=3000, metadata=_cli("frames per validation recording (bounds validation time)")
    )
    seed: int = field(default=0, metadata=_cli("random seed (restart k uses seed + 1000·k)"))
    device: str = field(default="cpu", metadata=_cli("cpu, cuda, cuda:1, ..."))
    amp: bool = field(default=False, metadata=_cli("bf16 autocast (meant for GPUs)"))
    restarts: int = field(default=0, metadata=_cli("fresh restarts with new seeds after divergence"))
    explode_factor: float = field(default=20.0, metadata=_cli("divergence: a loss above this × the first loss"))
    clip_grad_norm: float = field(default=0.0, metadata=_cli("clip the gradient norm to this (0: off, as the paper)"))
    threads: int = field(default=0, metadata=_cli("torch intra-op threads (0: torch's default)"))
    equaliser: float = field(
        default=0.0,
        metadata=_cli(
            "share of excerpts given a random equaliser and level (timbre augmentation; 0: off)", metavar="P"
        ),
    )
    init_from: str = field(
        default="",
        metadata=_cli(
            "start from the weights of a checkpoint or bundle (fine-tuning; another architecture copies the "
            "tensors whose name and shape match)",
            metavar="CKPT",
        ),
    )
    vel_rank: float = field(
        default=0.0,
        metadata=_cli(
            "weight of a loss on the order (pairwise ranking) and spread of the velocities "
            "struck in each excerpt, added to λ_vel·MSE (velocity is judged within a recording: its order matters, "
            "which MSE against the absolute velocities of many pianos blurs; 0: off)",
            metavar="W",
        ),
    )
    freeze: str = field(
        default="",
        metadata=_cli(
            "comma-separated parameter-name prefixes kept fixed (e.g. 'stem,head': train only what a warm start "
            "added; their backward pass is skipped, which makes an update several times cheaper); a prefix that "
            "names a whole module also runs it in evaluation mode (no dropout or noise: a fixed feature extractor)",
            metavar="PREFIXES",
        ),
    )

    def __post_init__(self) -> None:
        def bad(name: str, rule: str) -> ValueError:
            return ValueError(f"{name.replace('_', '-')} must be {rule}, got {getattr(self, name)!r}")

        for name in ("cache", "out"):
            if not str(getattr(self, name)).strip():
                raise bad(name, "a folder")
        if not (isinstance(self.lr, numbers.Real) and math.isfinite(self.lr) and self.lr > 0):
            raise bad("lr", "a positive number")
        if not 0.0 <= self.momentum < 1.0:
            raise bad("momentum", "in [0, 1)")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", f"one of {', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise bad("lr_schedule", f"one of {', '.join(LR_SCHEDULES)}")
        for name in (
            "batch_size",
            "sequence_frames",
            "steps",
            "validate_every",
            "checkpoint_every",
            "validation_frames",
        ):
            if not _whole(getattr(self, name)) or getattr(self, name) < 1:
                raise bad(name, "a whole number ≥ 1")
        for name in ("restarts", "threads"):
            if not _whole(getattr(self, name)) or getattr(self, name) < 0:
                raise bad(name, "a whole number ≥ 0")
        if not self.explode_factor > 0:  # math.inf is allowed (lr-find turns the guard off)
            raise bad("explode_factor", "positive")
        if not (math.isfinite(self.clip_grad_norm) and self.clip_grad_norm >= 0):
            raise bad("clip_grad_norm", "≥ 0")
        if not (math.isfinite(self.vel_rank) and self.vel_rank >= 0):
            raise bad("vel_rank", "a number ≥ 0")
        if not 0.0 <= self.equaliser <= 1.0:
            raise bad("equaliser", "a share in [0, 1]")
        unknown = set(self.lambdas) - set(TASKS)
        if unknown:
            raise ValueError(f"lambdas: unknown tasks {sorted(unknown)}; tasks are {', '.join(TASKS)}")
        for task, weight in self.lambdas.items():
            if not (math.isfinite(weight) and weight >= 0):
                raise ValueError(f"lambda-{task} must be a number ≥ 0, got {weight!r}")
        from pianomtl.models.config import ModelConfig  # torch, when the config is checked (not on import)

        ModelConfig.from_dict(self.model)  # raises ValueError (one line) for an unknown or bad architecture
        check_device(self.device)
