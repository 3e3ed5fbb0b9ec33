"""``pianomtl convert-model OLD NEW``: rewrite an older model file in the safe, plain-data format.

Model files are only ever read as plain data (tensors, dicts, strings, numbers), so a
file can never run code when it is loaded. Checkpoints written by earlier versions kept
numpy random states, which that loader refuses. This command reads such a file with an
unpickler that allows, besides plain data, only numpy arrays, dtypes and scalars
(:mod:`pianomtl.transcription.legacy_file`): a crafted file that names anything else is
refused in one line (exit status 2) before any of it runs. It writes the same content
as plain data to NEW (never over an existing file).
"""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", metavar="OLD", help="a checkpoint or bundle in the older format (numpy objects inside)")
    parser.add_argument("new", metavar="NEW", help="where to write the converted file (must not exist)")


def run(args: argparse.Namespace) -> int:
    from pianomtl.transcription.model_file import ModelFileError, convert_legacy_file

    try:
        path = convert_legacy_file(args.old, args.new)
    except (ModelFileError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path} (plain data: loads without running code)")
    return 0
