"""Bridge between the estimator and the compiled core: model matrices, buffers, threads.

Nothing here computes a likelihood: it prepares the (2D, K) matrix and the per-component
constants, owns the per-thread buffers, limits BLAS to one thread while the core's
OpenMP threads run, and sums the per-thread accumulators.

Built once, reused (Kaldi keeps ``gconsts_`` / ``means_invvars_`` on its ``DiagGmm``): every
estimator holds a :class:`CoreCache` with its ``(shift, M, gconst)`` per dtype and a small pool
of :class:`Engine` objects (work buffers), so a loop of ``accumulate`` / ``top_components`` /
``score_samples`` calls over thousands of utterances builds neither again.
"""
from __future__ import annotations

import functools
import os
import threading
from contextlib import contextmanager

import numpy as np

from . import _core
from scipy import linalg

from ._covariance import feature_layout, per_component_diag, precisions_cholesky
from ._stats import GMMStats

#: Kept fraction below which a chunk's statistics are summed sparsely (src/gmm_kernels.h,
#: GMMX_DROP); a negative limit makes every chunk use the dense gemm.
SPARSE_LIMIT = 0.25

#: (frame-component pair, model) cells below which ``top_c_loglik_shared`` runs on one thread.
SHARED_THREADS_CELLS = 1 << 20

def _set_blas_threads(lib, n: int) -> None:
    """Set a BLAS library's thread count (a threadpoolctl controller) from any Python thread.

    threadpoolctl >= 3.8 drops an OpenBLAS (pthreads) ``set_num_threads`` unless it comes from
    its "controlling thread"; ``_real_set_num_threads`` is its unfiltered setter (absent, and
    not needed, before 3.8).
    """
    getattr(lib, "_real_set_num_threads", lib.set_num_threads)(n)


class _BlasSingleThread:
    """BLAS limited to one thread while any core call runs, process-wide and re-entrant.

    The core's chunks are small gemms run from (possibly several) OpenMP threads: a
    multi-threaded BLAS inside them only adds synchronisation (measured 3x slower here, and
    ~10x slower on small calls even with one OpenMP thread).  The limit is a process-wide
    setting, so overlapping calls from several Python threads share it: the first one in
    sets BLAS to one thread, the last one out restores what was there.  The BLAS libraries
    are found once with threadpoolctl; each call then costs two cheap C calls per library.

    The limit is set through each library's own setter (:func:`_set_blas_threads`), not
    threadpoolctl's ``set_num_threads``: since threadpoolctl 3.8, that one ignores calls from
    any Python thread but the first one that set an OpenBLAS (pthreads) limit while it lives
    (the main thread, once it has run any core call), so a core call from a worker thread
    ran with BLAS's full thread count: slower, and, OpenBLAS splitting a multi-threaded gemm
    into other tiles, with other rounding.  This guard is itself the process-wide arbiter
    of its setting, so it needs no second one.
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
                    _set_blas_threads(lib, 1)
            self._depth += 1
        return self

    def __exit__(self, *exc):
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                for lib, n in zip(self._libs, self._saved):
                    _set_blas_threads(lib, n)
        return False


_blas_single_thread = _BlasSingleThread()
#: Public name (``gmmext.single_thread_blas``): ``with single_thread_blas: ...`` runs small BLAS
#: calls of the caller's own (e.g. the MFCC filterbank product of one utterance) on one thread,
#: sharing the core's re-entrant, process-wide limit.
single_thread_blas = _blas_single_thread


def one_blas_thread(fn):
    """``fn`` run with BLAS limited to one thread (:class:`_BlasSingleThread`).

    For the M-step and the model matrices: K small (D x D) Cholesky factors, triangular solves
    and eigenvalue problems, which a threaded BLAS only slows down (on a loaded machine an
    M-step at K=64, D=39 took 0.85 s with two BLAS threads, 0.01 s with one).
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _blas_single_thread:
            return fn(*args, **kwargs)
    return wrapper


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


def feature_columns(n_features: int, layout: str) -> int:
    """P, the columns of the core's feature map: 2D (diagonal layout) or D + D(D+1)/2 (full)."""
    D = int(n_features)
    return D + D * (D + 1) // 2 if layout == "full" else 2 * D


