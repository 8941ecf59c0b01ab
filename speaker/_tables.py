"""The front-end's constant tables (analysis window, mel filterbank, delta filters), computed by
librosa / SciPy once per setting and kept in a cache folder between processes.

librosa's filterbank and windows, and SciPy's Savitzky-Golay filters behind
``librosa.feature.delta``, are what the features are defined by; computing them costs well under a
millisecond, but importing what computes them (``librosa.filters`` imports numba, the windows and
the delta filters ``scipy.signal``) costs most of a second of every process that extracts features.
So :func:`cached_tables` keeps them in ``.npz`` files: the first process computes a setting's
tables and writes them (atomically), the next ones read them, and a command such as
``speaker verify`` never imports numba or ``scipy.signal``.

The folder is ``$SPEAKER_CACHE_DIR`` if set (an empty value turns the cache off), else
``$XDG_CACHE_HOME/gmmext-speaker`` (``~/.cache/gmmext-speaker``).  A file is named by the SHA-256
of its key (the kind of table, every parameter, this format's version and the versions of
librosa and SciPy that computed it) and holds the key itself.  It is untrusted input like any
file: read with the one reader of untrusted ``.npz`` (:mod:`speaker._npz`), it is used only if its
members are exactly the expected names, shapes and dtypes, its key is the one asked for and every
value is finite and within the table's range; anything else (a missing, corrupt, foreign or
unreadable file) is a miss: the tables are computed again and the file replaced.  A folder that
cannot be written only costs the speed.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from ._atomic import atomic_path
from ._npz import NpzError, read_npz

__all__ = ["CACHE_ENV", "cache_dir", "cached_tables", "TABLES_VERSION"]

#: Environment variable naming the cache folder ("" turns the cache off).
CACHE_ENV = "SPEAKER_CACHE_DIR"
#: Version of the tables' file format (part of every key).
TABLES_VERSION = 1

#: name -> (shape, dtype, lowest, highest): what one table must be.
Spec = Mapping[str, tuple[tuple[int, ...], str, float, float]]


def cache_dir() -> Path | None:
    """The cache folder (None: caching is off)."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return Path(value) if value else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gmmext-speaker"


def cached_tables(kind: str, key: Mapping[str, object], spec: Spec,
                  compute: Callable[[], Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The tables ``spec`` names for the setting ``key`` (JSON-serialisable values), read-only:
    from the cache folder when its file is valid, else ``compute()`` (cast to the spec's dtypes,
    checked like a file's) and written there."""
    text = json.dumps({"kind": kind, "format_version": TABLES_VERSION, **key}, sort_keys=True)
    folder = cache_dir()
    path = None if folder is None else folder / f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:32]}.npz"
    if path is not None:
        got = _read(path, text, spec)
        if got is not None:
            return got
    computed = compute()
    tables = {name: np.ascontiguousarray(computed[name], dtype=dt) for name, (_, dt, _, _) in spec.items()}
    problem = _problem(tables, spec)
    if problem:                                     # a bug, not a bad file
        raise ValueError(f"{kind} tables for {text}: {problem}")
    if path is not None:
        _write(path, text, tables)
    for a in tables.values():
        a.setflags(write=False)
    return tables


def _problem(tables: Mapping[str, np.ndarray], spec: Spec) -> str | None:
    for name, (shape, dt, lo, hi) in spec.items():
        a = tables[name]
        if a.shape != tuple(shape) or a.dtype != np.dtype(dt):
            return f"{name}: {a.dtype} of shape {a.shape}, expected {np.dtype(dt)} of shape {tuple(shape)}"
        if not np.isfinite(a).all() or (a.size and not (lo <= a.min() and a.max() <= hi)):
            return f"{name}: a value that is not finite or outside [{lo:g}, {hi:g}]"
    return None


def _read(path: Path, text: str, spec: Spec) -> dict[str, np.ndarray] | None:
    """The valid tables of the file at ``path``, else None (a miss)."""
    if not path.exists():
        return None

    def check(headers) -> None:
        want = {"key": ((), np.dtype(f"<U{len(text)}"))}
        want.update({name: (tuple(shape), np.dtype(dt).newbyteorder("<")) for name, (shape, dt, _, _) in spec.items()})
        got = {name: (m.shape, m.dtype) for name, m in headers.items()}
        if got != want:
            raise NpzError("not the expected tables")

    limit = max(len(text), *(int(np.prod(s)) for s, _, _, _ in spec.values()))
    try:
        arrays = read_npz(path, max_elements=limit, check=check)
    except (NpzError, OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    if str(arrays.pop("key")) != text:
        return None
    tables = {name: np.ascontiguousarray(a, dtype=spec[name][1]) for name, a in arrays.items()}
    if _problem(tables, spec):
        return None
    for a in tables.values():
        a.setflags(write=False)
    return tables


def _write(path: Path, text: str, tables: Mapping[str, np.ndarray]) -> None:
    """Write the tables atomically; a folder that cannot be written is left alone."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, key=np.array(text), **tables)
    except (OSError, ValueError):
        pass
