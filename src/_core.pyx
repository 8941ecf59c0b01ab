# cython: language_level=3
"""Compiled core of gmmext: chunked, multi-threaded E-step of Gaussian mixtures of every covariance type.

Everything here is arithmetic on raw arrays; it knows nothing of the Python
packages built on it.  A model with K components in D dimensions is given as

* ``M`` (P, K) and ``gconst`` (K,) such that the weighted log-density of every frame of a chunk
  under every component is ``phi(x) @ M + gconst``, ``phi`` the chunk's feature map: one matrix
  product per chunk.  Two layouts, told apart by P:

  - diagonal (P = 2D, Kaldi's DiagGmm layout): ``phi(x) = [x, x^2]``; rows 0..D-1 of M hold
    ``mu_kd * p_kd``, rows D..2D-1 ``-p_kd / 2`` (``p = 1 / variance``), and
    ``gconst = log w_k - D/2 log(2 pi) + 1/2 sum_d log p_kd - 1/2 sum_d mu_kd^2 p_kd``
    (diagonal and spherical models; tied models on whitened frames, see :func:`_set_whitening`);
  - full (P = D + D(D+1)/2): ``phi(x) = [x, x_a x_b for a <= b]``; rows 0..D-1 hold
    ``P_k mu_k``, the next rows ``-P_k,aa / 2`` on the diagonal and ``-P_k,ab`` off it
    (``P_k`` the precision matrix), ``gconst = log w_k - D/2 log(2 pi) + log det L_k -
    1/2 mu_k^T P_k mu_k`` (full models).

The statistics are ``sum_i r_ik phi(x_i)``: first order and, per layout, the squares or the
upper triangle of the second-order matrix.
Every function takes a per-dimension ``shift`` (D,) subtracted from each frame before
anything else (``x`` above is ``x - shift``; ``M`` and ``gconst`` must be built from
``mu - shift``): with the shift near the data's mean, ``x^2`` and the statistics lose
no precision to cancellation, which matters in float32.

Frames.  Every entry point takes its frames as ``segments``: a list (or tuple) of 2-D arrays
of the model's dtype, any strides, all with D columns; their rows are numbered one after the
other (segment 1's first row follows segment 0's last), as if concatenated, without a copy.
A single array is a list of one.  Frames are cut into chunks of ``chunk`` rows; chunks are
shared among OpenMP threads with a static schedule, every thread owning its buffers and
float64 accumulators; the Python caller sums the per-thread accumulators in thread order, so
results are deterministic for a given chunk size and thread count (the exception,
``accumulate(..., per_segment=True)``, is deterministic whatever the threads: see there).

Matrix products.  A chunk's log-densities and statistics are BLAS gemms (scipy's
``cython_blas``), each gemm's summed dimension cut into slices of at most 128 (``_gemm``).  BLAS
must run single-threaded while these functions run (the Python layer holds
``gmmext._blas.single_thread_blas``: a threaded BLAS inside OpenMP threads is only slower); with
it, and the slices, results do not depend on BLAS's thread state nor on the calling thread.
They may depend on BLAS's kernel (``OPENBLAS_CORETYPE``) and, in the last bits, on where a
frame falls in its chunk.  The one exception is the shared-variance top-C scoring of many
models (``_topc_shared.pxi``): its products are src/gmm_gemm.h's, one model per vector lane, so
that a model's score does not depend on the stack around it.  ``unshift`` turns statistics
about the shift into plain ones.

Every entry point starts with :func:`_prologue` (frame table, model shapes, chunk and thread
count, the two per-thread buffers every chunk uses) and runs its chunks through
:func:`_chunk_logdens`.
"""

cimport cython
cimport openmp
from cython.parallel cimport prange, parallel, threadid
from libc.stdint cimport int32_t, int64_t
from libc.string cimport memcpy, memset
from libc.stdlib cimport malloc, free
from libc.math cimport INFINITY
from scipy.linalg.cython_blas cimport dgemm, dtrmm, sgemm

import numpy as np

cdef extern from "gmm_kernels.h" nogil:
    double gmmx_softmax_d(double *row, Py_ssize_t K, double w)
    double gmmx_softmax_f(float *row, Py_ssize_t K, float w)
    Py_ssize_t gmmx_estep_chunk_d(double *L, Py_ssize_t rows, Py_ssize_t K, const double *sw,
                                  double *acc_scalar, double *colsum, int count)
    Py_ssize_t gmmx_estep_chunk_f(float *L, Py_ssize_t rows, Py_ssize_t K, const double *sw,
                                  double *acc_scalar, double *colsum, int count)
    void gmmx_sparse_stats_d(const double *R, const double *xx, Py_ssize_t rows, Py_ssize_t K,
                             Py_ssize_t ldx, Py_ssize_t D2, double *acc_n, double *acc_s)
    void gmmx_sparse_stats_f(const float *R, const float *xx, Py_ssize_t rows, Py_ssize_t K,
                             Py_ssize_t ldx, Py_ssize_t D2, double *acc_n, float *S)
    void gmmx_colsum_d(const double *R, Py_ssize_t rows, Py_ssize_t K, double *acc)
    void gmmx_colsum_f(const float *R, Py_ssize_t rows, Py_ssize_t K, double *acc)
    void gmmx_add_f(double *acc, const float *S, Py_ssize_t n)
    void gmmx_store_f(double *acc, const float *S, Py_ssize_t n)
    void gmmx_add_unshift_f(double *acc, const float *S, const double *n, const double *shift,
                            Py_ssize_t K, Py_ssize_t D, Py_ssize_t D2, int store)
    void gmmx_exp_array_d(const double *x, double *out, Py_ssize_t n, int neg)
    void gmmx_exp_array_f(const float *x, float *out, Py_ssize_t n, int neg)
    double gmmx_centred_quad(const double *x, const double *mu, const double *C, Py_ssize_t D,
                             double *work)

ctypedef fused floating:
    float
    double


# --------------------------------------------------------------------------- frames
cdef struct Frames:
    Py_ssize_t n_seg      # number of segments U
    Py_ssize_t N          # total rows
    Py_ssize_t D          # columns
    Py_ssize_t P          # feature-map columns: 2D (diagonal layout) or D + D(D+1)/2 (full layout)
    const int64_t *off    # (U + 1,): first (global) row of each segment; off[U] = N
    const int64_t *addr   # (U,): address of each segment's row 0 (0 for an empty segment)
    const int64_t *s0     # (U,): row strides, bytes
    const int64_t *s1     # (U,): column strides, bytes
    const void *W         # (D, D) row-major lower-triangular whitening T of the frames' dtype, or NULL


cdef struct Refine:
    # float64 recomputation of a full model's log-densities near each frame's best (see
    # _refine_full); mu == NULL: none
    const double *mu      # (K, D) component means (not shifted)
    const double *C       # (K, D, D) row-major upper-triangular precision Cholesky factors
    const double *g       # (K,) log w_k - D/2 log(2 pi) + log det C_k
    double *work          # (T, 3D) per-thread scratch
    const double *M64     # (P, K) the full layout's matrix in float64 (a chunk where most
    const double *gc64    # (K,)    components need recomputing is redone by the float64
    const double *shift64 # (D,)    product instead, see _refine_full), about shift64


cdef class _FrameTable:
    """Owner of a :c:type:`Frames` table and of the arrays it points into."""
    cdef Frames f
    cdef Refine r
    cdef object _tables
    cdef object _segments
    cdef object _whitening
    cdef object _refine


cdef _FrameTable _frame_table(object segments, const floating[::1] shift):
    """The frame table of ``segments`` (2-D arrays of ``shift``'s dtype with ``len(shift)`` columns)."""
    cdef Py_ssize_t U = len(segments), D = shift.shape[0], u
    cdef const floating[:, :] v
    if U < 1:
        raise ValueError("segments must hold at least one array")
    tables = np.zeros((4, U + 1), dtype=np.int64)
    cdef int64_t[:, ::1] t = tables
    for u in range(U):
        try:
            v = segments[u]
        except (ValueError, TypeError) as e:
            raise ValueError(f"segment {u}: {e}") from None
        if v.shape[1] != D:
            raise ValueError(f"segment {u} has {v.shape[1]} columns, the model {D}")
        t[0, u + 1] = t[0, u] + v.shape[0]
        if v.shape[0] > 0:
            t[1, u] = <int64_t>&v[0, 0]
        t[2, u] = v.strides[0]
        t[3, u] = v.strides[1]
    cdef _FrameTable ft = _FrameTable()
    ft._tables = tables
    ft._segments = segments
    ft.f.n_seg = U
    ft.f.N = t[0, U]
    ft.f.D = D
    ft.f.P = 2 * D
    ft.f.off = &t[0, 0]
    ft.f.addr = &t[1, 0]
    ft.f.s0 = &t[2, 0]
    ft.f.s1 = &t[3, 0]
    ft.f.W = NULL
    ft.r.mu = NULL
    return ft


