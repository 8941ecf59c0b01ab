"""EM over data that is not one in-memory array: memmaps, lazily sliced arrays, Dask arrays.

:meth:`gmmext.GaussianMixture.fit` sends three kinds of input here (see :func:`wants_blocked`):

* a ``numpy.memmap``, or any 2-D array-like that is not an ``ndarray`` but slices lazily
  (``shape``, ``dtype``, ``X[a:b]``: h5py / zarr datasets, ...): the data is processed in row
  blocks of about 64 MiB, one at a time, so the process never holds more than one block (a
  memmap block is a view, not a copy) plus the core's per-thread chunk buffers;
* a ``dask.array.Array``: every EM iteration sends the current parameters (O(K*D) numbers) to
  the blocks, runs :meth:`~gmmext.GaussianMixture.accumulate` on every block where it lives,
  sums the :class:`~gmmext.GMMStats` in a tree and runs :meth:`~gmmext.GaussianMixture.m_step`
  on the client.  The data never moves; only parameters and statistics do.  It runs on the
  current ``dask.distributed`` client if there is one, on Dask's local threaded scheduler
  otherwise.  For a persisted array (blocks held by the cluster) the block tasks are pinned to
  the workers holding the blocks (work stealing cannot move data) and the statistics are summed
  on each worker before they are summed across workers; an array that is not persisted is
  recomputed from its source at every iteration, which streams it.

The arithmetic is the in-memory fit's: one iteration is ``m_step(sum of accumulate(block))``,
so from the same initialisation the result equals the in-memory fit to floating-point rounding
(the statistics are summed in another order).  The initialisation is the in-memory one, too:

* ``init_params="kmeans"``: KMeans on the same ``kmeans_max_samples`` rows drawn from
  ``random_state`` (read with one indexed pass), then the hard statistics of every row by a
  block-wise ``predict``: the in-memory result, without an (n_samples,) label array;
* ``"random_from_data"``: the same K rows;
* ``"random"``: memmaps / array-likes stream exactly the in-memory random responsibilities;
  on a Dask array (where that would draw n_samples x K numbers on the client) they are drawn
  for a ``kmeans_max_samples``-row sample instead;
* ``"k-means++"``: exact when n_samples <= ``kmeans_max_samples``, else run on such a sample.

Nothing here imports Dask unless the input is a Dask array.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from sklearn.cluster import KMeans, kmeans_plusplus

from ._stats import GMMStats

__all__ = ["wants_blocked", "is_dask_array", "fit_blocked", "dask_accumulate", "block_stats",
           "StatsParams"]

#: Target size of one row block of a memmap / array-like, bytes (rounded to 65536-row units,
#: so that the blocked k-means initialisation sums the same 65536-row pieces as the in-memory one).
BLOCK_BYTES = 64 << 20
_ROW_UNIT = 65536


# ------------------------------------------------------------------------------ dispatch
def is_dask_array(X: Any) -> bool:
    """True for a ``dask.array.Array`` (checked without importing Dask)."""
    t = type(X)
    return t.__module__.startswith("dask.") and t.__name__ == "Array" and hasattr(X, "to_delayed")


def _is_lazy_array(X: Any) -> bool:
    """A 2-D array-like with shape, a NumPy dtype and slicing, that is not an in-memory ndarray."""
    if isinstance(X, np.ndarray) or not all(hasattr(X, a) for a in ("shape", "dtype", "__getitem__")):
        return False
    if hasattr(X, "tocsr") or hasattr(X, "columns"):      # scipy.sparse, pandas
        return False
    try:
        return len(X.shape) == 2 and np.dtype(X.dtype).kind in "biuf"
    except TypeError:                                     # e.g. a torch dtype
        return False


def wants_blocked(X: Any) -> bool:
    """Whether ``fit`` should run block-wise: a Dask array, a memmap or a lazy array-like."""
    return is_dask_array(X) or isinstance(X, np.memmap) or _is_lazy_array(X)


# ------------------------------------------------------------------------------ per-block work
@dataclass(frozen=True)
class StatsParams:
    """What a block task needs to run the E-step: the model, nothing else (O(K*D) numbers).

    weights (K,), means (K, D), covariances (K, D) in the compute dtype; ``chunk_size`` and
    ``n_threads`` of the core for this block.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    chunk_size: int | None = None
    n_threads: int | None = 1

    def __sizeof__(self) -> int:          # what Dask's sizeof (hence its transfer counters) sees
        return object.__sizeof__(self) + self.weights.nbytes + self.means.nbytes + self.covariances.nbytes

    @classmethod
    def of(cls, gm, n_threads: int | None) -> "StatsParams":
        return cls(gm.weights_, gm.means_, gm.covariances_, gm.chunk_size, n_threads)

    def model(self):
        """A GaussianMixture with these parameters (no validation beyond the estimator's own)."""
        from ._mixture import GaussianMixture
        K, D = self.means.shape
        gm = GaussianMixture(n_components=K, chunk_size=self.chunk_size, n_threads=self.n_threads)
        gm._set_params_arrays(self.weights, self.means, self.covariances, self.means.dtype)
        gm.n_features_in_ = D
        return gm


