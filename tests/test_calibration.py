"""speaker/calibration.py against independent references: scikit-learn's logistic regression,
Cllr's sum formula, minCllr by exhaustive monotone fits, thresholds by exhaustive search."""
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from sklearn.linear_model import LogisticRegression

from speaker.calibration import (Calibration, calibration_metrics, cllr, decision_threshold, fit_calibration,
                                 min_cllr, threshold_at_eer, threshold_at_far)


def synthetic(seed=0, n_tar=60, n_non=600, sep=2.5, scale=0.3, shift=-1.0):
    rng = np.random.default_rng(seed)
    s = np.r_[rng.normal(sep, 1.0, n_tar), rng.normal(0.0, 1.0, n_non)] * scale + shift
    return s, np.r_[np.ones(n_tar, bool), np.zeros(n_non, bool)]


@pytest.mark.parametrize("prior", [0.5, 0.1, 0.01, 0.9])
@pytest.mark.parametrize("seed", [0, 1])
def test_fit_matches_sklearn_weighted_logistic_regression(prior, seed):
    s, lab = synthetic(seed)
    cal = fit_calibration(s, lab, prior=prior)
    n_tar, n_non = lab.sum(), (~lab).sum()
    w = np.where(lab, prior / n_tar, (1 - prior) / n_non) * len(s)      # sklearn's loss is a sum
    lr = LogisticRegression(C=np.inf, tol=1e-12, max_iter=100_000).fit(s[:, None], lab, sample_weight=w)
    assert cal.a == pytest.approx(lr.coef_[0, 0], rel=1e-5, abs=1e-7)
    assert cal.b == pytest.approx(lr.intercept_[0] - math.log(prior / (1 - prior)), rel=1e-5, abs=1e-6)
    assert (cal.n_target, cal.n_nontarget, cal.prior) == (n_tar, n_non, prior)


def test_calibrating_true_llrs_is_nearly_the_identity():
    rng = np.random.default_rng(3)
    tar, non = rng.normal(1.0, 1.0, 20_000), rng.normal(-1.0, 1.0, 20_000)  # llr(x) = 2x for these classes
    s = np.r_[tar, non] / 2 - 0.7                                            # scores: x/2 - 0.7
    cal = fit_calibration(s, np.r_[np.ones(20_000, bool), np.zeros(20_000, bool)])
    assert cal.a == pytest.approx(4.0, rel=0.05) and cal.b == pytest.approx(2.8, rel=0.05)


def test_cllr_is_its_sum_formula():
    s, lab = synthetic(4)
    l = 1.7 * s + 0.3
    tar = [math.log2(1 + math.exp(-x)) for x in l[lab]]
    non = [math.log2(1 + math.exp(x)) for x in l[~lab]]
    assert cllr(l, lab) == pytest.approx((sum(tar) / len(tar) + sum(non) / len(non)) / 2, rel=1e-12)
    assert cllr(np.zeros(4), [1, 0, 1, 0]) == pytest.approx(1.0)
    assert cllr([np.inf, -np.inf], [1, 0]) == 0.0 and cllr([-np.inf, 0], [1, 0]) == np.inf


def _brute_min_cllr(scores, labels):
    """Minimum of Cllr over all non-decreasing posteriors: for each partition of the sorted
    distinct-score groups into contiguous blocks, each block at its optimal value (the
    prior-0.5-weighted target fraction), kept if non-decreasing; then the smallest Cllr."""
    scores, labels = np.asarray(scores), np.asarray(labels, bool)
    n_tar, n_non = labels.sum(), (~labels).sum()
    groups = [(labels[scores == u].sum(), (~labels[scores == u]).sum()) for u in np.unique(scores)]
    best = np.inf
    for cuts in itertools.product([0, 1], repeat=len(groups) - 1):
        blocks, cur = [], [0, 0]
        for g, cut in zip(groups, list(cuts) + [1]):
            cur = [cur[0] + g[0], cur[1] + g[1]]
            if cut:
                blocks.append(cur)
                cur = [0, 0]
        q = [(t / n_tar) / (t / n_tar + n / n_non) for t, n in blocks]
        if any(b < a for a, b in zip(q, q[1:])):
            continue
        cost = 0.0
        for (t, n), qb in zip(blocks, q):
            if t:
                cost += t / n_tar * -math.log2(qb)
            if n:
                cost += n / n_non * -math.log2(1 - qb)
        best = min(best, cost / 2)
    return best


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=2, max_size=9))
def test_min_cllr_is_the_best_monotone_fit(trials):
    s = np.array([t[0] for t in trials], dtype=float)
    lab = np.array([t[1] for t in trials])
    if lab.all() or not lab.any():
        return
    assert min_cllr(s, lab) == pytest.approx(_brute_min_cllr(s, lab), abs=1e-9)


def test_min_cllr_is_invariant_to_monotone_maps_and_below_cllr():
    s, lab = synthetic(5)
    assert min_cllr(s, lab) == pytest.approx(min_cllr(np.exp(3 * s), lab), abs=1e-12)
    cal = fit_calibration(s, lab)
    assert min_cllr(s, lab) <= cllr(cal.llr(s), lab) <= cllr(s, lab)


