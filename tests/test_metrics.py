"""speaker.metrics against brute-force definitions, a port of BOSARIS and scipy's convex hull."""
from __future__ import annotations

import os
import sys
import time
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speaker import det as D
from speaker import metrics as M

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------------
# Independent references (slow, written from the definitions)
# ---------------------------------------------------------------------------------------------
def brute_operating_points(scores, labels):
    """Exact (p_miss, p_fa) as Fractions at every distinct score and +inf; accept iff s >= t."""
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels).astype(bool)
    tar, non = scores[labels], scores[~labels]
    thresholds = sorted(set(scores.tolist())) + [np.inf]
    pm = [Fraction(int(np.sum(tar < t)), tar.size) for t in thresholds]
    pf = [Fraction(int(np.sum(non >= t)), non.size) for t in thresholds]
    return pm, pf, thresholds


def brute_dcf(scores, labels, threshold, p, cm, cf):
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels).astype(bool)
    pm = np.mean(scores[labels] < threshold)
    pf = np.mean(scores[~labels] >= threshold)
    return (cm * p * pm + cf * (1 - p) * pf) / min(cm * p, cf * (1 - p))


def brute_min_dcf(scores, labels, p, cm, cf):
    """Minimum over every distinct score, every midpoint between them, and +-inf."""
    u = np.unique(np.asarray(scores, dtype=float))
    cands = np.concatenate(([-np.inf, np.inf], u, (u[1:] + u[:-1]) / 2))
    return min(brute_dcf(scores, labels, t, p, cm, cf) for t in cands)


def brute_eer_interpolated(scores, labels):
    """Exact rational EER: linear interpolation between the operating points bracketing the crossing."""
    pm, pf, _ = brute_operating_points(scores, labels)
    for k in range(len(pm) - 1):
        d0, d1 = pf[k] - pm[k], pf[k + 1] - pm[k + 1]
        if d0 >= 0 > d1:
            t = d0 / (d0 - d1)
            return pf[k] + t * (pf[k + 1] - pf[k])
    raise AssertionError("no crossing")


def pavx_exact(y):
    """Literal port of BOSARIS pavx.m (widths only), in exact rational arithmetic."""
    ghat, length = [], []
    for v in y:
        ghat.append(Fraction(v))
        length.append(1)
        while len(ghat) >= 2 and ghat[-2] >= ghat[-1]:
            nw = length[-2] + length[-1]
            ghat[-2] = ghat[-2] + Fraction(length[-1], nw) * (ghat[-1] - ghat[-2])
            length[-2] = nw
            ghat.pop()
            length.pop()
    return length


def bosaris_rocch(tar, non):
    """Literal port of BOSARIS rocch.m (MATLAB's sort is stable: targets before equal non-targets)."""
    nt, nn = len(tar), len(non)
    scores = np.concatenate((tar, non))
    pideal = np.concatenate((np.ones(nt), np.zeros(nn)))
    perturb = np.argsort(scores, kind="stable")
    pideal = pideal[perturb]
    width = pavx_exact(pideal.astype(int).tolist())
    pmiss, pfa = [], []
    left, fa, miss = 0, nn, 0
    for w in width:
        pmiss.append(miss / nt)
        pfa.append(fa / nn)
        left += w
        miss = int(pideal[:left].sum())
        fa = nt + nn - left - int(pideal[left:].sum())
    pmiss.append(miss / nt)
    pfa.append(fa / nn)
    return np.array(pmiss), np.array(pfa)


def bosaris_rocch2eer(pmiss, pfa):
    """Literal port of BOSARIS rocch2eer.m."""
    eer = 0.0
    for i in range(len(pfa) - 1):
        xx, yy = pfa[i:i + 2], pmiss[i:i + 2]
        assert xx[1] <= xx[0] and yy[0] <= yy[1]
        XY = np.column_stack((xx, yy))
        dd = np.array([1, -1]) @ XY
        if np.min(np.abs(dd)) == 0:
            eerseg = 0.0
        else:
            seg = np.linalg.solve(XY, np.ones(2))
            eerseg = 1 / seg.sum()
        eer = max(eer, eerseg)
    return eer


