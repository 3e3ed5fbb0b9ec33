"""Issue #19, "safe to point at anything": every case of the issue, plus property-based fuzzing.

What is held here:

1. model and checkpoint files never run code (a crafted pickle whose ``__reduce__``
   writes a marker file, fed to every command that reads a model);
2. inputs that would share outputs are refused before any work;
3. outputs are created exclusively: a file that appears while a batch runs is kept;
4. the Python API validates sample rates and array layouts, and reads bytes and file objects;
5. ``train`` never overwrites another run and refuses what it cannot resume;
6. bad options and files are one-line errors with exit status 2;
7. no leftovers after a full disk or an interrupt, ``--skip-existing`` finishes partial
   outputs, file names that are not UTF-8 work, standard input works;

and, fuzzed with hypothesis, the audio reader and the Python API never hang (each
example runs in a forked child with a time limit) and never raise anything but a
one-line ``ValueError``/``TypeError`` — or return a well-formed result.

Real audio (the session's rendered clip), real files, real processes: no mocks.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import select
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pianomtl import cli
from pianomtl.constants import SAMPLE_RATE
from pianomtl.core.audio import AudioError, load, prepare_array
from pianomtl.core.files import atomic_write, temporary_name
from pianomtl.core.midi import Note, Performance, read_midi, write_midi
from pianomtl.transcription.model_file import ModelFileError, load_model, read_model_file
from pianomtl.transcription.pipeline import file_features, transcribe

TINY = {"name": "hard", "small": 4, "large": 4, "head": 2}

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


# -- helpers -------------------------------------------------------------------------------


def _cli(*args: object) -> int:
    return cli.main([str(a) for a in args])


def _one_error_line(err: str) -> str:
    """The one non-empty line a failing command printed on stderr (and that it is one line)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got {lines}"
    assert "Traceback" not in err
    return lines[0]


def _run(command: list[str], stdin: Any = None, input_bytes: bytes | None = None, timeout: float = 300):
    """Run ``python -m pianomtl.cli COMMAND`` in a fresh process (real stdin, stdout encoding)."""
    return subprocess.run(
        [sys.executable, "-m", "pianomtl.cli", *command],
        stdin=stdin,
        input=input_bytes,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def in_child(function: Callable[[], Any], timeout: float = 120.0) -> tuple[str, Any]:
    """Run ``function`` in a forked child: ``("ok", value)``, ``("raised", (type, message, one_line))``.

    A child that runs past ``timeout`` (a hang, in Python or in C) is killed and the
    test fails; so does one that dies without answering (a crash).
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer through the pipe, never return into pytest
        os.close(read_end)
        try:
            torch.set_num_threads(1)
            try:
                outcome: tuple[str, Any] = ("ok", function())
            except BaseException as error:
                message = str(error)
                outcome = ("raised", (type(error), message, traceback.format_exc()))
            data = pickle.dumps(outcome)
        except BaseException:
            data = pickle.dumps(("raised", (RuntimeError, "unpicklable outcome", traceback.format_exc())))
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(data)
        os._exit(0)
    os.close(write_end)
    chunks = []
    deadline = time.monotonic() + timeout
    with os.fdopen(read_end, "rb") as pipe:
        while True:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([pipe], [], [], max(remaining, 0))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail(f"hung: no answer within {timeout} s")
            chunk = os.read(pipe.fileno(), 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        pytest.fail(f"the child died without an answer (status {status})")
    return pickle.loads(b"".join(chunks))


def assert_defined(outcome: tuple[str, Any], check_result: Callable[[Any], None]) -> None:
    """A result that passes ``check_result``, or a one-line ValueError/TypeError (never anything else)."""
    kind, value = outcome
    if kind == "ok":
        check_result(value)
        return
    error_type, message, trace = value
    assert issubclass(error_type, ValueError | TypeError), f"unexpected {error_type.__name__}:\n{trace}"
    assert message.strip() and "\n" not in message, f"not one line: {message!r}"


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pianomtl.models.registry import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY))
    path = tmp_path_factory.mktemp("robust_model") / "tiny.pt"
    torch.save({"model_config": model.config.to_dict(), "model": model.state_dict(), "step": 0}, path)
    return path


class Payload:
    """Unpickling this calls ``exec``, which writes the marker file: what a malicious model file does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.fixture
def malicious(tmp_path: Path) -> dict[str, Path]:
    """Model files that would run code if unpickled: zip format (torch.save) and a bare pickle."""
    marker = tmp_path / "MARKER"
    zipped = tmp_path / "evil.pt"
    torch.save({"model_config": dict(TINY), "model": {"stem.0.conv.weight": Payload(marker)}, "step": 0}, zipped)
    bare = tmp_path / "evil_legacy.pt"
    bare.write_bytes(pickle.dumps({"model_config": dict(TINY), "model": Payload(marker)}, protocol=2))
    return {"marker": marker, "zip": zipped, "bare": bare}


def tiny_train_args(cache: Path, out: Path, *extra: object) -> list[object]:
    return [
        "train",
        "--cache",
        cache,
        "--out",
        out,
        "--small",
        4,
        "--large",
        4,
        "--head",
        2,
        "--batch-size",
        2,
        "--sequence-frames",
        12,
        "--steps",
        2,
        "--checkpoint-every",
        1,
        "--validate-every",
        1000,
        "--validation-frames",
        20,
        "--threads",
        1,
        *extra,
    ]


# -- 1. model files never run code -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["zip", "bare"])
def test_malicious_model_file_runs_nothing_anywhere(
    kind: str, malicious: dict[str, Path], rendered_clip, cache: Path, tmp_path: Path, capsys
) -> None:
    evil, marker = malicious[kind], malicious["marker"]
    # the library
    with pytest.raises(ModelFileError, match="refused") as error:
        read_model_file(evil)
    assert "\n" not in str(error.value) and str(evil) in str(error.value)
    with pytest.raises(ModelFileError):
        load_model(evil)
    with pytest.raises(ValueError, match="refused"):
        transcribe(rendered_clip.wav, model=evil)
    # every command that reads a model file
    commands = {
        "transcribe": ["transcribe", rendered_clip.wav, "-o", tmp_path / "out", "--model", evil],
        "evaluate": ["evaluate", evil, "--cache", cache],
        "export": ["export", evil, "--onnx", tmp_path / "evil.onnx"],
        "init-from": tiny_train_args(cache, tmp_path / "init", "--init-from", evil),
    }
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(evil.read_bytes())
    commands["resume"] = tiny_train_args(cache, run, "--resume")
    for name, command in commands.items():
        capsys.readouterr()
        assert _cli(*command) == 2, name
        line = _one_error_line(capsys.readouterr().err)
        assert "refused" in line, (name, line)
        assert not marker.exists(), f"{name}: the payload ran"
    assert not (tmp_path / "evil.onnx").exists() and not list((tmp_path / "out").rglob("*.mid"))
    # and the payload is live: unpickling the file in full would have run it
    if kind == "zip":
        torch.load(evil, weights_only=False)
    else:
        pickle.loads(evil.read_bytes())
    assert marker.read_text() == "pwned"


def test_training_checkpoints_are_plain_data(cache: Path, tmp_path: Path) -> None:
    assert _cli(*tiny_train_args(cache, tmp_path / "run", "--validate-every", 1)) == 0
    for name in ("checkpoint.pt", "best.pt"):
        state = torch.load(tmp_path / "run" / name, weights_only=True)  # raises if anything is not plain
        assert state["step"] >= 1 and isinstance(state["rng"]["numpy"][1], torch.Tensor)


def test_bundled_model_is_plain_data() -> None:
    from pianomtl.transcription.model_file import DEFAULT_BUNDLE

    if not DEFAULT_BUNDLE.is_file():
        pytest.skip("the bundled model is not built")
    assert 1.5e6 < DEFAULT_BUNDLE.stat().st_size < 2.5e6  # v6: 530 k float32 parameters + metadata
    state = torch.load(DEFAULT_BUNDLE, weights_only=True)
    assert state["format"] == "pianomtl-model-bundle"


def test_legacy_checkpoint_is_refused_then_converted_by_the_explicit_command(
    cache: Path, tmp_path: Path, capsys
) -> None:
    """A checkpoint of the older format (numpy RNG state) is refused with the command to convert it."""
    run = tmp_path / "run"
    assert _cli(*tiny_train_args(cache, run, "--steps", 1)) == 0
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["rng"]["numpy"] = np.random.get_state()  # what earlier versions stored
    legacy = tmp_path / "legacy.pt"
    torch.save(state, legacy)
    with pytest.raises(ModelFileError, match="convert-model") as error:
        read_model_file(legacy)
    assert "\n" not in str(error.value)

    converted = tmp_path / "converted.pt"
    capsys.readouterr()
    assert _cli("convert-model", legacy, converted) == 0
    plain = torch.load(converted, weights_only=True)
    for name, tensor in state["model"].items():
        assert torch.equal(plain["model"][name], tensor)
    np.testing.assert_array_equal(plain["rng"]["numpy"][1].numpy(), state["rng"]["numpy"][1])
    assert _cli("convert-model", legacy, converted) == 2  # never over an existing file
    assert "exists" in _one_error_line(capsys.readouterr().err)
    # the converted checkpoint resumes
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    (resumed / "checkpoint.pt").write_bytes(converted.read_bytes())
    assert _cli(*tiny_train_args(cache, resumed, "--resume")) == 0
    assert json.loads((resumed / "result.json").read_text())["steps"] == 2


# -- 2. outputs that would clash ----------------------------------------------------------------


def test_inputs_sharing_outputs_are_refused_before_any_work(
    rendered_clip, tiny_model_file: Path, tmp_path: Path, capsys
) -> None:
    d1, d2, same = tmp_path / "d1", tmp_path / "d2", tmp_path / "same"
    for folder in (d1 / "x", d2 / "x", same):
        folder.mkdir(parents=True)
    for path in (d1 / "a.wav", d2 / "a.wav", d1 / "x" / "b.wav", d2 / "x" / "b.wav", same / "a.wav"):
        path.write_bytes(rendered_clip.wav.read_bytes())
    (same / "a.flac").write_bytes(rendered_clip.flac.read_bytes())
    out = tmp_path / "out"
    cases = {
        "two files, one name": [d1 / "a.wav", d2 / "a.wav", "-o", out],
        "two folders, one layout": [d1, d2, "-o", out],
        "a.wav and a.flac": [same],
        "a.wav and a.flac under -o": [same, "-o", out],
    }
    for name, arguments in cases.items():
        capsys.readouterr()
        # a missing model would be reported first if the model were loaded: the refusal comes before
        assert _cli("transcribe", *arguments, "--model", tmp_path / "not_loaded.pt") == 2, name
        line = _one_error_line(capsys.readouterr().err)
        assert "same outputs" in line and "a." in line, (name, line)
    assert not list(tmp_path.rglob("*.mid"))
    # folders are mirrored: one folder's tree under -o is no clash
    assert _cli("transcribe", d1, "-o", out, "--model", tiny_model_file) == 0
    assert (out / "a.mid").is_file() and (out / "x" / "b.mid").is_file()


# -- 3. two writers, one output ---------------------------------------------------------------------


def test_exclusive_create_keeps_a_file_that_appears_meanwhile(tmp_path: Path) -> None:
    target = tmp_path / "take.mid"

    def slow_writer(temporary: Path) -> None:
        temporary.write_bytes(b"mine")
        target.write_bytes(b"the other process's")  # another writer finishes first

    with pytest.raises(FileExistsError):
        atomic_write(target, slow_writer, overwrite=False)
    assert target.read_bytes() == b"the other process's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take.mid"]  # no temporary left
    assert temporary_name(target) != temporary_name(target)  # unique per call: no shared .part name
    performance = Performance([Note(60, 0.1, 0.5, 80)], [])
    with pytest.raises(FileExistsError):
        write_midi(target, performance, overwrite=False)
    assert target.read_bytes() == b"the other process's"


