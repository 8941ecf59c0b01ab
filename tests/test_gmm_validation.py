"""Validation that is the same for every input kind (in memory, memmap, lazy array-like, Dask):
scikit-learn's parameter constraints and messages, one sample-weight checker, usable parameters,
statistics checked against the model, the initialisation rules (issues 10 and 11)."""
import warnings

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.utils._param_validation import InvalidParameterError

from conftest import make_blobs
from gmmext import GaussianMixture, GMMStats
from gmmext._validation import parameter_bounds

KINDS = ("memory", "memmap", "lazy", "dask")


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


class LazyRows:
    """An array-like that only hands out row slices (as an h5py or zarr dataset would);
    ``columns`` lets its slices disagree with the shape it declares."""

    def __init__(self, X, shape=None, columns=None):
        self._X, self.dtype = X, X.dtype
        self.shape = X.shape if shape is None else shape
        self._cols = columns

    def __getitem__(self, key):
        part = self._X[key]
        return part if self._cols is None else part[:, :self._cols]


def as_kind(kind, X, tmp_path):
    if kind == "memory":
        return X
    if kind == "memmap":
        np.save(tmp_path / "X.npy", X)
        return np.load(tmp_path / "X.npy", mmap_mode="r")
    if kind == "lazy":
        return LazyRows(X)
    da = pytest.importorskip("dask.array")
    return da.from_array(X, chunks=(40, X.shape[1]))


def message(fn) -> str:
    with pytest.raises(ValueError) as info:
        fn()
    return str(info.value)


# ------------------------------------------------------------------ constructor parameters
@pytest.mark.parametrize("kw,name", [
    (dict(n_components=0), "n_components"), (dict(n_components=2.5), "n_components"),
    (dict(tol=np.nan), "tol"), (dict(tol=-1.0), "tol"), (dict(reg_covar=-1e-3), "reg_covar"),
    (dict(reg_covar=np.inf), "reg_covar"), (dict(max_iter=-1), "max_iter"), (dict(n_init=0), "n_init"),
    (dict(init_params="bogus"), "init_params"), (dict(covariance_type="bogus"), "covariance_type"),
    (dict(random_state="x"), "random_state"), (dict(warm_start="yes"), "warm_start"),
    (dict(verbose_interval=0), "verbose_interval"), (dict(var_floor=-0.1), "var_floor"),
    (dict(var_floor=np.nan), "var_floor"), (dict(var_floor=np.inf), "var_floor"),
    (dict(chunk_size=0), "chunk_size"), (dict(chunk_size=1.5), "chunk_size"),
    (dict(n_threads=2.7), "n_threads"), (dict(n_threads=0), "n_threads"),
    (dict(kmeans_max_samples=0), "kmeans_max_samples"), (dict(means_init="abc"), "means_init")])
def test_bad_parameters_raise_sklearns_invalid_parameter_error(kw, name):
    X = make_blobs(n=60, d=2, k=2)
    with pytest.raises(InvalidParameterError, match=rf"^The '{name}' parameter of GaussianMixture must be "):
        GaussianMixture(**{"n_components": 2, "covariance_type": "diag", **kw}).fit(X)
    with pytest.raises(InvalidParameterError, match=rf"^The '{name}' parameter of GaussianMixture must be "):
        GaussianMixture(**{"n_components": 2, "covariance_type": "diag", **kw}).fit_predict(X)


@pytest.mark.parametrize("kw,name", [
    (dict(chunk_size=0), "chunk_size"), (dict(chunk_size=1.5), "chunk_size"), (dict(chunk_size=-5), "chunk_size"),
    (dict(n_threads=2.7), "n_threads"), (dict(reg_covar=-1.0), "reg_covar"), (dict(var_floor=np.nan), "var_floor")])
