"""One training run of a multitask network (paper §V), resumable and divergence-aware.

Optimiser: SGD with momentum 0.9 and Nesterov correction, as in the paper. Loss:
``L = Σ λᵐ Lᵐ`` (:mod:`pianomtl.train.losses`). A run is a
:class:`~pianomtl.train.config.TrainConfig` (:mod:`pianomtl.train.config`, no torch);
warm starts and frozen layers are :mod:`pianomtl.train.warm_start`. This module is the
loop: steps, validation, checkpoints, resume, divergence and restarts. Its names
re-export the others' (``from pianomtl.train.loop import TrainConfig`` keeps working).

Minibatches: the paper draws 64 single frames (each with 11 frames of context).
Here a minibatch is ``batch_size`` excerpts of ``sequence_frames`` consecutive
frames each, evaluated in sequence form (one convolution pass per excerpt), which
is an order of magnitude cheaper per frame on a CPU; ``--batch-size 64
--sequence-frames 1`` is the paper's exact setting.

A run writes into its folder: ``checkpoint.pt`` (latest, atomic), ``best.pt`` (best
validation), ``log.csv``, ``tensorboard/``, ``result.json`` (status ``finished``,
``diverged`` or ``unstable`` plus the final validation scores). Checkpoints hold plain
data only (tensors, dicts, lists, strings, numbers; the numpy random state as a
tensor), so resuming reads them with ``weights_only=True`` and a checkpoint can never
run code. A new run refuses a folder that already holds one (:func:`check_run_folder`).
The command line, ``pianomtl train``, is :mod:`pianomtl.cli.train`: its options are
generated from :class:`TrainConfig`'s fields.

Several processes (``--nproc N``, or ``torchrun``) train one model data-parallel with
DistributedDataParallel: each rank draws its own excerpts and the global minibatch is
N × ``batch_size`` excerpts; only rank 0 writes files (:mod:`pianomtl.train.distributed`).
"""

from __future__ import annotations

import csv
import json
import math
import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pianomtl.constants import BINARY_TASKS, TASKS
from pianomtl.core.files import LockedError, atomic_write, exclusive_lock, write_json_atomic
from pianomtl.core.metrics import FramewiseEvaluator, headline
from pianomtl.core.targets import to_float
from pianomtl.data.sampler import ExcerptSampler
from pianomtl.data.store import open_split
from pianomtl.models.registry import ModelConfig, build_model
from pianomtl.train import distributed
from pianomtl.train.config import (  # re-exported: what a run is, where callers have always found it
    DEFAULT_LAMBDAS,
    LR_SCHEDULES,
    OPTIMIZERS,
    TrainConfig,
)
from pianomtl.train.losses import (  # re-exported
    VEL_RANK_MARGIN,
    VEL_RANK_MAX_POSITIONS,
    VEL_RANK_SCALE,
    VEL_RANK_SPREAD,
    task_losses,
    to_float_tensor,
    velocity_ranking_loss,
)
from pianomtl.train.warm_start import freeze_parameters, frozen_modules, load_initial_weights  # re-exported
from pianomtl.transcription.inference import run_model


class Diverged(RuntimeError):
    """The loss became NaN/inf or exploded."""


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
    """SGD with Nesterov momentum (paper §V), or Adam for short CPU budgets (trainable parameters only)."""
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(trainable, lr=config.lr, momentum=config.momentum, nesterov=True)
    if config.optimizer == "adam":
        return torch.optim.Adam(trainable, lr=config.lr)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; choose sgd or adam")


def _set_seeds(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _atomic_save(payload: dict, path: Path) -> None:
    atomic_write(path, lambda target: torch.save(payload, target))


def _numpy_state() -> tuple:
    """numpy's legacy random state as plain data (the uint32 key as an int64 tensor)."""
    name, key, position, has_gauss, gauss = np.random.get_state()
    return (str(name), torch.from_numpy(key.astype(np.int64)), int(position), int(has_gauss), float(gauss))


def _set_numpy_state(state: tuple) -> None:
    name, key, position, has_gauss, gauss = state
    key = key.numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
    np.random.set_state((name, key.astype(np.uint32), int(position), int(has_gauss), float(gauss)))


RUN_FILES = ("checkpoint.pt", "best.pt", "result.json")
"""What a run folder holds once a run has started; another run must not overwrite them."""


class RunFolderError(ValueError):
    """A run folder that does not fit the request (a used one without resume, an empty one to resume)."""


def check_run_folder(config: TrainConfig, resume: bool, must_resume: bool = False) -> None:
    """Refuse to start afresh in a folder that already holds a run (its checkpoints would be overwritten).

    ``must_resume``: also refuse ``resume`` when there is nothing to continue (the command
    line's ``--resume``; :func:`train` itself starts afresh then, which sweeps rely on).
    """
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"{out}: not a folder")
    present = [name for name in RUN_FILES if (out / name).exists()]
    if present and not resume:
        raise RunFolderError(
            f"{out}: already holds a run ({', '.join(present)}); continue it with --resume or choose another --out"
        )
    if resume and must_resume and not present:
        raise RunFolderError(f"{out}: nothing to resume (no checkpoint.pt or result.json); leave out --resume")


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
            load_initial_weights(self.model, config.init_from, report=self.dist.is_main)
        freeze_parameters(self.model, config.freeze)
        self.frozen_modules = frozen_modules(self.model, config.freeze)
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
            "numpy": _numpy_state(),
            "python": random.getstate(),
            "sampler": self.sampler.state(),
        }

    def _set_rng_state(self, rng: dict) -> None:
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        _set_numpy_state(rng["numpy"])
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
        """Continue from a checkpoint, read as plain data (never unpickled objects)."""
        from pianomtl.transcription.model_file import ModelFileError, read_model_file

        state = read_model_file(path)  # ModelFileError: one line naming the file
        try:
            self._restore(state)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelFileError(f"{path}: not a resumable checkpoint of this run ({reason})") from None

    def _restore(self, state: dict) -> None:
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
        self.model.train()  # validation leaves every module in training mode; frozen ones run evaluated
        for module in self.frozen_modules:
            module.eval()
        features, labels = self.sampler.sample()
        features, labels = features.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.amp):
            outputs = self.network(features)
        losses = task_losses(outputs, labels)
        total = sum(self.config.lambdas.get(t, 0.0) * losses[t] for t in TASKS)
        if self.config.vel_rank > 0:
            total = total + self.config.vel_rank * velocity_ranking_loss(
                outputs["vel"].float(), to_float_tensor(labels)["vel"]
            )
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
        result = {"status": "finished", "steps": self.step, "seed": self.seed, "validation": final}
        alphas = self.model.alphas()
        if alphas:  # cross-stitch: the learnt sharing kept with the scores (checkpoints may not outlive the run)
            result["alphas"] = [alpha.tolist() for alpha in alphas]
        return result


