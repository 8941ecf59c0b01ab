# --------------------------------------------------------------------------- top-C scoring, shared variances
# Included by _core.pyx after topc_loglik.  Models adapted from a UBM in their means (and
# weights) only keep the UBM's variances, so with y = x - shift, m_sk = mu_sk - shift and
# p_k = 1 / var_k the weighted log-density of frame i under component k of model s is
#
#     log w_sk N(x_i | mu_sk, var_k) = q_ik + y_i . a_sk + g_sk,
#     q_ik = -1/2 sum_d p_kd y_id^2           (the frame's part: one value per (frame, component))
#     a_sk = p_k * m_sk                        (D,), rows 0..D-1 of the model's M
#     g_sk = the model's gconst
#
# For S models at once, the frames' (frame, component) pairs are grouped by component: the pairs
# of component k give one gemm (n_k x D) @ (D x S), so the whole utterance costs one gemm per
# component selected by any frame instead of N C S dot products of length 2D.

from libc.math cimport log

cdef enum:
    _SHARED_BLOCK = 16             # models per task of the log-sum-exp phase
    _SHARED_CELLS = 1 << 23        # (pair, model) cells of L per frame chunk (32 MB in float32)
    _SHARED_PAIRS = 1 << 14        # (frame, component) pairs per frame chunk


cdef void _shared_component(const floating *xx, Py_ssize_t P, Py_ssize_t D, Py_ssize_t S,
                            Py_ssize_t R, const int64_t *rows, Py_ssize_t n, const floating *q,
                            const floating *A, floating *Y, floating *qv, floating *L) noexcept nogil:
    """The n pairs ``rows`` (frame rows of ``xx``) of one component: qv[r] <- q . y_r^2 and
    L[s, r] <- y_r . A[s] for every model s (L (S, R) row-major, this component's columns).

    ``Y`` (n, D) is scratch for the pairs' shifted frames; ``q`` (D,) the component's -1/(2 var);
    ``A`` (S, D) the models' rows for this component.
    """
    cdef Py_ssize_t r, d
    cdef const floating *x
    cdef floating v
    for r in range(n):
        x = xx + rows[r] * P
        v = 0
        for d in range(D):
            Y[r * D + d] = x[d]
            v = v + q[d] * x[D + d]
        qv[r] = v
    # column-major (n x S, ldc = R) block of L = Y (n x D) @ A^T; A row-major (S, D) is
    # column-major D x S, the layout in which the long dimension S streams through the gemm
    _gemm("T", "N", <int>n, <int>S, <int>D, Y, <int>D, 1, A, <int>D, 1, 0, L, <int>R)


cdef extern from "gmm_kernels.h" nogil:
    double gmmx_exp_d(double x)
    float gmmx_exp_f(float x)


cdef void _shared_lse(const floating *L, Py_ssize_t R, const floating *qv, const int32_t *comp,
                      const floating *G, Py_ssize_t K, Py_ssize_t s0, Py_ssize_t s1,
                      const int64_t *pos, Py_ssize_t rows, Py_ssize_t C, floating *vals,
                      double *out) noexcept nogil:
    """out[s] += sum over the chunk's frames of log sum_j exp (L[s, r] + qv[r] + G[s, comp[r]]),
    r = pos[i, j], for the models s in [s0, s1).

    Per (frame, model): the maximum m of the C values and t = sum_j exp(value - m) (the core's
    fast exp, t in [1, C]); the m are summed and the t multiplied (float64), the product's log
    taken only when it passes 1e250 and at the end: one log per model per many frames instead
    of one per frame.  A frame whose C values are all -inf gives -inf, as the log-sum-exp.
    """
    cdef Py_ssize_t i, j, r, s
    cdef const floating *Ls
    cdef const floating *Gs
    cdef floating m, v, t
    cdef double msum, prod
    for s in range(s0, s1):
        Ls = L + s * R
        Gs = G + s * K
        msum = 0
        prod = 1
        for i in range(rows):
            m = -INFINITY
            for j in range(C):
                r = pos[i * C + j]
                v = Ls[r] + qv[r] + Gs[comp[r]]
                vals[j] = v
                if v > m:
                    m = v
            if not (m > -INFINITY):
                msum = -INFINITY
                continue
            t = 0
            for j in range(C):
                if floating is float:
                    t = t + gmmx_exp_f(vals[j] - m)
                else:
                    t = t + gmmx_exp_d(vals[j] - m)
            msum += m
            prod *= t
            if prod > 1e250:
                msum += log(prod)
                prod = 1
        out[s] += msum + log(prod)


