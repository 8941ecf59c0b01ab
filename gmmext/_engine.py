"""Bridge between the estimator and the compiled core: buffers, threads, the model-matrix cache.

Nothing here computes a likelihood: it owns the per-thread buffers, runs the core with BLAS
limited to one thread (``gmmext._blas``), sums the per-thread accumulators and turns them into
:class:`~gmmext.GMMStats`.  The model matrices are built per covariance type by
``gmmext._covariance.model_matrices``.

Built once, reused (Kaldi keeps ``gconsts_`` / ``means_invvars_`` on its ``DiagGmm``): every
estimator holds a :class:`CoreCache` with its :class:`~gmmext._covariance.ModelMatrices` per
dtype and a small pool of :class:`Engine` objects (work buffers), so a loop of ``accumulate`` /
``top_components`` / ``score_samples`` calls over thousands of utterances builds neither again.
"""
from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np

from . import _core
from scipy import linalg

from ._blas import available_threads, single_thread_blas  # noqa: F401 - available_threads: re-exported
from ._covariance import DIAG, FULL, CovarianceType, ModelMatrices, model_matrices
from ._stats import GMMStats

#: Kept fraction below which a chunk's statistics are summed sparsely (src/gmm_kernels.h,
#: GMMX_DROP); a negative limit makes every chunk use the dense gemm.
SPARSE_LIMIT = 0.25

#: (frame-component pair, model) cells below which ``top_c_loglik_shared`` runs on one thread.
SHARED_THREADS_CELLS = 1 << 20

#: Bytes of float64 work blocks for per-group sums of segment statistics (Engine.accumulate_segments).
SEGMENT_WORK_BYTES = 32 << 20


class StackedMatrices(NamedTuple):
    """S models' matrices about one shift, for top-C scoring (the core's ``topc_loglik``)."""

    shift: np.ndarray           #: (D,)
    Mt: np.ndarray              #: (S, K, P): model s's M, transposed
    gconst: np.ndarray          #: (S, K)
    whiten: np.ndarray | None   #: (D, D) the whitening all S models share (tied), else None


class SharedMatrices(NamedTuple):
    """S diagonal models sharing one set of variances (the core's ``topc_loglik_shared``),
    packed in panels of PW models, one model per vector lane (``_core.panel_width``)."""

    shift: np.ndarray           #: (D,)
    Q: np.ndarray               #: (K, D): ``-1 / (2 var)`` of the shared variances
    A: np.ndarray               #: (K, n_pan, D, PW): model s's ``(mu_sk - shift) / var_k`` at ``[:, s // PW, :, s % PW]``
    G: np.ndarray               #: (K, n_pan * PW): model s's gconst in column s
    S: int                      #: the number of models (lanes past the last are zero)


def default_chunk_size(n_features: int, n_components: int, itemsize: int) -> int:
    """Rows per chunk so that a chunk's [x, x^2] and its K log-densities take about 1 MiB."""
    rows = (1 << 20) // ((n_components + 2 * n_features) * itemsize)
    return int(min(4096, max(64, rows)))


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


def _consistent_scatter(n_pass, sx_pass, sxx, n, sx) -> np.ndarray:
    """The pooled scatter ``sxx`` (R, 1, D, D) of :meth:`Engine._scatter`'s pass (with its own
    ``n_pass`` (R, 1) and ``sx_pass`` (R, 1, D)) re-expressed with the E-step's zeroth and first
    order ``n`` (R, K), ``sx`` (R, K, D): about the pass's mean ``c``, ``sxx + c d^T + d c^T -
    dn c c^T`` with ``d = sum_k sx - sx_pass``, ``dn = sum_k n - n_pass``.

    A frame's responsibilities sum to its weight only to rounding (in float32 with a bias: 1 +
    2e-9 on average in ``tests/test_gmm_covtypes.py``), and the tied M-step subtracts ``sum_k
    n_k mu_k mu_k^T`` (about ``N |mean|**2``) from the scatter: mixing the two passes turned that
    bias into ``2e-9 |mean|**2`` of variance (0.22 of a unit variance 1e4 off the origin).
    Consistent statistics leave only the bias times the spread about ``c``.
    """
    c = sx_pass[:, 0] / np.where(n_pass > 0, n_pass, 1.0)                      # (R, D)
    d = sx.sum(axis=1) - sx_pass[:, 0]
    dn = n.sum(axis=1) - n_pass[:, 0]
    cd = c[:, :, None] * d[:, None, :]
    fix = cd + np.swapaxes(cd, 1, 2) - dn[:, None, None] * c[:, :, None] * c[:, None, :]
    return sxx + fix[:, None]


