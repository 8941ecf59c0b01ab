"""gmmext.BayesianGaussianMixture against scikit-learn's, and its statistics, dtypes and weights."""
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture as SkBGM
from sklearn.utils.estimator_checks import parametrize_with_checks

from gmmext import BayesianGaussianMixture
from conftest import make_blobs

TYPES = ("full", "tied", "diag", "spherical")
PRIORS = ("dirichlet_process", "dirichlet_distribution")


@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("cov", TYPES)
def test_whole_fit_equals_sklearn(cov, prior):
    X = make_blobs(n=400, d=3, k=3, seed=1)
    kw = dict(n_components=5, covariance_type=cov, weight_concentration_prior_type=prior, random_state=0,
              max_iter=300)
    sk = SkBGM(**kw).fit(X)
    bg = BayesianGaussianMixture(**kw).fit(X)
    assert bg.n_iter_ == sk.n_iter_ and bg.converged_ == sk.converged_
    for attr in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_",
                 "mean_precision_", "degrees_of_freedom_"):
        np.testing.assert_allclose(getattr(bg, attr), getattr(sk, attr), rtol=1e-7, atol=1e-9, err_msg=attr)
    np.testing.assert_allclose(np.ravel(bg.weight_concentration_), np.ravel(sk.weight_concentration_), rtol=1e-7)
    np.testing.assert_allclose(bg.lower_bounds_, np.ravel(sk.lower_bounds_), rtol=1e-9)
    np.testing.assert_allclose(bg.score_samples(X), sk.score_samples(X), rtol=1e-9)
    np.testing.assert_allclose(bg.predict_proba(X), sk.predict_proba(X), atol=1e-9)
    np.testing.assert_array_equal(bg.predict(X), sk.predict(X))
    Xs, ys = bg.sample(20)
    Xr, yr = sk.sample(20)
    np.testing.assert_allclose(Xs, Xr, rtol=1e-7)
    np.testing.assert_array_equal(ys, yr)


def test_float32_fits_in_float32_close_to_float64():
    X = make_blobs(n=600, d=4, k=3, seed=2)
    kw = dict(n_components=4, covariance_type="diag", random_state=0, max_iter=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        b64 = BayesianGaussianMixture(**kw).fit(X)
        b32 = BayesianGaussianMixture(**kw).fit(X.astype(np.float32))
    assert b32.means_.dtype == np.float32 and b32.covariances_.dtype == np.float32
    assert b32.score_samples(X.astype(np.float32)).dtype == np.float32
    np.testing.assert_allclose(b32.means_, b64.means_, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(b32.weights_, b64.weights_, atol=1e-4)


@pytest.mark.parametrize("cov", TYPES)
def test_statistics_merge_and_integer_weights_repeat_rows(cov):
    """One iteration from halves' summed statistics, or from integer weights, equals the whole's."""
    X = make_blobs(n=300, d=3, k=2, seed=3)
    reps = np.random.default_rng(0).integers(0, 3, size=300)
    Xr = np.repeat(X, reps, axis=0)
    kw = dict(n_components=3, covariance_type=cov, random_state=0, max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = BayesianGaussianMixture(**kw).fit(Xr)
        b = BayesianGaussianMixture(**kw).fit(X, sample_weight=reps.astype(float))
    # the default priors are the weighted data's mean and (ddof=1) covariance: the repeated rows'
    np.testing.assert_allclose(b.mean_prior_, a.mean_prior_, rtol=1e-10)
    np.testing.assert_allclose(b.covariance_prior_, a.covariance_prior_, rtol=1e-10)
    whole = a.accumulate(Xr)
    halves = a.accumulate(Xr[:200]) + a.accumulate(Xr[200:])
    weighted = a.accumulate(X, sample_weight=reps.astype(float))
    for st in (halves, weighted):
        np.testing.assert_allclose(st.sum_x, whole.sum_x, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(st.sum_xx, whole.sum_xx, rtol=1e-10, atol=1e-10)
        assert st.loglik == pytest.approx(whole.loglik, rel=1e-10)
    m1 = BayesianGaussianMixture(**kw).fit(Xr)
    m1.m_step(whole)
    a.m_step(weighted)
    np.testing.assert_allclose(a.means_, m1.means_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.covariances_, m1.covariances_, rtol=1e-9, atol=1e-12)


def test_gaussian_mixture_methods_a_variational_model_lacks():
    bg = BayesianGaussianMixture()
    for name in ("bic", "aic", "map_step", "partial_fit", "from_parameters"):
        assert not hasattr(bg, name)


def test_n_iter_and_too_few_samples_as_sklearn_test_mixture():
    """scikit-learn's sklearn/mixture/tests/test_mixture.py, its BayesianGaussianMixture cases."""
    X = np.random.RandomState(0).rand(10, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert BayesianGaussianMixture(max_iter=1).fit(X).n_iter_ == 1
    with pytest.raises(ValueError, match="Expected n_samples >= n_components"):
        BayesianGaussianMixture(n_components=12).fit(X)


def _expected_failures(estimator):
    if estimator.n_components == 1:
        return {}
    return {"check_sample_weight_equivalence_on_dense_data":
            "initialisation draws rows; EM equivalence is tested separately"}


@parametrize_with_checks([BayesianGaussianMixture()]
                         + [BayesianGaussianMixture(n_components=2, random_state=0, covariance_type=t)
                            for t in ("tied", "diag")],
                         expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_memmap_input_fits_as_in_memory(tmp_path):
    """Out-of-core input: the default priors from one pass of the core, the same fit."""
    X = make_blobs(n=500, d=3, k=3, seed=4)
    np.save(tmp_path / "x.npy", X)
    Xm = np.load(tmp_path / "x.npy", mmap_mode="r")
    kw = dict(n_components=4, covariance_type="full", random_state=0, max_iter=100)
    a = BayesianGaussianMixture(**kw).fit(X)
    b = BayesianGaussianMixture(**kw).fit(Xm)
    np.testing.assert_allclose(b.mean_prior_, a.mean_prior_, rtol=1e-10)
    np.testing.assert_allclose(b.covariance_prior_, a.covariance_prior_, rtol=1e-9)
    np.testing.assert_allclose(b.means_, a.means_, rtol=1e-6, atol=1e-8)
    assert b.n_iter_ == a.n_iter_
