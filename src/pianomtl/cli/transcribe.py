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

from pianomtl.cli import options
from pianomtl.core.audio import (
    AUDIO_EXTENSIONS,
    DEFAULT_MAX_STREAM_BYTES,
    AudioError,
    display_name,
    set_max_stream_bytes,
)
from pianomtl.core.devices import set_torch_threads
from pianomtl.core.files import remove_stale_temporaries
from pianomtl.score import formats as _score_formats  # noqa: F401  (registers musicxml, svg and pdf)
from pianomtl.score import meter_map
from pianomtl.transcription.formats import FORMATS, lookup
from pianomtl.transcription.inference import PRECISIONS
from pianomtl.transcription.onnx_model import ModelRunError
from pianomtl.transcription.pipeline import BACKENDS, Transcriber
from pianomtl.transcription.result import Transcription

STDIN = Path("/dev/stdin")
"""What ``-`` stands for: standard input, read as a stream (a pipe needs no seeking)."""


def is_stream(path: Path) -> bool:
    """Inputs with no folder to write next to: standard input, a pipe, a device."""
    return path == STDIN or str(path).startswith("/dev/") or (path.exists() and not path.is_file())


def find_inputs(inputs: list[str]) -> tuple[list[tuple[Path, Path]], list[str]]:
    """``([(audio file, folder it was found under or its own folder)], [errors])``.

    Folders are searched recursively for :data:`AUDIO_EXTENSIONS`; files named
    explicitly are taken as they are; ``-`` is standard input (:data:`STDIN`).
    """
    found: list[tuple[Path, Path]] = []
    errors: list[str] = []
    seen: set[Path] = set()
    for item in inputs:
        path = STDIN if item == "-" else Path(item)
        if path.is_dir():
            found_here = [p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS]
            files = sorted(p for p in found_here if p.is_file())
            for link in sorted(p for p in found_here if p.is_symlink() and not p.exists()):  # said, not skipped
                errors.append(
                    f"{display_name(link)}: a symbolic link to {display_name(os.readlink(link))}, which does not exist"
                )
            if not files:
                errors.append(f"{display_name(path)}: no audio files found (looked for {', '.join(AUDIO_EXTENSIONS)})")
            pairs = [(f, path) for f in files]
        elif path.exists():
            pairs = [(path, path.parent)]
        else:
            errors.append(f"{display_name(path)}: file not found")
            pairs = []
        for file, root in pairs:
            key = file if is_stream(file) else file.resolve()
            if key not in seen:
                seen.add(key)
                found.append((file, root))
    return found, errors


OUTPUT_SUFFIXES = (*(f".{n}" for f in FORMATS.values() for n in (f.name, *f.aliases)), ".png")


def plan_outputs(
    files: list[tuple[Path, Path]],
    out_dir: Path | None,
    formats: list[str],
    plot: bool,
    output: Path | None = None,
) -> list[dict[str, Path]]:
    """Output paths per input, each a function of that input alone (see :func:`output_clashes`).

    Next to the input (``a.wav`` → ``a.mid``), or under ``out_dir`` mirroring the
    input's path below the folder that was given (``IN/x/a.wav`` → ``OUT/x/a.mid``; a file
    named explicitly → ``OUT/a.mid``). ``output`` (one input only): the outputs are
    ``output`` with each format's extension (``take.mid``, ``take.csv``).
    """
    stems: list[Path] = []
    for file, root in files:
        if output is not None:
            stems.append(output.with_suffix("") if output.suffix.lower() in OUTPUT_SUFFIXES else output)
        elif out_dir is None:
            stems.append(file.with_suffix(""))
        else:
            try:
                relative = file.relative_to(root)
            except ValueError:
                relative = Path(file.name)
            stems.append(out_dir / relative.with_suffix(""))
    suffixes = [*formats, *(["png"] if plot else [])]
    return [{kind: stem.with_name(f"{stem.name}.{kind}") for kind in suffixes} for stem in stems]


def output_clashes(files: list[tuple[Path, Path]], plans: list[dict[str, Path]]) -> list[str]:
    """``"IN1, IN2 → OUT"`` for every output file that two or more inputs would write.

    ``d1/a.wav`` and ``d2/a.wav`` named as files, ``a.wav`` and ``a.flac`` in one
    folder, two folders holding ``x/a.wav``: the batch is refused before any work
    rather than letting one output replace another.
    """
    writers: dict[str, list[Path]] = {}
    for (file, _), outputs in zip(files, plans, strict=True):
        for path in outputs.values():
            writers.setdefault(os.path.normcase(os.path.abspath(path)), []).append(file)
    clashes = []
    reported: set[tuple[Path, ...]] = set()
    for target, sources in writers.items():
        group = tuple(dict.fromkeys(sources))
        if len(group) > 1 and group not in reported:
            reported.add(group)
            clashes.append(
                f"{', '.join(display_name(f) for f in group)} → {display_name(Path(target).with_suffix(''))}.*"
            )
    return clashes


