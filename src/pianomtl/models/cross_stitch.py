"""Cross-stitch network (paper §IV, Fig. 4; Misra et al. 2016).

One column per task (M = 5), each a copy of the hard-sharing stem and head
(:mod:`pianomtl.models.hard_sharing`) with fewer maps — 24 in the small layers and 48
in the large ones (the paper's 96 → 48) — and a cross-stitch unit after every conv
layer of the stem and after the head conv, mixing the five columns:
``z̃ᵐ = Σ_m' α[m, m'] · z^m'``.

Layers (default widths; shapes summed over the 5 columns; every conv valid, followed
by ELU, Gaussian dropout p=0.1, additive Gaussian noise σ=0.1)::

    layer                               output             params   MACs / frame
    stem.0     5 × conv 24@3×3          [5·24, T+8, 142]     1 200        153 360
    stitch.0   α 5×5                                           25         85 200
    stem.1     5 × conv 24@3×3 (g=5)    [5·24, T+6, 140]    26 040      3 628 800
    stitch.1   α 5×5                                           25         84 000
    stem.2     5 × conv 48@1×35 (g=5)   [5·48, T+6, 106]   201 840     21 369 600
    stitch.2   α 5×5                                           25        127 200
    stem.3     5 × conv 48@5×1 (g=5)    [5·48, T+2, 106]    57 840      6 105 600
    stitch.3   α 5×5                                           25        127 200
    head       5 × conv 10@3×3 (g=5)    [5·10, T, 104]      21 650      2 246 400
    stitch.4   α 5×5                                           25         26 000
    dense      5 × dense over 10×104    88 (sus: 1) each   367 473        367 120
    total                                                  676 168     34 320 480

That is 1.18× the hard-sharing network's 574 083 parameters ("roughly comparable";
the paper halves only the large layers, 96 → 48, and the small ones here go 32 → 24),
and 1.53× its multiply-adds per frame (the columns' large layers are 5 × 48 = 240 maps
wide). One isolated 11-frame window costs 200.0 M MACs (5.8× the sequence form).

Design choices:

* **Columns as grouped convolutions.** The five columns' maps are concatenated along
  channels (column-major blocks) and each layer is one ``Conv2d(groups=5)`` call (the
  first one, whose input is the shared spectrogram, is a plain 1 → 5·24 conv). That is
  mathematically five separate convs, in one call; state-dict slices
  ``weight[m·C_out:(m+1)·C_out]`` are column ``m``.
* **α per layer, M × M.** The paper writes one weight ``α_l,m'^(m)`` per pair of tasks
  per layer (§IV eq. for ``z̃``, and the init rule of §V), as in Misra et al.'s
  layer-wise units; per-channel α (``M × M × C``) would be a different, larger model
  than the one studied. So each unit has an ``M × M`` matrix (row = receiving task).
* **Mixing as one matrix product**, no einsum copies: a GEMM with ``kron(α, I_C)`` on
  the channels_last activations (the layout in which the grouped convs run fastest),
  or a ``bmm`` in NCHW — see :class:`~pianomtl.models.layers.CrossStitch` for timings.
* **Detached variant:** the off-diagonal terms read ``z.detach()``; the diagonal term
  ``α[m, m]·zᵐ`` keeps the column's own gradient, and α gets gradients from both terms.
  Forward values are identical to "full" (only the backward pass differs).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pianomtl.constants import TASK_WIDTH, TASKS
from pianomtl.models.config import ModelConfig
from pianomtl.models.hard_sharing import head_freq, stem_shapes
from pianomtl.models.layers import ConvBlock, CrossStitch, MultitaskNet, TaskDense, frame_conv, glorot_init_


class CrossStitchNet(MultitaskNet):
    """Five task columns joined by cross-stitch units (see module docstring)."""

    memory_format = torch.channels_last
    architecture = "cross-stitch"

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__(config)
        config = self.config
        small, large, head = config.small, config.large, config.head
        assert small is not None and large is not None and head is not None
        m = len(TASKS)
        detached = config.gradient == "detached"
        blocks = []
        for i, (cin, cout, k) in enumerate(stem_shapes(small, large)):
            # the first layer reads the one shared input channel: a plain conv with m·cout outputs
            conv = frame_conv(cin, m * cout, k, columns=m) if i == 0 else frame_conv(m * cin, m * cout, k, groups=m)
            blocks.append(ConvBlock(conv, config.dropout, config.noise_sigma))
        self.stem = nn.ModuleList(blocks)
        self.head = ConvBlock(frame_conv(m * large, m * head, (3, 3), groups=m), config.dropout, config.noise_sigma)
        self.stitches = nn.ModuleList(
            CrossStitch(m, init=config.init, detached=detached) for _ in range(len(blocks) + 1)
        )
        self.dense = TaskDense(head, head_freq(), TASK_WIDTH)
        glorot_init_(self)
        self.to(memory_format=self.memory_format)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = self._prepare(x)
        for block, stitch in zip(self.stem, self.stitches, strict=False):
            h = stitch(block(h))
        h = self.stitches[-1](self.head(h))
        return self._outputs(self.dense(h))
