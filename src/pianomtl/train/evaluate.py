"""Score a checkpoint on a cached split: the paper's framewise measures and note-level mir_eval.

Framewise (paper eq. 1–6): precision, recall and F1 of on/int/off with the counts
summed over all frames and keys of the split, at one threshold (0.5 unless given),
and R² = 1 − SSE/SST of vel/sus over all frames — computed by
:func:`pianomtl.train.loop.evaluate_recordings`, exactly what training validates with.

Note-level (what the field compares, mir_eval with 50 ms onset tolerance): note F1
(onsets), note-with-offset F1 (offset within 20 % of the note or 50 ms) and
note-with-offset-and-velocity F1, after decoding the activations to notes with
:mod:`pianomtl.transcription.decoders`. References are the cache entries' MIDI files with offsets
extended by the sustain pedal (the MAESTRO convention, same as the training
targets). Note counts (matched, reference, estimated) are summed over the
recordings before dividing, so a long piece weighs more than a short one, like the
framewise measures. The decoder uses a bundle's tuned thresholds, or its defaults
(0.5) for a training checkpoint.

Two framewise measures of the *decoded* output, since that is what a user gets:
"transcription frames" rasterises the decoded notes exactly as the ``int`` targets
are rasterised and scores them against those targets (P/R/F1, counts summed; the
counterpart of the field's mir_eval multi-pitch "frame F1"), and "pedal" scores the
decoded pedal-down frames against CC64 above 64.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from pianomtl.constants import BINARY_TASKS, REGRESSION_TASKS
from pianomtl.core.metrics import DEFAULT_THRESHOLD, BinaryCounts, headline
from pianomtl.core.midi import Performance, read_midi
from pianomtl.core.scoring import aggregate_scores, note_scores
from pianomtl.core.targets import compute_labels, to_float
from pianomtl.data.store import open_split
from pianomtl.train.loop import evaluate_recordings
from pianomtl.train.tuning import pedal_frame_counts
from pianomtl.transcription import model_file as bundled
from pianomtl.transcription.decoders import DecoderParams, decode_notes

NOTE_MEASURES = ("note", "note_with_offset", "note_with_offset_velocity")
NOTE_PREFIXES = {"note": "note", "note_with_offset": "note_offset", "note_with_offset_velocity": "note_offset_velocity"}
NOTE_LABELS = {
    "note": "note (onset)",
    "note_with_offset": "note with offset",
    "note_with_offset_velocity": "note with offset & velocity",
    "transcription_frames": "decoded frames (vs int)",
    "pedal": "decoded pedal frames",
}
DECODED_FRAME_MEASURES = ("transcription_frames", "pedal")


class CheckpointError(ValueError):
    """A file is not a checkpoint this program can load."""


def load_for_evaluation(path: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """``(network, info)``: the network stored in ``path`` (in eval mode) and a description of it.

    Named apart from :func:`pianomtl.transcription.model_file.load_model`, which returns
    ``(network, decoder, metadata)``: this one turns its errors into :class:`CheckpointError`
    and folds the decoder into ``info``.

    Accepts ``train.py`` checkpoints and model bundles (through
    :func:`pianomtl.transcription.model_file.load_model`); a bundle's tuned decoder parameters are
    returned as ``info["decoder"]`` (a checkpoint gets the decoder's defaults).
    """
    try:
        model, decoder, metadata = bundled.load_model(path, device=device)
    except ValueError as error:  # bundled.ModelFileError: one line naming the file
        raise CheckpointError(str(error)) from None
    info = {
        "format": metadata.get("format"),
        "model_config": metadata.get("model_config"),
        "step": metadata.get("step", metadata.get("training_step")),
        "decoder": decoder,
    }
    return model, info


# -- note level --------------------------------------------------------------------


class NoteScorer:
    """Decodes each recording's activations and scores the notes against its MIDI file.

    Pedal-extended references (:func:`pianomtl.transcription.note_scores`); :meth:`results`
    sums matched/reference/estimated counts over the recordings
    (:func:`pianomtl.transcription.aggregate_scores`).
    """

    def __init__(self, params: DecoderParams | None = None) -> None:
        self.params = params or DecoderParams()
        self.per_recording: dict[str, dict[str, float]] = {}
        self.frame_counts = BinaryCounts()
        self.pedal_counts = BinaryCounts()

    def __call__(self, recording, predictions: dict[str, np.ndarray]) -> None:  # type: ignore[no-untyped-def]
        notes = decode_notes(predictions, self.params)
        reference = read_midi(recording.entry.midi_path)
        self.per_recording[recording.entry.name] = note_scores(reference, notes)
        n_frames = len(predictions["int"])
        target = to_float(compute_labels(reference, n_frames))["int"] > 0
        decoded = to_float(compute_labels(Performance(notes, []), n_frames))["int"] > 0
        self.frame_counts.add(decoded, target)
        if "sus" in predictions:
            pedal_frame_counts([predictions], [reference], self.params, self.pedal_counts)

    def results(self) -> dict[str, dict[str, float]]:
        """``{measure: {precision, recall, f1}}`` over all recordings (counts summed)."""
        total = aggregate_scores(self.per_recording.values())
        return (
            {
                measure: {k: float(total[f"{prefix}_{k}"]) for k in ("precision", "recall", "f1")}
                for measure, prefix in NOTE_PREFIXES.items()
            }
            | {"transcription_frames": self.frame_counts.scores(), "pedal": self.pedal_counts.scores()}
            | {"counts": {"reference": total["n_reference"], "estimated": total["n_estimated"]}}
            | {"velocity": {"rho": total["velocity_rho"], "pairs": total["velocity_pairs"]}}
        )


# -- the whole evaluation -------------------------------------------------------------


def evaluate_checkpoint(
    checkpoint: str | Path,
    cache: str | Path,
    split: str = "validation",
    threshold: float = DEFAULT_THRESHOLD,
    device: str = "cpu",
    notes: bool = True,
) -> dict:
    """Framewise and (if a decoder exists) note-level scores of ``checkpoint`` on ``split``."""
    model, info = load_for_evaluation(checkpoint, device=device)
    recordings = open_split(cache, split)
    scorer = NoteScorer(info.get("decoder")) if notes else None
    framewise = evaluate_recordings(model, recordings, device, threshold=threshold, on_predictions=scorer)
    return {
        "checkpoint": str(checkpoint),
        "model_config": info.get("model_config"),
        "step": info.get("step"),
        "cache": str(cache),
        "split": split,
        "recordings": len(recordings),
        "frames": int(sum(len(r) for r in recordings)),
        "threshold": threshold,
        "framewise": framewise,
        "headline": headline(framewise),
        "note_level": scorer.results() if scorer is not None else None,
        "note_level_per_recording": scorer.per_recording if scorer is not None else None,
        "note_level_conventions": {
            "onset_tolerance_s": 0.05,
            "offset_ratio": 0.2,
            "offset_min_tolerance_s": 0.05,
            "reference_offsets": "pedal-extended (CC64 > 64)",
            "aggregate": "matched/reference/estimated note counts summed over recordings",
            "decoder": info["decoder"].to_dict() if hasattr(info.get("decoder"), "to_dict") else "defaults",
        },
    }


def _number(value: float) -> str:
    return f"{value:.4f}" if math.isfinite(value) else "nan"


def format_report(report: dict) -> str:
    """A plain-text table of the results."""
    lines = [
        f"{report['checkpoint']} on {report['split']}: {report['recordings']} recordings, "
        f"{report['frames']} frames, threshold {report['threshold']:g}",
        "",
        f"{'framewise':<30} {'P':>8} {'R':>8} {'F1':>8} {'R²':>8}",
    ]
    framewise = report["framewise"]
    for task in BINARY_TASKS:
        scores = framewise[task]
        lines.append(
            f"{task:<30} {_number(scores['precision']):>8} {_number(scores['recall']):>8} {_number(scores['f1']):>8}"
        )
    for task in REGRESSION_TASKS:
        lines.append(f"{task:<30} {'':>8} {'':>8} {'':>8} {_number(framewise[task]['r2']):>8}")
    notes = report.get("note_level")
    lines.append("")
    if notes is None:
        lines.append("note level: skipped (--no-notes)")
    else:
        counts = notes.get("counts", {})
        lines.append(
            f"{'note level (mir_eval)':<30} {'P':>8} {'R':>8} {'F1':>8}   "
            f"({counts.get('reference', 0):.0f} reference notes, {counts.get('estimated', 0):.0f} estimated)"
        )
        for measure in (*NOTE_MEASURES, *DECODED_FRAME_MEASURES):
            if measure not in notes:
                continue
            scores = notes[measure]
            lines.append(
                f"{NOTE_LABELS[measure]:<30} {_number(scores['precision']):>8} {_number(scores['recall']):>8} "
                f"{_number(scores['f1']):>8}"
            )
        if "velocity" in notes:
            velocity = notes["velocity"]
            lines.append(
                f"{'velocity order (Spearman ρ)':<30} {_number(velocity['rho']):>8}   "
                f"(onset-matched notes, per recording, weighted by {velocity['pairs']:.0f} pairs)"
            )
    return "\n".join(lines)
