"""Building blocks shared by both architecture families (paper §IV, Fig. 3 and 4).

* :class:`GaussianDropout`, :class:`AdditiveGaussianNoise` — the two noise layers of
  Fig. 3b, active in training mode only;
* :class:`StraightThroughReLU` — the vel/sus output non-linearity of Fig. 3c/d;
* :class:`ConvBlock` — conv → ELU → multiplicative noise → additive noise;
* :class:`CrossStitch` — the unit of Fig. 4, "full" or "detached";
* :class:`TaskDense` — the five per-frame dense output layers, stored as ``1 × F``
  convolutions and evaluated as one matrix product per task;
* :class:`MultitaskNet` — the base class of every model: input/output convention,
  :meth:`~MultitaskNet.predict`, parameter and multiply-add counts;
* :func:`pad_context`, :func:`window_forward`, :func:`glorot_init_`, :func:`count_macs`.

Input convention of every model: ``x`` of shape ``[B, T + 10, 144]`` (``T >= 1``
output frames, :data:`~pianomtl.constants.CONTEXT` frames of context on each side,
edge-padded by the caller with :func:`pad_context`). All convolutions are *valid*,
so the network consumes exactly 10 frames of time context and evaluates every output
frame at once ("sequence form"), which gives the same numbers as evaluating each
11-frame window on its own (:func:`window_forward`) at a fraction of the cost.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pianomtl.constants import BINARY_TASKS, CONTEXT, N_BINS, TASK_WIDTH, TASKS
from pianomtl.core.features import context_indices
from pianomtl.models.config import ModelConfig

WINDOW = 2 * CONTEXT + 1
"""Frames in one network input window (11)."""


# --------------------------------------------------------------------------- noise


def gaussian_like(x: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """I.i.d. ``N(mean, std²)`` samples with ``x``'s shape, dtype, device and memory format.

    Same as ``torch.randn_like(x) * std + mean``, but fills the new tensor's storage as one flat
    contiguous vector: PyTorch's vectorised CPU normal sampler only runs on contiguous
    tensors, and falls back to a ≈4× slower scalar loop for channels_last ones. The
    samples are i.i.d., so the order in which they land in memory does not matter.
    """
    out = torch.empty_like(x)  # always dense (strides preserved when x is dense)
    out.as_strided((out.numel(),), (1,)).normal_(mean, std)
    return out


class GaussianDropout(nn.Module):
    """Multiplicative Gaussian noise ``x · n`` with ``n ~ N(1, p / (1 - p))`` (training only).

    The variance matches that of (inverted) dropout with drop probability ``p``
    (Srivastava et al. 2014, §10). Identity in eval mode or when ``p == 0``.
    """

    def __init__(self, p: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"GaussianDropout needs 0 <= p < 1, got {p}")
        self.p = float(p)
        self.std = math.sqrt(self.p / (1.0 - self.p))

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        # x · n, n ~ N(1, std²) drawn directly: one pass forward, one (grad · n) backward
        return x * gaussian_like(x, 1.0, self.std)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class AdditiveGaussianNoise(nn.Module):
    """Additive Gaussian noise ``x + σ·ε``, ``ε ~ N(0, 1)`` (training only)."""

    def __init__(self, sigma: float = 0.1) -> None:
        super().__init__()
        if sigma < 0:
            raise ValueError(f"AdditiveGaussianNoise needs sigma >= 0, got {sigma}")
        self.sigma = float(sigma)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.sigma == 0.0:
            return x
        # added into the fresh noise tensor (no extra allocation); the gradient is the identity
        return gaussian_like(x, 0.0, self.sigma).add_(x)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"


# ------------------------------------------------------------------ output units


def straight_through_relu(x: Tensor) -> Tensor:
    """``max(0, x)`` forward, identity backward (paper Fig. 3d).

    Written as ``x + (relu(x) - x).detach()``: the value is exactly ``relu(x)`` in
    floating point (``x + (-x) == 0`` and ``x + 0 == x``), the gradient is exactly
    the incoming one, and the expression traces and exports (TorchScript, ONNX,
    ``torch.export``) without a custom autograd function.
    """
    return x + (F.relu(x) - x).detach()


class StraightThroughReLU(nn.Module):
    """Module form of :func:`straight_through_relu`: a ReLU whose unit cannot die."""

    def forward(self, x: Tensor) -> Tensor:
        return straight_through_relu(x)


# ----------------------------------------------------------------- convolutions


class FrameConv2d(nn.Conv2d):
    """A valid ``Conv2d`` over ``[time, frequency]`` (plain ``nn.Conv2d`` parameters and maths).

    Speed detail: a kernel one frame high (the ``1 × 35`` frequency convolution) on a
    channels_last input is evaluated with time folded into the batch —
    ``[B, C, T, F] → [B·T, C, 1, F]``, a free view in channels_last memory. The result is
    identical, but oneDNN then computes the weight gradient with a ≈3× faster kernel
    than for the ``[B, C, T, F]`` problem (measured: ``benchmarks/models.py``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        groups: int = 1,
        columns: int | None = None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, groups=groups, bias=True)
        self.columns = groups if columns is None else columns
        """How many independent columns share the output channels (for :func:`glorot_init_`)."""

    def forward(self, x: Tensor) -> Tensor:
        if self.kernel_size[0] != 1 or x.dim() != 4 or not x.is_contiguous(memory_format=torch.channels_last):
            return super().forward(x)
        b, c, t, f = x.shape
        folded = x.permute(0, 2, 3, 1).reshape(b * t, 1, f, c).permute(0, 3, 1, 2)
        y = super().forward(folded)  # [B·T, C', 1, F'] channels_last
        return y.permute(0, 2, 3, 1).reshape(b, t, y.shape[-1], y.shape[1]).permute(0, 3, 1, 2)


