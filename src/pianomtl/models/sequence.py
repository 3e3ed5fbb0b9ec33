"""``hard+rnn``: the hard-sharing stem with a causal recurrent stage (not a network of the paper).

The paper's networks see 11 frames (0.22 s): a note that has faded under the pedal, or
a pedal held through a long chord, is invisible to them after a fraction of a second
(docs/experiments.md §8: their frame recall falls steeply with the time since the onset).
This family keeps their acoustic front end and adds memory:

* **Front end** — the hard-sharing stem and the 5 × conv 10@3×3 head conv of
  :class:`~pianomtl.models.hard_sharing.HardSharingNet`, *with the same parameter
  names and shapes* (``stem.*``, ``head.*``), and its per-task dense layers
  (``dense.*``) as the frame-local path. :func:`load_stem_from` copies them from a
  trained hard-sharing model (the bundled v5: small 16, large 48, head 10, the default
  widths of this family). 11-frame window, so 5 frames (100 ms) of look-ahead.
* **Embedding** — the head conv's ``5·head × 104`` maps of each frame, projected by one
  linear layer to ``embed`` units (ELU, Gaussian dropout in training).
* **Onset layer** — a unidirectional LSTM (``cell="gru"``: a GRU) of ``hidden`` units
  over the embeddings; its linear read-out is added to the frame-local onset logits.
* **Frame layer** — a second LSTM over ``[embedding, sigmoid(onset logits).detach()]``:
  the int, off and vel heads see the onset head's output (Onsets & Frames'
  conditioning; detached, so the frame losses do not train the onset detector), and
  the sus head reads the same state, which spans seconds (the LSTM's memory), so a
  pedal can be judged from how the whole sound decays, not from 0.22 s of it.
  Its linear read-out is added to the frame-local int/off/vel/sus values.
* **Residual read-outs, zero-initialised** — every head is ``frame-local dense +
  read-out of a recurrent state`` and the read-outs start at zero, so a model
  warm-started by :func:`load_stem_from` from v5 computes *exactly* v5's outputs at
  step 0 and training only has to learn what memory adds (on 2 CPU cores, that saves
  the days a from-scratch stem would take). Gradients reach the recurrent layers from
  the second step on (the read-outs' own gradients are non-zero at the first). The
  LSTMs' forget gates start biased open (+1, Jozefowicz et al. 2015), so memory spans
  more than a few frames before training has taught it to.

**LSTM, not GRU, by default** (``cell``): on a CPU PyTorch runs an LSTM layer as one
fused oneDNN kernel, and a GRU as a chain of small per-step operations; at these sizes
the LSTM is several times faster in training and about twice as fast in batch-1
inference, and stays fast under bf16 autocast and with two threads, where the GRU's
per-step operations slow down badly (``benchmarks/models.py --sequence`` measures both).

Causality: a frame's outputs depend on input frames up to 5 frames ahead (the stem)
and on every earlier frame (the recurrent layers), never on more look-ahead; so the
network can stream with 100 ms of algorithmic latency.
:meth:`HardRNNNet.forward_with_state` runs a chunk with the state carried from the
previous one: chunks need the usual 5 context frames on each side (input
``[B, T + 10, 144]``, as for every model), and chunked output equals whole-sequence
output to float precision. ``bidirectional=True`` is the non-causal ablation twin (each
layer reads both directions, ``hidden`` units per direction); it cannot stream or carry
state, and runs whole sequences only.

Layers (default config: small 16, large 48, head 10, embed 128, hidden 192, LSTM;
MACs/frame in sequence form, ``macs_per_frame()``)::

    layer                                   output              params   MACs / frame
    stem (as hard sharing, 16/16/48/48)     [48, T+2, 106]      40 976      4 413 408
    head  5 × conv 10@3×3                   [50, T, 104]        21 650      2 246 400
    dense (frame-local heads)               5 × [T, 88 | 1]    367 473        367 120
    embed linear 5200 → 128, ELU            [T, 128]           665 728        665 600
    onset LSTM 128 → 192                    [T, 192]           247 296        245 760
    onset read-out 192 → 88                 [T, 88]             16 984         16 896
    frame LSTM 128+88 → 192                 [T, 192]           314 880        313 344
    frame read-out 192 → 3·88+1             [T, 265]            51 145         50 880
    total                                                    1 726 132      8 319 408

The compact hard-sharing model (v5) is the first three rows: 430 099 parameters,
7 026 928 MACs/frame; the sequence stage adds 18 % MACs, and about 7 MB of float32
weights in all. The recurrent layers are a small share of the MACs but not of the
time: a batch-1 step is latency-bound and runs on one core.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pianomtl.constants import N_KEYS, TASK_WIDTH, TASKS
from pianomtl.core.devices import bf16_is_native
from pianomtl.models.config import ModelConfig
from pianomtl.models.hard_sharing import front_end, head_freq
from pianomtl.models.layers import GaussianDropout, MultitaskNet, glorot_init_

State = tuple[Tensor, ...]
"""Carried state of :class:`HardRNNNet`: the onset and frame recurrent layers' hidden
states (and, for LSTMs, cell states), each ``[directions, B, hidden]`` (PyTorch's ``h``
/ ``c`` layout), in the order of :attr:`HardRNNNet.state_names`."""

FRAME_TASKS: tuple[str, ...] = ("int", "off", "vel", "sus")
"""The heads read out from the frame recurrent layer, in the order of its read-out's rows."""

