"""The lean install (issue #16): transcription without torch, the bundled model as ONNX.

* the numpy spectrogram equals the torch one, and the one streaming framer equals the
  whole-signal transform however the samples arrive;
* the numpy peak picker equals scipy's;
* ``run_model`` carries a recurrent model's state across chunks (torch and ONNX);
* the pipeline imports and transcribes with torch, scipy & co. blocked, and commands
  whose extra is missing say which one, in one line;
* ``default.onnx`` is ``default.pt``; the ONNX and torch paths give the same notes;
* the golden output of the bundled model (``tests/data/golden_default.npz``,
  ``scripts/make_golden.py``);
* (slow) the wheel in a fresh virtual environment without torch: size and CLI.
"""

from __future__ import annotations

import importlib
import io
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pianomtl.constants import CONTEXT, FPS, N_BINS, N_KEYS, SAMPLE_RATE, TASK_WIDTH, TASKS
from pianomtl.core.features import StreamingSpectrogram, context_indices, spectrogram
from pianomtl.transcription.decoders import decode, find_peaks
from pianomtl.transcription.inference import run_model
from pianomtl.transcription.onnx_model import DEFAULT_ONNX, OnnxModel
from pianomtl.transcription.pipeline import Transcriber, default_backend, file_features, transcribe

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "data" / "golden_default.npz"
OPTIONAL = ("torch", "scipy", "mir_eval", "matplotlib", "tqdm", "fluidsynth", "onnx", "tensorboard")
BLOCK_OPTIONAL = f"import sys\nfor name in {OPTIONAL!r}:\n    sys.modules[name] = None\n"
"""Python lines that make the optional packages unimportable (as in the lean install)."""

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def run_python(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300)


# ---------------------------------------------------------------- features


def test_numpy_features_equal_torch_features(rendered_clip) -> None:
    rng = np.random.default_rng(0)
    samples = (rendered_clip.samples + 0.01 * rng.standard_normal(len(rendered_clip.samples))).astype(np.float32)
    numpy_features = spectrogram(samples, backend="numpy")
    torch_features = spectrogram(samples, backend="torch")
    assert numpy_features.shape == torch_features.shape == (150, N_BINS)
    assert numpy_features.dtype == torch_features.dtype == np.float32
    assert float(np.abs(numpy_features - torch_features).max()) < 1e-4  # measured: about 1e-6


def test_streaming_framer_equals_whole_signal_for_any_pushes(rendered_clip) -> None:
    samples = rendered_clip.samples[: 882 * 40 + 311]
    whole = spectrogram(samples)
    rng = np.random.default_rng(1)
    for backend in ("numpy", "torch"):
        framer = StreamingSpectrogram(backend=backend, chunk_frames=int(rng.integers(1, 9)))
        cuts = np.sort(rng.integers(0, len(samples), size=12))
        for piece in np.split(samples, cuts):
            framer.push(piece)
        np.testing.assert_allclose(framer.finish(), whole, atol=1e-5, err_msg=backend)


def test_context_indices_are_the_one_padding_rule() -> None:
    from pianomtl.data.sampler import context_indices as sampler_rule
    from pianomtl.models.layers import pad_context

    assert sampler_rule is context_indices
    features = torch.arange(4 * 3, dtype=torch.float32).reshape(4, 3)
    expected = features[torch.from_numpy(context_indices(0, 4, 4))]
    torch.testing.assert_close(pad_context(features), expected)
    assert context_indices(2, 3, 6).tolist() == [0, 0, 0, 0, 1, 2, 3, 4, 5, 5, 5, 5, 5]
    with pytest.raises(ValueError):
        context_indices(0, 1, 0)


# ---------------------------------------------------------------- decoding without scipy


def test_find_peaks_equals_scipy() -> None:
    from scipy.signal import find_peaks as scipy_find_peaks

    rng = np.random.default_rng(2)
    for _ in range(3000):
        x = rng.integers(0, 5, size=int(rng.integers(0, 40))) / 4.0  # many plateaus and ties
        if len(x) and rng.random() < 0.1:
            x[rng.integers(0, len(x))] = np.nan
        height = float(rng.random())
        np.testing.assert_array_equal(find_peaks(x, height), scipy_find_peaks(x, height=height)[0])


# ---------------------------------------------------------------- recurrent models, chunked