def convex_hull_eer(scores, labels):
    """EER of the ROC convex hull via scipy.spatial.ConvexHull (qhull).

    The hull of the operating points plus the corner (1, 1) meets the diagonal p_miss == p_fa in
    a segment ending at (1, 1); the EER is its lower end: the largest lower bound on t that the
    hull's facet inequalities a.x + b <= 0 impose on the point (t, t).
    """
    from scipy.spatial import ConvexHull
    pm, pf, _ = brute_operating_points(scores, labels)
    pts = np.array([[float(f), float(m)] for m, f in zip(pm, pf)] + [[1.0, 1.0]])
    hull = ConvexHull(pts)
    lower = 0.0
    for a0, a1, b in hull.equations:
        if a0 + a1 < -1e-12:
            lower = max(lower, -b / (a0 + a1))
    return lower


def monotone_chain_lower_hull(x, y):
    """Andrew's monotone chain, textbook version, for integer points already sorted along the chain."""
    hull = []
    for i in range(len(x)):
        while len(hull) >= 2:
            j, k = hull[-2], hull[-1]
            if (x[k] - x[j]) * (y[i] - y[j]) - (y[k] - y[j]) * (x[i] - x[j]) <= 0:
                hull.pop()
            else:
                break
        hull.append(i)
    return hull


# ---------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------
score_values = {
    "tied": st.integers(0, 3).map(float),
    "few": st.sampled_from([-1.5, -0.0, 0.0, 0.25, 2.0]),
    "float": st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False),
}


@st.composite
def trials(draw, kind=None, max_size=40):
    kind = kind or draw(st.sampled_from(sorted(score_values)))
    labels = draw(st.lists(st.booleans(), min_size=2, max_size=max_size)
                  .filter(lambda l: any(l) and not all(l)))
    scores = draw(st.lists(score_values[kind], min_size=len(labels), max_size=len(labels)))
    return np.array(scores), np.array(labels)


costs = st.tuples(st.floats(0.001, 0.999), st.floats(0.1, 20.0), st.floats(0.1, 20.0))


# ---------------------------------------------------------------------------------------------
# DET curve
# ---------------------------------------------------------------------------------------------
@SETTINGS
@given(trials())
def test_det_curve_matches_brute_force(t):
    scores, labels = t
    pm, pf, thr = M.det_curve(scores, labels)
    bpm, bpf, bthr = brute_operating_points(scores, labels)
    np.testing.assert_array_equal(thr, bthr)
    assert pm.tolist() == [float(v) for v in bpm]
    assert pf.tolist() == [float(v) for v in bpf]
    assert pm.dtype == pf.dtype == thr.dtype == np.float64


def test_det_curve_hand_example():
    pm, pf, thr = M.det_curve([1, 3, 0, 2, 2], [1, 1, 0, 0, 1])
    np.testing.assert_array_equal(thr, [0, 1, 2, 3, np.inf])
    np.testing.assert_array_equal(pm, [0, 0, 1 / 3, 2 / 3, 1])
    np.testing.assert_array_equal(pf, [1, 0.5, 0.5, 0, 0])


def test_negative_zero_ties_with_zero():
    pm, pf, thr = M.det_curve([-0.0, 0.0, 1.0], [1, 0, 1])
    assert thr.tolist() == [0.0, 1.0, np.inf] and np.signbit(thr[0]) == False  # noqa: E712
    assert M.eer([-0.0, 0.0], [1, 0]) == M.eer([0.0, -0.0], [1, 0]) == 0.5


# ---------------------------------------------------------------------------------------------
# EER
# ---------------------------------------------------------------------------------------------
@SETTINGS
@given(trials())
def test_interpolated_eer_is_the_exact_crossing(t):
    scores, labels = t
    # computed from exact integer counts, so it is the correctly rounded rational value
    assert M.eer(scores, labels, method="interpolated") == float(brute_eer_interpolated(scores, labels))
    assert M.eer(scores, labels, method="step") == M.eer(scores, labels, method="interpolated")


