"""Warm starts: weights from an earlier model, and layers frozen while the rest trains.

:func:`load_initial_weights` copies every tensor whose name and shape match (a bundle,
a training checkpoint: plain data only, :func:`~pianomtl.transcription.model_file.read_model_file`);
:func:`freeze_parameters` / :func:`frozen_modules` keep the named prefixes fixed
(``--freeze stem``), their noise and dropout layers in eval mode too.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from pianomtl.models.config import ModelConfig


def freeze_parameters(model: torch.nn.Module, prefixes: str) -> list[str]:
    """Stop training the parameters whose names start with one of ``prefixes`` (comma-separated).

    Returns the frozen names; a prefix that names no parameter is an error (a typo would
    otherwise silently train everything).
    """
    wanted = [prefix.strip() for prefix in prefixes.split(",") if prefix.strip()]
    frozen: list[str] = []
    for prefix in wanted:
        matches = [
            name for name, _ in model.named_parameters() if name == prefix or name.startswith(prefix.rstrip(".") + ".")
        ]
        if not matches:
            raise ValueError(f"--freeze {prefix!r} matches no parameter of this model")
        frozen += matches
    for name, parameter in model.named_parameters():
        if name in frozen:
            parameter.requires_grad_(False)
    return frozen


def frozen_modules(model: torch.nn.Module, prefixes: str) -> list[torch.nn.Module]:
    """The submodules named exactly by a ``--freeze`` prefix (e.g. ``stem``), run in evaluation mode in training.

    Why: a frozen part is a fixed feature extractor. Its dropout and noise layers were
    regularisation for its own weights, which no longer change; left on, they would feed
    the trained part noisier features than it sees at inference — and they cost about
    half of a frozen front end's forward pass. A prefix that names only some parameters
    (``dense.dense.on``'s weight) freezes them but leaves the module's mode alone.
    """
    names = dict(model.named_modules())
    return [names[prefix] for prefix in (p.strip().rstrip(".") for p in prefixes.split(",")) if prefix in names]


def load_initial_weights(model: torch.nn.Module, path: str | Path, report: bool = True) -> int:
    """Copy the weights of a checkpoint or bundle into ``model`` (fine-tuning starts here).

    Same architecture: every tensor is copied (strictly). A different one (warm start,
    e.g. a sequence model from a hard-sharing stem): the tensors whose name and shape
    match are copied, the rest keep their fresh initialisation, and the count is
    printed; :class:`ValueError` if none match. Returns the number of tensors copied.
    """
    from pianomtl.transcription.model_file import read_model_file

    state = read_model_file(path)
    own = model.state_dict()
    if state["model_config"] == model.config.to_dict():
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as error:
            raise ValueError(
                f"{path}: weights do not fit its own model config ({str(error).splitlines()[0]})"
            ) from None
        return len(own)
    try:
        source = ModelConfig.from_dict(state["model_config"]).label()
    except (ValueError, TypeError):  # an architecture this version does not know
        source = str(state["model_config"].get("name", "unknown architecture"))
    matching = {
        name: tensor
        for name, tensor in state["model"].items()
        if isinstance(tensor, torch.Tensor) and name in own and own[name].shape == tensor.shape
    }
    if not matching:
        raise ValueError(
            f"{path}: none of its {len(state['model'])} tensors ({source}) matches this run's model "
            f"({model.config.label()}) by name and shape; nothing to start from"
        )
    with torch.no_grad():
        for name, tensor in matching.items():
            own[name].copy_(tensor)
    if report:
        tqdm.write(
            f"init-from {path}: copied {len(matching)} of {len(own)} tensors of this run's {model.config.label()} "
            f"model from {source} (same name and shape); the other {len(own) - len(matching)} start fresh"
        )
    return len(matching)
