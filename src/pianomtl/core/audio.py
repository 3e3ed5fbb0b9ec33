"""Audio loading: any file soundfile reads, as mono float32 at 44.1 kHz.

Why one loader: every later stage (features, training, transcription) assumes the
same sample rate and a single channel, so the conversion happens once, here, with
the field's own libraries (soundfile for decoding, soxr for resampling).
"""

from __future__ import annotations

import contextlib
import io
import math
import numbers
import os
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import soundfile as sf
import soxr

from pianomtl.constants import SAMPLE_RATE
from pianomtl.core.files import atomic_write

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".w64", ".caf", ".au")
"""What a folder search picks up and the page's file picker offers (a file named explicitly is
tried whatever its name: soundfile decides). The one list: ``transcribe``'s search, the page, batches."""


class AudioError(ValueError):
    """An audio file cannot be used; the message names the file and the reason."""


MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 1_000_000
"""Sample rates accepted (Hz), for arrays and files alike: a rate outside them is a
mistake (``sr=0.5``, a header's garbage), and resampling from it would hang or take
unbounded memory."""

MAX_CHANNELS = 8
"""A 2-D array's channel axis is the one of at most this many rows or columns."""

MAX_FILE_CHANNELS = 64
"""Files with more channels are refused (a damaged header; reading blocks of them would exhaust memory)."""

DEFAULT_MAX_STREAM_BYTES = 2 * 1024**3
"""The most a non-seekable input (standard input, a pipe, a device such as ``/dev/zero``) may
send: it is copied to a temporary file before decoding (libsndfile seeks), so without a bound
an endless source fills the disk. 2 GiB is over three hours of 44.1 kHz stereo 16-bit WAV;
``pianomtl transcribe --max-input`` changes it (:func:`set_max_stream_bytes`)."""

_max_stream_bytes = DEFAULT_MAX_STREAM_BYTES

_UNRECOGNISED = "File does not exist or is not a regular file"
"""libsndfile's message for a regular file whose contents it does not recognise (misleading there)."""


def check_sample_rate(sample_rate: object, name: str = "<array>") -> float:
    """``sample_rate`` as a float, if it is a finite rate in [1 kHz, 1 MHz].

    :class:`TypeError` for a non-number (a string, ``None``, ``True``),
    :class:`AudioError` (a ``ValueError``) for NaN, ±inf, zero, negative or absurd rates.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real):
        raise TypeError(f"{name}: the sample rate must be a number of Hz, got {type(sample_rate).__name__}")
    rate = float(sample_rate)
    if not (math.isfinite(rate) and MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE):
        raise AudioError(
            f"{name}: sample rate {sample_rate!r} Hz is not usable "
            f"(expected a finite rate from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz)"
        )
    return rate


def display_name(path: object) -> str:
    """A file name safe to print: bytes that are not UTF-8 (kept by Python as surrogates) become ``\\xNN``."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_audio_source(audio: object) -> bool:
    """Whether ``audio`` names an encoded file: a path, the bytes of a file, or a binary file object."""
    return isinstance(audio, str | Path | bytes | bytearray | memoryview) or callable(getattr(audio, "read", None))


def source_name(audio: object) -> str:
    """How messages name an audio source (its path, a file object's ``name``, ``<bytes>``)."""
    if isinstance(audio, str | Path):
        return display_name(audio)
    if isinstance(audio, bytes | bytearray | memoryview):
        return "<bytes>"
    name = getattr(audio, "name", None)
    return display_name(name) if isinstance(name, str) and name else "<file object>"


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average all channels of a ``[n]`` or ``[n, channels]`` array into ``[n]``."""
    if samples.ndim == 1:
        return samples
    return samples.mean(axis=1)


def resample(samples: np.ndarray, sample_rate: float, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a mono signal with soxr's high-quality filter (no-op at the target rate)."""
    sample_rate = check_sample_rate(sample_rate)
    if sample_rate == target_rate:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples, sample_rate, target_rate, quality="HQ").astype(np.float32, copy=False)


