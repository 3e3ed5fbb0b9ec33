"""The project's own piano engine (pianomtl.synthesis.piano): its physics, measured on real samples.

Every test renders a few seconds from the Salamander samples fetched at set-up (the SF2
built from them and the release samples); they skip, saying so, where
``python -m pianomtl.synthesis.sources`` has not been run. Renders are deterministic, so two
renders that differ in one thing only (the pedal, the release samples) can be subtracted:
the difference is exactly what that one thing adds.
"""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest

from pianomtl.cli import synth as synth_cli
from pianomtl.constants import PEDAL_DOWN_ABOVE, SAMPLE_RATE
from pianomtl.core.midi import Note, PedalEvent, Performance, sustain_notes
from pianomtl.synthesis import corpus, engines, piano, sources, timbres

SR = SAMPLE_RATE
needs_samples = pytest.mark.skipif(
    not (sources.has_salamander() and sources.has_salamander_release()),
    reason="Salamander samples not fetched (run: python -m pianomtl.synthesis.sources)",
)


def db(y: np.ndarray, start: float, stop: float) -> float:
    """Mean power of ``y`` between two times, in dB."""
    return float(10 * np.log10(np.mean(y[int(start * SR) : int(stop * SR)].astype(np.float64) ** 2) + 1e-30))


def frequency(key: float) -> float:
    return 440.0 * 2 ** ((key - 69) / 12)


def band_energy(y: np.ndarray, start: float, stop: float, centres: list[float], cents: float) -> float:
    """Energy (dB) of ``y``'s spectrum between two times within ``cents`` of any of ``centres`` (Hz)."""
    segment = y[int(start * SR) : int(stop * SR)].astype(np.float64)
    power = np.abs(np.fft.rfft(segment * np.hanning(len(segment)), 1 << 18)) ** 2
    f = np.fft.rfftfreq(1 << 18, 1 / SR)
    grid = np.sort(1200 * np.log2(np.asarray(centres)))
    position = 1200 * np.log2(np.maximum(f, 1.0))
    above = np.clip(np.searchsorted(grid, position), 1, len(grid) - 1)
    nearest = np.minimum(np.abs(position - grid[above - 1]), np.abs(position - grid[above]))
    if len(grid) == 1:
        nearest = np.abs(position - grid[0])
    return float(10 * np.log10(power[nearest < cents].sum() + 1e-30))


# ---------------------------------------------------------------- pedal physics


@needs_samples
def test_pedal_down_rings_the_unplayed_strings_in_sympathy():
    """C3 held 2 s in both renders (its own string identical); only the pedal differs.

    The difference (down − up) is what the strings freed by the pedal add. It is
    measurable (within 25 dB of the note's level), lies at the partials of unplayed
    strings, and is selective: the strings whose fundamental is a partial of C3
    (C4, G3, C5: sympathetic partners) answer far more than one that is not (F♯3).
    """
    notes = [Note(48, 0.3, 2.4, 100)]
    up = piano.render(Performance(notes, []), int(2.5 * SR))
    down = piano.render(Performance(notes, [PedalEvent(0.05, 127)]), int(2.5 * SR))
    difference = down - up
    # nothing differs before the pedal goes down (but float32 rounding of the render's one FFT)
    assert np.abs(difference[: int(0.04 * SR)]).max() < 1e-5 * np.abs(up).max()
    assert db(difference, 0.8, 2.3) > db(up, 0.8, 2.3) - 25  # measurable

    unplayed = [k for k in range(21, 109) if k != 48]
    partials = [j * frequency(k) for k in unplayed for j in range(1, 9) if j * frequency(k) < 1500]
    at_partials = band_energy(difference, 0.8, 2.3, partials, 10)  # ±10 cents: 38 % of the axis below 1.5 kHz
    everywhere = band_energy(difference, 0.8, 2.3, [float(f) for f in np.geomspace(25, 1500, 4000)], 5)
    assert at_partials > everywhere - 0.7  # ≥ 85 % of it sits on unplayed strings' partials

    partners = band_energy(difference, 0.8, 2.3, [frequency(60), frequency(55), frequency(72)], 15)
    stranger = band_energy(difference, 0.8, 2.3, [frequency(54)], 15)  # F♯3: no partial of C3 near it
    assert partners > stranger + 20