def test_from_parameters_validates_parameters_like_the_constructor(kw, name):
    """Issue 11 item 16: chunk_size=0 / 1.5 / -5 and n_threads=2.7 used to be accepted (or to fail
    later with "negative dimensions are not allowed")."""
    with pytest.raises(InvalidParameterError, match=rf"^The '{name}' parameter of GaussianMixture must be "):
        GaussianMixture.from_parameters([0.5, 0.5], np.zeros((2, 2)), np.ones((2, 2)), **kw)


def test_from_parameters_refuses_complex_parameters():
    for args in (([0.5, 0.5], np.zeros((2, 2)) + 1j, np.ones((2, 2))),
                 ([0.5, 0.5], np.zeros((2, 2)), np.ones((2, 2), dtype=complex)),
                 (np.array([0.5, 0.5], dtype=complex), np.zeros((2, 2)), np.ones((2, 2)))):
        with pytest.raises(ValueError, match="Complex data not supported"):
            GaussianMixture.from_parameters(*args)


# ------------------------------------------------------------------ sample weights: one checker
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", ["negative", "nan", "inf", "zeros", "short", "2d"])
def test_sample_weight_errors_are_the_same_for_every_input_kind(kind, case, tmp_path):
    X = make_blobs(n=120, d=3, k=2)
    sw = {"negative": -np.ones(120), "nan": np.full(120, np.nan), "inf": np.full(120, np.inf),
          "zeros": np.zeros(120), "short": np.ones(119), "2d": np.ones((120, 1))}[case]
    ref = message(lambda: GaussianMixture(2, covariance_type="diag").fit(X, sample_weight=sw))
    assert ref in {"Negative values in data passed to `sample_weight`.", "Input sample_weight contains NaN.",
                   "Input sample_weight contains infinity or a value too large for dtype('float64').",
                   "Sample weights must contain at least one non-zero number.",
                   "sample_weight.shape == (119,), expected (120,)!"} or ref.startswith("Sample weights must be 1D")
    assert message(lambda: GaussianMixture(2, covariance_type="diag").fit(as_kind(kind, X, tmp_path), sample_weight=sw)) == ref


@pytest.mark.parametrize("case", ["negative", "nan", "zeros", "short"])
def test_dask_sample_weight_blocks_are_checked_with_the_same_messages(case):
    da = pytest.importorskip("dask.array")
    X = make_blobs(n=120, d=3, k=2)
    sw = {"negative": np.r_[np.ones(100), -np.ones(20)], "nan": np.r_[np.ones(50), np.nan, np.ones(69)],
          "zeros": np.zeros(120), "short": np.ones(119)}[case]
    ref = message(lambda: GaussianMixture(2, covariance_type="diag").fit(X, sample_weight=sw))
    got = message(lambda: GaussianMixture(2, covariance_type="diag").fit(da.from_array(X, chunks=(40, 3)),
                                                 sample_weight=da.from_array(sw, chunks=40)))
    assert got == ref or (got.startswith("rows ") and got.endswith(": " + ref)), (got, ref)


# ------------------------------------------------------------------ data: the same checks per block
@pytest.mark.parametrize("kind", ["memmap", "lazy", "dask"])
def test_complex_data_is_refused_for_every_input_kind(kind, tmp_path):
    """Issue 11 item 15: a complex memmap used to be fitted on its real part (a ComplexWarning)."""
    X = make_blobs(n=120, d=3, k=2) + 0.5j
    assert message(lambda: GaussianMixture(2, covariance_type="diag").fit(X)).startswith("Complex data not supported")
    assert message(lambda: GaussianMixture(2, covariance_type="diag").fit(as_kind(kind, X, tmp_path))).startswith("Complex data not supported")


def test_an_array_like_whose_slices_disagree_with_its_shape_is_refused():
    """Issue 11 item 15: slices of 3 columns under a declared shape of 5 used to "fit" (means_ (3, 3))."""
    X = make_blobs(n=300, d=5, k=3)
    liar = LazyRows(X, columns=3)
    with pytest.raises(ValueError, match=r"rows 0:300: X has 3 features, but GaussianMixture is expecting 5 "):
        GaussianMixture(3, random_state=0, covariance_type="diag").fit(liar)
    short = LazyRows(X[:, :3], shape=(300, 5))
    with pytest.raises(ValueError, match="X has 3 features, but GaussianMixture is expecting 5"):
        GaussianMixture(3, init_params="random", random_state=0, covariance_type="diag").fit(short)


