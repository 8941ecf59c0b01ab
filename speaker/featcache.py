"""Features for many files: extracted once, in parallel, optionally cached on disk.

A source is an audio file (features extracted with the FeatureConfig), a ``.npy`` file of
precomputed features, or a Kaldi archive entry ``file.ark:OFFSET`` (read with kaldiio);
:func:`speaker.sources.source_kind` tells which.  The cache (``cache_dir``) keys each audio file by its
absolute path, size, modification time and the FeatureConfig, so a changed file or config is
never served stale features.  A file that fails is reported (``errors``: source -> reason) and
skipped, never fatal.

Extraction in parallel (``jobs > 1``) uses one :class:`ExtractionPool` per
:class:`FeatureCache`: worker processes started once, each of which pays librosa's and the
resampler's first-call costs once (its initializer extracts the features of half a second of
noise, resampled), and that receive the files in chunks.  :meth:`FeatureCache.load` (all
features in memory, for enrolment and scoring) and :func:`prepare_features` (the UBM's
features, in memory or streamed from disk) both go through :meth:`FeatureCache.results`.

For :func:`speaker.ubm.train_ubm` this module also provides :class:`FeatureFiles` (features
read from disk at every EM pass) and :func:`take_rows` (frames at sorted global positions of a
sequence of utterances, the k-means sample).
"""
from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ._atomic import atomic_path
from ._interrupt import check as check_interrupt
from ._interrupt import deferred
from ._npz import read_npy
from ._progress import Progress
from .sources import feature_problem, read_source, source_kind

if TYPE_CHECKING:  # pragma: no cover
    from .features import FeatureConfig

__all__ = ["FeatureCache", "ExtractionPool", "FeatureFiles", "PreparedFeatures", "prepare_features",
           "split_rows", "take_rows"]


def _from_cache(cache_path: Path | None, dim: int | None = None) -> np.ndarray | None:
    """Cached features, or None (absent, unreadable or invalid: then they are recomputed).

    An entry is used only if it is (frames >= 1, ``dim``) finite float32 (:func:`feature_problem`).
    """
    if cache_path is None or not cache_path.exists():
        return None
    try:
        feats = read_npy(cache_path)
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
        check_interrupt()      # unless it is a Ctrl-C that a C extension turned into another error
        return source, None, f"{type(exc).__name__}: {exc}" if not str(exc).startswith(source) else str(exc)
    if cache_path is not None:
        try:
            with atomic_path(cache_path) as tmp, open(tmp, "wb") as f:
                np.save(f, feats)
        except OSError:
            pass  # a cache that cannot be written is only slower
    return source, feats, None


