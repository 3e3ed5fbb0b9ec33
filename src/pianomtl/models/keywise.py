"""``hard+keyrnn``: the hard-sharing front end with a causal *per-key* recurrent stage (not a network of the paper).

Why a second sequence family. ``hard+rnn`` (:mod:`pianomtl.models.sequence`) puts one
wide LSTM over the whole frame; to hold 88 notes under the pedal it must learn 88
separate latches in one state vector, and on 2 CPU cores its frame losses did not move
(docs/experiments.md §9). What a held note needs is the same small rule on every key —
"struck, not yet damped, pedal down: still sounding, however faint" — so this family
learns that rule once and runs it on every key (one set of LSTM weights, the 88 keys as
88 sequences; like the pitch-wise recurrent stages of Kwon et al. 2020 and Jeong 2020).

* **Front end** — exactly :class:`~pianomtl.models.hard_sharing.HardSharingNet`'s stem,
  head conv and frame-local dense heads (same names and shapes, so
  :func:`~pianomtl.models.sequence.load_stem_from` warm-starts it from the bundled v5).
  11-frame window: 5 frames (100 ms) of look-ahead.
* **Context layer** — a unidirectional LSTM (``cell="gru"``: GRU) of ``embed`` units over
  the frame-local sustain logit and the 88 onset, frame and offset probabilities of each
  frame: the recording so far (seconds), from which it reads the pedal (a residual on
  the sustain head) and a small summary that every key sees (:data:`CONTEXT_UNITS`: how
  loud and how dense the playing has been, whether the sound decays as with dampers).
* **Key layer** — an LSTM of ``hidden`` units shared by all keys. For key ``k`` at each
  frame it reads :data:`KEY_INPUTS` numbers: ``k``'s own frame-local onset, frame and
  offset logits (squashed, :data:`LOGIT_SCALE`) and velocity — the frame, offset and
  velocity heads see the onset head's output, as in Onsets & Frames —, the frame
  logits one octave below and above (a partial of another note, or this one?), the
  pedal (sustain logit after the context layer), the context summary, and a learnt
  embedding of the key (:data:`KEY_EMBED` numbers: bass strings ring longer than
  treble ones). Its read-out adds to the frame, offset and velocity heads.
* **Residual read-outs, zero-initialised, with a gain** — as in ``hard+rnn``, each head
  is ``frame-local + read-out``, the read-outs start at zero (so a warm-started model
  computes v5's outputs exactly at step 0) and the onset head is the front end's alone.
  The read-outs are multiplied by :data:`READOUT_GAIN`: a recurrent state lies in
  ``(−1, 1)`` while a faded held note's frame logit sits near −8, and Adam moves a weight
  by about the learning rate per step whatever the gradient's scale, so without a gain the
  read-out needs thousands of updates just to reach the size of its job.

Causality and state: like ``hard+rnn`` (:meth:`forward_with_state`; chunks carry 5
context frames on each side; chunked output equals whole-sequence output). The state is
the context layer's ``[directions, B, embed]`` and the key layer's
``[directions, B·88, hidden]`` tensors. ``bidirectional=True`` is the non-causal twin.

Layers (default config: small 16, large 48, head 10, embed 64, hidden 48, LSTM;
MACs/frame in sequence form, ``macs_per_frame()``)::

    layer                                      output             params   MACs / frame
    front end (v5: stem, head conv, dense)     5 × [T, 88 | 1]   430 099      7 026 928
    context LSTM 265 → 64                      [T, 64]            84 736         84 224
    sustain read-out 64 → 1, summary 64 → 8    [T, 1], [T, 8]        585            576
    key embedding                              [88, 8]               704              0
    key LSTM 23 → 48 (× 88 keys)               [T, 88, 48]        14 016      1 199 616
    key read-out 48 → 3 (× 88 keys)            [T, 88, 3]            147         12 672
    total                                                        530 287      8 324 016

The stage adds 100 k parameters (0.4 MB) and 18 % MACs to v5; the key layer is most of
them, as 88 small sequences — one batched GEMM per frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pianomtl.constants import N_KEYS, TASKS
from pianomtl.models.config import ModelConfig
from pianomtl.models.sequence import SequenceNet, State, pack_state, unpack_state

OCTAVE = 12
"""Keys between a note and the neighbours whose frame logits the key layer reads."""

KEY_EMBED = 8
"""Numbers in each key's learnt embedding."""

CONTEXT_UNITS = 8
"""Numbers of the context summary that every key reads."""

LOGIT_SCALE = 4.0
"""Logits enter the recurrent layers as ``tanh(logit / LOGIT_SCALE)``: bounded (an LSTM's
gates saturate on raw logits of ±15) but still graded where faint notes live (−3 vs −8)."""

READOUT_GAIN = 4.0
"""Factor on the recurrent read-outs (module docstring: logits are large, states are not)."""

