"""audio.load / prepare_array: formats, channels, sample rates, dtypes, and clear errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pianomtl.constants import SAMPLE_RATE
from pianomtl.core.audio import AudioError, load, prepare_array, write_flac


def sine(frequency: float, seconds: float, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def peak_frequency(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Frequency (Hz) of the largest FFT magnitude of a Hann-windowed signal."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * sample_rate / len(samples))


def assert_one_line_error(error: pytest.ExceptionInfo[AudioError], path: Path, *words: str) -> None:
    message = str(error.value)
    assert str(path) in message
    assert "\n" not in message
    for word in words:
        assert word in message.lower()


# ---------------------------------------------------------------- formats


@pytest.mark.parametrize("kind", ["wav", "flac"])
def test_lossless_files_load_exactly(rendered_clip, kind: str) -> None:
    samples = load(getattr(rendered_clip, kind))
    assert samples.dtype == np.float32
    assert samples.ndim == 1
    assert samples.shape == rendered_clip.samples.shape
    np.testing.assert_allclose(samples, rendered_clip.samples, atol=2.0 / 32767)  # 16-bit quantisation


@pytest.mark.parametrize(("kind", "extension"), [("OGG", "ogg"), ("MP3", "mp3")])
def test_lossy_files_load(tmp_path: Path, kind: str, extension: str) -> None:
    path = tmp_path / f"tone.{extension}"
    tone = sine(1000.0, 1.0, SAMPLE_RATE)
    try:
        sf.write(str(path), tone, SAMPLE_RATE, format=kind)
    except (sf.LibsndfileError, TypeError, ValueError) as error:
        pytest.skip(f"this libsndfile cannot write {kind}: {error}")
    samples = load(path)
    assert samples.dtype == np.float32
    assert samples.ndim == 1
    # encoders add priming/padding samples: allow a little slack in the length
    assert abs(len(samples) - len(tone)) < 0.05 * SAMPLE_RATE
    assert abs(peak_frequency(samples) - 1000.0) < 3.0
    assert 0.3 < np.max(np.abs(samples)) < 0.7


def test_write_flac_round_trip(tmp_path: Path, rendered_clip) -> None:
    path = tmp_path / "written.flac"
    write_flac(path, rendered_clip.samples)
    assert not path.with_name(path.name + ".part").exists()
    np.testing.assert_allclose(load(path), rendered_clip.samples, atol=2.0 / 32767)


# ---------------------------------------------------------------- channels and rates


def test_stereo_file_is_averaged_to_mono(tmp_path: Path) -> None:
    left = sine(440.0, 0.5, SAMPLE_RATE, 0.6)
    right = sine(660.0, 0.5, SAMPLE_RATE, 0.2)
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.stack([left, right], axis=1), SAMPLE_RATE, subtype="FLOAT")
    samples = load(path)
    assert samples.shape == left.shape
    np.testing.assert_allclose(samples, 0.5 * (left + right), atol=1e-6)


def test_channels_first_and_channels_last_arrays_agree() -> None:
    stereo = np.stack([sine(440.0, 0.2, SAMPLE_RATE), sine(550.0, 0.2, SAMPLE_RATE)])  # [2, n]
    np.testing.assert_array_equal(prepare_array(stereo, SAMPLE_RATE), prepare_array(stereo.T, SAMPLE_RATE))


@pytest.mark.parametrize(("rate", "frequency"), [(96000, 1000.0), (22050, 3000.0), (48000, 5000.0)])
def test_resampled_to_44100_keeps_the_pitch(tmp_path: Path, rate: int, frequency: float) -> None:
    path = tmp_path / f"tone_{rate}.wav"
    sf.write(str(path), sine(frequency, 1.0, rate), rate, subtype="FLOAT")
    samples = load(path)
    assert samples.dtype == np.float32
    assert abs(len(samples) - SAMPLE_RATE) <= 2
    assert abs(peak_frequency(samples) - frequency) < 2.0  # FFT bins are 1 Hz apart here
    assert 0.45 < np.max(np.abs(samples[1000:-1000])) < 0.55  # amplitude survives too


def test_44100_input_is_not_resampled() -> None:
    tone = sine(440.0, 0.3, SAMPLE_RATE)
    np.testing.assert_array_equal(prepare_array(tone, SAMPLE_RATE), tone)


# ---------------------------------------------------------------- dtypes


def test_int16_array_scaled_to_float32() -> None:
    tone = sine(440.0, 0.3, SAMPLE_RATE)
    as_int16 = np.round(tone * 32767).astype(np.int16)
    samples = prepare_array(as_int16, SAMPLE_RATE)
    assert samples.dtype == np.float32
    np.testing.assert_allclose(samples, tone, atol=1.0 / 32767)


def test_int32_and_float64_arrays_give_float32() -> None:
    tone = sine(440.0, 0.3, SAMPLE_RATE).astype(np.float64)
    as_int32 = np.round(tone * 2147483647).astype(np.int32)
    for array in (tone, as_int32):
        samples = prepare_array(array, SAMPLE_RATE)
        assert samples.dtype == np.float32
        np.testing.assert_allclose(samples, tone, atol=1e-6)


def test_int16_wav_file_loads_as_float32(tmp_path: Path) -> None:
    tone = sine(440.0, 0.3, SAMPLE_RATE)
    path = tmp_path / "int16.wav"
    sf.write(str(path), np.round(tone * 32767).astype(np.int16), SAMPLE_RATE, subtype="PCM_16")
    samples = load(path)
    assert samples.dtype == np.float32
    np.testing.assert_allclose(samples, tone, atol=2.0 / 32767)


# ---------------------------------------------------------------- errors and warnings


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.wav"
    with pytest.raises(AudioError) as error:
        load(path)
    assert_one_line_error(error, path, "not found")


def test_folder_is_not_audio(tmp_path: Path) -> None:
    with pytest.raises(AudioError) as error:
        load(tmp_path)
    assert_one_line_error(error, tmp_path, "folder")


def test_text_file_renamed_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 20)
    with pytest.raises(AudioError) as error:
        load(path)
    assert_one_line_error(error, path, "not a readable audio file")


@pytest.mark.parametrize("suffix, words", [("wav", ("truncated",)), ("flac", ())])
def test_truncated_file(tmp_path: Path, rendered_clip, suffix: str, words: tuple[str, ...]) -> None:
    # libsndfile reads a cut WAV silently as a shorter one; load must refuse it (a cut FLAC too)
    data = getattr(rendered_clip, suffix).read_bytes()
    path = tmp_path / f"cut.{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError) as error:
        load(path)
    assert_one_line_error(error, path, *words)


def test_wav_with_trailing_chunk_is_not_truncated(tmp_path: Path) -> None:
    """A complete WAV with a chunk after the audio data must still load."""
    tone = sine(440.0, 0.1, SAMPLE_RATE)
    path = tmp_path / "trailing.wav"
    sf.write(str(path), tone, SAMPLE_RATE, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    extra = b"junk" + (6).to_bytes(4, "little") + b"abcdef"
    data += extra
    data[4:8] = (int.from_bytes(data[4:8], "little") + len(extra)).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    np.testing.assert_allclose(load(path), tone, atol=2.0 / 32767)


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_zero_sample_file(tmp_path: Path, subtype: str) -> None:
    path = tmp_path / "empty.wav"
    sf.write(str(path), np.zeros(0, dtype=np.float32), SAMPLE_RATE, subtype=subtype)
    with pytest.raises(AudioError) as error:
        load(path)
    assert_one_line_error(error, path, "no samples")


def test_empty_array() -> None:
    with pytest.raises(AudioError, match="no samples"):
        prepare_array(np.zeros(0, dtype=np.float32), SAMPLE_RATE)


def test_non_finite_samples() -> None:
    tone = sine(440.0, 0.1, SAMPLE_RATE)
    tone[10] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        prepare_array(tone, SAMPLE_RATE, name="bad-take")


def test_clipped_file_warns_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "loud.wav"
    sf.write(str(path), sine(440.0, 0.2, SAMPLE_RATE, amplitude=1.5), SAMPLE_RATE, subtype="FLOAT")
    with pytest.warns(UserWarning, match="clipped") as record:
        samples = load(path)
    assert str(path) in str(record[0].message)
    assert samples.dtype == np.float32


def test_full_scale_int16_warns() -> None:
    square = np.where(sine(100.0, 0.1, SAMPLE_RATE) >= 0, 32767, -32767).astype(np.int16)
    with pytest.warns(UserWarning, match="clipped"):
        prepare_array(square, SAMPLE_RATE)


def test_normal_level_does_not_warn(rendered_clip) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(rendered_clip.flac)
