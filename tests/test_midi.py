"""MIDI reading and writing: notes, pedal, tempo maps, edge cases, errors."""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pianomtl.core.midi import (
    MidiError,
    Note,
    PedalEvent,
    Performance,
    next_strike_index,
    next_strike_time,
    read_midi,
    write_midi,
)

TPB = 480


def save(path: Path, tracks: list[list[mido.Message | mido.MetaMessage]], midi_type: int = 1) -> Path:
    """Write messages (with delta times in ticks) as a MIDI file of the given type."""
    midi_file = mido.MidiFile(type=midi_type, ticks_per_beat=TPB)
    for messages in tracks:
        track = mido.MidiTrack(messages)
        track.append(mido.MetaMessage("end_of_track", time=0))
        midi_file.tracks.append(track)
    midi_file.save(str(path))
    return path


def on(key: int, time: int, velocity: int = 64, channel: int = 0) -> mido.Message:
    return mido.Message("note_on", note=key, velocity=velocity, time=time, channel=channel)


def off(key: int, time: int, channel: int = 0) -> mido.Message:
    return mido.Message("note_off", note=key, velocity=0, time=time, channel=channel)


def tempo(microseconds_per_beat: int, time: int) -> mido.MetaMessage:
    return mido.MetaMessage("set_tempo", tempo=microseconds_per_beat, time=time)


def pedal(value: int, time: int) -> mido.Message:
    return mido.Message("control_change", control=64, value=value, time=time)


def assert_notes_close(actual: list[Note], expected: list[Note], tolerance: float = 0.002) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(sorted(actual), sorted(expected), strict=True):
        assert got.key == want.key
        assert got.velocity == want.velocity
        assert got.onset == pytest.approx(want.onset, abs=tolerance)
        assert got.offset == pytest.approx(want.offset, abs=tolerance)


# ---------------------------------------------------------------- round trip


def test_round_trip_preserves_notes_and_pedal(tmp_path: Path) -> None:
    notes = [
        Note(21, 0.0, 0.5, 1),
        Note(60, 0.1234, 0.9876, 64),
        Note(64, 0.1234, 0.3001, 127),
        Note(60, 1.0, 1.5, 90),  # same key again after release
        Note(60, 1.5, 2.0, 30),  # struck again exactly at the previous release
        Note(108, 2.2, 2.2005, 100),  # very short
    ]
    pedal_events = [PedalEvent(0.05, 127), PedalEvent(0.8, 40), PedalEvent(1.2, 0), PedalEvent(2.5, 0)]
    path = tmp_path / "round.mid"
    write_midi(path, Performance(notes, pedal_events))
    assert not path.with_name(path.name + ".part").exists()
    result = read_midi(path)
    assert_notes_close(result.notes, notes)
    assert [p.value for p in result.pedal] == [p.value for p in pedal_events]
    for got, want in zip(result.pedal, pedal_events, strict=True):
        assert got.time == pytest.approx(want.time, abs=0.002)
    assert result.notes == sorted(result.notes, key=lambda n: (n.onset, n.key))


def test_overlapping_same_key_notes_are_written_cut_at_the_restrike(tmp_path: Path) -> None:
    """MIDI cannot hold two notes of one key at once: the first ends where the second starts."""
    notes = [Note(60, 0.0, 1.0, 50), Note(60, 0.5, 1.5, 90)]
    path = tmp_path / "overlap.mid"
    write_midi(path, Performance(notes, []))
    assert_notes_close(read_midi(path).notes, [Note(60, 0.0, 0.5, 50), Note(60, 0.5, 1.5, 90)])


