"""UBM training on a ``dask.distributed`` cluster: the client's lifecycle and the features
held (or read from a shared filesystem) by the workers.

:func:`dask_client` opens a client of an existing scheduler or of a local cluster and closes
it (quietly after an interrupt); :class:`DaskFeatures` puts the features of a list of sources
on the workers, in parts, so that :func:`speaker.ubm.train_ubm` runs every EM pass there:
the model (O(K*D) numbers) goes to the parts, their statistics come back tree-summed
(:func:`gmmext.dask_accumulate`); the frames never travel.  The ``_``-functions run on the
workers.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import numpy as np

from gmmext import GaussianMixture, GMMStats, dask_accumulate

from ._interrupt import check as check_interrupt
from ._progress import Progress
from .featcache import FeatureCache, _work, split_rows, take_rows

__all__ = ["DaskFeatures", "dask_client"]


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


def _extract_part(sources: Sequence[str], config, cache_dir: str | None, keep: bool) -> dict:
    """On a worker: read / extract (and cache) the features of some sources.

    Returns ``{"X": (frames, dims) float32 of all usable sources in order or None,
    "info": [(source, n_frames or None, error or None)], "dims": D or None}``.
    """
    cache = FeatureCache(config, cache_dir=cache_dir)
    arrays, info, dims = [], [], None
    for s in sources:
        _, feats, err = _work((s, config, cache._cache_path(s)))
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


def _read_part(sources: Sequence[str], config, cache_dir: str | None) -> list[np.ndarray]:
    """On a worker, at every pass (streaming): the features of the sources, from the cache."""
    cache = FeatureCache(config, cache_dir=cache_dir)
    out = []
    for s in sources:
        _, feats, err = _work((s, config, cache._cache_path(s)))
        if err is not None:
            raise ValueError(err)
        out.append(feats)
    return out


def _part_array(result: dict):
    return result["X"]


def _part_info(result: dict) -> dict:
    return {"info": result["info"], "dims": result["dims"]}


def _take_part(X, rows: np.ndarray) -> np.ndarray:
    """Rows (sorted, relative to the part) of a part: an array or a list of arrays in order."""
    return take_rows(X if isinstance(X, (list, tuple)) else [X], rows)


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
        with Progress(len(sources), "features", "file", enabled=progress) as bar:
            for fut in as_completed(infos):
                bar.update(len(fut.result()["info"]))
                check_interrupt()
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
        return dask_accumulate(gm, self.parts, n_threads=self.n_threads)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Frames at the given (sorted) global positions: only those rows leave the workers."""
        import dask
        tasks = [dask.delayed(_take_part, pure=False)(p, local)
                 for p, local in zip(self.parts, split_rows(rows, self.counts)) if local.size]
        return np.vstack(dask.compute(*tasks))

    def release(self) -> None:
        """Free the features held by the workers."""
        for p in self.parts:
            if hasattr(p, "release"):
                p.release()
        self.parts = []