class BlockResampler:
    """Mono blocks at ``sample_rate`` → 44.1 kHz float32 as they come: the one streaming resampler.

    soxr's ``ResampleStream`` with the filter :func:`resample` uses, so block by block
    equals the whole signal at once (up to soxr's own chunking); at 44.1 kHz the
    blocks pass through unchanged. The file reader of ``transcribe``, the live
    ``Stream`` and ``pianomtl stream`` all resample through this.
    """

    def __init__(self, sample_rate: float, name: str = "<stream>") -> None:
        self.sample_rate = check_sample_rate(sample_rate, name)
        self.stream = None
        if self.sample_rate != SAMPLE_RATE:
            self.stream = soxr.ResampleStream(self.sample_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")

    def __call__(self, mono: np.ndarray, last: bool = False) -> np.ndarray:
        """The next block; ``last=True`` flushes the filter's tail (call it once, at the end)."""
        if self.stream is None:
            return mono
        return self.stream.resample_chunk(mono, last=last)


def read_blocks(handle: sf.SoundFile, block: int, name: str) -> Any:
    """``(samples [n, channels] float32, last)`` for each read of ``block`` frames from an open file.

    The one block reader (``transcribe``'s file reader, ``pianomtl stream``): a decoding
    error mid-file is an :class:`AudioError` naming ``name``. ``last`` is true for the
    final read (shorter than ``block``, possibly empty), so a
    :class:`BlockResampler` can be flushed on it.
    """
    while True:
        try:
            samples = handle.read(block, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as error:
            raise AudioError(f"{name}: not a readable audio file ({error})") from None
        last = len(samples) < block
        yield samples, last
        if last:
            return


def integers_to_float(samples: np.ndarray) -> np.ndarray:
    """Float32 samples: integers scaled so full scale is ±1 (unsigned ones are offset binary,
    the middle of the range is silence), floats cast (beyond float32's range: ±inf)."""
    if np.issubdtype(samples.dtype, np.unsignedinteger):
        middle = (float(np.iinfo(samples.dtype).max) + 1.0) / 2.0
        return ((samples.astype(np.float64) - middle) / middle).astype(np.float32)
    if np.issubdtype(samples.dtype, np.integer):
        return samples.astype(np.float32) / float(np.iinfo(samples.dtype).max)
    with np.errstate(over="ignore", invalid="ignore"):
        return samples.astype(np.float32, copy=False)


def _channels_last(samples: np.ndarray, name: str) -> np.ndarray:
    """``[n]`` or ``[n, channels]``: a 2-D array's channel axis is the one of at most 8 (the shorter if both)."""
    if samples.ndim != 2:
        return samples
    rows, columns = samples.shape
    if rows <= MAX_CHANNELS and rows < columns:
        return samples.T  # channels-first, as torchaudio and librosa give them
    if columns <= MAX_CHANNELS:
        return samples
    raise AudioError(
        f"{name}: a sample array of shape {samples.shape} has no channel axis of at most {MAX_CHANNELS} "
        f"(ambiguous layout); pass [samples], [samples, channels] or [channels, samples] (≤ {MAX_CHANNELS} channels)"
    )


def prepare_array(samples: np.ndarray, sample_rate: float, name: str = "<array>") -> np.ndarray:
    """Turn an in-memory signal (any channels, any rate) into mono float32 at 44.1 kHz.

    ``samples``: ``[n]``, ``[n, channels]`` or ``[channels, n]`` with at most 8 channels
    (a shape whose two axes are both longer is refused as ambiguous); float (any
    precision) or integer samples (full scale = the type's range). Raises
    :class:`AudioError` for an unusable array or rate, :class:`TypeError` for what is
    not a numeric array.
    """
    rate = check_sample_rate(sample_rate, name)
    try:
        samples = np.asarray(samples)
    except (ValueError, TypeError) as error:  # ragged nested lists and the like
        raise TypeError(f"{name}: not a sample array ({str(error).splitlines()[0]})") from None
    if (
        samples.dtype == object
        or not (np.issubdtype(samples.dtype, np.floating) or np.issubdtype(samples.dtype, np.integer))
        or samples.dtype == np.bool_
    ):
        raise TypeError(f"{name}: samples must be integer or float numbers, got dtype {samples.dtype}")
    if samples.ndim not in (1, 2):
        raise AudioError(f"{name}: expected a 1-D or 2-D sample array, got shape {samples.shape}")
    if samples.size == 0:
        raise AudioError(f"{name}: contains no samples")
    samples = _channels_last(samples, name)
    mono = to_mono(integers_to_float(samples))
    if not np.all(np.isfinite(mono)):
        raise AudioError(f"{name}: contains NaN or infinite samples")
    peak = float(np.max(np.abs(mono)))
    if peak >= 1.0:
        warnings.warn(f"{name}: signal reaches full scale ({peak:.2f}); it may be clipped", stacklevel=2)
    return resample(mono, rate)


def _truncated_wav_data(source: Path | BinaryIO) -> tuple[int, int] | None:
    """``(declared, present)`` data bytes of a RIFF/WAVE file whose data chunk is cut short.

    libsndfile reads such a file without complaint (it shrinks the length to what is
    there), so a WAV cut in transfer would otherwise load as a shorter recording.
    Returns ``None`` for complete WAVs, other formats, and open-ended (streamed) sizes.
    ``source``: a path or a seekable binary file object (its position is restored).
    """
    if isinstance(source, Path):
        with source.open("rb") as handle:
            return _truncated_wav_data(handle)
    start = source.tell()
    try:
        size = source.seek(0, io.SEEK_END)
        source.seek(0)
        header = source.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return None
        while True:
            chunk = source.read(8)
            if len(chunk) < 8:
                return None
            declared = int.from_bytes(chunk[4:8], "little")
            if chunk[:4] == b"data":
                present = size - source.tell()
                if declared in (0, 0xFFFFFFFF) or present >= declared:  # streaming writers leave 0 or -1
                    return None
                return declared, present
            source.seek(declared + (declared & 1), io.SEEK_CUR)  # chunks are padded to even length
    finally:
        source.seek(start)


class _SpooledSoundFile(sf.SoundFile):
    """A SoundFile reading a temporary copy of a stream; closing it drops the copy."""

    def __init__(self, spool: BinaryIO) -> None:
        self._spool = spool
        try:
            super().__init__(spool)
        except BaseException:
            spool.close()
            raise

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._spool.close()


def set_max_stream_bytes(limit: int) -> None:
    """Bound what a non-seekable input may send (:data:`DEFAULT_MAX_STREAM_BYTES`), for this process."""
    global _max_stream_bytes
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise ValueError(f"the input size limit must be a positive number of bytes, got {limit!r}")
    _max_stream_bytes = limit


def _spool(stream: BinaryIO, name: str = "<stream>") -> BinaryIO:
    """A seekable temporary copy of a stream (a pipe, standard input): libsndfile needs to seek.

    At most the limit of :func:`set_max_stream_bytes` is copied; a stream that sends more is
    an :class:`AudioError` (the copy is dropped at once)."""
    limit = _max_stream_bytes
    spool = tempfile.TemporaryFile()  # no name on disk: gone when closed, or when the process dies
    try:
        copied = 0
        while chunk := stream.read(min(1 << 20, limit + 1 - copied)):
            copied += len(chunk)
            if copied > limit:
                raise AudioError(
                    f"{name}: a stream of more than {_size(limit)} (the limit on standard input, pipes and "
                    "devices; pianomtl transcribe --max-input raises it, or give the file itself)"
                )
            spool.write(chunk)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


def _size(count: int) -> str:
    """``2 GiB``, ``10 MiB``, ``512 bytes``: a byte count as people say it."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= factor:
            return f"{count / factor:g} {unit}"
    return f"{count} bytes"


def _open_failure(name: str, path: Path, error: sf.LibsndfileError, noise: str) -> AudioError:
    """The real cause of a regular file libsndfile cannot open, named plainly.

    libsndfile says "System error." for a file it may not read and "File does not exist or
    is not a regular file (possibly a pipe?)" for one whose contents it does not recognise;
    neither is what happened. ``noise``: what a decoder printed meanwhile (libmpg123's notes
    on a file named ``.mp3`` that is no MP3), kept as the detail.
    """
    if not os.access(path, os.R_OK):
        return AudioError(f"{name}: cannot be read (permission denied)")
    text = error.error_string
    if text.startswith(_UNRECOGNISED):
        kind = path.suffix[1:].upper() or "audio"
        notes = [line.removeprefix("Note:").strip() for line in noise.splitlines() if line.strip()]
        detail = f": {notes[0]}" if notes else ""
        return AudioError(
            f"{name}: not a readable audio file (its contents are not {kind} audio nor any other format "
            f"soundfile reads{detail})"
        )
    return AudioError(f"{name}: not a readable audio file ({text})")


def _open_quietly(path: Path) -> tuple[sf.SoundFile | None, sf.LibsndfileError | None, str]:
    """``sf.SoundFile(path)`` with what C decoders print on stderr meanwhile caught: ``(handle, error, printed)``.

    libmpg123 writes its notes on a damaged or foreign file to file descriptor 2 itself,
    a stray line before the one-line error; here they become that error's detail. What was
    printed while the file opened fine (another thread's line, a decoder's note) is passed on.
    One thread at a time (:data:`_STDERR_LOCK`): two interleaved redirections would leave
    file descriptor 2 pointing at a closed temporary file.
    """
    with _STDERR_LOCK:
        return _open_capturing_stderr(path)


_STDERR_LOCK = threading.Lock()


def _open_capturing_stderr(path: Path) -> tuple[sf.SoundFile | None, sf.LibsndfileError | None, str]:
    try:
        saved = os.dup(2)
    except OSError:
        saved = -1
    if saved < 0:
        try:
            return sf.SoundFile(os.fsencode(path)), None, ""
        except sf.LibsndfileError as error:
            return None, error, ""
    with tempfile.TemporaryFile() as caught:
        try:
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass
        os.dup2(caught.fileno(), 2)
        try:
            handle, failure = sf.SoundFile(os.fsencode(path)), None
        except sf.LibsndfileError as error:
            handle, failure = None, error
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        caught.seek(0)
        printed = caught.read().decode("utf-8", "replace")
    if failure is None and printed:
        with contextlib.suppress(OSError):
            os.write(2, printed.encode())
    return handle, failure, printed


def _open_stream(source: object, name: str) -> sf.SoundFile:
    """SoundFile on bytes or a binary file object (unseekable ones are copied to a temporary file first)."""
    if isinstance(source, bytes | bytearray | memoryview):
        stream: Any = io.BytesIO(bytes(source))
    elif isinstance(source, io.TextIOBase) or "b" not in str(getattr(source, "mode", "b")):
        raise TypeError(f"{name}: a text-mode file object; open the audio file in binary mode ('rb')")
    else:
        stream = source
    seekable = getattr(stream, "seekable", None)
    try:
        if callable(seekable) and seekable():
            handle = sf.SoundFile(stream)
        else:
            handle = _SpooledSoundFile(_spool(stream, name))
    except AudioError:
        raise
    except sf.LibsndfileError as error:
        raise AudioError(f"{name}: not a readable audio file ({error.error_string})") from None
    except (RuntimeError, TypeError, ValueError, OSError) as error:
        raise AudioError(
            f"{name}: not a readable audio file ({str(error).splitlines()[0] if str(error) else error!r})"
        ) from None
    return handle


def open_audio(source: str | Path | bytes | BinaryIO) -> sf.SoundFile:
    """Open an audio source for reading, or raise :class:`AudioError` naming it and the reason.

    ``source``: a path (a regular file, or a pipe / device such as ``/dev/stdin``, which
    is copied to an unnamed temporary file first), the bytes of an encoded file, or a
    binary file object (``open(path, "rb")``, ``io.BytesIO``, ``sys.stdin.buffer``).
    The one place that checks a source before decoding (missing, a folder, not audio,
    a WAV whose data chunk is cut short, an unusable sample rate), shared by
    :func:`load` and the streaming reader of :mod:`pianomtl.transcription.pipeline`.
    Anything else is a :class:`TypeError`.
    """
    if not is_audio_source(source):
        raise TypeError(
            f"expected a file path, the bytes of an audio file or a binary file object, got {type(source).__name__}"
        )
    name = source_name(source)
    if isinstance(source, str | Path):
        path = Path(source)
        try:
            path.stat()
        except PermissionError:  # a folder on the way that may not be entered
            raise AudioError(f"{name}: cannot be read (permission denied on its folder)") from None
        except (OSError, ValueError):
            pass  # missing, a dangling link, a name the system refuses: said just below
        if not path.exists():
            raise AudioError(f"{name}: file not found")
        if path.is_dir():
            raise AudioError(f"{name}: is a folder, not an audio file")
        if not path.is_file():  # a pipe, a character device (/dev/stdin), a socket: read it as a stream
            try:
                with path.open("rb") as stream:
                    handle = _SpooledSoundFile(_spool(stream, name))
            except AudioError:
                raise
            except sf.LibsndfileError as error:
                raise AudioError(f"{name}: not a readable audio file ({error.error_string})") from None
            except (RuntimeError, ValueError, OSError) as error:
                raise AudioError(f"{name}: not a readable audio file ({error})") from None
            truncated = _truncated_wav_data(handle._spool)
        else:
            try:
                opened, failure, printed = _open_quietly(path)  # bytes: names that are not UTF-8 open too
            except (RuntimeError, TypeError, ValueError, OSError) as error:
                raise AudioError(f"{name}: not a readable audio file ({error})") from None
            if opened is None:
                raise _open_failure(name, path, failure, printed)  # type: ignore[arg-type]
            handle = opened
            try:
                truncated = _truncated_wav_data(path)
            except OSError:
                truncated = None
    else:
        handle = _open_stream(source, name)
        stream = handle._spool if isinstance(handle, _SpooledSoundFile) else None
        if stream is None and isinstance(source, bytes | bytearray | memoryview):
            stream = io.BytesIO(bytes(source))
        elif stream is None:
            stream = source  # type: ignore[assignment]
        try:
            truncated = _truncated_wav_data(stream)  # type: ignore[arg-type]
        except (OSError, ValueError):
            truncated = None
    try:
        if truncated is not None:
            raise AudioError(f"{name}: truncated (header declares {truncated[0]} data bytes, {truncated[1]} present)")
        check_sample_rate(handle.samplerate, name)
        if handle.channels > MAX_FILE_CHANNELS:
            raise AudioError(f"{name}: {handle.channels} channels (at most {MAX_FILE_CHANNELS} are read)")
    except AudioError:
        handle.close()
        raise
    return handle


def load(path: str | Path | bytes | BinaryIO) -> np.ndarray:
    """Read an audio file (wav, flac, ogg, mp3, ...) as mono float32 samples at 44.1 kHz.

    ``path``: anything :func:`open_audio` takes. Raises :class:`AudioError` with the
    file name and reason for a missing, unreadable, truncated or empty file.
    """
    name = source_name(path)
    with open_audio(path) as handle:
        declared, sample_rate = handle.frames, handle.samplerate
        try:
            samples = handle.read(dtype="float32", always_2d=True)
        except sf.LibsndfileError as error:
            raise AudioError(f"{name}: not a readable audio file ({error.error_string})") from None
        except (RuntimeError, TypeError, ValueError) as error:
            raise AudioError(f"{name}: not a readable audio file ({error})") from None
    if 0 < samples.shape[0] < declared:
        raise AudioError(f"{name}: truncated (header declares {declared} samples, {samples.shape[0]} present)")
    return prepare_array(samples, sample_rate, name=name)


def duration(path: str | Path) -> float:
    """Length of an audio file in seconds, read from its header only."""
    info = sf.info(os.fsencode(Path(path)))
    return info.frames / info.samplerate


def write_flac(path: str | Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit FLAC atomically (temporary file, then rename)."""
    path = Path(path)
    clipped = np.clip(samples, -1.0, 1.0)
    atomic_write(path, lambda target: sf.write(str(target), clipped, sample_rate, format="FLAC", subtype="PCM_16"))
