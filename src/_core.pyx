# cython: language_level=3
"""Compiled core of gmmext: chunked, multi-threaded E-step of diagonal Gaussian mixtures.

Everything here is arithmetic on raw arrays; it knows nothing of the Python
packages built on it.  A model with K components in D dimensions is given as

* ``M`` (2D, K): rows 0..D-1 hold ``mu_kd * p_kd``, rows D..2D-1 hold ``-p_kd / 2``
  (``p = 1 / variance``), and
* ``gconst`` (K,): ``log w_k - D/2 log(2 pi) + 1/2 sum_d log p_kd - 1/2 sum_d mu_kd^2 p_kd``,

so that the weighted log-density of every frame of a chunk under every component is
``[x, x^2] @ M + gconst``: one BLAS gemm per chunk (Kaldi's DiagGmm layout).
Every function takes a per-dimension ``shift`` (D,) subtracted from each frame before
anything else (``x`` above is ``x - shift``; ``M`` and ``gconst`` must be built from
``mu - shift``): with the shift near the data's mean, ``x^2`` and the statistics lose
no precision to cancellation, which matters in float32.
Frames are cut into chunks of ``chunk`` rows; chunks are shared among OpenMP threads
with a static schedule, every thread owning its buffers and float64 accumulators;
the Python caller sums the per-thread accumulators in thread order, so results are
deterministic for a given chunk size and thread count.  BLAS must run single-threaded
while these functions run (the Python layer arranges that with threadpoolctl).
"""

cimport cython
from cython.parallel cimport prange, parallel, threadid
from libc.stdint cimport int32_t, int64_t
from libc.string cimport memcpy
from libc.math cimport INFINITY
from scipy.linalg.cython_blas cimport dgemm, sgemm

cdef extern from "gmm_kernels.h" nogil:
    double gmmx_softmax_d(double *row, Py_ssize_t K)
    double gmmx_softmax_f(float *row, Py_ssize_t K)
    void gmmx_estep_chunk_d(double *L, Py_ssize_t rows, Py_ssize_t K, const double *sw,
                            double *acc_n, double *acc_scalar)
    void gmmx_estep_chunk_f(float *L, Py_ssize_t rows, Py_ssize_t K, const double *sw,
                            double *acc_n, double *acc_scalar)
    Py_ssize_t gmmx_count_kept_d(const double *R, Py_ssize_t rows, Py_ssize_t K)
    Py_ssize_t gmmx_count_kept_f(const float *R, Py_ssize_t rows, Py_ssize_t K)
    void gmmx_sparse_stats_d(const double *R, const double *xx, Py_ssize_t rows, Py_ssize_t K,
                             Py_ssize_t D2, double *acc_n, double *acc_s)
    void gmmx_sparse_stats_f(const float *R, const float *xx, Py_ssize_t rows, Py_ssize_t K,
                             Py_ssize_t D2, double *acc_n, float *S, double *acc_s)
    void gmmx_colsum_d(const double *R, Py_ssize_t rows, Py_ssize_t K, double *acc)
    void gmmx_colsum_f(const float *R, Py_ssize_t rows, Py_ssize_t K, double *acc)
    void gmmx_add_f(double *acc, const float *S, Py_ssize_t n)
    void gmmx_exp_array_d(const double *x, double *out, Py_ssize_t n)
    void gmmx_exp_array_f(const float *x, float *out, Py_ssize_t n)

# A chunk's statistics are summed over its kept (frame, component) pairs instead of by a gemm
# when at most this fraction of its responsibilities is kept (see gmm_kernels.h, GMMX_DROP).
cdef double _sparse_limit = 0.25

ctypedef fused floating:
    float
    double


cdef inline void _gemm(char *ta, char *tb, int m, int n, int k,
                       const floating *A, int lda, const floating *B, int ldb,
                       floating beta, floating *C, int ldc) noexcept nogil:
    """Column-major C = op(A) op(B) + beta C."""
    cdef floating one = 1
    if floating is float:
        sgemm(ta, tb, &m, &n, &k, &one, <float *>A, &lda, <float *>B, &ldb, &beta, C, &ldc)
    else:
        dgemm(ta, tb, &m, &n, &k, &one, <double *>A, &lda, <double *>B, &ldb, &beta, C, &ldc)