class TinyRecurrent(torch.nn.Module):
    """A stand-in of the recurrent family's interface: an 11-frame conv, then a real GRU."""

    recurrent = True
    causal = True

    def __init__(self, hidden: int = 12) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(N_BINS, 16, kernel_size=2 * CONTEXT + 1)
        self.rnn = torch.nn.GRU(16, hidden, batch_first=True)
        self.out = torch.nn.Linear(hidden, sum(TASK_WIDTH[t] for t in TASKS))
        self.state_names = ("h",)

    def initial_state(self, batch: int = 1) -> tuple[torch.Tensor]:
        return (self.out.weight.new_zeros(1, batch, self.rnn.hidden_size),)

    def forward_with_state(self, x: torch.Tensor, state: tuple[torch.Tensor, ...]):  # type: ignore[no-untyped-def]
        e = torch.tanh(self.conv(x.transpose(1, 2))).transpose(1, 2)
        sequence, h = self.rnn(e, state[0])
        heads = self.out(sequence).split([TASK_WIDTH[t] for t in TASKS], dim=-1)
        return dict(zip(TASKS, heads, strict=True)), (h,)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_with_state(x, self.initial_state(x.shape[0]))[0]


class _StatefulGraph(torch.nn.Module):
    def __init__(self, model: TinyRecurrent) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs, (next_h,) = self.model.forward_with_state(features, (h,))
        return (*(outputs[t] for t in TASKS), next_h)


def _stateful_onnx(model: TinyRecurrent) -> bytes:
    example = (torch.zeros(1, 20 + 2 * CONTEXT, N_BINS), torch.randn(1, 1, model.rnn.hidden_size))
    axes = {"features": {0: "batch", 1: "input_frames"}, "h": {1: "batch"}, "next_h": {1: "batch"}}
    axes.update({t: {0: "batch", 1: "frames"} for t in TASKS})
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
        torch.onnx.export(
            _StatefulGraph(model.eval()),
            example,
            buffer,
            dynamo=False,
            input_names=["features", "h"],
            output_names=[*TASKS, "next_h"],
            dynamic_axes=axes,
            opset_version=17,
        )
    return buffer.getvalue()


def test_run_model_carries_a_recurrent_state_across_chunks() -> None:
    torch.manual_seed(0)
    model = TinyRecurrent().eval()
    features = np.random.default_rng(3).random((97, N_BINS), dtype=np.float32)
    whole = run_model(model, features, chunk_frames=10_000)
    chunked = run_model(model, features, chunk_frames=7)
    for task in TASKS:
        np.testing.assert_allclose(chunked[task], whole[task], atol=1e-5, err_msg=task)
    model.recurrent = False  # the state matters: chunks from a zero state each differ
    restarted = run_model(model, features, chunk_frames=7)
    assert float(np.abs(restarted["int"] - whole["int"]).max()) > 1e-3
    model.recurrent = True
    model.causal = False  # a bidirectional model: one pass over the whole recording
    np.testing.assert_allclose(run_model(model, features, chunk_frames=7)["int"], whole["int"], atol=1e-6)


def test_onnx_model_with_state_inputs_runs_chunked() -> None:
    torch.manual_seed(0)
    model = TinyRecurrent().eval()
    onnx_model = OnnxModel(_stateful_onnx(model))
    assert onnx_model.recurrent and onnx_model.state_names == ("h",)
    assert [s.shape for s in onnx_model.initial_state(3)] == [(1, 3, 12)]
    features = np.random.default_rng(4).random((61, N_BINS), dtype=np.float32)
    expected = run_model(model, features, chunk_frames=10_000)
    actual = run_model(onnx_model, features, chunk_frames=9)
    for task in TASKS:
        np.testing.assert_allclose(actual[task], expected[task], atol=1e-4, err_msg=task)
    # torch in, torch out (the interface inference code shares with the torch model)
    x = torch.from_numpy(features[context_indices(0, 61, 61)])[None]
    outputs, (h,) = onnx_model.forward_with_state(x, model.initial_state(1))
    assert isinstance(outputs["on"], torch.Tensor) and isinstance(h, torch.Tensor)


