"""EM statistics by row blocks, in this process: memmaps and lazily sliced array-likes.

:meth:`gmmext.GaussianMixture.fit` streams two kinds of input here (see :func:`wants_blocked`):
a ``numpy.memmap``, or any 2-D array-like that is not an ``ndarray`` but slices lazily
(``shape``, ``dtype``, ``X[a:b]``: h5py / zarr datasets, ...).  The data is read in row blocks
of about 64 MiB, one at a time, so the process never holds more than one block (a memmap block
is a view, not a copy) plus the core's per-thread chunk buffers.  Every block is validated as it
is read, with ``check_array``'s checks and messages (:func:`gmmext._validation.check_block`).

The per-block E-step (:class:`StatsParams`, :func:`block_stats`) is also what the Dask tasks of
:mod:`gmmext._dask` run: it needs the parameters and the compiled core, not the estimator.
Nothing here imports Dask or the estimator.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ._covariance import CovarianceType, get, model_matrices
from ._engine import Engine
from ._stats import GMMStats
from ._validation import check_block, check_sample_weight, check_source_dtype, computation_dtype

__all__ = ["wants_blocked", "is_dask_array", "ArraySource", "block_stats", "block_labels", "StatsParams",
           "BLOCK_BYTES"]

#: Target size of one row block of a memmap / array-like, bytes, rounded to 65536-row units (a
#: multiple of the core's largest chunk, 4096 rows, so that float32 chunk sums are those of an
#: in-memory fit).
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
        return len(X.shape) == 2 and np.dtype(X.dtype).kind in "biufc"
    except TypeError:                                     # e.g. a torch dtype
        return False


def wants_blocked(X: Any) -> bool:
    """Whether ``fit`` should run block-wise: a Dask array, a memmap or a lazy array-like."""
    return is_dask_array(X) or isinstance(X, np.memmap) or _is_lazy_array(X)


# ------------------------------------------------------------------------------ per-block work
@dataclass(frozen=True)
class StatsParams:
    """What a block task needs to run the E-step: the parameters, nothing else (O(K*D) numbers).

    weights (K,), means (K, D), covariances (of ``covariance_type``'s shape) in the model's
    dtype; ``chunk_size`` and ``n_threads`` of the core for this block.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    chunk_size: int | None = None
    n_threads: int | None = 1
    covariance_type: str = "diag"
    log_weights: np.ndarray | None = None    #: (K,) the variational E-step's constants, else None

    def __sizeof__(self) -> int:          # what Dask's sizeof (hence its transfer counters) sees
        return object.__sizeof__(self) + self.weights.nbytes + self.means.nbytes + self.covariances.nbytes

    @classmethod
    def of(cls, gm, n_threads: int | None) -> "StatsParams":
        """The fitted parameters of ``gm`` (any object with ``weights_``, ``means_``, ``covariances_``)."""
        log_weights = gm._core_log_weights() if hasattr(gm, "_core_log_weights") else None
        return cls(gm.weights_, gm.means_, gm.covariances_, gm.chunk_size, n_threads,
                   getattr(gm, "covariance_type", "diag"), log_weights)

    @property
    def shape(self) -> tuple[int, int]:
        """(K, D)."""
        return self.means.shape

    def prepare(self, X, start: int = 0):
        """A validated block in the compute dtype (the model's or the block's, whichever is higher),
        and the core's engine and model matrices for it.  ``X`` may be a list of arrays (a block
        of utterances): each validated (rows counted from ``start`` on), one dtype, one engine
        and one set of matrices for all of them; the list comes back."""
        K, D = self.means.shape
        many = isinstance(X, (list, tuple))
        arrays = []
        for x in (X if many else [X]):
            n = _n_rows(x)
            arrays.append(check_block(x, D, rows=(start, start + n)))
            start += n
        dtype = computation_dtype(self.means.dtype, *(x.dtype for x in arrays))
        arrays = [x.astype(dtype, copy=False) for x in arrays]
        X = arrays if many else arrays[0]
        engine = Engine(dtype, D, K, self.chunk_size, self.n_threads, kind=self.kind)
        return X, engine, model_matrices(self.weights, self.means, self.covariances, dtype, self.kind,
                                         log_weights=self.log_weights)

    @property
    def kind(self) -> CovarianceType:
        """The object of ``covariance_type`` (``gmmext._covariance``)."""
        return get(self.covariance_type)

    def zero_stats(self) -> GMMStats:
        """Empty statistics of this model's E-step layout (pooled second order for "tied")."""
        return self.kind.zero_stats(*self.means.shape)


def _n_rows(X) -> int:
    shape = getattr(X, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) else len(X)


def block_stats(params: StatsParams, X, sample_weight=None, start: int = 0) -> GMMStats:
    """E-step statistics of one block under ``params``, as ``GaussianMixture.accumulate`` gives.

    ``X`` is an (n, D) array, or a list of such arrays (one core call over all of them, as
    ``accumulate(list)``: the engine and the model matrices built once; no ``sample_weight``);
    ``start`` is the block's first row, for error messages.  A block of zero total weight gives
    zero statistics.  Bad values raise ``ValueError`` starting with ``"rows start:stop: "``.
    """
    X, engine, matrices = params.prepare(X, start)
    if isinstance(X, list):
        X = [x for x in X if x.shape[0]]
        return engine.accumulate(X, None, matrices) if X else params.zero_stats()
    sw = check_sample_weight(sample_weight, X.shape[0], rows=(start, start + X.shape[0]))
    if X.shape[0] == 0 or (sw is not None and not sw.sum() > 0):
        return params.zero_stats()
    return engine.accumulate(X, sw, matrices)


def block_labels(params: StatsParams, X, start: int = 0) -> np.ndarray:
    """Most probable component of every row of one block, (n,) int64."""
    X, engine, matrices = params.prepare(X, start)
    if X.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    return engine.evaluate(X, matrices, labels=True)["labels"]


# ------------------------------------------------------------------------------ the source
class ArraySource:
    """An (N, D) array read in row blocks in this process: a row source for ``gmmext._init``.

    ``X`` is a memmap or a lazily sliced array-like (every block validated as it is read), or an
    in-memory ndarray already validated by the estimator (``checked=True``: one block, no copy).
    ``sample_weight`` is checked by :func:`gmmext._validation.check_sample_weight`.
    """

    local = True

    def __init__(self, X, sample_weight, n_threads: int | None, *, checked: bool = False):
        if len(X.shape) != 2:
            raise ValueError(f"Expected 2D array, got {len(X.shape)}-D array-like instead.")
        self.X = X
        self.dtype = np.dtype(X.dtype) if checked else check_source_dtype(X)
        self.n_rows, self.n_features = (int(s) for s in X.shape)
        self.n_threads = n_threads
        self.in_memory = checked
        self.sw = check_sample_weight(sample_weight, self.n_rows)
        per_row = max(1, self.n_features * self.dtype.itemsize)
        self.block_rows = self.n_rows if checked else max(1, BLOCK_BYTES // per_row // _ROW_UNIT) * _ROW_UNIT

    def read(self, s: int, e: int) -> np.ndarray:
        """Rows s:e, validated, in the source's dtype."""
        if self.in_memory:
            return self.X[s:e]
        return check_block(self.X[s:e], self.n_features, self.dtype, rows=(s, e))

    def _w(self, s, e):
        return None if self.sw is None else self.sw[s:e]

    def ranges(self, step: int | None = None):
        step = step or self.block_rows
        for s in range(0, self.n_rows, max(1, step)):
            yield s, min(s + step, self.n_rows)

    def stream(self, step: int):
        """(rows, weights) of consecutive ``step``-row slices, in order."""
        for s, e in self.ranges(step):
            yield self.read(s, e), self._w(s, e)

    def reduce(self, fn: Callable, payload) -> GMMStats:
        """``sum(fn(payload, block, weights, start))`` over the blocks, in order."""
        total = None
        for s, e in self.ranges():
            part = fn(payload, self.read(s, e), self._w(s, e), s)
            total = part if total is None else total + part
        return total

    def take(self, idx: np.ndarray | None):
        """Rows ``idx`` (sorted; None: all) and their weights."""
        if idx is None:
            return self.read(0, self.n_rows), self.sw
        w = None if self.sw is None else self.sw[idx]
        if self.in_memory:
            return self.X[idx], w
        if isinstance(self.X, np.ndarray):         # a memmap: only the pages of those rows are read
            return check_block(self.X[idx], self.n_features, self.dtype), w
        parts = []
        for s, e in self.ranges():
            lo, hi = np.searchsorted(idx, [s, e])
            if hi > lo:
                parts.append(self.read(s, e)[idx[lo:hi] - s])
        rows = np.concatenate(parts) if parts else np.empty((0, self.n_features), self.dtype)
        return rows, w

    def stats_params(self, gm) -> StatsParams:
        return StatsParams.of(gm, self.n_threads)

    def e_step(self, gm) -> GMMStats:
        """Statistics of all rows under ``gm``'s current parameters."""
        return self.reduce(block_stats, self.stats_params(gm))

    def labels(self, gm) -> np.ndarray:
        p = self.stats_params(gm)
        return np.concatenate([block_labels(p, self.read(s, e), s) for s, e in self.ranges()])