cdef inline double _softmax(floating *row, Py_ssize_t K) noexcept nogil:
    if floating is float:
        return gmmx_softmax_f(row, K)
    else:
        return gmmx_softmax_d(row, K)


cdef inline void _estep_chunk(floating *L, Py_ssize_t rows, Py_ssize_t K, const double *sw,
                              double *acc_scalar) noexcept nogil:
    """Rows of L become w_i * responsibilities; acc_scalar += (sum w ll, sum w)."""
    if floating is float:
        gmmx_estep_chunk_f(L, rows, K, sw, NULL, acc_scalar)
    else:
        gmmx_estep_chunk_d(L, rows, K, sw, NULL, acc_scalar)


cdef void _chunk_stats(const floating *L, const floating *xx, Py_ssize_t rows, Py_ssize_t K,
                       Py_ssize_t D, floating *S, double *acc_n, double *acc_s) noexcept nogil:
    """acc_n += column sums of R = L (rows, K); acc_s (K, 2D) += R^T xx: sparse or one gemm."""
    cdef Py_ssize_t kept
    if floating is float:
        kept = gmmx_count_kept_f(L, rows, K)
    else:
        kept = gmmx_count_kept_d(L, rows, K)
    if kept <= _sparse_limit * <double>(rows * K):
        if floating is float:
            gmmx_sparse_stats_f(L, xx, rows, K, 2 * D, acc_n, S, acc_s)
        else:
            gmmx_sparse_stats_d(L, xx, rows, K, 2 * D, acc_n, acc_s)
        return
    # dense: row-major S (K x 2D) = R^T xx, i.e. column-major S^T = xx^T R
    if floating is float:
        gmmx_colsum_f(L, rows, K, acc_n)
        _gemm("N", "T", <int>(2 * D), <int>K, <int>rows, xx, <int>(2 * D), L, <int>K,
              0.0, S, <int>(2 * D))
        gmmx_add_f(acc_s, S, K * 2 * D)
    else:
        gmmx_colsum_d(L, rows, K, acc_n)
        _gemm("N", "T", <int>(2 * D), <int>K, <int>rows, xx, <int>(2 * D), L, <int>K,
              1.0, <double *>acc_s, <int>(2 * D))


cdef int _check_buf(str name, tuple have, tuple at_least, tuple exact) except -1:
    """A workspace array: leading axes at least ``at_least``, trailing axes exactly ``exact``."""
    cdef Py_ssize_t i, n = len(at_least)
    for i in range(n):
        if have[i] < at_least[i]:
            raise ValueError(f"workspace {name} too small: shape {have}, need at least {at_least} on the leading axes")
    for i in range(len(exact)):
        if have[n + i] != exact[i]:
            raise ValueError(f"workspace {name} has shape {have}, trailing axes must be {exact}")
    return 0


cdef int _check_model(Py_ssize_t D, Py_ssize_t K, Py_ssize_t m_rows, Py_ssize_t m_cols,
                      Py_ssize_t g_len, Py_ssize_t s_len, Py_ssize_t chunk, int n_threads) except -1:
    if m_rows != 2 * D or m_cols != K or g_len != K or s_len != D:
        raise ValueError("model matrices do not match the data")
    if chunk < 1 or n_threads < 1:
        raise ValueError("chunk and n_threads must be >= 1")
    return 0



cdef void _fill_xx(const char *xbase, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t start,
                   Py_ssize_t rows, Py_ssize_t D, const floating *shift, floating *xx) noexcept nogil:
    """xx (rows, 2D) row-major <- [x - shift, (x - shift)^2] for frames start..start+rows of a strided X."""
    cdef Py_ssize_t i, d
    cdef floating v
    cdef const char *row
    for i in range(rows):
        row = xbase + (start + i) * s0
        for d in range(D):
            v = (<const floating *>(row + d * s1))[0] - shift[d]
            xx[i * 2 * D + d] = v
            xx[i * 2 * D + D + d] = v * v


