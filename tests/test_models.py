"""The two architecture families: shapes, sequence = window form, gradient routing, layers, config."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from pianomtl.constants import CONTEXT, N_BINS, N_KEYS, TASK_WIDTH, TASKS
from pianomtl.models import (
    MODELS,
    AdditiveGaussianNoise,
    CrossStitch,
    CrossStitchNet,
    GaussianDropout,
    HardSharingNet,
    ModelConfig,
    MultitaskNet,
    StraightThroughReLU,
    build_model,
    glorot_init_,
    pad_context,
    window_forward,
)

VARIANTS = [
    ModelConfig("hard"),
    *(
        ModelConfig("cross-stitch", gradient=g, init=i)
        for g in ("full", "detached")
        for i in ("balanced", "imbalanced")
    ),
]
IDS = [c.label() for c in VARIANTS]


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def make(config: ModelConfig, seed: int = 0) -> MultitaskNet:
    torch.manual_seed(seed)
    return build_model(config)


def spectrogram(batch: int, frames: int, seed: int = 1) -> torch.Tensor:
    """Padded input ``[B, T + 10, 144]`` with log-spectrogram-like values."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, frames + 2 * CONTEXT, N_BINS, generator=g)


def column_slices(model: CrossStitchNet) -> list[tuple[nn.Parameter, int]]:
    """Each column-packed conv parameter with its number of columns (rows per column = dim 0 / M)."""
    return [(p, len(TASKS)) for block in [*model.stem, model.head] for p in block.conv.parameters()]


# ---------------------------------------------------------------- shapes & forms


@pytest.mark.parametrize("frames", [1, 37])
@pytest.mark.parametrize("config", VARIANTS, ids=IDS)
def test_output_shapes(config: ModelConfig, frames: int) -> None:
    model = make(config)
    for mode in (model.train, model.eval):
        mode()
        out = model(spectrogram(2, frames))
        assert list(out) == list(TASKS)
        for task in TASKS:
            assert out[task].shape == (2, frames, TASK_WIDTH[task])
            assert out[task].dtype == torch.float32
    assert out["on"].shape[-1] == N_KEYS and out["sus"].shape[-1] == 1


@pytest.mark.parametrize("config", VARIANTS, ids=IDS)
def test_sequence_form_equals_window_form(config: ModelConfig) -> None:
    model = make(config).eval()
    x = spectrogram(2, 23)
    with torch.no_grad():
        seq = model(x)
        win = window_forward(model, x, chunk=7)  # several chunks, one ragged
    for task in TASKS:
        torch.testing.assert_close(seq[task], win[task], atol=1e-5, rtol=0)


def test_predict_applies_sigmoid_to_binary_tasks_only() -> None:
    model = make(ModelConfig("hard")).eval()
    x = spectrogram(1, 5)
    with torch.no_grad():
        raw, prob = model(x), model.predict(x)
    for task in ("on", "int", "off"):
        torch.testing.assert_close(prob[task], torch.sigmoid(raw[task]))
    for task in ("vel", "sus"):
        torch.testing.assert_close(prob[task], raw[task])
        assert (prob[task] >= 0).all()


def test_input_conventions() -> None:
    model = make(ModelConfig("hard")).eval()
    x = spectrogram(2, 4)
    with torch.no_grad():
        a, b = model(x), model(x.unsqueeze(1))
    torch.testing.assert_close(a["on"], b["on"])
    with pytest.raises(ValueError, match="at least 11"):
        model(torch.zeros(1, 2 * CONTEXT, N_BINS))
    with pytest.raises(ValueError, match="144"):
        model(torch.zeros(1, 20, 100))
    assert model.context == CONTEXT


def test_pad_context_repeats_edge_frames() -> None:
    for frames in (1, 2, 9):
        features = torch.arange(frames * 3, dtype=torch.float32).view(1, frames, 3)
        padded = pad_context(features)
        assert padded.shape == (1, frames + 2 * CONTEXT, 3)
        torch.testing.assert_close(padded[:, CONTEXT : CONTEXT + frames], features)
        for i in range(CONTEXT):
            torch.testing.assert_close(padded[:, i], features[:, 0])
            torch.testing.assert_close(padded[:, -1 - i], features[:, -1])
    assert pad_context(torch.zeros(4, N_BINS)).shape == (14, N_BINS)  # unbatched too
    with pytest.raises(ValueError):
        pad_context(torch.zeros(1, 0, N_BINS))


