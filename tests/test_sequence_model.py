"""The sequence families (``hard+rnn``, ``hard+keyrnn``): carried state, causality, warm start, ONNX."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import pianomtl
from pianomtl.constants import CONTEXT, N_BINS, N_KEYS, ONNX_NEXT, TASK_WIDTH, TASKS
from pianomtl.models import (
    HardRNNNet,
    HardSharingNet,
    KeyRNNNet,
    ModelConfig,
    MultitaskNet,
    build_model,
    load_stem_from,
    pad_context,
    straight_through_relu,
    window_forward,
)
from pianomtl.models.keywise import KEY_EMBED, KEY_INPUTS
from pianomtl.models.sequence import FRONT_END

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread

SMALL = {"embed": 24, "hidden": 16}  # a quick model for the behavioural tests
KEY_SMALL = {"embed": 12, "hidden": 6}
CAUSAL = [
    ModelConfig("hard+rnn", cell="lstm", **SMALL),
    ModelConfig("hard+rnn", cell="gru", **SMALL),
    ModelConfig("hard+keyrnn", cell="lstm", **KEY_SMALL),
    ModelConfig("hard+keyrnn", cell="gru", **KEY_SMALL),
]
ALL = [
    *CAUSAL,
    ModelConfig("hard+rnn", bidirectional=True, **SMALL),
    ModelConfig("hard+keyrnn", bidirectional=True, **KEY_SMALL),
]
FAMILIES = ["hard+rnn", "hard+keyrnn"]
SequenceNet = HardRNNNet | KeyRNNNet
REMEMBERING = {"hard+rnn": ("on", "int", "off"), "hard+keyrnn": ("int", "off")}
"""Logit heads with a recurrent read-out (``hard+keyrnn``'s onset head is the front end's alone)."""
BUNDLED = Path(pianomtl.__file__).resolve().parent / "assets" / "default.pt"


def read_outs(model: SequenceNet) -> list[torch.nn.Linear]:
    """The recurrent read-out layers (named ``*_out``; zero at initialisation)."""
    return [m for name, m in model.named_modules() if name.endswith("_out") and isinstance(m, torch.nn.Linear)]


def make(config: ModelConfig, seed: int = 0) -> SequenceNet:
    """A model in eval mode whose recurrent read-outs are non-zero (they start at zero)."""
    torch.manual_seed(seed)
    model = build_model(config)
    assert isinstance(model, HardRNNNet | KeyRNNNet)
    with torch.no_grad():
        for layer in read_outs(model):
            layer.weight.normal_(0.0, 0.2)
            layer.bias.normal_(0.0, 0.2)
    return model.eval()


def spectrogram(batch: int, frames: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, frames + 2 * CONTEXT, N_BINS, generator=g)


def chunked(model: SequenceNet, x: torch.Tensor, bounds: list[int]) -> dict[str, torch.Tensor]:
    """Outputs for output frames split at ``bounds``, carrying the state (each chunk with its context rows)."""
    state = model.initial_state(x.shape[0])
    parts = []
    for a, b in itertools.pairwise(bounds):
        out, state = model.forward_with_state(x[:, a : b + 2 * CONTEXT], state)
        parts.append(out)
    return {t: torch.cat([p[t] for p in parts], dim=1) for t in TASKS}


# ------------------------------------------------------------------ shapes & state


@pytest.mark.parametrize("config", ALL, ids=[c.label() for c in ALL])
@pytest.mark.parametrize("frames", [1, 29])
def test_output_shapes(config: ModelConfig, frames: int) -> None:
    model = make(config)
    assert model.recurrent and model.causal == (not config.bidirectional)
    for mode in (model.train, model.eval):
        mode()
        out = model(spectrogram(2, frames))
        assert list(out) == list(TASKS)
        for task in TASKS:
            assert out[task].shape == (2, frames, TASK_WIDTH[task]) and out[task].dtype == torch.float32
        assert (out["vel"] >= 0).all() and (out["sus"] >= 0).all()
    state = model.initial_state(3)
    assert len(state) == len(model.state_names) == (4 if config.cell == "lstm" else 2)
    directions = 2 if config.bidirectional else 1
    if config.name == "hard+rnn":  # onset and frame layers
        shapes = [(directions, 3, config.hidden)] * len(state)
    else:  # the context layer, then the key layer (every key one sequence)
        half = len(state) // 2
        shapes = [(directions, 3, config.embed)] * half + [(directions, 3 * N_KEYS, config.hidden)] * half
    assert [s.shape for s in state] == shapes and not any(s.any() for s in state)


def test_the_paper_families_are_not_recurrent() -> None:
    assert not HardSharingNet.recurrent and not build_model("cross-stitch").recurrent
    assert HardRNNNet.recurrent and KeyRNNNet.recurrent and MultitaskNet.recurrent is False
    with pytest.raises(ValueError, match="recurrent"):
        window_forward(make(CAUSAL[0]), spectrogram(1, 3))


@pytest.mark.parametrize("config", CAUSAL, ids=[c.label() for c in CAUSAL])
def test_chunks_with_carried_state_equal_the_whole_sequence(config: ModelConfig) -> None:
    model = make(config)
    x = spectrogram(2, 61)
    with torch.no_grad():
        whole = model(x)
        with_initial, _ = model.forward_with_state(x, model.initial_state(2))
        for bounds in ([0, 61], [0, 1, 2, 30, 61], [0, 17, 34, 51, 60, 61]):  # incl. one-frame chunks
            parts = chunked(model, x, bounds)
            for task in TASKS:
                torch.testing.assert_close(parts[task], whole[task], atol=1e-5, rtol=0)
    for task in TASKS:
        torch.testing.assert_close(with_initial[task], whole[task], atol=0, rtol=0)


@pytest.mark.parametrize("config", CAUSAL, ids=[c.label() for c in CAUSAL])
def test_new_state_is_the_state_after_the_last_frame(config: ModelConfig) -> None:
    model = make(config)
    x = spectrogram(1, 20)
    with torch.no_grad():
        _, state_a = model.forward_with_state(x, model.initial_state(1))
        _, mid = model.forward_with_state(x[:, : 8 + 2 * CONTEXT], model.initial_state(1))
        _, state_b = model.forward_with_state(x[:, 8:], mid)
    for a, b in zip(state_a, state_b, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
        assert a.abs().sum() > 0


@pytest.mark.parametrize("config", CAUSAL, ids=[c.label() for c in CAUSAL])
def test_causal_outputs_ignore_input_beyond_five_frames_ahead(config: ModelConfig) -> None:
    model = make(config)
    x = spectrogram(1, 40)
    t = 17  # output frame t reads padded rows up to t + 2·CONTEXT (original frame t + 5)
    changed = x.clone()
    changed[:, t + 2 * CONTEXT + 1 :] = torch.rand_like(changed[:, t + 2 * CONTEXT + 1 :]) + 3.0
    near = x.clone()
    near[:, t + 2 * CONTEXT] += 1.0  # the last look-ahead frame does matter
    with torch.no_grad():
        a, b, c = model(x), model(changed), model(near)
    for task in TASKS:
        torch.testing.assert_close(a[task][:, : t + 1], b[task][:, : t + 1], atol=0, rtol=0)
    for task in ("on", "int", "off"):  # logits (vel/sus may be 0 after their ReLU)
        assert not torch.equal(a[task][:, t + 1 :], b[task][:, t + 1 :])
        assert not torch.equal(a[task][:, t], c[task][:, t])


@pytest.mark.parametrize("config", ALL[len(CAUSAL) :], ids=[c.label() for c in ALL[len(CAUSAL) :]])
def test_bidirectional_twin_sees_the_future_and_has_no_carried_state(config: ModelConfig) -> None:
    model = make(config)
    x = spectrogram(1, 40)
    changed = x.clone()
    changed[:, -3:] += 1.0
    with torch.no_grad():
        a, b = model(x), model(changed)
    assert not torch.equal(a["int"][:, :5], b["int"][:, :5])  # frame 0 hears the end
    with pytest.raises(ValueError, match="bidirectional"):
        model.forward_with_state(x, model.initial_state(1))


@pytest.mark.parametrize("config", CAUSAL[::2], ids=[c.label() for c in CAUSAL[::2]])
def test_outputs_remember_beyond_the_window(config: ModelConfig) -> None:
    """What the sequence stage is for: frame t depends on input far outside its 11 frames."""
    model = make(config)
    x = spectrogram(1, 60)
    changed = x.clone()
    changed[:, 2:6] += 2.0  # around original frame 0 only
    t = 40  # 35 frames past the last window that sees the change (untrained: memory fades)
    with torch.no_grad():
        a, b = model(x), model(changed)
        local_a, local_b = model.local_outputs(x), model.local_outputs(changed)
    for task in REMEMBERING[config.name]:  # every recurrent read-out remembers ...
        assert (a[task][:, t] - b[task][:, t]).abs().max() > 1e-6
        # ... unlike the frame-local heads of the same front end
        torch.testing.assert_close(local_a[task][:, t], local_b[task][:, t], atol=0, rtol=0)


@pytest.mark.parametrize("config", CAUSAL[::2], ids=[c.label() for c in CAUSAL[::2]])
def test_state_input_is_checked(config: ModelConfig) -> None:
    model = make(config)
    with pytest.raises(ValueError, match="tuple of 4"):
        model.forward_with_state(spectrogram(1, 2), model.initial_state(1)[:2])


# ------------------------------------------------------ conditioning & gradients


def test_frame_heads_see_the_onset_head_but_do_not_train_it() -> None:
    model = make(CAUSAL[0])
    x = spectrogram(2, 12)
    onset = [*model.onset_rnn.parameters(), *model.onset_out.parameters()]
    out = model(x)
    loss = sum(out[t].square().sum() for t in ("int", "off", "vel", "sus"))
    grads = torch.autograd.grad(loss, onset + list(model.frame_rnn.parameters()), allow_unused=True)
    assert all(g is None or not g.any() for g in grads[: len(onset)]), "frame losses must not reach the onset stage"
    assert all(g is not None and g.any() for g in grads[len(onset) :])
    # ... yet the frame heads read the onset output: changing the onset read-out changes them
    with torch.no_grad():
        before = model(x)["int"]
        model.onset_out.bias.add_(1.0)
        after = model(x)["int"]
    assert not torch.equal(before, after)


def test_key_layer_reads_the_onset_head_and_runs_one_rule_on_every_key() -> None:
    model = make(CAUSAL[2])
    assert isinstance(model, KeyRNNNet)
    x = spectrogram(1, 12)
    out = model(x)
    onset_dense = model.dense.dense["on"].weight
    # the frame/offset/velocity heads read the onset head (through the key layer) ...
    (grad,) = torch.autograd.grad(sum(out[t].square().sum() for t in ("int", "off", "vel")), [onset_dense])
    assert grad.abs().sum() > 0
    # ... while the onset head is the front end's alone: its loss reaches no recurrent weight
    recurrent = [p for name, p in model.named_parameters() if not name.startswith(FRONT_END)]
    grads = torch.autograd.grad(out["on"].square().sum(), recurrent, allow_unused=True)
    assert all(g is None or not g.any() for g in grads)
    # one set of key-layer weights, whatever the number of keys: its size does not grow with 88
    assert model.key_rnn.input_size == KEY_INPUTS and model.key_embedding.shape == (N_KEYS, KEY_EMBED)


@pytest.mark.parametrize("config", CAUSAL[::2], ids=[c.label() for c in CAUSAL[::2]])
def test_zero_read_outs_start_as_the_frame_local_model_and_still_learn(config: ModelConfig) -> None:
    torch.manual_seed(0)
    model = build_model(config).eval()
    hard = build_model(ModelConfig("hard", small=16, large=48, head=10)).eval()
    hard.load_state_dict({k: v for k, v in model.state_dict().items() if k.startswith(FRONT_END)})
    x = spectrogram(1, 9)
    out = model(x)
    with torch.no_grad():
        reference = hard(x)
    for task in TASKS:
        torch.testing.assert_close(out[task], reference[task], atol=0, rtol=0)
    loss = sum(out[t].square().sum() for t in TASKS)
    layers = read_outs(model)  # type: ignore[arg-type]
    assert layers and all(not layer.weight.any() and not layer.bias.any() for layer in layers)
    grads = torch.autograd.grad(loss, [*(layer.weight for layer in layers), model.stem[0].conv.weight])
    assert all(g.abs().sum() > 0 for g in grads)


# ------------------------------------------------------------------ warm start


@pytest.mark.parametrize("family", FAMILIES)
def test_front_end_has_the_hard_sharing_names_and_shapes(family: str) -> None:
    config = ModelConfig(family)
    hard = build_model(ModelConfig("hard", small=config.small, large=config.large, head=config.head)).state_dict()
    ours = {k: v for k, v in build_model(config).state_dict().items() if k.startswith(FRONT_END)}
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in hard.items()}


@pytest.mark.skipif(not BUNDLED.is_file(), reason="no bundled model in this checkout")
@pytest.mark.parametrize("family", FAMILIES)
def test_warm_start_from_the_bundled_model_reproduces_it(family: str) -> None:
    """The bundled model's front end (whatever its family) warm-starts either family, which then computes
    exactly that front end's hard-sharing network (zero read-outs)."""
    bundle = torch.load(BUNDLED, map_location="cpu", weights_only=True)
    widths = {key: bundle["model_config"][key] for key in ("small", "large", "head")}
    hard = build_model(ModelConfig("hard", **widths)).eval()
    hard.load_state_dict({k: v for k, v in bundle["model"].items() if k.startswith(FRONT_END)})
    model = build_model(family).eval()  # default widths = the bundle's compact stem
    copied = load_stem_from(model, bundle)  # the bundle dict or its state dict
    assert copied == [k for k in model.state_dict() if k.startswith(FRONT_END)]
    assert load_stem_from(model, bundle["model"]) == copied
    x = pad_context(torch.rand(1, 50, N_BINS))
    with torch.no_grad():
        a, b = hard(x), model(x)
    for task in TASKS:
        torch.testing.assert_close(a[task], b[task], atol=1e-6, rtol=0)


