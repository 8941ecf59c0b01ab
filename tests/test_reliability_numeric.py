"""Numeric torture: extreme magnitudes, degenerate data, odd memory layouts."""
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from gmmext import GaussianMixture


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _finite(gm, X):
    for attr in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        a = getattr(gm, attr)
        assert np.all(np.isfinite(a)), attr
    assert np.all(gm.covariances_ > 0)
    assert np.all(np.isfinite(gm.score_samples(X)))
    assert gm.weights_.sum() == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("scale", [1e150, 1e-150, 1e100, 1e-100])
@pytest.mark.parametrize("init", ["kmeans", "random"])
def test_extreme_magnitudes_float64(scale, init):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 3)) * scale
    gm = GaussianMixture(3, init_params=init, random_state=0, covariance_type="diag").fit(X)
    _finite(gm, X)
    if scale > 1:   # the fitted spread is on the data's scale
        assert 0.1 < np.median(gm.covariances_) / scale ** 2 < 10


def test_large_offset_small_spread_float64():
    X = np.random.default_rng(1).normal(size=(500, 2)) + 1e150
    gm = GaussianMixture(2, random_state=0, covariance_type="diag").fit(X)
    _finite(gm, X)           # the spread is below float64 resolution at 1e150: variances = reg_covar


@pytest.mark.parametrize("scale", [1e15, 1e-30])
def test_float32_large_and_tiny_values(scale):
    X = (np.random.default_rng(2).normal(size=(500, 3)) * scale).astype(np.float32)
    gm = GaussianMixture(3, random_state=0, covariance_type="diag").fit(X)
    assert gm.means_.dtype == np.float32
    _finite(gm, X)


@pytest.mark.parametrize("scale", [1e25, 1e30])
def test_float32_overflow_is_a_clear_error(scale):
    X = (np.random.default_rng(3).normal(size=(500, 3)) * scale).astype(np.float32)
    with pytest.raises(ValueError, match="overflows float32.*float64"):
        GaussianMixture(3, random_state=0, covariance_type="diag").fit(X)
    gm = GaussianMixture(3, random_state=0, covariance_type="diag").fit(X.astype(np.float64))   # what the message says works
    _finite(gm, X.astype(np.float64))


def test_k_equal_to_number_of_distinct_points():
    pts = np.array([[0.0, 0.0], [1.0, 5.0], [-3.0, 2.0], [4.0, -1.0]])
    X = np.repeat(pts, 25, axis=0)
    for init in ("kmeans", "k-means++", "random_from_data", "random"):
        gm = GaussianMixture(4, init_params=init, random_state=0, covariance_type="diag").fit(X)
        _finite(gm, X)
    gm = GaussianMixture(4, random_state=0, covariance_type="diag").fit(X)
    np.testing.assert_allclose(np.sort(gm.means_[:, 0]), np.sort(pts[:, 0]), atol=1e-6)


def test_all_rows_identical():
    X = np.ones((50, 3))
    gm = GaussianMixture(3, random_state=0, covariance_type="diag").fit(X)
    _finite(gm, X)
    np.testing.assert_allclose(gm.covariances_, 1e-6, rtol=1e-6)


def test_component_losing_all_points_keeps_parameters():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(400, 2))
    far = np.array([[1e6, 1e6]])
    gm = GaussianMixture(2, weights_init=[0.5, 0.5], means_init=np.vstack([[0, 0], far]),
                         precisions_init=np.ones((2, 2)), max_iter=5, tol=0, covariance_type="diag").fit(X)
    _finite(gm, X)
    np.testing.assert_array_equal(gm.means_[1], far[0])    # documented policy: keep the old parameters
    assert gm.weights_[1] < 1e-12


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layouts_and_zero_size(dtype):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 4)).astype(dtype)
    gm = GaussianMixture(2, random_state=0, covariance_type="diag").fit(X)
    ref = gm.score_samples(X)
    ro = np.asfortranarray(X)
    ro.setflags(write=False)
    wide = np.zeros((300, 8), dtype=dtype)
    wide[:, ::2] = X
    for variant in (np.asfortranarray(X), ro, wide[:, ::2], X[::-1][::-1]):
        np.testing.assert_allclose(gm.score_samples(variant), ref, rtol=1e-6 if dtype == np.float32 else 1e-12)
    a = GaussianMixture(2, random_state=0, covariance_type="diag").fit(ro)
    np.testing.assert_allclose(a.means_, gm.means_, rtol=1e-5)
    for method in ("score_samples", "predict", "predict_proba", "accumulate"):
        with pytest.raises(ValueError, match="0 sample"):
            getattr(gm, method)(np.zeros((0, 4), dtype=dtype))
    with pytest.raises(ValueError, match="0 sample"):
        GaussianMixture(2, covariance_type="diag").fit(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="0 feature"):
        GaussianMixture(2, covariance_type="diag").fit(np.zeros((10, 0)))
