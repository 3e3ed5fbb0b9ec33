"""Decoding activations into notes and pedal, and the mir_eval note scores."""

from __future__ import annotations

import mir_eval
import numpy as np
import pytest

from conftest import clip_performance
from pianomtl.constants import FPS, MIN_KEY, N_KEYS
from pianomtl.core.midi import Note, PedalEvent, Performance, sustain_notes
from pianomtl.core.scoring import aggregate_scores, note_scores
from pianomtl.core.targets import compute_labels, to_float
from pianomtl.train.tuning import pedal_frame_counts, tune
from pianomtl.transcription.decoders import (
    DecoderParams,
    decode,
    decode_notes,
    decode_pedal,
    pedal_down_frames,
    pick_onsets,
)
from test_planted import causal, offline


def perfect_activations(performance: Performance, seconds: float) -> dict[str, np.ndarray]:
    """The training targets of a performance, used as if a perfect network had output them."""
    return to_float(compute_labels(performance, round(seconds * FPS)))


def empty_activations(n_frames: int) -> dict[str, np.ndarray]:
    acts = {t: np.zeros((n_frames, N_KEYS), np.float32) for t in ("on", "int", "off", "vel")}
    acts["sus"] = np.zeros((n_frames, 1), np.float32)
    return acts


def test_perfect_activations_give_the_reference_back() -> None:
    performance = clip_performance()
    decoded = decode(perfect_activations(performance, 3.0))
    scores = note_scores(performance, decoded.notes)
    assert scores["note_f1"] == pytest.approx(1.0)
    assert scores["note_offset_f1"] == pytest.approx(1.0)
    assert scores["note_offset_velocity_f1"] == pytest.approx(1.0)
    reference = sustain_notes(performance)
    assert len(decoded.notes) == len(reference)
    for ref, est in zip(reference, decoded.notes, strict=True):
        assert est.key == ref.key
        assert abs(est.onset - ref.onset) <= 0.5 / FPS + 1e-9
        assert abs(est.offset - ref.offset) <= 0.5 / FPS + 1e-9  # the pedal-extended offset
        assert abs(est.velocity - ref.velocity) <= 1
    # the pedal goes down at 1.25 s and up at 1.90 s
    assert [e.value for e in decoded.pedal] == [127, 0]
    assert decoded.pedal[0].time == pytest.approx(1.25, abs=0.011)
    assert decoded.pedal[1].time == pytest.approx(1.90, abs=0.011)


def test_re_struck_key_ends_the_held_note() -> None:
    # key 60 struck three times under the pedal; 120 ms apart is 6 frames
    notes = [Note(60, 0.20, 1.00, 80), Note(60, 0.32, 1.00, 60), Note(60, 0.60, 0.90, 100)]
    performance = Performance(notes, [PedalEvent(0.0, 127), PedalEvent(1.5, 0)])
    decoded = decode_notes(perfect_activations(performance, 2.0))
    assert [n.key for n in decoded] == [60, 60, 60]
    assert [n.onset for n in decoded] == pytest.approx([0.20, 0.32, 0.60])
    assert [n.offset for n in decoded] == pytest.approx([0.32, 0.60, 1.50])  # each cut by the next
    assert [n.velocity for n in decoded] == [80, 60, 100]
    assert note_scores(performance, decoded)["note_offset_f1"] == pytest.approx(1.0)


def test_onset_plateau_counts_once_and_close_peaks_merge() -> None:
    on = np.zeros((40, 1))
    on[10:13, 0] = 0.9  # a widened label: one onset in the middle
    on[20, 0], on[21, 0], on[22, 0] = 0.7, 0.4, 0.8  # two peaks 2 frames apart: one onset (the higher)
    on[30, 0] = 0.45  # below threshold
    on[39, 0] = 0.6  # at the last frame
    assert pick_onsets(on, 0.5, merge_frames=3)[0].tolist() == [11, 22, 39]
    assert pick_onsets(on, 0.5, merge_frames=1)[0].tolist() == [11, 20, 22, 39]


