"""missing="marginalize": EM against a direct NumPy EM with missing data, densities against SciPy."""
import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.exceptions import ConvergenceWarning

from gmmext import GaussianMixture
from conftest import make_blobs


def _data(seed=0, n=300, d=3, frac=0.25):
    X = make_blobs(n=n, d=d, k=2, seed=seed)
    rng = np.random.default_rng(seed)
    Xm = X.copy()
    Xm[rng.random(X.shape) < frac] = np.nan
    empty = np.isnan(Xm).all(axis=1)
    Xm[empty, 0] = X[empty, 0]                      # keep one value in every row
    return Xm


def _cov_full(cov, t, D):
    return cov if t == "full" else np.array([np.diag(c) for c in cov])


def numpy_em(X, w, mu, cov, iters, reg):
    """EM for a full-covariance GMM with missing values (Ghahramani and Jordan 1994), directly."""
    N, D = X.shape
    K = len(w)
    for _ in range(iters):
        n = np.zeros(K)
        sx = np.zeros((K, D))
        sxx = np.zeros((K, D, D))
        for x in X:
            o = ~np.isnan(x)
            m = ~o
            lp = np.array([np.log(w[k]) + multivariate_normal(mu[k][o], cov[k][np.ix_(o, o)]).logpdf(x[o])
                           for k in range(K)])
            r = np.exp(lp - logsumexp(lp))
            for k in range(K):
                G = cov[k][np.ix_(m, o)] @ np.linalg.inv(cov[k][np.ix_(o, o)])
                xh = x.copy()
                xh[m] = mu[k][m] + G @ (x[o] - mu[k][o])
                C = np.zeros((D, D))
                C[np.ix_(m, m)] = cov[k][np.ix_(m, m)] - G @ cov[k][np.ix_(o, m)]
                n[k] += r[k]
                sx[k] += r[k] * xh
                sxx[k] += r[k] * (np.outer(xh, xh) + C)
        w = n / N
        mu = sx / n[:, None]
        cov = sxx / n[:, None, None] - mu[:, :, None] * mu[:, None, :] + reg * np.eye(D)
    return w, mu, cov


@pytest.mark.parametrize("cov_type", ["full", "diag"])
def test_em_equals_direct_numpy_em_with_missing_values(cov_type):
    X = _data(n=120)
    K, D = 2, X.shape[1]
    rng = np.random.default_rng(1)
    w0 = np.array([0.4, 0.6])
    mu0 = rng.normal(scale=3.0, size=(K, D))
    var0 = rng.uniform(1.0, 4.0, size=(K, D))
    cov0 = np.array([np.diag(v) for v in var0])
    prec0 = np.linalg.inv(cov0) if cov_type == "full" else 1 / var0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(K, covariance_type=cov_type, missing="marginalize", weights_init=w0, means_init=mu0,
                             precisions_init=prec0, max_iter=4, tol=0, reg_covar=1e-6).fit(X)
    if cov_type == "full":
        w, mu, cov = numpy_em(X, w0, mu0, cov0, 4, 1e-6)
    else:     # a diagonal model is the full algorithm with its off-diagonal terms dropped each M-step
        w, mu, cov = w0, mu0, cov0
        for _ in range(4):
            w, mu, cov = numpy_em(X, w, mu, cov, 1, 1e-6)
            cov = np.array([np.diag(np.diag(c)) for c in cov])
    np.testing.assert_allclose(gm.weights_, w, rtol=1e-8)
    np.testing.assert_allclose(gm.means_, mu, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(_cov_full(gm.covariances_, cov_type, D) if cov_type == "full"
                               else gm.covariances_, cov if cov_type == "full" else
                               np.array([np.diag(c) for c in cov]), rtol=1e-7, atol=1e-10)
    assert np.all(np.diff(gm.lower_bounds_) > -1e-10)          # EM never lowers the likelihood


@pytest.mark.parametrize("cov_type", ["full", "diag"])
def test_densities_are_scipys_on_the_observed_coordinates(cov_type):
    X = _data(seed=2)
    gm = GaussianMixture(2, covariance_type=cov_type, missing="marginalize", random_state=0).fit(X)
    cov = gm.covariances_ if cov_type == "full" else np.array([np.diag(v) for v in gm.covariances_])
    ref = np.empty((len(X), 2))
    for i, x in enumerate(X):
        o = ~np.isnan(x)
        for k in range(2):
            ref[i, k] = np.log(gm.weights_[k]) + multivariate_normal(gm.means_[k][o], cov[k][np.ix_(o, o)]).logpdf(x[o])
    np.testing.assert_allclose(gm.score_samples(X), logsumexp(ref, axis=1), rtol=1e-10)
    np.testing.assert_allclose(gm.predict_proba(X), np.exp(ref - logsumexp(ref, axis=1, keepdims=True)),
                               atol=1e-10)
    np.testing.assert_array_equal(gm.predict(X), ref.argmax(axis=1))
    np.testing.assert_allclose(gm.component_log_likelihood(X), ref, rtol=1e-10)
    full = X[~np.isnan(X).any(axis=1)]
    np.testing.assert_allclose(gm.score_samples(X)[~np.isnan(X).any(axis=1)], gm.score_samples(full), rtol=1e-12)


def test_refusals():
    X = _data()
    with pytest.raises(ValueError, match="NaN"):
        GaussianMixture(2).fit(X)                                   # scikit-learn's default
    with pytest.raises(NotImplementedError, match="tied"):
        GaussianMixture(2, covariance_type="tied", missing="marginalize").fit(X)
    X[5] = np.nan
    with pytest.raises(ValueError, match="row 5 has no observed value"):
        GaussianMixture(2, covariance_type="diag", missing="marginalize").fit(X)
    gm = GaussianMixture(2, covariance_type="diag", missing="marginalize", random_state=0).fit(_data())
    with pytest.raises(ValueError, match="NaN"):
        gm.top_components(_data(), 1)
    with pytest.raises(ValueError, match="NaN: .* component_log_likelihood only"):
        gm.bic(_data())
