"""Per-recording adaptation, measured: does normalising each band's level to the recording help on the field test?

Usage: ``python benchmarks/field_adapt.py FIELD_CORPUS --cache TRAIN_CACHE [--split validation] [--model FILE]``.
The reference level of each of the 144 bands is its median over the active frames (total energy above the
recording's 20th percentile) of the training cache's recordings; each field recording's spectrogram is shifted
band by band so that its own active-frame medians match the reference (``shift``), or shifted and scaled so that
the spread (interquartile range) matches too (``shift+scale``). The network, decoder and scoring are the bundled
model's and :func:`pianomtl.train.field.score_recording`'s. Prints one row per variant
(docs/experiments.md §12 has the result).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ACTIVE_PERCENTILE = 20


def active(features: np.ndarray) -> np.ndarray:
    energy = features.sum(axis=1)
    return features[energy >= np.percentile(energy, ACTIVE_PERCENTILE)]


def band_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-band median and interquartile range of the active frames."""
    frames = active(features)
    low, median, high = np.percentile(frames, (25, 50, 75), axis=0)
    return median, np.maximum(high - low, 1e-3)


def adapt(features: np.ndarray, reference: tuple[np.ndarray, np.ndarray], scale: bool) -> np.ndarray:
    median, spread = band_statistics(features)
    if scale:
        adapted = (features - median) / spread * reference[1] + reference[0]
    else:
        adapted = features - median + reference[0]
    return np.maximum(adapted, 0.0).astype(np.float32)  # the log spectrogram is non-negative


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--cache", required=True, type=Path)
    parser.add_argument("--split", default="validation")
    parser.add_argument("--model", default=None)
    args = parser.parse_args(argv)
    import pianomtl
    from pianomtl.core.metrics import BinaryCounts
    from pianomtl.core.midi import read_midi
    from pianomtl.core.scoring import aggregate_scores
    from pianomtl.data.maestro import read_dataset
    from pianomtl.data.store import open_split
    from pianomtl.train.field import score_recording
    from pianomtl.transcription.decoders import decode

    training = np.concatenate([active(np.asarray(r.features)) for r in open_split(args.cache, "train")])
    low, median, high = np.percentile(training, (25, 50, 75), axis=0)
    reference = (median, np.maximum(high - low, 1e-3))
    transcriber = pianomtl.Transcriber(args.model)
    records = read_dataset(args.corpus, args.split)
    print("| variant | note F1 | + offset | + offset + velocity | frame F1 |\n|---|---|---|---|---|")
    for variant in ("none", "shift", "shift+scale"):
        notes, frames = [], BinaryCounts()
        for record in records:
            features, duration, _ = transcriber.features(str(record.audio_path))
            if variant != "none":
                features = adapt(np.asarray(features), reference, scale=variant == "shift+scale")
            performance = decode(transcriber.activations(features), transcriber.decoder)
            scored = score_recording(read_midi(record.midi_path), performance.notes, performance.pedal, duration)
            notes.append(scored["notes"])
            frames.add(*scored["frames"])
        total = aggregate_scores(notes)
        print(f"| {variant} | {total['note_f1']:.3f} | {total['note_offset_f1']:.3f} | "
              f"{total['note_offset_velocity_f1']:.3f} | {frames.scores()['f1']:.3f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
