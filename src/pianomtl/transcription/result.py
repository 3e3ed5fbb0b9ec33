"""The result of a transcription; its writers are the output formats of :mod:`pianomtl.transcription.formats`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pianomtl.constants import FPS
from pianomtl.core.midi import Note, PedalEvent, Performance, key_name
from pianomtl.transcription import formats
from pianomtl.transcription.decoders import DecoderParams


@dataclass
class Transcription:
    """Notes and pedal of one recording, with the activations they were decoded from.

    Times are seconds from the start of the recording; ``activations`` holds the
    network's outputs at 50 fps (``on``/``int``/``off`` probabilities and ``vel``
    ``[T, 88]``, ``sus`` ``[T, 1]``) unless dropped to save memory.
    """

    notes: list[Note]
    pedal: list[PedalEvent]
    activations: dict[str, np.ndarray] | None
    duration: float
    decoder: DecoderParams = field(default_factory=DecoderParams)
    source: str | None = None
    features: np.ndarray | None = field(default=None, repr=False)
    """The ``[T, 144]`` spectrogram (kept with the activations; used by the plot)."""

    @property
    def performance(self) -> Performance:
        return Performance(list(self.notes), list(self.pedal))

    def write(self, path: str | Path, format: str | None = None, overwrite: bool = True) -> Path:
        """Write to ``path`` in ``format`` (default: by the path's extension), atomically.

        The formats are :data:`pianomtl.transcription.formats.FORMATS` (``mid``, ``csv``,
        ``json`` and any registered there); ``overwrite=False`` raises
        :class:`FileExistsError` rather than replace a file (checked at the final move).
        """
        return formats.write(self, path, format, overwrite)

    def to_midi(self, path: str | Path, overwrite: bool = True) -> Path:
        """A type 1 MIDI file: one piano track with notes and CC64 pedal events (format ``mid``).

        Every writer here writes atomically; ``overwrite=False`` raises
        :class:`FileExistsError` rather than replace a file (checked at the final move).
        """
        return formats.write(self, path, "mid", overwrite)

    def to_csv(self, path: str | Path, overwrite: bool = True) -> Path:
        """Notes, one per row: ``onset,offset,key,velocity,name`` (seconds, MIDI key, 1–127, ``C#5``)."""
        return formats.write(self, path, "csv", overwrite)

    def to_json(self, path: str | Path, overwrite: bool = True) -> Path:
        """:meth:`to_dict` as a JSON file."""
        return formats.write(self, path, "json", overwrite)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready): what the ``json`` format writes.

        Keys: ``source`` (file name or ``None``), ``duration`` (s), ``fps`` (50),
        ``decoder`` (:meth:`DecoderParams.to_dict`), ``notes`` (a list of
        ``{onset, offset, key, velocity, name}``, seconds rounded to 0.1 ms),
        ``pedal`` (a list of ``{time, value}``, CC64 0–127) and
        ``reference_offsets`` (a sentence on what an offset means: when the sound
        stops, the pedal included, not when the key is released).
        """
        return {
            "source": self.source,
            "duration": round(self.duration, 6),
            "fps": FPS,
            "decoder": self.decoder.to_dict(),
            "reference_offsets": "decoded offsets follow the sounding note (damper release, pedal included)",
            "notes": [
                {
                    "onset": round(n.onset, 4),
                    "offset": round(n.offset, 4),
                    "key": n.key,
                    "velocity": n.velocity,
                    "name": n.name,
                }
                for n in self.notes
            ],
            "pedal": [{"time": round(p.time, 4), "value": p.value} for p in self.pedal],
        }


__all__ = ["Note", "PedalEvent", "Transcription", "key_name"]