class _Stats(GMMStats):
    """GMMStats as block tasks return them: with a ``__sizeof__`` that counts the arrays, so that
    Dask's memory and transfer accounting (``dask.sizeof``) sees their real size."""

    def __sizeof__(self) -> int:
        return object.__sizeof__(self) + self.n.nbytes + self.sum_x.nbytes + self.sum_xx.nbytes + 16


def _sized(stats: GMMStats) -> GMMStats:
    return _Stats(stats.n, stats.sum_x, stats.sum_xx, stats.loglik, stats.n_samples)


def _as_block(X) -> np.ndarray:
    return X if isinstance(X, np.ndarray) else np.asarray(X)


def _check_block_weights(sw, n_rows: int, start: int):
    """The block's sample weights as float64 (n_rows,), or None; raises on bad values."""
    if sw is None:
        return None
    sw = np.asarray(sw, dtype=np.float64).reshape(-1)
    if sw.shape[0] != n_rows:
        raise ValueError(f"sample_weight has {sw.shape[0]} values for the {n_rows} rows at {start}")
    if not np.all(np.isfinite(sw)):
        raise ValueError(f"sample_weight must be finite (rows {start}:{start + n_rows}).")
    if np.any(sw < 0):
        raise ValueError(f"Negative values in data passed to sample_weight (rows {start}:{start + n_rows}).")
    return sw


def block_stats(params: StatsParams, X, sample_weight=None, start: int = 0) -> GMMStats:
    """E-step statistics of one block under ``params``: ``model.accumulate(X, sample_weight)``.

    ``X`` is an (n, D) array, or a list of such arrays (their statistics are summed in order);
    ``start`` is the block's first row, for error messages.  A block of zero total weight gives
    zero statistics.  NaN / infinity raise ``ValueError`` naming the rows.
    """
    gm = params.model()
    K, D = params.means.shape
    if isinstance(X, (list, tuple)):
        total = GMMStats.zeros(K, D)
        for x in X:
            x = _as_block(x)
            total = total + block_stats(params, x, None, start)
            start += x.shape[0]
        return _sized(total)
    X = _as_block(X)
    sw = _check_block_weights(sample_weight, X.shape[0], start)
    if X.shape[0] == 0 or (sw is not None and not sw.sum() > 0):
        return _sized(GMMStats.zeros(K, D))
    try:
        return _sized(gm.accumulate(X, sw))
    except ValueError as exc:
        raise ValueError(f"rows {start}:{start + X.shape[0]}: {exc}") from None


def _kmeans_block(payload, X, sample_weight=None, start: int = 0) -> GMMStats:
    """Hard statistics of one block under a fitted KMeans (payload: (kmeans, K, dtype))."""
    from ._mixture import _hard_stats
    km, K, dtype = payload
    X = np.asarray(_as_block(X), dtype=dtype)
    sw = _check_block_weights(sample_weight, X.shape[0], start)
    if X.shape[0] == 0:
        return _sized(GMMStats.zeros(K, X.shape[1]))
    try:
        labels = np.concatenate([km.predict(X[s:s + _ROW_UNIT]) for s in range(0, X.shape[0], _ROW_UNIT)])
    except ValueError as exc:                      # NaN / infinity, reported by check_array
        raise ValueError(f"rows {start}:{start + X.shape[0]}: {exc}") from None
    return _sized(_hard_stats(X, labels, sw, K))