cdef int _set_whitening(_FrameTable ft, const floating[:, ::1] T) except -1:
    """Frames whitened by T (D, D), lower-triangular, before the feature map (None: not whitened).

    The entry points take it as their ``whiten`` argument.

    With ``z = T (x - shift)`` the diagonal layout's ``[z, z^2]`` is the feature map; a tied
    model with precision ``C C^T`` (``C`` its upper-triangular ``precisions_cholesky_``) whitened
    by ``T = C^T`` has unit variances: its log-densities are the diagonal layout's, in z.
    """
    if T is None:
        return 0
    if T.shape[0] != ft.f.D or T.shape[1] != ft.f.D or ft.f.P != 2 * ft.f.D:
        raise ValueError("the whitening matrix must be (D, D) and the model in the diagonal layout")
    ft._whitening = T
    ft.f.W = &T[0, 0]
    return 0


# Which log-densities of a float32 full model are recomputed in float64: those within this
# many nats of the frame's largest.  The float32 expanded form errs by up to ~1 nat on
# covariances of condition number 1e5, so a component left out is at least e^-10 below the
# best: its error weighs < 5e-5 of itself in the frame's log-likelihood.
cdef double _REFINE_GAP = 12.0


cdef int _set_refine(_FrameTable ft, object refine, Py_ssize_t K, int n_threads) except -1:
    """Log-densities recomputed centred in float64 (``refine`` = (means (K, D), chol (K, D, D),
    g (K,)), float64; see :func:`_refine_full`), or None: the product's only.  Full layout only."""
    cdef Py_ssize_t D = ft.f.D
    cdef const double[:, ::1] mu
    cdef const double[:, :, ::1] C
    cdef const double[::1] g
    cdef const double[:, ::1] M64
    cdef const double[::1] gc64
    cdef const double[::1] shift64
    cdef double[:, ::1] w
    if refine is None:
        return 0
    if ft.f.P != _full_cols(D):
        raise ValueError("refine needs a model in the full layout")
    mu, C, g, M64, gc64, shift64 = refine
    if mu.shape[0] != K or mu.shape[1] != D or C.shape[0] != K or C.shape[1] != D \
            or C.shape[2] != D or g.shape[0] != K or M64.shape[0] != ft.f.P or M64.shape[1] != K \
            or gc64.shape[0] != K or shift64.shape[0] != D:
        raise ValueError("refine arrays do not match the model")
    work = np.empty((n_threads, 3 * D))
    w = work
    ft._refine = (mu, C, g, work, M64, gc64, shift64)
    ft.r.M64 = &M64[0, 0]
    ft.r.gc64 = &gc64[0]
    ft.r.shift64 = &shift64[0]
    ft.r.mu = &mu[0, 0]
    ft.r.C = &C[0, 0, 0]
    ft.r.g = &g[0]
    ft.r.work = &w[0, 0]
    return 0


cdef inline double *_rwork(const Refine *rf, Py_ssize_t D, Py_ssize_t tid) noexcept nogil:
    """Thread tid's scratch of 3D doubles (NULL without refinement)."""
    return rf.work + tid * 3 * D if rf.mu != NULL else NULL


cdef inline Py_ssize_t _seg_of(const Frames *f, Py_ssize_t r) noexcept nogil:
    """The segment holding global row r: the last u with off[u] <= r."""
    cdef Py_ssize_t lo = 0, hi = f.n_seg - 1, mid
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if f.off[mid] <= r:
            lo = mid
        else:
            hi = mid - 1
    return lo


cdef inline const char *_row_at(const Frames *f, Py_ssize_t r, Py_ssize_t *seg) noexcept nogil:
    """Address of global row r, *seg a segment at or before r's (advanced to r's)."""
    while r >= f.off[seg[0] + 1]:
        seg[0] = seg[0] + 1
    return <const char *>f.addr[seg[0]] + (r - f.off[seg[0]]) * f.s0[seg[0]]


# above this fraction of a chunk's (frame, component) pairs to recompute, the chunk's
# log-densities are all redone by the float64 product (one gemm) instead of per component
cdef double _REFINE_DENSE = 0.25
# fewer rows than this needing one component: recomputed one by one, not by dtrmm
cdef Py_ssize_t _REFINE_BATCH = 16


cdef inline void _full_products(floating *out, Py_ssize_t D) noexcept nogil:
    """out[D:] <- the upper triangle of y y^T row by row (``numpy.triu_indices(D)`` order), y = out[:D]:
    the full layout's feature map after its first D columns."""
    cdef Py_ssize_t d, e, t = D
    cdef floating v
    for d in range(D):
        v = out[d]
        for e in range(d, D):
            out[t + e - d] = v * out[e]
        t = t + D - d


cdef void _redo_float64(const Frames *f, Py_ssize_t rows, Py_ssize_t K, const Refine *rf,
                        const double *x64, floating *L) noexcept nogil:
    """L (rows, K) <- the chunk's log-densities by the float64 full layout (``rf.M64``, ``rf.gc64``
    about ``rf.shift64``) from its frames in float64 ``x64`` (rows, D): what a float64 model computes."""
    cdef Py_ssize_t i, d, e, t, D = f.D, P = f.P
    cdef double *xx = <double *>malloc(rows * P * sizeof(double))
    cdef double *L64 = <double *>malloc(rows * K * sizeof(double))
    cdef double *out
    cdef double v
    if xx == NULL or L64 == NULL:
        free(xx); free(L64)
        return
    for i in range(rows):
        out = xx + i * P
        for d in range(D):
            out[d] = x64[i * D + d] - rf.shift64[d]
        _full_products(out, D)
        memcpy(L64 + i * K, rf.gc64, K * sizeof(double))
    _gemm("N", "N", <int>K, <int>rows, <int>P, rf.M64, <int>K, K, <const double *>xx, <int>P, 1,
          <double>1.0, L64, <int>K)
    for i in range(rows * K):
        L[i] = <floating>L64[i]
    free(xx); free(L64)


cdef inline double _row_max(const floating *row, Py_ssize_t K) noexcept nogil:
    """max_k row[k] (-inf for K = 0 or a row of -inf / NaN)."""
    cdef double m = -INFINITY
    cdef Py_ssize_t k
    for k in range(K):
        if row[k] > m:
            m = row[k]
    return m