@one_blas_thread
def model_matrices(weights, means, covariances, dtype, shift=None, covariance_type: str = "diag"):
    """Return ``shift`` (D,), ``M`` (P, K), ``gconst`` (K,) and ``whiten`` in ``dtype`` for the core.

    From (K,), (K, D) and ``covariances`` of ``covariance_type``'s shape (``gmmext._covariance``).
    With ``y = x - shift``, ``phi(y) @ M + gconst`` are the weighted log-densities
    ``log w_k + log N(x | mu_k, cov_k)``, ``phi`` the core's feature map: ``[y, y**2]``
    (P = 2D, diag and spherical) or ``[y, y_a y_b for a <= b]`` (P = D + D(D+1)/2, full;
    the quadratic rows hold ``-P_aa / 2`` and ``-P_ab``, P the precision matrix).  Tied:
    ``whiten`` is ``T = C^T`` (D, D), C the shared upper-triangular ``precisions_cholesky_``,
    and ``phi(T y)`` is the diagonal layout with unit variances (means ``T (mu_k - shift)``);
    ``whiten`` is None for the other types.  The shift is the mixture's mean unless given, so
    that ``y`` is centred.  Computed in float64 (precisions from the Cholesky factor, as
    scikit-learn), then cast.
    """
    w = np.asarray(weights, dtype=np.float64)
    mu0 = np.asarray(means, dtype=np.float64)
    if shift is None:
        shift = (w / w.sum()) @ mu0
    shift = np.ascontiguousarray(shift, dtype=dtype)
    mu = mu0 - shift.astype(np.float64)
    K, D = mu.shape
    with np.errstate(divide="ignore"):
        logw = np.log(w)
    whiten = None
    if covariance_type == "tied":
        C = precisions_cholesky(covariances, covariance_type)
        whiten = np.ascontiguousarray(C.T, dtype=dtype)
        mz = mu @ whiten.T.astype(np.float64)                        # T (mu_k - shift), as rows
        M = np.empty((2 * D, K), dtype=dtype)
        M[:D] = mz.T
        M[D:] = -0.5
        logdet = np.full(K, np.log(np.diagonal(C)).sum())
        quad = (mz * mz).sum(axis=1)
    elif feature_layout(covariance_type) == "diag":
        prec = 1.0 / per_component_diag(covariances, covariance_type, D)
        M = np.empty((2 * D, K), dtype=dtype)
        lin, gconst = diag_terms(logw, mu, prec)
        M[:D] = lin.T
        M[D:] = (-0.5 * prec).T
        return shift, M, np.ascontiguousarray(gconst, dtype=dtype), whiten
    else:
        C = precisions_cholesky(covariances, covariance_type)
        prec = np.einsum("kij,klj->kil", C, C)                       # (K, D, D)
        pm = np.einsum("kij,kj->ki", prec, mu)                       # P_k mu_k
        a, b = np.triu_indices(D)
        M = np.empty((feature_columns(D, "full"), K), dtype=dtype)
        M[:D] = pm.T
        M[D:] = (np.where(a == b, -0.5, -1.0)[:, None] * prec[:, a, b].T)
        logdet = np.log(np.diagonal(C, axis1=1, axis2=2)).sum(axis=1)
        quad = (pm * mu).sum(axis=1)
    gconst = _gconst(logw, D, logdet, quad)
    return shift, M, np.ascontiguousarray(gconst, dtype=dtype), whiten


def _gconst(logw, D: int, logdet, quad):
    """``log w - D/2 log(2 pi) + log det L - quad / 2`` (the per-component constant of M's layout)."""
    return logw - 0.5 * D * np.log(2.0 * np.pi) + logdet - 0.5 * quad


def diag_terms(logw, mu, prec):
    """Diagonal layout: ``(mu * prec, gconst)`` for ``mu`` already shifted, broadcasting over leading axes.

    ``logw`` (..., K), ``mu`` (..., K, D), ``prec`` (K, D) or (..., K, D) (``1 / variance``), float64.
    ``mu * prec`` are rows 0..D-1 of M (transposed); rows D..2D-1 are ``-prec / 2``.  Used by
    :func:`model_matrices` for one model and by ``ModelStack`` for many at once (the same
    operations, so the same values).
    """
    D = mu.shape[-1]
    logdet = 0.5 * np.log(prec).sum(axis=-1)
    quad = (mu * mu * prec).sum(axis=-1)
    return mu * prec, _gconst(logw, D, logdet, quad)


