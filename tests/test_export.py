"""ONNX export: the graph computes what the torch network computes, for any length."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime  # noqa: F401  (a required package: missing, the tests fail rather than skip)
import pytest
import torch

from pianomtl import cli
from pianomtl.constants import CONTEXT, N_BINS, TASKS
from pianomtl.transcription.decoders import DecoderParams
from pianomtl.transcription.export import OnnxModel, export_onnx
from pianomtl.transcription.inference import run_model
from pianomtl.transcription.model_file import make_bundle
from pianomtl.transcription.pipeline import transcribe

TOLERANCE = 1e-4


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def tiny(name: str):  # type: ignore[no-untyped-def]
    from pianomtl.models.registry import ModelConfig, build_model

    torch.manual_seed(1)
    return build_model(ModelConfig(name=name, small=4, large=4, head=2)).eval()


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("export")
    model = tiny("hard")
    checkpoint = folder / "checkpoint.pt"
    torch.save({"model_config": model.config.to_dict(), "model": model.state_dict(), "step": 7}, checkpoint)
    return make_bundle(checkpoint, DecoderParams(onset_threshold=0.42), folder / "bundle.pt")


@pytest.mark.parametrize("name", ["hard", "cross-stitch"])
def test_onnx_heads_equal_torch_for_any_length(name: str, tmp_path: Path) -> None:
    model = tiny(name)
    onnx_model = OnnxModel(export_onnx(model, tmp_path / "model.onnx", example_frames=16))
    generator = torch.Generator().manual_seed(0)
    for frames in (1, 16, 203):  # dynamic T, including lengths other than the traced one
        features = torch.rand(1, frames + 2 * CONTEXT, N_BINS, generator=generator) * 3
        with torch.no_grad():
            expected = model(features)
        actual = onnx_model(features)
        for task in TASKS:
            assert actual[task].shape == expected[task].shape
            assert float((actual[task] - expected[task]).abs().max()) < TOLERANCE, (name, frames, task)


def test_onnx_model_runs_in_the_chunked_inference(tmp_path: Path) -> None:
    model = tiny("hard")
    onnx_model = OnnxModel(export_onnx(model, tmp_path / "model.onnx"))
    features = np.random.default_rng(0).random((301, N_BINS), dtype=np.float32) * 3
    expected = run_model(model, features, chunk_frames=100)
    actual = run_model(onnx_model, features, chunk_frames=64)
    for task in TASKS:
        np.testing.assert_allclose(actual[task], expected[task], atol=TOLERANCE, err_msg=task)


@pytest.mark.parametrize("family", ["hard+rnn", "hard+keyrnn"])
def test_recurrent_model_exports_with_its_state_and_streams_through_chunks(tmp_path: Path, family: str) -> None:
    """``export_onnx`` of a sequence model: state in and out, so chunked onnxruntime equals whole torch."""
    from pianomtl.models.registry import ModelConfig, build_model

    torch.manual_seed(2)
    model = build_model(ModelConfig(name=family, small=4, large=4, head=2, embed=8, hidden=8)).eval()
    with torch.no_grad():  # the read-outs start at zero (the frame-local model); give the memory a say
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)
    onnx_model = OnnxModel(export_onnx(model, tmp_path / "rnn.onnx", example_frames=16))
    features = np.random.default_rng(0).random((301, N_BINS), dtype=np.float32) * 3
    expected = run_model(model, features, chunk_frames=1000)  # one pass
    actual = run_model(onnx_model, features, chunk_frames=64)  # five chunks, state carried
    for task in TASKS:
        np.testing.assert_allclose(actual[task], expected[task], atol=TOLERANCE, err_msg=task)
    late = run_model(onnx_model, features[150:], chunk_frames=64)  # no memory of the first 150 frames
    assert not np.allclose(late["int"][:20], actual["int"][150:170], atol=1e-3)


def test_export_command_and_onnxruntime_backend(rendered_clip, tiny_bundle: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "model.onnx"
    assert cli.main(["export", str(tiny_bundle), "--onnx", str(out)]) == 0
    assert "torch vs onnxruntime" in capsys.readouterr().out
    onnx_model = OnnxModel(out)
    assert onnx_model.decoder == DecoderParams(onset_threshold=0.42)  # the bundle's decoder travels along
    reference = transcribe(rendered_clip.wav, model=tiny_bundle)
    for model in (out, tiny_bundle):  # an .onnx file, or a bundle exported on the fly
        result = transcribe(rendered_clip.wav, model=model, backend="onnxruntime")
        assert result.decoder == reference.decoder
        for task in TASKS:
            np.testing.assert_allclose(result.activations[task], reference.activations[task], atol=TOLERANCE)
    midi = tmp_path / "clip.mid"
    arguments = [str(rendered_clip.wav), "-o", str(tmp_path), "--model", str(out)]  # backend chosen by the suffix
    code = cli.main(["transcribe", *arguments])
    assert code == 0 and midi.is_file()


def test_unusable_onnx_and_wrong_backend(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(ValueError, match="not a usable ONNX model"):
        OnnxModel(bad)
    with pytest.raises(ValueError, match="onnxruntime"):
        transcribe(np.zeros(4410, np.float32), sr=44100, model=bad, backend="torch")
    model = tiny("hard")
    with pytest.raises(ValueError, match="backend"):
        transcribe(np.zeros(4410, np.float32), sr=44100, model=model, backend="tensorflow")
