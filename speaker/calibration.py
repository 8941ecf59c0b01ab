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

General form (BOSARIS's linear fusion with quality measures, ``train_linear_fuser`` /
``train_qfuser``; the duration-aware calibration of Mandasari et al. 2013 and WeSpeaker):
one prior-weighted logistic regression over a matrix of columns,

    llr = a * s_1 + b + sum_k w_k * prod(factors of term k)

where ``s_1`` is the first system's score and a term's factors are other systems' scores
(fusion: ``w_k * s_k``) and quality-measure functions ``log(q)`` or ``q`` of per-trial quality
inputs (e.g. ``enrol_speech`` and ``test_speech``, the net speech seconds of the enrolment and of
the test), alone or times a score: with ``score*log(test_speech)`` the scale of the LLR grows with
the test's duration, so the same raw score is a less confident LLR on a 1-s test than on a
10-s one (:func:`duration_terms`).  Each quality function is clamped to the range it had on the
development trials (no extrapolation).  The single-score calibration is the case with no terms.
Columns are standardised for the optimiser and the weights mapped back.

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

import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .metrics import actual_dcf, bayes_threshold, check_prior, check_scores_labels, det_curve

__all__ = ["Calibration", "Measure", "Term", "fit_calibration", "duration_terms", "ENROL_SPEECH", "TEST_SPEECH", "cllr",
           "min_cllr", "threshold_at_eer", "threshold_at_far", "far_threshold", "rate_interval", "decision_threshold",
           "calibration_metrics", "NO_RULE", "MIN_FAR_COUNT"]

_LN2 = math.log(2.0)


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


#: Quality inputs of the duration-aware calibration: net speech seconds of the enrolment
#: (all of a speaker's recordings) and of the test.
ENROL_SPEECH, TEST_SPEECH = "enrol_speech", "test_speech"
_FORMAT = "gmmext-speaker-calibration"
_TRANSFORMS = ("log", "identity")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}\Z")
_FACTOR = re.compile(r"(?:(log)\((.+)\)|(.+))\Z")
# bounds of a calibration (a stored one is untrusted): systems, quality functions, terms, factors
MAX_SYSTEMS, MAX_MEASURES, MAX_TERMS, MAX_FACTORS = 32, 32, 128, 3


def _finite(v: object, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"calibration {what} must be a finite number, got {v!r}")
    return float(v)


def _name(v: object, what: str) -> str:
    if not isinstance(v, str) or not _NAME.match(v):
        raise ValueError(f"calibration {what} must be a name of letters, digits, '_', '.', '-' "
                         f"(at most 64, not starting with a digit), got {v!r}")
    return v


@dataclass(frozen=True)
class Measure:
    """A quality-measure function: ``transform(quality[input])`` clamped to ``[lo, hi]`` (the
    range it had on the development trials).  Its name in terms is ``log(input)`` or ``input``."""

    input: str
    transform: str
    lo: float
    hi: float

    def __post_init__(self) -> None:
        _name(self.input, "quality input")
        if self.transform not in _TRANSFORMS:
            raise ValueError(f"calibration quality transform must be one of {_TRANSFORMS}, got {self.transform!r}")
        lo, hi = _finite(self.lo, "quality range"), _finite(self.hi, "quality range")
        if lo > hi:
            raise ValueError(f"calibration quality range [{lo}, {hi}] of {self.name} is empty")

    @property
    def name(self) -> str:
        return f"log({self.input})" if self.transform == "log" else self.input

    def __call__(self, values: ArrayLike) -> NDArray[np.float64]:
        """The clamped function of raw quality values (finite; >= 0 for ``log``)."""
        return np.clip(_transform(self.transform, self.input, values), self.lo, self.hi)


