"""Calibrated decisions: scores to log-likelihood ratios, Cllr, minCllr, actual DCF, thresholds.

Calibration (Brümmer's linear logistic regression, as ``train_linear_fusion`` in the BOSARIS
toolkit): ``llr = a * score + b`` with (a, b) minimising the prior-weighted cross-entropy at a
training prior ``P`` (default 0.5)

    C(a, b) = P / N_tar  * sum_tar  log(1 + exp(-(a s + b + logit P)))
            + (1 - P) / N_non * sum_non log(1 + exp(  a s + b + logit P ))

i.e. a logistic regression of the labels on the scores whose target and non-target trials
weigh ``P / N_tar`` and ``(1 - P) / N_non`` (so the trial proportions of the development set
do not matter), whose intercept is ``b + logit P``.  The fit is unregularised (scipy's BFGS
with the analytic gradient).  Calibrated LLRs are natural-log likelihood ratios: accept iff
``llr >= log(c_fa (1 - p_target) / (c_miss p_target))`` (the Bayes threshold) is the decision of
least expected cost at that operating point, for any p_target.

Metrics (Brümmer and du Preez, 2006; BOSARIS):

* **Cllr** (bits) of LLR scores: ``(mean_tar log2(1 + e^-l) + mean_non log2(1 + e^l)) / 2``;
  0 is perfect, 1 is a system that always says llr = 0.
* **minCllr**: the Cllr after the best monotone recalibration, found by the pool-adjacent-
  violators algorithm (scikit-learn's ``IsotonicRegression``, tied scores pooled) on the labels
  ordered by score; ``Cllr - minCllr`` is the calibration loss.
* **actual DCF** at the Bayes threshold, :func:`speaker.metrics.actual_dcf`.
* **thresholds** at the EER (the operating point minimising ``max(P_miss, P_fa)``) and at a
  target false-accept rate (the lowest threshold whose false-accept rate is at most the target).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import expit

from .metrics import actual_dcf, bayes_threshold, check_prior, check_scores_labels, det_curve

__all__ = ["Calibration", "fit_calibration", "cllr", "min_cllr", "threshold_at_eer", "threshold_at_far",
           "decision_threshold", "calibration_metrics"]

_LN2 = math.log(2.0)


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


@dataclass(frozen=True)
class Calibration:
    """An affine map of raw scores to calibrated LLRs (natural log): ``llr = a * score + b``.

    ``prior`` is the training prior it was fitted at; ``n_target`` / ``n_nontarget`` the
    development trials it was fitted on (informative only).
    """

    a: float
    b: float
    prior: float = 0.5
    n_target: int = 0
    n_nontarget: int = 0

    def __post_init__(self) -> None:
        for name in ("a", "b", "prior"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"calibration {name} must be a finite number, got {v!r}")
        check_prior(self.prior, "prior")
        for name in ("n_target", "n_nontarget"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"calibration {name} must be a non-negative integer, got {v!r}")

    def llr(self, scores: ArrayLike) -> NDArray[np.float64] | float:
        """Calibrated LLRs of raw scores (same shape; a float for a scalar)."""
        out = self.a * np.asarray(scores, dtype=np.float64) + self.b
        return float(out) if np.ndim(out) == 0 else out

    def to_json(self) -> str:
        return json.dumps({"format": "gmmext-speaker-calibration", "version": 1, "a": self.a, "b": self.b,
                           "prior": self.prior, "n_target": self.n_target, "n_nontarget": self.n_nontarget})

    @classmethod
    def from_json(cls, text: str) -> "Calibration":
        """Parse :meth:`to_json`'s output; ValueError naming the problem otherwise."""
        if len(text) > 1 << 16:
            raise ValueError("calibration JSON is implausibly large")
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(d, dict) or d.get("format") != "gmmext-speaker-calibration" or d.get("version") != 1:
            raise ValueError("not a gmmext-speaker-calibration version 1 document")
        extra = set(d) - {"format", "version", "a", "b", "prior", "n_target", "n_nontarget"}
        if extra:
            raise ValueError(f"unknown keys {sorted(extra)}")
        try:
            return cls(d["a"], d["b"], d.get("prior", 0.5), d.get("n_target", 0), d.get("n_nontarget", 0))
        except KeyError as exc:
            raise ValueError(f"missing key {exc}") from None


def fit_calibration(scores: ArrayLike, labels: ArrayLike, prior: float = 0.5) -> Calibration:
    """Fit ``llr = a s + b`` by prior-weighted logistic regression (see the module docstring).

    Parameters
    ----------
    scores : (n,) raw development scores
    labels : (n,) 1/True target, 0/False non-target (at least one of each)
    prior : training prior P in (0, 1)
    """
    s, lab = check_scores_labels(scores, labels)
    prior = check_prior(prior, "prior")
    n_tar, n_non = int(lab.sum()), int((~lab).sum())
    # standardise the score for the optimiser's conditioning; undone below
    mu, sd = float(s.mean()), float(s.std()) or 1.0
    z = (s - mu) / sd
    y = np.where(lab, 1.0, -1.0)                    # target: loss log(1+e^-x); non-target: log(1+e^x)
    w = np.where(lab, prior / n_tar, (1.0 - prior) / n_non)
    offset = _logit(prior)

    def objective(theta):
        x = theta[0] * z + theta[1] + offset
        loss = np.logaddexp(0.0, -y * x)
        g = -y * w * expit(-y * x)                  # d loss / d x, weighted
        return float(w @ loss), np.array([g @ z, g.sum()])

    res = minimize(objective, np.zeros(2), jac=True, method="BFGS", options={"gtol": 1e-12, "maxiter": 1000})
    a_z, b_z = res.x
    a = a_z / sd
    return Calibration(float(a), float(b_z - a * mu), prior, n_tar, n_non)