def frame_conv(
    in_channels: int,
    out_channels: int,
    kernel: tuple[int, int],
    *,
    groups: int = 1,
    columns: int | None = None,
) -> FrameConv2d:
    """A valid, biased :class:`FrameConv2d` over ``[time, frequency]``.

    ``columns`` is how many independent networks share the layer's output channels
    (the 5 cross-stitch columns, or the 5 heads packed into one call). It only
    affects :func:`glorot_init_`, which uses each column's own fan-out, so packing
    columns into one call does not change the initial weight scale.
    """
    return FrameConv2d(in_channels, out_channels, kernel, groups=groups, columns=columns)


class ConvBlock(nn.Module):
    """``conv → ELU → GaussianDropout(p) → AdditiveGaussianNoise(σ)`` (paper Fig. 3b)."""

    def __init__(self, conv: nn.Conv2d, dropout: float = 0.1, noise_sigma: float = 0.1) -> None:
        super().__init__()
        self.conv = conv
        self.dropout = GaussianDropout(dropout)
        self.noise = AdditiveGaussianNoise(noise_sigma)

    def forward(self, x: Tensor) -> Tensor:
        # (not an in-place ELU: the folded 1×F conv returns a view, and autograd turns an
        # in-place op on a view into full-size copies in the backward pass)
        return self.noise(self.dropout(F.elu(self.conv(x))))


