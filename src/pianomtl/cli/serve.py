"""``pianomtl serve``: the page for musicians, on this computer.

    pianomtl serve                 # http://127.0.0.1:8000/ (this computer only)
    pianomtl serve --open          # … and open it in the default browser
    pianomtl serve --port 0        # any free port (printed)

Only 127.0.0.1 is listened on unless ``--host`` says otherwise (``--host 0.0.0.0``
shows the page to the local network: anyone who reaches the port can upload
recordings to be transcribed; browsers allow the microphone of live mode only on
127.0.0.1/localhost or HTTPS). Any other address than a loopback one is warned about
on stderr, with the address other machines reach the page at. The work is
:mod:`pianomtl.web`; this module parses the options, binds the port and runs the
server until Ctrl-C.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys

from pianomtl.cli import options

MAX_PORT = 65_535


def port_number(text: str) -> int:
    """A TCP port, 0 (any free one) to 65535 — never wrapped around (70000 is not 4464)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"{text} is not a port (0 to {MAX_PORT}; 0: any free port)")
    return value


def exposure_warning(sock: socket.socket) -> str | None:
    """The warning for a page reachable from other machines (``None`` on a loopback address).

    On a wildcard address (``0.0.0.0``, ``::``) it names the address this machine has on its
    network (the one other machines would use), not 127.0.0.1.
    """
    host, port = sock.getsockname()[:2]
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None
    if address.is_loopback:
        return None
    if address.is_unspecified:
        host = _network_address(sock.family) or socket.gethostname()
    shown = f"[{host}]" if ":" in host else host
    return (
        f"warning: listening on {address} — the page is reachable from other machines at http://{shown}:{port}/ ; "
        "anyone who reaches this port can upload recordings to be transcribed (no password, no HTTPS; "
        "live mode's microphone works only on 127.0.0.1)"
    )


def _network_address(family: int) -> str | None:
    """This machine's address on the network the default route leads to (a UDP ``connect`` sends nothing)."""
    probe_target = ("192.0.2.1", 9) if family == socket.AF_INET else ("2001:db8::1", 9)
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(probe_target)
            return str(probe.getsockname()[0])
    except OSError:
        return None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this computer only)"
    )
    parser.add_argument("--port", type=port_number, default=8000, help="port (default 8000; 0: any free port)")
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
    warning = exposure_warning(sock)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    serve(sock, open_browser=args.open, transcriber=transcriber, max_upload_mb=args.max_upload_mb)
    return 0
