"""Issue #29: tests written against bugs that were planted in the code and passed the suite.

Each test here was checked the hard way: the bug was written into the code, the test
ran red, the bug was removed, the test ran green (the commit that added it says which).

* **Threshold edges** — an activation exactly *on* each threshold: the note decoder's
  onset peak "at or above ``onset_threshold``", the frame end "``int`` below
  ``frame_threshold``" (and ``pedal_frame_threshold`` under the pedal), the offset peak
  "at or above ``offset_threshold``", the pedal's strict "above ``pedal_high``" / "below
  ``pedal_low``", merging "closer than ``onset_merge_frames``" — for the offline decoder
  and the causal one (the live stream's) alike. All the thresholds used are exact in
  float32, so "exactly on" is exactly on.
* **Velocity of two notes in one frame** — loudest wins, in either order (targets), and
  the decoder's maximum over the onset frame ±1 in either order.
* **The exclusive create of the atomic writer** — a file that appears in the instant
  between a writer's check and its move must survive. The interleaving is made
  deterministic by a hook on the final system calls (``os.link``/``os.replace``/
  ``os.rename``): the other writer's file appears just before the call, so a
  check-then-rename writer overwrites it (red), a real exclusive create refuses (green).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from pianomtl.constants import FPS, MIN_KEY, N_KEYS
from pianomtl.core.files import (
    LockedError,
    atomic_write,
    exclusive_lock,
    temporary_name,
    write_json_atomic,
    write_text_atomic,
)
from pianomtl.core.midi import Note, Performance
from pianomtl.core.targets import LABEL_SLICES, compute_labels, to_float
from pianomtl.transcription.causal import NEVER, CausalDecoder
from pianomtl.transcription.decoders import DecoderParams, decode, note_velocity

KEY = 60
COLUMN = KEY - MIN_KEY

# ---------------------------------------------------------------- helpers


def silent(n_frames: int = 24) -> dict[str, np.ndarray]:
    """Activations of silence (float32, as the network gives them)."""
    acts = {task: np.zeros((n_frames, N_KEYS), np.float32) for task in ("on", "int", "off", "vel")}
    acts["sus"] = np.zeros((n_frames, 1), np.float32)
    acts["vel"][:] = 0.5
    return acts


def offline(acts: dict[str, np.ndarray], params: DecoderParams) -> tuple[list[tuple[int, int, int, int]], list]:
    """Notes as ``(key, onset frame, end frame, velocity)`` and pedal ``(time, value)`` of the offline decoder."""
    performance = decode(acts, params)
    notes = [(n.key, round(n.onset * FPS), round(n.offset * FPS), n.velocity) for n in performance.notes]
    return notes, [(round(p.time, 6), p.value) for p in performance.pedal]


def causal(acts: dict[str, np.ndarray], params: DecoderParams, block: int = 1) -> tuple[list, list]:
    """The same from :class:`CausalDecoder`, fed ``block`` frames at a time."""
    decoder = CausalDecoder(params)
    decisions = []
    for start in range(0, len(acts["on"]), block):
        decisions += decoder.step({task: values[start : start + block] for task, values in acts.items()})
    decisions += decoder.finish()
    starts: dict[int, tuple[int, int]] = {}
    notes, pedal = [], []
    for decision in decisions:
        if decision.kind == "note_on":
            assert decision.key not in starts, f"key {decision.key} started twice"
            starts[decision.key] = (decision.frame, decision.velocity)
        elif decision.kind == "note_off":
            onset, velocity = starts.pop(decision.key)
            assert (decision.onset, decision.velocity) == (onset, velocity)  # a note_off names its note
            notes.append((MIN_KEY + decision.key, onset, decision.frame, velocity))
        elif decision.kind in ("pedal_on", "pedal_off"):
            pedal.append((round(decision.time, 6), 127 if decision.kind == "pedal_on" else 0))
    assert not starts, "a note was never ended"
    return sorted(notes, key=lambda n: (n[1], n[0])), pedal


def both(acts: dict[str, np.ndarray], params: DecoderParams) -> tuple[list, list]:
    """Offline and causal (frame by frame and in blocks of 5) must agree; returns the offline result."""
    expected = offline(acts, params)
    assert causal(acts, params) == expected
    assert causal(acts, params, block=5) == expected
    return expected


# ---------------------------------------------------------------- threshold edges: notes

# 0.5 and 0.25 are exact in float32 and float64: an activation of 0.5 is *on* the threshold
PARAMS = DecoderParams(onset_threshold=0.5, frame_threshold=0.5, offset_threshold=0.5, min_frames=2)
BELOW = np.float32(np.nextafter(np.float32(0.5), np.float32(0.0)))  # the float32 just under 0.5


@pytest.mark.parametrize("peak", [1.0, 0.5])
def test_an_onset_peak_on_the_threshold_starts_a_note(peak: float) -> None:
    acts = silent()
    acts["on"][5, COLUMN] = peak
    acts["int"][5:10, COLUMN] = 1.0
    notes, _ = both(acts, PARAMS)
    assert notes == [(KEY, 5, 10, 64)]


def test_an_onset_peak_just_below_the_threshold_does_not() -> None:
    acts = silent()
    acts["on"][5, COLUMN] = BELOW
    acts["int"][5:10, COLUMN] = 1.0
    assert both(acts, PARAMS) == ([], [])


def test_a_flat_onset_plateau_on_the_threshold_counts_once_at_its_middle() -> None:
    acts = silent()
    acts["on"][4:7, COLUMN] = 0.5  # the 3-frame widened label, exactly on the threshold
    acts["int"][4:12, COLUMN] = 1.0
    notes, _ = both(acts, PARAMS)
    assert notes == [(KEY, 5, 12, 64)]


def test_int_on_the_frame_threshold_holds_the_note_and_below_it_ends_it() -> None:
    acts = silent()
    acts["on"][5, COLUMN] = 1.0
    acts["int"][5:8, COLUMN] = 1.0
    acts["int"][8:11, COLUMN] = 0.5  # on the threshold: still sounding
    acts["int"][11, COLUMN] = BELOW  # the first frame below it: the end
    acts["int"][12:15, COLUMN] = 1.0
    notes, _ = both(acts, PARAMS)
    assert notes == [(KEY, 5, 11, 64)]


def test_an_offset_peak_on_the_threshold_ends_the_note() -> None:
    acts = silent()
    acts["on"][5, COLUMN] = 1.0
    acts["int"][5:16, COLUMN] = 1.0
    acts["off"][9, COLUMN] = 0.5
    notes, _ = both(acts, PARAMS)
    assert notes == [(KEY, 5, 9, 64)]
    acts["off"][9, COLUMN] = BELOW
    notes, _ = both(acts, PARAMS)
    assert notes == [(KEY, 5, 16, 64)]  # no end before int drops


def test_an_early_drop_still_lasts_min_frames() -> None:
    acts = silent()
    acts["on"][5, COLUMN] = 1.0
    acts["int"][5, COLUMN] = 1.0  # int falls at frame 6, offset peak at 6: both inside min_frames
    acts["off"][6, COLUMN] = 1.0
    acts["int"][8:12, COLUMN] = 1.0
    for min_frames, end in ((1, 6), (2, 7), (3, 12)):
        notes, _ = both(acts, DecoderParams(min_frames=min_frames))
        assert notes == [(KEY, 5, end, 64)], min_frames


def test_int_on_the_pedal_frame_threshold_holds_the_note_under_the_pedal() -> None:
    params = DecoderParams(frame_threshold=0.5, pedal_frame_threshold=0.25, pedal_high=0.5, pedal_low=0.25)
    below = np.float32(np.nextafter(np.float32(0.25), np.float32(0.0)))
    acts = silent()
    acts["sus"][:] = 1.0  # pedal down from the first frame to the end
    acts["on"][5, COLUMN] = 1.0
    acts["int"][5:8, COLUMN] = 1.0
    acts["int"][8:11, COLUMN] = 0.25  # below the key-down threshold, on the pedal one: held
    acts["int"][11, COLUMN] = below
    notes, pedal = both(acts, params)
    assert notes == [(KEY, 5, 11, 64)]
    assert pedal == [(0.0, 127)]
    acts["sus"][:] = 0.0  # without the pedal the key-down threshold applies: ends at frame 8
    notes, pedal = both(acts, params)
    assert notes == [(KEY, 5, 8, 64)] and pedal == []


def test_merging_closer_than_onset_merge_frames() -> None:
    """Peaks of one key closer than ``onset_merge_frames`` to the kept one are one onset (the higher
    wins, the earlier on a tie); exactly ``onset_merge_frames`` apart they are two."""
    acts = silent(30)
    acts["int"][5:25, COLUMN] = 1.0
    acts["on"][5, COLUMN] = 0.75
    acts["on"][8, COLUMN] = 1.0  # 3 frames after
    params = DecoderParams(onset_merge_frames=3)
    notes, _ = both(acts, params)
    assert [n[1] for n in notes] == [5, 8]  # 3 apart: not closer than 3
    notes, _ = both(acts, DecoderParams(onset_merge_frames=4))
    assert [n[1] for n in notes] == [8]  # merged, the higher survives
    acts["on"][8, COLUMN] = 0.75
    notes, _ = both(acts, DecoderParams(onset_merge_frames=4))
    assert [n[1] for n in notes] == [5]  # a tie: the earlier survives
    acts["on"][5, COLUMN] = 1.0
    notes, _ = both(acts, DecoderParams(onset_merge_frames=4))
    assert [n[1] for n in notes] == [5]


# ---------------------------------------------------------------- threshold edges: pedal

PEDAL = DecoderParams(pedal_high=0.75, pedal_low=0.25)


def test_sus_on_pedal_high_does_not_press_and_on_pedal_low_does_not_lift() -> None:
    acts = silent(12)
    acts["sus"][2:4, 0] = 0.75  # on pedal_high: not above it, the pedal stays up
    acts["sus"][4:6, 0] = 1.0  # above: down at frame 4 (between frames 3 and 4)
    acts["sus"][6:8, 0] = 0.25  # on pedal_low: not below it, still down
    acts["sus"][8:, 0] = 0.0  # below: up at frame 8
    _, pedal = both(acts, PEDAL)
    assert pedal == [(round(3.5 / FPS, 6), 127), (round(7.5 / FPS, 6), 0)]


# ---------------------------------------------------------------- velocity: loudest wins


@pytest.mark.parametrize("order", ["rising", "falling"])
def test_two_notes_of_a_key_in_one_frame_label_the_louder(order: str) -> None:
    """Both onsets round to frame 25; the louder velocity labels it, whichever comes first."""
    quiet, loud = Note(KEY, 0.500, 0.503, 40), Note(KEY, 0.505, 0.8, 100)
    if order == "falling":
        quiet, loud = Note(KEY, 0.500, 0.503, 100), Note(KEY, 0.505, 0.8, 40)
    labels = compute_labels(Performance([quiet, loud]), 100)
    assert labels[24:27, LABEL_SLICES["vel"].start + COLUMN].tolist() == [100, 100, 100]
    np.testing.assert_allclose(to_float(labels)["vel"][24:27, COLUMN], 100 / 127)


@pytest.mark.parametrize("values", [(0.2, 0.5, 0.9), (0.9, 0.5, 0.2), (0.2, 0.9, 0.5)])
def test_decoded_velocity_is_the_loudest_of_the_onset_frame_and_its_neighbours(values: tuple) -> None:
    acts = silent()
    acts["on"][5, COLUMN] = 1.0
    acts["int"][5:10, COLUMN] = 1.0
    acts["vel"][:, COLUMN] = 0.0
    acts["vel"][4:7, COLUMN] = values
    acts["vel"][3, COLUMN] = acts["vel"][7, COLUMN] = 1.0  # outside the window: ignored
    notes, _ = both(acts, PARAMS)
    assert notes == [(KEY, 5, 10, round(0.9 * 127))]
    assert note_velocity(np.array(values)) == 114
    assert note_velocity(np.array([0.0])) == 1 and note_velocity(np.array([1.2])) == 127  # clipped to 1–127


# ---------------------------------------------------------------- the atomic writer's exclusive create


def _other_writer_at_the_final_call(monkeypatch: pytest.MonkeyPatch, target: Path) -> list[str]:
    """Hook the calls that can put a file in place so that, just before the first one that
    names ``target``, another writer's file appears there. Returns the calls made."""
    calls: list[str] = []
    for name in ("link", "replace", "rename"):
        real = getattr(os, name)

        def hooked(source, destination, *args, _real=real, _name=name, **kwargs):  # type: ignore[no-untyped-def]
            if Path(destination) == target:
                calls.append(_name)
                if not target.exists():
                    target.write_bytes(b"the other process's")
            return _real(source, destination, *args, **kwargs)

        monkeypatch.setattr(os, name, hooked)
    return calls


