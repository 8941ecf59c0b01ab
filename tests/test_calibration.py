"""speaker/calibration.py against independent references: scikit-learn's logistic regression,
Cllr's sum formula, minCllr by exhaustive monotone fits, thresholds by exhaustive search."""
import itertools
import json
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


def test_infinite_llrs_give_no_numpy_warning():
    """PAV makes +inf / -inf LLRs at the ends of a score range: Cllr takes them (a perfectly
    separated set has Cllr 0 by hand: log2(1 + e^-inf) = 0 for every trial) without the
    'invalid value encountered in reduce' that summing +inf and -inf raised from numpy
    (``speaker eval`` printed it in README's demo)."""
    import warnings
    lab = np.array([True, True, False, False, True, False])
    s = np.where(lab, 2.0, -1.0) + np.arange(6) * 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cllr(np.where(lab, np.inf, -np.inf), lab) == 0.0
        assert min_cllr(s, lab) == 0.0
        assert calibration_metrics(s, lab)["min_cllr"] == 0.0


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
    assert decision_threshold(cal, threshold=0.3)[:2] == (0.3, False)
    assert decision_threshold(cal, p_target=0.01)[:2] == (pytest.approx(math.log(99)), True)
    assert decision_threshold(cal)[:2] == (pytest.approx(math.log(9)), True)     # at the prior it was fitted at
    thr, on_llr, rule = decision_threshold(None)                                  # no rule: undecided
    assert (thr, on_llr) == (None, False) and "no calibration and no threshold" in rule
    with pytest.raises(ValueError, match="calibrated"):
        decision_threshold(None, p_target=0.01)
    with pytest.raises(ValueError, match="needs a calibration"):
        decision_threshold(None, target_far=0.01, nontarget_llrs=np.zeros(5000))
    with pytest.raises(ValueError, match="keeps no trial scores"):
        decision_threshold(cal, target_far=0.01)
    with pytest.raises(ValueError, match="not both"):
        decision_threshold(cal, threshold=1.0, target_far=0.01, nontarget_llrs=np.zeros(5000))
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


# ---------------------------------------------------------------- fusion and quality measures
def weighted_lr(X, lab, prior):
    """scikit-learn's unregularised logistic regression with the prior weighting as sample_weight;
    returns (coefficients, bias of the LLR = intercept - logit(prior))."""
    n_tar, n_non = lab.sum(), (~lab).sum()
    w = np.where(lab, prior / n_tar, (1 - prior) / n_non) * len(lab)
    lr = LogisticRegression(C=np.inf, tol=1e-12, max_iter=100_000).fit(X, lab, sample_weight=w)
    return lr.coef_[0], lr.intercept_[0] - math.log(prior / (1 - prior))


def durations_data(seed, n_tar=400, n_non=4000):
    """Scores whose target/non-target separation grows with the test's net speech (1-12 s), and
    enrolments of 5-20 s: the true LLR's scale depends on the durations."""
    rng = np.random.default_rng(seed)
    n = n_tar + n_non
    lab = np.r_[np.ones(n_tar, bool), np.zeros(n_non, bool)]
    d_test = np.exp(rng.uniform(0, math.log(12), n))
    d_enrol = rng.uniform(5, 20, n)
    sep = 1.0 + 1.2 * np.log(d_test) + 0.2 * np.log(d_enrol)
    s = rng.normal(0, 1, n) + lab * sep
    return 0.5 * s - 2, lab, {"enrol_speech": d_enrol, "test_speech": d_test}


