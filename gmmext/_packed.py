"""Batches of small symmetric positive definite matrices held as packed upper triangles.

A symmetric (R, R) matrix is packed as its upper triangle in row-major order,
``M[np.triu_indices(R)]`` (P = R(R+1)/2 values): a batch of them is a (B, P) array, so that a
weighted sum of many such matrices is one gemm (``weights @ packed``) at half the flops and
memory of the full matrices.  These functions do the per-matrix LAPACK work on such batches in
the compiled core: one ``dsyrk`` / ``dpotrf`` + ``dpotri`` / ``dposv`` per matrix, the matrices
shared among OpenMP threads with BLAS single-threaded (many 200 x 200 factorisations run fastest
one per core; OpenBLAS's own threads only spin on them), the GIL released.  Every matrix is
computed by one thread alone: results do not depend on the thread count.

They serve factor-analysis models built on a GMM (the i-vector extractor of ``speaker``): the
posterior of a latent vector with precision ``L = I + sum_k n_k T_k^T T_k`` is
:func:`packed_posteriors` of ``n @ packed_gram(T)`` (plus the identity), that product and the
others of such a model's batches made by :func:`row_gemm` (its rows shared among the same
OpenMP threads, so that no BLAS worker thread is left spinning on their cores).
"""
from __future__ import annotations

import numpy as np

from . import _core
from ._blas import available_threads, single_thread_blas

__all__ = ["packed_gram", "packed_posteriors", "packed_solve", "packed_size", "row_gemm"]


def packed_size(R: int) -> int:
    """P = R(R+1)/2, the length of a packed (R, R) symmetric matrix."""
    return R * (R + 1) // 2


#: Fewest rows of the result per thread of :func:`row_gemm` (fewer: fewer threads).
ROW_GEMM_MIN_ROWS = 32


