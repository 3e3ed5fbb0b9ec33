"""Sheet music from a transcription: beats, bars, key, two hands, MusicXML, SVG/PDF (issue 26).

The estimators (:mod:`~pianomtl.score.beats`, :mod:`~pianomtl.score.key`,
:mod:`~pianomtl.score.hands`, :mod:`~pianomtl.score.quantize`) need only numpy; the
score objects need music21 and the engraving verovio (the ``score`` extra). See
docs/score.md for the methods and their measurements.
"""

from pianomtl.score import formats as _formats  # noqa: F401  (registers musicxml, svg and pdf in the format table)
from pianomtl.score.sheet import (
    Analysis,
    UnmeteredWarning,
    analyse,
    meter_map,
    musicxml_text,
    svg_pages,
    to_score,
    write_musicxml,
    write_pdf,
    write_svg,
)

__all__ = [
    "Analysis",
    "UnmeteredWarning",
    "analyse",
    "meter_map",
    "musicxml_text",
    "svg_pages",
    "to_score",
    "write_musicxml",
    "write_pdf",
    "write_svg",
]
