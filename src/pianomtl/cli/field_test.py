"""``pianomtl field-test CORPUS``: a transcriber scored on the field corpus (:mod:`pianomtl.train.field`).

The corpus is rendered once by ``pianomtl synth --recipe field``; this command transcribes each
recording with the model (the bundled one by default) exactly as ``pianomtl transcribe`` would and
prints one table row for all recordings and one per piano.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("corpus", help="a field corpus (pianomtl synth --recipe field --out CORPUS)")
    parser.add_argument("--split", default="test", help="test (default) or validation (the twin to tune on)")
    parser.add_argument("--model", default=None, help="model file (.pt or .onnx; default: the bundled model)")
    parser.add_argument(
        "--decoder-from", default=None, metavar="MODEL",
        help="decode with another model's tuned decoder (e.g. a training checkpoint scored with the bundle's; "
        "'default': the bundled model's)",
    )  # fmt: skip
    parser.add_argument("--json", default=None, help="also write the report to this JSON file")


def run(args: argparse.Namespace) -> int:
    from pianomtl.train.field import field_test, format_report, write_report

    if not Path(args.corpus).is_dir():
        print(f"error: {args.corpus}: no such corpus folder", file=sys.stderr)
        return 2
    try:
        options = {}
        if args.decoder_from:
            from pianomtl.transcription.pipeline import Transcriber

            options["decoder"] = Transcriber(None if args.decoder_from == "default" else args.decoder_from).decoder
        report = field_test(args.corpus, args.split, args.model, **options)
    except (ValueError, OSError) as error:  # DatasetError, ModelFileError, AudioError: one line naming the file
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json:
        try:
            write_report(report, args.json)
        except OSError as error:
            print(f"error: cannot write {args.json}: {error.strerror or error}", file=sys.stderr)
            return 2
        print(f"wrote {args.json}")
    return 0