def test_exclusive_create_refuses_a_file_that_appears_between_check_and_move(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "take.mid"
    calls = _other_writer_at_the_final_call(monkeypatch, target)
    with pytest.raises(FileExistsError, match=r"take\.mid exists"):
        atomic_write(target, lambda temporary: temporary.write_bytes(b"mine"), overwrite=False)
    assert calls, "the writer never moved its file into place"
    assert target.read_bytes() == b"the other process's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take.mid"]  # no temporary left


def test_overwrite_replaces_and_exclusive_create_writes_a_new_file(tmp_path: Path) -> None:
    target = tmp_path / "take.json"
    assert write_json_atomic(target, {"a": 1}, overwrite=False) == target
    assert target.read_text(encoding="utf-8") == '{\n  "a": 1\n}\n'
    with pytest.raises(FileExistsError):
        write_text_atomic(target, "other", overwrite=False)
    assert target.read_text(encoding="utf-8") == '{\n  "a": 1\n}\n'
    write_text_atomic(target, "é\n")  # overwrite=True is the default
    assert target.read_bytes() == "é\n".encode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take.json"]


def test_writers_overwrite_by_default_and_pass_overwrite_false_on(tmp_path: Path) -> None:
    target = tmp_path / "take.json"
    target.write_text("old", encoding="utf-8")
    atomic_write(target, lambda temporary: temporary.write_text("1", encoding="utf-8"))
    assert target.read_text(encoding="utf-8") == "1"
    write_text_atomic(target, "2")
    assert target.read_text(encoding="utf-8") == "2"
    write_json_atomic(target, [3])
    assert json.loads(target.read_text(encoding="utf-8")) == [3]
    with pytest.raises(FileExistsError):
        write_json_atomic(target, [4], overwrite=False)
    assert json.loads(target.read_text(encoding="utf-8")) == [3]


