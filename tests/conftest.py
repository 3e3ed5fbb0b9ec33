"""Shared fixtures: a few seconds of real piano audio, rendered once per test session.

The clip is rendered with FluidSynth through Debian's FluidR3 General MIDI SoundFont
(``pianomtl.synthesis.fluidsynth.render``) and written with soundfile into temporary folders.
Everything is tiny (about 3 s of audio) so the whole suite stays fast on two CPU cores.

Also, for every test (issue #29):

* **hypothesis profiles** — ``ci`` (selected when ``CI`` is set, as ``.ci/run`` runs): derandomised,
  no example database, a fixed number of examples, no deadline, so whether a property test finds
  a bug does not depend on the seed or on examples a developer's machine remembers; ``dev`` (the
  default) keeps hypothesis' random search. ``HYPOTHESIS_PROFILE`` picks one explicitly.
* **state restored after each test** — torch's thread count and ``sys.path``: a test that
  changes them cannot change the tests after it.
* **skips checked against an allow-list** — with ``PIANOMTL_ALLOWED_SKIPS=FILE`` (``.ci/run`` sets
  it to ``.ci/allowed_skips.txt``), every skipped test is printed with its reason, and the run
  fails when one is not on the list: a broken install must not pass as skips.
  ``PIANOMTL_SKIP_LOG=FILE`` also writes them there, one ``id<TAB>reason`` a line.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, settings

from pianomtl.constants import SAMPLE_RATE
from pianomtl.core.midi import Note, PedalEvent, Performance

FLUID_R3 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")

CLIP_SECONDS = 3.0
"""Length of the rendered fixture clip (the performance ends before it)."""

# -- hypothesis profiles ------------------------------------------------------------------------

CI_EXAMPLES = 100
"""Examples per property test in CI (tests that set ``max_examples`` themselves keep theirs)."""

settings.register_profile(
    "ci",
    derandomize=True,  # the examples follow from the test itself: the same every run, on every machine
    database=None,  # and no examples remembered from earlier runs
    max_examples=CI_EXAMPLES,
    deadline=None,  # two shared cores: timing is not a property
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


# -- state restored after each test ---------------------------------------------------------------


@pytest.fixture(autouse=True)
def _restore_process_state():
    """Undo what a test changed in the process: torch's thread count, ``sys.path``."""
    threads = torch.get_num_threads()
    path = list(sys.path)
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if sys.path != path:
        sys.path[:] = path


# -- skips against the allow-list --------------------------------------------------------------------

_skipped: dict[str, str] = {}


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped[report.nodeid] = _skip_reason(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:  # a whole module skipped (importorskip or skip at module level)
        _skipped[report.nodeid] = _skip_reason(report)


def read_allowed_skips(path: Path) -> list[tuple[str, str]]:
    """``(test id pattern, reason pattern)`` pairs: lines ``ID-GLOB | REASON-GLOB  # why``
    (``| REASON-GLOB`` optional: any reason); ``#`` starts a comment."""
    allowed = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            test, _, reason = (part.strip() for part in line.partition("|"))
            allowed.append((test, reason or "*"))
    return allowed


def unexpected_skips(skipped: dict[str, str], allowed: list[tuple[str, str]]) -> dict[str, str]:
    """The skips no allow-list entry covers."""
    return {
        test: reason
        for test, reason in skipped.items()
        if not any(fnmatch.fnmatchcase(test, t) and fnmatch.fnmatchcase(reason, r) for t, r in allowed)
    }


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    log = os.environ.get("PIANOMTL_SKIP_LOG")
    if log:
        Path(log).write_text("".join(f"{test}\t{reason}\n" for test, reason in sorted(_skipped.items())))
    allow_list = os.environ.get("PIANOMTL_ALLOWED_SKIPS")
    if not allow_list:
        return
    unexpected = unexpected_skips(_skipped, read_allowed_skips(Path(allow_list)))
    writer = session.config.get_terminal_writer()
    writer.line(f"\n{len(_skipped)} skipped test(s), checked against {allow_list}:")
    for test, reason in sorted(_skipped.items()):
        writer.line(f"  {'NOT ALLOWED' if test in unexpected else 'allowed'}: {test}: {reason}")
    if unexpected and session.exitstatus == 0:
        writer.line(f"{len(unexpected)} skip(s) not on the allow-list: a broken install or a missing package", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@dataclass(frozen=True)
class RenderedClip:
    """A small performance, its rendered mono 44.1 kHz audio, and the audio on disk."""

    performance: Performance
    samples: np.ndarray
    wav: Path
    flac: Path

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def clip_performance() -> Performance:
    """Eight well separated notes over the piano range, varied velocities, one pedal press."""
    notes = [
        Note(48, 0.10, 0.40, 90),
        Note(60, 0.40, 0.70, 70),
        Note(67, 0.70, 0.85, 110),
        Note(72, 1.00, 1.20, 50),
        Note(55, 1.30, 1.50, 100),  # released under the pedal: sounds until 1.90
        Note(64, 1.60, 1.75, 80),
        Note(76, 2.00, 2.30, 120),
        Note(36, 2.30, 2.60, 95),
    ]
    pedal = [PedalEvent(1.25, 127), PedalEvent(1.90, 0)]
    return Performance(notes, pedal)


@pytest.fixture(scope="session")
def soundfont() -> Path:
    """Path to FluidR3; skips when it or libfluidsynth is missing."""
    if not FLUID_R3.is_file():
        pytest.skip(f"{FLUID_R3} missing (install Debian's fluid-soundfont-gm)")
    from pianomtl.synthesis.fluidsynth import RenderError, _write_float

    try:
        _write_float()
    except RenderError as error:
        pytest.skip(str(error))
    return FLUID_R3


@pytest.fixture(scope="session")
def rendered_clip(soundfont: Path, tmp_path_factory: pytest.TempPathFactory) -> RenderedClip:
    """The fixture performance rendered to 3 s of audio, also written as WAV and FLAC."""
    from pianomtl.synthesis.fluidsynth import render

    performance = clip_performance()
    samples = render(performance, soundfont, duration=CLIP_SECONDS)
    peak = float(np.max(np.abs(samples)))
    assert 0.01 < peak, "FluidSynth rendered silence"
    samples = (samples * (0.5 / peak)).astype(np.float32)  # well below full scale
    folder = tmp_path_factory.mktemp("rendered")
    wav = folder / "clip.wav"
    flac = folder / "clip.flac"
    sf.write(str(wav), samples, SAMPLE_RATE, subtype="PCM_16")
    sf.write(str(flac), samples, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return RenderedClip(performance, samples, wav, flac)


@pytest.fixture
def one_thread():
    """One torch thread for the test, restored after: model tests stay fast and
    deterministic on a 2-core machine that may be training at the same time."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny feature cache of :mod:`tiny_cache` (train 2 × 3 s, validation 1 × 3 s), built once per
    session; skips where it cannot be rendered. (It stands in for pytest's own ``cache`` fixture,
    which the suite does not use.)"""
    import tiny_cache

    reason = tiny_cache.available()
    if reason:
        pytest.skip(reason)
    return tiny_cache.build(tmp_path_factory.getbasetemp() / "tiny_cache")
