"""Features for many files: extracted once, in parallel, optionally cached on disk.

A source is an audio file (features extracted with the FeatureConfig), a ``.npy`` file of
precomputed features, or a Kaldi archive entry ``file.ark:OFFSET`` (read with kaldiio).  The
cache (``cache_dir``) keys each audio file by its absolute path, size, modification time and
the FeatureConfig, so a changed file or config is never served stale features.
A file that fails is reported (``errors``: source -> reason) and skipped, never fatal.
"""
from __future__ import annotations

import hashlib
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm.auto import tqdm

from ._atomic import atomic_path
from ._guards import describe
from ._interrupt import check as check_interrupt
from .features import FeatureConfig, extract_features

__all__ = ["FeatureStore", "read_source"]


def read_source(source: str, config: FeatureConfig) -> np.ndarray:
    """Features (frames, dims) float32 of one source: audio file, ``.npy`` or ``ark:offset``."""
    head, sep, tail = source.rpartition(".ark:")
    if sep and tail.isdigit():
        import kaldiio
        try:
            feats = np.asarray(kaldiio.load_mat(source), dtype=np.float32)
        except Exception as exc:  # noqa: BLE001 - kaldiio raises many types on bad archives
            raise ValueError(f"{source}: cannot read Kaldi archive entry: {describe(exc)}") from None
    elif source.endswith(".npy"):
        try:
            feats = np.load(source, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"{source}: cannot read .npy features: {describe(exc)}") from None
        if feats.dtype.kind != "f":
            raise ValueError(f"{source}: features must be floating point, got {feats.dtype}")
        feats = feats.astype(np.float32, copy=False)
    else:
        feats = extract_features(source, config=config)
    why = feature_problem(feats)
    if why is not None:
        raise ValueError(f"{source}: {why}")
    return feats


def feature_problem(feats: np.ndarray, dim: int | None = None) -> str | None:
    """Why ``feats`` are unusable as (frames >= 1, ``dim``) finite float32 features, or None."""
    if feats.dtype != np.float32:
        return f"features must be float32, got {feats.dtype}"
    if feats.ndim != 2 or feats.shape[0] == 0:
        return f"features must have shape (frames >= 1, dims), got {feats.shape}"
    if dim is not None and feats.shape[1] != dim:
        return f"features have {feats.shape[1]} dimensions, expected {dim} (another front-end or model?)"
    if not np.all(np.isfinite(feats)):
        return "features contain NaN or infinity"
    return None


def _from_cache(cache_path: Path | None, dim: int | None = None) -> np.ndarray | None:
    """Cached features, or None (absent, unreadable or invalid: then they are recomputed).

    An entry is used only if it is (frames >= 1, ``dim``) finite float32 (:func:`feature_problem`).
    """
    if cache_path is None or not cache_path.exists():
        return None
    try:
        feats = np.load(cache_path, allow_pickle=False, mmap_mode=None)
    except Exception:  # noqa: BLE001 - a bad cache entry is recomputed
        return None
    return feats if isinstance(feats, np.ndarray) and feature_problem(feats, dim) is None else None


def _work(args):
    """(source, config, cache_path) -> (source, features or None, error or None).

    From the cache when there, else read or extracted (and written to the cache).
    """
    source, config, cache_path = args
    cached = _from_cache(cache_path, config.dim)
    if cached is not None:
        return source, cached, None
    try:
        feats = read_source(source, config)
    except Exception as exc:  # noqa: BLE001 - reported per file
        return source, None, f"{type(exc).__name__}: {exc}" if not str(exc).startswith(source) else str(exc)
    if cache_path is not None:
        try:
            with atomic_path(cache_path) as tmp, open(tmp, "wb") as f:
                np.save(f, feats)
        except OSError:
            pass  # a cache that cannot be written is only slower
    return source, feats, None


def _dim_error(source: str, feats: np.ndarray, dim: int) -> str | None:
    why = feature_problem(feats, dim)
    return None if why is None else f"{source}: {why}"


class FeatureStore:
    """Features of many sources, each computed at most once.

    Parameters
    ----------
    config : FeatureConfig
    cache_dir : folder for cached ``.npy`` features, or None (memory only)
    jobs : worker processes for extraction (1: in this process)
    progress : show a tqdm bar on stderr
    dim : expected feature dimension (the model's D), or None; a source with another one
        (a ``.npy`` or ark entry from another front-end) goes to ``errors``
    """

    def __init__(self, config: FeatureConfig, cache_dir: str | os.PathLike | None = None,
                 jobs: int = 1, progress: bool = False, dim: int | None = None):
        self.config = config
        self.dim = dim
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.jobs = max(1, int(jobs))
        self.progress = progress
        self.features: dict[str, np.ndarray] = {}
        self.errors: dict[str, str] = {}
        self._key = hashlib.sha256(config.to_json().encode()).hexdigest()

    def _cache_path(self, source: str) -> Path | None:
        if self.cache_dir is None or source.endswith(".npy") or ".ark:" in source:
            return None
        try:
            st = os.stat(source)
        except OSError:
            return None
        h = hashlib.sha256(f"{os.path.abspath(source)}|{st.st_size}|{st.st_mtime_ns}|{self._key}".encode())
        d = h.hexdigest()
        return self.cache_dir / d[:2] / f"{d}.npy"

    def load(self, sources: Iterable[str], desc: str = "features") -> None:
        """Obtain the features of every source not seen yet (failures go to ``errors``)."""
        todo = []
        for s in dict.fromkeys(sources):
            if s in self.features or s in self.errors:
                continue
            cp = self._cache_path(s)
            cached = _from_cache(cp, self.config.dim)
            if cached is not None:
                self.features[s] = cached
            else:
                todo.append((s, self.config, cp))
        if not todo:
            return
        bar = tqdm(total=len(todo), desc=desc, unit="file", disable=not self.progress, file=sys.stderr,
                   leave=False)
        try:
            if self.jobs > 1 and len(todo) > 1:
                with ProcessPoolExecutor(self.jobs) as pool:
                    results = pool.map(_work, todo, chunksize=max(1, len(todo) // (8 * self.jobs)))
                    self._collect(results, bar)
            else:
                self._collect(map(_work, todo), bar)
        finally:
            bar.close()

    def _collect(self, results, bar) -> None:
        for source, feats, err in results:
            check_interrupt()
            if err is None and self.dim is not None:
                err = _dim_error(source, feats, self.dim)
            if err is None:
                self.features[source] = feats
            else:
                self.errors[source] = err
            bar.update(1)

    def get(self, source: str) -> np.ndarray:
        """Features of one source (loading it if needed); raises ValueError if it failed."""
        if source not in self.features and source not in self.errors:
            self.load([source])
        if source in self.errors:
            raise ValueError(self.errors[source])
        return self.features[source]
