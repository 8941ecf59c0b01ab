"""Step 1 of GMM-UBM: train the universal background model by EM.

Data may be larger than memory.  ``features`` is any of

* a sequence of (frames, dims) arrays (all in memory);
* a zero-argument callable returning a fresh iterator over them, for example
  :class:`FeatureFiles`, which reads ``.npy`` files or Kaldi archive entries from disk one at a
  time at every EM pass, so that only one utterance is in memory at once;
* a :class:`DaskFeatures`: features held (or read from a shared filesystem) by the workers of a
  ``dask.distributed`` cluster; every pass sends the model (O(K*D) numbers) to the workers,
  which compute the statistics of their own features, summed in a tree.

Every EM pass sums the :class:`gmmext.GMMStats` of all frames (``ubm.accumulate``) and ends with
``ubm.m_step``; the arithmetic stays in gmmext's compiled core.  With ``checkpoint=PATH`` the
model is written (atomically) after every pass, and ``resume=True`` continues from it to the
same model an uninterrupted run gives.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, Union

import numpy as np
from tqdm.auto import tqdm

from gmmext import GaussianMixture, GMMStats

from ._atomic import atomic_path
from ._interrupt import check as check_interrupt

FeatureSource = Union[Sequence[np.ndarray], Callable[[], Iterable[np.ndarray]]]

__all__ = ["train_ubm", "FeatureSource", "FeatureFiles", "DaskFeatures", "CheckpointError",
           "read_checkpoint", "prepare_features", "PreparedFeatures", "dask_client"]

CHECKPOINT_FORMAT = "speaker-ubm-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used to resume: unreadable, or from other inputs/settings."""


# ----------------------------------------------------------------------------- feature sources
def _iterate(features: FeatureSource) -> Iterator[np.ndarray]:
    items = features() if callable(features) else features
    for f in items:
        f = np.asarray(f)
        if f.ndim != 2:
            raise ValueError(f"each feature array must have shape (frames, dims); got {f.shape}")
        if f.shape[0]:
            yield f


class FeatureFiles:
    """Features read from disk at every iteration: one source at a time, never all at once.

    Parameters
    ----------
    sources : sequence of str
        ``.npy`` files of (frames, dims) features, or Kaldi archive entries ``file.ark:OFFSET``
        (anything :func:`speaker.featstore.read_source` reads; an audio path is re-extracted
        each time, so cache audio features first).
    n_frames : sequence of int, optional
        Frames of each source, if known (saves one reading pass for ``init="kmeans"``).
    config : FeatureConfig, optional
        For audio sources only.

    Calling the object returns a fresh iterator of float32 (frames, dims) arrays, so it is a
    ``FeatureSource`` for :func:`train_ubm`.
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
        from .featstore import read_source
        from .features import FeatureConfig
        config = self.config or FeatureConfig()
        for s in self.sources:
            check_interrupt()
            yield read_source(s, config)


class _LocalFeatures:
    """Uniform access to a FeatureSource (in memory or streamed) in this process."""

    def __init__(self, features: FeatureSource):
        self.features = features
        self._counts = getattr(features, "n_frames", None)

    @property
    def n_features(self) -> int:
        for f in _iterate(self.features):
            return f.shape[1]
        raise ValueError("no feature frames to train on")

    def frame_counts(self) -> list[int]:
        if self._counts is None:
            self._counts = [f.shape[0] for f in _iterate(self.features)]
        return [n for n in self._counts if n]

    def accumulate(self, gm: GaussianMixture) -> GMMStats:
        """One E-step over all features: their statistics, summed in order."""
        stats = None
        for f in _iterate(self.features):
            s = gm.accumulate(f)
            stats = s if stats is None else stats + s
            check_interrupt()
        if stats is None:
            raise ValueError("no feature frames to train on")
        return stats

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Frames at the given (sorted) global positions, in order."""
        parts, offset = [], 0
        for f in _iterate(self.features):
            sel = rows[(rows >= offset) & (rows < offset + f.shape[0])] - offset
            if sel.size:
                parts.append(np.asarray(f)[sel])
            offset += f.shape[0]
        return np.vstack(parts)


