"""Sheet music from a performance (issue 26): beats, metre, key, hands, quantisation, MusicXML, MuseScore."""

from __future__ import annotations

import subprocess
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import mido
import numpy as np
import pytest

from pianomtl.core.midi import MeterMap, Note, Performance, read_midi, write_midi
from pianomtl.score.beats import track
from pianomtl.score.hands import LEFT, RIGHT, separate_hands
from pianomtl.score.key import Key, estimate_key, spell
from pianomtl.score.quantize import quantise

music21 = pytest.importorskip("music21")
mir_eval = pytest.importorskip("mir_eval")

def _partitura_xsd() -> Path | None:
    """partitura's MusicXML 3.1 schema, found without importing partitura (its import may reach for a SoundFont)."""
    import importlib.util

    spec = importlib.util.find_spec("partitura")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / "musicxml.xsd"
    return path if path.is_file() else None


MUSICXML_XSD = _partitura_xsd()
"""The newest MusicXML schema an installable package ships: 3.1, in partitura (music21's is 2.0)."""


def clicks(bpm: float, seconds: float, accent_every: int = 4, start: float = 0.3) -> list[Note]:
    """A click track: a high click on every beat, a low loud one on every ``accent_every``-th."""
    period = 60 / bpm
    notes = []
    for index, time in enumerate(np.arange(start, start + seconds, period)):
        bar_start = index % accent_every == 0
        notes.append(Note(48 if bar_start else 76, float(time), float(time) + 0.1, 110 if bar_start else 60))
    return notes


@pytest.mark.parametrize(("bpm", "metre"), [(72.0, 4), (96.0, 3), (112.0, 2)])
def test_beats_of_a_click_track(bpm: float, metre: int) -> None:
    notes = clicks(bpm, 20.0, metre)
    grid = track(notes)
    truth = np.array([n.onset for n in notes])
    assert mir_eval.beat.f_measure(truth, grid.beats) > 0.97
    assert abs(grid.tempo - bpm) < 0.02 * bpm
    assert grid.beats_per_bar == metre
    assert mir_eval.beat.f_measure(truth[::metre], grid.downbeats) > 0.95
    assert grid.metered


def test_beats_follow_a_tempo_change() -> None:
    """Rubato: 80 bpm speeding up to 100 bpm over 16 beats, then back; the DP follows it."""
    tempo = np.concatenate([np.linspace(80, 100, 16), np.linspace(100, 80, 16)])
    times = 0.3 + np.concatenate([[0], np.cumsum(60 / tempo[:-1])])
    notes = [Note(60 if i % 4 else 48, float(t), float(t) + 0.2, 70 if i % 4 else 100) for i, t in enumerate(times)]
    grid = track(notes)
    assert mir_eval.beat.f_measure(times, grid.beats) > 0.95


def test_free_rhythm_is_unmetered_and_warns() -> None:
    rng = np.random.default_rng(3)
    onsets = np.cumsum(rng.exponential(0.37, 60))
    notes = [Note(int(rng.integers(48, 84)), float(t), float(t) + 0.3, 80) for t in onsets]
    from pianomtl.score import UnmeteredWarning, analyse

    assert not track(notes).metered
    with pytest.warns(UnmeteredWarning, match="no steady beat") as caught:
        analysis = analyse(Performance(notes, []))
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert not analysis.metered


def test_key_finding_and_spelling() -> None:
    scale = [62, 64, 66, 67, 69, 71, 73, 74]  # D major, tonic weighted
    notes = [Note(k, i * 0.5, i * 0.5 + (1.0 if k in (62, 74, 69) else 0.4), 80) for i, k in enumerate(scale * 3)]
    key = estimate_key(notes)
    assert (key.fifths, key.minor) == (2, False)
    assert spell(66, key) == ("F", 1)
    a_minor = Key(9, True)
    assert a_minor.fifths == 0
    assert spell(68, a_minor) == ("G", 1)  # the raised leading tone
    assert spell(70, Key(5, False)) == ("B", -1)  # F major's B flat
    assert spell(63, Key(0, True)) == ("E", -1)  # C minor: E flat
    assert Key(6, False).fifths in (6, -6)