cdef void _refine_full(const Frames *f, Py_ssize_t start, Py_ssize_t rows, Py_ssize_t K,
                       const Refine *rf, double *work, floating *L) noexcept nogil:
    """L[i, k] <- log w_k + log N(x_i | mu_k, C_k) computed centred in float64, for the k
    within _REFINE_GAP of row i's largest L[i, :] (the first pass's value), chunk rows i.

    The full layout's product ``phi(y) @ M`` expands the quadratic form; in float32 its terms
    cancel (errors of 1e-3 to 1 nat per frame).  Only the components near a frame's best count
    in its log-likelihood and responsibilities: those are recomputed here from the frame's
    own values (``x - mu_k`` in float64, exact for float32 frames), the triangular factor and
    the squared norm in float64 (:c:func:`gmmx_centred_quad`).
    """
    cdef Py_ssize_t i, j, k, d, n, D = f.D, seg = _seg_of(f, start)
    cdef const char *row
    cdef int64_t s1
    cdef floating *Lrow
    cdef double m, v
    cdef double *x64
    cdef double *y
    cdef double *thr
    cdef Py_ssize_t *idx
    cdef int iD = <int>D, ni
    cdef double one = 1.0
    # component by component over the chunk: the rows that need component k, centred in
    # float64, times its factor in one BLAS call (dtrmm), so that frames near many components
    # (overlapping ones) cost a product, not a scalar loop each
    x64 = <double *>malloc(rows * D * sizeof(double))
    y = <double *>malloc(rows * D * sizeof(double))
    thr = <double *>malloc(rows * sizeof(double))
    idx = <Py_ssize_t *>malloc(rows * sizeof(Py_ssize_t))
    if x64 != NULL and y != NULL and thr != NULL and idx != NULL:
        for i in range(rows):
            m = _row_max(L + i * K, K)
            thr[i] = m - _REFINE_GAP if m > -INFINITY else INFINITY
            row = _row_at(f, start + i, &seg)
            s1 = f.s1[seg]
            for d in range(D):
                x64[i * D + d] = (<const floating *>(row + d * s1))[0]
        n = 0
        for i in range(rows):
            Lrow = L + i * K
            for k in range(K):
                if Lrow[k] >= thr[i]:
                    n = n + 1
        if n > rows * K * _REFINE_DENSE:
            free(y); free(thr); free(idx)
            _redo_float64(f, rows, K, rf, x64, L)
            free(x64)
            return
        for k in range(K):
            n = 0
            for i in range(rows):
                if L[i * K + k] >= thr[i]:
                    idx[n] = i
                    n = n + 1
            if n == 0:
                continue
            if n < _REFINE_BATCH:    # a few rows: a BLAS call would cost more than it saves
                for j in range(n):
                    L[idx[j] * K + k] = <floating>(rf.g[k] - 0.5 * gmmx_centred_quad(
                        x64 + idx[j] * D, rf.mu + k * D, rf.C + k * D * D, D, work))
                continue
            for j in range(n):
                for d in range(D):
                    y[j * D + d] = x64[idx[j] * D + d] - rf.mu[k * D + d]
            # column-major y^T (D x n) <- C_k^T y^T: C_k row-major upper = column-major lower
            ni = <int>n
            dtrmm("L", "L", "N", "N", &iD, &ni, &one, <double *>(rf.C + k * D * D), &iD, y, &iD)
            for j in range(n):
                v = 0.0
                for d in range(D):
                    v = v + y[j * D + d] * y[j * D + d]
                L[idx[j] * K + k] = <floating>(rf.g[k] - 0.5 * v)
        free(x64); free(y); free(thr); free(idx)
        return
    free(x64); free(y); free(thr); free(idx)
    for i in range(rows):
        Lrow = L + i * K
        m = _row_max(Lrow, K)
        if not (m > -INFINITY):
            continue
        row = _row_at(f, start + i, &seg)
        s1 = f.s1[seg]
        for d in range(D):
            work[d] = (<const floating *>(row + d * s1))[0]
        m = m - _REFINE_GAP
        for k in range(K):
            v = Lrow[k]
            if v >= m:
                v = rf.g[k] - 0.5 * gmmx_centred_quad(work, rf.mu + k * D, rf.C + k * D * D, D,
                                                      work + D)
                Lrow[k] = <floating>v


cdef void _fill_xx(const Frames *f, Py_ssize_t start, Py_ssize_t rows, const floating *shift,
                   floating *xx) noexcept nogil:
    """xx (rows, P) row-major <- the feature map of y = x - shift for the global rows start..start+rows.

    Diagonal layout (P = 2D): ``[y, y^2]``.  Full layout (P = D + D(D+1)/2): ``[y, y_a y_b for
    a <= b]``, the upper triangle of ``y y^T`` row by row (``numpy.triu_indices(D)`` order).
    Whitened frames (``f.W``, diagonal layout only): ``y`` is first replaced by ``T y``.
    """
    cdef Py_ssize_t i, d, e, t, D = f.D, P = f.P, lo = _seg_of(f, start)
    cdef floating *out
    cdef const floating *xr
    cdef const floating *Tw = <const floating *>f.W
    cdef int64_t s1
    cdef floating v
    cdef const char *row
    for i in range(rows):
        row = _row_at(f, start + i, &lo)
        s1 = f.s1[lo]
        out = xx + i * P
        if s1 == sizeof(floating):   # contiguous row: a loop gcc vectorises
            xr = <const floating *>row
            for d in range(D):
                out[d] = xr[d] - shift[d]
        else:
            for d in range(D):
                out[d] = (<const floating *>(row + d * s1))[0] - shift[d]
        if Tw != NULL:       # z_e = sum_{d <= e} T[e, d] y_d, into the squares' place, then back
            for e in range(D):
                v = 0
                for d in range(e + 1):
                    v = v + Tw[e * D + d] * out[d]
                out[D + e] = v
            memcpy(out, out + D, D * sizeof(floating))
        if P == 2 * D:
            for d in range(D):
                v = out[d]
                out[D + d] = v * v
        else:
            _full_products(out, D)


# --------------------------------------------------------------------------- checks
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


cdef inline Py_ssize_t _full_cols(Py_ssize_t D) noexcept nogil:
    """Columns of the full layout's feature map: D + D(D+1)/2."""
    return D + D * (D + 1) // 2


cdef int _check_model(Py_ssize_t D, Py_ssize_t K, Py_ssize_t m_rows, Py_ssize_t g_len,
                      Py_ssize_t chunk, int n_threads) except -1:
    if K < 1 or (m_rows != 2 * D and m_rows != _full_cols(D)) or g_len != K:
        raise ValueError("model matrices do not match the data")
    if chunk < 1 or n_threads < 1:
        raise ValueError("chunk and n_threads must be >= 1")
    return 0


cdef _FrameTable _prologue(object segments, const floating[::1] shift, Py_ssize_t K,
                           Py_ssize_t m_rows, Py_ssize_t g_len, Py_ssize_t chunk, int n_threads,
                           tuple xx_shape, tuple l_shape):
    """The checks every entry point starts with; returns the frame table.

    ``m_rows`` x ``K`` is the shape of the (or every) model's M (P, K), ``g_len`` the length of
    its gconst; ``xx_shape`` and (unless None) ``l_shape`` are the shapes of the per-thread
    buffers xx_buf (T, chunk, P) and l_buf (T, chunk, K).  ``m_rows`` chooses the layout:
    P = 2D the diagonal one, P = D + D(D+1)/2 the full one (see :func:`_fill_xx`; for D = 1
    they are the same).
    """
    cdef _FrameTable ft = _frame_table(segments, shift)
    cdef Py_ssize_t D = ft.f.D
    _check_model(D, K, m_rows, g_len, chunk, n_threads)
    ft.f.P = m_rows
    _check_buf("xx_buf", xx_shape, (n_threads, chunk), (m_rows,))
    if l_shape is not None:
        _check_buf("l_buf", l_shape, (n_threads, chunk), (K,))
    return ft


cdef inline tuple _shape(floating[:, :, ::1] buf):
    return (buf.shape[0], buf.shape[1], buf.shape[2])


cdef inline Py_ssize_t _rows_of(Py_ssize_t start, Py_ssize_t chunk, Py_ssize_t end) noexcept nogil:
    """Rows of the chunk starting at ``start``: ``chunk``, or what is left before ``end``."""
    return chunk if start + chunk <= end else end - start


# --------------------------------------------------------------------------- chunk kernels
# The inner (summed) dimension of every gemm is cut into slices of at most this many: OpenBLAS
# blocks that dimension by its GEMM_Q (>= 128 on every target) and its single- and
# multi-threaded drivers block it differently, so a longer one gives sums that depend on how
# many threads BLAS thinks it has.  Slices of <= 128 are summed in the same order by both
# drivers: results do not depend on BLAS's thread state, nor on the calling thread.
cdef enum:
    _K_SLICE = 128


cdef inline void _gemm(char *ta, char *tb, int m, int n, int k,
                       const floating *A, int lda, Py_ssize_t a_step,
                       const floating *B, int ldb, Py_ssize_t b_step,
                       floating beta, floating *C, int ldc) noexcept nogil:
    """Column-major C = op(A) op(B) + beta C, the k dimension in slices of ``_K_SLICE``.

    ``a_step`` / ``b_step``: how far A / B advance (elements) per unit of k.
    """
    cdef floating one = 1
    cdef int s = 0, q
    while s < k:
        q = _K_SLICE if s + _K_SLICE <= k else k - s
        if floating is float:
            sgemm(ta, tb, &m, &n, &q, &one, <float *>A + s * a_step, &lda,
                  <float *>B + s * b_step, &ldb, &beta, C, &ldc)
        else:
            dgemm(ta, tb, &m, &n, &q, &one, <double *>A + s * a_step, &lda,
                  <double *>B + s * b_step, &ldb, &beta, C, &ldc)
        beta = 1
        s += q


