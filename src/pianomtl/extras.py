"""What each optional extra of the package installs, and the one-line message when one is missing.

``pip install pianomtl`` is the lean transcriber: numpy, soundfile, soxr, mido and
onnxruntime (the bundled model runs as ONNX). The extras add the rest:

* ``[torch]`` — the torch backend (any device, bf16), ``.pt`` model files, ``pianomtl export``;
* ``[plot]`` — ``transcribe --plot`` (matplotlib);
* ``[web]`` — ``pianomtl serve``, the page for musicians (Starlette, uvicorn, python-multipart, websockets);
* ``[cluster]`` — ``pianomtl batch``, archives on Ray Data (ray[data], pyarrow);
* ``[score]`` — sheet music: ``transcribe --format musicxml,svg`` (music21, verovio; PDF also needs MuseScore 3);
* ``[train]`` — corpus rendering, feature caches, training, sweeps, evaluation, the demo
  (torch, scipy, pyfluidsynth, mir_eval, TensorBoard, tqdm, onnx, matplotlib);
* ``[dev]`` — ``[train]`` plus the test and lint tools.

Nothing here imports an optional package: :func:`available` only looks it up.
"""

from __future__ import annotations

import importlib.util

EXTRA_NAMES: dict[str, str] = {
    "torch": "torch",
    "train": "training",
    "plot": "plot",
    "web": "web",
    "cluster": "cluster",
    "score": "score",
    "dev": "development",
}
"""Extra → how messages name it ("needs the training extra")."""

PACKAGE_EXTRA: dict[str, str] = {
    "torch": "torch",
    "onnx": "torch",
    "scipy": "train",
    "mir_eval": "train",
    "fluidsynth": "train",
    "tensorboard": "train",
    "tqdm": "train",
    "matplotlib": "plot",
    "starlette": "web",
    "uvicorn": "web",
    "python_multipart": "web",
    "multipart": "web",
    "websockets": "web",
    "ray": "cluster",
    "pyarrow": "cluster",
    "music21": "score",
    "verovio": "score",
    "pytest": "dev",
    "hypothesis": "dev",
}
"""Top-level module → the smallest extra that installs it."""

EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "torch": ("torch", "onnx"),
    "plot": ("matplotlib",),
    "web": ("starlette", "uvicorn", "python_multipart"),
    "cluster": ("ray", "pyarrow"),
    "train": ("torch", "scipy", "mir_eval", "fluidsynth", "tqdm"),
}
"""What a command that needs an extra checks for before it starts (the extra's essentials)."""


class MissingExtraError(ImportError):
    """An optional extra is not installed; the message is one line saying which to install."""


def available(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def torch_available() -> bool:
    return available("torch")


def install_hint(extra: str) -> str:
    return f"pip install 'pianomtl[{extra}]'"


def message(what: str, extra: str) -> str:
    """``"<what> needs the <name> extra: pip install 'pianomtl[<extra>]'"``."""
    return f"{what} needs the {EXTRA_NAMES.get(extra, extra)} extra: {install_hint(extra)}"


def require(module: str, what: str, extra: str | None = None) -> None:
    """Raise :class:`MissingExtraError` naming the extra if ``module`` is not installed."""
    if not available(module):
        raise MissingExtraError(message(what, extra or PACKAGE_EXTRA.get(module.split(".")[0], "train")))


def missing_modules(extra: str) -> list[str]:
    """The essential modules of ``extra`` (:data:`EXTRA_MODULES`) that are not installed."""
    return [module for module in EXTRA_MODULES.get(extra, ()) if not available(module)]


def extra_for(error: ImportError) -> str | None:
    """The extra that provides the module an ``ImportError`` is about (``None``: not an optional one)."""
    name = (getattr(error, "name", None) or "").split(".")[0]
    return PACKAGE_EXTRA.get(name)
