"""The corpus's timbres: which instrument each name renders with, and the ``--recipe`` shares.

A :class:`Timbre` names a sound source (a SoundFont for FluidSynth, a TiMidity ``.cfg``,
or the project's own piano engine, :mod:`pianomtl.synthesis.piano`) and the lowest velocity
at which it still sounds; :mod:`pianomtl.synthesis.engines` renders with it and
:mod:`pianomtl.synthesis.corpus` plans the corpus over the names in :data:`TIMBRES`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from pianomtl.synthesis.sources import AssetError


@dataclass(frozen=True)
class Timbre:
    name: str
    path: str  # a SoundFont, "salamander" (built at set-up) or, for TiMidity, its .cfg
    bank: int = 0
    program: int = 0
    min_velocity: int = 1  # lowest velocity that still sounds (the corpus clamps velocities to it)
    gain: float = 0.5
    engine: str = "fluidsynth"  # or "timidity" (its own envelopes), "piano" (pianomtl.synthesis.piano) or "modal"
    package: str = ""  # the Debian package(s) that install it (named in the missing-file error)

    def soundfont(self) -> Path | None:
        """The file the engine plays (a one-line ``AssetError`` if missing); ``None`` for the modal piano (no file)."""
        if self.engine == "modal":
            return None
        if self.engine == "piano":  # the Salamander samples: the built SF2 and the release samples
            from pianomtl.synthesis.sources import require_salamander_release, require_salamander_sf2

            require_salamander_release()
            return require_salamander_sf2()
        if self.path == "salamander":
            from pianomtl.synthesis.sources import require_salamander_sf2

            return require_salamander_sf2()
        path = Path(self.path)
        missing_engine = self.engine == "timidity" and shutil.which("timidity") is None
        if not path.is_file() or missing_engine:
            what = "timidity" if missing_engine else f"{self.name} SoundFont at {path}"
            raise AssetError(f"{what} not found; install the Debian package(s) '{self.package}'")
        return path


TIMBRES: dict[str, Timbre] = {
    "salamander": Timbre("salamander", "salamander"),
    # the project's own piano from the Salamander samples; every item plays its own PianoVariant
    "grand": Timbre("grand", "salamander", engine="piano"),
    # the parametric piano (pianomtl.synthesis.modal): no recordings; every item a new instrument
    "modal": Timbre("modal", "", engine="modal"),
    # min_velocity: C4's first 200 ms at -75 dBFS or louder (gain 0.5); below it a note is inaudible once the
    # item is normalised and noise is added. Measured: FluidR3/TimGM -112 dB at velocity 1, -72 dB at 10;
    # MuseScore silent at 1–2, -79 dB at 3; Salamander -69 dB at 1.
    "fluidr3": Timbre("fluidr3", "/usr/share/sounds/sf2/FluidR3_GM.sf2", min_velocity=8, package="fluid-soundfont-gm"),
    "timgm": Timbre("timgm", "/usr/share/sounds/sf2/TimGM6mb.sf2", min_velocity=8, package="timgm6mb-soundfont"),
    "musescore": Timbre(
        "musescore",
        "/usr/share/sounds/sf3/MuseScore_General.sf3",
        min_velocity=4,
        package="musescore-general-soundfont",
    ),
    # Two more training timbres (opt-in: --timbres). sf_GMbank follows FluidR3's velocity curve 3 dB louder
    # (C4, RMS of the first 200 ms); freepats through TiMidity spans 64 dB from velocity 1 to 127, and
    # velocity 4 sits 50 dB under 127, where FluidR3's velocity 8 sits 48 dB under.
    "gmbank": Timbre("gmbank", "/usr/share/sounds/sf2/sf_GMbank.sf2", min_velocity=8, package="csound-soundfont"),
    "freepats": Timbre(
        "freepats", "/etc/timidity/freepats.cfg", min_velocity=4, engine="timidity", package="timidity freepats"
    ),
}

DEFAULT_TRAIN_TIMBRES = ("salamander", "fluidr3", "timgm")
"""The training (and validation) timbres of the default recipe."""
DEFAULT_TEST_TIMBRES = ("musescore",)
"""The held-out test timbre: never in training."""

MAIN_TIMBRES = ("grand", "salamander")
"""The first of these among the training timbres gets half the items by default; the others share the rest."""

RECIPES: dict[str, tuple[tuple[str, ...], tuple[float, ...] | None]] = {
    "soundfonts": (DEFAULT_TRAIN_TIMBRES, None),
    "piano": (("grand", "salamander", "fluidr3", "timgm", "gmbank", "freepats"), (0.5, 0.1, 0.1, 0.1, 0.1, 0.1)),
    "field": (("grand", "modal"), None),  # the field test: see corpus.plan_field (its own timbres)
    "v8": (
        ("grand", "modal", "salamander", "fluidr3", "timgm", "gmbank", "freepats"),
        (0.3, 0.3, 0.08, 0.08, 0.08, 0.08, 0.08),
    ),
}
"""``--recipe``: training timbres and their weights. "piano": the project's piano engine as the main source."""

RECIPE_SHARES: dict[str, dict[str, float | bool]] = {
    "v8": {"pedal_free_share": 0.3, "high_share": 0.15, "effects_share": 0.5},
    "field": {"field": True},
}
"""What a recipe sets beyond its timbres (:class:`~pianomtl.synthesis.corpus.Config` fields): the v8 model's
corpus plays a third of the real performances without pedal, lifts some into the top octaves and sends half of
the items through the effect chain."""
