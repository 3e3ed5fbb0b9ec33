"""Data-parallel training (DistributedDataParallel, gloo) with 2 CPU processes.

What is compared, and why it can be compared exactly:

* The two ranks and the single process get *the same data*: a list of global
  minibatches of 2 × B excerpts is drawn once and written to a file; rank ``r`` trains
  on rows ``[r·B, (r+1)·B)`` of each, the single process (``batch_size`` 2 × B) on all
  of them. (Left to their own samplers the ranks draw different excerpts — that is the
  point of per-rank streams — so no single process could draw the same ones.)
* The noise layers are switched off (``dropout=0``, ``noise_sigma=0``): with noise on,
  each rank draws its own noise, which no single process can reproduce.

Then DDP's averaged gradient equals the gradient of the mean loss over the global
batch (equal batch sizes, mean losses), so after a few SGD-Nesterov updates the
parameters of both ranks are bit-identical to each other and equal to the single
process's up to float summation order.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pianomtl import cli
from pianomtl.constants import N_BINS
from pianomtl.core.targets import N_LABELS
from pianomtl.data import store
from pianomtl.data.sampler import ExcerptSampler
from pianomtl.models.registry import ModelConfig
from pianomtl.train import distributed
from pianomtl.train.loop import Run, TrainConfig

BATCH = 2  # excerpts per rank
FRAMES = 12
STEPS = 4
MODEL = ModelConfig("hard", small=4, large=8, head=2, dropout=0.0, noise_sigma=0.0)


def random_cache(root: Path, recordings: int = 2, frames: int = 120) -> Path:
    """A cache in the store's format with random features and sparse random labels."""
    rng = np.random.default_rng(0)
    (root / "arrays").mkdir(parents=True, exist_ok=True)
    entries = []
    for index in range(recordings):
        name = f"random_{index}"
        np.save(root / f"arrays/{name}.features.npy", rng.random((frames, N_BINS), dtype=np.float32))
        labels = (rng.random((frames, N_LABELS)) < 0.1).astype(np.uint8)  # 0/1: valid for every task
        np.save(root / f"arrays/{name}.labels.npy", labels)
        entry = store.Entry(
            name, "train", frames, f"arrays/{name}.features.npy", f"arrays/{name}.labels.npy", "", "", ""
        )
        entries.append(asdict(entry))
    store.write_json_atomic(root / store.INDEX_NAME, {"version": store.FORMAT_VERSION, "entries": entries})
    return root


def config_for(cache: Path, out: Path, batch_size: int) -> TrainConfig:
    return TrainConfig(
        cache=str(cache),
        out=str(out),
        model=MODEL.to_dict(),
        lr=0.05,
        batch_size=batch_size,
        sequence_frames=FRAMES,
        steps=STEPS,
        validate_every=1000,
        checkpoint_every=2,
        threads=1,
    )


def feed(run: Run, batches: list, rows: slice) -> None:
    """Make ``run`` train on ``rows`` of the given global batches, one per step."""
    iterator = iter(batches)

    def sample() -> tuple[torch.Tensor, torch.Tensor]:
        features, labels = next(iterator)
        return features[rows], labels[rows]

    run.sampler.sample = sample  # type: ignore[method-assign]


