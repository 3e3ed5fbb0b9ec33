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

import numpy as np
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


# -- back from ONNX -------------------------------------------------------------------------

_GATES = {
    # ONNX gate order → PyTorch's: rows of each gate block, in PyTorch's order
    "LSTM": (0, 2, 3, 1),  # ONNX i, o, f, c  → torch i, f, g(c), o
    "GRU": (1, 0, 2),  # ONNX z, r, h     → torch r, z, n
}


def _torch_gates(array: np.ndarray, op: str) -> np.ndarray:
    """``[gates·h, …]`` rows from ONNX's gate order into PyTorch's."""
    blocks = np.split(array, len(_GATES[op]), axis=0)
    return np.concatenate([blocks[i] for i in _GATES[op]], axis=0)


def torch_model_from_onnx(source: str | Path | bytes) -> tuple[torch.nn.Module, DecoderParams, dict]:
    """``(torch model in eval mode, decoder, metadata)`` rebuilt from a graph :func:`export_onnx` wrote.

    Why: the lean wheel ships the bundled model once, as ``default.onnx`` (what the lean
    install can run); with the ``[torch]`` extra, the torch backend rebuilds the same
    network from it instead of a second 2 MB ``default.pt``. The architecture comes from
    the graph's metadata (:func:`~pianomtl.models.registry.build_model`), each weight from
    the graph: an initializer named like the parameter, a recurrent layer's ``W``/``R``/``B``
    (gates reordered), a ``MatMul`` weight (transposed), and what is left matched by a
    unique shape. The result is checked against onnxruntime on random input (all heads
    within 1e-4), so a graph this cannot read is a :class:`ValueError`, never a wrong model.
    """
    import onnx
    from onnx import numpy_helper

    from pianomtl.models.registry import ModelConfig, build_model

    graph = onnx.load_from_string(source) if isinstance(source, bytes) else onnx.load(str(source))
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    properties = {p.key: p.value for p in graph.metadata_props}
    if not properties.get(METADATA_CONFIG) or properties[METADATA_CONFIG] == "null":
        raise ValueError(f"{name}: the graph carries no model configuration (not written by pianomtl export)")
    config = ModelConfig.from_dict(json.loads(properties[METADATA_CONFIG]))
    decoder = DecoderParams.from_dict(json.loads(properties.get(METADATA_DECODER, "{}")))
    metadata = {**json.loads(properties.get(METADATA_INFO, "{}")), "format": "onnx-converted", "path": name}
    metadata["model_config"] = config.to_dict()
    model = build_model(config).eval()
    wanted = model.state_dict()
    arrays = {i.name: numpy_helper.to_array(i) for i in graph.graph.initializer}
    found: dict[str, np.ndarray] = {}
    for key, array in arrays.items():  # initializers named like the parameters (``model.`` prefix of the wrapper)
        bare = key.split(".", 1)[1] if key.startswith("model.") else key
        if bare in wanted and tuple(wanted[bare].shape) == array.shape:
            found[bare] = array
    used = {key for key in arrays if (key.split(".", 1)[1] if key.startswith("model.") else key) in found}
    scoped: list[tuple[str, Any]] = []  # (module path, node) for nodes named by the exporter's module scopes
    for node in graph.graph.node:
        scope = node.name.strip("/").split("/")[:-1] if node.name.startswith("/") else []
        if scope[:1] == ["model"]:  # the _TupleOutputs wrapper of a plain export
            scope = scope[1:]
        module = ".".join(scope)
        scoped.append((module, node))
        if node.op_type in _GATES and module:
            layer = node.name.rsplit("_", 1)[1] if node.name.rsplit("/", 1)[-1] != node.op_type else "0"
            w, r, b = (node.input[i] if len(node.input) > i else "" for i in (1, 2, 3))
            if w not in arrays or r not in arrays:
                continue
            for direction in range(arrays[w].shape[0]):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                found[f"{module}.weight_ih{suffix}"] = _torch_gates(arrays[w][direction], node.op_type)
                found[f"{module}.weight_hh{suffix}"] = _torch_gates(arrays[r][direction], node.op_type)
                if b in arrays:
                    bias_ih, bias_hh = np.split(arrays[b][direction], 2)
                    found[f"{module}.bias_ih{suffix}"] = _torch_gates(bias_ih, node.op_type)
                    found[f"{module}.bias_hh{suffix}"] = _torch_gates(bias_hh, node.op_type)
            used.update(x for x in (w, r, b) if x in arrays)
        elif node.op_type == "MatMul" and module and len(node.input) > 1 and node.input[1] in arrays:
            found.setdefault(f"{module}.weight", arrays[node.input[1]].T)
            used.add(node.input[1])
    def squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(d for d in shape if d != 1)

    for module, node in scoped:  # a parameter used inside its module's scope (a cross-stitch α): by shape
        if not module:
            continue
        for key in node.input:
            if key not in arrays or key in used:
                continue
            candidates = [
                name
                for name in wanted
                if name.startswith(module + ".") and name not in found
                and squeezed(tuple(wanted[name].shape)) == squeezed(arrays[key].shape)
            ]
            if len(candidates) == 1:
                found[candidates[0]] = arrays[key]
                used.add(key)
    left = {key: array for key, array in arrays.items() if key not in used}
    for key, tensor in wanted.items():  # the rest (an embedding fed to Expand …): a unique shape
        if key in found:
            continue
        matches = [k for k, a in left.items() if squeezed(a.shape) == squeezed(tuple(tensor.shape))]
        if len(matches) == 1:
            found[key] = left.pop(matches[0])
    missing = [key for key in wanted if key not in found or np.size(found[key]) != wanted[key].numel()]
    if missing:
        raise ValueError(f"{name}: cannot rebuild the torch model from the graph "
            f"(no weight for {', '.join(missing[:3])})")
    model.load_state_dict(
        {key: torch.from_numpy(np.array(found[key], dtype=np.float32).reshape(wanted[key].shape)) for key in wanted}
    )
    difference = max_difference(model, OnnxModel(graph.SerializeToString()), frames=64)
    if not difference < 1e-4:
        raise ValueError(f"{name}: the torch model rebuilt from the graph differs from it by {difference:.2g}")
    return model.eval(), decoder, metadata