cdef inline double _softmax(floating *row, Py_ssize_t K) noexcept nogil:
    """In-place softmax of one row; returns log sum_j exp(row[j])."""
    if floating is float:
        return gmmx_softmax_f(row, K, 1.0)
    else:
        return gmmx_softmax_d(row, K, 1.0)


cdef void _chunk_logdens(const Frames *f, Py_ssize_t start, Py_ssize_t rows, Py_ssize_t K,
                         const floating *shift, const floating *M, const floating *gconst,
                         floating *xx, floating *L, const Refine *rf, double *rwork) noexcept nogil:
    """L (rows, K) <- gconst + xx @ M (xx the chunk's feature map): weighted log-densities (one
    gemm); then, with ``rf`` (a full model in float32), those near each frame's best recomputed
    centred in float64 (:func:`_refine_full`)."""
    cdef Py_ssize_t i, P = f.P
    _fill_xx(f, start, rows, shift, xx)
    for i in range(rows):
        memcpy(L + i * K, gconst, K * sizeof(floating))
    # row-major L (rows x K) is column-major L^T (K x rows) = M^T (K x P) @ xx^T (P x rows)
    _gemm("N", "N", <int>K, <int>rows, <int>P, M, <int>K, K, xx, <int>P, 1, 1, L, <int>K)
    if rf.mu != NULL:
        _refine_full(f, start, rows, K, rf, rwork, L)


cdef void _chunk_stats(const floating *L, const floating *xx, Py_ssize_t rows, Py_ssize_t K,
                       Py_ssize_t P, Py_ssize_t D, Py_ssize_t D2, bint sparse, bint summed_n,
                       floating *S, double *acc_n, double *acc_s, bint store,
                       const double *shift64) noexcept nogil:
    """acc_n += column sums of R = L (rows, K); acc_s (K, D2) += R^T xx[:, :D2]: sparse or one gemm.

    ``sparse``: by the kept entries only (:c:func:`gmmx_sparse_stats_d`), acc_n included;
    else dense: acc_n by column sums (unless ``summed_n``: the E-step kernel has added them
    already) and acc_s by one gemm.  float32: S (K, D2) <- the chunk's sums (sparse or
    sgemm), then added to the float64 acc_s; float64: the sums go into acc_s itself.

    ``store``: acc_s is set to the chunk's sums instead (it need not be initialised: a
    segment's first chunk).  ``shift64`` (D,) not NULL: this is the segment's last chunk
    (acc_n complete), acc_s is then turned into plain statistics (:func:`_unshift_rows`),
    float32 diagonal layout in the same pass as the adding (:c:func:`gmmx_add_unshift_f`,
    the same arithmetic).
    """
    if floating is float:
        if sparse:
            gmmx_sparse_stats_f(L, xx, rows, K, P, D2, acc_n, S)
        else:
            # row-major S (K x D2) = R^T xx, i.e. column-major S^T = xx[:, :D2]^T R
            if not summed_n:
                gmmx_colsum_f(L, rows, K, acc_n)
            _gemm("N", "T", <int>D2, <int>K, <int>rows, xx, <int>P, P, L, <int>K, K,
                  0.0, S, <int>D2)
        if shift64 != NULL and (D2 == D or D2 == 2 * D):
            gmmx_add_unshift_f(acc_s, S, acc_n, shift64, K, D, D2, store)
            return
        if store:
            gmmx_store_f(acc_s, S, K * D2)
        else:
            gmmx_add_f(acc_s, S, K * D2)
    else:
        if sparse:
            if store:
                memset(acc_s, 0, K * D2 * sizeof(double))
            gmmx_sparse_stats_d(L, xx, rows, K, P, D2, acc_n, acc_s)
        else:
            if not summed_n:
                gmmx_colsum_d(L, rows, K, acc_n)
            _gemm("N", "T", <int>D2, <int>K, <int>rows, xx, <int>P, P, L, <int>K, K,
                  0.0 if store else 1.0, <double *>acc_s, <int>D2)
    if shift64 != NULL:
        _unshift_rows(acc_s, acc_n, shift64, K, D, D2)


cdef void _chunk_estep(const Frames *f, Py_ssize_t start, Py_ssize_t rows, Py_ssize_t K,
                       Py_ssize_t D2, const floating *shift, const floating *M,
                       const floating *gconst, const double *sw, double sparse_limit,
                       floating *xx, floating *L, floating *S,
                       double *acc_n, double *acc_s, double *acc_scalar,
                       const Refine *rf, double *rwork, bint store=False,
                       const double *shift64=NULL) noexcept nogil:
    """E-step of one chunk and its statistics into (acc_n, acc_s, acc_scalar).

    The row kernel (C, vectorised, fast exp) turns L into responsibilities and, while each row
    is in L1, either adds its column sums to acc_n (``sparse_limit`` < 0: the statistics are
    dense whatever the chunk) or counts its kept entries (which choose sparse or dense).
    ``rf``: float32 full covariance's float64 recomputation near each row's best (or NULL).
    ``store``, ``shift64``: a segment's first / last chunk (see :func:`_chunk_stats`).
    """
    cdef bint always_dense = sparse_limit < 0
    cdef double *colsum = acc_n if always_dense else NULL
    cdef const double *swc = (sw + start) if sw != NULL else NULL
    cdef Py_ssize_t kept
    _chunk_logdens(f, start, rows, K, shift, M, gconst, xx, L, rf, rwork)
    if floating is float:
        kept = gmmx_estep_chunk_f(L, rows, K, swc, acc_scalar, colsum, not always_dense)
    else:
        kept = gmmx_estep_chunk_d(L, rows, K, swc, acc_scalar, colsum, not always_dense)
    # statistics sum_i r_ik [x_i, x_i^2]: one gemm, or the kept entries only when sparse
    _chunk_stats(L, xx, rows, K, f.P, f.D, D2,
                 (not always_dense) and kept <= sparse_limit * <double>(rows * K),
                 always_dense, S, acc_n, acc_s, store, shift64)