def test_racing_processes_write_each_output_once(tmp_path: Path) -> None:
    """Several processes write the same outputs at the same moment: each file has exactly one winner."""
    performance = Performance([Note(60 + i % 20, 0.01 * i, 0.01 * i + 0.2, 80) for i in range(300)], [])
    names = [tmp_path / f"take{i}.mid" for i in range(20)]
    start = time.time() + 0.5
    children = []
    for _writer in range(3):
        pid = os.fork()
        if pid == 0:
            wins = 0
            while time.time() < start:
                pass
            for path in names:
                try:
                    write_midi(path, performance, overwrite=False)
                    wins += 1
                except FileExistsError:
                    pass
            os._exit(wins)
        children.append(pid)
    wins = sum(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children)
    assert wins == len(names)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in names)
    assert all(len(read_midi(p).notes) == 300 for p in names)


# -- 4. the Python API -------------------------------------------------------------------------------


@pytest.mark.parametrize("sr", [float("nan"), float("inf"), -float("inf"), 0, -1, 0.5, 1e12])
def test_bad_sample_rates_fail_at_once(sr: float, tiny_model_file: Path) -> None:
    samples = np.zeros(SAMPLE_RATE, np.float32)
    started = time.monotonic()
    outcome = in_child(lambda: transcribe(samples, sr=sr, model=tiny_model_file), timeout=60)
    assert outcome[0] == "raised" and issubclass(outcome[1][0], ValueError), outcome
    assert "sample rate" in outcome[1][1] and "\n" not in outcome[1][1]
    assert time.monotonic() - started < 30


def test_ambiguous_and_unusable_arrays_are_clear_errors(rendered_clip, tiny_model_file: Path) -> None:
    many_rows = np.zeros((16, SAMPLE_RATE), np.float32)  # channels first, 16 channels: which axis is time?
    with pytest.raises(ValueError, match="ambiguous") as error:
        transcribe(many_rows, sr=SAMPLE_RATE, model=tiny_model_file)
    assert "\n" not in str(error.value)
    for bad, kind in [
        (np.array(["a", "b"]), TypeError),
        (np.zeros(100, np.complex64), TypeError),
        (np.zeros((2, 3, 4), np.float32), ValueError),
        ({"samples": 1}, TypeError),
    ]:
        with pytest.raises(kind):
            transcribe(bad, sr=SAMPLE_RATE, model=tiny_model_file)
    with pytest.raises(TypeError, match="file path"):
        load(12345)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sr is only for sample arrays"):
        transcribe(rendered_clip.wav, sr=SAMPLE_RATE, model=tiny_model_file)
    stereo_first = np.stack([rendered_clip.samples, rendered_clip.samples])  # [2, n] is not ambiguous
    assert transcribe(stereo_first, sr=SAMPLE_RATE, model=tiny_model_file).duration == pytest.approx(3.0)


def test_bytes_and_file_objects_are_read_like_the_file(rendered_clip, tiny_model_file: Path) -> None:
    reference = transcribe(rendered_clip.flac, model=tiny_model_file)
    data = rendered_clip.flac.read_bytes()
    with rendered_clip.flac.open("rb") as handle:
        from_handle = transcribe(handle, model=tiny_model_file)
    for result in (
        from_handle,
        transcribe(data, model=tiny_model_file),
        transcribe(io.BytesIO(data), model=tiny_model_file),
    ):
        assert result.notes == reference.notes
        np.testing.assert_array_equal(result.activations["on"], reference.activations["on"])
    assert from_handle.source == str(rendered_clip.flac)
    with pytest.raises(AudioError, match="<bytes>: not a readable audio file"):
        transcribe(b"definitely not audio" * 10, model=tiny_model_file)
    with rendered_clip.flac.open() as text_mode, pytest.raises(TypeError, match="binary mode"):
        transcribe(text_mode, model=tiny_model_file)


