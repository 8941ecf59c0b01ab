"""EM over a Dask array: the E-step runs where the blocks live, only parameters and statistics move.

:meth:`gmmext.GaussianMixture.fit` sends a ``dask.array.Array`` here (:class:`DaskSource`): every
EM iteration sends the current parameters (O(K*D) numbers) to the blocks, runs the per-block
E-step (:func:`gmmext._blocked.block_stats`) on every block where it lives, sums the
:class:`~gmmext.GMMStats` in a tree and runs :meth:`~gmmext.GaussianMixture.m_step` on the
client.  The data never moves.  It runs on the current ``dask.distributed`` client if there is
one, on Dask's local threaded scheduler otherwise.  For a persisted array (blocks held by the
cluster) the block tasks are pinned to the workers holding the blocks (work stealing cannot move
data) and the statistics are summed on each worker before they are summed across workers; an
array that is not persisted is recomputed from its source at every iteration, which streams it.

The arithmetic is the in-memory fit's: one iteration is ``m_step(sum of accumulate(block))``,
so from the same initialisation the result equals the in-memory fit to floating-point rounding
(the statistics are summed in another order).  The initialisation is :mod:`gmmext._init`'s, the
same rules as for every other input (the same rows drawn from the same ``random_state``).
Every block is validated where it is computed, with the in-memory input's checks and messages.

:func:`dask_accumulate` (public, ``gmmext.dask_accumulate``) is one distributed E-step for
callers that run their own EM (``speaker``'s UBM recipe).  Nothing here imports Dask at module
level: ``import gmmext`` never imports it.
"""
from __future__ import annotations

from numbers import Integral
from typing import Any, Callable, Protocol, Sequence

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._blas import single_thread_blas
from ._blocked import StatsParams, block_labels, block_stats, is_dask_array
from ._sklearn_compat import HasMethods, Interval, validate_params
from ._stats import GMMStats
from ._validation import check_block, check_sample_weight, check_source_dtype, check_total_weight, \
    sample_weight_shape_error

__all__ = ["DaskSource", "dask_accumulate", "tree_sum", "current_client", "FittedMixture"]


class FittedMixture(Protocol):
    """What :func:`dask_accumulate` reads of a model (a fitted ``gmmext.GaussianMixture``)."""

    weights_: np.ndarray
    means_: np.ndarray
    covariances_: np.ndarray
    covariance_type: str
    chunk_size: int | None


class _Stats(GMMStats):
    """GMMStats as block tasks return them: with a ``__sizeof__`` that counts the arrays, so that
    Dask's memory and transfer accounting (``dask.sizeof``) sees their real size."""

    def __sizeof__(self) -> int:
        return object.__sizeof__(self) + self.n.nbytes + self.sum_x.nbytes + self.sum_xx.nbytes + 16


def _sized(stats: GMMStats) -> GMMStats:
    return _Stats(stats.n, stats.sum_x, stats.sum_xx, stats.loglik, stats.n_samples)


def stats_task(params: StatsParams, X, sample_weight=None, start: int = 0) -> GMMStats:
    """:func:`~gmmext._blocked.block_stats` as a Dask task (its result sized for Dask)."""
    return _sized(block_stats(params, X, sample_weight, start))


def _weights_task(sw, start: int = 0) -> float:
    """One block of sample weights, checked where it lives; returns its total."""
    n = int(np.shape(sw)[0])
    return float(check_sample_weight(sw, n, rows=(start, start + n)).sum())


def _sum_stats(*parts: GMMStats) -> GMMStats:
    return _sized(GMMStats.total(parts))


