"""The compiled core against direct NumPy/SciPy formulas."""
import numpy as np
import pytest
from scipy.special import logsumexp

from gmmext import GaussianMixture, GMMStats
from conftest import make_blobs, random_params, reference_logprob


def fitted_with(w, mu, var, dtype=np.float64, **kw):
    """A model whose parameters are exactly (w, mu, var) in ``dtype``."""
    return GaussianMixture.from_parameters(*(np.asarray(a, dtype=dtype) for a in (w, mu, var)), **kw)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
@pytest.mark.parametrize("chunk_size", [None, 7, 64])
def test_loglik_and_resp_match_scipy(dtype, rtol, chunk_size):
    w, mu, var = random_params(5, 6, seed=1)
    X = np.random.default_rng(2).normal(scale=3.0, size=(503, 6))
    gm = fitted_with(w, mu, var, dtype=dtype, chunk_size=chunk_size)
    ref_lp = reference_logprob(X.astype(dtype), w.astype(dtype), mu.astype(dtype), var.astype(dtype))
    ref_ll = logsumexp(ref_lp, axis=1)
    Xd = X.astype(dtype)
    ll = gm.score_samples(Xd)
    assert ll.dtype == dtype                    # like scikit-learn: the input's float dtype
    np.testing.assert_allclose(ll, ref_ll, rtol=rtol)
    lp = gm.component_log_likelihood(Xd)
    assert lp.shape == (503, 5) and lp.dtype == dtype
    np.testing.assert_allclose(lp, ref_lp, rtol=rtol)
    resp = gm.predict_proba(Xd)
    assert resp.dtype == dtype
    np.testing.assert_allclose(resp, np.exp(ref_lp - ref_ll[:, None]), rtol=rtol * 10, atol=rtol * 1e-3)
    np.testing.assert_array_equal(gm.predict(Xd), ref_lp.argmax(axis=1))
    assert gm.score(Xd) == pytest.approx(ref_ll.mean(), rel=rtol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_accumulate_matches_direct_statistics(dtype):
    w, mu, var = random_params(4, 3, seed=3)
    rng = np.random.default_rng(4)
    X = rng.normal(scale=3.0, size=(700, 3)).astype(dtype)
    sw = rng.uniform(0, 2, size=700)
    sw[::7] = 0.0
    gm = fitted_with(w, mu, var, dtype=dtype, chunk_size=50)
    st = gm.accumulate(X, sample_weight=sw)
    assert isinstance(st, GMMStats) and st.n.dtype == np.float64
    lp = reference_logprob(X, w.astype(dtype), mu.astype(dtype), var.astype(dtype))
    ll = logsumexp(lp, axis=1)
    R = np.exp(lp - ll[:, None]) * sw[:, None]
    X64 = X.astype(np.float64)
    rtol = 1e-10 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(st.n, R.sum(0), rtol=rtol)
    np.testing.assert_allclose(st.sum_x, R.T @ X64, rtol=rtol, atol=rtol * 10)
    np.testing.assert_allclose(st.sum_xx, R.T @ (X64 ** 2), rtol=rtol)
    assert st.loglik == pytest.approx((sw * ll).sum(), rel=rtol)
    assert st.n_samples == pytest.approx(sw.sum(), rel=1e-12)


def test_any_memory_layout_gives_the_same_result():
    X = make_blobs(n=600, d=5)
    gm = GaussianMixture(3, random_state=0, covariance_type="diag").fit(X)
    ref = gm.score_samples(X)
    big = np.zeros((600, 10))
    big[:, ::2] = X
    for variant in (np.asfortranarray(X), big[:, ::2], X[::-1][::-1]):
        np.testing.assert_allclose(gm.score_samples(variant), ref, rtol=1e-12)
    ro = X.copy()
    ro.setflags(write=False)
    np.testing.assert_allclose(gm.score_samples(ro), ref, rtol=1e-12)
    st1, st2 = gm.accumulate(X), gm.accumulate(np.asfortranarray(X))
    np.testing.assert_allclose(st1.sum_xx, st2.sum_xx, rtol=1e-12)


def test_one_thread_equals_all_threads():
    X = make_blobs(n=5000, d=6, k=4)
    kw = dict(n_components=4, random_state=0, chunk_size=100, tol=0, max_iter=15)
    a = GaussianMixture(n_threads=1, **kw, covariance_type="diag").fit(X)
    b = GaussianMixture(n_threads=2, **kw, covariance_type="diag").fit(X)
    c = GaussianMixture(n_threads=3, **kw, covariance_type="diag").fit(X)  # more threads than cores still agrees
    for m in (b, c):
        np.testing.assert_allclose(m.means_, a.means_, rtol=1e-10)
        np.testing.assert_allclose(m.covariances_, a.covariances_, rtol=1e-10)
        np.testing.assert_allclose(m.weights_, a.weights_, rtol=1e-10)
        assert m.lower_bound_ == pytest.approx(a.lower_bound_, rel=1e-12)


def test_same_random_state_and_threads_is_bitwise_deterministic():
    X = make_blobs(n=3000, d=5, k=4).astype(np.float32)
    a = GaussianMixture(4, random_state=7, n_threads=2, covariance_type="diag").fit(X)
    b = GaussianMixture(4, random_state=7, n_threads=2, covariance_type="diag").fit(X)
    np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(a.covariances_, b.covariances_)


def test_fit_iteration_is_exactly_m_step_of_accumulate():
    X = make_blobs(n=1000, d=3)
    w, mu, var = random_params(3, 3, seed=5)
    kw = dict(weights_init=w, means_init=mu, precisions_init=1 / var, chunk_size=128)
    one = GaussianMixture(3, max_iter=1, tol=0, **kw, covariance_type="diag").fit(X)
    start = GaussianMixture(3, max_iter=0, **kw, covariance_type="diag").fit(X)
    stats = start.accumulate(X)
    start.m_step(stats)
    np.testing.assert_array_equal(one.means_, start.means_)
    np.testing.assert_array_equal(one.covariances_, start.covariances_)
    np.testing.assert_array_equal(one.weights_, start.weights_)
    assert one.lower_bound_ == stats.loglik / stats.n_samples


def test_stats_add_and_sum():
    X = make_blobs(n=900, d=3)
    gm = GaussianMixture(3, random_state=0, covariance_type="diag").fit(X)
    parts = [gm.accumulate(X[:100]), gm.accumulate(X[100:555]), gm.accumulate(X[555:])]
    whole = gm.accumulate(X)
    total = sum(parts)
    np.testing.assert_allclose(total.sum_x, whole.sum_x, rtol=1e-10)
    np.testing.assert_allclose(total.n, whole.n, rtol=1e-10)
    assert total.loglik == pytest.approx(whole.loglik, rel=1e-12)
    assert total.n_samples == 900
    with pytest.raises(ValueError, match="cannot add"):
        parts[0] + GMMStats.zeros(2, 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_block_stats_of_a_list_and_map_adapt_match_direct_statistics(dtype):
    """A Dask block of utterances (one core call) and the in-order sum of per-utterance
    statistics (what speaker.map_adapt sums), against the direct formula on the concatenation."""
    from gmmext._blocked import StatsParams, block_stats
    w, mu, var = random_params(6, 4, seed=8)
    rng = np.random.default_rng(9)
    utts = [rng.normal(scale=3.0, size=(n, 4)).astype(dtype) for n in (5, 0, 130, 64, 300, 1)]
    gm = fitted_with(w, mu, var, dtype=dtype, chunk_size=32)
    X64 = np.concatenate(utts).astype(np.float64)
    lp = reference_logprob(np.concatenate(utts), w.astype(dtype), mu.astype(dtype), var.astype(dtype))
    ll = logsumexp(lp, axis=1)
    R = np.exp(lp - ll[:, None])
    rtol = 1e-10 if dtype == np.float64 else 2e-4
    for st in (block_stats(StatsParams.of(gm, 2), utts), GMMStats.total(gm.accumulate_segments(utts))):
        np.testing.assert_allclose(st.n, R.sum(0), rtol=rtol)
        np.testing.assert_allclose(st.sum_x, R.T @ X64, rtol=rtol, atol=rtol * 10)
        np.testing.assert_allclose(st.sum_xx, R.T @ X64 ** 2, rtol=rtol)
        assert st.loglik == pytest.approx(ll.sum(), rel=rtol)
        assert st.n_samples == len(X64)
    with pytest.raises(ValueError, match="rows 135:199"):
        block_stats(StatsParams.of(gm, 1), utts[:3] + [np.full((64, 4), np.nan, dtype)])


def test_stats_total_is_the_left_to_right_sum_bit_for_bit():
    """GMMStats.total adds in place: the same bits as ((a + b) + c) + ..., inputs untouched."""
    rng = np.random.default_rng(5)
    parts = [GMMStats(rng.random(4), rng.normal(size=(4, 3)), rng.random((4, 3)), rng.normal(), 10.0 * i)
             for i in range(7)]
    before = [p.sum_x.copy() for p in parts]
    want = parts[0]
    for p in parts[1:]:
        want = want + p
    got = GMMStats.total(parts)
    for a in ("n", "sum_x", "sum_xx", "loglik", "n_samples"):
        np.testing.assert_array_equal(getattr(got, a), getattr(want, a))
    assert all(np.array_equal(p.sum_x, b) for p, b in zip(parts, before))
    with pytest.raises(ValueError, match="cannot add"):
        GMMStats.total([parts[0], GMMStats.zeros(4, 2)])
    with pytest.raises(ValueError):
        GMMStats.total([])


def test_fit_does_not_allocate_n_by_k():
    """EM passes use chunk buffers only: traced peak far below one N x K float64 array."""
    import tracemalloc
    rng = np.random.default_rng(0)
    N, D, K = 200_000, 4, 64
    X = rng.standard_normal((N, D))
    w, mu, var = np.full(K, 1 / K), rng.standard_normal((K, D)), np.ones((K, D))
    gm = GaussianMixture(K, weights_init=w, means_init=mu, precisions_init=1 / var,
                         max_iter=3, tol=0, chunk_size=512, covariance_type="diag")
    tracemalloc.start()
    gm.fit(X)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 0.05 * N * K * 8, f"fit allocated {peak / 1e6:.1f} MB (N x K is {N * K * 8 / 1e6:.0f} MB)"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_gemms_test_does_the_estep_products_on_every_chunk(dtype):
    # the benchmark's "gemms alone" (benchmarks/bench_em.py): per chunk L += xx @ M, and the
    # statistics' L^T xx (float64: added to acc_s; float32: the last chunk's, in S) - NumPy's
    # products of the same buffers, chunk by chunk, on one thread
    from gmmext import _core
    rng = np.random.default_rng(3)
    N, chunk, P, K = 23, 7, 6, 5   # 4 chunks, the last of 2 rows
    M = rng.normal(size=(P, K)).astype(dtype)
    xx = rng.normal(size=(1, chunk, P)).astype(dtype)
    L0 = rng.normal(size=(1, chunk, K)).astype(dtype)
    L, S, acc = L0.copy(), np.zeros((1, K, P), dtype), np.zeros((1, K, P))
    _core.dense_gemms_test(M, N, chunk, 1, xx, L, S, acc)
    x, m = xx[0].astype(np.float64), M.astype(np.float64)
    want_L, want_acc = L0[0].astype(np.float64), np.zeros((K, P))
    for start in range(0, N, chunk):
        rows = min(chunk, N - start)
        want_L[:rows] += x[:rows] @ m
        last = want_L[:rows].T @ x[:rows]
        want_acc += last
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(L[0], want_L, rtol=tol, atol=tol * np.abs(want_L).max())
    if dtype == np.float64:
        np.testing.assert_allclose(acc[0], want_acc, rtol=tol, atol=tol * np.abs(want_acc).max())
    else:
        np.testing.assert_allclose(S[0], last, rtol=tol, atol=tol * np.abs(last).max())
    with pytest.raises(ValueError, match="workspace"):
        _core.dense_gemms_test(M, N, chunk + 1, 1, xx, L, S, acc)
