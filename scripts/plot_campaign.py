"""The learning curve of a campaign run (``campaign/v8``): ``curve.csv`` and ``curve.png`` from its ``log.csv``.

Usage: ``python scripts/plot_campaign.py campaign/v8``. The CSV keeps every logged row's step, loss and
validation scores (the log itself is kept too); the figure plots the training loss (smoothed over 5 rows)
and the validation measures of each task on one axis of updates, with the sittings' boundaries where the
wall clock jumped (each sitting resumes from the committed checkpoint).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def read_log(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    args = parser.parse_args(argv)
    rows = read_log(args.run)
    if not rows:
        raise SystemExit(f"error: {args.run / 'log.csv'} has no rows yet")
    columns = ["step", "loss", *[c for c in rows[0] if c.startswith("val_")]]
    from pianomtl.core.files import atomic_write

    def write(target: Path) -> None:
        with open(target, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(args.run / "curve.csv", write)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = np.array([float(r["step"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    smooth = np.convolve(loss, np.ones(5) / 5, mode="valid") if len(loss) >= 5 else loss
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(step, loss, color="0.8", label="loss")
    left.plot(step[len(step) - len(smooth) :], smooth, color="C0", label="loss (5-row mean)")
    left.set_xlabel("update")
    left.set_ylabel("training loss (Σ λ·task loss)")
    left.legend()
    for column in columns[2:]:
        points = [(float(r["step"]), float(r[column])) for r in rows if r.get(column)]
        if points:
            xs, ys = zip(*points, strict=True)
            right.plot(xs, ys, marker="o", label=column.removeprefix("val_"))
    right.set_xlabel("update")
    right.set_ylabel("validation (F1 / R²)")
    right.legend()
    figure.suptitle(f"{args.run}: {int(step[-1])} updates")
    figure.tight_layout()
    atomic_write(args.run / "curve.png", lambda target: figure.savefig(target, dpi=80, format="png"))
    print(f"wrote {args.run / 'curve.csv'} and {args.run / 'curve.png'} ({len(rows)} rows, update {int(step[-1])})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
