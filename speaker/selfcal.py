"""A store's calibration from its own enrolments, and what any kept calibration promises.

:func:`calibrate_from_enrollments` is ``speaker calibrate --store DB --from-enrollments`` (and
``POST /v1/calibration``): trials from what is enrolled
(:meth:`speaker.verification.StoreScoring.enrolment_trials`: leave-one-recording-out targets,
other speakers' models as non-targets), the prior-weighted logistic regression of
:func:`speaker.calibration.fit_calibration`, a report, and the calibration kept in the store's
history (:mod:`speaker.calhistory`) with its trials' LLRs.  It refuses below
:data:`MIN_SPEAKERS` speakers of :data:`MIN_RECORDINGS` recordings, saying what is missing.

:func:`fit_and_report` is shared with ``speaker calibrate --scores --trials --store``: it fits,
and reports Cllr, minCllr and the actual DCF, and at each operating point (the Bayes threshold
of ``p_target``; a target false-accept rate) the expected miss and false-accept rates measured
on the trials, with exact binomial (Clopper-Pearson) 95 % confidence intervals from their
counts (:func:`speaker.calibration.rate_interval`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .calibration import (ENROL_SPEECH, MIN_FAR_COUNT, TEST_SPEECH, Calibration, cllr, duration_terms,
                          far_threshold, fit_calibration, min_cllr, rate_interval)
from .metrics import actual_dcf, bayes_threshold

__all__ = ["MIN_SPEAKERS", "MIN_RECORDINGS", "FEW_SPEAKERS", "NotEnoughEnrolments", "SelfCalibration",
           "operating_point", "fit_and_report", "calibrate_from_enrollments", "describe_point"]

#: Fewest speakers (each with :data:`MIN_RECORDINGS` recordings kept) self-calibration accepts
#: (docs/store.md, "Self-calibration": measured on speechocean762).
MIN_SPEAKERS = 15
#: Fewest recordings per speaker: a leave-one-out model needs at least two of the others.
MIN_RECORDINGS = 3
#: Below this many speakers, the report warns that its rates come from few voices (docs/store.md:
#: from 20 speakers on, random draws of speakers gave nearly the same actual DCF).
FEW_SPEAKERS = 20
#: The columns of a duration-aware self-calibration besides the score (the test's net speech only).
TEST_TERMS = (f"log({TEST_SPEECH})", f"score*log({TEST_SPEECH})")
#: Recordings of a speaker all enrolled within this many seconds count as one session.
SESSION_SECONDS = 3600.0


class NotEnoughEnrolments(ValueError):
    """The store has too few usable enrolments to calibrate itself; the message says what is
    missing (``missing``: the same, one line)."""

    def __init__(self, missing: str) -> None:
        super().__init__(missing)
        self.missing = missing


def operating_point(kind: str, value: float, threshold: float, tar_llrs: np.ndarray,
                    non_llrs: np.ndarray) -> dict:
    """Expected rates at ``threshold`` on the calibrated LLR (accept iff llr >= threshold):
    misses among the targets and false accepts among the non-targets, with their Clopper-Pearson
    95 % intervals.  ``kind``: ``p_target`` (a Bayes threshold at prior ``value``) or
    ``target_far`` (the threshold at false-accept rate ``value``)."""
    misses, fas = int((tar_llrs < threshold).sum()), int((non_llrs >= threshold).sum())
    n_t, n_n = int(tar_llrs.size), int(non_llrs.size)
    return {"kind": kind, "value": float(value), "threshold": float(threshold),
            "p_miss": misses / n_t, "p_miss_ci": list(rate_interval(misses, n_t)), "misses": misses,
            "p_fa": fas / n_n, "p_fa_ci": list(rate_interval(fas, n_n)), "false_accepts": fas,
            "n_target": n_t, "n_nontarget": n_n}


def fit_and_report(target: np.ndarray, nontarget: np.ndarray, *, prior: float = 0.5,
                   p_target: float | None = None, c_miss: float = 1.0, c_fa: float = 1.0,
                   target_far: float | None = 0.01, target_seconds: np.ndarray | None = None,
                   nontarget_seconds: np.ndarray | None = None, terms: tuple[str, ...] | None = None
                   ) -> tuple[Calibration, np.ndarray, np.ndarray, dict]:
    """Fit ``llr = a s + b`` at ``prior`` on raw target / non-target scores:
    ``(calibration, target_llrs, nontarget_llrs, report)``.  With ``target_seconds`` /
    ``nontarget_seconds`` ((n, 2): net speech of each trial's enrolment and test) the
    calibration is duration-aware: ``terms`` (default :func:`speaker.calibration.duration_terms`)
    are its columns besides the score.

    The report (JSON-able): ``cllr`` (bits, of the calibrated LLRs), ``min_cllr``, ``act_dcf``
    (normalised, at the Bayes threshold of ``p_target`` (default ``prior``) and costs), and
    ``operating_points``: the Bayes threshold's, and ``target_far``'s when the trials hold
    enough non-targets for it (:data:`speaker.calibration.MIN_FAR_COUNT` expected false
    accepts).  ValueError when the scores do not separate the classes (a slope <= 0)."""
    s = np.concatenate([target, nontarget]).astype(np.float64)
    lab = np.concatenate([np.ones(len(target), bool), np.zeros(len(nontarget), bool)])
    quality = None
    if target_seconds is not None:
        sec = np.concatenate([target_seconds, nontarget_seconds]).astype(np.float64)
        quality = {ENROL_SPEECH: sec[:, 0], TEST_SPEECH: sec[:, 1]}
        cal = fit_calibration(s, lab, prior=prior, quality=quality, terms=terms or duration_terms())
    else:
        cal = fit_calibration(s, lab, prior=prior)
    if not cal.a > 0 and cal.affine:
        raise ValueError(f"the scores do not separate targets from non-targets (calibration slope {cal.a:.3g} <= 0)")
    llrs_all = np.asarray(cal.llr(s, quality), dtype=np.float64)
    tar, non = llrs_all[:len(target)], llrs_all[len(target):]
    llrs = np.concatenate([tar, non])
    p = prior if p_target is None else p_target
    t_bayes = bayes_threshold(p, c_miss, c_fa)
    points = [operating_point("p_target", p, t_bayes, tar, non)]
    if target_far is not None and target_far * len(non) >= MIN_FAR_COUNT:
        points.append(operating_point("target_far", target_far, far_threshold(non, target_far), tar, non))
    report = {"prior": float(prior), "n_target": int(len(tar)), "n_nontarget": int(len(non)),
              "cllr": cllr(llrs, lab), "min_cllr": min_cllr(s, lab),
              "act_dcf": actual_dcf(llrs, lab, t_bayes, p, c_miss, c_fa),
              "act_dcf_params": {"p_target": float(p), "c_miss": float(c_miss), "c_fa": float(c_fa)},
              "operating_points": points}
    return cal, tar, non, report


@dataclass
class SelfCalibration:
    """What :func:`calibrate_from_enrollments` did: the kept calibration's ``id`` (None when
    not kept), the ``calibration``, one line saying what it was fitted on, the ``report``
    (:func:`fit_and_report`'s, with ``warnings``) and the ``trials``."""

    id: int | None
    calibration: Calibration
    fitted_on: str
    report: dict
    warnings: list[str] = field(default_factory=list)
    trials: object = None


def _check_enough(trials, min_speakers: int, min_recordings: int) -> None:
    if len(trials.speakers) >= min_speakers:
        return
    short = [i for i, why in trials.left_out.items() if "fewer than" in why]
    legacy = [i for i, why in trials.left_out.items() if "before the store kept" in why]
    parts = [f"{min_speakers - len(trials.speakers)} more speaker(s) with {min_recordings} or more recordings"]
    if short:
        parts.append(f"{len(short)} speaker(s) have fewer recordings ({', '.join(short[:5])}"
                     f"{' ...' if len(short) > 5 else ''}): enrol more of theirs")
    if legacy:
        parts.append(f"{len(legacy)} speaker(s) were enrolled before the store kept per-recording data "
                     f"({', '.join(legacy[:5])}{' ...' if len(legacy) > 5 else ''}): enrol them again with replace")
    raise NotEnoughEnrolments(
        f"self-calibration needs at least {min_speakers} speakers with at least {min_recordings} recordings each; the "
        f"store has {len(trials.speakers)}: missing " + "; ".join(parts))


def _warnings(store, trials) -> list[str]:
    out = []
    n = len(trials.speakers)
    if n < FEW_SPEAKERS:
        out.append(f"only {n} speakers: the expected rates come from few voices (see how wide their confidence "
                   f"intervals are); {FEW_SPEAKERS} or more pin them down better")
    one = 0
    for i in trials.speakers:
        times = [r[3] for r in store.recordings(i)]
        one += (max(times) - min(times)) <= SESSION_SECONDS
    if one:
        out.append(f"{one} of {n} speakers had all their recordings enrolled within an hour (one session, probably): "
                   "their target trials compare recordings of one sitting, which match better than a login on another "
                   "day, place or microphone will, so the expected miss rate is optimistic; calibration on "
                   "development trials from other sessions is the figure to trust")
    return out


def calibrate_from_enrollments(store, *, prior: float = 0.5, p_target: float | None = None, c_miss: float = 1.0,
                               c_fa: float = 1.0, target_far: float | None = 0.01,
                               min_speakers: int = MIN_SPEAKERS, min_recordings: int = MIN_RECORDINGS,
                               max_nontarget: int = 50_000, seed: int = 0, keep: bool = True,
                               duration_aware: bool = False) -> SelfCalibration:
    """Calibrate ``store`` (a :class:`speaker.store.SpeakerStore`) from its own enrolments.

    Builds the trials (:meth:`~speaker.verification.StoreScoring.enrolment_trials`), refuses
    (:class:`NotEnoughEnrolments`) below ``min_speakers`` speakers with ``min_recordings``
    recordings kept, fits at ``prior`` and reports (:func:`fit_and_report`, at ``p_target``
    (default ``prior``) and ``target_far``), and with ``keep`` keeps the calibration in the
    store's history as its current one, with its trials' LLRs.  The scores are computed as the
    store object computes them (exact, or its ``top_c``): verify with the same setting.
    ``duration_aware``: the calibration also reads the net speech of the test
    (:data:`TEST_TERMS`: ``log(test_speech)`` and ``score*log(test_speech)``, clamped to the
    range the enrolled recordings span).  Not the enrolment's: a leave-one-out model has one
    recording less than the speaker's model has at use, so its duration would be learnt on a
    range the decisions never see.
    """
    if not isinstance(min_recordings, int) or min_recordings < 2:
        raise ValueError(f"min_recordings must be an integer >= 2 (a leave-one-out model needs one), "
                         f"got {min_recordings!r}")
    trials = store.enrolment_trials(min_recordings=min_recordings, max_nontarget=max_nontarget, seed=seed)
    _check_enough(trials, min_speakers, min_recordings)
    secs = (trials.target_seconds, trials.nontarget_seconds) if duration_aware else (None, None)
    cal, tar, non, report = fit_and_report(trials.target, trials.nontarget, prior=prior, p_target=p_target,
                                           c_miss=c_miss, c_fa=c_fa, target_far=target_far,
                                           target_seconds=secs[0], nontarget_seconds=secs[1], terms=TEST_TERMS)
    scoring = ("exact scores" if store.top_c is None else f"top-C {store.top_c} scores") + \
        (", duration-aware" if duration_aware else "")
    fitted_on = (f"the store's enrolments: {len(trials.speakers)} speakers, {len(tar)} target trials (each recording "
                 f"against its speaker's model without it) and {len(non)} non-target trials (each recording against "
                 f"{trials.models_per_test} other speakers' models), {scoring}")
    if trials.left_out:
        fitted_on += f"; {len(trials.left_out)} speaker(s) served as non-target models only"
    warnings = _warnings(store, trials)
    report["warnings"] = warnings
    report["speakers"] = len(trials.speakers)
    report["scoring"] = scoring
    cal_id = store.keep_calibration(cal, fitted_on=fitted_on, report=report, target_llrs=tar,
                                    nontarget_llrs=non) if keep else None
    return SelfCalibration(cal_id, cal, fitted_on, report, warnings, trials)


def describe_point(pt: dict) -> str:
    """One line of an operating point of a report (``speaker calibrate``'s output)."""
    what = (f"Bayes threshold at p_target {pt['value']:g}" if pt["kind"] == "p_target"
            else f"false-accept rate {pt['value']:g}")
    lo_m, hi_m = pt["p_miss_ci"]
    lo_f, hi_f = pt["p_fa_ci"]
    return (f"{what}: LLR >= {pt['threshold']:.3f}; expected miss rate {100 * pt['p_miss']:.2f} % "
            f"[{100 * lo_m:.2f}, {100 * hi_m:.2f}] ({pt['misses']} of {pt['n_target']}), false-accept rate "
            f"{100 * pt['p_fa']:.2f} % [{100 * lo_f:.2f}, {100 * hi_f:.2f}] ({pt['false_accepts']} of "
            f"{pt['n_nontarget']}); 95 % Clopper-Pearson intervals")

