"""Every covariance type ("full", "tied", "diag", "spherical") against independent references.

scipy.stats.multivariate_normal log-densities, scikit-learn's EM from the same initialisation,
EM's monotonicity, float32 against float64, and the statistics API (merging, m_step, memmap,
sample weights, precisions_init, var_floor) for each type.
"""
import warnings

import numpy as np
import pytest
from scipy import linalg
from scipy.stats import multivariate_normal
from sklearn.mixture import GaussianMixture as SK

from gmmext import GaussianMixture, GMMStats

TYPES = ["full", "tied", "diag", "spherical"]


def _data(n=600, d=3, k=3, seed=0, dtype=np.float64):
    """k elliptical (correlated) clusters, off the origin."""
    rng = np.random.RandomState(seed)
    parts = [rng.randn(n // k, d) @ rng.randn(d, d) + 5 * rng.randn(d) + 3 for _ in range(k)]
    return np.vstack(parts).astype(dtype)


def _full_covs(gm):
    """(K, D, D) covariance matrices of any type, written out directly."""
    K, D = gm.means_.shape
    c = np.asarray(gm.covariances_, dtype=np.float64)
    return {"full": lambda: c, "tied": lambda: np.broadcast_to(c, (K, D, D)),
            "diag": lambda: np.stack([np.diag(v) for v in c]),
            "spherical": lambda: np.stack([v * np.eye(D) for v in c])}[gm.covariance_type]()


def _fit(X, cov, **kw):
    params = dict(n_components=3, covariance_type=cov, random_state=0, max_iter=20, tol=0.0)
    params.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GaussianMixture(**params).fit(X)


@pytest.mark.parametrize("cov", TYPES)
def test_log_densities_equal_scipy_multivariate_normal(cov):
    X = _data()
    gm = _fit(X, cov, max_iter=3)
    covs = _full_covs(gm)
    ref = np.stack([np.log(w) + multivariate_normal(m, c).logpdf(X)
                    for w, m, c in zip(gm.weights_, gm.means_, covs)], axis=1)
    np.testing.assert_allclose(gm.component_log_likelihood(X), ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gm.score_samples(X), np.logaddexp.reduce(ref, axis=1), rtol=1e-11)
    # the attributes are what scikit-learn's formulas give from covariances_
    P = np.linalg.inv(covs)
    if cov in ("full", "tied"):
        prec = P if cov == "full" else P[0]
        np.testing.assert_allclose(gm.precisions_, prec, rtol=1e-9)
        C = gm.precisions_cholesky_.reshape((-1,) + gm.precisions_cholesky_.shape[-2:])
        np.testing.assert_allclose(np.einsum("kij,klj->kil", C, C), P[:len(C)], rtol=1e-9)
        assert np.allclose(np.tril(C, -1), 0.0)          # upper-triangular, as scikit-learn's
    else:
        np.testing.assert_allclose(gm.precisions_, 1.0 / gm.covariances_, rtol=1e-12)
        np.testing.assert_allclose(gm.precisions_cholesky_, 1.0 / np.sqrt(gm.covariances_), rtol=1e-12)


@pytest.mark.parametrize("cov", TYPES)
def test_twenty_em_iterations_equal_sklearn(cov):
    X = _data(seed=1)
    kw = dict(n_components=3, covariance_type=cov, random_state=0, max_iter=20, tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = SK(**kw).fit(X)
        gm = GaussianMixture(**kw).fit(X)
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        a, b = getattr(gm, name), getattr(sk, name)
        assert a.shape == b.shape, name
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-7 * np.abs(b).max(), err_msg=name)
    assert gm.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-7)
    assert gm.bic(X) == pytest.approx(sk.bic(X), rel=1e-7)
    assert gm.aic(X) == pytest.approx(sk.aic(X), rel=1e-7)
    np.testing.assert_array_equal(gm.predict(X), sk.predict(X))


@pytest.mark.parametrize("cov", TYPES)
def test_em_never_lowers_the_likelihood(cov):
    X = _data(n=900, d=4, k=3, seed=2)
    gm = _fit(X, cov, n_components=4, max_iter=30, init_params="random")
    lb = np.array(gm.lower_bounds_)
    assert len(lb) == 30
    assert np.all(np.diff(lb) >= -1e-10 * np.abs(lb[1:]))


@pytest.mark.parametrize("cov", TYPES)
def test_float32_within_tolerance_of_float64(cov):
    # documented: float32 log-densities within ~1e-4 nats of float64 on standardised-scale data
    X = _data(seed=3)
    g64 = _fit(X, cov, max_iter=5)
    g32 = GaussianMixture.from_parameters(*(a.astype(np.float32) for a in
                                            (g64.weights_, g64.means_, g64.covariances_)),
                                          covariance_type=cov)
    s32 = g32.score_samples(X.astype(np.float32))
    assert s32.dtype == np.float32
    np.testing.assert_allclose(s32, g64.score_samples(X), atol=2e-4, rtol=1e-5)
    st32, st64 = g32.accumulate(X.astype(np.float32)), g64.accumulate(X)
    np.testing.assert_allclose(st32.n, st64.n, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(st32.sum_xx, st64.sum_xx, rtol=1e-4, atol=1e-4 * np.abs(st64.sum_xx).max())
    f32 = _fit(X.astype(np.float32), cov, max_iter=5)
    assert f32.means_.dtype == np.float32 and f32.covariances_.dtype == np.float32
    np.testing.assert_allclose(f32.means_, g64.means_, atol=1e-3 * np.abs(g64.means_).max())


@pytest.mark.parametrize("cov", TYPES)
def test_statistics_merge_and_one_iteration_is_m_step_of_accumulate(cov):
    X = _data(seed=4)
    gm = _fit(X, cov, max_iter=2)
    full = cov in ("full", "tied")
    st = gm.accumulate(X)
    assert st.sum_xx.shape == {"full": (3, 3, 3), "tied": (1, 3, 3)}.get(cov, (3, 3))
    # independent: the second order from the responsibilities, by numpy (tied: pooled, X^T X)
    R = gm.predict_proba(X)
    ref = np.einsum("ik,id,ie->kde", R, X, X) if full else R.T @ (X * X)
    if cov == "tied":
        ref = ref.sum(axis=0, keepdims=True)
        np.testing.assert_allclose(st.sum_xx[0], X.T @ X, rtol=1e-10)
    np.testing.assert_allclose(st.sum_xx, ref, rtol=1e-10)
    np.testing.assert_allclose(st.sum_x, R.T @ X, rtol=1e-10)
    parts = gm.accumulate(X[:250]) + gm.accumulate(X[250:])
    np.testing.assert_allclose(parts.sum_xx, st.sum_xx, rtol=1e-12)
    one = GaussianMixture(**{**gm.get_params(), "max_iter": 1, "warm_start": True})
    one.weights_, one.means_, one.covariances_ = gm.weights_, gm.means_, gm.covariances_
    one.__dict__.update(converged_=True, lower_bound_=0.0, n_features_in_=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one.fit(X)
    gm.m_step(st)
    np.testing.assert_allclose(one.covariances_, gm.covariances_, rtol=1e-12)
    np.testing.assert_allclose(one.means_, gm.means_, rtol=1e-12)


@pytest.mark.parametrize("cov", TYPES)
def test_memmap_and_sample_weight(cov, tmp_path):
    X = _data(seed=5)
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=X.dtype, shape=X.shape)
    mm[:] = X
    reps = np.random.RandomState(0).randint(1, 4, len(X))
    a, b = _fit(mm, cov, max_iter=5), _fit(X, cov, max_iter=5)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=1e-10)
    # integer weights are repeated rows in the statistics (from fixed parameters)
    st_w = b.accumulate(X, sample_weight=reps)
    st_r = b.accumulate(np.repeat(X, reps, axis=0))
    np.testing.assert_allclose(st_w.sum_xx, st_r.sum_xx, rtol=1e-10)
    np.testing.assert_allclose(st_w.n, st_r.n, rtol=1e-10)


@pytest.mark.parametrize("cov", TYPES)
def test_precisions_init_is_used(cov):
    X = _data(seed=6)
    ref = _fit(X, cov, max_iter=3)
    gm = _fit(X, cov, max_iter=0, weights_init=ref.weights_, means_init=ref.means_,
              precisions_init=ref.precisions_)
    np.testing.assert_allclose(gm.covariances_, ref.covariances_, rtol=1e-9)
    np.testing.assert_allclose(gm.precisions_cholesky_, ref.precisions_cholesky_, rtol=1e-9)


@pytest.mark.parametrize("cov", ["full", "tied"])
def test_var_floor_floors_eigenvalues_relative_to_the_global_covariance(cov):
    X = _data(seed=7)
    X[:200] = X[:200] * 0.01 + X[:200].mean(axis=0)          # one tight cluster
    gm = _fit(X, cov, max_iter=5, var_floor=0.2, reg_covar=0.0)
    G = np.cov(X.T, bias=True)
    L = linalg.cholesky(G, lower=True)
    for c in _full_covs(gm)[:1 if cov == "tied" else None]:
        A = linalg.solve_triangular(L, linalg.solve_triangular(L, c, lower=True).T, lower=True)
        assert np.linalg.eigvalsh(A).min() >= 0.2 * (1 - 1e-8)
    free = _fit(X, cov, max_iter=5, reg_covar=0.0)
    assert np.linalg.eigvalsh(_full_covs(free)).min() < np.linalg.eigvalsh(_full_covs(gm)).min()


def test_spherical_var_floor_is_the_mean_global_variance():
    X = _data(seed=8)
    X[:200] = X[:200] * 0.01 + X[:200].mean(axis=0)
    gm = _fit(X, "spherical", max_iter=5, var_floor=0.1, reg_covar=0.0)
    assert gm.covariances_.min() >= 0.1 * X.var(axis=0).mean() * (1 - 1e-10)


def test_statistics_of_another_layout_are_refused():
    X = _data()
    full, diag = _fit(X, "full", max_iter=1), _fit(X, "diag", max_iter=1)
    with pytest.raises(ValueError, match=r"cannot update a covariance_type='full' model"):
        full.m_step(diag.accumulate(X))
    with pytest.raises(ValueError, match=r"cannot update a covariance_type='diag' model"):
        diag.m_step(full.accumulate(X))
    with pytest.raises(ValueError, match="cannot add GMMStats"):
        full.accumulate(X) + diag.accumulate(X)
    bad = full.accumulate(X)
    bad.sum_xx[0, 1, 1] = -1.0
    with pytest.raises(ValueError, match=r"negative second moment: sum_xx\[0, 1, 1\]"):
        full.m_step(bad)
    assert GMMStats.zeros(2, 3, full=True).sum_xx.shape == (2, 3, 3)


def test_from_parameters_every_type():
    rng = np.random.RandomState(0)
    w, mu = np.array([0.3, 0.7]), rng.randn(2, 3)
    A = rng.randn(2, 3, 3)
    full = A @ A.transpose(0, 2, 1) + np.eye(3)
    for cov, c in [("full", full), ("tied", full[0]), ("diag", np.ones((2, 3))), ("spherical", np.ones(2))]:
        gm = GaussianMixture.from_parameters(w, mu, c, covariance_type=cov)
        X = rng.randn(5, 3)
        ref = np.logaddexp.reduce([np.log(wk) + multivariate_normal(m, ck).logpdf(X)
                                   for wk, m, ck in zip(w, mu, _full_covs(gm))], axis=0)
        np.testing.assert_allclose(gm.score_samples(X), ref, rtol=1e-12)
        Xs, _ = gm.sample(50)
        assert Xs.shape == (50, 3)
    with pytest.raises(ValueError, match=r"must have shape \(2, 3, 3\)"):
        GaussianMixture.from_parameters(w, mu, np.ones((2, 3)), covariance_type="full")
    with pytest.raises(ValueError, match="positive-definite"):
        GaussianMixture.from_parameters(w, mu, -full, covariance_type="full")
    with pytest.raises(ValueError, match="symmetric"):
        GaussianMixture.from_parameters(w, mu, full + np.triu(np.ones(3), 1), covariance_type="full")


def test_default_covariance_type_is_full_as_sklearn():
    assert GaussianMixture().covariance_type == SK().covariance_type == "full"


def _scipy_logprob(gm, X):
    """(N, K) weighted log-densities of any type from scipy.stats.multivariate_normal."""
    return np.stack([np.log(w) + multivariate_normal(m, c).logpdf(X)
                     for w, m, c in zip(gm.weights_, gm.means_, _full_covs(gm))], axis=1)


@pytest.mark.parametrize("cov", TYPES)
def test_top_components_and_model_stack_every_type(cov):
    from scipy.special import logsumexp
    from gmmext import ModelStack, top_c_loglik

    X = _data()
    ubm = _fit(X, cov, max_iter=3, chunk_size=37)
    rng = np.random.RandomState(1)
    models = []
    for s in range(3):          # "adapted" models: moved means, other weights, the same type
        scale = 1 if cov == "tied" else 1 + s    # tied: the UBM's covariance (a stack shares it)
        m = GaussianMixture.from_parameters(rng.dirichlet(np.ones(3)), ubm.means_ + rng.randn(3, 3),
                                            ubm.covariances_ * scale, covariance_type=cov)
        models.append(m)
    ref = _scipy_logprob(ubm, X)
    for c in (1, 2, 3):
        idx, ll = ubm.top_components(X, c)
        order = np.argsort(-ref, axis=1, kind="stable")[:, :c]
        np.testing.assert_array_equal(np.sort(idx, axis=1), np.sort(order, axis=1))
        np.testing.assert_allclose(ll, logsumexp(np.take_along_axis(ref, order, 1), axis=1), rtol=1e-10)
        got = top_c_loglik(ModelStack(models, reference=ubm), X, idx)
        want = [logsumexp(np.take_along_axis(_scipy_logprob(m, X), idx.astype(int), 1), axis=1).sum()
                for m in models]
        np.testing.assert_allclose(got, want, rtol=1e-10)


def test_model_stack_refuses_models_of_another_layout():
    from gmmext import ModelStack

    X = _data()
    full, diag = _fit(X, "full", max_iter=2), _fit(X, "diag", max_iter=2)
    with pytest.raises(ValueError, match="cannot be scored in a stack whose reference is 'full'"):
        ModelStack([diag], reference=full)
    ModelStack([_fit(X, "spherical", max_iter=2)], reference=diag)     # same layout: accepted
    tied = _fit(X, "tied", max_iter=2)
    with pytest.raises(ValueError, match="reference is 'diag'"):
        ModelStack([tied], reference=diag)
    other = GaussianMixture.from_parameters(tied.weights_, tied.means_, 2 * tied.covariances_,
                                            covariance_type="tied")
    with pytest.raises(ValueError, match="must have the reference's covariances_"):
        ModelStack([other], reference=tied)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_tied_statistics_per_segment_and_whitened_scoring(dtype, rtol):
    """Tied: whitened E-step, pooled scatter; per segment equal to each segment alone and to numpy."""
    X = _data(seed=6)
    gm = _fit(X, "tied", max_iter=2, chunk_size=29)
    X = X.astype(dtype)
    segs = [X[:100], X[100:100], X[100:353], X[353:]]
    per = gm.accumulate_segments(segs)
    first = gm.accumulate_segments(segs, second_order=False)
    for s, p, f in zip(segs, per, first):
        x = s.astype(np.float64)
        R = _scipy_resp(gm, x)
        assert p.sum_xx.shape == (1, 3, 3) and f.sum_xx.shape == (1, 3, 3) and not f.sum_xx.any()
        np.testing.assert_allclose(p.n, R.sum(axis=0), rtol=rtol, atol=rtol * len(x))
        np.testing.assert_allclose(p.sum_x, R.T @ x, rtol=rtol, atol=rtol * np.abs(x).sum())
        np.testing.assert_allclose(p.sum_xx[0], x.T @ x, rtol=rtol, atol=rtol * (x * x).sum())
        np.testing.assert_allclose(f.sum_x, p.sum_x, rtol=1e-12, atol=1e-12)
    whole = sum(per)
    np.testing.assert_allclose(whole.sum_xx, gm.accumulate(X).sum_xx, rtol=rtol)


def _scipy_resp(gm, X):
    from scipy.special import softmax
    return softmax(_scipy_logprob(gm, X), axis=1)


def test_tied_random_from_data_starts_from_the_chosen_rows_not_sklearns_estimator():
    """tied + init_params="random_from_data": gmmext's start is the M-step of the assignment's
    own statistics (K rows, one per component: means at those rows, a within-component
    covariance of zero plus reg_covar), as for every other type.  scikit-learn's tied estimator
    adds X^T X over all N rows while the one-hot responsibilities cover only the K chosen rows,
    so its start is the scatter of all rows divided by K: the documented difference.  From the
    same given initial parameters the two EMs agree."""
    X = _data(seed=8)
    reg = 1e-6
    kw = dict(covariance_type="tied", init_params="random_from_data", random_state=0, reg_covar=reg)
    gm = GaussianMixture(3, max_iter=0, **kw).fit(X)
    rows = X[np.random.RandomState(0).choice(len(X), 3, replace=False)]      # scikit-learn's draw
    np.testing.assert_allclose(gm.means_, rows, rtol=1e-12)
    np.testing.assert_allclose(gm.covariances_, reg * np.eye(3), atol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk0 = SK(3, max_iter=0, **kw).fit(X)                                 # its initial model
        sk = SK(3, max_iter=1, tol=0.0, **kw).fit(X)
    nk = np.ones(3) + 10 * np.finfo(np.float64).eps
    expected = (X.T @ X - (nk[:, None, None] * rows[:, :, None] * rows[:, None, :]).sum(0)) / nk.sum()
    np.testing.assert_allclose(sk0.covariances_, expected + reg * np.eye(3), rtol=1e-9)
    assert sk.lower_bounds_[0] > 1e3 * GaussianMixture(3, max_iter=1, tol=0.0, **kw).fit(X).lower_bounds_[0]
    # from given initial parameters the two agree
    given = dict(covariance_type="tied", weights_init=gm.weights_, means_init=gm.means_,
                 precisions_init=np.linalg.inv(np.eye(3) * 0.5), max_iter=20, tol=0.0, random_state=0)
    a, b = SK(3, **given).fit(X), GaussianMixture(3, **given).fit(X)
    np.testing.assert_allclose(b.means_, a.means_, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(b.covariances_, a.covariances_, rtol=1e-10, atol=1e-10)
    assert b.lower_bound_ == pytest.approx(a.lower_bound_, rel=1e-12)


def test_tied_fit_computes_the_pooled_scatter_once_and_equals_sklearn(monkeypatch):
    """The pooled scatter sum_i w_i x_i x_i^T of a "tied" fit does not depend on the model: one
    pass per fit (not per EM iteration); the fit still equals scikit-learn's from the same start."""
    from gmmext._engine import Engine
    calls = []
    real = Engine._scatter

    def counting(self, *a, **kw):
        calls.append(1)
        return real(self, *a, **kw)

    monkeypatch.setattr(Engine, "_scatter", counting)
    X = _data(n=900, d=4, k=3, seed=3)
    means0 = X[[0, 400, 800]]
    kw = dict(covariance_type="tied", max_iter=8, tol=0, means_init=means0, random_state=0)
    gm = GaussianMixture(3, **kw).fit(X)
    assert len(calls) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = SK(3, **kw).fit(X)
    np.testing.assert_allclose(gm.means_, sk.means_, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(gm.covariances_, sk.covariances_, rtol=1e-8, atol=1e-8)
    # the statistics of one call still use the scatter of their own data
    direct = np.einsum("i,ij,ik->jk", np.ones(300), X[:300], X[:300])
    np.testing.assert_allclose(gm.accumulate(X[:300]).sum_xx[0], direct, rtol=1e-10)


@pytest.mark.parametrize("cov", TYPES)
def test_float32_m_step_far_from_the_origin_is_the_centred_covariance(cov):
    # Statistics of data 1e4 off the origin with unit spreads, made by numpy in float64 from
    # fixed responsibilities, into a float32 model's M-step; independent reference: numpy's
    # weighted centred covariance. With float32's 10 eps (1.2e-6) added to every occupancy, as
    # scikit-learn computing in float32 does, sum_xx / (n + eps) - mean**2 was off by
    # mean**2 eps / n (0.24-0.27 here).
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(size=(500, 2)), rng.normal(size=(500, 2)) + 4] + 1e4
    R = np.r_[np.tile([0.9, 0.1], (500, 1)), np.tile([0.2, 0.8], (500, 1))]
    nk = R.sum(axis=0)
    full = cov in ("full", "tied")
    sxx = np.einsum("ik,id,ie->kde", R, X, X) if full else R.T @ (X * X)
    stats = GMMStats(nk, R.T @ X, sxx.sum(axis=0, keepdims=True) if cov == "tied" else sxx, 0.0, 1000.0)
    covs = np.stack([np.cov(X.T, aweights=R[:, k], bias=True) for k in range(2)])
    ref = {"full": covs, "tied": np.einsum("k,kij->ij", nk, covs) / nk.sum(),
           "diag": np.diagonal(covs, axis1=1, axis2=2),
           "spherical": np.diagonal(covs, axis1=1, axis2=2).mean(axis=1)}[cov]
    cov0 = {"full": np.array([np.eye(2)] * 2), "tied": np.eye(2), "diag": np.ones((2, 2)),
            "spherical": np.ones(2)}[cov]
    gm = GaussianMixture.from_parameters(np.float32([0.5, 0.5]), np.float32(X[[0, 700]]),
                                         np.float32(cov0), covariance_type=cov)
    gm.m_step(stats)
    assert gm.covariances_.dtype == np.float32
    np.testing.assert_allclose(gm.means_, (R.T @ X) / nk[:, None], rtol=1e-6)
    np.testing.assert_allclose(gm.covariances_, ref + (np.eye(2) if full else 1) * gm.reg_covar, rtol=1e-5)


def test_float32_tied_statistics_far_from_the_origin_give_the_centred_covariance():
    # In float32 a frame's responsibilities sum to its weight only to rounding (on average
    # 1 + 2e-9 here), and the tied M-step subtracts sum_k n_k mu_k mu_k^T (~N |mean|^2) from the
    # pooled scatter of a separate pass: with the data 1e4 off the origin that bias took 0.22
    # off a unit variance. Independent: numpy's weighted centred within-component covariance
    # under the same model's float64 responsibilities.
    rng = np.random.default_rng(0)
    X = (np.r_[rng.normal(size=(5000, 2)), rng.normal(size=(5000, 2)) + 4] + 1e4).astype(np.float32)
    params = (np.float32([0.5, 0.5]), np.float32([[0, 0], [4, 4]]) + np.float32(1e4), np.eye(2, dtype=np.float32))
    gm = GaussianMixture.from_parameters(*params, covariance_type="tied")
    X64 = X.astype(np.float64)
    R = GaussianMixture.from_parameters(*(p.astype(np.float64) for p in params),
                                        covariance_type="tied").predict_proba(X64)
    nk = R.sum(axis=0)
    ref = sum(nk[k] * np.cov(X64.T, aweights=R[:, k], bias=True) for k in range(2)) / nk.sum()
    gm.m_step(gm.accumulate(X))
    np.testing.assert_allclose(gm.covariances_, ref + gm.reg_covar * np.eye(2), atol=1e-4)


def test_fit_warns_on_features_far_from_the_origin():
    # 1e8 off the origin (unit spreads) the float64 statistics' variances are rounding noise: the
    # "diag" fit is worse than the same fit of the centred data (docs/mixture.md: -4.49 against
    # -3.53 nats), silently before this warning
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(size=(500, 2)), rng.normal(size=(500, 2)) + 4]
    with pytest.warns(UserWarning, match=r"feature\(s\) \[0, 1\] .* centre the features first"):
        gm = GaussianMixture(2, covariance_type="diag", random_state=0).fit(X + 1e8)
    assert gm.score(X + 1e8) < GaussianMixture(2, covariance_type="diag", random_state=0).fit(X).score(X) - 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        GaussianMixture(2, covariance_type="diag", random_state=0).fit(X + 1e6)
        constant = np.c_[X, np.full(len(X), 5.0)]        # zero spread: not "far", reg_covar's business
        GaussianMixture(2, covariance_type="diag", random_state=0).fit(constant)