def _transform(transform: str, name: str, values: ArrayLike) -> NDArray[np.float64]:
    """``log`` (of values >= 0; 0 gives -inf) or ``identity`` of finite quality values."""
    x = np.asarray(values, dtype=np.float64)
    if not np.isfinite(np.sum(x)):
        raise ValueError(f"quality {name!r} must be finite")
    if transform == "log":
        if np.any(x < 0):
            raise ValueError(f"quality {name!r} must be >= 0 (seconds), got {float(x.min())}")
        with np.errstate(divide="ignore"):
            x = np.log(x)                             # 0 -> -inf: clamped to the range's low end
    return x


@dataclass(frozen=True)
class Term:
    """``weight * prod(factors)``: factors are system names and quality-measure names."""

    weight: float
    factors: tuple[str, ...]

    def __post_init__(self) -> None:
        _finite(self.weight, "term weight")
        if not isinstance(self.factors, tuple) or not 1 <= len(self.factors) <= MAX_FACTORS:
            raise ValueError(f"calibration term factors must be a tuple of 1-{MAX_FACTORS} names, got {self.factors!r}")

    @property
    def name(self) -> str:
        return "*".join(self.factors)


@dataclass(frozen=True)
class Calibration:
    """A map of raw scores (and quality measures) to calibrated LLRs (natural log).

    ``llr = a * s_1 + b + sum(term.weight * prod(term's factors))`` (module docstring); with no
    terms (today's calibration) the affine ``llr = a * score + b``.

    ``prior`` is the training prior it was fitted at; ``n_target`` / ``n_nontarget`` the
    development trials it was fitted on (informative only); ``systems`` the names of the score
    columns (``s_1`` first); ``measures`` the quality-measure functions the terms use.
    """

    a: float
    b: float
    prior: float = 0.5
    n_target: int = 0
    n_nontarget: int = 0
    systems: tuple[str, ...] = ("score",)
    measures: tuple[Measure, ...] = ()
    terms: tuple[Term, ...] = ()

    def __post_init__(self) -> None:
        for name in ("a", "b", "prior"):
            _finite(getattr(self, name), name)
        check_prior(self.prior, "prior")
        for name in ("n_target", "n_nontarget"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"calibration {name} must be a non-negative integer, got {v!r}")
        for name, seq, cls, most in (("systems", self.systems, str, MAX_SYSTEMS),
                                     ("measures", self.measures, Measure, MAX_MEASURES),
                                     ("terms", self.terms, Term, MAX_TERMS)):
            if not isinstance(seq, tuple) or not all(isinstance(x, cls) for x in seq):
                raise ValueError(f"calibration {name} must be a tuple of {cls.__name__}")
            if len(seq) > most or (name == "systems" and not seq):
                raise ValueError(f"calibration has {len(seq)} {name}; 1-{most} allowed" if name == "systems"
                                 else f"calibration has {len(seq)} {name}; at most {most} allowed")
        for s in self.systems:
            _name(s, "system")
        known = list(self.systems) + [m.name for m in self.measures]
        if len(set(known)) != len(known):
            raise ValueError(f"calibration names repeat: {known}")
        seen = {(self.systems[0],)}
        for t in self.terms:
            for f in t.factors:
                if f not in known:
                    raise ValueError(f"calibration term {t.name!r}: unknown factor {f!r} (known: {known})")
            key = tuple(sorted(t.factors))
            if key in seen:
                raise ValueError(f"calibration term {t.name!r} repeats a column")
            seen.add(key)
        low = self.min_slope()
        if not low > 0:
            raise ValueError(f"calibration slope on the score must be > 0 (a higher score must make the claimed speaker "
                             f"more likely), got {low:.6g}: the development scores are larger for non-targets (labels "
                             "inverted, or a broken system)")

    def min_slope(self) -> float:
        """The smallest slope of the LLR in the first system's score, over the quality measures'
        ranges: ``a`` plus the terms that multiply the score by measures, at the corners of the
        range box (the slope is multilinear in the measures).  Terms with another system's score
        are a fusion's own business and left out."""
        s1 = self.systems[0]
        ranges = {m.name: (m.lo, m.hi) for m in self.measures}
        terms = [t for t in self.terms if s1 in t.factors and all(f in ranges or f == s1 for f in t.factors)]
        used = sorted({f for t in terms for f in t.factors if f != s1})
        low = math.inf
        for corner in itertools.product(*(ranges[f] for f in used)):
            at = dict(zip(used, corner))
            low = min(low, self.a + sum(t.weight * math.prod(at[f] for f in t.factors if f != s1) for t in terms))
        return low

    @property
    def inputs(self) -> tuple[str, ...]:
        """The quality inputs :meth:`llr` needs (empty for a duration-blind calibration)."""
        return tuple(dict.fromkeys(m.input for m in self.measures))

    @property
    def affine(self) -> bool:
        """True for today's ``llr = a * score + b`` (one system, no terms)."""
        return len(self.systems) == 1 and not self.terms and not self.measures

    def llr(self, scores: ArrayLike, quality: Mapping[str, ArrayLike] | None = None
            ) -> NDArray[np.float64] | float:
        """Calibrated LLRs.

        Parameters
        ----------
        scores : one system: a scalar or ``(n,)``; several: ``(len(systems),)`` or ``(n, len(systems))``
            raw scores, columns in the order of ``systems``
        quality : {input: scalar or (n,)} the raw quality inputs in :attr:`inputs` (e.g. net
            speech seconds); ignored by a calibration without quality measures

        Returns a float for one trial given as a scalar (one system), else ``(n,)`` (or the shape
        of ``scores`` for one system).
        """
        if self.affine:
            out = self.a * np.asarray(scores, dtype=np.float64) + self.b
            return float(out) if np.ndim(out) == 0 else out
        S = np.asarray(scores, dtype=np.float64)
        m = len(self.systems)
        if m == 1:
            scalar, S = S.ndim == 0, S.reshape(-1, 1)
        else:
            if S.ndim not in (1, 2) or S.shape[-1] != m:
                raise ValueError(f"scores must have {m} columns ({', '.join(self.systems)}), got shape {S.shape}")
            scalar, S = False, S.reshape(-1, m)
        if not np.isfinite(np.sum(S)):
            raise ValueError("scores must be finite")
        n = S.shape[0]
        cols: dict[str, NDArray[np.float64]] = {name: S[:, j] for j, name in enumerate(self.systems)}
        missing = [i for i in self.inputs if quality is None or i not in quality]
        if missing:
            raise ValueError(f"this calibration needs the quality inputs {list(self.inputs)}; missing {missing}")
        for meas in self.measures:
            v = meas(quality[meas.input])                           # type: ignore[index]
            if v.ndim > 1 or (v.ndim == 1 and v.shape[0] != n):
                raise ValueError(f"quality {meas.input!r} must be a scalar or ({n},), got shape {v.shape}")
            cols[meas.name] = np.broadcast_to(v, (n,))
        out = self.a * S[:, 0] + self.b
        for t in self.terms:
            col = cols[t.factors[0]]
            for f in t.factors[1:]:
                col = col * cols[f]
            out = out + t.weight * col
        return float(out[0]) if scalar else out

    def to_json(self) -> str:
        """JSON: version 1 (``a``, ``b``) for an affine calibration, so that older readers read
        it; version 2 with ``systems``, ``measures`` and ``terms`` otherwise."""
        d = {"format": _FORMAT, "version": 1, "a": self.a, "b": self.b, "prior": self.prior,
             "n_target": self.n_target, "n_nontarget": self.n_nontarget}
        if not (self.affine and self.systems == ("score",)):
            d.update(version=2, systems=list(self.systems),
                     measures=[{"input": m.input, "transform": m.transform, "lo": m.lo, "hi": m.hi}
                               for m in self.measures],
                     terms=[{"weight": t.weight, "factors": list(t.factors)} for t in self.terms])
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> "Calibration":
        """Parse :meth:`to_json`'s output (version 1 or 2); ValueError naming the problem otherwise
        (the document is untrusted: a store row, a file)."""
        if len(text) > 1 << 16:
            raise ValueError("calibration JSON is implausibly large")
        try:
            d = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(d, dict) or d.get("format") != _FORMAT or d.get("version") not in (1, 2):
            raise ValueError("not a gmmext-speaker-calibration version 1 or 2 document")
        v1 = {"format", "version", "a", "b", "prior", "n_target", "n_nontarget"}
        allowed = v1 | ({"systems", "measures", "terms"} if d["version"] == 2 else set())
        extra = set(d) - allowed
        if extra:
            raise ValueError(f"unknown keys {sorted(extra)}")
        try:
            extra_fields = {}
            if d["version"] == 2:
                extra_fields = dict(systems=_tuple(d["systems"], MAX_SYSTEMS, "systems"),
                                    measures=tuple(_measure(m) for m in _tuple(d["measures"], MAX_MEASURES, "measures")),
                                    terms=tuple(_term(t) for t in _tuple(d["terms"], MAX_TERMS, "terms")))
            return cls(d["a"], d["b"], d.get("prior", 0.5), d.get("n_target", 0), d.get("n_nontarget", 0),
                       **extra_fields)
        except KeyError as exc:
            raise ValueError(f"missing key {exc}") from None