def small_recurrent_model():  # type: ignore[no-untyped-def]
    """A tiny model of the registered recurrent family, its weights nudged so that the recurrent
    read-outs (which start at zero) matter; skips where no recurrent family is registered."""
    from pianomtl.models.registry import MODELS, ModelConfig, build_model

    name = next((n for n, cls in MODELS.items() if getattr(cls, "recurrent", False)), None)
    if name is None:
        pytest.skip("no recurrent model family registered")
    torch.manual_seed(0)
    model = build_model(ModelConfig(name, small=4, large=4, head=2, embed=8, hidden=8)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def test_the_recurrent_family_runs_chunked() -> None:
    model = small_recurrent_model()
    features = np.random.default_rng(5).random((45, N_BINS), dtype=np.float32)
    whole = run_model(model, features, chunk_frames=10_000)
    chunked = run_model(model, features, chunk_frames=8)
    for task in TASKS:
        np.testing.assert_allclose(chunked[task], whole[task], atol=1e-5, err_msg=task)


def test_the_recurrent_family_runs_chunked_in_onnxruntime() -> None:
    """The family's own stateful graphs (:mod:`pianomtl.models.stateful_onnx`) run in :class:`OnnxModel`."""
    stateful_onnx = pytest.importorskip("pianomtl.models.stateful_onnx")
    model = small_recurrent_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_model = OnnxModel(stateful_onnx.export_stateful_onnx(model, opset=17))
    assert onnx_model.recurrent
    features = np.random.default_rng(6).random((40, N_BINS), dtype=np.float32)
    expected = run_model(model, features, chunk_frames=10_000)
    actual = run_model(onnx_model, features, chunk_frames=9)
    for task in TASKS:
        np.testing.assert_allclose(actual[task], expected[task], atol=1e-4, err_msg=task)


# ---------------------------------------------------------------- without torch


def test_transcription_imports_and_runs_without_torch_scipy_and_co() -> None:
    code = BLOCK_OPTIONAL + (
        "import numpy as np\n"
        "import pianomtl\n"
        "samples = 0.1 * np.random.default_rng(0).standard_normal(44100).astype(np.float32)\n"
        "result = pianomtl.transcribe(samples, sr=44100)\n"
        "assert result.activations['on'].shape == (50, 88), result.activations['on'].shape\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in "
        + repr(OPTIONAL)
        + " and sys.modules[m] is not None]\n"
        "assert not loaded, loaded\n"
        "assert 'pianomtl.data.sampler' not in sys.modules\n"
        "print('ok')\n"
    )
    result = run_python(code)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train"], "pianomtl train needs the training extra: pip install 'pianomtl[train]'"),
        (["export", "--onnx", "x.onnx"], "pianomtl export needs the torch extra: pip install 'pianomtl[torch]'"),
        (
            ["transcribe", "--plot", "x.wav"],
            "pianomtl transcribe --plot needs the plot extra: pip install 'pianomtl[plot]'",
        ),
        (
            ["transcribe", "--backend", "torch", "x.wav"],
            "the torch backend needs the torch extra: pip install 'pianomtl[torch]'",
        ),
    ],
)
def test_a_missing_extra_is_named_in_one_line(argv: list[str], expected: str, tmp_path: Path) -> None:
    if "x.wav" in argv:
        import soundfile as sf

        sf.write(str(tmp_path / "x.wav"), np.zeros(4410, np.float32), SAMPLE_RATE)
    code = BLOCK_OPTIONAL + f"from pianomtl.cli import main\nsys.exit(main({argv!r}))\n"
    result = run_python(code, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == expected
    assert "Traceback" not in result.stderr


def test_cli_transcribes_without_torch(rendered_clip, tmp_path: Path) -> None:
    code = BLOCK_OPTIONAL + (
        "from pianomtl.cli import main\n"
        f"sys.exit(main(['transcribe', {str(rendered_clip.wav)!r}, '-o', {str(tmp_path)!r}, '--format', 'mid,json']))\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]
    notes = json.loads((tmp_path / "clip.json").read_text())["notes"]
    assert len(notes) >= 4 and (tmp_path / "clip.mid").is_file()


# ---------------------------------------------------------------- the bundled model as ONNX


def test_default_onnx_is_default_pt() -> None:
    from pianomtl.transcription.export import max_difference
    from pianomtl.transcription.model_file import load_model

    assert DEFAULT_ONNX.is_file(), "run scripts/export_bundle.py"
    model, decoder, metadata = load_model()
    onnx_model = OnnxModel(DEFAULT_ONNX)
    assert onnx_model.decoder == decoder
    assert onnx_model.model_config == metadata["model_config"]
    assert max_difference(model, onnx_model) < 1e-4  # stale after a new default.pt: run scripts/export_bundle.py


def test_bundled_model_runs_in_onnxruntime_by_default_on_the_cpu() -> None:
    assert default_backend() == "onnxruntime"
    assert default_backend(precision="bf16") == "torch"
    assert default_backend("run/best.pt") == "torch"
    assert Transcriber().backend == "onnxruntime"


def test_onnx_and_torch_paths_give_the_same_notes(rendered_clip) -> None:
    by_torch = transcribe(rendered_clip.wav, backend="torch")
    by_onnx = transcribe(rendered_clip.wav, backend="onnxruntime")
    for task in TASKS:
        assert float(np.abs(by_torch.activations[task] - by_onnx.activations[task]).max()) < 1e-4, task
    assert by_onnx.notes == by_torch.notes and len(by_onnx.notes) >= 4
    assert by_onnx.pedal == by_torch.pedal


# ---------------------------------------------------------------- golden output


def _rows(performance) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    notes = np.array(
        [[n.key, round(n.onset * FPS), round(n.offset * FPS), n.velocity] for n in performance.notes], dtype=np.int32
    ).reshape(-1, 4)
    pedal = np.array([[round(p.time * FPS), p.value] for p in performance.pedal], dtype=np.int32).reshape(-1, 2)
    return notes, pedal


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_golden_output_of_the_bundled_model(backend: str) -> None:
    """Stored activations and notes of the bundled model on the fixture clip (``scripts/make_golden.py``)."""
    golden = np.load(GOLDEN)
    transcriber = Transcriber(backend=backend)
    assert transcriber.decoder.to_dict() == json.loads(str(golden["decoder"]))
    activations = transcriber.activations(golden["features"])
    for task in TASKS:
        expected = golden[task].astype(np.float32)
        assert activations[task].shape == expected.shape == (150, TASK_WIDTH[task])
        np.testing.assert_allclose(activations[task], expected, atol=2e-3, err_msg=task)
    notes, pedal = _rows(decode(activations, transcriber.decoder))
    np.testing.assert_array_equal(notes, golden["notes"])
    np.testing.assert_array_equal(pedal, golden["pedal"])
    assert golden["notes"].shape[0] >= 6 and set(golden["notes"][:, 0]) <= set(range(21, 21 + N_KEYS))


def test_golden_clip_still_renders_to_the_stored_features(rendered_clip) -> None:
    features, _ = file_features(rendered_clip.wav)
    np.testing.assert_allclose(features, np.load(GOLDEN)["features"], atol=1e-3)


# ---------------------------------------------------------------- the wheel, installed without torch


def _benchmark(name: str):  # type: ignore[no-untyped-def]
    """A script of ``benchmarks/`` imported as a module."""
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    return importlib.import_module(name)


@pytest.mark.slow
def test_wheel_installs_and_transcribes_without_torch(rendered_clip, tmp_path: Path) -> None:
    startup = _benchmark("startup")  # the start-up benchmark builds and installs the lean wheel the same way
    venv = tmp_path / "venv"
    startup.lean_venv(venv, startup.build_wheel(tmp_path / "dist"))  # raises if torch came along
    size_mb = startup.folder_size_mb(venv)
    assert size_mb <= 200, f"lean install is {size_mb:.0f} MB"
    out = tmp_path / "out"
    pianomtl = str(venv / "bin" / "pianomtl")
    result = subprocess.run(
        [pianomtl, "transcribe", str(rendered_clip.flac), "-o", str(out), "--format", "mid,json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(json.loads((out / "clip.json").read_text())["notes"]) >= 4
    result = subprocess.run([pianomtl, "train"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip() == "pianomtl train needs the training extra: pip install 'pianomtl[train]'"


def test_startup_benchmark_table() -> None:
    startup = _benchmark("startup")
    rows = [
        {"config": "lean install (no torch), default: onnxruntime", "audio_s": 1.0, "median_s": 0.4},
        {"config": "full install, --backend torch", "audio_s": 1.0, "median_s": 3.0},
    ]
    for row in rows:
        row.update(min_s=row["median_s"], max_s=row["median_s"], cpu_s=0.3, runs=5)
    table = startup.format_rows(rows, {"lean_venv_mb": 190.0, "wheel_mb": 3.4, "load": 1.0})
    assert "| lean install (no torch), default: onnxruntime | 1 s | **0.40 s** |" in table
    assert table.splitlines()[-1].endswith("pass")
