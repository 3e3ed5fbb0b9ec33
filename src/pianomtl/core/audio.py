"""Audio loading: any file soundfile reads, as mono float32 at 44.1 kHz.

Why one loader: every later stage (features, training, transcription) assumes the
same sample rate and a single channel, so the conversion happens once, here, with
the field's own libraries (soundfile for decoding, soxr for resampling).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from pianomtl.constants import SAMPLE_RATE
from pianomtl.core.files import atomic_write


class AudioError(ValueError):
    """An audio file cannot be used; the message names the file and the reason."""


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average all channels of a ``[n]`` or ``[n, channels]`` array into ``[n]``."""
    if samples.ndim == 1:
        return samples
    return samples.mean(axis=1)


def resample(samples: np.ndarray, sample_rate: float, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a mono signal with soxr's high-quality filter (no-op at the target rate)."""
    if sample_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    if sample_rate == target_rate:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples, sample_rate, target_rate, quality="HQ").astype(np.float32, copy=False)


def prepare_array(samples: np.ndarray, sample_rate: float, name: str = "<array>") -> np.ndarray:
    """Turn an in-memory signal (any channels, any rate) into mono float32 at 44.1 kHz."""
    samples = np.asarray(samples)
    if samples.ndim == 2 and samples.shape[0] < samples.shape[1] and samples.shape[0] <= 8:
        samples = samples.T  # accept channels-first arrays, as torchaudio/librosa give them
    if samples.ndim not in (1, 2):
        raise AudioError(f"{name}: expected a 1-D or 2-D sample array, got shape {samples.shape}")
    if samples.size == 0:  # also [0, channels], which the channels-first check above turns into [channels, 0]
        raise AudioError(f"{name}: contains no samples")
    if np.issubdtype(samples.dtype, np.integer):
        samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max)
    mono = to_mono(samples.astype(np.float32, copy=False))
    if not np.all(np.isfinite(mono)):
        raise AudioError(f"{name}: contains NaN or infinite samples")
    peak = float(np.max(np.abs(mono)))
    if peak >= 1.0:
        warnings.warn(f"{name}: signal reaches full scale ({peak:.2f}); it may be clipped", stacklevel=2)
    return resample(mono, sample_rate)


def _truncated_wav_data(path: Path) -> tuple[int, int] | None:
    """``(declared, present)`` data bytes of a RIFF/WAVE file whose data chunk is cut short.

    libsndfile reads such a file without complaint (it shrinks the length to what is
    there), so a WAV cut in transfer would otherwise load as a shorter recording.
    Returns ``None`` for complete WAVs, other formats, and open-ended (streamed) sizes.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        header = handle.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return None
        while True:
            chunk = handle.read(8)
            if len(chunk) < 8:
                return None
            declared = int.from_bytes(chunk[4:8], "little")
            if chunk[:4] == b"data":
                present = size - handle.tell()
                if declared in (0, 0xFFFFFFFF) or present >= declared:  # streaming writers leave 0 or -1
                    return None
                return declared, present
            handle.seek(declared + (declared & 1), 1)  # chunks are padded to even length


def open_audio(path: str | Path) -> sf.SoundFile:
    """Open an audio file for reading, or raise :class:`AudioError` naming it and the reason.

    The one place that checks a path before decoding (missing, a folder, not audio,
    a WAV whose data chunk is cut short), shared by :func:`load` and the streaming
    reader of :mod:`pianomtl.transcription.pipeline`.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    try:
        handle = sf.SoundFile(str(path))
    except sf.LibsndfileError as error:
        raise AudioError(f"{path}: not a readable audio file ({error.error_string})") from None
    except (RuntimeError, TypeError, ValueError, OSError) as error:
        raise AudioError(f"{path}: not a readable audio file ({error})") from None
    truncated = _truncated_wav_data(path)
    if truncated is not None:
        handle.close()
        raise AudioError(f"{path}: truncated (header declares {truncated[0]} data bytes, {truncated[1]} present)")
    return handle


def load(path: str | Path) -> np.ndarray:
    """Read ``path`` (wav, flac, ogg, mp3, ...) as mono float32 samples at 44.1 kHz.

    Raises :class:`AudioError` with the file name and reason for a missing,
    unreadable, truncated or empty file.
    """
    path = Path(path)
    with open_audio(path) as handle:
        declared, sample_rate = handle.frames, handle.samplerate
        try:
            samples = handle.read(dtype="float32", always_2d=True)
        except sf.LibsndfileError as error:
            raise AudioError(f"{path}: not a readable audio file ({error.error_string})") from None
        except (RuntimeError, TypeError, ValueError) as error:
            raise AudioError(f"{path}: not a readable audio file ({error})") from None
    if 0 < samples.shape[0] < declared:
        raise AudioError(f"{path}: truncated (header declares {declared} samples, {samples.shape[0]} present)")
    return prepare_array(samples, sample_rate, name=str(path))


def duration(path: str | Path) -> float:
    """Length of an audio file in seconds, read from its header only."""
    info = sf.info(str(path))
    return info.frames / info.samplerate


def write_flac(path: str | Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit FLAC atomically (temporary file, then rename)."""
    path = Path(path)
    clipped = np.clip(samples, -1.0, 1.0)
    atomic_write(path, lambda target: sf.write(str(target), clipped, sample_rate, format="FLAC", subtype="PCM_16"))
