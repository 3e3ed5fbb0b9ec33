"""The server's sessions: one uploaded (or live-recorded) recording each, its transcription and its files.

A session is a folder inside the server's one temporary folder (made when the server
starts, removed when it stops): the upload, a WAV copy for browsers when the upload's
format is not one they play, and the downloads written on request. Nothing is written
anywhere else. Sessions are named by random ids, so two browser tabs (or two people on
one machine) never see each other's work; a session not touched for :data:`IDLE_SECONDS`
is removed, and at most ``max_sessions`` are kept (the least recently used finished one
goes first).

Transcriptions run one at a time on a background thread (the model is shared; a CPU
has no spare cores for two), reporting their stage and progress from the pipeline's
block and chunk loops (:meth:`~pianomtl.transcription.pipeline.Transcriber.__call__`);
a session removed while it is transcribed (its tab closed, the server stopping) stops
at the next block or chunk.
The activations are kept, so the onset threshold is changed by re-decoding them
(:func:`~pianomtl.transcription.decoders.decode`, milliseconds) without the network.

This module knows nothing of HTTP: :mod:`pianomtl.web.server` maps requests onto it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import math
import queue
import re
import secrets
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from pianomtl.core.audio import AudioError, open_audio, source_name
from pianomtl.core.midi import Note, PedalEvent
from pianomtl.extras import require
from pianomtl.transcription.decoders import DecoderParams
from pianomtl.transcription.formats import FORMATS
from pianomtl.transcription.result import Transcription

log = logging.getLogger(__name__)

try:  # beats, hands, the score and its downloads (issue 26); the page works without them
    from pianomtl.score import analyse, meter_map, musicxml_text, to_score
    from pianomtl.score import formats as _score_formats  # noqa: F401  (registers musicxml, svg and pdf)
    from pianomtl.score.hands import LEFT
    from pianomtl.score.sheet import NOMINAL_BPM, VEROVIO_OPTIONS, verovio_toolkit

    SCORE_ERROR: str | None = None
except ImportError as error:  # (a broken score room must not take the page down with it; said when used)
    SCORE_ERROR = f"pianomtl.score cannot be imported ({error}): no beats, hands by a split key, no score"
    VEROVIO_OPTIONS = {}

IDLE_SECONDS = 2 * 3600.0
"""A session nobody has asked about for this long is removed (its tab is long closed)."""
MAX_SESSIONS = 8
BROWSER_FORMATS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")
"""Uploads served back as they are; others (AIFF, CAF, W64, AU …) get a WAV copy for the page's player."""
STAGE_SPAN = {"queued": (0.0, 0.0), "reading": (0.0, 0.25), "network": (0.25, 0.95), "decoding": (0.95, 1.0)}
"""Each stage's share of the progress bar (the network dominates on a CPU)."""
DOWNLOADS = FORMATS
"""The page's downloads: every output format, by name (:mod:`pianomtl.transcription.formats`)."""


class Cancelled(Exception):
    """The session was removed while it was being transcribed."""


