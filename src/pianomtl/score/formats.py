"""The score's output formats, registered in :mod:`pianomtl.transcription.formats` (imported for that).

``musicxml`` (music21), ``svg`` (verovio: every page's systems on one tall SVG page)
and ``pdf`` (MuseScore 3 headless). Importing this module adds them to
:data:`~pianomtl.transcription.formats.FORMATS`, so ``pianomtl transcribe --format``,
:meth:`Transcription.write <pianomtl.transcription.result.Transcription.write>` and the
page's downloads offer them; the writers import music21/verovio only when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pianomtl.transcription.formats import FORMATS, register

if TYPE_CHECKING:
    from pianomtl.transcription.result import Transcription

ONE_PAGE = {"adjustPageHeight": True, "pageHeight": 60000}
"""verovio options for a single SVG holding the whole score (its largest page)."""


def _write_musicxml(transcription: Transcription, target: Path) -> None:
    """The score as MusicXML 4 (partwise): two staves by hand, key, metre, ties, voices, pedal, dynamics."""
    from pianomtl.score.sheet import musicxml_text, to_score

    target.write_text(musicxml_text(to_score(transcription)), encoding="utf-8")


def _write_svg(transcription: Transcription, target: Path) -> None:
    """The score engraved by verovio as one SVG (all systems on one tall page)."""
    from pianomtl.score.sheet import svg_pages

    target.write_text(svg_pages(transcription, ONE_PAGE)[0], encoding="utf-8")


def _write_pdf(transcription: Transcription, target: Path) -> None:
    """The score engraved by MuseScore 3 (headless) as PDF."""
    from pianomtl.score.sheet import engrave_pdf

    engrave_pdf(transcription, target)


if "musicxml" not in FORMATS:  # registered once, however often the module is reloaded
    register(
        "musicxml",
        media_type="application/vnd.recordare.musicxml+xml",
        description="score: two staves by hand, bars, key (MusicXML; needs the score extra)",
        aliases=("xml",),
    )(_write_musicxml)
    register("svg", media_type="image/svg+xml", description="score engraved by verovio (SVG)")(_write_svg)
    register("pdf", media_type="application/pdf", description="score engraved by MuseScore 3 (PDF)")(_write_pdf)
