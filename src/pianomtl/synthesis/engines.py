"""Render a performance with a timbre's engine: FluidSynth, TiMidity or the project's piano.

:func:`render_performance` dispatches on :attr:`Timbre.engine <pianomtl.synthesis.timbres.Timbre.engine>`:

- ``fluidsynth``: a SoundFont in a FluidSynth instance kept per process and timbre
  (:mod:`pianomtl.synthesis.fluidsynth` drives it), brought to the same state before every item
  so that renders are reproducible;
- ``timidity``: the TiMidity++ command line (its own envelopes and patches);
- ``piano``: the project's sample-based piano, :mod:`pianomtl.synthesis.piano`, playing the
  item's :class:`~pianomtl.synthesis.piano.PianoVariant`.

The output is dry mono float32 audio at 44.1 kHz; the corpus's room, EQ and noise come
after (:mod:`pianomtl.synthesis.audio_augment`).
"""

from __future__ import annotations

import functools
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from pianomtl.constants import MAX_KEY, MIN_KEY, PEDAL_CC, SAMPLE_RATE
from pianomtl.core.midi import Performance, write_midi
from pianomtl.synthesis.timbres import TIMBRES, Timbre

FLUID_BLOCK = 64
"""FluidSynth's internal block size (samples)."""


@functools.cache
def _synth(timbre_name: str):  # type: ignore[no-untyped-def]
    """A FluidSynth instance with the timbre's SoundFont loaded, one per process and timbre."""
    from pianomtl.synthesis.fluidsynth import load_synth

    timbre = TIMBRES[timbre_name]
    synth, font_id = load_synth(timbre.soundfont(), SAMPLE_RATE, timbre.gain)
    _settle(synth, font_id, timbre, warm_up=True)
    return synth, font_id


def _settle(synth, font_id: int, timbre: Timbre, warm_up: bool = False) -> None:  # type: ignore[no-untyped-def]
    """Bring the synth to the same state before every item, so renders are reproducible.

    FluidSynth's first use of a sample differs slightly from later ones, and
    ``system_reset`` leaves sounding voices alone: so play and discard every key at every
    velocity once after loading, silence all voices after each reset, and render (discard) a little
    silence so the freed voices leave the mixer.
    """
    from pianomtl.synthesis.fluidsynth import _write_float

    _, write_float = _write_float()
    scratch = np.zeros(8 * FLUID_BLOCK, dtype=np.float32)

    def reset() -> None:
        synth.system_reset()  # controllers and programs; it leaves sounding voices alone
        synth.program_select(0, font_id, timbre.bank, timbre.program)
        synth.cc(0, PEDAL_CC, 0)
        synth.all_sounds_off(0)  # silences at once (before system_reset it would be undone)
        write_float(synth.synth, len(scratch), scratch.ctypes.data, 0, 1, scratch.ctypes.data, 0, 1)

    reset()
    if warm_up:  # every sample of every key and velocity zone once
        for velocity in range(1, 128):
            for key in range(MIN_KEY, MAX_KEY + 1):
                synth.noteon(0, key, velocity)
            write_float(synth.synth, FLUID_BLOCK, scratch.ctypes.data, 0, 1, scratch.ctypes.data, 0, 1)
            synth.all_sounds_off(0)
        reset()


def render_performance(performance: Performance, timbre_name: str, n_samples: int, instrument: str = "") -> np.ndarray:
    """Dry audio of ``performance`` played by the timbre's engine (FluidSynth: the events of
    :func:`pianomtl.synthesis.fluidsynth.synth_events`, with the process's preloaded synth).

    ``instrument``: for the piano engine, the item's :class:`~pianomtl.synthesis.piano.PianoVariant`
    as JSON (empty: the grand as sampled); for the modal engine, its
    :class:`~pianomtl.synthesis.modal.ModalPiano` (empty: the default instrument).
    """
    from pianomtl.synthesis.fluidsynth import play, synth_events

    if TIMBRES[timbre_name].engine == "piano":
        from pianomtl.synthesis import piano

        variant = piano.PianoVariant.from_json(instrument) if instrument else piano.PianoVariant()
        return piano.render(performance, n_samples, variant)
    if TIMBRES[timbre_name].engine == "modal":
        from pianomtl.synthesis import modal

        model = modal.ModalPiano.from_json(instrument) if instrument else modal.ModalPiano()
        return modal.render_modal(performance, n_samples, model)
    if TIMBRES[timbre_name].engine == "timidity":
        return render_timidity(performance, TIMBRES[timbre_name], n_samples)
    synth, font_id = _synth(timbre_name)
    # FluidSynth applies events at its internal 64-sample block boundaries and keeps its block phase
    # across calls: render whole blocks so that every item starts in the same phase (reproducible).
    whole_blocks = -(-n_samples // FLUID_BLOCK) * FLUID_BLOCK
    audio = play(synth, synth_events(performance), whole_blocks, SAMPLE_RATE)
    _settle(synth, font_id, TIMBRES[timbre_name])
    return audio[:n_samples]


TIMIDITY_AMPLIFY = 25
"""TiMidity's volume in percent: low, so that loud pedalled chords do not clip (24-bit output keeps the soft)."""


def render_timidity(performance: Performance, timbre: Timbre, n_samples: int) -> np.ndarray:
    """Mono float32 audio of ``performance`` rendered by the TiMidity++ command line.

    Effects off (the corpus adds its own room), no polyphony reduction, 24-bit output, and
    ``--preserve-silence``: by default TiMidity drops the silence before the first note, which
    would shift every onset by the first note's time. Sound starts 0.5 ms after each note-on
    (measured); the audio is cut or padded to ``n_samples``. CC64 = 64 is sent as 63: TiMidity
    holds notes from 64 on (measured), the labels from 65.
    """
    import soundfile

    from pianomtl.synthesis.fluidsynth import RenderError, synth_pedal_value

    pedal = [event._replace(value=synth_pedal_value(event.value)) for event in performance.pedal]
    with tempfile.TemporaryDirectory(prefix="pianomtl-timidity-") as folder:
        midi_path, wav_path = Path(folder) / "in.mid", Path(folder) / "out.wav"
        write_midi(midi_path, Performance(performance.notes, pedal), program=timbre.program)
        command = [
            "timidity", "-c", str(timbre.soundfont()), "-s", str(SAMPLE_RATE), "-OwM2s", "-o", str(wav_path),
            f"-A{TIMIDITY_AMPLIFY}", "-p", "256", "--no-polyphony-reduction", "--preserve-silence",
            "-EFreverb=d", "-EFchorus=d", str(midi_path),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0 or not wav_path.is_file():
            raise RenderError(f"timidity failed on {timbre.name}: {result.stderr.strip()[-200:]}")
        audio, _ = soundfile.read(wav_path, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    return np.pad(audio[:n_samples], (0, max(0, n_samples - len(audio))))