def test_warm_start_needs_the_same_stem_and_skips_other_heads() -> None:
    source = build_model(ModelConfig("hard", small=16, large=48, head=10)).state_dict()
    other_head = build_model(ModelConfig("hard+rnn", head=8, **SMALL))
    copied = load_stem_from(other_head, source)
    assert copied and all(name.startswith("stem.") for name in copied)
    torch.testing.assert_close(other_head.stem[2].conv.weight, source["stem.2.conv.weight"])
    with pytest.raises(ValueError, match="stem"):
        load_stem_from(build_model(ModelConfig("hard+rnn", large=32, **SMALL)), source)


# ------------------------------------------------------------- config & counts


def test_config_round_trip_and_old_configs() -> None:
    config = ModelConfig("hard+rnn", hidden=64, cell="gru", bidirectional=True)
    data = json.loads(json.dumps(config.to_dict()))
    assert ModelConfig.from_dict(data) == config
    assert data["hidden"] == 64 and data["cell"] == "gru" and data["bidirectional"] is True
    default = ModelConfig("hard+rnn")
    assert (default.embed, default.hidden, default.cell, default.bidirectional) == (128, 192, "lstm", False)
    assert (default.small, default.large, default.head) == (16, 48, 10)
    assert default.label() == "hard+rnn/lstm" and config.label() == "hard+rnn/gru/bidirectional"
    keys = ModelConfig("hard+keyrnn")
    assert (keys.embed, keys.hidden, keys.cell, keys.small, keys.large, keys.head) == (64, 48, "lstm", 16, 48, 10)
    # a checkpoint written before the sequence family: no sequence keys, loads and writes back the same
    old = {"name": "hard", "small": 16, "large": 48, "head": 10, "gradient": "full", "init": "imbalanced",
           "dropout": 0.1, "noise_sigma": 0.1}  # fmt: skip
    assert ModelConfig.from_dict(old).to_dict() == old
    for bad in ({"name": "hard", "hidden": 8}, {"name": "cross-stitch", "bidirectional": True},
                {"name": "hard+rnn", "cell": "rnn"}, {"name": "hard+rnn", "hidden": 0}):  # fmt: skip
        with pytest.raises(ValueError):
            ModelConfig(**bad)


