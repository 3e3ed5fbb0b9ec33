"""From a transcription to sheet music: the analysis, the music21 score, MusicXML, SVG and PDF.

:func:`analyse` runs the estimators (beats and metre, key, hands) once; :func:`to_score`
builds the music21 score from it; :func:`write_musicxml`, :func:`svg_pages` and
:func:`write_pdf` write it out. :func:`meter_map` is what ``pianomtl transcribe`` gives
the MIDI writer so that the file's bars follow the music (``None`` where the beats are
not confident: the MIDI file stays at today's fixed 120 bpm).

Everything accepts either a :class:`~pianomtl.transcription.result.Transcription` or
a :class:`~pianomtl.core.midi.Performance` (a ground-truth MIDI file read with
:func:`~pianomtl.core.midi.read_midi`), since the estimators need only notes and pedal.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pianomtl.core.files import atomic_write
from pianomtl.core.midi import MeterMap, Note, PedalEvent, Performance
from pianomtl.extras import require
from pianomtl.score.beats import BeatGrid, track
from pianomtl.score.hands import separate_hands
from pianomtl.score.key import Key, estimate_key
from pianomtl.score.quantize import QuantisedNote, quantise

if TYPE_CHECKING:
    from pianomtl.transcription.result import Transcription

NOMINAL_BPM = 120.0
"""The grid of an unmetered score (and of today's MIDI files)."""

class UnmeteredWarning(UserWarning):
    """The notes show no steady beat: the score is written on a nominal grid and says so."""


@dataclass(frozen=True)
class Analysis:
    """What the estimators found in a performance; everything a score is built from."""

    notes: list[Note]
    pedal: list[PedalEvent]
    grid: BeatGrid
    key: Key
    hands: np.ndarray
    meter: MeterMap
    """Beats from time 0 to past the end (the nominal 120 bpm grid when unmetered)."""
    quantised: list[QuantisedNote]

    @property
    def metered(self) -> bool:
        return self.grid.metered


def _notes_and_pedal(source: Transcription | Performance) -> tuple[list[Note], list[PedalEvent]]:
    """Both a transcription and a performance have ``notes`` and ``pedal``."""
    return list(source.notes), list(source.pedal)


def analyse(source: Transcription | Performance, warn: bool = True) -> Analysis:
    """Beats, metre, key, hands and the quantised notes of ``source`` (numpy only: no extra needed).

    Unmetered notes (free rhythm, or fewer than four onsets) get the nominal 120 bpm grid
    in 4/4 and, with ``warn``, one :class:`UnmeteredWarning`.
    """
    notes, pedal = _notes_and_pedal(source)
    grid = track(notes)
    key = estimate_key(notes)
    end = max([n.offset for n in notes] + [p.time for p in pedal] + [1.0])
    if grid.metered:
        meter = grid.meter_map(end, key.fifths, key.minor)
    else:
        period = 60 / NOMINAL_BPM
        beats = tuple(float(b) for b in np.arange(0, end + 2 * period, period))
        meter = MeterMap(beats, 4, 0, key.fifths, key.minor)
        if warn:
            name = getattr(source, "source", None)
            what = f"{name}: " if name else ""
            found = "no notes" if not notes else f"no steady beat found (beat confidence {grid.confidence:.2f})"
            warnings.warn(
                f"{what}{found}; the score is unmetered, on a nominal {NOMINAL_BPM:.0f} bpm grid",
                UnmeteredWarning,
                stacklevel=2,
            )
    return Analysis(notes, pedal, grid, key, separate_hands(notes), meter, quantise(notes, meter))


def meter_map(source: Transcription | Performance) -> MeterMap | None:
    """The tempo map for a MIDI file that follows the music, or ``None`` where the beats are not confident."""
    analysis = analyse(source, warn=False)
    return analysis.meter if analysis.metered else None


def to_score(source: Transcription | Performance | Analysis, title: str | None = None) -> Any:
    """The music21 ``Score`` of a transcription (needs the score extra: music21).

    Two staves by hand, voices, ties, rests, key signature and spelling, pedal marks,
    dynamics; an unmetered performance gets a score on a nominal grid marked
    "senza misura" (and a warning from :func:`analyse`).
    """
    require("music21", "sheet music", "score")
    from pianomtl.score.notation import build

    analysis = source if isinstance(source, Analysis) else analyse(source)
    if title is None and not isinstance(source, (Analysis, Performance)):
        name = getattr(source, "source", None)
        title = Path(name).stem if name else None
    tempo = analysis.grid.tempo if analysis.metered else NOMINAL_BPM
    return build(
        analysis.quantised,
        analysis.hands,
        analysis.meter,
        analysis.key,
        tempo,
        analysis.pedal,
        analysis.notes,
        unmetered=not analysis.metered,
        title=title,
    )


def musicxml_text(score: Any) -> str:
    """MusicXML (partwise, uncompressed) of a music21 score, as text."""
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    return GeneralObjectExporter(score).parse().decode("utf-8")


def write_musicxml(source: Transcription | Performance | Any, path: str | Path, overwrite: bool = True) -> Path:
    """Write the score of ``source`` (or a music21 score) as MusicXML, atomically."""
    score = source if hasattr(source, "parts") else to_score(source)
    text = musicxml_text(score)
    return atomic_write(Path(path), lambda target: target.write_text(text, encoding="utf-8"), overwrite)


VEROVIO_OPTIONS = {
    "pageWidth": 2100,
    "pageHeight": 2970,
    "scale": 40,
    "adjustPageHeight": False,
    "footer": "none",
    "breaks": "auto",
}
"""A4 portrait at verovio's default resolution (tenths of a mm)."""


def verovio_toolkit(what: str = "engraving a score (svg/pdf)") -> Any:
    """A verovio toolkit that finds its fonts on any thread.

    verovio sets its fonts' folder when it is imported, for the importing thread only; a
    toolkit made on another thread (the page's server engraves on worker threads) would find
    no fonts and read no MusicXML. So the folder, inside verovio's wheel, is set each time."""
    require("verovio", what, "score")
    import verovio

    verovio.setDefaultResourcePath(str(Path(verovio.__file__).parent / "data"))
    return verovio.toolkit()


def svg_pages(source: Transcription | Performance | Any, options: dict[str, Any] | None = None) -> list[str]:
    """The score engraved by verovio: one SVG document (text) per page, rendered locally.

    For the page of ``pianomtl serve`` (and ``--format svg``): ``source`` is a
    transcription, a performance or a music21 score; ``options`` override
    :data:`VEROVIO_OPTIONS` (e.g. ``{"pageWidth": 1800, "scale": 35}``). Verovio's fonts
    ship inside its wheel; nothing is fetched.
    """
    score = source if hasattr(source, "parts") else to_score(source)
    toolkit = verovio_toolkit()
    toolkit.setOptions({**VEROVIO_OPTIONS, **(options or {})})
    if not toolkit.loadData(musicxml_text(score)):
        raise ValueError("verovio could not read the MusicXML of the score")
    return [toolkit.renderToSVG(page) for page in range(1, toolkit.getPageCount() + 1)]


def write_svg(source: Transcription | Performance | Any, path: str | Path, overwrite: bool = True) -> Path:
    """The first page as ``path`` and further pages as ``path``'s stem ``-2.svg``, ``-3.svg`` … (atomically)."""
    path = Path(path)
    pages = svg_pages(source)
    for number, page in enumerate(pages, start=1):
        target = path if number == 1 else path.with_name(f"{path.stem}-{number}{path.suffix}")
        atomic_write(target, lambda t, page=page: t.write_text(page, encoding="utf-8"), overwrite)
    return path


MUSESCORE_NAMES = ("mscore3", "musescore3", "mscore", "musescore")


def musescore() -> str | None:
    """The MuseScore command line program found on ``PATH`` (Debian's ``musescore3``), or ``None``."""
    for name in MUSESCORE_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def engrave_with_musescore(musicxml: Path, pdf: Path, timeout: float = 120) -> str:
    """Convert a MusicXML file to PDF with MuseScore headless; returns what MuseScore printed.

    Raises :class:`RuntimeError` (one line) when MuseScore is missing or fails.
    """
    program = musescore()
    if program is None:
        raise RuntimeError("PDF output needs MuseScore 3 (Debian: apt install musescore3)")
    environment = {"QT_QPA_PLATFORM": "offscreen", "HOME": tempfile.gettempdir(), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [program, "-o", str(pdf), str(musicxml)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        check=False,
    )
    if done.returncode != 0 or not pdf.exists():
        last = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(f"MuseScore could not engrave {musicxml.name}: {last[-1] if last else done.returncode}")
    return done.stdout + done.stderr


def engrave_pdf(source: Transcription | Performance | Any, target: Path) -> None:
    """Write the score of ``source`` (or a music21 score) to ``target`` as PDF through MuseScore 3 (not atomic)."""
    score = source if hasattr(source, "parts") else to_score(source)
    with tempfile.TemporaryDirectory() as folder:
        xml = Path(folder) / "score.musicxml"
        xml.write_text(musicxml_text(score), encoding="utf-8")
        produced = Path(folder) / "score.pdf"
        engrave_with_musescore(xml, produced)
        shutil.move(str(produced), str(target))


def write_pdf(source: Transcription | Performance | Any, path: str | Path, overwrite: bool = True) -> Path:
    """The score as PDF, engraved by MuseScore 3 headless (atomically)."""
    return atomic_write(Path(path), lambda target: engrave_pdf(source, target), overwrite)
