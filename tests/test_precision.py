"""bfloat16 paths, exercised on the CPU: ``transcribe --precision bf16`` and ``train --amp``.

On a GPU these are the fast paths (``--device cuda``); here the same autocast code runs
on the CPU so that CI covers it without a GPU.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pianomtl.constants import N_BINS, TASKS
from pianomtl.core.devices import bf16_is_native
from pianomtl.models.registry import ModelConfig, build_model
from pianomtl.transcription.inference import PRECISIONS, run_model
from pianomtl.transcription.pipeline import Transcriber

MODEL = ModelConfig("hard", small=4, large=8, head=2)


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


@pytest.fixture
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(MODEL).eval()


def test_bf16_activations_are_close_to_fp32_and_chunking_stays_seam_free(model: torch.nn.Module) -> None:
    features = np.random.default_rng(0).random((230, N_BINS), dtype=np.float32) * 2
    exact = run_model(model, features, chunk_frames=100)
    fast = run_model(model, features, chunk_frames=100, precision="bf16")
    whole = run_model(model, features, chunk_frames=1000, precision="bf16")
    for task in TASKS:
        assert fast[task].dtype == np.float32 and fast[task].shape == exact[task].shape
        assert np.abs(fast[task] - exact[task]).max() < 0.05, task  # bf16 keeps ~3 significant digits
        np.testing.assert_array_equal(fast[task], whole[task])  # chunks still see exact context
    assert any(np.abs(fast[t] - exact[t]).max() > 0 for t in TASKS), "bf16 changed nothing: autocast inactive?"
    assert PRECISIONS == ("fp32", "bf16")
    # native bf16 on a CPU is AVX512-BF16 or AMX, as Linux reports the CPU's features
    flags = set(Path("/proc/cpuinfo").read_text().split())
    assert bf16_is_native("cpu") is bool(flags & {"avx512_bf16", "amx_tile"})
    assert bf16_is_native("meta") is False


def test_precision_is_checked(model: torch.nn.Module) -> None:
    features = np.zeros((20, N_BINS), np.float32)
    with pytest.raises(ValueError, match="precision"):
        run_model(model, features, precision="fp16")
    with pytest.raises(ValueError, match="precision"):
        Transcriber(model, precision="int8")
    with pytest.raises(ValueError, match="torch backend"):
        Transcriber(model, backend="onnxruntime", precision="bf16")
    assert Transcriber(model, precision="bf16").precision == "bf16"


def test_transcriber_bf16_on_an_array(model: torch.nn.Module) -> None:
    samples = np.random.default_rng(1).normal(0, 0.1, 44100).astype(np.float32)
    exact = Transcriber(model)(samples, sr=44100)
    fast = Transcriber(model, precision="bf16")(samples, sr=44100)
    assert exact.activations is not None and fast.activations is not None
    assert np.abs(exact.activations["on"] - fast.activations["on"]).max() < 0.05
    np.testing.assert_array_equal(exact.features, fast.features)  # the spectrogram stays float32


def test_amp_training_step_runs_on_cpu(tmp_path: Path) -> None:
    from pianomtl.train.loop import Run, TrainConfig
    from test_distributed import random_cache

    cache = random_cache(tmp_path / "cache")
    config = TrainConfig(
        cache=str(cache), out=str(tmp_path / "run"), model=MODEL.to_dict(), batch_size=2, sequence_frames=8, amp=True
    )
    run = Run(config, seed=0, resume=False)
    before = [p.detach().clone() for p in run.model.parameters()]
    stats = [run.train_step() for _ in range(2)]
    assert all(math.isfinite(s["loss"]) for s in stats)
    assert all(p.dtype == torch.float32 for p in run.model.parameters())  # autocast, not a bf16 model
    assert any(not torch.equal(a, b) for a, b in zip(before, run.model.parameters(), strict=True))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bf16_runs_the_sequence_families_on_any_cpu(cell: str) -> None:
    """oneDNN has no bf16 LSTM/GRU without AVX512-BF16/AMX: there the recurrent layers run in float32."""
    torch.manual_seed(0)
    model = build_model(ModelConfig("hard+keyrnn", small=4, large=8, head=2, embed=6, hidden=5, cell=cell)).eval()
    features = np.random.default_rng(1).random((120, N_BINS), dtype=np.float32) * 2
    exact = run_model(model, features, chunk_frames=50)
    fast = run_model(model, features, chunk_frames=50, precision="bf16")  # raised on AVX2 CPUs before
    for task in TASKS:
        assert np.abs(fast[task] - exact[task]).max() < 0.05, task
    recurrent = model.key_rnn
    assert isinstance(recurrent, torch.nn.RNNBase) and set(recurrent.state_dict()) == set(
        getattr(torch.nn, cell.upper())(5, 5, batch_first=True).state_dict()
    )  # the same parameters as torch's own layer: checkpoints load as before