@pytest.mark.parametrize("kind", ["memmap", "lazy", "dask"])
@pytest.mark.parametrize("init", ["random", "kmeans", "random_from_data", "k-means++"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_out_of_core_data_gets_check_arrays_message(kind, init, bad, tmp_path):
    """Issue 11 item 15: NaN in a memmap with init_params="random" used to report "magnitude overflows"."""
    X = make_blobs(n=200, d=3, k=2)
    X[57, 1] = bad
    ref = message(lambda: GaussianMixture(2, init_params=init, random_state=0, covariance_type="diag").fit(X))
    assert ref.startswith("Input X contains " + ("NaN" if np.isnan(bad) else "infinity"))
    got = message(lambda: GaussianMixture(2, init_params=init, random_state=0, covariance_type="diag").fit(as_kind(kind, X, tmp_path)))
    assert got == ref or (got.startswith("rows ") and got.endswith(": " + ref)), (got, ref)


# ------------------------------------------------------------------ usable parameters
def _hostile():
    w = np.array([0.5, 0.5])
    mu, var = np.zeros((2, 3)), np.ones((2, 3))
    tiny_var = var.copy()
    tiny_var[1, 2] = 1e-310
    big_mean = mu.copy()
    big_mean[0, 1] = 1e200
    spread = mu.copy()
    spread[1, 0] = 1e150                      # |mean| and variance fine, (1e150)**2 / 1e-10 overflows
    f32_mean = mu.astype(np.float32)
    f32_mean[0, 0] = 3e38
    return [("variance 1e-310", (w, mu, tiny_var)), ("mean 1e200", (w, big_mean, var)),
            ("spread 1e150", (w, spread, np.full((2, 3), 1e-10))),
            ("float32 mean 3e38", (w.astype(np.float32), f32_mean, var.astype(np.float32)))]


@pytest.mark.parametrize("case", _hostile(), ids=lambda c: c[0])
def test_hostile_parameters_are_refused(case):
    """Issue 11 item 4: these loaded fine; score_samples gave -inf and predict_proba rows summed to 0."""
    w, mu, var = case[1]
    gmm = GaussianMixture.from_parameters
    with pytest.raises(ValueError, match="must be|overflow"):
        gmm(w, mu, var)


@pytest.mark.parametrize("case", _hostile(), ids=lambda c: c[0])
def test_a_model_stack_from_parameters_refuses_what_from_parameters_refuses(case):
    """The same bounds for a stack of models given by arrays (a store's speakers): a hostile
    model among good ones is refused with GaussianMixture.from_parameters' own message, naming
    its position (it used to be stacked, and scored NaN or a wrong finite number)."""
    from gmmext import ModelStack
    w, mu, var = case[1]
    with pytest.raises(ValueError) as single:
        GaussianMixture.from_parameters(w, mu, var)
    dtype = np.result_type(w, mu, var)
    ubm = GaussianMixture.from_parameters(np.full(2, 0.5, dtype), np.zeros((2, 3), dtype),
                                          np.ones((2, 3), dtype))
    W, MU, VAR = (np.stack([np.broadcast_to(g, a.shape), a]).astype(dtype)
                  for g, a in ((ubm.weights_, w), (ubm.means_, mu), (ubm.covariances_, var)))
    with pytest.raises(ValueError) as stacked:
        ModelStack.from_parameters(W, MU, ubm, covariances=VAR)
    assert str(stacked.value).startswith("model 1")
    assert str(single.value).split(": ")[-1] in str(stacked.value)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_parameters_at_the_bounds_give_finite_scores(dtype):
    """The documented bounds are enough: a model just inside every bound scores finitely at its
    own means (the frames that matter) and its responsibilities sum to 1."""
    b = parameter_bounds(dtype)
    w = np.array([0.5, 0.5], dtype=dtype)
    tiny = GaussianMixture.from_parameters(w, np.zeros((2, 2), dtype), np.full((2, 2), 1.01 * b["var_min"], dtype))
    R = 0.99 * b["mean_max"]
    var = np.full((2, 2), 2 * R * R / (0.99 * b["spread_max"]))          # sum_d R**2 / var just inside
    far = GaussianMixture.from_parameters(w, np.array([[0.0, 0.0], [R, -R]], dtype), var.astype(dtype))
    for gm in (tiny, far):
        X = gm.means_.copy()
        assert np.all(np.isfinite(gm.score_samples(X)))
        np.testing.assert_allclose(gm.predict_proba(X).astype(np.float64).sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError):
        GaussianMixture.from_parameters(w, np.zeros((2, 2), dtype), np.full((2, 2), 0.9 * b["var_min"], dtype))
    with pytest.raises(ValueError):
        GaussianMixture.from_parameters(w, np.array([[0, 0], [1.01 * b["mean_max"], 0]], dtype), np.ones((2, 2), dtype))


def test_m_step_results_are_checked_for_usability():
    """A float32 model whose M-step means would exceed 4.6e18: refused, the model unchanged."""
    X = make_blobs(n=200, d=2, k=2).astype(np.float32)
    gm = GaussianMixture(2, random_state=0, covariance_type="diag").fit(X)
    before = [gm.means_.copy(), gm.covariances_.copy()]
    s = gm.accumulate(X)
    big = GMMStats(s.n, s.sum_x * 1e19, s.sum_xx * 1e38, s.loglik, s.n_samples)
    with pytest.raises(ValueError, match="overflows float32.*float64"):
        gm.m_step(big)
    np.testing.assert_array_equal(gm.means_, before[0])
    np.testing.assert_array_equal(gm.covariances_, before[1])
    w64 = gm.weights_.astype(np.float64)
    gm64 = GaussianMixture.from_parameters(w64 / w64.sum(), gm.means_.astype(np.float64),
                                           gm.covariances_.astype(np.float64))
    gm64.m_step(big)                                         # what the message says works
    assert np.all(np.isfinite(gm64.score_samples(X.astype(np.float64) * 1e19)))


# ------------------------------------------------------------------ statistics against the model
def _bad_stats(s):
    neg = s.n.copy()
    neg[1] = -5.0
    neg_xx = s.sum_xx.copy()
    neg_xx[0, 2] = -1.0
    nan_x = s.sum_x.copy()
    nan_x[1, 0] = np.nan
    return [("D wrong", GMMStats(s.n, s.sum_x[:, :2], s.sum_xx[:, :2], s.loglik, s.n_samples), "2 features"),
            ("K wrong", GMMStats(np.r_[s.n, 1.0], np.vstack([s.sum_x, s.sum_x[:1]]),
                                 np.vstack([s.sum_xx, s.sum_xx[:1]]), s.loglik, s.n_samples), "components"),
            ("negative count", GMMStats(neg, s.sum_x, s.sum_xx, s.loglik, s.n_samples), "negative occupancy"),
            ("negative sum_xx", GMMStats(s.n, s.sum_x, neg_xx, s.loglik, s.n_samples), "negative second moment"),
            ("NaN", GMMStats(s.n, nan_x, s.sum_xx, s.loglik, s.n_samples), "NaN"),
            ("zero weight", GMMStats(s.n, s.sum_x, s.sum_xx, s.loglik, 0.0), "zero total weight"),
            ("nan weight", GMMStats(s.n, s.sum_x, s.sum_xx, s.loglik, np.nan), "zero total weight")]


@pytest.mark.parametrize("i", range(7))
def test_m_step_refuses_statistics_that_do_not_fit_the_model(i):
    """Issue 11 item 13: D wrong used to reshape means_; negative counts gave negative weights."""
    X = make_blobs(n=300, d=3, k=3)
    gm = GaussianMixture(3, random_state=0, covariance_type="diag").fit(X)
    name, bad, match = _bad_stats(gm.accumulate(X))[i]
    before = gm.get_params(), gm.weights_.copy(), gm.means_.copy(), gm.covariances_.copy()
    with pytest.raises(ValueError, match=match):
        gm.m_step(bad)
    for a, b in zip(before[1:], (gm.weights_, gm.means_, gm.covariances_)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="GMMStats"):
        gm.m_step({"n": gm.weights_})


def test_m_step_tolerates_rounding_below_zero():
    """Statistics obtained by subtraction can be -1e-16 where the truth is 0: that is an empty component."""
    X = make_blobs(n=300, d=3, k=2)
    gm = GaussianMixture(2, random_state=0, covariance_type="diag").fit(X)
    s = gm.accumulate(X)
    part = gm.accumulate(X[:100])
    rest = GMMStats(s.n - part.n, s.sum_x - part.sum_x, s.sum_xx - part.sum_xx, s.loglik - part.loglik,
                    s.n_samples - part.n_samples)      # statistics of X[100:] by subtraction
    gm.m_step(rest)
    assert np.all(gm.weights_ >= 0) and np.all(np.isfinite(gm.score_samples(X)))
    n = s.n.copy()
    n[1] = -1e-13
    GaussianMixture(2, random_state=0, covariance_type="diag").fit(X).m_step(GMMStats(n, s.sum_x * [[1], [0]], s.sum_xx * [[1], [0]],
                                                             s.loglik, s.n_samples))


# ------------------------------------------------------------------ one formula for the global model
def test_global_model_is_the_m_step_of_one_component_on_pooled_statistics():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 4)) * [1, 10, 0.1, 3] + [5, -2, 0, 1e3]
    w = rng.uniform(0.1, 2.0, size=2000)
    gm = GaussianMixture(3, random_state=0, max_iter=5, covariance_type="diag").fit(X)
    pooled = gm.accumulate(X, w).pooled()
    one = GaussianMixture(1, reg_covar=1e-6, covariance_type="diag").m_step(pooled)          # no fit needed
    assert one.n_features_in_ == 4 and np.all(np.isfinite(one.score_samples(X)))
    with pytest.raises(ValueError, match="4 features"):
        one.score_samples(X[:, :3])
    mean = np.average(X, axis=0, weights=w)
    np.testing.assert_allclose(one.means_[0], mean, rtol=1e-9)
    np.testing.assert_allclose(one.covariances_[0], np.average((X - mean) ** 2, axis=0, weights=w) + 1e-6,
                               rtol=1e-7)
    means, var = pooled.moments()
    np.testing.assert_allclose(var[0], np.cov(X.T, aweights=w, bias=True).diagonal(), rtol=1e-7)


