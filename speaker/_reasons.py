"""Readable reasons for the user: one line for an exception, why a path cannot be opened, and
the summary of skipped files.

* :func:`describe`: a one-line reason for an exception that is never empty.
* :func:`os_reason`: a missing file, a dangling symbolic link or a link loop, in words.
* :func:`not_regular`: a FIFO, a device, a socket or a folder, named for what it is.
* :func:`report_skipped`: at most :data:`SHOW_SKIPPED` lines of skipped files, then a count, and
  a hint about ``--root`` when most files of a list are missing.
"""
from __future__ import annotations

import errno
import os
import stat
import sys
from typing import Mapping

__all__ = ["describe", "not_regular", "os_reason", "reason", "report_skipped", "SHOW_SKIPPED"]

#: Skipped files listed one per line before the rest are only counted.
SHOW_SKIPPED = 10


def reason(source: str, why: str) -> str:
    """The reason alone: messages of the readers start with the source, printed once already."""
    prefix = f"{source}: "
    return why[len(prefix):] if why.startswith(prefix) else why


def report_skipped(errors: Mapping[str, str], what: str = "file", root: str | None = None,
                   file=None) -> None:
    """Print the skipped sources to stderr: the first :data:`SHOW_SKIPPED`, then a count.

    When most of them are missing files (at least half of ``errors``, and more than one),
    add a hint that relative paths are resolved against ``root``.
    """
    if not errors:
        return
    file = file or sys.stderr
    print(f"skipped {len(errors)} {what}(s):", file=file)
    items = list(errors.items())
    for src, why in items[:SHOW_SKIPPED]:
        print(f"  {src}: {reason(src, why)}", file=file)
    if len(items) > SHOW_SKIPPED:
        print(f"  ... and {len(items) - SHOW_SKIPPED} more", file=file)
    missing = sum(1 for s, why in items if reason(s, why).startswith("no such file"))
    if root is not None and missing > 1 and 2 * missing >= len(items):
        print(f"hint: {missing} files do not exist; relative paths are resolved against --root, by default "
              f"the list's own folder: {os.path.abspath(root)}", file=file)


def describe(exc: BaseException) -> str:
    """A one-line reason for ``exc`` that is never empty (``KeyError: 'x'``, ``EOFError``...)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    if not text:
        text = {EOFError: "unexpected end of file", KeyError: "missing entry", MemoryError: "out of memory",
                AssertionError: "malformed data (a consistency check of the reader failed)",
                }.get(type(exc), "no detail given")
    return f"{type(exc).__name__}: {text}"


def os_reason(path: str) -> str | None:
    """Why ``path`` cannot be opened, as a short phrase, or None if it can be ``stat``-ed.

    Distinguishes a missing file, a dangling symbolic link and a symbolic link loop.
    """
    try:
        os.stat(path)
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (too many levels of symbolic links)"
        if exc.errno == errno.ENOENT and os.path.islink(path):
            return f"broken symbolic link (to {os.readlink(path)}, which does not exist)"
        if exc.errno == errno.ENOENT:
            return "no such file"
        return exc.strerror or str(exc)


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def not_regular(mode: int) -> str | None:
    """Why a file of ``st_mode`` ``mode`` is not read as data, or None for a regular file.

    A FIFO would block the reader forever, a device like ``/dev/zero`` never ends: inputs are
    checked with ``os.stat`` (or ``os.fstat``) before they are read.
    """
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "a special file")
    return f"is {kind}, not a regular file"
