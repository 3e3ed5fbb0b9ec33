"""Sheet music from a performance, measured against known scores (issue 26).

    python benchmarks/score.py [--bars 16] [--seeds 1] [--first-seed 0] [--audio 3] [--json PATH]

Pieces with a known score come from music21's bundled corpus (Bach chorales — soprano
and alto are the right hand, tenor and bass the left —, Mozart's K. 545, Joplin's Maple
Leaf Rag, a Clara Schumann polonaise, a Chopin mazurka; the first ``--bars`` bars each).
:func:`pianomtl.score.perform.perform` plays each with rubato (a tempo curve of ±8 %
over 4–8-bar phrases, a final ritardando), spread chords, timing jitter up to ±20 ms
and dynamics, and keeps the truth: beats, downbeats, metre, key signature, each note's
hand, score position and written length.

From the **ground-truth performance MIDI** (the estimators see the notes as played) and,
for the first ``--audio`` pieces, from **audio** (rendered with FluidSynth through
MuseScore's General SoundFont, transcribed by the bundled model), per piece:

* beat F1 and downbeat F1: ``mir_eval.beat.f_measure`` (±70 ms), over the span of the
  notes (first to last onset);
* tempo within 4 % of the true mean tempo; metre (beats per bar) and key signature
  (number of fifths) right;
* hand accuracy per note (audio: per note matched to the truth, same key, onset ±50 ms);
* note-value accuracy: written length in beats equal to the truth's (matched notes);
* score error rate: the edit distance between the sequences of ``(bar, position in bar,
  key)`` of the truth and of the estimate, over the truth's length — a note in the
  wrong bar, on the wrong beat or missing counts once; 0 is a perfect score.

The baseline is today's file: a fixed 120 bpm grid in 4/4 from time 0, no key
signature (C major), hands split at middle C.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import mir_eval
import numpy as np

from pianomtl.constants import SAMPLE_RATE
from pianomtl.core.midi import MeterMap, Note
from pianomtl.score.beats import BeatGrid
from pianomtl.score.perform import Truth, perform
from pianomtl.score.quantize import quantise
from pianomtl.score.sheet import Analysis, analyse

PIECES = (
    ("bach/bwv66.6", None),
    ("mozart/k545/movement1_exposition", 1),
    ("schumann_clara/polonaise_op1n1", 1),
    ("bach/bwv269", None),
    ("bach/bwv347", None),
    ("bach/bwv153.1", None),
    ("bach/bwv86.6", None),
    ("bach/bwv40.8", None),
    ("joplin/maple_leaf_rag", 1),
    ("chopin/mazurka06-2", 1),
)
"""(music21 corpus name, parts played by the right hand: None = the upper half). ``--audio N`` renders
the first N: a chorale, a sonata, a polonaise."""

MUSESCORE_SF3 = Path("/usr/share/sounds/sf3/MuseScore_General.sf3")


def edit_distance(a: list[tuple], b: list[tuple]) -> int:
    """Levenshtein distance between two token sequences (insert, delete, substitute: 1 each)."""
    previous = np.arange(len(b) + 1)
    for i, token in enumerate(a, start=1):
        current = np.empty_like(previous)
        current[0] = i
        same = np.array([token == other for other in b], dtype=np.int64)
        for j in range(1, len(b) + 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + 1 - same[j - 1])
        previous = current
    return int(previous[-1])


def truth_tokens(truth: Truth) -> list[tuple]:
    per_bar = truth.beats_per_bar
    return sorted(
        (int(p // per_bar), p - per_bar * (p // per_bar), n.key)
        for p, n in zip(truth.positions, truth.performance.notes, strict=True)
    )


def estimate_tokens(notes: list[Note], meter: MeterMap) -> list[tuple]:
    per_bar = meter.beats_per_bar
    quantised = quantise(notes, meter)
    return sorted((int(q.start // per_bar), q.start - per_bar * (q.start // per_bar), q.key) for q in quantised)


def match(estimated: list[Note], reference: list[Note], tolerance: float = 0.05) -> dict[int, int]:
    """Estimated index → reference index: same key, onset within ``tolerance``, each used once (greedy by time)."""
    pairs: dict[int, int] = {}
    used: set[int] = set()
    by_key: dict[int, list[int]] = {}
    for j, note in enumerate(reference):
        by_key.setdefault(note.key, []).append(j)
    for i, note in enumerate(estimated):
        candidates = [
            j for j in by_key.get(note.key, []) if j not in used and abs(reference[j].onset - note.onset) <= tolerance
        ]
        if candidates:
            best = min(candidates, key=lambda j: abs(reference[j].onset - note.onset))
            pairs[i] = best
            used.add(best)
    return pairs


def baseline_analysis(notes: list[Note]) -> tuple[BeatGrid, MeterMap, np.ndarray, int]:
    """Today's file: 120 bpm from 0 in 4/4, no key signature, hands split at middle C."""
    end = max(n.offset for n in notes) + 1
    beats = np.arange(0, end, 0.5)
    grid = BeatGrid(beats, 4, 0, 120.0, 1.0)
    meter = MeterMap(tuple(float(b) for b in beats), 4, 0)
    hands = np.array([0 if n.key >= 60 else 1 for n in notes])
    return grid, meter, hands, 0