class TaskDense(nn.Module):
    """The per-task dense output layers, "written as convolutions".

    Each task ``m`` owns ``dense[m]``, a ``Conv2d(C, width_m, (1, F))`` spanning the
    whole remaining frequency axis, applied to its own ``C`` channels of the input
    ``[B, M·C, T, F]`` (task-major channel blocks, in :data:`TASKS` order). Because the
    kernel covers all of ``F``, the convolution is exactly a dense layer per frame; the
    forward pass evaluates it as one ``F.linear`` per task over all ``B·T`` frames
    (cheaper than a ``1 × F`` convolution on CPU, and indifferent to memory format).
    Returns raw (pre-nonlinearity) outputs ``[B, T, width_m]`` per task.
    """

    def __init__(self, channels: int, freq: int, widths: dict[str, int] | None = None) -> None:
        super().__init__()
        self.widths = dict(TASK_WIDTH if widths is None else widths)
        self.channels = channels
        self.freq = freq
        self.dense = nn.ModuleDict({task: nn.Conv2d(channels, w, (1, freq)) for task, w in self.widths.items()})
        for conv in self.dense.values():
            conv.frame_dense = True  # type: ignore[assignment]

    def forward(self, h: Tensor) -> dict[str, Tensor]:
        b, mc, t, f = h.shape
        m, c = len(self.widths), self.channels
        if mc != m * c or f != self.freq:
            raise ValueError(f"TaskDense expects [B, {m * c}, T, {self.freq}], got {list(h.shape)}")
        # [B, T, F, M, C]: a free view when h is channels_last, one copy otherwise.
        columns = h.permute(0, 2, 3, 1).reshape(b * t, f, m, c).unbind(2)
        out = {}
        for hm, (task, conv) in zip(columns, self.dense.items(), strict=True):
            w = conv.weight  # [width, C, 1, F] → [width, F·C] to match the (f, c) order
            weight = w.reshape(w.shape[0], c, f).transpose(1, 2).reshape(w.shape[0], f * c)
            out[task] = F.linear(hm.reshape(b * t, f * c), weight, conv.bias).view(b, t, -1)
        return out


# ------------------------------------------------------------------ cross-stitch


def alpha_init(columns: int, init: str) -> Tensor:
    """Initial ``M × M`` cross-stitch matrix: ``balanced`` (1/M) or ``imbalanced`` (0.9 / 0.1)."""
    if init == "balanced":
        return torch.full((columns, columns), 1.0 / columns)
    if init == "imbalanced":
        alpha = torch.full((columns, columns), 0.1)
        alpha.fill_diagonal_(0.9)
        return alpha
    raise ValueError(f"unknown cross-stitch init {init!r} (balanced | imbalanced)")


