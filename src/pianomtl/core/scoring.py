"""**Note-level** scores of a transcription against a reference, with the field's conventions.

Two modules score, by what they compare: this one compares *notes* (decoded notes
against reference notes); :mod:`pianomtl.core.metrics` compares *frames* (the paper's
framewise P/R/F1 and R², before any decoding).

:func:`note_scores` wraps ``mir_eval`` with the field's conventions: onset tolerance
50 ms; "note" F1 ignores offsets; "note with offset" F1 also needs the offset within
20 % of the note's length or 50 ms; the velocity variant adds
``mir_eval.transcription_velocity``'s velocity match. **Reference offsets are
pedal-extended** (:func:`pianomtl.core.midi.sustain_notes`), the MAESTRO /
Onsets-and-Frames convention, which is also what the ``int`` head is trained on.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np

from pianomtl.core.midi import Note, Performance, sustain_notes

ONSET_TOLERANCE = 0.05
"""Seconds: an estimated onset within this of a reference onset matches (mir_eval default)."""


OFFSET_RATIO = 0.2


OFFSET_MIN_TOLERANCE = 0.05

MEASURES = ("note", "note_offset", "note_offset_velocity")
"""The note-level measures: onsets; onsets and offsets; onsets, offsets and velocity."""


def _mir_eval_arrays(notes: Sequence[Note]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intervals ``[N, 2]`` (s), pitches (Hz) and velocities for mir_eval.

    mir_eval rejects zero-length intervals, so offsets are kept at least 1 ms after onsets.
    """
    import mir_eval

    if not notes:
        return np.zeros((0, 2)), np.zeros(0), np.zeros(0)
    array = np.asarray([(n.onset, n.offset, n.key, n.velocity) for n in notes], dtype=np.float64)
    intervals = np.stack([array[:, 0], np.maximum(array[:, 1], array[:, 0] + 1e-3)], axis=1)
    return intervals, mir_eval.util.midi_to_hz(array[:, 2]), array[:, 3]


def reference_notes(reference: Performance | Sequence[Note], pedal_extended: bool = True) -> list[Note]:
    """The notes a transcription is scored against: pedal-extended by default (MAESTRO)."""
    if isinstance(reference, Performance):
        return sustain_notes(reference) if pedal_extended else list(reference.notes)
    return list(reference)


def note_scores(
    reference: Performance | Sequence[Note],
    estimated_notes: Sequence[Note] | Performance,
    pedal_extended: bool = True,
) -> dict[str, float]:
    """mir_eval note-level precision/recall/F1 of a transcription against a reference.

    ``reference``: a :class:`Performance` (its offsets are pedal-extended with
    :func:`~pianomtl.core.midi.sustain_notes` unless ``pedal_extended=False``) or a list of
    notes used as given. Returns ``note_{precision,recall,f1}`` (onsets within 50 ms),
    ``note_offset_*`` (and offsets within max(20 %, 50 ms)), ``note_offset_velocity_*``
    (and velocity, mir_eval's rule), plus ``n_reference``, ``n_estimated`` and the
    matched counts ``*_matched`` for summing over a corpus (:func:`aggregate_scores`).
    Empty reference or estimate give zeros (no crash).
    """
    import mir_eval

    ref = reference_notes(reference, pedal_extended)
    est = list(estimated_notes.notes if isinstance(estimated_notes, Performance) else estimated_notes)
    ref_intervals, ref_pitches, ref_velocities = _mir_eval_arrays(ref)
    est_intervals, est_pitches, est_velocities = _mir_eval_arrays(est)
    scores: dict[str, float] = {"n_reference": float(len(ref)), "n_estimated": float(len(est))}
    tolerances = {"onset_tolerance": ONSET_TOLERANCE, "offset_min_tolerance": OFFSET_MIN_TOLERANCE}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mir_eval warns about empty note lists
        for name in MEASURES:
            pairs = []
            if len(ref) and len(est) and name == "note_offset_velocity":
                pairs = mir_eval.transcription_velocity.match_notes(
                    ref_intervals, ref_pitches, ref_velocities, est_intervals, est_pitches, est_velocities,
                    offset_ratio=OFFSET_RATIO, **tolerances,
                )  # fmt: skip
            elif len(ref) and len(est):
                offset_ratio = OFFSET_RATIO if name == "note_offset" else None  # "note": onsets only
                pairs = mir_eval.transcription.match_notes(
                    ref_intervals, ref_pitches, est_intervals, est_pitches, offset_ratio=offset_ratio, **tolerances
                )
            scores.update(_prf(name, len(pairs), len(ref), len(est)))
            if name == "note":
                scores.update(velocity_rank_correlation(ref_velocities, est_velocities, pairs))
    return scores


def _prf(name: str, matched: int, n_reference: int, n_estimated: int) -> dict[str, float]:
    precision = matched / n_estimated if n_estimated else 0.0
    recall = matched / n_reference if n_reference else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        f"{name}_precision": precision,
        f"{name}_recall": recall,
        f"{name}_f1": f1,
        f"{name}_matched": float(matched),
    }


def velocity_rank_correlation(
    reference_velocities: np.ndarray, estimated_velocities: np.ndarray, pairs: Sequence[tuple[int, int]]
) -> dict[str, float]:
    """Spearman ρ between the true and estimated velocities of onset-matched notes of one recording.

    Velocity is judged within a recording (mir_eval's velocity match fits a linear map per
    recording), so what a transcriber must get right is the *order and spacing* of the
    velocities inside one piece, whatever piano played it; ρ measures the order.
    Returns ``velocity_rho`` (0 with fewer than 3 pairs or a constant side) and
    ``velocity_pairs`` (the weight of this recording in :func:`aggregate_scores`).
    """
    if len(pairs) < 3:
        return {"velocity_rho": 0.0, "velocity_pairs": 0.0}
    reference_index, estimated_index = np.asarray(pairs, dtype=int).T
    true, estimated = reference_velocities[reference_index], estimated_velocities[estimated_index]
    if np.ptp(true) == 0 or np.ptp(estimated) == 0:
        return {"velocity_rho": 0.0, "velocity_pairs": 0.0}
    rho = np.corrcoef(_ranks(true), _ranks(estimated))[0, 1]
    return {"velocity_rho": float(rho), "velocity_pairs": float(len(pairs))}


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks with ties given their average rank (what Spearman's ρ correlates)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def aggregate_scores(scores: Iterable[dict[str, float]]) -> dict[str, float]:
    """Corpus-level scores: matched, reference and estimated note counts summed first.

    (mir_eval scores one recording; averaging per-recording F1 would weigh a short
    piece like a long one.)
    """
    scores = list(scores)
    n_reference = int(sum(s["n_reference"] for s in scores))
    n_estimated = int(sum(s["n_estimated"] for s in scores))
    total: dict[str, float] = {"n_reference": float(n_reference), "n_estimated": float(n_estimated)}
    for name in MEASURES:
        matched = int(sum(s[f"{name}_matched"] for s in scores))
        total.update(_prf(name, matched, n_reference, n_estimated))
    pairs = sum(s.get("velocity_pairs", 0.0) for s in scores)
    weighted = sum(s.get("velocity_rho", 0.0) * s.get("velocity_pairs", 0.0) for s in scores)
    total["velocity_rho"] = weighted / pairs if pairs else 0.0  # per-recording ρ, weighted by matched notes
    total["velocity_pairs"] = float(pairs)
    return total