@needs_samples
def test_key_released_under_the_pedal_keeps_sounding_until_the_pedal_lifts():
    held = Performance([Note(64, 0.1, 0.4, 90)], [PedalEvent(0.05, 100), PedalEvent(1.6, 0)])
    dry = Performance([Note(64, 0.1, 0.4, 90)], [])
    with_pedal = piano.render(held, int(2.5 * SR))
    without = piano.render(dry, int(2.5 * SR))
    assert db(with_pedal, 1.3, 1.5) > db(without, 1.3, 1.5) + 30  # a second after the release: still ringing
    assert db(with_pedal, 1.5, 1.6) > db(with_pedal, 1.3, 1.5) - 6  # … right up to the lift
    assert db(with_pedal, 2.1, 2.4) < db(with_pedal, 1.3, 1.5) - 30  # the dampers fall at the lift
    assert sustain_notes(held)[0].offset == pytest.approx(1.6)  # and the labels say so
    # CC64 = 64 is "up" for the labels (down above 64): the dampers stay on, exactly as without pedal
    at_threshold = Performance(dry.notes, [PedalEvent(0.05, PEDAL_DOWN_ABOVE), PedalEvent(1.6, 0)])
    np.testing.assert_array_equal(piano.render(at_threshold, int(2.5 * SR)), without)


@needs_samples
def test_half_pedal_damps_faster_than_full_and_slower_than_none():
    """C3 released at 0.5 s, pedal held at 127 (full), 82 (half) and 0; decay over the next 0.4 s."""
    drops = {}
    for value in (127, 82, 0):
        performance = Performance([Note(48, 0.1, 0.5, 90)], [PedalEvent(0.0, value)])
        y = piano.render(performance, int(1.2 * SR), release_samples=False)  # the damper's effect alone
        drops[value] = db(y, 0.5, 0.55) - db(y, 0.9, 0.95)
    assert piano.pedal_lift(82) == pytest.approx(0.5)
    assert drops[127] + 10 < drops[82] < drops[0] - 5, drops


@needs_samples
def test_release_sample_sounds_at_the_release():
    note = Performance([Note(60, 0.1, 1.0, 80)], [])
    difference = piano.render(note, int(1.8 * SR)) - piano.render(note, int(1.8 * SR), release_samples=False)
    level = np.abs(difference)
    assert level[: int(0.999 * SR)].max() < 1e-3 * level.max()  # nothing before the key comes up (but rounding)
    first = int(np.argmax(level > 0.1 * level.max()))
    assert 1.0 * SR <= first <= 1.02 * SR  # heard within one frame (20 ms) of the release
    assert db(difference, 1.0, 1.5) > db(difference, 1.5, 1.8) + 20  # a short sound (the damper landing)

    # released under the pedal, the damper lands when the pedal lifts, not when the key comes up
    pedalled = Performance([Note(60, 0.1, 0.5, 80)], [PedalEvent(0.05, 127), PedalEvent(1.2, 0)])
    later = piano.render(pedalled, int(1.8 * SR)) - piano.render(pedalled, int(1.8 * SR), release_samples=False)
    assert np.abs(later[: int(1.199 * SR)]).max() < 1e-3 * level.max()
    assert np.abs(later[int(1.2 * SR) : int(1.3 * SR)]).max() > 0.1 * level.max()


@needs_samples
def test_top_keys_have_no_dampers():
    """Above E6 (key 88) the strings ring on after the key comes up; below they are damped."""
    levels = {}
    for key in (84, 100):
        y = piano.render(Performance([Note(key, 0.1, 0.4, 90)], []), int(1.5 * SR))
        levels[key] = db(y, 0.3, 0.4) - db(y, 1.0, 1.2)  # drop from just before the release to 0.6 s after
    assert levels[100] < 20 < 60 < levels[84], levels