def test_hands_of_a_two_handed_texture() -> None:
    """A bass line with off-beat chords in the left hand under a melody: the staves as written."""
    notes, hands = [], []
    for bar in range(8):
        t = bar * 2.0
        for k, (onset, key) in enumerate([(0, 43), (0.5, 55), (0.5, 59), (1.0, 47), (1.5, 55), (1.5, 62)]):
            notes.append(Note(key, t + onset, t + onset + 0.4, 70))
            hands.append(LEFT)
            del k
        for k in range(4):
            notes.append(Note(71 + (bar + k) % 7, t + 0.5 * k, t + 0.5 * k + 0.45, 90))
            hands.append(RIGHT)
    order = sorted(range(len(notes)), key=lambda i: notes[i].onset)
    estimated = separate_hands([notes[i] for i in order])
    assert np.mean(estimated == np.array(hands)[order]) >= 0.95


def test_quantisation_round_trip() -> None:
    """Score → performance (rubato, jitter, spread chords) → score: positions and lengths come back."""
    from pianomtl.score import analyse
    from pianomtl.score.perform import perform

    score = music21.corpus.parse("bach/bwv347")
    truth = perform(score, seed=0, max_bars=8)
    analysis = analyse(truth.performance)
    by_index = {q.index: q for q in analysis.quantised}
    # beat positions come back up to one shift of whole beats (where the estimated first bar starts)
    shifts = [by_index[i].start - truth.positions[i] for i in range(len(truth.positions))]
    shift = max(set(shifts), key=shifts.count)
    assert shift.denominator == 1
    assert np.mean([s == shift for s in shifts]) > 0.95
    lengths = [by_index[i].length == truth.lengths[i] for i in range(len(truth.lengths))]
    assert np.mean(lengths) > 0.5  # written lengths: legato playing makes this the harder half
    hands = analysis.hands == truth.hands
    assert np.mean(hands) > 0.8


def test_midi_tempo_map_keeps_note_times_and_writes_bars(tmp_path: Path) -> None:
    notes = clicks(84.0, 12.0, 3)
    from pianomtl.score import meter_map

    meter = meter_map(Performance(notes, []))
    assert meter is not None and meter.beats_per_bar == 3
    path = tmp_path / "mapped.mid"
    write_midi(path, Performance(notes, []), meter=meter)
    back = read_midi(path)
    assert len(back.notes) == len(notes)
    assert max(abs(a.onset - b.onset) for a, b in zip(back.notes, notes, strict=True)) < 0.003
    midi = mido.MidiFile(str(path))
    signatures = [m for m in midi.tracks[0] if m.type == "time_signature"]
    assert signatures[-1].numerator == 3
    tempos = [m.tempo for m in midi.tracks[0] if m.type == "set_tempo"]
    assert abs(60e6 / np.median(tempos) - 84.0) < 2
    # downbeats fall on bar lines: every loud low click at a multiple of 3 beats after the last time signature
    bar_start = sum(m.time for m in midi.tracks[0][: midi.tracks[0].index(signatures[-1]) + 1])
    tick = 0
    for message in midi.tracks[0]:
        tick += message.time
        if message.type == "note_on" and message.velocity and message.note == 48:
            phase = (tick - bar_start) % (3 * midi.ticks_per_beat)
            assert min(phase, 3 * midi.ticks_per_beat - phase) <= 5  # the beats are found to 10 ms frames


def test_meter_map_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        MeterMap((0.0,), 4)
    with pytest.raises(ValueError):
        MeterMap((0.0, 1.0, 0.5), 4)


@pytest.mark.parametrize("notes", [[], [Note(60, 0.5, 1.0, 80)]], ids=["no notes", "one note"])
def test_a_score_is_written_for_almost_nothing(notes: list[Note], tmp_path: Path) -> None:
    from pianomtl.score import UnmeteredWarning, write_musicxml

    with pytest.warns(UnmeteredWarning):
        path = write_musicxml(Performance(notes, []), tmp_path / "tiny.musicxml")
    parsed = music21.converter.parse(path)
    assert len(parsed.parts) == 2
    assert len(parsed.flatten().notes) == len(notes)


