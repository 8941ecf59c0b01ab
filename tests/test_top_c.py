"""Top-C fast scoring in the core against direct formulas."""
import numpy as np
import pytest
from scipy.special import logsumexp

from gmmext import GaussianMixture, top_c_loglik
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