@pytest.mark.parametrize("decimals", [0, 1, 2, 8])
def test_interpolated_eer_matches_the_sklearn_recipe(decimals):
    """The usual recipe: sklearn's (tie-aware) ROC, linearly interpolated, solve 1 - tpr == fpr."""
    skm = pytest.importorskip("sklearn.metrics")
    from scipy.interpolate import interp1d
    from scipy.optimize import brentq
    rng = np.random.default_rng(decimals)
    labels = rng.random(3000) < 0.3
    scores = np.round(rng.standard_normal(3000) + 1.5 * labels, decimals)
    fpr, tpr, _ = skm.roc_curve(labels, scores)
    ref = brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0, xtol=1e-14)
    assert M.eer(scores, labels, method="interpolated") == pytest.approx(ref, abs=1e-12)


@SETTINGS
@given(trials())
def test_rocch_matches_bosaris_port(t):
    scores, labels = t
    pm, pf = M.rocch(scores, labels)
    bpm, bpf = bosaris_rocch(scores[labels], scores[~labels])
    np.testing.assert_array_equal(pm, bpm)
    np.testing.assert_array_equal(pf, bpf)
    assert M.eer(scores, labels) == pytest.approx(bosaris_rocch2eer(bpm, bpf), rel=1e-12, abs=1e-15)


@SETTINGS
@given(trials())
def test_rocch_eer_matches_scipy_convex_hull(t):
    scores, labels = t
    assert M.eer(scores, labels, method="rocch") == pytest.approx(convex_hull_eer(scores, labels), abs=1e-9)


@SETTINGS
@given(trials())
def test_eer_bounds(t):
    scores, labels = t
    e_hull = M.eer(scores, labels)
    e_int = M.eer(scores, labels, method="interpolated")
    assert 0.0 <= e_hull <= e_int <= 1.0
    assert e_hull <= 0.5  # the hull always contains the chance diagonal
    # the minimum of the symmetric cost over the ROCCH is reached at the EER point or better
    assert M.min_dcf(scores, labels, 0.5) <= 2 * e_hull + 1e-12


def test_eer_special_cases():
    sep_s, sep_l = [0.1, 0.2, 0.3, 5, 6, 7], [0, 0, 0, 1, 1, 1]
    assert M.eer(sep_s, sep_l) == 0.0
    assert M.eer(sep_s, sep_l, method="interpolated") == 0.0
    same_s, same_l = [2.5] * 7, [1, 0, 0, 1, 0, 1, 0]
    assert M.eer(same_s, same_l) == 0.5
    assert M.eer(same_s, same_l, method="interpolated") == 0.5
    # perfectly wrong: the raw curve gives 1, the convex hull (chance line) gives 0.5
    assert M.eer([0, 1], [1, 0], method="interpolated") == 1.0
    assert M.eer([0, 1], [1, 0]) == 0.5
    # a target and a non-target tied at the boundary: one shared decision, operating points
    # (p_fa, p_miss) = (1, 0), (.5, 0), (0, .5), (0, 1); the chord x + y = .5 meets the diagonal at .25
    assert M.eer([0, 1, 1, 2], [0, 0, 1, 1]) == 0.25
    assert M.eer([0, 1, 1, 2], [0, 0, 1, 1], method="interpolated") == 0.25


def test_rocch_hand_example():
    pm, pf = M.rocch([1, 3, 0, 2], [1, 1, 0, 0])
    # (p_fa, p_miss) = (0.5, 0.5) is dominated by the chord from (0.5, 0) to (0, 0.5)
    np.testing.assert_array_equal(pm, [0, 0, 0.5, 1])
    np.testing.assert_array_equal(pf, [1, 0.5, 0, 0])
    assert M.eer([1, 3, 0, 2], [1, 1, 0, 0]) == 0.25
    assert M.eer([1, 3, 0, 2], [1, 1, 0, 0], method="interpolated") == 0.5


