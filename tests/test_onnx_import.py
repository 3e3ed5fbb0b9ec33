"""The model ships once, as ONNX: the torch backend rebuilds the network from ``default.onnx``.

The wheel leaves ``default.pt`` out (the lean install cannot load it); with the ``[torch]``
extra, :func:`~pianomtl.transcription.model_file.load_model` rebuilds the same network from
the graph (:func:`~pianomtl.transcription.export.torch_model_from_onnx`). These tests check
that the rebuilt weights are the exported ones bit for bit, for every architecture family,
and that the wheel, built outside the checkout, holds the ONNX model and not the torch one.
"""

from __future__ import annotations

import importlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from pianomtl.models.registry import ModelConfig, build_model
from pianomtl.transcription import model_file
from pianomtl.transcription.decoders import DecoderParams
from pianomtl.transcription.export import export_onnx, torch_model_from_onnx
from pianomtl.transcription.onnx_model import DEFAULT_ONNX

ROOT = Path(__file__).resolve().parents[1]

FAMILIES = [
    {"name": "hard", "small": 4, "large": 4, "head": 2},
    {"name": "cross-stitch", "small": 4, "large": 4, "head": 2},
    {"name": "hard+rnn", "small": 4, "large": 4, "head": 2, "cell": "gru", "embed": 8, "hidden": 8},
    {"name": "hard+rnn", "small": 4, "large": 4, "head": 2, "cell": "lstm", "embed": 8, "hidden": 8},
    {"name": "hard+keyrnn", "small": 4, "large": 4, "head": 2, "embed": 8, "hidden": 4},
]


@pytest.mark.parametrize("config", FAMILIES, ids=lambda c: f"{c['name']}-{c.get('cell', '')}")
def test_every_family_comes_back_bit_for_bit(config: dict) -> None:
    torch.manual_seed(1)
    model = build_model(ModelConfig(**config)).eval()
    with torch.no_grad():  # random, non-zero values everywhere (biases too), so a swapped gate shows
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    graph = export_onnx(model, io.BytesIO(), decoder=DecoderParams(onset_threshold=0.42)).getvalue()
    rebuilt, decoder, metadata = torch_model_from_onnx(graph)
    assert decoder.onset_threshold == 0.42 and metadata["model_config"] == model.config.to_dict()
    original, back = model.state_dict(), rebuilt.state_dict()
    assert set(original) == set(back)
    unequal = [key for key in original if not torch.equal(original[key], back[key])]
    assert not unequal, unequal


def test_a_graph_without_pianomtl_metadata_is_refused() -> None:
    import onnx

    graph = onnx.load(str(DEFAULT_ONNX))
    del graph.metadata_props[:]
    with pytest.raises(ValueError, match="carries no model configuration"):
        torch_model_from_onnx(graph.SerializeToString())


@pytest.mark.skipif(not model_file.DEFAULT_BUNDLE.is_file(), reason="needs assets/default.pt to compare with")
def test_without_default_pt_the_torch_backend_rebuilds_it(rendered_clip, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a wheel install with ``[torch]`` does: the same weights, the same notes as the checkout's default.pt."""
    from pianomtl.transcription.pipeline import Transcriber

    expected_model, expected_decoder, _ = model_file.load_model(None)
    with_pt = Transcriber(backend="torch")(rendered_clip.wav)
    monkeypatch.setattr(model_file, "DEFAULT_BUNDLE", model_file.DEFAULT_BUNDLE.with_name("absent.pt"))
    model, decoder, metadata = model_file.load_model(None)
    assert metadata["format"] == "onnx-converted" and decoder == expected_decoder
    expected = expected_model.state_dict()
    assert all(torch.equal(tensor, expected[key]) for key, tensor in model.state_dict().items())
    from_onnx = Transcriber(backend="torch")(rendered_clip.wav)
    assert from_onnx.notes == with_pt.notes and from_onnx.pedal == with_pt.pedal
    for task, values in with_pt.activations.items():
        assert np.array_equal(values, from_onnx.activations[task]), task


def test_the_wheel_ships_the_model_once(tmp_path: Path) -> None:
    """Built from a copy of the tree in a temporary folder (nothing written into the checkout)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        startup = importlib.import_module("startup")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    before = sorted(p.name for p in ROOT.iterdir())
    wheel = startup.build_wheel(tmp_path / "dist")
    names = zipfile.ZipFile(wheel).namelist()
    assert "pianomtl/assets/default.onnx" in names
    assert "pianomtl/assets/default.pt" not in names
    assert any(n.startswith("pianomtl/web/static/") for n in names)
    assert "pianomtl/transcription/formats.py" in names and "pianomtl/core/framing.py" in names
    assert sorted(p.name for p in ROOT.iterdir()) == before  # no build/ or egg-info left in the checkout
