"""Hard parameter sharing network (paper §IV, Fig. 3).

The predecessor "ADSR" net (Kelz et al. 2018: conv 30@3×3, conv 30@1×35, conv 30@7×1,
per-target conv 10@3×3 → dense 88, ≈0.33 M parameters) made deeper and wider, with
96 maps in the larger layers. One shared stem, then one small head per task.

Layers (default widths; ``[C, time, freq]`` shapes for ``T`` output frames, input
``[1, T+10, 144]``; every conv is valid and followed by ELU, Gaussian dropout p=0.1 and
additive Gaussian noise σ=0.1)::

    layer                        output            params   MACs / frame
    stem.0  conv 32@3×3          [32, T+8, 142]       320         40 896
    stem.1  conv 32@3×3          [32, T+6, 140]     9 248      1 290 240
    stem.2  conv 96@1×35         [96, T+6, 106]   107 616     11 397 120
    stem.3  conv 96@5×1          [96, T+2, 106]    46 176      4 884 480
    head    5 × conv 10@3×3      [5·10, T, 104]    43 250      4 492 800
            (one 96→50 call)
    dense   5 × dense over       on/int/off/vel:  367 473        367 120
            10×104 (conv 1×104)  [T, 88] each,
                                 sus: [T, 1]
    total                                         574 083     22 472 656

Time context: 2 + 2 + 0 + 4 + 2 = 10 frames (±5), so ``T + 10`` input frames give
``T`` outputs. MACs/frame are the sequence-form marginal cost (``macs_per_frame()``);
one isolated 11-frame window costs 108.7 M MACs (``macs_per_frame(window=True)``),
4.8× more, because every window recomputes its neighbours' overlapping rows.
``on``/``int``/``off`` are logits; ``vel``/``sus`` pass a straight-through ReLU.

Speed (all exact reformulations; ``benchmarks/models.py`` measures them):

* the five head convs share their input, so they run as one 96 → 50 convolution
  (the same maths as five 96 → 10 ones, one call);
* the network runs channels_last (oneDNN's brgemm kernels; NCHW falls back to slower
  ones), and the 1×35 conv folds time into the batch (see
  :class:`~pianomtl.models.layers.FrameConv2d`), which makes its weight gradient ≈3×
  cheaper;
* noise is drawn straight into channels_last storage (``gaussian_like``), avoiding
  PyTorch's ≈4× slower scalar sampler for non-contiguous tensors; even so, drawing the
  two Gaussian samples for each of the ≈35 k activations per frame is a large share of CPU
  training time.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pianomtl.constants import N_BINS, TASK_WIDTH, TASKS
from pianomtl.models.config import ModelConfig
from pianomtl.models.layers import ConvBlock, MultitaskNet, TaskDense, frame_conv, glorot_init_

FREQ_KERNEL = 35
"""Frequency extent of the large stem conv (as in the predecessor net)."""


def stem_shapes(small: int, large: int) -> list[tuple[int, int, tuple[int, int]]]:
    """``(in, out, kernel)`` of the four stem convolutions (shared by both families)."""
    return [(1, small, (3, 3)), (small, small, (3, 3)), (small, large, (1, FREQ_KERNEL)), (large, large, (5, 1))]


def head_freq() -> int:
    """Frequency bins left for the dense layers: 144 − 2 − 2 − 34 − 0 − 2 = 104."""
    return N_BINS - 2 - 2 - (FREQ_KERNEL - 1) - 2


def front_end(config: ModelConfig) -> tuple[nn.Sequential, ConvBlock, TaskDense]:
    """The shared stem, the five head convolutions (one call) and the per-task dense layers.

    The hard-sharing network is exactly these; the hard+rnn family
    (:mod:`pianomtl.models.sequence`) builds the same modules before its recurrent stage.
    """
    small, large, head = config.small, config.large, config.head
    assert small is not None and large is not None and head is not None
    n = len(TASKS)
    stem = nn.Sequential(
        *(
            ConvBlock(frame_conv(cin, cout, k), config.dropout, config.noise_sigma)
            for cin, cout, k in stem_shapes(small, large)
        )
    )
    heads = ConvBlock(frame_conv(large, n * head, (3, 3), columns=n), config.dropout, config.noise_sigma)
    return stem, heads, TaskDense(head, head_freq(), TASK_WIDTH)


class HardSharingNet(MultitaskNet):
    """Shared 4-layer conv stem, one conv 10@3×3 + dense head per task (see module docstring)."""

    memory_format = torch.channels_last
    architecture = "hard"

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__(config)
        self.stem, self.head, self.dense = front_end(self.config)
        glorot_init_(self)
        self.to(memory_format=self.memory_format)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = self.head(self.stem(self._prepare(x)))
        return self._outputs(self.dense(h))


__all__ = ["FREQ_KERNEL", "HardSharingNet", "front_end", "head_freq", "stem_shapes"]
