"""Properties of EM and the statistics API (hypothesis where it helps)."""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from sklearn.exceptions import ConvergenceWarning

from gmmext import GaussianMixture, GMMStats
from conftest import make_blobs


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 6), d=st.integers(1, 5),
       init=st.sampled_from(["kmeans", "k-means++", "random", "random_from_data"]),
       dtype=st.sampled_from([np.float64, np.float32]))
def test_em_never_lowers_the_likelihood(seed, k, d, init, dtype):
    X = make_blobs(n=300, d=d, k=3, seed=seed).astype(dtype)
    # float32 log-densities lose ~eps32 * sum_d (x_d - c_d)^2 / var_kd nats to rounding: with a
    # component collapsed to reg_covar=1e-6 on data of scale ~5 that is ~1e-3 nats, enough to
    # break monotonicity (documented in GaussianMixture's Notes); a variance floor bounds it.
    floor = 0.0 if dtype == np.float64 else 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(k, init_params=init, random_state=seed, tol=0, max_iter=25,
                             reg_covar=1e-6, var_floor=floor, covariance_type="diag").fit(X)
    lb = np.asarray(gm.lower_bounds_)
    slack = 1e-9 if dtype == np.float64 else 1e-5
    assert np.all(np.diff(lb) >= -slack * np.maximum(1.0, np.abs(lb[1:])))
    assert gm.weights_.sum() == pytest.approx(1.0, abs=1e-6 if dtype == np.float32 else 1e-12)
    for attr in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert getattr(gm, attr).dtype == dtype
        assert np.all(np.isfinite(getattr(gm, attr)))
    assert np.all(gm.covariances_ > 0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), cuts=st.lists(st.integers(0, 400), max_size=5),
       weighted=st.booleans(), chunk=st.integers(1, 200))
def test_accumulate_over_any_split_equals_whole(seed, cuts, weighted, chunk):
    X = make_blobs(n=400, d=3, k=3, seed=seed)
    gm = GaussianMixture(3, random_state=0, max_iter=5, chunk_size=chunk, covariance_type="diag")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(X)
    sw = np.random.default_rng(seed).uniform(0, 3, size=400) if weighted else None
    bounds = [0] + sorted(cuts) + [400]
    parts = [gm.accumulate(X[a:b], None if sw is None else sw[a:b])
             for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    whole = gm.accumulate(X, sw)
    total = sum(parts)
    np.testing.assert_allclose(total.n, whole.n, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(total.sum_x, whole.sum_x, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(total.sum_xx, whole.sum_xx, rtol=1e-10, atol=1e-9)
    assert total.loglik == pytest.approx(whole.loglik, rel=1e-10)


def test_streaming_em_equals_fit():
    """EM driven by hand over blocks (as a data stream would) reaches fit's parameters."""
    X = make_blobs(n=2000, d=4, k=3, seed=11)
    init = GaussianMixture(3, random_state=1, max_iter=0, covariance_type="diag").fit(X)
    kw = dict(weights_init=init.weights_, means_init=init.means_, precisions_init=init.precisions_)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = GaussianMixture(3, tol=0, max_iter=10, **kw, covariance_type="diag").fit(X)
    gm = GaussianMixture(3, max_iter=0, **kw, covariance_type="diag").fit(X)
    for _ in range(10):
        gm.m_step(sum(gm.accumulate(X[s:s + 300]) for s in range(0, 2000, 300)))
    np.testing.assert_allclose(gm.means_, ref.means_, rtol=1e-9)
    np.testing.assert_allclose(gm.covariances_, ref.covariances_, rtol=1e-9)


def test_var_floor_and_global_variance():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=1000), rng.normal(scale=10, size=1000)])
    w = np.array([0.5, 0.5])
    gm = GaussianMixture(2, var_floor=0.5, reg_covar=0.0, weights_init=w,
                         means_init=X[:2], precisions_init=np.full((2, 2), 1e4), max_iter=0, covariance_type="diag").fit(X)
    # a statistics object where component 0 saw a single point (zero variance)
    st_ = GMMStats(np.array([1.0, 999.0]), np.vstack([X[0], X[1:].sum(0)]),
                   np.vstack([X[0] ** 2, (X[1:] ** 2).sum(0)]), 0.0, 1000.0)
    gm.m_step(st_)
    gvar = X.var(axis=0)
    np.testing.assert_allclose(gm.covariances_[0], 0.5 * gvar, rtol=1e-10)
    assert np.all(gm.covariances_[1] >= 0.5 * gvar - 1e-12)


def test_empty_component_keeps_its_parameters():
    X = make_blobs(n=500, d=2, k=2, seed=3)
    gm = GaussianMixture(3, random_state=0, max_iter=0, covariance_type="diag").fit(X)
    old_mu, old_var = gm.means_.copy(), gm.covariances_.copy()
    st_ = gm.accumulate(X)
    st_.sum_x[2] = 0.0
    st_.sum_xx[2] = 0.0
    st_.n[2] = 0.0
    gm.m_step(st_)
    np.testing.assert_array_equal(gm.means_[2], old_mu[2])
    np.testing.assert_allclose(gm.covariances_[2], old_var[2], rtol=1e-12)
    assert 0 < gm.weights_[2] < 1e-12
    assert np.all(np.isfinite(gm.score_samples(X)))
