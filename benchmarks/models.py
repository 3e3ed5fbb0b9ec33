"""Speed of the model variants on CPU: sequence form vs per-window form, and training.

    python benchmarks/models.py [--quick] [--formats] [--threads N] [--json PATH]
    python benchmarks/models.py --sequence [--quick] [--json PATH]

For every variant (hard sharing; cross-stitch × full/detached × balanced/imbalanced)
it prints parameters, multiply-adds per output frame (sequence form, amortised, and one
isolated 11-frame window), forward frames/s in sequence form and in window form on the
same inputs (medians over repeats) with their ratio, and training (forward + backward)
frames/s in sequence form. ``--formats`` adds rows with the other memory layout
(channels_last vs NCHW) to justify each family's default.

``--sequence`` compares the sequence families (``hard+rnn``, :mod:`pianomtl.models.sequence`;
``hard+keyrnn``, :mod:`pianomtl.models.keywise`) with hard sharing at the bundled model's
compact widths: parameters, multiply-adds per frame, inference frames/s as inference
runs it (batch 1, chunks of :data:`CHUNK` output frames, the recurrent state carried
from chunk to chunk; the bidirectional twin in one call per sequence) on one thread and
on two, in torch and in onnxruntime, and training frames/s on long excerpts.

``run(quick)`` and ``run_sequence(quick)`` return the rows as JSON-able dicts for
``benchmarks/run.py``.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from pianomtl.constants import BINARY_TASKS, CONTEXT, N_BINS
from pianomtl.models import ModelConfig, MultitaskNet, build_model, window_forward
from pianomtl.models.stateful_onnx import export_stateful_onnx

VARIANTS: list[ModelConfig] = [
    ModelConfig("hard"),
    ModelConfig("cross-stitch", gradient="full", init="imbalanced"),
    ModelConfig("cross-stitch", gradient="full", init="balanced"),
    ModelConfig("cross-stitch", gradient="detached", init="imbalanced"),
    ModelConfig("cross-stitch", gradient="detached", init="balanced"),
]


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _loss(out: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
    total = out["on"].new_zeros(())
    for task, value in out.items():
        if task in BINARY_TASKS:
            total = total + F.binary_cross_entropy_with_logits(value, targets[task])
        else:
            total = total + F.mse_loss(value, targets[task])
    return total


def _set_format(model: MultitaskNet, memory_format: torch.memory_format) -> None:
    model.memory_format = memory_format
    model.to(memory_format=memory_format)


class _Case:
    """One variant with its inputs and the three timed operations."""

    def __init__(self, config: ModelConfig, memory_format: torch.memory_format | None, sizes: dict[str, int]) -> None:
        torch.manual_seed(0)
        self.config = config
        self.model = build_model(config)
        if memory_format is not None:
            _set_format(self.model, memory_format)
        self.sizes = sizes
        self.x = torch.randn(sizes["batch"], sizes["frames"] + 2 * CONTEXT, N_BINS)
        self.xt = torch.randn(sizes["train_batch"], sizes["train_frames"] + 2 * CONTEXT, N_BINS)
        with torch.no_grad():
            self.targets = {k: torch.rand_like(v) for k, v in self.model.eval()(self.xt).items()}
        self.times: dict[str, list[float]] = {"seq": [], "win": [], "train": []}

    def forward_sequence(self) -> None:
        self.model.eval()
        with torch.inference_mode():
            self.model(self.x)

    def forward_windows(self) -> None:
        self.model.eval()
        with torch.inference_mode():
            window_forward(self.model, self.x)

    def train_step(self) -> None:
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        _loss(self.model(self.xt), self.targets).backward()

    def row(self) -> dict[str, Any]:
        frames = self.sizes["batch"] * self.sizes["frames"]
        train_frames = self.sizes["train_batch"] * self.sizes["train_frames"]
        seq, win, train = (statistics.median(self.times[k]) for k in ("seq", "win", "train"))
        model = self.model
        return {
            "variant": self.config.label(),
            "config": self.config.to_dict(),
            "memory_format": "channels_last" if model.memory_format == torch.channels_last else "nchw",
            "params": model.num_parameters(),
            "macs_per_frame": model.macs_per_frame(),
            "macs_per_window": model.macs_per_frame(window=True),
            "forward_frames": frames,
            "forward_seq_fps": frames / seq,
            "forward_window_fps": frames / win,
            "seq_over_window": win / seq,
            "train_frames": train_frames,
            "train_seq_fps": train_frames / train,
            "repeats": len(self.times["seq"]),
            "threads": torch.get_num_threads(),
        }


def run(quick: bool = False, formats: bool = False) -> list[dict[str, Any]]:
    """Benchmark every variant; ``quick`` uses small inputs, few repeats and three variants.

    The variants are timed round-robin (one of each per round, after a warm-up round)
    so that load from other processes on a shared machine hits them all alike; each
    figure is the median over rounds.
    """
    sizes = (
        {"batch": 2, "frames": 128, "train_batch": 2, "train_frames": 128, "repeats": 3}
        if quick
        else {"batch": 4, "frames": 256, "train_batch": 4, "train_frames": 128, "repeats": 7}
    )
    repeats = sizes.pop("repeats")
    cases = []
    for config in VARIANTS[:2] + VARIANTS[3:4] if quick else VARIANTS:
        cases.append(_Case(config, None, sizes))
        if formats:
            default = cases[-1].model.memory_format
            flipped = torch.contiguous_format if default == torch.channels_last else torch.channels_last
            cases.append(_Case(config, flipped, sizes))
    for round_ in range(repeats + 1):
        for case in cases:
            seq = _seconds(case.forward_sequence)
            win = _seconds(case.forward_windows) if round_ % 2 == 0 else None  # the slow one, every other round
            train = _seconds(case.train_step)
            if round_:  # round 0 warms up
                case.times["seq"].append(seq)
                case.times["train"].append(train)
            if win is not None and (round_ or repeats < 2):
                case.times["win"].append(win)
    return [case.row() for case in cases]


def format_table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'variant':<34} {'layout':<13} {'params':>9} {'MMAC/frame':>10} {'MMAC/win':>9} "
        f"{'fwd seq f/s':>11} {'fwd win f/s':>11} {'seq/win':>7} {'train f/s':>9}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['variant']:<34} {r['memory_format']:<13} {r['params']:>9,} {r['macs_per_frame'] / 1e6:>10.2f} "
            f"{r['macs_per_window'] / 1e6:>9.1f} {r['forward_seq_fps']:>11.0f} {r['forward_window_fps']:>11.0f} "
            f"{r['seq_over_window']:>6.1f}x {r['train_seq_fps']:>9.0f}"
        )
    if rows:
        r = rows[0]
        lines.append(
            f"(forward: {r['forward_frames']} frames per call; training: {r['train_frames']} frames per step; "
            f"{r['threads']} threads; medians)"
        )
    return "\n".join(lines)


# ------------------------------------------------------------ sequence family

COMPACT = {"small": 16, "large": 48, "head": 10}
"""The bundled model's widths (v5), which the sequence families share by default."""

