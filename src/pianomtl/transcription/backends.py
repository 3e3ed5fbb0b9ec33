"""Which runtime runs which model: a ``model=`` argument resolved to a network ready to run.

Why a module of its own: :class:`~pianomtl.transcription.pipeline.Transcriber` (offline)
and :class:`~pianomtl.transcription.stream.Stream` (live) both turn "the bundled model",
a model file, a torch module or an ONNX model into a runnable network with its decoder;
with the rule here, the stream needs no pipeline and the pipeline builds streams without
an import cycle. Torch is imported only when a torch backend or model file is asked for.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pianomtl.extras import require, torch_available
from pianomtl.transcription.decoders import DecoderParams
from pianomtl.transcription.inference import PRECISIONS

if TYPE_CHECKING:
    import torch

BACKENDS = ("torch", "onnxruntime")


def _is_onnx_path(model: Any) -> bool:
    return isinstance(model, str | Path) and Path(model).suffix.lower() == ".onnx"


def _onnx_threads(threads: int = 0) -> int:
    """onnxruntime's thread count: ``threads``, else torch's setting when torch is loaded (0: onnxruntime's default)."""
    torch = sys.modules.get("torch")
    return threads or (torch.get_num_threads() if torch is not None else 0)


def default_backend(model: Any = None, device: str | torch.device = "cpu", precision: str = "fp32") -> str:
    """The backend ``backend=None`` picks.

    ``onnxruntime`` for ONNX models, and for the bundled model on the CPU in float32
    (its ``default.onnx``): the same activations as torch (within 1e-6), several seconds
    less start-up (no torch import) and no slower per minute of audio
    (``benchmarks/RESULTS.md``, section 8), and the only choice in the lean install.
    ``torch`` for torch model files and modules, other devices, and ``precision="bf16"``.
    """
    from pianomtl.transcription.onnx_model import OnnxModel, has_default_onnx

    if isinstance(model, OnnxModel) or _is_onnx_path(model):
        return "onnxruntime"
    if model is None and precision == "fp32" and str(device).split(":")[0] == "cpu":
        if has_default_onnx() or not torch_available():
            return "onnxruntime"
    return "torch"


def resolve_model(
    model: Any = None, device: str | torch.device = "cpu", backend: str | None = None, threads: int = 0
) -> tuple[Any, DecoderParams, dict]:
    """``(runnable model, decoder parameters, metadata)`` for what ``transcribe`` accepts.

    ``model``: ``None`` (the bundled default), a path to a bundle, training
    checkpoint or ``.onnx`` file, a loaded torch module (moved to ``device``; decoder defaults) or an
    :class:`~pianomtl.transcription.onnx_model.OnnxModel`. ``backend=None``: :func:`default_backend`.
    With ``backend="onnxruntime"`` the bundled model is its ``default.onnx``, and any
    other torch model is exported to ONNX in memory first; with ``backend="torch"`` the
    bundled model is ``default.pt``. ``threads``: onnxruntime's
    CPU threads (0: torch's setting if torch is loaded, else onnxruntime's default).
    Torch models need the ``[torch]`` extra (:class:`~pianomtl.extras.MissingExtraError` says so).
    """
    from pianomtl.transcription.onnx_model import OnnxModel, has_default_onnx, load_onnx_model

    backend = backend or default_backend(model, device)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    if isinstance(model, OnnxModel):
        return model, model.decoder, {**model.metadata, "format": "onnx"}
    if _is_onnx_path(model):
        if backend != "onnxruntime":
            raise ValueError(f"{model}: an ONNX model needs backend='onnxruntime'")
        return load_onnx_model(model, threads=_onnx_threads(threads))
    if backend == "onnxruntime" and model is None and has_default_onnx():
        return load_onnx_model(None, threads=_onnx_threads(threads))
    if model is None:
        require("torch", "the torch backend", "torch")
    elif isinstance(model, str | Path):
        require("torch", f"loading {model} (a torch model file)", "torch")
    import torch

    from pianomtl.transcription.model_file import load_model

    if isinstance(model, torch.nn.Module):
        network, decoder, metadata = model, DecoderParams(), {"format": "module"}
    else:
        network, decoder, metadata = load_model(model, device="cpu" if backend == "onnxruntime" else device)
    if backend == "onnxruntime":
        require("onnx", "exporting a torch model for onnxruntime", "torch")
        from pianomtl.transcription.export import export_onnx

        buffer = export_onnx(network, io.BytesIO(), decoder=decoder, metadata=metadata)
        return OnnxModel(buffer.getvalue(), threads=_onnx_threads(threads)), decoder, metadata
    return network.to(device), decoder, metadata


@dataclass(frozen=True)
class LoadedNetwork:
    """A network ready to run and what decides how it runs."""

    model: Any
    """A torch module (on ``device``) or an :class:`~pianomtl.transcription.onnx_model.OnnxModel`."""
    decoder: DecoderParams
    """The model's own decoder (tuned for a bundle; the defaults otherwise)."""
    metadata: dict = field(default_factory=dict)
    backend: str = "onnxruntime"
    device: Any = "cpu"
    """Where the network runs (``"cpu"`` for onnxruntime)."""


def load_network(
    model: Any = None,
    device: str | torch.device = "cpu",
    backend: str | None = None,
    precision: str = "fp32",
    threads: int = 0,
) -> LoadedNetwork:
    """``model`` (anything :func:`resolve_model` takes) loaded for ``backend`` (``None``: :func:`default_backend`).

    ``precision`` other than ``"fp32"`` needs the torch backend (a ``ValueError`` otherwise).
    """
    from pianomtl.transcription.onnx_model import OnnxModel

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {PRECISIONS}")
    backend = backend or default_backend(model, device, precision)
    network, decoder, metadata = resolve_model(model, device, backend, threads=threads)
    backend = "onnxruntime" if isinstance(network, OnnxModel) else "torch"
    if precision != "fp32" and backend != "torch":
        raise ValueError(f"precision {precision!r} needs the torch backend")
    return LoadedNetwork(network, decoder, metadata, backend, device if backend == "torch" else "cpu")