def test_short_notes_and_notes_sounding_at_the_end() -> None:
    acts = empty_activations(50)
    acts["on"][10, 5] = 0.9  # onset with no frame activation at all: gets the minimum length
    acts["vel"][11, 5] = 0.5  # velocity one frame after the onset peak still counts
    acts["on"][45, 7] = 0.9  # note still sounding when the recording ends
    acts["int"][45:, 7] = 0.9
    params = DecoderParams(min_frames=2)
    notes = decode_notes(acts, params)
    assert notes[0] == Note(MIN_KEY + 5, 10 / FPS, 12 / FPS, 64)
    assert notes[1].key == MIN_KEY + 7
    assert notes[1].offset == pytest.approx(50 / FPS)
    assert notes[1].velocity == 1  # velocity is clipped to 1–127


def test_offset_head_ends_a_note_before_int_drops() -> None:
    acts = empty_activations(60)
    acts["on"][10, 0] = 1.0
    acts["int"][10:50, 0] = 1.0
    acts["off"][29:32, 0] = 0.8  # offset plateau around frame 30
    acts["off"][11, 0] = 0.9  # an offset right after the onset is ignored (minimum duration)
    assert decode_notes(acts)[0].offset == pytest.approx(30 / FPS)
    assert decode_notes(acts, DecoderParams(offset_threshold=1.01))[0].offset == pytest.approx(50 / FPS)


def test_empty_activations_give_no_notes_and_scores_do_not_crash() -> None:
    for n_frames in (0, 1, 100):
        performance = decode(empty_activations(n_frames))
        assert performance.notes == [] and performance.pedal == []
    scores = note_scores(Performance(), [])
    assert scores["note_f1"] == 0.0 and scores["n_reference"] == 0
    scores = note_scores(clip_performance(), [])
    assert scores["note_recall"] == 0.0
    scores = note_scores(Performance(), [Note(60, 0.0, 0.5, 64)])
    assert scores["note_precision"] == 0.0


def test_pedal_hysteresis_and_half_pedal() -> None:
    sus = np.array([0.0, 0.7, 0.55, 0.45, 0.7, 0.3, 0.0, 0.5, 0.5])[:, None]
    events = decode_pedal(sus, DecoderParams(pedal_high=0.6, pedal_low=0.4))
    assert events == [PedalEvent(0.5 / FPS, 127), PedalEvent(4.5 / FPS, 0)]
    half = decode_pedal(sus, DecoderParams(half_pedal=True, pedal_step=8))
    values = [e.value for e in half]
    assert values[0] == 89 and 64 in values and values[-1] == 64
    assert all(abs(b - a) >= 8 or b in (0, 127) for a, b in zip([0, *values], values, strict=False))


def test_half_pedal_events_exactly() -> None:
    """Every rule of the half-pedal curve, frame by frame: a new value when it moved by ``pedal_step``
    or more (exactly 8 counts), or when it reaches 0 or 127; values clipped to 0–127; times half-way."""
    cc = [0, -20, 1, 64, 67, 76, 84, 120, 127, 123, 127, 6, 0, 4, 140]  # CC64 counts the curve stands for
    sus = (np.array(cc, dtype=np.float64) / 127)[:, None]
    events = decode_pedal(sus, DecoderParams(half_pedal=True, pedal_step=8))
    # 84: moved by exactly 8; 127 after 120 and 0 after 6: moved less, but reached an end
    expected = [(3, 64), (5, 76), (6, 84), (7, 120), (8, 127), (11, 6), (12, 0), (14, 127)]
    assert events == [PedalEvent((t - 0.5) / FPS, value) for t, value in expected]
    assert decode_pedal(np.array([[1.0]]), DecoderParams(half_pedal=True)) == [PedalEvent(0.0, 127)]
    acts = empty_activations(10)
    del acts["sus"]  # a model without a pedal head: no pedal events
    assert decode(acts).pedal == []


def test_pedal_down_frames_agree_with_the_pedal_events() -> None:
    sus = np.array([0.0, 0.7, 0.55, 0.45, 0.7, 0.3, 0.0, 0.7, 0.7])[:, None]
    params = DecoderParams(pedal_high=0.6, pedal_low=0.4)
    down = pedal_down_frames(sus, params)
    assert down.tolist() == [False, True, True, True, True, False, False, True, True]
    events = decode_pedal(sus, params)
    assert [(round(e.time * FPS + 0.5), e.value) for e in events] == [(1, 127), (5, 0), (7, 127)]


