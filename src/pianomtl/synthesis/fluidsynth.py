"""Render a :class:`~pianomtl.core.midi.Performance` to audio with FluidSynth, in process.

Why in process (libfluidsynth through pyfluidsynth's ctypes binding) rather than
the ``fluidsynth`` CLI: no temporary MIDI/WAV files, float output, and a failed
SoundFont load is an error here, whereas the CLI silently falls back to the
default GM SoundFont and exits 0.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import numpy as np

from pianomtl.constants import PEDAL_CC, PEDAL_DOWN_ABOVE, SAMPLE_RATE
from pianomtl.core.midi import Performance, next_strike_time

RELEASE_TAIL_SECONDS = 1.0
"""Audio rendered after the last event so released notes can ring out."""

BLOCK = 4096


class RenderError(RuntimeError):
    """A synthesiser could not render (missing library, unreadable SoundFont, TiMidity failed)."""


@functools.lru_cache(maxsize=1)
def _write_float():  # type: ignore[no-untyped-def]
    try:
        import fluidsynth
    except (ImportError, OSError) as error:  # libfluidsynth missing: install Debian's fluidsynth
        raise RenderError(f"FluidSynth is not available ({error}); install the Debian package 'fluidsynth'") from None
    function = fluidsynth._fl.fluid_synth_write_float
    function.argtypes = [ctypes.c_void_p, ctypes.c_int] + [ctypes.c_void_p, ctypes.c_int, ctypes.c_int] * 2
    function.restype = ctypes.c_int
    return fluidsynth, function


def synth_pedal_value(value: int) -> int:
    """CC64 value to send so a synthesiser (FluidSynth and TiMidity: on at ≥ 64) agrees with our labels (> 64)."""
    return PEDAL_DOWN_ABOVE - 1 if value == PEDAL_DOWN_ABOVE else int(value)


def render(
    performance: Performance,
    soundfont: str | Path,
    sample_rate: int = SAMPLE_RATE,
    program: int = 0,
    bank: int = 0,
    gain: float = 0.5,
    duration: float | None = None,
) -> np.ndarray:
    """Render notes and sustain pedal to a mono float32 signal (no reverb, no chorus).

    ``duration`` (seconds) fixes the output length; by default the performance's end
    plus :data:`RELEASE_TAIL_SECONDS`.
    """
    synth, font_id = load_synth(soundfont, sample_rate, gain)
    try:
        synth.program_select(0, font_id, bank, program)
        total_seconds = performance.end_time + RELEASE_TAIL_SECONDS if duration is None else duration
        return play(synth, synth_events(performance), max(1, round(total_seconds * sample_rate)), sample_rate)
    finally:
        synth.delete()


def load_synth(soundfont: str | Path, sample_rate: int = SAMPLE_RATE, gain: float = 0.5):  # type: ignore[no-untyped-def]
    """A FluidSynth instance (no reverb, no chorus) with ``soundfont`` loaded: ``(synth, font_id)``."""
    fluidsynth, _ = _write_float()
    soundfont = Path(soundfont)
    if not soundfont.is_file():
        raise RenderError(f"{soundfont}: SoundFont not found")
    synth = fluidsynth.Synth(
        gain=gain,
        samplerate=float(sample_rate),
        **{"synth.reverb.active": 0, "synth.chorus.active": 0, "synth.polyphony": 4096},
    )
    font_id = synth.sfload(str(soundfont))
    if font_id < 0:
        synth.delete()
        raise RenderError(f"{soundfont}: FluidSynth failed to load the SoundFont")
    return synth, font_id


Event = tuple[float, int, tuple[str, int, int]]
"""(time in seconds, order at equal times: releases, pedal, onsets; (kind, number, value))."""


def synth_events(performance: Performance) -> list[Event]:
    """The performance as time-ordered FluidSynth calls.

    A note-off silences every voice of its key, so a note is released where its key
    is struck again (as the targets cut it); otherwise it would cut the re-struck
    note short.
    """
    following = next_strike_time([n.onset for n in performance.notes], [n.key for n in performance.notes])
    events: list[Event] = []
    for note, cut in zip(performance.notes, following, strict=True):
        events.append((note.onset, 2, ("on", int(note.key), int(max(1, min(127, note.velocity))))))
        events.append((min(max(note.offset, note.onset), float(cut)), 0, ("off", int(note.key), 0)))
    for event in performance.pedal:
        events.append((event.time, 1, ("cc", PEDAL_CC, synth_pedal_value(event.value))))
    events.sort(key=lambda e: (e[0], e[1]))
    return events


def play(synth, events: list[Event], n_samples: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Drive a loaded pyfluidsynth ``Synth`` (channel 0) through ``events``; mono float32 output."""
    _, write_float = _write_float()
    left = np.zeros(n_samples, dtype=np.float32)
    right = np.zeros(n_samples, dtype=np.float32)
    position = 0

    def advance(until: int) -> None:
        nonlocal position
        until = min(until, n_samples)
        while position < until:
            count = min(BLOCK, until - position)
            write_float(
                synth.synth, count,
                left[position:].ctypes.data, 0, 1,
                right[position:].ctypes.data, 0, 1,
            )  # fmt: skip
            position += count

    for time, _, (kind, number, value) in events:
        advance(round(time * sample_rate))
        if kind == "on":
            synth.noteon(0, number, value)
        elif kind == "off":
            synth.noteoff(0, number)
        else:
            synth.cc(0, number, value)
    advance(n_samples)
    return 0.5 * (left + right)
