"""Atomic file writes: the one rule every writer in the package follows.

A file is written under a temporary name unique to this process and call, in the
destination's own folder (so the final step is a rename on one file system), then
moved into place. Readers therefore see either the old file or the whole new one,
never half of it; an interrupt, a full disk or an exception leaves no temporary file
behind; and two processes writing the same destination cannot trample each other's
temporary files.

With ``overwrite=False`` the final step is an exclusive create (a hard link, which
fails if the name exists), so of two processes racing for one output name exactly one
wins and the other gets :class:`FileExistsError` — nothing already written is lost.

:func:`exclusive_lock` keeps a second process out of work that writes many files over
time (a training run's folder), where atomic writes alone would let two writers
interleave their checkpoints and logs.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pianomtl.constants import HOME_VARIABLE

try:
    import fcntl
except ImportError:  # not POSIX (Windows): no advisory locks, runs are not guarded
    fcntl = None  # type: ignore[assignment]


class LockedError(RuntimeError):
    """Another process holds the lock (its process id is in the message)."""


@contextmanager
def exclusive_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created; it records this process's id) for the block.

    A second process asking for the same lock gets :class:`LockedError` at once instead
    of waiting. The kernel drops the lock when the holder exits, however it exits, so a
    killed process never leaves a stale lock behind (the file itself may stay; it is
    harmless).
    """
    path = Path(path)
    if fcntl is None:
        yield
        return
    handle = path.open("a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise LockedError(f"{path.parent}: in use by another process (pid {holder})") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock


def temporary_name(path: Path) -> Path:
    """A fresh name beside ``path`` that keeps its suffix (writers that infer the format from it still work)."""
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    return path.with_name(f".{path.name}.{token}.part{path.suffix}")


TEMPORARY_PATTERN = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.part(?P<suffix>\.[^.]*)?$")
"""What :func:`temporary_name` makes: ``.NAME.PID-TOKEN.partSUFFIX``."""

STALE_AFTER_SECONDS = 60.0
"""A temporary untouched this long whose process is gone is left over (a SIGKILL, a power cut):
a live writer touches its file all the time, and the age also spares a writer on another
machine sharing the folder, whose process id means nothing here."""


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process: alive
    return True


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporaries :func:`atomic_write` left in ``folder`` when its process was killed.

    Only names of this package's own making (:data:`TEMPORARY_PATTERN`) whose process no
    longer runs and that are older than :data:`STALE_AFTER_SECONDS`; anything else is never
    touched. Returns what was removed (errors are ignored: this is housekeeping).
    """
    import time

    removed: list[Path] = []
    try:
        candidates = list(Path(folder).iterdir())
    except OSError:
        return removed
    now = time.time()
    for path in candidates:
        match = TEMPORARY_PATTERN.match(path.name)
        if match is None or match.group("suffix") not in ("", None, Path(match.group("name")).suffix):
            continue
        try:
            if not path.is_file() or path.is_symlink() or now - path.stat().st_mtime < STALE_AFTER_SECONDS:
                continue
            if int(match.group("pid")) == os.getpid() or _process_alive(int(match.group("pid"))):
                continue
            path.unlink()
            removed.append(path)
        except (OSError, ValueError):
            continue
    return removed


def atomic_write(path: str | Path, write: Callable[[Path], Any], overwrite: bool = True) -> Path:
    """Call ``write(temporary_path)``, then move the result to ``path`` atomically.

    ``overwrite=False`` refuses to replace an existing ``path`` (:class:`FileExistsError`),
    checked at the moment of the move, not before the work.
    """
    path = Path(path)
    temporary = temporary_name(path)
    try:
        write(temporary)
        if overwrite:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)
            except FileExistsError:
                raise FileExistsError(f"{path} exists (it appeared while this output was being written)") from None
            except OSError:  # a file system without hard links: fall back to a checked rename
                if path.exists():
                    raise FileExistsError(f"{path} exists") from None
                os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | Path, text: str, overwrite: bool = True) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    return atomic_write(path, lambda target: target.write_text(text, encoding="utf-8"), overwrite)


def write_json_atomic(path: str | Path, payload: object, overwrite: bool = True) -> Path:
    """Write ``payload`` as indented JSON atomically."""
    return write_text_atomic(path, json.dumps(payload, indent=2) + "\n", overwrite)


def pianomtl_home() -> Path:
    """``$PIANOMTL_HOME`` (:data:`~pianomtl.constants.HOME_VARIABLE`), default ``~/.cache/pianomtl``.

    The one root of material fetched or rendered once (the corpus sources, the page's
    piano samples); read at each call, so a test or a user can point it elsewhere.
    """
    return Path(os.environ.get(HOME_VARIABLE) or Path.home() / ".cache" / "pianomtl").expanduser()