FRONT_END: tuple[str, ...] = ("stem.", "head.", "dense.")
"""Parameter-name prefixes shared with :class:`~pianomtl.models.hard_sharing.HardSharingNet`."""


class _Fp32RecurrenceOnPlainCpus:
    """Runs the layer in float32 under CPU bf16 autocast where the CPU has no bf16 arithmetic.

    Autocast sends LSTMs and GRUs to oneDNN in bf16, and oneDNN has no bf16 recurrent
    primitive without AVX512-BF16/AMX ("could not create a primitive descriptor": measured on
    an AVX2 EPYC), so ``--precision bf16`` crashed there; the convolutions keep bf16. Same
    parameters and names as ``nn.LSTM``/``nn.GRU`` (checkpoints, ONNX export unchanged).
    """

    def forward(self, input: Tensor, hx: Tensor | tuple[Tensor, Tensor] | None = None):  # type: ignore[no-untyped-def]
        if input.device.type == "cpu" and torch.is_autocast_enabled("cpu") and not bf16_is_native("cpu"):
            with torch.autocast("cpu", enabled=False):
                if hx is not None:
                    hx = tuple(h.float() for h in hx) if isinstance(hx, tuple) else hx.float()
                return super().forward(input.float(), hx)  # type: ignore[misc]
        return super().forward(input, hx)  # type: ignore[misc]


class LSTM(_Fp32RecurrenceOnPlainCpus, nn.LSTM):
    """``nn.LSTM`` that survives bf16 autocast on any CPU (:class:`_Fp32RecurrenceOnPlainCpus`)."""


class GRU(_Fp32RecurrenceOnPlainCpus, nn.GRU):
    """``nn.GRU`` that survives bf16 autocast on any CPU (:class:`_Fp32RecurrenceOnPlainCpus`)."""


RNN_CELLS: dict[str, type[nn.RNNBase]] = {"lstm": LSTM, "gru": GRU}


