"""Bad input gets a clear ValueError; degenerate data still gives finite parameters."""
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

from gmmext import GaussianMixture, GMMStats
from conftest import make_blobs


@pytest.fixture
def fitted():
    return GaussianMixture(2, random_state=0, covariance_type="diag").fit(make_blobs(n=200, d=3, k=2))


@pytest.mark.parametrize("bad,match", [
    (np.nan, "NaN"), (np.inf, "infinity"), (-np.inf, "infinity")])
def test_non_finite_input(bad, match, fitted):
    X = make_blobs(n=50, d=3)
    X[7, 1] = bad
    with pytest.raises(ValueError, match=match):
        GaussianMixture(2, covariance_type="diag").fit(X)
    for method in ("score_samples", "predict", "predict_proba", "accumulate", "component_log_likelihood"):
        with pytest.raises(ValueError, match=match):
            getattr(fitted, method)(X)


def test_wrong_dimensions(fitted):
    with pytest.raises(ValueError, match="Expected 2D array"):
        GaussianMixture(2, covariance_type="diag").fit(np.arange(10.0))
    with pytest.raises(ValueError, match="dim 3"):
        fitted.score_samples(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="3 features"):
        fitted.predict(np.zeros((5, 4)))


def test_fewer_samples_than_components():
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        GaussianMixture(5, covariance_type="diag").fit(np.random.default_rng(0).normal(size=(4, 2)))


@pytest.mark.parametrize("init", ["kmeans", "k-means++"])
def test_fewer_sampled_rows_than_components_names_kmeans_max_samples(init, tmp_path):
    # KMeans on 2 sampled rows for 3 components: scikit-learn's KMeans said only "n_samples=2
    # should be >= n_clusters=3", naming neither the parameter nor the 600 rows given
    X = np.random.default_rng(0).normal(size=(600, 2))
    if init == "k-means++":                 # in memory it runs on every row; a memmap samples
        path = tmp_path / "x.npy"
        np.save(path, X)
        X = np.load(path, mmap_mode="r")
    with pytest.raises(ValueError, match="kmeans_max_samples=2 is below n_components=3"):
        GaussianMixture(3, init_params=init, kmeans_max_samples=2).fit(X)
    assert GaussianMixture(3, init_params=init, kmeans_max_samples=3, random_state=0).fit(X).n_iter_ >= 1


@pytest.mark.parametrize("sw,match", [
    (-np.ones(50), "[Nn]egative"), (np.full(50, np.nan), "NaN"), (np.full(50, np.inf), "infinity"),
    (np.zeros(50), "non-zero"), (np.ones(49), "shape|length|samples")])
def test_bad_sample_weight(sw, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(2, covariance_type="diag").fit(make_blobs(n=50, d=3), sample_weight=sw)


@pytest.mark.parametrize("kw,match", [
    (dict(n_components=0), "n_components"), (dict(n_components=-3), "n_components"),
    (dict(n_components=2.5), "n_components"), (dict(init_params="bogus"), "init_params"),
    (dict(reg_covar=-1.0), "reg_covar"), (dict(tol=np.nan), "tol"), (dict(var_floor=-0.1), "var_floor"),
    (dict(n_threads=0), "n_threads"), (dict(chunk_size=0), "chunk_size"), (dict(max_iter=-1), "max_iter")])
def test_bad_constructor_parameters(kw, match):
    """scikit-learn's InvalidParameterError and message (more cases in test_gmm_validation.py)."""
    with pytest.raises(InvalidParameterError, match=f"The '{match}' parameter of GaussianMixture must be"):
        GaussianMixture(**{"n_components": 2, **kw}, covariance_type="diag").fit(make_blobs(n=50, d=3))


@pytest.mark.parametrize("kw,match", [
    (dict(weights_init=[0.5, 0.6]), "normalized"), (dict(weights_init=[1.5, -0.5]), "range"),
    (dict(weights_init=[1.0]), "shape"), (dict(means_init=np.zeros((3, 3))), "shape"),
    (dict(precisions_init=-np.ones((2, 3))), "positive"), (dict(precisions_init=np.ones((2, 2))), "shape")])
def test_bad_initial_parameters(kw, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(2, **kw, covariance_type="diag").fit(make_blobs(n=50, d=3))


def test_unfitted_model():
    for method in ("score_samples", "predict", "accumulate"):
        with pytest.raises(NotFittedError):
            getattr(GaussianMixture(2, covariance_type="diag"), method)(np.zeros((3, 2)))
    with pytest.raises(NotFittedError):
        GaussianMixture(2, covariance_type="diag").sample(3)


def test_bad_statistics(fitted):
    with pytest.raises(ValueError, match="components"):
        fitted.m_step(GMMStats.zeros(3, 3))
    with pytest.raises(ValueError, match="zero total weight"):
        fitted.m_step(GMMStats.zeros(2, 3))
    with pytest.raises(ValueError, match="2 features, the model has 3"):
        fitted.m_step(GMMStats(np.ones(2), np.zeros((2, 2)), np.ones((2, 2)), 0.0, 2.0))
    with pytest.raises(ValueError, match="inconsistent"):
        GMMStats(np.zeros(2), np.zeros((2, 3)), np.zeros((3, 3)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_degenerate_data_stays_finite(dtype):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    X[:, 1] = 4.0                       # constant column
    X = np.vstack([X, np.repeat(X[:5], 20, axis=0)])   # heavily duplicated rows
    X = np.vstack([X, [[1e3, 4.0, -1e3]]])            # a far outlier: a component of one point
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for init in ("kmeans", "random_from_data", "random"):
            gm = GaussianMixture(6, init_params=init, random_state=0, covariance_type="diag").fit(X.astype(dtype))
            for attr in ("weights_", "means_", "covariances_", "precisions_"):
                assert np.all(np.isfinite(getattr(gm, attr))), (init, attr)
            assert np.all(np.isfinite(gm.score_samples(X.astype(dtype))))


def test_zero_reg_covar_on_collapsed_component_is_a_clear_error():
    X = np.repeat(np.array([[0.0, 1.0], [5.0, 5.0]]), 10, axis=0)
    with pytest.raises(ValueError, match="ill-defined empirical covariance"):
        GaussianMixture(2, reg_covar=0.0, random_state=0, covariance_type="diag").fit(X)
    gm = GaussianMixture(2, reg_covar=0.0, var_floor=0.01, random_state=0, covariance_type="diag").fit(X)
    assert np.all(gm.covariances_ > 0)


def test_dask_accumulate_without_dask_names_the_extra(monkeypatch):
    # without Dask, a list of parts failed with a bare "No module named 'dask'"
    import sys
    from gmmext import dask_accumulate
    gm = GaussianMixture(2, covariance_type="diag", random_state=0).fit(np.random.default_rng(0).normal(size=(40, 2)))
    monkeypatch.setitem(sys.modules, "dask", None)          # what an environment without Dask gives
    with pytest.raises(ImportError, match=r"pip install 'gmmext\[dask\]'"):
        dask_accumulate(gm, [np.zeros((3, 2))])