# ------------------------------------------------------------------ "kmeans" initialisation
def test_kmeans_init_is_the_hard_statistics_of_the_sampled_rows(tmp_path):
    """Issue 10: above kmeans_max_samples, KMeans runs on a sample and the initial parameters are the
    statistics of that sample only: every initial weight is (count of sampled rows + 10 eps) / total.
    (5000 rows: 3 x 1000 > 5000 // 2, so no EM on a larger sample follows.)"""
    X = make_blobs(n=5000, d=3, k=4, seed=2)
    kms = 1000
    init = GaussianMixture(4, random_state=0, max_iter=0, kmeans_max_samples=kms, covariance_type="diag").fit(X)
    counts = init.weights_ * kms
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
    assert np.round(counts).sum() == kms
    # the initial means are the KMeans centres of those rows (KMeans' centres are its clusters' means)
    inertia_like = [np.min(((X - m) ** 2).sum(axis=1)) for m in init.means_]
    assert max(inertia_like) < 10.0
    # the same rows from the same random_state give the same initial model for every input kind
    for kind in ("memmap", "lazy", "dask"):
        other = GaussianMixture(4, random_state=0, max_iter=0, kmeans_max_samples=kms, covariance_type="diag").fit(as_kind(kind, X, tmp_path))
        for name in ("weights_", "means_", "covariances_"):
            np.testing.assert_allclose(getattr(other, name), getattr(init, name), rtol=1e-12, err_msg=(kind, name))