class SequenceNet(MultitaskNet):
    """What the sequence families share: the hard-sharing front end, the carried state's interface.

    This class builds the front end (``stem``, ``head``, ``dense``: :func:`front_end`);
    a subclass builds its recurrent layers with :meth:`recurrent_layer`, names them in
    :attr:`recurrent_layers` (two, in state order), and implements :meth:`initial_state`
    and ``_run(x, state) -> (outputs, state)``.
    """

    memory_format = torch.channels_last
    recurrent = True
    recurrent_layers: tuple[str, str] = ("", "")
    """Names of the two recurrent layers (attributes ``<name>_rnn``), in the state's order."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__(config)
        assert self.config.cell is not None
        # front end: identical modules (names, shapes, maths) to HardSharingNet's
        self.stem, self.head, self.dense = front_end(self.config)
        self.bidirectional = self.config.bidirectional
        self.cell = self.config.cell
        self.directions = 2 if self.bidirectional else 1

    def initialise(self, read_outs: tuple[nn.Linear, ...]) -> None:
        """After a subclass has built its layers: Glorot for convs and linears (the recurrent layers keep
        PyTorch's uniform(±1/√hidden)), the residual ``read_outs`` at zero (a warm start computes its
        front end's outputs exactly), LSTM forget gates open, and the model in its memory format."""
        glorot_init_(self)
        with torch.no_grad():
            for layer in read_outs:
                layer.weight.zero_()
                layer.bias.zero_()
        self.open_forget_gates()
        self.to(memory_format=self.memory_format)

    def recurrent_layer(self, inputs: int, hidden: int) -> nn.RNNBase:
        """One recurrent layer of this model's cell and direction, batch-first."""
        return RNN_CELLS[self.cell](inputs, hidden, batch_first=True, bidirectional=self.bidirectional)

    @property
    def causal(self) -> bool:
        """Whether outputs ignore input beyond 5 frames ahead (and the state can be carried)."""
        return not self.bidirectional

    @property
    def state_names(self) -> tuple[str, ...]:
        """Names of the state tensors in :data:`State` order (ONNX inputs; the outputs add ``next_``)."""
        parts = ("h", "c") if self.cell == "lstm" else ("h",)
        return tuple(f"{layer}_{part}" for layer in self.recurrent_layers for part in parts)

    def initial_state(self, batch: int = 1) -> State:
        raise NotImplementedError

    def _run(self, x: Tensor, state: State | None) -> tuple[dict[str, Tensor], State]:
        raise NotImplementedError

    def open_forget_gates(self) -> None:
        """LSTM forget gates start biased open (+1, Jozefowicz et al. 2015): memory spans more than a few
        frames before training has taught it to. A no-op for GRUs."""
        if self.cell != "lstm":
            return
        with torch.no_grad():
            for layer in self.recurrent_layers:
                rnn = getattr(self, f"{layer}_rnn")
                for name, bias in rnn.named_parameters():
                    if name.startswith("bias_ih"):
                        bias[rnn.hidden_size : 2 * rnn.hidden_size] = 1.0  # gate order i, f, g, o

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Outputs for ``x`` ``[B, T + 10, 144]`` from the initial (zero) state."""
        return self._run(x, None)[0]

    def forward_with_state(self, x: Tensor, state: State) -> tuple[dict[str, Tensor], State]:
        """``(outputs, state after the last frame)`` for a chunk ``x`` ``[B, T + 10, 144]``.

        ``state`` comes from :meth:`initial_state` or the previous chunk's call. Chunks
        overlap by 10 input rows (each carries its 5 context frames on both sides), so
        consecutive chunks ``[a, b)``, ``[b, c)`` give exactly the outputs of ``[a, c)``.
        """
        if not self.causal:
            raise ValueError(
                f"a bidirectional {self.architecture} model has no carried state: run forward() on whole sequences"
            )
        if len(state) != len(self.state_names):
            raise ValueError(f"state must be a tuple of {len(self.state_names)} tensors {self.state_names}")
        return self._run(x, tuple(state))

    def local_outputs(self, x: Tensor) -> dict[str, Tensor]:
        """The front end's frame-local raw outputs (v5's heads, before the sequence stage)."""
        return self.dense(self.head(self.stem(self._prepare(x))))


class HardRNNNet(SequenceNet):
    """Hard-sharing stem + causal onset and frame LSTMs/GRUs (see module docstring)."""

    architecture = "hard+rnn"
    recurrent_layers = ("onset", "frame")

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__(config)
        config = self.config
        head, embed, hidden = config.head, config.embed, config.hidden
        assert head is not None and embed is not None and hidden is not None
        self.embed = nn.Linear(len(TASKS) * head * head_freq(), embed)
        self.embed_dropout = GaussianDropout(config.dropout)
        self.onset_rnn = self.recurrent_layer(embed, hidden)
        self.frame_rnn = self.recurrent_layer(embed + N_KEYS, hidden)
        self.onset_out = nn.Linear(self.directions * hidden, N_KEYS)
        self.frame_out = nn.Linear(self.directions * hidden, sum(TASK_WIDTH[t] for t in FRAME_TASKS))
        self.initialise(read_outs=(self.onset_out, self.frame_out))

    def initial_state(self, batch: int = 1) -> State:
        """Zero states for ``batch`` sequences (on the model's device and dtype)."""
        weight = self.onset_rnn.weight_hh_l0
        shape = (self.directions, batch, self.onset_rnn.hidden_size)
        return tuple(weight.new_zeros(shape) for _ in self.state_names)

    def embeddings(self, x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Frame-local raw outputs (v5's heads) and the per-frame embeddings ``[B, T, embed]``."""
        h = self.head(self.stem(self._prepare(x)))
        local = self.dense(h)
        b, c, t, f = h.shape
        # [B, T, F·C]: a free view of channels_last maps (a copy in NCHW; same values)
        flat = h.permute(0, 2, 3, 1).reshape(b, t, f * c)
        return local, self.embed_dropout(F.elu(self.embed(flat)))

    def _run(self, x: Tensor, state: State | None) -> tuple[dict[str, Tensor], State]:
        local, e = self.embeddings(x)
        if state is None:
            state = self.initial_state(e.shape[0])
        half = len(state) // 2
        onset_seq, onset_state = self.onset_rnn(e, pack_state(state[:half]))
        on = local["on"] + self.onset_out(onset_seq)
        frame_in = torch.cat([e, torch.sigmoid(on).detach()], dim=-1)
        frame_seq, frame_state = self.frame_rnn(frame_in, pack_state(state[half:]))
        rest = self.frame_out(frame_seq).split([TASK_WIDTH[t] for t in FRAME_TASKS], dim=-1)
        raw = {"on": on, **{task: local[task] + r for task, r in zip(FRAME_TASKS, rest, strict=True)}}
        return self._outputs(raw), (*unpack_state(onset_state), *unpack_state(frame_state))


def pack_state(state: tuple[Tensor, ...]) -> Tensor | tuple[Tensor, Tensor]:
    """One layer's state as its module takes it: ``h`` (GRU) or ``(h, c)`` (LSTM)."""
    return state[0] if len(state) == 1 else (state[0], state[1])


def unpack_state(state: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return (state,) if isinstance(state, Tensor) else tuple(state)


def load_stem_from(model: MultitaskNet, state_dict: Mapping[str, Tensor]) -> list[str]:
    """Copy a hard-sharing model's front end into ``model``; returns the names copied.

    ``state_dict``: a :class:`~pianomtl.models.hard_sharing.HardSharingNet` state dict
    (or a bundle / training checkpoint dict holding one under ``"model"``). The stem
    must match (same ``small``/``large`` widths) — a warm start from a different stem
    would silently be no warm start, so a mismatch raises ``ValueError``; the head conv
    and the frame-local dense layers are copied layer by layer (weight and bias
    together) where their shapes match (they do when ``head`` does). Nothing else is
    touched: the sequence stage keeps its initialisation, so with zero read-outs the
    model reproduces the source model.
    """
    if "model" in state_dict and isinstance(state_dict["model"], Mapping):
        state_dict = state_dict["model"]  # type: ignore[assignment]
    own = model.state_dict()
    stem = [name for name in own if name.startswith("stem.")]
    bad = [name for name in stem if name not in state_dict or tuple(state_dict[name].shape) != tuple(own[name].shape)]
    if bad:
        raise ValueError(f"the source's stem does not fit this model's (missing or other shapes: {bad})")
    layers: dict[str, list[str]] = {}  # a layer's weight and bias are copied together or not at all
    for name in own:
        if name.startswith(FRONT_END):
            layers.setdefault(name.rpartition(".")[0], []).append(name)
    copied = [
        name
        for names in layers.values()
        if all(n in state_dict and tuple(state_dict[n].shape) == tuple(own[n].shape) for n in names)
        for name in names
    ]
    with torch.no_grad():
        for name in copied:
            own[name].copy_(state_dict[name])
    return copied


__all__ = [
    "FRAME_TASKS",
    "FRONT_END",
    "RNN_CELLS",
    "HardRNNNet",
    "State",
    "load_stem_from",
    "pack_state",
    "unpack_state",
]
