"""File safety: outputs that would destroy an input, bounded reads of small files, output
names that never collide, and the content fingerprint of a job's inputs.

* :func:`refuse_inputs_as_outputs`: an output (or checkpoint) that is the same file as an input
  (same device and inode, so through symbolic links and hard links too) is refused before any
  work is done.
* :func:`refuse_existing_outputs`: an existing output is replaced only with ``--overwrite``, and
  never when it is not a regular file.
* :func:`check_outputs`: that, and every output writable as :mod:`speaker._atomic` writes it (an
  existing file only with ``--overwrite``; a FIFO or character device written into; a folder,
  block device or socket refused), before any work is done.
* :func:`read_small_text`: a small text file, refused above a size without reading further.
* :func:`output_names`: distinct output names for the entries of a list.
* :func:`inputs_fingerprint`: size, modification time and a SHA-256 of the contents of every
  source, so that ``--resume`` refuses a checkpoint made from other data under the same paths.

Option types are :mod:`speaker.cli._options`; readable reasons and the skipped-files summary
are :mod:`speaker._reasons`.
"""
from __future__ import annotations

import hashlib
import os
from typing import Iterable, Mapping

from ._atomic import output_problem
from .sources import file_digest, source_file

__all__ = ["GuardError", "refuse_inputs_as_outputs", "refuse_existing_outputs", "check_outputs", "read_small_text",
           "output_names", "inputs_fingerprint"]


class GuardError(ValueError):
    """The command would destroy an input or cannot start (message: one line, the cause)."""


# ------------------------------------------------------------------------ outputs vs inputs
def _file_id(path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)                       # follows symbolic links
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


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
        fid = _file_id(source_file(path))
        if fid in ids:
            option, out = ids[fid]
            same = "is" if os.path.abspath(str(out)) == os.path.abspath(source_file(path)) else "is the same file as"
            raise GuardError(f"{option} {out} {same} the {what} {path}: refusing to overwrite an input "
                             "(choose another output path)")


def refuse_existing_outputs(outputs: Mapping[str, object], overwrite: bool) -> None:
    """Raise :class:`GuardError` before any work if an output exists and is not a regular file
    (a folder, a device, a FIFO: never replaced), or exists and ``overwrite`` is false.
    ``outputs`` maps an option name (``"--out"``) to a path (None: not used)."""
    import stat
    for option, path in outputs.items():
        if path is None:
            continue
        try:
            st = os.stat(path)                       # follows symbolic links: the file a write replaces
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise GuardError(f"{option} {path}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(st.st_mode):
            raise GuardError(f"{option} {path} exists and is not a regular file: refusing to replace it")
        if not overwrite:
            raise GuardError(f"{option} {path} exists; give --overwrite to replace it")


def check_outputs(outputs: Mapping[str, object], inputs: Iterable[tuple[str, object]] = (), *,
                  overwrite: bool = False, pairs: Iterable[str] = ()) -> None:
    """Before any work: raise :class:`GuardError` unless every output of ``outputs`` (option ->
    path, None: not used) can be written.

    An output that is one of ``inputs`` is refused (:func:`refuse_inputs_as_outputs`), so is an
    existing regular file without ``overwrite`` and anything that is not a regular file, except a
    FIFO or a character device, which is written into (:func:`speaker._atomic.output_problem`);
    the options named in ``pairs`` (an ``.ark`` and its ``.scp``) must be regular files.
    """
    refuse_inputs_as_outputs(outputs, inputs)
    pairs = set(pairs)
    for option, path in outputs.items():
        if path is None:
            continue
        why = output_problem(path, overwrite, streams=option not in pairs)
        if why is not None:
            raise GuardError(f"{option} {why}")


# ------------------------------------------------------------------------ inputs fingerprint
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
        f = source_file(s)
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
                    hashed[f] = file_digest(f)
                except OSError as exc:
                    hashed[f] = f"unreadable {exc.errno}"
                except ValueError:                   # a FIFO or a device: never read
                    hashed[f] = "not a regular file"
            h.update(hashed[f].encode())
    return h.hexdigest()


# ------------------------------------------------------------------------ small files, output names
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
