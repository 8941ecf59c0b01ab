"""Untrusted ``.npz`` files: every member's declared shape, dtype and size, read before any data.

``numpy.load`` inflates a member in full before anyone can look at its shape, so a 4 MB zip
bomb becomes gigabytes in memory.  :func:`npz_headers` opens the file with :mod:`zipfile`, and
for every member reads only the ``.npy`` header (``numpy.lib.format.read_magic`` and
``read_array_header_1_0/2_0``, a few hundred bytes) and the zip entry's declared uncompressed
size (``ZipInfo.file_size``); the caller checks them against its limits, and only then lets
``numpy.load`` read the arrays.  Anything that is not a zip of ``.npy`` members (a garbage file,
``/dev/zero``, a directory) gets a message saying what it is, never numpy's fallback "pickled
data" message.
"""
from __future__ import annotations

import math
import os
import stat
import zipfile
from dataclasses import dataclass

import numpy as np

__all__ = ["NpzError", "Member", "npz_headers", "MAX_MEMBERS", "MAX_FILE_BYTES"]

#: Most members an accepted ``.npz`` may have (the formats here use at most 10).
MAX_MEMBERS = 64
#: Largest ``.npz`` file accepted at all (compressed size on disk).
MAX_FILE_BYTES = 16 << 30
_HEADER_SLACK = 1 << 16          # declared size beyond header + data that is tolerated


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


def npz_headers(path: str | os.PathLike, max_elements: int = 1 << 28) -> dict[str, Member]:
    """{member name without ``.npy``: Member} of the ``.npz`` at ``path``, no array data read.

    Raises :class:`NpzError` if the path is not a regular file, is larger than
    ``MAX_FILE_BYTES``, is not a zip archive, has more than ``MAX_MEMBERS`` members, a member
    that is not a ``.npy`` array, an object (pickled) dtype, more than ``max_elements`` elements,
    or a declared uncompressed size that does not match its header.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise NpzError(exc.strerror or str(exc)) from None
    if not stat.S_ISREG(st.st_mode):
        raise NpzError("not a regular file (a directory or a device?)")
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
            try:
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                    elif version == (2, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                    else:
                        raise NpzError(f"member {key!r}: unsupported .npy version {version}")
                    header_len = f.tell()
            except NpzError:
                raise
            except Exception as exc:  # noqa: BLE001 - zlib, struct, value errors of a corrupt member
                raise NpzError(f"member {key!r}: corrupt .npy header ({type(exc).__name__}: {exc})") from None
            if dtype.hasobject:
                raise NpzError(f"member {key!r} holds pickled (object) data, refused")
            m = Member(tuple(int(n) for n in shape), dtype)
            if m.size > max_elements:
                raise NpzError(f"member {key!r} declares shape {m.shape}: more than {max_elements} elements")
            nbytes = m.size * dtype.itemsize
            if not nbytes <= info.file_size - header_len <= nbytes + _HEADER_SLACK:
                raise NpzError(f"member {key!r}: declared size {info.file_size} bytes does not match its "
                               f"header (shape {m.shape}, {dtype})")
            out[key] = m
    return out


def checkpoint_headers(path: str | os.PathLike, max_components: int = 4096, max_dim: int = 200,
                       max_passes: int = 1_000_000) -> None:
    """Check a UBM checkpoint's declared members (see :func:`speaker.ubm.read_checkpoint`):
    weights (K,), means and covariances (K, D) with K <= ``max_components`` and D <= ``max_dim``,
    at most ``max_passes`` lower bounds and short scalars; raise :class:`NpzError` otherwise."""
    h = npz_headers(path, max_elements=max_components * max_dim)
    for key in ("format", "format_version", "done", "total", "settings_hash"):
        if key in h and (h[key].shape != () or h[key].dtype.itemsize > 1024):
            raise NpzError(f"'{key}' must be a short scalar, declared {h[key].dtype} of shape {h[key].shape}")
    mu = h.get("means")
    if mu is not None:
        if len(mu.shape) != 2 or not 1 <= mu.shape[0] <= max_components or not 1 <= mu.shape[1] <= max_dim:
            raise NpzError(f"'means' declares shape {mu.shape}: (K <= {max_components}, D <= {max_dim}) expected")
        for key, shape in (("weights", mu.shape[:1]), ("covariances", mu.shape)):
            if key in h and h[key].shape != shape:
                raise NpzError(f"inconsistent shapes: '{key}' {h[key].shape}, means {mu.shape}")
    lb = h.get("lower_bounds")
    if lb is not None and (len(lb.shape) != 1 or lb.shape[0] > max_passes):
        raise NpzError(f"'lower_bounds' declares shape {lb.shape}")