def _tuple(v: object, most: int, what: str) -> tuple:
    if not isinstance(v, list) or len(v) > most:
        raise ValueError(f"calibration {what} must be a list of at most {most} items")
    return tuple(v)


def _measure(m: object) -> Measure:
    if not isinstance(m, dict) or set(m) != {"input", "transform", "lo", "hi"}:
        raise ValueError("a calibration measure must be {input, transform, lo, hi}")
    return Measure(m["input"], m["transform"], _finite(m["lo"], "quality range"), _finite(m["hi"], "quality range"))


def _term(t: object) -> Term:
    if not isinstance(t, dict) or set(t) != {"weight", "factors"} or not isinstance(t["factors"], list):
        raise ValueError("a calibration term must be {weight, factors: [names]}")
    if not all(isinstance(f, str) and len(f) <= 72 for f in t["factors"]):
        raise ValueError("calibration term factors must be names")   # which names: Calibration checks
    return Term(t["weight"], tuple(t["factors"]))


def duration_terms(system: str = "score") -> tuple[str, ...]:
    """The duration-aware calibration's terms: ``log`` of the enrolment's and the test's net
    speech seconds, alone (shift) and times the score (scale)."""
    logs = (f"log({ENROL_SPEECH})", f"log({TEST_SPEECH})")
    return logs + tuple(f"{system}*{q}" for q in logs)