# -- 5. training never overwrites a run --------------------------------------------------------------


def test_train_refuses_a_used_folder_and_what_it_cannot_resume(cache: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert _cli(*tiny_train_args(cache, run)) == 0
    before = {name: (run / name).read_bytes() for name in ("checkpoint.pt", "result.json")}
    capsys.readouterr()
    assert _cli(*tiny_train_args(cache, run)) == 2  # no --resume: refused, nothing touched
    assert "already holds a run" in _one_error_line(capsys.readouterr().err)
    assert {name: (run / name).read_bytes() for name in before} == before
    assert _cli(*tiny_train_args(cache, tmp_path / "empty", "--resume")) == 2
    assert "nothing to resume" in _one_error_line(capsys.readouterr().err)
    for steps in ("0", "-5"):
        assert _cli(*tiny_train_args(cache, tmp_path / f"steps{steps}"), "--steps", steps) == 2
        assert "steps" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "steps0").exists()
    assert _cli(*tiny_train_args(cache, run, "--resume")) == 0  # resuming a finished run is fine


# -- 6. one-line errors, exit 2 ---------------------------------------------------------------------


def test_prepare_on_a_folder_that_is_no_dataset(tmp_path: Path, capsys) -> None:
    (tmp_path / "holiday_photos").mkdir()
    (tmp_path / "holiday_photos" / "beach.jpg").write_bytes(b"\xff\xd8\xff")
    cache = tmp_path / "cache"
    assert _cli("prepare", "--dataset", tmp_path / "holiday_photos", "--cache", cache) == 2
    _one_error_line(capsys.readouterr().err)
    assert not cache.exists()


def test_resume_from_a_corrupt_checkpoint(cache: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for content in (b"PK\x03\x04 not a checkpoint" * 5, b""):
        (run / "checkpoint.pt").write_bytes(content)
        capsys.readouterr()
        assert _cli(*tiny_train_args(cache, run, "--resume")) == 2
        assert "checkpoint.pt" in _one_error_line(capsys.readouterr().err)
    torch.save({"model_config": dict(TINY), "model": {}, "step": 1}, run / "checkpoint.pt")  # not a training one
    assert _cli(*tiny_train_args(cache, run, "--resume")) == 2
    assert "not a resumable checkpoint" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "arguments",
    [
        ["--lr", "-0.01"],
        ["--lr", "0"],
        ["--lr", "nan"],
        ["--device", "banana"],
        ["--device", "cuda"],
        ["--threads", "-3"],
        ["--batch-size", "0"],
        ["--equaliser", "2"],
        ["--lambda-on", "nan"],
        ["--model", "transformer"],
    ],
)
def test_bad_training_options(arguments: list[str], tmp_path: Path, capsys) -> None:
    if arguments == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "run"
    lr_find_has_it = arguments[0] in ("--device", "--threads", "--batch-size", "--lambda-on", "--model")
    for command in ("train", "lr-find") if lr_find_has_it else ("train",):
        capsys.readouterr()
        assert _cli(command, "--cache", tmp_path / "no_cache", "--out", out, *arguments) == 2, command
        line = _one_error_line(capsys.readouterr().err)
        assert arguments[0].lstrip("-").split("-")[0] in line, line
    assert not out.exists()


@pytest.mark.parametrize(
    "arguments",
    [
        ["--onset-threshold", "nan"],
        ["--onset-threshold", "5"],
        ["--frame-threshold", "-0.1"],
        ["--pedal-frame-threshold", "1.5"],
        ["--offset-threshold", "nan"],
        ["--offset-threshold", "-1"],
        ["--device", "banana"],
        ["--device", "cuda:7"],
        ["--threads", "-3"],
    ],
)
def test_bad_transcription_options(arguments: list[str], rendered_clip, tmp_path: Path, capsys) -> None:
    assert _cli("transcribe", rendered_clip.wav, "-o", tmp_path / "out", *arguments) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert arguments[0] in line
    assert not (tmp_path / "out").exists()


def test_bad_evaluation_options(tiny_model_file: Path, cache: Path, capsys) -> None:
    for arguments in (["--threshold", "nan"], ["--threshold", "1.5"], ["--device", "banana"], ["--threads", "-1"]):
        capsys.readouterr()
        assert _cli("evaluate", tiny_model_file, "--cache", cache, *arguments) == 2, arguments
        _one_error_line(capsys.readouterr().err)


def test_bad_stream_threads(rendered_clip, capsys) -> None:
    """``stream --threads`` 0 or negative is refused in one line (torch would raise a traceback)."""
    for value in ("0", "-3"):
        capsys.readouterr()
        assert _cli("stream", rendered_clip.wav, "--threads", value) == 2, value
        assert "--threads" in _one_error_line(capsys.readouterr().err)


# -- 7. leftovers, partial outputs, odd names, standard input ------------------------------------------

_BIG_PERFORMANCE = (
    "from pianomtl.core.midi import Note, PedalEvent, Performance\n"
    "performance = Performance([Note(21 + i % 88, 0.001 * i, 0.001 * i + 0.5, 1 + i % 127) for i in range(20000)],"
    " [PedalEvent(0.01 * i, 127 * (i % 2)) for i in range(2000)])\n"
)


