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
    if samples.shape[0] == 0:
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


def load(path: str | Path) -> np.ndarray:
    """Read ``path`` (wav, flac, ogg, mp3, ...) as mono float32 samples at 44.1 kHz.

    Raises :class:`AudioError` with the file name and reason for a missing,
    unreadable, truncated or empty file.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    try:
        samples, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except sf.LibsndfileError as error:
        raise AudioError(f"{path}: not a readable audio file ({error.error_string})") from None
    except (RuntimeError, TypeError, ValueError) as error:
        raise AudioError(f"{path}: not a readable audio file ({error})") from None
    try:
        declared = sf.info(str(path)).frames
    except (sf.LibsndfileError, RuntimeError):
        declared = samples.shape[0]
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
    temporary = path.with_name(path.name + ".part")
    sf.write(str(temporary), np.clip(samples, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")
    temporary.replace(path)