def _parse_terms(terms: Sequence[str], systems: tuple[str, ...], quality: Mapping[str, NDArray[np.float64]]
                 ) -> tuple[list[tuple[str, ...]], dict[str, tuple[str, str]]]:
    """Term strings ``f1*f2`` (a factor: a system, a quality input, or ``log(input)``) ->
    (factor-name tuples, {measure name: (input, transform)})."""
    out, measures = [], {}
    for term in terms:
        if not isinstance(term, str) or not term:
            raise ValueError(f"a term must be a string like 'score*log(test_speech)', got {term!r}")
        names = []
        for f in term.replace(" ", "").split("*"):
            m = _FACTOR.match(f)
            inp = (m.group(2) or m.group(3)) if m else None
            if f in systems:
                names.append(f)
            elif inp is not None and inp in quality:
                transform = "log" if m.group(1) else "identity"
                name = f"log({inp})" if transform == "log" else inp
                measures[name] = (inp, transform)
                names.append(name)
            else:
                raise ValueError(f"term {term!r}: {f!r} is neither a system {list(systems)} nor a function of "
                                 f"a quality input {sorted(quality)} (write log(NAME) or NAME)")
        out.append(tuple(names))
    return out, measures


def fit_calibration(scores: ArrayLike, labels: ArrayLike, prior: float = 0.5, *,
                    systems: Sequence[str] | None = None, quality: Mapping[str, ArrayLike] | None = None,
                    terms: Sequence[str] | None = None) -> Calibration:
    """Fit a calibration by prior-weighted logistic regression (see the module docstring).

    Parameters
    ----------
    scores : (n,) raw development scores of one system, or (n, m) of m systems (a fusion)
    labels : (n,) 1/True target, 0/False non-target (at least one of each)
    prior : training prior P in (0, 1)
    systems : names of the m score columns (default ``("score",)`` for one, ``s1, s2, ...`` for several)
    quality : {input: (n,)} raw quality inputs of the trials, e.g. ``{"enrol_speech": ...,
        "test_speech": ...}`` (net speech seconds)
    terms : columns besides the first system's score, as ``"f1*f2"`` strings of factors (a
        system name, ``log(input)`` or ``input``); default: every other system, then for each
        quality input ``log(input)`` and ``<first system>*log(input)`` (:func:`duration_terms`
        for the two net speech inputs)

    With one system and no quality this is today's affine calibration.  A column that is
    constant on the development trials cannot be fitted and is refused.
    """
    S = np.asarray(scores, dtype=np.float64)
    if S.ndim == 1:
        S = S[:, None]
    if S.ndim != 2 or not 1 <= S.shape[1] <= MAX_SYSTEMS:
        raise ValueError(f"scores must be (n,) or (n, m) with 1 <= m <= {MAX_SYSTEMS}, got shape {np.shape(scores)}")
    m = S.shape[1]
    cols = [check_scores_labels(S[:, j], labels)[0] for j in range(m)]
    s, lab = cols[0], check_scores_labels(S[:, 0], labels)[1]
    names = tuple(systems) if systems is not None else (("score",) if m == 1 else tuple(f"s{j + 1}" for j in range(m)))
    if len(names) != m:
        raise ValueError(f"{len(names)} system names for {m} score columns")
    for nm in names:
        _name(nm, "system")
    q = {}
    for k, v in (quality or {}).items():
        arr = np.asarray(v, dtype=np.float64)
        if arr.shape != s.shape or not np.isfinite(np.sum(arr)):
            raise ValueError(f"quality {k!r} must be {s.shape} finite values, got shape {arr.shape}")
        q[_name(k, "quality input")] = arr
    if terms is None:
        terms = [*names[1:], *(f"log({k})" for k in q), *(f"{names[0]}*log({k})" for k in q)]
    factor_tuples, meas_specs = _parse_terms(terms, names, q)
    prior = check_prior(prior, "prior")

    raw_cols = dict(zip(names, cols))
    measures = []
    for mname, (inp, transform) in meas_specs.items():
        v = _transform(transform, inp, q[inp])
        lo, hi = float(v.min()), float(v.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"quality {inp!r}: log of 0 on the development trials; give positive values")
        measures.append(Measure(inp, transform, lo, hi))
        raw_cols[mname] = v
    X = [s]
    for ft in factor_tuples:
        col = raw_cols[ft[0]]
        for f in ft[1:]:
            col = col * raw_cols[f]
        X.append(col)
    X = np.column_stack(X)
    mu = X.mean(axis=0)
    sd = X.std(axis=0)
    for j in range(1, X.shape[1]):
        if not sd[j] > 1e-12 * max(1.0, abs(mu[j])):
            raise ValueError(f"column {'*'.join(factor_tuples[j - 1])!r} is constant on the development trials: "
                             "it cannot be fitted (drop it, or give trials that vary in it)")
    sd[0] = sd[0] or 1.0
    theta = _fit_prior_weighted_lr((X - mu) / sd, lab, prior)
    w = theta[:-1] / sd
    b = float(theta[-1] - w @ mu)
    n_tar, n_non = int(lab.sum()), int((~lab).sum())
    return Calibration(float(w[0]), b, prior, n_tar, n_non, systems=names, measures=tuple(measures),
                       terms=tuple(Term(float(wk), ft) for wk, ft in zip(w[1:], factor_tuples)))