def decaying_note_under_the_pedal() -> tuple[dict[str, np.ndarray], Performance]:
    """Key 60 struck at 0.2 s and released at 0.5 s with the pedal down 0.1–1.6 s; the
    ``int`` output fades as a pedal-held note's sound does (0.9 → 0.02 by 1.6 s)."""
    performance = Performance([Note(60, 0.2, 0.5, 80)], [PedalEvent(0.1, 127), PedalEvent(1.6, 0)])
    acts = empty_activations(100)
    key = 60 - MIN_KEY
    acts["on"][9:12, key] = 0.9
    acts["vel"][9:12, key] = 80 / 127
    acts["int"][10:80, key] = np.geomspace(0.9, 0.02, 70)
    acts["sus"][5:80, 0] = 0.9
    return acts, performance


def test_a_lower_frame_threshold_under_the_pedal_holds_decaying_notes() -> None:
    acts, performance = decaying_note_under_the_pedal()
    plain = DecoderParams(frame_threshold=0.2)
    [short] = decode_notes(acts, plain)
    assert short.offset < 0.9  # int fell below 0.2 long before the pedal came up
    [held] = decode_notes(acts, DecoderParams(frame_threshold=0.2, pedal_frame_threshold=0.01))
    assert held.offset == pytest.approx(1.6)  # held until int left the pedal-down span at 80 frames
    no_pedal = dict(acts, sus=np.zeros_like(acts["sus"]))
    [unheld] = decode_notes(no_pedal, DecoderParams(frame_threshold=0.2, pedal_frame_threshold=0.01))
    assert unheld.offset == short.offset  # without a decoded pedal the key-down threshold applies
    assert note_scores(performance, [held])["note_offset_f1"] == 1.0
    assert note_scores(performance, [short])["note_offset_f1"] == 0.0
    with pytest.raises(ValueError, match="pedal_frame_threshold"):
        DecoderParams(pedal_frame_threshold=1.5)


def test_tune_picks_the_pedal_hysteresis_and_the_pedal_frame_threshold() -> None:
    acts, performance = decaying_note_under_the_pedal()
    acts["sus"][5:80, 0] = 0.45  # a shy pedal head: only a hysteresis below 0.45 hears it
    grid = {"onset_grid": (0.5,), "frame_grid": (0.2,), "offset_grid": (1.01,), "methods": ["threshold"]}
    plain = tune([acts], [performance], pedal_frame_grid=(None,), **grid)
    params = tune([acts], [performance], pedal_frame_grid=(None, 0.01), **grid)
    assert (params.params.pedal_high, params.params.pedal_low) == (0.4, 0.2)
    assert pedal_frame_counts([acts], [performance], params.params).scores()["f1"] == pytest.approx(1.0, abs=0.03)
    assert params.params.pedal_frame_threshold == 0.01
    assert params.scores["threshold"]["note_offset_f1"] == 1.0 > plain.scores["threshold"]["note_offset_f1"]


def test_scores_match_mir_eval_directly() -> None:
    reference = Performance([Note(60, 0.0, 1.0, 80), Note(64, 0.5, 1.0, 80), Note(67, 1.0, 2.0, 80)], [])
    estimate = [Note(60, 0.03, 1.0, 80), Note(64, 0.58, 1.0, 80), Note(67, 1.0, 1.5, 80)]
    scores = note_scores(reference, estimate)
    ref = np.array([[n.onset, n.offset] for n in reference.notes])
    est = np.array([[n.onset, n.offset] for n in estimate])
    hz = mir_eval.util.midi_to_hz
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref, hz(np.array([60, 64, 67])), est, hz(np.array([60, 64, 67])), offset_ratio=None
    )
    assert (scores["note_precision"], scores["note_recall"], scores["note_f1"]) == pytest.approx((p, r, f))
    assert scores["note_f1"] == pytest.approx(2 / 3)
    assert scores["note_offset_f1"] == pytest.approx(1 / 3)
    total = aggregate_scores([scores, scores])
    assert total["note_f1"] == pytest.approx(scores["note_f1"]) and total["n_reference"] == 6