# --------------------------------------------------------------------------- entry points
def accumulate(object segments, const double[::1] sample_weight,
               const floating[::1] shift, const floating[:, ::1] M, const floating[::1] gconst,
               Py_ssize_t chunk, int n_threads, double sparse_limit, bint per_segment,
               floating[:, :, ::1] xx_buf, floating[:, :, ::1] l_buf,
               floating[:, :, ::1] s_buf,
               double[:, :, ::1] acc_s, double[:, ::1] acc_n, double[:, ::1] acc_scalar,
               const floating[:, ::1] whiten=None, object refine=None):
    """E-step plus sufficient statistics over all frames of ``segments``, chunk by chunk.

    segments: list of U arrays (n_u, D), N rows in all; sample_weight (N,) float64 or None
    (over all rows, in order); shift (D,); M (P, K); gconst (K,).
    Buffers, one slice per thread t < n_threads: xx_buf (T, chunk, P), l_buf (T, chunk, K),
    s_buf (T, K, P).  Accumulators (float64, zeroed by the caller): acc_s (R, K, D2) gets
    sum_i w_i r_ik phi(x_i - shift)[:D2] (D2 = P, or D for the first order
    only), acc_n (R, K) gets sum_i w_i r_ik, acc_scalar (R, 2) gets
    (sum_i w_i log p(x_i), sum_i w_i).  Frames with weight 0 contribute nothing.

    ``per_segment`` False: R = T, row t holds thread t's sums; chunks run over the rows of all
    segments as one array (a chunk may span segments), so the sums equal those of the
    concatenation.  ``per_segment`` True: R = U, row u holds segment u's statistics; a
    segment's chunks never leave it and are all done, in order, by one thread (segments are
    handed to threads dynamically), so every segment's result depends on the chunk size only,
    not on the thread count or on which thread ran it.

    ``whiten`` (D, D), or None: frames whitened before the feature map (:func:`_set_whitening`;
    the statistics are then those of ``z = whiten (x - shift)``, for the tied type).
    ``refine`` (means (K, D), chol (K, D, D), g (K,), float64), or None: a full model's
    log-densities near each frame's best recomputed centred in float64 (:func:`_refine_full`;
    gmmext passes it for float32 full models).

    A chunk whose responsibilities are mostly negligible (at most ``sparse_limit``, 0.25 in
    gmmext, of them above 1e-15 of their frame's largest) gets acc_s and acc_n summed over the
    others only, instead of by a gemm; the mass left out is below the rounding of the dense
    sums.  A negative ``sparse_limit`` makes every chunk use the gemm.
    """
    cdef Py_ssize_t K = M.shape[1]
    cdef _FrameTable ft = _prologue(segments, shift, K, M.shape[0], gconst.shape[0], chunk,
                                    n_threads, _shape(xx_buf), _shape(l_buf))
    _set_whitening(ft, whiten)
    _set_refine(ft, refine, K, n_threads)
    cdef const Frames *f = &ft.f
    cdef const Refine *rf = &ft.r
    cdef Py_ssize_t N = f.N, D = f.D, P = f.P, U = f.n_seg, D2 = acc_s.shape[2]
    cdef Py_ssize_t n_out = U if per_segment else n_threads
    cdef Py_ssize_t n_chunks = (N + chunk - 1) // chunk
    cdef Py_ssize_t c, u, start, rows, tid = 0
    cdef const double *sw = NULL
    if D2 != P and D2 != D:
        raise ValueError(f"workspace acc_s has {D2} columns, must be {P} or {D}")
    _check_buf("s_buf", _shape(s_buf), (n_threads,), (K, P))
    _check_buf("acc_s", (acc_s.shape[0], acc_s.shape[1], acc_s.shape[2]), (n_out,), (K, D2))
    _check_buf("acc_n", (acc_n.shape[0], acc_n.shape[1]), (n_out,), (K,))
    _check_buf("acc_scalar", (acc_scalar.shape[0], acc_scalar.shape[1]), (n_out,), (2,))
    if sample_weight is not None:
        if sample_weight.shape[0] != N:
            raise ValueError("sample_weight has the wrong length")
        if N > 0:
            sw = &sample_weight[0]
    if N == 0:
        return
    with nogil, parallel(num_threads=n_threads):
        tid = threadid()
        if per_segment:
            for u in prange(U, schedule="dynamic"):
                start = f.off[u]
                while start < f.off[u + 1]:
                    rows = _rows_of(start, chunk, f.off[u + 1])
                    _chunk_estep(f, start, rows, K, D2, &shift[0], &M[0, 0], &gconst[0], sw,
                                 sparse_limit, &xx_buf[tid, 0, 0], &l_buf[tid, 0, 0],
                                 &s_buf[tid, 0, 0], &acc_n[u, 0], &acc_s[u, 0, 0], &acc_scalar[u, 0],
                                 rf, _rwork(rf, D, tid))
                    start = start + rows
        else:
            for c in prange(n_chunks, schedule="static"):
                start = c * chunk
                _chunk_estep(f, start, _rows_of(start, chunk, N), K, D2, &shift[0], &M[0, 0],
                             &gconst[0], sw, sparse_limit, &xx_buf[tid, 0, 0], &l_buf[tid, 0, 0],
                             &s_buf[tid, 0, 0], &acc_n[tid, 0], &acc_s[tid, 0, 0], &acc_scalar[tid, 0],
                             rf, _rwork(rf, D, tid))


cdef void _unshift_rows(double *acc_s, const double *acc_n, const double *shift, Py_ssize_t K,
                        Py_ssize_t D, Py_ssize_t D2) noexcept nogil:
    """:func:`unshift` of one (K, D2) block of statistics and its (K,) occupancies, in place."""
    cdef Py_ssize_t k, d, e, t
    cdef double *a
    for k in range(K):
        a = acc_s + k * D2
        if D2 == 2 * D:
            for d in range(D):
                a[D + d] = a[D + d] + (2.0 * a[d] * shift[d] + acc_n[k] * shift[d] * shift[d])
        elif D2 != D:
            t = D
            for d in range(D):
                for e in range(d, D):
                    a[t] = a[t] + ((a[d] * shift[e] + shift[d] * a[e])
                                   + acc_n[k] * shift[d] * shift[e])
                    t = t + 1
        for d in range(D):
            a[d] = a[d] + acc_n[k] * shift[d]


def unshift(double[:, :, ::1] acc_s, const double[:, ::1] acc_n, const double[::1] shift,
            int n_threads):
    """Statistics about ``shift`` -> plain ones, in place, for R rows of (K, D2) statistics.

    acc_s[r, :, :D] holds sum w r (x - c), acc_s[r, :, D:] the second order about c, acc_n[r]
    sum w r; afterwards they hold sum w r x and the second order of x.  D2 = D: first order
    only; D2 = 2D: ``sum w r (x - c)^2`` -> ``sxx + (2 sx c + (n c) c)``; D2 = D + D(D+1)/2:
    the upper triangle of ``sum w r (x - c)(x - c)^T`` -> ``+ sx_a c_b + c_a sx_b + n c_a c_b``;
    then ``sx + n c``.  float64, rows shared among threads.
    """
    cdef Py_ssize_t R = acc_s.shape[0], K = acc_s.shape[1], D2 = acc_s.shape[2]
    cdef Py_ssize_t D = shift.shape[0], r
    if (D2 != D and D2 != 2 * D and D2 != _full_cols(D)) or acc_n.shape[0] < R \
            or acc_n.shape[1] != K or n_threads < 1:
        raise ValueError("statistics and shift do not match")
    if R == 0 or K == 0:
        return
    with nogil:
        for r in prange(R, schedule="static", num_threads=n_threads):
            _unshift_rows(&acc_s[r, 0, 0], &acc_n[r, 0], &shift[0], K, D, D2)


cdef void _segment_stats(const Frames *f, Py_ssize_t u, Py_ssize_t chunk, Py_ssize_t K,
                         Py_ssize_t D2, const floating *shift, const floating *M,
                         const floating *gconst, const double *shift64, const double *sw,
                         double sparse_limit, floating *xx, floating *L, floating *S,
                         double *w_s, double *w_n, double *w_scalar,
                         const Refine *rf, double *rwork) noexcept nogil:
    """Segment u's plain statistics (unshifted) in the work block (K, D2), (K,), (2,), which
    need not be initialised: the first chunk stores its sums in w_s, the next ones add theirs,
    the last one unshifts while it adds (w_s is written in one pass for most segments)."""
    cdef Py_ssize_t start = f.off[u], end = f.off[u + 1], rows
    memset(w_n, 0, K * sizeof(double))
    w_scalar[0] = 0.0
    w_scalar[1] = 0.0
    if start == end:
        memset(w_s, 0, K * D2 * sizeof(double))
        return
    while start < end:
        rows = _rows_of(start, chunk, end)
        _chunk_estep(f, start, rows, K, D2, shift, M, gconst, sw, sparse_limit, xx, L, S,
                     w_n, w_s, w_scalar, rf, rwork, start == f.off[u],
                     shift64 if start + rows == end else NULL)
        start = start + rows