def _formats(text: str) -> list[str]:
    """``--format``: comma-separated names or aliases of :data:`~pianomtl.transcription.formats.FORMATS`."""
    names = [f for f in text.split(",") if f.strip()]
    unknown = []
    formats = []
    for name in names:
        try:
            formats.append(lookup(name).name)
        except ValueError:
            unknown.append(name.strip())
    if unknown or not formats:
        raise argparse.ArgumentTypeError(
            f"unknown format {','.join(unknown) or text!r}; choose from {','.join(FORMATS)}"
        )
    return list(dict.fromkeys(formats))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="+", metavar="IN", help="audio files or folders (searched recursively); - reads standard input"
    )
    parser.add_argument(
        "-o",
        "--out-dir",
        default=None,
        help="write outputs here, mirroring the inputs' folders (default: next to each)",
    )
    parser.add_argument(
        "--output",
        default=None,
        metavar="FILE",
        help="one input only: write its outputs as FILE with each format's extension (needed for - without -o)",
    )
    parser.add_argument("--model", default=None, help="bundle, training checkpoint or .onnx (default: bundled)")
    parser.add_argument(
        "--format", type=_formats, default=["mid"], help=f"comma-separated: {','.join(FORMATS)} (default mid)"
    )
    parser.add_argument("--plot", action="store_true", help="also write a PNG of spectrogram, activations, notes")
    parser.add_argument("--device", type=options.device, default="cpu", help="torch device: cpu, cuda, cuda:1, mps ...")
    parser.add_argument(
        "--backend",
        default=None,
        choices=BACKENDS,
        help="network runtime (default: onnxruntime for .onnx files and, on the CPU, the bundled model; else torch)",
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
    options.add_decoder_options(parser)
    parser.add_argument(
        "--no-tempo-map",
        dest="tempo_map",
        action="store_false",
        help="write the MIDI file at a fixed 120 bpm (default: a tempo map, time and key signature that follow "
        "the music's beats where they are confident)",
    )
    parser.add_argument(
        "--threads", type=options.count, default=0, help="CPU threads of torch / onnxruntime (0: default)"
    )
    parser.add_argument(
        "--max-input",
        type=byte_size,
        default=DEFAULT_MAX_STREAM_BYTES,
        metavar="SIZE",
        help="most that standard input, a pipe or a device may send, e.g. 500M, 4G (default 2G): it is copied "
        "to a temporary file before decoding",
    )


def byte_size(text: str) -> int:
    """``2G``, ``500M``, ``64k``, ``1048576``: a positive size in bytes (K/M/G/T are powers of 1024)."""
    factors = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = value[-1:] if value[-1:] in factors else ""
    try:
        number = float(value[: len(value) - len(unit)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 500M, 2G)") from None
    if not (number > 0 and number * factors[unit] < 2**63):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive size")
    return max(1, int(number * factors[unit]))


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


class _NoBar:
    """The part of tqdm's interface used here, without a bar (the lean install has no tqdm)."""

    def __init__(self, iterable: Any, **options: Any) -> None:
        self.iterable = iterable

    def __iter__(self) -> Any:
        return iter(self.iterable)

    @staticmethod
    def write(text: str, file: Any = None) -> None:
        print(text, file=file or sys.stdout)


def run(args: argparse.Namespace) -> int:
    from pianomtl.extras import available, require

    if available("tqdm"):
        from tqdm import tqdm
    else:
        tqdm = _NoBar
    if args.plot:
        require("matplotlib", "pianomtl transcribe --plot", "plot")
    set_torch_threads(args.threads)  # onnxruntime gets them through the Transcriber

    def error(message: str) -> None:
        tqdm.write(f"error: {message}", file=sys.stderr)

    out_dir = Path(args.out_dir) if args.out_dir else None
    output = Path(args.output) if args.output else None
    if output is not None and out_dir is not None:
        error("give either --output (one input) or -o/--out-dir, not both")
        return 2
    for folder in [out_dir] if out_dir is not None else [output.parent] if output is not None else []:
        problem = _check_writable(folder)  # before any work: never fail after the transcription
        if problem:
            error(problem)
            return 2
    set_max_stream_bytes(args.max_input)
    files, failures = find_inputs(args.inputs)
    for message in failures:
        error(message)
    if not files:
        return 2 if failures else 0
    if output is not None and len(files) > 1:
        error(f"--output names the outputs of one input, but {len(files)} inputs were found; use -o FOLDER")
        return 2
    streams = [file for file, _ in files if is_stream(file)]
    if streams and out_dir is None and output is None:
        name = "-" if streams[0] == STDIN else display_name(streams[0])
        error(f"{name}: standard input, a pipe or a device has no folder to write next to; give --output FILE or -o")
        return 2
    plans = plan_outputs(files, out_dir, args.format, args.plot, output)
    clashes = output_clashes(files, plans)
    if clashes:  # before any work: one output must never replace another's
        error(f"inputs would write the same outputs (rename them or run them apart): {'; '.join(clashes)}")
        return 2
    for folder in sorted({path.parent for outputs in plans for path in outputs.values()}):
        remove_stale_temporaries(folder)  # left by an earlier run that was killed mid-write
    try:
        transcriber = Transcriber(
            args.model,
            device=args.device,
            backend=args.backend,
            precision=args.precision,
            threads=args.threads,
            **options.decoder_options(args),  # each overrides only itself (the model's tuned others kept)
        )
    except (ValueError, OSError) as problem:  # ModelFileError is a ValueError
        error(str(problem))
        return 2
    failed = len(failures)
    done = skipped = 0
    for (file, _), outputs in zip(tqdm(files, desc="transcribe", unit="file", disable=None), plans, strict=True):
        name = display_name(file)
        existing = [p for p in outputs.values() if p.exists()]
        todo = outputs
        if existing and not args.overwrite:
            if not args.skip_existing:
                error(f"{name}: {display_name(existing[0])} exists (use --overwrite to replace it)")
                failed += 1
                continue
            if len(existing) == len(outputs):
                skipped += 1
                continue
            todo = {kind: path for kind, path in outputs.items() if not path.exists()}  # finish a partial output
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                transcription = transcriber(file, keep_activations="png" in todo)
                if args.tempo_map and "mid" in todo:  # bars that follow the music (None: not confident)
                    transcription.meter = meter_map(transcription)
        except ModelRunError as problem:  # the network cannot run at all: every other file would fail the same
            error(str(problem))
            return 2
        except (AudioError, ValueError, TypeError, RuntimeError, OSError, MemoryError) as problem:
            text = str(problem).strip().splitlines()[0] if str(problem).strip() else type(problem).__name__
            error(text if name in text else f"{name}: {text}")
            failed += 1
            continue
        for warning in caught:  # one line each, between the progress bar's updates
            text = str(warning.message)
            tqdm.write(f"warning: {text if name in text else f'{name}: {text}'}", file=sys.stderr)
        try:
            with warnings.catch_warnings(record=True) as caught:  # the score's (unmetered), one line each
                warnings.simplefilter("always")
                _write_outputs(transcription, todo, overwrite=args.overwrite)
            for text in dict.fromkeys(str(warning.message) for warning in caught):  # once, however many formats
                tqdm.write(f"warning: {text if name in text else f'{name}: {text}'}", file=sys.stderr)
        except FileExistsError as problem:
            error(f"{name}: {problem} (another process wrote it meanwhile; kept, use --overwrite to replace it)")
            failed += 1
            continue
        except OSError as problem:
            target = display_name(_user_path(problem.filename, todo)) if problem.filename else "output"
            error(f"{name}: cannot write {target}: {problem.strerror or problem}")
            failed += 1
            continue
        except (RuntimeError, ImportError, ValueError) as problem:  # a score format: no MuseScore, no extra
            error(f"{name}: {str(problem).strip().splitlines()[0]}")
            failed += 1
            continue
        done += 1
        tqdm.write(
            f"{name}: {len(transcription.notes)} notes, {len(transcription.pedal)} pedal events "
            f"→ {', '.join(display_name(p) for p in todo.values())}"
        )
    summary = f"transcribed {done} of {len(files)} file(s)"
    if skipped:
        summary += f", skipped {skipped} already done"
    if failed:
        summary += f", {failed} failed"
    print(summary, file=sys.stderr)
    return 1 if failed else 0


def _user_path(filename: Any, outputs: dict[str, Path]) -> Path:
    """The output a failed write was for: the user's file, never the temporary it was written under."""
    failed = Path(os.fsdecode(filename))
    for path in outputs.values():
        if failed == path or (failed.parent == path.parent and failed.name.startswith(f".{path.name}.")):
            return path
    return failed


def _write_outputs(transcription: Transcription, outputs: dict[str, Path], overwrite: bool = False) -> None:
    """Each output atomically; without ``overwrite`` an output that appeared meanwhile is kept (FileExistsError)."""
    for kind, path in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind in FORMATS:
            transcription.write(path, kind, overwrite=overwrite)
        elif kind == "png":
            from pianomtl.transcription.plot import plot_transcription

            plot_transcription(transcription, path, overwrite=overwrite)
