"""``pianomtl lr-find``: arguments of the learning-rate range test (:mod:`pianomtl.train.lr_find`)."""

from __future__ import annotations

import argparse
import json
import math
import sys

from pianomtl.cli import options
from pianomtl.cli.train import add_config_options, config_from_args

SHARED_FIELDS = (
    "cache", "model", "lambdas", "optimizer", "momentum",
    "batch_size", "sequence_frames", "device", "amp", "seed", "threads",
)  # fmt: skip
"""The :class:`~pianomtl.train.loop.TrainConfig` fields a range test takes from the command line."""


def configure(parser: argparse.ArgumentParser) -> None:
    from pianomtl.train.lr_find import (
        DEFAULT_DIVERGE_FACTOR,
        DEFAULT_END,
        DEFAULT_SMOOTHING,
        DEFAULT_START,
        DEFAULT_STEPS,
    )

    add_config_options(parser, SHARED_FIELDS)
    parser.add_argument("--out", required=True, help="folder for lr_find.csv, lr_find.png, lr_find.json")
    parser.add_argument(
        "--start", type=options.positive, default=DEFAULT_START, help="first learning rate (%(default)g)"
    )
    parser.add_argument("--end", type=options.positive, default=DEFAULT_END, help="last learning rate (%(default)g)")
    parser.add_argument(
        "--steps", type=options.positive_count, default=DEFAULT_STEPS, help="updates from start to end (%(default)s)"
    )
    parser.add_argument(
        "--smoothing", type=options.probability, default=DEFAULT_SMOOTHING, help="EMA factor β of the loss"
    )
    parser.add_argument(
        "--diverge-factor",
        type=options.positive,
        default=DEFAULT_DIVERGE_FACTOR,
        help="stop when the smoothed loss exceeds this × its minimum",
    )


def run(args: argparse.Namespace) -> int:
    from pianomtl.models.registry import ModelConfig
    from pianomtl.train.lr_find import range_test, save

    try:
        config = config_from_args(args, out=args.out)
        result = range_test(
            config, args.start, args.end, args.steps, smoothing=args.smoothing, diverge_factor=args.diverge_factor
        )
    except ValueError as error:  # bad option, CacheError, bad start/end
        print(f"error: {error}", file=sys.stderr)
        return 2
    model = ModelConfig.from_dict(config.model).label()
    batch = f"batch {args.batch_size}×{args.sequence_frames}"
    paths = save(result, args.out, title=f"range test: {model}, {config.optimizer}, {batch}")
    summary = result.summary()
    print(json.dumps(summary, indent=1))
    print(f"curve: {paths['csv']}  plot: {paths['png']}")
    if not math.isfinite(summary["suggested_lr"]):
        print("no finite loss was recorded; no suggestion")
        return 3
    print(f"suggested learning rate: {summary['suggested_lr']:.3g}")
    return 0