@pytest.mark.parametrize("small,chunk", [(0, 1), (0, 3), (2, 2), (5, 7), (2048, 1 << 18)])
@pytest.mark.parametrize("seed", range(6))
def test_lower_hull_stages_match_monotone_chain(small, chunk, seed):
    """All stages of the vectorised hull (chunked local pruning, quickhull, monotone chain)."""
    rng = np.random.default_rng(seed)
    n = 300
    if seed % 3 == 0:    # a staircase (distinct scores)
        steps = rng.random(n) < 0.5
        dx, dy = (~steps).astype(np.int64), steps.astype(np.int64)
    elif seed % 3 == 1:  # tied blocks, with many collinear runs
        dx, dy = rng.integers(0, 3, n), rng.integers(0, 3, n)
        dy[(dx == 0) & (dy == 0)] = 1
    else:                # convex position (local pruning removes nothing): quickhull does the work
        k = np.arange(n)
        dx, dy = np.full(n, 1, dtype=np.int64) * (n - k), k + 1
    x = np.concatenate(([0], np.cumsum(dx))).astype(np.int64)
    y = np.concatenate(([0], np.cumsum(dy))).astype(np.int64)
    got = M._lower_hull(x, y, small=small, chunk=chunk)
    assert got.tolist() == monotone_chain_lower_hull(x.tolist(), y.tolist())


# ---------------------------------------------------------------------------------------------
# DCF
# ---------------------------------------------------------------------------------------------
@SETTINGS
@given(trials(), costs)
def test_min_dcf_matches_brute_force(t, cost):
    scores, labels = t
    p, cm, cf = cost
    value, thr = M.min_dcf(scores, labels, p, cm, cf, return_threshold=True)
    assert value == pytest.approx(brute_min_dcf(scores, labels, p, cm, cf), rel=1e-12, abs=1e-14)
    assert M.min_dcf(scores, labels, p, cm, cf) == value
    assert 0.0 <= value <= 1.0 + 1e-12
    # the returned threshold attains the minimum, and it is a distinct score or +inf
    assert M.actual_dcf(scores, labels, thr, p, cm, cf) == pytest.approx(value, rel=1e-12, abs=1e-14)
    assert thr == np.inf or thr in set(scores.tolist())


@SETTINGS
@given(trials(), costs, st.floats(-1e3, 1e3) | st.sampled_from([-np.inf, np.inf, 0.0, 1.0, 2.0]))
def test_actual_dcf_matches_brute_force(t, cost, thr):
    scores, labels = t
    got = M.actual_dcf(scores, labels, thr, *cost)
    assert got == pytest.approx(brute_dcf(scores, labels, thr, *cost), rel=1e-12, abs=1e-14)
    assert got >= M.min_dcf(scores, labels, *cost) - 1e-12


# Hand computation for scores: targets {1, 6}; non-targets 99 x {0} and one {5}.
# Operating points (threshold: P_miss, P_fa): 0: (0, 1); 1: (0, .01); 5: (.5, .01); 6: (.5, 0); inf: (1, 0).
#   sre08   (p=.01,  Cm=10): C_def=.1;   t=1: .99*.01/.1 = .099;  t=6: .1*.5/.1 = .5   -> .099 @ 1
#   sre10   (p=.001, Cm=1):  C_def=.001; t=1: .999*.01/.001 = 9.99; t=6: .5         -> .5   @ 6
#   vox_p01 (p=.01,  Cm=1):  C_def=.01;  t=1: .99*.01/.01 = .99;  t=6: .5           -> .5   @ 6
#   vox_p05 (p=.05,  Cm=1):  C_def=.05;  t=1: .95*.01/.05 = .19;  t=6: .5           -> .19  @ 1
HAND_SCORES = np.array([1.0, 6.0] + [0.0] * 99 + [5.0])
HAND_LABELS = np.array([1, 1] + [0] * 100)


@pytest.mark.parametrize("name,expected,threshold", [
    ("sre08", 0.099, 1.0), ("sre10", 0.5, 6.0), ("vox_p01", 0.5, 6.0), ("vox_p05", 0.19, 1.0)])
