"""``pianomtl stream``: live transcription of a file or of raw PCM on standard input.

    arecord -f S16_LE -r 44100 -c 1 | pianomtl stream - --rate 44100
    pianomtl stream take.flac --realtime --midi-port pianomtl -o take.mid

Outputs, any combination: JSON lines on stdout (the default when nothing else is
asked for; ``--json`` adds them to the others), a MIDI file written atomically when
the stream ends (``-o``), a live MIDI output port (``--midi-port``; mido with
python-rtmidi, the ``[live]`` extra; a virtual port other programs connect to, except
on Windows where it opens an existing port). The work is
:class:`pianomtl.transcription.stream.Stream`; this module reads, paces and writes.
Ctrl-C, SIGTERM and SIGHUP (the terminal closed) end the stream as the end of the input
does: every held note is ended and the outputs are written; so does the reader of the
JSON lines going away (``| head``: stdout's pipe closed), noticed at once even while no
events are due. ``-o`` is checked before the first block is read (a temporary file is
created beside it); if writing it still fails at the end, the take is saved under the
system's temporary folder and the message says where — a live take is never lost.
"""

from __future__ import annotations

import argparse
import math
import os
import select
import signal
import stat
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from pianomtl.cli import options
from pianomtl.constants import SAMPLE_RATE
from pianomtl.core.devices import set_torch_threads

SAMPLE_FORMATS = {"s16": np.dtype("<i2"), "f32": np.dtype("<f4")}

MAX_BLOCK_MS = 60_000.0
"""Longest ``--block-ms``: a minute per block is already no longer live (and a block is held in memory)."""

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
"""Signals that end the stream like Ctrl-C (SIGINT): the outputs are written, no note is left on.
(SIGPIPE needs no handler: Python ignores it, so a write to a closed pipe raises BrokenPipeError.)"""


class ReaderGone(Exception):
    """The reader of the JSON lines on stdout went away: the stream stops as if interrupted."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SOURCE", help="an audio file, or - for raw PCM on standard input")
    parser.add_argument(
        "--rate", type=float, default=float(SAMPLE_RATE), help=f"raw PCM: sample rate in Hz (default {SAMPLE_RATE})"
    )
    parser.add_argument("--channels", type=int, default=1, help="raw PCM: interleaved channels (default 1)")
    parser.add_argument(
        "--sample-format", choices=tuple(SAMPLE_FORMATS), default="s16", help="raw PCM: little-endian s16 or f32"
    )
    parser.add_argument("--realtime", action="store_true", help="pace a file at real speed (a live input, simulated)")
    parser.add_argument("--block-ms", type=float, default=10.0, help="file: block length fed at a time (default 10)")
    parser.add_argument("--json", action="store_true", help="JSON lines on stdout (the default without -o/--midi-port)")
    parser.add_argument("-o", "--output", default=None, help="write a MIDI file when the stream ends")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing -o file")
    parser.add_argument("--midi-port", default=None, metavar="NAME", help="send events to a live MIDI port")
    parser.add_argument("--model", default=None, help="bundle, training checkpoint or .onnx (default: bundled)")
    parser.add_argument(
        "--lookahead",
        type=int,
        default=None,
        help="frames of future context for early note-ons, 0-5 (default 3; 5: exact offline decisions, ~170 ms)",
    )
    parser.add_argument(
        "--threads", type=options.positive_count, default=1, help="network threads (default 1: small blocks)"
    )


class _MidiPort:
    """A mido output port that mirrors the events (note on/off, CC64)."""

    def __init__(self, name: str) -> None:
        from pianomtl.extras import available, message

        if not available("rtmidi"):
            raise RuntimeError(message("--midi-port", "live"))
        import mido

        mido.set_backend("mido.backends.rtmidi")
        virtual = not sys.platform.startswith("win")  # Windows' MIDI API has no virtual ports
        try:
            self.port = mido.open_output(name, virtual=virtual)
        except (OSError, ValueError, RuntimeError, ImportError) as error:
            raise RuntimeError(f"cannot open MIDI port {name!r}: {str(error).splitlines()[0]}") from None
        self.mido = mido

    def send(self, event: Any) -> None:
        mido = self.mido
        if event.type == "note_on":
            self.port.send(mido.Message("note_on", note=event.key, velocity=event.velocity))
        elif event.type == "note_off":
            self.port.send(mido.Message("note_off", note=event.key, velocity=0))
        else:
            self.port.send(mido.Message("control_change", control=64, value=127 if event.type == "pedal_on" else 0))

    def close(self) -> None:
        self.port.close()


class _Outputs:
    def __init__(self, json_lines: bool, port: _MidiPort | None) -> None:
        self.json_lines = json_lines
        self.port = port
        self.count = 0

    def write(self, events: list[Any]) -> None:
        """Send ``events`` to every output; :class:`ReaderGone` once stdout's reader has gone."""
        gone = False
        for event in events:
            self.count += 1
            if self.port is not None:
                self.port.send(event)
            if self.json_lines:
                try:
                    sys.stdout.write(event.to_json() + "\n")
                    sys.stdout.flush()
                except BrokenPipeError:  # the reader went away: the other outputs still get every event
                    self._drop_stdout()
                    gone = True
        if gone:
            raise ReaderGone

    def check_reader(self) -> None:
        """:class:`ReaderGone` if stdout is a pipe whose reading end was closed (even with no event to write)."""
        if not self.json_lines or not self._stdout_is_pipe() or not hasattr(select, "poll"):
            return
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        for _, flags in poller.poll(0):
            if flags & (select.POLLERR | select.POLLHUP):
                self._drop_stdout()
                raise ReaderGone

    def _stdout_is_pipe(self) -> bool:
        if not hasattr(self, "_pipe"):
            try:
                self._pipe = stat.S_ISFIFO(os.fstat(sys.stdout.fileno()).st_mode)
            except (OSError, ValueError, AttributeError):
                self._pipe = False
        return self._pipe

    def _drop_stdout(self) -> None:
        """No more JSON lines; stdout points to /dev/null so that nothing later fails writing to it."""
        self.json_lines = False
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _file_blocks(path: str, block_ms: float, realtime: bool) -> tuple[float, int, Any]:
    """``(rate, channels, iterator of [n, channels] float32 blocks)`` of an audio file."""
    from pianomtl.core.audio import open_audio, read_blocks

    handle = open_audio(path)
    rate, channels = float(handle.samplerate), handle.channels
    block = max(1, round(rate * block_ms / 1000.0))

    def blocks() -> Any:
        start = time.monotonic()
        read = 0
        with handle:
            for samples, _ in read_blocks(handle, block, path):
                if not len(samples):
                    return
                read += len(samples)
                if realtime:  # a block is available once its last sample has been "played"
                    delay = start + read / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                yield samples

    return rate, channels, blocks()


