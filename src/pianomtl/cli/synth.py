"""``pianomtl synth --out DIR``: render a MAESTRO-layout training corpus (:mod:`pianomtl.synthesis.corpus`).

The recipe, the splits and the output layout are described in :mod:`pianomtl.synthesis.corpus`,
the timbres in :mod:`pianomtl.synthesis.timbres`; this module only parses the options and reports.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable

from pianomtl.synthesis.corpus import Config, synthesize
from pianomtl.synthesis.sources import AssetError
from pianomtl.synthesis.timbres import RECIPE_SHARES, RECIPES, TIMBRES

SOURCES = ("maestro", "pop909", "procedural")


def _names(choices: Iterable[str], what: str) -> Callable[[str], tuple[str, ...]]:
    """An argument type: comma-separated names, each one of ``choices``."""
    choices = tuple(choices)

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(t.strip() for t in text.split(",") if t.strip())
        unknown = [t for t in names if t not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"unknown {what}(s) {unknown}; choose from {', '.join(choices)}")
        return names

    return parse


def _weight_list(text: str) -> tuple[float, ...]:
    try:
        weights = tuple(float(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"timbre weights must be comma-separated numbers, not {text!r}") from None
    if not weights or min(weights) < 0 or sum(weights) <= 0:
        raise argparse.ArgumentTypeError(f"timbre weights must be >= 0 with a positive sum, not {text!r}")
    return weights


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a share must be a number in [0, 1], not {text!r}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    defaults = Config()
    timbre_list = _names(TIMBRES, "timbre")
    parser.add_argument("--out", required=True, help="output folder (MAESTRO layout)")
    parser.add_argument("--hours", type=float, default=defaults.train_hours, help="hours of training audio (3)")
    parser.add_argument("--valid-minutes", type=float, default=defaults.valid_minutes, help="validation minutes (12)")
    parser.add_argument("--test-minutes", type=float, default=defaults.test_minutes, help="test minutes (12)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--recipe", choices=sorted(RECIPES), default="soundfonts",
        help="training timbres and weights: soundfonts (salamander,fluidr3,timgm; default) or piano "
        f"({','.join(RECIPES['piano'][0])}, the own piano engine on half the items)",
    )  # fmt: skip
    parser.add_argument(
        "--timbres", type=timbre_list, default=None,
        help=f"training/validation timbres, comma-separated, from {', '.join(TIMBRES)} "
        f"(default: the recipe's, {','.join(defaults.train_timbres)})",
    )  # fmt: skip
    parser.add_argument(
        "--timbre-weights", type=_weight_list, default=None,
        help="their shares, comma-separated in the order of --timbres (default: grand, else salamander, "
        "gets half, the others share the rest)",
    )  # fmt: skip
    parser.add_argument(
        "--test-timbres", type=timbre_list, default=defaults.test_timbres,
        help=f"held-out test timbres (default {','.join(defaults.test_timbres)})",
    )  # fmt: skip
    parser.add_argument(
        "--sources", type=_names(SOURCES, "source"), default=defaults.sources,
        help="material: maestro,pop909,procedural (without maestro, validation/test are procedural too)",
    )  # fmt: skip
    parser.add_argument("--test-pieces", default=",".join(defaults.test_pieces), help="pieces held out for test")
    parser.add_argument("--valid-pieces", default=",".join(defaults.valid_pieces), help="pieces for validation")
    for name, what in (
        ("pedal-free", "real performances played without pedal (CC64 removed: notes end at key release)"),
        ("high", "items transposed up by as much as two octaves (the top keys)"),
        ("effects", "items through the effect chain (EQ bands, compressor, noise, clipper, lossy codec)"),
    ):
        parser.add_argument(f"--{name}", type=_share, default=None, metavar="SHARE",
                            help=f"share of training {what} (default: the recipe's)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="parallel processes (2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> Config:
    """The corpus :class:`~pianomtl.synthesis.corpus.Config` the options describe (the recipe, then overrides)."""
    timbres, weights = RECIPES[args.recipe]
    if args.timbres is not None:
        timbres, weights = args.timbres, None
    if args.timbre_weights is not None:
        weights = args.timbre_weights
    shares = {**RECIPE_SHARES.get(args.recipe, {})}
    for option, name in (("pedal_free", "pedal_free_share"), ("high", "high_share"), ("effects", "effects_share")):
        if getattr(args, option) is not None:
            shares[name] = getattr(args, option)
    return Config(
        **shares,
        seed=args.seed,
        train_hours=args.hours,
        valid_minutes=args.valid_minutes,
        test_minutes=args.test_minutes,
        train_timbres=timbres,
        train_timbre_weights=weights,
        test_timbres=args.test_timbres,
        sources=args.sources,
        test_pieces=tuple(p for p in args.test_pieces.split(",") if p),
        valid_pieces=tuple(p for p in args.valid_pieces.split(",") if p),
    )


def run(args: argparse.Namespace) -> int:
    try:
        summary = synthesize(args.out, config_from_args(args), workers=args.workers, progress=not args.no_progress)
    except (AssetError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    hours = ", ".join(f"{split} {h:.2f} h" for split, h in summary["hours"].items())
    print(
        f"{summary['complete']}/{summary['items']} items in {args.out} ({hours}); rendered {summary['rendered']} "
        f"({summary['audio_seconds'] / 3600:.2f} h of audio) in {summary['wall_seconds']:.0f} s, "
        f"{summary['speed']:.0f}x real time"
    )
    return 0 if summary["complete"] == summary["items"] else 1