# ----------------------------------------------------------------------------- worker pool
def _warm_up(config) -> None:
    """Pool initializer: one extraction of half a second of noise at another rate (so that it
    is resampled), paying librosa's, numba's and the resampler's first-call costs once per
    worker instead of in the first file of every batch."""
    import warnings
    from .features import extract_features
    rate = 44100 if config.sample_rate != 44100 else 22050
    noise = np.random.default_rng(0).standard_normal(rate // 2).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            extract_features(noise, sample_rate=rate, config=config)
        except Exception:  # noqa: BLE001 - only a warm-up: a real failure shows on the real files
            pass


def _init_worker(config) -> None:
    """Pool initializer: the worker's signals (Ctrl-C is the command's to handle, SIGTERM ends
    the worker: :func:`speaker._interrupt.worker`), then :func:`_warm_up`."""
    from ._interrupt import worker
    worker()
    _warm_up(config)


def _chunksize(n_items: int, jobs: int) -> int:
    """Files per task: about 8 tasks per worker (balance), at most 32 files (steady progress)."""
    return max(1, min(32, n_items // (8 * jobs)))


class ExtractionPool:
    """``jobs`` worker processes for :func:`read_source`, started on first use, warmed up once.

    ``results(items)`` maps ``_work`` over ``(source, config, cache_path)`` items in order; with
    ``jobs=1`` (or a single item) it runs in this process.  ``close()`` stops the workers.
    Where workers are forked (Linux's default), this process warms up before starting them, so
    that they start warm and the warm-up is paid once, not once per worker.
    """

    def __init__(self, jobs: int, config: "FeatureConfig"):
        self.jobs = max(1, int(jobs))
        self.config = config
        self._pool: ProcessPoolExecutor | None = None

    def results(self, items: Sequence[tuple]) -> Iterator[tuple]:
        if self.jobs == 1 or len(items) <= 1:
            yield from map(_work, items)
            return
        if self._pool is None:
            if multiprocessing.get_start_method() == "fork":
                _warm_up(self.config)     # forked workers inherit it: the warm-up is paid once
            self._pool = ProcessPoolExecutor(self.jobs, initializer=_init_worker, initargs=(self.config,))
        yield from self._pool.map(_work, items, chunksize=_chunksize(len(items), self.jobs))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def _dim_error(source: str, feats: np.ndarray, dim: int) -> str | None:
    """``source: reason`` if ``feats`` are not usable (frames, ``dim``) features, else None."""
    why = feature_problem(feats, dim)
    return None if why is None else f"{source}: {why}"


class FeatureCache:
    """A cache of the features of many sources: each computed at most once, held in memory
    (:attr:`features`) and optionally on disk (``cache_dir``).

    Parameters
    ----------
    config : FeatureConfig
    cache_dir : folder for cached ``.npy`` features, or None (memory only)
    jobs : worker processes for extraction (1: in this process)
    progress : report progress on stderr (see :mod:`speaker._progress`)
    dim : expected feature dimension (the model's D), or None; a source with another one
        (a ``.npy`` or ark entry from another front-end) goes to ``errors``

    Used as a context manager, the cache keeps its worker processes between :meth:`load`
    calls (one pool per command) and stops them on exit; otherwise every :meth:`load` stops
    them when it is done.
    """

    def __init__(self, config: "FeatureConfig", cache_dir: str | os.PathLike | None = None,
                 jobs: int = 1, progress: bool = False, dim: int | None = None):
        self.config = config
        self.dim = dim
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.jobs = max(1, int(jobs))
        self.progress = progress
        self.features: dict[str, np.ndarray] = {}
        self.errors: dict[str, str] = {}
        self._key = hashlib.sha256(config.to_json().encode()).hexdigest()
        self._pool = ExtractionPool(self.jobs, config)
        self._keep_pool = False

    def __enter__(self) -> "FeatureCache":
        self._keep_pool = True
        return self

    def __exit__(self, *exc) -> None:
        self._keep_pool = False
        self.close()

    def close(self) -> None:
        """Stop the worker processes (if any)."""
        self._pool.close()

    def _cache_path(self, source: str) -> Path | None:
        if self.cache_dir is None or source_kind(source) != "audio":
            return None
        try:
            st = os.stat(source)
        except OSError:
            return None
        h = hashlib.sha256(f"{os.path.abspath(source)}|{st.st_size}|{st.st_mtime_ns}|{self._key}".encode())
        d = h.hexdigest()
        return self.cache_dir / d[:2] / f"{d}.npy"

    def results(self, sources: Iterable[str], desc: str = "features") -> Iterator[tuple[str, Any, Any]]:
        """``(source, features or None, error or None)`` for every distinct source, in order.

        Cached features are read here; the others are read or extracted by the workers (and
        cached).  With ``dim``, features of another dimension are an error.  Nothing is kept in memory: :meth:`load` does that.
        """
        sources = list(dict.fromkeys(sources))
        paths = {s: self._cache_path(s) for s in sources}
        todo = [(s, self.config, cp) for s, cp in paths.items() if cp is None or not cp.exists()]
        pending = {s for s, _, _ in todo}
        computed = self._pool.results(todo)
        try:
            with Progress(len(sources), desc, "file", enabled=self.progress) as bar:
                for s in sources:
                    check_interrupt()
                    # a cache entry gone or unreadable since the check is recomputed here
                    source, feats, err = next(computed) if s in pending else _work((s, self.config, paths[s]))
                    if err is None and self.dim is not None:
                        err = _dim_error(source, feats, self.dim)
                        feats = None if err is not None else feats
                    yield source, feats, err
                    bar.update(1)
        finally:
            computed.close()
            if not self._keep_pool:
                self._pool.close()

    def load(self, sources: Iterable[str], desc: str = "features") -> None:
        """Obtain the features of every source not seen yet (failures go to ``errors``)."""
        new = [s for s in dict.fromkeys(sources) if s not in self.features and s not in self.errors]
        with contextlib.closing(self.results(new, desc)) as results:
            for source, feats, err in results:
                if err is None:
                    self.features[source] = feats
                else:
                    self.errors[source] = err

    def get(self, source: str) -> np.ndarray:
        """Features of one source (loading it if needed); raises ValueError if it failed."""
        if source not in self.features and source not in self.errors:
            self.load([source])
        if source in self.errors:
            raise ValueError(self.errors[source])
        return self.features[source]


# ----------------------------------------------------------------------------- rows of many utterances
def split_rows(rows: np.ndarray, sizes: Iterable[int]) -> Iterator[np.ndarray]:
    """Sorted global row positions ``rows`` of consecutive blocks of ``sizes`` rows, split by
    block: for every block, the positions in it relative to its start (possibly empty)."""
    offset = 0
    for n in sizes:
        lo, hi = np.searchsorted(rows, [offset, offset + n])
        yield rows[lo:hi] - offset
        offset += n


def take_rows(blocks: Iterable[np.ndarray], rows: np.ndarray, sizes: Iterable[int] | None = None) -> np.ndarray:
    """Rows at the sorted global positions ``rows`` of the blocks stacked, without stacking them.

    ``blocks`` may be an iterator (read one at a time) when ``sizes``, their row counts, is
    given; otherwise it is a sequence of arrays.
    """
    if sizes is None:
        blocks = list(blocks)
        sizes = [b.shape[0] for b in blocks]
    out = [np.asarray(b)[local] for b, local in zip(blocks, split_rows(rows, sizes)) if local.size]
    return np.vstack(out)


# ----------------------------------------------------------------------------- UBM feature sources
class FeatureFiles:
    """Features read from disk at every iteration: one source at a time, never all at once.

    Parameters
    ----------
    sources : sequence of str
        ``.npy`` files of (frames, dims) features, or Kaldi archive entries ``file.ark:OFFSET``
        (anything :func:`read_source` reads; an audio path is re-extracted each time, so cache
        audio features first).
    n_frames : sequence of int, optional
        Frames of each source, if known (saves one reading pass for ``init="kmeans"``).
    config : FeatureConfig, optional
        For audio sources only.

    Calling the object returns a fresh iterator of float32 (frames, dims) arrays, so it is a
    ``FeatureSource`` for :func:`speaker.ubm.train_ubm`.
    """

    def __init__(self, sources: Sequence[str], n_frames: Sequence[int] | None = None, config=None):
        self.sources = [str(s) for s in sources]
        self.n_frames = None if n_frames is None else [int(n) for n in n_frames]
        if self.n_frames is not None and len(self.n_frames) != len(self.sources):
            raise ValueError("n_frames must have one count per source")
        self.config = config

    def __len__(self) -> int:
        return len(self.sources)

    def __call__(self) -> Iterator[np.ndarray]:
        from .features import FeatureConfig
        config = self.config or FeatureConfig()
        for s in self.sources:
            check_interrupt()
            yield read_source(s, config)


@dataclass
class PreparedFeatures:
    """What :func:`prepare_features` returns.

    ``features`` is a list of (frames, dims) float32 arrays (in memory) or a
    :class:`FeatureFiles` (streamed from disk at every pass); ``sources`` the usable sources in
    order; ``n_frames`` their total frames; ``errors`` maps each unusable source to the reason;
    ``temp_cache`` is a folder of extracted features to delete after training (or None).
    """

    features: Any
    sources: list
    n_frames: int
    errors: dict
    streamed: bool
    temp_cache: Path | None = None


def prepare_features(sources: Sequence[str], config, *, cache_dir: str | os.PathLike | None = None,
                     jobs: int = 1, stream_above: float = 4e9, stream: bool = False,
                     temp_parent: str | os.PathLike | None = None, progress: bool = False,
                     on_temp: Callable[[Path], object] | None = None) -> PreparedFeatures:
    """Features of ``sources`` for :func:`speaker.ubm.train_ubm` on this machine, in memory or streamed.

    Features are extracted (``jobs`` processes, see :class:`FeatureCache`) and held in memory
    until they exceed ``stream_above`` bytes (or from the start with ``stream=True``); from then
    on every source is kept on disk only and read back at every EM pass: ``.npy`` files and
    Kaldi ``ark`` entries from where they are, audio features from ``cache_dir`` or, without one,
    from a temporary folder created in ``temp_parent`` (``PreparedFeatures.temp_cache``, for
    the caller to delete: ``on_temp(folder)`` is called as soon as it exists, before an
    interrupt can be raised, so that the caller registers its removal).  The frames and their order are the same either way.  Every usable
    source has the same feature dimension (``config.dim`` if any source is audio, else the first
    usable file's); one with another goes to ``errors``.
    """
    from .features import FeatureConfig
    config = config or FeatureConfig()
    kept: dict[str, np.ndarray] = {}
    on_disk: list[tuple[str, str, int]] = []   # (source, path to read, frames)
    errors: dict[str, str] = {}
    streaming, held, temp = bool(stream), 0, None
    cache = FeatureCache(config, cache_dir=cache_dir, jobs=jobs, progress=progress)

    def disk_path(src: str, feats: np.ndarray) -> str:
        nonlocal temp
        if source_kind(src) != "audio":
            return src
        if cache.cache_dir is None:
            with deferred():           # an interrupt now is raised once the folder is recorded for removal
                temp = Path(tempfile.mkdtemp(prefix=".speaker-features-", dir=temp_parent))
                if on_temp is not None:
                    on_temp(temp)
            cache.cache_dir = temp
        cp = cache._cache_path(src)
        if cp is None:
            return src
        if not cp.exists():
            try:
                with atomic_path(cp) as tmp, open(tmp, "wb") as f:
                    np.save(f, feats)
            except OSError:
                return src                     # re-extracted at every pass: slow but right
        return str(cp)

    order: list[str] = []
    sources = [str(s) for s in sources]
    dim = config.dim if any(source_kind(s) == "audio" for s in sources) else None   # else: the first usable file's
    try:
        with contextlib.closing(cache.results(sources)) as results:
            for src, feats, err in results:
                if err is None:
                    dim = dim or feats.shape[1]
                    err = _dim_error(src, feats, dim)
                if err is not None:
                    errors[src] = err
                    continue
                order.append(src)
                if not streaming:
                    kept[src] = feats
                    held += feats.nbytes
                    if held > stream_above:
                        streaming = True
                        for s2 in list(kept):
                            a = kept.pop(s2)
                            on_disk.append((s2, disk_path(s2, a), a.shape[0]))
                else:
                    on_disk.append((src, disk_path(src, feats), feats.shape[0]))
    except BaseException:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
        raise
    if streaming:
        feats = FeatureFiles([p for _, p, _ in on_disk], [n for _, _, n in on_disk], config=config)
        n = sum(n for _, _, n in on_disk)
    else:
        feats = [kept[s] for s in order]
        n = sum(f.shape[0] for f in feats)
    return PreparedFeatures(feats, order, int(n), errors, streaming, temp)
