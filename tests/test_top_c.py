"""Top-C fast scoring in the core against direct formulas."""
import numpy as np
import pytest
from scipy.special import logsumexp

from gmmext import GaussianMixture, ModelStack, top_c_loglik
from conftest import random_params, reference_logprob


def model(w, mu, var, dtype=np.float64, **kw):
    """A model whose parameters are exactly (w, mu, var) in ``dtype``."""
    return GaussianMixture.from_parameters(*(np.asarray(a, dtype=dtype) for a in (w, mu, var)), **kw)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
@pytest.mark.parametrize("c", [1, 3, 8])
def test_top_components_against_sorting(dtype, rtol, c):
    w, mu, var = random_params(8, 4, seed=1)
    X = np.random.default_rng(0).normal(scale=3, size=(300, 4)).astype(dtype)
    ubm = model(w, mu, var, dtype=dtype, chunk_size=37)
    idx, ll = ubm.top_components(X, c)
    ref = reference_logprob(X, w.astype(dtype), mu.astype(dtype), var.astype(dtype))
    order = np.argsort(-ref, axis=1, kind="stable")[:, :c]
    assert idx.shape == (300, c) and idx.dtype == np.int32
    np.testing.assert_array_equal(np.sort(idx, axis=1), np.sort(order, axis=1))
    np.testing.assert_allclose(ll, logsumexp(np.take_along_axis(ref, order, 1), axis=1), rtol=rtol)
    if c == 8:
        np.testing.assert_allclose(ll, ubm.score_samples(X), rtol=rtol)


def test_top_c_loglik_of_many_models():
    w, mu, var = random_params(6, 3, seed=2)
    ubm = model(w, mu, var, chunk_size=16)
    rng = np.random.default_rng(3)
    models = [model(rng.dirichlet(np.ones(6)), mu + rng.normal(scale=0.5, size=mu.shape),
                    var * rng.uniform(0.5, 2, size=var.shape)) for _ in range(4)]
    X = rng.normal(scale=3, size=(257, 3))
    # C = K: exactly the full log-likelihood
    idx_all, _ = ubm.top_components(X, 6)
    full = top_c_loglik(models, X, idx_all)
    np.testing.assert_allclose(full, [m.score_samples(X).sum() for m in models], rtol=1e-10)
    # C = 2: the sum over the UBM's two best components, from the direct formula
    idx, _ = ubm.top_components(X, 2)
    got = top_c_loglik(models, X, idx)
    for g, m in zip(got, models):
        ref = reference_logprob(X, m.weights_, m.means_, m.covariances_)
        assert g == pytest.approx(logsumexp(np.take_along_axis(ref, idx.astype(int), 1), axis=1).sum(), rel=1e-10)


def test_bad_top_c_arguments():
    w, mu, var = random_params(4, 2, seed=4)
    ubm = model(w, mu, var)
    X = np.zeros((5, 2))
    for bad in (0, 5, 2.5):
        with pytest.raises(ValueError, match="c must be"):
            ubm.top_components(X, bad)
    idx, _ = ubm.top_components(X, 2)
    with pytest.raises(ValueError, match="indices"):
        top_c_loglik([ubm], X, idx[:3])
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        top_c_loglik([ubm], X, idx + 3)
    other = model(np.ones(3) / 3, np.zeros((3, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="same"):
        top_c_loglik([ubm, other], X, idx)


def _shared_models(ubm, S, seed, dtype):
    """S models with the UBM's variances (MAP of means and weights): the core's gemm path."""
    rng = np.random.default_rng(seed)
    K, D = ubm.means_.shape
    W = rng.dirichlet(np.ones(K), S)
    MU = ubm.means_[None].astype(np.float64) + rng.normal(scale=0.7, size=(S, K, D))
    return W, MU, [model(W[s], MU[s], ubm.covariances_, dtype=dtype) for s in range(S)]


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 2e-5)])
@pytest.mark.parametrize("c", [1, 3, 7])
def test_shared_variance_models_against_the_direct_formula(dtype, rtol, c):
    """Models with the reference's variances (one gemm per component over all models) give the
    exact log-density restricted to the same components, from models or from parameter arrays."""
    w, mu, var = random_params(7, 4, seed=5)
    ubm = model(w, mu, var, dtype=dtype)
    W, MU, models = _shared_models(ubm, 37, 6, dtype)
    X = np.random.default_rng(7).normal(scale=3, size=(211, 4)).astype(dtype)
    idx, _ = ubm.top_components(X, c)
    want = [logsumexp(np.take_along_axis(reference_logprob(X.astype(np.float64), m.weights_.astype(np.float64),
                                                           m.means_.astype(np.float64),
                                                           m.covariances_.astype(np.float64)),
                                         idx.astype(int), 1), axis=1).sum() for m in models]
    stack = ModelStack(models, reference=ubm)
    got = stack.top_c_loglik(X, idx)
    assert stack._stack(X.dtype).general.size == 0          # all took the shared path
    np.testing.assert_allclose(got, want, rtol=rtol)
    arrays = ModelStack.from_parameters(W.astype(dtype), MU.astype(dtype), ubm)
    np.testing.assert_array_equal(arrays.top_c_loglik(X, idx), got)   # the same matrices
    sel = [30, 2, 2, 11]
    np.testing.assert_array_equal(stack.top_c_loglik(X, idx, which=sel), got[sel])


def test_shared_and_general_models_mixed_threads_and_chunks(monkeypatch):
    """A stack holding both kinds scores each by its path; results do not depend on the thread
    count, and frames cut into several chunks (> 2**14 / C pairs) sum to the same totals."""
    import gmmext._engine
    monkeypatch.setattr(gmmext._engine, "SHARED_THREADS_CELLS", 0)      # threads even for small work
    w, mu, var = random_params(8, 3, seed=8)
    ubm = model(w, mu, var)
    W, MU, shared = _shared_models(ubm, 5, 9, np.float64)
    rng = np.random.default_rng(10)
    general = [model(W[s], MU[s], var * rng.uniform(0.5, 2, size=var.shape)) for s in range(3)]
    models = [shared[0], general[0], shared[1], general[1], shared[2], general[2], shared[3], shared[4]]
    X = rng.normal(scale=3, size=(2600, 3))                    # 2600 * 8 pairs: two chunks at C = 8
    for c in (2, 8):
        idx, _ = ubm.top_components(X, c)
        want = [logsumexp(np.take_along_axis(reference_logprob(X, m.weights_, m.means_, m.covariances_),
                                             idx.astype(int), 1), axis=1).sum() for m in models]
        got = ModelStack(models, reference=ubm).top_c_loglik(X, idx)
        np.testing.assert_allclose(got, want, rtol=1e-10)
        one = model(w, mu, var, n_threads=1)
        np.testing.assert_array_equal(ModelStack(models, reference=one).top_c_loglik(X, idx), got)
    covs = np.stack([m.covariances_ for m in models])
    arrays = ModelStack.from_parameters(np.stack([m.weights_ for m in models]),
                                        np.stack([m.means_ for m in models]), ubm, covariances=covs)
    np.testing.assert_allclose(arrays.top_c_loglik(X, idx), want, rtol=1e-10)
    with pytest.raises(ValueError, match="covariances"):
        ModelStack.from_parameters(W, MU, ubm, covariances=covs[:2])
