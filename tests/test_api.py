"""The public Python API: ``pianomtl.transcribe``/``Transcriber``/``Stream``, decoder options, results.

Uses the bundled model (its decoder is tuned: frame 0.3, pedal 0.4/0.2, pedal frame 0.1,
onset 0.7) on the rendered fixture clip.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import sys
from pathlib import Path

import numpy as np
import pytest

import pianomtl
from pianomtl.transcription.decoders import DecoderParams
from pianomtl.transcription.model_file import DEFAULT_BUNDLE

ROOT = Path(__file__).resolve().parents[1]

DOCTESTED = (
    "pianomtl",
    "pianomtl.transcription.pipeline",
    "pianomtl.transcription.result",
    "pianomtl.transcription.decoders",
    "pianomtl.transcription.formats",
    "pianomtl.core.midi",
)
"""Modules whose docstring examples must run (the API reference shows them)."""


@pytest.mark.parametrize("name", DOCTESTED)
def test_the_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_the_public_names_are_the_real_definitions() -> None:
    from pianomtl.transcription import pipeline, result, stream

    assert pianomtl.transcribe is pipeline.transcribe and pianomtl.Transcriber is pipeline.Transcriber
    assert pianomtl.Stream is stream.Stream and pianomtl.Transcription is result.Transcription
    assert set(pianomtl.__all__) <= set(dir(pianomtl))
    parameters = inspect.signature(pianomtl.transcribe).parameters
    assert {"audio", "sr", "model", "decoder", "decoder_options"} <= set(parameters)
    for name in pianomtl.__all__:
        value = getattr(pianomtl, name)
        if callable(value):
            assert len(value.__doc__ or "") >= 150, f"pianomtl.{name} has no real docstring"
    with pytest.raises(AttributeError, match="no attribute 'transcribbe'"):
        pianomtl.transcribbe  # noqa: B018


def test_import_pianomtl_stays_cheap() -> None:
    import subprocess

    code = "import sys, pianomtl; print(sorted(m for m in ('numpy', 'torch', 'onnxruntime') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_decoder_options_override_only_what_they_name() -> None:
    tuned = DecoderParams(onset_threshold=0.7, frame_threshold=0.3, pedal_high=0.4, pedal_low=0.2)
    changed = tuned.replace(onset_threshold=0.5)
    assert (changed.onset_threshold, changed.frame_threshold, changed.pedal_high, changed.pedal_low) == (
        0.5,
        0.3,
        0.4,
        0.2,
    )
    for bad, message in [
        ({"onset_threshold": 1.5}, r"onset_threshold must be in \[0, 1\], got 1.5"),
        ({"min_frames": 0}, r"min_frames must be in ≥ 1, got 0"),
        ({"min_frames": 2.5}, "min_frames must be a whole number"),
        ({"half_pedal": "yes"}, "half_pedal must be True or False"),
        ({"frame_threshold": float("nan")}, "frame_threshold must be finite"),
        ({"pedal_step": 200}, r"pedal_step must be in \[1, 127\]"),
        ({"frame_treshold": 0.2}, "unknown decoder option 'frame_treshold'; did you mean frame_threshold"),
        ({"colour": 1}, "unknown decoder option 'colour'; choose from onset_threshold, frame_threshold"),
    ]:
        with pytest.raises(ValueError, match=message):
            tuned.replace(**bad)
    limits = DecoderParams.limits()
    assert limits["onset_threshold"].to_dict()["max"] == 1.0 and limits["method"].choices == ("threshold", "hmm")
    for options in ({"onset_threshold": 3}, {"decoder": {"onset_threshold": 3}}):  # checked before the model loads
        with pytest.raises(ValueError, match=r"onset_threshold must be in \[0, 1\], got 3"):
            pianomtl.Transcriber("no-such-model.pt", **options)
    DecoderParams.check_options({"pedal_high": 0.3})  # alone it fits; against a decoder's pedal_low it may not


@pytest.mark.skipif(not DEFAULT_BUNDLE.is_file(), reason="the bundled model (assets/default.pt) is not built yet")
def test_a_partial_decoder_dict_keeps_the_models_tuned_thresholds(rendered_clip) -> None:
    """The issue's case: ``decoder={"onset_threshold": 0.5}`` once reset frame and pedal thresholds to 0.5/0.6/0.4."""
    transcriber = pianomtl.Transcriber()
    tuned = transcriber.decoder
    assert tuned.frame_threshold != DecoderParams().frame_threshold  # the bundled decoder is tuned
    assert tuned.pedal_high != DecoderParams().pedal_high
    expected = tuned.replace(onset_threshold=0.5)
    by_dict = pianomtl.transcribe(rendered_clip.wav, decoder={"onset_threshold": 0.5})
    by_keyword = pianomtl.transcribe(rendered_clip.wav, onset_threshold=0.5)
    assert by_dict.decoder == by_keyword.decoder == expected
    assert by_dict.notes == by_keyword.notes and by_dict.pedal == by_keyword.pedal
    base = transcriber(rendered_clip.wav)
    again = base.redecode(onset_threshold=0.5)
    assert again.decoder == expected and again.notes == by_dict.notes and again.pedal == by_dict.pedal
    assert base.redecode(decoder={"frame_threshold": 0.6}).decoder == tuned.replace(frame_threshold=0.6)
    assert base.redecode(decoder=DecoderParams()).decoder == DecoderParams()  # full params replace whole
    with pytest.raises(ValueError, match="unknown decoder option 'onset'"):
        pianomtl.transcribe(rendered_clip.wav, onset=0.5)
    with pytest.raises(ValueError, match="unknown decoder option 'onset'"):
        pianomtl.transcribe(rendered_clip.wav, decoder={"onset": 0.5})
    stream = pianomtl.Stream(decoder={"onset_threshold": 0.5}, transcriber=transcriber)
    assert stream.params == expected