@needs_samples
def test_restruck_key_keeps_part_of_the_old_vibration_and_lands_no_damper():
    """Under the pedal: C4 struck ff, then again ppp while it still rings."""
    pedal = [PedalEvent(0.05, 127)]
    loud, soft = Note(60, 0.1, 0.2, 120), Note(60, 0.6, 1.0, 5)
    both = piano.render(Performance([loud, soft], pedal), int(1.2 * SR))
    loud_only = piano.render(Performance([loud], pedal), int(1.2 * SR))
    soft_only = piano.render(Performance([soft], pedal), int(1.2 * SR))
    assert db(both, 0.8, 1.0) > db(soft_only, 0.8, 1.0) + 6  # the old vibration is not silenced
    assert db(both, 0.8, 1.0) < db(loud_only, 0.8, 1.0) - 3  # but the hammer's contact took part of it
    # re-struck without coming up (offset = next onset): no damper lands in between
    repeated = Performance([Note(60, 0.1, 1.0, 90), Note(60, 1.0, 1.5, 90)], [])
    thuds = piano.render(repeated, int(2.0 * SR)) - piano.render(repeated, int(2.0 * SR), release_samples=False)
    assert np.abs(thuds[: int(1.45 * SR)]).max() < 1e-3 * np.abs(thuds).max()


# ---------------------------------------------------------------- instruments, alignment, reproducibility


@needs_samples
def test_sound_starts_at_the_note_on():
    variants = [piano.PianoVariant(), *(piano.PianoVariant.draw(np.random.default_rng(s)) for s in (1, 2))]
    for variant in variants:
        for key in (21, 60, 105):
            y = piano.render(Performance([Note(key, 0.5, 1.0, 90)], []), 2 * SR, variant)
            assert len(y) == 2 * SR and y.dtype == np.float32
            level = np.abs(y)
            assert level[: int(0.49 * SR)].max() < 1e-4 * level.max(), (key, variant.seed)  # silent before
            first = int(np.argmax(level > 0.01 * level.max()))
            assert 0.49 * SR <= first <= 0.52 * SR, (key, variant.seed)  # within one frame of the note-on


@needs_samples
def test_every_velocity_of_the_retuned_top_keys_renders():
    """The top samples are retuned by a different amount per layer; a layer shifted down came out
    longer than the part of it that sounds (a corpus render failed on key 108, velocity 43)."""
    soft_hammer = piano.PianoVariant(hardness=-2.83, hardness_slope=1.7, velocity_gamma=0.94)
    for variant in (piano.PianoVariant(), soft_hammer):
        notes = [
            Note(key, 0.05 * i, 0.05 * i + 0.8, velocity)
            for i, (key, velocity) in enumerate(
                (key, velocity) for key in (104, 106, 108) for velocity in range(1, 128, 6)
            )
        ]
        y = piano.render(Performance(notes, []), int((notes[-1].offset + 1.0) * SR), variant)
        assert np.all(np.isfinite(y)) and np.abs(y).max() > 0


@needs_samples
def test_deterministic_per_seed_and_variants_differ():
    performance = Performance(
        [Note(48, 0.1, 0.8, 70), Note(60, 0.3, 0.6, 100), Note(60, 0.7, 1.2, 50), Note(96, 0.4, 0.5, 110)],
        [PedalEvent(0.2, 110), PedalEvent(0.9, 75), PedalEvent(1.1, 0)],
    )
    a = piano.PianoVariant.draw(np.random.default_rng(7))
    assert a == piano.PianoVariant.draw(np.random.default_rng(7))
    b = piano.PianoVariant.draw(np.random.default_rng(8))
    first = piano.render(performance, int(1.6 * SR), a)
    np.testing.assert_array_equal(first, piano.render(performance, int(1.6 * SR), a))
    restored = piano.PianoVariant.from_json(a.to_json())  # what the corpus CSV records
    assert restored == a
    np.testing.assert_array_equal(first, piano.render(performance, int(1.6 * SR), restored))
    other = piano.render(performance, int(1.6 * SR), b)
    assert np.abs(other - first).max() > 0.1 * np.abs(first).max()