def _labels_block(params: StatsParams, X) -> np.ndarray:
    X = _as_block(X)
    if X.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    return params.model().predict(X)


def _sum_stats(*parts: GMMStats) -> GMMStats:
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return _sized(total)


# ------------------------------------------------------------------------------ data sources
class _Rows:
    """Read-only (N, D) view of an array-like whose slices come out as ``dtype`` ndarrays."""

    def __init__(self, X, dtype):
        self.X, self.dtype, self.shape = X, np.dtype(dtype), tuple(int(s) for s in X.shape)

    def __getitem__(self, key) -> np.ndarray:
        return np.asarray(self.X[key], dtype=self.dtype)


class _ArraySource:
    """A memmap or lazily sliced array-like, read in row blocks in this process."""

    local = True

    def __init__(self, X, sample_weight, dtype, n_threads):
        self.rows = _Rows(X, dtype)
        self.n_rows, self.n_features = self.rows.shape
        self.dtype = np.dtype(dtype)
        self.n_threads = n_threads
        if sample_weight is not None:
            sw = np.asarray(sample_weight, dtype=np.float64)
            if sw.ndim != 1 or sw.shape[0] != self.n_rows:
                raise ValueError(f"sample_weight.shape == {sw.shape}, expected ({self.n_rows},)!")
            _check_block_weights(sw, self.n_rows, 0)
            if not sw.sum() > 0:
                raise ValueError("sample_weight must not sum to zero.")
            sample_weight = np.ascontiguousarray(sw)
        self.sw = sample_weight
        per_row = max(1, self.n_features * self.dtype.itemsize)
        self.block_rows = max(1, BLOCK_BYTES // per_row // _ROW_UNIT) * _ROW_UNIT

    def _ranges(self):
        for s in range(0, self.n_rows, self.block_rows):
            yield s, min(s + self.block_rows, self.n_rows)

    def _w(self, s, e):
        return None if self.sw is None else self.sw[s:e]

    def reduce(self, fn: Callable, payload) -> GMMStats:
        total = None
        for s, e in self._ranges():
            part = fn(payload, self.rows[s:e], self._w(s, e), s)
            total = part if total is None else total + part
        return total

    def take(self, idx: np.ndarray):
        """Rows ``idx`` (sorted) and their weights."""
        X = self.rows.X
        if isinstance(X, np.ndarray):
            rows = np.asarray(X[idx], dtype=self.dtype)
        else:
            parts = []
            for s, e in self._ranges():
                lo, hi = np.searchsorted(idx, [s, e])
                if hi > lo:
                    parts.append(self.rows[s:e][idx[lo:hi] - s])
            rows = np.concatenate(parts) if parts else np.empty((0, self.n_features), self.dtype)
        return rows, (None if self.sw is None else self.sw[idx])

    def load_all(self):
        return self.rows[0:self.n_rows], self.sw

    def stats_params(self, gm) -> StatsParams:
        return StatsParams.of(gm, self.n_threads)

    def labels(self, gm):
        p = self.stats_params(gm)
        return np.concatenate([_labels_block(p, self.rows[s:e]) for s, e in self._ranges()])


class _DaskSource:
    """A Dask array (one column chunk) and optional weights chunked like its rows."""

    local = False

    def __init__(self, X, sample_weight, n_threads):
        import dask.array as da
        if X.ndim != 2:
            raise ValueError(f"Expected 2D array, got a {X.ndim}-D dask array instead.")
        if any(isinstance(c, float) and np.isnan(c) for c in X.chunks[0]):
            X = X.compute_chunk_sizes()
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
        if X.numblocks[1] != 1:
            X = X.rechunk({1: -1})
        self.X = X
        self.n_rows, self.n_features = (int(s) for s in X.shape)
        self.dtype = X.dtype
        self.n_threads = n_threads if n_threads is not None else 1
        self.starts = np.concatenate([[0], np.cumsum(X.chunks[0])[:-1]]).astype(int).tolist()
        if sample_weight is not None:
            if is_dask_array(sample_weight):
                sw = sample_weight.astype(np.float64)
                if sw.ndim != 1 or sw.shape[0] != self.n_rows:
                    raise ValueError(f"sample_weight.shape == {sw.shape}, expected ({self.n_rows},)!")
                if sw.chunks[0] != X.chunks[0]:
                    sw = sw.rechunk((X.chunks[0],))
            else:
                w = np.asarray(sample_weight, dtype=np.float64)
                if w.ndim != 1 or w.shape[0] != self.n_rows:
                    raise ValueError(f"sample_weight.shape == {w.shape}, expected ({self.n_rows},)!")
                _check_block_weights(w, self.n_rows, 0)
                sw = da.from_array(w, chunks=(X.chunks[0],)).persist()
            total = float(sw.sum().compute())
            if not np.isfinite(total) or not total > 0:
                raise ValueError("sample_weight must be finite and must not sum to zero.")
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
        if self._xf is not None:
            return _reduce_held(current_client(), fn, payload, self._xf,
                                self._wf or [None] * len(self._xf), self.starts)
        import dask
        p = dask.delayed(payload, traverse=False)
        parts = [dask.delayed(fn, pure=False)(p, x, w, s) for x, w, s in zip(self._xb, self._wb, self.starts)]
        (total,) = _compute(tree_sum(parts))
        return total

    def take(self, idx: np.ndarray):
        import dask
        rows = self.X[idx]
        w = None if self.sw is None else self.sw[idx]
        rows, w = _compute(rows, w)
        return np.asarray(rows), (None if w is None else np.asarray(w, dtype=np.float64))

    def load_all(self):
        import dask
        X, w = _compute(self.X, self.sw)
        return np.asarray(X), (None if w is None else np.asarray(w, dtype=np.float64))

    def stats_params(self, gm) -> StatsParams:
        return StatsParams.of(gm, self.n_threads)

    def labels(self, gm):
        from functools import partial
        return self.X.map_blocks(partial(_labels_block, self.stats_params(gm)), drop_axis=1, dtype=np.int64)


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
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1, user_api="blas"):
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


