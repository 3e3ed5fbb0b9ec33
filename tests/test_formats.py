"""The output-format registry: one table behind ``--format``, ``Transcription.write`` and the page's downloads."""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pianomtl.core.midi import Note, PedalEvent, read_midi
from pianomtl.transcription import formats
from pianomtl.transcription.result import Transcription


@pytest.fixture
def result() -> Transcription:
    notes = [Note(60, 0.5, 1.25, 80), Note(73, 1.0, 1.5, 64)]
    return Transcription(notes=notes, pedal=[PedalEvent(0.25, 127), PedalEvent(2.0, 0)], activations=None, duration=3.0)


@pytest.fixture
def lyrics_format() -> Iterator[str]:
    """A format registered the documented way (one function), removed again afterwards."""

    @formats.register("txt", media_type="text/plain", description="note names", aliases=("text",))
    def write_names(transcription: Transcription, target: Path) -> None:
        target.write_text(" ".join(n.name for n in transcription.notes) + "\n")

    yield "txt"
    del formats.FORMATS["txt"]


def test_the_builtin_formats_write_what_they_say(result: Transcription, tmp_path: Path) -> None:
    assert list(formats.FORMATS)[:3] == ["mid", "csv", "json"]
    midi = read_midi(result.write(tmp_path / "a.midi"))  # an alias's extension picks the format
    assert [n.key for n in midi.notes] == [60, 73] and [p.value for p in midi.pedal] == [127, 0]
    rows = list(csv.reader(result.write(tmp_path / "a.csv").open()))
    assert rows[0] == ["onset", "offset", "key", "velocity", "name"] and rows[2][-1] == "C#5"
    data = json.loads(result.to_json(tmp_path / "b.json").read_text())
    assert data == result.to_dict() | {"duration": 3.0}
    assert data["notes"][1]["name"] == "C#5"


def test_unknown_formats_and_clashes_are_one_line_errors(result: Transcription, tmp_path: Path) -> None:
    # (a name no module registers: pdf is the score room's, registered once pianomtl.score is imported)
    with pytest.raises(ValueError, match=r"a.xyz: unknown extension .xyz to choose an output format by"):
        result.write(tmp_path / "a.xyz")
    with pytest.raises(ValueError, match=r"unknown output format 'xyz'; choose from mid, csv, json"):
        result.write(tmp_path / "a.mid", "xyz")
    with pytest.raises(ValueError, match="no extension"):
        result.write(tmp_path / "a")
    with pytest.raises(ValueError, match="'midi' is registered twice"):
        formats.register("midi", media_type="x", description="x")(lambda t, p: None)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_a_failing_writer_leaves_the_old_file(result: Transcription, tmp_path: Path) -> None:
    @formats.register("bad", media_type="text/plain", description="fails half-way")
    def write_bad(transcription: Transcription, target: Path) -> None:
        target.write_text("half")
        raise RuntimeError("disk on fire")

    try:
        (tmp_path / "a.bad").write_text("good")
        with pytest.raises(RuntimeError):
            result.write(tmp_path / "a.bad")
        assert (tmp_path / "a.bad").read_text() == "good" and len(list(tmp_path.iterdir())) == 1
    finally:
        del formats.FORMATS["bad"]


def test_one_registered_function_reaches_the_cli_and_the_page(
    lyrics_format: str, result: Transcription, tmp_path: Path
) -> None:
    from pianomtl.cli.transcribe import _formats, configure
    from pianomtl.web.sessions import DOWNLOADS

    parser = argparse.ArgumentParser()
    configure(parser)
    assert "txt" in parser.format_help().replace("\n", " ")
    assert _formats("mid,TEXT,.csv") == ["mid", "txt", "csv"]
    with pytest.raises(argparse.ArgumentTypeError, match=r"unknown format '?nope'?; choose from mid,csv,json,.*txt"):
        _formats("mid,nope")
    assert result.write(tmp_path / "take.txt").read_text() == "C4 C#5\n"
    assert DOWNLOADS["txt"].media_type == "text/plain"


def test_the_page_is_told_the_formats_and_the_decoder_limits(tmp_path: Path) -> None:
    """``/api/config`` lists the downloads and the decoder's ranges from their one definition each."""
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from pianomtl.transcription.decoders import DecoderParams
    from pianomtl.transcription.pipeline import Transcriber
    from pianomtl.web.piano import PianoCache
    from pianomtl.web.server import create_app

    app = create_app(Transcriber(threads=1), piano=PianoCache(tmp_path / "piano"), temp_root=tmp_path)
    with TestClient(app) as client:
        config = client.get("/api/config").json()
        from pianomtl.web.sessions import SessionError

        with pytest.raises(SessionError, match=r"onset_threshold must be in \[0, 1\], got 1.5"):
            client.app.state.store.redecode(None, 1.5)  # DecoderParams' own range, checked first
    assert [d["name"] for d in config["downloads"]] == list(formats.FORMATS)
    onset = config["decoder"]["onset_threshold"]
    assert (onset["min"], onset["max"], onset["kind"]) == (0.0, 1.0, "float")
    assert config["decoder"].keys() == DecoderParams.limits().keys()
