"""``pianomtl features AUDIO [MIDI]``: show what the networks see and must predict.

Useful to check a user's own data before training: frame count, feature range,
and, given the aligned MIDI, how many onset/frame/offset labels and pedal frames
the targets contain.
"""

from __future__ import annotations

import argparse

import numpy as np

from pianomtl.constants import FPS, N_BINS, SAMPLE_RATE
from pianomtl.core.audio import load
from pianomtl.core.features import spectrogram
from pianomtl.core.midi import read_midi
from pianomtl.core.targets import compute_labels, to_float


def summary(audio_path: str, midi_path: str | None = None) -> str:
    samples = load(audio_path)
    features = spectrogram(samples)
    lines = [
        f"{audio_path}: {len(samples) / SAMPLE_RATE:.2f} s, {len(features)} frames at {FPS} fps × {N_BINS} bins",
        f"  features: min {features.min():.3f}, mean {features.mean():.3f}, max {features.max():.3f}",
    ]
    if midi_path:
        performance = read_midi(midi_path)
        targets = to_float(compute_labels(performance, len(features)))
        lines.append(f"{midi_path}: {len(performance.notes)} notes, {len(performance.pedal)} pedal events")
        for task in ("on", "int", "off"):
            lines.append(f"  {task:>3}: {int(targets[task].sum())} positive labels (key × frame)")
        vel = targets["vel"][targets["vel"] > 0]
        lines.append(f"  vel: mean {vel.mean() if vel.size else 0:.3f} on {vel.size} labels")
        lines.append(f"  sus: down (>64) in {int(np.sum(targets['sus'] > 64 / 127))} of {len(features)} frames")
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("audio", help="audio file")
    parser.add_argument("midi", nargs="?", help="aligned MIDI file (optional)")


def run(args: argparse.Namespace) -> int:
    print(summary(args.audio, args.midi))
    return 0
