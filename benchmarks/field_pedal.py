"""Can the decoder stop a model writing pedal on pieces played without it? A sweep of the pedal hysteresis.

Usage: ``python benchmarks/field_pedal.py FIELD_CORPUS [--split validation] [--model FILE]``. Transcribes each
recording of the split once, re-decodes it (``Transcription.redecode``) at each pedal setting and prints a table:
pedal F1 on the recordings with pedal, and how many pedal-free recordings get any pedal written
(docs/experiments.md §12 has the v7 result).
"""

from __future__ import annotations

import argparse
from pathlib import Path

SETTINGS = ((0.4, 0.2), (0.5, 0.3), (0.6, 0.3), (0.7, 0.4), (0.8, 0.5), (0.9, 0.6))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--split", default="validation")
    parser.add_argument("--model", default=None)
    args = parser.parse_args(argv)
    import pianomtl
    from pianomtl.core.metrics import BinaryCounts
    from pianomtl.core.midi import read_midi
    from pianomtl.data.maestro import read_dataset
    from pianomtl.train.field import score_recording

    transcriber = pianomtl.Transcriber(args.model)
    results = [(transcriber(str(r.audio_path)), read_midi(r.midi_path)) for r in read_dataset(args.corpus, args.split)]
    print("| pedal high / low | pedal F1 (pieces with pedal) | pedal-free pieces given pedal |\n|---|---|---|")
    for high, low in SETTINGS:
        counts, free, wrote = BinaryCounts(), 0, 0
        for result, reference in results:
            decoded = result.redecode(pedal_high=high, pedal_low=low)
            scored = score_recording(reference, decoded.notes, decoded.pedal, decoded.duration)
            if scored["has_pedal"]:
                counts.add(*scored["pedal"])
            else:
                free, wrote = free + 1, wrote + int(scored["wrote_pedal"])
        print(f"| {high} / {low} | {counts.scores()['f1']:.3f} | {wrote} of {free} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
