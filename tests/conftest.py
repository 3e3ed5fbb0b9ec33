"""Shared fixtures: a few seconds of real piano audio, rendered once per test session.

The clip is rendered with FluidSynth through Debian's FluidR3 General MIDI SoundFont
(``pianomtl.synthesis.fluidsynth.render``) and written with soundfile into temporary folders.
Everything is tiny (about 3 s of audio) so the whole suite stays fast on two CPU cores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from pianomtl.constants import SAMPLE_RATE
from pianomtl.core.midi import Note, PedalEvent, Performance

FLUID_R3 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")

CLIP_SECONDS = 3.0
"""Length of the rendered fixture clip (the performance ends before it)."""


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
