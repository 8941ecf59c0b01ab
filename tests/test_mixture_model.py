"""gmmext.MixtureModel: GaussianMixture's scoring, statistics and MAP without scikit-learn.

GaussianMixture is a MixtureModel (the same methods), so the two agree bit for bit by
construction; what is checked here is the light class on its own: its numbers against
scikit-learn's GaussianMixture and a direct NumPy formula, its settings against
GaussianMixture's constructor, its messages against scikit-learn's.
"""
import inspect

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from sklearn.utils._param_validation import InvalidParameterError

from gmmext import GaussianMixture, MixtureModel


def _params(rng, kind, K=4, D=3):
    w = rng.dirichlet(np.ones(K))
    mu = rng.normal(size=(K, D))
    if kind == "diag":
        return w, mu, rng.uniform(0.5, 2.0, size=(K, D))
    A = rng.normal(size=(K, D, D))
    return w, mu, A @ np.swapaxes(A, 1, 2) + D * np.eye(D)


@pytest.mark.parametrize("kind", ["diag", "full"])
def test_scores_are_scikit_learns(kind):
    rng = np.random.default_rng(0)
    w, mu, cov = _params(rng, kind)
    X = rng.normal(size=(50, 3))
    m = MixtureModel.from_parameters(w, mu, cov, covariance_type=kind)
    assert type(m) is MixtureModel and not hasattr(m, "fit")
    sk = SkGaussianMixture(4, covariance_type=kind)
    sk.weights_, sk.means_, sk.covariances_ = w, mu, cov
    sk.precisions_cholesky_ = GaussianMixture.from_parameters(w, mu, cov, covariance_type=kind).precisions_cholesky_
    np.testing.assert_allclose(m.score_samples(X), sk.score_samples(X), rtol=1e-12)
    np.testing.assert_allclose(m.predict_proba(X), sk.predict_proba(X), rtol=1e-10, atol=1e-14)
    assert m.score(X) == pytest.approx(sk.score(X), rel=1e-12)


def test_statistics_and_map_are_the_formulas():
    """accumulate: the responsibilities' sums (NumPy); map_step: Reynolds' mean update."""
    rng = np.random.default_rng(1)
    w, mu, var = _params(rng, "diag")
    X = rng.normal(size=(200, 3))
    m = MixtureModel.from_parameters(w, mu, var)
    logp = (np.log(w) - 0.5 * np.sum(np.log(2 * np.pi * var), axis=1)
            - 0.5 * (((X[:, None, :] - mu) ** 2) / var).sum(axis=2))
    resp = np.exp(logp - np.logaddexp.reduce(logp, axis=1, keepdims=True))
    st = m.accumulate(X)
    np.testing.assert_allclose(st.n, resp.sum(0), rtol=1e-10)
    np.testing.assert_allclose(st.sum_x, resp.T @ X, rtol=1e-10)
    adapted = m.like(w, mu, var).map_step(st, relevance_factor=16.0, params="m")
    alpha = (st.n / (st.n + 16.0))[:, None]
    np.testing.assert_allclose(adapted.means_, alpha * st.sum_x / st.n[:, None] + (1 - alpha) * mu, rtol=1e-12)
    assert type(adapted) is MixtureModel
    np.testing.assert_array_equal(m.means_, mu)                     # like() made a new model


def test_like_keeps_the_class_and_settings():
    rng = np.random.default_rng(2)
    w, mu, var = _params(rng, "diag")
    gm = GaussianMixture.from_parameters(w, mu, var, n_threads=1, reg_covar=1e-3)
    other = gm.like(w, mu + 1, var, dtype=np.float32)
    assert type(other) is GaussianMixture and other.get_params() == gm.get_params()
    assert other.means_.dtype == np.float32
    m = MixtureModel.from_parameters(w, mu, var, chunk_size=7)
    assert type(m.like(w, mu, var)) is MixtureModel and m.like(w, mu, var).chunk_size == 7


def test_settings_are_gaussian_mixtures():
    """The light class's constructor parameters are GaussianMixture's of the same names and defaults."""
    light = inspect.signature(MixtureModel).parameters
    full = inspect.signature(GaussianMixture).parameters
    assert set(light) <= set(full)
    assert {k: p.default for k, p in light.items()} == {k: full[k].default for k in light}


def test_bad_settings_and_input_get_scikit_learns_messages():
    rng = np.random.default_rng(3)
    w, mu, var = _params(rng, "diag")
    with pytest.raises(InvalidParameterError, match="'n_threads' parameter of MixtureModel must be"):
        MixtureModel.from_parameters(w, mu, var, n_threads=0)
    with pytest.raises(InvalidParameterError, match="'covariance_type' parameter of MixtureModel"):
        MixtureModel.from_parameters(w, mu, var, covariance_type="round")
    with pytest.raises(ValueError, match="Complex data not supported"):
        MixtureModel.from_parameters(w, mu.astype(complex), var)
    m = MixtureModel.from_parameters(w, mu, var)
    with pytest.raises(ValueError, match="X has 2 features, but MixtureModel is expecting 3 features"):
        m.score_samples(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="Input X contains NaN"):
        m.score_samples(np.full((4, 3), np.nan))
    with pytest.raises(TypeError):
        MixtureModel.from_parameters(w, mu, var, max_iter=3)       # an estimator's parameter