def test_the_restrike_rule_finds_each_keys_next_strike() -> None:
    """One rule for the package: a note's key is next struck at the next onset of that key, in
    onset order (simultaneous strikes in list order); any unit, one key when ``keys`` is None."""
    keys = [60, 62, 60, 60, 62, 64]
    onsets = [0.5, 0.0, 0.0, 1.0, 2.0, 0.1]
    assert next_strike_index(onsets, keys).tolist() == [3, 4, 0, -1, -1, -1]
    assert next_strike_time(onsets, keys).tolist() == [1.0, 2.0, 0.5, np.inf, np.inf, np.inf]
    assert next_strike_time([3, 7, 7], never=20).tolist() == [7, 7, 20]  # frames of one key; a tie ends the first
    assert next_strike_index([]).tolist() == []


notes_strategy = st.lists(
    st.builds(
        lambda key, onset, duration, velocity: Note(key, onset / 100, onset / 100 + duration / 1000, velocity),
        st.integers(21, 108),
        st.integers(0, 500),  # onsets on a 10 ms grid, so no two distinct onsets share a tick
        st.integers(0, 3000),
        st.integers(1, 127),
    ),
    max_size=30,
    unique_by=lambda n: (n.key, n.onset),
)


@settings(max_examples=50, deadline=None)
@given(notes=notes_strategy)
def test_round_trip_property(tmp_path_factory: pytest.TempPathFactory, notes: list[Note]) -> None:
    path = tmp_path_factory.mktemp("midi") / "random.mid"
    write_midi(path, Performance(notes, []))
    # what a MIDI file can say: a note ends where the same key is struck again
    expected = []
    for note in notes:
        later = [n.onset for n in notes if n.key == note.key and n.onset > note.onset]
        expected.append(note._replace(offset=min([note.offset, *later])))
    assert_notes_close(read_midi(path).notes, expected)


# ---------------------------------------------------------------- file types and tempo maps


def test_type0_with_tempo_change(tmp_path: Path) -> None:
    path = save(
        tmp_path / "type0.mid",
        [
            [
                tempo(500_000, 0),  # 120 bpm: 480 ticks = 0.5 s
                on(60, 0, 80),
                off(60, 480),  # 0.5 s
                tempo(250_000, 480),  # from 1.0 s on: 480 ticks = 0.25 s
                on(62, 0, 90),  # 1.0 s
                pedal(100, 240),  # 1.125 s
                off(62, 240),  # 1.25 s
                on(64, 480, 70),  # 1.5 s
                pedal(0, 240),  # 1.625 s
                off(64, 240),  # 1.75 s
            ]
        ],
        midi_type=0,
    )
    result = read_midi(path)
    assert_notes_close(result.notes, [Note(60, 0.0, 0.5, 80), Note(62, 1.0, 1.25, 90), Note(64, 1.5, 1.75, 70)], 1e-9)
    assert [(round(p.time, 9), p.value) for p in result.pedal] == [(1.125, 100), (1.625, 0)]


def test_type1_with_tempo_track_and_several_tracks(tmp_path: Path) -> None:
    path = save(
        tmp_path / "type1.mid",
        [
            [tempo(500_000, 0), tempo(1_000_000, 480)],  # 0.5 s per beat, then 1 s per beat from 0.5 s
            [on(60, 240, 100), off(60, 480), on(67, 240, 50), on(67, 240, 0)],  # velocity 0 = note off
            [pedal(127, 720), on(48, 0, 30, channel=1), off(48, 960, channel=1)],
        ],
    )
    result = read_midi(path)
    # ticks 0–480 at 0.5 s per beat, then 1 s per beat: tick 720 → 1.0 s, 960 → 1.5 s, 1680 → 3.0 s
    assert_notes_close(
        result.notes,
        [Note(60, 0.25, 1.0, 100), Note(67, 1.5, 2.0, 50), Note(48, 1.0, 3.0, 30)],
        1e-9,
    )
    assert [(p.time, p.value) for p in result.pedal] == [(pytest.approx(1.0), 127)]