SEQUENCE_VARIANTS: list[ModelConfig] = [
    ModelConfig("hard", **COMPACT),
    ModelConfig("hard+rnn", cell="lstm"),
    ModelConfig("hard+rnn", cell="gru"),
    ModelConfig("hard+rnn", cell="lstm", bidirectional=True),
    ModelConfig("hard+keyrnn", cell="lstm"),
    ModelConfig("hard+keyrnn", cell="gru"),
    ModelConfig("hard+keyrnn", cell="lstm", bidirectional=True),
]

CHUNK = 512
"""Output frames per inference call (``transcription.inference.CPU_CHUNK_FRAMES``)."""

THREADS = (1, 2)


def _onnx_session(model: MultitaskNet, threads: int) -> Any:
    """An onnxruntime session of ``model`` (stateful graph for recurrent ones), or None if impossible."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    from pianomtl.transcription.export import DEFAULT_OPSET, export_onnx
    from pianomtl.transcription.onnx_model import OnnxModel

    if getattr(model, "recurrent", False):
        if not model.causal:
            return None  # the bidirectional twin has no state to carry
        return OnnxModel(export_stateful_onnx(model, opset=DEFAULT_OPSET), threads=threads)
    return OnnxModel(export_onnx(model, io.BytesIO()).getvalue(), threads=threads)


def _infer(model: Any, x: torch.Tensor) -> None:
    """Run ``x`` ``[1, T + 10, 144]`` as chunked inference does: state carried across chunks."""
    frames = x.shape[1] - 2 * CONTEXT
    if getattr(model, "recurrent", False) and not model.causal:
        model(x)  # whole sequence in one call
        return
    state = model.initial_state(1) if getattr(model, "recurrent", False) else None
    for start in range(0, frames, CHUNK):
        chunk = x[:, start : min(start + CHUNK, frames) + 2 * CONTEXT]
        if state is None:
            model(chunk)
        else:
            _, state = model.forward_with_state(chunk, state)


class _SequenceCase:
    def __init__(self, config: ModelConfig, frames: int, train_batch: int, train_frames: int) -> None:
        torch.manual_seed(0)
        self.config = config
        self.model = build_model(config).eval()
        self.x = torch.randn(1, frames + 2 * CONTEXT, N_BINS)
        self.xt = torch.randn(train_batch, train_frames + 2 * CONTEXT, N_BINS)
        with torch.no_grad():
            self.targets = {k: torch.rand_like(v) for k, v in self.model(self.xt).items()}
        self.sessions = {n: _onnx_session(self.model, n) for n in THREADS}
        self.times: dict[str, list[float]] = {}

    def time(self, key: str, fn: Callable[[], object], record: bool) -> None:
        seconds = _seconds(fn)
        if record:
            self.times.setdefault(key, []).append(seconds)

    def torch_infer(self) -> None:
        with torch.inference_mode():
            _infer(self.model, self.x)

    def train_step(self) -> None:
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        _loss(self.model(self.xt), self.targets).backward()
        self.model.eval()

    def row(self) -> dict[str, Any]:
        frames = self.x.shape[1] - 2 * CONTEXT
        train_frames = self.xt.shape[0] * (self.xt.shape[1] - 2 * CONTEXT)
        fps = {
            key: (train_frames if key == "train" else frames) / statistics.median(v) for key, v in self.times.items()
        }
        return {
            "variant": self.config.label(),
            "config": self.config.to_dict(),
            "params": self.model.num_parameters(),
            "macs_per_frame": self.model.macs_per_frame(),
            **{f"{key}_fps": value for key, value in fps.items()},
            "frames": frames,
            "chunk": CHUNK,
            "train_batch": self.xt.shape[0],
            "train_frames": train_frames,
            "repeats": min(len(v) for v in self.times.values()),
        }


def run_sequence(quick: bool = False) -> list[dict[str, Any]]:
    """Time :data:`SEQUENCE_VARIANTS` round-robin (medians over rounds, after a warm-up round).

    Inference keys ``torch{n}`` / ``onnx{n}`` (``n`` threads); training (``train``)
    runs on torch's default threads with long excerpts, as a recurrent model trains.
    """
    frames, train_batch, train_frames, repeats = (1024, 2, 250, 3) if quick else (4096, 4, 500, 7)
    default_threads = torch.get_num_threads()
    cases = [_SequenceCase(config, frames, train_batch, train_frames) for config in SEQUENCE_VARIANTS]
    try:
        for round_ in range(repeats + 1):
            for case in cases:
                for n in THREADS:
                    torch.set_num_threads(n)
                    case.time(f"torch{n}", case.torch_infer, round_ > 0)
                    session = case.sessions[n]
                    if session is not None:
                        case.time(f"onnx{n}", lambda s=session, c=case: _infer(s, c.x), round_ > 0)
                torch.set_num_threads(default_threads)
                case.time("train", case.train_step, round_ > 0)
    finally:
        torch.set_num_threads(default_threads)
    return [case.row() for case in cases]


def format_sequence_table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'variant':<28} {'params':>9} {'MMAC/frame':>10} {'torch 1t':>9} {'torch 2t':>9} "
        f"{'onnx 1t':>8} {'onnx 2t':>8} {'train f/s':>9}"
    )
    lines = [header, "-" * len(header)]

    def cell(row: dict[str, Any], key: str, width: int) -> str:
        return f"{row[key]:>{width}.0f}" if key in row else f"{'n/a':>{width}}"

    for r in rows:
        lines.append(
            f"{r['variant']:<28} {r['params']:>9,} {r['macs_per_frame'] / 1e6:>10.2f} {cell(r, 'torch1_fps', 9)} "
            f"{cell(r, 'torch2_fps', 9)} {cell(r, 'onnx1_fps', 8)} {cell(r, 'onnx2_fps', 8)} {cell(r, 'train_fps', 9)}"
        )
    if rows:
        r = rows[0]
        lines.append(
            f"(inference: frames/s over {r['frames']} frames, batch 1, chunks of {r['chunk']} carrying the state; "
            f"training: {r['train_batch']} excerpts × {r['train_frames'] // r['train_batch']} frames per step, "
            f"{torch.get_num_threads()} threads; medians of {r['repeats']} rounds)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, few repeats, three variants")
    parser.add_argument("--formats", action="store_true", help="also time the other memory layout")
    parser.add_argument("--sequence", action="store_true", help="the sequence families vs compact hard sharing")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.sequence:
        rows = run_sequence(quick=args.quick)
        print(format_sequence_table(rows))
    else:
        rows = run(quick=args.quick, formats=args.formats)
        print(format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
