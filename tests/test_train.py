"""Training runs on a tiny rendered cache: learning, exact resume, divergence, evaluation.

Everything runs with one torch thread and minibatches of 2 × 12 frames, so each
update takes a fraction of a second even on a busy 2-core machine.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pianomtl import cli
from pianomtl.constants import BINARY_TASKS, REGRESSION_TASKS, TASKS
from pianomtl.data.store import open_split
from pianomtl.models.registry import ModelConfig
from pianomtl.train.evaluate import CheckpointError, evaluate_checkpoint, load_for_evaluation
from pianomtl.train.loop import Run, TrainConfig, evaluate_recordings, to_float_tensor, train

FAMILIES = {
    "hard": ModelConfig(name="hard"),
    "cross-stitch-full": ModelConfig(name="cross-stitch", gradient="full", init="imbalanced"),
    "cross-stitch-detached": ModelConfig(name="cross-stitch", gradient="detached", init="imbalanced"),
}
SMOKE_LR = {"hard": 0.01, "cross-stitch-full": 0.02, "cross-stitch-detached": 0.02}
"""Rates at which 12 updates on one fixed 2 × 12-frame batch lower the loss by 15–25 %
(larger ones can blow up on so small a batch; "balanced" α learns much more slowly at
first, its columns starting identical, so the smoke test uses "imbalanced")."""


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def tiny_config(cache: Path, out: Path, **changes) -> TrainConfig:
    config = TrainConfig(
        cache=str(cache),
        out=str(out),
        model=FAMILIES["hard"].to_dict(),
        lr=0.01,
        batch_size=2,
        sequence_frames=12,
        steps=4,
        validate_every=1000,
        checkpoint_every=2,
        validation_frames=60,
        threads=1,
    )
    return replace(config, **changes)


def test_cache_has_both_splits(cache: Path) -> None:
    train_split, validation = open_split(cache, "train"), open_split(cache, "validation")
    assert len(train_split) == 2 and len(validation) == 1
    assert all(len(r) == 150 for r in [*train_split, *validation])  # 3 s at 50 fps
    labels = np.asarray(train_split[0].labels)
    assert labels.any(), "the rendered performance produced no labels"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_loss_falls_on_a_fixed_batch(cache: Path, tmp_path: Path, family: str) -> None:
    config = tiny_config(cache, tmp_path, model=FAMILIES[family].to_dict(), lr=SMOKE_LR[family], steps=12)
    run = Run(config, seed=0, resume=False)
    batch = run.sampler.sample()
    run.sampler.sample = lambda: batch  # the same excerpts every step
    losses = [run.train_step()["loss"] for _ in range(config.steps)]
    assert all(math.isfinite(v) for v in losses)
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert last < 0.92 * first, f"{family}: loss {first:.4f} → {last:.4f} ({losses})"


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, steps: int) -> None:
    """Make Run.train_step raise KeyboardInterrupt on call ``steps + 1`` (like Ctrl-C)."""
    original = Run.train_step
    calls = {"n": 0}

    def train_step(self: Run) -> dict:
        calls["n"] += 1
        if calls["n"] > steps:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Run, "train_step", train_step)


def test_resume_gives_the_same_parameters_as_one_straight_run(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = FAMILIES["cross-stitch-detached"].to_dict()  # noise layers, α and both columns' states
    # the equaliser augmentation draws from the sampler's stream, which the checkpoint restores
    straight = train(tiny_config(cache, tmp_path / "straight", model=model, validate_every=2, equaliser=0.5))
    assert straight["status"] == "finished"

    interrupted = tiny_config(cache, tmp_path / "resumed", model=model, validate_every=2, equaliser=0.5)
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            train(interrupted)
    assert not (tmp_path / "resumed" / "result.json").exists()
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["step"] == 2
    resumed = train(interrupted, resume=True)
    assert resumed["status"] == "finished" and resumed["steps"] == 4

    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), f"{name} differs after resume"
    for state_a, state_b in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert torch.equal(state_a["momentum_buffer"], state_b["momentum_buffer"])
    assert json.dumps(straight["validation"]) == json.dumps(resumed["validation"])  # NaN-safe equality

    # a finished run is not trained again
    again = train(interrupted, resume=True)
    assert again["wall_seconds"] == resumed["wall_seconds"]


def test_init_from_starts_from_the_checkpoint_weights(cache: Path, tmp_path: Path, capsys) -> None:
    first = train(tiny_config(cache, tmp_path / "first"))
    assert first["status"] == "finished"
    source = torch.load(tmp_path / "first" / "checkpoint.pt", weights_only=True)["model"]
    tuned = Run(
        tiny_config(cache, tmp_path / "tuned", init_from=str(tmp_path / "first" / "checkpoint.pt"), seed=9), 9, False
    )
    assert tuned.step == 0
    for name, tensor in tuned.model.state_dict().items():
        assert torch.equal(tensor, source[name]), name

    # another architecture: a warm start copies the tensors whose name and shape match, and says how many
    other = replace(ModelConfig(name="hard"), small=8).to_dict()
    warm = Run(
        tiny_config(cache, tmp_path / "other", model=other, init_from=str(tmp_path / "first" / "checkpoint.pt")),
        0,
        False,
    )
    assert "copied 15 of 20 tensors" in capsys.readouterr().out
    own = warm.model.state_dict()
    copied = [name for name in own if own[name].shape == source[name].shape]
    assert len(copied) == 15 and all(torch.equal(own[name], source[name]) for name in copied)
    assert not any(torch.equal(own[name], source[name]) for name in own if name not in copied)
    # nothing in common: one line, no run
    foreign = tmp_path / "foreign.pt"
    torch.save({"model_config": {"name": "cross-stitch"}, "model": {"elsewhere.weight": torch.zeros(3)}}, foreign)
    with pytest.raises(ValueError, match=r"foreign\.pt: none of its 1 tensors .* matches") as error:
        Run(tiny_config(cache, tmp_path / "foreign", init_from=str(foreign)), 0, False)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="model file not found"):
        Run(tiny_config(cache, tmp_path / "missing", init_from=str(tmp_path / "nothing.pt")), 0, False)


def test_frozen_front_end_stays_fixed_and_runs_without_its_noise(cache: Path, tmp_path: Path) -> None:
    """--freeze: the named parameters do not move, and the named modules run evaluated (no noise layers)."""
    model = ModelConfig(name="hard+keyrnn", embed=8, hidden=4).to_dict()
    config = tiny_config(cache, tmp_path, model=model, freeze="stem,head,dense,dense.dense.on.weight", steps=2)
    run = Run(config, seed=0, resume=False)
    assert [type(m).__name__ for m in run.frozen_modules] == ["Sequential", "ConvBlock", "TaskDense"]
    before = {name: p.detach().clone() for name, p in run.model.named_parameters()}
    run.validate()  # leaves the whole model in training mode, as evaluation code does ...
    run.train_step()
    run.train_step()
    after = dict(run.model.named_parameters())
    for name, tensor in before.items():
        assert torch.equal(tensor, after[name]) == name.startswith(("stem.", "head.", "dense.")), name
    # ... and each step puts the frozen modules back in evaluation mode, the rest in training mode
    assert not any(m.training for frozen in run.frozen_modules for m in frozen.modules())
    assert run.model.key_rnn.training
    features, _ = run.sampler.sample()
    first, second = run.model.local_outputs(features), run.model.local_outputs(features)
    torch.testing.assert_close(first["int"], second["int"], atol=0, rtol=0)  # no noise in the frozen part
    with pytest.raises(ValueError, match="matches no parameter"):
        Run(tiny_config(cache, tmp_path / "typo", model=model, freeze="stme"), 0, False)


def test_a_run_folder_is_trained_by_one_process_at_a_time(cache: Path, tmp_path: Path) -> None:
    """A second trainer of the same folder (e.g. a sweep restarted while its killed parent's workers
    still train) is refused at once, naming the holder; the folder is free again when the holder exits."""
    import subprocess
    import sys

    from pianomtl.train.loop import LOCK_NAME, RunFolderError

    folder = tmp_path / "run"
    folder.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pianomtl.core.files import exclusive_lock\n"
         f"with exclusive_lock({str(folder / LOCK_NAME)!r}):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderError, match=rf"in use by another process \(pid {holder.pid}\)") as error:
            train(tiny_config(cache, folder))
        assert "\n" not in str(error.value) and not (folder / "checkpoint.pt").exists()
    finally:
        holder.kill()
        holder.wait()
    assert train(tiny_config(cache, folder))["status"] == "finished"  # the kernel dropped the dead holder's lock


def test_divergence_after_restarts_is_unstable(cache: Path, tmp_path: Path) -> None:
    result = train(tiny_config(cache, tmp_path, lr=1e6, restarts=1))
    assert result["status"] == "unstable"
    assert [a["status"] for a in result["attempts"]] == ["diverged", "diverged"]
    assert len({a["seed"] for a in result["attempts"]}) == 2  # each restart has a new seed
    stored = json.loads((tmp_path / "result.json").read_text())
    assert stored["status"] == "unstable"
    assert not (tmp_path / "checkpoint.pt").exists()
    assert train(tiny_config(cache, tmp_path, lr=1e6, restarts=1), resume=True)["status"] == "unstable"


def test_evaluate_checkpoint_matches_training_validation(cache: Path, tmp_path: Path) -> None:
    result = train(tiny_config(cache, tmp_path / "run", steps=2, validation_frames=10_000))
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    report = evaluate_checkpoint(checkpoint, cache, split="validation")
    for task in TASKS:  # same numbers as the run's final validation (same model, whole recordings)
        assert report["headline"][task] == pytest.approx(result["validation"][task], abs=1e-6, nan_ok=True)
    model, info = load_for_evaluation(checkpoint)
    assert info["step"] == 2
    lenient = evaluate_recordings(model, open_split(cache, "validation"), "cpu", threshold=0.05)
    assert lenient["on"]["recall"] >= report["framewise"]["on"]["recall"]
    assert report["frames"] == 150 and report["threshold"] == 0.5
    assert report["note_level"] is not None  # the decoders ship with the package: notes are always scored
    for measure in ("note", "note_with_offset", "note_with_offset_velocity"):
        assert 0.0 <= report["note_level"][measure]["f1"] <= 1.0
    assert report["note_level"]["counts"]["reference"] == 9  # the validation performance's notes

    out = tmp_path / "scores.json"
    assert cli.main(["evaluate", str(checkpoint), "--cache", str(cache), "--threshold", "0.3", "--json", str(out)]) == 0
    stored = json.loads(out.read_text())
    assert stored["threshold"] == 0.3
    assert set(stored["framewise"]) == set(BINARY_TASKS) | set(REGRESSION_TASKS)
    assert set(stored["framewise"]["on"]) == {"precision", "recall", "f1"}


def test_evaluate_rejects_other_files(tmp_path: Path, cache: Path) -> None:
    bogus = tmp_path / "bogus.pt"
    torch.save({"weights": torch.zeros(2)}, bogus)
    with pytest.raises(CheckpointError):
        load_for_evaluation(bogus)
    assert cli.main(["evaluate", str(bogus), "--cache", str(cache)]) == 2


def test_the_architecture_option_is_arch_and_model_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    """``--model`` names a model *file* everywhere else; ``train`` now says ``--arch`` and keeps the old name."""
    from pianomtl.cli import build_parser
    from pianomtl.cli.train import config_from_args

    argv = ["train", "--cache", "c", "--out", "o", "--arch", "cross-stitch"]
    assert config_from_args(build_parser(argv).parse_args(argv)).model["name"] == "cross-stitch"
    assert capsys.readouterr().err == ""
    argv = ["train", "--cache", "c", "--out", "o", "--model", "cross-stitch"]
    assert config_from_args(build_parser(argv).parse_args(argv)).model["name"] == "cross-stitch"
    assert "--model is now --arch" in capsys.readouterr().err


def test_train_and_its_tables_need_no_torch_to_read_the_options() -> None:
    """``train/config.py`` holds TrainConfig without torch; the tables import no torch for one constant."""
    import subprocess
    import sys

    code = (
        "import sys; import pianomtl.train.config, pianomtl.train.tables; "
        "print([m for m in ('torch', 'tqdm') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_train_options_are_generated_from_the_config() -> None:
    """Every TrainConfig field is a `train` option with the field's own default (nothing restated)."""
    from dataclasses import fields

    from pianomtl.cli import build_parser
    from pianomtl.cli.train import config_from_args
    from pianomtl.models.registry import model_names

    argv = ["train", "--cache", "c", "--out", "o"]
    args = build_parser(argv).parse_args(argv)
    assert config_from_args(args) == TrainConfig(cache="c", out="o")
    argv += ["--lr", "0.5", "--lr-schedule", "cosine", "--amp", "--init-from", "x.pt", "--model", "cross-stitch"]
    argv += ["--gradient", "detached", "--lambda-sus", "0.1", "--explode-factor", "3"]
    config = config_from_args(build_parser(argv).parse_args(argv))
    assert (config.lr, config.lr_schedule, config.amp, config.init_from, config.explode_factor) == (
        0.5,
        "cosine",
        True,
        "x.pt",
        3.0,
    )
    assert config.model == ModelConfig(name="cross-stitch", gradient="detached").to_dict()
    assert config.lambdas["sus"] == 0.1
    options = {action.dest for action in build_parser(argv)._subparsers._group_actions[0].choices["train"]._actions}
    assert {f.name for f in fields(TrainConfig)} - {"model", "lambdas"} <= options
    choices = build_parser(argv)._subparsers._group_actions[0].choices["train"]._option_string_actions["--model"]
    assert list(choices.choices) == model_names()


