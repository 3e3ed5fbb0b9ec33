"""Piano audio → notes, velocities and sustain pedal: the one-call API and ``pianomtl transcribe``.

>>> from pianomtl import transcribe
>>> result = transcribe("recording.flac")          # the bundled model
>>> result.to_midi("recording.mid")
>>> result.notes[:3], result.pedal[:2]

The pipeline (audio → spectrogram → network → activations → decoder) runs with
bounded memory on long recordings: a file is read and resampled in blocks of
:data:`READ_BLOCK_SECONDS` and turned into spectrogram frames as it streams
(the whole signal is never in memory — an hour of 96 kHz stereo would be 2.7 GB of
float32), and the network runs over the spectrogram in chunks of
:func:`~pianomtl.inference.default_chunk_frames` frames with exact context at the
seams. What stays in memory is the spectrogram (about 100 MB per hour) and the
activations (about 250 MB per hour; not kept after decoding with
``keep_activations=False``). The streamed spectrogram equals the one of
:func:`pianomtl.audio.load` + :func:`pianomtl.features.spectrogram`.

Backends: ``torch`` (any device) or ``onnxruntime`` (CPU; the network exported by
:mod:`pianomtl.export`). Both share loading, features and decoding.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from pianomtl.audio import AudioError, open_audio, prepare_array
from pianomtl.constants import FPS, FRAME_SIZE, HOP_SIZE, N_BINS, SAMPLE_RATE
from pianomtl.decode import NOTE_METHODS, DecoderParams, decode
from pianomtl.features import LogFilteredSpectrogram, frame_count
from pianomtl.inference import PRECISIONS, default_chunk_frames, run_model
from pianomtl.midi import Note, PedalEvent, Performance, write_midi

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".w64", ".caf", ".au")
"""Files a folder search picks up (files named explicitly are tried whatever their name)."""

FORMATS = ("mid", "csv", "json")
BACKENDS = ("torch", "onnxruntime")
READ_BLOCK_SECONDS = 20.0
SPECTROGRAM_CHUNK_FRAMES = {"cpu": 256, "other": 2048}
"""Frames per FFT batch: small on a CPU (the temporaries stay in cache; same result, faster)."""


# -- the result -----------------------------------------------------------------------


def _write_atomic(path: Path, write) -> Path:  # type: ignore[no-untyped-def]
    path = Path(path)
    temporary = path.with_name(path.name + ".part")
    try:
        write(temporary)
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


@dataclass
class Transcription:
    """Notes and pedal of one recording, with the activations they were decoded from.

    Times are seconds from the start of the recording; ``activations`` holds the
    network's outputs at 50 fps (``on``/``int``/``off`` probabilities and ``vel``
    ``[T, 88]``, ``sus`` ``[T, 1]``) unless dropped to save memory.
    """

    notes: list[Note]
    pedal: list[PedalEvent]
    activations: dict[str, np.ndarray] | None
    duration: float
    decoder: DecoderParams = field(default_factory=DecoderParams)
    source: str | None = None
    features: np.ndarray | None = field(default=None, repr=False)
    """The ``[T, 144]`` spectrogram (kept with the activations; used by the plot)."""

    @property
    def performance(self) -> Performance:
        return Performance(list(self.notes), list(self.pedal))

    def to_midi(self, path: str | Path) -> Path:
        """A type 1 MIDI file: one piano track with notes and CC64 pedal events."""
        path = Path(path)
        write_midi(path, self.performance)
        return path

    def to_csv(self, path: str | Path) -> Path:
        """Notes, one per row: ``onset,offset,key,velocity,name`` (seconds, MIDI key, 1–127)."""

        def write(target: Path) -> None:
            with target.open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["onset", "offset", "key", "velocity", "name"])
                for note in self.notes:
                    writer.writerow(
                        [f"{note.onset:.3f}", f"{note.offset:.3f}", note.key, note.velocity, key_name(note.key)]
                    )

        return _write_atomic(Path(path), write)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "duration": round(self.duration, 6),
            "fps": FPS,
            "decoder": self.decoder.to_dict(),
            "reference_offsets": "decoded offsets follow the sounding note (damper release, pedal included)",
            "notes": [
                {"onset": round(n.onset, 4), "offset": round(n.offset, 4), "key": n.key, "velocity": n.velocity}
                for n in self.notes
            ],
            "pedal": [{"time": round(p.time, 4), "value": p.value} for p in self.pedal],
        }

    def to_json(self, path: str | Path) -> Path:
        """Notes, pedal events, duration and the decoder parameters as JSON."""
        text = json.dumps(self.to_dict(), indent=1)
        return _write_atomic(Path(path), lambda target: target.write_text(text + "\n"))


NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def key_name(key: int) -> str:
    """Scientific pitch name of a MIDI key (60 → C4)."""
    return f"{NOTE_NAMES[key % 12]}{key // 12 - 1}"


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

    Same result and same errors (:class:`~pianomtl.audio.AudioError`, naming the
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
    :class:`~pianomtl.export.OnnxModel`. ``backend=None`` picks ``onnxruntime`` for ONNX
    models and ``torch`` otherwise. With ``backend="onnxruntime"`` a torch model
    is exported to ONNX in memory first.
    """
    from pianomtl.bundled import load_model
    from pianomtl.export import OnnxModel, export_onnx

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
        from pianomtl.export import OnnxModel

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
    network in bfloat16 (faster on GPUs and AMX CPUs; see :mod:`pianomtl.inference`).
    For many files, build one :class:`Transcriber` and call it.
    """
    transcriber = Transcriber(
        model, device=device, decoder=decoder, backend=backend, chunk_frames=chunk_frames, precision=precision
    )
    return transcriber(audio, sr=sr, keep_activations=keep_activations)


# -- command line -----------------------------------------------------------------------


def find_inputs(inputs: list[str]) -> tuple[list[tuple[Path, Path]], list[str]]:
    """``([(audio file, folder it was found under or its own folder)], [errors])``.

    Folders are searched recursively for :data:`AUDIO_EXTENSIONS`; files named
    explicitly are taken as they are.
    """
    found: list[tuple[Path, Path]] = []
    errors: list[str] = []
    seen: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            if not files:
                errors.append(f"{path}: no audio files found (looked for {', '.join(AUDIO_EXTENSIONS)})")
            pairs = [(f, path) for f in files]
        elif path.exists():
            pairs = [(path, path.parent)]
        else:
            errors.append(f"{path}: file not found")
            pairs = []
        for file, root in pairs:
            if file.resolve() not in seen:
                seen.add(file.resolve())
                found.append((file, root))
    return found, errors


def plan_outputs(
    files: list[tuple[Path, Path]], out_dir: Path | None, formats: list[str], plot: bool
) -> list[dict[str, Path]]:
    """Output paths per input: next to it, or under ``out_dir`` keeping the folder structure.

    Two inputs that would share outputs (``a.wav`` and ``a.flac``) keep their
    extension in the output names (``a.wav.mid``, ``a.flac.mid``).
    """
    stems: list[Path] = []
    for file, root in files:
        if out_dir is None:
            stems.append(file.with_suffix(""))
        else:
            try:
                relative = file.relative_to(root)
            except ValueError:
                relative = Path(file.name)
            stems.append(out_dir / relative.with_suffix(""))
    counts: dict[Path, int] = {}
    for stem in stems:
        counts[stem] = counts.get(stem, 0) + 1
    suffixes = [*formats, *(["png"] if plot else [])]
    plans = []
    for (file, _), stem in zip(files, stems, strict=True):
        if counts[stem] > 1:
            stem = stem.with_name(file.name)
        plans.append({kind: stem.with_name(f"{stem.name}.{kind}") for kind in suffixes})
    return plans


def _formats(text: str) -> list[str]:
    formats = [f.strip().lower().lstrip(".") for f in text.split(",") if f.strip()]
    formats = ["mid" if f == "midi" else f for f in formats]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise argparse.ArgumentTypeError(
            f"unknown format {','.join(unknown) or text!r}; choose from {','.join(FORMATS)}"
        )
    return list(dict.fromkeys(formats))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="IN", help="audio files or folders (searched recursively)")
    parser.add_argument("-o", "--out-dir", default=None, help="write outputs here (default: next to each input)")
    parser.add_argument("--model", default=None, help="bundle, training checkpoint or .onnx (default: bundled)")
    parser.add_argument("--format", type=_formats, default=["mid"], help="comma-separated: mid,csv,json (default mid)")
    parser.add_argument("--plot", action="store_true", help="also write a PNG of spectrogram, activations, notes")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, mps ...")
    parser.add_argument(
        "--backend", default=None, choices=BACKENDS, help="network runtime (default: onnxruntime for .onnx, else torch)"
    )
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="network arithmetic: fp32 (exact, default) or bf16 (torch backend; ~2.5x faster network on GPUs "
        "and CPUs with AMX/AVX512-BF16, activations within a few 1e-3)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--skip-existing", action="store_true", help="skip inputs whose outputs all exist")
    parser.add_argument("--onset-threshold", type=float, default=None, help="override the model's decoder")
    parser.add_argument("--frame-threshold", type=float, default=None, help="override the model's decoder")
    parser.add_argument("--offset-threshold", type=float, default=None, help="override the model's decoder")
    parser.add_argument(
        "--pedal-frame-threshold",
        type=float,
        default=None,
        help="frame threshold while the decoded pedal is down (override the model's decoder)",
    )
    parser.add_argument(
        "--decoder", default=None, choices=NOTE_METHODS, help="note decoder: threshold or hmm (default: the model's)"
    )
    parser.add_argument("--half-pedal", action="store_true", help="write the continuous pedal curve")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")


def _check_writable(folder: Path) -> str | None:
    """``None`` if files can be created in ``folder`` (made if missing), else the reason."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return f"cannot create output folder {folder}: {error.strerror or error}"
    if not folder.is_dir():
        return f"output folder {folder} is not a folder"
    probe = folder / f".pianomtl-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        return f"cannot write to output folder {folder}: {error.strerror or error}"
    return None


