"""``pianomtl evaluate``: arguments of checkpoint scoring (:mod:`pianomtl.train.evaluate`)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from pianomtl.cli import options


def configure(parser: argparse.ArgumentParser) -> None:
    from pianomtl.core.metrics import DEFAULT_THRESHOLD

    parser.add_argument("checkpoint", help="checkpoint.pt / best.pt of a run (or a model bundle)")
    parser.add_argument("--cache", required=True, help="feature cache made by `pianomtl prepare`")
    parser.add_argument("--split", default="validation", help="validation (default), test or train")
    parser.add_argument(
        "--threshold", type=options.probability, default=DEFAULT_THRESHOLD, help="on/int/off threshold (%(default)s)"
    )
    parser.add_argument("--device", type=options.device, default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=options.count, default=0, help="torch threads (0: default)")
    parser.add_argument("--no-notes", action="store_true", help="skip the note-level (decoded) evaluation")
    parser.add_argument("--json", default=None, help="write the full results to this JSON file")


def run(args: argparse.Namespace) -> int:
    from pianomtl.core.devices import set_torch_threads
    from pianomtl.core.files import write_json_atomic
    from pianomtl.train.evaluate import evaluate_checkpoint, format_report

    set_torch_threads(args.threads)
    try:
        report = evaluate_checkpoint(
            args.checkpoint, args.cache, args.split, args.threshold, args.device, notes=not args.no_notes
        )
    except ValueError as error:  # CheckpointError, CacheError: one line naming the file
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json:
        path = Path(args.json)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, _jsonable(report))
        except OSError as error:
            print(f"error: cannot write {path}: {error.strerror or error}", file=sys.stderr)
            return 2
        print(f"\nwrote {path}")
    return 0


def _jsonable(value):  # type: ignore[no-untyped-def]
    """NaN → null so that the JSON is standard."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