def _validate(path: Path) -> None:
    """Against the MusicXML 3.1 schema (its xml.xsd/xlink.xsd imports resolved to xmlschema's local copies)."""
    from lxml import etree

    if MUSICXML_XSD is None:
        pytest.skip("no MusicXML schema installed (partitura ships one; scripts/setup.sh --dev installs it)")
    xmlschema_dir = Path(pytest.importorskip("xmlschema").__file__).parent / "schemas"
    local = {
        "http://www.musicxml.org/xsd/xml.xsd": xmlschema_dir / "XML" / "xml.xsd",
        "http://www.musicxml.org/xsd/xlink.xsd": xmlschema_dir / "XLINK" / "xlink.xsd",
    }

    class Local(etree.Resolver):
        def resolve(self, url, pubid, context):  # type: ignore[no-untyped-def]
            if url in local:
                return self.resolve_filename(str(local[url]), context)
            return None

    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(Local())
    schema = etree.XMLSchema(etree.parse(str(MUSICXML_XSD), parser))
    document = etree.parse(str(path), etree.XMLParser(no_network=True, load_dtd=False))
    assert schema.validate(document), schema.error_log.filter_from_errors()[0]


@pytest.fixture(scope="module")
def chorale_musicxml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pianomtl.score import write_musicxml
    from pianomtl.score.perform import perform

    truth = perform(music21.corpus.parse("bach/bwv66.6"), seed=2, max_bars=10)
    pedal = [(1.0, 100), (2.4, 0)]
    from pianomtl.core.midi import PedalEvent

    performance = Performance(truth.performance.notes, [PedalEvent(t, v) for t, v in pedal])
    return write_musicxml(performance, tmp_path_factory.mktemp("score") / "chorale.musicxml")


def test_musicxml_validates_against_the_schema(chorale_musicxml: Path) -> None:
    _validate(chorale_musicxml)
    parsed = music21.converter.parse(chorale_musicxml)
    assert len(parsed.parts) == 2  # two staves of one piano
    assert parsed.recurse().getElementsByClass("Dynamic")
    assert parsed.recurse().getElementsByClass(music21.key.KeySignature)[0].sharps == 3
    text = chorale_musicxml.read_text()
    assert text.count("<accidental") < 0.2 * text.count("<note")  # the key signature's sharps are not repeated
    assert 'number="0"' in text  # the chorale's upbeat is a pickup bar, not a bar of rests


def test_verovio_svg_pages(chorale_musicxml: Path) -> None:
    pytest.importorskip("verovio")
    from pianomtl.score import svg_pages

    pages = svg_pages(music21.converter.parse(chorale_musicxml))
    assert len(pages) >= 1
    assert "<svg" in pages[0][:300]


@pytest.mark.slow
def test_musescore_engraves_it_without_warnings(chorale_musicxml: Path, tmp_path: Path) -> None:
    from pianomtl.score.sheet import engrave_with_musescore, musescore

    if musescore() is None:
        pytest.skip("MuseScore 3 not installed (scripts/setup.sh --dev installs musescore3)")
    pdf = tmp_path / "chorale.pdf"
    printed = engrave_with_musescore(chorale_musicxml, pdf)
    problems = [line for line in printed.splitlines() if "error" in line.lower() or "warning" in line.lower()]
    assert not problems, problems
    pages = pdf.read_bytes().count(b"/Type /Page") - pdf.read_bytes().count(b"/Type /Pages")
    assert pages == 1
    # the same through the public writer (atomic, from a music21 score)
    from pianomtl.score import write_pdf

    again = write_pdf(music21.converter.parse(chorale_musicxml), tmp_path / "again.pdf")
    assert again.read_bytes().startswith(b"%PDF")