@pytest.mark.parametrize("config", ALL, ids=[c.label() for c in ALL])
def test_config_rebuilds_identical_model(config: ModelConfig) -> None:
    a = make(config)
    b = build_model(json.loads(json.dumps(config.to_dict())))
    b.load_state_dict(a.state_dict())
    x = spectrogram(1, 6)
    with torch.no_grad():
        torch.testing.assert_close(a(x)["int"], b.eval()(x)["int"], atol=0, rtol=0)


def test_parameters_and_macs_match_the_docstring() -> None:
    model = build_model("hard+rnn")
    assert model.num_parameters() == 1_726_132
    assert model.macs_per_frame() == 8_319_408
    hidden, embed = 192, 128
    recurrent = 4 * hidden * (embed + hidden) + 4 * hidden * (embed + N_KEYS + hidden)
    front = build_model(ModelConfig("hard", small=16, large=48, head=10)).macs_per_frame()
    readouts = hidden * (N_KEYS + 3 * N_KEYS + 1)
    assert model.macs_per_frame() == front + 10 * 104 * 5 * embed + recurrent + readouts


def test_key_family_parameters_and_macs_match_the_docstring() -> None:
    model = build_model("hard+keyrnn")
    assert model.num_parameters() == 530_287
    assert model.macs_per_frame() == 8_324_016
    context, hidden = 64, 48
    front = build_model(ModelConfig("hard", small=16, large=48, head=10)).macs_per_frame()
    context_layer = 4 * context * (1 + 3 * N_KEYS + context) + context * (1 + 8)
    key_layer = N_KEYS * (4 * hidden * (KEY_INPUTS + hidden) + hidden * 3)
    assert model.macs_per_frame() == front + context_layer + key_layer


