"""Bridge between the estimator and the compiled core: model matrices, buffers, threads.

Nothing here computes a likelihood: it prepares the (2D, K) matrix and the per-component
constants, owns the per-thread buffers, limits BLAS to one thread while the core's
OpenMP threads run, and sums the per-thread accumulators.
"""
from __future__ import annotations

import os
import threading

import numpy as np

from . import _core
from ._stats import GMMStats

class _BlasSingleThread:
    """BLAS limited to one thread while any core call runs, process-wide and re-entrant.

    The core's chunks are small gemms run from (possibly several) OpenMP threads: a
    multi-threaded BLAS inside them only adds synchronisation (measured 3x slower here, and
    ~10x slower on small calls even with one OpenMP thread).  The limit is a process-wide
    setting, so overlapping calls from several Python threads share it: the first one in
    sets BLAS to one thread, the last one out restores what was there.  The BLAS libraries
    are found once with threadpoolctl; each call then costs two cheap C calls per library.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._libs = None
        self._saved = []

    def __enter__(self):
        with self._lock:
            if self._depth == 0:
                if self._libs is None:
                    from threadpoolctl import ThreadpoolController
                    self._libs = ThreadpoolController().select(user_api="blas").lib_controllers
                self._saved = [lib.num_threads for lib in self._libs]
                for lib in self._libs:
                    lib.set_num_threads(1)
            self._depth += 1
        return self

    def __exit__(self, *exc):
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                for lib, n in zip(self._libs, self._saved):
                    lib.set_num_threads(n)
        return False


_blas_single_thread = _BlasSingleThread()


def available_threads() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_chunk_size(n_features: int, n_components: int, itemsize: int) -> int:
    """Rows per chunk so that a chunk's [x, x^2] and its K log-densities take about 1 MiB."""
    rows = (1 << 20) // ((n_components + 2 * n_features) * itemsize)
    return int(min(4096, max(64, rows)))


def model_matrices(weights, means, covariances, dtype, shift=None):
    """Return ``shift`` (D,), ``M`` (2D, K) and ``gconst`` (K,) in ``dtype`` for the core.

    From (K,), (K, D), (K, D) parameters.  With ``y = x - shift``, ``[y, y**2] @ M + gconst``
    are the weighted log-densities ``log w_k + log N(x | mu_k, var_k)``.  The shift is the
    mixture's mean unless given, so that ``y`` is centred.  Computed in float64, then cast.
    """
    w = np.asarray(weights, dtype=np.float64)
    mu0 = np.asarray(means, dtype=np.float64)
    if shift is None:
        shift = (w / w.sum()) @ mu0
    shift = np.ascontiguousarray(shift, dtype=dtype)
    mu = mu0 - shift.astype(np.float64)
    prec = 1.0 / np.asarray(covariances, dtype=np.float64)
    n_features = mu.shape[1]
    M = np.empty((2 * n_features, mu.shape[0]), dtype=dtype)
    M[:n_features] = (mu * prec).T
    M[n_features:] = (-0.5 * prec).T
    with np.errstate(divide="ignore"):
        logw = np.log(w)
    gconst = (logw - 0.5 * n_features * np.log(2.0 * np.pi)
              + 0.5 * np.log(prec).sum(axis=1) - 0.5 * (mu * mu * prec).sum(axis=1))
    return shift, M, np.ascontiguousarray(gconst, dtype=dtype)