def triangle_to_matrix(tri: np.ndarray, D: int) -> np.ndarray:
    """(..., D(D+1)/2) upper triangles (``numpy.triu_indices`` order) -> (..., D, D) symmetric."""
    a, b = np.triu_indices(D)
    out = np.empty(tri.shape[:-1] + (D, D))
    out[..., a, b] = tri
    out[..., b, a] = tri
    return out


def _as_segments(X) -> tuple:
    """The core's frame list: a tuple of 2-D arrays (one array is a tuple of one)."""
    return (X,) if isinstance(X, np.ndarray) else tuple(X)


def _to_raw(acc_s, acc_n, shift, n_threads: int = 1, full: bool = False):
    """Statistics about ``shift`` (R, K, D2) -> plain ``sum r x`` / second order in place (the core's ``unshift``).

    Returns ``(sum_x (R, K, D), sum_xx)``: sum_xx is a view (R, K, D) of ``sum r x**2`` for the
    diagonal layout (D2 = 2D), the (R, K, D, D) matrices ``sum r x x^T`` for the full layout
    (``full``; D2 = D + D(D+1)/2, which is 2D too when D = 1),
    None for first-order statistics (D2 = D).
    """
    D = shift.shape[0]
    _core.unshift(acc_s, acc_n, np.ascontiguousarray(shift, dtype=np.float64), n_threads)
    D2 = acc_s.shape[-1]
    if D2 == D:
        return acc_s[..., :D], None
    if not full:
        return acc_s[..., :D], acc_s[..., D:]
    return acc_s[..., :D], triangle_to_matrix(acc_s[..., D:], D)


