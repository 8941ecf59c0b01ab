"""gmmext.GaussianMixture against scikit-learn's diagonal GaussianMixture."""
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGMM
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from gmmext import GaussianMixture
from conftest import make_blobs, random_params


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-8), (np.float32, 2e-3)])
def test_twenty_em_iterations_match_sklearn(dtype, rtol):
    X = make_blobs(n=2000, d=5, k=4, seed=1).astype(dtype)
    w, mu, var = random_params(4, 5, seed=2)
    kw = dict(weights_init=w, means_init=mu, precisions_init=1 / var, tol=0, max_iter=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = SkGMM(4, covariance_type="diag", **kw).fit(X)
        gm = GaussianMixture(4, **kw, covariance_type="diag").fit(X)
    assert gm.means_.dtype == dtype
    for attr in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(gm, attr), getattr(sk, attr), rtol=rtol, atol=rtol, err_msg=attr)
    assert gm.lower_bound_ == pytest.approx(sk.lower_bound_, rel=rtol)
    np.testing.assert_allclose(gm.lower_bounds_, sk.lower_bounds_, rtol=rtol)
    assert gm.n_iter_ == sk.n_iter_ == 20


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_same_random_state_gives_sklearns_model(init_params):
    """Initialisation draws the same random numbers as scikit-learn, so whole fits agree."""
    X = make_blobs(n=1200, d=3, k=3, seed=4)
    kw = dict(init_params=init_params, random_state=3, reg_covar=1e-3, max_iter=200)
    sk = SkGMM(3, covariance_type="diag", **kw).fit(X)
    gm = GaussianMixture(3, **kw, covariance_type="diag").fit(X)
    np.testing.assert_allclose(gm.means_, sk.means_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gm.covariances_, sk.covariances_, rtol=1e-6, atol=1e-8)
    assert gm.n_iter_ == sk.n_iter_ and gm.converged_ == sk.converged_
    np.testing.assert_array_equal(gm.predict(X), sk.predict(X))
    np.testing.assert_array_equal(gm.fit_predict(X), sk.fit_predict(X))
    Xs, ys = gm.sample(50)
    Xr, yr = sk.sample(50)
    np.testing.assert_allclose(Xs, Xr, rtol=1e-6)
    np.testing.assert_array_equal(ys, yr)
    assert gm.bic(X) == pytest.approx(sk.bic(X), rel=1e-9)
    assert gm.aic(X) == pytest.approx(sk.aic(X), rel=1e-9)


def test_warm_start_continues_like_sklearn():
    X = make_blobs(n=800, d=2, k=2, seed=5)
    kw = dict(warm_start=True, max_iter=2, random_state=0, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk, gm = SkGMM(2, covariance_type="diag", **kw), GaussianMixture(2, **kw, covariance_type="diag")
        for _ in range(3):
            sk.fit(X)
            gm.fit(X)
    np.testing.assert_allclose(gm.means_, sk.means_, rtol=1e-10)
    assert gm.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-10)


def test_works_in_pipeline_clone_and_grid_search():
    X = make_blobs(n=600, d=3, k=3, seed=6)
    pipe = make_pipeline(StandardScaler(), GaussianMixture(random_state=0, covariance_type="diag"))
    search = GridSearchCV(pipe, {"gaussianmixture__n_components": [1, 3]}, cv=3).fit(X)
    assert search.best_params_["gaussianmixture__n_components"] == 3
    c = clone(GaussianMixture(5, var_floor=0.1, n_threads=1, covariance_type="diag"))
    assert c.get_params()["var_floor"] == 0.1 and c.n_components == 5


def _expected_failures(estimator):
    # The random initialisation draws rows, so an integer weight is not the same as a repeated
    # row there (component order can differ); the EM statistics themselves are equivalent,
    # which test_integer_weights_equal_repeated_rows checks from a fixed initialisation.
    if estimator.n_components == 1:   # one component: no initialisation choice, exact equivalence
        return {}
    return {"check_sample_weight_equivalence_on_dense_data":
            "initialisation draws rows; EM equivalence is tested separately"}


@parametrize_with_checks([GaussianMixture(covariance_type="diag"), GaussianMixture()]
                         + [GaussianMixture(n_components=2, random_state=0, covariance_type=t)
                            for t in ("full", "tied", "diag", "spherical")]
                         + [GaussianMixture(n_components=2, random_state=0, covariance_type="diag",
                                            missing="marginalize", on_degenerate="floor", update_params="mc")],
                         expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_integer_weights_equal_repeated_rows():
    X = make_blobs(n=300, d=3, k=2, seed=8)
    reps = np.random.default_rng(0).integers(0, 4, size=300)
    w, mu, var = random_params(2, 3, seed=9)
    kw = dict(weights_init=w, means_init=mu, precisions_init=1 / var, tol=0, max_iter=10)
    a = GaussianMixture(2, **kw, covariance_type="diag").fit(X, sample_weight=reps)
    b = GaussianMixture(2, **kw, covariance_type="diag").fit(np.repeat(X, reps, axis=0))
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-10)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=1e-10)
    assert a.lower_bound_ == pytest.approx(b.lower_bound_, rel=1e-10)
