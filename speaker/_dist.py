"""What is installed: the gmmext distribution's version and the requirements of its extras.

Both are read from the installed distribution's metadata (pyproject.toml is their one source), with
the standard library only, so that the console script can use them before numpy, librosa or gmmext
load, and say in one line what to install when the ``speaker`` extra is missing.
"""
from __future__ import annotations

import re
from importlib import metadata

DIST = "gmmext"


def version() -> str:
    """The installed gmmext distribution's version (``pyproject.toml``'s ``version``)."""
    try:
        return metadata.version(DIST)
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def version_line() -> str:
    """What ``speaker --version`` prints."""
    return f"speaker (gmmext) {version()}"


def missing(extra: str = "speaker") -> list[str]:
    """The distributions that ``gmmext[extra]`` requires and that are not installed, by name.

    Empty when gmmext itself is not installed (run from a source tree: nothing to read)."""
    try:
        requires = metadata.requires(DIST) or []
    except metadata.PackageNotFoundError:
        return []
    out = []
    for req in requires:
        spec, _, marker = req.partition(";")
        if not re.search(rf"""\bextra\s*==\s*["']{re.escape(extra)}["']""", marker):
            continue
        name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec).group(1)
        if name.lower() == DIST:          # gmmext[speaker] inside another extra
            continue
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            out.append(name)
    return out


def install_hint(extra: str = "speaker") -> str | None:
    """One line naming what to install when ``gmmext[extra]`` is incomplete, else None."""
    absent = missing(extra)
    if not absent:
        return None
    return (f"speaker: the speaker toolkit needs the '{extra}' extra, and {', '.join(absent)} "
            f"{'is' if len(absent) == 1 else 'are'} not installed: python -m pip install \"gmmext[{extra}]\"")