class SessionError(Exception):
    """A request the session cannot serve; ``status`` is the HTTP status, the message one line."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def clean_name(name: str | None) -> str:
    """A file name fit to show and to offer as a download: no folders, no control characters, ≤ 100 characters."""
    name = re.split(r"[\\/]", name or "")[-1]
    name = "".join(c for c in name if c.isprintable()).strip() or "recording"
    if len(name) > 100:
        stem, dot, suffix = name.rpartition(".")
        name = (stem[: 95 - len(suffix)] + dot + suffix) if dot and len(suffix) <= 8 else name[:100]
    return name


def safe_suffix(name: str) -> str:
    """The lower-case extension of ``name`` if it is short and plain (``.flac``), else ``""``."""
    suffix = Path(name).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""


MISLEADING_DECODER_TEXT = re.compile(r"\s*\(File does not exist or is not a regular file \(possibly a pipe\?\)\.?\)")
"""What libsndfile says of bytes it cannot decode (random data named ``.mp3``): the file exists and is regular."""


def audio_error_text(error: Exception, path: Path, name: str) -> str:
    """An :class:`AudioError` about the session's copy, reworded to name the user's file (one line).

    libsndfile's "File does not exist or is not a regular file (possibly a pipe?)" for an
    upload that is there but is not audio it can decode is replaced by what is true.
    """
    text = " ".join(str(error).split())
    prefix = f"{source_name(path)}: "
    if text.startswith(prefix):
        text = text[len(prefix) :]
    text = MISLEADING_DECODER_TEXT.sub(" (its data is not audio in any format this server decodes)", text)
    return f"{name}: {text}"


MAX_EDITED_NOTES = 200_000
"""An edited transcription sent for a download may hold at most this many notes (hours of dense piano)."""


def edited_transcription(current: Transcription, edited: Any, name: str) -> Transcription:
    """``current`` with the notes (and pedal) the page sends in place of its own: its edits.

    ``edited`` is ``{"notes": [{"key", "onset", "offset", "velocity"}, …], "pedal": [{"time", "value"}, …]}``
    (pedal optional). Anything else is a :class:`SessionError` naming the first bad note, in one line.
    """
    if not isinstance(edited, dict) or not isinstance(edited.get("notes"), list):
        raise SessionError('send JSON: {"notes": [{"key": 60, "onset": 0.5, "offset": 1.0, "velocity": 80}, …]}')
    raw_notes = edited["notes"]
    if len(raw_notes) > MAX_EDITED_NOTES:
        raise SessionError(f"{name}: {len(raw_notes)} notes is more than the {MAX_EDITED_NOTES} a download may hold")
    notes = []
    for index, raw in enumerate(raw_notes):
        try:
            key, velocity = raw["key"], raw["velocity"]
            onset, offset = float(raw["onset"]), float(raw["offset"])
            ok = (
                type(key) is int
                and type(velocity) is int
                and 21 <= key <= 108
                and 1 <= velocity <= 127
                and math.isfinite(onset)
                and math.isfinite(offset)
                and 0.0 <= onset < offset
            )
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise SessionError(
                f"{name}: note {index + 1} is not a piano note (key 21–108, velocity 1–127, 0 ≤ onset < offset): "
                f"{str(raw)[:80]}"
            )
        notes.append(Note(key, onset, offset, velocity))
    pedal = current.pedal
    if edited.get("pedal") is not None:
        try:
            pedal = [PedalEvent(float(p["time"]), int(p["value"])) for p in edited["pedal"]]
        except (KeyError, TypeError, ValueError):
            raise SessionError(f"{name}: the pedal must be a list of {{time, value}}") from None
        if not all(math.isfinite(p.time) and p.time >= 0 and 0 <= p.value <= 127 for p in pedal):
            raise SessionError(f"{name}: a pedal event is out of range (time ≥ 0, value 0–127)")
    notes.sort(key=lambda n: (n.onset, n.key))
    duration = max([current.duration, *(n.offset for n in notes)])
    return dataclasses.replace(current, notes=notes, pedal=sorted(pedal, key=lambda p: p.time), duration=duration)


@dataclasses.dataclass
class Session:
    """One recording and its transcription (guarded by ``lock``)."""

    id: str
    name: str
    folder: Path
    audio: Path
    live: bool = False
    state: str = "queued"  # queued → running → done | error
    stage: str = "queued"
    progress: float = 0.0
    error: str | None = None
    result: Transcription | None = None  # as transcribed (the activations, the model's decoder)
    current: Transcription | None = None  # as last decoded (the slider)
    created: float = dataclasses.field(default_factory=time.monotonic)
    touched: float = dataclasses.field(default_factory=time.monotonic)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)
    playable: Path | None = None
    _music: tuple[Transcription, dict[str, Any]] | None = dataclasses.field(default=None, repr=False)
    _score: tuple[Transcription, dict[str, Any]] | None = dataclasses.field(default=None, repr=False)
    score_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)
    cancelled: bool = False

    @property
    def stem(self) -> str:
        return Path(self.name).stem or "recording"

    def report(self, stage: str, fraction: float) -> None:
        """The pipeline's progress callback (it also stops a removed session's transcription)."""
        if self.cancelled:
            raise Cancelled
        low, high = STAGE_SPAN.get(stage, (0.0, 1.0))
        self.stage = stage
        self.progress = max(self.progress, low + (high - low) * min(max(fraction, 0.0), 1.0))

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "stage": self.stage,
            "progress": round(self.progress, 4),
            "error": self.error,
            "live": self.live,
        }
        if self.current is not None:
            status["duration"] = round(self.current.duration, 4)
            status["notes"] = len(self.current.notes)
        return status

    def payload(self) -> dict[str, Any]:
        """What the page draws: notes, pedal, duration, the decoder (as last decoded)."""
        if self.current is None:
            raise SessionError(f"{self.name} is not transcribed yet ({self.state})", 409)
        data = self.current.to_dict()
        data["name"] = self.name
        data["id"] = self.id
        data["redecode"] = self.result is not None and self.result.activations is not None
        data["default_onset_threshold"] = self.result.decoder.onset_threshold if self.result else None
        music = self.music()
        for note, hand in zip(data["notes"], music.pop("hands", ()), strict=False):
            note["hand"] = hand
        data.update(music)
        if SCORE_ENGRAVING:
            data["score"] = {"url": f"/api/sessions/{self.id}/score"}
        return data

    def music(self) -> dict[str, Any]:
        """Beats, downbeats and hands of the current notes (:func:`music_of`), computed once per decoding."""
        current = self.current
        if current is None:
            return {}
        if self._music is None or self._music[0] is not current:
            try:
                music = music_of(current)
            except Exception:  # the page works without beats and hands (a split key, no metronome)
                log.exception("beats and hands of %s failed", self.name)
                music = {}
            self._music = (current, music)
        return dict(self._music[1])


def music_of(transcription: Transcription) -> dict[str, Any]:
    """What the page needs of :mod:`pianomtl.score` for practising: ``hands`` ("L"/"R" per note, in order)
    and, where the beats are confident, ``beats`` and ``downbeats`` (seconds, from 0 past the end),
    ``tempo`` (bpm) and ``beats_per_bar``. Unmetered music has hands but no beats (no metronome, no snap);
    without :mod:`pianomtl.score` (:data:`SCORE_ERROR`) nothing."""
    if SCORE_ERROR is not None:
        log.warning("%s", SCORE_ERROR)
        return {}
    analysis = analyse(transcription, warn=False)
    data: dict[str, Any] = {"hands": ["L" if hand == LEFT else "R" for hand in analysis.hands]}
    data["metered"] = analysis.metered
    if analysis.metered:
        meter = analysis.meter
        beats = [float(b) for b in meter.beats]
        while beats[-1] < transcription.duration:  # to the recording's end at the last tempo: the metronome
            beats.append(2 * beats[-1] - beats[-2])
        beats = [round(b, 4) for b in beats]
        data["beats"] = beats
        data["downbeats"] = beats[meter.first_downbeat % meter.beats_per_bar :: meter.beats_per_bar]
        data["tempo"] = round(float(analysis.grid.tempo), 1)
        data["beats_per_bar"] = meter.beats_per_bar
    return data


TEMPO_MAPS = SCORE_ERROR is None and any(f.name == "meter" for f in dataclasses.fields(Transcription))
"""Whether a transcription carries a tempo map for its MIDI file (issue 26: ``Transcription.meter``)."""
HEAD_SLACK = 0.5
"""Quarters a note head may sit from its quantised start in verovio's timemap (tuplets round there)."""
SCORE_ENGRAVING = SCORE_ERROR is None and all(importlib.util.find_spec(name) for name in ("music21", "verovio"))
"""Whether the page can show the score (the score extra: music21 builds it, verovio engraves it)."""
SCORE_PANEL = {
    **VEROVIO_OPTIONS,
    "pageWidth": 1300,
    "scale": 50,
    "pageHeight": 60000,
    "adjustPageHeight": True,
    "header": "none",
}
"""verovio options for the page's score panel: one tall page, narrower than A4 (the panel is beside the roll)."""


