"""The output formats of a transcription: one table, read by every place that writes one.

``pianomtl transcribe --format``'s choices, :meth:`Transcription.write
<pianomtl.transcription.result.Transcription.write>`, the ``to_midi``/``to_csv``/``to_json``
methods and the page's downloads (``/api/sessions/{id}/download/{name}`` and the
``downloads`` list of ``/api/config``) all come from :data:`FORMATS`, so a format is
written in one place.

**Adding a format** is one decorated function, here or in any module imported by this
one's last line::

    @register("musicxml", media_type="application/vnd.recordare.musicxml+xml",
              description="score (MusicXML)", aliases=("xml",))
    def write_musicxml(transcription: Transcription, target: Path) -> None:
        target.write_text(...)

The function gets the transcription and a temporary path beside the destination; it
writes the whole file there and returns nothing. :func:`write` moves the finished file
into place atomically (:func:`pianomtl.core.files.atomic_write`), so a failed writer
never leaves half a file nor replaces a good one. The format's ``name`` is its file
extension; ``aliases`` are other spellings accepted on the command line (``midi``).
A writer that needs an optional package imports it inside the function and raises
:class:`~pianomtl.extras.MissingExtra`-style one-line errors, so the table itself costs
nothing to import.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pianomtl.core.files import atomic_write
from pianomtl.core.midi import write_midi

if TYPE_CHECKING:
    from pianomtl.transcription.result import Transcription

Writer = Callable[["Transcription", Path], None]
"""Write a whole transcription to the (temporary) path given; :func:`write` makes it atomic."""


@dataclass(frozen=True)
class OutputFormat:
    """One way to write a transcription to a file."""

    name: str
    """The file extension without the dot (``mid``); the name on the command line and in download URLs."""
    media_type: str
    """The HTTP ``Content-Type`` of a download."""
    description: str
    """A few words for ``--help`` and the page."""
    writer: Writer
    aliases: tuple[str, ...] = ()
    """Other spellings accepted by :func:`lookup` (``midi`` for ``mid``)."""

    @property
    def suffix(self) -> str:
        return f".{self.name}"


FORMATS: dict[str, OutputFormat] = {}
"""Every format by name, in the order registered (the order of ``--help`` and the page's buttons)."""


def register(
    name: str, *, media_type: str, description: str, aliases: tuple[str, ...] = ()
) -> Callable[[Writer], Writer]:
    """Add the decorated writer to :data:`FORMATS` as ``name`` (see the module's docstring)."""

    def add(writer: Writer) -> Writer:
        taken = {alias for f in FORMATS.values() for alias in (f.name, *f.aliases)}
        clash = [n for n in (name, *aliases) if n in taken]
        if clash:
            raise ValueError(f"output format {clash[0]!r} is registered twice")
        FORMATS[name] = OutputFormat(name, media_type, description, writer, tuple(aliases))
        return writer

    return add


def lookup(name: str) -> OutputFormat:
    """The format called ``name`` or one of its aliases (case and a leading dot ignored).

    Raises :class:`ValueError` with a one-line message listing the choices.
    """
    key = name.strip().lower().lstrip(".")
    for fmt in FORMATS.values():
        if key == fmt.name or key in fmt.aliases:
            return fmt
    raise ValueError(f"unknown output format {name!r}; choose from {', '.join(FORMATS)}")


def for_path(path: str | Path) -> OutputFormat:
    """The format a file name's extension asks for (``take.mid`` → ``mid``)."""
    suffix = Path(path).suffix
    try:
        return lookup(suffix)
    except ValueError:
        found = f"unknown extension {suffix}" if suffix else "no extension"
        raise ValueError(f"{path}: {found} to choose an output format by; choose from {', '.join(FORMATS)}") from None


def write(transcription: Transcription, path: str | Path, fmt: str | None = None, overwrite: bool = True) -> Path:
    """Write ``transcription`` to ``path`` as ``fmt`` (default: by the path's extension), atomically.

    ``overwrite=False`` raises :class:`FileExistsError` rather than replace a file
    (checked at the final move).
    """
    chosen = lookup(fmt) if fmt is not None else for_path(path)
    return atomic_write(Path(path), lambda target: chosen.writer(transcription, target), overwrite)


# -- the formats ------------------------------------------------------------------------


@register("mid", media_type="audio/midi", description="MIDI file: notes and CC64 pedal", aliases=("midi",))
def _write_midi(transcription: Transcription, target: Path) -> None:
    """A type 1 MIDI file: one piano track with notes and CC64 pedal events."""
    write_midi(target, transcription.performance, meter=getattr(transcription, "meter", None))


@register("csv", media_type="text/csv", description="notes, one per row: onset,offset,key,velocity,name")
def _write_csv(transcription: Transcription, target: Path) -> None:
    """Notes, one per row: ``onset,offset,key,velocity,name`` (seconds, MIDI key, 1–127, "C#5")."""
    with target.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["onset", "offset", "key", "velocity", "name"])
        for note in transcription.notes:
            writer.writerow([f"{note.onset:.3f}", f"{note.offset:.3f}", note.key, note.velocity, note.name])


@register("json", media_type="application/json", description="notes, pedal and decoder settings (to_dict)")
def _write_json(transcription: Transcription, target: Path) -> None:
    """:meth:`Transcription.to_dict <pianomtl.transcription.result.Transcription.to_dict>` as JSON."""
    target.write_text(json.dumps(transcription.to_dict(), indent=1) + "\n")