def _decoder_overrides(args: argparse.Namespace, decoder: DecoderParams) -> DecoderParams:
    from dataclasses import replace

    changes: dict[str, Any] = {}
    for name in ("onset_threshold", "frame_threshold", "offset_threshold", "pedal_frame_threshold"):
        value = getattr(args, name)
        if value is not None:
            changes[name] = value
    if args.decoder is not None:
        changes["method"] = args.decoder
    if args.half_pedal:
        changes["half_pedal"] = True
    return replace(decoder, **changes) if changes else decoder


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pianomtl.bundled import ModelFileError

    if args.threads:
        torch.set_num_threads(args.threads)

    def error(message: str) -> None:
        tqdm.write(f"error: {message}", file=sys.stderr)

    out_dir = Path(args.out_dir) if args.out_dir else None
    if out_dir is not None:
        problem = _check_writable(out_dir)
        if problem:
            error(problem)
            return 2
    files, failures = find_inputs(args.inputs)
    for message in failures:
        error(message)
    if not files:
        return 2 if failures else 0
    try:
        transcriber = Transcriber(args.model, device=args.device, backend=args.backend, precision=args.precision)
    except (ModelFileError, ValueError, OSError) as problem:
        error(str(problem))
        return 2
    transcriber.decoder = _decoder_overrides(args, transcriber.decoder)
    plans = plan_outputs(files, out_dir, args.format, args.plot)
    failed = len(failures)
    done = skipped = 0
    for (file, _), outputs in zip(tqdm(files, desc="transcribe", unit="file", disable=None), plans, strict=True):
        existing = [p for p in outputs.values() if p.exists()]
        if existing and not args.overwrite:
            if args.skip_existing and len(existing) == len(outputs):
                skipped += 1
                continue
            error(f"{file}: {existing[0]} exists (use --overwrite to replace it)")
            failed += 1
            continue
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                transcription = transcriber(file, keep_activations=args.plot)
        except (AudioError, ValueError, RuntimeError, OSError, MemoryError) as problem:
            error(str(problem) if str(file) in str(problem) else f"{file}: {problem}")
            failed += 1
            continue
        for warning in caught:  # one line each, between the progress bar's updates
            text = str(warning.message)
            tqdm.write(f"warning: {text if str(file) in text else f'{file}: {text}'}", file=sys.stderr)
        try:
            _write_outputs(transcription, outputs)
        except OSError as problem:
            error(f"{file}: cannot write {problem.filename or 'output'}: {problem.strerror or problem}")
            failed += 1
            continue
        done += 1
        tqdm.write(
            f"{file}: {len(transcription.notes)} notes, {len(transcription.pedal)} pedal events "
            f"→ {', '.join(str(p) for p in outputs.values())}"
        )
    summary = f"transcribed {done} of {len(files)} file(s)"
    if skipped:
        summary += f", skipped {skipped} already done"
    if failed:
        summary += f", {failed} failed"
    print(summary, file=sys.stderr)
    return 1 if failed else 0


def _write_outputs(transcription: Transcription, outputs: dict[str, Path]) -> None:
    for kind, path in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "mid":
            transcription.to_midi(path)
        elif kind == "csv":
            transcription.to_csv(path)
        elif kind == "json":
            transcription.to_json(path)
        elif kind == "png":
            from pianomtl.plot import plot_transcription

            plot_transcription(transcription, path)


__all__ = ["Transcriber", "Transcription", "file_features", "transcribe"]
