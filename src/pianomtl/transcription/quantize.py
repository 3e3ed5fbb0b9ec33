"""int8 static quantisation of an exported network (onnxruntime), calibrated on real spectrograms.

Why static int8 of the convolutions: on the CPU the bundled model's time is the
convolutions (43 % of a chunk), the per-key LSTM (22 %), the ELUs (12 %) and layout
reorders (9 %) — measured with onnxruntime's profiler, one thread, 1000 frames. The
convolutions and dense layers (``Conv``, ``Gemm``, ``MatMul``) are quantised to int8
(weights per channel, activations with ranges calibrated on spectrograms, QDQ format
that onnxruntime fuses into integer kernels); the LSTMs get int8 weights dynamically
(``DynamicQuantizeLSTM``: 394 → 360 ms per 1000 frames, same agreement), their state and
everything else stay float32, so the recurrent state is carried as before. The per-frame convolution is folded
into one image first (:func:`~pianomtl.transcription.optimize.fold_frame_convolutions`,
exact). ``benchmarks/RESULTS.md`` (section "Batch on Ray and the int8 model") has the
speed and the agreement with the float model.

Calibration runs the float model over the given spectrograms chunk by chunk with its
state carried (what :func:`~pianomtl.transcription.inference.run_model` does), so the
calibrated ranges are those of real inference, not of a zero state.
Needs the ``onnx`` package (the ``[torch]`` extra) besides onnxruntime.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from pianomtl.constants import CONTEXT, ONNX_INPUT
from pianomtl.core.files import atomic_write
from pianomtl.transcription.onnx_model import OnnxModel
from pianomtl.transcription.optimize import fold_frame_convolutions

QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")
"""The operators quantised to int8; the LSTMs, ELUs and the rest stay float32."""

METADATA_QUANTIZATION = "pianomtl.quantization"
CALIBRATION_CHUNK = 512


def calibration_feeds(
    model: OnnxModel, spectrograms: Sequence[np.ndarray], chunk_frames: int = CALIBRATION_CHUNK
) -> Iterator[dict[str, np.ndarray]]:
    """The model's input feeds for every chunk of every spectrogram, recurrent state carried."""
    for spectrogram in spectrograms:
        padded = np.pad(np.asarray(spectrogram, dtype=np.float32), ((CONTEXT, CONTEXT), (0, 0)))
        state = model.initial_state(1) if model.recurrent else ()
        for start in range(0, len(spectrogram), chunk_frames):
            chunk = padded[start : start + chunk_frames + 2 * CONTEXT][None]
            yield {ONNX_INPUT: chunk, **dict(zip(model.state_names, state, strict=True))}
            if model.recurrent:
                state = model.forward_with_state(chunk, state)[1]


def quantize_int8(
    source: str | Path, target: str | Path, spectrograms: Sequence[np.ndarray], ops: Sequence[str] = QUANTIZED_OPS
) -> Path:
    """Write the int8 model of ``source`` to ``target`` (atomically), calibrated on ``spectrograms`` ([T, 144] each).

    The pianomtl metadata (model configuration, decoder parameters) is copied, plus
    :data:`METADATA_QUANTIZATION` saying what was quantised and on how many frames.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source, target = Path(source), Path(target)
    model = OnnxModel(source)
    feeds = calibration_feeds(model, spectrograms)

    class Reader(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(feeds, None)

    with tempfile.TemporaryDirectory(prefix="pianomtl-quantize-") as folder:
        prepared, quantized = Path(folder) / "prepared.onnx", Path(folder) / "int8.onnx"
        folded = Path(folder) / "folded.onnx"
        graph = onnx.load(str(source))
        fold_frame_convolutions(graph)  # exact: the per-frame convolution as one image (transcription.optimize)
        onnx.save(graph, str(folded))
        quant_pre_process(str(folded), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(quantized),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(ops),
            calibrate_method=CalibrationMethod.MinMax,
        )
        recurrent = Path(folder) / "int8-lstm.onnx"
        # The LSTMs' weights to int8 as well, dynamically (DynamicQuantizeLSTM: the weights
        # int8, the inputs quantised per step, the state kept in float).
        quantize_dynamic(str(quantized), str(recurrent), op_types_to_quantize=["LSTM"], weight_type=QuantType.QInt8)
        graph = onnx.load(str(recurrent))
        original = {p.key: p.value for p in onnx.load(str(source)).metadata_props}
        note = {"type": "int8 static (QDQ)", "ops": list(ops), "per_channel": True, "calibration": "MinMax"}
        note["folded_frame_convolutions"] = True
        note["lstm"] = "int8 weights, dynamic (DynamicQuantizeLSTM)"
        note["calibration_frames"] = int(sum(len(s) for s in spectrograms))
        original[METADATA_QUANTIZATION] = json.dumps(note)
        del graph.metadata_props[:]
        for key, value in original.items():
            graph.metadata_props.add(key=key, value=value)
        return atomic_write(target, lambda path: onnx.save(graph, str(path)))


__all__ = ["QUANTIZED_OPS", "calibration_feeds", "quantize_int8"]
