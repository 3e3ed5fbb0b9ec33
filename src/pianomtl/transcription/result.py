"""The result of a transcription and its writers (MIDI, CSV, JSON), each written atomically."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pianomtl.constants import FPS
from pianomtl.core.files import atomic_write, write_text_atomic
from pianomtl.core.midi import Note, PedalEvent, Performance, write_midi
from pianomtl.transcription.decoders import DecoderParams

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


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

    def to_midi(self, path: str | Path, overwrite: bool = True) -> Path:
        """A type 1 MIDI file: one piano track with notes and CC64 pedal events.

        Every writer here writes atomically; ``overwrite=False`` raises
        :class:`FileExistsError` rather than replace a file (checked at the final move).
        """
        path = Path(path)
        write_midi(path, self.performance, overwrite=overwrite)
        return path

    def to_csv(self, path: str | Path, overwrite: bool = True) -> Path:
        """Notes, one per row: ``onset,offset,key,velocity,name`` (seconds, MIDI key, 1–127)."""

        def write(target: Path) -> None:
            with target.open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["onset", "offset", "key", "velocity", "name"])
                for note in self.notes:
                    writer.writerow(
                        [f"{note.onset:.3f}", f"{note.offset:.3f}", note.key, note.velocity, key_name(note.key)]
                    )

        return atomic_write(path, write, overwrite)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "duration": round(self.duration, 6),
            "fps": FPS,
            "decoder": self.decoder.to_dict(),
            "reference_offsets": "decoded offsets follow the sounding note (damper release, pedal included)",
            "notes": [
                {"onset": round(n.onset, 4), "offset": round(n.offset, 4), "key": n.key, "velocity": n.velocity}
                for n in self.notes
            ],
            "pedal": [{"time": round(p.time, 4), "value": p.value} for p in self.pedal],
        }

    def to_json(self, path: str | Path, overwrite: bool = True) -> Path:
        """Notes, pedal events, duration and the decoder parameters as JSON."""
        text = json.dumps(self.to_dict(), indent=1)
        return write_text_atomic(path, text + "\n", overwrite)


def key_name(key: int) -> str:
    """Scientific pitch name of a MIDI key (60 → C4)."""
    return f"{NOTE_NAMES[key % 12]}{key // 12 - 1}"