def _fit_prior_weighted_lr(Z: NDArray[np.float64], lab: NDArray[np.bool_], prior: float) -> NDArray[np.float64]:
    """Weights (p,) and intercept (last) minimising the prior-weighted cross-entropy of ``Z @ w +
    c + logit(prior)`` (scipy's BFGS, analytic gradient, from zero)."""
    n_tar, n_non = int(lab.sum()), int((~lab).sum())
    y = np.where(lab, 1.0, -1.0)                    # target: loss log(1+e^-x); non-target: log(1+e^x)
    wt = np.where(lab, prior / n_tar, (1.0 - prior) / n_non)
    offset = _logit(prior)
    from scipy.optimize import minimize        # (imported here: a command that only applies a calibration starts faster)
    from scipy.special import expit

    def objective(theta):
        x = Z @ theta[:-1] + theta[-1] + offset
        loss = np.logaddexp(0.0, -y * x)
        g = -y * wt * expit(-y * x)                 # d loss / d x, weighted
        return float(wt @ loss), np.r_[Z.T @ g, g.sum()]

    res = minimize(objective, np.zeros(Z.shape[1] + 1), jac=True, method="BFGS",
                   options={"gtol": 1e-12, "maxiter": 1000})
    return res.x


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


#: Fewest non-target trials a decision at a target false-accept rate F needs to expect to pass
#: (F x non-target trials >= this): with fewer, the threshold is the noise of a handful of trials.
MIN_FAR_COUNT = 10

