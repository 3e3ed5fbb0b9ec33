"""The synthetic corpus: labels line up with the audio, renders are reproducible and resumable.

A tiny corpus (procedural material, Debian's FluidR3, a few seconds per item) is
rendered once per module. Tests of the Salamander piano or the real MIDI sources
skip when ``python -m pianomtl.synthesis.sources`` has not been run on this machine.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pianomtl.constants import FPS, MAX_KEY, MIN_KEY, SAMPLE_RATE
from pianomtl.core.midi import Note, PedalEvent, Performance, read_midi, sustain_notes
from pianomtl.synthesis import corpus as corpus_recipe
from pianomtl.synthesis import engines, material, salamander, sources, timbres

FLUID_R3 = Path(timbres.TIMBRES["fluidr3"].path)
needs_fluidr3 = pytest.mark.skipif(not FLUID_R3.is_file(), reason="Debian package fluid-soundfont-gm not installed")


def _installed(timbre: str) -> bool:
    try:
        timbres.TIMBRES[timbre].soundfont()
    except sources.AssetError:
        return False
    return True


# every training timbre, each skipped (with the reason) where its sounds are not installed
TRAINING_TIMBRES = [
    pytest.param(name, marks=pytest.mark.skipif(not _installed(name), reason=f"timbre {name} not installed"))
    for name in ("fluidr3", "salamander", "gmbank", "freepats", "grand")
]
needs_salamander = pytest.mark.skipif(
    not sources.has_salamander(), reason="Salamander SoundFont not built (run: python -m pianomtl.synthesis.sources)"
)
needs_midi = pytest.mark.skipif(
    not sources.has_midi(), reason="miditok MIDI not fetched (run: python -m pianomtl.synthesis.sources)"
)


def tiny_config(seed: int = 0) -> corpus_recipe.Config:
    return corpus_recipe.Config(
        seed=seed,
        train_hours=10 / 3600,
        valid_minutes=4 / 60,
        test_minutes=4 / 60,
        train_timbres=("fluidr3",),
        test_timbres=("fluidr3",),
        sources=("procedural",),
        min_length=3.0,
        max_length=4.0,
    )


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    if not FLUID_R3.is_file():
        pytest.skip("Debian package fluid-soundfont-gm not installed")
    out = tmp_path_factory.mktemp("corpus")
    summary = corpus_recipe.synthesize(out, tiny_config(), workers=1, progress=False)
    assert summary["complete"] == summary["items"] >= 4
    return out


def spectral_flux(samples: np.ndarray) -> np.ndarray:
    from pianomtl.core.features import spectrogram

    spec = spectrogram(samples)
    flux = np.zeros(len(spec))
    flux[1:] = np.maximum(np.diff(spec, axis=0), 0).sum(axis=1)
    return flux


# ---------------------------------------------------------------- alignment


@needs_fluidr3
def test_spectral_flux_is_high_at_labelled_onsets(corpus):
    from pianomtl.data.maestro import read_dataset

    ratios = []
    rng = np.random.default_rng(0)
    for record in read_dataset(corpus):
        audio, rate = sf.read(str(record.audio_path), dtype="float32")
        assert rate == SAMPLE_RATE
        flux = spectral_flux(audio)
        onsets = np.unique([round(n.onset * FPS) for n in read_midi(record.midi_path).notes])
        onsets = onsets[onsets < len(flux) - 1]
        at_onsets = np.mean([flux[max(0, f - 1) : f + 2].max() for f in onsets])
        random_frames = rng.integers(1, len(flux) - 1, size=200)
        at_random = np.mean([flux[f - 1 : f + 2].max() for f in random_frames])
        ratios.append(at_onsets / at_random)
    assert np.median(ratios) > 1.5, ratios


@needs_fluidr3
def test_written_midi_is_exactly_what_was_rendered(corpus):
    items = {item.name: item for item in corpus_recipe.plan(tiny_config())}
    for name, item in items.items():
        written = read_midi(corpus / item.midi_filename)
        assert len(written.notes) == len(item.performance.notes)
        for a, b in zip(written.notes, item.performance.notes, strict=True):
            assert (a.key, a.velocity) == (b.key, b.velocity), name
            assert abs(a.onset - b.onset) < 1e-9 and abs(a.offset - b.offset) < 1e-9, name
        assert [(round(e.time, 9), e.value) for e in written.pedal] == [
            (round(e.time, 9), e.value) for e in item.performance.pedal
        ]
        info = sf.info(str(corpus / item.audio_filename))
        assert info.frames == round(item.duration * SAMPLE_RATE)
        assert info.frames / SAMPLE_RATE > written.end_time


@pytest.mark.parametrize("timbre", TRAINING_TIMBRES)
def test_velocity_and_loudness_correlate(timbre):
    velocities = [10, 25, 40, 55, 70, 85, 100, 115, 127]
    levels = []
    for velocity in velocities:
        y = engines.render_performance(Performance([Note(60, 0.05, 0.5, velocity)], []), timbre, SAMPLE_RATE)
        levels.append(10 * np.log10(np.mean(y[: int(0.3 * SAMPLE_RATE)] ** 2) + 1e-20))
    assert np.corrcoef(velocities, levels)[0, 1] > 0.9
    assert levels[-1] - levels[0] > 15  # dB


@pytest.mark.parametrize("timbre", TRAINING_TIMBRES)
def test_note_released_under_pedal_sounds_until_the_pedal_lifts(timbre):
    held = Performance([Note(64, 0.1, 0.4, 90)], [PedalEvent(0.05, 100), PedalEvent(1.6, 0)])
    dry = Performance([Note(64, 0.1, 0.4, 90)], [])
    sr = SAMPLE_RATE

    def db(y, a, b):
        return 10 * np.log10(np.mean(y[int(a * sr) : int(b * sr)] ** 2) + 1e-20)

    with_pedal = engines.render_performance(held, timbre, int(2.5 * sr))
    without = engines.render_performance(dry, timbre, int(2.5 * sr))
    # CC64 = 64 is "up" for the labels (down above 64): the synth must damp the note too
    at_64 = Performance(dry.notes, [PedalEvent(0.05, 64), PedalEvent(1.6, 0)])
    assert sustain_notes(at_64)[0].offset == pytest.approx(0.4)
    np.testing.assert_allclose(engines.render_performance(at_64, timbre, int(2.5 * sr)), without, atol=1e-6)
    assert db(with_pedal, 1.3, 1.5) > db(without, 1.3, 1.5) + 30  # still ringing a second after release
    assert db(with_pedal, 1.3, 1.5) > -80
    assert db(with_pedal, 2.1, 2.4) < db(with_pedal, 1.3, 1.5) - 30  # damped after the lift
    # the labels agree: the offset moves to the lift
    assert sustain_notes(held)[0].offset == pytest.approx(1.6)


@pytest.mark.parametrize("timbre", TRAINING_TIMBRES)
def test_damper_release_is_short_without_pedal(timbre):
    y = engines.render_performance(Performance([Note(60, 0.1, 0.6, 90)], []), timbre, SAMPLE_RATE * 2)
    sr = SAMPLE_RATE
    before = np.mean(y[int(0.5 * sr) : int(0.6 * sr)] ** 2)
    after = np.mean(y[int(1.0 * sr) : int(1.1 * sr)] ** 2)
    assert 10 * np.log10((after + 1e-20) / before) < -40


@pytest.mark.parametrize("timbre", TRAINING_TIMBRES)
def test_sound_starts_at_the_note_on(timbre):
    sr = SAMPLE_RATE
    y = engines.render_performance(Performance([Note(60, 0.5, 1.0, 90)], []), timbre, 2 * sr)
    assert len(y) == 2 * sr and y.dtype == np.float32
    level = np.abs(y)
    assert level[: int(0.49 * sr)].max() < 1e-4 * level.max()  # silent before
    first = int(np.argmax(level > 0.01 * level.max()))
    assert 0.49 * sr <= first <= 0.52 * sr  # starts within 20 ms (one frame) of the note-on


@pytest.mark.skipif(not _installed("freepats"), reason="timidity/freepats not installed")
def test_timidity_renders_reproducibly_and_names_what_is_missing(monkeypatch):
    performance = Performance([Note(48, 0.1, 0.3, 70), Note(67, 0.2, 0.5, 100)], [PedalEvent(0.0, 127)])
    a = engines.render_performance(performance, "freepats", SAMPLE_RATE)
    b = engines.render_performance(performance, "freepats", SAMPLE_RATE)
    np.testing.assert_array_equal(a, b)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(
        sources.AssetError, match=r"^timidity not found; install the Debian package\(s\) 'timidity freepats'$"
    ):
        engines.render_performance(performance, "freepats", SAMPLE_RATE)


# ---------------------------------------------------------------- reproducibility


@needs_fluidr3
def test_same_seed_same_plan_other_seed_other_plan():
    a, b, c = corpus_recipe.plan(tiny_config(0)), corpus_recipe.plan(tiny_config(0)), corpus_recipe.plan(tiny_config(1))
    assert [i.row() for i in a] == [i.row() for i in b]
    assert [i.performance for i in a] == [i.performance for i in b]
    assert [i.performance for i in a] != [i.performance for i in c]


@needs_fluidr3
def test_rendering_is_deterministic_and_resumable(corpus, tmp_path):
    """A second corpus with 2 workers equals the first byte for byte; a deleted item comes back."""
    other = tmp_path / "again"
    corpus_recipe.synthesize(other, tiny_config(), workers=2, progress=False)
    files = sorted(p.relative_to(corpus) for p in corpus.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(other) for p in other.rglob("*") if p.is_file())
    for relative in files:
        assert md5(corpus / relative) == md5(other / relative), relative

    flacs = sorted(other.rglob("*.flac"))
    victim = flacs[1]
    kept = {p: (p.stat().st_mtime_ns, md5(p)) for p in other.rglob("*") if p.is_file() and p.stem != victim.stem}
    victim.unlink()
    csv_text = (other / corpus_recipe.CSV_NAME).read_text()
    summary = corpus_recipe.synthesize(other, tiny_config(), workers=1, progress=False)
    assert summary["rendered"] == 1 and victim.is_file()
    assert md5(victim) == md5(corpus / victim.relative_to(other))
    for path, (mtime, digest) in kept.items():
        if path.name != corpus_recipe.CSV_NAME:
            assert path.stat().st_mtime_ns == mtime and md5(path) == digest, path
    assert (other / corpus_recipe.CSV_NAME).read_text() == csv_text


# ---------------------------------------------------------------- MIDI material


def test_excerpt_carries_pedal_state_and_releases_at_the_end():
    performance = Performance(
        [Note(60, 1.0, 2.0, 80), Note(62, 5.5, 9.0, 70), Note(64, 12.0, 13.0, 60)],
        [PedalEvent(4.0, 100), PedalEvent(7.0, 50), PedalEvent(8.0, 127)],
    )
    piece = material.excerpt(performance, 5.0, 4.0, ring_out=1.0)
    assert [n.key for n in piece.notes] == [62]
    assert piece.notes[0].onset == pytest.approx(0.5) and piece.notes[0].offset == pytest.approx(4.0)
    assert piece.pedal[0] == PedalEvent(0.0, 100)  # pedal already down at the cut
    assert piece.pedal[-1] == PedalEvent(5.0, 0)  # lifted after the ring-out
    assert sustain_notes(piece)[0].offset == pytest.approx(5.0)


def test_augmentation_keeps_keys_and_curves_velocity():
    rng = np.random.default_rng(3)
    performance = material.procedural(rng, 20.0)
    low, high = material.transpose_range(performance, 3)
    for shift in (low, high):
        keys = [n.key for n in material.transpose(performance, shift).notes]
        assert MIN_KEY <= min(keys) and max(keys) <= MAX_KEY
    with pytest.raises(ValueError):
        material.transpose(performance, 200)
    slow = material.stretch(performance, 1.15)
    assert slow.end_time == pytest.approx(1.15 * performance.end_time)
    soft = material.velocity_curve(performance, 1.25)
    assert all(a.velocity >= b.velocity for a, b in zip(performance.notes, soft.notes, strict=True))
    assert material.velocity_curve(Performance([Note(60, 0, 1, 64)], []), 2.0).notes[0].velocity == 32
    clamped = material.clamp_velocity(Performance([Note(60, 0, 1, 1)], []), 3)
    assert clamped.notes[0].velocity == 3


def test_procedural_material_covers_keyboard_dynamics_and_half_pedal():
    keys, velocities, pedal_values = set(), [], set()
    for seed in range(12):
        performance = material.procedural(np.random.default_rng(seed), 30.0)
        assert performance.notes and performance.end_time <= 31.0 + 1e-9
        keys.update(n.key for n in performance.notes)
        velocities += [n.velocity for n in performance.notes]
        pedal_values.update(e.value for e in performance.pedal)
    assert len(keys) >= 80 and min(keys) >= MIN_KEY and max(keys) <= MAX_KEY
    assert min(velocities) < 25 and max(velocities) > 115
    assert any(40 <= v <= 90 for v in pedal_values) and max(pedal_values) > 100


def test_quantize_rounds_to_midi_ticks_and_splits_restrikes():
    performance = Performance([Note(60, 0.00011, 1.0, 80), Note(60, 0.5, 0.8, 70)], [PedalEvent(0.0004, 90)])
    q = material.quantize(performance)
    for note in q.notes:
        assert note.onset * 960 == pytest.approx(round(note.onset * 960))
    assert q.notes[0].offset == pytest.approx(0.5)


@needs_midi
def test_real_sources_load_and_splits_are_by_piece():
    config = corpus_recipe.Config(train_hours=0.2, valid_minutes=1, test_minutes=1)
    items = corpus_recipe.plan(config)
    pieces = {split: {i.source for i in items if i.split == split} for split in corpus_recipe.SPLITS}
    assert pieces["test"] <= {"maestro/Maestro_3", "maestro/Maestro_10"}
    assert pieces["validation"] == {"maestro/Maestro_9"}
    assert not pieces["train"] & (pieces["test"] | pieces["validation"])
    assert {i.timbre for i in items if i.split == "test"} == {"musescore"}
    assert "musescore" not in {i.timbre for i in items if i.split != "test"}


# ---------------------------------------------------------------- assets and the Salamander build


def test_missing_assets_give_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PIANOMTL_HOME", str(tmp_path))
    with pytest.raises(sources.AssetError) as error:
        sources.require_salamander_sf2()
    message = str(error.value)
    assert "\n" not in message and "salamander.sf2" in message and "python -m pianomtl.synthesis.sources" in message
    with pytest.raises(sources.AssetError, match=r"Maestro_1\.mid"):
        corpus_recipe.plan(corpus_recipe.Config(train_hours=0.01))


def _piano_like(frequency: float, seconds: float = 1.5, rate: int = 48000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * k * frequency * t) / k for k in range(1, 5) if k * frequency < rate / 2)
    signal = 0.5 * tone * np.exp(-2 * t)
    lead_in = np.zeros(int(0.015 * rate))  # 15 ms of silence before the attack, as in the originals
    return np.stack([np.concatenate([lead_in, signal])] * 2, axis=1)


@needs_fluidr3
def test_sf2_build_trims_lead_in_retunes_and_renders(tmp_path, monkeypatch):
    """Two fake layers of C4 and A4; the 'A4' file really sounds B♭4 and must be retuned."""
    ogg = tmp_path / "ogg"
    for layer in (1, 2):
        (ogg / f"v{layer}").mkdir(parents=True)
        sf.write(str(ogg / f"v{layer}" / f"C4v{layer}.ogg"), _piano_like(261.63), 48000)
        sf.write(str(ogg / f"v{layer}" / f"A4v{layer}.ogg"), _piano_like(466.16), 48000)  # labelled A4, is B♭4
    home = tmp_path / "home"
    sf2 = home / "salamander" / "salamander.sf2"
    report = salamander.build_sf2(ogg, sf2, log=lambda message: None)
    assert sum("A4v" in line and "retuned" in line for line in report) == 2
    assert sf2.read_bytes()[:4] == b"RIFF" and sf2.read_bytes()[8:12] == b"sfbk"
    assert struct.unpack("<I", sf2.read_bytes()[4:8])[0] == sf2.stat().st_size - 8

    monkeypatch.setenv("PIANOMTL_HOME", str(home))
    engines._synth.cache_clear()
    try:
        for key in (60, 70, 71):
            y = engines.render_performance(Performance([Note(key, 0.1, 0.6, 5)], []), "salamander", SAMPLE_RATE)
            assert np.abs(y).max() > 0
            attack = np.argmax(np.abs(y) > 0.1 * np.abs(y).max()) / SAMPLE_RATE
            assert 0.1 <= attack < 0.11  # lead-in trimmed: attack within 10 ms of note-on
            segment = y[int(0.2 * SAMPLE_RATE) : int(0.6 * SAMPLE_RATE)]
            spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment)), 1 << 17))
            peak = np.argmax(spectrum) * SAMPLE_RATE / (1 << 17)
            cents = 1200 * np.log2(peak / (440 * 2 ** ((key - 69) / 12)))
            assert abs(cents) < 30, (key, peak)
    finally:
        engines._synth.cache_clear()


@needs_salamander
def test_salamander_top_keys_sound_their_pitch():
    for key in (105, 107, 108):
        y = engines.render_performance(Performance([Note(key, 0.05, 0.6, 100)], []), "salamander", SAMPLE_RATE)
        segment = y[int(0.1 * SAMPLE_RATE) : int(0.5 * SAMPLE_RATE)]
        spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment)), 1 << 17))
        frequencies = np.fft.rfftfreq(1 << 17, 1 / SAMPLE_RATE)
        band = (frequencies > 2500) & (frequencies < 6000)
        peak = frequencies[band][np.argmax(spectrum[band])]
        cents = 1200 * np.log2(peak / (440 * 2 ** ((key - 69) / 12)))
        assert abs(cents) < 50, (key, peak)  # C8 must not sound C♯8


def test_measure_pitch_finds_the_detuned_sample():
    rate = 48000
    mono = _piano_like(4433.0, rate=rate)[:, 0]
    assert salamander.measure_pitch(mono, rate, 108) == pytest.approx(109.0, abs=0.05)
    assert salamander.parse_name("D#3v12.ogg") == (51, 12)
    assert salamander.velocity_range(1) == (1, 7) and salamander.velocity_range(16) == (120, 127)


def test_model_card_states_the_training_data_of_a_cache(corpus, tmp_path):
    """scripts/bundle_model.py reads hours from the cache and timbre/material shares from the corpus CSV."""
    import sys

    from pianomtl.data import store

    sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
    import bundle_model

    store.prepare(corpus, tmp_path / "cache", workers=1)
    data = bundle_model.training_data(str(tmp_path / "cache"))
    rendered = [i for i in corpus_recipe.plan(tiny_config()) if i.split == "train"]
    assert data["train_hours"] == pytest.approx(sum(i.duration for i in rendered) / 3600, abs=1e-3)
    assert data["timbres"] == pytest.approx({"fluidr3": 1.0}) and data["material"] == pytest.approx({"procedural": 1.0})
    assert data["corpus_seed"] == "0"
    assert bundle_model.training_data(str(tmp_path / "missing")) == {"cache": str(tmp_path / "missing")}


def test_prepare_command_stores_then_reuses_and_reports_a_bad_dataset(corpus, tmp_path, capsys):
    from pianomtl import cli

    cache = tmp_path / "cache"
    assert cli.main(["prepare", "--dataset", str(corpus), "--cache", str(cache), "--workers", "1"]) == 0
    stored = capsys.readouterr().out
    assert stored.startswith("stored ") and "reused 0, failed 0" in stored
    assert cli.main(["prepare", "--dataset", str(corpus), "--cache", str(cache), "--workers", "1"]) == 0
    assert "stored 0, reused" in capsys.readouterr().out  # nothing recomputed
    assert cli.main(["prepare", "--dataset", str(tmp_path / "missing"), "--cache", str(cache)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1 and "missing" in error
