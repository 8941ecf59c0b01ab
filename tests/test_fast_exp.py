"""The E-step's fast exp (src/gmm_kernels.h) against numpy.exp.

Documented accuracy: relative error <= 2 ulp (4.5e-16) in float64 on [-708, 0], <= 2 ulp
(2.4e-7) in float32 on [-87, 0]; arguments below -708.3 / -87.3 (and -inf) give exactly 0.
``_core.exp_kernel_test`` runs the same vectorised kernel (the CPU's best target clone).
"""
import numpy as np
import pytest

from gmmext import _core


def _ulp_rel(dtype):
    return float(np.finfo(dtype).eps)


@pytest.mark.parametrize("estep", [False, True])
@pytest.mark.parametrize("dtype,lo", [(np.float64, -708.0), (np.float32, -87.0)])
def test_fast_exp_matches_numpy_on_the_estep_range(dtype, lo, estep):
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(lo, 0.0, 200_001), rng.uniform(lo, 0.0, 100_000),
                        -rng.exponential(1.0, 100_000), [0.0, -0.0, -1e-300, -1e-30]]).astype(dtype)
    got = _core.exp_kernel_test(x, estep)
    assert got.dtype == dtype and got.shape == x.shape
    ref = np.exp(x.astype(np.float64))
    rel = np.abs(got.astype(np.float64) - ref) / ref
    assert rel.max() <= 2 * _ulp_rel(dtype), rel.max()
    assert got[-4] == 1.0 and got[-3] == 1.0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fast_exp_positive_arguments(dtype):
    hi = 709.0 if dtype == np.float64 else 88.0
    x = np.linspace(0.0, hi, 10_001).astype(dtype)
    got = _core.exp_kernel_test(x).astype(np.float64)
    ref = np.exp(x.astype(np.float64))
    assert np.max(np.abs(got - ref) / ref) <= 2 * _ulp_rel(dtype)


