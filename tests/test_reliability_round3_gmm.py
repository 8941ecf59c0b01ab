"""gmmext, third adversarial pass: warm starts that no longer fit the model, far-away frames in
float32, and the memory of ``init_params="random_from_data"`` on a memmap.  Each test failed
before its fix; the reference is scikit-learn or numpy itself."""
import tracemalloc
import warnings

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SKGaussianMixture

from gmmext import GaussianMixture

TYPES = ("diag", "full", "tied", "spherical")


@pytest.mark.parametrize("change", ["n_components", "covariance_type", "features"])
def test_warm_start_after_the_model_changed_is_a_clear_error(change):
    """Before: "workspace l_buf has shape (2, 4096, 4), trailing axes must be (2,)" (K changed),
    "segment 0 has 2 columns, the model 3" (D), an ill-defined covariance error (type).
    scikit-learn silently goes on with the old K; here it is a ValueError naming both models,
    and the fitted model is left usable."""
    X = np.random.RandomState(0).randn(400, 3)
    gm = GaussianMixture(2, covariance_type="diag", warm_start=True, random_state=0).fit(X)
    before = gm.means_.copy()
    data = X
    if change == "n_components":
        gm.set_params(n_components=4)
    elif change == "covariance_type":
        gm.set_params(covariance_type="full")
    else:
        data = X[:, :2]
    with pytest.raises(ValueError, match=r"warm_start=True continues from the fitted model, which has 2 "
                                         r"components of 3 features.*set warm_start=False"):
        gm.fit(data)
    np.testing.assert_array_equal(gm.means_, before)
    if change == "features":                  # the old model still scores its own data
        assert np.isfinite(gm.score_samples(X)).all()
    gm.set_params(warm_start=False)
    gm.fit(data)                              # and starting afresh works
    assert gm.means_.shape[0] == gm.n_components


@pytest.mark.parametrize("cov", TYPES)
def test_far_away_float32_frames_get_sklearns_one_hot_rows(cov):
    """float32, a model on a large scale, frames 1e5-1e7 times its spread away: the core's terms
    (x x^T for "full") overflowed, every log-density came out -inf and predict_proba rows summed
    to 0 while scikit-learn (which whitens first) gives finite log-densities and one-hot rows."""
    rng = np.random.RandomState(3)
    X = (rng.randn(300, 3) * [1.0, 3.0, 0.5] * 3e14).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = GaussianMixture(3, covariance_type=cov, random_state=0).fit(X)
        sk = SKGaussianMixture(3, covariance_type=cov, random_state=0).fit(X)
    far = (rng.randn(30, 3) * 3e14 * 10.0 ** rng.randint(5, 8, (30, 1))).astype(np.float32)
    with np.errstate(all="ignore"):
        ref_ll = sk.score_samples(far)
        ref_proba = sk.predict_proba(far)
    # where scikit-learn itself stays finite (its x**2 overflows too for the other types) and its
    # rows sum to 1 (its "tied" rows at this scale are all ones: log-densities equal to rounding)
    keep = np.isfinite(ref_ll) & (np.abs(np.nan_to_num(ref_proba.sum(axis=1)) - 1) < 1e-3)
    assert keep.sum() >= (20 if cov == "full" else 0)
    proba = gm.predict_proba(far)[keep]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    sure = proba.max(axis=1) > 0.99           # not a float32 tie (then the rounding decides)
    assert sure.sum() >= 0.8 * sure.size
    np.testing.assert_array_equal(proba.argmax(axis=1)[sure], ref_proba[keep].argmax(axis=1)[sure])
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(gm.predict(far)[keep][sure], sk.predict(far)[keep][sure])
    ll = gm.score_samples(far)
    assert ll.dtype == np.float32
    np.testing.assert_allclose(ll[keep], ref_ll[keep], rtol=1e-4)
    lp = gm.component_log_likelihood(far)[keep]
    assert np.isfinite(lp).any(axis=1).all()


def test_choice_rows_is_random_states_choice_in_bounded_memory():
    """The K rows of random_from_data are RandomState.choice(N, K, replace=False)'s (scikit-learn's
    draw), with the generator left in the same state, for many sizes and block sizes..."""
    from gmmext._init import choice_rows
    for n in (1, 2, 3, 17, 1000, 20_001):
        for k in sorted({1, min(n, 3), max(1, n // 2), n}):
            for seed in range(2):
                for block in (1, 7, 64):
                    a, b = np.random.RandomState(seed), np.random.RandomState(seed)
                    np.testing.assert_array_equal(choice_rows(n, k, a, block=block),
                                                  b.choice(n, k, replace=False))
                    assert a.randint(1 << 30) == b.randint(1 << 30)
    # ... and without the permutation's 8 bytes per row (choice allocates 16 MB here)
    n = 2_000_000
    ref = np.random.RandomState(5).choice(n, 64, replace=False)
    tracemalloc.start()
    try:
        got = choice_rows(n, 64, np.random.RandomState(5))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(got, ref)
    assert peak < n * 8 / 4, peak


def test_random_from_data_on_a_memmap_does_not_allocate_per_row(tmp_path):
    """A 2-million-row memmap: the initialisation used to allocate 16 MB (8 bytes per row) for the
    permutation; now far less, and the same rows as in memory (scikit-learn's)."""
    n = 2_000_000
    X = np.random.RandomState(1).randn(n, 1).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    M = np.load(tmp_path / "X.npy", mmap_mode="r")
    kw = dict(n_components=8, init_params="random_from_data", max_iter=1, tol=0.0, random_state=2,
              covariance_type="diag")
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = GaussianMixture(**kw).fit(M)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < n * 8 / 4, peak
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = GaussianMixture(**kw).fit(X)
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-5)