def test_variants_are_json_safe_and_spread():
    variants = [piano.PianoVariant.draw(np.random.default_rng(seed)) for seed in range(40)]
    for variant in variants:
        values = json.loads(variant.to_json())
        assert set(values) == {f.name for f in dataclasses.fields(piano.PianoVariant)}
        assert all(isinstance(v, (int, float)) and np.isfinite(v) for v in values.values())
    assert len({v.seed for v in variants}) == 40
    assert any(v.bass_decay > 0 for v in variants) and any(v.bass_decay == 0 for v in variants)  # some uprights
    gammas = [v.velocity_gamma for v in variants]
    assert min(gammas) < 0.9 and max(gammas) > 1.15


def test_bad_input_gives_a_one_line_error():
    bad = [
        Performance([Note(20, 0.1, 0.5, 80)], []),
        Performance([Note(60, 0.1, 0.5, 0)], []),
        Performance([Note(60, 0.5, 0.1, 80)], []),
        Performance([Note(60, float("nan"), 0.5, 80)], []),
        Performance([Note(60, 0.1, 0.5, 80)], [PedalEvent(0.1, 200)]),
    ]
    for performance in bad:
        with pytest.raises(piano.PianoError) as error:
            piano.render(performance, SR)
        assert "\n" not in str(error.value)
    with pytest.raises(piano.PianoError, match="n_samples"):
        piano.render(Performance([], []), 0)
    for text in ("{", '{"hammer": 1}', "[1, 2]", '{"seed": "x"}', '{"seed": 1.5}', '{"mic_distance": 0}'):
        with pytest.raises(piano.PianoError) as error:
            piano.PianoVariant.from_json(text)
        assert "\n" not in str(error.value)


def test_missing_samples_give_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PIANOMTL_HOME", str(tmp_path))
    with pytest.raises(sources.AssetError) as error:
        piano.render(Performance([Note(60, 0.1, 0.5, 80)], []), SR)
    assert "\n" not in str(error.value) and "python -m pianomtl.synthesis.sources" in str(error.value)
    (tmp_path / "salamander").mkdir()
    (tmp_path / "salamander" / "salamander.sf2").write_bytes(b"")
    with pytest.raises(sources.AssetError, match=r"release samples .*python -m pianomtl\.synthesis\.sources"):
        timbres.TIMBRES["grand"].soundfont()


# ---------------------------------------------------------------- the corpus


@needs_samples
def test_corpus_items_record_and_replay_their_instrument(tmp_path):
    config = corpus.Config(
        seed=3, train_hours=5 / 3600, valid_minutes=0, test_minutes=0, train_timbres=("grand",),
        test_timbres=("grand",), sources=("procedural",), min_length=2.0, max_length=3.0,
    )  # fmt: skip
    items = [item for item in corpus.plan(config) if item.split == "train"]
    assert items and all(item.instrument for item in items)
    assert len({item.instrument for item in items}) == len(items)  # every item its own piano
    item = items[0]
    corpus.render_item(item, tmp_path)
    assert corpus.write_csv(items, tmp_path) == 1
    with open(tmp_path / corpus.CSV_NAME, newline="") as handle:
        rows = {row["audio_filename"]: row for row in csv.DictReader(handle)}
    variant = piano.PianoVariant.from_json(rows[item.audio_filename]["instrument"])
    n = round(item.duration * SR)
    np.testing.assert_array_equal(
        piano.render(item.performance, n, variant),
        engines.render_performance(item.performance, "grand", n, item.instrument),
    )


def test_piano_recipe_makes_the_engine_the_main_timbre():
    import argparse

    parser = argparse.ArgumentParser()
    synth_cli.configure(parser)
    config = synth_cli.config_from_args(parser.parse_args(["--out", "x", "--recipe", "piano"]))
    names, weights = config.train_timbres, config.train_timbre_weights
    assert names[0] == "grand" and "musescore" not in names and weights is not None and weights[0] == max(weights)
    config = corpus.Config(train_timbres=("grand", "salamander", "fluidr3", "timgm", "gmbank", "freepats"))
    np.testing.assert_allclose(corpus._train_weights(config), [0.5, 0.1, 0.1, 0.1, 0.1, 0.1])
    config = corpus.Config(train_timbres=("salamander", "fluidr3", "timgm"))  # the old default is unchanged
    np.testing.assert_allclose(corpus._train_weights(config), [0.5, 0.25, 0.25])
