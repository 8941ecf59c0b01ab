"""Atomic output files: write to a temporary file beside the target, then rename over it."""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterator

from ._interrupt import check as check_interrupt


class WriteError(OSError):
    """An output could not be written (disk full, permissions...); the message names the file."""


def _target(path: Path) -> Path:
    """The file a write to ``path`` replaces: a symbolic link is written through to its target."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces ``path``.

    An exception (or an interrupt) inside the block removes the temporary file and leaves any
    earlier ``path`` untouched, so a reader never sees a half-written file under the final name.
    ``suffix`` defaults to the target's own (some writers, such as ``numpy.savez``, look at it).

    An existing file keeps its permission bits (a 0600 file stays 0600); a new one gets the
    usual ``0666 & ~umask``.  When ``path`` is a symbolic link, its target is replaced (the link
    stays a link).  A failure to write (``ENOSPC``, ``EACCES``...) raises :class:`WriteError`
    naming ``path``.
    """
    path = _target(Path(path))
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=(path.suffix if suffix is None else suffix)
                                   + ".tmp", dir=folder)
    except OSError as exc:
        raise WriteError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    try:
        try:
            yield tmp
            check_interrupt()      # a swallowed Ctrl-C must not let the file replace the old one
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(tmp, mode)    # mkstemp made 0600: the old file's (or the usual) mode, once written
            os.replace(tmp, path)
        except WriteError:
            raise
        except OSError as exc:
            raise WriteError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
