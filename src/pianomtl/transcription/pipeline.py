"""Piano audio → notes, velocities and sustain pedal: the pipeline behind ``pianomtl.transcribe``.

::

    from pianomtl import transcribe
    result = transcribe("recording.flac")          # the bundled model
    result.to_midi("recording.mid")
    result.notes[:3], result.pedal[:2]

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
:mod:`pianomtl.transcription.export`). Both share loading, features (numpy on the
CPU) and decoding. The bundled model runs in onnxruntime by default on the CPU
(:func:`default_backend`), so the lean install (no torch) and a full one give the
same result; torch is imported only when a torch backend or model file is asked for.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pianomtl.constants import N_BINS, SAMPLE_RATE
from pianomtl.core.audio import (
    AudioError,
    BlockResampler,
    check_sample_rate,
    is_audio_source,
    open_audio,
    prepare_array,
    read_blocks,
    source_name,
)
from pianomtl.core.features import StreamingSpectrogram, frame_count
from pianomtl.transcription.backends import (  # re-exported: where they were
    BACKENDS,
    default_backend,
    load_network,
    resolve_model,
)
from pianomtl.transcription.decoders import DecoderOptions, DecoderParams, decode, merge_decoder
from pianomtl.transcription.inference import (
    FeedCancelled,
    FrameFeed,
    default_chunk_frames,
    needs_whole_recording,
    run_model,
)
from pianomtl.transcription.result import Transcription
from pianomtl.transcription.stream import Stream

if TYPE_CHECKING:
    import torch

READ_BLOCK_SECONDS = 20.0


# -- streaming features ---------------------------------------------------------------


def file_features(
    path: str | Path,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
    feed: FrameFeed | None = None,
) -> tuple[np.ndarray, float]:
    """``([T, 144] spectrogram, duration in s)`` of an audio file, read block by block.

    Same result and same errors (:class:`~pianomtl.core.audio.AudioError`, naming the
    file) as ``spectrogram(audio.load(path))``, without the whole signal in memory.
    ``progress``: called after each block with ``(samples read, samples the header
    declares)`` (0 declared: unknown, e.g. a pipe). ``feed``: the frames go there block by
    block as they are computed (a network may already run on them, see
    :meth:`Transcriber.__call__`) and the returned spectrogram is empty; the feed is not closed here.
    """
    handle = open_audio(path)  # also bytes, file objects, pipes
    path = source_name(path)  # how messages name it
    with handle:
        rate, declared = handle.samplerate, handle.frames
        block = max(1, int(READ_BLOCK_SECONDS * rate))
        resampler = BlockResampler(rate, path)
        expected = frame_count(math.ceil(declared * SAMPLE_RATE / rate)) if declared > 0 else 0
        spectrogram = StreamingSpectrogram(device, expected_frames=0 if feed is not None else expected)
        if feed is not None:
            feed.expect(expected)
        read, peak = 0, 0.0
        for samples, last in read_blocks(handle, block, path):
            read += len(samples)
            mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
            if not np.all(np.isfinite(mono)):
                raise AudioError(f"{path}: contains NaN or infinite samples")
            if len(mono):
                peak = max(peak, float(np.max(np.abs(mono))))
            spectrogram.push(resampler(mono, last=last))
            if feed is not None:
                feed.put(spectrogram.take())
            if progress is not None:
                progress(read, max(declared, 0))
    if read == 0:
        raise AudioError(f"{path}: contains no samples")
    if read < declared:
        raise AudioError(f"{path}: truncated (header declares {declared} samples, {read} present)")
    if peak >= 1.0:
        warnings.warn(f"{path}: signal reaches full scale ({peak:.2f}); it may be clipped", stacklevel=2)
    if feed is not None:
        feed.put(spectrogram.finish())
        return np.empty((0, N_BINS), dtype=np.float32), read / rate
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


class Transcriber:
    """A loaded model and its decoder, reused for many recordings (load once, call often).

    Arguments (all optional):

    * ``model`` — ``None`` for the bundled model, the path of a model file (bundle,
      training checkpoint or ``.onnx``), a loaded torch module or an
      :class:`~pianomtl.transcription.onnx_model.OnnxModel`.
    * ``device`` — torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``); onnxruntime runs on the CPU.
    * ``decoder`` — a :class:`~pianomtl.transcription.decoders.DecoderParams` (replaces the
      model's decoder whole) or a dict naming **some** options, which overrides only
      those: ``decoder={"onset_threshold": 0.5}`` keeps the model's tuned frame and pedal thresholds.
    * ``backend`` — ``"torch"`` or ``"onnxruntime"`` (``None``: :func:`default_backend`).
    * ``chunk_frames`` — frames per forward pass (speed and memory only; the result is the same).
    * ``precision`` — ``"fp32"`` (exact) or ``"bf16"`` (torch backend; faster, activations within a few 1e-3).
    * ``threads`` — CPU threads of onnxruntime (0: torch's setting or onnxruntime's default).
    * ``**decoder_options`` — decoder options as keywords (``onset_threshold=0.4``), applied
      after ``decoder``; the names and ranges are :meth:`DecoderParams.limits()
      <pianomtl.transcription.decoders.DecoderParams.limits>`. An unknown name is a ``ValueError``.

    >>> import numpy as np
    >>> transcriber = Transcriber(onset_threshold=0.6)
    >>> transcriber.decoder.onset_threshold, transcriber.backend
    (0.6, 'onnxruntime')
    >>> result = transcriber(np.zeros(44100, dtype=np.float32), sr=44100)   # one second of silence
    >>> result.notes, round(result.duration, 3)
    ([], 1.0)
    """

    def __init__(
        self,
        model: Any = None,
        device: str | torch.device = "cpu",
        decoder: DecoderOptions = None,
        backend: str | None = None,
        chunk_frames: int | None = None,
        precision: str = "fp32",
        threads: int = 0,
        **decoder_options: Any,
    ) -> None:
        DecoderParams.check_options(decoder_options)  # a typo or a value out of range fails before the model loads
        if isinstance(decoder, Mapping):
            DecoderParams.check_options(decoder)
        loaded = load_network(model, device, backend, precision, threads)
        self.model, self.metadata = loaded.model, loaded.metadata
        self.backend, self.device = loaded.backend, loaded.device
        self.decoder: DecoderParams = merge_decoder(loaded.decoder, decoder, **decoder_options)
        """The decoder used for every recording (the model's own, with the options given applied)."""
        self.chunk_frames = chunk_frames or default_chunk_frames(self.device)
        self.precision = precision

    def features(
        self,
        audio: str | Path | np.ndarray,
        sr: float | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[np.ndarray, float, str]:
        """``(features, duration, source name)``; ``progress``: files only, see :func:`file_features`."""
        if is_audio_source(audio):  # a path, the bytes of a file, a binary file object
            if sr is not None:
                raise ValueError("sr is only for sample arrays; a file's own sample rate is used")
            features, duration = file_features(audio, device=self.device, progress=progress)
            return features, duration, source_name(audio)
        _check_given(audio)
        if sr is None:
            raise ValueError("sr (the sample rate in Hz) is required when audio is a sample array")
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(audio, torch.Tensor):
            audio = audio.detach().cpu().numpy()
        features, duration = array_features(audio, sr, device=self.device)
        return features, duration, "<array>"

    def stream(self, rate: float = SAMPLE_RATE, channels: int = 1, **options: Any) -> Stream:
        """A live :class:`~pianomtl.transcription.stream.Stream` with this model and decoder
        (``options``: ``lookahead``, ``early_threshold``, ``decoder``)."""
        return Stream(rate, channels, transcriber=self, **options)

    def activations(
        self, features: np.ndarray, progress: Callable[[int, int], None] | None = None
    ) -> dict[str, np.ndarray]:
        """The network's outputs; ``progress(frames done, total frames)`` after each chunk."""
        return run_model(
            self.model,
            features,
            chunk_frames=self.chunk_frames,
            device=self.device,
            precision=self.precision,
            progress=progress,
        )

    def _read_and_run(
        self,
        audio: str | Path,
        reading: Callable[[int, int], None] | None,
        network: Callable[[int, int], None] | None,
    ) -> tuple[np.ndarray, float, dict[str, np.ndarray]]:
        """``(features, duration, activations)`` of a file, reading it in a second thread while the
        network runs on the frames already there (:class:`~pianomtl.transcription.inference.FrameFeed`):
        same result as reading first, in about the network's time alone. Progress: ``reading``
        until the network's first chunk is done, then ``network`` alone (stages stay in order)."""
        import threading

        feed = FrameFeed()
        read: dict[str, float] = {}
        reported = threading.Lock()
        network_started = threading.Event()

        def reading_progress(done: int, total: int) -> None:
            with reported:
                if reading is not None and not network_started.is_set():
                    reading(done, total)

        def network_progress(done: int, total: int) -> None:
            with reported:
                network_started.set()
                if network is not None:
                    network(done, total)

        def reader() -> None:
            try:
                read["duration"] = file_features(audio, device=self.device, progress=reading_progress, feed=feed)[1]
                feed.close()
            except FeedCancelled:
                pass
            except BaseException as error:  # re-raised in the caller's thread by the feed
                feed.close(error)

        thread = threading.Thread(target=reader, name="pianomtl-reader", daemon=True)
        thread.start()
        try:
            activations = self.activations(feed, progress=network_progress)  # type: ignore[arg-type]
        except BaseException:
            feed.cancel()
            raise
        finally:
            thread.join()
        return feed.wait_all(), read["duration"], activations

    def __call__(
        self,
        audio: str | Path | np.ndarray,
        sr: float | None = None,
        keep_activations: bool = True,
        progress: Callable[[str, float], None] | None = None,
    ) -> Transcription:
        """Transcribe one recording. ``progress(stage, fraction)``: ``"reading"`` (audio and
        spectrogram, by samples read), ``"network"`` (by chunks), ``"decoding"``, each from 0 to 1.

        A file is read in a second thread while the network already runs on its first
        frames (:meth:`_read_and_run`; same result, faster on two cores), so ``"reading"``
        ends when the network's first chunk is done, before the file is read to its end.
        Arrays, and models that need the whole recording at once (bidirectional), are read first."""

        def report(stage: str) -> Callable[[int, int], None] | None:
            if progress is None:
                return None
            return lambda done, total: progress(stage, min(done / total, 1.0) if total > 0 else 0.0)

        if is_audio_source(audio) and sr is None and not needs_whole_recording(self.model):
            features, duration, activations = self._read_and_run(audio, report("reading"), report("network"))
            source = source_name(audio)
        else:
            features, duration, source = self.features(audio, sr, progress=report("reading"))
            activations = self.activations(features, progress=report("network"))
        if progress is not None:
            progress("decoding", 0.0)
        performance = decode(activations, self.decoder)
        if progress is not None:
            progress("decoding", 1.0)
        return Transcription(
            notes=performance.notes,
            pedal=performance.pedal,
            activations=activations if keep_activations else None,
            duration=duration,
            decoder=self.decoder,
            source=source,
            features=features if keep_activations else None,
        )


def _check_given(audio: object) -> None:
    """``audio=None`` is a :class:`TypeError` saying what to pass (not "sr is required", as for an array)."""
    if audio is None:
        raise TypeError(
            "audio is None: pass a file path, the bytes of an audio file, a binary file object, "
            "or a sample array with its rate sr"
        )


def transcribe(
    audio: str | Path | bytes | np.ndarray | Any,
    sr: float | None = None,
    *,
    model: Any = None,
    device: str | torch.device = "cpu",
    decoder: DecoderOptions = None,
    backend: str | None = None,
    keep_activations: bool = True,
    chunk_frames: int | None = None,
    precision: str = "fp32",
    **decoder_options: Any,
) -> Transcription:
    """Transcribe one recording: notes (key, onset, offset, velocity) and CC64 pedal events.

    >>> import numpy as np
    >>> from pianomtl import transcribe
    >>> t = np.arange(2 * 44100) / 44100
    >>> tone = 0.3 * np.sin(2 * np.pi * 440.0 * t) * np.exp(-2 * t)    # two seconds of a decaying A4
    >>> result = transcribe(tone, sr=44100, onset_threshold=0.4)
    >>> result.decoder.onset_threshold
    0.4
    >>> transcribe(tone, sr=44100, onset_treshold=0.4)
    Traceback (most recent call last):
    ...
    ValueError: unknown decoder option 'onset_treshold'; did you mean onset_threshold?

    ``audio``: a file path (any format soundfile reads, any rate and channel count;
    pipes such as ``/dev/stdin`` too), the bytes of such a file, a binary file object
    (``open(path, "rb")``, ``io.BytesIO``, ``sys.stdin.buffer``), or a sample array
    (``[n]``, ``[n, channels]`` or ``[channels, n]``, at most 8 channels) with its rate
    ``sr`` in Hz (finite, 1 kHz to 1 MHz; anything else is a ``ValueError`` at once).
    ``keep_activations=False`` drops the activations and spectrogram from the result
    (memory on long files; :meth:`Transcription.redecode
    <pianomtl.transcription.result.Transcription.redecode>` needs them). ``model``,
    ``device``, ``decoder``, ``backend``, ``chunk_frames``, ``precision`` and the decoder
    options as keywords (``onset_threshold=0.4``, ``frame_threshold``,
    ``offset_threshold``, ``pedal_frame_threshold``, ``method="hmm"``, ``half_pedal`` …;
    the full list with ranges: :meth:`DecoderParams.limits()
    <pianomtl.transcription.decoders.DecoderParams.limits>`) are as for
    :class:`Transcriber`: a partial ``decoder`` dict or a keyword changes only the
    options it names and keeps the model's tuned others. An unknown option or a value
    out of range is a ``ValueError`` before any work. For many files, build one
    :class:`Transcriber` and call it (the model loads once).
    """
    _check_given(audio)  # before the model loads
    if sr is not None:
        check_sample_rate(sr)  # before the model loads: a bad rate fails at once
    transcriber = Transcriber(
        model,
        device=device,
        decoder=decoder,
        backend=backend,
        chunk_frames=chunk_frames,
        precision=precision,
        **decoder_options,
    )
    return transcriber(audio, sr=sr, keep_activations=keep_activations)


__all__ = [
    "BACKENDS",
    "DecoderParams",
    "Transcriber",
    "Transcription",
    "default_backend",
    "file_features",
    "resolve_model",
    "transcribe",
]
