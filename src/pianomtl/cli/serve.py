"""``pianomtl serve``: the page for musicians, on this computer.

    pianomtl serve                 # http://127.0.0.1:8000/ (this computer only)
    pianomtl serve --open          # … and open it in the default browser
    pianomtl serve --port 0        # any free port (printed)

Only 127.0.0.1 is listened on unless ``--host`` says otherwise (``--host 0.0.0.0``
shows the page to the local network: anyone who reaches the port can upload
recordings to be transcribed; browsers allow the microphone of live mode only on
127.0.0.1/localhost or HTTPS). The work is :mod:`pianomtl.web`; this module parses
the options, binds the port and runs the server until Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys

from pianomtl.cli import options


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this computer only)"
    )
    parser.add_argument("--port", type=options.count, default=8000, help="port (default 8000; 0: any free port)")
    parser.add_argument("--open", action="store_true", help="open the page in the default web browser")
    parser.add_argument("--model", default=None, help="bundle, training checkpoint or .onnx (default: bundled)")
    parser.add_argument(
        "--max-upload-mb", type=options.positive, default=200.0, help="largest recording accepted, in MB (default 200)"
    )
    parser.add_argument("--threads", type=options.count, default=0, help="CPU threads of the network (0: default)")


def run(args: argparse.Namespace) -> int:
    from pianomtl.web.server import listen, serve

    try:
        sock = listen(args.host, args.port)
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    from pianomtl.transcription.pipeline import Transcriber

    try:
        transcriber = Transcriber(args.model, threads=args.threads)
    except (ValueError, OSError) as problem:  # ModelFileError is a ValueError
        sock.close()
        print(f"error: {problem}", file=sys.stderr)
        return 2
    serve(sock, open_browser=args.open, transcriber=transcriber, max_upload_mb=args.max_upload_mb)
    return 0
