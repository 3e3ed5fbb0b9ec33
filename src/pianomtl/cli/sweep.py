"""``pianomtl sweep FILE``: train a grid of runs and render the paper's Tables I–IV.

The grid and its resumption are :mod:`pianomtl.train.sweep`'s; the tables and α heat
maps :mod:`pianomtl.train.tables`'. Run the same command again to continue a grid
across several sittings: finished runs are skipped, interrupted ones resumed from
their checkpoint; the tables are re-rendered after every run from whatever has
finished.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from pianomtl.train.sweep import SweepError, expand, load_sweep, read_result, run_state, run_sweep, select_settings
from pianomtl.train.tables import plot_all_alphas, plot_learning_curves, read_curves_csv, render_tables


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="sweep file (.json or .toml), e.g. configs/small.json")
    parser.add_argument("--cache", default=None, help="override the sweep file's cache")
    parser.add_argument("--out", default=None, help="override the sweep file's output folder")
    parser.add_argument(
        "--seeds", type=int, default=None, metavar="N", help="train every setting with N seeds (overrides the file's)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at the same time (processes)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads per run (default: the file's, else cores/jobs)"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=None,
        metavar="TEXT",
        help="train only the settings whose run name contains TEXT (repeatable, e.g. --only cross-stitch); "
        "the tables still show every setting",
    )
    parser.add_argument("--list", action="store_true", help="print every run and its status, train nothing")
    parser.add_argument("--tables-only", action="store_true", help="only render the tables from finished runs")
    parser.add_argument("--plot-alphas", action="store_true", help="heatmaps of each cross-stitch run's α per layer")
    parser.add_argument(
        "--plot-curves",
        action="store_true",
        help="all settings' validation learning curves on one figure (curves.png)",
    )
    parser.add_argument(
        "--curves-from",
        default=None,
        metavar="CSV",
        help="with --plot-curves: also draw the settings of an earlier render's curves.csv that have no run logs "
        "here (a grid finished on machines that kept only its tables)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        spec = load_sweep(args.config)
        threads = args.threads
        if threads is None and args.jobs > 1 and "threads" not in spec.get("fixed", {}):
            threads = max(1, (os.cpu_count() or 1) // args.jobs)
        settings = expand(spec, cache=args.cache, out=args.out, threads=threads, seeds=args.seeds)
        args.earlier_curves = read_curves_csv(args.curves_from) if args.curves_from else None
    except (OSError, SweepError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out or spec["out"])
    title = spec.get("name") or spec.get("description") or Path(args.config).stem
    if args.list:
        for setting in settings:
            for config in setting.configs:
                status = (read_result(config.out) or {}).get("status", "pending")
                state, _ = run_state(config)
                note = {"resume": " (resumes from its checkpoint)", "extend": " (to extend)"}.get(state, "")
                print(f"{status:<10} {Path(config.out).name}{note}")
        return 0
    if args.curves_from and not args.plot_curves:
        print("error: --curves-from goes with --plot-curves", file=sys.stderr)
        return 2
    if args.tables_only:
        paths = render_tables(settings, out, title=title)
        _figures(args, settings, out)
        print(paths["md"].read_text())
        return 0
    started = time.perf_counter()
    if args.only and not select_settings(settings, args.only):
        print(f"error: no setting of {args.config} matches --only {' '.join(args.only)}", file=sys.stderr)
        return 2
    summary = run_sweep(
        settings,
        out,
        jobs=args.jobs,
        on_progress=lambda: render_tables(settings, out, title=title),
        only=args.only or (),
    )
    paths = render_tables(settings, out, title=title)
    _figures(args, settings, out)
    print(paths["md"].read_text())
    print(
        f"trained {len(summary['trained'])} (resumed {len(summary['resumed'])}, extended {len(summary['extended'])}), "
        f"skipped {len(summary['skipped'])}, failed {len(summary['failed'])} "
        f"in {time.perf_counter() - started:.0f} s; tables in {paths['md']} and {paths['csv']}"
    )
    return 1 if summary["failed"] else 0


def _figures(args: argparse.Namespace, settings: list, out: Path) -> None:
    """The figures asked for (α heat maps, learning curves), each path reported on stderr."""
    written = plot_all_alphas(settings, out) if args.plot_alphas else []
    if args.plot_curves:
        curves = plot_learning_curves(settings, out, args.earlier_curves)
        written += list(curves.values()) if curves else []
    for path in written:
        print(f"sweep: wrote {path}", file=sys.stderr)