@pytest.mark.skipif(not DEFAULT_BUNDLE.is_file(), reason="the bundled model (assets/default.pt) is not built yet")
def test_notes_have_names_and_durations_and_a_dataframe(rendered_clip) -> None:
    result = pianomtl.transcribe(rendered_clip.wav)
    assert result.notes
    note = result.notes[0]
    assert note.name == f"{'C C# D D# E F F# G G# A A# B'.split()[note.key % 12]}{note.key // 12 - 1}"
    assert note.duration == pytest.approx(note.offset - note.onset)
    assert result.to_dict()["notes"][0]["name"] == note.name
    pd = pytest.importorskip("pandas")
    frame = result.to_dataframe()
    assert isinstance(frame, pd.DataFrame) and len(frame) == len(result.notes)
    assert list(frame.columns) == ["onset", "offset", "duration", "key", "name", "velocity"]
    assert frame["name"].iloc[0] == note.name and frame["duration"].iloc[0] == pytest.approx(note.duration)
    dropped = pianomtl.transcribe(rendered_clip.wav, keep_activations=False)
    with pytest.raises(ValueError, match="no activations"):
        dropped.redecode(onset_threshold=0.5)


def test_silence_through_every_entry_point() -> None:
    silence = np.zeros(44100, dtype=np.float32)
    assert pianomtl.transcribe(silence, sr=44100).notes == []
    with pianomtl.Stream(rate=44100) as stream:
        assert stream.feed(silence) == []
    assert stream.performance().notes == []


def test_the_api_reference_is_generated_from_the_current_docstrings() -> None:
    """docs/api.md is ``scripts/make_api_docs.py``'s output (rerun the script after changing a docstring)."""
    import subprocess

    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_api_docs.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    text = (ROOT / "docs" / "api.md").read_text()
    for name in pianomtl.__all__:
        if not name.startswith("_"):
            assert f"## {name}" in text
    assert "| `onset_threshold` | `0.5` | [0, 1] |" in text


@pytest.mark.skipif(not DEFAULT_BUNDLE.is_file(), reason="the bundled model (assets/default.pt) is not built yet")
def test_the_example_runs(tmp_path: Path) -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "python_api.py")], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "4 notes" in done.stdout and "did you mean onset_threshold" in done.stdout
    assert "stream and offline agree on 4 vs 4 notes" in done.stdout