class DaskSource:
    """A Dask array (one column chunk) and optional weights chunked like its rows: a row source
    for :mod:`gmmext._init` and the E-step of a Dask fit."""

    local = False
    in_memory = False

    def __init__(self, X, sample_weight, n_threads: int | None):
        import dask.array as da
        if X.ndim != 2:
            raise ValueError(f"Expected 2D array, got a {X.ndim}-D dask array instead.")
        dtype = check_source_dtype(X)
        if any(isinstance(c, float) and np.isnan(c) for c in X.chunks[0]):
            X = X.compute_chunk_sizes()
        if X.dtype != dtype:
            X = X.astype(dtype)
        if X.numblocks[1] != 1:
            X = X.rechunk({1: -1})
        self.X = X
        self.n_rows, self.n_features = (int(s) for s in X.shape)
        self.dtype = X.dtype
        self.n_threads = n_threads if n_threads is not None else 1
        self.starts = np.concatenate([[0], np.cumsum(X.chunks[0])[:-1]]).astype(int).tolist()
        if sample_weight is not None:
            if is_dask_array(sample_weight):
                if sample_weight.ndim != 1 or sample_weight.shape[0] != self.n_rows:
                    raise sample_weight_shape_error(sample_weight.shape, self.n_rows)
                sw = sample_weight.astype(np.float64)
                if sw.chunks[0] != X.chunks[0]:
                    sw = sw.rechunk((X.chunks[0],))
                import dask
                total = sum(_compute(*[dask.delayed(_weights_task, pure=False)(b, st) for b, st
                                       in zip(sw.to_delayed().ravel(), self.starts)]))
            else:
                w = check_sample_weight(sample_weight, self.n_rows)
                sw = da.from_array(w, chunks=(X.chunks[0],)).persist()
                total = w.sum()
            check_total_weight(float(total))
            sample_weight = sw
        self.sw = sample_weight
        self._xb = list(X.to_delayed().ravel())
        self._wb = list(sample_weight.to_delayed().ravel()) if sample_weight is not None \
            else [None] * len(self._xb)
        # blocks already held by the cluster (a persisted array): tasks are pinned to them
        self._xf = _held_futures(X)
        self._wf = _held_futures(sample_weight) if sample_weight is not None and self._xf else None
        if self._xf is not None and sample_weight is not None and self._wf is None:
            sample_weight = current_client().persist(sample_weight)      # (n,) floats: cheap to hold
            self._wf = _held_futures(sample_weight)
            if self._wf is None:
                raise RuntimeError("the persisted sample weights are not held by the cluster")

    def reduce(self, fn: Callable, payload) -> GMMStats:
        """``sum(fn(payload, block, weights, start))`` over the blocks, where they live."""
        if self._xf is not None:
            return _reduce_held(current_client(), fn, payload, self._xf,
                                self._wf or [None] * len(self._xf), self.starts)
        import dask
        p = dask.delayed(payload, traverse=False)
        parts = [dask.delayed(fn, pure=False)(p, x, w, s) for x, w, s in zip(self._xb, self._wb, self.starts)]
        (total,) = _compute(tree_sum(parts))
        return total

    def take(self, idx: np.ndarray | None):
        """Rows ``idx`` (sorted; None: all) and their weights, computed on the client, validated.

        Each block's selected rows are cut where the block lives and gathered by the client
        (``X[idx]`` lets Dask plan a take that may move whole blocks between workers)."""
        w = None if self.sw is None else (self.sw if idx is None else self.sw[idx])
        if idx is None:
            rows, w = _compute(self.X, w)
        else:
            bounds = np.cumsum((0,) + tuple(self.X.chunks[0]))
            cuts = np.searchsorted(idx, bounds)
            parts = [self.X.blocks[b][idx[cuts[b]:cuts[b + 1]] - bounds[b]]
                     for b in range(len(bounds) - 1) if cuts[b + 1] > cuts[b]]
            *parts, w = _compute(*parts, w)
            rows = np.concatenate(parts) if parts else np.empty((0, self.n_features), self.dtype)
        rows = check_block(np.asarray(rows), self.n_features, self.dtype)
        return rows, (None if w is None else np.asarray(w, dtype=np.float64))

    def stats_params(self, gm) -> StatsParams:
        return StatsParams.of(gm, self.n_threads)

    def e_step(self, gm) -> GMMStats:
        """Statistics of all rows under ``gm``'s current parameters."""
        return self.reduce(stats_task, self.stats_params(gm))

    def labels(self, gm):
        """Most probable component of every row: a lazy (n_samples,) int64 dask array."""
        from functools import partial
        return self.X.map_blocks(partial(_labels_task, self.stats_params(gm)), drop_axis=1, dtype=np.int64)


def _labels_task(params: StatsParams, X, block_info=None) -> np.ndarray:
    start = block_info[0]["array-location"][0][0] if block_info else 0
    return block_labels(params, X, start)


def current_client():
    """The current ``dask.distributed`` client, or None (then Dask's local threaded scheduler runs)."""
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


def _compute(*collections):
    """``dask.compute`` on the current client; on the local threaded scheduler, BLAS is limited
    to one thread meanwhile (the block tasks already run in parallel threads)."""
    import dask
    if current_client() is not None:
        return dask.compute(*collections)
    with single_thread_blas:
        return dask.compute(*collections)


