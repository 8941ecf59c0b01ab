# Included by _core.pyx.  Batches of small symmetric positive definite (R, R) matrices held as
# packed upper triangles (row-major: (0,0), (0,1), ..., (0,R-1), (1,1), ..., P = R(R+1)/2 values),
# one factorisation (and inversion) per matrix, the matrices shared among OpenMP threads (dynamic schedule:
# every matrix is computed by one thread alone, so results do not depend on the thread count).
# BLAS must be single-threaded while these run (the Python layer holds ``single_thread_blas``).
#
# A packed row-major upper triangle is, read in order, the column-major LOWER triangle of the
# same symmetric matrix: row i of the packed array is column i of the lower triangle.  So each
# matrix is unpacked into a column-major (R, R) work buffer, lower triangle, with contiguous
# copies, and LAPACK is called with uplo = 'L'.
#
# The Cholesky factor and the inverse from it are computed by recursive halving (Gustavson's
# recursive Cholesky; the inverse as LAPACK's dpotri = dtrtri then dlauum, in recursive form):
# for R = 200 nearly all the flops land in dtrsm / dsyrk / dtrmm on blocks of up to 104 columns, the
# unblocked LAPACK routines run on 32-wide ones only.  OpenBLAS's own dpotrf / dpotri on one
# thread spend much longer in their level-2 parts at this size: per 200 x 200 matrix, factor +
# inverse took 0.27 ms against 0.39 ms (best of 25 batches, one thread, loaded 2-core EPYC), same
# results to 1e-15 relative, the same flops.
from scipy.linalg.cython_lapack cimport dpotrs, dtrti2, dlauu2, dpotf2
from scipy.linalg.cython_blas cimport dsymv, dsyrk, dtrsm
from libc.math cimport log

#: Order of the diagonal blocks where the recursive factorisation and inversion below stop and
#: call LAPACK's unblocked routines (dpotf2 / dtrti2 / dlauu2).
cdef enum:
    SPD_NB = 32


