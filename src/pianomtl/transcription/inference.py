"""Run a network over a whole recording in chunks, exactly as if it ran at once.

Each chunk of output frames ``[a, b)`` receives input rows ``[a-5, b+5)`` (edges
repeated at the recording's ends), and every output frame depends only on its own
11-frame window, so chunked results equal whole-file results to float precision:
there are no seams. Memory is bounded by the chunk size, not the recording length.
The chunk size is a speed choice only: on a CPU, chunks of :data:`CPU_CHUNK_FRAMES`
keep each layer's maps near the caches and run faster than whole minutes (measured in
``benchmarks/RESULTS.md``); GPUs get :data:`DEFAULT_CHUNK_FRAMES` (fewer, larger kernels).

``precision="bf16"`` runs the network under bfloat16 autocast (torch models only):
about 2.5× faster on CPUs with AMX / AVX512-BF16 and on GPUs, at the price of
activations that differ from float32 by up to a few 1e-3 (so a few decoded onsets may
move or flip near the thresholds). The default ``"fp32"`` is exact.
"""

from __future__ import annotations

import numpy as np
import torch

from pianomtl.constants import BINARY_TASKS, TASK_WIDTH, TASKS
from pianomtl.data.sampler import context_indices

DEFAULT_CHUNK_FRAMES = 3000  # 60 s of audio per forward pass (GPUs, other devices)
CPU_CHUNK_FRAMES = 512  # ≈10 s per forward pass on a CPU
PRECISIONS = ("fp32", "bf16")


def default_chunk_frames(device: str | torch.device = "cpu") -> int:
    """Frames per forward pass: :data:`CPU_CHUNK_FRAMES` on a CPU, else :data:`DEFAULT_CHUNK_FRAMES`."""
    return CPU_CHUNK_FRAMES if torch.device(device).type == "cpu" else DEFAULT_CHUNK_FRAMES


def bf16_is_native(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 in hardware (else bf16 autocast may be slower than fp32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return False


@torch.inference_mode()
def run_model(
    model: torch.nn.Module,
    features: np.ndarray,
    chunk_frames: int | None = None,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
) -> dict[str, np.ndarray]:
    """Probabilities (on/int/off) and values (vel/sus) ``[T, width]`` for ``[T, 144]`` features.

    ``chunk_frames``: output frames per forward pass (``None``: :func:`default_chunk_frames`).
    ``precision``: ``"fp32"`` (exact) or ``"bf16"`` (autocast; torch models only, see the module docstring).
    """
    chunk_frames = chunk_frames or default_chunk_frames(device)
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {PRECISIONS}")
    bf16 = precision == "bf16"
    if bf16 and not isinstance(model, torch.nn.Module):
        raise ValueError("precision 'bf16' needs the torch backend")
    device_type = torch.device(device).type
    was_training = model.training
    model.eval()
    n_frames = len(features)
    # One array per head, filled chunk by chunk: no list of small per-chunk arrays that
    # would stay alive between the network's large temporaries (glibc then cannot give
    # the heap back, and an hour's RSS grows by ~1.5 GB) and no concatenated second copy.
    outputs = {t: np.empty((n_frames, TASK_WIDTH[t]), dtype=np.float32) for t in TASKS}
    try:
        for start in range(0, n_frames, chunk_frames):
            frames = min(chunk_frames, n_frames - start)
            window = np.asarray(features[context_indices(start, frames, n_frames)], dtype=np.float32)
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
                result = model(torch.from_numpy(window).unsqueeze(0).to(device))
            for task in TASKS:
                value = result[task][0]
                if task in BINARY_TASKS:
                    value = torch.sigmoid(value)
                outputs[task][start : start + frames] = value.float().cpu().numpy()
            del result
    finally:
        model.train(was_training)
    return outputs
