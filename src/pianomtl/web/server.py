"""The page's server: a Starlette app over :mod:`pianomtl.web.sessions`, run by uvicorn.

Routes (JSON errors are ``{"error": "<one line>"}`` with a 4xx/5xx status):

==========================================  =============================================================
``GET  /``                                  the page (``static/index.html``); ``/static/*`` its files
``GET  /api/config``                        upload limit, audio and download formats, decoder limits, live
``POST /api/sessions``                      multipart upload, field ``audio`` → ``201 {"id", "name"}``;
                                            413 over the size limit, 415 not audio
``GET  /api/sessions/{id}``                 ``{"state", "stage", "progress", "error", …}`` (the page polls)
``GET  /api/sessions/{id}/notes``           notes, pedal, duration, decoder (as last decoded)
``POST /api/sessions/{id}/decode``          ``{"onset_threshold": x}`` → the notes re-decoded from the kept activations
``GET  /api/sessions/{id}/audio``           the recording for the page's player (range requests work)
``GET  /api/sessions/{id}/download/{fmt}``  ``mid``, ``csv`` or ``json`` of the current notes, as an attachment
``POST /api/sessions/{id}/download/{fmt}``  the same of the page's notes (its edits): ``{"notes": [...], "pedal"}``
``GET  /api/sessions/{id}/score``           the score panel: ``{"svg", "times"}`` (verovio; POST: of the page's notes)
``POST /api/sessions/{id}/close``           drop the session now (the page sends it when the tab goes)
``GET  /api/piano``                         the piano samples' manifest (rendered on first use, :mod:`.piano`)
``GET  /api/piano/{key}.wav``               one sample
``WS   /api/live``                          live mode: PCM in, :class:`pianomtl.Stream` events out
==========================================  =============================================================

Live protocol: the page sends ``{"rate": 48000}`` (text), then little-endian float32
mono blocks (binary); the server answers ``{"type": "ready"}``, then
``{"type": "events", "events": [...], "seconds": s}`` after every block, and on
``{"type": "stop"}`` the last events and ``{"type": "done", "id": session}``: the take
was recorded into a session, which is then transcribed offline like an upload (so the
slider, downloads and playback work on it).

The server binds 127.0.0.1 unless told otherwise; the page loads nothing from
anywhere but this server.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from pianomtl.core.audio import AUDIO_EXTENSIONS
from pianomtl.transcription.decoders import DecoderParams
from pianomtl.web.piano import PianoCache
from pianomtl.web.sessions import DOWNLOADS, SessionError, SessionStore

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
DEFAULT_MAX_UPLOAD_MB = 200
FORM_OVERHEAD = 64 * 1024
"""Bytes a multipart body may carry beyond the file itself (boundaries, headers, the file name)."""
MAX_EDITED_BYTES = 64 << 20
"""The largest body of a download with the page's edited notes (JSON, about 80 bytes a note)."""
LIVE_MAX_BLOCK = 1 << 20
"""A live block larger than this (bytes) is refused: the page sends about 0.1 s at a time."""


class UploadTooLarge(Exception):
    pass


def _megabytes(size: float) -> str:
    return f"{size / 1e6:.0f} MB" if size >= 1e6 else f"{size / 1e6:.1f} MB"