#: Why a decision is ``undecided`` without a calibration or a threshold (one line).
NO_RULE = ("no calibration and no threshold: scores are not decisions (calibrate the store: 'speaker calibrate "
           "--store DB --from-enrollments', or give a threshold on the raw score: --threshold T)")


def far_threshold(nontarget_llrs: ArrayLike, target_far: float) -> float:
    """The lowest threshold at which at most ``target_far`` of the non-target trials pass.

    With the N non-target values sorted and ``m = floor(F N)`` false accepts allowed, the
    threshold is just above the ``(m + 1)``-th highest value (``numpy.nextafter`` towards +inf):
    accept iff ``value >= threshold`` then passes at most ``m`` of them (fewer on ties).
    ValueError when ``F N < MIN_FAR_COUNT``: so few expected false accepts say nothing.
    """
    non = np.sort(np.asarray(nontarget_llrs, dtype=np.float64).ravel())
    far = float(target_far)
    if not 0.0 < far < 1.0:
        raise ValueError(f"target false-accept rate must be in (0, 1), got {target_far!r}")
    n = non.size
    if far * n < MIN_FAR_COUNT:
        raise ValueError(f"a false-accept rate of {far:g} needs at least {math.ceil(MIN_FAR_COUNT / far)} non-target "
                         f"trials in the calibration ({MIN_FAR_COUNT} false accepts expected); it has {n}: calibrate on "
                         "more speakers, or decide at a Bayes threshold (--p-target)")
    m = int(math.floor(far * n + 1e-9))
    return float(np.nextafter(non[n - m - 1], np.inf))


