"""Score normalisation: Z-norm, T-norm, ZT-norm, S-norm and adaptive S-norm (AS-norm).

Each normalisation standardises a raw trial score ``s(m, t)`` (enrolment model ``m`` scored
against test utterance ``t``) with the mean and standard deviation of *cohort scores*: scores of
the same system against impostor (cohort) speakers, who must not be among the trial speakers.

* **Z-norm** (zero normalisation) uses the *enrolment side*: model ``m`` scored against ``n_z``
  impostor utterances.  It is model-dependent and can be computed offline.
* **T-norm** (test normalisation) uses the *test side*: ``n_t`` impostor models scored against the
  test utterance ``t``.
* **ZT-norm**: Z-norm, then T-norm in which the T-cohort scores are themselves Z-normalised
  (each impostor model with its own Z statistics).
* **S-norm** (symmetric): the average of the Z- and T-normalised scores.  With embeddings and a
  symmetric scorer (cosine, PLDA) the two sides usually share one cohort of utterances/speakers.
* **AS-norm** (adaptive S-norm, "AS-norm1" of Matějka et al., 2017, after the top-N cohort
  selection of Cumani et al., 2011): as S-norm, but each side uses only its ``top_n`` highest
  cohort scores, i.e. the impostors closest to that side.

Shapes
------
All functions follow NumPy broadcasting.  ``scores`` may have any shape ``S``, typically
``(n_trials,)``.  A cohort array has shape ``S_c + (n_cohort,)``: its **last axis runs over the
cohort**, and the statistics computed along it (shape ``S_c``) must broadcast to ``S`` without
enlarging it (otherwise ``ValueError``).  Two common layouts:

* one row per trial: ``scores (n_trials,)``, cohort arrays ``(n_trials, n_cohort)``;
* a full score matrix: ``scores (n_models, n_tests)``, ``enrol_cohort_scores`` of shape
  ``(n_models, 1, n_z)`` and ``test_cohort_scores`` of shape ``(n_tests, n_t)``, so each model's
  and each test's statistics are computed once (use :func:`cohort_stats` and index the results
  to share them between trials in other layouts).

Statistics: mean and standard deviation over the (selected) cohort, in float64, with
``ddof=0`` (population std, as most recipes use) unless told otherwise; a standard deviation
below ``eps`` (default :data:`DEFAULT_EPS` = 1e-8) is replaced by ``eps``, so a degenerate cohort
(all scores equal) gives large but finite values instead of ``inf``/``NaN``.  Results are
float64 arrays of the shape of ``scores``.  All inputs must be finite.
"""
from __future__ import annotations

import operator
from typing import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["DEFAULT_EPS", "AS_NORM_TOP_N", "NORMS", "MIN_COHORT", "cohort_stats", "znorm", "tnorm", "ztnorm",
           "snorm", "as_norm", "normalise"]

#: Floor for cohort standard deviations (guards against division by zero).
DEFAULT_EPS = 1e-8
#: AS-norm's default number of closest cohort scores per side (speaker.cohort.normalise, 'speaker score --norm as').
AS_NORM_TOP_N = 200
#: The normalisations :func:`normalise` applies.
NORMS = ("z", "t", "zt", "s", "as")
#: Fewest cohort recordings :func:`normalise` accepts (ZT-norm: two halves of at least 2).
MIN_COHORT = 3


def _finite_array(x: ArrayLike, name: str) -> NDArray[np.floating]:
    a = np.asarray(x)
    if a.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be real numbers, got dtype {a.dtype}")
    if a.dtype.kind != "f":
        a = a.astype(np.float64)
    # a sum is finite only if every term is (cheap check; the exact one runs only on failure)
    if not np.isfinite(np.sum(a, dtype=np.float64)) and not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite (found NaN or inf)")
    return a


def _check_options(ddof: int, eps: float) -> None:
    if isinstance(ddof, bool) or operator.index(ddof) < 0:
        raise ValueError(f"ddof must be a non-negative integer, got {ddof!r}")
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be positive and finite, got {eps!r}")