cdef void _chunk_logdens(const char *xbase, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t start,
                         Py_ssize_t rows, Py_ssize_t D, Py_ssize_t K, const floating *shift,
                         const floating *M, const floating *gconst,
                         floating *xx, floating *L) noexcept nogil:
    """L (rows, K) <- gconst + [x, x^2] @ M: weighted log-densities of one chunk (one gemm)."""
    cdef Py_ssize_t i
    _fill_xx(xbase, s0, s1, start, rows, D, shift, xx)
    for i in range(rows):
        memcpy(L + i * K, gconst, K * sizeof(floating))
    # row-major L (rows x K) is column-major L^T (K x rows) = M^T (K x 2D) @ xx^T (2D x rows)
    _gemm("N", "N", <int>K, <int>rows, <int>(2 * D), M, <int>K, xx, <int>(2 * D),
          1, L, <int>K)




def accumulate(const floating[:, :] X, const double[::1] sample_weight,
               const floating[::1] shift, const floating[:, ::1] M, const floating[::1] gconst,
               Py_ssize_t chunk, int n_threads,
               floating[:, :, ::1] xx_buf, floating[:, :, ::1] l_buf,
               floating[:, :, ::1] s_buf,
               double[:, :, ::1] acc_s, double[:, ::1] acc_n, double[:, ::1] acc_scalar):
    """E-step plus sufficient statistics over all frames of X, chunk by chunk.

    X (N, D) any strides; sample_weight (N,) float64 or None; shift (D,); M (2D, K); gconst (K,).
    Buffers, one slice per thread t < n_threads: xx_buf (T, chunk, 2D), l_buf (T, chunk, K),
    s_buf (T, K, 2D).  Accumulators (float64, zeroed by the caller): acc_s (T, K, 2D) gets
    sum_i w_i r_ik [x_i - shift, (x_i - shift)^2], acc_n (T, K) gets sum_i w_i r_ik, acc_scalar (T, 2) gets
    (sum_i w_i log p(x_i), sum_i w_i).  Frames with weight 0 contribute nothing.
    A chunk whose responsibilities are mostly negligible (at most ``set_sparse_limit``, 0.25,
    of them above 1e-15 of their frame's largest) gets acc_s and acc_n summed over the others
    only, instead of by a gemm; the mass left out is below the rounding of the dense sums.
    """
    cdef Py_ssize_t N = X.shape[0], D = X.shape[1], K = M.shape[1]
    cdef Py_ssize_t n_chunks = (N + chunk - 1) // chunk
    cdef Py_ssize_t c, start, rows, tid
    cdef const double *sw = NULL
    cdef const char *xbase
    cdef Py_ssize_t s0 = X.strides[0], s1 = X.strides[1]
    cdef floating *xx
    cdef floating *L
    if N == 0:
        return
    _check_model(D, K, M.shape[0], M.shape[1], gconst.shape[0], shift.shape[0], chunk, n_threads)
    _check_buf("xx_buf", (xx_buf.shape[0], xx_buf.shape[1], xx_buf.shape[2]), (n_threads, chunk), (2 * D,))
    _check_buf("l_buf", (l_buf.shape[0], l_buf.shape[1], l_buf.shape[2]), (n_threads, chunk), (K,))
    _check_buf("s_buf", (s_buf.shape[0], s_buf.shape[1], s_buf.shape[2]), (n_threads,), (K, 2 * D))
    _check_buf("acc_s", (acc_s.shape[0], acc_s.shape[1], acc_s.shape[2]), (n_threads,), (K, 2 * D))
    _check_buf("acc_n", (acc_n.shape[0], acc_n.shape[1]), (n_threads,), (K,))
    _check_buf("acc_scalar", (acc_scalar.shape[0], acc_scalar.shape[1]), (n_threads,), (2,))
    if sample_weight is not None:
        if sample_weight.shape[0] != N:
            raise ValueError("sample_weight has the wrong length")
        sw = &sample_weight[0]
    xbase = <const char *>&X[0, 0]
    with nogil, parallel(num_threads=n_threads):
        tid = threadid()
        for c in prange(n_chunks, schedule="static"):
            start = c * chunk
            rows = chunk if start + chunk <= N else N - start
            xx = &xx_buf[tid, 0, 0]
            L = &l_buf[tid, 0, 0]
            _chunk_logdens(xbase, s0, s1, start, rows, D, K, &shift[0], &M[0, 0], &gconst[0], xx, L)
            # per row (C kernel, vectorised, fast exp): max, exp, sum, scale by w_i / sum
            _estep_chunk(L, rows, K, (sw + start) if sw != NULL else NULL, &acc_scalar[tid, 0])
            # statistics sum_i r_ik [x_i, x_i^2]: one gemm, or the kept entries only when sparse
            _chunk_stats(L, xx, rows, K, D, &s_buf[tid, 0, 0], &acc_n[tid, 0], &acc_s[tid, 0, 0])