def test_sampled_kmeans_start_then_em_on_a_larger_sample_is_sklearns_em(tmp_path):
    """Above kmeans_max_samples (kms), when 3 kms <= N // 2: the best of 3 KMeans runs of at most
    20 iterations on kms drawn rows, their hard statistics, then EM on 3 kms other drawn rows until
    an iteration gains less than tol x 3 kms / N: scikit-learn's EM from that start on those rows
    with that tol, for an array and a memmap."""
    from sklearn.mixture import GaussianMixture as SKGaussianMixture
    from gmmext._init import sample_rows
    X = make_blobs(n=6000, d=3, k=5, seed=7)
    K, kms = 6, 1000
    rs = np.random.RandomState(3)
    idx = sample_rows(len(X), kms, rs)
    labels = KMeans(K, n_init=3, max_iter=20, random_state=rs).fit(X[idx]).labels_
    em_rows = X[sample_rows(len(X), 3 * kms, rs)]
    S = X[idx]
    n = np.bincount(labels, minlength=K).astype(float)
    means = np.array([S[labels == k].mean(axis=0) for k in range(K)])
    var = np.array([S[labels == k].var(axis=0) for k in range(K)]) + 1e-6
    ref = SKGaussianMixture(K, covariance_type="diag", weights_init=n / n.sum(), means_init=means,
                            precisions_init=1 / var, max_iter=100, tol=1e-3 * 3 * kms / len(X)).fit(em_rows)
    assert 2 < ref.n_iter_ < 100 and ref.converged_         # the rule stopped it, not the cap
    for kind in ("array", "memmap"):
        data = X if kind == "array" else as_kind(kind, X, tmp_path)
        init = GaussianMixture(K, random_state=3, max_iter=0, kmeans_max_samples=kms,
                               covariance_type="diag").fit(data)
        order = [int(np.argmin(((init.means_ - m) ** 2).sum(axis=1))) for m in ref.means_]
        assert sorted(order) == list(range(K))
        np.testing.assert_allclose(init.means_[order], ref.means_, rtol=1e-7, atol=1e-9, err_msg=kind)
        np.testing.assert_allclose(init.covariances_[order], ref.covariances_, rtol=1e-7, err_msg=kind)
        np.testing.assert_allclose(init.weights_[order], ref.weights_, rtol=1e-7, err_msg=kind)