class Engine:
    """Per-thread buffers for one (dtype, D, K, chunk, threads) setting, allocated once.

    One Engine serves a whole ``fit``: every EM pass reuses its buffers.  Not shareable
    between Python threads running at the same time (each call of the estimator's
    public methods makes its own).
    """

    def __init__(self, dtype, n_features: int, n_components: int,
                 chunk_size: int | None = None, n_threads: int | None = None):
        self.dtype = np.dtype(dtype)
        self.D, self.K = int(n_features), int(n_components)
        self.chunk = int(chunk_size) if chunk_size else default_chunk_size(self.D, self.K, self.dtype.itemsize)
        self.threads = int(n_threads) if n_threads else available_threads()
        T, c = self.threads, self.chunk
        self.xx = np.empty((T, c, 2 * self.D), dtype=self.dtype)
        self.L = np.empty((T, c, self.K), dtype=self.dtype)
        self.S = np.empty((T, self.K, 2 * self.D), dtype=self.dtype)
        self.acc_s = np.zeros((T, self.K, 2 * self.D))
        self.acc_n = np.zeros((T, self.K))
        self.acc_scalar = np.zeros((T, 2))

    def _threads_for(self, n_rows: int) -> int:
        n_chunks = -(-n_rows // self.chunk)
        return max(1, min(self.threads, n_chunks))

    def accumulate(self, X, sample_weight, shift, M, gconst) -> GMMStats:
        """Sufficient statistics of X (N, D) under the model (shift, M, gconst); sample_weight (N,) or None.

        The core accumulates about ``shift``; the result is converted back to plain
        ``sum r x`` and ``sum r x**2`` in float64.
        """
        self.acc_s.fill(0.0)
        self.acc_n.fill(0.0)
        self.acc_scalar.fill(0.0)
        T = self._threads_for(X.shape[0])
        with _blas_single_thread:
            _core.accumulate(X, sample_weight, shift, M, gconst, self.chunk, T, self.xx, self.L,
                             self.S, self.acc_s, self.acc_n, self.acc_scalar)
        D = self.D
        s = self.acc_s[:T].sum(axis=0)
        tot = self.acc_scalar[:T].sum(axis=0)
        n = self.acc_n[:T].sum(axis=0)
        c = shift.astype(np.float64)
        sx, sxx = s[:, :D], s[:, D:]
        return GMMStats(n, sx + n[:, None] * c, sxx + 2.0 * sx * c + n[:, None] * (c * c),
                        float(tot[0]), float(tot[1]))

    def evaluate(self, X, shift, M, gconst, *, loglik=False, resp=False, logprob=False, labels=False):
        """Per-frame outputs for X (N, D): a dict with the requested arrays.

        ``loglik`` (N,) float64, ``resp`` and ``logprob`` (N, K) in the engine's dtype,
        ``labels`` (N,) int64.
        """
        N = X.shape[0]
        out = {}
        if loglik:
            out["loglik"] = np.empty(N, dtype=np.float64)
        if resp:
            out["resp"] = np.empty((N, self.K), dtype=self.dtype)
        if logprob:
            out["logprob"] = np.empty((N, self.K), dtype=self.dtype)
        if labels:
            out["labels"] = np.empty(N, dtype=np.int64)
        T = self._threads_for(N)
        with _blas_single_thread:
            _core.evaluate(X, shift, M, gconst, self.chunk, T, self.xx, self.L,
                           out.get("loglik"), out.get("resp"), out.get("logprob"), out.get("labels"))
        return out

    def top_components(self, X, shift, M, gconst, c: int):
        """(indices (N, c) int32, top-c log-likelihood (N,) float64) of X under one model."""
        N = X.shape[0]
        idx = np.empty((N, c), dtype=np.int32)
        ll = np.empty(N, dtype=np.float64)
        vals = np.empty((self.threads, c), dtype=self.dtype)
        T = self._threads_for(N)
        with _blas_single_thread:
            _core.topc_select(X, shift, M, gconst, c, self.chunk, T, self.xx, self.L, vals, idx, ll)
        return idx, ll

    def top_c_loglik(self, X, idx, shift, Mt, gconst) -> np.ndarray:
        """Total top-C log-likelihood of X under S models: Mt (S, K, 2D), gconst (S, K) -> (S,)."""
        S = Mt.shape[0]
        acc = np.zeros((self.threads, S))
        vals = np.empty((self.threads, idx.shape[1]), dtype=self.dtype)
        T = self._threads_for(X.shape[0])
        _core.topc_loglik(X, idx, shift, Mt, gconst, self.chunk, T, self.xx, vals, acc)
        return acc[:T].sum(axis=0)
