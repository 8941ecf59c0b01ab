"""Many segments (utterances) in one core call: ``accumulate(list)`` and ``accumulate_segments``.

Checked against the direct NumPy/SciPy formula (responsibilities from ``logsumexp`` of
``scipy.stats.norm.logpdf``), against one ``accumulate`` per segment, and for the properties
the API promises (a list is its concatenation; a segment's statistics depend on nothing but
the segment and the chunk size).
"""
import numpy as np
import pytest
from scipy.special import logsumexp

from gmmext import GaussianMixture, GMMStats
from conftest import random_params, reference_logprob

K, D = 6, 4


def _model(dtype=np.float64, **kw):
    w, mu, var = random_params(K, D, seed=11)
    return GaussianMixture.from_parameters(w.astype(dtype), mu.astype(dtype), var.astype(dtype), **kw)


def _segments(dtype=np.float64, sizes=(0, 1, 7, 130, 64, 0, 301, 2, 65)):
    """Segments of awkward lengths (empty, one row, around the chunk size) and layouts."""
    rng = np.random.default_rng(5)
    segs = [rng.normal(scale=3.0, size=(n, D)).astype(dtype) for n in sizes]
    segs[3] = np.asfortranarray(segs[3])
    segs[6] = np.ascontiguousarray(np.repeat(segs[6], 2, axis=1))[:, ::2]    # strided columns
    return segs


def _direct(gm, X, w=None):
    """(n, sum_x, sum_xx, loglik) of X straight from scipy, in float64."""
    X64 = np.asarray(X, dtype=np.float64)
    lp = reference_logprob(X64, gm.weights_.astype(np.float64), gm.means_.astype(np.float64),
                           gm.covariances_.astype(np.float64))
    ll = logsumexp(lp, axis=1) if len(X64) else np.zeros(0)
    w = np.ones(len(X64)) if w is None else w
    R = np.exp(lp - ll[:, None]) * w[:, None]
    return R.sum(0), R.T @ X64, R.T @ X64 ** 2, float((w * ll).sum())