def _tensorboard(folder: Path):  # type: ignore[no-untyped-def]
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional for a run
        return None
    return SummaryWriter(str(folder))


LOCK_NAME = ".training.lock"
"""The lock file in a run folder while a process trains it (:func:`~pianomtl.core.files.exclusive_lock`):
two writers — a sweep killed while its workers kept going, then started again — would
interleave their checkpoints and logs and leave a result neither of them computed."""


def train(config: TrainConfig, resume: bool = False, dist: distributed.Context | None = None) -> dict:
    """Train with up to ``config.restarts`` fresh restarts after divergence.

    Returns the result dict also written to ``result.json``; ``status`` is
    ``unstable`` when every attempt diverged (the paper's "-"). ``dist``: this
    process's place among several data-parallel ones (every rank calls ``train``).
    """
    dist = dist or distributed.SINGLE
    check_run_folder(config, resume)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if not dist.is_main:  # rank 0 holds the run's lock for the whole group
        return _train(config, resume, dist, out)
    try:
        with exclusive_lock(out / LOCK_NAME):
            return _train(config, resume, dist, out)
    except LockedError as error:
        raise RunFolderError(f"{error}, which is training this run; stop it or wait for it") from None


def _train(config: TrainConfig, resume: bool, dist: distributed.Context, out: Path) -> dict:
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


def _spawned(context: distributed.Context, config: TrainConfig, resume: bool) -> None:
    """Entry of each process started by :func:`launch` with ``nproc > 1`` (rank 0 writes result.json)."""
    if not config.threads and torch.device(config.device).type == "cpu":
        torch.set_num_threads(distributed.threads_per_process(context.world_size))
    train(config, resume=resume, dist=context)


def launch(config: TrainConfig, resume: bool = False, nproc: int = 1) -> tuple[dict, bool]:
    """Train in this process, in ``nproc`` processes (DDP), or as one rank of a ``torchrun`` group.

    Returns ``(result, is_main)``: ranks other than 0 of a ``torchrun`` group get
    ``is_main=False`` (they print and write nothing). Raises :class:`ValueError` for
    ``nproc > 1`` inside a ``torchrun`` group.
    """
    launched = distributed.environment_world_size()
    if nproc > 1 and launched > 1:
        raise ValueError("use either --nproc or torchrun, not both")
    if nproc > 1:
        check_run_folder(config, resume)  # before any process starts
        distributed.spawn(_spawned, nproc, config, resume, device=config.device)
        return json.loads((Path(config.out) / "result.json").read_text()), True
    if launched > 1:  # started by torchrun: join its group
        context = distributed.from_environment(config.device)
        try:
            return train(config, resume=resume, dist=context), context.is_main
        finally:
            distributed.shutdown()
    return train(config, resume=resume), True


__all__ = [
    "DEFAULT_LAMBDAS",
    "LOCK_NAME",
    "LR_SCHEDULES",
    "OPTIMIZERS",
    "RUN_FILES",
    "VEL_RANK_MARGIN",
    "VEL_RANK_MAX_POSITIONS",
    "VEL_RANK_SCALE",
    "VEL_RANK_SPREAD",
    "Diverged",
    "Run",
    "RunFolderError",
    "TrainConfig",
    "check_run_folder",
    "evaluate_recordings",
    "freeze_parameters",
    "frozen_modules",
    "launch",
    "load_initial_weights",
    "make_optimizer",
    "selection_score",
    "task_losses",
    "to_float_tensor",
    "train",
    "velocity_ranking_loss",
]