def evaluate(const floating[:, :] X, const floating[::1] shift, const floating[:, ::1] M, const floating[::1] gconst,
             Py_ssize_t chunk, int n_threads,
             floating[:, :, ::1] xx_buf, floating[:, :, ::1] l_buf,
             double[::1] ll_out, floating[:, ::1] resp_out, floating[:, ::1] logprob_out,
             int64_t[::1] label_out):
    """Per-frame outputs, chunk by chunk; each output may be None.

    ll_out (N,): log p(x_i); resp_out (N, K): responsibilities; logprob_out (N, K):
    weighted log-densities log w_k + log N(x_i | k); label_out (N,): argmax_k of them.
    """
    cdef Py_ssize_t N = X.shape[0], D = X.shape[1], K = M.shape[1]
    cdef Py_ssize_t n_chunks = (N + chunk - 1) // chunk
    cdef Py_ssize_t c, start, rows, i, k, tid, best
    cdef const char *xbase
    cdef Py_ssize_t s0 = X.strides[0], s1 = X.strides[1]
    cdef floating *xx
    cdef floating *L
    cdef floating *Lrow
    cdef floating vmax
    cdef double ll
    cdef bint want_ll = ll_out is not None, want_resp = resp_out is not None
    cdef bint want_lp = logprob_out is not None, want_lab = label_out is not None
    if N == 0:
        return
    _check_model(D, K, M.shape[0], M.shape[1], gconst.shape[0], shift.shape[0], chunk, n_threads)
    _check_buf("xx_buf", (xx_buf.shape[0], xx_buf.shape[1], xx_buf.shape[2]), (n_threads, chunk), (2 * D,))
    _check_buf("l_buf", (l_buf.shape[0], l_buf.shape[1], l_buf.shape[2]), (n_threads, chunk), (K,))
    if (want_ll and ll_out.shape[0] != N) or (want_lab and label_out.shape[0] != N) \
            or (want_resp and (resp_out.shape[0] != N or resp_out.shape[1] != K)) \
            or (want_lp and (logprob_out.shape[0] != N or logprob_out.shape[1] != K)):
        raise ValueError("output arrays have the wrong shape")
    xbase = <const char *>&X[0, 0]
    with nogil, parallel(num_threads=n_threads):
        tid = threadid()
        for c in prange(n_chunks, schedule="static"):
            start = c * chunk
            rows = chunk if start + chunk <= N else N - start
            xx = &xx_buf[tid, 0, 0]
            L = &l_buf[tid, 0, 0]
            _chunk_logdens(xbase, s0, s1, start, rows, D, K, &shift[0], &M[0, 0], &gconst[0], xx, L)
            if want_lp:
                memcpy(&logprob_out[start, 0], L, rows * K * sizeof(floating))
            for i in range(rows):
                Lrow = L + i * K
                if want_lab:
                    best = 0
                    vmax = Lrow[0]
                    for k in range(1, K):
                        if Lrow[k] > vmax:
                            vmax = Lrow[k]
                            best = k
                    label_out[start + i] = best
                if want_ll or want_resp:
                    ll = _softmax(Lrow, K)
                    if want_ll:
                        ll_out[start + i] = ll
            if want_resp:
                memcpy(&resp_out[start, 0], L, rows * K * sizeof(floating))