def _source(features) -> Any:
    if all(hasattr(features, a) for a in ("accumulate", "take", "frame_counts", "n_features")):
        return features
    return _LocalFeatures(features)


def _is_audio(source: str) -> bool:
    head, sep, tail = source.rpartition(".ark:")
    return not (source.endswith(".npy") or (sep and tail.isdigit()))


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
                     temp_parent: str | os.PathLike | None = None, progress: bool = False) -> PreparedFeatures:
    """Features of ``sources`` for :func:`train_ubm` on this machine, in memory or streamed.

    Features are extracted (``jobs`` processes) and held in memory until they exceed
    ``stream_above`` bytes (or from the start with ``stream=True``); from then on every
    source is kept on disk only and read back at every EM pass: ``.npy`` files and Kaldi
    ``ark`` entries from where they are, audio features from ``cache_dir`` or, without one,
    from a temporary folder created in ``temp_parent`` (``PreparedFeatures.temp_cache``, for
    the caller to delete).  The frames and their order are the same either way, so the trained
    model is too.
    """
    from concurrent.futures import ProcessPoolExecutor
    import shutil
    import sys
    import tempfile
    from .featstore import FeatureStore, _dim_error, _work
    from .features import FeatureConfig
    config = config or FeatureConfig()
    sources = list(dict.fromkeys(str(s) for s in sources))
    store = FeatureStore(config, cache_dir=cache_dir)
    kept: dict[str, np.ndarray] = {}
    on_disk: list[tuple[str, str, int]] = []   # (source, path to read, frames)
    errors: dict[str, str] = {}
    streaming, held, temp = bool(stream), 0, None

    def disk_path(src: str, feats: np.ndarray) -> str:
        nonlocal temp
        if not _is_audio(src):
            return src
        if store.cache_dir is None:
            temp = Path(tempfile.mkdtemp(prefix=".speaker-features-", dir=temp_parent))
            store.cache_dir = temp
        cp = store._cache_path(src)
        if cp is None:
            return src
        if not cp.exists():
            try:
                with atomic_path(cp) as tmp, open(tmp, "wb") as f:
                    np.save(f, feats)
            except OSError:
                return src                     # re-extracted at every pass: slow but right
        return str(cp)

    items = [(s, config, store._cache_path(s)) for s in sources]
    bar = tqdm(total=len(items), desc="features", unit="file", disable=not progress, file=sys.stderr,
               leave=False)
    pool = ProcessPoolExecutor(jobs) if jobs > 1 and len(items) > 1 else None
    try:
        results = pool.map(_work, items, chunksize=max(1, len(items) // (64 * jobs))) \
            if pool is not None else map(_work, items)
        order: list[str] = []
        dim = config.dim if any(map(_is_audio, sources)) else None    # else: the first usable file's
        for src, feats, err in results:
            check_interrupt()
            bar.update(1)
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
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        bar.close()
    if streaming:
        feats = FeatureFiles([p for _, p, _ in on_disk], [n for _, _, n in on_disk], config=config)
        n = sum(n for _, _, n in on_disk)
    else:
        feats = [kept[s] for s in order]
        n = sum(f.shape[0] for f in feats)
    return PreparedFeatures(feats, order, int(n), errors, streaming, temp)


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, n_workers: int | None = None) -> Iterator[Any]:
    """A ``dask.distributed`` client: of the scheduler at ``scheduler`` (``tcp://host:8786``), or of
    a new ``LocalCluster`` of ``n_workers`` single-threaded worker processes on this machine
    (loopback only, no dashboard), closed on exit.

    The local worker processes start with SIGINT ignored, so that Ctrl-C (which the terminal
    sends to the whole process group) stops only this process, which then closes the cluster;
    after an interrupt or error Dask's own shutdown messages are silenced.
    """
    import logging
    import signal
    import threading
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ValueError("Dask is not installed: pip install 'gmmext[dask]'") from None
    # an interrupted gather leaves a task whose AllExit asyncio reports on stderr ("Task exception
    # was never retrieved") before any handler runs: asyncio's logger is quiet while Dask runs
    aio = logging.getLogger("asyncio")
    aio_level = aio.level
    aio.setLevel(logging.CRITICAL + 1)
    with contextlib.ExitStack() as stack:
        if scheduler:
            client = stack.enter_context(Client(scheduler, timeout="30s"))
        else:
            main = threading.current_thread() is threading.main_thread()
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
            try:      # spawned workers inherit the ignored disposition (a Python handler would not be)
                cluster = stack.enter_context(LocalCluster(
                    n_workers=int(n_workers or 1), threads_per_worker=1, processes=True,
                    dashboard_address=None, host="127.0.0.1", silence_logs=logging.ERROR))
            finally:
                if main:
                    signal.signal(signal.SIGINT, previous)
            client = stack.enter_context(Client(cluster))
        try:
            yield client
        except BaseException:
            for name in ("distributed", "tornado"):
                logging.getLogger(name).setLevel(logging.CRITICAL + 1)
            raise
    aio.setLevel(aio_level)          # only after a clean close


# ----------------------------------------------------------------------------- Dask
def _extract_part(sources: Sequence[str], config, cache_dir: str | None, keep: bool) -> dict:
    """On a worker: read / extract (and cache) the features of some sources.

    Returns ``{"X": (frames, dims) float32 of all usable sources in order or None,
    "info": [(source, n_frames or None, error or None)], "dims": D or None}``.
    """
    from .featstore import FeatureStore, _work
    store = FeatureStore(config, cache_dir=cache_dir)
    arrays, info, dims = [], [], None
    for s in sources:
        _, feats, err = _work((s, config, store._cache_path(s)))
        if err is not None:
            info.append((s, None, err))
            continue
        if dims is None:
            dims = int(feats.shape[1])
        elif feats.shape[1] != dims:
            info.append((s, None, f"features have {feats.shape[1]} dimensions, the others {dims}"))
            continue
        info.append((s, int(feats.shape[0]), None))
        if keep:
            arrays.append(feats)
    return {"X": arrays if keep else None, "info": info, "dims": dims}


def _read_one(source: str, config, cache_dir: str | None) -> np.ndarray:
    from .featstore import FeatureStore, _from_cache, read_source
    cached = _from_cache(FeatureStore(config, cache_dir=cache_dir)._cache_path(source), config.dim)
    return cached if cached is not None else read_source(source, config)


def _read_part(sources: Sequence[str], config, cache_dir: str | None) -> list[np.ndarray]:
    """On a worker, at every pass (streaming): the features of the sources, from the cache."""
    return [_read_one(s, config, cache_dir) for s in sources]


def _part_array(result: dict):
    return result["X"]


def _part_info(result: dict) -> dict:
    return {"info": result["info"], "dims": result["dims"]}


def _take_part(X, rows: np.ndarray) -> np.ndarray:
    """Rows (sorted, relative to the part) of a part: an array or a list of arrays in order."""
    if not isinstance(X, (list, tuple)):
        return np.asarray(X)[rows]
    out, offset = [], 0
    for x in X:
        lo, hi = np.searchsorted(rows, [offset, offset + x.shape[0]])
        if hi > lo:
            out.append(np.asarray(x)[rows[lo:hi] - offset])
        offset += x.shape[0]
    return np.vstack(out)


class DaskFeatures:
    """Features distributed over the workers of a ``dask.distributed`` cluster.

    Each *part* (a run of consecutive sources) is either held in one worker's memory as a list
    of (frames, dims) float32 arrays, one per source (the default), or, with ``stream=True``,
    read by a worker from the shared filesystem at every pass.  :func:`train_ubm` calls :meth:`accumulate` once per EM
    pass: the model goes to the parts, the (K, D) statistics come back, summed in a tree; the
    frames never travel.  Build it with :meth:`from_sources` (the workers read / extract the
    files) or :meth:`from_arrays` (arrays of this process are sent to the workers once).

    The frames are in the order of the sources and every source is accumulated on its own, as
    in one process, so :func:`train_ubm` draws the same k-means sample and the model equals the
    single-process one to rounding (only the float64 sums of the statistics are associated
    differently).
    """

    def __init__(self, client, parts: list, counts: list[int], n_features: int,
                 n_threads: int | None = 1):
        self.client = client
        self.parts = parts                 # Futures (in memory) or Delayed (read at every pass)
        self.counts = [int(c) for c in counts]
        self._n_features = int(n_features)
        self.n_threads = n_threads

    @property
    def n_features(self) -> int:
        return self._n_features

    @property
    def n_frames(self) -> int:
        return int(sum(self.counts))

    def frame_counts(self) -> list[int]:
        """Frames of every part, in order."""
        return [c for c in self.counts if c]

    @staticmethod
    def _n_parts(client, n_sources: int, files_per_part: int | None) -> int:
        if files_per_part:
            return max(1, -(-n_sources // int(files_per_part)))
        threads = sum(client.nthreads().values()) or 1
        return max(1, min(n_sources, 4 * threads))

    @classmethod
    def from_sources(cls, client, sources: Sequence[str], config, *, cache_dir: str | None = None,
                     stream: bool = False, files_per_part: int | None = None,
                     progress: bool = False) -> tuple["DaskFeatures", dict[str, str]]:
        """Read or extract the features of ``sources`` on the workers.

        Parameters
        ----------
        client : dask.distributed.Client
        sources : audio paths, ``.npy`` files or ``file.ark:OFFSET`` entries, readable by the
            workers under the same names (shared filesystem)
        config : FeatureConfig for audio sources
        cache_dir : feature cache (same layout as ``speaker --cache``), on the shared filesystem
        stream : keep nothing in worker memory; re-read every part (from ``cache_dir`` for
            audio) at every pass
        files_per_part : sources per part (default: about 4 parts per worker thread)

        Returns
        -------
        (DaskFeatures, errors)
            ``errors`` maps each unusable source to the reason (it is left out).
        """
        from distributed import as_completed
        from .features import FeatureConfig
        config = config or FeatureConfig()
        sources = list(dict.fromkeys(str(s) for s in sources))
        if not sources:
            raise ValueError("no sources")
        n = cls._n_parts(client, len(sources), files_per_part)
        bounds = np.linspace(0, len(sources), n + 1).astype(int)
        groups = [sources[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        cache = None if cache_dir is None else str(cache_dir)
        results = client.map(_extract_part, groups, config=config, cache_dir=cache, keep=not stream,
                             pure=False)
        infos = [client.submit(_part_info, r, pure=False) for r in results]
        bar = tqdm(total=len(sources), desc="features", unit="file", disable=not progress, leave=False)
        try:
            for fut in as_completed(infos):
                bar.update(len(fut.result()["info"]))
                check_interrupt()
        finally:
            bar.close()
        infos = client.gather(infos)
        errors = {s: err for i in infos for s, _, err in i["info"] if err is not None}
        dims = [i["dims"] for i in infos if i["dims"] is not None]
        if not dims:
            return None, errors
        if len(set(dims)) != 1:
            raise ValueError(f"the sources have features of different dimensions: {sorted(set(dims))}")
        counts, parts = [], []
        for r, info, group in zip(results, infos, groups):
            ok = [s for s, _, err in info["info"] if err is None]
            if not ok:
                continue
            counts.append(sum(c for _, c, err in info["info"] if err is None))
            if stream:
                import dask
                parts.append(dask.delayed(_read_part, pure=True)(tuple(ok), config, cache))
            else:
                parts.append(client.submit(_part_array, r, pure=False))
        del results
        return cls(client, parts, counts, dims[0]), errors

    @classmethod
    def from_arrays(cls, client, arrays: Sequence[np.ndarray], *, n_parts: int | None = None) -> "DaskFeatures":
        """Send in-memory (frames, dims) arrays to the workers once, in ``n_parts`` runs of arrays."""
        arrays = [np.asarray(a) for a in arrays if np.asarray(a).shape[0]]
        if not arrays:
            raise ValueError("no feature frames to train on")
        n = n_parts or cls._n_parts(client, len(arrays), None)
        bounds = np.linspace(0, len(arrays), min(n, len(arrays)) + 1).astype(int)
        data = [arrays[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        parts = client.scatter(data)
        return cls(client, parts, [sum(x.shape[0] for x in d) for d in data], arrays[0].shape[1])

    def accumulate(self, gm: GaussianMixture) -> GMMStats:
        """One E-step on the workers: statistics of every part, tree-summed (float64)."""
        from gmmext._dask import dask_accumulate
        return dask_accumulate(gm, self.parts, n_threads=self.n_threads)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Frames at the given (sorted) global positions: only those rows leave the workers."""
        import dask
        starts = np.concatenate([[0], np.cumsum(self.counts)])
        tasks = []
        for p, a, b in zip(self.parts, starts[:-1], starts[1:]):
            lo, hi = np.searchsorted(rows, [a, b])
            if hi > lo:
                tasks.append(dask.delayed(_take_part, pure=False)(p, rows[lo:hi] - a))
        return np.vstack(dask.compute(*tasks))

    def release(self) -> None:
        """Free the features held by the workers."""
        for p in self.parts:
            if hasattr(p, "release"):
                p.release()
        self.parts = []


# ----------------------------------------------------------------------------- EM
def _global_model(stats: GMMStats, template: GaussianMixture, dtype) -> GaussianMixture:
    """One-component model from the statistics of any model (a global mean and variance)."""
    n = stats.n.sum()
    mean = stats.sum_x.sum(axis=0) / n
    var = np.maximum(stats.sum_xx.sum(axis=0) / n - mean ** 2, 0.0) + template.reg_covar
    if not np.all(var > 0):
        raise ValueError("the features have a dimension of zero variance; cannot train a UBM")
    return GaussianMixture.from_parameters(np.ones(1, dtype=dtype), mean[None].astype(dtype),
                                           var[None].astype(dtype), **_params(template))


def _params(template: GaussianMixture) -> dict:
    """Constructor parameters of ``template`` but n_components (taken from the parameters)."""
    p = template.get_params()
    p.pop("n_components")
    return p


def _split(gm: GaussianMixture, target: int, perturb: float) -> GaussianMixture:
    """Split the heaviest components until there are min(2K, target): mean +- perturb * sigma."""
    K = gm.n_components
    n_new = min(K, target - K)
    heaviest = np.argsort(-gm.weights_.astype(np.float64), kind="stable")[:n_new]
    w = gm.weights_.astype(np.float64).copy()
    mu = gm.means_.astype(np.float64).copy()
    var = gm.covariances_.astype(np.float64).copy()
    offset = perturb * np.sqrt(var[heaviest])
    w[heaviest] /= 2
    new_w, new_mu, new_var = w[heaviest], mu[heaviest] + offset, var[heaviest]
    mu[heaviest] -= offset
    w = np.concatenate([w, new_w])
    return GaussianMixture.from_parameters((w / w.sum()).astype(gm.means_.dtype),
                                           np.vstack([mu, new_mu]).astype(gm.means_.dtype),
                                           np.vstack([var, new_var]).astype(gm.means_.dtype),
                                           **_params(gm))


def _settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Contents of a checkpoint written by :func:`train_ubm`.

    Returns a dict with ``done`` (EM passes completed; 0: the initial model), ``total`` (passes
    of the whole schedule), ``settings_hash``, ``weights`` (K,), ``means`` (K, D),
    ``covariances`` (K, D) and ``lower_bounds`` (done,) (average log-likelihood per frame, nats).
    Raises :class:`CheckpointError` for a file that is not a readable checkpoint.
    """
    from ._npzcheck import NpzError, checkpoint_headers
    try:
        checkpoint_headers(path)          # declared sizes, before any data is inflated
    except NpzError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint: {exc}") from None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["format"][()]) != CHECKPOINT_FORMAT or int(z["format_version"]) != CHECKPOINT_VERSION:
                raise CheckpointError(f"{path}: not a UBM checkpoint of format version {CHECKPOINT_VERSION}")
            out = {k: z[k] for k in ("weights", "means", "covariances", "lower_bounds")}
            out.update(done=int(z["done"]), total=int(z["total"]), settings_hash=str(z["settings_hash"][()]))
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - zip, key and value errors alike
        raise CheckpointError(f"{path}: cannot read checkpoint: {type(exc).__name__}: {exc}") from None
    return out


def _write_checkpoint(path, gm: GaussianMixture, done: int, total: int, settings_hash: str,
                      lower_bounds: list[float]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, format=np.array(CHECKPOINT_FORMAT), format_version=np.array(CHECKPOINT_VERSION),
                     done=np.array(done), total=np.array(total), settings_hash=np.array(settings_hash),
                     weights=gm.weights_, means=gm.means_, covariances=gm.covariances_,
                     lower_bounds=np.asarray(lower_bounds, dtype=np.float64))


def train_ubm(features: FeatureSource | DaskFeatures, n_components: int, *, init: str = "split",
              n_iter: int = 10, n_iter_split: int = 4, perturb: float = 0.2,
              var_floor: float = 0.01, reg_covar: float = 1e-6, kmeans_frames: int = 100_000,
              random_state: int | None = 0, n_threads: int | None = None,
              dtype=np.float32, progress: bool = False,
              callback: Callable[[int, GaussianMixture, GMMStats], None] | None = None,
              checkpoint: str | os.PathLike | None = None, resume: bool = False,
              inputs_id: str = "") -> GaussianMixture:
    """Train a diagonal UBM with ``n_components`` components by EM over all feature frames.

    Parameters
    ----------
    features : sequence of ndarray (frames, dims), callable returning an iterable of them, or
        :class:`DaskFeatures`
        All utterances of the background population.  A callable is called once per EM pass
        and may load arrays lazily (:class:`FeatureFiles`), so the data need not fit in memory;
        a :class:`DaskFeatures` runs every pass on its cluster.
    n_components : int
        K, the number of Gaussians (powers of two are customary: 64 to 2048).
    init : {"split", "kmeans"}
        "split": binary splitting ("mix-up") from one Gaussian: the heaviest components are
        split (means moved by +-``perturb`` standard deviations, weights halved) until K
        doubles or reaches ``n_components``, with ``n_iter_split`` EM passes per size.
        "kmeans": scikit-learn's KMeans on a random subsample of at most ``kmeans_frames``
        frames (reproducible from ``random_state``), as gmmext's ``init_params="kmeans"``.
    n_iter : int
        EM passes at the final size.
    var_floor : float
        Variances are floored at ``var_floor`` times the global variance of the features
        (0.01 by default, as is customary for UBMs; 0 disables).
    reg_covar : float
        Added to every variance.
    dtype : float32 or float64
        Precision of the model and of the E-step (statistics are float64 in both cases).
    progress : bool
        Show a tqdm progress bar of EM passes (on stderr).
    callback : callable(pass_index, model, stats), optional
        Called after every EM pass with the updated model and the statistics of the pass
        (for logging), after the checkpoint is written.
    checkpoint : path, optional
        Write the model, the number of passes done and a hash of the settings and
        ``inputs_id`` to this ``.npz`` after the initialisation and after every pass
        (atomically: an interrupted run leaves the previous checkpoint).
    resume : bool
        Continue from ``checkpoint`` if it exists (else start from the beginning).  The result
        is the model of an uninterrupted run (bitwise, given the same ``n_threads``).  Raises
        :class:`CheckpointError` if the checkpoint was written with other settings or inputs.
    inputs_id : str
        Identifies the training data (e.g. a hash of the file list and feature configuration),
        stored in the checkpoint so that resuming on other data is refused.

    Returns
    -------
    gmmext.GaussianMixture
        The UBM; ``lower_bounds_`` holds the average log-likelihood per frame of every pass.
    """
    if not isinstance(n_components, (int, np.integer)) or n_components < 1:
        raise ValueError(f"n_components must be a positive int, got {n_components!r}")
    if init not in ("split", "kmeans"):
        raise ValueError(f"init must be 'split' or 'kmeans', got {init!r}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    dtype = np.dtype(dtype)
    template = GaussianMixture(n_components, var_floor=var_floor, reg_covar=reg_covar,
                               random_state=random_state, n_threads=n_threads)
    if n_iter < 0 or n_iter_split < 0:
        raise ValueError("n_iter and n_iter_split must be >= 0")
    src = _source(features)
    sizes = [1]
    while sizes[-1] < n_components:
        sizes.append(min(2 * sizes[-1], n_components))
    # EM passes, by model size: the intermediate sizes of the splitting, then the final size
    schedule = ([k for k in sizes[1:-1] for _ in range(n_iter_split)] if init == "split" else []) \
        + [n_components] * n_iter
    settings = dict(n_components=int(n_components), init=init, n_iter=int(n_iter),
                    n_iter_split=int(n_iter_split), perturb=float(perturb), var_floor=float(var_floor),
                    reg_covar=float(reg_covar), kmeans_frames=int(kmeans_frames),
                    random_state=random_state if random_state is None else int(random_state),
                    dtype=dtype.name, inputs=str(inputs_id))
    shash = _settings_hash(settings)
    gm, done, lower_bounds = None, 0, []
    if resume and Path(checkpoint).exists():
        ck = read_checkpoint(checkpoint)
        if ck["settings_hash"] != shash or ck["total"] != len(schedule):
            raise CheckpointError(
                f"{checkpoint} was written for other training data or settings (list, features, "
                "components, iterations, init, seed or precision differ); delete it or run without resume")
        gm = GaussianMixture.from_parameters(ck["weights"].astype(dtype), ck["means"].astype(dtype),
                                             ck["covariances"].astype(dtype), **_params(template))
        done, lower_bounds = ck["done"], [float(v) for v in ck["lower_bounds"]]
    bar = tqdm(total=len(schedule) + 1, initial=done + (gm is not None), desc="UBM EM", unit="pass",
               disable=not progress, leave=False)
    try:
        if gm is None:
            if init == "split":
                # the statistics of any one-component model give the global mean and variance
                D = src.n_features
                probe = GaussianMixture.from_parameters(np.ones(1), np.zeros((1, D)), np.ones((1, D)),
                                                        n_threads=n_threads)
                gm = _global_model(src.accumulate(probe), template, dtype)
            else:
                gm = _kmeans_init(src, template, kmeans_frames, random_state, dtype)
            if checkpoint is not None:
                _write_checkpoint(checkpoint, gm, 0, len(schedule), shash, lower_bounds)
            bar.update(1)
        for i in range(done, len(schedule)):
            k = schedule[i]
            if k > gm.n_components:
                gm = _split(gm, k, perturb)
            stats = src.accumulate(gm)
            gm.m_step(stats)
            lower_bounds.append(stats.mean_loglik())
            if checkpoint is not None:
                _write_checkpoint(checkpoint, gm, i + 1, len(schedule), shash, lower_bounds)
            bar.set_postfix(K=gm.n_components, ll=f"{lower_bounds[-1]:.3f}")
            bar.update(1)
            if callback is not None:
                callback(i, gm, stats)
    finally:
        bar.close()
    gm.lower_bounds_ = lower_bounds
    gm.lower_bound_ = lower_bounds[-1] if lower_bounds else -np.inf
    gm.n_iter_ = len(lower_bounds)
    return gm


def _kmeans_init(src, template, max_frames, random_state, dtype) -> GaussianMixture:
    """Initial model from KMeans on a uniform random subsample of all frames."""
    rng = np.random.default_rng(random_state)
    total = int(np.sum(src.frame_counts()))
    if total < template.n_components:
        raise ValueError(f"{total} frames are fewer than n_components={template.n_components}")
    take = np.sort(rng.choice(total, size=min(max_frames, total), replace=False))
    sample = src.take(take).astype(dtype)
    gm = GaussianMixture(**{**template.get_params(), "max_iter": 0, "init_params": "kmeans"})
    gm.fit(sample)
    return gm
