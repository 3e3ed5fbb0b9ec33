"""ONNX graphs of recurrent models with their state as explicit inputs and outputs.

A recurrent model (``model.recurrent``, :class:`~pianomtl.models.sequence.HardRNNNet`)
is exported as its :meth:`~pianomtl.models.sequence.HardRNNNet.forward_with_state`:
inputs ``features`` ``[batch, T+10, 144]`` and the state tensors named
``model.state_names`` (``[directions, batch · rows, hidden]`` each, axis 1 named by
:data:`~pianomtl.constants.ONNX_STATE_BATCH`); outputs the five heads
(:data:`~pianomtl.constants.TASKS`, as in the feed-forward graphs) and the state after
the last frame, named ``next_<state name>``. The caller carries the state from one
call to the next, so a long file runs in bounded memory and a live stream runs chunk by
chunk, both giving exactly the whole-sequence result. A zero state starts a sequence.

:func:`stateful_signature` gives everything ``torch.onnx.export`` needs (so
:mod:`pianomtl.transcription.export` can export either kind of model with its one call
and add its metadata); :func:`export_stateful_onnx` is that call, returning the bytes.
:class:`~pianomtl.transcription.onnx_model.OnnxModel` runs such a graph with the torch
model's ``initial_state`` / ``forward_with_state`` interface; the names (``features``,
the ``next_`` prefix) are :data:`~pianomtl.constants.ONNX_INPUT` and
:data:`~pianomtl.constants.ONNX_NEXT`, shared with it.

Only causal models have a carried state; the bidirectional ablation twin is not
exported this way (it would need the whole file in one call).
"""

from __future__ import annotations

import io
import warnings

import torch
from torch import Tensor, nn

from pianomtl.constants import CONTEXT, N_BINS, ONNX_INPUT, ONNX_NEXT, ONNX_STATE_BATCH, TASKS


class StatefulGraph(nn.Module):
    """``(features, *state) → (*heads in TASKS order, *next state)``: the exported function."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        outputs, next_state = self.model.forward_with_state(features, state)
        return (*(outputs[task] for task in TASKS), *next_state)


def stateful_signature(
    model: nn.Module, example_frames: int = 64
) -> tuple[nn.Module, tuple[Tensor, ...], list[str], list[str], dict[str, dict[int, str]]]:
    """``(module, example inputs, input names, output names, dynamic axes)`` for ``torch.onnx.export``.

    Batch and frame counts are dynamic; the example state is random, so the exporter
    cannot fold a zero state into constants.
    """
    if not getattr(model, "recurrent", False) or not getattr(model, "causal", False):
        raise ValueError("only causal recurrent models have a state to export")
    names = list(model.state_names)
    generator = torch.Generator().manual_seed(0)
    example_state = tuple(torch.randn(s.shape, generator=generator) for s in model.initial_state(1))
    example = (torch.zeros(1, example_frames + 2 * CONTEXT, N_BINS), *example_state)
    inputs = [ONNX_INPUT, *names]
    outputs = [*TASKS, *(ONNX_NEXT + name for name in names)]
    axes: dict[str, dict[int, str]] = {ONNX_INPUT: {0: "batch", 1: "input_frames"}}
    axes.update({task: {0: "batch", 1: "frames"} for task in TASKS})
    for name, tensor in zip(names, example_state, strict=True):  # rows per sequence: 1, or 88 for the keys
        axis = {1: f"{ONNX_STATE_BATCH}{tensor.shape[1]}"}
        axes.update({name: axis, ONNX_NEXT + name: axis})
    return StatefulGraph(model), example, inputs, outputs, axes


def export_stateful_onnx(model: nn.Module, opset: int, example_frames: int = 64) -> bytes:
    """The ONNX graph (bytes, no metadata) of ``model.forward_with_state``, exported in eval mode on the CPU.

    Uses the TorchScript-based exporter (``dynamo=False``), as the feed-forward graphs
    do; it maps ``nn.LSTM`` / ``nn.GRU`` with initial states to ONNX's LSTM / GRU ops.
    """
    was_training = model.training
    model = model.cpu().eval()
    module, example, inputs, outputs, axes = stateful_signature(model, example_frames)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # deprecation and tracer notes of the legacy exporter
            torch.onnx.export(
                module,
                example,
                buffer,
                dynamo=False,
                input_names=inputs,
                output_names=outputs,
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
            )
    finally:
        model.train(was_training)
    return buffer.getvalue()


__all__ = ["StatefulGraph", "export_stateful_onnx", "stateful_signature"]
