"""The back-end (LDA, WCCN, length norm, PLDA, cosine) against scikit-learn, SciPy and direct formulas."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from scipy.stats import multivariate_normal

from speaker import plda as P


def _speakers(S=40, n=6, d=5, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(d, d))
    Sb = A @ A.T + np.eye(d)
    C = rng.normal(size=(d, d)) * 0.5
    Sw = C @ C.T + 0.3 * np.eye(d)
    mu = rng.normal(size=d)
    y = rng.multivariate_normal(mu, Sb, size=S)
    X = np.concatenate([rng.multivariate_normal(y[s], Sw, size=n) for s in range(S)])
    return X, np.repeat(np.arange(S), n), (mu, Sb, Sw)


def test_lda_spans_the_same_subspace_as_sklearn():
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    X, y, _ = _speakers(S=12, n=10, d=6)
    for dim in (2, 4):
        W = P.fit_lda(X, y, dim)
        ref = LinearDiscriminantAnalysis(solver="eigen").fit(X, y).scalings_[:, :dim]
        assert np.max(scipy.linalg.subspace_angles(W, ref)) < 1e-6


def test_wccn_whitens_the_within_speaker_covariance():
    X, y, _ = _speakers()
    B = P.fit_wccn(X, y)
    W = np.mean([np.cov(X[y == s].T, bias=True) for s in np.unique(y)], axis=0)
    np.testing.assert_allclose(B @ B.T, np.linalg.inv(W), rtol=1e-6)
    Z = X @ B
    Wz = np.mean([np.cov(Z[y == s].T, bias=True) for s in np.unique(y)], axis=0)
    np.testing.assert_allclose(Wz, np.eye(X.shape[1]), atol=1e-6)


def test_length_norm_and_cosine():
    X = np.array([[3.0, 4.0], [0.0, 0.0], [-1.0, 1.0]])
    np.testing.assert_allclose(P.length_norm(X), [[0.6, 0.8], [0, 0], [-2 ** -0.5, 2 ** -0.5]])
    E, T = np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([[2.0, 2.0], [-3.0, -3.0]])
    np.testing.assert_allclose(P.cosine(E, T), [2 / np.sqrt(8), -1.0])


def _stacked_logpdf(model, X):
    """log N of the stacked recordings of one speaker (I (x) Sw + 11^T (x) Sb), by SciPy."""
    n, d = X.shape
    cov = np.kron(np.eye(n), model.Sw) + np.kron(np.ones((n, n)), model.Sb)
    return multivariate_normal(np.tile(model.mu, n), cov).logpdf(X.ravel())


def test_plda_log_likelihood_is_the_stacked_density():
    X, y, (mu, Sb, Sw) = _speakers(S=5, n=3, d=3)
    X, y = np.concatenate([X, X[:2] + 0.1]), np.concatenate([y, [7, 7]])      # counts 3 and 2
    model = P.PLDA(mu, Sb, Sw)
    direct = sum(_stacked_logpdf(model, X[y == s]) for s in np.unique(y))
    assert P.plda_log_likelihood(model, X, y) == pytest.approx(direct, rel=1e-10)


def test_plda_em_increases_the_likelihood_and_finds_the_model():
    X, y, (mu, Sb, Sw) = _speakers(S=300, n=8, d=4, seed=1)
    llks = []
    model = P.fit_plda(X, y, n_iter=15, callback=lambda it, m: llks.append(P.plda_log_likelihood(m, X, y)))
    assert np.all(np.diff(llks) >= -1e-8 * abs(llks[0]))
    np.testing.assert_allclose(model.Sw, Sw, atol=0.1 * np.abs(Sw).max())
    np.testing.assert_allclose(model.Sb, Sb, atol=0.25 * np.abs(Sb).max())


@pytest.mark.parametrize("n_enrol", [1, 3])
def test_plda_llr_is_the_ratio_of_stacked_gaussian_densities(n_enrol):
    X, y, _ = _speakers(S=50, n=4, d=3, seed=2)
    model = P.fit_plda(X, y, n_iter=5)
    rng = np.random.default_rng(3)
    for _ in range(4):
        E = rng.normal(size=(n_enrol, 3))
        t = rng.normal(size=3)
        same = _stacked_logpdf(model, np.vstack([E, t]))
        diff = _stacked_logpdf(model, E) + _stacked_logpdf(model, t[None])
        got = P.plda_llr(model, E.mean(axis=0)[None], [n_enrol], t[None])
        assert got[0] == pytest.approx(same - diff, rel=1e-9, abs=1e-9)


def test_backend_chain_and_file(tmp_path):
    from speaker.model_io import ModelError
    X, y, _ = _speakers(S=30, n=5, d=6, seed=4)
    be = P.train_backend(X, y, lda_dim=3, wccn=True, plda_iters=3)
    Z = be.transform(X)
    assert Z.shape == (len(X), 3)
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0)
    manual = P.length_norm(((X - X.mean(0)) @ be.lda) @ be.wccn)
    np.testing.assert_allclose(Z, manual)
    means, counts = P.enrol(be, [X[:5], X[5:10]])
    np.testing.assert_array_equal(counts, [5, 5])
    avg, c1 = P.enrol(be, [X[:5]], average=True)
    assert c1[0] == 1 and np.linalg.norm(avg[0]) == pytest.approx(1.0)
    p = tmp_path / "be.npz"
    P.save_backend(p, be)
    back = P.load_backend(p, rank=6)
    np.testing.assert_array_equal(back.transform(X), Z)
    with pytest.raises(ModelError, match="rank 7"):
        P.load_backend(p, rank=7)
    bad = dict(np.load(p))
    bad["plda_Sw"] = -np.eye(3)
    np.savez(tmp_path / "neg.npz", **bad)
    with pytest.raises(ModelError, match="positive definite"):
        P.load_backend(tmp_path / "neg.npz")
    # by-the-model scores: same speaker above different speakers on average
    t_same = P.plda_llr(be.plda, means[:1], counts[:1], Z[2:3])
    t_diff = P.plda_llr(be.plda, means[1:2], counts[1:2], Z[2:3])
    assert t_same[0] > t_diff[0]


def test_plda_em_pass_with_mixed_counts_equals_the_dense_update():
    """One EM pass on speakers with different numbers of recordings (the posterior covariance is
    computed once per distinct count) equals the per-speaker dense update."""
    rng = np.random.default_rng(5)
    d, sizes = 3, [2, 5, 2, 3, 5, 1, 4]
    X = np.vstack([rng.normal(size=d) * 2 + rng.normal(size=(k, d)) for k in sizes])
    y = np.repeat(np.arange(len(sizes)), sizes)
    start = P.fit_plda(X, y, n_iter=0)
    got = P.fit_plda(X, y, n_iter=1)
    Bi, Wi = np.linalg.inv(start.Sb), np.linalg.inv(start.Sw)
    ms, Eyy, Sw = [], [], np.zeros((d, d))
    for s in range(len(sizes)):
        Xs = X[y == s]
        cov = np.linalg.inv(Bi + len(Xs) * Wi)
        m = cov @ (Bi @ start.mu + Wi @ Xs.sum(axis=0))
        ms.append(m)
        Eyy.append(cov + np.outer(m, m))
        for x in Xs:
            Sw += np.outer(x, x) - np.outer(x, m) - np.outer(m, x) + Eyy[-1]
    mu = np.mean(ms, axis=0)
    np.testing.assert_allclose(got.mu, mu, rtol=1e-10)
    np.testing.assert_allclose(got.Sb, np.mean(Eyy, axis=0) - np.outer(mu, mu), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.Sw, Sw / len(X), rtol=1e-9, atol=1e-12)
    E = np.array([X[y == s].mean(axis=0) for s in range(len(sizes))])
    llr = P.plda_llr(got, E, sizes, X[:len(sizes)])
    for s in range(len(sizes)):          # per trial, one count at a time, as the direct formula
        assert llr[s] == pytest.approx(P.plda_llr(got, E[s:s + 1], [sizes[s]], X[s:s + 1])[0], rel=1e-12)
