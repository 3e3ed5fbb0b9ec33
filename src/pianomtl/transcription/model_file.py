"""The model that ships with the package, and loading any model file for inference.

A *bundle* is a small ``torch.save`` dict made by :func:`make_bundle` from a
training checkpoint: ``model_config`` (:meth:`ModelConfig.to_dict`), ``model`` (the
state dict in float32, nothing else of the training state), ``decoder``
(:class:`~pianomtl.transcription.decoders.DecoderParams` as a dict, tuned on validation data) and
``metadata`` (what it was trained on, its scores, the source checkpoint). The
default one lives at ``pianomtl/assets/default.pt``.

:func:`load_model` also accepts a training checkpoint (``checkpoint.pt`` /
``best.pt`` of ``pianomtl train``); its decoder parameters are then the defaults.

Safety: every model file is read with ``torch.load(weights_only=True)`` — tensors,
dicts, lists, tuples, strings and numbers only — so a file can never run code when it
is loaded (a pickle that names any other Python object is refused with a one-line
:class:`ModelFileError`). Files written before checkpoints held only plain data (their
random-number states were numpy objects) are refused too; :func:`convert_legacy_file`
(``pianomtl convert-model OLD NEW``) converts such a file once, reading it with an
unpickler that allows numpy arrays, dtypes and scalars besides plain data, and nothing
else (:mod:`pianomtl.transcription.legacy_file`).
"""

from __future__ import annotations

import datetime
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from pianomtl.constants import ASSETS
from pianomtl.core.files import atomic_write
from pianomtl.transcription.decoders import DecoderParams

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


def _refused_global(error: BaseException) -> str | None:
    """The Python object a ``weights_only`` load refused (``posix.system``, ``numpy...``), if named."""
    match = re.search(r"GLOBAL ([\w.]+)", str(error))
    return match.group(1) if match else None


def _unpickler_reason(error: BaseException) -> str:
    """What torch's restricted unpickler objected to, without its advice to turn safe loading off."""
    match = re.search(r"WeightsUnpickler error:\s*(.+)", str(error))
    return match.group(1).strip().splitlines()[0] if match else "not a torch model file"


def read_model_file(path: str | Path) -> dict[str, Any]:
    """The dict stored in a bundle or training checkpoint, loaded on the CPU.

    Only plain data is read (``weights_only=True``: nothing in the file can run code).
    Raises :class:`ModelFileError` (one line naming the file) for a missing, corrupt,
    foreign or unsafe file.
    """
    path = Path(path)
    if not path.exists():
        hint = " (the bundled model has not been built yet; pass --model CHECKPOINT)" if path == DEFAULT_BUNDLE else ""
        raise ModelFileError(f"{path}: model file not found{hint}")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder, not a model file")
    if path.suffix.lower() == ".onnx":
        raise ModelFileError(
            f"{path}: an ONNX graph; this needs a .pt model file (a bundle or a training checkpoint, "
            "e.g. the one the graph was exported from)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on the pickle protocol of foreign files
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = _refused_global(error)
        if refused is not None and refused.split(".")[0] in ("numpy", "_codecs"):
            raise ModelFileError(
                f"{path}: an older pianomtl file holding numpy objects, refused by the safe loader; "
                f"convert it once with `pianomtl convert-model {path} NEW.pt`"
            ) from None
        what = f"it would load the Python object {refused}" if refused else _unpickler_reason(error)
        raise ModelFileError(f"{path}: refused, not plain model data ({what}; model files never run code)") from None
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        raise ModelFileError(f"{path}: not a readable model file ({_first_line(error)})") from None
    except Exception as error:  # a damaged file can make the loader raise anything
        raise ModelFileError(
            f"{path}: not a readable model file ({type(error).__name__}: {_first_line(error)})"
        ) from None
    if not isinstance(state, dict) or "model_config" not in state or "model" not in state:
        raise ModelFileError(f"{path}: not a pianomtl model (expected a bundle or a training checkpoint)")
    if not isinstance(state["model_config"], dict) or not isinstance(state["model"], dict):
        raise ModelFileError(f"{path}: not a pianomtl model (its model_config or weights are not dicts)")
    return state


def plain_data(value: Any, where: str = "") -> Any:
    """``value`` with numpy arrays and scalars turned into tensors and Python numbers.

    What remains is what ``torch.load(weights_only=True)`` accepts: tensors, dicts,
    lists, tuples, strings, numbers, ``None``. Any other object raises :class:`ValueError`.
    """
    import numpy as np

    if value is None or isinstance(value, torch.Tensor | bool | int | float | str | bytes):
        return value
    if isinstance(value, dict):
        return {key: plain_data(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, torch.Size):
        return tuple(value)
    if isinstance(value, list | tuple):
        items = [plain_data(item, f"{where}[{index}]") for index, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "u" and value.dtype.itemsize >= 4:  # uint32 RNG keys: int64 holds them exactly
            value = value.astype(np.int64)
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    raise ValueError(f"cannot convert a {type(value).__module__}.{type(value).__name__} (at {where or 'top level'})")


def convert_legacy_file(source: str | Path, destination: str | Path) -> Path:
    """Rewrite an old checkpoint or bundle in the plain format the safe loader reads.

    The source is read by :func:`~pianomtl.transcription.legacy_file.read_legacy_file`:
    torch's restricted unpickler plus numpy arrays, dtypes and scalars, nothing else, so
    a crafted file is refused (:class:`ModelFileError`) before anything in it runs. The
    result is checked to load safely; ``destination`` is never overwritten.
    """
    source, destination = Path(source), Path(destination)
    if not source.is_file():
        raise ModelFileError(f"{source}: model file not found")
    if destination.exists():
        raise ModelFileError(f"{destination}: exists; choose a new name")
    from pianomtl.transcription.legacy_file import read_legacy_file

    try:
        state = read_legacy_file(source)  # allowlisted numpy objects only: a crafted file runs nothing
    except ValueError as error:
        raise ModelFileError(str(error)) from None
    if not isinstance(state, dict) or "model_config" not in state or "model" not in state:
        raise ModelFileError(f"{source}: not a pianomtl model (expected a bundle or a training checkpoint)")
    try:
        plain = plain_data(state)
    except ValueError as error:
        raise ModelFileError(f"{source}: {error}") from None
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(destination, lambda target: torch.save(plain, target), overwrite=False)
    except FileExistsError:
        raise ModelFileError(f"{destination}: exists; choose a new name") from None
    read_model_file(destination)  # proves the result loads with weights_only=True
    return destination


def load_model(path: str | Path | None = None, device: str | torch.device = "cpu") -> tuple[Any, DecoderParams, dict]:
    """``(model in eval mode on device, decoder parameters, metadata)`` from a model file.

    ``path=None`` loads the bundled default: ``assets/default.pt`` where it exists (a
    checkout), else the same network rebuilt from ``assets/default.onnx`` (the wheel ships
    the model once, as ONNX: :func:`~pianomtl.transcription.export.torch_model_from_onnx`,
    weights bit-equal). Raises :class:`ModelFileError` (one line) for a missing, corrupt
    or mismatched file.
    """
    from pianomtl.models.registry import ModelConfig, build_model

    if path is None and not DEFAULT_BUNDLE.is_file():
        from pianomtl.transcription.export import torch_model_from_onnx
        from pianomtl.transcription.onnx_model import DEFAULT_ONNX

        if DEFAULT_ONNX.is_file():
            try:
                model, decoder, metadata = torch_model_from_onnx(DEFAULT_ONNX)
            except ValueError as error:
                raise ModelFileError(_first_line(error)) from None
            return model.to(device).eval(), decoder, metadata
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
