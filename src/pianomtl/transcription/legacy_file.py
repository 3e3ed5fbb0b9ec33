"""Reading model files of the older format without running anything they carry.

Why this exists: checkpoints written before model files held only plain data kept
numpy random-number states (arrays, dtypes, numpy scalars), which the safe loader of
:mod:`pianomtl.transcription.model_file` refuses. Converting them used to mean
unpickling in full, and a crafted "old checkpoint" could then run any code it named.

:func:`read_legacy_file` instead uses torch's restricted (``weights_only``) unpickler
with a short allowlist added for the duration of the call: exactly the objects a
pickled numpy array, dtype or scalar is rebuilt from. torch's own allowlist already
covers tensors (its storage and rebuild functions), dicts, ordered dicts, lists,
tuples, strings and numbers. Anything else a file names — ``os.system``, ``exec``,
``builtins.eval``, any class — is refused before it is called, so nothing in the file
runs. Object, structured, string and date arrays are refused too (their dtype classes
are not on the list): a legacy checkpoint never held them.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


class LegacyFileRefused(ValueError):
    """The file names a Python object outside the allowlist; nothing in it was run."""


SAFE_DTYPE_CLASSES = (
    "BoolDType",
    "Int8DType",
    "Int16DType",
    "Int32DType",
    "Int64DType",
    "UInt8DType",
    "UInt16DType",
    "UInt32DType",
    "UInt64DType",
    "Float16DType",
    "Float32DType",
    "Float64DType",
    "LongDoubleDType",
    "Complex64DType",
    "Complex128DType",
)
"""numpy's dtype classes a legacy checkpoint's arrays may have (numbers only): unpickling a
dtype sets its state, which torch's unpickler allows only for listed classes."""


def _numpy_allowlist() -> list[Any]:
    """The numpy objects a pickled array, dtype or scalar is rebuilt from, under each name a file may use.

    numpy 2 pickles ``numpy._core.multiarray._reconstruct``; files written with numpy 1
    name ``numpy.core.multiarray._reconstruct`` — the same function, listed under both.
    """
    from numpy._core.multiarray import _reconstruct, scalar

    allowed: list[Any] = [np.ndarray, np.dtype]
    for function in (_reconstruct, scalar):
        allowed.append(function)
        allowed.append((function, f"numpy.core.multiarray.{function.__name__}"))
    import numpy.dtypes

    allowed.extend(getattr(numpy.dtypes, name) for name in SAFE_DTYPE_CLASSES if hasattr(numpy.dtypes, name))
    return allowed


def _refused_name(error: BaseException) -> str | None:
    """The object torch's unpickler refused, from its message (``GLOBAL posix.system``, ``got <class 'x'>``)."""
    text = str(error)
    match = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"got <class '([\w.]+)'>", text)
    return match.group(1) if match else None


def read_legacy_file(path: str | Path) -> Any:
    """What an older pianomtl model file holds, unpickled with the allowlist above (loaded on the CPU).

    Raises :class:`LegacyFileRefused` (one line, naming the file and the object) for a
    file that names anything outside the allowlist — nothing in it has run — and
    :class:`ValueError` for a file that is not a torch model file at all.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(_numpy_allowlist()):
            warnings.simplefilter("ignore")  # numpy.core's deprecation, torch's notes on old formats
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        name = _refused_name(error)
        what = f"it names the Python object {name}" if name else "it names Python objects beyond arrays and numbers"
        raise LegacyFileRefused(f"{path}: refused, not a legacy model file ({what}; nothing in it was run)") from None
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"{path}: not a readable model file ({first})") from None
    except Exception as error:  # a damaged file can make the loader raise anything
        raise ValueError(f"{path}: not a readable model file ({type(error).__name__})") from None
