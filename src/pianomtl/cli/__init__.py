"""The ``pianomtl`` command: one entry point, one sub-command per job.

Each sub-command lives in its own module exposing ``configure(parser)`` and
``run(args) -> int``; only the chosen one is imported, so ``pianomtl --help`` is
quick and a broken optional dependency of one command cannot break the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, one-line help)
    "transcribe": ("pianomtl.cli.transcribe", "transcribe piano recordings to MIDI (notes, velocities, pedal)"),
    "demo": ("pianomtl.cli.demo", "render a demo piece, transcribe it with the bundled model, score it"),
    "synth": ("pianomtl.data.synth", "render a MAESTRO-layout training corpus from performance MIDI"),
    "prepare": ("pianomtl.data.store", "compute features and targets of a dataset into an on-disk cache"),
    "train": ("pianomtl.train.loop", "train one multitask model (hard sharing or cross-stitch)"),
    "lr-find": ("pianomtl.train.lr_find", "learning-rate range test: loss curve and suggested rate"),
    "evaluate": ("pianomtl.train.evaluate", "framewise F1 / R² and note-level mir_eval scores of a checkpoint"),
    "sweep": ("pianomtl.train.sweep", "run a grid of trainings and render the paper's Tables I–IV"),
    "export": ("pianomtl.transcription.export", "export a checkpoint to ONNX"),
    "features": ("pianomtl.cli.features", "print the spectrogram and targets of an audio/MIDI pair"),
}


def _command_in(argv: list[str]) -> str | None:
    for token in argv:
        if token in COMMANDS:
            return token
        if not token.startswith("-"):
            return None
    return None


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