def _rates(s, lab, t):
    return float(np.mean(s[lab] < t)), float(np.mean(s[~lab] >= t))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(-4, 4), st.booleans()), min_size=2, max_size=30),
       st.sampled_from([0.0, 0.05, 0.2, 0.5, 1.0]))
def test_thresholds_by_exhaustive_search(trials, far):
    s = np.array([t[0] for t in trials], dtype=float)
    lab = np.array([t[1] for t in trials])
    if lab.all() or not lab.any():
        return
    cands = sorted(set(s.tolist())) + [np.inf]
    worst = [max(_rates(s, lab, t)) for t in cands]
    t_eer = cands[worst.index(min(worst))]
    assert threshold_at_eer(s, lab) == (t_eer, *_rates(s, lab, t_eer))
    t_far = next(t for t in cands if _rates(s, lab, t)[1] <= far)
    assert threshold_at_far(s, lab, far) == (t_far, *_rates(s, lab, t_far))


def test_actual_dcf_at_the_bayes_threshold():
    s, lab = synthetic(6)
    cal = fit_calibration(s, lab)
    m = calibration_metrics(s, lab, calibration=cal, p_target=0.05, c_miss=2.0, c_fa=1.0, target_far=0.01)
    l = cal.a * s + cal.b
    accept = l >= math.log(1.0 * 0.95 / (2.0 * 0.05))
    p_miss, p_fa = np.mean(~accept[lab]), np.mean(accept[~lab])
    assert m["act_dcf"] == pytest.approx((2 * 0.05 * p_miss + 0.95 * p_fa) / min(2 * 0.05, 0.95))
    assert m["cllr"] == pytest.approx(cllr(l, lab)) and m["calibrated"] is True
    raw = calibration_metrics(s, lab, p_target=0.05, c_miss=2.0)
    assert raw["act_dcf"] > m["act_dcf"]             # these raw scores are badly calibrated (shifted)


def test_calibration_json_and_decisions():
    cal = Calibration(1.5, -0.25, 0.1, 10, 90)
    assert Calibration.from_json(cal.to_json()) == cal
    assert cal.llr(2.0) == 2.75 and np.allclose(cal.llr([0.0, 1.0]), [-0.25, 1.25])
    for bad in ("{", "[]", '{"format": "gmmext-speaker-calibration", "version": 2, "a": 1, "b": 0}',
                '{"format": "gmmext-speaker-calibration", "version": 1, "a": "1", "b": 0}',
                '{"format": "gmmext-speaker-calibration", "version": 1, "a": NaN, "b": 0}',
                '{"format": "gmmext-speaker-calibration", "version": 1, "a": 1}',
                '{"format": "gmmext-speaker-calibration", "version": 1, "a": 1, "b": 0, "x": 0}'):
        with pytest.raises(ValueError):
            Calibration.from_json(bad)
    assert decision_threshold(cal, threshold=0.3) == (0.3, False)
    assert decision_threshold(cal, p_target=0.01) == (pytest.approx(math.log(99)), True)
    assert decision_threshold(cal) == (0.0, True)
    assert decision_threshold(None, default=0.5) == (0.5, False)
    with pytest.raises(ValueError, match="calibrated"):
        decision_threshold(None, p_target=0.01)
    with pytest.raises(ValueError):
        fit_calibration([0.0, 1.0], [1, 1])


@pytest.mark.parametrize("scores,labels,match", [
    ([1, 2, 3], [1, 0], "same length"),
    ([1, 2], [1, 1], "at least one target and one non-target"),
    ([1, np.nan], [1, 0], "finite"),
    ([1, 2], [1, 2], "0/1"),
    ([1, 2], ["t", "n"], "boolean or 0/1"),
    ([[1, 2]], [[1, 0]], "1-D"),
])
def test_scores_labels_and_priors_are_checked_as_the_metrics_check_them(scores, labels, match):
    """One check of scores/labels and one of priors (speaker.metrics): calibration refuses what
    eer refuses, with the same message; cllr's LLRs may be infinite, not NaN."""
    from speaker.metrics import bayes_threshold, eer
    for call in (lambda: eer(scores, labels), lambda: fit_calibration(scores, labels),
                 lambda: min_cllr(scores, labels), lambda: calibration_metrics(scores, labels),
                 lambda: cllr(scores, labels)):
        with pytest.raises(ValueError, match=match.replace("finite", "finite|not be NaN")):
            call()
    assert cllr([np.inf, -np.inf], [1, 0]) == 0.0
    for p in (0.0, 1.0, 1.5, -0.1):
        for call in (lambda: fit_calibration([0.0, 1.0], [0, 1], prior=p), lambda: Calibration(1.0, 0.0, p),
                     lambda: bayes_threshold(p)):
            with pytest.raises(ValueError, match="strictly between 0 and 1"):
                call()