@pytest.mark.slow
def test_transcribe_cli_writes_musicxml_and_a_mapped_midi(rendered_clip, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pianomtl.cli",
            "transcribe",
            str(rendered_clip.wav),
            "-o",
            str(out),
            "--format",
            "mid,musicxml",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    stem = rendered_clip.wav.stem
    assert (out / f"{stem}.musicxml").exists() and (out / f"{stem}.mid").exists()
    _validate(out / f"{stem}.musicxml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(read_midi(out / f"{stem}.mid").notes) >= 6


def test_fraction_lengths_are_on_the_onset_grid() -> None:
    meter = MeterMap(tuple(float(b) for b in np.arange(0, 10, 0.5)), 4)
    notes = [Note(60, 0.0, 0.49, 80), Note(62, 0.5 + 1 / 6, 0.5 + 1 / 3, 80), Note(64, 1.0, 1.8, 80)]
    lengths = [q.length for q in quantise(notes, meter)]
    assert lengths[0] == 1 and lengths[1] == Fraction(1, 3) and lengths[2] == Fraction(3, 2)


def test_unmetered_score_says_so(tmp_path: Path) -> None:
    from pianomtl.score import UnmeteredWarning, write_musicxml

    rng = np.random.default_rng(5)
    onsets = np.cumsum(rng.exponential(0.4, 30))
    notes = [Note(int(rng.integers(50, 80)), float(t), float(t) + 0.3, 70) for t in onsets]
    with pytest.warns(UnmeteredWarning):
        path = write_musicxml(Performance(notes, []), tmp_path / "free.musicxml")
    assert "senza misura" in path.read_text()


def test_score_formats_are_registered_and_written(tmp_path: Path) -> None:
    """``import pianomtl.score`` adds musicxml/svg (and pdf) to the one format table; Transcription.write uses it."""
    import pianomtl.score  # noqa: F401
    from pianomtl.transcription.formats import FORMATS, lookup
    from pianomtl.transcription.result import Transcription

    assert {"musicxml", "svg", "pdf"} <= set(FORMATS) and lookup("xml").name == "musicxml"
    notes = clicks(90.0, 8.0, 4)
    result = Transcription(notes=notes, pedal=[], activations=None, duration=9.0, source="clicks.wav")
    written = result.write(tmp_path / "clicks.musicxml")
    parsed = music21.converter.parse(written)
    assert len(parsed.flatten().notes) == len(notes)
    assert parsed.recurse().getElementsByClass(music21.meter.TimeSignature)[0].numerator == 4
    # the MIDI file follows the beats once the transcription carries a meter map, and not before
    plain = result.write(tmp_path / "plain.mid")
    from pianomtl.score import meter_map

    result.meter = meter_map(result)
    mapped = result.write(tmp_path / "mapped.mid")
    signatures = [m for m in mido.MidiFile(str(mapped)).tracks[0] if m.type == "time_signature"]
    assert signatures and signatures[-1].numerator == 4
    assert not [m for m in mido.MidiFile(str(plain)).tracks[0] if m.type == "time_signature"]
    if pytest.importorskip("verovio"):
        svg = result.write(tmp_path / "clicks.svg")
        assert svg.read_text()[:300].count("<svg") >= 1


@pytest.mark.slow
def test_transcribe_cli_tempo_map_on_by_default_and_off_on_request(soundfont, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A rendered chorale: the MIDI file has its 4/4, tempo and a key signature; ``--no-tempo-map``: 120 bpm."""
    import soundfile as sf

    from pianomtl.constants import SAMPLE_RATE
    from pianomtl.score.perform import perform
    from pianomtl.synthesis.fluidsynth import render

    truth = perform(music21.corpus.parse("bach/bwv347"), seed=0, max_bars=6, bpm=90)
    samples = render(truth.performance, soundfont)
    wav = tmp_path / "chorale.wav"
    sf.write(wav, (samples * (0.5 / np.abs(samples).max())).astype(np.float32), SAMPLE_RATE)
    files = {}
    for flag in ([], ["--no-tempo-map"]):
        out = tmp_path / ("plain" if flag else "mapped")
        command = [sys.executable, "-m", "pianomtl.cli", "transcribe", str(wav), "-o", str(out), *flag]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        files[bool(flag)] = mido.MidiFile(str(out / "chorale.mid"))
    mapped = [m for m in files[False].tracks[0] if m.is_meta]
    assert [m.numerator for m in mapped if m.type == "time_signature"][-1] == truth.beats_per_bar
    from pianomtl.core.midi import MAJOR_KEYS, MINOR_KEYS

    (key,) = [m.key for m in mapped if m.type == "key_signature"]
    fifths = (MAJOR_KEYS.index(key) if key in MAJOR_KEYS else MINOR_KEYS.index(key)) - 7
    assert abs(fifths - truth.key_fifths) <= 1  # BWV 347 is in A (3 sharps); from audio E (its dominant) is found
    tempos = [60e6 / m.tempo for m in mapped if m.type == "set_tempo"]
    assert 80 < np.median(tempos) < 100  # played at 90 bpm with rubato
    plain = [m for m in files[True].tracks[0] if m.is_meta]
    assert [m.tempo for m in plain if m.type == "set_tempo"] == [500_000]
    assert not [m for m in plain if m.type == "time_signature"]
