"""Run a batch job: plan, transcribe on Ray Data (or in this process), compile the tables, report progress.

``engine="ray"``: the plan's Parquet parts are a Ray Data dataset, mapped by an actor pool
of :class:`~pianomtl.batch.work.Worker` — ``workers`` actors (default: the cluster's CPUs),
one CPU and one model each, one file per call — whose manifest rows stream back to
this process for the progress line. A worker process that dies is restarted by Ray and its
unfinished files are given again (their records were not written, so they are done
again; files it had finished are skipped by their records). Ray is started locally unless
``address`` (or ``RAY_ADDRESS``) names a cluster; a Ray instance already running in this
process (a test's, a notebook's) is used as it is and left running.

``engine="local"``: the same worker in a plain loop in this process — one core, no Ray:
the baseline ``benchmarks/batch.py`` compares against, and what the fast tests run.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pianomtl.batch.plan import read_plan, write_plan
from pianomtl.batch.tables import compile_tables
from pianomtl.batch.work import FORMATS, WORK_FOLDER, Settings, Worker
from pianomtl.core.files import exclusive_lock
from pianomtl.extras import require

ENGINES = ("ray", "local")


@dataclass
class Progress:
    """Files done, skipped and failed; files/s and the ETA, on one terminal line (a log line per 10 s otherwise)."""

    total: int
    stream: TextIO | None = sys.stderr
    counts: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    _shown: float = 0.0

    @property
    def seen(self) -> int:
        return sum(self.counts.values())

    def rate(self) -> float:
        """Files per second of the files worked on (skipped ones cost only their hash)."""
        worked = self.counts.get("done", 0) + self.counts.get("failed", 0)
        elapsed = time.perf_counter() - self.started
        return worked / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        rate = self.rate()
        left = self.total - self.seen
        eta = _duration(left / rate) if rate > 0 else "?"
        return (
            f"batch: {self.seen}/{self.total} files ({self.counts.get('done', 0)} done, "
            f"{self.counts.get('skipped', 0)} skipped, {self.counts.get('failed', 0)} failed) "
            f"{rate:.2f} files/s, ETA {eta}"
        )

    def update(self, status: str, final: bool = False) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1
        self.show()

    def show(self, final: bool = False) -> None:
        if self.stream is None:
            return
        now = time.perf_counter()
        tty = self.stream.isatty()
        if final or now - self._shown >= (0.5 if tty else 10.0):
            self._shown = now
            end = "\n" if final or not tty else ""
            self.stream.write(("\r\033[K" if tty else "") + self.line() + end)
            self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h {rest // 60:02d}m" if hours else f"{rest // 60}m {rest % 60:02d}s"


@dataclass
class Summary:
    """What a job did: counts per status in the manifest, this run's counts, its wall time."""

    run: str
    total: int
    manifest: dict[str, int]
    this_run: dict[str, int]
    seconds: float
    out: Path

    @property
    def failed(self) -> int:
        return self.manifest.get("failed", 0)


def check_model(model: str | None) -> None:
    """Refuse, before any work, a model the workers could not load (they run ONNX sessions only)."""
    if model is None:
        return
    path = Path(model)
    if path.suffix.lower() != ".onnx":
        raise ValueError(f"{model}: batch workers run ONNX models (export it with `pianomtl export`)")
    if not path.is_file():
        raise ValueError(f"{model}: model file not found")


def run_batch(
    source: str,
    out: str | Path,
    formats: tuple[str, ...] = ("mid",),
    retries: int = 2,
    model: str | None = None,
    engine: str = "ray",
    address: str | None = None,
    workers: int = 0,
    root: str | Path | None = None,
    progress: TextIO | None = sys.stderr,
) -> Summary:
    """Transcribe every input of ``source`` into ``out`` (module docstring); resumable, one job per ``out``.

    Raises :class:`~pianomtl.batch.plan.SourceError` / ``ValueError`` (one line) for a bad
    source, model or setting, :class:`~pianomtl.core.files.LockedError` when another job
    writes to ``out``. Files that fail are recorded, not raised.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose from {ENGINES}")
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"unknown format(s) {unknown}; choose from {FORMATS}")
    if retries < 0:
        raise ValueError(f"retries must be 0 or more, not {retries}")
    check_model(model)
    if engine == "ray":
        require("ray", "pianomtl batch on Ray", "cluster")
    out = Path(out)
    work = out / WORK_FOLDER
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with exclusive_lock(work / "lock"):
        plan, total = write_plan(source, work, root)
        run = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
        settings = Settings(
            out=str(out.absolute()),
            formats=tuple(formats),
            retries=retries,
            model=model and str(Path(model).absolute()),
            run=run,
        )
        tracker = Progress(total, stream=progress)
        if engine == "local":
            worker = Worker(settings)
            tracker.started = time.perf_counter()
            for path, stem in read_plan(plan):
                tracker.update(worker.process(path, stem)["status"])
        else:
            for status in _ray_statuses(plan, settings, address, workers, tracker):
                tracker.update(status)
        tracker.show(final=True)
        manifest = compile_tables(out, plan)
    return Summary(run, total, manifest, dict(tracker.counts), time.perf_counter() - started, out)


def _ray_statuses(plan: Path, settings: Settings, address: str | None, workers: int, tracker: Progress) -> Any:
    """Run the actor pool over the plan; yield each file's status as its row comes back."""
    import ray

    own = not ray.is_initialized()
    if own:
        ray.init(
            address=address or os.environ.get("RAY_ADDRESS") or None,
            logging_level="WARNING",
            include_dashboard=False,
            configure_logging=True,
        )
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        from pianomtl.batch.ray_source import READ_CPUS, PlanSource

        dataset = ray.data.read_datasource(PlanSource(plan), num_cpus=READ_CPUS)
        results = dataset.map_batches(
            Worker,
            fn_constructor_kwargs={"settings": settings},
            batch_size=1,  # one file per call: a killed worker loses one file, progress moves per file
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=1,
            max_restarts=-1,  # a worker process that dies is replaced ...
            max_task_retries=-1,  # ... and its unfinished files are given again
        )
        tracker.started = time.perf_counter()
        # Ray Data's per-dataset INFO lines would break the progress line (set here: Ray
        # Data configures its loggers again when a dataset is created).
        for name in ("ray.data", "ray.data._internal.execution.streaming_executor"):
            logging.getLogger(name).setLevel(logging.WARNING)
        for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
            yield from (str(s) for s in batch["status"])
    finally:
        if own:
            ray.shutdown()
