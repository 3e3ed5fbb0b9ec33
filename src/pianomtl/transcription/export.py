"""``pianomtl export``: the network as an ONNX graph, and an onnxruntime stand-in for it.

Only the network is exported: audio loading, the spectrogram and decoding stay in
numpy/torch, so both backends share them and differ only in the network's
arithmetic. The graph takes ``features`` ``[batch, T+10, 144]`` (the spectrogram
with 5 frames of context on each side; ``batch`` and ``T`` are dynamic) and returns
the five heads named as :data:`~pianomtl.constants.TASKS` (``on``/``int``/``off``
as logits, ``vel``/``sus`` as values), exactly like the torch model's ``forward``.
The model configuration and decoder parameters travel in the file's metadata, so
an ``.onnx`` file transcribes on its own (``transcribe --backend onnxruntime``).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pianomtl.constants import CONTEXT, N_BINS, TASKS
from pianomtl.core.files import atomic_write
from pianomtl.transcription.decoders import DecoderParams

DEFAULT_OPSET = 17
INPUT_NAME = "features"
METADATA_DECODER = "pianomtl.decoder"
METADATA_CONFIG = "pianomtl.model_config"
METADATA_INFO = "pianomtl.metadata"


class _TupleOutputs(torch.nn.Module):
    """The model with its dict of heads as a tuple in TASKS order (what ONNX outputs are)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(features)
        return tuple(outputs[task] for task in TASKS)


def export_onnx(
    model: torch.nn.Module,
    destination: str | Path | io.BytesIO,
    decoder: DecoderParams | None = None,
    metadata: dict | None = None,
    opset: int = DEFAULT_OPSET,
    example_frames: int = 64,
) -> str | Path | io.BytesIO:
    """Export ``model`` (in eval mode) to ONNX at ``destination`` (a path or a BytesIO).

    Uses the TorchScript-based exporter (``dynamo=False``): it needs no extra
    packages and inlines custom autograd functions such as the straight-through ReLU.
    """
    import onnx

    was_training = model.training
    model = model.cpu().eval()
    example = torch.zeros(1, example_frames + 2 * CONTEXT, N_BINS)
    buffer = io.BytesIO()
    axes = {INPUT_NAME: {0: "batch", 1: "input_frames"}, **{t: {0: "batch", 1: "frames"} for t in TASKS}}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # deprecation and tracer notes of the legacy exporter
            torch.onnx.export(
                _TupleOutputs(model),
                (example,),
                buffer,
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=list(TASKS),
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
            )
    finally:
        model.train(was_training)
    graph = onnx.load_from_string(buffer.getvalue())
    config = getattr(model, "config", None)
    properties = {
        METADATA_DECODER: json.dumps((decoder or DecoderParams()).to_dict()),
        METADATA_CONFIG: json.dumps(config.to_dict() if hasattr(config, "to_dict") else None),
        METADATA_INFO: json.dumps(metadata or {}, default=str),
    }
    for key, value in properties.items():
        graph.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    graph.producer_name = "pianomtl"
    data = graph.SerializeToString()
    if isinstance(destination, io.BytesIO):
        destination.write(data)
        return destination
    destination = Path(destination)
    return atomic_write(destination, lambda target: target.write_bytes(data))


class OnnxModel:
    """An onnxruntime session that behaves like the torch model for inference.

    ``model(x)`` takes ``[B, T+10, 144]`` (torch tensor or numpy array) and returns
    a dict of torch tensors ``[B, T, width]`` — so :func:`pianomtl.transcription.inference.run_model`
    runs it unchanged. ``decoder`` and ``model_config`` come from the file's metadata.
    """

    training = False

    def __init__(self, source: str | Path | bytes, threads: int = 0, providers: list[str] | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.path = None if isinstance(source, bytes) else str(source)
        try:
            self.session = onnxruntime.InferenceSession(
                source if isinstance(source, bytes) else str(source),
                sess_options=options,
                providers=providers or ["CPUExecutionProvider"],
            )
        except Exception as error:  # onnxruntime raises its own exception types
            name = self.path or "<onnx bytes>"
            raise ValueError(f"{name}: not a usable ONNX model ({str(error).strip().splitlines()[0]})") from None
        self.output_names = [o.name for o in self.session.get_outputs()]
        missing = [t for t in TASKS if t not in self.output_names]
        if missing:
            raise ValueError(f"{self.path or '<onnx bytes>'}: ONNX model lacks outputs {missing}")
        properties = self.session.get_modelmeta().custom_metadata_map
        self.decoder = DecoderParams.from_dict(json.loads(properties.get(METADATA_DECODER, "{}")))
        self.model_config = json.loads(properties.get(METADATA_CONFIG, "null"))
        self.metadata: dict[str, Any] = json.loads(properties.get(METADATA_INFO, "{}"))

    def __call__(self, features: torch.Tensor | np.ndarray) -> dict[str, torch.Tensor]:
        if isinstance(features, torch.Tensor):
            features = features.detach().cpu().numpy()
        array = np.ascontiguousarray(features, dtype=np.float32)
        outputs = self.session.run(list(TASKS), {INPUT_NAME: array})
        return {task: torch.from_numpy(value) for task, value in zip(TASKS, outputs, strict=True)}

    # the parts of the nn.Module interface inference code touches
    def eval(self) -> OnnxModel:
        return self

    def train(self, mode: bool = True) -> OnnxModel:
        return self

    def to(self, *args: Any, **kwargs: Any) -> OnnxModel:
        return self


def max_difference(model: torch.nn.Module, onnx_model: OnnxModel, frames: int = 257, seed: int = 0) -> float:
    """Largest absolute difference of all heads between torch and onnxruntime on random features."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.rand(1, frames + 2 * CONTEXT, N_BINS, generator=generator) * 2.0
    model.eval()
    with torch.no_grad():
        expected = model(features)
    actual = onnx_model(features)
    return max(float((expected[t].float() - actual[t]).abs().max()) for t in TASKS)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", default=None, help="training checkpoint or bundle (default: bundled)")
    parser.add_argument("--onnx", required=True, metavar="OUT", help="ONNX file to write")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--no-check", action="store_true", help="skip the torch-vs-onnxruntime comparison")


def run(args: argparse.Namespace) -> int:
    from pianomtl.transcription.model_file import ModelFileError, load_model

    try:
        model, decoder, metadata = load_model(args.checkpoint)
    except ModelFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.onnx)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(model, out, decoder=decoder, metadata=metadata, opset=args.opset)
    except OSError as error:
        print(f"error: cannot write {out}: {error.strerror or error}", file=sys.stderr)
        return 2
    size = out.stat().st_size / 1e6
    print(f"wrote {out} ({size:.1f} MB, opset {args.opset}, input [batch, T+10, {N_BINS}])")
    if not args.no_check:
        difference = max_difference(model, OnnxModel(out))
        print(f"torch vs onnxruntime: max |difference| {difference:.2e} over all heads")
        if difference > 1e-4:
            print("error: the ONNX graph disagrees with the torch model", file=sys.stderr)
            return 1
    return 0