class Engine:
    """Per-thread buffers for one (dtype, D, K, chunk, threads, sparse limit, layout) setting, allocated once.

    One Engine serves a whole ``fit`` (every EM pass reuses its buffers) and, through
    :class:`CoreCache`, every later call of the estimator's methods from the same Python
    thread.  An Engine is not safe for two Python threads at once; nothing it returns
    refers to its buffers, so sequential calls (even interleaved between two users in one
    thread) never see each other.  ``sparse_limit`` is the core's sparse-statistics switch
    (:data:`SPARSE_LIMIT`; negative: always the dense gemm).  ``layout`` is the core's
    ("diag": P = 2D feature columns; "full": P = D + D(D+1)/2), which the model matrices
    must have.  Every method takes the model as :func:`model_matrices` gives it,
    ``(shift, M, gconst, whiten)``; a ``whiten`` that is not None (tied) makes the statistics
    :meth:`_tied_stats`'.
    """

    def __init__(self, dtype, n_features: int, n_components: int,
                 chunk_size: int | None = None, n_threads: int | None = None,
                 sparse_limit: float = SPARSE_LIMIT, layout: str = "diag"):
        self.dtype = np.dtype(dtype)
        self.D, self.K = int(n_features), int(n_components)
        self.layout = layout
        self.P = P = feature_columns(self.D, layout)
        self.chunk = int(chunk_size) if chunk_size else default_chunk_size(P // 2, self.K, self.dtype.itemsize)
        self.threads = int(n_threads) if n_threads else available_threads()
        self.sparse_limit = float(sparse_limit)
        T, c = self.threads, self.chunk
        self.xx = np.empty((T, c, P), dtype=self.dtype)
        self.L = np.empty((T, c, self.K), dtype=self.dtype)
        self.S = np.empty((T, self.K, P), dtype=self.dtype)
        self.acc_s = np.zeros((T, self.K, P))
        self.acc_n = np.zeros((T, self.K))
        self.acc_scalar = np.zeros((T, 2))
        self._scatter_bufs = None

    def _threads_for(self, n_rows: int) -> int:
        n_chunks = -(-n_rows // self.chunk)
        return max(1, min(self.threads, n_chunks))

    def _scatter(self, segments, sample_weight, shift, T: int, per_segment: bool) -> np.ndarray:
        """Pooled second order ``sum_i w_i x_i x_i^T``: (R, 1, D, D), R = U (per segment) or 1.

        One core pass with a one-component model in the full layout (zero M: every frame's
        responsibility is its weight), so the statistics are ``sum_i w_i [y, triu(y y^T)]``,
        then unshifted.  Memory: the full layout's (chunk, D + D(D+1)/2) buffer per thread.
        """
        P = feature_columns(self.D, "full")
        if self._scatter_bufs is None:
            Tn, c, dt = self.threads, self.chunk, self.dtype
            self._scatter_bufs = (np.empty((Tn, c, P), dt), np.empty((Tn, c, 1), dt),
                                  np.empty((Tn, 1, P), dt), np.zeros((P, 1), dt), np.zeros(1, dt))
        xx, L, S, M1, g1 = self._scatter_bufs
        R = len(segments) if per_segment else T
        acc_s, acc_n, acc_scalar = np.zeros((R, 1, P)), np.zeros((R, 1)), np.zeros((R, 2))
        _core.accumulate(segments, sample_weight, shift, M1, g1, self.chunk, T, -1.0, per_segment,
                         xx, L, S, acc_s, acc_n, acc_scalar)
        if not per_segment:
            acc_s, acc_n = acc_s.sum(axis=0, keepdims=True), acc_n.sum(axis=0, keepdims=True)
        return _to_raw(acc_s, acc_n, shift, T, full=True)[1]

    def _tied_stats(self, segments, sample_weight, shift, M, gconst, whiten, T: int,
                    per_segment: bool, second_order: bool = True) -> list:
        """Tied statistics: one ``GMMStats`` per segment (``per_segment``) or one for all frames.

        The E-step runs on whitened frames ``z = T (x - shift)`` (diagonal layout, unit
        variances) and accumulates the first order only, ``sum r z``, mapped back to
        ``sum r x = T^-1 sum r z + n shift`` in float64; the second order is the pooled
        :meth:`_scatter` (1, D, D), which needs no responsibilities (they sum to each frame's
        weight).  ``second_order`` False: zeros instead, no second pass.
        """
        K, D = self.K, self.D
        R = len(segments) if per_segment else T
        acc_s, acc_n, acc_scalar = np.zeros((R, K, D)), np.zeros((R, K)), np.zeros((R, 2))
        with _blas_single_thread:
            _core.accumulate(segments, sample_weight, shift, M, gconst, self.chunk, T,
                             self.sparse_limit, per_segment, self.xx, self.L, self.S,
                             acc_s, acc_n, acc_scalar, whiten)
            sxx = self._scatter(segments, sample_weight, shift, T, per_segment) if second_order else None
        if not per_segment:
            acc_s, acc_n, acc_scalar = (a.sum(axis=0, keepdims=True) for a in (acc_s, acc_n, acc_scalar))
        sy = linalg.solve_triangular(whiten.astype(np.float64), acc_s.reshape(-1, D).T, lower=True)
        sx = sy.T.reshape(acc_s.shape) + acc_n[..., None] * shift.astype(np.float64)
        zeros = np.broadcast_to(np.float64(0.0), (1, D, D))
        return [GMMStats(acc_n[u], sx[u], zeros if sxx is None else sxx[u], acc_scalar[u, 0],
                         acc_scalar[u, 1]) for u in range(acc_n.shape[0])]

    def accumulate(self, X, sample_weight, shift, M, gconst, whiten=None) -> GMMStats:
        """Summed sufficient statistics of X under the model (shift, M, gconst).

        X (N, D), or a sequence of (n_u, D) arrays taken as their concatenation (in one core
        call, no copy; same result as the concatenated array); sample_weight (N,) float64 over
        all rows, or None.  The core accumulates about ``shift``; the result is converted back
        to plain ``sum r x`` and ``sum r x**2`` in float64.
        """
        segments = _as_segments(X)
        T = self._threads_for(sum(a.shape[0] for a in segments))
        if whiten is not None:
            return self._tied_stats(segments, sample_weight, shift, M, gconst, whiten, T, False)[0]
        self.acc_s.fill(0.0)
        self.acc_n.fill(0.0)
        self.acc_scalar.fill(0.0)
        with _blas_single_thread:
            _core.accumulate(segments, sample_weight, shift, M, gconst, self.chunk, T,
                             self.sparse_limit, False, self.xx, self.L, self.S,
                             self.acc_s, self.acc_n, self.acc_scalar)
        s = self.acc_s[:T].sum(axis=0)[None]
        n = self.acc_n[:T].sum(axis=0)[None]
        tot = self.acc_scalar[:T].sum(axis=0)
        sx, sxx = _to_raw(s, n, shift, full=self.layout == "full")
        return GMMStats(n[0], sx[0], sxx[0], float(tot[0]), float(tot[1]))

    def accumulate_segments(self, segments, sample_weight, shift, M, gconst, whiten=None,
                            second_order: bool = True) -> list:
        """One ``GMMStats`` per segment (U arrays (n_u, D)) from one core call.

        Each segment's statistics depend on the chunk size only (the core runs a segment's
        chunks in order on one thread), never on the thread count.  float64; ``sum_x`` /
        ``sum_xx`` of all segments are views of one (U, K, 2D) array (or (U, K, D) first-order
        only, ``sum_xx`` then zeros) to avoid copies of what may be hundreds of MB.
        """
        segments = _as_segments(segments)
        U, K, D = len(segments), self.K, self.D
        if U == 0:
            return []
        T = max(1, min(self.threads, U))
        if whiten is not None:
            return self._tied_stats(segments, sample_weight, shift, M, gconst, whiten, T, True,
                                    second_order)
        acc_s = np.zeros((U, K, self.P if second_order else D))
        acc_n = np.zeros((U, K))
        acc_scalar = np.zeros((U, 2))
        with _blas_single_thread:
            _core.accumulate(segments, sample_weight, shift, M, gconst, self.chunk, T,
                             self.sparse_limit, True, self.xx, self.L, self.S,
                             acc_s, acc_n, acc_scalar)
        sx, sxx = _to_raw(acc_s, acc_n, shift, T, full=self.layout == "full")
        zeros = np.broadcast_to(np.float64(0.0), (K, D) if self.layout == "diag" else (K, D, D))
        return [GMMStats(acc_n[u], sx[u], zeros if sxx is None else sxx[u],
                         acc_scalar[u, 0], acc_scalar[u, 1]) for u in range(U)]

    def evaluate(self, X, shift, M, gconst, whiten=None, *, loglik=False, resp=False, logprob=False, labels=False):
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
            _core.evaluate((X,), shift, M, gconst, self.chunk, T, self.xx, self.L,
                           out.get("loglik"), out.get("resp"), out.get("logprob"), out.get("labels"),
                           whiten)
        return out

    def top_components(self, X, shift, M, gconst, whiten, c: int):
        """(indices (N, c) int32, top-c log-likelihood (N,) float64) of X under one model."""
        N = X.shape[0]
        idx = np.empty((N, c), dtype=np.int32)
        ll = np.empty(N, dtype=np.float64)
        vals = np.empty((self.threads, c), dtype=self.dtype)
        T = self._threads_for(N)
        with _blas_single_thread:
            _core.topc_select((X,), shift, M, gconst, c, self.chunk, T, self.xx, self.L, vals, idx, ll,
                              whiten)
        return idx, ll

    def top_c_loglik(self, X, idx, shift, Mt, gconst, whiten=None) -> np.ndarray:
        """Total top-C log-likelihood of X under S models: Mt (S, K, P), gconst (S, K) -> (S,).

        ``whiten``: the (D, D) whitening all S models share (tied), or None.
        """
        S = Mt.shape[0]
        acc = np.zeros((self.threads, S))
        vals = np.empty((self.threads, idx.shape[1]), dtype=self.dtype)
        T = self._threads_for(X.shape[0])
        _core.topc_loglik((X,), idx, shift, Mt, gconst, self.chunk, T, self.xx, vals, acc, whiten)
        return acc[:T].sum(axis=0)


    def top_c_loglik_shared(self, X, idx, shift, Q, A, G, S: int) -> np.ndarray:
        """Total top-C log-likelihood of X under S models sharing one set of variances -> (S,).

        ``Q`` (K, D) ``-1 / (2 var)``; the models packed in panels, ``A`` (K, n_pan, D, PW)
        and ``G`` (K, n_pan * PW): see ``_core.topc_loglik_shared`` (one product per selected
        component and panel of models; a model's total does not depend on the others).
        """
        out = np.zeros(S)
        # threads only when there is work for them: below ~1M (pair, model) cells (e.g. 700 models
        # for a 3-s recording at C = 5) a parallel region costs more than it saves, most of all on
        # a busy machine (measured: 30 models, 11 ms on one thread, 79 ms on two)
        T = self.threads if S * idx.size >= SHARED_THREADS_CELLS else 1
        with _blas_single_thread:
            _core.topc_loglik_shared((X,), idx, shift, Q, A, G, T, out)
        return out


class CoreCache:
    """What an estimator keeps for the core between calls: model matrices and engines.

    * **Matrices** ``(shift, M, gconst)`` per (dtype, shift), built from the parameters on first
      use and reused while the parameters stay what they were: every lookup compares the
      current ``weights_`` / ``means_`` / ``covariances_`` with a private snapshot taken at build
      time (``numpy.array_equal``, ~5 us per array at K=512, D=39, against ~170 us for a
      rebuild), so assigning ``gm.means_ = ...`` and editing an array in place are both seen.
      ``_set_params_arrays`` (fit, ``m_step``, ``from_parameters``) calls :meth:`invalidate`.
      Besides the model's own shift, a few foreign shifts are kept (``ModelStack`` builds a
      speaker model about the UBM's mean).
    * **Engines**: one per setting per Python thread (``threading.local``), created on first
      use; a thread's calls run one after another, so its engine is never used twice at once,
      and an engine's results never depend on its earlier use, so they are identical whatever
      thread calls.
    * ``sparse_limit``: the core's sparse-statistics switch for this estimator's engines
      (:data:`SPARSE_LIMIT`; a negative value forces the dense gemm: benchmarks and tests).

    Pickling, ``copy.deepcopy`` and ``sklearn.base.clone`` give an empty cache (``clone`` does not
    copy it at all): nothing here is state of the model.
    """

    _MAX_MATRICES = 8
    _MAX_ENGINES = 4         # settings kept per thread (set_params(n_threads=...) makes a new one)

    def __init__(self):
        self.sparse_limit = SPARSE_LIMIT
        self._lock = threading.Lock()
        self._snapshot = None
        self._matrices = {}
        self._local = threading.local()

    def __reduce__(self):
        return (CoreCache, ())

    def __deepcopy__(self, memo):
        return CoreCache()

    def invalidate(self) -> None:
        """Forget the matrices (the parameters changed)."""
        with self._lock:
            self._snapshot = None
            self._matrices.clear()

    def matrices(self, weights, means, covariances, dtype, shift=None, covariance_type: str = "diag"):
        """``model_matrices(weights, means, covariances, dtype, shift, covariance_type)``, built once per parameter version."""
        dtype = np.dtype(dtype)
        params = (weights, means, covariances)
        key = (dtype.str, None if shift is None else np.asarray(shift, dtype=dtype).tobytes(),
               covariance_type)
        with self._lock:
            snap = self._snapshot
            if snap is None or not all(np.array_equal(a, b) for a, b in zip(params, snap)):
                self._snapshot = tuple(np.array(a, copy=True) for a in params)
                self._matrices.clear()
            hit = self._matrices.get(key)
            if hit is None:
                hit = model_matrices(*self._snapshot, dtype, shift=shift, covariance_type=covariance_type)
                if len(self._matrices) >= self._MAX_MATRICES:
                    self._matrices.pop(next(iter(self._matrices)))
                self._matrices[key] = hit
            return hit

    def engine(self, dtype, n_features: int, n_components: int, chunk_size, n_threads,
               layout: str = "diag") -> Engine:
        """The calling thread's Engine for this setting (created on first use)."""
        key = (np.dtype(dtype).str, int(n_features), int(n_components), chunk_size, n_threads,
               self.sparse_limit, layout)
        engines = getattr(self._local, "engines", None)
        if engines is None:
            engines = self._local.engines = {}
        eng = engines.get(key)
        if eng is None:
            if len(engines) >= self._MAX_ENGINES:
                engines.pop(next(iter(engines)))
            eng = engines[key] = Engine(dtype, n_features, n_components, chunk_size, n_threads,
                                        self.sparse_limit, layout)
        return eng