def ddp_worker(context: distributed.Context, cache: str, out: str, batches_path: str, result_dir: str) -> None:
    """One rank: train STEPS updates through ``Run.train`` on its rows of the shared batches."""
    torch.set_num_threads(1)
    run = Run(config_for(Path(cache), Path(out), BATCH), seed=0, resume=False, dist=context)
    assert isinstance(run.network, torch.nn.parallel.DistributedDataParallel)
    feed(run, torch.load(batches_path), slice(context.rank * BATCH, (context.rank + 1) * BATCH))
    run.train()
    torch.save(
        {"params": run.model.state_dict(), "sampler": run.sampler.state()},
        Path(result_dir) / f"rank{context.rank}.pt",
    )


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def test_two_processes_equal_one_process_with_the_global_batch(tmp_path: Path) -> None:
    cache = random_cache(tmp_path / "cache")
    sampler = ExcerptSampler(store.open_split(cache, "train"), FRAMES, 2 * BATCH, seed=123)
    batches = [sampler.sample() for _ in range(STEPS)]
    torch.save(batches, tmp_path / "batches.pt")

    distributed.spawn(ddp_worker, 2, str(cache), str(tmp_path / "ddp"), str(tmp_path / "batches.pt"), str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]

    single = Run(config_for(cache, tmp_path / "single", 2 * BATCH), seed=0, resume=False)
    initial = {name: tensor.clone() for name, tensor in single.model.state_dict().items()}
    feed(single, batches, slice(None))
    single.train()
    expected = single.model.state_dict()

    moved = 0.0
    for name, tensor in expected.items():
        assert torch.equal(ranks[0]["params"][name], ranks[1]["params"][name]), f"{name} differs between ranks"
        torch.testing.assert_close(ranks[0]["params"][name], tensor, rtol=1e-5, atol=1e-6, msg=name)
        moved = max(moved, float((tensor - initial[name]).abs().max()))
    assert moved > 1e-4, "training did not change the parameters; the comparison would be empty"

    # only rank 0 wrote the run folder; its checkpoint keeps both ranks' random streams
    checkpoint = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=False)
    assert checkpoint["step"] == STEPS and checkpoint["world_size"] == 2
    for name, tensor in checkpoint["model"].items():
        assert torch.equal(tensor, ranks[0]["params"][name])
    samplers = [rank["sampler"] for rank in checkpoint["rng_ranks"]]
    assert samplers == [ranks[0]["sampler"], ranks[1]["sampler"]] and samplers[0] != samplers[1]
    with (tmp_path / "ddp" / "log.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [2, 4]
    logged = float(rows[-1]["loss"])  # the global batch's loss (mean over ranks) = the single process's
    with (tmp_path / "single" / "log.csv").open() as handle:
        assert logged == pytest.approx(float(list(csv.DictReader(handle))[-1]["loss"]), rel=1e-5)


def test_ranks_draw_different_excerpts(tmp_path: Path) -> None:
    recordings = store.open_split(random_cache(tmp_path / "cache"), "train")
    draws = [ExcerptSampler(recordings, FRAMES, 4, seed=0, rank=r, world_size=2).sample()[0] for r in range(2)]
    assert not torch.equal(draws[0], draws[1])
    alone = ExcerptSampler(recordings, FRAMES, 4, seed=0).sample()[0]  # rank 0 of 1: the single-process stream
    assert torch.equal(alone, ExcerptSampler(recordings, FRAMES, 4, seed=0, rank=0, world_size=1).sample()[0])


def test_cli_nproc_trains_and_only_rank_0_writes(tmp_path: Path, capsys) -> None:
    cache = random_cache(tmp_path / "cache")
    out = tmp_path / "run"
    argv = ["train", "--cache", str(cache), "--out", str(out), "--nproc", "2", "--steps", "2"]
    argv += ["--batch-size", "2", "--sequence-frames", "8", "--small", "4", "--large", "8", "--head", "2"]
    argv += ["--checkpoint-every", "1", "--threads", "1"]
    assert cli.main(argv) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "finished" and result["steps"] == 2
    with (out / "log.csv").open() as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == [1, 2]  # one row per boundary, not two
    assert json.loads(capsys.readouterr().out)["status"] == "finished"


def test_context_helpers_without_a_group() -> None:
    assert not distributed.SINGLE.enabled and distributed.SINGLE.is_main
    assert distributed.backend_for("cpu") == "gloo" and distributed.backend_for("cuda:0") == "nccl"
    two = distributed.Context(rank=1, world_size=2, local_rank=1)
    assert distributed.local_device("cuda", two) == "cuda:1"
    assert distributed.local_device("cuda:0", two) == "cuda:0" and distributed.local_device("cpu", two) == "cpu"
    assert distributed.local_device("cuda") == "cuda"
    value = torch.tensor([1.0, 2.0])
    assert distributed.mean_across(value, distributed.SINGLE) is value
    assert distributed.gather_objects({"a": 1}, distributed.SINGLE) == [{"a": 1}]
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, distributed.SINGLE) is model
    assert replace(two, rank=0).is_main