def _close(st, ref, rtol):
    n, sx, sxx, ll = ref
    scale = max(1.0, np.abs(sx).max(initial=0.0))
    np.testing.assert_allclose(st.n, n, rtol=rtol, atol=rtol * 1e-3)
    np.testing.assert_allclose(st.sum_x, sx, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(st.sum_xx, sxx, rtol=rtol, atol=rtol * scale)
    assert st.loglik == pytest.approx(ll, rel=rtol, abs=rtol)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_accumulate_list_matches_scipy_and_concatenation(dtype, rtol):
    gm = _model(dtype, chunk_size=64, n_threads=2)
    segs = _segments(dtype)
    rng = np.random.default_rng(0)
    ws = [rng.uniform(0, 2, size=len(a)) for a in segs]
    for sw in (None, ws):
        st = gm.accumulate(segs, sample_weight=sw)
        assert isinstance(st, GMMStats) and st.sum_x.dtype == np.float64
        cat = np.concatenate(segs)
        wcat = None if sw is None else np.concatenate(sw)
        _close(st, _direct(gm, cat, wcat), rtol)
        assert st.n_samples == pytest.approx(len(cat) if sw is None else wcat.sum(), rel=1e-12)
        # the list is its concatenation: same chunks, so the very same numbers
        whole = gm.accumulate(cat, sample_weight=wcat)
        for a in ("n", "sum_x", "sum_xx"):
            np.testing.assert_array_equal(getattr(st, a), getattr(whole, a))
        assert (st.loglik, st.n_samples) == (whole.loglik, whole.n_samples)
        # and, to rounding, the sum of one call per segment
        loop = sum(gm.accumulate(a, sample_weight=None if sw is None else w)
                   for a, w in zip(segs, ws) if len(a))
        _close(st, (loop.n, loop.sum_x, loop.sum_xx, loop.loglik), rtol)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
@pytest.mark.parametrize("second_order", [True, False])
def test_accumulate_segments_match_scipy_and_per_segment_calls(dtype, rtol, second_order):
    gm = _model(dtype, chunk_size=64, n_threads=2)
    segs = _segments(dtype)
    out = gm.accumulate_segments(segs, second_order=second_order)
    assert len(out) == len(segs)
    for a, st in zip(segs, out):
        assert st.n.shape == (K,) and st.sum_x.shape == st.sum_xx.shape == (K, D)
        assert st.sum_x.dtype == np.float64 and st.n_samples == len(a)
        n, sx, sxx, ll = _direct(gm, a)
        if not second_order:
            np.testing.assert_array_equal(st.sum_xx, 0.0)
            sxx = np.zeros_like(sx)
        _close(st, (n, sx, sxx, ll), rtol)
        if len(a):
            one = gm.accumulate(a)
            _close(st, (one.n, one.sum_x, one.sum_xx if second_order else sxx, one.loglik), rtol)
        else:
            assert st.loglik == 0.0 and not st.n.any() and not st.sum_x.any()


def test_per_segment_results_do_not_depend_on_threads_or_neighbours():
    segs = _segments(np.float32, sizes=(300, 5, 129, 1000, 64, 77, 1, 400))
    ref = _model(np.float32, chunk_size=64, n_threads=1).accumulate_segments(segs)
    order = np.random.default_rng(1).permutation(len(segs))
    for n_threads in (2, 3):
        gm = _model(np.float32, chunk_size=64, n_threads=n_threads)
        for run in (gm.accumulate_segments(segs),
                    [dict(zip(order, gm.accumulate_segments([segs[i] for i in order])))[u]
                     for u in range(len(segs))]):
            for a, b in zip(ref, run):
                for f in ("n", "sum_x", "sum_xx"):
                    np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
                assert (a.loglik, a.n_samples) == (b.loglik, b.n_samples)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
@pytest.mark.parametrize("n_threads", [1, 3])
def test_group_sums_match_scipy_and_the_per_segment_sums_in_order(dtype, rtol, n_threads, monkeypatch):
    monkeypatch.setattr("gmmext._engine.SEGMENT_WORK_BYTES", 1)    # the smallest ring: 2 blocks per thread
    gm = _model(dtype, chunk_size=64, n_threads=n_threads)
    segs = _segments(dtype) * 3                       # 27 segments: the ring wraps many times
    groups = np.array([2, 0, 2, 2, 0, 4, 2, 0, 0] * 3)     # group 1 and 3 have no segment
    out = gm.accumulate_segments(segs, groups=groups)
    each = gm.accumulate_segments(segs)
    assert len(out) == 5
    for g in range(5):
        members = [u for u in range(len(segs)) if groups[u] == g]
        if not members:
            assert out[g].n_samples == 0 and not out[g].sum_xx.any() and not out[g].n.any()
            continue
        X = np.concatenate([segs[u] for u in members])
        _close(out[g], _direct(gm, X), rtol)
        total = GMMStats.total([each[u] for u in members])      # the same bits: added in segment order
        for f in ("n", "sum_x", "sum_xx"):
            np.testing.assert_array_equal(getattr(out[g], f), getattr(total, f))
        assert (out[g].loglik, out[g].n_samples) == (total.loglik, total.n_samples)
    with pytest.raises(ValueError, match="groups"):
        gm.accumulate_segments(segs, groups=groups[:-1])
    with pytest.raises(ValueError, match="groups"):
        gm.accumulate_segments(segs, groups=-groups)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_accumulate_first_order_only_matches_scipy(dtype, rtol):
    gm = _model(dtype, chunk_size=64, n_threads=2)
    segs = _segments(dtype)
    X = np.concatenate(segs)
    n, sx, _, ll = _direct(gm, X)
    for st in (gm.accumulate(X, second_order=False), gm.accumulate(segs, second_order=False)):
        np.testing.assert_array_equal(st.sum_xx, 0.0)
        assert st.sum_xx.shape == (K, D) and st.n_samples == len(X)
        _close(st, (n, sx, np.zeros_like(sx), ll), rtol)


def test_mixed_dtypes_are_computed_in_float64():
    gm = _model(np.float32)
    segs = _segments(np.float32)
    segs[2] = segs[2].astype(np.float64)
    st = gm.accumulate(segs)
    _close(st, _direct(gm, np.concatenate(segs)), 1e-10)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_non_native_byte_order_segments_are_their_values(dtype, rtol):
    # A big-endian float64 array (from another platform's file) is float64: every other method
    # takes it (scikit-learn's check_array converts it); segments said "dtype >f8, expected
    # float32 or float64". Independent: scipy's statistics of the same values.
    gm = _model(dtype)
    segs = [a.astype(np.dtype(dtype).newbyteorder(">")) for a in _segments(dtype)]
    for st, a in zip(gm.accumulate_segments(segs), segs):
        _close(st, _direct(gm, a), rtol)
    _close(gm.accumulate(segs), _direct(gm, np.concatenate(segs)), rtol)


@pytest.mark.parametrize("bad,match", [
    (np.zeros(4), r"segment 1: expected a 2-D array \(n_frames, 4\), got shape \(4,\)"),
    (np.zeros((3, 5)), r"segment 1: X has 5 features, but GaussianMixture is expecting 4 features"),
    (np.full((3, 4), np.nan), "segment 1: contains NaN"),
    (np.full((3, 4), np.inf, dtype=np.float32), "segment 1: contains NaN or infinity"),
    (np.zeros((3, 4), dtype=np.int64), "segment 1: dtype int64"),
    (np.zeros((3, 4), dtype=complex), "segment 1: dtype complex128"),
])
def test_bad_segments_are_named(bad, match):
    gm = _model()
    segs = [np.zeros((2, 4)), bad, np.zeros((2, 4))]
    with pytest.raises(ValueError, match=match):
        gm.accumulate_segments(segs)
    if np.ndim(bad) == 2:      # a list whose first item is 2-D is a segment list for accumulate too
        with pytest.raises(ValueError, match=match):
            gm.accumulate(segs)


def test_bad_segment_weights_and_arguments():
    gm = _model()
    segs = [np.zeros((2, 4)), np.zeros((3, 4))]
    with pytest.raises(ValueError, match="list of 2 weight arrays"):
        gm.accumulate(segs, sample_weight=np.ones(5))
    with pytest.raises(ValueError, match=r"sample_weight\[1\] has shape \(2,\), segment 1 has 3 rows"):
        gm.accumulate(segs, sample_weight=[np.ones(2), np.ones(2)])
    with pytest.raises(ValueError, match="(?i)negative"):
        gm.accumulate(segs, sample_weight=[np.ones(2), -np.ones(3)])
    with pytest.raises(ValueError, match="sequence of 2-D arrays"):
        gm.accumulate_segments(np.zeros((5, 4)))
    assert gm.accumulate_segments([]) == []
    # a list of rows is still one array-like, as before
    rows = np.random.default_rng(0).normal(size=(3, 4))
    np.testing.assert_array_equal(gm.accumulate(rows.tolist()).sum_x, gm.accumulate(rows).sum_x)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
@pytest.mark.parametrize("cov", ["diag", "full"])
@pytest.mark.parametrize("spread", [0.3, 30.0])        # overlapping (dense chunks) / apart (sparse)
def test_segments_first_middle_last_chunks_match_scipy(dtype, rtol, cov, spread):
    """Each segment's first chunk sets its statistics, the next ones add, the last one unshifts
    while adding: segments of 1, 2 and 4 chunks (and empty ones) against scipy, both layouts,
    dense and sparse chunks, with and without the second order."""
    from scipy.stats import multivariate_normal
    rng = np.random.default_rng(3)
    w = rng.dirichlet(np.ones(K))
    mu = rng.normal(scale=spread, size=(K, D))
    A = rng.normal(size=(K, D, D)) * 0.3
    C = A @ A.transpose(0, 2, 1) + np.eye(D)
    covs = C if cov == "full" else np.diagonal(C, axis1=1, axis2=2).copy()
    gm = GaussianMixture.from_parameters(w.astype(dtype), mu.astype(dtype), covs.astype(dtype),
                                         covariance_type=cov, chunk_size=32, n_threads=2)
    comp = rng.integers(0, K, size=500)
    X = (mu[comp] + rng.normal(size=(500, D))).astype(dtype)
    cut = np.cumsum([33, 0, 32, 64, 1, 128, 100, 31])
    segs = np.split(X, cut)
    full = np.stack([np.diag(c) for c in covs]) if cov == "diag" else covs
    for second in (True, False):
        out = gm.accumulate_segments(segs, second_order=second)
        for a, st in zip(segs, out):
            x = a.astype(np.float64)
            lp = np.stack([np.log(w[k]) + multivariate_normal(mu[k], full[k]).logpdf(x).reshape(-1)
                           for k in range(K)], axis=1).reshape(len(x), K)
            ll = logsumexp(lp, axis=1) if len(x) else np.zeros(0)
            R = np.exp(lp - ll[:, None])
            sxx = (np.einsum("nk,nd,ne->kde", R, x, x) if cov == "full" else R.T @ x ** 2)
            scale = max(1.0, np.abs(x).max(initial=0.0) ** 2 * len(x))
            np.testing.assert_allclose(st.n, R.sum(0), rtol=rtol, atol=rtol * max(1, len(x)))
            np.testing.assert_allclose(st.sum_x, R.T @ x, rtol=rtol, atol=rtol * scale)
            if second:
                np.testing.assert_allclose(st.sum_xx, sxx, rtol=rtol, atol=rtol * scale)
            else:
                assert not np.any(st.sum_xx)
            assert st.loglik == pytest.approx(ll.sum(), rel=rtol, abs=rtol * max(1, len(x)))