def test_sampled_start_with_tol_zero_stops_as_with_the_default_tol():
    """tol=0 (no convergence test on all rows) runs the sample's EM with scikit-learn's default
    1e-3, not to its cap: the start is the default tol's, and another tol gives another start."""
    X = make_blobs(n=6000, d=3, k=5, seed=7)
    start = {tol: GaussianMixture(6, random_state=3, max_iter=0, kmeans_max_samples=1000, tol=tol,
                                  covariance_type="diag").fit(X).means_ for tol in (0.0, 1e-3, 1e-6)}
    np.testing.assert_array_equal(start[0.0], start[1e-3])
    assert not np.array_equal(start[1e-6], start[1e-3])


def test_sampled_start_weights(monkeypatch):
    """The EM on the drawn rows is weighted: a constant weight changes nothing (the stopping rule
    compares averages per unit of weight), and drawn rows that all weigh 0 leave the KMeans start
    as it is (the start with no EM on a sample) instead of failing in an M-step of zero weight."""
    import gmmext._mixture as mixture
    from gmmext._init import sample_rows
    X = make_blobs(n=6000, d=3, k=5, seed=7)
    fit = lambda w: GaussianMixture(6, random_state=3, max_iter=0, kmeans_max_samples=1000,  # noqa: E731
                                    covariance_type="diag").fit(X, sample_weight=w)
    np.testing.assert_allclose(fit(np.full(len(X), 5.0)).means_, fit(None).means_, rtol=1e-10, atol=1e-12)
    rs = np.random.RandomState(3)                                   # the draws of fit(random_state=3)
    sample_rows(len(X), 1000, rs)                                   # KMeans's rows
    KMeans(6, n_init=3, max_iter=20, random_state=rs).fit(X[:50])   # consumes rs as the fit's KMeans does
    w = np.ones(len(X))
    w[sample_rows(len(X), 3000, rs)] = 0.0                          # the EM's rows weigh 0
    start = fit(w)
    monkeypatch.setattr(mixture, "SAMPLE_EM_MAX_ITER", 0)
    np.testing.assert_array_equal(start.means_, fit(w).means_)
    np.testing.assert_array_equal(start.covariances_, fit(w).covariances_)