def segment_stats(object segments, const double[::1] sample_weight,
                  const floating[::1] shift, const floating[:, ::1] M, const floating[::1] gconst,
                  const double[::1] shift64, Py_ssize_t chunk, int n_threads, double sparse_limit,
                  floating[:, :, ::1] xx_buf, floating[:, :, ::1] l_buf, floating[:, :, ::1] s_buf,
                  double[:, :, ::1] work_s, double[:, ::1] work_n, double[:, ::1] work_scalar,
                  double[:, :, ::1] out_s, double[:, ::1] out_n, double[:, ::1] out_scalar,
                  const int64_t[::1] group=None, object refine=None):
    """Plain (unshifted) statistics of every segment, or their sums per group, written in place.

    Arguments as :func:`accumulate` with ``per_segment`` True (every segment's chunks in order
    on one thread: a segment's statistics depend on the chunk size only), plus ``shift64`` (D,),
    the shift in float64 (for :func:`unshift`'s arithmetic, done here per segment).  A segment's
    statistics are summed in a float64 work block (``work_s`` (W, K, D2), ``work_n`` (W, K),
    ``work_scalar`` (W, 2)), unshifted there while it is in cache, then stored once:

    * ``group`` None: ``out_s`` (U, K, D2), ``out_n`` (U, K), ``out_scalar`` (U, 2) get segment
      u's statistics in row u, which is its work block (zeroed and unshifted there: the rows
      need not be zeroed before; ``work_*`` are not used).  Segments are handed out longest
      first.
    * ``group`` (U,) int64 in [0, G): ``out_s`` (G, K, D2), ``out_n`` (G, K),
      ``out_scalar`` (G, 2), zeroed by the caller, get ``out[g] += stats(u)`` for every u with
      ``group[u] == g``, in increasing u: the same bits as summing the per-segment statistics in
      order.  Segment u is computed in work block u % W (W >= n_threads: the memory is W blocks
      whatever U) and added to its group, in order, by whichever thread finds it next (a lock
      guards the adding; no barrier: a thread waits only for a block W segments back).
    """
    cdef Py_ssize_t K = M.shape[1]
    cdef _FrameTable ft = _prologue(segments, shift, K, M.shape[0], gconst.shape[0], chunk,
                                    n_threads, _shape(xx_buf), _shape(l_buf))
    _set_refine(ft, refine, K, n_threads)
    cdef const Frames *f = &ft.f
    cdef const Refine *rf = &ft.r
    cdef Py_ssize_t D = f.D, P = f.P, U = f.n_seg, D2 = work_s.shape[2], W = work_s.shape[0]
    cdef Py_ssize_t n_out = U if group is None else 0, u, j, tid = 0
    cdef const double *sw = NULL
    if D2 != P and D2 != D:
        raise ValueError(f"workspace work_s has {D2} columns, must be {P} or {D}")
    if shift64.shape[0] != D:
        raise ValueError("shift64 does not match the data")
    _check_buf("s_buf", _shape(s_buf), (n_threads,), (K, P))
    _check_buf("work_s", (W, work_s.shape[1], D2), (n_threads,), (K, D2))
    _check_buf("work_n", (work_n.shape[0], work_n.shape[1]), (W,), (K,))
    _check_buf("work_scalar", (work_scalar.shape[0], work_scalar.shape[1]), (W,), (2,))
    if group is not None:
        if group.shape[0] != U:
            raise ValueError("group must have one entry per segment")
        for u in range(U):
            if group[u] < 0 or group[u] >= out_n.shape[0]:
                raise ValueError(f"group[{u}] = {group[u]} is not in [0, {out_n.shape[0]})")
            n_out = out_n.shape[0]
    _check_buf("out_s", (out_s.shape[0], out_s.shape[1], out_s.shape[2]), (n_out,), (K, D2))
    _check_buf("out_n", (out_n.shape[0], out_n.shape[1]), (n_out,), (K,))
    _check_buf("out_scalar", (out_scalar.shape[0], out_scalar.shape[1]), (n_out,), (2,))
    if sample_weight is not None:
        if sample_weight.shape[0] != f.N:
            raise ValueError("sample_weight has the wrong length")
        if f.N > 0:
            sw = &sample_weight[0]
    # segments handed out longest first (per batch of W with groups): the threads finish
    # together; which thread does a segment changes nothing in its statistics
    order_arr = np.argsort(-np.diff(np.asarray(ft._tables[0])), kind="stable")
    cdef const int64_t[::1] order = order_arr.astype(np.int64)
    cdef Py_ssize_t v
    if group is None:
        with nogil, parallel(num_threads=n_threads):
            tid = threadid()
            for v in prange(U, schedule="dynamic"):
                u = order[v]
                _segment_stats(f, u, chunk, K, D2, &shift[0], &M[0, 0], &gconst[0], &shift64[0], sw,
                               sparse_limit, &xx_buf[tid, 0, 0], &l_buf[tid, 0, 0], &s_buf[tid, 0, 0],
                               &out_s[u, 0, 0], &out_n[u, 0], &out_scalar[u, 0],
                               rf, _rwork(rf, D, tid))
        return
    # groups: segment u is computed into ring slot u % W, then folded into its group's sums
    # by whichever thread finds it next in order (under the lock); a thread waits only when
    # its slot still holds a segment W places earlier that is not folded yet.
    cdef int64_t *ready = <int64_t *>malloc((W + 1) * sizeof(int64_t))   # ready[W]: the cursor
    cdef bint wait
    cdef openmp.omp_lock_t lock
    if ready == NULL:
        raise MemoryError()
    for j in range(W + 1):
        ready[j] = 0
    openmp.omp_init_lock(&lock)
    with nogil, parallel(num_threads=n_threads):
        tid = threadid()
        for u in prange(U, schedule="dynamic"):
            j = u % W
            wait = True
            while wait:
                openmp.omp_set_lock(&lock)
                wait = u - ready[W] >= W
                openmp.omp_unset_lock(&lock)
            _segment_stats(f, u, chunk, K, D2, &shift[0], &M[0, 0], &gconst[0], &shift64[0],
                           sw, sparse_limit, &xx_buf[tid, 0, 0], &l_buf[tid, 0, 0],
                           &s_buf[tid, 0, 0], &work_s[j, 0, 0], &work_n[j, 0], &work_scalar[j, 0],
                           rf, _rwork(rf, D, tid))
            openmp.omp_set_lock(&lock)
            ready[j] = 1
            while ready[W] < U and ready[ready[W] % W]:
                _fold(ready[W] % W, group[ready[W]], &work_s[0, 0, 0], &work_n[0, 0], &work_scalar[0, 0],
                      &out_s[0, 0, 0], &out_n[0, 0], &out_scalar[0, 0], K, D2)
                ready[ready[W] % W] = 0
                ready[W] = ready[W] + 1
            openmp.omp_unset_lock(&lock)
    openmp.omp_destroy_lock(&lock)
    free(ready)


cdef void _fold(Py_ssize_t j, Py_ssize_t g, const double *work_s, const double *work_n,
                const double *work_scalar, double *out_s, double *out_n, double *out_scalar,
                Py_ssize_t K, Py_ssize_t D2) noexcept nogil:
    """out[g] += work[j]: (K, D2) statistics, (K,) occupancies, (2,) scalars."""
    cdef Py_ssize_t e
    cdef const double *src = work_s + j * K * D2
    cdef double *dst = out_s + g * K * D2
    for e in range(K * D2):
        dst[e] = dst[e] + src[e]
    for e in range(K):
        out_n[g * K + e] = out_n[g * K + e] + work_n[j * K + e]
    out_scalar[2 * g] = out_scalar[2 * g] + work_scalar[2 * j]
    out_scalar[2 * g + 1] = out_scalar[2 * g + 1] + work_scalar[2 * j + 1]



cdef void _chunk_evaluate(const Frames *f, Py_ssize_t start, Py_ssize_t rows, Py_ssize_t K,
                          const floating *shift, const floating *M, const floating *gconst,
                          floating *xx, floating *L, double *ll_out, floating *resp_out,
                          floating *logprob_out, int64_t *label_out, const Refine *rf,
                          double *rwork) noexcept nogil:
    """evaluate's outputs for one chunk (the global rows start..start+rows; NULL: not wanted)."""
    cdef Py_ssize_t i, k, best
    cdef floating *Lrow
    cdef floating vmax
    cdef double ll
    _chunk_logdens(f, start, rows, K, shift, M, gconst, xx, L, rf, rwork)
    if logprob_out != NULL:
        memcpy(logprob_out + start * K, L, rows * K * sizeof(floating))
    for i in range(rows):
        Lrow = L + i * K
        if label_out != NULL:
            best = 0
            vmax = Lrow[0]
            for k in range(1, K):
                if Lrow[k] > vmax:
                    vmax = Lrow[k]
                    best = k
            label_out[start + i] = best
        if ll_out != NULL or resp_out != NULL:
            ll = _softmax(Lrow, K)
            if ll_out != NULL:
                ll_out[start + i] = ll
    if resp_out != NULL:
        memcpy(resp_out + start * K, L, rows * K * sizeof(floating))


