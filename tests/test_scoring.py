"""Note-level scoring checked against independent references: mir_eval called directly, scipy's Spearman ρ.

Written for the mutants of ``core/scoring.py`` that survived the first mutation run (issue #29,
docs/testing.md): exact dictionaries at the edges (fewer than 3 pairs, a constant side), the
pair threshold itself, ties in the ranks, the corpus sums and the arrays handed to mir_eval.
"""

from __future__ import annotations

import mir_eval
import numpy as np
import pytest
from scipy.stats import rankdata, spearmanr

from pianomtl.core.midi import Note, PedalEvent, Performance
from pianomtl.core.scoring import (
    MEASURES,
    _mir_eval_arrays,
    _ranks,
    aggregate_scores,
    note_scores,
    reference_notes,
    velocity_rank_correlation,
)

ZERO = {"velocity_rho": 0.0, "velocity_pairs": 0.0}


def test_velocity_order_needs_three_pairs_and_two_values_on_each_side():
    true, estimated = np.array([10.0, 50.0, 90.0, 120.0]), np.array([20.0, 40.0, 100.0, 101.0])
    assert velocity_rank_correlation(true, estimated, [(0, 0), (1, 1)]) == ZERO
    three = velocity_rank_correlation(true, estimated, [(0, 1), (1, 0), (2, 2)])
    assert three == {"velocity_rho": pytest.approx(spearmanr([10, 50, 90], [40, 20, 100])[0]), "velocity_pairs": 3.0}
    assert velocity_rank_correlation(np.full(4, 64.0), estimated, [(i, i) for i in range(4)]) == ZERO
    assert velocity_rank_correlation(true, np.full(4, 64.0), [(i, i) for i in range(4)]) == ZERO


@pytest.mark.parametrize("seed", range(5))
def test_velocity_order_is_spearmans_rho_with_ties(seed):
    rng = np.random.default_rng(seed)
    true = rng.integers(1, 8, 30).astype(float)  # many ties
    estimated = true + rng.integers(-2, 3, 30)
    pairs = [(i, (i * 7) % 30) for i in range(30)]
    reference, mine = true[[p[0] for p in pairs]], estimated[[p[1] for p in pairs]]
    result = velocity_rank_correlation(true, estimated, pairs)
    assert result["velocity_rho"] == pytest.approx(spearmanr(reference, mine)[0], abs=1e-12)
    assert result["velocity_pairs"] == 30.0
    assert np.array_equal(_ranks(reference), rankdata(reference) - 1)


def test_arrays_for_mir_eval():
    notes = [Note(69, 1.0, 1.0, 80), Note(60, 2.0, 2.5, 30)]  # a zero-length note first
    intervals, pitches, velocities = _mir_eval_arrays(notes)
    assert intervals.tolist() == [[1.0, 1.001], [2.0, 2.5]]
    assert pitches == pytest.approx([440.0, mir_eval.util.midi_to_hz(60)])
    assert velocities.tolist() == [80.0, 30.0]
    empty = _mir_eval_arrays([])
    assert [a.shape for a in empty] == [(0, 2), (0,), (0,)]


def test_reference_notes_extend_by_the_pedal_only_when_asked():
    performance = Performance([Note(60, 0.0, 0.5, 80)], [PedalEvent(0.2, 127), PedalEvent(2.0, 0)])
    assert reference_notes(performance)[0].offset == pytest.approx(2.0)
    assert reference_notes(performance, pedal_extended=False) == [Note(60, 0.0, 0.5, 80)]
    assert reference_notes(tuple(performance.notes)) == [Note(60, 0.0, 0.5, 80)]


def _notes(rng: np.random.Generator, n: int) -> list[Note]:
    onsets = np.sort(rng.uniform(0, 10, n))
    return [Note(int(k), float(t), float(t + d), int(v)) for k, t, d, v in
            zip(rng.integers(40, 80, n), onsets, rng.uniform(0.1, 1.0, n), rng.integers(20, 120, n), strict=True)]