def test_default_sampled_start_reaches_sklearns_lower_bound():
    """On overlapping clusters (more components than KMeans can place from a small sample alone)
    the sampled start's whole fit reaches scikit-learn's final lower bound: mean over random_state
    0..2 not below scikit-learn's by more than 0.005 nats per row (an independent check of the
    start's quality; scikit-learn runs KMeans on every row)."""
    from sklearn.mixture import GaussianMixture as SKGaussianMixture
    rng = np.random.default_rng(11)
    K, D, N = 12, 4, 8000
    mu, sd = rng.normal(scale=1.5, size=(K, D)), rng.uniform(0.4, 1.0, size=(K, D))
    z = rng.choice(K, N, p=rng.dirichlet(np.full(K, 2.0)))
    X = mu[z] + sd[z] * rng.standard_normal((N, D))
    ours = [GaussianMixture(K, covariance_type="diag", random_state=s, kmeans_max_samples=600).fit(X).lower_bound_
            for s in range(3)]
    theirs = [SKGaussianMixture(K, covariance_type="diag", random_state=s).fit(X).lower_bound_ for s in range(3)]
    assert np.mean(ours) >= np.mean(theirs) - 0.005, (ours, theirs)


def test_kmeans_init_on_all_rows_is_sklearns():
    """N <= kmeans_max_samples: KMeans(n_init=1) on all rows, its labels' hard statistics."""
    X = make_blobs(n=800, d=3, k=3, seed=3)
    init = GaussianMixture(3, random_state=5, max_iter=0, reg_covar=0.0, covariance_type="diag").fit(X)
    _assert_statistics_of_kmeans_labels(init, X, 3, seed=5)


def _assert_statistics_of_kmeans_labels(init, X, K, seed, n_init=1, labels=None):
    """``init``'s parameters are the statistics of scikit-learn's KMeans(n_init) labels of all of X."""
    if labels is None:
        labels = KMeans(K, n_init=n_init, random_state=np.random.RandomState(seed)).fit(X).labels_
    for k in range(K):
        rows = X[labels == k]
        j = int(np.argmin(np.abs(init.means_ - rows.mean(axis=0)).sum(axis=1)))
        np.testing.assert_allclose(init.means_[j], rows.mean(axis=0), rtol=1e-10)
        np.testing.assert_allclose(init.covariances_[j], rows.var(axis=0), rtol=1e-8)
        assert init.weights_[j] == pytest.approx(len(rows) / len(X), rel=1e-10)


