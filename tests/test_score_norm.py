"""speaker.score_norm against direct per-trial loops with numpy mean/std."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from speaker import score_norm as N

SETTINGS = settings(max_examples=60, deadline=None)
EPS = N.DEFAULT_EPS


def loop_z(s, cohort, top_n=None, ddof=0):
    """One trial at a time: (s - mean) / max(std, eps) over the (top_n highest) cohort scores."""
    out = np.empty(len(s))
    for i in range(len(s)):
        c = np.sort(np.asarray(cohort[i], dtype=float))
        if top_n is not None:
            c = c[len(c) - top_n:]
        out[i] = (s[i] - np.mean(c)) / max(np.std(c, ddof=ddof), EPS)
    return out


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    n, n_z, n_t = 50, 30, 20
    return dict(
        s=rng.normal(size=n) * 3 + 1,
        ez=rng.normal(loc=rng.normal(size=(n, 1)), scale=rng.uniform(0.5, 2, (n, 1)), size=(n, n_z)),
        tc=rng.normal(loc=rng.normal(size=(n, 1)), scale=rng.uniform(0.5, 2, (n, 1)), size=(n, n_t)),
        tz=rng.normal(loc=rng.normal(size=(n_t, 1)), size=(n_t, n_z)),
    )


def test_znorm_tnorm_match_loops(data):
    d = data
    np.testing.assert_allclose(N.znorm(d["s"], d["ez"]), loop_z(d["s"], d["ez"]), rtol=1e-12)
    np.testing.assert_allclose(N.tnorm(d["s"], d["tc"]), loop_z(d["s"], d["tc"]), rtol=1e-12)
    np.testing.assert_allclose(N.znorm(d["s"], d["ez"], ddof=1), loop_z(d["s"], d["ez"], ddof=1), rtol=1e-12)


def test_ztnorm_matches_loop(data):
    d = data
    s, ez, tc, tz = d["s"], d["ez"], d["tc"], d["tz"]
    expected = np.empty(len(s))
    for i in range(len(s)):
        s_z = (s[i] - np.mean(ez[i])) / np.std(ez[i])
        # each T-cohort model j, Z-normalised with its own scores against the Z cohort
        t_z = [(tc[i, j] - np.mean(tz[j])) / np.std(tz[j]) for j in range(tz.shape[0])]
        expected[i] = (s_z - np.mean(t_z)) / np.std(t_z)
    np.testing.assert_allclose(N.ztnorm(s, ez, tc, tz), expected, rtol=1e-12)


def test_snorm_and_as_norm_match_loops(data):
    d = data
    s, ez, tc = d["s"], d["ez"], d["tc"]
    np.testing.assert_allclose(N.snorm(s, ez, tc), 0.5 * (loop_z(s, ez) + loop_z(s, tc)), rtol=1e-12)
    for top_n in (2, 5, 17, 20):
        expected = 0.5 * (loop_z(s, ez, top_n) + loop_z(s, tc, top_n))
        np.testing.assert_allclose(N.as_norm(s, ez, tc, top_n=top_n), expected, rtol=1e-12)
    # keeping the whole cohort is plain S-norm
    ez20 = ez[:, :20]  # both sides with 20 cohort members, all kept
    np.testing.assert_allclose(N.as_norm(s, ez20, tc, top_n=20), N.snorm(s, ez20, tc), rtol=1e-14)


def test_as_norm_selects_the_highest_scores_per_side():
    # enrolment side: top-2 of [0, 10, 1, 12] = {10, 12}: mean 11, std 1
    # test side:      top-2 of [5, -3, 7, 6]  = {6, 7}:   mean 6.5, std 0.5
    got = N.as_norm([13.0], [[0, 10, 1, 12]], [[5, -3, 7, 6]], top_n=2)
    np.testing.assert_allclose(got, [0.5 * ((13 - 11) / 1 + (13 - 6.5) / 0.5)])


@SETTINGS
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(2, 9)),
                  elements=st.floats(-50, 50)),
       st.floats(0.1, 10), st.floats(-100, 100), st.data())
def test_property_affine_invariance_and_loops(cohort, a, b, data):
    """Random cohorts (including ties and constant rows) against the loop; Z-norm ignores a*s + b."""
    n, n_c = cohort.shape
    s = data.draw(hnp.arrays(np.float64, n, elements=st.floats(-50, 50)))
    np.testing.assert_allclose(N.znorm(s, cohort), loop_z(s, cohort), rtol=1e-9, atol=1e-9)
    top_n = data.draw(st.integers(2, n_c))
    np.testing.assert_allclose(N.as_norm(s, cohort, cohort[::-1], top_n=top_n),
                               0.5 * (loop_z(s, cohort, top_n) + loop_z(s, cohort[::-1], top_n)),
                               rtol=1e-9, atol=1e-9)
    spread = np.std(cohort, axis=1)
    ok = spread > 1e-3  # away from the eps floor, the normalisation is affine-invariant
    np.testing.assert_allclose(N.znorm(a * s + b, a * cohort + b)[ok], N.znorm(s, cohort)[ok],
                               rtol=1e-7, atol=1e-7)


def test_matrix_layout_by_broadcasting(data):
    """A full (models x tests) matrix with per-model and per-test cohorts equals the per-trial form."""
    rng = np.random.default_rng(2)
    n_m, n_t, n_c = 4, 6, 12
    S = rng.normal(size=(n_m, n_t))
    E = rng.normal(size=(n_m, n_c))   # each model vs the cohort
    T = rng.normal(size=(n_t, n_c))   # each test utterance vs the cohort
    mi, ti = np.meshgrid(np.arange(n_m), np.arange(n_t), indexing="ij")
    flat = dict(scores=S.ravel(), enrol=E[mi.ravel()], test=T[ti.ravel()])
    np.testing.assert_allclose(N.snorm(S, E[:, None, :], T).ravel(),
                               N.snorm(flat["scores"], flat["enrol"], flat["test"]), rtol=1e-14)
    np.testing.assert_allclose(N.as_norm(S, E[:, None, :], T, top_n=5).ravel(),
                               N.as_norm(flat["scores"], flat["enrol"], flat["test"], top_n=5), rtol=1e-14)
    np.testing.assert_allclose(N.znorm(S, E[:, None, :]).ravel(), N.znorm(flat["scores"], flat["enrol"]))
    np.testing.assert_allclose(N.tnorm(S, T).ravel(), N.tnorm(flat["scores"], flat["test"]))
    # shared statistics via cohort_stats and indexing
    mu, sd = N.cohort_stats(E)
    np.testing.assert_allclose((flat["scores"] - mu[mi.ravel()]) / sd[mi.ravel()],
                               N.znorm(flat["scores"], flat["enrol"]), rtol=1e-14)


def test_cohort_stats():
    c = np.array([[1.0, 2.0, 3.0, 10.0], [4.0, 4.0, 4.0, 4.0]])
    mu, sd = N.cohort_stats(c)
    np.testing.assert_allclose(mu, [4.0, 4.0])
    np.testing.assert_allclose(sd, [np.std(c[0]), EPS])
    mu, sd = N.cohort_stats(c, top_n=2, ddof=1)
    np.testing.assert_allclose(mu, [6.5, 4.0])
    np.testing.assert_allclose(sd, [np.std([3.0, 10.0], ddof=1), EPS])
    assert N.cohort_stats(c, eps=0.5)[1][1] == 0.5


def test_zero_std_guard_is_finite_and_documented():
    got = N.znorm([1.0, 2.0], [[3.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, [(1 - 3) / EPS, 0.0])
    np.testing.assert_allclose(N.tnorm([1.0], [[3.0, 3.0]], eps=0.5), [-4.0])


def test_float32_and_integer_inputs():
    rng = np.random.default_rng(3)
    s = rng.normal(size=10).astype(np.float32)
    c = rng.normal(size=(10, 7)).astype(np.float32)
    got = N.znorm(s, c)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, loop_z(s.astype(float), c.astype(float)), rtol=1e-6)
    np.testing.assert_allclose(N.znorm([1, 2], [[0, 2], [1, 5]]), [0.0, -0.5])


@pytest.mark.parametrize("call,match", [
    (lambda: N.znorm(np.ones(3), np.ones((4, 5))), "broadcast"),
    (lambda: N.znorm(np.ones(3), np.ones((3, 1, 5))), "broadcast"),  # would silently give (3, 3)
    (lambda: N.tnorm(np.ones(3), np.ones((3, 1))), "at least 2"),
    (lambda: N.znorm(np.ones(3), np.ones(())), "last axis"),
    (lambda: N.znorm([np.nan], [[1.0, 2.0]]), "finite"),
    (lambda: N.znorm([1.0], [[1.0, np.inf]]), "finite"),
    (lambda: N.znorm(["a"], [[1.0, 2.0]]), "real numbers"),
    (lambda: N.as_norm([1.0], [[1, 2, 3]], [[1, 2, 3]], top_n=4), "top_n"),
    (lambda: N.as_norm([1.0], [[1, 2, 3]], [[1, 2, 3]], top_n=1), "top_n"),
    (lambda: N.as_norm([1.0], [[1, 2, 3]], [[1, 2]], top_n=3), "top_n"),
    (lambda: N.znorm([1.0], [[1.0, 2.0]], ddof=2), "ddof"),
    (lambda: N.znorm([1.0], [[1.0, 2.0]], ddof=-1), "ddof"),
    (lambda: N.znorm([1.0], [[1.0, 2.0]], eps=0.0), "eps"),
    (lambda: N.ztnorm([1.0], [[1, 2, 3]], [[1, 2]], np.ones((3, 3))), "n_t, n_z"),
    (lambda: N.ztnorm([1.0], [[1, 2, 3]], [[1, 2]], np.ones((2, 4))), "n_t, n_z"),
])
def test_invalid_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()