def test_velocity_ranking_loss_rewards_the_right_order_and_ignores_near_ties() -> None:
    from pianomtl.train.loop import VEL_RANK_MARGIN, VEL_RANK_SPREAD, velocity_ranking_loss

    target = torch.zeros(2, 6, 88)
    target[0, 1, 40], target[0, 3, 50], target[0, 5, 60] = 0.3, 0.6, 0.9  # three notes, softest to loudest
    right = target.clone()
    wrong = target.clone()
    wrong[0, 1, 40], wrong[0, 5, 60] = 0.9, 0.3  # loudest and softest swapped
    assert velocity_ranking_loss(right, target) < velocity_ranking_loss(wrong, target)
    # blind to an offset (the squared error's job), but a wider spread than the truth's costs (σ̂ − σ)² / s²
    assert float(velocity_ranking_loss(right + 0.2 * (target > 0), target)) == pytest.approx(
        float(velocity_ranking_loss(right, target)), rel=1e-5
    )
    spread = float(target[target > 0].std())
    assert float(velocity_ranking_loss(right * 3, target)) > (2 * spread) ** 2 / VEL_RANK_SPREAD**2
    near = torch.zeros(1, 4, 88)
    near[0, 0, 10], near[0, 2, 20] = 0.5, 0.5 + VEL_RANK_MARGIN / 2  # a near tie: nothing to rank
    prediction = torch.rand(1, 4, 88, requires_grad=True)
    loss = velocity_ranking_loss(prediction, near)
    assert float(loss.detach()) == 0.0
    loss.backward()  # a batch without a pair to rank still back-propagates (zero gradient)
    assert prediction.grad is not None and float(prediction.grad.abs().sum()) == 0.0


def test_vel_rank_weight_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="vel-rank"):
        TrainConfig(cache="c", out=str(tmp_path), vel_rank=-1.0)


def test_vel_rank_adds_the_ranking_loss_to_a_training_step(cache: Path, tmp_path: Path) -> None:
    """A step's loss is Σ λ·task loss + vel_rank × the ranking loss (noise layers off: one forward value)."""
    from pianomtl.train.loop import task_losses, velocity_ranking_loss

    model = ModelConfig(name="hard", dropout=0.0, noise_sigma=0.0).to_dict()
    run = Run(tiny_config(cache, tmp_path, model=model, sequence_frames=100, vel_rank=2.0), 0, False)
    features, labels = run.sampler.sample()
    run.sampler.sample = lambda: (features, labels)  # the step sees this batch
    with torch.no_grad():
        outputs = run.model(features)
        tasks = float(sum(task_losses(outputs, labels).values()))  # every λ is 1
        rank = float(velocity_ranking_loss(outputs["vel"], to_float_tensor(labels)["vel"]))
    assert rank > 0  # the excerpt holds notes of different velocities
    assert run.train_step()["loss"] == pytest.approx(tasks + 2.0 * rank, rel=1e-5)