def topc_loglik_shared(object segments, const int32_t[:, ::1] idx, const floating[::1] shift,
                       const floating[:, ::1] Q, const floating[:, :, ::1] A,
                       const floating[:, ::1] G, int n_threads, double[::1] out):
    """Total top-C log-likelihood of the frames under S models sharing the reference's variances.

    idx (N, C) from topc_select; ``Q`` (K, D) is ``-1 / (2 var_k)`` of the shared variances
    (rows D..2D-1 of the models' M, transposed); ``A`` (K, S, D) holds rows 0..D-1 of every
    model's M (``A[k, s] = (mu_sk - shift) / var_k``) and ``G`` (S, K) the models' gconst, all
    about ``shift``.  ``out`` (S,), zeroed by the caller, gets
    ``sum_i log sum_{k in idx[i]} w_sk N(x_i | mu_sk, var_k)``: the same quantity as
    :func:`topc_loglik`, to rounding.

    Frames are taken in chunks (at most ``_SHARED_CELLS / (C S)`` and ``_SHARED_PAIRS / C``
    frames, at least one).  Per chunk, the (frame, component) pairs are sorted by component
    (counting sort, stable) and every selected component's pairs give one gemm against all S
    models, the components shared among ``n_threads`` OpenMP threads; then the models, in
    blocks of ``_SHARED_BLOCK``, are shared among the threads for the log-sum-exp over each
    frame's C values, each model's total summed over frames in order by one thread.  Every
    value is computed by the same operations whatever the thread count: results are
    deterministic and independent of it.
    """
    cdef Py_ssize_t K = A.shape[0], S = A.shape[1], C = idx.shape[1], D = shift.shape[0]
    cdef _FrameTable ft = _frame_table(segments, shift)
    cdef const Frames *f = &ft.f
    cdef Py_ssize_t N = f.N, i, j, k, r, c0, rows, n_act, a, b, nb, chunk, R, tid = 0
    if A.shape[2] != D or Q.shape[0] != K or Q.shape[1] != D or G.shape[0] != S or G.shape[1] != K:
        raise ValueError("model matrices do not match the data")
    if out.shape[0] != S:
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
    chunk = min(N, max(1, min(_SHARED_CELLS // (C * S), _SHARED_PAIRS // C)))
    R = chunk * C
    dt = np.float32 if floating is float else np.float64
    xx_arr = np.empty((chunk, 2 * D), dtype=dt)
    L_arr = np.empty((S, R), dtype=dt)
    Y_arr = np.empty((n_threads, R, D), dtype=dt)
    qv_arr = np.empty(R, dtype=dt)
    val_arr = np.empty((n_threads, C), dtype=dt)
    rows_arr = np.empty(R, dtype=np.int64)              # frame (row in the chunk) of each sorted pair
    comp_arr = np.empty(R, dtype=np.int32)              # component of each sorted pair
    pos_arr = np.empty(R, dtype=np.int64)               # sorted position of pair (i, j)
    start_arr = np.zeros(K + 1, dtype=np.int64)
    act_arr = np.empty(K, dtype=np.int64)
    cdef floating[:, ::1] xx = xx_arr
    cdef floating[:, ::1] L = L_arr
    cdef floating[:, :, ::1] Y = Y_arr
    cdef floating[::1] qv = qv_arr
    cdef floating[:, ::1] vals = val_arr
    cdef int64_t[::1] prow = rows_arr
    cdef int32_t[::1] comp = comp_arr
    cdef int64_t[::1] pos = pos_arr
    cdef int64_t[::1] start = start_arr
    cdef int64_t[::1] act = act_arr
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
            with parallel(num_threads=n_threads):
                tid = threadid()
                for a in prange(n_act, schedule="dynamic"):
                    k = act[a]
                    _shared_component(&xx[0, 0], 2 * D, D, S, R, &prow[start[k]], start[k + 1] - start[k],
                                      &Q[k, 0], &A[k, 0, 0], &Y[tid, 0, 0], &qv[start[k]],
                                      &L[0, start[k]])
            nb = (S + _SHARED_BLOCK - 1) // _SHARED_BLOCK
            with parallel(num_threads=n_threads):
                tid = threadid()
                for b in prange(nb, schedule="static"):
                    _shared_lse(&L[0, 0], R, &qv[0], &comp[0], &G[0, 0], K, b * _SHARED_BLOCK,
                                (b + 1) * _SHARED_BLOCK if (b + 1) * _SHARED_BLOCK < S else S,
                                &pos[0], rows, C, &vals[tid, 0], &out[0])
            c0 = c0 + rows