def test_padded_single_frame_runs_every_variant() -> None:
    x = pad_context(torch.rand(1, 1, N_BINS))
    for config in VARIANTS:
        assert make(config).eval()(x)["vel"].shape == (1, 1, N_KEYS)


# ------------------------------------------------------------------- gradients


def task_loss(model: MultitaskNet, task: str, seed: int = 2) -> torch.Tensor:
    out = model(spectrogram(2, 3, seed))
    return (out[task] ** 2).sum()


@pytest.mark.parametrize("init", ["balanced", "imbalanced"])
def test_detached_keeps_each_task_loss_in_its_own_column(init: str) -> None:
    model = make(ModelConfig("cross-stitch", gradient="detached", init=init)).eval()
    stitches = list(model.stitches)
    packed = column_slices(model)
    for m, task in enumerate(TASKS):
        params = [p for p, _ in packed] + [s.alpha for s in stitches]
        grads = torch.autograd.grad(task_loss(model, task), params, allow_unused=True)
        conv_grads, alpha_grads = grads[: len(packed)], grads[len(packed) :]
        for (param, columns), grad in zip(packed, conv_grads, strict=True):
            assert grad is not None
            rows = grad.reshape(columns, -1)  # column-major packing along dim 0
            for other in range(columns):
                if other == m:
                    assert rows[other].abs().sum() > 0, f"task {task} must train its own column"
                else:
                    assert torch.equal(rows[other], torch.zeros_like(rows[other])), (
                        f"task {task} loss reached column {other} of a {tuple(param.shape)} conv"
                    )
        for grad in alpha_grads:
            assert grad is not None
            assert grad[m].abs().min() > 0, "α row of the task (incl. off-diagonal) must learn"
            assert torch.equal(grad[torch.arange(len(TASKS)) != m], torch.zeros(len(TASKS) - 1, len(TASKS)))
        # the other tasks' dense layers are untouched
        dense = [model.dense.dense[t].weight for t in TASKS]
        dense_grads = torch.autograd.grad(task_loss(model, task), dense, allow_unused=True)
        for other, grad in zip(TASKS, dense_grads, strict=True):
            assert (grad is not None and grad.abs().sum() > 0) == (other == task)


def test_full_variant_propagates_across_columns() -> None:
    model = make(ModelConfig("cross-stitch", gradient="full", init="imbalanced")).eval()
    packed = column_slices(model)
    grads = torch.autograd.grad(task_loss(model, "vel"), [p for p, _ in packed])
    m = TASKS.index("vel")
    for (_param, columns), grad in zip(packed, grads, strict=True):
        rows = grad.reshape(columns, -1)
        for other in range(columns):
            assert rows[other].abs().sum() > 0, f"full cross-stitch: vel loss must reach column {other} (own {m})"


def test_detached_and_full_agree_in_value() -> None:
    full = make(ModelConfig("cross-stitch", gradient="full"))
    det = build_model(ModelConfig("cross-stitch", gradient="detached"))
    det.load_state_dict(full.state_dict())
    x = spectrogram(1, 6)
    full.eval(), det.eval()
    with torch.no_grad():
        a, b = full(x), det(x)
    for task in TASKS:
        torch.testing.assert_close(a[task], b[task])


