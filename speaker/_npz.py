"""Safe ``.npz`` files for the i-vector back-end (T matrix, LDA/WCCN/PLDA), like model_io's.

Every file has ``format``, ``format_version``, ``kind``, ``ubm_fingerprint`` and
``feature_config`` (JSON, "" if none) plus float64 arrays.  :func:`load_npz` reads with
``allow_pickle=False``, bounds every array's size from the zip directory *before* reading it,
checks dtype, rank and finiteness, and refuses a file bound to another UBM.  Problems raise
:class:`speaker.model_io.ModelError` naming the file and the reason.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from ._atomic import atomic_path
from .model_io import ModelError, ubm_fingerprint

#: Largest array accepted (bytes in the archive, checked before reading).
MAX_BYTES = 1 << 33


@dataclass(frozen=True)
class ArraySpec:
    """What an array must look like: ``ndim``, float64 (or unicode strings with ``text=True``);
    ``optional`` arrays may be absent."""

    ndim: int
    optional: bool = False
    text: bool = False


def save_npz(path, fmt: str, version: int, kind: str, fingerprint: str, config, **arrays) -> None:
    """Write the header keys and ``arrays`` (float64) atomically."""
    header = dict(format=np.array(fmt), format_version=np.array(version), kind=np.array(kind),
                  ubm_fingerprint=np.array(fingerprint),
                  feature_config=np.array(json.dumps(config.to_dict()) if config is not None else ""))
    data = {k: (v if np.asarray(v).dtype.kind == "U" else np.ascontiguousarray(v, dtype=np.float64))
            for k, v in arrays.items() if v is not None}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **header, **data)


def _fail(path, why: str):
    raise ModelError(f"{path}: not a usable {why}")


def load_npz(path: str | os.PathLike, fmt: str, version: int, kind: str, ubm,
             specs: dict[str, ArraySpec]) -> tuple[str, dict[str, np.ndarray | None]]:
    """(fingerprint, {name: array or None}) of a file written by :func:`save_npz`; ``ubm`` (or
    None): refuse a file bound to another UBM."""
    out: dict[str, np.ndarray | None] = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            for key in ("format", "format_version", "kind", "ubm_fingerprint"):
                if key not in keys:
                    _fail(path, f"{kind} file: missing key {key!r}")
            if z["format"].dtype.kind != "U" or str(z["format"][()]) != fmt:
                _fail(path, f"{kind} file: format is not {fmt!r}")
            ver = z["format_version"]
            if ver.shape != () or ver.dtype.kind not in "iu" or int(ver) != version:
                _fail(path, f"{kind} file: unsupported format_version (this version reads {version})")
            if str(z["kind"][()]) != kind:
                _fail(path, f"{kind} file: it holds {str(z['kind'][()])!r}")
            fp = str(z["ubm_fingerprint"][()])
            for name, spec in specs.items():
                if name not in keys:
                    if spec.optional:
                        out[name] = None
                        continue
                    _fail(path, f"{kind} file: missing array {name!r}")
                info = z.zip.getinfo(f"{name}.npy")
                if info.file_size > MAX_BYTES:
                    _fail(path, f"{kind} file: {name!r} is implausibly large ({info.file_size} bytes)")
                a = z[name]
                if spec.text:
                    if a.dtype.kind != "U" or a.ndim != spec.ndim:
                        _fail(path, f"{kind} file: {name!r} must be a {spec.ndim}-d array of strings")
                    out[name] = a
                    continue
                if a.dtype != np.float64 or a.ndim != spec.ndim:
                    _fail(path, f"{kind} file: {name!r} must be {spec.ndim}-d float64, got {a.ndim}-d {a.dtype}")
                if not np.isfinite(a).all():
                    _fail(path, f"{kind} file: {name!r} has non-finite values")
                out[name] = a
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt container fails in many ways
        raise ModelError(f"{path}: cannot read {kind} file: {type(exc).__name__}: {exc}") from None
    if ubm is not None and ubm_fingerprint(ubm) != fp:
        raise ModelError(f"{path}: this {kind} file was trained with a different UBM "
                         f"(fingerprint {fp[:12]}...), not the given one ({ubm_fingerprint(ubm)[:12]}...)")
    return fp, out