class Engine:
    """Per-thread buffers for one (dtype, D, K, chunk, threads, sparse limit, covariance type), allocated once.

    One Engine serves a whole ``fit`` (every EM pass reuses its buffers) and, through
    :class:`CoreCache`, every later call of the estimator's methods from the same Python
    thread.  An Engine is not safe for two Python threads at once; nothing it returns
    refers to its buffers, so sequential calls (even interleaved between two users in one
    thread) never see each other.  ``sparse_limit`` is the core's sparse-statistics switch
    (:data:`SPARSE_LIMIT`; negative: always the dense gemm).  ``kind`` (a
    ``gmmext._covariance.CovarianceType``) fixes the core's layout (P feature columns), which
    the model matrices must have, and the statistics' layout (whitened, pooled for "tied").
    Every method takes the model as one :class:`~gmmext._covariance.ModelMatrices`.
    """

    def __init__(self, dtype, n_features: int, n_components: int,
                 chunk_size: int | None = None, n_threads: int | None = None,
                 sparse_limit: float = SPARSE_LIMIT, kind: CovarianceType = DIAG):
        self.dtype = np.dtype(dtype)
        self.D, self.K = int(n_features), int(n_components)
        self.kind = kind
        self.P = P = kind.feature_columns(self.D)
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
        self._seg_work = None

    def _threads_for(self, n_rows: int) -> int:
        n_chunks = -(-n_rows // self.chunk)
        return max(1, min(self.threads, n_chunks))

    def _scatter(self, segments, sample_weight, shift, T: int, per_segment: bool) -> tuple:
        """Pooled statistics ``(sum_i w_i (R, 1), sum_i w_i x_i (R, 1, D), sum_i w_i x_i x_i^T
        (R, 1, D, D))``, R = U (per segment) or 1.

        One core pass with a one-component model in the full layout (zero M: every frame's
        responsibility is its weight), so the statistics are ``sum_i w_i [y, triu(y y^T)]``,
        then unshifted.  Memory: the full layout's (chunk, D + D(D+1)/2) buffer per thread.
        """
        P = FULL.feature_columns(self.D)
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
        sx, sxx = _to_raw(acc_s, acc_n, shift, T, full=True)
        return acc_n, sx, sxx

    def _whitened_stats(self, segments, sample_weight, mm: ModelMatrices, T: int,
                        per_segment: bool, second_order: bool = True, scatter: dict | None = None) -> list:
        """Statistics of a whitened ("tied") model: one ``GMMStats`` per segment (``per_segment``) or one for all frames.

        The E-step runs on whitened frames ``z = T (x - shift)`` (diagonal layout, unit
        variances) and accumulates the first order only, ``sum r z``, mapped back to
        ``sum r x = T^-1 sum r z + n shift`` in float64; the second order is the pooled
        :meth:`_scatter` (1, D, D), which needs no responsibilities (they sum to each frame's
        weight).  ``second_order`` False: zeros instead, no second pass.  ``scatter``: see
        :meth:`accumulate` (not per segment).
        """
        K, D = self.K, self.D
        shift = mm.shift
        R = len(segments) if per_segment else T
        acc_s, acc_n, acc_scalar = np.zeros((R, K, D)), np.zeros((R, K)), np.zeros((R, 2))
        with single_thread_blas:
            _core.accumulate(segments, sample_weight, shift, mm.M, mm.gconst, self.chunk, T,
                             self.sparse_limit, per_segment, self.xx, self.L, self.S,
                             acc_s, acc_n, acc_scalar, mm.whiten)
            if not second_order:
                pooled = None
            elif scatter is not None and not per_segment:
                if "sxx" not in scatter:
                    scatter["sxx"] = self._scatter(segments, sample_weight, shift, T, False)
                pooled = scatter["sxx"]              # not changed below: the caller keeps it
            else:
                pooled = self._scatter(segments, sample_weight, shift, T, per_segment)
        if not per_segment:
            acc_s, acc_n, acc_scalar = (a.sum(axis=0, keepdims=True) for a in (acc_s, acc_n, acc_scalar))
        sy = linalg.solve_triangular(mm.whiten.astype(np.float64), acc_s.reshape(-1, D).T, lower=True)
        sx = sy.T.reshape(acc_s.shape) + acc_n[..., None] * shift.astype(np.float64)
        sxx = None if pooled is None else _consistent_scatter(*pooled, acc_n, sx)
        zeros = np.broadcast_to(np.float64(0.0), self.kind.stats_shape(K, D))
        return [GMMStats(acc_n[u], sx[u], zeros if sxx is None else sxx[u], acc_scalar[u, 0],
                         acc_scalar[u, 1]) for u in range(acc_n.shape[0])]

    def accumulate(self, X, sample_weight, mm: ModelMatrices, scatter: dict | None = None,
                   second_order: bool = True) -> GMMStats:
        """Summed sufficient statistics of X under the model ``mm``.

        X (N, D), or a sequence of (n_u, D) arrays taken as their concatenation (in one core
        call, no copy; same result as the concatenated array); sample_weight (N,) float64 over
        all rows, or None.  The core accumulates about ``mm.shift``; the result is converted
        back to plain ``sum r x`` and ``sum r x**2`` (or ``x x^T``) in float64.

        ``scatter``: for a whitened ("tied") model, a dict kept by the caller for as long as X
        and sample_weight do not change (a fit): the pooled second order, which does not depend
        on the model, is computed on the first call and reused from the dict after.
        ``second_order`` False: first order only (``sum_xx`` zeros).
        """
        segments = _as_segments(X)
        T = self._threads_for(sum(a.shape[0] for a in segments))
        if self.kind.whitened:
            return self._whitened_stats(segments, sample_weight, mm, T, False, second_order, scatter)[0]
        D2 = self.P if second_order else self.D
        acc_s = self.acc_s.reshape(-1)[:self.threads * self.K * D2].reshape(self.threads, self.K, D2)
        acc_s.fill(0.0)
        self.acc_n.fill(0.0)
        self.acc_scalar.fill(0.0)
        with single_thread_blas:
            _core.accumulate(segments, sample_weight, mm.shift, mm.M, mm.gconst, self.chunk, T,
                             self.sparse_limit, False, self.xx, self.L, self.S,
                             acc_s, self.acc_n, self.acc_scalar, refine=mm.refine)
        s = acc_s[:T].sum(axis=0)[None]
        n = self.acc_n[:T].sum(axis=0)[None]
        tot = self.acc_scalar[:T].sum(axis=0)
        sx, sxx = _to_raw(s, n, mm.shift, full=self.kind.estep == "full")
        if sxx is None:
            sxx = np.broadcast_to(np.float64(0.0), (1,) + self.kind.stats_shape(self.K, self.D))
        return GMMStats(n[0], sx[0], sxx[0], float(tot[0]), float(tot[1]))

    def accumulate_segments(self, segments, sample_weight, mm: ModelMatrices,
                            second_order: bool = True, groups=None) -> list:
        """One ``GMMStats`` per segment (U arrays (n_u, D)), or per group of segments, from one core call.

        Each segment's statistics depend on the chunk size only (the core runs a segment's
        chunks in order on one thread), never on the thread count.  The core writes each
        segment's plain statistics once, straight into the result: ``sum_x`` / ``sum_xx`` of all
        segments are views of one float64 (U, K, 2D) array (or (U, K, D) first-order only,
        ``sum_xx`` then zeros), never zeroed nor copied afterwards.

        ``groups``: None, or (U,) ints in [0, G): then G ``GMMStats``, group g's the sum of its
        segments' statistics in segment order (the same bits as adding the per-segment ones
        left to right), float64; memory is a few segments' statistics whatever U.
        """
        segments = _as_segments(segments)
        U, K, D = len(segments), self.K, self.D
        if U == 0:
            return []
        T = max(1, min(self.threads, U))
        if self.kind.whitened:
            each = self._whitened_stats(segments, sample_weight, mm, T, True, second_order)
            if groups is None:
                return each
            members = [np.flatnonzero(np.asarray(groups) == g) for g in range(int(np.max(groups)) + 1)]
            return [GMMStats.total([each[u] for u in m]) if m.size else each[0].scaled(0.0)
                    for m in members]
        D2 = self.P if second_order else D
        shift64 = np.ascontiguousarray(mm.shift, dtype=np.float64)
        if groups is None:
            out_s = np.empty((U, K, D2))
            out_n, out_scalar = np.empty((U, K)), np.empty((U, 2))
            W, group = T, None
        else:
            group = np.ascontiguousarray(groups, dtype=np.int64)
            G = int(group.max()) + 1 if group.size else 0
            out_s, out_n, out_scalar = np.zeros((G, K, D2)), np.zeros((G, K)), np.zeros((G, 2))
            # work blocks a segment waits for (W segments back): about 32 MB, at least 2 per thread
            W = int(min(U, max(2 * T, SEGMENT_WORK_BYTES // (K * (D2 + 1) * 8))))
        work_s, work_n, work_scalar = self._segment_work(W, D2)
        with single_thread_blas:
            _core.segment_stats(segments, sample_weight, mm.shift, mm.M, mm.gconst, shift64,
                                self.chunk, T, self.sparse_limit, self.xx, self.L, self.S,
                                work_s, work_n, work_scalar, out_s, out_n, out_scalar, group,
                                refine=mm.refine)
        sx = out_s[..., :D]
        if D2 == D:
            sxx = None
        elif self.kind.estep == "full":
            sxx = triangle_to_matrix(out_s[..., D:], D)
        else:
            sxx = out_s[..., D:]
        zeros = np.broadcast_to(np.float64(0.0), self.kind.stats_shape(K, D))
        return [GMMStats(out_n[u], sx[u], zeros if sxx is None else sxx[u],
                         out_scalar[u, 0], out_scalar[u, 1]) for u in range(out_n.shape[0])]

    def _segment_work(self, W: int, D2: int):
        """Float64 work blocks (W, K, D2), (W, K), (W, 2) for ``_core.segment_stats``, kept for
        the next call (at most about 32 MB: W is bounded in :meth:`accumulate_segments`)."""
        K = self.K
        have = self._seg_work
        if have is None or have[1].shape[0] < W:
            have = self._seg_work = (np.empty(W * K * self.P), np.empty((W, K)), np.empty((W, 2)))
        return have[0][:W * K * D2].reshape(W, K, D2), have[1][:W], have[2][:W]

    def evaluate(self, X, mm: ModelMatrices, *, loglik: bool = False, resp: bool = False,
                 logprob: bool = False, labels: bool = False) -> dict:
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
        with single_thread_blas:
            _core.evaluate((X,), mm.shift, mm.M, mm.gconst, self.chunk, T, self.xx, self.L,
                           out.get("loglik"), out.get("resp"), out.get("logprob"), out.get("labels"),
                           mm.whiten, mm.refine)
        return out

    def top_components(self, X, mm: ModelMatrices, c: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices (N, c) int32, top-c log-likelihood (N,) float64) of X under one model."""
        N = X.shape[0]
        idx = np.empty((N, c), dtype=np.int32)
        ll = np.empty(N, dtype=np.float64)
        vals = np.empty((self.threads, c), dtype=self.dtype)
        T = self._threads_for(N)
        with single_thread_blas:
            _core.topc_select((X,), mm.shift, mm.M, mm.gconst, c, self.chunk, T, self.xx, self.L, vals,
                              idx, ll, mm.whiten, mm.refine)
        return idx, ll

    def top_c_loglik(self, X, idx, st: StackedMatrices) -> np.ndarray:
        """Total top-C log-likelihood of X under the S models of ``st`` -> (S,)."""
        S = st.Mt.shape[0]
        acc = np.zeros((self.threads, S))
        vals = np.empty((self.threads, idx.shape[1]), dtype=self.dtype)
        T = self._threads_for(X.shape[0])
        _core.topc_loglik((X,), idx, st.shift, st.Mt, st.gconst, self.chunk, T, self.xx, vals, acc,
                          st.whiten)
        return acc[:T].sum(axis=0)

    def top_c_loglik_shared(self, X, idx, sh: SharedMatrices) -> np.ndarray:
        """Total top-C log-likelihood of X under the S models of ``sh`` (one set of variances) -> (S,).

        ``sh.A`` (K, n_pan, D, PW) and ``sh.G`` (K, n_pan * PW) hold the models packed in panels
        (``gmmext._scoring``): see ``_core.topc_loglik_shared`` (one product per selected component
        and panel of models; a model's total does not depend on the others).
        """
        out = np.zeros(sh.S)
        # threads only when there is work for them: below SHARED_THREADS_CELLS (pair, model)
        # cells a parallel region costs more than it saves (docs/design.md, "Top-C scoring of many
        # mean-adapted models")
        T = self.threads if sh.S * idx.size >= SHARED_THREADS_CELLS else 1
        with single_thread_blas:
            _core.topc_loglik_shared((X,), idx, sh.shift, sh.Q, sh.A, sh.G, T, out)
        return out


class CoreCache:
    """What an estimator keeps for the core between calls: model matrices and engines.

    * **Matrices** (:class:`~gmmext._covariance.ModelMatrices`) per dtype, built from the
      parameters on first use and reused while the parameters stay what they were: every
      lookup compares the current ``weights_`` / ``means_`` / ``covariances_`` with a private
      snapshot taken at build time (``numpy.array_equal``, far cheaper than a rebuild: figures
      in docs/design.md, "Model matrices built once"), so assigning ``gm.means_ = ...`` and editing an
      array in place are both seen.  ``_set_params_arrays`` (fit, ``m_step``,
      ``from_parameters``) calls :meth:`invalidate`.
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

    def matrices(self, weights, means, covariances, dtype, kind: CovarianceType = DIAG,
                 log_weights=None) -> ModelMatrices:
        """``model_matrices(weights, means, covariances, dtype, kind, log_weights=log_weights)``,
        built once per parameter version (``log_weights``: the variational E-step's constants)."""
        dtype = np.dtype(dtype)
        params = (weights, means, covariances, log_weights)
        key = (dtype.str, kind.name)
        with self._lock:
            snap = self._snapshot
            if snap is None or not all(np.array_equal(a, b) for a, b in zip(params, snap)):
                self._snapshot = tuple(None if a is None else np.array(a, copy=True) for a in params)
                self._matrices.clear()
            hit = self._matrices.get(key)
            if hit is None:
                w, mu, cov, logw = self._snapshot
                hit = model_matrices(w, mu, cov, dtype, kind, log_weights=logw)
                if len(self._matrices) >= self._MAX_MATRICES:
                    self._matrices.pop(next(iter(self._matrices)))
                self._matrices[key] = hit
            return hit

    def engine(self, dtype, n_features: int, n_components: int, chunk_size: int | None,
               n_threads: int | None, kind: CovarianceType = DIAG) -> Engine:
        """The calling thread's Engine for this setting (created on first use)."""
        key = (np.dtype(dtype).str, int(n_features), int(n_components), chunk_size, n_threads,
               self.sparse_limit, kind.name)
        engines = getattr(self._local, "engines", None)
        if engines is None:
            engines = self._local.engines = {}
        eng = engines.get(key)
        if eng is None:
            if len(engines) >= self._MAX_ENGINES:
                engines.pop(next(iter(engines)))
            eng = engines[key] = Engine(dtype, n_features, n_components, chunk_size, n_threads,
                                        self.sparse_limit, kind)
        return eng

    def share_engines(self, other: "CoreCache") -> None:
        """Use ``other``'s engines (per thread and setting) from now on instead of this cache's
        own: an engine holds work buffers only, and a thread's calls run one after another."""
        self._local = other._local

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays kept besides the engines: the parameter snapshot and the matrices."""
        with self._lock:
            arrays = [a for a in (self._snapshot or ()) if a is not None]
            arrays += [a for m in self._matrices.values() for a in m if isinstance(a, np.ndarray)]
            arrays += [a for m in self._matrices.values() for a in (m.refine or ())]
        return sum(a.nbytes for a in arrays)
