"""float32 full-covariance log-likelihoods against float64 arithmetic on the same float32 numbers.

The reference is SciPy in float64 (Cholesky of each float32 covariance, a triangular solve of
``x - mu_k``, logsumexp: ``reference_logprob`` of ``benchmarks/bench_covtypes.py``, whose
accuracy lines use it too), on the float32 parameters and frames cast to float64: what float32 computes can only be compared with what those same numbers give
exactly.  Covariances of condition number 1e5 (random rotations, eigenvalues spread over five
decades), data 1e3 away from the origin: the expanded quadratic form ``x^T P x - 2 mu^T P x +
mu^T P mu`` of the full layout cancels there in float32 (errors of 1e-2 to 1 nat per frame).
Tolerance: 1e-4 nats per frame.
"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy.special import logsumexp

from gmmext import GaussianMixture

TOL = 1e-4          # nats per frame


def _bench():
    """benchmarks/bench_covtypes.py, whose SciPy reference and conditioned models are used here too."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_covtypes.py"
    spec = importlib.util.spec_from_file_location("bench_covtypes", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def case():
    """K=4, D=12 float32 model (condition number 1e5, means 1e3 from the origin), 3000 frames
    drawn from it, and the reference (N, K) weighted log-densities in float64."""
    b = _bench()
    rng = np.random.default_rng(0)
    src = b.conditioned_model(4, 12, 1e5, 1e3, rng)
    # components 1 and 3 overlap 0 and 2 (same covariance, means one standard deviation apart
    # along the widest axis), so that responsibilities are not all 0 or 1
    w, mu, cov = (np.array(a, dtype=np.float64) for a in (src.weights_, src.means_, src.covariances_))
    for k in (1, 3):
        cov[k] = cov[k - 1]
        lam, V = np.linalg.eigh(cov[k])
        mu[k] = mu[k - 1] + np.sqrt(lam[-1]) * V[:, -1]
    gm = GaussianMixture.from_parameters(*(a.astype(np.float32) for a in (w, mu, cov)),
                                         covariance_type="full")
    X = np.asarray(gm.sample(3000)[0], dtype=np.float32)
    lp = b.reference_logprob(X, gm.weights_, gm.means_, gm.covariances_)
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
    # the lower bound is a mean over 3000 frames, whose errors partly cancel: asked to TOL / 100
    assert abs(stats.mean_loglik() - ll.mean()) <= TOL / 100
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
    """The float64 full model (no recomputation) agrees with the same reference to 1e-6."""
    gm, X, lp = case
    w = np.asarray(gm.weights_, np.float64)
    g64 = GaussianMixture.from_parameters(w / w.sum(), np.asarray(gm.means_, np.float64),
                                          np.asarray(gm.covariances_, np.float64), covariance_type="full")
    expect = logsumexp(lp, axis=1) - np.log(w.sum())      # the reference's weights, normalised
    assert np.abs(g64.score_samples(X.astype(np.float64)) - expect).max() <= 1e-6


def test_separated_components_take_the_per_component_recomputation_and_stay_within_1e4_nats():
    """Well-separated components (about one within 12 nats of each frame's best, far under the
    quarter of a chunk's pairs above which the core redoes the chunk by the float64 product):
    the per-component recomputation (centred rows times the factor, one dtrmm per component),
    against SciPy in float64."""
    b = _bench()
    gm = b.conditioned_model(8, 12, 1e5, 1e3, np.random.default_rng(1))
    gm = GaussianMixture.from_parameters(*(np.asarray(a, dtype=np.float32) for a in
                                           (gm.weights_, gm.means_, gm.covariances_)), covariance_type="full")
    X = np.asarray(gm.sample(2000)[0], dtype=np.float32)
    lp = b.reference_logprob(X, gm.weights_, gm.means_, gm.covariances_)
    near = (lp >= lp.max(axis=1, keepdims=True) - 12.0).sum(axis=1)
    assert near.mean() < 0.25 * 8              # the per-component path, not the dense redo
    assert np.max(np.abs(gm.score_samples(X).astype(np.float64) - logsumexp(lp, axis=1))) < TOL