@pytest.mark.parametrize("prior", [0.5, 0.05])
def test_fusion_of_three_systems_matches_sklearn(prior):
    rng = np.random.default_rng(5)
    lab = np.r_[np.ones(300, bool), np.zeros(3000, bool)]
    S = np.column_stack([rng.normal(0, 1, lab.size) + lab * d for d in (1.5, 2.0, 0.5)]) * [1, 3, 0.2] + [0, -4, 1]
    cal = fit_calibration(S, lab, prior=prior, systems=("gmm", "plda", "cos"))
    coef, bias = weighted_lr(S, lab, prior)
    got = [cal.a] + [t.weight for t in cal.terms]
    assert [t.factors for t in cal.terms] == [("plda",), ("cos",)]
    assert got == pytest.approx(coef, rel=1e-5, abs=1e-7) and cal.b == pytest.approx(bias, rel=1e-5, abs=1e-6)
    assert cal.llr(S) == pytest.approx(S @ coef + bias, rel=1e-5, abs=1e-6)
    assert cal.llr(S[3]) == pytest.approx(cal.llr(S)[3:4])


@pytest.mark.parametrize("prior", [0.5, 0.01])
def test_duration_aware_calibration_matches_sklearn_on_the_quality_columns(prior):
    s, lab, q = durations_data(0)
    cal = fit_calibration(s, lab, prior=prior, quality=q)
    le, lt = np.log(q["enrol_speech"]), np.log(q["test_speech"])
    X = np.column_stack([s, le, lt, s * le, s * lt])                 # the columns, built directly
    coef, bias = weighted_lr(X, lab, prior)
    assert [t.name for t in cal.terms] == ["log(enrol_speech)", "log(test_speech)",
                                           "score*log(enrol_speech)", "score*log(test_speech)"]
    assert [cal.a] + [t.weight for t in cal.terms] == pytest.approx(coef, rel=1e-4, abs=1e-6)
    assert cal.b == pytest.approx(bias, rel=1e-4, abs=1e-6)
    assert cal.llr(s, q) == pytest.approx(X @ coef + bias, rel=1e-4, abs=1e-5)
    assert cal.inputs == ("enrol_speech", "test_speech")


def test_the_same_score_is_less_confident_on_a_short_test():
    s, lab, q = durations_data(1)
    cal = fit_calibration(s, lab, quality=q)
    blind = fit_calibration(s, lab)
    for raw in (1.5, -2.5):                                     # a target-like and a non-target-like score
        short = cal.llr(raw, {"enrol_speech": 10.0, "test_speech": 1.0})
        long = cal.llr(raw, {"enrol_speech": 10.0, "test_speech": 10.0})
        assert abs(short) < abs(long) and np.sign(short) == np.sign(long)
    s2, lab2, q2 = durations_data(2)                             # held-out trials
    assert cllr(cal.llr(s2, q2), lab2) < cllr(blind.llr(s2), lab2) - 0.02
    short = q2["test_speech"] < 2
    assert cllr(cal.llr(s2, q2)[short], lab2[short]) < cllr(blind.llr(s2)[short], lab2[short])


def test_quality_functions_are_clamped_to_the_development_range():
    s, lab, q = durations_data(3)
    cal = fit_calibration(s, lab, quality=q)
    hi = q["test_speech"].max()
    at = lambda d: cal.llr(0.7, {"enrol_speech": 10.0, "test_speech": d})  # noqa: E731
    assert at(10 * hi) == at(hi) and at(0.0) == at(q["test_speech"].min())
    with pytest.raises(ValueError, match="missing"):
        cal.llr(0.7)
    with pytest.raises(ValueError, match=">= 0"):
        at(-1.0)
    with pytest.raises(ValueError, match="finite"):
        at(float("nan"))


def test_explicit_terms_and_refusals():
    s, lab, q = durations_data(4)
    cal = fit_calibration(s, lab, quality=q, terms=["log(test_speech)", "score*log(test_speech)"])
    assert cal.inputs == ("test_speech",) and len(cal.terms) == 2
    with pytest.raises(ValueError, match="neither a system"):
        fit_calibration(s, lab, quality=q, terms=["log(nope)"])
    with pytest.raises(ValueError, match="constant"):
        fit_calibration(s, lab, quality={"test_speech": np.full(s.size, 3.0)})
    with pytest.raises(ValueError, match="must be"):
        fit_calibration(s, lab, quality={"test_speech": q["test_speech"][:-1]})