def dask_accumulate(gm, parts, sample_weight=None, *, n_threads: int | None = 1) -> GMMStats:
    """One distributed E-step: ``sum(gm.accumulate(block))`` over Dask-resident data.

    Parameters
    ----------
    gm : fitted GaussianMixture
        Its (K,), (K, D), (K, D) parameters are the only thing sent to the blocks.
    parts : dask.array.Array of shape (n_samples, D), or sequence of dask Delayed / distributed
        Futures, each an (n_i, D) array or a list of such arrays
        The statistics of every part are computed where the part lives and summed by a tree of
        8-way additions; only (K, D) statistics travel.
    sample_weight : dask array of shape (n_samples,), only with a dask array ``parts``
    n_threads : core threads per block task (default 1: Dask runs blocks in parallel)

    Returns
    -------
    GMMStats
        float64 statistics of all the data (``loglik`` in nats, summed over frames).
    """
    if is_dask_array(parts):
        return _DaskSource(parts, sample_weight, n_threads).reduce(block_stats, StatsParams.of(gm, n_threads))
    import dask
    parts = list(parts)
    if not parts:
        raise ValueError("no data parts to accumulate")
    client = current_client()
    if client is not None and all(type(x).__name__ == "Future" and hasattr(x, "key") for x in parts):
        return _reduce_held(client, block_stats, StatsParams.of(gm, n_threads), parts, [None] * len(parts),
                            [0] * len(parts))
    p = dask.delayed(StatsParams.of(gm, n_threads), traverse=False)
    tasks = [dask.delayed(block_stats, pure=False)(p, x) for x in parts]
    (total,) = _compute(tree_sum(tasks))
    return total


