"""The parametric piano, the v8 corpus recipe's effect chain, and the field test's scoring.

Every check measures the rendered audio (pitch, partial spacing, loudness, decay) or the
planned corpus, so a wrong formula fails; nothing here needs an installed sample set.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from pianomtl.constants import SAMPLE_RATE
from pianomtl.core.midi import Note, PedalEvent, Performance
from pianomtl.synthesis import audio_augment, corpus, modal, piano
from pianomtl.train.field import score_recording

SR = SAMPLE_RATE


def _spectrum(audio: np.ndarray, start: float = 0.1, seconds: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    segment = audio[int(start * SR) : int((start + seconds) * SR)].astype(np.float64)
    size = 1 << 19  # zero-padded: 0.08 Hz bins
    magnitude = np.abs(np.fft.rfft(segment * np.hanning(len(segment)), size))
    return np.fft.rfftfreq(size, 1 / SR), magnitude


def _peak(frequencies: np.ndarray, magnitude: np.ndarray, near: float, width: float = 0.04) -> float:
    band = (frequencies > near * (1 - width)) & (frequencies < near * (1 + width))
    return float(frequencies[band][np.argmax(magnitude[band])])


def _note(key: int, velocity: int, seconds: float = 2.0, instrument: modal.ModalPiano | None = None) -> np.ndarray:
    performance = Performance([Note(key, 0.05, 0.05 + seconds, velocity)], [])
    return modal.render_modal(performance, int((seconds + 0.5) * SR), instrument or modal.ModalPiano())


@pytest.mark.parametrize("key", [45, 60, 81])
def test_the_fundamental_sounds_at_the_keys_pitch(key):
    frequencies, magnitude = _spectrum(_note(key, 80))
    f0 = 440.0 * 2 ** ((key - 69) / 12)
    cents = 1200 * np.log2(_peak(frequencies, magnitude, f0) / f0)
    assert abs(cents) < 5, f"key {key}: fundamental {cents:+.1f} cents off"


def test_partials_are_stretched_by_the_strings_inharmonicity():
    """f_n = n f0 √(1 + B n²): the 8th partial of a bass string lies measurably above 8 f0, and more so for a
    stiffer string (a larger inharmonicity scale)."""
    key = 40
    f0 = 440.0 * 2 ** ((key - 69) / 12)
    ratios = []
    for scale in (0.6, 2.5):
        frequencies, magnitude = _spectrum(_note(key, 100, instrument=modal.ModalPiano(inharmonicity=scale)))
        ratios.append(_peak(frequencies, magnitude, 8 * f0, 0.02) / (8 * f0))
    b = modal.inharmonicity_curve(np.array([key]))[0]
    for scale, ratio in zip((0.6, 2.5), ratios, strict=True):
        assert ratio == pytest.approx(np.sqrt(1 + scale * b * 64), abs=0.002)
    assert ratios[1] > ratios[0] > 1.0


def test_a_harder_blow_is_louder_and_brighter():
    levels, centroids = [], []
    for velocity in (20, 60, 110):
        audio = _note(60, velocity, seconds=1.0)
        head = audio[int(0.05 * SR) : int(0.35 * SR)].astype(np.float64)
        levels.append(20 * np.log10(np.sqrt(np.mean(head**2))))
        frequencies, magnitude = _spectrum(audio, 0.05, 0.3)
        power = magnitude**2
        centroids.append(float(np.sum(frequencies * power) / np.sum(power)))
    assert levels[0] + 10 < levels[1] < levels[2] - 3
    assert centroids[0] < centroids[1] < centroids[2]


def test_the_damper_stops_a_released_key_unless_the_pedal_holds_it():
    def tail(pedal: list[PedalEvent]) -> float:
        performance = Performance([Note(55, 0.05, 0.5, 90)], pedal)
        audio = modal.render_modal(performance, int(2.0 * SR))
        window = audio[int(1.0 * SR) : int(1.3 * SR)].astype(np.float64)
        return 20 * np.log10(np.sqrt(np.mean(window**2)) + 1e-12)

    assert tail([PedalEvent(0.0, 127), PedalEvent(1.8, 0)]) > tail([]) + 30


def test_an_instrument_is_reproducible_and_each_seed_another_piano():
    rng = np.random.default_rng(0)
    first, second = modal.ModalPiano.draw(rng), modal.ModalPiano.draw(rng)
    assert modal.ModalPiano.from_json(first.to_json()) == first
    a = _note(64, 70, 1.0, first)
    assert np.array_equal(a, _note(64, 70, 1.0, modal.ModalPiano.from_json(first.to_json())))
    b = _note(64, 70, 1.0, second)
    assert np.max(np.abs(a - b)) > 0.1 * np.max(np.abs(a))


@pytest.mark.parametrize("text", ["{", "[1]", '{"seed": -1}', '{"bogus": 1}', '{"felt_slope": 0}'])
def test_a_broken_instrument_description_is_one_line(text):
    with pytest.raises(piano.PianoError) as error:
        modal.ModalPiano.from_json(text)
    assert "\n" not in str(error.value) and "modal piano" in str(error.value)


# ---------------------------------------------------------------- the effect chain


@pytest.mark.parametrize("codec", audio_augment.CODECS)
def test_a_codec_round_trip_keeps_the_onsets_where_they_were(codec):
    rng = np.random.default_rng(1)
    x = np.zeros(SR * 3)
    for at in (0.5, 1.2, 2.1):  # decaying tones: onsets a transcriber would see
        n = np.arange(int(0.6 * SR))
        x[int(at * SR) : int(at * SR) + len(n)] += np.sin(2 * np.pi * 523.25 * n / SR) * np.exp(-n / (0.15 * SR))
    x += 1e-3 * rng.standard_normal(len(x))
    y = audio_augment.apply_effects(x, {"codec": codec, "quality": 0.5})
    assert len(y) == len(x)
    assert audio_augment._lag(x, y, 2000) <= 1  # aligned within a sample (a frame is 882)
    assert np.corrcoef(x, y)[0, 1] > 0.98


def test_effects_are_drawn_reproducibly_and_applied_without_moving_anything():
    effects = [audio_augment.draw_effects(np.random.default_rng(seed)) for seed in range(40)]
    assert effects[3] == audio_augment.draw_effects(np.random.default_rng(3))
    for part in ("eq", "codec", "clip_db", "compress", "noise_snr_db"):
        assert any(part in e for e in effects), part
    x = np.random.default_rng(2).standard_normal(SR).astype(np.float32) * 0.1
    for chosen in effects[:6]:
        y = audio_augment.apply_effects(x, json.loads(json.dumps(chosen)))  # as the corpus CSV stores it
        assert y.shape == x.shape and np.isfinite(y).all()


# ---------------------------------------------------------------- the corpus recipes


def _performance(seconds: float = 40.0) -> Performance:
    rng = np.random.default_rng(5)
    times = np.arange(0, seconds, 0.25)
    keys = rng.integers(40, 80, len(times))
    notes = [Note(int(k), t, t + 0.4, 70) for t, k in zip(times, keys, strict=True)]
    return Performance(notes, [PedalEvent(0.0, 100), PedalEvent(seconds / 2, 0)])


def test_the_v8_recipe_plays_modal_pianos_without_pedal_high_and_through_effects():
    sources = {f"Maestro_{i}": _performance() for i in (1, 2, 3, 9, 10)}
    config = corpus.Config(
        seed=8, train_hours=0.4, valid_minutes=0, test_minutes=0, sources=("maestro", "procedural"),
        train_timbres=("modal", "grand"), pedal_free_share=0.5, high_share=0.5, effects_share=0.5,
    )  # fmt: skip
    items = [i for i in corpus.plan(config, sources) if i.split == "train"]
    real = [i for i in items if i.source != "procedural"]
    assert any(i.pedal_free for i in real) and any(not i.pedal_free for i in real)
    assert all(not i.performance.pedal for i in real if i.pedal_free)
    assert any(i.transpose > 3 for i in items) and max(n.key for i in items for n in i.performance.notes) > 96
    modal_items = [i for i in items if i.timbre == "modal"]
    assert modal_items and len({i.instrument for i in modal_items}) == len(modal_items)  # a new piano each
    assert all(modal.ModalPiano.from_json(i.instrument) for i in modal_items)
    assert any(i.effects for i in items) and all(isinstance(json.loads(i.effects), dict) for i in items if i.effects)


def test_the_field_test_plays_each_excerpt_with_and_without_pedal_on_held_out_pianos():
    sources = {f"Maestro_{i}": _performance(60.0) for i in (3, 9, 10)}
    config = corpus.Config(seed=11, test_minutes=2.0, valid_minutes=1.0, field=True)
    items = corpus.plan(config, sources)
    test = [i for i in items if i.split == "test"]
    assert {i.timbre for i in test} == set(corpus.FIELD_TIMBRES)
    pedal_free = [i for i in test if i.pedal_free]
    assert pedal_free and all(not i.performance.pedal for i in pedal_free)
    assert any(i.source == "procedural" for i in pedal_free)
    assert all(i.reverb_rt60 > 0 and i.noise != "none" for i in test)
    assert {i.source for i in items if i.split == "validation"} <= {"maestro/Maestro_9", "procedural"}


# ---------------------------------------------------------------- field scoring


def test_field_scores_a_perfect_transcription_as_perfect_and_spots_written_pedal():
    reference = Performance([Note(60, 0.5, 1.0, 80), Note(64, 1.2, 1.8, 60)], [])
    perfect = score_recording(reference, list(reference.notes), [], 2.5)
    assert perfect["notes"]["note_offset_velocity_f1"] == pytest.approx(1.0)
    assert not perfect["has_pedal"] and not perfect["wrote_pedal"]
    decoded, target = perfect["frames"]
    assert np.array_equal(decoded, target) and target.any()
    wrong = score_recording(reference, list(reference.notes), [PedalEvent(0.6, 127), PedalEvent(1.4, 0)], 2.5)
    assert wrong["wrote_pedal"]
    late = [n._replace(onset=n.onset + 0.06) for n in reference.notes]
    assert score_recording(reference, late, [], 2.5)["notes"]["note_f1"] == 0.0
