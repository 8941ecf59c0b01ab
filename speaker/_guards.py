"""Guards of the command line: outputs that would destroy an input, numeric options, the
summary of skipped files, readable reasons, and the content fingerprint of a job's inputs.

* :func:`refuse_inputs_as_outputs`: an output (or checkpoint) that is the same file as an input
  (same device and inode, so through symbolic links and hard links too) is refused before any
  work is done.
* :func:`int_option` / :func:`float_option`: ``argparse`` types that accept only finite values in
  a range (bad values are usage errors, exit 2).
* :func:`report_skipped`: at most :data:`SHOW_SKIPPED` lines of skipped files, then a count, and
  a hint about ``--root`` when most files of a list are missing.
* :func:`inputs_fingerprint`: size, modification time and a SHA-256 of the contents of every
  source, so that ``--resume`` refuses a checkpoint made from other data under the same paths.
"""
from __future__ import annotations

import argparse
import errno
import hashlib
import math
import os
import sys
from typing import Callable, Iterable, Mapping

__all__ = ["GuardError", "refuse_inputs_as_outputs", "int_option", "float_option", "max_threads",
           "report_skipped", "describe", "inputs_fingerprint", "SHOW_SKIPPED"]

#: Skipped files listed one per line before the rest are only counted.
SHOW_SKIPPED = 10


class GuardError(ValueError):
    """The command would destroy an input or cannot start (message: one line, the cause)."""


# ------------------------------------------------------------------------ outputs vs inputs
def _file_id(path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)                       # follows symbolic links
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _input_path(spec: str) -> str:
    """The file behind a list entry (``file.ark:OFFSET`` -> ``file.ark``)."""
    head, sep, tail = str(spec).rpartition(".ark:")
    return head + ".ark" if sep and tail.isdigit() else str(spec)


def refuse_inputs_as_outputs(outputs: Mapping[str, object], inputs: Iterable[tuple[str, object]]) -> None:
    """Raise :class:`GuardError` if an existing output is the same file as one of the inputs.

    ``outputs`` maps an option name (``"--out"``) to a path (None: not used); ``inputs`` yields
    ``(what, path)`` pairs (``("UBM", "ubm.npz")``, ``("audio file", ...)``); Kaldi
    ``file.ark:OFFSET`` entries are checked as ``file.ark``.  Files are compared by device and
    inode, so a symbolic or hard link to an input is caught too.  Outputs that do not exist yet
    cannot be an input.
    """
    ids = {}
    for option, path in outputs.items():
        if path is not None:
            fid = _file_id(path)
            if fid is not None:
                ids.setdefault(fid, (option, path))
    if not ids:
        return
    seen: set[str] = set()
    for what, path in inputs:
        if path is None or str(path) in seen:
            continue
        seen.add(str(path))
        fid = _file_id(_input_path(path))
        if fid in ids:
            option, out = ids[fid]
            same = "is" if os.path.abspath(str(out)) == os.path.abspath(_input_path(path)) else "is the same file as"
            raise GuardError(f"{option} {out} {same} the {what} {path}: refusing to overwrite an input "
                             "(choose another output path)")


# ------------------------------------------------------------------------ numeric options
def max_threads() -> int:
    """Upper bound of ``--threads`` / ``--jobs`` / ``--dask-workers``: 4 x the cores, at least 1024."""
    return max(1024, 4 * (os.cpu_count() or 1))


def int_option(lo: int, hi: int | Callable[[], int] | None = None) -> Callable[[str], int]:
    """argparse ``type``: an int in ``[lo, hi]`` (``hi`` may be a callable, evaluated when parsing)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        top = hi() if callable(hi) else hi
        if v < lo or (top is not None and v > top):
            raise argparse.ArgumentTypeError(
                f"must be in [{lo}, {top}], got {text}" if top is not None else f"must be >= {lo}, got {text}")
        return v
    return parse


def float_option(lo: float, hi: float | None = None, *, lo_open: bool = False,
                 hi_open: bool = False) -> Callable[[str], float]:
    """argparse ``type``: a finite float in ``[lo, hi]`` (open at ``lo`` / ``hi`` with ``lo_open`` / ``hi_open``)."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        bad = v <= lo if lo_open else v < lo
        if bad or (hi is not None and (v >= hi if hi_open else v > hi)):
            left, right = "(" if lo_open else "[", ")" if hi_open else "]"
            raise argparse.ArgumentTypeError(
                f"must be in {left}{lo:g}, {hi:g}{right}, got {text}" if hi is not None
                else f"must be {'>' if lo_open else '>='} {lo:g}, got {text}")
        return v
    return parse


