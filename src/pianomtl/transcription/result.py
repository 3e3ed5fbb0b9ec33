"""The result of a transcription; its writers are the output formats of :mod:`pianomtl.transcription.formats`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pianomtl.constants import FPS
from pianomtl.core.midi import MeterMap, Note, PedalEvent, Performance, key_name
from pianomtl.transcription import formats
from pianomtl.transcription.decoders import DecoderOptions, DecoderParams, decode, merge_decoder

if TYPE_CHECKING:
    import pandas


@dataclass
class Transcription:
    """Notes and pedal of one recording, with the activations they were decoded from.

    What :func:`pianomtl.transcribe` returns. Times are seconds from the start of the recording.

    * ``notes`` — :class:`~pianomtl.core.midi.Note` tuples ``(key, onset, offset, velocity)``
      sorted by onset, each with ``.name`` (``"C#5"``) and ``.duration`` (s).
    * ``pedal`` — :class:`~pianomtl.core.midi.PedalEvent` tuples ``(time, value)``, CC64 0–127.
    * ``activations`` — the network's outputs at 50 fps (``on``/``int``/``off``
      probabilities and ``vel`` ``[T, 88]``, ``sus`` ``[T, 1]``), or ``None`` when dropped
      to save memory; :meth:`redecode` needs them.
    * ``duration`` (s), ``decoder`` (the :class:`DecoderParams` used), ``source`` (a file name or ``None``).

    Write it with :meth:`write` (any format of :mod:`pianomtl.transcription.formats`),
    :meth:`to_midi`, :meth:`to_csv`, :meth:`to_json`; read it as data with
    :meth:`to_dict` or :meth:`to_dataframe`.
    """

    notes: list[Note]
    pedal: list[PedalEvent]
    activations: dict[str, np.ndarray] | None
    duration: float
    decoder: DecoderParams = field(default_factory=DecoderParams)
    source: str | None = None
    features: np.ndarray | None = field(default=None, repr=False)
    """The ``[T, 144]`` spectrogram (kept with the activations; used by the plot)."""
    meter: MeterMap | None = field(default=None, repr=False)
    """Beats, bars and key for the MIDI file (a tempo map that follows the music); ``None``: fixed 120 bpm.
    ``pianomtl transcribe`` sets it from :func:`pianomtl.score.meter_map` unless ``--no-tempo-map``."""

    @property
    def performance(self) -> Performance:
        """Notes and pedal as a :class:`~pianomtl.core.midi.Performance` (what the MIDI writer takes)."""
        return Performance(list(self.notes), list(self.pedal))

    def redecode(self, decoder: DecoderOptions = None, **options: Any) -> Transcription:
        """The same recording decoded again from the kept activations with other decoder options.

        Fast (no audio, no network): try thresholds on one result. ``decoder`` and
        ``options`` work as for :class:`~pianomtl.transcription.pipeline.Transcriber`:
        they change only the options they name, starting from this result's decoder.
        Needs the activations (not dropped with ``keep_activations=False``).

        >>> import numpy as np
        >>> acts = {t: np.zeros((100, 88), np.float32) for t in ("on", "int", "off", "vel")}
        >>> acts["sus"] = np.zeros((100, 1), np.float32)
        >>> acts["on"][20:23, 39] = [0.6, 0.7, 0.6]; acts["int"][20:60, 39] = 0.9; acts["vel"][21, 39] = 0.5
        >>> result = Transcription(notes=[], pedal=[], activations=acts, duration=2.0)
        >>> [(n.name, n.onset, round(n.duration, 2), n.velocity) for n in result.redecode().notes]
        [('C4', 0.42, 0.78, 64)]
        >>> result.redecode(onset_threshold=0.8).notes
        []
        """
        if self.activations is None:
            raise ValueError("this transcription kept no activations to decode again (keep_activations=False)")
        params = merge_decoder(self.decoder, decoder, **options)
        performance = decode(self.activations, params)
        return dataclasses.replace(self, notes=performance.notes, pedal=performance.pedal, decoder=params)

    def to_dataframe(self) -> pandas.DataFrame:
        """The notes as a :class:`pandas.DataFrame`: ``onset, offset, duration, key, name, velocity`` (one row each).

        Needs pandas (not a dependency of pianomtl; ``pip install pandas``).
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Transcription.to_dataframe needs pandas: pip install pandas") from None
        columns = ["onset", "offset", "duration", "key", "name", "velocity"]
        rows = [(n.onset, n.offset, n.duration, n.key, n.name, n.velocity) for n in self.notes]
        return pd.DataFrame(rows, columns=columns)

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
