"""A picture of one transcription: what the network heard, what it said, what was decoded.

Seven panels on one time axis (seconds): the input spectrogram, the five heads'
activations (on, int, off, vel as key × time images; sus as a curve with the
decoder's pedal thresholds), and the decoded piano roll (notes shaded by velocity)
with the pedal-down spans behind it. Rendered with matplotlib's Agg canvas (no pyplot),
so it needs no display and leaves the caller's matplotlib state alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pianomtl.constants import FPS, MAX_KEY, MIN_KEY, N_KEYS, PEDAL_DOWN_ABOVE
from pianomtl.core.files import atomic_write
from pianomtl.core.midi import pedal_down_intervals

if TYPE_CHECKING:
    from pianomtl.transcription.result import Transcription

MAX_WIDTH_INCHES = 60.0


def piano_roll(transcription: Transcription, n_frames: int) -> np.ndarray:
    """``[88, n_frames]`` image: each note's velocity (1–127) over its frames, 0 elsewhere."""
    roll = np.zeros((N_KEYS, n_frames), dtype=np.float32)
    for note in transcription.notes:
        if not MIN_KEY <= note.key <= MAX_KEY:
            continue
        start = round(note.onset * FPS)
        stop = max(round(note.offset * FPS), start + 1)
        roll[note.key - MIN_KEY, start:stop] = np.maximum(roll[note.key - MIN_KEY, start:stop], note.velocity)
    return roll


def plot_transcription(
    transcription: Transcription, path: str | Path, title: str | None = None, overwrite: bool = True
) -> Path:
    """Write the seven-panel PNG of ``transcription`` (which must keep its activations)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    activations = transcription.activations
    if activations is None:
        raise ValueError("the transcription has no activations to plot (transcribe with keep_activations=True)")
    n_frames = len(activations["on"])
    duration = max(n_frames / FPS, 1.0 / FPS)
    width = float(np.clip(4.0 + duration * 0.6, 10.0, MAX_WIDTH_INCHES))
    heights = [1.6, 1.2, 1.2, 1.2, 1.2, 0.8, 1.8]
    figure = Figure(figsize=(width, sum(heights) + 1.2))
    FigureCanvasAgg(figure)  # a figure of its own: no pyplot state, no display needed
    axes = figure.subplots(len(heights), 1, sharex=True, gridspec_kw={"height_ratios": heights})
    extent_keys = (0.0, n_frames / FPS, MIN_KEY - 0.5, MAX_KEY + 0.5)
    image_options = {"aspect": "auto", "origin": "lower", "interpolation": "nearest"}

    features = transcription.features
    if features is not None and len(features):
        axes[0].imshow(features.T, extent=(0.0, len(features) / FPS, -0.5, features.shape[1] - 0.5), cmap="magma",
                       **image_options)  # fmt: skip
    axes[0].set_ylabel("spectrogram\nbin")
    for axis, task, label in zip(
        axes[1:5], ("on", "int", "off", "vel"), ("onset", "intermediate", "offset", "velocity"), strict=True
    ):
        axis.imshow(activations[task].T, extent=extent_keys, cmap="Greys", vmin=0.0, vmax=1.0, **image_options)
        axis.set_ylabel(f"{label}\nkey")
    sus = np.asarray(activations["sus"]).reshape(n_frames, -1)[:, 0] if n_frames else np.zeros(0)
    times = np.arange(n_frames) / FPS
    axes[5].plot(times, sus, color="tab:blue", linewidth=0.8)
    decoder = transcription.decoder
    for level in (decoder.pedal_low, decoder.pedal_high):
        axes[5].axhline(level, color="tab:gray", linewidth=0.5, linestyle="--")
    axes[5].set_ylim(-0.05, 1.05)
    axes[5].set_ylabel("sustain")

    roll_axis = axes[6]
    for start, stop in pedal_down_intervals(transcription.pedal, end_time=duration):
        roll_axis.axvspan(start, stop, color="tab:orange", alpha=0.15, linewidth=0)
    roll = np.ma.masked_equal(piano_roll(transcription, n_frames), 0.0)
    roll_axis.imshow(roll, extent=extent_keys, cmap="viridis", vmin=1, vmax=127, **image_options)
    roll_axis.set_ylabel("notes\nkey")
    roll_axis.set_xlabel("time (s)")
    roll_axis.set_xlim(0.0, duration)
    pedal_note = f"pedal down (CC64 > {PEDAL_DOWN_ABOVE}) shaded"
    figure.suptitle(
        title or f"{transcription.source or 'transcription'}: {len(transcription.notes)} notes, {pedal_note}",
        fontsize=10,
    )
    figure.tight_layout()
    path = Path(path)
    return atomic_write(path, lambda target: figure.savefig(target, dpi=100, format="png"), overwrite)