def measure(truth: Truth, notes: list[Note], grid: BeatGrid, meter: MeterMap, hands: np.ndarray, fifths: int) -> dict:
    first, last = min(n.onset for n in notes), max(n.onset for n in notes)
    inside = (grid.beats >= first - 0.07) & (grid.beats <= last + 0.07)
    beats = grid.beats[inside]
    downbeats = grid.downbeats[(grid.downbeats >= first - 0.07) & (grid.downbeats <= last + 0.07)]
    pairs = match(notes, truth.performance.notes)
    quantised = quantise(notes, meter)
    length_right = [quantised[i].length == truth.lengths[j] for i, j in pairs.items()]
    hand_right = [hands[i] == truth.hands[j] for i, j in pairs.items()]
    reference = truth_tokens(truth)
    estimate = estimate_tokens(notes, meter)
    return {
        "beat_f1": float(mir_eval.beat.f_measure(truth.beats, beats)),
        "downbeat_f1": float(mir_eval.beat.f_measure(truth.downbeats, downbeats)),
        "tempo_ok": bool(abs(grid.tempo - truth.tempo) <= 0.04 * truth.tempo),
        "metre_ok": bool(meter.beats_per_bar == truth.beats_per_bar),
        "key_ok": bool(fifths == truth.key_fifths),
        "hand_acc": float(np.mean(hand_right)) if hand_right else 0.0,
        "value_acc": float(np.mean(length_right)) if length_right else 0.0,
        "score_err": edit_distance(reference, estimate) / max(len(reference), 1),
        "matched": len(pairs) / max(len(truth.performance.notes), 1),
    }


def from_analysis(truth: Truth, analysis: Analysis) -> dict:
    return measure(truth, analysis.notes, analysis.grid, analysis.meter, analysis.hands, analysis.key.fifths)


def transcribe_audio(truth: Truth) -> list[Note]:
    from pianomtl.synthesis.fluidsynth import render
    from pianomtl.transcription.pipeline import Transcriber

    samples = render(truth.performance, MUSESCORE_SF3)
    samples = (samples * (0.5 / max(float(np.max(np.abs(samples))), 1e-6))).astype(np.float32)
    result = Transcriber()(samples, sr=SAMPLE_RATE, keep_activations=False)
    return list(result.notes)


COLUMNS = ("beat_f1", "downbeat_f1", "tempo_ok", "metre_ok", "key_ok", "hand_acc", "value_acc", "score_err")


def table(rows: list[dict]) -> str:
    head = f"| {'piece':34s} | {'input':9s} | " + " | ".join(f"{c:>11s}" for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for row in rows:
        cells = " | ".join(f"{float(row[c]):11.3f}" for c in COLUMNS)
        lines.append(f"| {row['piece']:34s} | {row['input']:9s} | {cells} |")
    for kind in dict.fromkeys(r["input"] for r in rows):
        mine = [r for r in rows if r["input"] == kind]
        cells = " | ".join(f"{np.mean([float(r[c]) for r in mine]):11.3f}" for c in COLUMNS)
        lines.append(f"| {'**mean** (' + str(len(mine)) + ')':34s} | {kind:9s} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=16, help="bars of each piece (default 16)")
    parser.add_argument("--seeds", type=int, default=1, help="performances per piece (default 1)")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seed of the first performance (0 tuned the constants; 1+ held out)"
    )
    parser.add_argument("--audio", type=int, default=3, help="pieces also rendered and transcribed (default 3)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    from music21 import corpus

    rows = []
    started = time.time()
    for number, (name, right_parts) in enumerate(PIECES):
        score = corpus.parse(name)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            truth = perform(score, seed=seed, right_parts=right_parts, max_bars=args.bars)
            notes = truth.performance.notes
            label = name.split("/")[-1] + f" s{seed}"
            grid, meter, hands, fifths = baseline_analysis(notes)
            rows.append({"piece": label, "input": "120 bpm", **measure(truth, notes, grid, meter, hands, fifths)})
            analysis = analyse(truth.performance, warn=False)
            rows.append({"piece": label, "input": "MIDI", **from_analysis(truth, analysis)})
            if number < args.audio and seed == args.first_seed:
                transcribed = transcribe_audio(truth)
                from pianomtl.core.midi import Performance

                analysis = analyse(Performance(transcribed, []), warn=False)
                rows.append({"piece": label, "input": "audio", **from_analysis(truth, analysis)})
            print(f"{label}: done ({time.time() - started:.0f} s)", file=sys.stderr)
    rows.sort(key=lambda r: ({"120 bpm": 0, "MIDI": 1, "audio": 2}[r["input"]], r["piece"]))
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
