"""Run a network over a whole recording in chunks, exactly as if it ran at once.

Each chunk of output frames ``[a, b)`` receives input rows ``[a-5, b+5)`` (edges
repeated at the recording's ends), and every output frame depends only on its own
11-frame window, so chunked results equal whole-file results to float precision:
there are no seams. Memory is bounded by the chunk size, not the recording length.
The chunk size is a speed choice only: on a CPU, chunks of :data:`CPU_CHUNK_FRAMES`
keep each layer's maps near the caches and run faster than whole minutes (measured in
``benchmarks/RESULTS.md``); GPUs get :data:`DEFAULT_CHUNK_FRAMES` (fewer, larger kernels).

A causal recurrent model (``model.recurrent``, e.g. ``hard+gru``) also depends on every
earlier frame: its state (``initial_state`` / ``forward_with_state``) is carried from
one chunk to the next, so chunked output again equals whole-file output; a
bidirectional one (``causal`` false) runs the whole recording in one pass.

Torch is imported only for torch models: an
:class:`~pianomtl.transcription.onnx_model.OnnxModel` runs on numpy arrays alone.

``precision="bf16"`` runs the network under bfloat16 autocast (torch models only):
about 2.5× faster on CPUs with AMX / AVX512-BF16 and on GPUs, at the price of
activations that differ from float32 by up to a few 1e-3 (so a few decoded onsets may
move or flip near the thresholds). The default ``"fp32"`` is exact.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from pianomtl.constants import BINARY_TASKS, TASK_WIDTH, TASKS
from pianomtl.core.features import context_indices

if TYPE_CHECKING:
    import torch

DEFAULT_CHUNK_FRAMES = 3000  # 60 s of audio per forward pass (GPUs, other devices)
CPU_CHUNK_FRAMES = 512  # ≈10 s per forward pass on a CPU
PRECISIONS = ("fp32", "bf16")


def _device_type(device: str | torch.device) -> str:
    return str(device).split(":")[0]


def default_chunk_frames(device: str | torch.device = "cpu") -> int:
    """Frames per forward pass: :data:`CPU_CHUNK_FRAMES` on a CPU, else :data:`DEFAULT_CHUNK_FRAMES`."""
    return CPU_CHUNK_FRAMES if _device_type(device) == "cpu" else DEFAULT_CHUNK_FRAMES


def is_torch_module(model: Any) -> bool:
    """Whether ``model`` is a ``torch.nn.Module`` (without importing torch if nothing has)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def carries_state(model: Any) -> bool:
    """Whether chunks of ``model`` must be chained through its state (a causal recurrent model)."""
    return bool(getattr(model, "recurrent", False)) and bool(getattr(model, "causal", True))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, without overflow for large negative logits."""
    return np.exp(-np.logaddexp(np.float32(0.0), -x)).astype(np.float32, copy=False)


def _chunk_frames(model: Any, chunk_frames: int, n_frames: int) -> int:
    """A non-causal recurrent model (bidirectional) sees the whole recording in one pass."""
    if getattr(model, "recurrent", False) and not carries_state(model):
        return max(n_frames, 1)
    return chunk_frames


def run_model(
    model: Any,
    features: np.ndarray,
    chunk_frames: int | None = None,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Probabilities (on/int/off) and values (vel/sus) ``[T, width]`` for ``[T, 144]`` features.

    ``model``: a torch module, or an :class:`~pianomtl.transcription.onnx_model.OnnxModel`
    (any object with the same call, or ``initial_state`` / ``forward_with_state``).
    ``chunk_frames``: output frames per forward pass (``None``: :func:`default_chunk_frames`).
    ``precision``: ``"fp32"`` (exact) or ``"bf16"`` (autocast; torch models only, see the module docstring).
    ``progress``: called after each chunk with ``(frames done, total frames)`` (a progress bar).
    """
    chunk_frames = chunk_frames or default_chunk_frames(device)
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {PRECISIONS}")
    if is_torch_module(model):
        return _run_torch(model, features, chunk_frames, device, precision == "bf16", progress)
    if precision != "fp32":
        raise ValueError(f"precision {precision!r} needs the torch backend")
    return _run_arrays(model, features, chunk_frames, progress)


def _empty_outputs(n_frames: int) -> dict[str, np.ndarray]:
    # One array per head, filled chunk by chunk: no list of small per-chunk arrays that
    # would stay alive between the network's large temporaries (glibc then cannot give
    # the heap back, and an hour's RSS grows by ~1.5 GB) and no concatenated second copy.
    return {t: np.empty((n_frames, TASK_WIDTH[t]), dtype=np.float32) for t in TASKS}


def _windows(features: np.ndarray, chunk_frames: int) -> Any:
    """``(start, frames, [frames + 10, 144] input)`` per chunk, edges repeated (:func:`context_indices`)."""
    n_frames = len(features)
    for start in range(0, n_frames, chunk_frames):
        frames = min(chunk_frames, n_frames - start)
        yield start, frames, np.asarray(features[context_indices(start, frames, n_frames)], dtype=np.float32)


def _run_torch(
    model: Any,
    features: np.ndarray,
    chunk_frames: int,
    device: Any,
    bf16: bool,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    import torch

    device_type = torch.device(device).type
    was_training = model.training
    model.eval()
    outputs = _empty_outputs(len(features))
    stateful = carries_state(model)
    try:
        with torch.inference_mode():
            state = model.initial_state(1) if stateful else None
            for start, frames, window in _windows(features, _chunk_frames(model, chunk_frames, len(features))):
                x = torch.from_numpy(window).unsqueeze(0).to(device)
                with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
                    if stateful:
                        result, state = model.forward_with_state(x, state)
                    else:
                        result = model(x)
                for task in TASKS:
                    value = result[task][0]
                    if task in BINARY_TASKS:
                        value = torch.sigmoid(value)
                    outputs[task][start : start + frames] = value.float().cpu().numpy()
                del result
                if progress is not None:
                    progress(start + frames, len(features))
    finally:
        model.train(was_training)
    return outputs


def _run_arrays(
    model: Any, features: np.ndarray, chunk_frames: int, progress: Callable[[int, int], None] | None = None
) -> dict[str, np.ndarray]:
    """The same loop for a model that takes and returns numpy arrays (onnxruntime): no torch."""
    outputs = _empty_outputs(len(features))
    stateful = carries_state(model)
    state = model.initial_state(1) if stateful else None
    for start, frames, window in _windows(features, _chunk_frames(model, chunk_frames, len(features))):
        if stateful:
            result, state = model.forward_with_state(window[None], state)
        else:
            result = model(window[None])
        for task in TASKS:
            value = np.asarray(result[task][0], dtype=np.float32)
            outputs[task][start : start + frames] = sigmoid(value) if task in BINARY_TASKS else value
        del result
        if progress is not None:
            progress(start + frames, len(features))
    return outputs
