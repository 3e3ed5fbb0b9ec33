"""One training run of a multitask network (paper §V), resumable and divergence-aware.

Optimiser: SGD with momentum 0.9 and Nesterov correction, as in the paper. Loss:
``L = Σ λᵐ Lᵐ`` with binary cross-entropy (on logits) for on/int/off and mean
squared error for vel/sus — MSE because R² (what the paper reports for these
regressions) is exactly ``1 - MSE/Var``, so minimising MSE maximises the reported
measure, and the straight-through ReLU output keeps its gradient linear.

Minibatches: the paper draws 64 single frames (each with 11 frames of context).
Here a minibatch is ``batch_size`` excerpts of ``sequence_frames`` consecutive
frames each, evaluated in sequence form (one convolution pass per excerpt), which
is an order of magnitude cheaper per frame on a CPU; ``--batch-size 64
--sequence-frames 1`` is the paper's exact setting.

A run writes into its folder: ``checkpoint.pt`` (latest, atomic), ``best.pt`` (best
validation), ``log.csv``, ``tensorboard/``, ``result.json`` (status ``finished``,
``diverged`` or ``unstable`` plus the final validation scores).

Several processes (``--nproc N``, or ``torchrun``) train one model data-parallel with
DistributedDataParallel: each rank draws its own excerpts and the global minibatch is
N × ``batch_size`` excerpts; only rank 0 writes files (:mod:`pianomtl.train.distributed`).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pianomtl.constants import BINARY_TASKS, TASKS
from pianomtl.core.files import atomic_write, write_json_atomic
from pianomtl.core.metrics import FramewiseEvaluator, headline
from pianomtl.core.targets import to_float
from pianomtl.data.sampler import ExcerptSampler
from pianomtl.data.store import open_split
from pianomtl.models.registry import ModelConfig, build_model
from pianomtl.train import distributed
from pianomtl.transcription.inference import run_model

DEFAULT_LAMBDAS = {"on": 1.0, "int": 1.0, "off": 1.0, "vel": 1.0, "sus": 1.0}


class Diverged(RuntimeError):
    """The loss became NaN/inf or exploded."""


@dataclass
class TrainConfig:
    """Everything a run needs; saved in every checkpoint so it can be resumed or audited."""

    cache: str
    out: str
    model: dict = field(default_factory=lambda: ModelConfig(name="hard").to_dict())
    lambdas: dict = field(default_factory=lambda: dict(DEFAULT_LAMBDAS))
    lr: float = 0.01
    momentum: float = 0.9
    optimizer: str = "sgd"  # "sgd": SGD + Nesterov momentum (the paper); "adam": Adam (faster on small budgets)
    lr_schedule: str = "constant"  # or "cosine": decay to 0 over the run
    batch_size: int = 8
    sequence_frames: int = 64
    steps: int = 5000
    validate_every: int = 1000
    checkpoint_every: int = 250
    validation_frames: int = 3000  # frames per validation recording (bounds validation time)
    seed: int = 0
    device: str = "cpu"
    amp: bool = False  # bf16 autocast (meant for GPUs)
    restarts: int = 0
    explode_factor: float = 20.0
    clip_grad_norm: float = 0.0  # 0 = off (the paper); > 0 rescales larger gradients to this norm
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    equaliser: float = 0.0  # share of excerpts given a random equaliser + level (pianomtl.data.augment)
    init_from: str = ""  # start from this checkpoint's / bundle's weights (fine-tuning); "" = random init


def task_losses(outputs: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-task mean losses for a batch of uint8 labels ``[B, T, 353]``."""
    targets = to_float_tensor(labels)
    losses = {}
    for task in TASKS:
        prediction = outputs[task].float()
        if task in BINARY_TASKS:
            losses[task] = F.binary_cross_entropy_with_logits(prediction, targets[task])
        else:
            losses[task] = F.mse_loss(prediction, targets[task])
    return losses


