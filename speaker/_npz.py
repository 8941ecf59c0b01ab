"""Untrusted ``.npz`` files: the one reader (model files, i-vector back-end files, checkpoints),
and of ``.npy`` feature files (:func:`read_npy`).

``numpy.load`` allocates a member's declared shape before it reads a byte of it, so a 400 KB
zip of zeros becomes hundreds of megabytes in memory.  :func:`npz_headers` opens the file with
:mod:`zipfile`, and for every member reads only the ``.npy`` header (``numpy.lib.format.
read_magic`` and ``read_array_header_1_0/2_0``, a few hundred bytes) and the zip entry's declared
uncompressed size (``ZipInfo.file_size``); :func:`read_npz` hands them to the caller's check
(shapes against its limits and against what it expects) and only then lets ``numpy.load``
(``allow_pickle=False``) read the arrays.  Anything that is not a zip of ``.npy`` members (a
garbage file, ``/dev/zero``, a directory) gets a message saying what it is, never numpy's
fallback "pickled data" message.

Checkpoints of the training loops (:func:`speaker.ubm.train_ubm`, :func:`speaker.ivector.
train_tv`) share one format, written by :func:`write_checkpoint` and read by
:func:`read_checkpoint`: ``format``, ``format_version``, ``done``, ``total`` (EM passes),
``settings_hash`` and the loop's arrays; every problem is a :class:`CheckpointError`.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import zipfile
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ._atomic import atomic_path
from .limits import MAX_SCALAR_CHARS       # a scalar member's text (a feature configuration: its own bound)

__all__ = ["NpzError", "Member", "npz_headers", "open_npz", "read_npz", "read_npy", "CheckpointError", "write_checkpoint",
           "read_checkpoint", "checkpoint_progress", "settings_hash", "MAX_MEMBERS", "MAX_FILE_BYTES", "CHECKPOINT_VERSION"]

#: Most members an accepted ``.npz`` may have (the formats here use at most 10).
MAX_MEMBERS = 64
#: Largest ``.npz`` file accepted at all (compressed size on disk).
MAX_FILE_BYTES = 16 << 30
_HEADER_SLACK = 1 << 16          # declared size beyond header + data that is tolerated

Check = Callable[[dict], None]


class NpzError(ValueError):
    """Not a readable ``.npz`` within the limits; the message is the reason (without the path)."""


@dataclass(frozen=True)
class Member:
    """Declared contents of one ``.npz`` member: ``shape``, ``dtype``, ``size`` (elements)."""

    shape: tuple
    dtype: np.dtype

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def _regular_file(path) -> os.stat_result:
    """``os.stat`` of a regular file, else NpzError (missing, a directory, a device)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise NpzError(exc.strerror or str(exc)) from None
    if not stat.S_ISREG(st.st_mode):
        raise NpzError("not a regular file (a directory or a device?)")
    return st


def _npy_header(f, what: str) -> tuple[Member, int]:
    """(declared Member, header length) of the ``.npy`` stream ``f``, read without its data;
    NpzError (starting with ``what``) for a corrupt header or an object (pickled) dtype."""
    try:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise NpzError(f"{what}: unsupported .npy version {version}")
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
    except NpzError:
        raise
    except Exception as exc:  # noqa: BLE001 - zlib, struct, value errors of a corrupt header
        raise NpzError(f"{what}: corrupt .npy header ({type(exc).__name__}: {exc})") from None
    if dtype.hasobject:
        raise NpzError(f"{what} holds pickled (object) data, refused")
    return Member(tuple(int(n) for n in shape), dtype), f.tell()


def npz_headers(path: str | os.PathLike, max_elements: int = 1 << 28) -> dict[str, Member]:
    """{member name without ``.npy``: Member} of the ``.npz`` at ``path``, no array data read.

    Raises :class:`NpzError` if the path is not a regular file, is larger than
    ``MAX_FILE_BYTES``, is not a zip archive, has more than ``MAX_MEMBERS`` members, a member
    that is not a ``.npy`` array, an object (pickled) dtype, more than ``max_elements`` elements,
    or a declared uncompressed size that does not match its header.
    """
    st = _regular_file(path)
    if st.st_size > MAX_FILE_BYTES:
        raise NpzError(f"{st.st_size} bytes, larger than the {MAX_FILE_BYTES >> 30} GiB accepted")
    if st.st_size == 0:
        raise NpzError("empty file (0 bytes)")
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise NpzError("not an .npz file (not a zip archive: garbage, truncated or another format)") from None
    except OSError as exc:
        raise NpzError(exc.strerror or str(exc)) from None
    out: dict[str, Member] = {}
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise NpzError(f"{len(infos)} members, more than {MAX_MEMBERS}")
        for info in infos:
            name = info.filename
            if not name.endswith(".npy"):
                raise NpzError(f"member {name!r} is not a .npy array")
            key = name[:-4]
            with zf.open(info) as f:
                m, header_len = _npy_header(f, f"member {key!r}")
            if m.size > max_elements:
                raise NpzError(f"member {key!r} declares shape {m.shape}: more than {max_elements} elements")
            nbytes = m.size * m.dtype.itemsize
            if not nbytes <= info.file_size - header_len <= nbytes + _HEADER_SLACK:
                raise NpzError(f"member {key!r}: declared size {info.file_size} bytes does not match its "
                               f"header (shape {m.shape}, {m.dtype})")
            out[key] = m
    return out