@pytest.mark.parametrize("config", [VARIANTS[0], VARIANTS[3]], ids=[IDS[0], IDS[3]])
def test_memory_format_changes_speed_not_results(config: ModelConfig) -> None:
    """channels_last (default: folded 1×35 conv, kron mixing) and NCHW (bmm mixing) agree."""
    fast, plain = make(config), make(config)
    assert fast.memory_format == torch.channels_last
    plain.memory_format = torch.contiguous_format
    plain.to(memory_format=torch.contiguous_format)
    x = spectrogram(2, 9)
    losses = []
    for model in (fast, plain):
        out = model.eval()(x)
        losses.append(sum((v**2).mean() for v in out.values()))
    torch.testing.assert_close(losses[0], losses[1])
    grads = [
        torch.autograd.grad(loss, list(model.parameters())) for loss, model in zip(losses, (fast, plain), strict=True)
    ]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_cross_stitch_unit_gradients() -> None:
    torch.manual_seed(3)
    z = torch.randn(2, 5 * 3, 4, 6, requires_grad=True)
    for layout in (torch.contiguous_format, torch.channels_last):
        zz = z.contiguous(memory_format=layout)
        for detached in (False, True):
            unit = CrossStitch(5, init="imbalanced", detached=detached)
            with torch.no_grad():
                unit.alpha.add_(0.01 * torch.randn(5, 5))
            out = unit(zz)
            expected = torch.einsum("mn,bnchw->bmchw", unit.alpha, zz.reshape(2, 5, 3, 4, 6)).reshape(z.shape)
            torch.testing.assert_close(out, expected)
            # loss on receiving column 1 only
            g_z, g_a = torch.autograd.grad(out.reshape(2, 5, -1)[:, 1].pow(2).sum(), [z, unit.alpha])
            g_z = g_z.reshape(2, 5, -1)
            for col in range(5):
                reaches = g_z[:, col].abs().sum() > 0
                assert reaches == (col == 1 or not detached)
            assert g_a[1].abs().min() > 0 and g_a[torch.arange(5) != 1].abs().sum() == 0


def test_straight_through_relu() -> None:
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 3.0], requires_grad=True)
    y = StraightThroughReLU()(x)
    torch.testing.assert_close(y, torch.relu(x))
    (g,) = torch.autograd.grad((y * torch.arange(1.0, 6.0)).sum(), x)
    torch.testing.assert_close(g, torch.arange(1.0, 6.0))  # identity, also where the output is 0


@pytest.mark.parametrize("config", VARIANTS[:2], ids=IDS[:2])
def test_regression_outputs_cannot_die(config: ModelConfig) -> None:
    model = make(config)
    with torch.no_grad():  # push vel/sus far into the dead zone
        model.dense.dense["vel"].bias.fill_(-100.0)
        model.dense.dense["sus"].bias.fill_(-100.0)
    out = model.eval()(spectrogram(1, 4))
    assert (out["vel"] == 0).all() and (out["sus"] == 0).all()
    loss = (out["vel"] - 0.5).pow(2).sum() + (out["sus"] - 0.5).pow(2).sum()
    dense = [model.dense.dense["vel"].bias, model.dense.dense["sus"].bias, model.stem[0].conv.weight]
    for grad in torch.autograd.grad(loss, dense):
        assert grad.abs().sum() > 0


# ---------------------------------------------------------------------- layers


def test_noise_layers_identity_in_eval_only() -> None:
    torch.manual_seed(4)
    x = torch.randn(3, 4, 5, 6) + 2
    for layer in (GaussianDropout(0.1), AdditiveGaussianNoise(0.1)):
        layer.eval()
        assert torch.equal(layer(x), x)
        layer.train()
        y = layer(x)
        assert y.shape == x.shape and not torch.equal(y, x)
    noise = AdditiveGaussianNoise(0.5).train()(torch.zeros(200_000)).std()
    assert abs(float(noise) - 0.5) < 0.01
    ratio = GaussianDropout(0.2).train()(torch.ones(200_000))
    assert abs(float(ratio.mean()) - 1) < 0.01 and abs(float(ratio.var()) - 0.25) < 0.01  # p/(1-p)
    assert torch.equal(GaussianDropout(0.0).train()(x), x)
    assert torch.equal(AdditiveGaussianNoise(0.0).train()(x), x)


def test_model_noise_only_in_training() -> None:
    model = make(ModelConfig("hard"))
    x = spectrogram(1, 3)
    with torch.no_grad():
        model.eval()
        a, b = model(x), model(x)
        model.train()
        c = model(x)
    assert torch.equal(a["on"], b["on"]) and not torch.equal(a["on"], c["on"])