def tree_sum(parts: Sequence, split_every: int = 8):
    """Dask Delayed sum of Delayed ``GMMStats`` by a tree of ``split_every``-way additions."""
    import dask
    parts = list(parts)
    if not parts:
        raise ValueError("nothing to sum")
    while len(parts) > 1:
        parts = [dask.delayed(_sum_stats, pure=False)(*parts[i:i + split_every])
                 for i in range(0, len(parts), split_every)]
    return parts[0]


def _held_futures(A) -> list | None:
    """The distributed Futures of every block of a persisted dask array, in block order; None
    if there is no client or some block is not held by the cluster (then it is a lazy graph)."""
    client = current_client()
    if client is None or A is None:
        return None
    from dask.core import flatten
    from distributed import futures_of
    held = {f.key: f for f in futures_of(A)}
    keys = list(flatten(A.__dask_keys__()))
    if not keys or any(k not in held for k in keys):
        return None
    return [held[k] for k in keys]


def _reduce_held(client, fn, payload, blocks: list, weights: list, starts: list,
                 split_every: int = 8) -> GMMStats:
    """``sum(fn(payload, block, weight, start))`` over blocks held by the cluster (Futures).

    The payload is broadcast to every worker; each block's task is pinned to a worker holding
    the block (no work stealing can move the data); the results are summed on their worker
    first, then across workers, so per iteration only the payload (once per worker) and one
    statistics result per worker travel.
    """
    from collections import defaultdict
    [p] = client.scatter([payload], broadcast=True, hash=False)
    who = client.who_has(blocks)
    by_worker: dict = defaultdict(list)
    for b, w, st in zip(blocks, weights, starts):
        addrs = list(who.get(b.key, ())) or None
        f = client.submit(fn, p, b, w, st, workers=addrs, pure=False)    # pinned: never allowed elsewhere
        by_worker[addrs[0] if addrs else None].append(f)

    def tree(fs, where):
        while len(fs) > 1:
            fs = [client.submit(_sum_stats, *fs[i:i + split_every], workers=where, pure=False)
                  for i in range(0, len(fs), split_every)]
        return fs[0]

    partials = [tree(fs, None if addr is None else [addr]) for addr, fs in by_worker.items()]
    return tree(partials, None).result()


@validate_params(
    {"gm": [HasMethods(["accumulate", "m_step"])], "parts": "no_validation",
     "sample_weight": "no_validation", "n_threads": [Interval(Integral, 1, None, closed="left"), None]},
    prefer_skip_nested_validation=True)
def dask_accumulate(gm: FittedMixture, parts: Any, sample_weight: Any = None, *,
                    n_threads: int | None = 1) -> GMMStats:
    """One distributed E-step: ``sum(gm.accumulate(block))`` over Dask-resident data.

    Parameters
    ----------
    gm : fitted GaussianMixture
        Its (K,), (K, D), (K, D) parameters are the only thing sent to the blocks.
    parts : dask.array.Array of shape (n_samples, D), or sequence of dask Delayed / distributed
        Futures, each an (n_i, D) array or a list of such arrays
        The statistics of every part are computed where the part lives (each block validated
        there as ``accumulate`` validates its input) and summed by a tree of 8-way additions;
        only (K, D) statistics travel.
    sample_weight : dask array of shape (n_samples,), only with a dask array ``parts``
    n_threads : core threads per block task (default 1: Dask runs blocks in parallel)

    Returns
    -------
    GMMStats
        float64 statistics of all the data (``loglik`` in nats, summed over frames).
    """
    check_is_fitted(gm)
    params = StatsParams.of(gm, n_threads)
    if is_dask_array(parts):
        return DaskSource(parts, sample_weight, n_threads).reduce(stats_task, params)
    if sample_weight is not None:
        raise ValueError("sample_weight is only supported with a dask array 'parts'")
    try:
        import dask
    except ImportError:
        raise ImportError("dask_accumulate runs on Dask, which is not installed: "
                          "pip install 'gmmext[dask]'") from None
    parts = list(parts)
    if not parts:
        raise ValueError("no data parts to accumulate")
    client = current_client()
    if client is not None and all(type(x).__name__ == "Future" and hasattr(x, "key") for x in parts):
        return _reduce_held(client, stats_task, params, parts, [None] * len(parts), [0] * len(parts))
    p = dask.delayed(params, traverse=False)
    tasks = [dask.delayed(stats_task, pure=False)(p, x) for x in parts]
    (total,) = _compute(tree_sum(tasks))
    return total
