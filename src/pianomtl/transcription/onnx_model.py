"""Running an exported network in onnxruntime, and the bundled model as ONNX: no torch needed.

:class:`OnnxModel` wraps an onnxruntime session of a graph written by
:func:`pianomtl.transcription.export.export_onnx`: input ``features``
``[batch, T+10, 144]``, outputs the five heads named as :data:`~pianomtl.constants.TASKS`
(``on``/``int``/``off`` as logits, ``vel``/``sus`` as values); the model configuration,
decoder parameters and metadata travel in the file's ``metadata_props``. A recurrent
model's graph (:mod:`pianomtl.models.stateful_onnx`) also has state inputs (every input
besides ``features``) and outputs named ``next_<state>``: the wrapper then offers the
torch model's ``initial_state`` / ``forward_with_state``, and
:func:`~pianomtl.transcription.inference.run_model` carries the state across chunks.

The bundled model ships as ``assets/default.onnx`` beside ``assets/default.pt``
(``scripts/export_bundle.py`` writes it from the ``.pt``): the lean install (no torch)
transcribes with it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from pianomtl.constants import ASSETS, ONNX_INPUT, ONNX_NEXT, ONNX_STATE_BATCH, TASKS
from pianomtl.transcription.decoders import DecoderParams

METADATA_DECODER = "pianomtl.decoder"
METADATA_CONFIG = "pianomtl.model_config"
METADATA_INFO = "pianomtl.metadata"

DEFAULT_ONNX = ASSETS / "default.onnx"


class ModelRunError(RuntimeError):
    """The network itself failed to run (a graph that asks for more memory than exists, a broken
    node): one line naming the model. Every input would fail the same way, so callers stop rather
    than go on to the next file."""


def _run_failure(name: str, error: BaseException) -> ModelRunError:
    """onnxruntime's multi-part failure text as one line: the node's own status message, and plainly
    when it was an allocation (its message quotes the arena's C++ signature)."""
    import re

    text = " ".join(str(error).split())
    allocation = re.search(r"Failed to allocate memory for requested buffer of size (\d+)", text)
    if allocation:
        size = int(allocation.group(1))
        return ModelRunError(
            f"{name}: the model asks for more memory than there is ({size / 1e9:,.0f} GB for one buffer); "
            "it is not a usable pianomtl model"
        )
    status = text.split("Status Message:", 1)[-1].strip() or type(error).__name__
    return ModelRunError(f"{name}: the model failed to run ({status[:300]})")


def default_onnx_path() -> Path:
    """Where the bundled model's ONNX graph lives (``scripts/export_bundle.py`` writes it)."""
    return DEFAULT_ONNX


def has_default_onnx() -> bool:
    return DEFAULT_ONNX.is_file()


class OnnxModel:
    """An onnxruntime session that behaves like the torch model for inference.

    ``model(x)`` takes ``[B, T+10, 144]`` (a numpy array or a torch tensor) and returns
    a dict ``{task: [B, T, width]}`` of the same kind (numpy for numpy, torch for
    torch), so :func:`pianomtl.transcription.inference.run_model` runs it without torch.
    ``decoder``, ``model_config`` and ``metadata`` come from the file's metadata.
    Recurrent graphs: ``recurrent`` is true, ``state_names`` lists the state inputs and
    :meth:`initial_state` / :meth:`forward_with_state` carry the state.
    """

    training = False
    causal = True

    def __init__(
        self,
        source: str | Path | bytes,
        threads: int = 0,
        providers: list[str] | None = None,
        spinning: bool = False,
    ) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 4  # fatal only: failures arrive as exceptions, made one line below
        # Idle worker threads sleep instead of spinning: on a shared 2-core machine spinning
        # cost 25-35 % more wall and CPU time (1 s and 60 s of audio, measured under load).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        self.path = None if isinstance(source, bytes) else str(source)
        name = self.path or "<onnx bytes>"
        try:
            self.session = onnxruntime.InferenceSession(
                source if isinstance(source, bytes) else str(source),
                sess_options=options,
                providers=providers or ["CPUExecutionProvider"],
            )
        except Exception as error:  # onnxruntime raises its own exception types
            raise ValueError(f"{name}: not a usable ONNX model ({str(error).strip().splitlines()[0]})") from None
        inputs = self.session.get_inputs()
        if ONNX_INPUT not in [i.name for i in inputs]:
            raise ValueError(f"{name}: ONNX model has no input {ONNX_INPUT!r}")
        self._state_inputs = [i for i in inputs if i.name != ONNX_INPUT]
        self.state_names: tuple[str, ...] = tuple(i.name for i in self._state_inputs)
        self.recurrent = bool(self.state_names)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._outputs = [*TASKS, *(ONNX_NEXT + s for s in self.state_names)]
        missing = [t for t in self._outputs if t not in self.output_names]
        if missing:
            raise ValueError(f"{name}: ONNX model lacks outputs {missing}")
        properties = self.session.get_modelmeta().custom_metadata_map
        try:
            self.decoder = DecoderParams.from_dict(json.loads(properties.get(METADATA_DECODER, "{}")))
            self.model_config = json.loads(properties.get(METADATA_CONFIG, "null"))
            self.metadata: dict[str, Any] = json.loads(properties.get(METADATA_INFO, "{}"))
        except (ValueError, TypeError) as error:
            raise ValueError(f"{name}: unreadable pianomtl metadata ({error})") from None

    def initial_state(self, batch: int = 1) -> tuple[np.ndarray, ...]:
        """Zero state for ``batch`` sequences (``[directions, batch · rows, hidden]`` each, from the graph).

        ``rows`` (state rows per sequence: 1, or 88 for a layer run on every key) is read
        from the name of the graph's axis 1 (:data:`~pianomtl.constants.ONNX_STATE_BATCH`).
        """
        return tuple(np.zeros(_state_shape(i.shape, batch), dtype=np.float32) for i in self._state_inputs)

    def forward_with_state(self, features: Any, state: tuple[Any, ...]) -> tuple[dict[str, Any], tuple[Any, ...]]:
        """``(outputs, state after the last frame)`` for a chunk, as the torch model's method."""
        if len(state) != len(self.state_names):
            raise ValueError(f"state must be a tuple of {len(self.state_names)} arrays {self.state_names}")
        feeds = {ONNX_INPUT: _array(features)}
        feeds.update({name: _array(s) for name, s in zip(self.state_names, state, strict=True)})
        try:
            values = self.session.run(self._outputs, feeds)
        except Exception as error:  # onnxruntime's own exception types (Fail, RuntimeException, ...)
            raise _run_failure(self.path or "<onnx bytes>", error) from None
        torch = _torch_if_tensor(features)
        if torch is not None:
            values = [torch.from_numpy(v) for v in values]
        return dict(zip(TASKS, values[: len(TASKS)], strict=True)), tuple(values[len(TASKS) :])

    def __call__(self, features: Any) -> dict[str, Any]:
        if self.recurrent:
            return self.forward_with_state(features, self.initial_state(_array(features).shape[0]))[0]
        return self.forward_with_state(features, ())[0]

    # the parts of the nn.Module interface inference code touches
    def eval(self) -> OnnxModel:
        return self

    def train(self, mode: bool = True) -> OnnxModel:
        return self

    def to(self, *args: Any, **kwargs: Any) -> OnnxModel:
        return self


def _state_shape(graph_shape: list[Any], batch: int) -> list[int]:
    """A state input's concrete shape for ``batch`` sequences (module :meth:`OnnxModel.initial_state`)."""
    shape = []
    for axis, size in enumerate(graph_shape):
        if axis == 1:
            name = str(size)
            rows = name[len(ONNX_STATE_BATCH) :] if name.startswith(ONNX_STATE_BATCH) else "1"
            shape.append(batch * (int(rows) if rows.isdigit() else 1))
        else:
            shape.append(size if isinstance(size, int) else 1)
    return shape


def _torch_if_tensor(value: Any) -> Any:
    """The torch module if ``value`` is a torch tensor (torch is then already imported), else ``None``."""
    torch = sys.modules.get("torch")
    return torch if torch is not None and isinstance(value, torch.Tensor) else None


def _array(value: Any) -> np.ndarray:
    if _torch_if_tensor(value) is not None:
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(value, dtype=np.float32)


def load_onnx_model(path: str | Path | None = None, threads: int = 0) -> tuple[OnnxModel, DecoderParams, dict]:
    """``(model, decoder parameters, metadata)`` of an ``.onnx`` file (``None``: the bundled one).

    Raises ``ValueError`` (one line naming the file) for a missing or unusable file.
    """
    path = Path(path) if path is not None else DEFAULT_ONNX
    if not path.is_file():
        hint = " (run scripts/export_bundle.py to write it from default.pt)" if path == DEFAULT_ONNX else ""
        raise ValueError(f"{path}: model file not found{hint}")
    model = OnnxModel(path, threads=threads)
    metadata = {**model.metadata, "format": "onnx", "path": str(path)}
    if model.model_config is not None:
        metadata["model_config"] = model.model_config
    return model, model.decoder, metadata


__all__ = ["DEFAULT_ONNX", "OnnxModel", "default_onnx_path", "has_default_onnx", "load_onnx_model"]