def score_view(transcription: Transcription, title: str | None = None) -> dict[str, Any]:
    """The score of ``transcription`` for the page: ``svg`` (verovio, one tall page) and ``times``
    (each note's SVG id → its time in the recording, seconds), so that a playhead moves on the score too.

    verovio's timemap places every note head in quarter notes (``qstamp``) with its MIDI pitch;
    the quantised notes say which performed note sits at each score position and pitch, so
    a note head lights at the time it was played (the performance's rubato, not a fixed
    tempo), and a tied continuation a beat's length per quarter later."""
    require("music21", "the score on the page", "score")
    analysis = analyse(transcription, warn=False)
    with warnings.catch_warnings(record=True) as caught:  # (unmetered: said on the panel, not in the log)
        warnings.simplefilter("always")
        score = to_score(analysis, title=title)
    toolkit = verovio_toolkit("the score on the page")
    toolkit.setOptions(SCORE_PANEL)
    if not toolkit.loadData(musicxml_text(score)):
        raise SessionError("verovio could not read the score's MusicXML", 500)
    svg = toolkit.renderToSVG(1)
    timemap = toolkit.renderToTimemap({})
    if isinstance(timemap, str):
        timemap = json.loads(timemap)
    by_key: dict[int, list[Any]] = {}
    for quantised in analysis.quantised:
        by_key.setdefault(quantised.key, []).append(quantised)
    beat = 60.0 / (analysis.grid.tempo if analysis.metered and analysis.grid.tempo > 0 else NOMINAL_BPM)
    starts = [float(entry["qstamp"]) for entry in timemap if entry.get("on")]
    first = min((float(q.start) for q in analysis.quantised), default=0.0)
    shift = (min(starts) - first) if starts else 0.0  # the score's first note is the first played
    heads: dict[int, float] = {}  # a quantised note's index → the score position of its head
    times: dict[str, float] = {}
    for entry in sorted(timemap, key=lambda e: float(e.get("qstamp", 0.0))):
        position = float(entry.get("qstamp", 0.0)) - shift
        for element in entry.get("on", ()):
            candidates = by_key.get(int(toolkit.getMIDIValuesForElement(element).get("pitch", -1)), [])
            if not candidates:  # (not a note of the transcription)
                continue
            fresh = [c for c in candidates if c.index not in heads and abs(float(c.start) - position) < HEAD_SLACK]
            if fresh:
                note = min(fresh, key=lambda c: abs(float(c.start) - position))
                heads[note.index] = position
                at = analysis.notes[note.index].onset
            else:  # a tied continuation of a note already placed
                note = min(candidates, key=lambda c: abs(heads.get(c.index, float(c.start)) - position))
                head = heads.setdefault(note.index, position)
                at = analysis.notes[note.index].onset + (position - head) * beat
            times[element] = round(float(at), 4)
    notes = "; ".join(dict.fromkeys(str(w.message).splitlines()[0] for w in caught)) or None
    return {"svg": svg, "times": times, "metered": analysis.metered, "warning": notes}