class CrossStitch(nn.Module):
    """Cross-stitch unit (Misra et al. 2016; paper §IV, Fig. 4).

    Input: the ``M`` task columns' feature maps concatenated along channels,
    ``z`` of shape ``[B, M·C, H, W]`` (column-major channel blocks, as produced by a
    grouped convolution). Output, same shape: ``z̃ᵐ = Σ_m' α[m, m'] · z^m'``, one
    scalar per (receiving column, sending column) pair, i.e. an ``M × M`` matrix per
    unit (the paper's ``α_l^(m)`` vectors stacked as rows).

    ``detached=True`` is the paper's "detached" variant: for receiving column ``m`` the
    terms ``m' ≠ m`` use ``z^m'.detach()``, so the loss of task ``m`` reaches no
    parameter of another column through this unit; ``α`` still gets its full gradient
    ``∂L/∂α[m, m'] = ⟨∂L/∂z̃ᵐ, z^m'⟩`` because it multiplies the detached tensor.

    Mixing, chosen per memory layout (both measured faster than ``torch.einsum``, which
    permutes and copies ``z``): in NCHW, one ``bmm`` of the expanded α with ``z`` viewed as
    ``[B, M, C·H·W]`` (memory-bound, no copies); in channels_last (the models' layout,
    where the convolutions run faster), ``z`` is a ``[B·H·W, M·C]`` matrix in memory and
    the unit is one GEMM with ``kron(α, I_C)`` — 48× the multiply-adds of the mixing
    itself, but at GEMM speed and with no copies — the fastest of the forms timed
    (docs/experiments.md, "Measurements formerly in docstrings").
    """

    def __init__(self, columns: int = len(TASKS), init: str = "imbalanced", detached: bool = False) -> None:
        super().__init__()
        self.columns = columns
        self.init = init
        self.detached = detached
        self.alpha = nn.Parameter(alpha_init(columns, init))
        self.register_buffer("_eye", torch.eye(columns, dtype=torch.bool), persistent=False)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.alpha.copy_(alpha_init(self.columns, self.init))

    def _mix(self, alpha: Tensor, z: Tensor) -> Tensor:
        b, mc, h, w = z.shape
        m = self.columns
        if z.is_contiguous():
            # [B, M, C·H·W]: one batched product with the (expanded, not copied) α
            return torch.bmm(alpha.expand(b, m, m), z.view(b, m, mc // m * h * w)).view(b, mc, h, w)
        # channels_last: memory is [B·H·W, M·C]; mix with kron(α, I_C) as one GEMM (no copies)
        c = mc // m
        eye = torch.eye(c, dtype=z.dtype, device=z.device)
        kron = (alpha[:, None, :, None] * eye[None, :, None, :]).reshape(mc, mc)  # kron(α, I_C); ONNX-safe
        out = F.linear(z.permute(0, 2, 3, 1).reshape(b * h * w, mc), kron)
        return out.view(b, h, w, mc).permute(0, 3, 1, 2)

    def forward(self, z: Tensor) -> Tensor:
        if z.shape[1] % self.columns:
            raise ValueError(f"CrossStitch over {self.columns} columns got {z.shape[1]} channels")
        if not self.detached:
            return self._mix(self.alpha, z)
        off = self.alpha.masked_fill(self._eye, 0.0)
        mixed = self._mix(off, z.detach())
        diag = self.alpha.diagonal()
        mc = z.shape[1]
        scale = diag.repeat_interleave(mc // self.columns).view(1, mc, 1, 1)
        return torch.addcmul(mixed, z, scale)

    def extra_repr(self) -> str:
        return f"columns={self.columns}, init={self.init!r}, detached={self.detached}"


# ------------------------------------------------------------------ init & shapes


@torch.no_grad()
def glorot_init_(module: nn.Module) -> nn.Module:
    """Glorot-uniform weights and zero biases for every ``Conv2d`` / ``Linear`` in ``module``.

    Fans follow Lasagne (the paper's framework): for a convolution
    ``fan_in = in_channels / groups · kh · kw`` and ``fan_out = out_channels / columns ·
    kh · kw`` — per column when several independent columns are packed into one call
    (see :func:`frame_conv`); for the per-frame dense layers stored as ``1 × F``
    convolutions (:class:`TaskDense`) ``fan_out`` is the number of units, as for a
    dense layer. Cross-stitch ``α`` is left alone (it has its own init).
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            fan_in, fan_out = m.in_features, m.out_features
        elif isinstance(m, nn.Conv2d):
            rf = m.kernel_size[0] * m.kernel_size[1]
            fan_in = m.in_channels // m.groups * rf
            if getattr(m, "frame_dense", False):
                fan_out = m.out_channels
            else:
                fan_out = m.out_channels // getattr(m, "columns", m.groups) * rf
        else:
            continue
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        m.weight.uniform_(-bound, bound)
        if m.bias is not None:
            m.bias.zero_()
    return module


def pad_context(features: Tensor, context: int = CONTEXT) -> Tensor:
    """``[..., T, bins]`` → ``[..., T + 2·context, bins]``, repeating the first/last frame."""
    if features.dim() < 2:
        raise ValueError(f"pad_context expects [..., T, bins], got {list(features.shape)}")
    t = features.shape[-2]
    if t < 1:
        raise ValueError("pad_context needs at least one frame")
    index = torch.from_numpy(context_indices(0, t, t, context)).to(features.device)  # the one rule
    return features.index_select(-2, index)


def as_input(x: Tensor) -> Tensor:
    """Check and reshape a model input ``[B, T + 10, 144]`` (or ``[B, 1, T + 10, 144]``) to 4-D."""
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] != 1 or x.shape[-1] != N_BINS:
        raise ValueError(f"model input must be [B, T+{2 * CONTEXT}, {N_BINS}], got {list(x.shape)}")
    if x.shape[2] < WINDOW:
        raise ValueError(f"model input needs at least {WINDOW} frames (T >= 1 plus context), got {x.shape[2]}")
    return x


# --------------------------------------------------------------------- base class


class MultitaskNet(nn.Module):
    """Base class of every transcription model.

    ``forward(x)`` takes ``x`` of shape ``[B, T + 10, 144]`` and returns a dict with
    exactly the keys :data:`~pianomtl.constants.TASKS`: ``on``, ``int``, ``off`` are
    logits ``[B, T, 88]``; ``vel`` ``[B, T, 88]`` and ``sus`` ``[B, T, 1]`` are
    straight-through-ReLU outputs. :meth:`predict` applies the sigmoids.
    """

    context: int = CONTEXT
    tasks: tuple[str, ...] = TASKS
    memory_format: torch.memory_format = torch.contiguous_format
    """Layout the input is converted to (a speed choice; results do not depend on it)."""
    recurrent: bool = False
    """Whether outputs depend on more than each frame's 11-frame window (a sequence stage).
    Chunked inference of a recurrent model must carry its state across chunks
    (``initial_state`` / ``forward_with_state``); of the others it need not."""

    config: ModelConfig
    architecture: str = ""
    """The registry name this class builds (``ModelConfig.name``)."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        if config is None:
            config = ModelConfig(name=self.architecture)
        if config.name != self.architecture:
            raise ValueError(f"{type(self).__name__} needs a {self.architecture!r} config, got {config.name!r}")
        self.config = config

    def _prepare(self, x: Tensor) -> Tensor:
        return as_input(x).contiguous(memory_format=self.memory_format)

    @staticmethod
    def _outputs(raw: dict[str, Tensor]) -> dict[str, Tensor]:
        return {task: raw[task] if task in BINARY_TASKS else straight_through_relu(raw[task]) for task in TASKS}

    def predict(self, x: Tensor) -> dict[str, Tensor]:
        """Forward pass with sigmoids on ``on``/``int``/``off``: every output in ``[0, ∞)``.

        Does not change train/eval mode or grad mode; wrap it in ``model.eval()`` and
        ``torch.inference_mode()`` for inference.
        """
        out = self(x)
        return {task: torch.sigmoid(v) if task in BINARY_TASKS else v for task, v in out.items()}

    def alphas(self) -> list[Tensor]:
        """Each cross-stitch unit's ``M × M`` matrix, in order (detached CPU copies; empty without units)."""
        return [unit.alpha.detach().cpu().clone() for unit in self.modules() if isinstance(unit, CrossStitch)]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def macs_per_frame(self, window: bool = False) -> int:
        """Multiply-adds per output frame: amortised in sequence form, or per 11-frame window."""
        return macs_per_frame(self, window=window)


# ------------------------------------------------------------ window form & MACs


def window_forward(model: nn.Module, x: Tensor, chunk: int = 256) -> dict[str, Tensor]:
    """Evaluate ``model`` on every 11-frame window of ``x`` separately (the per-window form).

    ``x``: ``[B, T + 10, 144]``. Returns the same dict as ``model(x)``, built from
    ``B·T`` independent forward passes over windows ``x[:, t : t + 11]``, batched
    ``chunk`` windows at a time. Used to prove the sequence form exact and to measure
    what it saves. A recurrent model has no window form (its frames depend on every
    earlier frame), so it is refused rather than silently run from a fresh state per window.
    """
    if getattr(model, "recurrent", False):
        raise ValueError("a recurrent model has no 11-frame window form")
    x = as_input(x)[:, 0]
    b, n, f = x.shape
    t = n - 2 * CONTEXT
    windows = x.unfold(1, WINDOW, 1).permute(0, 1, 3, 2).reshape(b * t, WINDOW, f)
    parts: dict[str, list[Tensor]] = {}
    for start in range(0, b * t, chunk):
        out = model(windows[start : start + chunk])
        for task, value in out.items():
            parts.setdefault(task, []).append(value)
    return {task: torch.cat(values).view(b, t, -1) for task, values in parts.items()}


def _conv_macs(module: nn.Conv2d, output: Tensor) -> int:
    kh, kw = module.kernel_size
    return output.numel() * (module.in_channels // module.groups) * kh * kw


@contextmanager
def _mac_counter(model: nn.Module) -> Iterator[list[int]]:
    total = [0]
    handles = []

    def conv_hook(module: nn.Module, _inputs: Sequence[Tensor], output: Tensor) -> None:
        total[0] += _conv_macs(module, output)  # type: ignore[arg-type]

    def dense_hook(module: nn.Module, _inputs: Sequence[Tensor], output: dict[str, Tensor]) -> None:
        total[0] += sum(v.numel() * module.channels * module.freq for v in output.values())  # type: ignore[attr-defined]

    def stitch_hook(module: nn.Module, _inputs: Sequence[Tensor], output: Tensor) -> None:
        total[0] += output.numel() * module.columns  # type: ignore[attr-defined]

    def linear_hook(module: nn.Module, _inputs: Sequence[Tensor], output: Tensor) -> None:
        total[0] += output.numel() * module.in_features  # type: ignore[attr-defined]

    def rnn_hook(module: nn.Module, _inputs: Sequence[Tensor], output: tuple[Tensor, object]) -> None:
        # per step and direction: gates × hidden units × (input + hidden) weights (one layer)
        gates = 4 if isinstance(module, nn.LSTM) else 3
        total[0] += output[0].numel() * gates * (module.input_size + module.hidden_size)  # type: ignore[attr-defined]

    for m in model.modules():
        if isinstance(m, TaskDense):
            handles.append(m.register_forward_hook(dense_hook))
        elif isinstance(m, CrossStitch):
            handles.append(m.register_forward_hook(stitch_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, nn.GRU | nn.LSTM):
            if m.num_layers != 1 or m.proj_size:
                raise NotImplementedError("count_macs counts one-layer GRUs and LSTMs without projections")
            handles.append(m.register_forward_hook(rnn_hook))
        elif isinstance(m, nn.Conv2d) and not getattr(m, "frame_dense", False):
            handles.append(m.register_forward_hook(conv_hook))
    try:
        yield total
    finally:
        for h in handles:
            h.remove()


def count_macs(model: nn.Module, frames: int, batch: int = 1) -> int:
    """Multiply-adds of one sequence-form forward pass producing ``frames`` output frames.

    Counted from the actual layer output shapes by forward hooks: convolutions
    (``out elements · in/groups · kh · kw``), the per-frame dense layers, the
    cross-stitch mixing (``M`` per output element), linear layers, and one-layer GRUs
    and LSTMs (3 or 4 gates ``· hidden · (input + hidden)`` per step and direction).
    Element-wise work (ELU, noise, biases, gate non-linearities) is not counted.
    """
    x = torch.zeros(batch, frames + 2 * CONTEXT, N_BINS)
    param = next(model.parameters(), None)
    if param is not None:
        x = x.to(param.device, param.dtype)
    was_training = model.training
    model.eval()
    try:
        with _mac_counter(model) as total, torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
    return total[0]


def macs_per_frame(model: nn.Module, window: bool = False) -> int:
    """Multiply-adds per output frame.

    Sequence form (default): the marginal cost of one more frame, exact because the
    count is affine in ``T``. Window form: the cost of one 11-frame window.
    """
    one = count_macs(model, 1)
    return one if window else count_macs(model, 2) - one