def test_write_midi_leaves_nothing_on_a_full_disk(tmp_path: Path) -> None:
    """The file size limit makes the write fail with EFBIG part-way, as a full disk does."""
    script = (
        "import resource, signal, sys\n" + _BIG_PERFORMANCE + "from pianomtl.core.midi import write_midi\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n"
        "try:\n"
        f"    write_midi({str(tmp_path / 'take.mid')!r}, performance)\n"
        "except OSError as error:\n"
        "    print('failed', error.errno)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.stdout.startswith("failed"), result.stderr
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary


def test_write_midi_leaves_nothing_after_an_interrupt(tmp_path: Path) -> None:
    script = (
        _BIG_PERFORMANCE + "from pianomtl.core.midi import write_midi\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        f"    write_midi({str(tmp_path / 'take.mid')!r}, performance)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout.readline().strip() == b"ready"
        time.sleep(2.0)  # well into the writes (each takes about a second, mostly in the encoding)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert b"KeyboardInterrupt" in err
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "take.mid"]
    assert leftovers == []


def test_skip_existing_finishes_a_partial_output(rendered_clip, tiny_model_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _cli("transcribe", rendered_clip.wav, "-o", out, "--model", tiny_model_file) == 0
    midi = out / "clip.mid"
    first = midi.read_bytes(), midi.stat().st_mtime_ns
    arguments = ["transcribe", rendered_clip.wav, "-o", out, "--model", tiny_model_file, "--format", "mid,csv,json"]
    assert _cli(*arguments) == 1  # without --skip-existing the existing MIDI file is not replaced
    assert not (out / "clip.csv").exists()
    assert _cli(*arguments, "--skip-existing") == 0
    assert (out / "clip.csv").is_file() and (out / "clip.json").is_file()
    assert (midi.read_bytes(), midi.stat().st_mtime_ns) == first  # kept, not rewritten
    assert _cli(*arguments, "--skip-existing") == 0  # everything there: skipped


def test_file_names_that_are_not_utf8(rendered_clip, tiny_model_file: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    raw = os.fsencode(folder) + b"/caf\xe9 take.wav"  # Latin-1 é: not UTF-8
    with open(raw, "wb") as handle:
        handle.write(rendered_clip.wav.read_bytes())
    out = tmp_path / "out"
    result = _run(["transcribe", str(folder), "-o", str(out), "--model", str(tiny_model_file)])
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert b"Traceback" not in result.stderr
    assert b"caf\\xe9 take.wav" in result.stdout  # named, escaped, not reported as unreadable audio
    assert os.path.exists(os.fsencode(out) + b"/caf\xe9 take.mid")


def test_standard_input_is_read_as_a_stream(rendered_clip, tiny_model_file: Path, tmp_path: Path) -> None:
    reference = transcribe(rendered_clip.wav, model=tiny_model_file)
    data = rendered_clip.wav.read_bytes()
    model = ["--model", str(tiny_model_file)]
    # a pipe (not seekable): `cat clip.wav | pianomtl transcribe - --output take.mid`
    result = _run(["transcribe", "-", "--output", str(tmp_path / "pipe.mid"), *model], input_bytes=data)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert read_midi(tmp_path / "pipe.mid").notes == read_midi_of(reference, tmp_path / "reference.mid").notes
    # /dev/stdin named explicitly, output folder instead of a name
    result = _run(["transcribe", "/dev/stdin", "-o", str(tmp_path / "folder"), *model], input_bytes=data)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert (tmp_path / "folder" / "stdin.mid").is_file()
    # standard input redirected from a file (seekable)
    with rendered_clip.wav.open("rb") as handle:
        result = _run(
            ["transcribe", "-", "--output", str(tmp_path / "redirect"), "--format", "json", *model], stdin=handle
        )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert len(json.loads((tmp_path / "redirect.json").read_text())["notes"]) == len(reference.notes)
    # nowhere to write: one line, exit 2, nothing read
    result = _run(["transcribe", "-", *model], input_bytes=data)
    assert result.returncode == 2
    assert "--output" in _one_error_line(result.stderr.decode())


def read_midi_of(transcription, path: Path) -> Performance:  # type: ignore[no-untyped-def]
    transcription.to_midi(path)
    return read_midi(path)


# -- fuzz: the audio reader --------------------------------------------------------------------------

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure here is reproducible, never flaky
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


def _riff_header(fields: dict[str, int], data: bytes) -> bytes:
    fmt = (
        fields["format"].to_bytes(2, "little")
        + fields["channels"].to_bytes(2, "little")
        + fields["rate"].to_bytes(4, "little")
        + fields["byte_rate"].to_bytes(4, "little")
        + fields["align"].to_bytes(2, "little")
        + fields["bits"].to_bytes(2, "little")
    )
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt
    body += b"data" + fields["data_size"].to_bytes(4, "little") + data
    return b"RIFF" + fields["riff_size"].to_bytes(4, "little") + body


wav_headers = st.builds(
    _riff_header,
    st.fixed_dictionaries(
        {
            "format": st.sampled_from([0, 1, 3, 6, 7, 0xFFFE, 0x55, 12345]),
            "channels": st.sampled_from([0, 1, 2, 8, 9, 65, 1000, 0xFFFF]),
            "rate": st.sampled_from([0, 1, 8, 999, 8000, 44100, 96000, 1_000_001, 2**31, 2**32 - 1]),
            "byte_rate": st.integers(0, 2**32 - 1),
            "align": st.integers(0, 2**16 - 1),
            "bits": st.sampled_from([0, 1, 8, 16, 24, 32, 64, 7, 0xFFFF]),
            "data_size": st.sampled_from([0, 1, 100, 1000, 2**31, 2**32 - 1]),
            "riff_size": st.sampled_from([0, 36, 1000, 2**32 - 1]),
        }
    ),
    st.binary(max_size=2000),
)


@st.composite
def damaged_wavs(draw) -> bytes:  # type: ignore[no-untyped-def]
    """A valid WAV (random rate, channels, sample format, length), then maybe a header field overwritten."""
    rate = draw(st.sampled_from([8000, 22050, 44100, 48000, 96000]))
    channels = draw(st.integers(1, 4))
    frames = draw(st.integers(0, 3000))
    subtype = draw(st.sampled_from(["PCM_16", "PCM_24", "PCM_32", "PCM_U8", "FLOAT", "DOUBLE", "ULAW"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    buffer = io.BytesIO()
    sf.write(buffer, (0.3 * rng.standard_normal((frames, channels))).clip(-1, 1), rate, subtype=subtype, format="WAV")
    data = bytearray(buffer.getvalue())
    fields = {4: 4, 22: 2, 24: 4, 28: 4, 32: 2, 34: 2}  # RIFF size, channels, rate, byte rate, align, bits
    for offset in draw(st.lists(st.sampled_from(sorted(fields)), max_size=2, unique=True)):
        width = fields[offset]
        data[offset : offset + width] = draw(st.integers(0, 2 ** (8 * width) - 1)).to_bytes(width, "little")
    return bytes(data)


def _check_read(result: tuple[np.ndarray, np.ndarray]) -> None:
    samples, features = result
    assert samples.dtype == np.float32 and samples.ndim == 1 and len(samples) > 0
    assert np.all(np.isfinite(samples)) and np.all(np.isfinite(features))


def _read_both(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    samples = load(data)
    features, _ = file_features(io.BytesIO(data))
    return samples, features


@settings(FUZZ, max_examples=80)
@given(data=st.one_of(wav_headers, damaged_wavs()))
def test_fuzz_reader_with_random_wav_headers(data: bytes) -> None:
    assert_defined(in_child(lambda: _read_both(data)), _check_read)


@FUZZ
@given(cut=st.floats(0.0, 1.0), flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=8))
def test_fuzz_reader_with_damaged_real_files(rendered_clip, cut: float, flips: list[tuple[float, int]]) -> None:
    for original in (rendered_clip.wav.read_bytes()[:30000], rendered_clip.flac.read_bytes()):
        data = bytearray(original[: max(1, int(len(original) * cut))] if cut < 1 else original)
        for where, value in flips:
            data[min(int(where * len(data)), len(data) - 1)] = value
        assert_defined(in_child(lambda data=bytes(data): _read_both(data)), _check_read)


# -- fuzz: arrays and the Python API -----------------------------------------------------------------

DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.bool_]


def _mostly(good: st.SearchStrategy, bad: st.SearchStrategy, share: float = 0.7) -> st.SearchStrategy:
    """``good`` about ``share`` of the time, else ``bad`` (so that results, not only errors, get checked)."""
    return st.floats(0.0, 1.0).flatmap(lambda u: good if u < share else bad)


rates = _mostly(
    st.one_of(st.sampled_from([8000, 22050, 44100, 48000, 96000]), st.floats(1000.0, 200_000.0)),
    st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**40), 2**40), st.none(), st.text()),
)


@st.composite
def sample_arrays(draw) -> np.ndarray:  # type: ignore[no-untyped-def]
    shape = draw(
        _mostly(
            st.one_of(
                st.tuples(st.integers(1, 6000)),
                st.tuples(st.integers(1, 3000), st.integers(1, 8)),
                st.tuples(st.integers(1, 8), st.integers(9, 3000)),
            ),
            st.one_of(
                st.tuples(st.integers(0, 3000), st.integers(0, 30)),
                st.tuples(st.integers(0, 30), st.integers(0, 3000)),
                st.tuples(st.integers(0, 20), st.integers(0, 20)),
                st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(0, 4)),
                st.just(()),
                st.just((0,)),
            ),
        )
    )
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = rng.standard_normal(shape) * draw(st.sampled_from([0.0, 0.1, 0.5, 1.0, 1e4, 1e300]))
    special = draw(st.sampled_from([None, None, None, None, np.nan, np.inf, -np.inf]))
    if special is not None and values.size:
        values.flat[draw(st.integers(0, values.size - 1))] = special
    with np.errstate(all="ignore"):
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            return np.nan_to_num(values, nan=0, posinf=info.max, neginf=info.min).clip(info.min, info.max).astype(dtype)
        return values.astype(dtype)


def _check_prepared(samples: np.ndarray) -> None:
    assert samples.dtype == np.float32 and samples.ndim == 1 and len(samples) > 0
    assert np.all(np.isfinite(samples))


@FUZZ
@given(samples=sample_arrays(), rate=rates)
def test_fuzz_prepare_array(samples: np.ndarray, rate: float) -> None:
    assert_defined(in_child(lambda: prepare_array(samples, rate)), _check_prepared)


@pytest.fixture(scope="module")
def tiny_module():  # type: ignore[no-untyped-def]
    from pianomtl.models.registry import ModelConfig, build_model

    torch.manual_seed(0)
    return build_model(ModelConfig(**TINY)).eval()


def _check_transcription(result: Any) -> None:
    assert result.duration > 0 and all(0 <= n.onset < n.offset for n in result.notes)
    assert all(np.all(np.isfinite(a)) for a in result.activations.values())


@settings(FUZZ, max_examples=40)
@given(samples=sample_arrays(), rate=rates)
def test_fuzz_python_api(tiny_module, samples: np.ndarray, rate: Any) -> None:
    assert_defined(in_child(lambda: transcribe(samples, sr=rate, model=tiny_module)), _check_transcription)


@FUZZ
@given(audio=st.one_of(st.none(), st.integers(), st.text(max_size=20), st.binary(max_size=64), st.lists(st.floats())))
def test_fuzz_python_api_with_odd_inputs(tiny_module, audio: Any) -> None:
    """Whatever is passed as the audio: a result or a one-line error (an empty path, text, bytes, lists)."""
    assert_defined(in_child(lambda: transcribe(audio, sr=None, model=tiny_module)), _check_transcription)


# -- fuzz: valid input must succeed (issue #29) -------------------------------------------------------
# The fuzz tests above accept a one-line error for any input, so a reader or an API that refused
# everything would pass them; here every input is valid, and only a correct result passes.

VALID_DTYPES = [d for d in DTYPES if d is not np.bool_]


@settings(FUZZ, max_examples=30)
@given(
    rate=st.sampled_from([8000, 22050, 44100, 48000, 96000]),
    channels=st.integers(1, 4),
    frames=st.integers(100, 3000),  # (a few samples at 96 kHz resample to none at 44.1 kHz)
    subtype=st.sampled_from(["PCM_16", "PCM_24", "PCM_32", "PCM_U8", "FLOAT", "DOUBLE", "ULAW"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_fuzz_reader_reads_every_valid_wav(rate: int, channels: int, frames: int, subtype: str, seed: int) -> None:
    buffer = io.BytesIO()
    signal = (0.3 * np.random.default_rng(seed).standard_normal((frames, channels))).clip(-1, 1)
    sf.write(buffer, signal, rate, subtype=subtype, format="WAV")
    kind, value = in_child(lambda: _read_both(buffer.getvalue()))
    assert kind == "ok", value
    _check_read(value)
    assert abs(len(value[0]) - frames * SAMPLE_RATE / rate) <= 2  # resampled to 44.1 kHz, nothing lost


@st.composite
def valid_sample_arrays(draw) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Mono ``[n]``, channels-last ``[n, c]`` or channels-first ``[c, n]`` (c ≤ 8 < n), finite, any number type."""
    shape = draw(
        st.one_of(
            st.tuples(st.integers(1, 6000)),
            st.tuples(st.integers(9, 3000), st.integers(1, 8)),
            st.tuples(st.integers(1, 8), st.integers(9, 3000)),
        )
    )
    dtype = draw(st.sampled_from(VALID_DTYPES))
    values = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal(shape)
    values *= draw(st.sampled_from([0.0, 0.1, 0.5]))
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return (values.clip(-1, 1) * (info.max // 2)).astype(dtype)
    return values.astype(dtype)


@settings(FUZZ, max_examples=30)
@given(samples=valid_sample_arrays(), rate=st.one_of(st.sampled_from([8000, 44100, 96000]), st.floats(1000.0, 2e5)))
def test_fuzz_python_api_transcribes_every_valid_array(tiny_module, samples: np.ndarray, rate: float) -> None:
    kind, value = in_child(lambda: transcribe(samples, sr=rate, model=tiny_module))
    assert kind == "ok", value
    _check_transcription(value)
    assert value.duration == pytest.approx(max(samples.shape) / rate, rel=1e-3, abs=2 / SAMPLE_RATE)


# -- issue #30: the second robustness round ------------------------------------------------------
# Each test below failed before its fix (the sixteen cases, plus the stream property test).


@pytest.mark.parametrize("kind", ["zip", "bare"])
def test_convert_model_refuses_a_crafted_pickle_and_runs_nothing(
    kind: str, malicious: dict[str, Path], tmp_path: Path, capsys
) -> None:
    evil, marker, converted = malicious[kind], malicious["marker"], tmp_path / "conv.pt"
    capsys.readouterr()
    assert _cli("convert-model", evil, converted) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(evil) in line and ("refused" in line or "not a readable" in line), line
    assert "weights_only" not in line
    assert not marker.exists(), "convert-model ran the payload"
    assert not converted.exists()


def test_convert_model_reads_numpy_objects_but_no_other_class(tmp_path: Path, capsys) -> None:
    """The allowlist is exactly numpy's arrays, dtypes and scalars: an object array or any class is refused."""
    from pianomtl.transcription.legacy_file import LegacyFileRefused, read_legacy_file

    plain = tmp_path / "numbers.pt"
    torch.save({"a": np.arange(5, dtype=np.uint32), "b": np.float64(2.5), "c": np.bool_(True)}, plain)
    state = read_legacy_file(plain)
    assert state["a"].dtype == np.uint32 and state["b"] == 2.5
    objects = tmp_path / "objects.pt"
    torch.save({"a": np.array([{"x": 1}], dtype=object)}, objects)
    with pytest.raises(LegacyFileRefused, match="ObjectDType"):
        read_legacy_file(objects)
    other = tmp_path / "other.pt"
    torch.save({"a": Path("/")}, other)
    with pytest.raises(LegacyFileRefused, match="refused"):
        read_legacy_file(other)


def test_evaluate_and_export_given_onnx_ask_for_a_pt_file(cache: Path, tmp_path: Path, capsys) -> None:
    from pianomtl.transcription.onnx_model import default_onnx_path

    onnx = default_onnx_path()
    if not onnx.is_file():
        pytest.skip("the bundled ONNX model is not built")
    for command in (["evaluate", onnx, "--cache", cache], ["export", onnx, "--onnx", tmp_path / "x.onnx"]):
        capsys.readouterr()
        assert _cli(*command) == 2
        line = _one_error_line(capsys.readouterr().err)
        assert ".pt" in line and "weights_only" not in line and "False" not in line, line
    # a file that is no pickle at all: torch's reason, never its advice to turn safe loading off
    disguised = tmp_path / "graph.pt"
    disguised.write_bytes(onnx.read_bytes())
    with pytest.raises(ModelFileError) as error:
        read_model_file(disguised)
    assert "weights_only" not in str(error.value) and "\n" not in str(error.value)


@pytest.fixture
def read_only_folder(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A folder nothing can be created in: mode 0555 for a normal user; a read-only tmpfs for root
    (whom permissions do not stop); skipped where neither is possible."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("root, and no read-only file system can be mounted here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


def _petabyte_onnx(path: Path) -> Path:
    """A valid graph with pianomtl's input and outputs whose ConstantOfShape asks for 4 PB at run time."""
    import onnx
    from onnx import TensorProto, helper

    from pianomtl.constants import ONNX_INPUT, TASKS

    nodes = [
        helper.make_node("Constant", [], ["shape"], value=helper.make_tensor("s", TensorProto.INT64, [1], [1 << 50])),
        helper.make_node(
            "ConstantOfShape", ["shape"], ["big"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0])
        ),
        helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
        *(helper.make_node("Add", [ONNX_INPUT, "total"], [task]) for task in TASKS),
    ]
    graph = helper.make_graph(
        nodes,
        "petabytes",
        [helper.make_tensor_value_info(ONNX_INPUT, TensorProto.FLOAT, ["b", "t", 144])],
        [helper.make_tensor_value_info(task, TensorProto.FLOAT, None) for task in TASKS],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_an_onnx_graph_whose_allocation_fails_is_one_line(rendered_clip, tmp_path: Path, capsys) -> None:
    big = _petabyte_onnx(tmp_path / "big.onnx")
    for command in (
        ["transcribe", rendered_clip.wav, "--model", big, "--output", tmp_path / "t.mid"],
        ["stream", rendered_clip.wav, "--model", big, "-o", tmp_path / "s.mid"],
    ):
        result = _run([str(c) for c in command], timeout=120)
        assert result.returncode == 2, result.stderr.decode()
        line = _one_error_line(result.stderr.decode())
        assert str(big) in line and "memory" in line, line


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "1e300"])
def test_stream_block_ms_must_be_a_finite_length(value: str, rendered_clip, capsys) -> None:
    capsys.readouterr()
    assert _cli("stream", rendered_clip.wav, "--block-ms", value) == 2
    assert "--block-ms" in _one_error_line(capsys.readouterr().err)


def test_stream_reads_what_transcribe_reads_nine_channels(rendered_clip, tmp_path: Path, capsys) -> None:
    nine = tmp_path / "nine.wav"
    sf.write(str(nine), np.tile(rendered_clip.samples[:, None], (1, 9)), SAMPLE_RATE, subtype="PCM_16")
    assert _cli("transcribe", nine, "--output", tmp_path / "t.mid") == 0
    assert _cli("stream", nine, "-o", tmp_path / "s.mid") == 0
    streamed, offline = read_midi(tmp_path / "s.mid"), read_midi(tmp_path / "t.mid")
    assert len(streamed.notes) > 0 and abs(len(streamed.notes) - len(offline.notes)) <= 2


def test_stream_checks_its_output_before_streaming(rendered_clip, read_only_folder: Path, capsys) -> None:
    capsys.readouterr()
    started = time.monotonic()
    assert _cli("stream", rendered_clip.wav, "--realtime", "-o", read_only_folder / "s.mid") == 2
    assert time.monotonic() - started < rendered_clip.seconds  # refused before the take, not after it
    line = _one_error_line(capsys.readouterr().err)
    assert "s.mid" in line and "cannot write" in line, line


def _stream_process(*arguments: object, stdin: Any = subprocess.DEVNULL) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pianomtl.cli", "stream", *(str(a) for a in arguments)],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _first_json_line(process: subprocess.Popen, timeout: float = 120) -> dict:
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, "no event within the time limit"
    return json.loads(process.stdout.readline())  # type: ignore[union-attr]


def _balanced(lines: list[dict]) -> None:
    """Every note_on has its note_off, and the pedal ends up."""
    held: dict[int, int] = {}
    pedal = False
    for event in lines:
        if event["type"] == "note_on":
            held[event["key"]] = held.get(event["key"], 0) + 1
        elif event["type"] == "note_off":
            held[event["key"]] -= 1
        elif event["type"] in ("pedal_on", "pedal_off"):
            pedal = event["type"] == "pedal_on"
    assert not any(held.values()), f"notes left on: {held}"
    assert not pedal, "the pedal was left down"


def test_stream_saves_the_take_elsewhere_when_the_output_cannot_be_written_at_the_end(
    rendered_clip, tmp_path: Path
) -> None:
    folder = tmp_path / "takes"
    folder.mkdir()
    process = _stream_process(rendered_clip.wav, "--realtime", "--json", "-o", folder / "s.mid")
    _first_json_line(process)
    for child in folder.iterdir():
        child.unlink()
    folder.rmdir()  # the output's folder is gone (an unplugged disk, a removed folder) before the end
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1, err.decode()
    text = err.decode()
    assert "cannot write" in text and "saved to" in text and "Traceback" not in text, text
    fallback = Path(text.split("saved to ", 1)[1].split()[0].rstrip(";"))
    try:
        assert len(read_midi(fallback).notes) >= 4
    finally:
        fallback.unlink(missing_ok=True)


def test_stream_sighup_ends_notes_and_writes_the_midi(rendered_clip, tmp_path: Path) -> None:
    take = tmp_path / "rt.mid"
    process = _stream_process(rendered_clip.wav, "--realtime", "--json", "-o", take)
    lines = [_first_json_line(process)]
    time.sleep(0.5)
    process.send_signal(signal.SIGHUP)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err.decode()
    lines += [json.loads(line) for line in out.decode().splitlines()]
    _balanced(lines)
    assert "interrupted" in err.decode()
    written = read_midi(take)
    assert 1 <= len(written.notes) < len(rendered_clip.performance.notes) + 2


def test_stream_stops_reading_when_its_reader_is_gone(tmp_path: Path) -> None:
    """``pianomtl stream - < endless | head``: once stdout's reader is gone the stream ends (and writes -o)."""
    take = tmp_path / "s.mid"
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        [sys.executable, "-m", "pianomtl.cli", "stream", "-", "--json", "-o", str(take)],
        stdin=subprocess.PIPE,
        stdout=write_end,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    os.close(write_end)
    os.close(read_end)  # the reader is gone before the first line
    silence = bytes(2 * 4410)  # 0.1 s of s16 silence: no events, so no write ever fails
    deadline = time.monotonic() + 60
    try:
        while process.poll() is None and time.monotonic() < deadline:
            try:
                process.stdin.write(silence)  # type: ignore[union-attr]
                process.stdin.flush()  # type: ignore[union-attr]
            except BrokenPipeError:
                break
        assert process.wait(timeout=max(deadline - time.monotonic(), 1)) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert "Traceback" not in process.stderr.read().decode()  # type: ignore[union-attr]
    assert take.exists()


def test_prepare_one_split_keeps_the_others_and_a_disagreeing_index_says_so(
    cache: Path, tmp_path: Path, capsys
) -> None:
    from pianomtl.data.store import INDEX_NAME, CacheError, load_index, open_split

    dataset = cache.parent / "dataset"  # tiny_cache's MAESTRO-layout folder beside its cache
    merged = tmp_path / "merged"
    assert _cli("prepare", "--dataset", dataset, "--cache", merged, "--split", "train", "--workers", 1) == 0
    assert _cli("prepare", "--dataset", dataset, "--cache", merged, "--split", "validation", "--workers", 1) == 0
    splits = sorted(e.split for e in load_index(merged))
    assert splits == ["train", "train", "validation"], splits
    assert len(open_split(merged, "train")) == 2 and len(open_split(merged, "validation")) == 1
    # preparing a split again reuses it and still keeps the others
    assert _cli("prepare", "--dataset", dataset, "--cache", merged, "--split", "train", "--workers", 1) == 0
    assert "reused 2" in capsys.readouterr().out and len(load_index(merged)) == 3
    # an index that lost the train entries (what the old prepare wrote) names the disagreement
    index = merged / INDEX_NAME
    payload = json.loads(index.read_text())
    payload["entries"] = [e for e in payload["entries"] if e["split"] != "train"]
    index.write_text(json.dumps(payload))
    with pytest.raises(CacheError, match="disagrees with its arrays") as error:
        open_split(merged, "train")
    assert "\n" not in str(error.value) and "train_a" in str(error.value)
    capsys.readouterr()
    assert _cli(*tiny_train_args(merged, tmp_path / "run")) == 2
    assert "disagrees" in _one_error_line(capsys.readouterr().err)
    # and an entry whose arrays are gone
    (merged / payload["entries"][0]["labels"]).unlink()
    with pytest.raises(CacheError, match="missing"):
        open_split(merged, "validation")


def test_serve_refuses_a_port_beyond_65535() -> None:
    result = _run(["serve", "--port", "70000"], timeout=60)  # a process: the old code served on 4464 for ever
    assert result.returncode == 2
    assert "70000" in _one_error_line(result.stderr.decode())


def test_serve_on_all_interfaces_warns_and_names_the_network_address() -> None:
    """``serve --host 0.0.0.0`` says the page is reachable from other machines, at which address."""
    pytest.importorskip("uvicorn")
    process = subprocess.Popen(
        [sys.executable, "-m", "pianomtl.cli", "serve", "--host", "0.0.0.0", "--port", "0", "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], 120)
        assert ready, "the server printed nothing"
        printed = process.stdout.readline().decode()  # type: ignore[union-attr]
        assert "the page is at" in printed
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    warning = [line for line in err.decode().splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "other machines" in warning[0], err.decode()
    assert "http://127.0.0.1" not in warning[0] and "http://" in warning[0]

    from pianomtl.cli.serve import exposure_warning

    with socket_bound("127.0.0.1") as local:
        assert exposure_warning(local) is None  # the default: this computer only, no warning


def socket_bound(host: str):  # type: ignore[no-untyped-def]
    import socket as sockets

    sock = sockets.socket(sockets.AF_INET, sockets.SOCK_STREAM)
    sock.bind((host, 0))
    return sock


@pytest.mark.parametrize(
    ("first", "code"),
    [("[1, 2]", 1008), ("5", 1008), ("not json", 1008), (b"\x00\x00\x80?", 1003)],
)
def test_live_websocket_refuses_a_bad_hello_with_a_close_code(first: str | bytes, code: int, tmp_path: Path) -> None:
    pytest.importorskip("httpx")

    def exchange() -> tuple[dict, int]:  # in a child with a time limit: the old server left the client waiting
        from starlette.testclient import TestClient
        from starlette.websockets import WebSocketDisconnect

        from pianomtl.transcription.pipeline import Transcriber
        from pianomtl.web.piano import PianoCache
        from pianomtl.web.server import create_app

        app = create_app(Transcriber(threads=1), piano=PianoCache(tmp_path / "piano"), temp_root=tmp_path)
        with TestClient(app) as client, client.websocket_connect("/api/live") as socket:
            if isinstance(first, bytes):
                socket.send_bytes(first)
            else:
                socket.send_text(first)
            answer = socket.receive_json()
            try:
                socket.receive_text()
            except WebSocketDisconnect as closed:
                return answer, closed.code
        return answer, -1

    kind, value = in_child(exchange, timeout=60)
    assert kind == "ok", value
    answer, closed_with = value
    assert answer["type"] == "error" and "JSON object" in answer["error"], answer
    assert closed_with == code


def test_train_out_on_a_read_only_folder_is_one_line(cache: Path, read_only_folder: Path, capsys) -> None:
    capsys.readouterr()
    assert _cli(*tiny_train_args(cache, read_only_folder / "run")) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "cannot write run folder" in line and str(read_only_folder / "run") in line, line


@pytest.mark.parametrize("init", ["evil", "missing", "onnx"])
def test_a_refused_init_from_leaves_no_lock_or_folder(
    init: str, malicious: dict[str, Path], cache: Path, tmp_path: Path, capsys
) -> None:
    source = {"evil": malicious["zip"], "missing": tmp_path / "nope.pt", "onnx": _petabyte_onnx(tmp_path / "g.onnx")}
    out = tmp_path / "fresh"
    capsys.readouterr()
    assert _cli(*tiny_train_args(cache, out, "--init-from", source[init])) == 2
    _one_error_line(capsys.readouterr().err)
    assert not out.exists(), list(out.iterdir())
    # an existing folder keeps what it had, and gets no lock either
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert _cli(*tiny_train_args(cache, out, "--init-from", source[init])) == 2
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("how", ["device", "stdin"])
def test_a_stream_input_is_spooled_only_up_to_max_input(how: str, tmp_path: Path) -> None:
    """``transcribe /dev/zero`` used to copy standard input to disk without end (3.3 GB in 5 s)."""
    started = time.monotonic()
    with open("/dev/zero", "rb") as zeros:
        if how == "device":
            result = _run(["transcribe", "/dev/zero", "-o", str(tmp_path / "o"), "--max-input", "8M"], timeout=120)
        else:
            result = _run(["transcribe", "-", "--output", str(tmp_path / "z.mid"), "--max-input", "8M"], stdin=zeros)
    assert time.monotonic() - started < 60
    assert result.returncode != 0
    line = [x for x in result.stderr.decode().splitlines() if x.startswith("error:")]
    assert len(line) == 1 and "--max-input" in line[0] and "8 MiB" in line[0], result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


def test_max_input_is_a_size(capsys) -> None:
    from pianomtl.cli.transcribe import byte_size

    assert byte_size("2G") == 2 * 1024**3 and byte_size("500M") == 500 * 1024**2 and byte_size("4096") == 4096
    capsys.readouterr()
    assert _cli("transcribe", "-", "--output", "x.mid", "--max-input", "lots") == 2
    assert "--max-input" in _one_error_line(capsys.readouterr().err)


def test_stale_temporaries_of_a_killed_run_are_removed_by_the_next(
    rendered_clip, tiny_model_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its process id is now free: what a run killed with SIGKILL leaves behind

    def left_over(name: str, pid: int) -> Path:
        path = temporary_name(out / name)
        path = path.with_name(path.name.replace(f".{os.getpid()}-", f".{pid}-"))
        path.write_bytes(b"half a file")
        return path

    stale = [left_over("clip.png", dead.pid), left_over("clip.mid", dead.pid)]
    fresh = left_over("other.mid", dead.pid)  # just written: maybe another machine's writer, kept
    alive = left_over("clip.csv", os.getppid())  # a running process's: kept
    foreign = out / ".notes.part.txt"  # not of our making: kept
    foreign.write_text("mine")
    old = time.time() - 3600
    for path in (*stale, alive, foreign):
        os.utime(path, (old, old))
    assert _cli("transcribe", rendered_clip.wav, "-o", out, "--model", tiny_model_file) == 0
    assert not any(path.exists() for path in stale)
    assert fresh.exists() and alive.exists() and foreign.read_text() == "mine"
    assert (out / "clip.mid").is_file()
    # and a take of `stream -o` into the folder does the same
    take = left_over("take.mid", dead.pid)
    os.utime(take, (old, old))
    assert _cli("stream", rendered_clip.wav, "-o", out / "take.mid", "--model", tiny_model_file) == 0
    assert not take.exists() and (out / "take.mid").is_file() and alive.exists()


@pytest.mark.parametrize("locked_part", ["file", "folder"])
def test_an_unreadable_file_says_permission_denied(locked_part: str, rendered_clip) -> None:
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="pianomtl-locked-"))  # under /tmp: an ordinary user can reach it
    try:
        folder.chmod(0o755)
        locked = folder / "locked.wav"
        locked.write_bytes(rendered_clip.wav.read_bytes())
        (locked if locked_part == "file" else folder).chmod(0)

        def read_as_nobody() -> Any:
            if os.geteuid() == 0:  # root reads anything: be an ordinary user, as in the case
                os.setgid(65534)
                os.setuid(65534)
            return load(locked)

        kind, value = in_child(read_as_nobody)
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)
    assert kind == "raised", value
    assert issubclass(value[0], AudioError) and "permission denied" in value[1] and str(locked) in value[1], value


def test_random_bytes_named_mp3_name_the_real_cause(tmp_path: Path) -> None:
    fake = tmp_path / "song.mp3"
    fake.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    result = _run(["transcribe", str(fake), "--output", str(tmp_path / "song.mid")], timeout=120)
    assert result.returncode == 1
    err = result.stderr.decode()
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("transcribed ")]
    assert len(lines) == 1, err  # no decoder's own line before it
    assert "not MP3 audio" in lines[0] and "does not exist" not in lines[0] and "pipe" not in lines[0], lines[0]


def test_output_on_a_read_only_folder_names_the_users_file(
    rendered_clip, tiny_model_file: Path, read_only_folder: Path, capsys
) -> None:
    capsys.readouterr()
    assert (
        _cli("transcribe", rendered_clip.wav, "--output", read_only_folder / "take.mid", "--model", tiny_model_file)
        == 2
    )
    line = _one_error_line(capsys.readouterr().err)
    assert str(read_only_folder) in line and ".part" not in line, line
    from pianomtl.cli.transcribe import _user_path

    # a write that fails later (the folder became read-only meanwhile) names the output, not its temporary
    target = read_only_folder / "take.mid"
    assert _user_path(str(temporary_name(target)), {"mid": target}) == target


def test_a_dangling_wav_symlink_in_a_folder_is_reported(
    rendered_clip, tiny_model_file: Path, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "takes"
    folder.mkdir()
    (folder / "good.wav").write_bytes(rendered_clip.wav.read_bytes())
    (folder / "gone.wav").symlink_to(tmp_path / "deleted.wav")
    capsys.readouterr()
    assert _cli("transcribe", folder, "-o", tmp_path / "out", "--model", tiny_model_file) == 1
    err = capsys.readouterr().err
    assert any("gone.wav" in line and "does not exist" in line for line in err.splitlines()), err
    assert (tmp_path / "out" / "good.mid").is_file()


def test_transcribe_none_says_what_is_wrong() -> None:
    with pytest.raises(TypeError, match="audio is None") as error:
        transcribe(None)
    assert "sr" not in str(error.value).split(":")[0]


# -- the stream's property: whatever arrives, nothing is left on and the take is written ---------------


@pytest.fixture(scope="module")
def bundled_transcriber():  # type: ignore[no-untyped-def]
    from pianomtl.transcription.pipeline import Transcriber

    try:
        return Transcriber(threads=1)
    except ValueError as error:  # a development checkout without the bundled model
        pytest.skip(str(error))


class _Collected:
    """The CLI's outputs (:class:`pianomtl.cli.stream._Outputs`), keeping the events instead of printing them."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def write(self, events: list[Any]) -> None:
        self.events += events

    def check_reader(self) -> None:
        pass


@st.composite
def stream_takes(draw) -> dict:  # type: ignore[no-untyped-def]
    """Blocks of any length, NaN/inf/huge samples anywhere, mono or stereo, maybe a real signal mid-take."""
    cuts = draw(st.lists(st.integers(1, 30_000), min_size=1, max_size=12))
    bad = draw(
        st.lists(
            st.tuples(st.floats(0.0, 1.0), st.sampled_from([np.nan, np.inf, -np.inf, 1e30, -1e30, 2.0])), max_size=6
        )
    )
    signal_at = draw(
        st.one_of(st.none(), st.tuples(st.integers(0, 40), st.sampled_from(["SIGINT", "SIGTERM", "SIGHUP"])))
    )
    return {
        "cuts": cuts,
        "bad": bad,
        "signal": signal_at,
        "channels": draw(st.sampled_from([1, 2])),
        "rate": draw(st.sampled_from([44100, 48000])),
    }


@settings(FUZZ, max_examples=10)
@given(take=stream_takes())
def test_property_every_note_on_gets_its_note_off_and_the_midi_is_written(
    bundled_transcriber, rendered_clip, take: dict
) -> None:
    import tempfile
    import warnings

    from pianomtl.cli.stream import STOP_SIGNALS, _run_stream
    from pianomtl.core.audio import resample
    from pianomtl.transcription.stream import Stream

    samples = rendered_clip.samples
    if take["rate"] != SAMPLE_RATE:
        samples = resample(samples, SAMPLE_RATE, take["rate"])  # soxr: the same take at another rate
    samples = samples.astype(np.float32)
    for where, value in take["bad"]:
        samples[min(int(where * len(samples)), len(samples) - 1)] = value
    if take["channels"] == 2:
        samples = np.stack([samples, samples * 0.5], axis=1)
    signalled = {"sent": False}

    def blocks() -> Any:
        start, index = 0, 0
        while start < len(samples):
            if take["signal"] is not None and index == take["signal"][0]:
                signalled["sent"] = True
                os.kill(os.getpid(), getattr(signal, take["signal"][1]))  # a real signal, as from a terminal
            length = take["cuts"][index % len(take["cuts"])]
            yield samples[start : start + length]
            start, index = start + length, index + 1

    handlers = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NaN and clipping warnings: the point of the bad samples
        stream = Stream(take["rate"], take["channels"], transcriber=bundled_transcriber)
        outputs = _Collected()
        status, interrupted = _run_stream(stream, blocks(), outputs)  # type: ignore[arg-type]
    assert status == 0 and interrupted == signalled["sent"]
    assert {number: signal.getsignal(number) for number in STOP_SIGNALS} == handlers  # restored
    held: dict[int, int] = {}
    pedal = False
    for event in outputs.events:
        if event.type == "note_on":
            held[event.key] = held.get(event.key, 0) + 1
        elif event.type == "note_off":
            held[event.key] = held.get(event.key, 0) - 1
            assert held[event.key] >= 0, "a note_off without its note_on"
        else:
            pedal = event.type == "pedal_on"
    assert not any(held.values()), f"notes left on: {held}"
    assert not pedal, "the pedal was left down"
    with tempfile.TemporaryDirectory() as folder:
        performance = read_midi(stream.write_midi(Path(folder) / "take.mid"))
    ons = [e for e in outputs.events if e.type == "note_on"]
    assert len(performance.notes) <= len(ons) and {n.key for n in performance.notes} <= {e.key for e in ons}
    if not signalled["sent"] and not take["bad"]:
        assert len(performance.notes) >= 4  # the clip's notes, whatever the blocks


def test_quiet_opening_keeps_stderr_when_threads_open_files_at_once(rendered_clip, tmp_path: Path) -> None:
    """The decoder-noise capture redirects file descriptor 2 for a moment: threads must not interleave it."""
    import threading

    fake = tmp_path / "noise.mp3"
    fake.write_bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())

    def many_opens() -> tuple[tuple[int, int], tuple[int, int], list[str]]:
        before = os.fstat(2)
        problems: list[str] = []

        def worker(index: int) -> None:
            for _ in range(10):
                try:
                    load(fake if index % 2 else rendered_clip.wav)
                except AudioError as error:
                    problems.append(str(error))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        after = os.fstat(2)
        return (before.st_dev, before.st_ino), (after.st_dev, after.st_ino), problems

    kind, value = in_child(many_opens)
    assert kind == "ok", value
    before, after, problems = value
    assert before == after, "file descriptor 2 was left pointing elsewhere"
    assert len(problems) == 30 and all("not MP3 audio" in text for text in problems)