def test_glorot_init() -> None:
    conv = nn.Conv2d(8, 16, 3)
    lin = nn.Linear(100, 20)
    glorot_init_(nn.Sequential(conv, lin))
    assert conv.bias.abs().sum() == 0 and lin.bias.abs().sum() == 0
    bound = (6 / (8 * 9 + 16 * 9)) ** 0.5
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound
    assert lin.weight.abs().max() <= (6 / 120) ** 0.5
    # column-packed convs get each column's own fan-out: same scale as the hard net's layer
    cs = make(ModelConfig("cross-stitch"))
    small = ModelConfig("cross-stitch").small
    assert cs.stem[1].conv.weight.abs().max() <= (6 / (small * 9 * 2)) ** 0.5
    assert cs.dense.dense["on"].weight.abs().max() <= (6 / (10 * 104 + 88)) ** 0.5


# ---------------------------------------------------------------- config & counts


def test_parameter_counts_comparable() -> None:
    hard = make(ModelConfig("hard")).num_parameters()
    assert hard == 574_083  # the layer table in hard_sharing.py
    for config in VARIANTS[1:]:
        cs = make(config).num_parameters()
        assert cs == 676_168
        assert 0.75 * hard <= cs <= 1.25 * hard


def test_macs_per_frame_match_docstrings() -> None:
    hard, cs = make(ModelConfig("hard")), make(ModelConfig("cross-stitch"))
    assert hard.macs_per_frame() == 22_472_656
    assert cs.macs_per_frame() == 34_320_480
    assert hard.macs_per_frame(window=True) > 4 * hard.macs_per_frame()


@pytest.mark.parametrize("config", VARIANTS, ids=IDS)
def test_config_round_trip_rebuilds_identical_model(config: ModelConfig) -> None:
    data = json.loads(json.dumps(config.to_dict()))
    again = ModelConfig.from_dict(data)
    assert again == config
    a, b = make(config, seed=0), build_model(data)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(sa[k].shape == sb[k].shape for k in sa)
    assert type(a) is type(b) is MODELS[config.name]
    b.load_state_dict(sa)
    x = spectrogram(1, 2)
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x)["on"], b.eval()(x)["on"])


def test_config_validation_and_defaults() -> None:
    assert ModelConfig("hard").large == 96 and ModelConfig("cross-stitch").large == 48
    assert ModelConfig("cross-stitch", large=32).to_dict()["large"] == 32
    for bad in ({"name": "soft"}, {"gradient": "half"}, {"init": "random"}, {"dropout": 1.0}):
        with pytest.raises(ValueError):
            ModelConfig(**bad)
    with pytest.raises(ValueError, match="unknown ModelConfig keys"):
        ModelConfig.from_dict({"name": "hard", "widht": 3})
    assert isinstance(build_model("hard"), HardSharingNet)
    assert isinstance(build_model({"name": "cross-stitch"}), CrossStitchNet)
    assert set(MODELS) == {"hard", "cross-stitch", "hard+rnn", "hard+keyrnn"}


@pytest.mark.parametrize("init,diag,off", [("balanced", 0.2, 0.2), ("imbalanced", 0.9, 0.1)])
def test_alphas_init(init: str, diag: float, off: float) -> None:
    model = make(ModelConfig("cross-stitch", init=init))
    alphas = model.alphas()
    assert len(alphas) == 5  # after each of the 4 stem convs and after the head conv
    eye = torch.eye(5, dtype=torch.bool)
    for alpha in alphas:
        assert alpha.shape == (5, 5) and not alpha.requires_grad
        torch.testing.assert_close(alpha[eye], torch.full((5,), diag))
        torch.testing.assert_close(alpha[~eye], torch.full((20,), off))
    alphas[0].zero_()  # a copy: the model is untouched
    assert model.stitches[0].alpha.abs().sum() > 0
    assert make(ModelConfig("hard")).alphas() == []