def set_sparse_limit(double limit):
    """Set the kept-fraction below which a chunk's statistics are summed sparsely; returns the old one.

    0.25 by default; a negative value makes every chunk use the dense gemm (benchmarks, tests).
    Not thread-safe: call it while no E-step runs.
    """
    global _sparse_limit
    old = _sparse_limit
    _sparse_limit = limit
    return old


def exp_kernel_test(const floating[::1] x):
    """exp(x) element-wise by the E-step's fast exp (a testing aid; see src/gmm_kernels.h)."""
    import numpy as np
    cdef Py_ssize_t n = x.shape[0]
    out = np.empty(n, dtype=np.float32 if floating is float else np.float64)
    cdef floating[::1] o = out
    if n == 0:
        return out
    with nogil:
        if floating is float:
            gmmx_exp_array_f(&x[0], &o[0], n)
        else:
            gmmx_exp_array_d(&x[0], &o[0], n)
    return out


# --------------------------------------------------------------------------- top-C scoring
# Reynolds et al. (2000): per frame, the C best components of the UBM are found once; the
# UBM and every model adapted from it are then evaluated on those C components only.

def topc_select(const floating[:, :] X, const floating[::1] shift, const floating[:, ::1] M,
                const floating[::1] gconst, Py_ssize_t C, Py_ssize_t chunk, int n_threads,
                floating[:, :, ::1] xx_buf, floating[:, :, ::1] l_buf, floating[:, ::1] val_buf,
                int32_t[:, ::1] idx_out, double[::1] ll_out):
    """The C best components of every frame, and the frame's log-likelihood over them.

    idx_out (N, C) int32 gets component indices sorted by decreasing weighted log-density;
    ll_out (N,) gets log sum_{k in top C} w_k N(x | k) (the full log-likelihood when C == K).
    val_buf (T, C) is scratch.
    """
    cdef Py_ssize_t N = X.shape[0], D = X.shape[1], K = M.shape[1]
    cdef Py_ssize_t n_chunks = (N + chunk - 1) // chunk
    cdef Py_ssize_t c, start, rows, i, k, j, tid
    cdef const char *xbase
    cdef Py_ssize_t s0 = X.strides[0], s1 = X.strides[1]
    cdef floating *xx
    cdef floating *L
    cdef floating *Lrow
    cdef floating *vals
    cdef int32_t *idx
    cdef floating v
    if N == 0:
        return
    if C < 1 or C > K:
        raise ValueError("C must be in [1, K]")
    _check_model(D, K, M.shape[0], M.shape[1], gconst.shape[0], shift.shape[0], chunk, n_threads)
    _check_buf("xx_buf", (xx_buf.shape[0], xx_buf.shape[1], xx_buf.shape[2]), (n_threads, chunk), (2 * D,))
    _check_buf("l_buf", (l_buf.shape[0], l_buf.shape[1], l_buf.shape[2]), (n_threads, chunk), (K,))
    _check_buf("val_buf", (val_buf.shape[0], val_buf.shape[1]), (n_threads, C), ())
    if idx_out.shape[0] != N or idx_out.shape[1] != C or ll_out.shape[0] != N:
        raise ValueError("output arrays have the wrong shape")
    xbase = <const char *>&X[0, 0]
    with nogil, parallel(num_threads=n_threads):
        tid = threadid()
        for c in prange(n_chunks, schedule="static"):
            start = c * chunk
            rows = chunk if start + chunk <= N else N - start
            xx = &xx_buf[tid, 0, 0]
            L = &l_buf[tid, 0, 0]
            vals = &val_buf[tid, 0]
            _chunk_logdens(xbase, s0, s1, start, rows, D, K, &shift[0], &M[0, 0], &gconst[0], xx, L)
            for i in range(rows):
                Lrow = L + i * K
                idx = &idx_out[start + i, 0]
                # insertion into a sorted list of C: O(K C) worst case, O(K) typically
                for j in range(C):
                    vals[j] = -INFINITY
                    idx[j] = -1
                for k in range(K):
                    v = Lrow[k]
                    if v > vals[C - 1] or idx[C - 1] < 0:
                        j = C - 1
                        while j > 0 and (v > vals[j - 1] or idx[j - 1] < 0):
                            vals[j] = vals[j - 1]
                            idx[j] = idx[j - 1]
                            j = j - 1
                        vals[j] = v
                        idx[j] = <int32_t>k
                ll_out[start + i] = _softmax(vals, C)


