"""Every fixed number of the system, defined once.

The values follow the seed paper (Kelz, Böck, Widmer, "Multitask Learning for
Polyphonic Piano Transcription, a Case Study") and its predecessor models, whose
input is madmom's ``LogarithmicFilteredSpectrogram`` at 50 frames per second.
"""

from __future__ import annotations

from pathlib import Path

SAMPLE_RATE = 44100
"""Audio is resampled to this rate before feature extraction (Hz)."""

FPS = 50
"""Frames per second of features and targets."""

HOP_SIZE = SAMPLE_RATE // FPS  # 882 samples
"""Samples between consecutive frame centres."""

FRAME_SIZE = 4096
"""STFT window length in samples (symmetric Hann)."""

BANDS_PER_OCTAVE = 24
FMIN = 30.0
FMAX = 10000.0
FREF = 440.0
N_BINS = 144
"""Number of filterbank bins that remain after merging duplicate filters."""

CONTEXT = 5
"""Frames of context on each side of the predicted frame (11-frame input window)."""

MIN_KEY = 21  # A0
MAX_KEY = 108  # C8
N_KEYS = MAX_KEY - MIN_KEY + 1  # 88

PEDAL_CC = 64
"""MIDI controller number of the sustain (damper) pedal."""

PEDAL_DOWN_ABOVE = 64
"""CC64 values strictly greater than this count as pedal down (paper §III)."""

MIDI_MAX = 127

TARGET_MAX_FILTER = 3
"""Length (frames) of the temporal maximum filter widening on/off/vel labels."""

TASKS: tuple[str, ...] = ("on", "int", "off", "vel", "sus")
"""The five prediction targets in their canonical order."""

BINARY_TASKS: tuple[str, ...] = ("on", "int", "off")
REGRESSION_TASKS: tuple[str, ...] = ("vel", "sus")
TASK_WIDTH: dict[str, int] = {"on": N_KEYS, "int": N_KEYS, "off": N_KEYS, "vel": N_KEYS, "sus": 1}

ONNX_INPUT = "features"
"""Name of an exported graph's spectrogram input ``[batch, T + 10, 144]``; its outputs are named as :data:`TASKS`."""

ONNX_NEXT = "next_"
"""Prefix of a recurrent graph's state outputs (state input ``onset_h`` → output ``next_onset_h``)."""

ONNX_STATE_BATCH = "batch_x"
"""Name of a state tensor's dynamic axis 1 in a recurrent graph, followed by the number of
state rows per sequence: ``batch_x1`` for one row per sequence (``hard+rnn``),
``batch_x88`` for a layer run on every key (``hard+keyrnn``'s key layer, ``[dirs, B·88, h]``)."""

ASSETS = Path(__file__).resolve().parent / "assets"
"""The bundled model's folder in the installed package (``default.onnx``, and ``default.pt`` in a checkout)."""

HOME_VARIABLE = "PIANOMTL_HOME"
"""The environment variable naming the folder of material fetched or rendered once
(default ``~/.cache/pianomtl``): :func:`pianomtl.core.files.pianomtl_home` reads it."""
