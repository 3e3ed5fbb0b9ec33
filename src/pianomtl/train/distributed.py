"""Multi-process data-parallel training on PyTorch's own engine (DistributedDataParallel).

Two ways to start N training processes, which then run exactly the same code:

* ``pianomtl train … --nproc N`` spawns N local processes (:func:`spawn`, through
  ``torch.multiprocessing``) that meet on a free TCP port of 127.0.0.1;
* ``torchrun --nproc-per-node N -m pianomtl.cli train …`` (or several machines with
  ``--nnodes``/``--rdzv-endpoint``): torchrun sets ``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``, which :func:`from_environment`
  reads.

Backend: gloo on CPU, NCCL on CUDA (each process on ``cuda:LOCAL_RANK``).

What data parallelism means here (see :class:`pianomtl.train.loop.Run`):

* every rank draws its own excerpts (:class:`~pianomtl.data.sampler.ExcerptSampler`
  seeded with ``[seed, rank, world_size]``, so ranks never share a random stream) —
  the distributed sampler of random-excerpt training;
* DDP averages the gradients, so one update of N processes × ``batch_size`` excerpts is
  the update of one process with a global minibatch of N × ``batch_size`` (the same
  learning rate, the same loss scale);
* the loss used for the divergence check and the log is averaged over ranks, so every
  rank takes the same decision;
* only rank 0 validates and writes ``checkpoint.pt``, ``best.pt``, ``log.csv``,
  tensorboard events and ``result.json``; a checkpoint keeps every rank's random state,
  so a resumed run continues each rank's stream.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    """Where this process stands in a group of training processes (one process: the default)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """Whether there are several processes (and so collectives to call)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that validates and writes files."""
        return self.rank == 0


SINGLE = Context()
"""The context of an ordinary single-process run."""


def backend_for(device: str | torch.device) -> str:
    """``nccl`` for CUDA devices, ``gloo`` otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def local_device(device: str | torch.device, context: Context = SINGLE) -> str:
    """The device of this rank: ``cuda`` becomes ``cuda:LOCAL_RANK`` when there are several processes."""
    device = str(device)
    if context.enabled and torch.device(device).type == "cuda" and torch.device(device).index is None:
        return f"cuda:{context.local_rank}"
    return device


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def environment_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when not started by a launcher)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def init(
    device: str | torch.device, rank: int, world_size: int, local_rank: int | None = None, init_method: str = "env://"
) -> Context:
    """Join the process group (gloo/NCCL chosen by ``device``) and return this process's context."""
    local_rank = rank if local_rank is None else local_rank
    context = Context(rank=rank, world_size=world_size, local_rank=local_rank)
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(local_device(device, context))
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size)
    return context


def from_environment(device: str | torch.device) -> Context:
    """Join the group described by torchrun's environment variables (``SINGLE`` without them)."""
    world_size = environment_world_size()
    if world_size <= 1:
        return SINGLE
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    return init(device, rank, world_size, local_rank, init_method="env://")


def shutdown() -> None:
    """Leave the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def mean_across(values: torch.Tensor, context: Context) -> torch.Tensor:
    """The element-wise mean of ``values`` over all ranks (``values`` itself with one process)."""
    if not context.enabled:
        return values
    total = values.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / context.world_size


def gather_objects(value: Any, context: Context) -> list[Any]:
    """Every rank's ``value`` (picklable), in rank order, on every rank."""
    if not context.enabled:
        return [value]
    values: list[Any] = [None] * context.world_size
    dist.all_gather_object(values, value)
    return values


def broadcast_object(value: Any, context: Context) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not context.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(context: Context) -> None:
    if context.enabled:
        dist.barrier()


def wrap(model: torch.nn.Module, context: Context) -> torch.nn.Module:
    """``model`` itself with one process, else a DistributedDataParallel wrapper of it.

    Rank 0's parameters are broadcast at construction, so every rank starts equal.
    Buffers are constants here (no batch norm), so they are not re-broadcast each step.
    """
    if not context.enabled:
        return model
    import inspect
    import warnings

    from torch.nn.parallel import DistributedDataParallel

    # channels_last weights get gradients in another stride order than DDP's flat buckets;
    # DDP then copies them (correct, slightly slower) and says so once per process.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    device = next(model.parameters()).device
    device_ids = [device.index] if device.type == "cuda" else None
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
        return DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)
    return DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)


def _worker(local_rank: int, fn: Callable[..., Any], world_size: int, port: int, device: str, args: tuple) -> None:
    init(device, local_rank, world_size, local_rank, init_method=f"tcp://127.0.0.1:{port}")
    try:
        fn(Context(rank=local_rank, world_size=world_size, local_rank=local_rank), *args)
    finally:
        shutdown()


def spawn(fn: Callable[..., Any], nproc: int, *args: Any, device: str = "cpu") -> None:
    """Run ``fn(context, *args)`` in ``nproc`` fresh processes joined in one process group.

    ``fn`` must be importable (a module-level function): the processes are started
    with the ``spawn`` method, so no torch/OpenMP state is forked. An exception in any
    process is raised here after all have stopped.
    """
    import torch.multiprocessing as mp

    if nproc < 1:
        raise ValueError(f"nproc must be >= 1, got {nproc}")
    mp.spawn(_worker, args=(fn, nproc, free_port(), str(device), args), nprocs=nproc, join=True)


def threads_per_process(nproc: int) -> int:
    """CPU threads for each of ``nproc`` local processes so that they do not oversubscribe the cores."""
    return max(1, (os.cpu_count() or 1) // max(1, nproc))


__all__ = [
    "SINGLE",
    "Context",
    "backend_for",
    "barrier",
    "broadcast_object",
    "from_environment",
    "gather_objects",
    "init",
    "local_device",
    "mean_across",
    "shutdown",
    "spawn",
    "threads_per_process",
    "wrap",
]