def row_gemm(a: np.ndarray, b: np.ndarray, *, out: np.ndarray | None = None, beta: float = 0.0,
             n_threads: int | None = None) -> np.ndarray:
    """``a @ b`` (plus ``beta * out``) in float64, the rows of the result shared among the core's
    threads: one single-threaded BLAS gemm per block of rows, the GIL released.

    For products made between calls into the core (the batches of an i-vector extractor): a
    multi-threaded BLAS keeps its worker threads spinning for a while after each product, on the
    cores the core's next parallel loop needs; here BLAS's own threads are never woken.

    Parameters
    ----------
    a : array of shape (M, K); b : array of shape (K, N)
        Converted to float64; C- or F-contiguous arrays (e.g. transposed views) are used as they
        are, others copied.
    out : C-contiguous float64 array of shape (M, N), optional
        Written in place (with ``beta``: ``out = a @ b + beta * out``); a new array if None.
    beta : float, default 0.0
        Must be 0 when ``out`` is None.
    n_threads : int, optional
        Threads (default: the cores this process may run on), at most one per
        ``ROW_GEMM_MIN_ROWS`` rows of the result.  Each row is computed by one gemm whose shape
        depends on the thread count only: results are deterministic for a given count.

    Returns
    -------
    out : ndarray of shape (M, N), float64
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"row_gemm: a (M, K) and b (K, N) expected, got shapes {a.shape} and {b.shape}")
    M, N = a.shape[0], b.shape[1]
    if out is None:
        if beta != 0.0:
            raise ValueError("row_gemm: beta needs out")
        out = np.empty((M, N))
    elif out.shape != (M, N) or out.dtype != np.float64 or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"row_gemm: out must be a writeable C-contiguous float64 array of shape {(M, N)}")
    elif np.may_share_memory(out, a) or np.may_share_memory(out, b):
        raise ValueError("row_gemm: out must not overlap a or b")

    def stored(x: np.ndarray) -> tuple[np.ndarray, bool]:
        if x.flags.c_contiguous:
            return x, False
        if x.flags.f_contiguous:
            return x.T, True
        return np.ascontiguousarray(x), False
    (a_s, a_t), (b_s, b_t) = stored(a), stored(b)
    n = int(n_threads) if n_threads else available_threads()
    n = max(1, min(n, M // ROW_GEMM_MIN_ROWS))
    with single_thread_blas:
        _core.row_gemm(a_s, a_t, b_s, b_t, out, float(beta), n)
    return out


def _work(R: int, n_threads: int | None) -> tuple[np.ndarray, int]:
    n = int(n_threads) if n_threads else available_threads()
    return np.empty((n, max(R * R, 1))), n


def packed_gram(T: np.ndarray, *, n_threads: int | None = None) -> np.ndarray:
    """``T[k]^T T[k]`` for every k, packed: T (K, D, R) float64 -> (K, R(R+1)/2)."""
    T = np.ascontiguousarray(T, dtype=np.float64)
    if T.ndim != 3:
        raise ValueError(f"T must be (K, D, R), got shape {T.shape}")
    K, _, R = T.shape
    out = np.empty((K, packed_size(R)))
    work, n = _work(R, n_threads)
    with single_thread_blas:
        _core.packed_gram(T, out, work, n)
    return out


def packed_posteriors(L: np.ndarray, b: np.ndarray, *, cov: str | None = "packed", second_moment: bool = False,
                      overwrite_L: bool = False, n_threads: int | None = None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Gaussian posteriors from packed precisions: ``L`` (B, P) symmetric positive definite
    ``L_u``, ``b`` (B, R) -> mean ``L_u^-1 b_u`` (B, R), covariance, ``log|L_u|`` (B,).

    ``cov``: ``"packed"`` (B, P) ``L_u^-1`` packed (or, with ``second_moment``, the second
    moment ``L_u^-1 + mean mean^T``), ``"full"`` (B, R, R), or None (the means alone, solved with
    the Cholesky factor: a third of the flops).  Raises ``numpy.linalg.LinAlgError`` naming the
    first row whose ``L_u`` is not positive definite.  ``overwrite_L`` (with ``cov="packed"``
    and ``L`` a C-contiguous float64 array): the packed covariances are written over ``L`` (row u
    is read before it is written), saving a (B, P) array.
    """
    L_in, L = L, np.ascontiguousarray(L, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    if L.ndim != 2 or b.ndim != 2 or len(L) != len(b):
        raise ValueError(f"L (B, P) and b (B, R) expected, got shapes {L.shape} and {b.shape}")
    B, R = b.shape
    if L.shape[1] != packed_size(R):
        raise ValueError(f"L has {L.shape[1]} columns, R(R+1)/2 = {packed_size(R)} expected for R = {R}")
    if cov not in ("packed", "full", None) or (second_moment and cov != "packed"):
        raise ValueError(f"cov must be 'packed', 'full' or None (second_moment needs 'packed'), got {cov!r}")
    mean, logdet, info = np.empty((B, R)), np.empty(B), np.zeros(B, dtype=np.int32)
    if cov == "packed":
        cp = L if overwrite_L or L is not L_in else np.empty((B, packed_size(R)))      # a copy made here is ours
    else:
        cp = None
    cf = np.empty((B, R, R)) if cov == "full" else None
    work, n = _work(R, n_threads)
    with single_thread_blas:
        _core.packed_posteriors(L, b, mean, logdet, cp, cf, bool(second_moment), info, work, n)
    bad = np.flatnonzero(info)
    if len(bad):
        raise np.linalg.LinAlgError(f"precision matrix {bad[0]} of the batch is not positive definite")
    return mean, (cp if cov == "packed" else cf), logdet


def packed_solve(A: np.ndarray, C: np.ndarray, *, n_threads: int | None = None) -> np.ndarray:
    """``C[k] A_k^-1`` for every k (Cholesky solves): A (K, P) packed symmetric positive
    definite, C (K, D, R) -> (K, D, R).  Raises ``numpy.linalg.LinAlgError`` naming the first
    k whose ``A_k`` is not positive definite."""
    A = np.ascontiguousarray(A, dtype=np.float64)
    X = np.array(C, dtype=np.float64, order="C", copy=True)
    if A.ndim != 2 or X.ndim != 3 or len(A) != len(X) or A.shape[1] != packed_size(X.shape[2]):
        raise ValueError(f"A (K, R(R+1)/2) and C (K, D, R) expected, got shapes {A.shape} and {X.shape}")
    info = np.zeros(len(X), dtype=np.int32)
    work, n = _work(X.shape[2], n_threads)
    with single_thread_blas:
        _core.packed_solve(A, X, info, work, n)
    bad = np.flatnonzero(info)
    if len(bad):
        raise np.linalg.LinAlgError(f"matrix {bad[0]} is not positive definite")
    return X