def test_decoder_params_round_trip_and_validation() -> None:
    params = DecoderParams(onset_threshold=0.3, half_pedal=True)
    assert DecoderParams.from_dict(params.to_dict()) == params
    with pytest.warns(UserWarning, match="unknown"):
        assert DecoderParams.from_dict({"onset_threshold": 0.3, "future": 1}).onset_threshold == 0.3
    with pytest.raises(ValueError):
        DecoderParams(pedal_low=0.7, pedal_high=0.6)


def test_tune_finds_thresholds_that_fit_scaled_activations() -> None:
    performance = clip_performance()
    acts = perfect_activations(performance, 3.0)
    # a timid network: every probability at most 0.35, so the default 0.5 finds nothing
    timid = {t: (v * 0.35 if t in ("on", "int", "off") else v) for t, v in acts.items()}
    assert decode_notes(timid) == []
    params = tune(
        [timid],
        [performance],
        onset_grid=(0.3, 0.5),
        frame_grid=(0.3, 0.5),
        offset_grid=(0.3, 1.01),
        methods=["threshold"],
    ).params
    assert params.method == "threshold" and params.onset_threshold == 0.3 and params.frame_threshold == 0.3
    assert note_scores(performance, decode_notes(timid, params))["note_offset_f1"] == pytest.approx(1.0)


def test_onset_threshold_near_ties_go_to_the_neutral_threshold() -> None:
    from pianomtl.train.tuning import _one_standard_error_choice

    def scores(f1: float, n: int = 1000) -> dict[str, float]:
        return {"note_f1": f1, "n_reference": float(n)}

    # standard error at F1 0.952 over 1,000 notes: 0.0068; 0.5 is within it, 0.3 is not
    assert _one_standard_error_choice({0.3: scores(0.90), 0.5: scores(0.947), 0.7: scores(0.952)}) == 0.5
    # with 100,000 notes the error is 0.0007 and the same gap decides
    big = {0.3: scores(0.90, 100_000), 0.5: scores(0.947, 100_000), 0.7: scores(0.952, 100_000)}
    assert _one_standard_error_choice(big) == 0.7
    # equal distance from 0.5: the better score
    assert _one_standard_error_choice({0.4: scores(0.950), 0.6: scores(0.951)}) == 0.6


HMM = DecoderParams(method="hmm", hmm_onset_prior=0.3, hmm_end_prior=0.3)


@pytest.mark.parametrize("pedal", [True, False])
def test_hmm_gives_perfect_activations_back(pedal: bool) -> None:
    performance = clip_performance()
    if not pedal:
        performance = Performance(performance.notes, [])
    decoded = decode_notes(perfect_activations(performance, 3.0), HMM)
    scores = note_scores(performance, decoded)
    assert scores["note_f1"] == pytest.approx(1.0) and scores["note_offset_f1"] == pytest.approx(1.0)
    for ref, est in zip(sustain_notes(performance), decoded, strict=True):
        assert est.key == ref.key and abs(est.onset - ref.onset) <= 0.5 / FPS + 1e-9
        assert abs(est.velocity - ref.velocity) <= 1


def test_hmm_splits_re_struck_keys() -> None:
    notes = [Note(60, 0.20, 1.00, 80), Note(60, 0.32, 1.00, 60), Note(60, 0.60, 0.90, 100)]
    performance = Performance(notes, [PedalEvent(0.0, 127), PedalEvent(1.5, 0)])
    decoded = decode_notes(perfect_activations(performance, 2.0), HMM)
    assert [n.onset for n in decoded] == pytest.approx([0.20, 0.32, 0.60])
    assert [n.offset for n in decoded] == pytest.approx([0.32, 0.60, 1.50])


def test_hmm_weighs_onset_evidence_against_the_frame_head() -> None:
    acts = empty_activations(60)
    key = 60 - MIN_KEY
    acts["on"][9:12, key] = 0.35  # a weak onset ...
    acts["int"][10:40, key] = 0.95  # ... followed by a clearly sounding note
    acts["on"][48, key + 2] = 0.7  # a confident onset spike with no sound after it
    acts["vel"][9:12, key] = 0.5
    threshold = decode_notes(acts)
    hmm = decode_notes(acts, HMM)
    assert [(n.key, n.onset) for n in threshold] == [(62, 48 / FPS)]
    assert [(n.key, n.onset, n.offset, n.velocity) for n in hmm] == [(60, 10 / FPS, 40 / FPS, 64)]