cdef inline int _half(int n) noexcept nogil:
    """Where the recursion splits an order-n block: about half, a multiple of 8 (aligned
    columns for the BLAS kernels)."""
    cdef int n1 = ((n + 8) // 16) * 8
    if n1 <= 0 or n1 >= n:
        n1 = n // 2
    return n1


cdef void _potrf_rec(double *a, int n, int lda, int nb, int *info) noexcept nogil:
    """Lower Cholesky factor in place (column-major, leading dimension lda), recursive halves:
    level-3 BLAS down to blocks of ``nb`` (``dpotf2`` there)."""
    cdef int n1, n2, inf = 0
    cdef double one = 1.0, mone = -1.0
    if n <= nb:
        dpotf2("L", &n, a, &lda, info)
        return
    n1 = _half(n)
    n2 = n - n1
    _potrf_rec(a, n1, lda, nb, info)
    if info[0] != 0:
        return
    # A21 <- A21 G11^-T ; A22 <- A22 - A21 A21^T
    dtrsm("R", "L", "T", "N", &n2, &n1, &one, a, &lda, &a[n1], &lda)
    dsyrk("L", "N", &n2, &n1, &mone, &a[n1], &lda, &one, &a[n1 + n1 * lda], &lda)
    _potrf_rec(&a[n1 + n1 * lda], n2, lda, nb, &inf)
    if inf != 0:
        info[0] = inf + n1


cdef void _trtri_rec(double *a, int n, int lda, int nb) noexcept nogil:
    """Inverse of the lower triangular (non-unit) matrix in place, recursive halves."""
    cdef int n1, n2, inf = 0
    cdef double one = 1.0, mone = -1.0
    if n <= nb:
        dtrti2("L", "N", &n, a, &lda, &inf)
        return
    n1 = _half(n)
    n2 = n - n1
    # W21 = -G22^-1 G21 G11^-1 (G11 still in place when multiplied... so: first G21 <- G21 W11)
    _trtri_rec(a, n1, lda, nb)
    dtrmm("R", "L", "N", "N", &n2, &n1, &one, a, &lda, &a[n1], &lda)
    dtrsm("L", "L", "N", "N", &n2, &n1, &mone, &a[n1 + n1 * lda], &lda, &a[n1], &lda)
    _trtri_rec(&a[n1 + n1 * lda], n2, lda, nb)


cdef void _lauum_rec(double *a, int n, int lda, int nb) noexcept nogil:
    """``W^T W`` (lower triangle) in place of the lower triangular W, recursive halves."""
    cdef int n1, n2, inf = 0
    cdef double one = 1.0
    if n <= nb:
        dlauu2("L", &n, a, &lda, &inf)
        return
    n1 = _half(n)
    n2 = n - n1
    _lauum_rec(a, n1, lda, nb)
    dsyrk("L", "T", &n1, &n2, &one, &a[n1], &lda, &one, a, &lda)
    dtrmm("L", "L", "T", "N", &n2, &n1, &one, &a[n1 + n1 * lda], &lda, &a[n1], &lda)
    _lauum_rec(&a[n1 + n1 * lda], n2, lda, nb)


cdef inline void _unpack_lower(const double *src, double *a, Py_ssize_t R) noexcept nogil:
    """Packed row-major upper triangle -> column-major lower triangle of ``a`` (R, R)."""
    cdef Py_ssize_t i, n, p = 0
    for i in range(R):
        n = R - i
        memcpy(&a[i + i * R], &src[p], n * sizeof(double))
        p += n


cdef inline void dpotrs_l(double *a, double *x, Py_ssize_t R) noexcept nogil:
    """``x <- (G G^T)^-1 x`` with the lower Cholesky factor G in ``a`` (column-major, R x R)."""
    cdef int iR = <int>R, one_i = 1, inf = 0
    dpotrs("L", &iR, &one_i, a, &iR, x, &iR, &inf)


def packed_gram(const double[:, :, ::1] T, double[:, ::1] out, double[:, ::1] work, int n_threads):
    """``out[k]`` = the packed upper triangle of ``T[k]^T T[k]`` for every k: T (K, D, R),
    out (K, R(R+1)/2), work (n_threads, R*R).  One ``dsyrk`` per k."""
    cdef Py_ssize_t K = T.shape[0], D = T.shape[1], R = T.shape[2]
    cdef Py_ssize_t k, i, n, p, tid
    cdef int iR = <int>R, iD = <int>D
    cdef double one = 1.0, zero = 0.0
    cdef double *a
    if out.shape[0] != K or out.shape[1] != R * (R + 1) // 2 or work.shape[0] < n_threads \
            or work.shape[1] < R * R or n_threads < 1:
        raise ValueError("packed_gram: shapes do not match")
    if K == 0 or R == 0:
        return
    with nogil, parallel(num_threads=n_threads):
        tid = threadid()
        for k in prange(K, schedule="dynamic"):
            a = &work[tid, 0]
            if D == 0:
                for i in range(R * R):
                    a[i] = 0.0
            else:
                # T[k] (D, R) row-major is T[k]^T as a column-major (R, D) matrix X: a = X X^T
                dsyrk("L", "N", &iR, &iD, &one, <double *>&T[k, 0, 0], &iR, &zero, a, &iR)
            p = 0
            for i in range(R):
                n = R - i
                memcpy(&out[k, p], &a[i + i * R], n * sizeof(double))
                p = p + n


def packed_posteriors(const double[:, ::1] Lp, const double[:, ::1] b, double[:, ::1] mean,
                      double[::1] logdet, double[:, ::1] cov_packed, double[:, :, ::1] cov_full,
                      bint add_outer, int32_t[::1] info, double[:, ::1] work, int n_threads):
    """Gaussian posteriors from packed precisions, for B matrices ``L_u`` = Lp[u] (B, P):

    ``logdet[u] = log|L_u|`` (Cholesky, ``_potrf_rec``), ``mean[u] = L_u^-1 b[u]`` and, unless both
    ``cov_packed`` and ``cov_full`` are None, ``L_u^-1`` (``_trtri_rec`` + ``_lauum_rec``; the mean is then its
    product with b[u], ``dsymv``; without them the mean is solved with the factor, ``dpotrs``)
    written packed to ``cov_packed[u]`` (B, P) - plus
    ``mean mean^T`` with ``add_outer`` (the second moment) - and/or in full to ``cov_full[u]``
    (B, R, R; never with ``add_outer``).  ``info[u]`` is LAPACK's (0: fine; > 0: L_u not
    positive definite, its outputs undefined).  work (n_threads, R*R).
    """
    cdef Py_ssize_t B = Lp.shape[0], R = b.shape[1]
    cdef Py_ssize_t u, i, j, n, p, tid
    cdef int iR = <int>R, one_i = 1, inf = 0
    cdef double one = 1.0, zero = 0.0, s, mi
    cdef double *a
    cdef double *cp = NULL
    cdef double *cf = NULL
    cdef double *m
    cdef bint want_cov = cov_packed is not None or cov_full is not None
    if Lp.shape[1] != R * (R + 1) // 2 or b.shape[0] != B or mean.shape[0] != B or mean.shape[1] != R \
            or logdet.shape[0] != B or info.shape[0] != B or work.shape[0] < n_threads \
            or work.shape[1] < R * R or n_threads < 1:
        raise ValueError("packed_posteriors: shapes do not match")
    if cov_packed is not None:
        if cov_packed.shape[0] != B or cov_packed.shape[1] != Lp.shape[1]:
            raise ValueError("packed_posteriors: cov_packed has the wrong shape")
        if B > 0 and R > 0:
            cp = &cov_packed[0, 0]
    if cov_full is not None:
        if cov_full.shape[0] != B or cov_full.shape[1] != R or cov_full.shape[2] != R or add_outer:
            raise ValueError("packed_posteriors: cov_full has the wrong shape (or add_outer)")
        if B > 0 and R > 0:
            cf = &cov_full[0, 0, 0]
    if B == 0 or R == 0:
        for u in range(B):
            logdet[u] = 0.0
            info[u] = 0
        return
    with nogil, parallel(num_threads=n_threads):
        tid = threadid()
        for u in prange(B, schedule="dynamic"):
            a = &work[tid, 0]
            m = &mean[u, 0]
            _unpack_lower(&Lp[u, 0], a, R)
            inf = 0
            _potrf_rec(a, iR, iR, SPD_NB, &inf)
            info[u] = inf
            if inf != 0:
                continue
            s = 0.0
            for i in range(R):
                s = s + log(a[i + i * R])
            logdet[u] = 2.0 * s
            if not want_cov:
                memcpy(m, &b[u, 0], R * sizeof(double))
                dpotrs_l(a, m, R)
                continue
            _trtri_rec(a, iR, iR, SPD_NB)          # G^-1, then G^-T G^-1 = L_u^-1 (as dpotri)
            _lauum_rec(a, iR, iR, SPD_NB)
            dsymv("L", &iR, &one, a, &iR, <double *>&b[u, 0], &one_i, &zero, m, &one_i)
            if cp != NULL:
                p = u * (R * (R + 1) // 2)
                for i in range(R):
                    n = R - i
                    if add_outer:
                        mi = m[i]
                        for j in range(n):
                            cp[p + j] = a[i + i * R + j] + mi * m[i + j]
                    else:
                        memcpy(&cp[p], &a[i + i * R], n * sizeof(double))
                    p = p + n
            if cf != NULL:
                p = u * R * R
                for i in range(R):
                    for j in range(i, R):
                        cf[p + i * R + j] = a[j + i * R]
                        cf[p + j * R + i] = a[j + i * R]


def packed_solve(const double[:, ::1] Ap, double[:, :, ::1] C, int32_t[::1] info, double[:, ::1] work,
                 int n_threads):
    """``C[k] <- C[k] A_k^-1`` in place for every k (``dposv``): Ap (K, P) packed upper triangles
    of symmetric positive definite A_k, C (K, D, R); ``info[k]`` LAPACK's (> 0: A_k not
    positive definite, C[k] undefined).  work (n_threads, R*R)."""
    cdef Py_ssize_t K = C.shape[0], D = C.shape[1], R = C.shape[2]
    cdef Py_ssize_t k, tid
    cdef int iR = <int>R, iD = <int>D, inf = 0
    cdef double *a
    if Ap.shape[0] != K or Ap.shape[1] != R * (R + 1) // 2 or info.shape[0] != K \
            or work.shape[0] < n_threads or work.shape[1] < R * R or n_threads < 1:
        raise ValueError("packed_solve: shapes do not match")
    if K == 0 or R == 0 or D == 0:
        for k in range(K):
            info[k] = 0
        return
    with nogil, parallel(num_threads=n_threads):
        tid = threadid()
        for k in prange(K, schedule="dynamic"):
            a = &work[tid, 0]
            _unpack_lower(&Ap[k, 0], a, R)
            inf = 0
            # C[k] (D, R) row-major is C[k]^T as a column-major (R, D) matrix: A X = C[k]^T, and
            # X^T = C[k] A^-1 (A symmetric) is the same memory read row-major
            _potrf_rec(a, iR, iR, SPD_NB, &inf)
            if inf == 0:
                dpotrs("L", &iR, &iD, a, &iR, &C[k, 0, 0], &iR, &inf)
            info[k] = inf


def row_gemm(const double[:, ::1] a, bint a_t, const double[:, ::1] b, bint b_t,
             double[:, ::1] out, double beta, int n_threads):
    """out (M, N) <- A (M, K) @ B (K, N) + beta * out, the M rows cut into ``n_threads`` equal
    blocks, one ``dgemm`` per block on its own OpenMP thread (call it with BLAS single-threaded).

    ``a`` is A, C-contiguous (M, K), or with ``a_t`` its transpose A^T, C-contiguous (K, M);
    likewise ``b`` (``b_t``).  In column-major terms a block of rows of out is a block of
    columns of out^T = B^T A^T.  Each row of out is computed by one gemm call whose shape
    depends on the thread count only.
    """
    cdef Py_ssize_t M = out.shape[0], N = out.shape[1]
    cdef Py_ssize_t Kd = a.shape[0] if a_t else a.shape[1]
    cdef Py_ssize_t t, s, e, T
    cdef int iN = <int>N, iK = <int>Kd, im, lda, ldb, ldc = <int>max(N, 1)
    cdef char *ta = "T" if b_t else "N"
    cdef char *tb = "T" if a_t else "N"
    cdef double one = 1.0
    if (a.shape[1] if a_t else a.shape[0]) != M or (b.shape[1] if b_t else b.shape[0]) != Kd \
            or (b.shape[0] if b_t else b.shape[1]) != N or n_threads < 1:
        raise ValueError("row_gemm: shapes do not match")
    if max(M, N, Kd) > 2147483647:
        raise ValueError("row_gemm: a dimension exceeds BLAS's 32-bit integers")
    if M == 0 or N == 0:
        return
    if Kd == 0:
        for s in range(M):
            for t in range(N):
                out[s, t] = beta * out[s, t] if beta != 0.0 else 0.0
        return
    lda = <int>(Kd if b_t else N)          # b's storage, column-major: (K x N) or (N x K)
    ldb = <int>(M if a_t else Kd)          # a's storage, column-major: (M x K) or (K x M)
    T = min(<Py_ssize_t>n_threads, M)
    with nogil:
        for t in prange(T, num_threads=<int>T, schedule="static", chunksize=1):
            s = t * M // T
            e = (t + 1) * M // T
            if e > s:
                im = <int>(e - s)
                dgemm(ta, tb, &iN, &im, &iK, &one, <double *>&b[0, 0], &lda,
                      <double *>(&a[0, 0] + (s if a_t else s * Kd)), &ldb, &beta, &out[s, 0], &ldc)
