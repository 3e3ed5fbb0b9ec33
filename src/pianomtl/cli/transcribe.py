"""``pianomtl transcribe``: arguments, input search, output planning and the batch loop.

The work itself is :class:`pianomtl.transcription.pipeline.Transcriber`; this module only
turns a command line into calls and one-line messages.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from pianomtl.core.audio import AudioError
from pianomtl.transcription.decoders import NOTE_METHODS, DecoderParams
from pianomtl.transcription.inference import PRECISIONS
from pianomtl.transcription.pipeline import BACKENDS, Transcriber
from pianomtl.transcription.result import Transcription

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".w64", ".caf", ".au")
"""Files a folder search picks up (files named explicitly are tried whatever their name)."""


FORMATS = ("mid", "csv", "json")


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

    from pianomtl.transcription.model_file import ModelFileError

    if args.threads:
        import torch

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
            from pianomtl.transcription.plot import plot_transcription

            plot_transcription(transcription, path)