def test_min_dcf_presets_hand_computed(name, expected, threshold):
    value, thr = M.min_dcf_preset(HAND_SCORES, HAND_LABELS, name, return_threshold=True)
    assert value == pytest.approx(expected, rel=1e-12)
    assert thr == threshold
    assert M.min_dcf_preset(HAND_SCORES, HAND_LABELS, name) == value
    assert M.min_dcf(HAND_SCORES, HAND_LABELS, *M.DCF_PRESETS[name]) == value


def test_presets_values():
    assert dict(M.DCF_PRESETS) == {"sre08": (0.01, 10, 1), "sre10": (0.001, 1, 1),
                                   "vox_p01": (0.01, 1, 1), "vox_p05": (0.05, 1, 1)}
    with pytest.raises(TypeError):
        M.DCF_PRESETS["new"] = M.DCFParams(0.5, 1, 1)  # read-only
    with pytest.raises(ValueError, match="unknown DCF preset"):
        M.min_dcf_preset(HAND_SCORES, HAND_LABELS, "sre99")


def test_min_dcf_trivial_systems():
    # identical scores: only accept-all / reject-all exist, so the normalised minDCF is exactly 1
    assert M.min_dcf([1, 1, 1, 1], [1, 0, 1, 0], 0.01) == 1.0
    assert M.min_dcf([1, 1, 1, 1], [1, 0, 1, 0], 0.01, return_threshold=True)[1] == np.inf
    assert M.min_dcf([0, 1], [0, 1], 0.3, 2, 5) == 0.0


def test_bayes_threshold_and_effective_prior():
    assert M.bayes_threshold(0.5) == 0.0
    assert M.bayes_threshold(0.01, 10, 1) == pytest.approx(np.log(0.99 / 0.1))
    assert M.bayes_threshold(0.001) == pytest.approx(np.log(999))
    pe = M.effective_prior(0.01, 10, 1)
    assert pe == pytest.approx(0.1 / 1.09)
    assert M.bayes_threshold(pe) == pytest.approx(M.bayes_threshold(0.01, 10, 1))
    # with calibrated LLRs the Bayes threshold is (near) optimal: here exactly optimal
    llr = np.array([-3.0, -1.0, 2.0, 4.0, 5.0, -0.5])
    lab = np.array([0, 0, 1, 1, 1, 0])
    thr = M.bayes_threshold(0.5)
    assert M.actual_dcf(llr, lab, thr, 0.5) == M.min_dcf(llr, lab, 0.5) == 0.0


