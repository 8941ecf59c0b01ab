"""GaussianMixture's update rules beyond ML EM: frozen parameters, MAP, degenerate components, online EM.

Each is checked against its formula written here in NumPy (or a property of the fit).
"""
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from gmmext import GaussianMixture, GMMStats
from conftest import make_blobs, random_params


def _model(cov_type="diag", **kw):
    X = make_blobs(n=600, d=3, k=3, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return X, GaussianMixture(3, covariance_type=cov_type, random_state=0, max_iter=3, **kw).fit(X)


# ------------------------------------------------------------------ update_params
def test_frozen_means_give_variances_about_them():
    X, gm = _model(update_params="wc", reg_covar=0.0)
    mu = gm.means_.copy()
    st = gm.accumulate(X)
    gm.m_step(st)
    n = st.n + 10 * np.finfo(np.float64).eps
    np.testing.assert_array_equal(gm.means_, mu)
    var = st.sum_xx / n[:, None] - 2 * mu * st.sum_x / n[:, None] + mu ** 2      # E[(x - mu)^2]
    np.testing.assert_allclose(gm.covariances_, var, rtol=1e-10)
    np.testing.assert_allclose(gm.weights_, n / n.sum(), rtol=1e-12)


@pytest.mark.parametrize("flags,frozen", [("wm", "covariances_"), ("mc", "weights_")])
def test_frozen_parameters_keep_their_values(flags, frozen):
    X = make_blobs(n=500, d=2, k=2, seed=8)
    w, mu, var = random_params(2, 2, seed=3)
    gm = GaussianMixture(2, covariance_type="diag", weights_init=w, means_init=mu, precisions_init=1 / var,
                         update_params=flags, max_iter=20).fit(X)
    np.testing.assert_allclose(getattr(gm, frozen), {"covariances_": var, "weights_": w}[frozen], rtol=1e-12)
    assert np.all(np.diff(gm.lower_bounds_) > -1e-9)          # EM on the others still climbs


# ------------------------------------------------------------------ MAP (Reynolds et al. 2000)
def _reynolds(w, mu, var, st, r):
    n = st.n
    a = n / (n + r)
    ex = st.sum_x / n[:, None]
    ex2 = st.sum_xx / n[:, None]
    w2 = a * n / st.n_samples + (1 - a) * w
    w2 /= w2.sum()
    mu2 = a[:, None] * ex + (1 - a[:, None]) * mu                              # eq. 12
    var2 = a[:, None] * ex2 + (1 - a[:, None]) * (var + mu ** 2) - mu2 ** 2     # eq. 13
    return w2, mu2, var2


def test_map_step_is_reynolds_eqs_11_to_14():
    X, ubm = _model()
    spk = X[:80] + 0.3
    st = ubm.accumulate(spk)
    w2, mu2, var2 = _reynolds(ubm.weights_, ubm.means_, ubm.covariances_, st, 16.0)
    a = ubm.map_parameters(st.n, st.sum_x, st.sum_xx, st.n_samples, relevance_factor=16.0)
    ubm.map_step(st, relevance_factor=16.0, params="mwv")
    for got, ref in zip((ubm.weights_, ubm.means_, ubm.covariances_), (w2, mu2, var2)):
        np.testing.assert_allclose(got, ref, rtol=1e-10)
    np.testing.assert_allclose(a[1], mu2, rtol=1e-12)


def test_map_of_full_covariances_and_frozen_flags():
    X, ubm = _model("full", update_params="wc")
    st = ubm.accumulate(X[:100])
    mu, cov = ubm.means_.copy(), ubm.covariances_.copy()
    ubm.map_step(st, relevance_factor=4.0, params="mwv")
    np.testing.assert_array_equal(ubm.means_, mu)                 # "m" frozen by update_params
    n = st.n
    a = (n / (n + 4.0))[:, None, None]
    m1 = a[..., 0] * st.sum_x / n[:, None] + (1 - a[..., 0]) * mu
    m2 = a * st.sum_xx / n[:, None, None] + (1 - a) * (cov + mu[:, :, None] * mu[:, None, :])
    ref = m2 - mu[:, :, None] * m1[:, None, :] - m1[:, :, None] * mu[:, None, :] + mu[:, :, None] * mu[:, None, :]
    np.testing.assert_allclose(ubm.covariances_, ref, rtol=1e-9)


# ------------------------------------------------------------------ degenerate components
def _collapsing():
    rng = np.random.default_rng(0)
    return np.vstack([rng.normal(0, 1, (100, 2)), np.full((5, 2), 7.0)])


@pytest.mark.parametrize("cov_type", ["full", "diag", "spherical", "tied"])
def test_default_raises_and_recoveries_finish_finite(cov_type):
    X = _collapsing()
    kw = dict(covariance_type=cov_type, reg_covar=0.0, random_state=0)
    if cov_type == "full":   # diag / spherical: rounding leaves ~1e-14 > 0; tied: pooled, never singular here
        with pytest.raises(ValueError, match="ill-defined empirical covariance"):
            GaussianMixture(3, **kw).fit(X)
    for mode in ("floor", "reseed"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm = GaussianMixture(3, on_degenerate=mode, **kw).fit(X)
        assert np.all(np.isfinite(gm.covariances_)) and np.all(np.isfinite(gm.score_samples(X)))
        assert len(gm.lower_bounds_) == gm.n_iter_
        for e in gm.degenerate_log_:
            assert e["action"] in ("floor", "reseed") and 0 <= e["iteration"] <= gm.n_iter_


def test_floor_and_reseed_formulas_on_one_m_step():
    X = make_blobs(n=400, d=2, k=2, seed=1)
    w, mu, var = random_params(3, 2, seed=2)
    st = GMMStats(np.array([200.0, 195.0, 5.0]), np.array([[0.0, 0.0], [390.0, 195.0], [35.0, 35.0]]),
                  np.array([[200.0, 400.0], [1170.0, 390.0], [245.0, 245.0]]), 0.0, 400.0)
    # component 2: 5 frames all at (7, 7): zero variance
    gvar = st.pooled().moments()[1][0]
    gm = GaussianMixture.from_parameters(w, mu, var, reg_covar=0.0, on_degenerate="floor")
    gm.m_step(st)
    np.testing.assert_allclose(gm.covariances_[2], 1e-3 * gvar, rtol=1e-12)
    assert gm.degenerate_log_ == [{"iteration": None, "component": 2, "action": "floor", "split": None}]
    gm = GaussianMixture.from_parameters(w, mu, var, reg_covar=0.0, on_degenerate="reseed")
    gm.m_step(st)
    h = 0                                                  # the heaviest: n = 200, variances (1, 2)
    parent_mu, parent_var = st.sum_x[h] / 200, st.sum_xx[h] / 200 - (st.sum_x[h] / 200) ** 2
    delta = np.array([0.0, np.sqrt(2 / np.pi * parent_var[1])])     # along its larger variance
    np.testing.assert_allclose(gm.means_[2], parent_mu + delta, atol=1e-12)
    np.testing.assert_allclose(gm.means_[h], parent_mu - delta, atol=1e-12)
    np.testing.assert_allclose(gm.covariances_[2], parent_var, rtol=1e-9)
    # the removed component's 5 frames leave; the parent's 200 are shared by the two halves
    assert gm.weights_[2] == pytest.approx(gm.weights_[h]) and gm.weights_[2] == pytest.approx(100 / 395, rel=1e-9)
    assert gm.degenerate_log_[0]["split"] == h


# ------------------------------------------------------------------ partial_fit
def _draw(rng, n):
    w = np.array([0.5, 0.3, 0.2])
    mu = np.array([[0.0, 0.0], [5.0, 5.0], [-5.0, 4.0]])
    sd = np.array([[1.0, 0.5], [0.7, 1.2], [1.5, 1.0]])
    lab = rng.choice(3, n, p=w)
    return mu[lab] + rng.standard_normal((n, 2)) * sd[lab]


@pytest.mark.long(4)
def test_stream_converges_to_the_batch_fit():
    rng = np.random.default_rng(0)
    batches = [_draw(rng, 400) for _ in range(120)]
    on = GaussianMixture(3, covariance_type="diag", random_state=0)
    for b in batches:
        on.partial_fit(b)
    assert on.n_steps_ == 120
    X = np.vstack(batches)
    ba = GaussianMixture(3, covariance_type="diag", random_state=0, tol=1e-6, max_iter=500).fit(X)
    i, j = np.argsort(on.means_[:, 0]), np.argsort(ba.means_[:, 0])
    # measured (docs/design.md): 0.013 in the means, 0.003 in the weights, 2e-4 nats per sample
    assert np.abs(on.means_[i] - ba.means_[j]).max() < 0.05
    assert np.abs(on.weights_[i] - ba.weights_[j]).max() < 0.01
    assert 0 <= ba.score(X) - on.score(X) < 2e-3


def test_partial_fit_steps_are_the_documented_average():
    """gamma_t = t ** -decay on the per-weight statistics; decay 1: the plain running mean."""
    X, gm = _model()
    b1, b2 = X[:300], X[300:]
    params = gm.get_params()
    params.pop("n_components")
    params["learning_decay"] = 1.0
    on = GaussianMixture.from_parameters(gm.weights_, gm.means_, gm.covariances_, **params)
    ref = GaussianMixture.from_parameters(gm.weights_, gm.means_, gm.covariances_, **params)
    s1 = ref.accumulate(b1)
    on.partial_fit(b1)
    ref.m_step(s1)
    s2 = ref.accumulate(b2)
    on.partial_fit(b2)
    avg = s1.scaled(0.5 / s1.n_samples) + s2.scaled(0.5 / s2.n_samples)
    ref.m_step(avg)
    np.testing.assert_allclose(on.means_, ref.means_, rtol=1e-12)
    np.testing.assert_allclose(on.covariances_, ref.covariances_, rtol=1e-12)