# ------------------------------------------------------------------------------ initialisation
def _init_stats(gm, src, random_state) -> GMMStats:
    """Statistics of the initial assignment, as the in-memory ``_init_stats`` would give."""
    from ._mixture import _hard_stats
    N, K, kms = src.n_rows, gm.n_components, gm.kmeans_max_samples
    how = gm.init_params
    if N <= kms:                            # small: exactly the in-memory initialisation
        X, sw = src.load_all()
        return gm._init_stats(X, sw, random_state)
    if how == "random" and src.local:       # streams the same random numbers as in memory
        return gm._init_stats(src.rows, src.sw, random_state)
    if how == "random_from_data":
        idx = random_state.choice(N, size=K, replace=False)
        order = np.argsort(idx)
        rows_sorted, w_sorted = src.take(idx[order])
        rows = np.empty_like(rows_sorted)
        rows[order] = rows_sorted
        w = None
        if w_sorted is not None:
            w = np.empty_like(w_sorted)
            w[order] = w_sorted
        return _hard_stats(rows, np.arange(K), w, K)
    idx = np.sort(random_state.choice(N, kms, replace=False))
    sample, w = src.take(idx)
    if how == "kmeans":
        km = KMeans(n_clusters=K, n_init=1, random_state=random_state).fit(sample, sample_weight=w)
        return src.reduce(_kmeans_block, (km, K, src.dtype))
    if how == "random":
        return gm._init_stats(sample, w, random_state)
    _, j = kmeans_plusplus(sample, K, random_state=random_state, sample_weight=w)   # k-means++
    return _hard_stats(sample[j], np.arange(K), None if w is None else w[j], K)


def _initialize(gm, src, random_state) -> None:
    dtype = src.dtype
    given = gm._check_initial(src.n_features, dtype)
    if len(given) == 3:
        w, m, c = given["weights"], given["means"], given["covariances"]
    else:
        for attr in ("means_", "covariances_"):
            if hasattr(gm, attr):
                delattr(gm, attr)
        w, m, c = gm._params_from_stats(_init_stats(gm, src, random_state), dtype)
        w, m, c = given.get("weights", w), given.get("means", m), given.get("covariances", c)
    gm._set_params_arrays(w, m, c, dtype)


# ------------------------------------------------------------------------------ EM driver
def fit_blocked(gm, X, sample_weight=None, labels: bool = False):
    """``gm.fit(X, sample_weight)`` for a Dask array, a memmap or a lazy array-like.

    Sets the same fitted attributes as the in-memory fit (``weights_``, ``means_``,
    ``covariances_``, ``precisions_``, ``precisions_cholesky_``, ``converged_``, ``n_iter_``,
    ``lower_bound_``, ``lower_bounds_``, ``n_features_in_``) with the same ``n_init``,
    ``max_iter``, ``tol``, ``warm_start`` and ``verbose`` semantics.  With ``labels`` returns the
    most probable component of every row: (n_samples,) int64, a lazy dask array for Dask input.
    """
    gm._check_params()
    if is_dask_array(X):
        src = _DaskSource(X, sample_weight, gm.n_threads)
    else:
        if len(X.shape) != 2:
            raise ValueError(f"Expected 2D array, got {len(X.shape)}-D array-like instead.")
        dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
        src = _ArraySource(X, sample_weight, dtype, gm.n_threads)
    N, D = src.n_rows, src.n_features
    if D < 1:
        raise ValueError(f"0 feature(s) (shape=({N}, 0)) while a minimum of 1 is required.")
    if N < 2:
        raise ValueError(f"Found array with {N} sample(s) (shape=({N}, {D})) while a minimum of 2 is required.")
    if N < gm.n_components:
        raise ValueError("Expected n_samples >= n_components but got n_components = "
                         f"{gm.n_components}, n_samples = {N}")
    if hasattr(gm, "feature_names_in_"):
        del gm.feature_names_in_
    gm._check_initial(D, src.dtype)
    gm.n_features_in_ = D
    gm._run_em(src.dtype, lambda rs: _initialize(gm, src, rs),
               lambda: src.reduce(block_stats, src.stats_params(gm)))
    if labels:
        return src.labels(gm)
    return None