# ---------------------------------------------------------------------------------------------
# Order invariance, label formats, evaluate(), validation
# ---------------------------------------------------------------------------------------------
@SETTINGS
@given(trials(), st.randoms(use_true_random=False))
def test_results_do_not_depend_on_trial_order(t, rnd):
    scores, labels = t
    perm = np.array(rnd.sample(range(scores.size), scores.size))
    s2, l2 = scores[perm], labels[perm]
    for a, b in zip(M.det_curve(scores, labels), M.det_curve(s2, l2)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(M.rocch(scores, labels), M.rocch(s2, l2)):
        np.testing.assert_array_equal(a, b)
    for method in ("rocch", "interpolated"):
        assert M.eer(scores, labels, method=method) == M.eer(s2, l2, method=method)
    assert M.min_dcf(scores, labels, 0.01, return_threshold=True) == M.min_dcf(s2, l2, 0.01, return_threshold=True)
    assert M.actual_dcf(scores, labels, 0.5, 0.05) == M.actual_dcf(s2, l2, 0.5, 0.05)


@SETTINGS
@given(trials())
def test_evaluate_agrees_with_the_individual_functions(t):
    scores, labels = t
    out = M.evaluate(scores, labels)
    assert out["eer"] == M.eer(scores, labels)
    assert out["eer_interpolated"] == M.eer(scores, labels, method="interpolated")
    for name in M.DCF_PRESETS:
        assert out[f"min_dcf_{name}"] == M.min_dcf_preset(scores, labels, name)
    assert set(M.evaluate(scores, labels, presets=("sre10",))) == {"eer", "eer_interpolated", "min_dcf_sre10"}


def test_label_formats_are_equivalent():
    s = [0.3, 1.2, -0.5, 0.9, 0.9]
    ref = M.eer(s, [True, True, False, False, True])
    assert M.eer(s, [1, 1, 0, 0, 1]) == ref
    assert M.eer(s, np.array([1.0, 1.0, 0.0, 0.0, 1.0])) == ref
    assert M.eer(np.float32(s), np.uint8([1, 1, 0, 0, 1])) == M.eer(np.float32(s).astype(float), [1, 1, 0, 0, 1])


@pytest.mark.parametrize("scores,labels,match", [
    ([1, 2, 3], [1, 0], "same length"),
    ([1, 2], [1, 1], "at least one target and one non-target"),
    ([1, 2], [0, 0], "at least one target and one non-target"),
    ([], [], "at least one target"),
    ([1, np.nan], [1, 0], "finite"),
    ([1, np.inf], [1, 0], "finite"),
    ([1, 2], [1, 2], "0/1"),
    ([1, 2], [1, -1], "0/1"),
    ([1, 2], ["t", "n"], "boolean or 0/1"),
    ([[1, 2]], [[1, 0]], "1-D"),
])
def test_invalid_inputs_raise_clear_errors(scores, labels, match):
    for call in (lambda: M.eer(scores, labels), lambda: M.min_dcf(scores, labels, 0.01),
                 lambda: M.det_curve(scores, labels), lambda: M.actual_dcf(scores, labels, 0, 0.01),
                 lambda: M.rocch(scores, labels)):
        with pytest.raises(ValueError, match=match):
            call()


@pytest.mark.parametrize("p,cm,cf", [(0, 1, 1), (1, 1, 1), (-0.1, 1, 1), (0.5, 0, 1), (0.5, 1, -1),
                                     (0.5, np.inf, 1), (np.nan, 1, 1)])
def test_invalid_costs(p, cm, cf):
    with pytest.raises(ValueError):
        M.min_dcf([0, 1], [0, 1], p, cm, cf)
    with pytest.raises(ValueError):
        M.actual_dcf([0, 1], [0, 1], 0.5, p, cm, cf)


def test_other_invalid_arguments():
    with pytest.raises(ValueError, match="method"):
        M.eer([0, 1], [0, 1], method="convex")
    with pytest.raises(ValueError, match="NaN"):
        M.actual_dcf([0, 1], [0, 1], np.nan, 0.5)


# ---------------------------------------------------------------------------------------------
# Scale
# ---------------------------------------------------------------------------------------------
def test_ten_million_trials_smoke():
    """10^7 Gaussian trials (d' = 2): one sort, the theoretical EER Phi(-1), a few seconds."""
    from scipy.stats import norm
    rng = np.random.default_rng(123)
    n = 10_000_000
    labels = rng.random(n) < 0.1
    scores = rng.standard_normal(n)
    scores[labels] += 2.0
    t0 = time.perf_counter()
    out = M.evaluate(scores, labels)
    elapsed = time.perf_counter() - t0
    assert out["eer"] == pytest.approx(norm.cdf(-1.0), abs=2e-3)
    assert 0 <= out["eer_interpolated"] - out["eer"] < 1e-4
    # theoretical minDCF at p=0.05 for unit-variance Gaussians 2 apart
    t = np.linspace(-2, 6, 20001)
    theory = np.min(0.05 * norm.cdf(t - 2) + 0.95 * norm.sf(t)) / 0.05
    assert out["min_dcf_vox_p05"] == pytest.approx(theory, abs=0.01)
    assert elapsed < 60  # generous: a few seconds on an ordinary machine


def test_million_tied_trials_against_bosaris_eer():
    """Heavy ties at scale (scores rounded to a coarse grid): rocch EER vs the BOSARIS formula on the hull."""
    rng = np.random.default_rng(7)
    n = 1_000_000
    labels = rng.random(n) < 0.3
    scores = np.round(rng.standard_normal(n) + 1.5 * labels, 1)
    pm, pf = M.rocch(scores, labels)
    assert M.eer(scores, labels) == pytest.approx(bosaris_rocch2eer(pm, pf), rel=1e-12)
    # the interpolated EER from the (few hundred) operating points, recomputed the slow way
    p_miss, p_fa, _ = M.det_curve(scores, labels)
    d = p_fa - p_miss
    k = np.flatnonzero(d >= 0)[-1]
    slow = p_fa[k] + d[k] / (d[k] - d[k + 1]) * (p_fa[k + 1] - p_fa[k])
    assert M.eer(scores, labels, method="interpolated") == pytest.approx(slow, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# DET plots
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def agg():
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg", force=True)
    return mpl


def test_save_det_plot_writes_png_atomically(agg, tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.random(2000) < 0.3
    scores = rng.standard_normal(2000) + 2 * labels
    out = tmp_path / "det.png"
    out.write_bytes(b"old")
    path = D.save_det_plot(out, scores=scores, labels=labels, label="sys A", title="DET")
    assert path == out
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["det.png"]  # no temporary left behind
    # from precomputed points too
    pm, pf, _ = M.det_curve(scores, labels)
    D.save_det_plot(str(tmp_path / "det2.png"), pm, pf, mark_eer=False)
    assert (tmp_path / "det2.png").read_bytes()[:4] == b"\x89PNG"


def test_save_det_plot_failure_leaves_old_file(agg, tmp_path, monkeypatch):
    from matplotlib.figure import Figure
    out = tmp_path / "det.png"
    out.write_bytes(b"old")

    def broken_savefig(self, fh, **kwargs):
        fh.write(b"\x89PNG half an image")
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        D.save_det_plot(out, [0.0, 0.5, 1.0], [1.0, 0.5, 0.0])
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["det.png"]  # temporary removed
    with pytest.raises(ValueError, match="equal length"):
        D.save_det_plot(out, [0.0, 1.0], [1.0])
    assert out.read_bytes() == b"old"


def test_plot_det_probit_axes(agg):
    from matplotlib.figure import Figure
    from scipy.stats import norm
    fig = Figure()
    ax = fig.add_subplot()
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.7, 0.3])
    labels = np.array([0, 0, 1, 1, 0, 1, 1, 0])
    assert D.plot_det(scores=scores, labels=labels, ax=ax, label="A", mark_eer=True) is ax
    assert [tl.get_text() for tl in ax.get_xticklabels()] == ["0.1", "0.5", "1", "2", "5", "10", "20", "40"]
    np.testing.assert_allclose(ax.get_xticks(), norm.ppf([0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4]))
    np.testing.assert_allclose(ax.get_yticks(), ax.get_xticks())
    curve, marker = ax.lines
    pm, pf, _ = M.det_curve(scores, labels)
    inside = (pm > 0) & (pm < 1) & (pf > 0) & (pf < 1)
    np.testing.assert_allclose(curve.get_xdata()[inside], norm.ppf(pf[inside]))
    np.testing.assert_allclose(curve.get_ydata()[inside], norm.ppf(pm[inside]))
    e = M.eer(scores, labels, method="interpolated")
    np.testing.assert_allclose(marker.get_xydata(), [[norm.ppf(e), norm.ppf(e)]])
    assert ax.get_legend() is not None
    with pytest.raises(ValueError, match="either"):
        D.plot_det(pm, pf, scores=scores, labels=labels, ax=ax)
    with pytest.raises(ValueError, match="limits"):
        D.plot_det(pm, pf, ax=ax, limits=(0.5, 0.1))


def test_plot_det_without_matplotlib(monkeypatch):
    # None in sys.modules makes an import fail, even for submodules imported earlier
    for name in ("matplotlib", "matplotlib.pyplot", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match="matplotlib"):
        D.plot_det([0.0, 1.0], [1.0, 0.0])
    with pytest.raises(ImportError, match="matplotlib"):
        D.save_det_plot(os.devnull, [0.0, 1.0], [1.0, 0.0])