def test_text_is_written_as_utf8_whatever_the_locale(tmp_path: Path) -> None:
    """Under an ASCII locale (LC_CTYPE=C without UTF-8 mode) Python's default text encoding is ASCII:
    the writers must name UTF-8 themselves."""
    import locale

    previous = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        write_text_atomic(tmp_path / "a.txt", "Fauré\n")
        write_json_atomic(tmp_path / "a.json", {"title": "Fauré"})
    finally:
        locale.setlocale(locale.LC_CTYPE, previous)
    assert (tmp_path / "a.txt").read_bytes() == "Fauré\n".encode()
    assert json.loads((tmp_path / "a.json").read_bytes().decode("utf-8")) == {"title": "Fauré"}


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "take.mid"
    target.write_bytes(b"old")

    def failing(temporary: Path) -> None:
        temporary.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, failing)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take.mid"]


def test_without_hard_links_the_exclusive_create_falls_back_to_a_checked_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(source, destination, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise PermissionError(1, "Operation not permitted")  # what a FAT or some network file systems say

    monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "take.mid"
    atomic_write(target, lambda temporary: temporary.write_bytes(b"mine"), overwrite=False)
    assert target.read_bytes() == b"mine"
    with pytest.raises(FileExistsError, match=r"take\.mid exists"):
        atomic_write(target, lambda temporary: temporary.write_bytes(b"second"), overwrite=False)
    assert target.read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take.mid"]


def test_temporary_names_are_hidden_unique_and_keep_the_suffix(tmp_path: Path) -> None:
    target = tmp_path / "take.mid"
    first, second = temporary_name(target), temporary_name(target)
    assert first != second and first.parent == second.parent == tmp_path
    assert first.name.startswith(".take.mid.") and first.suffix == ".mid" and ".part" in first.name
    assert str(os.getpid()) in first.name

    seen: list[Path] = []
    atomic_write(target, lambda temporary: (seen.append(temporary), temporary.write_bytes(b"x")))
    assert seen[0].parent == tmp_path and seen[0].suffix == ".mid" and not seen[0].exists()


def test_exclusive_lock_keeps_a_second_holder_out_and_names_the_first(tmp_path: Path) -> None:
    lock = tmp_path / "run.lock"
    with exclusive_lock(lock):
        assert lock.read_text() == str(os.getpid())
        with pytest.raises(LockedError, match=rf"in use by another process \(pid {os.getpid()}\)"):
            with exclusive_lock(lock):  # flock: a second open file description conflicts, even in one process
                pass
    with exclusive_lock(lock):  # released on leaving the block
        assert lock.read_text() == str(os.getpid())


# ---------------------------------------------------------------- the causal decoder decides as early as it can


def test_causal_decisions_come_in_the_frame_that_makes_them_certain() -> None:
    """Live latency is the causal decoder's promise: a single-frame onset peak is decided one frame
    later, a note end in the frame where ``int`` drops, a pedal change at once — a decoder that
    waited (for the end of the recording, say) would still decode the same notes."""
    acts = silent(16)
    acts["on"][0, 0], acts["int"][0:6, 0] = 1.0, 1.0  # A0: frames 0-5 (a note at the very first frame)
    acts["on"][1, 1], acts["int"][1:4, 1] = 1.0, 1.0  # A#0: frames 1-3
    acts["on"][8, 0], acts["int"][8:, 0] = 1.0, 1.0  # A0 again, held to the end
    acts["sus"][3:9, 0] = 1.0
    decoder = CausalDecoder(PARAMS)
    when = []
    for t in range(16):
        when += [
            (d.kind, d.key, d.frame, d.velocity, d.onset, t)
            for d in decoder.step({task: values[t : t + 1] for task, values in acts.items()})
        ]
    when += [(d.kind, d.key, d.frame, d.velocity, d.onset, "finish") for d in decoder.finish()]
    assert when == [  # (kind, key column, frame, velocity, note_off's onset, decided at frame)
        ("onset", 0, 0, 64, -1, 1),
        ("note_on", 0, 0, 64, -1, 1),
        ("onset", 1, 1, 64, -1, 2),
        ("note_on", 1, 1, 64, -1, 2),
        ("pedal_on", -1, 3, 0, -1, 3),
        ("note_off", 1, 4, 64, 1, 4),
        ("note_off", 0, 6, 64, 0, 6),
        ("pedal_off", -1, 9, 0, -1, 9),
        ("onset", 0, 8, 64, -1, 9),
        ("note_on", 0, 8, 64, -1, 9),
        ("note_off", 0, 16, 64, 8, "finish"),
    ]
    assert decoder.finish() == []
    np.testing.assert_array_equal(decoder.onset_horizon(), np.full(N_KEYS, NEVER))  # every onset decided
    with pytest.raises(RuntimeError, match="finished"):
        decoder.step({task: values[:1] for task, values in acts.items()})