def test_affine_calibrations_keep_the_version_1_format_and_old_files_load():
    old = ('{"format": "gmmext-speaker-calibration", "version": 1, "a": 1.5, "b": -0.25, '
           '"prior": 0.1, "n_target": 10, "n_nontarget": 90}')               # as written before fusion
    cal = Calibration.from_json(old)
    assert cal == Calibration(1.5, -0.25, 0.1, 10, 90) and cal.affine
    assert json.loads(cal.to_json()) == json.loads(old)
    assert cal.llr([0.0, 2.0]) == pytest.approx([-0.25, 2.75]) and cal.llr(1.0) == 1.25


def test_general_calibrations_round_trip_through_version_2():
    s, lab, q = durations_data(5)
    for cal in (fit_calibration(s, lab, quality=q, prior=0.2),
                fit_calibration(np.column_stack([s, s ** 3 + np.random.default_rng(0).normal(0, 1, s.size)]), lab,
                                systems=("gmm", "plda"))):
        text = cal.to_json()
        assert json.loads(text)["version"] == 2
        back = Calibration.from_json(text)
        assert back == cal


def _v2(**over):
    d = {"format": "gmmext-speaker-calibration", "version": 2, "a": 1.0, "b": 0.0, "prior": 0.5, "n_target": 1,
         "n_nontarget": 1, "systems": ["score"],
         "measures": [{"input": "test_speech", "transform": "log", "lo": 0.0, "hi": 2.0}],
         "terms": [{"weight": 0.5, "factors": ["score", "log(test_speech)"]}]}
    d.update(over)
    return json.dumps(d)


@pytest.mark.parametrize("text, why", [
    (_v2(), None),
    (_v2(version=3), "version"),
    (_v2(extra=1), "unknown keys"),
    (_v2(terms=[{"weight": 0.5, "factors": ["score", "log(enrol_speech)"]}]), "unknown factor"),
    (_v2(terms=[{"weight": float("nan"), "factors": ["score"]}]), "finite"),
    (_v2(terms=[{"weight": 0.5, "factors": ["score"]}]), "repeats"),
    (_v2(terms=[{"weight": True, "factors": ["log(test_speech)"]}]), "finite"),
    (_v2(terms=[{"weight": 1.0, "factors": ["score"] * 4}]), "factors"),
    (_v2(terms=[{"weight": 1.0, "factors": "score"}]), "term must be"),
    (_v2(terms=[{"weight": 1.0, "factors": ["log(test_speech)"]}] * 200), "at most"),
    (_v2(measures=[{"input": "test_speech", "transform": "exp", "lo": 0.0, "hi": 2.0}]), "transform"),
    (_v2(measures=[{"input": "test_speech", "transform": "log", "lo": 3.0, "hi": 2.0}]), "empty"),
    (_v2(measures=[{"input": "test speech", "transform": "log", "lo": 0.0, "hi": 2.0}]), "name"),
    (_v2(measures=[{"input": "test_speech", "transform": "log", "lo": 0.0, "hi": "2"}]), "finite"),
    (_v2(systems=[]), "systems"),
    (_v2(systems=["score", "score"]), "repeat"),
    (_v2(systems="score"), "list"),
    ('[' * 100_000, "large"),
    ('[' * 20_000 + ']' * 20_000, "not JSON"),
    ('{"format": "gmmext-speaker-calibration", "version": 1, "a": 1, "b": 0, "systems": ["x"]}', "unknown keys"),
])
def test_untrusted_calibration_json_is_validated(text, why):
    if why is None:
        cal = Calibration.from_json(text)
        assert cal.llr(2.0, {"test_speech": math.e}) == pytest.approx(2.0 + 0.5 * 2.0)
        return
    with pytest.raises(ValueError, match=why):
        Calibration.from_json(text)


def test_calibration_metrics_with_quality():
    s, lab, q = durations_data(6)
    cal = fit_calibration(s, lab, quality=q)
    m = calibration_metrics(s, lab, calibration=cal, quality=q)
    assert m["cllr"] == pytest.approx(cllr(cal.llr(s, q), lab))