def test_hmm_on_silence_and_empty_input() -> None:
    assert decode_notes(empty_activations(100), HMM) == []
    assert decode_notes(empty_activations(0), HMM) == []


def test_tune_compares_both_decoders_and_keeps_the_better() -> None:
    performance = clip_performance()
    acts = perfect_activations(performance, 3.0)
    noisy = dict(acts)
    noisy["on"] = np.clip(acts["on"] * 0.45 + 0.05 * (acts["int"] > 0), 0, 1)  # weak onsets, sound after them
    result = tune([noisy], [performance], onset_grid=(0.5, 0.6), frame_grid=(0.5,), offset_grid=(1.01,))
    assert set(result.scores) == {"threshold", "hmm"}
    assert result.scores["threshold"]["note_f1"] == 0.0  # no onset peak reaches 0.5
    assert result.params.method == "hmm" and result.scores["hmm"]["note_f1"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"method": "viterbi"}, "method must be one of"),
        ({"hmm_onset_prior": 0.0}, "hmm_onset_prior must be in"),
        ({"hmm_onset_prior": 0.6, "hmm_end_prior": 0.5}, "must be below 1"),
    ],
)
def test_bad_hmm_parameters_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DecoderParams(**changes)


def _reference_viterbi(on: np.ndarray, frame: np.ndarray, params: DecoderParams) -> np.ndarray:
    """Textbook Viterbi, one key at a time, from the model's definition (not the decoder's code)."""
    strike, end = params.hmm_onset_prior, params.hmm_end_prior
    with np.errstate(divide="ignore"):
        log_a = np.log(np.array([[1 - strike, strike, 0], [0, 0.5, 0.5], [end, strike, 1 - strike - end]]))
    on, frame = np.clip(on, 1e-6, 1 - 1e-6), np.clip(frame, 1e-6, 1 - 1e-6)
    log_b = np.stack([np.log((1 - on) * (1 - frame)), np.log(on), np.log((1 - on) * frame)], axis=-1)
    paths = np.zeros(on.shape, dtype=np.int8)
    for key in range(on.shape[1]):
        delta = np.log([1 - 2e-6, 1e-6, 1e-6]) + log_b[0, key]
        pointers = np.zeros((len(on), 3), dtype=int)
        for t in range(1, len(on)):
            scores = delta[:, None] + log_a
            pointers[t] = scores.argmax(axis=0)
            delta = scores.max(axis=0) + log_b[t, key]
        state = int(delta.argmax())
        for t in range(len(on) - 1, -1, -1):
            paths[t, key] = state
            state = pointers[t, state]
    return paths


def noisy_activations(seconds: float = 3.0, seed: int = 0) -> dict[str, np.ndarray]:
    """The clip's targets blurred and noised like a network's output."""
    rng = np.random.default_rng(seed)
    acts = perfect_activations(clip_performance(), seconds)
    for task in ("on", "int", "off"):
        acts[task] = np.clip(0.8 * acts[task] + 0.25 * rng.random(acts[task].shape) ** 3, 0, 1)
    return acts


@pytest.mark.parametrize("seed", [0, 1])
def test_hmm_viterbi_equals_a_textbook_viterbi(seed: int) -> None:
    from pianomtl.transcription.decoders import hmm_states

    acts = noisy_activations(seed=seed)
    expected = _reference_viterbi(acts["on"], acts["int"], HMM)
    np.testing.assert_array_equal(hmm_states(acts, HMM, chunk_frames=10**9), expected)


def test_chunked_hmm_equals_one_pass() -> None:
    from pianomtl.transcription.decoders import hmm_states

    acts = noisy_activations(seconds=6.0, seed=2)  # 300 frames: the clip, then silence with noise
    whole = hmm_states(acts, HMM, chunk_frames=10**9)
    for chunk, margin in ((40, 25), (64, 50), (100, 10)):
        np.testing.assert_array_equal(hmm_states(acts, HMM, chunk_frames=chunk, margin_frames=margin), whole)