def cllr(llrs: ArrayLike, labels: ArrayLike) -> float:
    """Cllr (bits) of LLR scores (natural log): 0 perfect, 1 uninformative; +-inf allowed."""
    l, lab = check_scores_labels(llrs, labels, infinite_ok=True)
    c_tar = np.logaddexp(0.0, -l[lab]).mean()
    c_non = np.logaddexp(0.0, l[~lab]).mean()
    return float((c_tar + c_non) / (2 * _LN2))


def _pav_llrs(scores: NDArray[np.float64], lab: NDArray[np.bool_]) -> NDArray[np.float64]:
    """The optimal monotone (non-decreasing in the score) LLRs of the trials, by PAV."""
    from sklearn.isotonic import IsotonicRegression
    post = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip"
                              ).fit_transform(scores, lab.astype(np.float64))
    prior_log_odds = math.log(lab.sum()) - math.log((~lab).sum())
    with np.errstate(divide="ignore"):
        return np.log(post) - np.log1p(-post) - prior_log_odds


def min_cllr(scores: ArrayLike, labels: ArrayLike) -> float:
    """minCllr (bits): Cllr after the best monotone recalibration of the scores (PAV)."""
    s, lab = check_scores_labels(scores, labels)
    return cllr(_pav_llrs(s, lab), lab)


def threshold_at_eer(scores: ArrayLike, labels: ArrayLike) -> tuple[float, float, float]:
    """The threshold of the operating point closest to the EER: ``(threshold, p_miss, p_fa)``.

    Among the tie-aware operating points of :func:`speaker.metrics.det_curve` (accept iff
    ``score >= threshold``), the one minimising ``max(p_miss, p_fa)``, the lowest such threshold
    if several.  ``threshold`` is one of the scores, or ``+inf``.
    """
    pm, pf, thr = det_curve(scores, labels)
    k = int(np.argmin(np.maximum(pm, pf)))
    return float(thr[k]), float(pm[k]), float(pf[k])


def threshold_at_far(scores: ArrayLike, labels: ArrayLike, target_far: float) -> tuple[float, float, float]:
    """The lowest threshold whose false-accept rate is at most ``target_far``:
    ``(threshold, p_miss, p_fa)`` (``+inf`` if only rejecting everything achieves it)."""
    far = float(target_far)
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"target false-accept rate must be in [0, 1], got {target_far!r}")
    pm, pf, thr = det_curve(scores, labels)
    k = int(np.argmax(pf <= far))                   # p_fa is non-increasing; the last point has p_fa = 0
    return float(thr[k]), float(pm[k]), float(pf[k])


def decision_threshold(calibration: Calibration | None, *, threshold: float | None = None,
                       p_target: float | None = None, c_miss: float = 1.0, c_fa: float = 1.0,
                       default: float = 0.0) -> tuple[float, bool]:
    """The decision rule: ``(threshold, on_llr)``; accept iff value >= threshold.

    An explicit ``threshold`` applies to the raw score.  Otherwise, with a calibration, the
    Bayes threshold of (``p_target`` (default 0.5), ``c_miss``, ``c_fa``) applies to the
    calibrated LLR.  Without either, ``default`` applies to the raw score; ``p_target``
    without a calibration is an error (raw scores are not LLRs one can trust).
    """
    if threshold is not None:
        if not math.isfinite(threshold):
            raise ValueError(f"threshold must be finite, got {threshold!r}")
        return float(threshold), False
    if calibration is not None:
        return bayes_threshold(0.5 if p_target is None else p_target, c_miss, c_fa), True
    if p_target is not None:
        raise ValueError("a decision at p_target needs calibrated scores: run 'speaker calibrate' first, "
                         "or give a threshold")
    return float(default), False


def calibration_metrics(scores: ArrayLike, labels: ArrayLike, *, calibration: Calibration | None = None,
                        p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0,
                        target_far: float = 0.01) -> dict[str, float]:
    """What ``speaker eval`` adds to EER and minDCF.

    ``cllr`` (of the scores read as LLRs, after ``calibration`` if given), ``min_cllr``,
    ``act_dcf`` (normalised, at the Bayes threshold of ``p_target``/costs on those LLRs),
    ``threshold_eer`` and ``threshold_far`` (raw-score thresholds, with the rates there).
    """
    s, lab = check_scores_labels(scores, labels)
    llrs = calibration.llr(s) if calibration is not None else s
    t_eer, pm_eer, pf_eer = threshold_at_eer(s, lab)
    t_far, pm_far, pf_far = threshold_at_far(s, lab, target_far)
    return {"cllr": cllr(llrs, lab), "min_cllr": min_cllr(s, lab),
            "act_dcf": actual_dcf(llrs, lab, bayes_threshold(p_target, c_miss, c_fa), p_target, c_miss, c_fa),
            "act_dcf_params": {"p_target": p_target, "c_miss": c_miss, "c_fa": c_fa},
            "calibrated": calibration is not None,
            "threshold_eer": t_eer, "threshold_eer_p_miss": pm_eer, "threshold_eer_p_fa": pf_eer,
            "target_far": float(target_far), "threshold_far": t_far, "threshold_far_p_miss": pm_far,
            "threshold_far_p_fa": pf_far}
