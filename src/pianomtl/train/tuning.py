"""Decoder thresholds tuned on validation data: grids, the one-standard-error rule, pedal and HMM.

Tuning is a training-time job (it needs references); its result, a
:class:`~pianomtl.transcription.decoders.DecoderParams`, is stored in the model file.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from pianomtl.constants import PEDAL_DOWN_ABOVE
from pianomtl.core.metrics import BinaryCounts
from pianomtl.core.midi import Note, Performance
from pianomtl.core.scoring import aggregate_scores, note_scores, reference_notes
from pianomtl.core.targets import pedal_curve
from pianomtl.transcription.decoders import (
    NOTE_METHODS,
    DecoderParams,
    decode_notes,
    notes_from_onsets,
    pedal_down_frames,
    pick_onsets,
)

ONSET_GRID = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


FRAME_GRID = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


OFFSET_GRID = (0.3, 0.5, 0.7, 1.01)  # 1.01: offsets from int alone


HMM_ONSET_GRID = (0.1, 0.2, 0.3, 0.4)


HMM_END_GRID = (0.1, 0.2, 0.3, 0.4)
"""The HMM's best "priors" on validation data are large (docs/experiments.md §6): with
the heads' posteriors read as likelihoods they act as weights against over-confident
emissions rather than as real rates of key strikes."""


PEDAL_FRAME_GRID = (None, 0.1, 0.03, 0.01, 0.003)  # None: no lower threshold under the pedal


PEDAL_GRID = ((0.6, 0.4), (0.5, 0.3), (0.4, 0.2), (0.3, 0.15))  # (pedal_high, pedal_low)


@dataclass
class TuningResult:
    """What :func:`tune` chose and what each decoder scored on the tuning data."""

    params: DecoderParams
    scores: dict[str, dict[str, float]]
    """Per method: corpus note-level scores (:func:`aggregate_scores`) of its best setting."""


def _corpus_scores(
    activations_list: Sequence[dict[str, np.ndarray]], references: Sequence[list[Note]], decode_one
) -> dict[str, float]:
    return aggregate_scores(
        note_scores(reference, decode_one(activations, index))
        for index, (activations, reference) in enumerate(zip(activations_list, references, strict=True))
    )


def tune(
    activations_list: Sequence[dict[str, np.ndarray]],
    reference_performances_list: Sequence[Performance],
    base: DecoderParams | None = None,
    onset_grid: Sequence[float] = ONSET_GRID,
    frame_grid: Sequence[float] = FRAME_GRID,
    offset_grid: Sequence[float] = OFFSET_GRID,
    methods: Sequence[str] = NOTE_METHODS,
    hmm_onset_grid: Sequence[float] = HMM_ONSET_GRID,
    hmm_end_grid: Sequence[float] = HMM_END_GRID,
    pedal_frame_grid: Sequence[float | None] = PEDAL_FRAME_GRID,
    pedal_grid: Sequence[tuple[float, float]] = PEDAL_GRID,
) -> TuningResult:
    """Grid-search each note decoder on validation recordings; keep the best on note F1.

    First the pedal hysteresis (``pedal_high``, ``pedal_low``) that maximises framewise
    F1 of pedal-down frames against the references' CC64 (when the activations have
    ``sus`` and the references have pedal events; it also decides where notes are
    pedal-held).

    Threshold decoder, two stages, because note F1 (onsets only) does not depend on
    the frame and offset thresholds: the onset threshold is the one nearest 0.5 whose
    corpus note F1 is within one standard error of the best
    (:func:`_one_standard_error_choice`); with it fixed, the frame, offset and
    pedal-frame thresholds maximise corpus note-with-offset F1 (ties: nearest 0.5).
    HMM decoder: the two priors maximise note F1, then note-with-offset F1 breaks
    ties, then the first in the grid.
    Scores are summed over recordings (:func:`aggregate_scores`).
    """
    if len(activations_list) != len(reference_performances_list):
        raise ValueError("tune needs one reference performance per activation set")
    unknown = sorted(set(methods) - set(NOTE_METHODS))
    if unknown or not methods:
        raise ValueError(f"methods must be among {', '.join(NOTE_METHODS)}, got {list(methods)}")
    base = base or DecoderParams()
    base = _tune_pedal(activations_list, reference_performances_list, base, pedal_grid)
    references = [reference_notes(p) for p in reference_performances_list]
    candidates: dict[str, tuple[DecoderParams, dict[str, float]]] = {}
    if "threshold" in methods:
        candidates["threshold"] = _tune_threshold(
            activations_list,
            references,
            replace(base, method="threshold"),
            onset_grid,
            frame_grid,
            offset_grid,
            pedal_frame_grid,
        )
    if "hmm" in methods:
        candidates["hmm"] = _tune_hmm(
            activations_list, references, replace(base, method="hmm"), hmm_onset_grid, hmm_end_grid
        )
    best = max(candidates, key=lambda m: (candidates[m][1]["note_f1"], candidates[m][1]["note_offset_f1"]))
    return TuningResult(candidates[best][0], {m: scores for m, (_, scores) in candidates.items()})


def _one_standard_error_choice(scored: dict[float, dict[str, float]]) -> float:
    """The onset threshold nearest 0.5 whose note F1 is within one standard error of the best.

    The one-standard-error rule of model selection (Breiman et al., 1984): validation F1
    is an estimate, ``sqrt(F1 (1 - F1) / n_reference)`` its binomial standard error, and
    thresholds closer than that are not told apart by the data. The top of the F1 curve
    is typically flat across several onset thresholds, so plain argmax picks among
    near-ties by noise; among them the neutral 0.5 of a sigmoid output is preferred,
    since a timbre the network has not heard lowers its onset confidence (measurements
    in docs/experiments.md §7).
    """
    best_f1 = max(scores["note_f1"] for scores in scored.values())
    n_reference = max(scores["n_reference"] for scores in scored.values())
    tolerance = float(np.sqrt(best_f1 * (1.0 - best_f1) / max(n_reference, 1.0)))
    near_best = [t for t, scores in scored.items() if scores["note_f1"] >= best_f1 - tolerance]
    return min(near_best, key=lambda t: (abs(t - 0.5), -scored[t]["note_f1"]))


def _tune_threshold(
    activations_list: Sequence[dict[str, np.ndarray]],
    references: Sequence[list[Note]],
    base: DecoderParams,
    onset_grid: Sequence[float],
    frame_grid: Sequence[float],
    offset_grid: Sequence[float],
    pedal_frame_grid: Sequence[float | None] = (None,),
) -> tuple[DecoderParams, dict[str, float]]:
    def corpus(params: DecoderParams, onsets_per_recording: list[list[np.ndarray]]) -> dict[str, float]:
        return _corpus_scores(
            activations_list, references, lambda acts, i: notes_from_onsets(acts, onsets_per_recording[i], params)
        )

    def onsets_for(threshold: float) -> list[list[np.ndarray]]:
        return [pick_onsets(a["on"], threshold, base.onset_merge_frames) for a in activations_list]

    scored = {
        threshold: corpus(replace(base, onset_threshold=threshold), onsets_for(threshold)) for threshold in onset_grid
    }
    best_onset = _one_standard_error_choice(scored)
    onsets = onsets_for(best_onset)
    best = replace(base, onset_threshold=best_onset)
    grid = sorted(
        itertools.product(frame_grid, offset_grid, pedal_frame_grid),
        key=lambda v: (abs(v[0] - 0.5) + abs(v[1] - 0.5), v[2] is not None),
    )
    candidates = (
        replace(best, frame_threshold=frame, offset_threshold=offset, pedal_frame_threshold=pedal_frame)
        for frame, offset, pedal_frame in grid
        if pedal_frame is None or pedal_frame < frame
    )
    results = ((candidate, corpus(candidate, onsets)) for candidate in candidates)
    return max(results, key=lambda pair: pair[1]["note_offset_f1"], default=(best, {"note_offset_f1": -1.0}))


def pedal_frame_counts(
    activations_list: Sequence[dict[str, np.ndarray]],
    references: Sequence[Performance],
    params: DecoderParams,
    counts: BinaryCounts | None = None,
) -> BinaryCounts:
    """Decoded pedal-down frames against the references' (CC64 above 64), counted over all
    recordings (added to ``counts`` if given)."""
    counts = counts if counts is not None else BinaryCounts()
    for activations, reference in zip(activations_list, references, strict=True):
        estimated = pedal_down_frames(activations["sus"], params)
        counts.add(estimated, pedal_curve(reference.pedal, len(estimated)) > PEDAL_DOWN_ABOVE)
    return counts


def _tune_pedal(
    activations_list: Sequence[dict[str, np.ndarray]],
    references: Sequence[Performance],
    base: DecoderParams,
    pedal_grid: Sequence[tuple[float, float]],
) -> DecoderParams:
    """``base`` with the pedal hysteresis of best pedal-frame F1 (unchanged without pedal data)."""
    if not pedal_grid or not all("sus" in a for a in activations_list) or not any(r.pedal for r in references):
        return base
    candidates = [replace(base, pedal_high=high, pedal_low=low) for high, low in pedal_grid]
    return max(candidates, key=lambda c: pedal_frame_counts(activations_list, references, c).scores()["f1"])


def _tune_hmm(
    activations_list: Sequence[dict[str, np.ndarray]],
    references: Sequence[list[Note]],
    base: DecoderParams,
    onset_grid: Sequence[float],
    end_grid: Sequence[float],
) -> tuple[DecoderParams, dict[str, float]]:
    candidates = (
        replace(base, hmm_onset_prior=onset_prior, hmm_end_prior=end_prior)
        for onset_prior, end_prior in itertools.product(onset_grid, end_grid)
        if onset_prior + end_prior < 1.0
    )
    results = (
        (c, _corpus_scores(activations_list, references, lambda acts, _, params=c: decode_notes(acts, params)))
        for c in candidates
    )
    return max(
        results,
        key=lambda pair: (pair[1]["note_f1"], pair[1]["note_offset_f1"]),
        default=(base, {"note_f1": -1.0, "note_offset_f1": -1.0}),
    )
