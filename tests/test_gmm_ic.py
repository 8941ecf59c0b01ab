"""gmmext.GaussianMixtureIC: criterion values against scikit-learn's bic()/aic(), selections against mclust."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.mixture import GaussianMixture as SkGMM
from sklearn.utils.estimator_checks import parametrize_with_checks

from gmmext import GaussianMixtureIC

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("compare_mclust", ROOT / "tools" / "compare_mclust.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _as_sklearn(gm):
    """scikit-learn's GaussianMixture holding gmmext's fitted parameters (its bic/aic then judge them)."""
    sk = SkGMM(gm.n_components, covariance_type=gm.covariance_type)
    for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        setattr(sk, attr, getattr(gm, attr).astype(np.float64))
    sk.converged_, sk.n_iter_, sk.lower_bound_, sk.n_features_in_ = True, 1, 0.0, gm.n_features_in_
    return sk


@pytest.mark.parametrize("criterion", ["bic", "aic"])
def test_criterion_is_sklearns_and_the_minimum_is_selected(criterion):
    X = _tool().synthetic(False, seed=1, n=300)
    ic = GaussianMixtureIC(max_components=4, criterion=criterion, random_state=0).fit(X)
    r = ic.cv_results_
    assert len(r["bic"]) == 16 and set(r["param_covariance_type"]) == {"full", "tied", "diag", "spherical"}
    sk = _as_sklearn(ic.best_estimator_)
    assert ic.criterion_ == pytest.approx(getattr(sk, criterion)(X), rel=1e-9)
    assert ic.criterion_ == pytest.approx(r[criterion].min())
    assert r["rank"][np.argmin(r[criterion])] == 1
    for k, t, p in zip(r["param_n_components"], r["param_covariance_type"], r["n_parameters"]):
        ref = SkGMM(int(k), covariance_type=t)
        ref.means_ = np.zeros((int(k), X.shape[1]))
        assert p == ref._n_parameters()
    np.testing.assert_allclose(r["bic"], -2 * r["log_likelihood"] + r["n_parameters"] * np.log(300))
    # three well-separated full-covariance clusters
    assert (ic.n_components_, ic.covariance_type_) == (3, "full")
    np.testing.assert_array_equal(ic.predict(X), ic.best_estimator_.predict(X))


def test_parallel_candidates_select_the_same_model():
    X = load_iris().data
    kw = dict(max_components=3, covariance_type=["full", "diag"], random_state=0, n_threads=2)
    a = GaussianMixtureIC(n_jobs=1, **kw).fit(X)
    b = GaussianMixtureIC(n_jobs=2, **kw).fit(X)
    assert (a.n_components_, a.covariance_type_) == (b.n_components_, b.covariance_type_)
    np.testing.assert_allclose(a.cv_results_["bic"], b.cv_results_["bic"], rtol=1e-6)


@pytest.mark.long(14)
def test_selection_agrees_with_mclust():
    """Where mclust's choice is clear: full (iris, separated clusters), diag and spherical."""
    tool = _tool()
    if not tool.have_mclust():
        pytest.skip("R's mclust is not installed (Debian: apt-get install r-cran-mclust; too large to "
                    "install in CI: tools/compare_mclust.py runs the full comparison)")
    for X in (load_iris().data, tool.synthetic(False, seed=0), tool.axis_aligned(False), tool.axis_aligned(True)):
        c = tool.compare(X, G=4, n_init=2)
        assert c["gmmext_best"] == c["mclust_best"]
        best = c["mclust_best"]
        assert c["gmmext"][best] == pytest.approx(c["mclust"][best], rel=1e-3)


@parametrize_with_checks([GaussianMixtureIC(max_components=2, covariance_type=["diag", "full"], random_state=0)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("cov", ["full", "tied", "diag", "spherical"])
def test_candidate_start_is_gaussian_mixtures_on_large_data(cov):
    """Above 6 kmeans_max_samples rows GaussianMixture follows its sampled KMeans start with EM on
    other drawn rows; a GaussianMixtureIC candidate's start (max_iter=0) and whole fit are
    GaussianMixture's from the candidate's seed (the first seed IC draws from its random_state)."""
    from gmmext import GaussianMixture
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(m, 1.0, size=(2000, 3)) for m in (-4, 0, 4)])
    seed = np.random.RandomState(5).randint(np.iinfo(np.int32).max, size=(1, 1))[0, 0]
    for max_iter in (0, 100):
        kw = dict(kmeans_max_samples=1000, max_iter=max_iter)
        ic = GaussianMixtureIC(min_components=4, max_components=4, covariance_type=[cov], random_state=5,
                               **kw).fit(X).best_estimator_
        gm = GaussianMixture(4, covariance_type=cov, random_state=seed, **kw).fit(X)
        np.testing.assert_allclose(ic.means_, gm.means_, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ic.covariances_, gm.covariances_, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ic.weights_, gm.weights_, rtol=1e-9, atol=1e-12)


def _outcome(fn):
    """(warnings' messages, the exception's type and message or None) of one call."""
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fn()
            err = None
        except ValueError as e:
            err = str(e)
    return [str(w.message) for w in caught], err


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score_samples", "score"])
def test_selected_model_checks_feature_names_as_sklearn(method):
    # Independent reference: scikit-learn's own GaussianMixture fitted on the same DataFrame,
    # its messages naming the estimator that was called. Before, the selected model (fitted on
    # an ndarray) answered: no warning for an ndarray, a warning "X has feature names, but
    # GaussianMixture was fitted without feature names" for renamed columns (not the ValueError).
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(size=(60, 3)), rng.normal(size=(60, 3)) + 4]
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    ic = GaussianMixtureIC(max_components=2, covariance_type="diag", random_state=0).fit(df)
    sk = SkGMM(2, covariance_type="diag", random_state=0).fit(df)
    np.testing.assert_array_equal(ic.feature_names_in_, sk.feature_names_in_)
    for data in (X, df.rename(columns={"a": "z"}), X[:, :2], df):
        got = _outcome(lambda: getattr(ic, method)(data))
        want = _outcome(lambda: getattr(sk, method)(data))
        name = lambda o: ([m.replace("GaussianMixture", "GaussianMixtureIC") for m in o[0]],
                          o[1] and o[1].replace("GaussianMixture", "GaussianMixtureIC"))
        assert got == name(want)
