# --------------------------------------------------------------------------- top-C scoring, shared variances
# Included by _core.pyx after topc_loglik.  Models adapted from a UBM in their means (and
# weights) only keep the UBM's variances, so with y = x - shift, m_sk = mu_sk - shift and
# p_k = 1 / var_k the weighted log-density of frame i under component k of model s is
#
#     log w_sk N(x_i | mu_sk, var_k) = (y_i . a_sk + q_ik) + g_sk,
#     q_ik = -1/2 sum_d p_kd y_id^2           (the frame's part: one value per (frame, component))
#     a_sk = p_k * m_sk                        (D,), rows 0..D-1 of the model's M
#     g_sk = the model's gconst
#
# For S models at once, the frames' (frame, component) pairs are grouped by component: the pairs
# of component k give one product (n_k x D) @ (D x PW) per panel of PW models (src/gmm_gemm.h),
# so the whole utterance costs one pass over the models' matrices instead of N C S dot products
# of length 2D.  The models are the product's columns, one per vector lane, and every lane runs
# the same instructions: a model's score does not depend on the other models of the stack, on
# its position in it, nor on the stack's size.

from libc.math cimport log

cdef extern from "gmm_kernels.h" nogil:
    void gmmx_panel_lse_f(const float *L, const float *qv, const int32_t *comp, const float *G,
                          Py_ssize_t ldg, const int64_t *pos, Py_ssize_t rows, Py_ssize_t C,
                          double *msum, double *prod)
    void gmmx_panel_lse_d(const double *L, const double *qv, const int32_t *comp, const double *G,
                          Py_ssize_t ldg, const int64_t *pos, Py_ssize_t rows, Py_ssize_t C,
                          double *msum, double *prod)
    void gmmx_panel_lse16_f(const float *L, const float *qv, const int32_t *comp, const float *G,
                            Py_ssize_t ldg, const int64_t *pos, Py_ssize_t rows, Py_ssize_t C,
                            double *msum, double *prod)
    void gmmx_panel_lse16_d(const double *L, const double *qv, const int32_t *comp, const double *G,
                            Py_ssize_t ldg, const int64_t *pos, Py_ssize_t rows, Py_ssize_t C,
                            double *msum, double *prod)

cdef enum:
    _SHARED_PAIRS = 4096           # (frame, component) pairs per frame chunk (a panel's L: 1 MB)


def panel_width(dtype, n_models: int) -> int:
    """Models per panel of :func:`topc_loglik_shared`'s packed matrices for a stack of
    ``n_models`` in ``dtype``: 64 in float32, 32 in float64, or 16 for at most 16 models
    (a stack of one is not padded to a whole panel)."""
    return 16 if n_models <= 16 else GMMX_PANEL_BYTES // np.dtype(dtype).itemsize


cdef void _shared_panel(const floating *Y, Py_ssize_t D, const floating *qv, const int32_t *comp,
                        const int64_t *start, const int64_t *act, Py_ssize_t n_act,
                        const floating *A, Py_ssize_t n_pan, Py_ssize_t pl, Py_ssize_t q,
                        Py_ssize_t S, const floating *G, const int64_t *pos, Py_ssize_t rows,
                        Py_ssize_t C, floating *L, double *msum, double *prod) noexcept nogil:
    """One chunk of frames under panel ``q`` (``pl`` lanes) of the S models: L (R, nl) <- every
    selected component's pairs (rows of Y) @ its (D, pl) panel of A, then the panel's
    log-sum-exp.

    nl: the panel's lanes, or 16 when at most 16 of them hold models (a last panel; a stack
    of one): the same operations per lane, on fewer lanes.
    """
    cdef Py_ssize_t a, k, nl = 16 if S - q * pl <= 16 else pl
    cdef const floating *Gq = G + q * pl
    cdef double *ms = msum + q * pl
    cdef double *pr = prod + q * pl
    for a in range(n_act):
        k = act[a]
        if floating is float:
            gmmx_gemm_f(start[k + 1] - start[k], nl, D, Y + start[k] * D, D, 1,
                        A + (k * n_pan + q) * D * pl, pl, L + start[k] * nl, nl, 1)
        else:
            gmmx_gemm_d(start[k + 1] - start[k], nl, D, Y + start[k] * D, D, 1,
                        A + (k * n_pan + q) * D * pl, pl, L + start[k] * nl, nl, 1)
    if floating is float:
        if nl == 16:
            gmmx_panel_lse16_f(L, qv, comp, Gq, n_pan * pl, pos, rows, C, ms, pr)
        else:
            gmmx_panel_lse_f(L, qv, comp, Gq, n_pan * pl, pos, rows, C, ms, pr)
    else:
        if nl == 16:
            gmmx_panel_lse16_d(L, qv, comp, Gq, n_pan * pl, pos, rows, C, ms, pr)
        else:
            gmmx_panel_lse_d(L, qv, comp, Gq, n_pan * pl, pos, rows, C, ms, pr)


