"""pianomtl: polyphonic piano transcription by multitask learning.

The public entry points are :func:`pianomtl.transcribe` (audio → notes, velocities
and pedal), :class:`pianomtl.Stream` (live: audio blocks → note and pedal events as
they are decided) and the ``pianomtl`` command line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from pianomtl.transcription.result import Transcription
    from pianomtl.transcription.stream import Stream


def transcribe(audio: Any, sr: float | None = None, **options: Any) -> Transcription:
    """Transcribe a recording (path or sample array) with the bundled model.

    Imported lazily so that ``import pianomtl`` stays cheap.
    """
    from pianomtl.transcription.pipeline import transcribe as _transcribe

    return _transcribe(audio, sr=sr, **options)


def __getattr__(name: str) -> Any:
    """``pianomtl.Stream`` (live transcription), imported on first use."""
    if name == "Stream":
        from pianomtl.transcription.stream import Stream

        return Stream
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Stream", "__version__", "transcribe"]