KEY_TASKS: tuple[str, ...] = ("int", "off", "vel")
"""The heads the key layer adds to, in the order of its read-out's outputs."""

KEY_INPUTS = 4 + 2 + 1 + CONTEXT_UNITS + KEY_EMBED
"""Per key and frame: own on/int/off/vel, int one octave down and up, sustain, context, key embedding."""

CONTEXT_INPUTS = 1 + 3 * N_KEYS
"""Per frame: the sustain logit and the 88 onset, frame and offset probabilities."""


class KeyRNNNet(SequenceNet):
    """Hard-sharing front end + a recording-wide context LSTM + one LSTM run on every key (module docstring)."""

    architecture = "hard+keyrnn"
    recurrent_layers = ("context", "key")

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__(config)
        context, hidden = self.config.embed, self.config.hidden
        assert context is not None and hidden is not None
        self.context_rnn = self.recurrent_layer(CONTEXT_INPUTS, context)
        self.sus_out = nn.Linear(self.directions * context, 1)
        self.context_summary = nn.Linear(self.directions * context, CONTEXT_UNITS)
        self.key_embedding = nn.Parameter(torch.empty(N_KEYS, KEY_EMBED))
        self.key_rnn = self.recurrent_layer(KEY_INPUTS, hidden)
        self.key_out = nn.Linear(self.directions * hidden, len(KEY_TASKS))
        self.initialise(read_outs=(self.sus_out, self.key_out))
        with torch.no_grad():
            nn.init.normal_(self.key_embedding, 0.0, 0.5)

    def initial_state(self, batch: int = 1) -> State:
        """Zero states for ``batch`` sequences: context ``[dirs, batch, embed]``, keys ``[dirs, batch·88, hidden]``."""
        weight = self.key_rnn.weight_hh_l0
        half = len(self.state_names) // 2
        context = (self.directions, batch, self.context_rnn.hidden_size)
        keys = (self.directions, batch * N_KEYS, self.key_rnn.hidden_size)
        return tuple(weight.new_zeros(shape) for shape in [context] * half + [keys] * half)

    def _run(self, x: Tensor, state: State | None) -> tuple[dict[str, Tensor], State]:
        raw, state = self.sequence_stage(self.local_outputs(x), state)
        return self._outputs(raw), state

    def sequence_stage(self, local: dict[str, Tensor], state: State | None) -> tuple[dict[str, Tensor], State]:
        """Raw outputs (before the regression heads' ReLU) and the new state, from the front end's raw outputs.

        Separate from :meth:`forward` so that the stage can be studied or trained on stored
        front-end outputs (a frozen front end computes the same thing every epoch).
        """
        b, t, _ = local["on"].shape
        if state is None:
            state = self.initial_state(b)
        half = len(state) // 2
        squashed = {task: torch.tanh(local[task] / LOGIT_SCALE) for task in ("on", "int", "off", "sus")}
        context_in = torch.cat([squashed["sus"], *(torch.sigmoid(local[task]) for task in ("on", "int", "off"))], -1)
        context_seq, context_state = self.context_rnn(context_in, pack_state(state[:half]))
        sus = local["sus"] + READOUT_GAIN * self.sus_out(context_seq)
        summary = torch.tanh(self.context_summary(context_seq))  # [B, T, CONTEXT_UNITS]
        frames = squashed["int"]
        below = F.pad(frames, (OCTAVE, 0))[..., :N_KEYS]  # key k-12 (zero under the lowest octave)
        above = F.pad(frames, (0, OCTAVE))[..., OCTAVE:]  # key k+12
        per_key = torch.stack([squashed["on"], frames, squashed["off"], local["vel"], below, above], dim=-1)
        shared = torch.cat([torch.tanh(sus / LOGIT_SCALE), summary], dim=-1)  # [B, T, 1 + CONTEXT_UNITS]
        key_in = torch.cat(
            [
                per_key,  # [B, T, 88, 6]
                shared[:, :, None, :].expand(b, t, N_KEYS, shared.shape[-1]),
                self.key_embedding[None, None].expand(b, t, N_KEYS, KEY_EMBED),
            ],
            dim=-1,
        )
        key_in = key_in.permute(0, 2, 1, 3).reshape(b * N_KEYS, t, KEY_INPUTS)  # each key one sequence
        key_seq, key_state = self.key_rnn(key_in, pack_state(state[half:]))
        residual = READOUT_GAIN * self.key_out(key_seq).view(b, N_KEYS, t, len(KEY_TASKS)).permute(0, 2, 1, 3)
        raw = {"on": local["on"], "sus": sus}
        raw.update({task: local[task] + residual[..., i] for i, task in enumerate(KEY_TASKS)})
        return {task: raw[task] for task in TASKS}, (*unpack_state(context_state), *unpack_state(key_state))


__all__ = ["KEY_INPUTS", "KEY_TASKS", "KeyRNNNet"]
