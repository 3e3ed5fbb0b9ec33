"""The page for musicians (issue #17): ``pianomtl serve`` and :mod:`pianomtl.web`.

Server endpoints through Starlette's TestClient, on real rendered audio and the bundled
model, no mocks: an upload transcribed in the background with real progress, the
result equal to the offline pipeline's; downloads that are valid MIDI, CSV and JSON;
re-decoding with another onset threshold from the kept activations; bad uploads, the
size limit (declared and chunked), clean-up of every temporary file; two sessions at
once; the recording served back (range requests, a WAV copy of formats browsers do not
play); the piano samples rendered once into a cache; live mode over the WebSocket into
:class:`pianomtl.Stream`; the missing-extra message; the command line.

And the page itself in headless Chromium (Debian's ``chromium`` + ``chromium-driver``,
driven by Selenium): a file dropped that is not audio is refused in one line; a clip
opened with the file picker is transcribed and drawn (as many notes drawn as the API
returns, coloured pixels on the canvas); play moves the playhead; the sensitivity
slider re-decodes and the roll follows; the MIDI download holds the notes shown;
nothing is loaded from anywhere but the local server; a screenshot is saved under the
test's folder. Live mode in the browser: Chromium's fake microphone plays the clip.

The workbench (issue #27): hover info, fit-to-range, every editing gesture with real mouse
and keyboard events, undo/redo, the downloads (MIDI, CSV, JSON, MusicXML) holding the edits,
a reload keeping them, re-decoding asking first; the A–B loop, half speed with the pitch
kept, muted hands, the metronome; the score panel (issue #26 part 4). With
``PIANOMTL_FIGURES=1`` the screenshot of each mode is also written to ``docs/figures/web-*.png``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import shutil
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("starlette", reason="the [web] extra is not installed")
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx (the [dev] extra)")

with warnings.catch_warnings():  # newer Starlette prefers the httpx2 fork; httpx works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from pianomtl.constants import SAMPLE_RATE
from pianomtl.core.midi import Note, Performance, read_midi
from pianomtl.core.scoring import note_scores
from pianomtl.transcription.decoders import decode
from pianomtl.transcription.pipeline import Transcriber
from pianomtl.web import piano as web_piano
from pianomtl.web import sessions
from pianomtl.web.server import create_app, listen, page_url, uvicorn_server

pytestmark = pytest.mark.usefixtures("one_thread")

STATIC = Path(__file__).resolve().parent.parent / "src" / "pianomtl" / "web" / "static"
LIMIT_MB = 2.0


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    return Transcriber(threads=1)


@pytest.fixture(scope="module")
def piano_cache(tmp_path_factory: pytest.TempPathFactory) -> web_piano.PianoCache:
    """Samples rendered once for the module (FluidSynth: about a second; else the numpy model)."""
    return web_piano.PianoCache(tmp_path_factory.mktemp("piano"), engines=("fluidsynth", "synth"))


@pytest.fixture
def server_root(tmp_path: Path) -> Path:
    root = tmp_path / "server"
    root.mkdir()
    return root


@pytest.fixture
def client(transcriber, piano_cache, server_root):
    app = create_app(transcriber, max_upload_mb=LIMIT_MB, piano=piano_cache, temp_root=server_root)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def second_clip(soundfont: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another recording (a rising C major arpeggio), so that two sessions differ."""
    from pianomtl.synthesis.fluidsynth import render

    notes = [Note(key, 0.2 + 0.4 * i, 0.5 + 0.4 * i, 90) for i, key in enumerate((60, 64, 67, 72))]
    audio = render(Performance(notes, []), soundfont, duration=2.5)
    path = tmp_path_factory.mktemp("second") / "arpeggio.flac"
    sf.write(str(path), (audio * (0.5 / np.abs(audio).max())).astype(np.float32), SAMPLE_RATE, format="FLAC")
    return path