# ------------------------------------------------------------------------ ONNX


@pytest.mark.parametrize("config", CAUSAL, ids=[c.label() for c in CAUSAL])
def test_onnx_graph_with_state_matches_torch_chunk_by_chunk(config: ModelConfig) -> None:
    import onnxruntime  # noqa: F401  (required: missing, the test fails rather than skips)

    from pianomtl.models.stateful_onnx import export_stateful_onnx
    from pianomtl.transcription.export import DEFAULT_OPSET
    from pianomtl.transcription.onnx_model import OnnxModel

    model = make(config)
    session = OnnxModel(export_stateful_onnx(model, opset=DEFAULT_OPSET, example_frames=16))
    assert session.recurrent and session.state_names == model.state_names
    assert session.output_names == [*TASKS, *(ONNX_NEXT + n for n in model.state_names)]
    x = spectrogram(2, 57, seed=5)
    with torch.no_grad():
        expected = model(x)
        _, expected_state = model.forward_with_state(x, model.initial_state(2))
    state = session.initial_state(2)
    parts = []
    for a, b in itertools.pairwise([0, 1, 20, 57]):  # numpy in, numpy out, state carried
        out, state = session.forward_with_state(x[:, a : b + 2 * CONTEXT].numpy(), state)
        parts.append(out)
    for task in TASKS:
        actual = torch.from_numpy(np.concatenate([p[task] for p in parts], axis=1))
        torch.testing.assert_close(actual, expected[task], atol=1e-4, rtol=0)
    for a, b in zip(state, expected_state, strict=True):
        torch.testing.assert_close(torch.from_numpy(a), b, atol=1e-4, rtol=0)
    whole = session(x)  # torch in, torch out, from the zero state
    torch.testing.assert_close(whole["off"], expected["off"], atol=1e-4, rtol=0)