def cohort_stats(cohort_scores: ArrayLike, *, top_n: int | None = None, ddof: int = 0,
                 eps: float = DEFAULT_EPS) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mean and (floored) standard deviation of cohort scores along the last axis.

    Parameters
    ----------
    cohort_scores
        Array of shape ``S_c + (n_cohort,)``.
    top_n
        If given, use only the ``top_n`` largest scores of each row (adaptive cohort selection);
        ``ddof < top_n <= n_cohort`` and ``top_n >= 2``.
    ddof
        Delta degrees of freedom of the standard deviation (0: population, 1: sample).
    eps
        Lower bound applied to the standard deviation.

    Returns
    -------
    mean, std
        float64 arrays of shape ``S_c``; ``std >= eps``.
    """
    _check_options(ddof, eps)
    c = _finite_array(cohort_scores, "cohort scores")
    if c.ndim == 0:
        raise ValueError("cohort scores need a last axis over the cohort")
    n_cohort = c.shape[-1]
    if top_n is not None:
        if isinstance(top_n, bool) or not 2 <= operator.index(top_n) <= n_cohort:
            raise ValueError(f"top_n must be an integer in [2, n_cohort={n_cohort}], got {top_n!r}")
        top_n = operator.index(top_n)
        if top_n < n_cohort:
            c = np.partition(c, n_cohort - top_n, axis=-1)[..., n_cohort - top_n:]
    n_used = c.shape[-1]
    if n_used < 2 or n_used <= ddof:
        raise ValueError(f"need at least 2 (and more than ddof={ddof}) cohort scores per row, "
                         f"got {n_used}")
    mean = np.mean(c, axis=-1, dtype=np.float64)
    std = np.std(c, axis=-1, dtype=np.float64, ddof=ddof)
    np.maximum(std, eps, out=std)
    return np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)


def _standardise(s: NDArray[np.floating], mean: NDArray[np.float64], std: NDArray[np.float64],
                 what: str) -> NDArray[np.float64]:
    try:
        shape = np.broadcast_shapes(s.shape, mean.shape)
    except ValueError:
        shape = None
    if shape != s.shape:
        raise ValueError(f"{what} statistics of shape {mean.shape} (cohort array minus its last axis) "
                         f"do not broadcast to the scores' shape {s.shape}")
    return np.asarray((s - mean) / std, dtype=np.float64)


def znorm(scores: ArrayLike, enrol_cohort_scores: ArrayLike, *, ddof: int = 0,
          eps: float = DEFAULT_EPS) -> NDArray[np.float64]:
    """Z-norm: ``(s - mean_z(m)) / std_z(m)``.

    Parameters
    ----------
    scores
        Raw trial scores ``s(m, t)``, shape ``S``.
    enrol_cohort_scores
        The trial's enrolment model ``m`` scored against ``n_z`` impostor (Z-cohort)
        utterances, shape ``S_z + (n_z,)`` with ``S_z`` broadcasting to ``S``
        (e.g. ``(n_trials, n_z)``).
    ddof, eps
        See :func:`cohort_stats`.
    """
    s = _finite_array(scores, "scores")
    mean, std = cohort_stats(enrol_cohort_scores, ddof=ddof, eps=eps)
    return _standardise(s, mean, std, "Z-norm")


def tnorm(scores: ArrayLike, test_cohort_scores: ArrayLike, *, ddof: int = 0,
          eps: float = DEFAULT_EPS) -> NDArray[np.float64]:
    """T-norm: ``(s - mean_t(t)) / std_t(t)``.

    Parameters
    ----------
    scores
        Raw trial scores ``s(m, t)``, shape ``S``.
    test_cohort_scores
        ``n_t`` impostor (T-cohort) models scored against the trial's test utterance ``t``,
        shape ``S_t + (n_t,)`` with ``S_t`` broadcasting to ``S`` (e.g. ``(n_trials, n_t)``).
    ddof, eps
        See :func:`cohort_stats`.
    """
    s = _finite_array(scores, "scores")
    mean, std = cohort_stats(test_cohort_scores, ddof=ddof, eps=eps)
    return _standardise(s, mean, std, "T-norm")


def ztnorm(scores: ArrayLike, enrol_cohort_scores: ArrayLike, test_cohort_scores: ArrayLike,
           tcohort_zcohort_scores: ArrayLike, *, ddof: int = 0,
           eps: float = DEFAULT_EPS) -> NDArray[np.float64]:
    """ZT-norm: Z-norm, then T-norm with Z-normalised T-cohort scores.

    With ``s_z = (s - mean_z(m)) / std_z(m)`` and, for each T-cohort model ``c_j``,
    ``s_z(c_j, t) = (s(c_j, t) - mean_z(c_j)) / std_z(c_j)``, the result is
    ``(s_z - mean_j s_z(c_j, t)) / std_j s_z(c_j, t)``.

    Parameters
    ----------
    scores
        Raw trial scores ``s(m, t)``, shape ``S``.
    enrol_cohort_scores
        Enrolment model ``m`` vs the ``n_z`` Z-cohort utterances, shape ``S_z + (n_z,)``.
    test_cohort_scores
        The ``n_t`` T-cohort models ``c_j`` vs the test utterance ``t`` (raw scores),
        shape ``S_t + (n_t,)``; column ``j`` is model ``c_j``.
    tcohort_zcohort_scores
        Each T-cohort model ``c_j`` (row ``j``) vs the same ``n_z`` Z-cohort utterances,
        shape ``(n_t, n_z)``; gives the Z statistics of the T-cohort models.
    ddof, eps
        See :func:`cohort_stats`; used for all three sets of statistics.
    """
    t_raw = _finite_array(test_cohort_scores, "test cohort scores")
    tz = np.asarray(tcohort_zcohort_scores)
    ez_shape = np.shape(enrol_cohort_scores)
    if t_raw.ndim == 0:
        raise ValueError("test cohort scores need a last axis over the T cohort")
    if tz.ndim != 2 or tz.shape[0] != t_raw.shape[-1] or (ez_shape and tz.shape[1] != ez_shape[-1]):
        raise ValueError(f"tcohort_zcohort_scores must have shape (n_t, n_z) = "
                         f"({t_raw.shape[-1]}, {ez_shape[-1] if ez_shape else '?'}), got {tz.shape}")
    s_z = znorm(scores, enrol_cohort_scores, ddof=ddof, eps=eps)
    tz_mean, tz_std = cohort_stats(tz, ddof=ddof, eps=eps)  # shape (n_t,)
    t_z = (t_raw - tz_mean) / tz_std
    return tnorm(s_z, t_z, ddof=ddof, eps=eps)


def snorm(scores: ArrayLike, enrol_cohort_scores: ArrayLike, test_cohort_scores: ArrayLike, *,
          ddof: int = 0, eps: float = DEFAULT_EPS) -> NDArray[np.float64]:
    """S-norm: ``((s - mean_e) / std_e + (s - mean_t) / std_t) / 2``.

    Parameters
    ----------
    scores
        Raw trial scores ``s(m, t)``, shape ``S``.
    enrol_cohort_scores
        Enrolment side ``m`` vs the cohort, shape ``S_e + (n_cohort_e,)``.
    test_cohort_scores
        Test side ``t`` vs the cohort, shape ``S_t + (n_cohort_t,)``.  The two cohorts are
        usually the same set, but need not be.
    ddof, eps
        See :func:`cohort_stats`.
    """
    return 0.5 * (znorm(scores, enrol_cohort_scores, ddof=ddof, eps=eps)
                  + tnorm(scores, test_cohort_scores, ddof=ddof, eps=eps))


def as_norm(scores: ArrayLike, enrol_cohort_scores: ArrayLike, test_cohort_scores: ArrayLike, *,
            top_n: int, ddof: int = 0, eps: float = DEFAULT_EPS) -> NDArray[np.float64]:
    """Adaptive S-norm (AS-norm1): S-norm with per-side top-N cohort selection.

    ``((s - mean(E_N)) / std(E_N) + (s - mean(T_N)) / std(T_N)) / 2``, where ``E_N`` is the set
    of the ``top_n`` largest enrolment-side cohort scores of the trial and ``T_N`` the ``top_n``
    largest test-side ones (Matějka et al., *Analysis of score normalization in multilingual
    speaker recognition*, Interspeech 2017; Cumani et al., 2011).  Each side selects its own
    cohort members.  With ``top_n`` equal to the cohort size this is :func:`snorm`.

    Parameters
    ----------
    scores, enrol_cohort_scores, test_cohort_scores
        As for :func:`snorm`.
    top_n
        Number of highest cohort scores kept per side, ``2 <= top_n <= n_cohort`` for each side.
    ddof, eps
        See :func:`cohort_stats`.
    """
    s = _finite_array(scores, "scores")
    e_mean, e_std = cohort_stats(enrol_cohort_scores, top_n=top_n, ddof=ddof, eps=eps)
    t_mean, t_std = cohort_stats(test_cohort_scores, top_n=top_n, ddof=ddof, eps=eps)
    return 0.5 * (_standardise(s, e_mean, e_std, "enrolment-side")
                  + _standardise(s, t_mean, t_std, "test-side"))


def normalise(kind: str, scores: ArrayLike, n_cohort: int, enrol_side: Callable[[np.ndarray], np.ndarray],
              test_side: Callable[[np.ndarray], np.ndarray],
              cohort_side: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None, *,
              top_n: int | None = None) -> NDArray[np.float64]:
    """Trial scores normalised with a cohort of ``n_cohort`` recordings, for any back-end.

    The back-end supplies its cohort scores through three callables (``rows``: positions in
    the cohort, an int array), each called once per side a normalisation needs:

    * ``enrol_side(rows)`` -> (n_trials, len(rows)): each trial's model scored against the
      cohort recordings ``rows`` as impostor tests (Z side);
    * ``test_side(rows)`` -> (n_trials, len(rows)): the cohort recordings ``rows`` enrolled as
      models, scored against each trial's test (T side);
    * ``cohort_side(t_rows, z_rows)`` -> (len(t_rows), len(z_rows)): cohort models against
      cohort tests (ZT-norm only, which splits the cohort in two halves, the first the T
      models, the second the Z tests, so that no recording is scored against its own model).

    ``kind``: one of :data:`NORMS`; ``top_n``: AS-norm's closest cohort scores per side
    (default ``min(AS_NORM_TOP_N, n_cohort)``).  ValueError for an unknown kind or a cohort
    smaller than :data:`MIN_COHORT` (ZT-norm: 4).  The GMM-UBM cohort
    (:func:`speaker.cohort.normalise`) and the i-vector back-ends
    (:func:`speaker.ivector_backend.normalise_scores`) both normalise through here.
    """
    if kind not in NORMS:
        raise ValueError(f"unknown normalisation {kind!r}; choose from {NORMS}")
    if n_cohort < MIN_COHORT:
        raise ValueError(f"score normalisation needs a cohort of at least {MIN_COHORT} recordings, got {n_cohort}")
    scores = np.asarray(scores, dtype=np.float64)
    every = np.arange(n_cohort)
    if kind == "zt":
        half = n_cohort // 2
        t_rows, z_rows = every[:half], every[half:]
        if half < 2 or len(z_rows) < 2 or cohort_side is None:
            raise ValueError("ZT-norm needs a cohort of at least 4 recordings (split into T models and Z tests)")
        return ztnorm(scores, enrol_side(z_rows), test_side(t_rows), cohort_side(t_rows, z_rows))
    E = enrol_side(every) if kind != "t" else None
    T = test_side(every) if kind != "z" else None
    if kind == "z":
        return znorm(scores, E)
    if kind == "t":
        return tnorm(scores, T)
    if kind == "s":
        return snorm(scores, E, T)
    return as_norm(scores, E, T, top_n=min(n_cohort, AS_NORM_TOP_N if top_n is None else top_n))
