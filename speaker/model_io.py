"""Model files: UBMs and speaker models in ``.npz`` (never pickles), written atomically.

A file holds either one UBM or any number of speaker models adapted from one UBM:

========================  ===========================================================
key                       content
========================  ===========================================================
``format``                ``"gmmext-speaker"`` (str)
``format_version``        1 (int)
``kind``                  ``"ubm"`` or ``"speakers"``
``feature_config``        the FeatureConfig as a JSON string ("" if none)
``ubm_fingerprint``       SHA-256 of the UBM's parameters (both kinds)
``weights``               (K,) for a UBM, (S, K) for S speakers; float32 or float64
``means``                 (K, D) or (S, K, D)
``covariances``           (K, D) or (S, K, D), variances
``speaker_ids``           (S,) unicode strings (speakers only)
========================  ===========================================================

:func:`load_model` reads with ``allow_pickle=False`` (an object array is refused, never
unpickled), checks every key, dtype, shape and value (finite, variances > 0, weights >= 0
summing to 1: every rule of ``GaussianMixture.from_parameters``, checked for all speakers at once
with ``GaussianMixture.first_unusable``) and, given the UBM, refuses speaker models adapted from
another UBM.  Speaker models are built when read (:class:`SpeakerModels`).  Every problem raises :class:`ModelError` naming the file and the reason.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping

import numpy as np

if TYPE_CHECKING:                  # (the estimators import scikit-learn: imported where used)
    from gmmext import GaussianMixture

from ._atomic import atomic_path
from ._npz import NpzError, check_scalars, open_npz, read_npz
from .adapt import require_diag
from .features import MAX_JSON_BYTES, FeatureConfig
from .limits import MAX_ELEMENTS, MAX_ID_CHARS, MAX_SCALAR_CHARS, MAX_SPEAKERS, speaker_id_problem, ubm_shape_problem

__all__ = ["ModelError", "ModelFile", "SpeakerModels", "save_model", "load_model", "load_speakers", "ubm_fingerprint",
           "ArraySpec", "save_npz", "load_npz"]

FORMAT = "gmmext-speaker"
FORMAT_VERSION = 1


class ModelError(ValueError):
    """A model file that cannot be used: unreadable, malformed, or from another UBM."""


class SpeakerModels(Mapping):
    """The speaker models of a models file: a read-only mapping id -> GaussianMixture over the
    file's stacked, validated arrays.

    A model is built (``GaussianMixture.from_parameters``, on copies of its rows: changing it
    leaves the file's arrays alone) only when its id is read; the last
    :attr:`CACHE` models read are kept.  :meth:`arrays` gives one speaker's parameters without
    building a model.  Iteration is in the file's order.  Memory: the stacked arrays, the ids
    as one NumPy string array and an (S,) index that sorts them.
    """

    CACHE = 64

    def __init__(self, ids: np.ndarray, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray):
        """``ids`` (S,) unique unicode strings; ``weights`` (S, K), ``means`` and ``covariances``
        (S, K, D), already validated (:func:`load_model`)."""
        self._ids, self._w, self._mu, self._var = ids, weights, means, covariances
        self._order = np.argsort(ids, kind="stable")
        self._built: OrderedDict[str, GaussianMixture] = OrderedDict()

    def _row(self, key) -> int:
        """The row of speaker ``key``, else KeyError."""
        if isinstance(key, str) and len(key) <= self._ids.dtype.itemsize // 4:
            at = int(np.searchsorted(self._ids, key, sorter=self._order))
            if at < len(self._order) and self._ids[self._order[at]] == key:
                return int(self._order[at])
        raise KeyError(key)

    def arrays(self, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Speaker ``key``'s (weights (K,), means (K, D), variances (K, D)), read-only views of
        the file's arrays (no model is built); KeyError for an unknown id."""
        s = self._row(key)
        out = tuple(a[s] for a in (self._w, self._mu, self._var))
        for a in out:
            a.flags.writeable = False
        return out

    def __getitem__(self, key: str) -> GaussianMixture:
        m = self._built.get(key)
        if m is not None:
            self._built.move_to_end(key)
            return m
        from gmmext import GaussianMixture
        m = GaussianMixture.from_parameters(*(a.copy() for a in self.arrays(key)), covariance_type="diag")
        self._built[key] = m
        if len(self._built) > self.CACHE:
            self._built.popitem(last=False)
        return m

    def __contains__(self, key) -> bool:
        try:
            self._row(key)
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return (str(i) for i in self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"<SpeakerModels: {len(self)} speakers, K={self._w.shape[1]}, D={self._mu.shape[2]}>"


@dataclass
class ModelFile:
    """What :func:`load_model` returns.

    ``kind`` is "ubm" or "speakers"; ``ubm`` is the UBM (kind "ubm") or None;
    ``speakers`` maps speaker id to its model (kind "speakers": a read-only
    :class:`SpeakerModels`, each model built when read); ``config`` is the
    FeatureConfig the models were trained with (None if not recorded);
    ``ubm_fingerprint`` identifies the UBM.
    """

    kind: str
    ubm_fingerprint: str
    config: FeatureConfig | None = None
    ubm: GaussianMixture | None = None
    speakers: Mapping[str, GaussianMixture] = field(default_factory=dict)


def ubm_fingerprint(ubm: GaussianMixture) -> str:
    """SHA-256 (hex) of the UBM's weights, means and variances (as little-endian float64).

    Raises ValueError for a model that is not diagonal (see :func:`require_diag`)."""
    require_diag(ubm)
    return arrays_fingerprint(ubm.weights_, ubm.means_, ubm.covariances_)


def arrays_fingerprint(weights: np.ndarray, means: np.ndarray, variances: np.ndarray) -> str:
    """:func:`ubm_fingerprint` of a diagonal UBM with these parameters ((K,), (K, D), (K, D)),
    without building it."""
    h = hashlib.sha256()
    for a in (weights, means, variances):
        a = np.ascontiguousarray(a, dtype="<f8")
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def fingerprint(tag: str, *parts) -> str:
    """SHA-256 (hex) naming a model file's contents (the i-vector extractor, a back-end): ``tag``,
    then each part: a string (e.g. the fingerprint of the file it was made from), None, or an
    array (its shape and little-endian float64 bytes).  Files that belong together carry each
    other's fingerprint and are refused when it does not match."""
    h = hashlib.sha256(tag.encode())
    for p in parts:
        if p is None:
            h.update(b"\0none")
        elif isinstance(p, str):
            h.update(b"\0str" + p.encode())
        else:
            a = np.ascontiguousarray(p, dtype="<f8")
            h.update(b"\0array" + str(a.shape).encode())
            h.update(a.tobytes())
    return h.hexdigest()


def save_model(path: str | Path, models: GaussianMixture | Mapping[str, GaussianMixture], *,
               ubm: GaussianMixture | None = None, config: FeatureConfig | None = None,
               overwrite: bool = True) -> None:
    """Write a UBM (``models`` is a GaussianMixture) or speaker models (a mapping id -> model).

    Speaker models need ``ubm`` (the UBM they were adapted from), whose fingerprint is
    stored.  ``config`` (the FeatureConfig) is stored so that scoring uses the same features.
    The file appears atomically (temporary file + rename); ``overwrite=False`` refuses an
    existing file (:mod:`speaker._atomic`).
    """
    from gmmext import MixtureModel
    common = dict(format=np.array(FORMAT), format_version=np.array(FORMAT_VERSION),
                  feature_config=np.array(json.dumps(config.to_dict()) if config is not None else ""))
    if isinstance(models, MixtureModel):           # a GaussianMixture is one too
        arrays = dict(kind=np.array("ubm"), ubm_fingerprint=np.array(ubm_fingerprint(models)),
                      weights=models.weights_, means=models.means_, covariances=models.covariances_)
    else:
        if ubm is None:
            raise ValueError("saving speaker models needs the UBM they were adapted from (ubm=...)")
        ids = list(models)
        if not ids:
            raise ValueError("no speaker models to save")
        for i in ids:
            why = speaker_id_problem(i)
            if why is not None:
                raise ValueError(why)
            if models[i].means_.shape != ubm.means_.shape:
                raise ValueError(f"speaker {i!r} has shape {models[i].means_.shape}, the UBM {ubm.means_.shape}")
        arrays = dict(kind=np.array("speakers"), ubm_fingerprint=np.array(ubm_fingerprint(ubm)),
                      speaker_ids=np.array(ids, dtype=str),
                      weights=np.stack([models[i].weights_ for i in ids]),
                      means=np.stack([models[i].means_ for i in ids]),
                      covariances=np.stack([models[i].covariances_ for i in ids]))
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **common, **arrays)


def _fail(path, why: str):
    raise ModelError(f"{path}: not a usable model file: {why}")


def _scalar_str(z, key, path) -> str:
    a = z[key]
    if a.shape != () or a.dtype.kind != "U":
        _fail(path, f"'{key}' must be a string")
    return str(a[()])


def _check_headers(h: dict) -> None:
    """Refuse, from the declared headers alone, members beyond the limits (before reading data)."""
    check_scalars(h, ("format", "format_version", "kind", "ubm_fingerprint"), MAX_SCALAR_CHARS)
    check_scalars(h, ("feature_config",), MAX_JSON_BYTES)
    mu = h.get("means")
    if mu is None:
        return
    if len(mu.shape) not in (2, 3):
        raise NpzError(f"'means' must be (K, D) or (S, K, D), declared {mu.shape}")
    *s, K, D = mu.shape
    why = ubm_shape_problem(K, D)
    if why is not None or (s and not 1 <= s[0] <= MAX_SPEAKERS):
        raise NpzError(f"'means' declares shape {mu.shape}: " + (why or f"at most {MAX_SPEAKERS} speakers are "
                                                                         "accepted"))
    for key, shape in (("weights", mu.shape[:-1]), ("covariances", mu.shape)):
        if key in h and h[key].shape != shape:
            raise NpzError(f"inconsistent shapes: '{key}' {h[key].shape}, means {mu.shape}")
    ids = h.get("speaker_ids")
    if ids is not None and (ids.shape != tuple(s) or ids.dtype.itemsize > 4 * MAX_ID_CHARS):
        raise NpzError(f"'speaker_ids' must hold one short id per model, declared {ids.dtype} {ids.shape}")


def load_model(path: str | Path, *, ubm: GaussianMixture | None = None) -> ModelFile:
    """Read and validate a model file written by :func:`save_model`.

    Parameters
    ----------
    path : the ``.npz`` file
    ubm : optional; when the file holds speaker models, they must have been adapted from
        this UBM (same fingerprint), else ModelError.

    Returns
    -------
    ModelFile

    Raises
    ------
    ModelError for any unreadable, malformed or mismatched file (never executes its content).
    """
    path = Path(path)
    try:
        z = read_npz(path, max_elements=MAX_ELEMENTS, check=_check_headers)
    except NpzError as exc:
        _fail(path, str(exc))
    except Exception as exc:  # noqa: BLE001 - a corrupt container can fail in many ways (zlib, struct, ...)
        raise ModelError(f"{path}: cannot read model file: {type(exc).__name__}: {exc}") from None
    keys = set(z)
    need = {"format", "format_version", "kind", "feature_config", "ubm_fingerprint",
            "weights", "means", "covariances"}
    if not need <= keys:
        _fail(path, f"missing keys {sorted(need - keys)}")
    if _scalar_str(z, "format", path) != FORMAT:
        _fail(path, f"format is not {FORMAT!r}")
    ver = z["format_version"]
    if ver.shape != () or ver.dtype.kind not in "iu" or int(ver) != FORMAT_VERSION:
        _fail(path, f"unsupported format_version {ver!r} (this version reads {FORMAT_VERSION})")
    kind = _scalar_str(z, "kind", path)
    if kind not in ("ubm", "speakers"):
        _fail(path, f"unknown kind {kind!r}")
    fp = _scalar_str(z, "ubm_fingerprint", path)
    cfg_text = _scalar_str(z, "feature_config", path)
    arrays = {}
    for key in ("weights", "means", "covariances"):
        a = z[key]
        if a.dtype not in (np.float32, np.float64):
            _fail(path, f"'{key}' has dtype {a.dtype}, expected float32 or float64")
        arrays[key] = a
    ids = None
    if kind == "speakers":
        if "speaker_ids" not in keys:
            _fail(path, "missing key 'speaker_ids'")
        ids = z["speaker_ids"]
        if ids.ndim != 1 or ids.dtype.kind != "U":
            _fail(path, "'speaker_ids' must be a 1-d array of strings")
    config = None
    if cfg_text:
        try:
            config = FeatureConfig.from_json(cfg_text)
        except (ValueError, TypeError, RecursionError) as exc:
            _fail(path, f"bad feature_config: {exc}")
    w, mu, var = arrays["weights"], arrays["means"], arrays["covariances"]
    extra = 0 if kind == "ubm" else 1
    if w.ndim != 1 + extra or mu.ndim != 2 + extra or var.shape != mu.shape or w.shape != mu.shape[:-1]:
        _fail(path, f"inconsistent shapes: weights {w.shape}, means {mu.shape}, covariances {var.shape}")
    if kind == "speakers":
        if len(ids) != w.shape[0] or len(np.unique(ids)) != len(ids):
            _fail(path, "speaker_ids must be unique, one per model")
        for i in ids:
            why = speaker_id_problem(str(i))
            if why is not None:
                _fail(path, why)

    def build(wi, mi, vi, label):
        from gmmext import GaussianMixture
        try:
            return GaussianMixture.from_parameters(wi, mi, vi, covariance_type="diag")
        except ValueError as exc:
            _fail(path, f"{label}: {exc}")

    if kind == "ubm":
        model = build(w, mu, var, "UBM")
        if ubm_fingerprint(model) != fp:
            _fail(path, "the stored fingerprint does not match the parameters (corrupted file?)")
        return ModelFile("ubm", fp, config, ubm=model)
    if ubm is not None and ubm_fingerprint(ubm) != fp:
        raise ModelError(f"{path}: these speaker models were adapted from a different UBM "
                         f"(fingerprint {fp[:12]}...), not from the given one ({ubm_fingerprint(ubm)[:12]}...)")
    from gmmext import GaussianMixture
    bad = GaussianMixture.first_unusable(w, mu, var)     # from_parameters' rules, all speakers at once
    if bad is not None:
        label = f"speaker {str(ids[bad])!r}"
        build(w[bad], mu[bad], var[bad], label)          # its reason
        _fail(path, f"{label}: parameters outside what GaussianMixture.from_parameters accepts")
    return ModelFile("speakers", fp, config, speakers=SpeakerModels(ids, w, mu, var))


def load_speakers(path: str | Path, ubm: GaussianMixture) -> SpeakerModels:
    """The speaker models of a models file adapted from ``ubm`` (:func:`load_model`); a UBM file
    given instead raises :class:`ModelError` saying so."""
    mf = load_model(path, ubm=ubm)
    if mf.kind != "speakers":
        raise ModelError(f"{path}: this is a UBM, not a models file (the output of 'speaker enroll')")
    return mf.speakers


# ----------------------------------------------------------------------------- other model files
@dataclass(frozen=True)
class ArraySpec:
    """What an array of a :func:`load_npz` file must look like: ``ndim``, float64 (or unicode
    strings with ``text=True``); ``optional`` arrays may be absent; ``shape`` (None entries:
    any length) and ``most`` (the largest length of each axis, from :mod:`speaker.limits`) are
    checked on the declared header, before the array is read, as is the element count
    (:data:`speaker.limits.MAX_ELEMENTS`)."""

    ndim: int
    optional: bool = False
    text: bool = False
    shape: tuple | None = None
    most: tuple | None = None


def save_npz(path, fmt: str, version: int, kind: str, fingerprint: str, config, *, overwrite: bool = True,
             **arrays) -> None:
    """Write a model file of another kind (the i-vector back-end's T matrix, LDA/WCCN/PLDA,
    i-vector speaker models): the header keys ``format``, ``format_version``, ``kind``,
    ``ubm_fingerprint``, ``feature_config`` (JSON, "" if none) and ``arrays`` (float64, or
    unicode strings), atomically (``overwrite=False`` refuses an existing file)."""
    header = dict(format=np.array(fmt), format_version=np.array(version), kind=np.array(kind),
                  ubm_fingerprint=np.array(fingerprint),
                  feature_config=np.array(json.dumps(config.to_dict()) if config is not None else ""))
    data = {k: (v if np.asarray(v).dtype.kind == "U" else np.ascontiguousarray(v, dtype=np.float64))
            for k, v in arrays.items() if v is not None}
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **header, **data)


