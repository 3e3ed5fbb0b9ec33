"""The model that ships with the package, and loading any model file for inference.

A *bundle* is a small ``torch.save`` dict made by :func:`make_bundle` from a
training checkpoint: ``model_config`` (:meth:`ModelConfig.to_dict`), ``model`` (the
state dict in float32, nothing else of the training state), ``decoder``
(:class:`~pianomtl.transcription.decoders.DecoderParams` as a dict, tuned on validation data) and
``metadata`` (what it was trained on, its scores, the source checkpoint). The
default one lives at ``pianomtl/assets/default.pt``.

:func:`load_model` also accepts a training checkpoint (``checkpoint.pt`` /
``best.pt`` of ``pianomtl train``); its decoder parameters are then the defaults.
"""

from __future__ import annotations

import datetime
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from pianomtl.core.files import atomic_write
from pianomtl.transcription.decoders import DecoderParams

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_BUNDLE = ASSETS / "default.pt"
BUNDLE_FORMAT = "pianomtl-model-bundle"
BUNDLE_VERSION = 1


class ModelFileError(ValueError):
    """A model file is missing or unusable; the message is one line naming the file."""


def default_model_path() -> Path:
    """Where the bundled default model lives (it may not exist in a development checkout)."""
    return DEFAULT_BUNDLE


def has_default_model() -> bool:
    return DEFAULT_BUNDLE.is_file()


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def read_model_file(path: str | Path) -> dict[str, Any]:
    """The dict stored in a bundle or training checkpoint, loaded on the CPU.

    Bundles hold only tensors and plain values and load with ``weights_only=True``;
    training checkpoints also hold RNG states (numpy objects), so for those the
    file is unpickled in full — only load checkpoints you trust.
    """
    path = Path(path)
    if not path.exists():
        hint = " (the bundled model has not been built yet; pass --model CHECKPOINT)" if path == DEFAULT_BUNDLE else ""
        raise ModelFileError(f"{path}: model file not found{hint}")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder, not a model file")
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            state = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise ModelFileError(f"{path}: not a readable model file ({_first_line(error)})") from None
    except Exception as error:  # an arbitrary pickle can raise anything
        raise ModelFileError(
            f"{path}: not a readable model file ({type(error).__name__}: {_first_line(error)})"
        ) from None
    if not isinstance(state, dict) or "model_config" not in state or "model" not in state:
        raise ModelFileError(f"{path}: not a pianomtl model (expected a bundle or a training checkpoint)")
    return state


def load_model(path: str | Path | None = None, device: str | torch.device = "cpu") -> tuple[Any, DecoderParams, dict]:
    """``(model in eval mode on device, decoder parameters, metadata)`` from a model file.

    ``path=None`` loads the bundled default. Raises :class:`ModelFileError` (one
    line) for a missing, corrupt or mismatched file.
    """
    from pianomtl.models.registry import ModelConfig, build_model

    path = Path(path) if path is not None else DEFAULT_BUNDLE
    state = read_model_file(path)
    try:
        config = ModelConfig.from_dict(state["model_config"])
        model = build_model(config)
        model.load_state_dict(state["model"])
    except Exception as error:
        raise ModelFileError(f"{path}: weights do not fit the stored model config ({_first_line(error)})") from None
    model = model.to(device).eval()
    if state.get("format") == BUNDLE_FORMAT:
        decoder = DecoderParams.from_dict(state.get("decoder"))
        metadata = {**dict(state.get("metadata") or {}), "format": "bundle"}
    else:
        decoder = DecoderParams()
        metadata = {"format": "checkpoint", "step": state.get("step")}
    metadata["path"] = str(path)
    metadata["model_config"] = dict(state["model_config"])
    return model, decoder, metadata


def make_bundle(
    checkpoint_path: str | Path,
    decoder_params: DecoderParams | dict | None,
    out_path: str | Path,
    metadata: dict | None = None,
) -> Path:
    """Write a bundle (float32 weights, decoder parameters, metadata) from a checkpoint.

    Only the model's weights are kept (no optimiser, RNG or history), so the file is
    about 4 bytes per parameter. The file is written atomically.
    """
    checkpoint_path, out_path = Path(checkpoint_path), Path(out_path)
    state = read_model_file(checkpoint_path)
    if isinstance(decoder_params, DecoderParams):
        decoder = decoder_params.to_dict()
    else:
        decoder = DecoderParams.from_dict(decoder_params).to_dict()
    weights = {
        name: (tensor.detach().to("cpu", torch.float32) if tensor.is_floating_point() else tensor.detach().cpu())
        .contiguous()
        .clone()
        for name, tensor in state["model"].items()
    }
    info = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source_checkpoint": checkpoint_path.name,
        "training_step": state.get("step", state.get("metadata", {}).get("training_step")),
        "parameters": int(sum(t.numel() for t in weights.values() if t.is_floating_point())),
    }
    info.update(metadata or {})
    payload = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
        "model_config": dict(state["model_config"]),
        "model": weights,
        "decoder": decoder,
        "metadata": _plain(info),
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(out_path, lambda target: torch.save(payload, target))


def _plain(value: Any) -> Any:
    """Metadata reduced to what ``weights_only`` loading accepts (dicts, lists, str, numbers)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)