class SessionStore:
    """The sessions of one server, their folder, and the transcription worker."""

    def __init__(
        self,
        transcriber: Any,
        max_upload_bytes: int,
        max_sessions: int = MAX_SESSIONS,
        idle_seconds: float = IDLE_SECONDS,
        root: str | Path | None = None,
    ) -> None:
        self.transcriber = transcriber
        self.max_upload_bytes = max_upload_bytes
        self.max_sessions = max_sessions
        self.idle_seconds = idle_seconds
        self._temporary = tempfile.TemporaryDirectory(prefix="pianomtl-web-", dir=root)
        self.root = Path(self._temporary.name)
        self.sessions: dict[str, Session] = {}
        self.lock = threading.Lock()
        self.jobs: queue.Queue[Session | None] = queue.Queue()
        # a daemon thread: Ctrl-C stops the server at once, not after the transcription in progress
        self.worker = threading.Thread(target=self._work, name="pianomtl-transcribe", daemon=True)
        self.worker.start()
        self.closed = False

    # -- life cycle --------------------------------------------------------------------

    def new(self, name: str | None, live: bool = False) -> Session:
        """A fresh session folder (its ``audio`` not written yet); 503 when full of busy sessions."""
        self.expire()
        with self.lock:
            if self.closed:
                raise SessionError("the server is shutting down", 503)
            if len(self.sessions) >= self.max_sessions:
                idle = [s for s in self.sessions.values() if s.state in ("done", "error")]
                if not idle:
                    raise SessionError(
                        f"the server is busy with {len(self.sessions)} recordings; wait for one to finish", 503
                    )
                self._remove(min(idle, key=lambda s: s.touched))
            session_id = secrets.token_urlsafe(12)
            name = clean_name(name)
            folder = self.root / session_id
            folder.mkdir()
            session = Session(session_id, name, folder, folder / f"input{safe_suffix(name)}", live=live)
            self.sessions[session_id] = session
            return session

    def get(self, session_id: str) -> Session:
        with self.lock:
            session = self.sessions.get(session_id)
            if session is None:
                raise SessionError("no such session (it may have expired: open the recording again)", 404)
            session.touched = time.monotonic()
            return session

    def remove(self, session_id: str) -> None:
        with self.lock:
            session = self.sessions.get(session_id)
            if session is not None:
                self._remove(session)

    def _remove(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        session.cancelled = True
        session.state = "error" if session.state in ("queued", "running") else session.state
        shutil.rmtree(session.folder, ignore_errors=True)

    def expire(self) -> None:
        now = time.monotonic()
        with self.lock:
            for session in list(self.sessions.values()):
                if now - session.touched > self.idle_seconds and session.state in ("done", "error"):
                    self._remove(session)

    def close(self) -> None:
        """Stop the worker (a running transcription is abandoned) and remove every file."""
        with self.lock:
            self.closed = True
            for session in self.sessions.values():
                session.cancelled = True
            self.sessions.clear()
        self.jobs.put(None)
        self.worker.join(timeout=5.0)  # a transcription stops at its next block or chunk
        self._temporary.cleanup()

    # -- uploads and transcription ----------------------------------------------------

    def check_audio(self, session: Session) -> None:
        """Open the upload as audio (the CLI's reader) or remove the session and say why, in one line."""
        try:
            with open_audio(session.audio) as handle:
                frames = handle.frames
        except AudioError as error:
            self.remove(session.id)
            raise SessionError(audio_error_text(error, session.audio, session.name), 415) from None
        if frames == 0:
            self.remove(session.id)
            raise SessionError(f"{session.name}: contains no samples", 415)

    def start(self, session: Session) -> None:
        self.jobs.put(session)

    def _work(self) -> None:
        while (session := self.jobs.get()) is not None:
            self._transcribe(session)

    def _transcribe(self, session: Session) -> None:
        if session.cancelled:  # removed while queued
            return
        session.state = "running"
        try:
            if session.audio.suffix.lower() not in BROWSER_FORMATS:
                session.report("reading", 0.0)
                session.playable = self.browser_copy(session)
            result = self.transcriber(session.audio, progress=session.report)
            result.source = session.name
            with session.lock:
                session.result = session.current = result
            session.music()  # beats and hands now, not when the page first asks for the notes
            session.report("decoding", 1.0)
            session.state = "done"
        except Cancelled:
            session.state = "error"
            session.error = f"{session.name}: closed while it was being transcribed"
        except AudioError as error:
            session.error = audio_error_text(error, session.audio, session.name)
            session.state = "error"
        except Exception as error:  # shown on the page in one line; the server goes on
            log.exception("transcription of %s failed", session.name)
            session.error = f"{session.name}: transcription failed ({type(error).__name__}: {error})"
            session.state = "error"

    def browser_copy(self, session: Session) -> Path:
        """A 16-bit WAV of the upload (at most two channels) for the page's player, read block by block."""
        import soundfile as sf

        target = session.folder / "playable.wav"
        with open_audio(session.audio) as source:
            channels = min(source.channels, 2)
            with sf.SoundFile(
                str(target), "w", samplerate=source.samplerate, channels=channels, subtype="PCM_16"
            ) as out:
                for block in source.blocks(blocksize=1 << 18, dtype="float32", always_2d=True):
                    if block.shape[1] != channels:
                        block = block.mean(axis=1, keepdims=True)
                    out.write(np.clip(block, -1.0, 1.0))
        return target

    def playable(self, session: Session, wav: bool = False) -> Path:
        """The file the page's audio player gets: the upload, or its WAV copy (``wav``: always the copy,
        for a browser that cannot play the upload's format)."""
        if session.playable is not None:
            return session.playable
        if session.audio.suffix.lower() in BROWSER_FORMATS and not wav:
            return session.audio
        if session.state != "done":  # (a copy for a format browsers do not play is made by the job itself)
            raise SessionError(f"{session.name} is not ready to play yet", 409)
        with session.lock:
            if session.playable is None:
                session.playable = self.browser_copy(session)
        return session.playable

    # -- decoding and downloads -------------------------------------------------------

    def redecode(self, session: Session, onset_threshold: Any) -> dict[str, Any]:
        """Decode the kept activations again with another onset threshold; the new payload."""
        try:
            value = float(onset_threshold)
        except (TypeError, ValueError):
            raise SessionError(f"onset_threshold must be a number, got {onset_threshold!r}") from None
        try:  # the range is DecoderParams' own (one definition; /api/config's "decoder" shows it to the page)
            DecoderParams.limits()["onset_threshold"].check("onset_threshold", value)
        except ValueError as error:
            raise SessionError(str(error)) from None
        with session.lock:
            result = session.result
            if result is None:
                raise SessionError(f"{session.name} is not transcribed yet ({session.state})", 409)
            if result.activations is None:
                raise SessionError(f"{session.name}: a live take has no activations to decode again", 409)
            session.current = result.redecode(onset_threshold=round(value, 4))  # the other options kept
            return session.payload()

    @staticmethod
    def _shown(session: Session, edited: Any) -> Transcription:
        """What the page shows: the current transcription, or the page's edited notes on it (call under the lock)."""
        current = session.current
        if current is None:
            raise SessionError(f"{session.name} is not transcribed yet ({session.state})", 409)
        return current if edited is None else edited_transcription(current, edited, session.name)

    def download(self, session: Session, kind: str, edited: Any = None) -> Path:
        """The current transcription written as ``kind`` (a name in :data:`DOWNLOADS`) in the session's folder.

        ``edited``: the page's notes (:func:`edited_transcription`), so that a download is what the
        user sees, edits included; the session itself keeps the notes as decoded (the edits live
        in the browser)."""
        if kind not in DOWNLOADS:
            raise SessionError(f"unknown format {kind!r}; choose from {', '.join(DOWNLOADS)}", 404)
        with session.lock:
            current = self._shown(session, edited)
            if kind == "mid" and TEMPO_MAPS and current.meter is None:  # bars that follow the music, as
                current = dataclasses.replace(current, meter=meter_map(current))  # `transcribe` writes them
            path = session.folder / f"transcription.{kind}"
            current.write(path, kind)
            return path

    def score(self, session: Session, edited: Any = None) -> dict[str, Any]:
        """The score panel's SVG and note times (:func:`score_view`) of the current notes, or of the
        page's notes when it sends them (``edited``, as for a download)."""
        if not SCORE_ENGRAVING:
            raise SessionError(SCORE_ERROR or "the score on the page needs the score extra (music21, verovio)", 404)
        with session.lock:
            current = self._shown(session, edited)
        if not current.notes:
            raise SessionError(f"{session.name}: no notes, so no score", 409)
        # one engraving at a time per session (a long piece takes seconds of CPU); the decoded
        # notes' score is kept until they change, so a repeated request costs nothing
        with session.score_lock:
            if edited is None and session._score is not None and session._score[0] is current:
                return session._score[1]
            view = score_view(current, title=session.stem)
            if edited is None:
                session._score = (current, view)
            return view

    def status(self, session: Session) -> dict[str, Any]:
        """:meth:`Session.status` with ``ahead``: how many recordings are transcribed before this one
        (so that the page says it waits only when it does)."""
        status = session.status()
        if session.state == "queued":
            with self.lock:
                status["ahead"] = sum(
                    1
                    for other in self.sessions.values()
                    if other is not session
                    and other.state in ("queued", "running")
                    and not other.cancelled
                    and (other.state == "running" or other.created < session.created)
                )
        return status