def test_only_causal_models_export_a_state() -> None:
    from pianomtl.models.stateful_onnx import stateful_signature

    with pytest.raises(ValueError, match="causal"):
        stateful_signature(make(ALL[-1]))
    with pytest.raises(ValueError, match="causal"):
        stateful_signature(build_model("hard"))


def test_bundling_can_give_a_head_back_to_the_front_end(tmp_path: Path) -> None:
    """scripts/bundle_model.py --zero-readouts: the chosen read-out is zeroed, that head is the front end's again."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
    import bundle_model

    model = make(CAUSAL[2])
    source = tmp_path / "best.pt"
    torch.save({"model_config": model.config.to_dict(), "model": model.state_dict(), "step": 7}, source)
    target = bundle_model.zero_readouts(source, ["sus_out"], tmp_path / "zeroed.pt")
    weights = torch.load(target, weights_only=True)["model"]
    assert not weights["sus_out.weight"].any() and not weights["sus_out.bias"].any()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items() if not k.startswith("sus_out."))
    zeroed = build_model(model.config).eval()
    zeroed.load_state_dict(weights)
    x = spectrogram(1, 30)
    with torch.no_grad():  # the pedal is the front end's again; the other heads still have their memory
        torch.testing.assert_close(zeroed(x)["sus"], straight_through_relu(zeroed.local_outputs(x)["sus"]))
        assert not torch.equal(zeroed(x)["int"], zeroed.local_outputs(x)["int"])
    with pytest.raises(SystemExit, match="no read-out layer 'onset_out'"):
        bundle_model.zero_readouts(source, ["onset_out"], tmp_path / "other.pt")