def rate_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) confidence interval of a rate observed as ``k`` of ``n``
    (``scipy.stats.binomtest(k, n).proportion_ci``); (0, 1) when ``n`` is 0."""
    if n <= 0:
        return 0.0, 1.0
    from scipy.stats import binomtest
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def decision_threshold(calibration: Calibration | None, *, threshold: float | None = None,
                       p_target: float | None = None, c_miss: float = 1.0, c_fa: float = 1.0,
                       target_far: float | None = None, nontarget_llrs: ArrayLike | None = None
                       ) -> tuple[float | None, bool, str]:
    """The decision rule: ``(threshold, on_llr, rule)``; accept iff value >= threshold, the value
    being the calibrated LLR when ``on_llr``, else the raw score; ``rule`` says it in one line.

    * an explicit ``threshold`` applies to the raw score (it wins over a calibration);
    * ``target_far`` F: the threshold on the calibrated LLR at which F of the calibration's
      non-target trials pass (:func:`far_threshold` of ``nontarget_llrs``, the calibrated LLRs
      of the trials it was fitted on);
    * otherwise, with a calibration, the Bayes threshold of (``p_target``, ``c_miss``,
      ``c_fa``) on the calibrated LLR; ``p_target`` defaults to the prior the calibration was
      fitted at;
    * with none of them there is no rule: threshold None (decisions are ``undecided``,
      :data:`NO_RULE`).  ``p_target`` or ``target_far`` without a calibration is an error (raw
      scores are not LLRs one can trust), and so are ``threshold`` and ``target_far`` together.
    """
    if threshold is not None and target_far is not None:
        raise ValueError("give either a threshold on the raw score or a target false-accept rate, not both")
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number, got {threshold!r}")
        return float(threshold), False, f"raw score >= {float(threshold):g} (explicit threshold)"
    if target_far is not None:
        if calibration is None:
            raise ValueError("a decision at a target false-accept rate needs a calibration: run 'speaker calibrate "
                             "--store DB --from-enrollments' (or on development trials) first")
        if nontarget_llrs is None:
            raise ValueError("this calibration keeps no trial scores, so no false-accept rate can be read from it: "
                             "fit one with 'speaker calibrate --store DB' (--from-enrollments or --scores/--trials)")
        t = far_threshold(nontarget_llrs, target_far)
        n = int(np.size(nontarget_llrs))
        return t, True, (f"calibrated LLR >= {t:.4g} (false-accept rate {float(target_far):g} on the calibration's "
                         f"{n} non-target trials)")
    if calibration is not None:
        p = calibration.prior if p_target is None else p_target
        t = bayes_threshold(p, c_miss, c_fa)
        return t, True, (f"calibrated LLR >= {t:.4g} (Bayes threshold at p_target {p:g}, c_miss {c_miss:g}, "
                         f"c_fa {c_fa:g})")
    if p_target is not None:
        raise ValueError("a decision at p_target needs calibrated scores: run 'speaker calibrate' first, "
                         "or give a threshold")
    return None, False, NO_RULE


def calibration_metrics(scores: ArrayLike, labels: ArrayLike, *, calibration: Calibration | None = None,
                        p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0,
                        target_far: float = 0.01, quality: Mapping[str, ArrayLike] | None = None
                        ) -> dict[str, float]:
    """What ``speaker eval`` adds to EER and minDCF.

    ``cllr`` (of the scores read as LLRs, after ``calibration`` if given), ``min_cllr``,
    ``act_dcf`` (normalised, at the Bayes threshold of ``p_target``/costs on those LLRs),
    ``threshold_eer`` and ``threshold_far`` (raw-score thresholds, with the rates there).
    ``quality``: the trials' quality inputs, for a calibration that uses them.
    """
    s, lab = check_scores_labels(scores, labels)
    llrs = calibration.llr(s, quality) if calibration is not None else s
    t_eer, pm_eer, pf_eer = threshold_at_eer(s, lab)
    t_far, pm_far, pf_far = threshold_at_far(s, lab, target_far)
    return {"cllr": cllr(llrs, lab), "min_cllr": min_cllr(s, lab),
            "act_dcf": actual_dcf(llrs, lab, bayes_threshold(p_target, c_miss, c_fa), p_target, c_miss, c_fa),
            "act_dcf_params": {"p_target": p_target, "c_miss": c_miss, "c_fa": c_fa},
            "calibrated": calibration is not None,
            "threshold_eer": t_eer, "threshold_eer_p_miss": pm_eer, "threshold_eer_p_fa": pf_eer,
            "target_far": float(target_far), "threshold_far": t_far, "threshold_far_p_miss": pm_far,
            "threshold_far_p_fa": pf_far}