@pytest.mark.parametrize("estep", [False, True])
@pytest.mark.parametrize("dtype,cut", [(np.float64, -708.3), (np.float32, -87.3)])
def test_fast_exp_underflow_is_exact_zero_and_nan_propagates(dtype, cut, estep):
    x = np.array([cut - 0.01, -1000.0, -1e30, -np.inf, np.nan, cut + 0.01], dtype=dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        got = _core.exp_kernel_test(x, estep)
    assert np.all(got[:4] == 0.0)
    assert np.isnan(got[4])
    assert got[5] > 0 and np.isclose(got[5], np.exp(np.float64(x[5])), rtol=4 * _ulp_rel(dtype))


@pytest.mark.parametrize("n", [0, 1, 3, 17, 64, 1000])
def test_fast_exp_any_length(n):
    x = -np.arange(n, dtype=np.float64) / 3.0
    np.testing.assert_allclose(_core.exp_kernel_test(x), np.exp(x), rtol=4.5e-16)


def test_estep_with_extreme_log_densities_matches_logsumexp():
    """Rows spanning thousands of nats (most exps underflow) and -inf weights."""
    from scipy.special import logsumexp
    from gmmext import GaussianMixture
    rng = np.random.default_rng(1)
    K, D = 40, 5
    w = rng.dirichlet(np.ones(K))
    w[3] = 0.0
    w /= w.sum()
    mu = rng.normal(scale=30.0, size=(K, D))
    var = rng.uniform(0.01, 0.1, size=(K, D))
    gm = GaussianMixture.from_parameters(w, mu, var)
    X = rng.normal(scale=30.0, size=(3000, D))
    lp = gm.component_log_likelihood(X)
    ref_ll = logsumexp(lp, axis=1)
    np.testing.assert_allclose(gm.score_samples(X), ref_ll, rtol=1e-12)
    with np.errstate(under="ignore"):
        ref_r = np.exp(lp - ref_ll[:, None])
    np.testing.assert_allclose(gm.predict_proba(X), ref_r, rtol=1e-10, atol=1e-300)


# ----------------------------------------------------------------------------- sparse statistics
def _separated(n=6000, d=6, k=24, seed=3, dtype=np.float64):
    from conftest import make_blobs
    return make_blobs(n=n, d=d, k=k, seed=seed, dtype=dtype)


@pytest.mark.parametrize("k", [24, 64, 130])    # the kept entries are found in blocks of 64 components
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_sparse_statistics_equal_dense_ones(dtype, rtol, k):
    """Chunks whose responsibilities are mostly ~0 are summed sparsely: same statistics as the gemm."""
    from gmmext import GaussianMixture
    X = _separated(n=250 * k, k=k, dtype=dtype)
    rng = np.random.default_rng(0)
    sw = rng.uniform(0.0, 2.0, size=X.shape[0])
    sw[::5] = 0.0
    gm = GaussianMixture(k, random_state=0, max_iter=5, tol=0, chunk_size=256, covariance_type="diag").fit(X)
    R = gm.predict_proba(X).astype(np.float64)
    kept = (R > 1e-15 * R.max(axis=1, keepdims=True)).mean()
    assert kept < 0.25  # the sparse path is the one taken
    sparse = gm.accumulate(X, sample_weight=sw)
    gm._core_cache().sparse_limit = -1.0        # this estimator's engines: always the dense gemm
    dense = gm.accumulate(X, sample_weight=sw)
    np.testing.assert_allclose(sparse.n, dense.n, rtol=rtol, atol=1e-300)
    np.testing.assert_allclose(sparse.sum_x, dense.sum_x, rtol=rtol, atol=rtol * np.abs(dense.sum_x).max())
    np.testing.assert_allclose(sparse.sum_xx, dense.sum_xx, rtol=rtol)
    assert sparse.loglik == dense.loglik and sparse.n_samples == dense.n_samples


def test_twenty_em_iterations_with_sparse_statistics_match_sklearn():
    from sklearn.mixture import GaussianMixture as SK
    from gmmext import GaussianMixture
    X = _separated(n=3000, k=16, seed=5)
    kw = dict(n_components=16, covariance_type="diag", max_iter=20, tol=0.0, random_state=0)
    with pytest.warns(Warning):
        sk = SK(**kw).fit(X)
    with pytest.warns(Warning):
        gm = GaussianMixture(**kw, chunk_size=128).fit(X)
    R = gm.predict_proba(X)
    assert (R > 1e-15 * R.max(axis=1, keepdims=True)).mean() < 0.25
    np.testing.assert_allclose(gm.means_, sk.means_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(gm.covariances_, sk.covariances_, rtol=1e-8)
    np.testing.assert_allclose(gm.weights_, sk.weights_, rtol=1e-8)
    assert gm.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-10)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
@pytest.mark.parametrize("sparse_limit", [-1.0, None])
def test_dense_estep_statistics_match_scipy_formula(dtype, rtol, sparse_limit):
    """The fused row kernel (max; the E-step's exp; sum; scaling with the column sums or the
    kept count) against float64 SciPy: K = 40, components far apart (most float32 exps
    underflow to 0), weights with zeros."""
    from scipy.special import logsumexp
    from gmmext import GaussianMixture
    rng = np.random.default_rng(5)
    K, D, N = 40, 4, 5000
    w = rng.dirichlet(np.ones(K))
    mu = rng.normal(scale=20.0, size=(K, D))
    var = rng.uniform(0.5, 2.0, size=(K, D))
    gm = GaussianMixture.from_parameters(w, mu, var)
    lab = rng.integers(0, K, N)
    X = (mu[lab] + rng.normal(size=(N, D)) * np.sqrt(var[lab]) * 2.0).astype(dtype)
    sw = rng.uniform(0.0, 2.0, N)
    sw[::7] = 0.0
    if sparse_limit is not None:
        gm._core_cache().sparse_limit = sparse_limit
    st = gm.accumulate(X, sample_weight=sw)
    x = X.astype(np.float64)
    lp = (np.log(w) - 0.5 * D * np.log(2 * np.pi) - 0.5 * np.log(var).sum(1)
          - 0.5 * (((x[:, None, :] - mu) ** 2) / var).sum(2))
    ll = logsumexp(lp, axis=1)
    with np.errstate(under="ignore"):
        R = np.exp(lp - ll[:, None]) * sw[:, None]
    floor = 1e-12 if dtype == np.float64 else 1e-5  # float32: entries below e^-87 of a row's largest are 0
    np.testing.assert_allclose(st.loglik, (sw * ll).sum(), rtol=rtol)
    np.testing.assert_allclose(st.n, R.sum(0), rtol=rtol, atol=floor * N)
    np.testing.assert_allclose(st.sum_x, R.T @ x, rtol=rtol, atol=floor * N * np.abs(x).max())
    np.testing.assert_allclose(st.sum_xx, R.T @ x ** 2, rtol=rtol, atol=floor * N * (x ** 2).max())
