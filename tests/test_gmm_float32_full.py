"""float32 full-covariance log-likelihoods against float64 arithmetic on the same float32 numbers.

The reference is written out here with SciPy in float64 (Cholesky of each float32 covariance,
a triangular solve of ``x - mu_k``, logsumexp), on the float32 parameters and frames cast to
float64: what float32 computes can only be compared with what those same numbers give
exactly.  Covariances of condition number 1e5 (random rotations, eigenvalues spread over five
decades), data 1e3 away from the origin: the expanded quadratic form ``x^T P x - 2 mu^T P x +
mu^T P mu`` of the full layout cancels there in float32 (errors of 1e-2 to 1 nat per frame).
Tolerance: 1e-4 nats per frame.
"""
import numpy as np
import pytest
from scipy import linalg
from scipy.special import logsumexp

from gmmext import GaussianMixture

TOL = 1e-4          # nats per frame


def _ill_conditioned(K=4, D=12, cond=1e5, offset=1e3, seed=0):
    """float32 (weights, means, covariances): random rotations of eigenvalues 1 .. 1/cond."""
    rng = np.random.default_rng(seed)
    covs = []
    for _ in range(K):
        Q, _ = np.linalg.qr(rng.normal(size=(D, D)))
        covs.append((Q * np.logspace(0, -np.log10(cond), D)) @ Q.T)
    means = offset + rng.normal(size=(K, D))
    w = rng.dirichlet(np.full(K, 5.0))
    return tuple(np.asarray(a, dtype=np.float32) for a in (w, means, np.array(covs)))


def _reference_logprob(X, w, means, covs):
    """(N, K) log w_k + log N(x | mu_k, cov_k) in float64 from the given (float32) numbers."""
    X = np.asarray(X, dtype=np.float64)
    K, D = means.shape
    out = np.empty((X.shape[0], K))
    for k in range(K):
        c = linalg.cholesky(np.asarray(covs[k], dtype=np.float64), lower=True)
        z = linalg.solve_triangular(c, (X - np.asarray(means[k], dtype=np.float64)).T, lower=True)
        out[:, k] = (np.log(np.float64(w[k])) - 0.5 * D * np.log(2 * np.pi)
                     - np.log(np.diag(c)).sum() - 0.5 * (z * z).sum(axis=0))
    return out


@pytest.fixture(scope="module")
def case():
    w, means, covs = _ill_conditioned()
    gm = GaussianMixture.from_parameters(w, means, covs, covariance_type="full")
    rng = np.random.default_rng(1)
    lab = rng.choice(len(w), 3000, p=np.asarray(w, np.float64) / w.sum())
    X = np.empty((lab.size, means.shape[1]))
    for k in range(len(w)):
        X[lab == k] = rng.multivariate_normal(means[k].astype(np.float64), covs[k].astype(np.float64),
                                              int((lab == k).sum()))
    X = X.astype(np.float32)
    lp = _reference_logprob(X, w, means, covs)
    return gm, X, lp


def test_condition_number_is_what_the_case_claims(case):
    gm = case[0]
    ev = np.linalg.eigvalsh(np.asarray(gm.covariances_, dtype=np.float64))
    assert np.all(ev.max(axis=1) / ev.min(axis=1) > 0.9e5)
    assert gm.means_.dtype == np.float32


def test_score_samples_float32_full_within_1e4_nats(case):
    gm, X, lp = case
    got = gm.score_samples(X)
    err = np.abs(got - logsumexp(lp, axis=1))
    assert err.max() <= TOL, f"max error {err.max():.2e} nats (mean {err.mean():.2e})"


def test_component_log_likelihood_of_the_best_components(case):
    """The per-component weighted log-densities where they count (within 10 nats of a frame's best)."""
    gm, X, lp = case
    got = gm.component_log_likelihood(X).astype(np.float64)
    near = lp >= lp.max(axis=1, keepdims=True) - 10.0
    assert np.abs(got - lp)[near].max() <= TOL


def test_estep_responsibilities_and_lower_bound(case):
    gm, X, lp = case
    ll = logsumexp(lp, axis=1)
    resp_ref = np.exp(lp - ll[:, None])
    assert np.abs(gm.predict_proba(X) - resp_ref).max() <= TOL
    stats = gm.accumulate(X)                       # the E-step of fit() with its statistics
    assert abs(stats.mean_loglik() - ll.mean()) <= TOL
    # the M-step's sums, from the reference responsibilities (float64)
    Xd = X.astype(np.float64)
    np.testing.assert_allclose(stats.n, resp_ref.sum(axis=0), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(stats.sum_x, resp_ref.T @ Xd, rtol=1e-4)
    sxx = np.einsum("nk,nd,ne->kde", resp_ref, Xd, Xd)
    np.testing.assert_allclose(stats.sum_xx, sxx, rtol=1e-4)


def test_per_segment_statistics_and_top_components(case):
    gm, X, lp = case
    ll = logsumexp(lp, axis=1)
    parts = gm.accumulate_segments([X[:1000], X[1000:]])
    got = [p.loglik for p in parts]
    np.testing.assert_allclose(got, [ll[:1000].sum(), ll[1000:].sum()], atol=TOL * 1000)
    idx, top = gm.top_components(X, c=len(gm.weights_))
    assert np.abs(top - ll).max() <= TOL


def test_float64_model_unchanged_by_the_float32_path(case):
    """The float64 full model (no recomputation) agrees with the same reference to 1e-8."""
    gm, X, lp = case
    g64 = GaussianMixture.from_parameters(*(np.asarray(a, np.float64) for a in
                                            (gm.weights_, gm.means_, gm.covariances_)),
                                          covariance_type="full")
    err = np.abs(g64.score_samples(X.astype(np.float64)) - logsumexp(lp, axis=1))
    assert err.max() <= 1e-6