# ------------------------------------------------------------------------ skipped files
def _reason(source: str, why: str) -> str:
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
        print(f"  {src}: {_reason(src, why)}", file=file)
    if len(items) > SHOW_SKIPPED:
        print(f"  ... and {len(items) - SHOW_SKIPPED} more", file=file)
    missing = sum(1 for s, why in items if _reason(s, why).startswith("no such file"))
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


# ------------------------------------------------------------------------ inputs fingerprint
_HASH_BLOCK = 1 << 20


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def inputs_fingerprint(config_json: str, sources: Iterable[str], features=None) -> str:
    """SHA-256 (hex) identifying a training job's data, for checkpoints.

    Covers the feature configuration, and per source its absolute path, size and modification
    time (ns) and a hash of its content: of the features themselves when ``features`` is a list
    of arrays (in memory, as trained on), else of the file's bytes (a Kaldi ``ark:OFFSET`` entry:
    its archive, hashed once).  So a file replaced under the same path, even with its size and
    time restored, makes ``--resume`` refuse the checkpoint.  Cost: one read of the data (about a
    second per GB), small next to one EM pass.
    """
    import numpy as np
    h = hashlib.sha256(config_json.encode())
    sources = [str(s) for s in sources]
    arrays = features if isinstance(features, (list, tuple)) and len(features) == len(sources) else None
    hashed: dict[str, str] = {}
    for i, s in enumerate(sources):
        f = _input_path(s)
        try:
            st = os.stat(f)
            h.update(f"\n{os.path.abspath(s)}|{st.st_size}|{st.st_mtime_ns}|".encode())
        except OSError:
            h.update(f"\n{os.path.abspath(s)}|missing|".encode())
        if arrays is not None:
            a = np.ascontiguousarray(arrays[i])
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(memoryview(a).cast("B"))
        else:
            if f not in hashed:
                try:
                    hashed[f] = _file_digest(f)
                except OSError as exc:
                    hashed[f] = f"unreadable {exc.errno}"
            h.update(hashed[f].encode())
    return h.hexdigest()


# ------------------------------------------------------------------------ small helpers
def list_root(args) -> str | None:
    """The folder relative list paths were resolved against: ``--root``, else the list's own."""
    if getattr(args, "root", None):
        return args.root
    for name in ("list", "enroll", "trials"):
        lst = getattr(args, name, None)
        if lst:
            return os.path.dirname(os.path.abspath(lst))
    return None


def read_small_text(path, limit: int) -> str:
    """UTF-8 text of ``path``, refusing (ValueError) files larger than ``limit`` characters
    (for a feature configuration: :data:`speaker.features.MAX_JSON_BYTES`) without reading
    more than that (a device such as ``/dev/zero`` is never read to its end)."""
    with open(path, encoding="utf-8-sig") as f:
        text = f.read(limit + 1)
    if len(text) > limit:
        raise ValueError(f"larger than {limit} characters")
    return text


def output_names(entries: Iterable[tuple[str, str]], flat: bool = False) -> dict[tuple[str, str], str]:
    """Unique output names (without extension) for ``(key, path)`` list entries of ``extract``.

    An entry with an utterance id (``utt_id path``) is named by its id; an entry that is a
    path alone keeps its folders relative to the common folder of all such paths
    (``d1/utt.wav`` and ``d2/utt.wav`` -> ``d1/utt``, ``d2/utt``).  With ``flat`` (Kaldi archive
    keys) ``/`` becomes ``_``.  Two entries with the same name raise :class:`GuardError`
    naming both: an output is never overwritten by another.
    """
    def path_only(key: str, p: str) -> bool:      # a 'path' line: the key is the path as written
        return key == p or p.endswith(os.sep + key.lstrip("./"))

    entries = list(entries)
    bare = [os.path.abspath(p) for k, p in entries if path_only(k, p)]
    common = os.path.commonpath([os.path.dirname(p) for p in bare]) if bare else ""
    out: dict[tuple[str, str], str] = {}
    seen: dict[str, str] = {}     # name -> key (entries are distinct (key, path) pairs)
    for key, p in entries:
        if path_only(key, p):
            name = os.path.splitext(os.path.relpath(os.path.abspath(p), common))[0]
        else:
            name = key.replace(os.sep, "_")
        if flat:
            name = name.replace(os.sep, "_")
        if name in seen:
            raise GuardError(f"{seen[name]!r} and {key!r} ({p}) would both be written as {name!r}; "
                             "give the entries distinct utterance ids ('utt_id path' lines)")
        seen[name] = key
        out[(key, p)] = name
    return out