def load_npz(path: str | os.PathLike, fmt: str, version: int, kind: str, ubm,
             specs: dict[str, ArraySpec]) -> tuple[str, dict[str, np.ndarray | None]]:
    """(fingerprint, {name: array or None}) of a file written by :func:`save_npz`; ``ubm`` (or
    None): refuse a file bound to another UBM.

    Every member's declared header is checked first (:func:`speaker._npz.open_npz`: size and
    rank), then the header keys and the UBM's fingerprint, then each array's declared shape
    (``ArraySpec.shape``), and only then are the arrays read and their dtypes and values checked.
    Problems raise :class:`ModelError` naming the file and the reason."""
    def fail(why: str):
        raise ModelError(f"{path}: not a usable {kind} file: {why}")

    def check(h):
        check_scalars(h, ("format", "format_version", "kind", "ubm_fingerprint"), MAX_SCALAR_CHARS)
        check_scalars(h, ("feature_config",), MAX_JSON_BYTES)
        for name, spec in specs.items():
            if name not in h:
                continue
            shape = h[name].shape
            if len(shape) != spec.ndim:
                raise NpzError(f"{name!r} declares shape {shape}, expected {spec.ndim}-d")
            if spec.most is not None and any(n > m for n, m in zip(shape, spec.most)):
                raise NpzError(f"{name!r} declares shape {shape}: at most {spec.most} (speaker.limits)")
            if spec.text and h[name].dtype.itemsize > 4 * MAX_SCALAR_CHARS:
                raise NpzError(f"{name!r} declares strings of {h[name].dtype}: too long")
    out: dict[str, np.ndarray | None] = {}
    try:
        headers, npz = open_npz(path, max_elements=MAX_ELEMENTS, check=check)
        with npz as z:
            for key in ("format", "format_version", "kind", "ubm_fingerprint"):
                if key not in headers:
                    fail(f"missing key {key!r}")
            if z["format"].dtype.kind != "U" or str(z["format"][()]) != fmt:
                fail(f"format is not {fmt!r}")
            ver = z["format_version"]
            if ver.shape != () or ver.dtype.kind not in "iu" or int(ver) != version:
                fail(f"unsupported format_version (this version reads {version})")
            if str(z["kind"][()]) != kind:
                fail(f"it holds {str(z['kind'][()])!r}")
            fp = str(z["ubm_fingerprint"][()])
            if ubm is not None and ubm_fingerprint(ubm) != fp:
                raise ModelError(f"{path}: this {kind} file was trained with a different UBM "
                                 f"(fingerprint {fp[:12]}...), not the given one ({ubm_fingerprint(ubm)[:12]}...)")
            for name, spec in specs.items():
                m = headers.get(name)
                if m is None:
                    if not spec.optional:
                        fail(f"missing array {name!r}")
                    out[name] = None
                    continue
                if spec.shape is not None and any(w is not None and g != w for g, w in zip(m.shape, spec.shape)):
                    want = ", ".join("*" if n is None else str(n) for n in spec.shape)
                    fail(f"{name!r} declares shape {m.shape}, expected ({want})")
                a = z[name]
                if spec.text:
                    if a.dtype.kind != "U":
                        fail(f"{name!r} must be a {spec.ndim}-d array of strings")
                elif a.dtype != np.float64:
                    fail(f"{name!r} must be {spec.ndim}-d float64, got {a.ndim}-d {a.dtype}")
                elif not np.isfinite(a).all():
                    fail(f"{name!r} has non-finite values")
                out[name] = a
    except NpzError as exc:
        fail(str(exc))
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt container fails in many ways
        raise ModelError(f"{path}: cannot read {kind} file: {type(exc).__name__}: {exc}") from None
    return fp, out