def test_note_scorer_scores_the_decoded_frames_and_pedal(tmp_path) -> None:
    from types import SimpleNamespace

    from pianomtl.core.midi import write_midi
    from pianomtl.train.evaluate import NoteScorer

    performance = clip_performance()
    write_midi(tmp_path / "clip.mid", performance)
    recording = SimpleNamespace(entry=SimpleNamespace(midi_path=tmp_path / "clip.mid", name="clip"))
    scorer = NoteScorer(DecoderParams())
    scorer(recording, perfect_activations(performance, 3.0))
    perfect = scorer.results()
    assert perfect["note"]["f1"] == pytest.approx(1.0)
    assert perfect["transcription_frames"]["f1"] == pytest.approx(1.0)
    assert perfect["pedal"]["f1"] == pytest.approx(1.0)

    deaf = perfect_activations(performance, 3.0)
    deaf["int"][75:] = 0.0  # every note ends at 1.5 s; pedal never pressed
    deaf["sus"][:] = 0.0
    scorer = NoteScorer(DecoderParams())
    scorer(recording, deaf)
    partial = scorer.results()
    assert partial["transcription_frames"]["precision"] == pytest.approx(1.0)
    assert 0.0 < partial["transcription_frames"]["recall"] < 1.0
    assert partial["pedal"]["recall"] == 0.0


def test_velocity_rank_correlation_judges_order_within_a_recording() -> None:
    """ρ is 1 for any monotone map of the true velocities (another piano's curve), −1 reversed,
    ties get average ranks (scipy's Spearman agrees), and unmatched notes do not count."""
    from scipy.stats import spearmanr

    true = [20, 40, 60, 80, 100, 100, 30]
    reference = [Note(60 + i, 0.5 * i, 0.5 * i + 0.3, v) for i, v in enumerate(true)]

    def estimate(velocities: list[int]) -> list[Note]:
        return [n._replace(velocity=v) for n, v in zip(reference, velocities, strict=True)]

    squashed = [int(40 + 0.3 * v) for v in true]  # a softer piano: same order, other spacing
    assert note_scores(reference, estimate(squashed))["velocity_rho"] == pytest.approx(1.0)
    reversed_order = [128 - v for v in true]
    assert note_scores(reference, estimate(reversed_order))["velocity_rho"] == pytest.approx(-1.0)
    noisy = [21, 35, 70, 64, 90, 99, 41]
    scores = note_scores(reference, estimate(noisy))
    assert scores["velocity_rho"] == pytest.approx(spearmanr(true, noisy).statistic)
    assert scores["velocity_pairs"] == len(true)
    missing_one = estimate(noisy)[:-1]  # the unmatched reference note is left out of ρ
    assert note_scores(reference, missing_one)["velocity_pairs"] == len(true) - 1
    total = aggregate_scores([scores, note_scores(reference, estimate(reversed_order))])
    assert total["velocity_rho"] == pytest.approx((scores["velocity_rho"] - 1.0) / 2)


@pytest.mark.parametrize(
    "params",
    [
        DecoderParams(),
        DecoderParams(onset_threshold=0.375, frame_threshold=0.625, offset_threshold=0.25, min_frames=3),
        DecoderParams(onset_merge_frames=4, offset_threshold=2.0, pedal_high=0.5, pedal_low=0.5),
        DecoderParams(pedal_frame_threshold=0.25, min_frames=1, onset_merge_frames=1, pedal_high=0.75),
    ],
    ids=["default", "other-thresholds", "merge4-no-offsets", "pedal-threshold"],
)
def test_causal_decoder_equals_the_offline_decoder(params: DecoderParams) -> None:
    """The live stream's decoder decides frame by frame exactly what the offline decoder decides.

    Noisy activations rounded to eighths: plateaus, ties between peaks, and values exactly on
    the thresholds everywhere (the edges a causal rewrite gets wrong); fed 1, 7 and all frames
    at a time."""
    rng = np.random.default_rng(5)
    acts = noisy_activations(seconds=4.0, seed=3)
    acts["vel"] = rng.random(acts["vel"].shape).astype(np.float32)
    acts["sus"] = np.clip(acts["sus"] + 0.3 * rng.random(acts["sus"].shape), 0, 1)
    for task in ("on", "int", "off", "sus"):
        acts[task] = (np.round(acts[task] * 8) / 8).astype(np.float32)
    expected = offline(acts, params)
    assert len(expected[0]) >= 8 and expected[1]  # notes and pedal to compare
    for block in (1, 7, len(acts["on"])):
        assert causal(acts, params, block) == expected, block