def topc_loglik(const floating[:, :] X, const int32_t[:, ::1] idx, const floating[::1] shift,
                const floating[:, :, ::1] Mt, const floating[:, ::1] gconst,
                Py_ssize_t chunk, int n_threads, floating[:, :, ::1] xx_buf,
                floating[:, ::1] val_buf, double[:, ::1] acc):
    """Total log-likelihood of X under each of S models, each frame restricted to its C components.

    idx (N, C) from topc_select; Mt (S, K, 2D) and gconst (S, K) are the models' matrices
    (Mt[s] is M of model s transposed, all built about the same ``shift``).  acc (T, S),
    zeroed by the caller, gets per-thread sums over frames of
    log sum_{k in idx[i]} w_sk N(x_i | s, k).  val_buf (T, C) is scratch.
    """
    cdef Py_ssize_t N = X.shape[0], D = X.shape[1], C = idx.shape[1]
    cdef Py_ssize_t S = Mt.shape[0], K = Mt.shape[1]
    cdef Py_ssize_t n_chunks = (N + chunk - 1) // chunk
    cdef Py_ssize_t c, start, rows, i, j, d, s, k, tid
    cdef const char *xbase
    cdef Py_ssize_t s0 = X.strides[0], s1 = X.strides[1]
    cdef floating *xx
    cdef floating *xrow
    cdef floating *vals
    cdef const floating *mrow
    cdef floating v
    if N == 0:
        return
    if Mt.shape[2] != 2 * D or gconst.shape[0] != S or gconst.shape[1] != K or shift.shape[0] != D:
        raise ValueError("model matrices do not match the data")
    if idx.shape[0] != N or C < 1 or C > K:
        raise ValueError("component indices have the wrong shape")
    if chunk < 1 or n_threads < 1:
        raise ValueError("chunk and n_threads must be >= 1")
    _check_buf("xx_buf", (xx_buf.shape[0], xx_buf.shape[1], xx_buf.shape[2]), (n_threads, chunk), (2 * D,))
    _check_buf("val_buf", (val_buf.shape[0], val_buf.shape[1]), (n_threads, C), ())
    _check_buf("acc", (acc.shape[0], acc.shape[1]), (n_threads,), (S,))
    for i in range(N):
        for j in range(C):
            if idx[i, j] < 0 or idx[i, j] >= K:
                raise ValueError("component index out of range")
    xbase = <const char *>&X[0, 0]
    with nogil, parallel(num_threads=n_threads):
        tid = threadid()
        for c in prange(n_chunks, schedule="static"):
            start = c * chunk
            rows = chunk if start + chunk <= N else N - start
            xx = &xx_buf[tid, 0, 0]
            vals = &val_buf[tid, 0]
            _fill_xx(xbase, s0, s1, start, rows, D, &shift[0], xx)
            for s in range(S):
                for i in range(rows):
                    xrow = xx + i * 2 * D
                    for j in range(C):
                        k = idx[start + i, j]
                        mrow = &Mt[s, k, 0]
                        v = gconst[s, k]
                        for d in range(2 * D):
                            v = v + mrow[d] * xrow[d]
                        vals[j] = v
                    acc[tid, s] += _softmax(vals, C)
