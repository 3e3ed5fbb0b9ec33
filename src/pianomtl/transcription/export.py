"""``pianomtl export``: the network as an ONNX graph (onnxruntime runs it: :mod:`~pianomtl.transcription.onnx_model`).

Only the network is exported: audio loading, the spectrogram and decoding stay in
numpy/torch, so both backends share them and differ only in the network's
arithmetic. The graph takes ``features`` ``[batch, T+10, 144]`` (the spectrogram
with 5 frames of context on each side; ``batch`` and ``T`` are dynamic) and returns
the five heads named as :data:`~pianomtl.constants.TASKS` (``on``/``int``/``off``
as logits, ``vel``/``sus`` as values), exactly like the torch model's ``forward``.
The model configuration and decoder parameters travel in the file's metadata, so
an ``.onnx`` file transcribes on its own (``transcribe --backend onnxruntime``).
The runtime side, :class:`~pianomtl.transcription.onnx_model.OnnxModel`, needs no torch
(:mod:`pianomtl.transcription.onnx_model`); it is re-exported here.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from pianomtl.constants import CONTEXT, N_BINS, ONNX_INPUT, TASKS
from pianomtl.core.files import atomic_write
from pianomtl.transcription.decoders import DecoderParams
from pianomtl.transcription.onnx_model import (  # the runtime side lives there (no torch); re-exported
    METADATA_CONFIG,
    METADATA_DECODER,
    METADATA_INFO,
    OnnxModel,
)

DEFAULT_OPSET = 17


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
    if getattr(model, "recurrent", False):  # state in, state out: the graph of models/stateful_onnx.py
        from pianomtl.models.stateful_onnx import export_stateful_onnx

        try:
            graph = onnx.load_from_string(export_stateful_onnx(model, opset, example_frames))
        finally:
            model.train(was_training)
        return _finish(graph, model, destination, decoder, metadata)
    example = torch.zeros(1, example_frames + 2 * CONTEXT, N_BINS)
    buffer = io.BytesIO()
    axes = {ONNX_INPUT: {0: "batch", 1: "input_frames"}, **{t: {0: "batch", 1: "frames"} for t in TASKS}}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # deprecation and tracer notes of the legacy exporter
            torch.onnx.export(
                _TupleOutputs(model),
                (example,),
                buffer,
                dynamo=False,
                input_names=[ONNX_INPUT],
                output_names=list(TASKS),
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
            )
    finally:
        model.train(was_training)
    return _finish(onnx.load_from_string(buffer.getvalue()), model, destination, decoder, metadata)


def _finish(
    graph: Any, model: torch.nn.Module, destination: str | Path | io.BytesIO, decoder: DecoderParams | None, metadata
) -> str | Path | io.BytesIO:
    """Add the configuration, decoder and metadata to the graph and write it (atomically for a path)."""
    import onnx

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


def max_difference(model: torch.nn.Module, onnx_model: OnnxModel, frames: int = 257, seed: int = 0) -> float:
    """Largest absolute difference of all heads between torch and onnxruntime on random features."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.rand(1, frames + 2 * CONTEXT, N_BINS, generator=generator) * 2.0
    model.eval()
    with torch.no_grad():
        expected = model(features)
    actual = onnx_model(features)
    return max(float((expected[t].float() - actual[t]).abs().max()) for t in TASKS)
