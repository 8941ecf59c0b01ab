"""gmmext's batched packed-triangle linear algebra against NumPy's dense routines."""
from __future__ import annotations

import numpy as np
import pytest

import gmmext


def _spd(rng, B, R):
    X = rng.normal(size=(B, R, R + 3))
    return X @ X.transpose(0, 2, 1) + np.eye(R)


@pytest.mark.parametrize("R", [1, 2, 7, 40, 77, 200])   # 77, 200: several levels of the recursive factorisation
def test_gram_posteriors_and_solve_match_numpy(R):
    rng = np.random.default_rng(R)
    i, j = np.triu_indices(R)
    T = rng.normal(size=(6, 3, R))
    np.testing.assert_allclose(gmmext.packed_gram(T), [(t.T @ t)[i, j] for t in T], rtol=1e-12, atol=1e-12)
    L, b = _spd(rng, 9, R), rng.normal(size=(9, R))
    inv, w = np.linalg.inv(L), np.linalg.solve(L, b[:, :, None])[:, :, 0]
    logdet = np.linalg.slogdet(L)[1]
    for cov, second in (("packed", False), ("packed", True), ("full", False), (None, False)):
        mean, c, ld = gmmext.packed_posteriors(L[:, i, j], b, cov=cov, second_moment=second)
        np.testing.assert_allclose(mean, w, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ld, logdet, rtol=1e-10)
        if cov == "full":
            np.testing.assert_allclose(c, inv, rtol=1e-9, atol=1e-13)
        elif cov == "packed":
            want = inv + (w[:, :, None] * w[:, None, :] if second else 0)
            np.testing.assert_allclose(c, want[:, i, j], rtol=1e-9, atol=1e-13)
        else:
            assert c is None
    A, C = _spd(rng, 5, R), rng.normal(size=(5, 4, R))
    np.testing.assert_allclose(gmmext.packed_solve(A[:, i, j], C), C @ np.linalg.inv(A), rtol=1e-8, atol=1e-12)


def test_results_do_not_depend_on_the_thread_count():
    rng = np.random.default_rng(0)
    R = 30
    i, j = np.triu_indices(R)
    L, b = _spd(rng, 25, R)[:, i, j], rng.normal(size=(25, R))
    one = gmmext.packed_posteriors(L, b, second_moment=True, n_threads=1)
    two = gmmext.packed_posteriors(L, b, second_moment=True, n_threads=2)
    for x, y in zip(one, two):
        np.testing.assert_array_equal(x, y)


def test_not_positive_definite_is_named_and_shapes_are_checked():
    rng = np.random.default_rng(1)
    R = 4
    i, j = np.triu_indices(R)
    L = _spd(rng, 3, R)[:, i, j]
    L[2, 0] = -1.0                                  # L_2[0, 0] < 0
    with pytest.raises(np.linalg.LinAlgError, match="matrix 2 "):
        gmmext.packed_posteriors(L, np.zeros((3, R)))
    R2 = 77                                         # fails in the second half of the recursive Cholesky
    i2, j2 = np.triu_indices(R2)
    L2 = _spd(rng, 3, R2)
    L2[1, 70, 70] = -1.0
    with pytest.raises(np.linalg.LinAlgError, match="matrix 1 "):
        gmmext.packed_posteriors(L2[:, i2, j2], np.zeros((3, R2)))
    with pytest.raises(np.linalg.LinAlgError, match="matrix 1 "):
        gmmext.packed_solve(L2[:, i2, j2], np.ones((3, 2, R2)))
    A = np.zeros((2, len(i)))                       # singular
    with pytest.raises(np.linalg.LinAlgError, match="matrix 0 "):
        gmmext.packed_solve(A, np.ones((2, 3, R)))
    with pytest.raises(ValueError, match="columns"):
        gmmext.packed_posteriors(L[:, :-1], np.zeros((3, R)))
    with pytest.raises(ValueError, match="second_moment"):
        gmmext.packed_posteriors(L, np.zeros((3, R)), cov="full", second_moment=True)


def test_covariances_written_over_the_precisions():
    rng = np.random.default_rng(2)
    R = 12
    i, j = np.triu_indices(R)
    L, b = _spd(rng, 6, R), rng.normal(size=(6, R))
    Lp = L[:, i, j].copy()
    mean, c, _ = gmmext.packed_posteriors(Lp, b, second_moment=True, overwrite_L=True)
    assert c is Lp
    w = np.linalg.solve(L, b[:, :, None])[:, :, 0]
    np.testing.assert_allclose(c, (np.linalg.inv(L) + w[:, :, None] * w[:, None, :])[:, i, j], rtol=1e-9)
    Lp = L[:, i, j].copy()
    _, c, _ = gmmext.packed_posteriors(Lp, b)                  # not asked: the input is kept
    np.testing.assert_array_equal(Lp, L[:, i, j])


@pytest.mark.parametrize("M,K,N", [(0, 4, 3), (1, 7, 5), (63, 0, 4), (64, 33, 1), (65, 17, 9), (300, 129, 40)])
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_row_gemm_matches_numpy(M, K, N, n_threads):
    """Every operand layout the callers pass (C-contiguous, transposed views, a strided copy),
    with and without accumulation into ``out``, against NumPy's product."""
    rng = np.random.default_rng(M * 1000 + K * 10 + N)
    A, B = rng.normal(size=(M, K)), rng.normal(size=(K, N))
    layouts_a = (A, np.asfortranarray(A), A[:, ::-1][:, ::-1], A.astype(np.float32))
    for a in layouts_a:
        for b in (B, np.asfortranarray(B)):
            np.testing.assert_allclose(gmmext.row_gemm(a, b, n_threads=n_threads), A @ B,
                                       rtol=1e-6 if a.dtype == np.float32 else 1e-12, atol=1e-5)
            out = rng.normal(size=(M, N))
            ref = A @ B + 0.5 * out
            assert gmmext.row_gemm(a, b, out=out, beta=0.5, n_threads=n_threads) is out
            np.testing.assert_allclose(out, ref, rtol=1e-6 if a.dtype == np.float32 else 1e-12, atol=1e-5)


def test_row_gemm_is_deterministic_and_checks_its_arguments():
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(257, 300)), rng.normal(size=(300, 50))
    first = gmmext.row_gemm(A, B, n_threads=2)
    assert all(np.array_equal(gmmext.row_gemm(A, B, n_threads=2), first) for _ in range(5))
    with pytest.raises(ValueError, match="shape"):
        gmmext.row_gemm(A, B.T)
    with pytest.raises(ValueError, match="beta needs out"):
        gmmext.row_gemm(A, B, beta=1.0)
    for bad in (np.zeros((257, 50), order="F"), np.zeros((257, 50), dtype=np.float32), np.zeros((256, 50))):
        with pytest.raises(ValueError, match="out must be"):
            gmmext.row_gemm(A, B, out=bad)
    S = rng.normal(size=(300, 300))
    with pytest.raises(ValueError, match="overlap"):
        gmmext.row_gemm(S, S, out=S)
