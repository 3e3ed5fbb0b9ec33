"""The int8 model agrees with the float one: note F1 between them ≥ 0.995 on rendered piano.

The bundled model is quantised here (:func:`pianomtl.transcription.quantize.quantize_int8`),
calibrated on one rendered procedural piece, and compared with the float model on three
other pieces (other seeds, other SoundFont) transcribed by both: the float model's notes
are the reference, the int8 model's the estimate, scored with mir_eval (50 ms onsets)
and summed over the pieces. The committed ``assets/default.int8.onnx`` (written by
``scripts/quantize_bundle.py``) is held to the same bar.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pianomtl.constants import SAMPLE_RATE
from pianomtl.core.scoring import aggregate_scores, note_scores
from pianomtl.transcription.onnx_model import DEFAULT_ONNX, OnnxModel
from pianomtl.transcription.pipeline import Transcriber, array_features

pytest.importorskip("onnx")
AGREEMENT = 0.995
TIMGM = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
BUNDLED_INT8 = DEFAULT_ONNX.with_name("default.int8.onnx")


def _piece(seed: int, seconds: float, soundfont: Path) -> np.ndarray:
    from pianomtl.synthesis.fluidsynth import render
    from pianomtl.synthesis.material import procedural

    samples = render(procedural(np.random.default_rng(seed), seconds), soundfont)
    return (samples * (0.5 / float(np.max(np.abs(samples))))).astype(np.float32)


@pytest.fixture(scope="module")
def pieces(soundfont: Path) -> list[np.ndarray]:
    other = TIMGM if TIMGM.is_file() else soundfont
    return [_piece(seed, 40.0, sf) for seed, sf in ((7, soundfont), (8, other), (9, soundfont))]


def _agreement(model: str | Path, pieces: list[np.ndarray]) -> dict[str, float]:
    reference = Transcriber(None, backend="onnxruntime", threads=1)
    quantised = Transcriber(model, threads=1)
    assert quantised.decoder == reference.decoder  # the decoder parameters travel with the model
    scores = []
    for samples in pieces:
        a, b = reference(samples, sr=SAMPLE_RATE), quantised(samples, sr=SAMPLE_RATE)
        assert len(a.notes) > 50
        scores.append(note_scores(a.performance, b.performance))
    return aggregate_scores(scores)


@pytest.mark.slow  # quantising and calibrating: about 15 s of CPU, a minute of wall on a busy 2-core machine
def test_int8_model_agrees_with_float(tmp_path: Path, soundfont: Path, pieces: list[np.ndarray]) -> None:
    from pianomtl.transcription.quantize import METADATA_QUANTIZATION, quantize_int8

    calibration = array_features(_piece(3, 30.0, soundfont), SAMPLE_RATE)[0]
    target = quantize_int8(DEFAULT_ONNX, tmp_path / "int8.onnx", [calibration])
    model = OnnxModel(target)
    assert METADATA_QUANTIZATION in model.session.get_modelmeta().custom_metadata_map
    ops = {node.op_type for node in __import__("onnx").load(str(target)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLSTM"} <= ops  # int8 convolutions and LSTM weights
    scores = _agreement(target, pieces)
    assert scores["note_f1"] >= AGREEMENT, scores


@pytest.mark.skipif(not BUNDLED_INT8.is_file(), reason="assets/default.int8.onnx not written")
def test_bundled_int8_model_agrees_with_float(pieces: list[np.ndarray]) -> None:
    scores = _agreement(BUNDLED_INT8, pieces)
    assert scores["note_f1"] >= AGREEMENT, scores


def test_folding_the_per_frame_convolution_keeps_the_outputs(tmp_path: Path) -> None:
    import onnx

    from pianomtl.transcription.optimize import fold_frame_convolutions

    model = onnx.load(str(DEFAULT_ONNX))
    before = len(model.graph.node)
    assert fold_frame_convolutions(model) == 1  # the bundled model's 1×35 stem convolution
    onnx.checker.check_model(model)
    assert len(model.graph.node) < before - 6  # six layout nodes and their shape arithmetic are gone
    onnx.save(model, str(tmp_path / "folded.onnx"))
    features = np.random.default_rng(0).normal(size=(1, 530, 144)).astype(np.float32)
    original, folded = OnnxModel(DEFAULT_ONNX), OnnxModel(tmp_path / "folded.onnx")
    a, state_a = original.forward_with_state(features, original.initial_state(1))
    b, state_b = folded.forward_with_state(features, folded.initial_state(1))
    for task in a:
        np.testing.assert_allclose(b[task], a[task], atol=1e-5)
    for x, y in zip(state_a, state_b, strict=True):
        np.testing.assert_allclose(y, x, atol=1e-5)