def _pcm_blocks(dtype: np.dtype, channels: int, rate: float) -> Any:
    """Raw PCM from standard input as it arrives; an incomplete trailing sample is reported and dropped."""
    fd = sys.stdin.buffer.fileno()
    leftover = b""
    chunk = max(dtype.itemsize * channels, int(rate * 0.01) * dtype.itemsize * channels)  # ≤ 10 ms per read
    while True:
        try:
            data = os.read(fd, chunk)
        except InterruptedError:
            continue
        if not data:
            break
        data = leftover + data
        whole = len(data) - len(data) % dtype.itemsize
        leftover = data[whole:]
        if whole:
            yield np.frombuffer(data[:whole], dtype=dtype)
    if leftover:
        warnings.warn(f"the input ended inside a sample ({len(leftover)} byte(s) dropped)", stacklevel=2)


def run(args: argparse.Namespace) -> int:
    from pianomtl.core.audio import AudioError
    from pianomtl.extras import MissingExtraError

    def error(text: str) -> int:
        print(f"error: {text}", file=sys.stderr)
        return 2

    if args.lookahead is not None and not 0 <= args.lookahead <= 5:
        return error(f"--lookahead must be from 0 to 5 frames, got {args.lookahead}")
    if not (math.isfinite(args.block_ms) and 0 < args.block_ms <= MAX_BLOCK_MS):
        return error(
            f"--block-ms must be a number of milliseconds above 0 and at most {MAX_BLOCK_MS:g}, got {args.block_ms:g}"
        )
    output = Path(args.output) if args.output else None
    if output is not None:
        if output.exists() and not args.overwrite:
            return error(f"{output} exists (use --overwrite to replace it)")
        if not output.parent.is_dir():
            return error(f"cannot write {output}: folder {output.parent} does not exist")
        problem = _writable(output)
        if problem:  # before the take, not after it
            return error(f"cannot write {output}: {problem}")
        from pianomtl.core.files import remove_stale_temporaries

        remove_stale_temporaries(output.parent)  # what a take killed mid-write left there
    json_lines = args.json or (output is None and args.midi_port is None)

    def one_line_warning(
        message: Any, category: Any, filename: Any, lineno: Any, file: Any = None, line: Any = None
    ) -> None:
        print(f"warning: {message}", file=sys.stderr)

    warnings.showwarning = one_line_warning

    try:
        if args.source == "-":
            rate, channels = float(args.rate), int(args.channels)
            blocks = _pcm_blocks(SAMPLE_FORMATS[args.sample_format], channels, rate)
        else:
            rate, channels, blocks = _file_blocks(args.source, args.block_ms, args.realtime)
    except AudioError as problem:
        return error(str(problem))
    try:
        from pianomtl.transcription.pipeline import Transcriber
        from pianomtl.transcription.stream import DEFAULT_LOOKAHEAD, Stream

        if "torch" in sys.modules or args.model is not None:
            set_torch_threads(args.threads)
        transcriber = Transcriber(args.model, threads=args.threads)
        stream = Stream(
            rate,
            channels,
            transcriber=transcriber,
            lookahead=DEFAULT_LOOKAHEAD if args.lookahead is None else args.lookahead,
        )
        port = _MidiPort(args.midi_port) if args.midi_port else None
    except (MissingExtraError, RuntimeError, ValueError, TypeError, OSError) as problem:
        return error(str(problem).splitlines()[0] if str(problem) else type(problem).__name__)

    outputs = _Outputs(json_lines, port)
    status, interrupted = _run_stream(stream, blocks, outputs)
    saved: Path | None = None
    if port is not None:
        port.close()
    performance = stream.performance()
    if status == 2 and not performance.notes:
        return status  # the model could not run: its one-line error says all
    if output is not None:
        try:
            stream.write_midi(output)
            saved = output
        except OSError as problem:
            fallback = _save_fallback(stream)
            where = f"; the take was saved to {fallback}" if fallback else "; the take could not be saved anywhere"
            _say(f"error: cannot write {output}: {problem.strerror or problem}{where}")
            status = max(status, 1)
    summary = (
        f"streamed {stream.seconds_fed:.1f} s{' (interrupted)' if interrupted else ''}: "
        f"{len(performance.notes)} notes, {len(performance.pedal)} pedal events"
    )
    _say(summary + (f" → {saved}" if saved is not None else ""))
    return status


