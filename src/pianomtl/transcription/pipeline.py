"""Piano audio → notes, velocities and sustain pedal: the pipeline behind ``pianomtl.transcribe``.

>>> from pianomtl import transcribe
>>> result = transcribe("recording.flac")          # the bundled model
>>> result.to_midi("recording.mid")
>>> result.notes[:3], result.pedal[:2]

The pipeline (audio → spectrogram → network → activations → decoder) runs with
bounded memory on long recordings: a file is read and resampled in blocks of
:data:`READ_BLOCK_SECONDS` and turned into spectrogram frames as it streams
(the whole signal is never in memory — an hour of 96 kHz stereo would be 2.7 GB of
float32), and the network runs over the spectrogram in chunks of
:func:`~pianomtl.transcription.inference.default_chunk_frames` frames with exact context at the
seams. What stays in memory is the spectrogram (about 100 MB per hour) and the
activations (about 250 MB per hour; not kept after decoding with
``keep_activations=False``). The streamed spectrogram equals the one of
:func:`pianomtl.core.audio.load` + :func:`pianomtl.core.features.spectrogram`.

Backends: ``torch`` (any device) or ``onnxruntime`` (CPU; the network exported by
:mod:`pianomtl.transcription.export`). Both share loading, features and decoding.
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from pianomtl.constants import FRAME_SIZE, HOP_SIZE, N_BINS, SAMPLE_RATE
from pianomtl.core.audio import AudioError, open_audio, prepare_array
from pianomtl.core.features import LogFilteredSpectrogram, frame_count
from pianomtl.transcription.decoders import DecoderParams, decode
from pianomtl.transcription.inference import PRECISIONS, default_chunk_frames, run_model
from pianomtl.transcription.result import Transcription

BACKENDS = ("torch", "onnxruntime")
READ_BLOCK_SECONDS = 20.0
SPECTROGRAM_CHUNK_FRAMES = {"cpu": 256, "other": 2048}
"""Frames per FFT batch: small on a CPU (the temporaries stay in cache; same result, faster)."""


# -- the result -----------------------------------------------------------------------










# -- streaming features ---------------------------------------------------------------


class StreamingSpectrogram:
    """Spectrogram frames computed as samples arrive, equal to the whole-signal transform.

    Frame ``t`` covers samples ``[t·882 − 2048, t·882 + 2048)`` (zero outside the
    signal); it is computed once all its samples have arrived, or at :meth:`finish`.
    Only the samples still needed by future frames are kept. Frames go into one
    preallocated array (``expected_frames`` sizes it; it grows if the guess was
    short): keeping many small arrays alive between the large temporaries of the
    FFT fragments glibc's heap, which then grows by megabytes per block.
    """

    def __init__(
        self, device: str | torch.device = "cpu", chunk_frames: int | None = None, expected_frames: int = 0
    ) -> None:
        self.module = LogFilteredSpectrogram().to(device)
        self.device = device
        kind = "cpu" if torch.device(device).type == "cpu" else "other"
        self.chunk_frames = chunk_frames or SPECTROGRAM_CHUNK_FRAMES[kind]
        half = FRAME_SIZE // 2
        self.buffer = np.zeros(half, dtype=np.float32)  # the zeros before the signal
        self.buffer_start = -half  # absolute sample index of buffer[0]
        self.n_samples = 0
        self.next_frame = 0
        self.features = np.empty((max(expected_frames, 1), N_BINS), dtype=np.float32)

    def push(self, samples: np.ndarray) -> None:
        self.buffer = np.concatenate([self.buffer, np.asarray(samples, dtype=np.float32)])
        self.n_samples += len(samples)
        ready = (self.buffer_start + len(self.buffer) - FRAME_SIZE // 2) // HOP_SIZE + 1
        self._emit(ready)

    def finish(self) -> np.ndarray:
        """All ``ceil(N / 882)`` frames as a ``[T, 144]`` float32 array."""
        total = frame_count(self.n_samples)
        needed = (total - 1) * HOP_SIZE + FRAME_SIZE // 2 - (self.buffer_start + len(self.buffer))
        if needed > 0:
            self.buffer = np.concatenate([self.buffer, np.zeros(needed, dtype=np.float32)])
        self._emit(total)
        self.buffer = np.zeros(0, dtype=np.float32)
        features = self.features[: self.next_frame]
        if len(features) < 0.9 * len(self.features):
            features = features.copy()  # do not hold on to a much larger allocation
        self.features = np.empty((0, N_BINS), dtype=np.float32)
        return features

    @torch.inference_mode()
    def _emit(self, stop: int) -> None:
        half = FRAME_SIZE // 2
        for start in range(self.next_frame, stop, self.chunk_frames):
            end = min(start + self.chunk_frames, stop)
            first = start * HOP_SIZE - half - self.buffer_start
            last = (end - 1) * HOP_SIZE + half - self.buffer_start
            segment = torch.from_numpy(self.buffer[first:last]).to(self.device)
            frames = segment.unfold(-1, FRAME_SIZE, HOP_SIZE)
            if end > len(self.features):
                grown = np.empty((max(end, 2 * len(self.features)), N_BINS), dtype=np.float32)
                grown[:start] = self.features[:start]
                self.features = grown
            self.features[start:end] = self.module.frames_to_features(frames).cpu().numpy()
        if stop <= self.next_frame:
            return
        self.next_frame = stop
        keep_from = stop * HOP_SIZE - half - self.buffer_start
        self.buffer = self.buffer[keep_from:].copy()
        self.buffer_start += keep_from


def file_features(path: str | Path, device: str | torch.device = "cpu") -> tuple[np.ndarray, float]:
    """``([T, 144] spectrogram, duration in s)`` of an audio file, read block by block.

    Same result and same errors (:class:`~pianomtl.core.audio.AudioError`, naming the
    file) as ``spectrogram(audio.load(path))``, without the whole signal in memory.
    """
    import soxr

    path = Path(path)
    handle = open_audio(path)
    with handle:
        rate, declared = handle.samplerate, handle.frames
        block = max(1, int(READ_BLOCK_SECONDS * rate))
        resampler = None
        if rate != SAMPLE_RATE:
            resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        expected = frame_count(math.ceil(declared * SAMPLE_RATE / rate)) if declared > 0 else 0
        spectrogram = StreamingSpectrogram(device, expected_frames=expected)
        read, peak = 0, 0.0
        while True:
            try:
                samples = handle.read(block, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as error:
                raise AudioError(f"{path}: not a readable audio file ({error})") from None
            last = len(samples) < block
            read += len(samples)
            mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
            if not np.all(np.isfinite(mono)):
                raise AudioError(f"{path}: contains NaN or infinite samples")
            if len(mono):
                peak = max(peak, float(np.max(np.abs(mono))))
            if resampler is not None:
                mono = resampler.resample_chunk(mono, last=last)
            spectrogram.push(mono)
            if last:
                break
    if read == 0:
        raise AudioError(f"{path}: contains no samples")
    if read < declared:
        raise AudioError(f"{path}: truncated (header declares {declared} samples, {read} present)")
    if peak >= 1.0:
        warnings.warn(f"{path}: signal reaches full scale ({peak:.2f}); it may be clipped", stacklevel=2)
    return spectrogram.finish(), read / rate


def array_features(
    samples: np.ndarray, sr: float, device: str | torch.device = "cpu", name: str = "<array>"
) -> tuple[np.ndarray, float]:
    """``([T, 144] spectrogram, duration in s)`` of an in-memory signal at rate ``sr``."""
    samples = np.asarray(samples)
    mono = prepare_array(samples, sr, name=name)
    spectrogram = StreamingSpectrogram(device, expected_frames=frame_count(len(mono)))
    spectrogram.push(mono)
    duration = len(mono) / SAMPLE_RATE
    return spectrogram.finish(), duration


# -- models -------------------------------------------------------------------------------


def resolve_model(
    model: Any = None, device: str | torch.device = "cpu", backend: str | None = None
) -> tuple[Any, DecoderParams, dict]:
    """``(runnable model, decoder parameters, metadata)`` for what ``transcribe`` accepts.

    ``model``: ``None`` (the bundled default), a path to a bundle, training
    checkpoint or ``.onnx`` file, a loaded torch module (moved to ``device``; decoder defaults) or an
    :class:`~pianomtl.transcription.export.OnnxModel`. ``backend=None`` picks ``onnxruntime`` for ONNX
    models and ``torch`` otherwise. With ``backend="onnxruntime"`` a torch model
    is exported to ONNX in memory first.
    """
    from pianomtl.transcription.export import OnnxModel, export_onnx
    from pianomtl.transcription.model_file import load_model

    if backend is None:
        is_onnx = isinstance(model, OnnxModel) or (
            isinstance(model, str | Path) and Path(model).suffix.lower() == ".onnx"
        )
        backend = "onnxruntime" if is_onnx else "torch"
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    if isinstance(model, OnnxModel):
        return model, model.decoder, {**model.metadata, "format": "onnx"}
    if isinstance(model, str | Path) and Path(model).suffix.lower() == ".onnx":
        if backend != "onnxruntime":
            raise ValueError(f"{model}: an ONNX model needs backend='onnxruntime'")
        if not Path(model).is_file():
            raise ValueError(f"{model}: model file not found")
        onnx_model = OnnxModel(model, threads=torch.get_num_threads())
        return onnx_model, onnx_model.decoder, {**onnx_model.metadata, "format": "onnx", "path": str(model)}
    if isinstance(model, torch.nn.Module):
        network, decoder, metadata = model, DecoderParams(), {"format": "module"}
    else:
        network, decoder, metadata = load_model(model, device="cpu" if backend == "onnxruntime" else device)
    if backend == "onnxruntime":
        buffer = export_onnx(network, io.BytesIO(), decoder=decoder, metadata=metadata)
        return OnnxModel(buffer.getvalue(), threads=torch.get_num_threads()), decoder, metadata
    return network.to(device), decoder, metadata


class Transcriber:
    """A loaded model and decoder, reused for many recordings (the CLI keeps one)."""

    def __init__(
        self,
        model: Any = None,
        device: str | torch.device = "cpu",
        decoder: DecoderParams | dict | None = None,
        backend: str | None = None,
        chunk_frames: int | None = None,
        precision: str = "fp32",
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose from {PRECISIONS}")
        self.model, default_decoder, self.metadata = resolve_model(model, device, backend)
        from pianomtl.transcription.export import OnnxModel

        self.backend = "onnxruntime" if isinstance(self.model, OnnxModel) else "torch"
        self.device = device if self.backend == "torch" else "cpu"
        if isinstance(decoder, dict):
            decoder = DecoderParams.from_dict(decoder)
        self.decoder = decoder or default_decoder
        self.chunk_frames = chunk_frames or default_chunk_frames(self.device)
        if precision != "fp32" and self.backend != "torch":
            raise ValueError(f"precision {precision!r} needs the torch backend")
        self.precision = precision

    def features(self, audio: str | Path | np.ndarray, sr: float | None = None) -> tuple[np.ndarray, float, str]:
        if isinstance(audio, str | Path):
            if sr is not None:
                raise ValueError("sr is only for sample arrays; a file's own sample rate is used")
            features, duration = file_features(audio, device=self.device)
            return features, duration, str(audio)
        if sr is None:
            raise ValueError("sr (the sample rate in Hz) is required when audio is a sample array")
        if isinstance(audio, torch.Tensor):
            audio = audio.detach().cpu().numpy()
        features, duration = array_features(audio, sr, device=self.device)
        return features, duration, "<array>"

    def activations(self, features: np.ndarray) -> dict[str, np.ndarray]:
        return run_model(
            self.model, features, chunk_frames=self.chunk_frames, device=self.device, precision=self.precision
        )

    def __call__(
        self, audio: str | Path | np.ndarray, sr: float | None = None, keep_activations: bool = True
    ) -> Transcription:
        features, duration, source = self.features(audio, sr)
        activations = self.activations(features)
        performance = decode(activations, self.decoder)
        return Transcription(
            notes=performance.notes,
            pedal=performance.pedal,
            activations=activations if keep_activations else None,
            duration=duration,
            decoder=self.decoder,
            source=source,
            features=features if keep_activations else None,
        )


def transcribe(
    audio: str | Path | np.ndarray,
    sr: float | None = None,
    model: Any = None,
    device: str | torch.device = "cpu",
    decoder: DecoderParams | dict | None = None,
    backend: str | None = None,
    keep_activations: bool = True,
    chunk_frames: int | None = None,
    precision: str = "fp32",
) -> Transcription:
    """Transcribe one recording: notes (key, onset, offset, velocity) and CC64 pedal events.

    ``audio``: a file path (any format soundfile reads, any rate and channel count)
    or a sample array (``[n]``, ``[n, channels]`` or ``[channels, n]``) with its rate
    ``sr``. ``model``: ``None`` for the bundled model, a model file (bundle, training
    checkpoint, ``.onnx``), or a loaded model. ``decoder`` overrides the model's
    decoder parameters. ``keep_activations=False`` drops the activations and
    spectrogram from the result (memory on long files). ``precision="bf16"`` runs the
    network in bfloat16 (faster on GPUs and AMX CPUs; see :mod:`pianomtl.transcription.inference`).
    For many files, build one :class:`Transcriber` and call it.
    """
    transcriber = Transcriber(
        model, device=device, decoder=decoder, backend=backend, chunk_frames=chunk_frames, precision=precision
    )
    return transcriber(audio, sr=sr, keep_activations=keep_activations)


# -- command line -----------------------------------------------------------------------


















__all__ = ["Transcriber", "Transcription", "file_features", "transcribe"]