@pytest.fixture(scope="module")
def steady_clip(soundfont: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A melody on a steady 100 bpm beat with a bass every other beat (7.5 s): music with a metre,
    for the beats, the snapping, the metronome and the score."""
    from pianomtl.synthesis.fluidsynth import render

    beat, melody = 0.6, (72, 74, 76, 77, 79, 77, 76, 74, 72, 76, 79, 84)
    notes = [Note(k, 0.3 + beat * i, 0.75 + beat * i, 100 if i % 4 == 0 else 75) for i, k in enumerate(melody)]
    notes += [Note(48 if i % 4 == 0 else 43, 0.3 + beat * i, 1.3 + beat * i, 90) for i in range(0, len(melody), 2)]
    audio = render(Performance(sorted(notes), []), soundfont, duration=0.3 + beat * len(melody) + 1.0)
    path = tmp_path_factory.mktemp("steady") / "steady.wav"
    sf.write(str(path), (audio * (0.5 / np.abs(audio).max())).astype(np.float32), SAMPLE_RATE)
    return path


def upload(client: TestClient, path: Path | None = None, name: str | None = None, data: bytes | None = None):
    content = path.read_bytes() if data is None else data
    return client.post("/api/sessions", files={"audio": (name or path.name, content, "application/octet-stream")})


def wait_done(client: TestClient, session: str, timeout: float = 120.0) -> list[dict]:
    """Poll the session's status as the page does; every status seen."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/sessions/{session}").json()
        seen.append(status)
        if status["state"] in ("done", "error"):
            return seen
        time.sleep(0.02)
    raise AssertionError(f"session {session} did not finish: {seen[-1]}")


def as_tuples(notes) -> list[tuple]:
    return [(n["key"], n["onset"], n["offset"], n["velocity"]) if isinstance(n, dict) else n for n in notes]


def offline(transcriber: Transcriber, path: Path) -> list[tuple]:
    result = transcriber(path)
    return [(n.key, round(n.onset, 4), round(n.offset, 4), n.velocity) for n in result.notes]


def read_midi_bytes(data: bytes) -> list[tuple[int, int]]:
    """(key, velocity) of every note of a MIDI file's bytes, in order (read with the project's reader)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "download.mid"
        path.write_bytes(data)
        return [(n.key, n.velocity) for n in read_midi(path).notes]


def leftovers(root: Path) -> list[Path]:
    """Whatever the server left in its temporary root (its own folder inside, and in there the sessions)."""
    return sorted(p for p in root.rglob("*") if p.is_file())


# ---------------------------------------------------------------- the pipeline's progress hook


def test_transcriber_reports_real_progress(rendered_clip) -> None:
    """Progress comes from the reader's block loop and the network's chunk loop, not a spinner."""
    reports: list[tuple[str, float]] = []
    transcriber = Transcriber(threads=1, chunk_frames=32)  # 150 frames: 5 network chunks
    result = transcriber(rendered_clip.wav, progress=lambda stage, fraction: reports.append((stage, fraction)))
    stages = [stage for stage, _ in reports]
    assert stages[0] == "reading" and stages[-1] == "decoding"
    assert stages == sorted(stages, key=["reading", "network", "decoding"].index)  # in order
    network = [f for s, f in reports if s == "network"]
    assert len(network) == 5 and network == sorted(network) and network[-1] == 1.0
    reading = [f for s, f in reports if s == "reading"]  # the file is read beside the network
    assert reading == sorted(reading) and 0 < reading[-1] <= 1.0
    assert [f for s, f in reports if s == "decoding"] == [0.0, 1.0]
    assert result.notes == Transcriber(threads=1)(rendered_clip.wav).notes  # the hook changes nothing


# ---------------------------------------------------------------- uploads, progress, result


def test_upload_is_transcribed_in_the_background(client, transcriber, rendered_clip) -> None:
    response = upload(client, rendered_clip.wav)
    assert response.status_code == 201, response.text
    session = response.json()["id"]
    assert response.json()["name"] == "clip.wav"
    statuses = wait_done(client, session)
    final = statuses[-1]
    assert final["state"] == "done", final
    assert final["progress"] == 1.0 and final["duration"] == pytest.approx(rendered_clip.seconds, abs=1e-3)
    progress = [s["progress"] for s in statuses]
    assert progress == sorted(progress)  # never goes back
    assert {s["stage"] for s in statuses} <= {"queued", "reading", "network", "decoding"}

    payload = client.get(f"/api/sessions/{session}/notes").json()
    assert as_tuples(payload["notes"]) == offline(transcriber, rendered_clip.wav)  # the pipeline, unchanged
    assert payload["redecode"] is True
    assert payload["decoder"] == transcriber.decoder.to_dict()
    assert payload["pedal"] and payload["pedal"][0]["value"] == 127
    found = [Note(n["key"], n["onset"], n["offset"], n["velocity"]) for n in payload["notes"]]
    assert note_scores(rendered_clip.performance, found)["note_f1"] >= 0.85


def test_downloads_are_valid_midi_csv_and_json(client, rendered_clip, tmp_path) -> None:
    session = upload(client, rendered_clip.wav).json()["id"]
    wait_done(client, session)
    notes = client.get(f"/api/sessions/{session}/notes").json()["notes"]

    midi = client.get(f"/api/sessions/{session}/download/mid")
    assert midi.status_code == 200
    assert midi.headers["content-disposition"] == 'attachment; filename="clip.mid"'
    assert midi.content[:4] == b"MThd"
    (tmp_path / "clip.mid").write_bytes(midi.content)
    performance = read_midi(tmp_path / "clip.mid")
    assert [(n.key, n.velocity) for n in performance.notes] == [(n["key"], n["velocity"]) for n in notes]
    assert [n.onset for n in performance.notes] == pytest.approx([n["onset"] for n in notes], abs=2e-3)
    assert performance.pedal  # the CC64 events

    rows = list(csv.reader(io.StringIO(client.get(f"/api/sessions/{session}/download/csv").text)))
    assert rows[0] == ["onset", "offset", "key", "velocity", "name"]
    assert [(int(r[2]), int(r[3])) for r in rows[1:]] == [(n["key"], n["velocity"]) for n in notes]

    data = json.loads(client.get(f"/api/sessions/{session}/download/json").content)
    without_hands = [{k: v for k, v in n.items() if k != "hand"} for n in notes]  # (the page's hands: the score's)
    assert data["notes"] == without_hands and data["source"] == "clip.wav"

    missing = client.get(f"/api/sessions/{session}/download/doc")
    assert missing.status_code == 404 and "choose from mid, csv, json" in missing.json()["error"]


def test_redecode_changes_the_notes_without_the_network(client, transcriber, rendered_clip) -> None:
    session = upload(client, rendered_clip.wav).json()["id"]
    wait_done(client, session)
    original = client.get(f"/api/sessions/{session}/notes").json()
    stored = client.app.state.store.get(session)
    activations = stored.result.activations

    low = client.post(f"/api/sessions/{session}/decode", json={"onset_threshold": 0.1})
    assert low.status_code == 200, low.text
    low = low.json()
    expected = decode(activations, dataclasses.replace(transcriber.decoder, onset_threshold=0.1))
    assert as_tuples(low["notes"]) == [
        (n.key, round(n.onset, 4), round(n.offset, 4), n.velocity) for n in expected.notes
    ]
    assert low["decoder"]["onset_threshold"] == 0.1
    assert len(low["notes"]) > len(original["notes"])  # a lower threshold finds more (here: ghost notes)
    assert stored.result.activations is activations  # kept, not recomputed
    assert client.get(f"/api/sessions/{session}/notes").json()["notes"] == low["notes"]
    csv_rows = client.get(f"/api/sessions/{session}/download/csv").text.strip().splitlines()
    assert len(csv_rows) == 1 + len(low["notes"])  # downloads follow the slider

    back = client.post(
        f"/api/sessions/{session}/decode", json={"onset_threshold": original["decoder"]["onset_threshold"]}
    ).json()
    assert back["notes"] == original["notes"]

    for bad in ({"onset_threshold": 1.5}, {"onset_threshold": "x"}, {"onset_threshold": None}, {"other": 1}, [1]):
        response = client.post(f"/api/sessions/{session}/decode", json=bad)
        assert response.status_code == 400
        assert "\n" not in response.json()["error"]
    response = client.post(f"/api/sessions/{session}/decode", content=b"not json")
    assert response.status_code == 400


def test_download_of_edited_notes(client, transcriber, rendered_clip, tmp_path) -> None:
    """POST the page's notes (its edits): every format writes them; the session keeps its decoded notes."""
    session = upload(client, rendered_clip.wav).json()["id"]
    wait_done(client, session)
    payload = client.get(f"/api/sessions/{session}/notes").json()
    assert payload["default_onset_threshold"] == transcriber.decoder.onset_threshold
    notes = [n for n in payload["notes"] if n["key"] != 60]  # one deleted …
    notes.append({"key": 70, "onset": 0.1, "offset": 0.5, "velocity": 30})  # … one drawn
    notes[0] = {**notes[0], "key": notes[0]["key"] + 2, "velocity": 127}  # … one moved and made loud
    response = client.post(f"/api/sessions/{session}/download/mid", json={"notes": notes, "pedal": payload["pedal"]})
    assert response.status_code == 200 and response.headers["content-disposition"] == 'attachment; filename="clip.mid"'
    (tmp_path / "edited.mid").write_bytes(response.content)
    written = read_midi(tmp_path / "edited.mid")
    expected = sorted((n["onset"], n["key"], n["velocity"]) for n in notes)
    assert [(n.key, n.velocity) for n in written.notes] == [(k, v) for _, k, v in expected]
    assert len(written.pedal) == len(payload["pedal"])
    rows = list(
        csv.reader(io.StringIO(client.post(f"/api/sessions/{session}/download/csv", json={"notes": notes}).text))
    )
    assert sorted(int(r[2]) for r in rows[1:]) == sorted(n["key"] for n in notes)
    assert client.get(f"/api/sessions/{session}/notes").json()["notes"] == payload["notes"]  # not stored

    for bad, words in (
        ({"notes": [{"key": 10, "onset": 0, "offset": 1, "velocity": 64}]}, "note 1 is not a piano note"),
        ({"notes": [{"key": 60, "onset": 1, "offset": 0.5, "velocity": 64}]}, "note 1 is not a piano note"),
        ({"notes": [{"key": 60, "onset": 0, "offset": 1, "velocity": 200}]}, "note 1 is not a piano note"),
        ({"notes": [{"key": 60.5, "onset": 0, "offset": 1, "velocity": 64}]}, "note 1 is not a piano note"),
        ({"notes": [{"key": 60}]}, "note 1 is not a piano note"),
        ({"notes": "all of them"}, "send JSON"),
        ({"notes": [], "pedal": [{"time": -1, "value": 64}]}, "pedal event is out of range"),
    ):
        response = client.post(f"/api/sessions/{session}/download/mid", json=bad)
        assert response.status_code == 400, bad
        assert words in response.json()["error"] and "\n" not in response.json()["error"]
    assert client.post(f"/api/sessions/{session}/download/mid", content=b"{").status_code == 400


def test_score_beats_and_hands_for_the_page(client, steady_clip) -> None:
    """The payload carries pianomtl.score's hands (and beats where confident); the score endpoint
    engraves the notes (verovio SVG) and places each note's SVG element at its onset in seconds."""
    if sessions.SCORE_ERROR:
        pytest.skip(sessions.SCORE_ERROR)
    pytest.importorskip("music21", reason="the score extra is not installed")
    pytest.importorskip("verovio", reason="the score extra is not installed")
    from pianomtl.score import analyse
    from pianomtl.score.hands import LEFT

    session = upload(client, steady_clip).json()["id"]
    wait_done(client, session)
    payload = client.get(f"/api/sessions/{session}/notes").json()
    current = client.app.state.store.get(session).current
    analysis = analyse(current, warn=False)
    assert [n["hand"] for n in payload["notes"]] == ["L" if h == LEFT else "R" for h in analysis.hands]
    assert payload["metered"] is analysis.metered is True  # (a steady 100 bpm)
    beats = payload["beats"]
    assert beats[0] == 0.0 and beats == sorted(beats) and beats[-1] >= current.duration
    assert set(payload["downbeats"]) <= set(beats) and payload["tempo"] == pytest.approx(100, abs=2)
    assert payload["score"] == {"url": f"/api/sessions/{session}/score"}

    view = client.get(payload["score"]["url"]).json()
    assert "<svg" in view["svg"][:400] and "http://" not in view["svg"].replace("http://www.w3.org", "")
    onsets = [n["onset"] for n in payload["notes"]]
    times = sorted(view["times"].values())
    assert all(f'id="{element}"' in view["svg"] for element in view["times"])
    # every note's head lights when it was played (the performance's timing, not the grid's)
    assert all(min(abs(t - onset) for t in times) < 1e-3 for onset in onsets), (onsets, times)

    assert client.get(payload["score"]["url"]).json() == view  # (kept until the notes change)
    assert client.app.state.store.get(session)._score[0] is current
    if sessions.TEMPO_MAPS:  # the MIDI download's bars follow the music, as `pianomtl transcribe` writes them
        import mido

        midi = mido.MidiFile(file=io.BytesIO(client.get(f"/api/sessions/{session}/download/mid").content))
        tempos = [m for track in midi.tracks for m in track if m.type == "set_tempo"]
        assert len(tempos) > 1  # one per beat
        assert read_midi_bytes(client.get(f"/api/sessions/{session}/download/mid").content) == [
            (n["key"], n["velocity"]) for n in payload["notes"]
        ]
    svg = client.post(f"/api/sessions/{session}/download/svg", json={"notes": payload["notes"]})
    assert svg.status_code == 200 and "<svg" in svg.text[:400]  # (verovio on another worker thread)
    assert view["warning"] is None  # (metered: no "senza misura")
    edited = [n for n in payload["notes"] if n["key"] != 84]
    smaller = client.post(payload["score"]["url"], json={"notes": edited}).json()
    assert len(smaller["times"]) < len(view["times"])
    assert client.post(payload["score"]["url"], json={"notes": []}).status_code == 409


def test_queue_position_and_undecodable_upload(client, server_root) -> None:
    """The page says it waits only when another recording is ahead; random bytes named .mp3 are one true line."""
    store = client.app.state.store
    first, second = store.new("a.wav"), store.new("b.wav")  # (not started: both wait)
    assert store.status(first)["ahead"] == 0 and store.status(second)["ahead"] == 1
    first.state = "done"
    assert store.status(second)["ahead"] == 0
    store.remove(first.id)
    store.remove(second.id)

    noise = bytes((i * 7919) % 251 for i in range(3000))
    response = upload(client, name="song.mp3", data=noise)
    assert response.status_code == 415
    error = response.json()["error"]
    assert error.startswith("song.mp3: not a readable audio file") and "pipe" not in error and "\n" not in error
    assert leftovers(server_root) == []


# ---------------------------------------------------------------- bad uploads, the limit, clean-up


def test_bad_uploads_are_refused_in_one_line(client, server_root, rendered_clip) -> None:
    cases = {
        "notes.txt": (b"these are my notes, not a recording\n" * 20, "notes.txt: not a readable audio file"),
        "empty.wav": (b"", "empty.wav: not a readable audio file"),
        "cut.wav": (rendered_clip.wav.read_bytes()[:50_000], "cut.wav: truncated"),
    }
    for name, (content, message) in cases.items():
        response = upload(client, name=name, data=content)
        assert response.status_code == 415, (name, response.text)
        error = response.json()["error"]
        assert error.startswith(message), error
        assert "\n" not in error and str(server_root) not in error  # names the user's file, not the server's copy

    response = client.post("/api/sessions", files={"other": ("a.wav", b"x", "audio/wav")})
    assert response.status_code == 400 and "field 'audio'" in response.json()["error"]
    response = client.post("/api/sessions", content=b"raw bytes", headers={"content-type": "audio/wav"})
    assert response.status_code == 400
    assert leftovers(server_root) == []  # every refused upload's folder is gone


def test_size_limit(client, server_root) -> None:
    big = np.zeros(int(LIMIT_MB * 1e6 / 2) + SAMPLE_RATE, dtype=np.int16)  # a little over the limit as 16-bit WAV
    buffer = io.BytesIO()
    sf.write(buffer, big, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    data = buffer.getvalue()
    response = upload(client, name="long.wav", data=data)
    assert response.status_code == 413
    assert response.json()["error"] == (
        "the file is larger than this server's upload limit of 2 MB (start it with pianomtl serve --max-upload-mb "
        "to change it)"
    )

    boundary = "pianomtl-test"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="audio"; filename="long.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )

    def chunks():  # no Content-Length: a chunked upload is counted as it arrives
        for start in range(0, len(body), 1 << 16):
            yield body[start : start + (1 << 16)]

    response = client.post(
        "/api/sessions", content=chunks(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert response.status_code == 413
    assert leftovers(server_root) == []
    assert client.get("/api/config").json()["max_upload_bytes"] == int(LIMIT_MB * 1e6)


def test_temporary_files_are_cleaned_up(transcriber, piano_cache, server_root, rendered_clip) -> None:
    app = create_app(transcriber, max_upload_mb=LIMIT_MB, piano=piano_cache, temp_root=server_root)
    with TestClient(app) as client:
        session = upload(client, rendered_clip.wav).json()["id"]
        wait_done(client, session)
        client.get(f"/api/sessions/{session}/download/mid")
        store = client.app.state.store
        assert store.root.parent == server_root  # the server's one temporary folder
        files = leftovers(server_root)
        assert files and all(store.root in f.parents for f in files)
        assert client.post(f"/api/sessions/{session}/close").status_code == 204
        assert leftovers(server_root) == []
        assert client.get(f"/api/sessions/{session}").status_code == 404

        other = upload(client, rendered_clip.wav).json()["id"]
        wait_done(client, other)
        store.idle_seconds = 0.0  # long idle: removed when the next session is made
        time.sleep(0.01)
        third = upload(client, rendered_clip.wav).json()["id"]
        assert client.get(f"/api/sessions/{other}").status_code == 404
        wait_done(client, third)
    assert list(server_root.iterdir()) == []  # the server's folder is gone when it stops


def test_closing_a_session_stops_its_transcription(transcriber, piano_cache, server_root, rendered_clip) -> None:
    long = server_root.parent / "long.flac"  # a minute of the clip: long enough to be caught mid-way
    sf.write(str(long), np.tile(rendered_clip.samples, 20), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    app = create_app(transcriber, max_upload_mb=20, piano=piano_cache, temp_root=server_root)
    with TestClient(app) as client:
        first = upload(client, long).json()["id"]
        queued = upload(client, rendered_clip.wav).json()["id"]
        running = client.app.state.store.get(first)
        waiting = client.app.state.store.get(queued)
        deadline = time.monotonic() + 60
        while running.stage in ("queued", "reading") and time.monotonic() < deadline:
            time.sleep(0.005)
        client.post(f"/api/sessions/{queued}/close")  # a tab closed while its recording waits …
        client.post(f"/api/sessions/{first}/close")  # … and one closed while it is transcribed
        deadline = time.monotonic() + 30
        while running.error is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert running.error == "long.flac: closed while it was being transcribed" and running.result is None
        assert running.progress < 0.95
        assert waiting.result is None and waiting.cancelled
        after = upload(client, rendered_clip.wav).json()["id"]  # the worker is free again
        assert wait_done(client, after)[-1]["state"] == "done"


# ---------------------------------------------------------------- two sessions, playback, the piano


def test_two_sessions_at_once(client, transcriber, rendered_clip, second_clip) -> None:
    first = upload(client, rendered_clip.wav).json()["id"]
    second = upload(client, second_clip).json()["id"]  # sent while the first is being transcribed
    assert first != second
    assert wait_done(client, first)[-1]["state"] == "done"
    assert wait_done(client, second)[-1]["state"] == "done"
    notes_first = client.get(f"/api/sessions/{first}/notes").json()["notes"]
    notes_second = client.get(f"/api/sessions/{second}/notes").json()["notes"]
    assert as_tuples(notes_first) == offline(transcriber, rendered_clip.wav)
    assert as_tuples(notes_second) == offline(transcriber, second_clip)
    assert [n["key"] for n in notes_second] == [60, 64, 67, 72]

    client.post(f"/api/sessions/{first}/decode", json={"onset_threshold": 0.1})  # one tab's slider …
    assert client.get(f"/api/sessions/{second}/notes").json()["notes"] == notes_second  # … not the other's
    midi = client.get(f"/api/sessions/{second}/download/mid")
    assert midi.headers["content-disposition"] == 'attachment; filename="arpeggio.mid"'
    client.post(f"/api/sessions/{first}/close")
    assert client.get(f"/api/sessions/{first}/notes").status_code == 404
    assert client.get(f"/api/sessions/{second}/notes").status_code == 200
    assert client.get("/api/sessions/not-a-session").status_code == 404


def test_recording_is_served_back(client, rendered_clip, tmp_path) -> None:
    session = upload(client, rendered_clip.flac).json()["id"]
    wait_done(client, session)
    response = client.get(f"/api/sessions/{session}/audio")
    assert response.status_code == 200 and response.content == rendered_clip.flac.read_bytes()
    partial = client.get(f"/api/sessions/{session}/audio", headers={"Range": "bytes=100-199"})
    assert partial.status_code == 206 and partial.content == rendered_clip.flac.read_bytes()[100:200]
    copy = client.get(f"/api/sessions/{session}/audio?format=wav")  # for a browser that cannot play FLAC
    samples, rate = sf.read(io.BytesIO(copy.content), dtype="float32")
    assert rate == SAMPLE_RATE and np.abs(samples - rendered_clip.samples).max() < 1e-3

    aiff = tmp_path / "clip.aiff"  # a format browsers do not play: a WAV copy is served
    sf.write(str(aiff), rendered_clip.samples, SAMPLE_RATE, format="AIFF", subtype="PCM_16")
    session = upload(client, aiff).json()["id"]
    assert wait_done(client, session)[-1]["state"] == "done"
    response = client.get(f"/api/sessions/{session}/audio")
    assert response.headers["content-type"] in ("audio/wav", "audio/x-wav")
    samples, rate = sf.read(io.BytesIO(response.content), dtype="float32")
    assert len(samples) == len(rendered_clip.samples)


def test_piano_samples_are_rendered_once(client, piano_cache, monkeypatch) -> None:
    manifest = client.get("/api/piano").json()
    assert manifest["keys"] == list(web_piano.SAMPLE_KEYS) and manifest["engine"] in ("fluidsynth", "synth")
    assert len(manifest["keys"]) == 30 and manifest["keys"][0] == 21 and manifest["keys"][-1] == 108
    response = client.get(manifest["urls"]["60"])
    samples, rate = sf.read(io.BytesIO(response.content), dtype="float32")
    assert rate == web_piano.RATE and len(samples) == int(web_piano.sample_seconds(60) * rate)
    assert 0.05 < float(np.abs(samples).max()) <= 0.9 + 1e-3 and abs(float(samples[-1])) < 1e-3  # faded out
    assert client.get("/api/piano/61.wav").status_code == 404
    total = sum(piano_cache.get().path(k).stat().st_size for k in web_piano.SAMPLE_KEYS)
    assert total < 8e6

    def broken():
        raise AssertionError("rendered again")

    monkeypatch.setattr(web_piano, "RENDERERS", dict.fromkeys(web_piano.ENGINES, broken))
    again = web_piano.PianoCache(piano_cache.root, engines=piano_cache.engines).get()  # a new server: the cache
    assert again.folder == piano_cache.get().folder


def test_additive_piano_is_in_tune() -> None:
    for key in (33, 69, 96):
        note = web_piano.synth_note(key, 1.0)
        spectrum = np.abs(np.fft.rfft(note * np.hanning(len(note)), 1 << 17))
        peak = np.fft.rfftfreq(1 << 17, 1 / web_piano.RATE)[np.argmax(spectrum)]
        assert peak == pytest.approx(440 * 2 ** ((key - 69) / 12), rel=0.01)


# ---------------------------------------------------------------- live mode


def test_live_websocket(client, transcriber, rendered_clip) -> None:
    samples = rendered_clip.samples.astype("<f4")
    events = []
    with client.websocket_connect("/api/live") as socket:
        socket.send_json({"rate": SAMPLE_RATE})
        ready = socket.receive_json()
        assert ready["type"] == "ready"
        for start in range(0, len(samples), 4410):
            socket.send_bytes(samples[start : start + 4410].tobytes())
            message = socket.receive_json()
            assert message["type"] == "events"
            events += message["events"]
        socket.send_json({"type": "stop"})
        message = socket.receive_json()
        events += message["events"]
        done = socket.receive_json()
    assert done == {"type": "done", "id": ready["id"]}
    ons = [e for e in events if e["type"] == "note_on"]
    assert sorted(e["key"] for e in ons) == sorted(n.key for n in rendered_clip.performance.notes)
    assert len([e for e in events if e["type"] == "note_off"]) == len(ons)
    assert [e["type"] for e in events if e["type"].startswith("pedal")] == ["pedal_on", "pedal_off"]

    statuses = wait_done(client, ready["id"])  # the take, transcribed offline like an upload
    assert statuses[-1]["state"] == "done" and statuses[-1]["live"] is True
    take = client.get(f"/api/sessions/{ready['id']}/notes").json()
    assert [n["key"] for n in take["notes"]] == [k for k, *_ in offline(transcriber, rendered_clip.wav)]
    assert take["redecode"] is True
    audio = client.get(f"/api/sessions/{ready['id']}/audio")
    recorded, rate = sf.read(io.BytesIO(audio.content), dtype="float32")
    assert rate == SAMPLE_RATE and len(recorded) == len(samples)

    with client.websocket_connect("/api/live") as socket:  # a bad start is one line, not a crash
        socket.send_json({"rate": 0})
        message = socket.receive_json()
        assert message["type"] == "error" and "rate" in message["error"]
    assert all(s.state == "done" for s in client.app.state.store.sessions.values())  # nothing left half-made


# ---------------------------------------------------------------- the page's files, the extra, the command


def test_page_loads_only_local_files(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    for name in ("style.css", "app.js"):
        assert f'"/static/{name}"' in page.text
        assert client.get(f"/static/{name}").status_code == 200
    for path in STATIC.iterdir():
        text = path.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path.name


def test_missing_web_extra_is_one_line(monkeypatch, capsys) -> None:
    from pianomtl.cli import main

    monkeypatch.setitem(sys.modules, "starlette", None)
    assert main(["serve"]) == 2
    assert capsys.readouterr().err == "pianomtl serve needs the web extra: pip install 'pianomtl[web]'\n"


def test_command_line_serves_the_page() -> None:
    import httpx

    process = subprocess.Popen(
        [sys.executable, "-m", "pianomtl.cli", "serve", "--port", "0", "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("pianomtl: the page is at http://127.0.0.1:"), line + process.stderr.read()
        url = line.split()[5]
        assert httpx.get(url, timeout=30).status_code == 200
        assert httpx.get(url + "api/config", timeout=30).json()["max_upload"] == "200 MB"
        port = int(url.rsplit(":", 1)[1].strip("/"))
        busy = subprocess.run(
            [sys.executable, "-m", "pianomtl.cli", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert busy.returncode == 1 and busy.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}")
        assert len(busy.stderr.strip().splitlines()) == 1
    finally:
        process.terminate()
        process.wait(timeout=30)


# ---------------------------------------------------------------- the page in a real browser


CHROMIUM_FLAGS = (
    "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking "
    "--disable-component-update --disable-sync --use-fake-ui-for-media-stream --use-fake-device-for-media-stream"
).split()


@pytest.fixture(scope="module")
def live_server(transcriber, piano_cache, tmp_path_factory):
    """The app on a free localhost port, served by uvicorn on a thread."""
    sock = listen("127.0.0.1", 0)
    app = create_app(transcriber, max_upload_mb=LIMIT_MB, piano=piano_cache, temp_root=tmp_path_factory.mktemp("srv"))
    server = uvicorn_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield page_url(sock), app
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def browser(rendered_clip, tmp_path_factory):
    """Headless Chromium (Debian's), its downloads in a fresh folder, the clip as its fake microphone."""
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the [dev] extra)")
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_argument(f"--use-file-for-fake-audio-capture={rendered_clip.wav}")
    options.add_argument("--window-size=1280,800")
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.downloads = downloads
    yield driver
    driver.quit()


def wait_for(driver, script: str, timeout: float = 60.0):
    """Poll a JS expression until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return {script}")
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {script}: {driver.execute_script('return window.pianomtl.error')}")


def coloured_pixels(driver) -> int:
    """Pixels of the roll drawn in a note colour (warm, saturated): the canvas is not just lanes and keys."""
    return driver.execute_script(
        """const c = document.getElementById('roll');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] > 150 && d[i] - d[i + 2] > 80 && d[i + 3] > 0) n++;
        return n;"""
    )


def test_page_in_a_browser(browser, live_server, rendered_clip, tmp_path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, app = live_server
    store = app.state.store
    browser.get(url)
    browser.execute_script("localStorage.clear()")  # no edits kept from another test
    browser.get(url)
    wait_for(browser, "window.pianomtl && window.pianomtl.config")
    # before anything is opened the slider shows the real default, not the range's middle
    default = store.transcriber.decoder.onset_threshold
    assert float(browser.find_element(By.ID, "sensitivity").get_attribute("value")) == pytest.approx(1 - default)
    assert browser.find_element(By.ID, "sensitivity-value").text == f"{round((1 - default) * 100)} (default)"

    # random bytes named .mp3: one clear line, not libsndfile's "possibly a pipe?"
    browser.execute_script(
        """const t = new DataTransfer();
        const bytes = new Uint8Array(3000); for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919) % 251;
        t.items.add(new File([bytes], 'song.mp3', {type: 'audio/mpeg'}));
        window.dispatchEvent(new DragEvent('drop', {dataTransfer: t, bubbles: true, cancelable: true}));"""
    )
    error = wait_for(browser, "window.pianomtl.error")
    assert error.startswith("song.mp3: not a readable audio file") and "pipe" not in error and "\n" not in error

    # a dropped file that is not audio: refused, in one line on the page
    browser.execute_script(
        """const t = new DataTransfer();
        t.items.add(new File(['my shopping list'], 'list.txt', {type: 'text/plain'}));
        window.dispatchEvent(new DragEvent('drop', {dataTransfer: t, bubbles: true, cancelable: true}));"""
    )
    error = wait_for(browser, "window.pianomtl.error")
    assert error.startswith("list.txt: not a readable audio file") and "\n" not in error
    assert browser.find_element(By.ID, "error").is_displayed()

    # a recording opened with the file picker: progress (in true words), then the roll
    browser.execute_script(
        """window.progressSeen = [];
        new MutationObserver(() => window.progressSeen.push(document.getElementById('progress-text').textContent))
          .observe(document.getElementById('progress-text'), {childList: true, characterData: true, subtree: true});"""
    )
    browser.find_element(By.ID, "file").send_keys(str(rendered_clip.wav))
    wait_for(browser, "window.pianomtl.status === 'ready'")
    seen = browser.execute_script("return window.progressSeen")
    assert seen and not [text for text in seen if "Waiting" in text], seen  # nothing else was being transcribed
    assert browser.execute_script("return window.pianomtl.error") == ""
    session = browser.execute_script("return window.pianomtl.session")
    api_notes = store.get(session).payload()["notes"]
    assert browser.execute_script("return window.pianomtl.notes.length") == len(api_notes) >= 7
    drawn = int(browser.find_element(By.ID, "roll").get_attribute("data-notes-drawn"))
    assert drawn == len(api_notes)  # the whole clip is in view: every note drawn
    assert coloured_pixels(browser) > 200
    screenshot = tmp_path / "page.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000

    # play: the piano loads, the playhead moves; pause stops it
    browser.find_element(By.ID, "play").click()
    wait_for(browser, "window.pianomtl.playing && window.pianomtl.position > 0.4", timeout=30)
    assert browser.execute_script("return window.pianomtl.piano.state") == "ready"
    browser.find_element(By.ID, "play").click()
    position = browser.execute_script("return window.pianomtl.position")
    time.sleep(0.3)
    assert browser.execute_script("return [window.pianomtl.playing, window.pianomtl.position]") == [False, position]

    # the sensitivity slider runs the musical way: right = more notes (a lower onset threshold)
    slider = browser.find_element(By.ID, "sensitivity")
    start = float(slider.get_attribute("value"))
    assert start == pytest.approx(1 - store.transcriber.decoder.onset_threshold)
    assert browser.find_element(By.ID, "sensitivity-value").text.endswith("(default)")
    slider.send_keys(*[Keys.ARROW_RIGHT] * round((0.9 - start) * 100))
    wait_for(browser, "Math.abs(window.pianomtl.threshold - 0.1) < 1e-6", timeout=30)
    lowered = store.get(session).payload()["notes"]
    assert len(lowered) > len(api_notes)
    wait_for(browser, f"window.pianomtl.notes.length === {len(lowered)}")
    wait_for(browser, f"document.getElementById('roll').dataset.notesDrawn === '{len(lowered)}'")

    # download the MIDI: the notes on the page
    browser.find_element(By.ID, "dl-mid").click()
    midi = browser.downloads / "clip.mid"
    deadline = time.monotonic() + 30
    while not midi.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [n.key for n in read_midi(midi).notes] == [n["key"] for n in lowered]

    # everything the page loaded came from this server
    origin = url.rstrip("/")
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(r.startswith(origin) for r in resources), resources
    logged = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert [m for m in logged if "status of 415" not in m] == []  # only the refused uploads, nothing broken


def test_live_mode_in_a_browser(browser, live_server, rendered_clip) -> None:
    """Chromium's fake microphone plays the clip (in a loop); notes appear as it plays, and the take is kept."""
    from selenium.webdriver.common.by import By

    url, app = live_server
    browser.get(url)
    wait_for(browser, "window.pianomtl && window.pianomtl.config")
    browser.find_element(By.ID, "live").click()
    wait_for(browser, "window.pianomtl.live && window.pianomtl.live.notes.length >= 8", timeout=40)
    keys = browser.execute_script("return window.pianomtl.live.notes.map(n => n.key)")
    played = {n.key for n in rendered_clip.performance.notes}  # (the fake microphone loops the clip: a seam)
    assert sum(key in played for key in keys) >= 0.8 * len(keys)
    browser.find_element(By.ID, "live").click()
    wait_for(browser, "window.pianomtl.status === 'ready'", timeout=60)
    session = browser.execute_script("return window.pianomtl.session")
    take = app.state.store.get(session)
    assert take.live and take.result is not None
    assert browser.execute_script("return window.pianomtl.notes.length") == len(take.current.notes) >= 8


# ---------------------------------------------------------------- the workbench (issue 27): inspect, correct, practise

FIGURES = Path(__file__).resolve().parent.parent / "docs" / "figures"


def figure(browser, tmp_path: Path, name: str) -> Path:
    """A screenshot of the page in one mode: in the test's folder, and in docs/figures with PIANOMTL_FIGURES=1."""
    import os

    path = tmp_path / f"{name}.png"
    browser.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    if os.environ.get("PIANOMTL_FIGURES"):  # a 256-colour PNG: a third of the size, the same picture
        from PIL import Image

        with Image.open(path) as image:
            image.convert("RGB").quantize(256).save(FIGURES / f"{name}.png", optimize=True)
    return path


def open_clip(browser, url: str, clip: Path) -> None:
    """A fresh page (no edits kept from another test) with ``clip`` transcribed on it."""
    browser.get(url)
    browser.execute_script("localStorage.clear()")
    browser.get(url)
    wait_for(browser, "window.pianomtl && window.pianomtl.config")
    browser.find_element("id", "file").send_keys(str(clip))
    wait_for(browser, "window.pianomtl.status === 'ready'")


def page_notes(browser) -> list[tuple[int, float, float, int]]:
    return [
        tuple(n)
        for n in browser.execute_script("return window.pianomtl.notes.map(n => [n.key, n.onset, n.offset, n.velocity])")
    ]


def offset_of(browser, x: float, y: float) -> tuple[int, int]:
    """Canvas pixel (x, y) as Selenium's offset from the canvas's centre."""
    size = browser.execute_script("const c = document.getElementById('roll'); return [c.clientWidth, c.clientHeight]")
    return round(x - size[0] / 2), round(y - size[1] / 2)


def note_centre(browser, key: int) -> tuple[int, int]:
    box = browser.execute_script(
        f"const p = window.pianomtl; return p.api.noteBox(p.notes.find(n => n.key === {key}).id)"
    )
    return offset_of(browser, box["x"] + min(box["w"] / 3, 20), box["y"] + box["h"] / 2)


def point(browser, t: float, key: int) -> tuple[int, int]:
    x, y, h = browser.execute_script(
        f"const a = window.pianomtl.api; return [a.xOf({t}), a.yOf({key}), a.layout().keyH]"
    )
    return offset_of(browser, x, y + h / 2)


def download(browser, name: str) -> Path:
    path = browser.downloads / name
    path.unlink(missing_ok=True)
    browser.find_element("id", f"dl-{name.rsplit('.', 1)[1]}").click()
    deadline = time.monotonic() + 30
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.2)  # (Chromium renames the finished file into place)
    return path


def test_inspect_and_correct_in_a_browser(browser, live_server, rendered_clip, tmp_path) -> None:
    """Hover, fit-to-range, select/delete/move/draw/velocity, undo/redo, the download holds the edits,
    a reload keeps them, re-decoding asks first."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    url, app = live_server
    open_clip(browser, url, rendered_clip.wav)
    canvas = browser.find_element(By.ID, "roll")
    notes = page_notes(browser)
    keys = [n[0] for n in notes]
    assert sorted(keys) == sorted(n.key for n in rendered_clip.performance.notes)

    # fit-to-range by default: the piece's keys (36–76) and two more each side, not all 88
    view = browser.execute_script("return window.pianomtl.view")
    assert (view["low"], view["high"]) == (min(keys) - 2, max(keys) + 2)
    ActionChains(browser).send_keys("k").perform()
    assert browser.execute_script("return [window.pianomtl.view.low, window.pianomtl.view.high]") == [21, 108]
    ActionChains(browser).send_keys("f").perform()
    assert browser.execute_script("return window.pianomtl.view.high") == max(keys) + 2

    # hover a note: its name, onset, length, velocity; the pedal band: its CC value
    c3 = next(n for n in notes if n[0] == 48)
    ActionChains(browser).move_to_element_with_offset(canvas, *note_centre(browser, 48)).perform()
    hover = wait_for(browser, "window.pianomtl.hover")
    hand = " · left hand" if sessions.SCORE_ERROR is None else ""  # (the score's hands, when it has them)
    assert hover == f"C3 · onset {c3[1]:.3f} s · {c3[2] - c3[1]:.3f} s long · velocity {c3[3]}{hand}"
    assert browser.find_element(By.ID, "tip").is_displayed()
    wait_for(browser, "['ready', 'none'].includes(window.pianomtl.scoreState)", timeout=90)
    figure(browser, tmp_path, "web-inspect")
    layout = browser.execute_script("return window.pianomtl.api.layout()")
    x = browser.execute_script("return window.pianomtl.api.xOf(1.6)")  # (the pedal is decoded down 1.53–1.71 s)
    ActionChains(browser).move_to_element_with_offset(canvas, *offset_of(browser, x, layout["pedalTop"] + 15)).perform()
    assert wait_for(browser, "window.pianomtl.hover").startswith("sustain pedal (CC64) 127 at 1.60 s")

    # a tap (touch) shows a note's info and selects it, and the info stays when the finger lifts
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    tap = ActionBuilder(browser, mouse=PointerInput(interaction.POINTER_TOUCH, "finger"))
    tap.pointer_action.move_to(canvas, *note_centre(browser, 67)).pointer_down().pause(0.1).pointer_up()
    tap.perform()
    assert wait_for(browser, "window.pianomtl.hover").startswith("G4 · onset")
    assert browser.find_element(By.ID, "tip").is_displayed()
    assert browser.execute_script("return window.pianomtl.selection.size") == 1
    assert page_notes(browser) == notes  # nothing moved

    # select C4 with a click, delete it; undo and redo
    ActionChains(browser).move_to_element_with_offset(canvas, *note_centre(browser, 60)).click().perform()
    assert browser.execute_script("return window.pianomtl.selection.size") == 1
    assert browser.find_element(By.ID, "inspector").is_displayed()
    ActionChains(browser).send_keys(Keys.DELETE).perform()
    assert 60 not in [n[0] for n in page_notes(browser)] and len(page_notes(browser)) == len(notes) - 1
    ActionChains(browser).key_down(Keys.CONTROL).send_keys("z").key_up(Keys.CONTROL).perform()
    assert page_notes(browser) == notes
    ActionChains(browser).key_down(Keys.CONTROL).key_down(Keys.SHIFT).send_keys("z").key_up(Keys.SHIFT).key_up(
        Keys.CONTROL
    ).perform()
    assert 60 not in [n[0] for n in page_notes(browser)]
    assert browser.execute_script("return window.pianomtl.edited") is True

    # drag G4 two keys up (to A4), same time
    key_h = layout["keyH"]
    g4 = next(n for n in notes if n[0] == 67)
    x, y = note_centre(browser, 67)
    ActionChains(browser).move_to_element_with_offset(canvas, x, y).click_and_hold().move_to_element_with_offset(
        canvas, x, y - round(2 * key_h)
    ).release().perform()
    moved = next(n for n in page_notes(browser) if n[0] == 69)
    assert moved[1:] == g4[1:]

    # draw a note on A#4 from 0.1 s to 0.5 s, then type its velocity
    ActionChains(browser).send_keys("d").perform()
    ActionChains(browser).move_to_element_with_offset(
        canvas, *point(browser, 0.1, 70)
    ).click_and_hold().move_to_element_with_offset(canvas, *point(browser, 0.5, 70)).release().perform()
    ActionChains(browser).send_keys("v").perform()
    drawn = next(n for n in page_notes(browser) if n[0] == 70)
    beats = browser.execute_script("return window.pianomtl.beats")
    grid = [a + (b - a) * i / 4 for a, b in itertools.pairwise(beats) for i in range(4)]
    if beats:  # (when pianomtl.score finds a steady beat in the clip) edits snap to quarters of a beat
        for time_ in (drawn[1], drawn[2]):
            assert min(abs(time_ - g) for g in grid) < 1e-3, (time_, grid)
        assert drawn[1] == pytest.approx(0.1, abs=0.2) and drawn[2] == pytest.approx(0.5, abs=0.2)
    else:  # no beats: no snapping
        assert beats == [] and drawn[1] == pytest.approx(0.1, abs=0.01) and drawn[2] == pytest.approx(0.5, abs=0.01)
    velocity = browser.find_element(By.ID, "velocity-value")
    velocity.send_keys(Keys.CONTROL, "a")
    velocity.send_keys("30", Keys.ENTER)
    wait_for(browser, "window.pianomtl.notes.some(n => n.key === 70 && n.velocity === 30)")
    # alt + drag up: louder (a step per 2 px), in one undo step
    c7 = next(n for n in page_notes(browser) if n[0] == 72)
    x, y = note_centre(browser, 72)
    ActionChains(browser).key_down(Keys.ALT).move_to_element_with_offset(
        canvas, x, y
    ).click_and_hold().move_to_element_with_offset(canvas, x, y - 20).release().key_up(Keys.ALT).perform()
    louder = next(n for n in page_notes(browser) if n[0] == 72)
    assert louder[:3] == c7[:3] and louder[3] == c7[3] + 10
    steps = browser.execute_script("return window.pianomtl.undo.length")
    browser.find_element(By.ID, "undo").click()
    assert next(n for n in page_notes(browser) if n[0] == 72) == c7
    browser.find_element(By.ID, "redo").click()
    assert browser.execute_script("return window.pianomtl.undo.length") == steps

    # a box selects what it touches, shift + click adds; drag a note's right end: longer (on the grid)
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()
    ActionChains(browser).move_to_element_with_offset(
        canvas, *point(browser, 1.95, max(keys) + 1)
    ).click_and_hold().move_to_element_with_offset(canvas, *point(browser, 2.7, min(keys) - 1)).release().perform()
    boxed = browser.execute_script(
        "const p = window.pianomtl; return p.notes.filter(n => p.selection.has(n.id)).map(n => n.key)"
    )
    assert sorted(boxed) == [36, 76]  # (the notes sounding between 1.95 s and 2.7 s)
    ActionChains(browser).key_down(Keys.SHIFT).move_to_element_with_offset(
        canvas, *note_centre(browser, 48)
    ).click().key_up(Keys.SHIFT).perform()
    assert browser.execute_script("return window.pianomtl.selection.size") == 3
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()
    box = browser.execute_script("const p = window.pianomtl; return p.api.noteBox(p.notes.find(n => n.key === 48).id)")
    grip = offset_of(browser, box["x"] + box["w"] - 2, box["y"] + box["h"] / 2)
    ActionChains(browser).move_to_element_with_offset(canvas, *grip).click_and_hold().move_to_element_with_offset(
        canvas, grip[0] + 80, grip[1]
    ).release().perform()
    longer = next(n for n in page_notes(browser) if n[0] == 48)
    assert longer[1] == c3[1] and longer[2] > c3[2] + 0.1
    assert not grid or min(abs(longer[2] - g) for g in grid) < 1e-3  # (on the grid when there is one)
    edited = page_notes(browser)
    figure(browser, tmp_path, "web-correct")

    # every download is the page's transcription, edits included
    midi = read_midi(download(browser, "clip.mid"))
    assert [(n.key, n.velocity) for n in midi.notes] == [(n[0], n[3]) for n in edited]
    assert [n.onset for n in midi.notes] == pytest.approx([n[1] for n in edited], abs=2e-3)
    assert (70, 30) in [(n.key, n.velocity) for n in midi.notes] and 60 not in [n.key for n in midi.notes]
    rows = list(csv.reader(io.StringIO(download(browser, "clip.csv").read_text())))
    assert [int(r[2]) for r in rows[1:]] == [n[0] for n in edited]
    assert [n["key"] for n in json.loads(download(browser, "clip.json").read_text())["notes"]] == [n[0] for n in edited]
    session = browser.execute_script("return window.pianomtl.session")
    assert len(app.state.store.get(session).current.notes) == len(notes)  # the server's copy is not edited

    # a reload keeps the edits (in this browser's storage): same recording, same notes
    browser.refresh()
    wait_for(browser, "window.pianomtl.status === 'ready' && window.pianomtl.edited")
    assert browser.execute_script("return window.pianomtl.session") == session
    assert page_notes(browser) == edited
    assert "are back" in browser.find_element(By.ID, "notice").text

    # re-decoding with the slider asks before it replaces the edits; undo brings them back
    slider = browser.find_element(By.ID, "sensitivity")
    slider.send_keys(Keys.ARROW_RIGHT)
    alert = WebDriverWait(browser, 10).until(expected_conditions.alert_is_present())
    assert "replaces the notes" in alert.text
    alert.dismiss()
    time.sleep(0.5)
    assert page_notes(browser) == edited
    slider.send_keys(Keys.ARROW_RIGHT)
    WebDriverWait(browser, 10).until(expected_conditions.alert_is_present()).accept()
    wait_for(browser, "!window.pianomtl.edited")
    decoded = app.state.store.get(session).payload()["notes"]
    assert [n[0] for n in page_notes(browser)] == [n["key"] for n in decoded]
    browser.find_element(By.ID, "undo").click()
    assert page_notes(browser) == edited
    logged = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert logged == []


def test_practise_in_a_browser(browser, live_server, rendered_clip, tmp_path) -> None:
    """A–B loop from the ruler, half speed with the recording's pitch kept, hands coloured and muted,
    the shortcuts' help overlay."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    url, _ = live_server
    open_clip(browser, url, rendered_clip.wav)
    canvas = browser.find_element(By.ID, "roll")
    x0, x1 = browser.execute_script("const a = window.pianomtl.api; return [a.xOf(0.5), a.xOf(1.5)]")
    ActionChains(browser).move_to_element_with_offset(
        canvas, *offset_of(browser, x0, 10)
    ).click_and_hold().move_to_element_with_offset(canvas, *offset_of(browser, x1, 10)).release().perform()
    loop = browser.execute_script("return window.pianomtl.loop")
    assert loop["on"] and loop["a"] == pytest.approx(0.5, abs=0.01) and loop["b"] == pytest.approx(1.5, abs=0.01)

    ActionChains(browser).send_keys("h").perform()
    Select(browser.find_element(By.ID, "speed")).select_by_value("0.5")
    browser.find_element(By.ID, "mute-left").click()
    assert browser.execute_script("return [window.pianomtl.hands.colour, window.pianomtl.hands.mute.L]") == [True, True]
    browser.find_element(By.ID, "play").click()
    wait_for(browser, "window.pianomtl.playing && window.pianomtl.position > 0.55", timeout=30)
    audio = browser.execute_script(
        "const a = document.getElementById('original'); return [a.playbackRate, a.preservesPitch]"
    )
    assert audio == [0.5, True]
    rate = browser.execute_script(
        """const p = window.pianomtl, t0 = performance.now(), x0 = p.position;
        return new Promise(done => setTimeout(
          () => done((p.position - x0) / ((performance.now() - t0) / 1000)), 600));"""
    )
    assert 0.3 < rate < 0.7, rate  # recording seconds per second: half speed
    wait_for(browser, "window.pianomtl.loops >= 1", timeout=20)
    positions = []
    for _ in range(10):
        positions.append(browser.execute_script("return window.pianomtl.position"))
        time.sleep(0.1)
    assert all(0.45 <= p <= 1.6 for p in positions), positions  # inside the loop
    played = browser.execute_script("return window.pianomtl.played")
    assert played["L"] == 0 and played["R"] >= 2  # (G4, C5 in the loop; the left hand's G3 is muted)
    figure(browser, tmp_path, "web-practise")
    browser.find_element(By.ID, "play").click()
    assert browser.execute_script("return window.pianomtl.playing") is False

    # the keys: , and . step the speed; [ and ] set the loop at the playhead
    browser.execute_script("document.activeElement.blur()")
    ActionChains(browser).send_keys(".").perform()
    assert browser.execute_script("return window.pianomtl.speed") == 0.6
    ActionChains(browser).send_keys(",", ",").perform()
    assert browser.execute_script("return [window.pianomtl.speed, document.getElementById('speed').value]") == [
        0.5,
        "0.5",
    ]
    browser.execute_script("window.pianomtl.api.seek(0.25)")
    ActionChains(browser).send_keys("[").perform()
    browser.execute_script("window.pianomtl.api.seek(2.0)")
    ActionChains(browser).send_keys("]").perform()
    assert browser.execute_script("const l = window.pianomtl.loop; return [l.a, l.b, l.on]") == [0.25, 2.0, True]

    ActionChains(browser).send_keys("?").perform()
    assert browser.find_element(By.ID, "help").is_displayed()
    assert "undo" in browser.find_element(By.ID, "help-table").text
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()
    assert not browser.find_element(By.ID, "help").is_displayed()
    logged = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert logged == []


def test_score_panel_in_a_browser(browser, live_server, steady_clip, tmp_path) -> None:
    """The score beside the roll (verovio, engraved by the server from the page's notes), the playhead
    on both, the metronome on the beats, a MusicXML download with the edits."""
    if sessions.SCORE_ERROR:
        pytest.skip(sessions.SCORE_ERROR)
    pytest.importorskip("music21", reason="the score extra is not installed")
    pytest.importorskip("verovio", reason="the score extra is not installed")
    from music21 import converter
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, _ = live_server
    open_clip(browser, url, steady_clip)
    wait_for(browser, "window.pianomtl.scoreState === 'ready'", timeout=90)
    assert not browser.find_element(By.ID, "score-note").is_displayed()  # metered: no warning
    assert browser.find_element(By.ID, "score-panel").is_displayed()
    heads = browser.execute_script("return window.pianomtl.scoreNotes")
    assert heads >= len(page_notes(browser))  # (and tied continuations)
    assert browser.execute_script("return document.querySelectorAll('#score svg .note').length") >= heads

    # play with the metronome: a note lights on the score as the playhead passes it; the beats click
    assert not browser.find_element(By.ID, "metronome").get_attribute("disabled")
    ActionChains(browser).send_keys("m").perform()
    browser.find_element(By.ID, "play").click()
    wait_for(browser, "window.pianomtl.scoreTime >= 0.4 && document.querySelector('#score .playing')", timeout=30)
    wait_for(browser, "window.pianomtl.clicks >= 2", timeout=30)
    figure(browser, tmp_path, "web-score")
    browser.find_element(By.ID, "play").click()

    # an edit (the top C6 deleted) goes into the score when asked (as into a download), and into the MusicXML
    canvas = browser.find_element(By.ID, "roll")
    ActionChains(browser).move_to_element_with_offset(canvas, *note_centre(browser, 84)).click().perform()
    ActionChains(browser).send_keys(Keys.DELETE).perform()
    assert browser.find_element(By.ID, "score-bar").is_displayed()
    assert browser.execute_script("return window.pianomtl.scoreNotes") == heads
    browser.find_element(By.ID, "score-update").click()
    wait_for(browser, f"window.pianomtl.scoreState === 'ready' && window.pianomtl.scoreNotes < {heads}", timeout=90)
    assert not browser.find_element(By.ID, "score-bar").is_displayed()
    score = converter.parse(str(download(browser, "steady.musicxml")))
    pitches = {p.midi for p in score.pitches}
    assert pitches == {n[0] for n in page_notes(browser)} and 84 not in pitches

    # with beats, a drawn note snaps to quarters of a beat
    beats = browser.execute_script("return window.pianomtl.beats")
    grid = [a + (b - a) * i / 4 for a, b in itertools.pairwise(beats) for i in range(4)]
    ActionChains(browser).send_keys("d").perform()
    ActionChains(browser).move_to_element_with_offset(
        canvas, *point(browser, 0.41, 60)
    ).click_and_hold().move_to_element_with_offset(canvas, *point(browser, 1.13, 60)).release().perform()
    ActionChains(browser).send_keys("v").perform()
    drawn = next(n for n in page_notes(browser) if n[0] == 60)
    assert all(min(abs(t - g) for g in grid) < 1e-3 for t in drawn[1:3]), (drawn, grid)
    assert drawn[1] != 0.41 and drawn[2] != 1.13
    logged = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert logged == []


def test_script_budget() -> None:
    """The page is one local bundle without a build step: at most 150 KB of script, uncompressed."""
    scripts = list(STATIC.glob("*.js"))
    assert scripts and sum(p.stat().st_size for p in scripts) <= 150_000