def to_float_tensor(labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Torch version of :func:`pianomtl.core.targets.to_float` (no numpy round trip)."""
    from pianomtl.core.targets import LABEL_SLICES

    scale = {"vel": 1 / 127, "sus": 1 / 127}
    return {t: labels[..., LABEL_SLICES[t]].float() * scale.get(t, 1.0) for t in TASKS}


def evaluate_recordings(
    model: torch.nn.Module,
    recordings,
    device: str,
    max_frames: int | None = None,
    threshold: float | None = None,
    on_predictions=None,  # optional callback(recording, predictions), e.g. for note-level decoding
) -> dict:
    """Framewise paper measures of ``model`` over cached recordings (on/int/off at ``threshold``, default 0.5)."""
    evaluator = FramewiseEvaluator()
    if threshold is not None:
        evaluator.thresholds = dict.fromkeys(BINARY_TASKS, threshold)
    for recording in recordings:
        stop = len(recording) if max_frames is None else min(len(recording), max_frames)
        predictions = run_model(model, np.asarray(recording.features[:stop]), device=device)
        evaluator.add(predictions, to_float(np.asarray(recording.labels[:stop])))
        if on_predictions is not None:
            on_predictions(recording, predictions)
    return evaluator.results()


def selection_score(scores: dict[str, float]) -> float:
    """How a run's validation result is ranked for ``best.pt``: mean of the five measures."""
    values = [scores[t] if math.isfinite(scores[t]) else 0.0 for t in TASKS]
    return float(np.mean(values))


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum (paper §V), or Adam for short CPU budgets."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=True)
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; choose sgd or adam")


def _set_seeds(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _atomic_save(payload: dict, path: Path) -> None:
    atomic_write(path, lambda target: torch.save(payload, target))


def load_initial_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Copy the weights of a checkpoint or bundle into ``model`` (fine-tuning starts here).

    The model configurations must agree: a silently partial copy would train a
    different network than the one asked for.
    """
    from pianomtl.transcription.model_file import read_model_file

    state = read_model_file(path)
    if state["model_config"] != model.config.to_dict():
        raise ValueError(f"{path}: its model {state['model_config']} differs from this run's {model.config.to_dict()}")
    model.load_state_dict(state["model"])


class Run:
    """State of one training attempt; ``train()`` drives it to the end or to divergence."""

    def __init__(self, config: TrainConfig, seed: int, resume: bool, dist: distributed.Context | None = None) -> None:
        self.config = config
        self.dist = dist or distributed.SINGLE
        self.out = Path(config.out)
        self.out.mkdir(parents=True, exist_ok=True)
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = torch.device(distributed.local_device(config.device, self.dist))
        _set_seeds(seed)
        self.model = build_model(ModelConfig.from_dict(config.model)).to(self.device)
        if config.init_from:
            load_initial_weights(self.model, config.init_from)
        if self.dist.rank > 0:  # own noise-layer stream per rank (rank 0's weights are broadcast by DDP)
            torch.manual_seed(int(np.random.SeedSequence([seed, self.dist.rank]).generate_state(1)[0]))
        self.network = distributed.wrap(self.model, self.dist)  # the model itself in one process
        self.optimizer = make_optimizer(self.model, config)
        self.train_recordings = open_split(config.cache, "train")
        try:
            self.validation_recordings = open_split(config.cache, "validation")
        except ValueError:
            self.validation_recordings = []
        self.sampler = ExcerptSampler(
            self.train_recordings,
            config.sequence_frames,
            config.batch_size,
            seed=seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            equaliser_probability=config.equaliser,
        )
        self.rank_rng: list[dict] | None = None  # every rank's random state at the last boundary (DDP)
        self.step = 0
        self.seed = seed
        self.reference_loss: float | None = None
        self.best_score = -math.inf
        self.history: list[dict] = []
        if resume and (self.out / "checkpoint.pt").exists():
            self._load(self.out / "checkpoint.pt")

    # -- checkpoints -------------------------------------------------------------
    def _rng_state(self) -> dict:
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "numpy": np.random.get_state(),
            "python": random.getstate(),
            "sampler": self.sampler.state(),
        }

    def _set_rng_state(self, rng: dict) -> None:
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        self.sampler.set_state(rng["sampler"])

    def payload(self) -> dict:
        payload = {
            "config": asdict(self.config),
            "model_config": self.model.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "seed": self.seed,
            "reference_loss": self.reference_loss,
            "best_score": self.best_score,
            "history": self.history,
            "rng": self._rng_state(),
        }
        if self.dist.enabled:
            payload["rng_ranks"] = self.rank_rng
            payload["world_size"] = self.dist.world_size
        return payload

    def _load(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = state["step"]
        self.seed = state["seed"]
        self.reference_loss = state["reference_loss"]
        self.best_score = state["best_score"]
        self.history = state["history"]
        if not self.dist.enabled:
            self._set_rng_state(state["rng"])
            return
        ranks = state.get("rng_ranks") or []
        if self.dist.rank < len(ranks) and state.get("world_size") == self.dist.world_size:
            self._set_rng_state(ranks[self.dist.rank])
        elif self.dist.is_main and not ranks:
            self._set_rng_state(state["rng"])  # a single-process checkpoint continued by several processes
        # (other ranks keep their fresh streams: they never repeat rank 0's draws)

    def save(self, name: str = "checkpoint.pt") -> None:
        _atomic_save(self.payload(), self.out / name)

    # -- training ----------------------------------------------------------------
    def learning_rate(self) -> float:
        if self.config.lr_schedule == "cosine":
            return 0.5 * self.config.lr * (1 + math.cos(math.pi * self.step / self.config.steps))
        return self.config.lr

    def train_step(self) -> dict[str, float]:
        features, labels = self.sampler.sample()
        features, labels = features.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.amp):
            outputs = self.network(features)
        losses = task_losses(outputs, labels)
        total = sum(self.config.lambdas.get(t, 0.0) * losses[t] for t in TASKS)
        if self.dist.enabled:  # the global minibatch's losses, so every rank decides alike
            values = distributed.mean_across(
                torch.stack([total.detach(), *(losses[t].detach() for t in TASKS)]), self.dist
            )
            value, task_values = float(values[0]), dict(zip(TASKS, values[1:].tolist(), strict=True))
        else:
            value = float(total.detach())
        if not math.isfinite(value):
            raise Diverged(f"loss is {value} at step {self.step}")
        if self.reference_loss is None:
            self.reference_loss = value
        elif value > self.config.explode_factor * max(self.reference_loss, 1e-3):
            raise Diverged(f"loss exploded to {value:.3g} at step {self.step} (start {self.reference_loss:.3g})")
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.config.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_grad_norm)
        self.optimizer.step()
        self.step += 1
        if self.dist.enabled:
            return {"loss": value, **task_values}
        return {"loss": value, **{t: float(losses[t].detach()) for t in TASKS}}

    def validate(self) -> dict[str, float] | None:
        if not self.validation_recordings or not self.dist.is_main:
            return None
        results = evaluate_recordings(
            self.model, self.validation_recordings, str(self.device), self.config.validation_frames
        )
        scores = headline(results)
        score = selection_score(scores)
        if score > self.best_score:
            self.best_score = score
            self.save("best.pt")
        return scores

    def train(self) -> dict:
        config = self.config
        main = self.dist.is_main  # only rank 0 writes logs and checkpoints
        log_path = self.out / "log.csv"
        columns = ["step", "lr", "loss", *TASKS, "frames_per_s", *(f"val_{t}" for t in TASKS)]
        if main and (not log_path.exists() or self.step == 0):
            with log_path.open("w", newline="") as handle:
                csv.writer(handle).writerow(columns)
        writer = _tensorboard(self.out / "tensorboard") if main else None
        frames_per_step = config.batch_size * config.sequence_frames * self.dist.world_size
        progress = tqdm(
            total=config.steps, initial=self.step, desc=f"train {self.out.name}", unit="step", disable=not main
        )
        window_start, window_steps, running = time.perf_counter(), 0, {}
        try:
            while self.step < config.steps:
                stats = self.train_step()
                progress.update(1)
                window_steps += 1
                for key, value in stats.items():
                    running[key] = running.get(key, 0.0) + value
                boundary = self.step % config.checkpoint_every == 0 or self.step == config.steps
                validating = self.step % config.validate_every == 0 or self.step == config.steps
                if boundary or validating:
                    elapsed = time.perf_counter() - window_start
                    means = {k: v / window_steps for k, v in running.items()}
                    speed = window_steps * frames_per_step / max(elapsed, 1e-9)
                    if self.dist.enabled:
                        self.rank_rng = distributed.gather_objects(self._rng_state(), self.dist)
                    scores = self.validate() if validating else None
                    row = {"step": self.step, "lr": self.learning_rate(), **means, "frames_per_s": speed}
                    if scores:
                        row.update({f"val_{t}": v for t, v in scores.items()})
                        self.history.append({"step": self.step, **scores})
                    if main:
                        with log_path.open("a", newline="") as handle:
                            csv.writer(handle).writerow([row.get(c, "") for c in columns])
                    if writer is not None:
                        for key, value in row.items():
                            if key != "step":
                                writer.add_scalar(key, value, self.step)
                    progress.set_postfix(loss=f"{means['loss']:.4f}", fps=f"{speed:.0f}")
                    if main:
                        self.save()
                    window_start, window_steps, running = time.perf_counter(), 0, {}
        finally:
            progress.close()
            if writer is not None:
                writer.close()
        final = self.history[-1] if self.history else {}
        return {"status": "finished", "steps": self.step, "seed": self.seed, "validation": final}


def _tensorboard(folder: Path):  # type: ignore[no-untyped-def]
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional for a run
        return None
    return SummaryWriter(str(folder))


def train(config: TrainConfig, resume: bool = False, dist: distributed.Context | None = None) -> dict:
    """Train with up to ``config.restarts`` fresh restarts after divergence.

    Returns the result dict also written to ``result.json``; ``status`` is
    ``unstable`` when every attempt diverged (the paper's "-"). ``dist``: this
    process's place among several data-parallel ones (every rank calls ``train``).
    """
    dist = dist or distributed.SINGLE
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    result_path = out / "result.json"
    earlier_seconds = 0.0  # wall time of the finished part of an extended run
    if resume and result_path.exists():
        previous = json.loads(result_path.read_text())
        extended = previous.get("status") == "finished" and previous.get("steps", 0) < config.steps
        if previous.get("status") in ("finished", "unstable") and not extended:
            return previous  # a larger --steps continues a finished run (the schedule follows the new total)
        earlier_seconds = float(previous.get("wall_seconds", 0.0))
    attempts: list[dict] = []
    started = time.perf_counter()
    for attempt in range(config.restarts + 1):
        seed = config.seed + 1000 * attempt
        try:
            run = Run(config, seed=seed, resume=resume and attempt == 0, dist=dist)
            result = run.train()
            result["attempts"] = [*attempts, {"seed": seed, "status": "finished"}]
            break
        except Diverged as error:
            attempts.append({"seed": seed, "status": "diverged", "reason": str(error)})
            if dist.is_main:
                tqdm.write(f"diverged: {error}")
                for name in ("checkpoint.pt", "best.pt"):
                    (out / name).unlink(missing_ok=True)
    else:
        result = {"status": "unstable", "attempts": attempts, "validation": {}}
    result["config"] = asdict(config)
    result["wall_seconds"] = earlier_seconds + time.perf_counter() - started
    if dist.is_main:
        write_json_atomic(result_path, result)
    distributed.barrier(dist)  # result.json exists when any rank returns
    return result


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``train``, ``lr-find`` and ``sweep``."""
    parser.add_argument("--cache", required=True, help="feature cache made by `pianomtl prepare`")
    parser.add_argument("--model", default="hard", choices=["hard", "cross-stitch"])
    parser.add_argument("--gradient", default="full", choices=["full", "detached"], help="cross-stitch only")
    parser.add_argument("--init", default="imbalanced", choices=["balanced", "imbalanced"], help="cross-stitch α")
    parser.add_argument("--small", type=int, default=None, help="feature maps of the 3×3 stem convs (default: paper)")
    parser.add_argument("--large", type=int, default=None, help="feature maps of the 1×35, 5×1 convs (default: paper)")
    parser.add_argument("--head", type=int, default=None, help="feature maps of each head's 3×3 conv (default: paper)")
    parser.add_argument("--batch-size", type=int, default=8, help="excerpts per minibatch")
    parser.add_argument("--sequence-frames", type=int, default=64, help="output frames per excerpt")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    for task in TASKS:
        parser.add_argument(
            f"--lambda-{task}", type=float, default=DEFAULT_LAMBDAS[task], help=f"task weight λ of {task}"
        )


def model_config_from_args(args: argparse.Namespace) -> dict:
    widths = {k: getattr(args, k, None) for k in ("small", "large", "head")}
    return ModelConfig(name=args.model, gradient=args.gradient, init=args.init, **widths).to_dict()


def configure(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser)
    parser.add_argument("--out", required=True, help="run folder (checkpoints, logs, result.json)")
    parser.add_argument("--lr", type=float, default=0.01, help="learning rate η")
    parser.add_argument("--lr-schedule", default="constant", choices=["constant", "cosine"])
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"], help="sgd: Nesterov momentum (paper)")
    parser.add_argument("--steps", type=int, default=5000, help="number of updates")
    parser.add_argument("--validate-every", type=int, default=1000)
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--validation-frames", type=int, default=3000)
    parser.add_argument("--restarts", type=int, default=0, help="fresh restarts with new seeds after divergence")
    parser.add_argument("--clip-grad-norm", type=float, default=0.0, help="clip the gradient norm (0: off, as paper)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument(
        "--init-from", default="", metavar="CKPT", help="start from the weights of a checkpoint or bundle (fine-tune)"
    )
    parser.add_argument(
        "--equaliser",
        type=float,
        default=0.0,
        metavar="P",
        help="share of excerpts given a random equaliser and level (timbre augmentation; 0: off)",
    )
    parser.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="data-parallel processes (DDP: gloo on CPU, NCCL on CUDA); global batch = NPROC × batch size. "
        "Or start with `torchrun --nproc-per-node N -m pianomtl.cli train ...`",
    )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        cache=args.cache,
        out=args.out,
        model=model_config_from_args(args),
        lambdas={t: getattr(args, f"lambda_{t}") for t in TASKS},
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        optimizer=args.optimizer,
        batch_size=args.batch_size,
        sequence_frames=args.sequence_frames,
        steps=args.steps,
        validate_every=args.validate_every,
        checkpoint_every=args.checkpoint_every,
        validation_frames=args.validation_frames,
        seed=args.seed,
        device=args.device,
        amp=args.amp,
        restarts=args.restarts,
        clip_grad_norm=args.clip_grad_norm,
        threads=args.threads,
        equaliser=args.equaliser,
        init_from=args.init_from,
    )


def _spawned(context: distributed.Context, config: TrainConfig, resume: bool) -> None:
    """Entry of each process started by ``--nproc`` (rank 0 writes result.json)."""
    if not config.threads and torch.device(config.device).type == "cpu":
        torch.set_num_threads(distributed.threads_per_process(context.world_size))
    train(config, resume=resume, dist=context)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    nproc = getattr(args, "nproc", 1) or 1
    launched = distributed.environment_world_size()
    if nproc > 1 and launched > 1:
        print("error: use either --nproc or torchrun, not both", file=sys.stderr)
        return 2
    if nproc > 1:
        distributed.spawn(_spawned, nproc, config, args.resume, device=config.device)
        result = json.loads((Path(config.out) / "result.json").read_text())
    elif launched > 1:  # started by torchrun: join its group
        context = distributed.from_environment(config.device)
        try:
            result = train(config, resume=args.resume, dist=context)
        finally:
            distributed.shutdown()
        if not context.is_main:
            return 0 if result["status"] == "finished" else 3
    else:
        result = train(config, resume=args.resume)
    print(json.dumps({k: result[k] for k in ("status", "validation") if k in result}, indent=1))
    return 0 if result["status"] == "finished" else 3
