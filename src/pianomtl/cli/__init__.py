"""The ``pianomtl`` command: one entry point, one sub-command per job.

Each sub-command lives in its own module exposing ``configure(parser)`` and
``run(args) -> int``; only the chosen one is imported, so ``pianomtl --help`` is
quick and a broken optional dependency of one command cannot break the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import typing

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, one-line help)
    "transcribe": ("pianomtl.cli.transcribe", "transcribe piano recordings to MIDI (notes, velocities, pedal)"),
    "batch": ("pianomtl.cli.batch", "transcribe an archive (folder, glob or manifest) on Ray: tables, resumable"),
    "stream": (
        "pianomtl.cli.stream",
        "live transcription: audio file or raw PCM on stdin → note events as they are decided",
    ),
    "serve": ("pianomtl.cli.serve", "a local web page: open a recording, see and hear the transcription, download it"),
    "demo": ("pianomtl.cli.demo", "render a demo piece, transcribe it with the bundled model, score it"),
    "synth": ("pianomtl.cli.synth", "render a MAESTRO-layout training corpus from performance MIDI"),
    "prepare": ("pianomtl.cli.prepare", "compute features and targets of a dataset into an on-disk cache"),
    "train": ("pianomtl.cli.train", "train one multitask model (hard sharing or cross-stitch)"),
    "lr-find": ("pianomtl.cli.lr_find", "learning-rate range test: loss curve and suggested rate"),
    "evaluate": ("pianomtl.cli.evaluate", "framewise F1 / R² and note-level mir_eval scores of a checkpoint"),
    "sweep": ("pianomtl.cli.sweep", "run a grid of trainings and render the paper's Tables I–IV"),
    "export": ("pianomtl.cli.export", "export a checkpoint to ONNX"),
    "convert-model": (
        "pianomtl.cli.convert_model",
        "rewrite an older checkpoint/bundle (numpy objects inside) as plain data; runs nothing in it",
    ),
    "features": ("pianomtl.cli.features", "print the spectrogram and targets of an audio/MIDI pair"),
    "field-test": ("pianomtl.cli.field_test", "score a transcriber on the field corpus (unseen pianos, no pedal)"),
}


COMMAND_EXTRAS: dict[str, str] = {
    "demo": "train",
    "synth": "train",
    "prepare": "train",
    "train": "train",
    "lr-find": "train",
    "evaluate": "train",
    "sweep": "train",
    "export": "torch",
    "convert-model": "torch",
    "features": "train",
    "field-test": "train",
    "serve": "web",
    "batch": "cluster",
}
"""The extra each command needs beyond the lean install (:mod:`pianomtl.extras`); ``transcribe`` needs none."""


def missing_extra_message(command: str | None, error: ImportError) -> str | None:
    """The one line naming the extra to install, if ``error`` is about an optional package (else ``None``)."""
    from pianomtl import extras

    if isinstance(error, extras.MissingExtraError):
        return str(error)
    extra = extras.extra_for(error)
    if extra is None:
        return None
    return extras.message(f"pianomtl {command}" if command else "pianomtl", COMMAND_EXTRAS.get(command or "", extra))


def _command_in(argv: list[str]) -> str | None:
    for token in argv:
        if token in COMMANDS:
            return token
        if not token.startswith("-"):
            return None
    return None


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (``pianomtl train: error: argument --lr: ...``), exit status 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pianomtl",
        description="Polyphonic piano transcription by multitask learning (Kelz, Böck, Widmer).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = _command_in(argv)
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            importlib.import_module(module_name).configure(command_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(argv)
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit_:  # --help (0) or a usage error (2, already printed in one line)
            return exit_.code if isinstance(exit_.code, int) else 2
        if args.command is None:
            parser.print_help()
            return 0
        extra = COMMAND_EXTRAS.get(args.command)
        if extra is not None:
            from pianomtl import extras

            if extras.missing_modules(extra):
                raise extras.MissingExtraError(extras.message(f"pianomtl {args.command}", extra))
        module = importlib.import_module(COMMANDS[args.command][0])
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ImportError as error:  # an optional extra is not installed: say which, in one line
        text = missing_extra_message(_command_in(argv), error)
        if text is None:
            raise
        print(text, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