def _run_stream(stream: Any, blocks: Any, outputs: _Outputs) -> tuple[int, bool]:
    """Feed every block, then close the stream: ``(status, interrupted)``.

    Ctrl-C, :data:`STOP_SIGNALS` and stdout's reader going away stop the input; the
    stream is closed in every case, so each note_on gets its note_off. A model that
    cannot run is status 2 (one line), a failing input 1.
    """
    from pianomtl.core.audio import AudioError
    from pianomtl.transcription.onnx_model import ModelRunError

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {number: signal.signal(number, stop) for number in STOP_SIGNALS}
    previous[signal.SIGINT] = signal.getsignal(signal.SIGINT)
    status, interrupted = 0, False
    try:
        try:
            for block in blocks:
                outputs.check_reader()
                outputs.write(stream.feed(block))
        except (KeyboardInterrupt, ReaderGone):
            interrupted = True
        except ModelRunError as problem:
            _say(f"error: {problem}")
            return 2, False  # the network cannot run: closing would run it again
        except (AudioError, ValueError, TypeError, OSError) as problem:
            _say(f"error: {problem}")
            status = 1
        for number in (*STOP_SIGNALS, signal.SIGINT):  # a second Ctrl-C must not cut the closing short
            signal.signal(number, signal.SIG_IGN)
        try:
            outputs.write(stream.close())  # every held note ends, whatever stopped the input
        except ReaderGone:
            interrupted = True
        except ModelRunError as problem:
            _say(f"error: {problem}")
            status = 2
    finally:
        for number, handler in previous.items():
            if handler is not None:  # None: a handler not set from Python, left as it is
                signal.signal(number, handler)
    return status, interrupted


def _writable(output: Path) -> str | None:
    """``None`` if a file can be created beside ``output`` (the atomic write's temporary), else why not."""
    from pianomtl.core.files import temporary_name

    probe = temporary_name(output)
    try:
        with open(probe, "xb"):
            pass
        probe.unlink()
    except OSError as problem:
        return problem.strerror or str(problem)
    return None


def _save_fallback(stream: Any) -> Path | None:
    """Write the take under the temporary folder when ``-o`` failed at the end; its path, or ``None``."""
    import tempfile

    stamp = time.strftime("%Y%m%d-%H%M%S")
    fallback = Path(tempfile.gettempdir()) / f"pianomtl-stream-{stamp}-{os.getpid()}.mid"
    try:
        return stream.write_midi(fallback)
    except OSError:
        return None


def _say(text: str) -> None:
    """A line on stderr, if there is still a terminal or pipe to take it (after SIGHUP there may be none)."""
    try:
        print(text, file=sys.stderr)
    except OSError:
        pass