def test_kmeans_max_samples_auto_and_none():
    """The default "auto" runs KMeans on max(10_000, 100 K) drawn rows when there are more (every
    initial weight is a count of those rows over their number); None runs it on every row, and
    the start is then scikit-learn's KMeans(n_init=1) labels' statistics."""
    X = make_blobs(n=12_000, d=3, k=4, seed=4)
    auto = GaussianMixture(4, random_state=5, max_iter=0, reg_covar=0.0, covariance_type="diag").fit(X)
    counts = auto.weights_ * 10_000
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-8)
    assert np.round(counts).sum() == 10_000
    every = GaussianMixture(4, random_state=5, max_iter=0, reg_covar=0.0, covariance_type="diag",
                            kmeans_max_samples=None).fit(X)
    _assert_statistics_of_kmeans_labels(every, X, 4, seed=5)
    # a sample of S of N rows: the best of min(3, N // S) KMeans runs on the rows drawn
    from gmmext._init import sample_rows
    rs = np.random.RandomState(5)
    idx = sample_rows(len(X), 3000, rs)
    labels = KMeans(7, n_init=3, random_state=rs).fit(X[idx]).labels_       # 7 > 4 blobs: runs differ
    three = GaussianMixture(7, random_state=5, max_iter=0, reg_covar=0.0, covariance_type="diag",
                            kmeans_max_samples=3000).fit(X)
    _assert_statistics_of_kmeans_labels(three, X[idx], 7, None, labels=labels)
    # "auto" grows with K: 100 rows per component above 10,000
    from gmmext._init import max_samples
    assert [max_samples("auto", 10**6, k) for k in (1, 100, 101, 1024)] == [10_000, 10_000, 10_100, 102_400]
    assert max_samples(None, 12_345, 64) == 12_345 and max_samples(777, 12_345, 64) == 777


def test_dask_accumulate_validates_its_arguments_and_blocks():
    da = pytest.importorskip("dask.array")
    from gmmext import dask_accumulate
    X = make_blobs(n=200, d=3, k=2)
    gm = GaussianMixture(2, random_state=0, covariance_type="diag").fit(X)
    with pytest.raises(InvalidParameterError, match="'n_threads' parameter of dask_accumulate"):
        dask_accumulate(gm, da.from_array(X, chunks=50), n_threads=0)
    with pytest.raises(InvalidParameterError, match="'gm' parameter of dask_accumulate"):
        dask_accumulate("not a model", da.from_array(X, chunks=50))
    with pytest.raises(ValueError, match=r"rows 0:200: X has 2 features, but GaussianMixture is expecting 3"):
        dask_accumulate(gm, da.from_array(X[:, :2], chunks=(200, 2)))
    s = dask_accumulate(gm, da.from_array(X, chunks=(50, 3)))
    ref = gm.accumulate(X)
    np.testing.assert_allclose(s.sum_x, ref.sum_x, rtol=1e-12)


def test_check_block_fast_path_returns_what_check_array_returns():
    """A finite float ndarray of the dtype asked for skips check_array (its per-call cost is most
    of a Dask task over 256 utterances) and comes back as check_array gives it; anything else
    still gets check_array's conversion or message, behind the block's rows."""
    import tempfile
    from sklearn.utils.validation import check_array
    from gmmext._validation import check_block
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        X = rng.normal(size=(7, 3)).astype(dtype)[:, ::1]
        for want in (None, dtype):
            got = check_block(X, 3, want)
            assert got is X
            ref = check_array(X, dtype=[np.float64, np.float32] if want is None else want)
            assert got.dtype == ref.dtype and np.array_equal(got, ref)
    with tempfile.TemporaryDirectory() as d:
        m = np.memmap(f"{d}/x.dat", dtype=np.float32, mode="w+", shape=(4, 3))
        got = check_block(m, 3)
        assert type(got) is np.ndarray and np.shares_memory(got, m)
        del got, m
    X = rng.normal(size=(5, 3))
    assert check_block(X, 3, np.float32).dtype == np.float32          # converted by check_array
    assert check_block(X.astype(np.int64), 3).dtype == np.float64
    bad = X.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"^rows 10:15: Input X contains NaN"):
        check_block(bad, 3, rows=(10, 15))
    bad[2, 1] = np.inf
    with pytest.raises(ValueError, match=r"^rows 10:15: Input X contains infinity"):
        check_block(bad.astype(np.float32), 3, rows=(10, 15))
    with pytest.raises(ValueError, match=r"^rows 0:5: X has 2 features, but GaussianMixture is expecting 3"):
        check_block(X[:, :2], 3, rows=(0, 5))