def error_response(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(
    transcriber: Any = None,
    *,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_sessions: int = 8,
    piano: PianoCache | None = None,
    temp_root: str | Path | None = None,
    threads: int = 0,
) -> Starlette:
    """The app. ``transcriber``: a :class:`~pianomtl.transcription.pipeline.Transcriber`
    (default: the bundled model, loaded at start-up with ``threads``); ``max_upload_mb``:
    the largest upload; ``piano``: where the piano samples are cached (default
    ``$PIANOMTL_HOME/web-piano``); ``temp_root``: where the server's temporary folder is
    made (default: the system's)."""
    if transcriber is None:
        from pianomtl.transcription.pipeline import Transcriber

        transcriber = Transcriber(threads=threads)
    max_upload_bytes = int(max_upload_mb * 1e6)
    store = SessionStore(transcriber, max_upload_bytes, max_sessions=max_sessions, root=temp_root)
    piano = piano or PianoCache()
    too_large = (
        f"the file is larger than this server's upload limit of {_megabytes(max_upload_bytes)} "
        "(start it with pianomtl serve --max-upload-mb to change it)"
    )

    def guarded(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except SessionError as error:
                return error_response(str(error), error.status)

        return endpoint

    # -- pages -------------------------------------------------------------------------

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def config(request: Request) -> Response:
        return JSONResponse(
            {
                "max_upload_bytes": max_upload_bytes,
                "max_upload": _megabytes(max_upload_bytes),
                "formats": list(AUDIO_EXTENSIONS),
                "downloads": [{"name": f.name, "description": f.description} for f in DOWNLOADS.values()],
                "decoder": {name: limit.to_dict() for name, limit in DecoderParams.limits().items()},
                "live": hasattr(store.transcriber, "stream"),
                "default_onset_threshold": getattr(getattr(store.transcriber, "decoder", None), "onset_threshold", 0)
                or None,
            }
        )

    # -- sessions ------------------------------------------------------------------------

    async def upload(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_upload_bytes + FORM_OVERHEAD:
            return error_response(too_large, 413)
        received = 0
        receive = request.receive

        async def counting_receive() -> Any:  # also bounds chunked uploads that declare no length
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_upload_bytes + FORM_OVERHEAD:
                    raise UploadTooLarge
            return message

        counted = Request(request.scope, counting_receive)
        try:
            form = await counted.form(max_files=1, max_fields=4)
        except UploadTooLarge:
            return error_response(too_large, 413)
        except Exception as error:  # a malformed body (python-multipart or Starlette's parse errors)
            return error_response(f"not a file upload ({str(error).splitlines()[0] or type(error).__name__})", 400)
        try:
            upload_file = form.get("audio")
            if upload_file is None or isinstance(upload_file, str):
                return error_response("no file in the upload (send it as the form field 'audio')", 400)
            name = upload_file.filename or "recording"
            session = await run_in_threadpool(store.new, name)
            try:
                await run_in_threadpool(_copy, upload_file.file, session.audio, max_upload_bytes)
            except UploadTooLarge:
                store.remove(session.id)
                return error_response(too_large, 413)
        finally:
            await form.close()
        await run_in_threadpool(store.check_audio, session)
        store.start(session)
        return JSONResponse({"id": session.id, "name": session.name}, status_code=201)

    async def status(request: Request) -> Response:
        session = store.get(request.path_params["id"])
        return JSONResponse(store.status(session))

    async def notes(request: Request) -> Response:
        session = store.get(request.path_params["id"])
        return JSONResponse(session.payload())

    async def redecode(request: Request) -> Response:
        session = store.get(request.path_params["id"])
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return error_response('send JSON: {"onset_threshold": 0.5}', 400)
        if not isinstance(body, dict) or "onset_threshold" not in body:
            return error_response('send JSON: {"onset_threshold": 0.5}', 400)
        return JSONResponse(await run_in_threadpool(store.redecode, session, body["onset_threshold"]))

    async def audio(request: Request) -> Response:
        session = store.get(request.path_params["id"])
        path = await run_in_threadpool(store.playable, session, request.query_params.get("format") == "wav")
        return FileResponse(path, headers={"Cache-Control": "no-store"})

    async def download(request: Request) -> Response:
        session = store.get(request.path_params["id"])
        kind = request.path_params["kind"]
        edited = await edited_notes(request)
        path = await run_in_threadpool(store.download, session, kind, edited)
        return FileResponse(
            path,
            media_type=DOWNLOADS[kind].media_type,
            filename=f"{session.stem}.{kind}",
            headers={"Cache-Control": "no-store"},
        )

    async def edited_notes(request: Request) -> Any:
        """A POST's body: the page's notes, its edits included (they live in the browser); GET: ``None``."""
        if request.method != "POST":
            return None
        declared = request.headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > MAX_EDITED_BYTES:
            raise SessionError("the edited notes are too large to send", 413)
        try:
            return await request.json()
        except (ValueError, UnicodeDecodeError):
            raise SessionError('send JSON: {"notes": [{"key", "onset", "offset", "velocity"}, …]}', 400) from None

    async def score(request: Request) -> Response:
        session = store.get(request.path_params["id"])
        edited = await edited_notes(request)
        view = await run_in_threadpool(store.score, session, edited)
        return JSONResponse(view, headers={"Cache-Control": "no-store"})

    async def close(request: Request) -> Response:
        store.remove(request.path_params["id"])
        return Response(status_code=204)

    # -- the piano ---------------------------------------------------------------------

    async def piano_manifest(request: Request) -> Response:
        try:
            samples = await run_in_threadpool(piano.get)
        except RuntimeError as error:
            return error_response(str(error), 503)
        manifest = samples.manifest()
        manifest["urls"] = {str(k): f"/api/piano/{k}.wav" for k in samples.keys}
        return JSONResponse(manifest)

    async def piano_sample(request: Request) -> Response:
        samples = await run_in_threadpool(piano.get)
        key = request.path_params["key"]
        if key not in samples.keys:
            return error_response(f"no sample for key {key}", 404)
        return FileResponse(samples.path(key), media_type="audio/wav", headers={"Cache-Control": "max-age=86400"})

    # -- live --------------------------------------------------------------------------

    async def live(socket: WebSocket) -> None:
        await socket.accept()
        session = None
        stream = None
        recording = None
        try:
            hello = await _live_hello(socket)
            if hello is None:  # refused (an error message and a close code sent) or gone
                return
            rate = float(hello.get("rate", 0))
            session = await run_in_threadpool(store.new, str(hello.get("name") or "live take.wav"), True)
            session.audio = session.folder / "input.wav"
            session.state = session.stage = "recording"
            stream = await run_in_threadpool(lambda: store.transcriber.stream(rate, 1))
            import soundfile as sf

            recording = sf.SoundFile(str(session.audio), "w", samplerate=round(rate), channels=1, subtype="PCM_16")
            await socket.send_json({"type": "ready", "id": session.id})
            recorded = 0
            while True:
                message = await socket.receive()
                if message["type"] == "websocket.disconnect":
                    raise WebSocketDisconnect(message.get("code", 1000))
                if message.get("bytes") is not None:
                    data = message["bytes"]
                    if len(data) > LIVE_MAX_BLOCK or len(data) % 4:
                        await socket.send_json({"type": "error", "error": "live audio must be float32 blocks ≤ 1 MB"})
                        continue
                    samples = np.frombuffer(data, dtype="<f4")
                    recorded += len(data) // 2
                    if recorded > max_upload_bytes:
                        stopped = f"the take reached the {_megabytes(max_upload_bytes)} limit: stopped"
                        await socket.send_json({"type": "error", "error": stopped})
                        break
                    recording.write(np.clip(np.nan_to_num(samples), -1.0, 1.0))
                    events = await run_in_threadpool(stream.feed, samples)
                    await socket.send_json(
                        {"type": "events", "events": [e.to_dict() for e in events], "seconds": stream.seconds_fed}
                    )
                elif message.get("text") is not None:
                    command = json.loads(message["text"])
                    if isinstance(command, dict) and command.get("type") == "stop":
                        break
            events = await run_in_threadpool(stream.close)
            recording.close()
            await socket.send_json(
                {"type": "events", "events": [e.to_dict() for e in events], "seconds": stream.seconds_fed}
            )
            if stream.seconds_fed > 0:
                session.state, session.stage = "queued", "queued"
                store.start(session)  # the take, transcribed offline like an upload: slider and downloads
                await socket.send_json({"type": "done", "id": session.id})
            else:
                store.remove(session.id)
                await socket.send_json({"type": "done", "id": None})
            session = None
            await socket.close()
        except WebSocketDisconnect:
            pass
        except SessionError as error:
            with contextlib.suppress(Exception):
                await socket.send_json({"type": "error", "error": str(error)})
                await socket.close()
        except (ValueError, TypeError, json.JSONDecodeError) as error:
            with contextlib.suppress(Exception):
                await socket.send_json({"type": "error", "error": f"live: {str(error).splitlines()[0]}"})
                await socket.close()
        finally:
            if recording is not None and not recording.closed:
                recording.close()
            if session is not None:  # the page went away mid-take: nothing to keep
                store.remove(session.id)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            store.close()

    routes = [
        Route("/", index),
        Route("/api/config", config),
        Route("/api/sessions", guarded(upload), methods=["POST"]),
        Route("/api/sessions/{id}", guarded(status)),
        Route("/api/sessions/{id}/notes", guarded(notes)),
        Route("/api/sessions/{id}/decode", guarded(redecode), methods=["POST"]),
        Route("/api/sessions/{id}/audio", guarded(audio)),
        Route("/api/sessions/{id}/download/{kind}", guarded(download), methods=["GET", "POST"]),
        Route("/api/sessions/{id}/score", guarded(score), methods=["GET", "POST"]),
        Route("/api/sessions/{id}/close", guarded(close), methods=["POST"]),
        Route("/api/piano", piano_manifest),
        Route("/api/piano/{key:int}.wav", piano_sample),
        WebSocketRoute("/api/live", live),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.store = store
    app.state.piano = piano
    return app


LIVE_HELLO = 'the first message must be the JSON object {"rate": Hz, "name": "..."}'
"""What the live socket's first message must be (said to a client that sends anything else)."""


async def _live_hello(socket: WebSocket) -> dict | None:
    """The live socket's first message as a dict, or ``None`` after refusing it.

    A binary frame first is answered with an error and close code 1003 (unsupported
    data); text that is not a JSON object (``[1, 2]``, ``5``, not JSON) with 1008
    (policy violation) — never an exception in the ASGI app and a dropped connection.
    """
    from starlette.status import WS_1003_UNSUPPORTED_DATA, WS_1008_POLICY_VIOLATION

    message = await socket.receive()
    if message["type"] == "websocket.disconnect":
        return None
    if message.get("text") is None:
        await _refuse_live(socket, f"live: {LIVE_HELLO}, not audio", WS_1003_UNSUPPORTED_DATA)
        return None
    try:
        hello = json.loads(message["text"])
    except json.JSONDecodeError:
        hello = None
    if not isinstance(hello, dict):
        await _refuse_live(socket, f"live: {LIVE_HELLO}", WS_1008_POLICY_VIOLATION)
        return None
    return hello


async def _refuse_live(socket: WebSocket, error: str, code: int) -> None:
    with contextlib.suppress(Exception):  # the client may already be gone
        await socket.send_json({"type": "error", "error": error})
        await socket.close(code=code)


def _copy(source: Any, target: Path, limit: int) -> None:
    """Copy the spooled upload into the session folder, refusing more than ``limit`` bytes."""
    source.seek(0)
    written = 0
    with target.open("wb") as out:
        while chunk := source.read(1 << 20):
            written += len(chunk)
            if written > limit:
                raise UploadTooLarge
            out.write(chunk)


def listen(host: str = "127.0.0.1", port: int = 8000) -> socket.socket:
    """A socket bound to ``host:port`` (``port`` 0: a free one), or an ``OSError`` saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise OSError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)  # connections wait in the backlog until uvicorn accepts them (--open's browser)
    except OSError as error:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.set_inheritable(True)
    return sock


def page_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def uvicorn_server(app: Starlette) -> Any:
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", ws_max_size=LIVE_MAX_BLOCK + 1024, timeout_graceful_shutdown=2)
    return uvicorn.Server(config)


def serve(sock: socket.socket, open_browser: bool = False, **options: Any) -> None:
    """Serve the page on the bound ``sock`` (:func:`listen`) until Ctrl-C (``options``: :func:`create_app`'s)."""
    app = create_app(**options)
    server = uvicorn_server(app)
    url = page_url(sock)
    print(f"pianomtl: the page is at {url} (Ctrl-C stops the server)", flush=True)
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    server.run(sockets=[sock])


__all__ = ["create_app", "listen", "serve"]