def test_other_controllers_are_ignored(tmp_path: Path) -> None:
    path = save(
        tmp_path / "cc.mid",
        [[mido.Message("control_change", control=67, value=127, time=0), pedal(80, 10), on(60, 0), off(60, 100)]],
    )
    result = read_midi(path)
    assert [p.value for p in result.pedal] == [80]
    assert len(result.notes) == 1


# ---------------------------------------------------------------- note edge cases


def test_note_on_velocity_zero_is_note_off(tmp_path: Path) -> None:
    path = save(tmp_path / "vel0.mid", [[tempo(500_000, 0), on(60, 0, 90), on(60, 960, 0)]])
    assert read_midi(path).notes == [Note(60, 0.0, 1.0, 90)]


def test_restruck_key_while_held(tmp_path: Path) -> None:
    path = save(tmp_path / "restrike.mid", [[on(60, 0, 90), on(60, 480, 40), off(60, 480)]])
    assert_notes_close(read_midi(path).notes, [Note(60, 0.0, 0.5, 90), Note(60, 0.5, 1.0, 40)], 1e-9)


def test_unterminated_note_ends_at_the_last_event(tmp_path: Path) -> None:
    path = save(tmp_path / "open.mid", [[on(50, 0, 70), on(60, 480, 80), off(60, 480)]])
    assert_notes_close(read_midi(path).notes, [Note(50, 0.0, 1.0, 70), Note(60, 0.5, 1.0, 80)], 1e-9)


def test_note_off_without_note_on_is_ignored(tmp_path: Path) -> None:
    path = save(tmp_path / "stray.mid", [[off(60, 0), on(61, 100), off(61, 380)]])
    assert_notes_close(read_midi(path).notes, [Note(61, 100 / 960, 0.5, 64)], 1e-9)


def test_empty_midi_file(tmp_path: Path) -> None:
    path = save(tmp_path / "empty.mid", [[]])
    result = read_midi(path)
    assert result.notes == [] and result.pedal == []
    assert result.end_time == 0.0
    assert result.note_array().shape == (0, 4)


def test_pedal_only(tmp_path: Path) -> None:
    path = save(tmp_path / "pedal.mid", [[pedal(127, 480), pedal(0, 480)]])
    result = read_midi(path)
    assert result.notes == []
    assert [(p.time, p.value) for p in result.pedal] == [(0.5, 127), (1.0, 0)]
    assert result.end_time == 1.0


