"""``pianomtl batch SOURCE -o OUT``: an archive of recordings transcribed on Ray Data (see docs/batch.md).

The work is :func:`pianomtl.batch.run.run_batch`; this module turns the command line into
that call and its errors into one line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from pianomtl.cli import options

FORMATS = ("mid", "csv", "json")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a folder (searched recursively), a glob, or a manifest (.csv/.parquet/.txt)")
    parser.add_argument("-o", "--out", required=True, help="output folder: outputs mirror the input tree")
    parser.add_argument("--format", nargs="+", choices=FORMATS, default=["mid"], help="per-file outputs (default: mid)")
    parser.add_argument("--model", default=None, help=".onnx model (default: the bundled one)")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="the bundled model quantised to int8 (assets/default.int8.onnx: faster on CPUs, note F1 vs float ≥ 0.995)",
    )
    parser.add_argument(
        "--retries",
        type=options.count,
        default=2,
        help="tries after a file's first failure before it is recorded failed",
    )
    parser.add_argument(
        "--address", default=None, help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray instance)"
    )
    parser.add_argument("--workers", type=options.count, default=0, help="worker processes (default: one per CPU)")
    parser.add_argument("--root", default=None, help="folder the outputs mirror from (default: from the source)")
    parser.add_argument(
        "--local", action="store_true", help="no Ray: one process on one core (the baseline; small jobs)"
    )


def run(args: argparse.Namespace) -> int:
    from pianomtl.batch.plan import SourceError
    from pianomtl.batch.run import run_batch
    from pianomtl.core.files import LockedError

    model = args.model
    if args.int8:
        from pianomtl.transcription.onnx_model import default_onnx_path

        if model is not None:
            print("pianomtl batch: --int8 and --model exclude each other", file=sys.stderr)
            return 2
        model = str(default_onnx_path().with_name("default.int8.onnx"))
    try:
        summary = run_batch(
            args.source,
            args.out,
            formats=tuple(dict.fromkeys(args.format)),
            retries=args.retries,
            model=model,
            engine="local" if args.local else "ray",
            address=args.address,
            workers=args.workers,
            root=args.root,
        )
    except (SourceError, LockedError, ValueError, OSError) as error:
        print(f"pianomtl batch: {error}", file=sys.stderr)
        return 2
    done = summary.manifest.get("done", 0)
    print(
        f"{done}/{summary.total} files done ({summary.failed} failed) in {summary.seconds:.1f} s; "
        f"notes: {summary.out / 'notes.parquet'}, manifest: {summary.out / 'manifest.parquet'}"
    )
    return 1 if summary.failed else 0