def evaluate(object segments, const floating[::1] shift, const floating[:, ::1] M,
             const floating[::1] gconst, Py_ssize_t chunk, int n_threads,
             floating[:, :, ::1] xx_buf, floating[:, :, ::1] l_buf,
             double[::1] ll_out, floating[:, ::1] resp_out, floating[:, ::1] logprob_out,
             int64_t[::1] label_out, const floating[:, ::1] whiten=None, object refine=None):
    """Per-frame outputs, chunk by chunk; each output may be None.

    ll_out (N,): log p(x_i); resp_out (N, K): responsibilities; logprob_out (N, K):
    weighted log-densities log w_k + log N(x_i | k); label_out (N,): argmax_k of them.
    whiten: (D, D) whitening (see :func:`_set_whitening`), or None; refine: see accumulate.
    """
    cdef Py_ssize_t K = M.shape[1]
    cdef _FrameTable ft = _prologue(segments, shift, K, M.shape[0], gconst.shape[0], chunk,
                                    n_threads, _shape(xx_buf), _shape(l_buf))
    _set_whitening(ft, whiten)
    _set_refine(ft, refine, K, n_threads)
    cdef const Frames *f = &ft.f
    cdef const Refine *rf = &ft.r
    cdef Py_ssize_t N = f.N, D = f.D, c, tid = 0
    cdef double *ll = NULL
    cdef floating *resp = NULL
    cdef floating *lp = NULL
    cdef int64_t *lab = NULL
    if (ll_out is not None and ll_out.shape[0] != N) or (label_out is not None and label_out.shape[0] != N) \
            or (resp_out is not None and (resp_out.shape[0] != N or resp_out.shape[1] != K)) \
            or (logprob_out is not None and (logprob_out.shape[0] != N or logprob_out.shape[1] != K)):
        raise ValueError("output arrays have the wrong shape")
    if N == 0:
        return
    if ll_out is not None:
        ll = &ll_out[0]
    if resp_out is not None:
        resp = &resp_out[0, 0]
    if logprob_out is not None:
        lp = &logprob_out[0, 0]
    if label_out is not None:
        lab = &label_out[0]
    with nogil, parallel(num_threads=n_threads):
        tid = threadid()
        for c in prange((N + chunk - 1) // chunk, schedule="static"):
            _chunk_evaluate(f, c * chunk, _rows_of(c * chunk, chunk, N), K, &shift[0], &M[0, 0],
                            &gconst[0], &xx_buf[tid, 0, 0], &l_buf[tid, 0, 0], ll, resp, lp, lab,
                            rf, _rwork(rf, D, tid))


def exp_kernel_test(const floating[::1] x, bint estep=False):
    """exp(x) element-wise by the core's fast exp (a testing aid; see src/gmm_kernels.h).

    ``estep``: the E-step's variant, for x <= 0 (or NaN) only."""
    cdef Py_ssize_t n = x.shape[0]
    out = np.empty(n, dtype=np.float32 if floating is float else np.float64)
    cdef floating[::1] o = out
    if n == 0:
        return out
    with nogil:
        if floating is float:
            gmmx_exp_array_f(&x[0], &o[0], n, estep)
        else:
            gmmx_exp_array_d(&x[0], &o[0], n, estep)
    return out


def dense_gemms_test(const floating[:, ::1] M, Py_ssize_t N, Py_ssize_t chunk, int n_threads,
                     floating[:, :, ::1] xx_buf, floating[:, :, ::1] l_buf,
                     floating[:, :, ::1] s_buf, double[:, :, ::1] acc_s):
    """The dense E-step's two gemms alone (a benchmarking aid: what :func:`accumulate` with
    ``sparse_limit`` < 0 costs without its feature map, row kernel and statistics' additions).

    For N rows in chunks of ``chunk`` on ``n_threads`` threads (static schedule, as
    :func:`accumulate`), per chunk: ``L = xx @ M`` (rows x K, added to what l_buf holds) and
    the statistics' ``R^T xx`` (into s_buf for float32, added to acc_s for float64), by the
    same ``_gemm`` calls on the same shapes as :func:`_chunk_logdens` and :func:`_chunk_stats`.
    xx_buf (T, chunk, P) and l_buf (T, chunk, K) are used as they are (the caller fills them);
    acc_s (T, K, P) float64.  Call it with BLAS single-threaded, as the core runs.
    """
    cdef Py_ssize_t P = M.shape[0], K = M.shape[1], c, start, rows, tid = 0
    cdef Py_ssize_t n_chunks = (N + chunk - 1) // chunk
    _check_buf("xx_buf", _shape(xx_buf), (n_threads, chunk), (P,))
    _check_buf("l_buf", _shape(l_buf), (n_threads, chunk), (K,))
    _check_buf("s_buf", _shape(s_buf), (n_threads,), (K, P))
    _check_buf("acc_s", (acc_s.shape[0], acc_s.shape[1], acc_s.shape[2]), (n_threads,), (K, P))
    if N <= 0 or chunk <= 0:
        return
    with nogil, parallel(num_threads=n_threads):
        tid = threadid()
        for c in prange(n_chunks, schedule="static"):
            start = c * chunk
            rows = _rows_of(start, chunk, N)
            _gemm("N", "N", <int>K, <int>rows, <int>P, &M[0, 0], <int>K, K, &xx_buf[tid, 0, 0],
                  <int>P, 1, 1, &l_buf[tid, 0, 0], <int>K)
            if floating is float:
                _gemm("N", "T", <int>P, <int>K, <int>rows, &xx_buf[tid, 0, 0], <int>P, P,
                      &l_buf[tid, 0, 0], <int>K, K, 0.0, &s_buf[tid, 0, 0], <int>P)
            else:
                _gemm("N", "T", <int>P, <int>K, <int>rows, &xx_buf[tid, 0, 0], <int>P, P,
                      &l_buf[tid, 0, 0], <int>K, K, 1.0, <double *>&acc_s[tid, 0, 0], <int>P)


# --------------------------------------------------------------------------- top-C scoring
# Reynolds et al. (2000): per frame, the C best components of the UBM are found once; the
# UBM and every model adapted from it are then evaluated on those C components only.

cdef void _chunk_select(const Frames *f, Py_ssize_t start, Py_ssize_t rows, Py_ssize_t K,
                        Py_ssize_t C, const floating *shift, const floating *M,
                        const floating *gconst, floating *xx, floating *L, floating *vals,
                        int32_t *idx_out, double *ll_out, const Refine *rf,
                        double *rwork) noexcept nogil:
    """topc_select's outputs for one chunk; vals (C,) is scratch."""
    cdef Py_ssize_t i, j, k
    cdef floating *Lrow
    cdef int32_t *idx
    cdef floating v
    _chunk_logdens(f, start, rows, K, shift, M, gconst, xx, L, rf, rwork)
    for i in range(rows):
        Lrow = L + i * K
        idx = idx_out + (start + i) * C
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


def topc_select(object segments, const floating[::1] shift, const floating[:, ::1] M,
                const floating[::1] gconst, Py_ssize_t C, Py_ssize_t chunk, int n_threads,
                floating[:, :, ::1] xx_buf, floating[:, :, ::1] l_buf, floating[:, ::1] val_buf,
                int32_t[:, ::1] idx_out, double[::1] ll_out, const floating[:, ::1] whiten=None,
                object refine=None):
    """The C best components of every frame, and the frame's log-likelihood over them.

    idx_out (N, C) int32 gets component indices sorted by decreasing weighted log-density;
    ll_out (N,) gets log sum_{k in top C} w_k N(x | k) (the full log-likelihood when C == K).
    val_buf (T, C) is scratch; whiten: (D, D) whitening (see :func:`_set_whitening`), or None;
    refine: see accumulate.
    """
    cdef Py_ssize_t K = M.shape[1]
    cdef _FrameTable ft = _prologue(segments, shift, K, M.shape[0], gconst.shape[0], chunk,
                                    n_threads, _shape(xx_buf), _shape(l_buf))
    _set_whitening(ft, whiten)
    _set_refine(ft, refine, K, n_threads)
    cdef const Frames *f = &ft.f
    cdef const Refine *rf = &ft.r
    cdef Py_ssize_t N = f.N, D = f.D, c, tid = 0
    if C < 1 or C > K:
        raise ValueError("C must be in [1, K]")
    _check_buf("val_buf", (val_buf.shape[0], val_buf.shape[1]), (n_threads, C), ())
    if idx_out.shape[0] != N or idx_out.shape[1] != C or ll_out.shape[0] != N:
        raise ValueError("output arrays have the wrong shape")
    if N == 0:
        return
    with nogil, parallel(num_threads=n_threads):
        tid = threadid()
        for c in prange((N + chunk - 1) // chunk, schedule="static"):
            _chunk_select(f, c * chunk, _rows_of(c * chunk, chunk, N), K, C, &shift[0], &M[0, 0],
                          &gconst[0], &xx_buf[tid, 0, 0], &l_buf[tid, 0, 0], &val_buf[tid, 0],
                          &idx_out[0, 0], &ll_out[0], rf, _rwork(rf, D, tid))


cdef void _chunk_topc(const Frames *f, Py_ssize_t start, Py_ssize_t rows, Py_ssize_t K,
                      Py_ssize_t C, Py_ssize_t S, const int32_t *idx, const floating *shift,
                      const floating *Mt, const floating *gconst, floating *xx, floating *vals,
                      double *acc) noexcept nogil:
    """acc[s] += the chunk's top-C log-likelihood under model s, for the S models."""
    cdef Py_ssize_t i, j, d, s, k, D2 = f.P
    cdef const floating *xrow
    cdef const floating *mrow
    cdef floating v
    _fill_xx(f, start, rows, shift, xx)
    for s in range(S):
        for i in range(rows):
            xrow = xx + i * D2
            for j in range(C):
                k = idx[(start + i) * C + j]
                mrow = Mt + (s * K + k) * D2
                v = gconst[s * K + k]
                for d in range(D2):
                    v = v + mrow[d] * xrow[d]
                vals[j] = v
            acc[s] += _softmax(vals, C)


def topc_loglik(object segments, const int32_t[:, ::1] idx, const floating[::1] shift,
                const floating[:, :, ::1] Mt, const floating[:, ::1] gconst,
                Py_ssize_t chunk, int n_threads, floating[:, :, ::1] xx_buf,
                floating[:, ::1] val_buf, double[:, ::1] acc, const floating[:, ::1] whiten=None):
    """Total log-likelihood of the frames under each of S models, each frame restricted to its C components.

    idx (N, C) from topc_select; Mt (S, K, P) and gconst (S, K) are the models' matrices
    (Mt[s] is M of model s transposed, all built about the same ``shift``).  acc (T, S),
    zeroed by the caller, gets per-thread sums over frames of
    log sum_{k in idx[i]} w_sk N(x_i | s, k).  val_buf (T, C) is scratch.  whiten: the (D, D)
    whitening all S models share (see :func:`_set_whitening`), or None.
    """
    cdef Py_ssize_t S = Mt.shape[0], K = Mt.shape[1], C = idx.shape[1]
    cdef _FrameTable ft = _prologue(segments, shift, K, Mt.shape[2], gconst.shape[1], chunk,
                                    n_threads, _shape(xx_buf), None)
    _set_whitening(ft, whiten)
    cdef const Frames *f = &ft.f
    cdef Py_ssize_t N = f.N, c, i, j, tid = 0
    if gconst.shape[0] != S:
        raise ValueError("model matrices do not match the data")
    if idx.shape[0] != N or C < 1 or C > K:
        raise ValueError("component indices have the wrong shape")
    _check_buf("acc", (acc.shape[0], acc.shape[1]), (n_threads,), (S,))
    _check_buf("val_buf", (val_buf.shape[0], val_buf.shape[1]), (n_threads, C), ())
    for i in range(N):
        for j in range(C):
            if idx[i, j] < 0 or idx[i, j] >= K:
                raise ValueError("component index out of range")
    if N == 0 or S == 0:
        return
    with nogil, parallel(num_threads=n_threads):
        tid = threadid()
        for c in prange((N + chunk - 1) // chunk, schedule="static"):
            _chunk_topc(f, c * chunk, _rows_of(c * chunk, chunk, N), K, C, S, &idx[0, 0],
                        &shift[0], &Mt[0, 0, 0], &gconst[0, 0], &xx_buf[tid, 0, 0],
                        &val_buf[tid, 0], &acc[tid, 0])


# --------------------------------------------------------------------------- own deterministic products
# Used by the shared-variance top-C scoring of many models only (_topc_shared.pxi): one model per
# vector lane, one accumulator per element, the summed dimension in order (one FMA per term,
# blocks of 128 terms added in order), whatever the instruction set (AVX-512, AVX2+FMA, portable
# C: the same bits), the calling thread or BLAS: a model's score does not depend on its stack.
cdef extern from "gmm_gemm.h" nogil:
    int GMMX_PW_f, GMMX_PW_d, GMMX_PANEL_BYTES
    int gmmx_isa()
    int gmmx_isa_mask()
    Py_ssize_t gmmx_packed_size(Py_ssize_t k, Py_ssize_t n, Py_ssize_t pw)
    void gmmx_pack_f(Py_ssize_t k, Py_ssize_t n, const float *B, Py_ssize_t brs, Py_ssize_t bcs, float *Bp)
    void gmmx_pack_d(Py_ssize_t k, Py_ssize_t n, const double *B, Py_ssize_t brs, Py_ssize_t bcs, double *Bp)
    void gmmx_gemm_f(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float *A, Py_ssize_t ars,
                     Py_ssize_t acs, const float *Bp, Py_ssize_t pb, float *C, Py_ssize_t crs,
                     Py_ssize_t ccs)
    void gmmx_gemm_d(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double *A, Py_ssize_t ars,
                     Py_ssize_t acs, const double *Bp, Py_ssize_t pb, double *C, Py_ssize_t crs,
                     Py_ssize_t ccs)
    void gmmx_gemm_isa_f(int isa, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float *A, Py_ssize_t ars,
                         Py_ssize_t acs, const float *Bp, Py_ssize_t pb, float *C, Py_ssize_t crs,
                         Py_ssize_t ccs)
    void gmmx_gemm_isa_d(int isa, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double *A, Py_ssize_t ars,
                         Py_ssize_t acs, const double *Bp, Py_ssize_t pb, double *C, Py_ssize_t crs,
                         Py_ssize_t ccs)


cdef inline Py_ssize_t _pw(floating *dummy) noexcept nogil:
    """Panel width (columns) of the own products in this dtype."""
    return GMMX_PW_f if floating is float else GMMX_PW_d


include "_topc_shared.pxi"
include "_packed_spd.pxi"


def gemm_isas():
    """(best, supported): the instruction sets of the core's products on this CPU (1 portable C,
    2 AVX2+FMA, 3 AVX-512; see src/gmm_gemm.h)."""
    cdef int m = gmmx_isa_mask()
    return gmmx_isa(), tuple(i for i in (1, 2, 3) if m & (1 << i))


def gemm_kernel_test(const floating[:, :] A, const floating[:, :] B, int isa=0, int repeat=1,
                     bint pack_each=True):
    """A @ B by the core's deterministic product with instruction set ``isa`` (0: the best;
    a testing and benchmarking aid).  Any strides (in elements of the dtype).  ``repeat``
    times, B packed every time (``pack_each``) or once before (as a ModelStack's models)."""
    cdef Py_ssize_t m = A.shape[0], k = A.shape[1], n = B.shape[1], it, sz = sizeof(floating)
    if B.shape[0] != k:
        raise ValueError("shapes do not match")
    dt = np.float32 if floating is float else np.float64
    out = np.zeros((m, n), dtype=dt)
    cdef Py_ssize_t pw = _pw(<floating *>NULL)
    packed = np.zeros(max(1, gmmx_packed_size(k, n, pw)), dtype=dt)
    cdef floating[:, ::1] C = out
    cdef floating[::1] Bp = packed
    if m == 0 or n == 0:
        return out
    cdef const floating *pa = &A[0, 0] if k > 0 else NULL
    cdef const floating *pb = &B[0, 0] if k > 0 else NULL
    cdef Py_ssize_t ars = A.strides[0] // sz, acs = A.strides[1] // sz
    cdef Py_ssize_t brs = B.strides[0] // sz, bcs = B.strides[1] // sz
    with nogil:
        for it in range(repeat):
            if floating is float:
                if pack_each or it == 0:
                    gmmx_pack_f(k, n, pb, brs, bcs, &Bp[0])
                gmmx_gemm_isa_f(isa, m, n, k, pa, ars, acs, &Bp[0], pw, &C[0, 0], n, 1)
            else:
                if pack_each or it == 0:
                    gmmx_pack_d(k, n, pb, brs, bcs, &Bp[0])
                gmmx_gemm_isa_d(isa, m, n, k, pa, ars, acs, &Bp[0], pw, &C[0, 0], n, 1)
    return out