# ---------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.mid"
    with pytest.raises(MidiError, match="not found") as error:
        read_midi(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize(
    "content",
    [b"this is a text file, not MIDI\n" * 5, b"", b"MThd\x00\x00\x00\x06\x00"],
    ids=["text", "empty-bytes", "cut-header"],
)
def test_non_midi_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.mid"
    path.write_bytes(content)
    with pytest.raises(MidiError) as error:
        read_midi(path)
    assert str(path) in str(error.value)
    assert "\n" not in str(error.value)


def test_truncated_midi_file(tmp_path: Path) -> None:
    notes = [Note(60 + i % 12, i * 0.1, i * 0.1 + 0.05, 64) for i in range(50)]
    whole = tmp_path / "whole.mid"
    write_midi(whole, Performance(notes, []))
    path = tmp_path / "cut.mid"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(MidiError) as error:
        read_midi(path)
    assert str(path) in str(error.value)


def test_type2_is_refused(tmp_path: Path) -> None:
    path = save(tmp_path / "type2.mid", [[on(60, 0), off(60, 480)], [on(62, 0), off(62, 480)]], midi_type=2)
    with pytest.raises(MidiError, match="type 2"):
        read_midi(path)


# ---------------------------------------------------------------- what the writer puts in the file (issue #29:
# mutants of write_midi that every test above let pass)


def _messages(path: Path) -> list[mido.Message]:
    return [m for m in mido.MidiFile(str(path)).tracks[0] if not m.is_meta]


def test_writer_clips_velocities_and_pedal_values_into_midi_range(tmp_path: Path) -> None:
    """A velocity 0 would be a note-off (the note lost) and values past 127 cannot be written: both clipped."""
    performance = Performance(
        [Note(60, 0.1, 0.5, 0), Note(62, 0.2, 0.5, 300), Note(64, 0.3, 0.5, 63.6)],  # type: ignore[arg-type]
        [PedalEvent(0.1, -5), PedalEvent(0.2, 300), PedalEvent(0.3, 64.4)],  # type: ignore[arg-type]
    )
    write_midi(tmp_path / "clip.mid", performance)
    back = read_midi(tmp_path / "clip.mid")
    assert [(n.key, n.velocity) for n in back.notes] == [(60, 1), (62, 127), (64, 64)]
    assert [p.value for p in back.pedal] == [0, 127, 64]


def test_writer_program_release_velocity_and_the_shortest_note(tmp_path: Path) -> None:
    performance = Performance([Note(60, 0.5, 0.5, 80)])  # zero length: written one tick long
    write_midi(tmp_path / "a.mid", performance)
    messages = _messages(tmp_path / "a.mid")
    assert [m.program for m in messages if m.type == "program_change"] == [0]  # acoustic grand piano
    offs = [m for m in messages if m.type == "note_off"]
    assert len(offs) == 1 and offs[0].velocity == 0 and offs[0].time == 1  # one tick after its note_on
    note = read_midi(tmp_path / "a.mid").notes[0]
    assert note.offset - note.onset == pytest.approx(1 / 960, abs=1e-9)  # 960 ticks per second
    write_midi(tmp_path / "a.mid", performance, program=5)  # overwrites by default
    assert [m.program for m in _messages(tmp_path / "a.mid") if m.type == "program_change"] == [5]


def test_seconds_to_ticks_is_exact_over_long_files() -> None:
    from pianomtl.core.midi import seconds_to_ticks

    assert seconds_to_ticks(1000.0) == 960_000  # 120 bpm, 480 ticks a beat
    assert seconds_to_ticks(0.0) == 0 and seconds_to_ticks(1 / 960) == 1


def test_note_array_columns() -> None:
    performance = Performance([Note(60, 0.25, 0.5, 80), Note(64, 1.0, 1.5, 100)])
    array = performance.note_array()
    assert array.dtype == np.float64
    np.testing.assert_array_equal(array, [[60, 0.25, 0.5, 80], [64, 1.0, 1.5, 100]])
    assert Performance().note_array().shape == (0, 4)


def test_key_names_and_note_properties() -> None:
    from pianomtl.core.midi import key_name

    assert [key_name(k) for k in (21, 59, 60, 73, 108)] == ["A0", "B3", "C4", "C#5", "C8"]
    note = Note(73, 0.25, 1.0, 64)
    assert note.name == "C#5" and note.duration == 0.75


def test_writer_track_layout_and_exclusive_create(tmp_path: Path) -> None:
    path = tmp_path / "a.mid"
    write_midi(path, Performance([Note(60, 0.5, 1.0, 80)]))
    track = mido.MidiFile(str(path)).tracks[0]
    assert [m.name for m in track if m.type == "track_name"] == ["Piano"]
    assert track[-1].type == "end_of_track" and track[-1].time == 0  # the file ends with its last event
    with pytest.raises(FileExistsError):
        write_midi(path, Performance([Note(62, 0.5, 1.0, 80)]), overwrite=False)
    assert [n.key for n in read_midi(path).notes] == [60]


def test_pedal_events_at_one_time_keep_their_order() -> None:
    """The later of two pedal events at the same moment is the one in force (a sort by time only, stable)."""
    from pianomtl.core.midi import pedal_down_intervals

    assert pedal_down_intervals([PedalEvent(1.0, 127), PedalEvent(1.0, 0)], end_time=5.0) == [(1.0, 1.0)]
    assert pedal_down_intervals([PedalEvent(1.0, 0), PedalEvent(1.0, 127)], end_time=5.0) == [(1.0, 5.0)]
