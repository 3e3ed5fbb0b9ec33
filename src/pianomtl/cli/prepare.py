"""``pianomtl prepare --dataset DIR --cache DIR``: features and targets of a dataset into a cache.

The cache format and the incremental, interruptible computation are
:mod:`pianomtl.data.store`'s; this module only parses the options and reports.
"""

from __future__ import annotations

import argparse
import sys

from pianomtl.data.maestro import DatasetError
from pianomtl.data.store import CacheError, prepare


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="MAESTRO or pianomtl corpus folder")
    parser.add_argument("--cache", required=True, help="output folder for features and targets")
    parser.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    parser.add_argument("--split", default=None, help="only this split (train, validation, test)")


def run(args: argparse.Namespace) -> int:
    try:
        summary = prepare(args.dataset, args.cache, workers=args.workers, split=args.split)
    except (DatasetError, CacheError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"stored {summary['stored']}, reused {summary['reused']}, failed {len(summary['failed'])}")
    for name, reason in summary["failed"].items():
        print(f"  failed {name}: {reason}")
    return 0
