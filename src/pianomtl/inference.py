"""Run a network over a whole recording in chunks, exactly as if it ran at once.

Each chunk of output frames ``[a, b)`` receives input rows ``[a-5, b+5)`` (edges
repeated at the recording's ends), and every output frame depends only on its own
11-frame window, so chunked results equal whole-file results to float precision:
there are no seams. Memory is bounded by the chunk size, not the recording length.
"""

from __future__ import annotations

import numpy as np
import torch

from pianomtl.constants import BINARY_TASKS, TASK_WIDTH, TASKS
from pianomtl.data.sampler import context_indices

DEFAULT_CHUNK_FRAMES = 3000  # 60 s of audio per forward pass


@torch.inference_mode()
def run_model(
    model: torch.nn.Module,
    features: np.ndarray,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    device: str | torch.device = "cpu",
) -> dict[str, np.ndarray]:
    """Probabilities (on/int/off) and values (vel/sus) ``[T, width]`` for ``[T, 144]`` features."""
    was_training = model.training
    model.eval()
    n_frames = len(features)
    outputs: dict[str, list[np.ndarray]] = {t: [] for t in TASKS}
    try:
        for start in range(0, n_frames, chunk_frames):
            frames = min(chunk_frames, n_frames - start)
            window = np.asarray(features[context_indices(start, frames, n_frames)], dtype=np.float32)
            result = model(torch.from_numpy(window).unsqueeze(0).to(device))
            for task in TASKS:
                value = result[task][0]
                if task in BINARY_TASKS:
                    value = torch.sigmoid(value)
                outputs[task].append(value.float().cpu().numpy())
    finally:
        model.train(was_training)
    return {t: np.concatenate(v) if v else np.zeros((0, TASK_WIDTH[t]), np.float32) for t, v in outputs.items()}