def topc_loglik_shared(object segments, const int32_t[:, ::1] idx, const floating[::1] shift,
                       const floating[:, ::1] Q, const floating[:, :, :, ::1] A,
                       const floating[:, ::1] G, int n_threads, double[::1] out):
    """Total top-C log-likelihood of the frames under S models sharing the reference's variances.

    idx (N, C) from topc_select; ``Q`` (K, D) is ``-1 / (2 var_k)`` of the shared variances
    (rows D..2D-1 of the models' M, transposed).  The models come packed in panels of
    PW = :func:`panel_width` models: ``A`` (K, n_pan, D, PW) with ``A[k, s // PW, :, s % PW]
    = (mu_sk - shift) / var_k`` (rows 0..D-1 of model s's M) and ``G`` (K, n_pan * PW) with
    ``G[k, s]`` model s's gconst, all about ``shift``, lanes past the S models zero; PW is
    the dtype's whole panel, or 16 for a stack of at most 16.  ``out`` (S,), S <= n_pan * PW,
    zeroed by the caller, gets ``sum_i log sum_{k in idx[i]} w_sk
    N(x_i | mu_sk, var_k)``: the same quantity as :func:`topc_loglik`, to rounding.

    Frames are taken in chunks of at most ``_SHARED_PAIRS / C`` (at least one).  Per chunk,
    the (frame, component) pairs are sorted by component (counting sort, stable); then the
    panels are shared among ``n_threads`` OpenMP threads, each panel's products (one per
    selected component) and log-sum-exp done by one thread, with a per-model state carried
    from chunk to chunk.  Every value of a model is computed by the same operations whatever
    the thread count, the chunking, the other models and the model's lane: the result is
    bitwise a function of the model, the frames and the indices only.
    """
    cdef Py_ssize_t K = A.shape[0], n_pan = A.shape[1], pl = A.shape[3], S = out.shape[0]
    cdef Py_ssize_t C = idx.shape[1], D = shift.shape[0]
    cdef _FrameTable ft = _frame_table(segments, shift)
    cdef const Frames *f = &ft.f
    cdef Py_ssize_t N = f.N, i, j, k, r, d, c0, rows, n_act, q, chunk, R, tid = 0
    cdef floating v
    if A.shape[2] != D or (pl != _pw(<floating *>NULL) and pl != 16) or Q.shape[0] != K \
            or Q.shape[1] != D or G.shape[0] != K or G.shape[1] != n_pan * pl:
        raise ValueError("model matrices do not match the data")
    if S > n_pan * pl:
        raise ValueError("output array has the wrong shape")
    if idx.shape[0] != N or C < 1 or C > K:
        raise ValueError("component indices have the wrong shape")
    if n_threads < 1:
        raise ValueError("n_threads must be >= 1")
    for i in range(N):
        for j in range(C):
            if idx[i, j] < 0 or idx[i, j] >= K:
                raise ValueError("component index out of range")
    if N == 0 or S == 0:
        return
    chunk = min(N, max(1, _SHARED_PAIRS // C))
    R = chunk * C
    dt = np.float32 if floating is float else np.float64
    xx_arr = np.empty((chunk, 2 * D), dtype=dt)
    Y_arr = np.empty((R, D), dtype=dt)                 # the pairs' y, sorted by component
    qv_arr = np.empty(R, dtype=dt)                     # the pairs' q_ik
    L_arr = np.empty((n_threads, R, pl if S > 16 else 16), dtype=dt)   # per thread: a panel's y . a_sk
    rows_arr = np.empty(R, dtype=np.int64)              # frame (row in the chunk) of each sorted pair
    comp_arr = np.empty(R, dtype=np.int32)              # component of each sorted pair
    pos_arr = np.empty(R, dtype=np.int64)               # sorted position of pair (i, j)
    start_arr = np.zeros(K + 1, dtype=np.int64)
    act_arr = np.empty(K, dtype=np.int64)
    msum_arr = np.zeros(n_pan * pl)
    prod_arr = np.ones(n_pan * pl)
    cdef floating[:, ::1] xx = xx_arr
    cdef floating[:, ::1] Y = Y_arr
    cdef floating[::1] qv = qv_arr
    cdef floating[:, :, ::1] L = L_arr
    cdef int64_t[::1] prow = rows_arr
    cdef int32_t[::1] comp = comp_arr
    cdef int64_t[::1] pos = pos_arr
    cdef int64_t[::1] start = start_arr
    cdef int64_t[::1] act = act_arr
    cdef double[::1] msum = msum_arr
    cdef double[::1] prod = prod_arr
    c0 = 0
    with nogil:
        while c0 < N:
            rows = chunk if c0 + chunk <= N else N - c0
            _fill_xx(f, c0, rows, &shift[0], &xx[0, 0])
            # counting sort of the chunk's pairs by component
            for k in range(K + 1):
                start[k] = 0
            for i in range(rows):
                for j in range(C):
                    start[idx[c0 + i, j] + 1] += 1
            n_act = 0
            for k in range(K):
                if start[k + 1] > 0:
                    act[n_act] = k
                    n_act = n_act + 1
                start[k + 1] += start[k]
            for i in range(rows):
                for j in range(C):
                    k = idx[c0 + i, j]
                    r = start[k]
                    start[k] = r + 1
                    prow[r] = i
                    comp[r] = <int32_t>k
                    pos[i * C + j] = r
            for k in range(K, 0, -1):                     # start[k] is now the end of k: shift back
                start[k] = start[k - 1]
            start[0] = 0
            # the pairs' y and frame parts q_ik = sum_d q_kd y_id^2 (d in order)
            for r in range(rows * C):
                k = comp[r]
                v = 0
                for d in range(D):
                    Y[r, d] = xx[prow[r], d]
                    v = v + Q[k, d] * xx[prow[r], D + d]
                qv[r] = v
            with parallel(num_threads=n_threads):
                tid = threadid()
                for q in prange(n_pan, schedule="static"):
                    _shared_panel(&Y[0, 0], D, &qv[0], &comp[0], &start[0], &act[0], n_act,
                                  &A[0, 0, 0, 0], n_pan, pl, q, S, &G[0, 0], &pos[0], rows, C,
                                  &L[tid, 0, 0], &msum[0], &prod[0])
            c0 = c0 + rows
        for j in range(S):
            out[j] += msum[j] + log(prod[j])