@pytest.mark.parametrize("seed", range(3))
def test_note_scores_equal_mir_eval_called_directly(seed):
    rng = np.random.default_rng(seed)
    reference = _notes(rng, 40)
    def moved(n: Note) -> Note:
        onset = n.onset + float(rng.uniform(-0.07, 0.07))
        offset = n.offset + float(rng.uniform(-0.3, 0.3))
        return Note(n.key, onset, offset, int(np.clip(n.velocity + rng.integers(-30, 30), 1, 127)))

    estimated = [moved(n) for n in reference[5:]] + _notes(rng, 6)
    estimated = [n._replace(offset=max(n.offset, n.onset + 0.01)) for n in estimated]
    scores = note_scores(reference, estimated)
    ri, rp, rv = _mir_eval_arrays(reference)
    ei, ep, ev = _mir_eval_arrays(estimated)
    expected = {
        "note": mir_eval.transcription.precision_recall_f1_overlap(ri, rp, ei, ep, offset_ratio=None)[:3],
        "note_offset": mir_eval.transcription.precision_recall_f1_overlap(ri, rp, ei, ep)[:3],
        "note_offset_velocity": mir_eval.transcription_velocity.precision_recall_f1_overlap(ri, rp, rv, ei, ep, ev)[:3],
    }
    for name in MEASURES:
        got = (scores[f"{name}_precision"], scores[f"{name}_recall"], scores[f"{name}_f1"])
        assert got == pytest.approx(expected[name]), name
        assert scores[f"{name}_matched"] == pytest.approx(scores[f"{name}_precision"] * len(estimated))
    assert (scores["n_reference"], scores["n_estimated"]) == (40.0, float(len(estimated)))


def test_empty_sides_score_zero():
    notes = [Note(60, 0.0, 0.5, 80)]
    for reference, estimated in (([], notes), (notes, []), ([], [])):
        scores = note_scores(reference, estimated)
        assert all(scores[f"{m}_{k}"] == 0.0 for m in MEASURES for k in ("precision", "recall", "f1", "matched"))


def test_corpus_scores_sum_counts_and_weigh_rho_by_pairs():
    first = {"n_reference": 10.0, "n_estimated": 8.0, "velocity_rho": 0.5, "velocity_pairs": 6.0}
    second = {"n_reference": 30.0, "n_estimated": 32.0, "velocity_rho": 0.9, "velocity_pairs": 2.0}
    for name, (a, b) in zip(MEASURES, ((6, 20), (4, 10), (2, 5)), strict=True):
        first[f"{name}_matched"], second[f"{name}_matched"] = float(a), float(b)
    total = aggregate_scores([first, second])
    assert (total["n_reference"], total["n_estimated"]) == (40.0, 40.0)
    assert total["note_precision"] == pytest.approx(26 / 40) and total["note_recall"] == pytest.approx(26 / 40)
    assert total["note_offset_f1"] == pytest.approx(14 / 40)
    assert total["note_offset_velocity_matched"] == 7.0
    assert total["velocity_rho"] == pytest.approx((0.5 * 6 + 0.9 * 2) / 8) and total["velocity_pairs"] == 8.0
    assert aggregate_scores([{**first, "velocity_pairs": 0.0}])["velocity_rho"] == 0.0


def test_note_scores_take_a_performance_on_either_side_and_extend_only_when_asked():
    reference = Performance([Note(60, 0.0, 0.5, 80)], [PedalEvent(0.2, 127), PedalEvent(2.0, 0)])
    estimate = Performance([Note(60, 0.01, 0.52, 80)], [])
    extended = note_scores(reference, estimate)  # the reference note lasts to the pedal lift: offset missed
    assert extended["note_f1"] == 1.0 and extended["note_offset_f1"] == 0.0
    as_played = note_scores(reference, estimate, pedal_extended=False)
    assert as_played["note_offset_f1"] == 1.0 and as_played["note_offset_velocity_f1"] == 1.0


def test_corpus_scores_without_velocity_entries():
    """Score dictionaries from before the velocity order existed (no velocity keys) sum as zero pairs."""
    old = {"n_reference": 4.0, "n_estimated": 4.0, **{f"{name}_matched": 2.0 for name in MEASURES}}
    total = aggregate_scores([old, {**old, "velocity_rho": 0.8, "velocity_pairs": 5.0}])
    assert total["velocity_pairs"] == 5.0 and total["velocity_rho"] == pytest.approx(0.8)
    alone = aggregate_scores([old])
    assert (alone["velocity_rho"], alone["velocity_pairs"]) == (0.0, 0.0)
