"""pianomtl: polyphonic piano transcription by multitask learning.

The public Python API (``help()`` on each shows its options):

* :func:`transcribe` — a recording (path, bytes, file object or samples) → :class:`Transcription`;
* :class:`Transcriber` — the same with the model loaded once, for many recordings;
* :class:`Stream` — live: audio blocks in, note and pedal events (:class:`StreamEvent`) out as they are decided;
* :class:`Transcription` — notes, pedal and activations; ``redecode``, ``write``, ``to_dict``, ``to_dataframe``;
* :class:`Note`, :class:`PedalEvent` — the result's notes (``.name``, ``.duration``) and CC64 events;
* :class:`DecoderParams` — the decoder's options with their ranges (``DecoderParams.limits()``);
* :data:`FORMATS` — the output formats (``mid``, ``csv``, ``json``, …).

>>> import pianomtl
>>> pianomtl.DecoderParams().replace(onset_threshold=0.4).onset_threshold
0.4
>>> sorted(pianomtl.FORMATS)[:3]
['csv', 'json', 'mid']

The names are imported on first use, so ``import pianomtl`` stays cheap (no numpy,
no model) until one is touched; the ``pianomtl`` command line is :mod:`pianomtl.cli`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports on first use
    from pianomtl.transcription.decoders import DecoderParams
    from pianomtl.transcription.formats import FORMATS
    from pianomtl.transcription.pipeline import Transcriber, transcribe
    from pianomtl.transcription.result import Note, PedalEvent, Transcription
    from pianomtl.transcription.stream import Stream, StreamEvent

_PUBLIC = {
    "transcribe": "pianomtl.transcription.pipeline",
    "Transcriber": "pianomtl.transcription.pipeline",
    "Stream": "pianomtl.transcription.stream",
    "StreamEvent": "pianomtl.transcription.stream",
    "Transcription": "pianomtl.transcription.result",
    "Note": "pianomtl.transcription.result",  # defined in core.midi, re-exported with the result
    "PedalEvent": "pianomtl.transcription.result",
    "DecoderParams": "pianomtl.transcription.decoders",
    "FORMATS": "pianomtl.transcription.formats",
}
"""Each public name and the module that defines it (the one definition: ``help`` shows its real signature)."""


def __getattr__(name: str) -> Any:
    """The public names of :data:`_PUBLIC`, imported on first use (PEP 562)."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])


__all__ = [
    "FORMATS",
    "DecoderParams",
    "Note",
    "PedalEvent",
    "Stream",
    "StreamEvent",
    "Transcriber",
    "Transcription",
    "__version__",
    "transcribe",
]