def check_scalars(headers: dict[str, Member], keys, limit: int = MAX_SCALAR_CHARS) -> None:
    """NpzError unless each of ``keys`` present is a scalar of at most ``limit`` characters."""
    for key in keys:
        m = headers.get(key)
        if m is not None and (m.shape != () or m.dtype.itemsize > 4 * limit):
            raise NpzError(f"'{key}' must be a short scalar, declared {m.dtype} of shape {m.shape}")


def open_npz(path: str | os.PathLike, *, max_elements: int, check: Check | None = None
             ) -> tuple[dict[str, Member], "np.lib.npyio.NpzFile"]:
    """(headers, the open file) of an untrusted ``.npz`` whose declared headers passed
    :func:`npz_headers` and ``check(headers)`` (which raises :class:`NpzError` for what the
    caller refuses); the file (``numpy.load(allow_pickle=False)``, a context manager) reads a
    member when it is indexed, so a caller can read the scalars and refuse before the arrays."""
    headers = npz_headers(path, max_elements=max_elements)
    if check is not None:
        check(headers)
    return headers, np.load(path, allow_pickle=False)


def read_npz(path: str | os.PathLike, *, max_elements: int, check: Check | None = None) -> dict[str, np.ndarray]:
    """Every member of an untrusted ``.npz``: the declared headers first (:func:`open_npz`), then
    the arrays.  Header problems raise :class:`NpzError`; a member whose data turns out corrupt
    raises what numpy / zipfile raise (callers name the file and the reason)."""
    with open_npz(path, max_elements=max_elements, check=check)[1] as z:
        return {k: z[k] for k in z.files}


def read_npy(path: str | os.PathLike) -> np.ndarray:
    """The array of an untrusted ``.npy`` file (features): its header first (no object dtype,
    and a declared size the file really holds: ``numpy.load`` would allocate a 200-byte file's
    declared 9 GB before finding the data missing), then ``numpy.load(allow_pickle=False)``.
    NpzError for a refused header."""
    st = _regular_file(path)
    with open(path, "rb") as f:
        m, header_len = _npy_header(f, "the array")
    nbytes = m.size * m.dtype.itemsize
    if nbytes > st.st_size - header_len:
        raise NpzError(f"declares shape {m.shape} ({nbytes} bytes) but holds {st.st_size - header_len} bytes")
    return np.load(path, allow_pickle=False)


# ----------------------------------------------------------------------------- checkpoints
class CheckpointError(ValueError):
    """A checkpoint that cannot be used to resume: unreadable, or from other inputs/settings."""


#: The version of the checkpoint format (the same for every training loop).
CHECKPOINT_VERSION = 1
_CHECKPOINT_SCALARS = ("format", "format_version", "done", "total", "settings_hash")


def settings_hash(settings: dict) -> str:
    """SHA-256 (hex) of a training loop's settings (JSON with sorted keys): a checkpoint made
    with other settings or inputs is refused."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def write_checkpoint(path: str | os.PathLike, fmt: str, *, done: int, total: int, settings_hash: str,
                     **arrays: np.ndarray) -> None:
    """Write a training loop's checkpoint atomically: its progress (``done`` of ``total`` EM
    passes), the hash of its settings and inputs, and its ``arrays``; ``fmt`` names the loop."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, format=np.array(fmt), format_version=np.array(CHECKPOINT_VERSION), done=np.array(done),
                     total=np.array(total), settings_hash=np.array(settings_hash), **arrays)


def checkpoint_progress(path: str | os.PathLike) -> tuple[int, int]:
    """(``done``, ``total``) EM passes of a checkpoint, reading its two scalars only (its arrays,
    whatever their declared size, are not read); CheckpointError if they cannot be read."""
    def scalars(headers):
        check_scalars(headers, _CHECKPOINT_SCALARS)
    try:
        with open_npz(path, max_elements=1 << 62, check=scalars)[1] as z:
            return int(z["done"]), int(z["total"])
    except Exception as exc:  # noqa: BLE001 - zip, zlib, key and value errors alike
        raise CheckpointError(f"{path}: cannot read checkpoint: {type(exc).__name__}: {exc}") from None


def read_checkpoint(path: str | os.PathLike, fmt: str, what: str, *, max_elements: int,
                    check: Check | None = None) -> dict:
    """``done``, ``total``, ``settings_hash`` and the arrays of a checkpoint of :func:`write_checkpoint`.

    ``check(headers)`` refuses, from the declared shapes alone, arrays the loop cannot use
    (raising :class:`NpzError`); ``max_elements`` bounds every member.  Every problem raises
    :class:`CheckpointError` naming the file (``what``: "a UBM", "an i-vector").
    """
    def checked(headers):
        check_scalars(headers, _CHECKPOINT_SCALARS)
        if check is not None:
            check(headers)
    try:
        z = read_npz(path, max_elements=max_elements, check=checked)
    except NpzError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - zip, zlib and value errors alike
        raise CheckpointError(f"{path}: cannot read checkpoint: {type(exc).__name__}: {exc}") from None
    try:
        if str(z["format"][()]) != fmt or int(z["format_version"]) != CHECKPOINT_VERSION:
            raise ValueError
        out = {k: v for k, v in z.items() if k not in _CHECKPOINT_SCALARS}
        out.update(done=int(z["done"]), total=int(z["total"]), settings_hash=str(z["settings_hash"][()]))
    except (KeyError, ValueError, TypeError):
        raise CheckpointError(f"{path}: not {what} checkpoint of format version {CHECKPOINT_VERSION}") from None
    return out