# ---------------------------------------------------------------- details mutation testing found unguarded (#29)


def test_small_inputs_and_return_types() -> None:
    from pianomtl.transcription.decoders import find_peaks

    for values in ([], [1.0], [0.0, 1.0]):  # fewer than 3 samples: no maximum with two lower neighbours
        peaks = find_peaks(np.array(values), 0.5)
        assert peaks.dtype == np.int64 and peaks.tolist() == []
    onsets = pick_onsets(np.zeros((5, 3), np.float32), 0.5)
    assert len(onsets) == 3 and all(o.dtype == np.int64 and len(o) == 0 for o in onsets)
    on = np.zeros((12, 1), np.float32)
    on[[3, 5], 0] = 1.0  # two peaks 2 frames apart: two onsets with the default merge_frames (2)
    found = pick_onsets(on, 0.5)[0]
    assert found.dtype == np.int64 and found.tolist() == [3, 5]
    down = pedal_down_frames(np.zeros((0, 1), np.float32))
    assert down.dtype == bool and down.shape == (0,)
    assert pedal_down_frames(np.array([[0.0], [1.0]])).dtype == bool


def test_bad_activation_shapes_name_the_head() -> None:
    acts = empty_activations(5)
    acts["vel"] = np.zeros((5, 3), np.float32)
    with pytest.raises(ValueError, match=r"activations\['vel'\] has shape \(5, 3\), expected \(5, 88\)"):
        decode(acts)


def test_thresholds_compare_in_float64() -> None:
    """float32 activations against the thresholds as given (float64): 0.7 in float32 is 0.69999999,
    below an onset threshold of 0.7; 0.3 in float32 is 0.30000001, above a pedal_high of 0.3."""
    acts = empty_activations(12)
    acts["on"][5, 0] = np.float32(0.7)
    acts["int"][5:9, 0] = 1.0
    acts["sus"][3:, 0] = np.float32(0.3)
    params = DecoderParams(onset_threshold=0.7, pedal_high=0.3, pedal_low=0.25)
    performance = decode(acts, params)
    assert performance.notes == [] and [e.value for e in performance.pedal] == [127]
    assert causal(acts, params) == offline(acts, params)
    acts["on"][5, 0] = np.float32(0.7000001)
    assert len(decode(acts, params).notes) == 1


def test_offset_threshold_one_still_finds_certain_offsets_and_nan_pedal_is_up() -> None:
    acts = empty_activations(20)
    acts["on"][2, 0] = 1.0
    acts["int"][2:15, 0] = 1.0
    acts["off"][8, 0] = 1.0  # a certain offset: at 1.0 it still counts (only above 1 switches offsets off)
    assert [round(n.offset * FPS) for n in decode(acts, DecoderParams(offset_threshold=1.0)).notes] == [8]
    assert [round(n.offset * FPS) for n in decode(acts, DecoderParams(offset_threshold=1.01)).notes] == [15]
    acts["sus"][:, 0] = np.nan
    assert decode(acts).pedal == [] and not pedal_down_frames(acts["sus"]).any()


def test_velocity_window_at_the_first_frame() -> None:
    acts = empty_activations(10)
    acts["on"][0, 0] = 1.0
    acts["int"][0:5, 0] = 1.0
    acts["vel"][0, 0], acts["vel"][1, 0] = 0.9, 0.2  # the onset frame itself is the loudest
    assert [n.velocity for n in decode(acts).notes] == [114]


def test_unknown_decoder_parameters_are_named_in_one_warning() -> None:
    with pytest.warns(UserWarning, match=r"ignoring unknown decoder parameters: colour, size$") as caught:
        params = DecoderParams.from_dict({"onset_threshold": 0.25, "size": 1, "colour": 2})
    assert params == DecoderParams(onset_threshold=0.25) and len(caught) == 1
