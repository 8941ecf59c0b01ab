"""Speaker-verification evaluation metrics: EER, minimum and actual DCF, DET curves.

DET *plots* are drawn by :mod:`speaker.det` (``plot_det``, ``save_det_plot``).

Conventions used throughout
---------------------------
* ``scores``: one real, finite score per trial (higher = more target-like).
* ``labels``: one per trial, ``1``/``True`` for a *target* trial (same speaker) and
  ``0``/``False`` for a *non-target* trial.  At least one of each is required.
* Decision rule: a trial is **accepted** (declared target) iff ``score >= threshold``.
  A *miss* is a rejected target trial, a *false alarm* an accepted non-target trial.
* Every function is **tie-aware**: trials with equal scores always receive the same decision,
  so no result depends on the order of the trials.  The operating points of a system are the
  ``m + 1`` (miss, false-alarm) pairs obtained with the thresholds ``u_1 < ... < u_m`` (the
  distinct scores) and ``+inf`` (reject everything); ``u_1`` accepts everything.
* Running time is ``O(n log n)``: one sort per call, then cumulative counts, all vectorised
  (no Python loop over trials), so 10 million trials take a few seconds; :func:`evaluate`
  computes the EERs and several minimum DCFs from a single sort.  Peak memory is about
  50 bytes per trial.

All rates are fractions in ``[0, 1]`` (not percentages).

References
----------
* N. Brümmer and E. de Villiers, *The BOSARIS Toolkit: Theory, Algorithms and Code for Surviving
  the New DCF*, 2011 (``rocch.m``, ``rocch2eer.m``, ``fast_minDCF.m``).
* NIST Speaker Recognition Evaluation plans (2008, 2010) for the detection cost function.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Literal, Mapping, NamedTuple, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "check_scores_labels",
    "check_prior",
    "DCFParams",
    "DCF_PRESETS",
    "eer",
    "rocch",
    "det_curve",
    "min_dcf",
    "min_dcf_preset",
    "actual_dcf",
    "evaluate",
    "bayes_threshold",
    "effective_prior",
]


# --------------------------------------------------------------------------------------------
# DCF operating points
# --------------------------------------------------------------------------------------------
class DCFParams(NamedTuple):
    """Parameters of a detection cost function ``C = c_miss*p_target*P_miss + c_fa*(1-p_target)*P_fa``."""

    p_target: float
    c_miss: float
    c_fa: float


#: Standard operating points, by name (read-only mapping to :class:`DCFParams`):
#:
#: * ``"sre08"``: NIST SRE 2008 (and 2004-2006), ``p_target=0.01, c_miss=10, c_fa=1``;
#: * ``"sre10"``: NIST SRE 2010 core "new DCF", ``p_target=0.001, c_miss=1, c_fa=1``;
#: * ``"vox_p01"``: VoxSRC minDCF, ``p_target=0.01, c_miss=1, c_fa=1``;
#: * ``"vox_p05"``: VoxSRC minDCF, ``p_target=0.05, c_miss=1, c_fa=1``.
DCF_PRESETS: Mapping[str, DCFParams] = MappingProxyType({
    "sre08": DCFParams(0.01, 10.0, 1.0),
    "sre10": DCFParams(0.001, 1.0, 1.0),
    "vox_p01": DCFParams(0.01, 1.0, 1.0),
    "vox_p05": DCFParams(0.05, 1.0, 1.0),
})


# --------------------------------------------------------------------------------------------
# Input validation and the shared counting core
# --------------------------------------------------------------------------------------------
def check_scores_labels(scores: ArrayLike, labels: ArrayLike, *, infinite_ok: bool = False
                        ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """``(scores as float64, labels as bool)`` of 1-D trial scores and their labels (1/True
    target, 0/False non-target, at least one of each), or a clear ``ValueError``: the one check
    of scores and labels (metrics and :mod:`speaker.calibration`).  Scores must be finite; with
    ``infinite_ok`` (LLRs of :func:`speaker.calibration.cllr`) only NaN is refused."""
    s = np.asarray(scores, dtype=np.float64)
    lab = np.asarray(labels)
    if s.ndim != 1 or lab.ndim != 1:
        raise ValueError(f"scores and labels must be 1-D, got shapes {s.shape} and {lab.shape}")
    if s.shape != lab.shape:
        raise ValueError(f"scores and labels must have the same length, got {s.size} and {lab.size}")
    if lab.dtype == np.bool_:
        is_tar = lab
    elif lab.dtype.kind in "iuf":
        is_tar = lab == 1
        if not np.all(is_tar | (lab == 0)):
            raise ValueError("labels must be 0/1 or False/True (1/True = target trial)")
    else:
        raise ValueError(f"labels must be boolean or 0/1 numbers, got dtype {lab.dtype}")
    # A sum is finite only if every term is: a cheap check that allocates nothing (+inf and -inf
    # LLRs, which PAV gives, sum to NaN: not a warning for the user, the exact check follows).
    with np.errstate(invalid="ignore", over="ignore"):
        total = np.sum(s)
    if not np.isfinite(total):
        bad = np.flatnonzero(np.isnan(s) if infinite_ok else ~np.isfinite(s))
        if bad.size:
            raise ValueError(f"scores must {'not be NaN' if infinite_ok else 'be finite'}; {bad.size} are not "
                             f"(first at index {bad[0]}: {s[bad[0]]})")
    n_tar = int(np.count_nonzero(is_tar))
    if n_tar == 0 or n_tar == s.size:
        raise ValueError(f"need at least one target and one non-target trial, got {n_tar} targets "
                         f"and {s.size - n_tar} non-targets")
    return s, is_tar


def check_prior(p: float, name: str = "p_target") -> float:
    """``p`` as a float strictly between 0 and 1 (a prior probability of a target trial), or a
    ``ValueError`` naming it: the one check of priors (metrics and calibration)."""
    value = float(p)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {p!r}")
    return value


def _validate_cost(p_target: float, c_miss: float, c_fa: float) -> tuple[float, float, float]:
    p, cm, cf = check_prior(p_target), float(c_miss), float(c_fa)
    if not (np.isfinite(cm) and cm > 0 and np.isfinite(cf) and cf > 0):
        raise ValueError(f"c_miss and c_fa must be positive and finite, got {c_miss!r} and {c_fa!r}")
    return p, cm, cf


class _Counts(NamedTuple):
    """Tie-aware operating points as exact integer counts.

    Operating point ``k`` (``0 <= k <= m``) uses ``thresholds[k]`` (``thresholds[m] = +inf``):
    ``n_miss[k]`` targets score below it, ``n_fa[k]`` non-targets score at or above it.
    ``n_miss`` is non-decreasing, ``n_fa`` non-increasing, and at least one of them changes
    at every step.
    """

    thresholds: NDArray[np.float64]
    n_miss: NDArray[np.int64]
    n_fa: NDArray[np.int64]
    n_tar: int
    n_non: int


def _counts(s: NDArray[np.float64], is_tar: NDArray[np.bool_]) -> _Counts:
    """Sort once and count errors at every distinct threshold (``O(n log n)``, vectorised)."""
    n = s.size
    nt = int(np.count_nonzero(is_tar))
    nn = n - nt
    both = np.empty(n, dtype=np.float64)  # target scores, then non-target scores, each sorted
    np.compress(is_tar, s, out=both[:nt])
    np.compress(~is_tar, s, out=both[nt:])
    both[:nt].sort()
    both[nt:].sort()
    # Merge the two sorted runs (a stable sort of two runs is a linear-time merge); targets
    # come before equal non-targets, as in BOSARIS, though ties are pooled below anyway.
    order = np.argsort(both, kind="stable")
    merged = np.empty(n + 1, dtype=np.float64)
    np.take(both, order, out=merged[:n])
    merged[n] = np.inf
    del both
    tar_before = np.zeros(n + 1, dtype=np.int64)  # tar_before[i]: targets among merged[:i]
    np.cumsum(order < nt, out=tar_before[1:])
    del order
    merged += 0.0  # maps -0.0 to 0.0 (they compare equal and share a block)
    new_block = merged[1:n] != merged[:n - 1]
    if new_block.all():  # all scores distinct: every position starts a block
        n_fa = np.arange(n + 1, dtype=np.int64)
        n_fa -= tar_before
        np.subtract(nn, n_fa, out=n_fa)
        return _Counts(merged, tar_before, n_fa, nt, nn)
    bounds = np.flatnonzero(new_block)
    bounds += 1
    bounds = np.concatenate(([0], bounds, [n]))  # block starts, then n (for +inf)
    n_miss = tar_before[bounds]
    n_fa = nn - (bounds - n_miss)
    return _Counts(merged[bounds], n_miss, n_fa, nt, nn)


def _rates(c: _Counts) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    return c.n_miss / c.n_tar, c.n_fa / c.n_non


# --------------------------------------------------------------------------------------------
# DET curve and ROC convex hull
# --------------------------------------------------------------------------------------------
def det_curve(scores: ArrayLike, labels: ArrayLike
              ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """All operating points of a detector, one per distinct threshold.

    Parameters
    ----------
    scores, labels
        Trial scores and labels (1/True = target), see the module docstring.

    Returns
    -------
    p_miss, p_fa, thresholds
        Three float64 arrays of length ``m + 1``, ``m`` being the number of distinct scores.
        ``thresholds`` is the sorted distinct scores followed by ``+inf``; operating point ``i``
        accepts a trial iff ``score >= thresholds[i]``, so ``p_miss[i]`` is the fraction of
        target scores ``< thresholds[i]`` and ``p_fa[i]`` the fraction of non-target scores
        ``>= thresholds[i]``.  Hence ``(p_miss[0], p_fa[0]) == (0, 1)`` (accept all),
        ``(p_miss[-1], p_fa[-1]) == (1, 0)`` (reject all), ``p_miss`` is non-decreasing,
        ``p_fa`` non-increasing, and tied scores share one operating point.
    """
    c = _counts(*check_scores_labels(scores, labels))
    p_miss, p_fa = _rates(c)
    return p_miss, p_fa, c.thresholds


def _left_turns(x: NDArray[np.int64], y: NDArray[np.int64]) -> NDArray[np.intp]:
    """Indices ``k - 1`` of the interior points ``1 <= k < len(x) - 1`` that are strict left turns."""
    dx = np.diff(x)
    dy = np.diff(y)
    return np.flatnonzero(dx[:-1] * dy[1:] - dy[:-1] * dx[1:] > 0)


def _lower_hull(x: NDArray[np.int64], y: NDArray[np.int64], small: int = 2048,
                chunk: int = 1 << 18) -> NDArray[np.intp]:
    """Indices of the vertices of the lower convex hull of a monotone chain of lattice points.

    ``x`` and ``y`` are non-decreasing and no two consecutive points coincide.  Returns the
    strict vertices (collinear points dropped) in index order, always including both ends.
    Exact integer arithmetic (fine while ``|x|, |y| < 2**31``).  Three vectorised stages, each
    of which only discards points that cannot be hull vertices:

    1. Local pruning: a point that is not a strict left turn between its current neighbours
       lies on or above their chord; all such points are dropped at once, and the pass is
       repeated while it removes a good share of the points.  On an empirical ROC (a staircase)
       the first pass drops most points and later ones about half of the rest.
    2. Quickhull in index space, if many points survive (e.g. points in near-convex position):
       since the chain is monotone, the hull vertices between two known vertices ``i < j`` have
       indices in ``(i, j)``; the point farthest below the chord ``i -> j`` (the first one on
       ties) is such a vertex, and points on or above a chord are dropped.  Each round handles
       all open chords at once.
    3. Andrew's monotone chain on the few survivors.
    """
    n = x.size
    if n <= 2:
        return np.arange(n)
    # 1. local pruning; the first pass works in chunks to keep temporaries small
    idx = np.concatenate([np.array([0])]
                         + [_left_turns(x[s - 1:s + chunk + 1], y[s - 1:s + chunk + 1]) + s
                            for s in range(1, n - 1, chunk)]
                         + [np.array([n - 1])])
    while idx.size > small:
        inner = _left_turns(x[idx], y[idx]) + 1
        shrunk = inner.size + 2 < 0.75 * idx.size
        idx = idx[np.concatenate(([0], inner, [idx.size - 1]))]
        if not shrunk:
            break
    # 2. quickhull; idx[0] and idx[-1] are the chain's ends, hence hull vertices
    found = [idx[[0, -1]]]
    lo = idx[:1].copy()
    hi = idx[-1:].copy()
    cand = idx[1:-1]  # sorted; the chord of each candidate is (lo[seg], hi[seg])
    seg = np.zeros(cand.size, dtype=np.intp)
    while cand.size > small:
        a, b = lo[seg], hi[seg]
        # cross(P_b - P_a, P_c - P_a) < 0  <=>  P_c strictly below the chord a -> b
        d = (x[b] - x[a]) * (y[cand] - y[a]) - (y[b] - y[a]) * (x[cand] - x[a])
        keep = d < 0
        cand, seg, d = cand[keep], seg[keep], d[keep]
        if cand.size == 0:
            break
        first = np.flatnonzero(np.concatenate(([True], seg[1:] != seg[:-1])))
        group = np.repeat(np.arange(first.size), np.diff(np.append(first, cand.size)))
        dmin = np.minimum.reduceat(d, first)
        at_min = np.flatnonzero(d == dmin[group])
        g = group[at_min]
        pivot = cand[at_min[np.concatenate(([True], g[1:] != g[:-1]))]]
        found.append(pivot)
        old = seg[first]
        lo = np.column_stack((lo[old], pivot)).ravel()
        hi = np.column_stack((pivot, hi[old])).ravel()
        keep = cand != pivot[group]
        seg = (2 * group + (cand > pivot[group]))[keep]
        cand = cand[keep]
    # 3. Andrew's monotone chain on the survivors (all true vertices are among them)
    pts = np.unique(np.concatenate(found + [cand]))
    px, py = x[pts].tolist(), y[pts].tolist()
    hull: list[int] = []
    for i in range(pts.size):
        while len(hull) >= 2:
            j, k = hull[-2], hull[-1]
            if (px[k] - px[j]) * (py[i] - py[j]) - (py[k] - py[j]) * (px[i] - px[j]) <= 0:
                hull.pop()  # k lies on or above the chord j -> i
            else:
                break
        hull.append(i)
    return pts[np.asarray(hull, dtype=np.intp)]


def _rocch_counts(c: _Counts) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Miss and false-alarm counts at the vertices of the ROC convex hull."""
    # In (non-targets below threshold, targets below threshold) the operating points form a
    # monotone chain from (0, 0) to (n_non, n_tar); the ROCCH is its lower convex hull.
    idx = _lower_hull(c.n_non - c.n_fa, c.n_miss)
    return c.n_miss[idx], c.n_fa[idx]


def rocch(scores: ArrayLike, labels: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Vertices of the ROC convex hull (ROCCH), as BOSARIS ``rocch.m`` returns them.

    Returns ``(p_miss, p_fa)``: float64 arrays, starting at ``(0, 1)`` and ending at ``(1, 0)``,
    ``p_miss`` strictly increasing and ``p_fa`` strictly decreasing except for the first/last
    segment, which may be horizontal/vertical.  Only strict vertices are returned (collinear
    operating points are dropped), which matches the pool-adjacent-violators bins of BOSARIS
    (``pavx`` pools equal-valued neighbours).  Ties are pooled, as BOSARIS does.
    """
    c = _counts(*check_scores_labels(scores, labels))
    n_miss, n_fa = _rocch_counts(c)
    return n_miss / c.n_tar, n_fa / c.n_non


def _segment_diag_crossing(n_miss: NDArray[np.int64], n_fa: NDArray[np.int64], n_tar: int, n_non: int
                           ) -> NDArray[np.float64]:
    """Where the line through consecutive points meets ``p_miss == p_fa``, for every segment.

    Points are ``(p_fa, p_miss) = (n_fa/n_non, n_miss/n_tar)``.  The crossing of the line
    through ``(x1, y1)`` and ``(x2, y2)`` with ``x == y`` is
    ``(x1*y2 - x2*y1) / ((x1 - x2) + (y2 - y1))``; in counts this is a ratio of exact integers,
    so the only rounding is the final division.  Segments with a zero denominator give NaN.
    """
    a1, a2 = n_fa[:-1], n_fa[1:]
    b1, b2 = n_miss[:-1], n_miss[1:]
    num = a1 * b2 - a2 * b1
    den = (a1 - a2) * n_tar + (b2 - b1) * n_non
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def _eer_rocch(c: _Counts) -> float:
    n_miss, n_fa = _rocch_counts(c)
    # rocch2eer.m: for each hull segment, the line through it meets the diagonal at a candidate;
    # horizontal or vertical segments give 0; the EER is the largest candidate (the hull is
    # convex, so this is where the hull itself crosses the diagonal).
    cand = _segment_diag_crossing(n_miss, n_fa, c.n_tar, c.n_non)
    flat = (np.diff(n_miss) == 0) | (np.diff(n_fa) == 0)
    cand[flat] = 0.0
    return float(max(0.0, cand.max(initial=0.0)))


def _diagonal_crossing(n_miss: NDArray, n_fa: NDArray, n_tar: float = 1, n_non: float = 1) -> float | None:
    """EER of a curve of operating points (``n_miss`` up, ``n_fa`` down): where the segment
    around the last point with ``P_fa >= P_miss`` meets ``P_miss == P_fa``.

    Exact for integer counts (``n_tar``, ``n_non`` the totals); also takes probabilities
    (``p_miss``, ``p_fa`` with totals 1).  None when the curve does not cross the diagonal.
    """
    # D[k] = (p_fa - p_miss) * n_tar * n_non, non-increasing along the curve
    d = n_fa * n_tar - n_miss * n_non
    k = int(np.searchsorted(-d, 0, side="right")) - 1  # last k with D[k] >= 0
    if k < 0:
        return None
    if k == d.size - 1:
        return float(n_fa[k] / n_non) if d[k] == 0 else None
    return float(_segment_diag_crossing(n_miss[k:k + 2], n_fa[k:k + 2], n_tar, n_non)[0])


def _eer_interpolated(c: _Counts) -> float:
    # a full curve runs from (0, n_non) to (n_tar, 0), so it always crosses
    return _diagonal_crossing(c.n_miss, c.n_fa, c.n_tar, c.n_non)  # type: ignore[return-value]


def eer(scores: ArrayLike, labels: ArrayLike, *,
        method: Literal["rocch", "interpolated", "step"] = "rocch") -> float:
    """Equal error rate, as a fraction in ``[0, 1]``.

    Parameters
    ----------
    scores, labels
        Trial scores and labels (1/True = target), see the module docstring.
    method
        * ``"rocch"`` (default): the ROC-convex-hull EER exactly as the BOSARIS toolkit computes
          it (``rocch`` followed by ``rocch2eer``): the point where the convex hull of the
          operating points (in the ``(P_fa, P_miss)`` plane) crosses ``P_miss == P_fa``.  It is
          the EER of the best system obtainable by calibration and randomised interpolation
          between thresholds; it is never larger than the interpolated EER, nor than 0.5.
        * ``"interpolated"`` (alias ``"step"``): the classical EER of the empirical step curves.
          ``P_miss(t)`` and ``P_fa(t)`` are evaluated at every tie-aware operating point (see
          :func:`det_curve`); with ``k`` the last operating point where ``P_fa >= P_miss``, the
          EER is where the straight segment joining operating points ``k`` and ``k + 1`` meets
          ``P_miss == P_fa`` (i.e. linear interpolation between the two thresholds bracketing
          the crossing; equal to ``P_fa[k]`` when ``P_fa[k] == P_miss[k]``).  This equals the
          usual "interpolate the ROC and solve ``1 - tpr == fpr``" recipe.

    Both are computed from exact integer counts; the only rounding is one final division.
    Perfectly separated scores give 0; identical scores for all trials give 0.5.
    """
    c = _counts(*check_scores_labels(scores, labels))
    if method == "rocch":
        return _eer_rocch(c)
    if method in ("interpolated", "step"):
        return _eer_interpolated(c)
    raise ValueError(f"method must be 'rocch', 'interpolated' or 'step', got {method!r}")


# --------------------------------------------------------------------------------------------
# Detection cost
# --------------------------------------------------------------------------------------------
def effective_prior(p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """The prior ``p~`` for which ``(p~, 1, 1)`` ranks decisions like ``(p_target, c_miss, c_fa)``.

    ``p~ = c_miss*p_target / (c_miss*p_target + c_fa*(1 - p_target))``.
    """
    p, cm, cf = _validate_cost(p_target, c_miss, c_fa)
    return cm * p / (cm * p + cf * (1.0 - p))


def bayes_threshold(p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """Bayes-optimal threshold for calibrated log-likelihood-ratio scores (natural log).

    ``log(c_fa*(1 - p_target) / (c_miss*p_target))``; accepting iff ``llr >= threshold``
    minimises the expected cost when the scores are well-calibrated LLRs.  Use it with
    :func:`actual_dcf` to measure the actual (calibration-sensitive) DCF.
    """
    p, cm, cf = _validate_cost(p_target, c_miss, c_fa)
    return float(np.log(cf * (1.0 - p)) - np.log(cm * p))


def _dcf(p_miss: float, p_fa: float, p: float, cm: float, cf: float) -> float:
    return (cm * p * p_miss + cf * (1.0 - p) * p_fa) / min(cm * p, cf * (1.0 - p))


def _min_dcf(c: _Counts, p: float, cm: float, cf: float) -> tuple[float, int]:
    """Minimum normalised DCF over the operating points of ``c``, and its (first) index."""
    # A positive multiple of the DCF at every point (two temporaries), then the exact formula at
    # the minimiser, so that e.g. the trivial systems give exactly 1.
    weighted = c.n_miss * (cm * p * c.n_non)
    weighted += c.n_fa * (cf * (1.0 - p) * c.n_tar)
    k = int(np.argmin(weighted))
    return _dcf(c.n_miss[k] / c.n_tar, c.n_fa[k] / c.n_non, p, cm, cf), k


@overload
def min_dcf(scores: ArrayLike, labels: ArrayLike, p_target: float, c_miss: float = ...,
            c_fa: float = ..., *, return_threshold: Literal[False] = ...) -> float: ...
@overload
def min_dcf(scores: ArrayLike, labels: ArrayLike, p_target: float, c_miss: float = ...,
            c_fa: float = ..., *, return_threshold: Literal[True]) -> tuple[float, float]: ...


def min_dcf(scores: ArrayLike, labels: ArrayLike, p_target: float, c_miss: float = 1.0,
            c_fa: float = 1.0, *, return_threshold: bool = False) -> float | tuple[float, float]:
    """Minimum normalised detection cost over all thresholds.

    ``DCF(t) = (c_miss*p_target*P_miss(t) + c_fa*(1 - p_target)*P_fa(t)) / C_default`` with
    ``C_default = min(c_miss*p_target, c_fa*(1 - p_target))``, the cost of the better trivial
    system (accept all or reject all).  The minimum is taken over every tie-aware operating
    point of :func:`det_curve`, including accept-all and reject-all, so the result lies in
    ``[0, 1]``.  This is the NIST SRE "minDCF" and equals BOSARIS ``fast_minDCF`` (which
    minimises over the ROCCH vertices, where the same minimum is attained).

    Parameters
    ----------
    scores, labels
        Trial scores and labels (1/True = target).
    p_target, c_miss, c_fa
        Prior of a target trial (``0 < p_target < 1``) and the two (positive) error costs.
    return_threshold
        If true, return ``(min_dcf, threshold)``: accepting iff ``score >= threshold`` attains
        the minimum on these trials (``actual_dcf(scores, labels, threshold, ...)`` gives it
        back).  ``threshold`` is one of the distinct scores, or ``+inf`` if rejecting every trial
        is optimal; if several thresholds are optimal, the lowest is returned (ties between
        costs are judged in floating point).
    """
    p, cm, cf = _validate_cost(p_target, c_miss, c_fa)
    c = _counts(*check_scores_labels(scores, labels))
    value, k = _min_dcf(c, p, cm, cf)
    return (value, float(c.thresholds[k])) if return_threshold else value


@overload
def min_dcf_preset(scores: ArrayLike, labels: ArrayLike, name: str, *,
                   return_threshold: Literal[False] = ...) -> float: ...
@overload
def min_dcf_preset(scores: ArrayLike, labels: ArrayLike, name: str, *,
                   return_threshold: Literal[True]) -> tuple[float, float]: ...


def min_dcf_preset(scores: ArrayLike, labels: ArrayLike, name: str, *,
                   return_threshold: bool = False) -> float | tuple[float, float]:
    """:func:`min_dcf` at a named operating point of :data:`DCF_PRESETS` (e.g. ``"sre10"``)."""
    try:
        params = DCF_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown DCF preset {name!r}; choose from {sorted(DCF_PRESETS)}") from None
    return min_dcf(scores, labels, *params, return_threshold=return_threshold)  # type: ignore[call-overload]


def actual_dcf(scores: ArrayLike, labels: ArrayLike, threshold: float, p_target: float,
               c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """Normalised detection cost of the hard decisions ``accept iff score >= threshold``.

    Same normalisation as :func:`min_dcf` (it can exceed 1 for a badly chosen threshold).
    ``threshold`` may be ``+-inf``.  For calibrated LLR scores pass
    ``bayes_threshold(p_target, c_miss, c_fa)`` to get the NIST "actual DCF".  ``O(n)``.
    """
    p, cm, cf = _validate_cost(p_target, c_miss, c_fa)
    s, is_tar = check_scores_labels(scores, labels)
    thr = float(threshold)
    if np.isnan(thr):
        raise ValueError("threshold must not be NaN")
    accept = s >= thr
    n_tar = int(np.count_nonzero(is_tar))
    n_non = s.size - n_tar
    n_hit = int(np.count_nonzero(accept & is_tar))
    n_fa = int(np.count_nonzero(accept)) - n_hit
    return _dcf((n_tar - n_hit) / n_tar, n_fa / n_non, p, cm, cf)


def evaluate(scores: ArrayLike, labels: ArrayLike, *,
             presets: tuple[str, ...] = tuple(DCF_PRESETS)) -> dict[str, float]:
    """EERs and minimum DCFs from a single sort of the scores (for large trial lists).

    Returns ``{"eer": <rocch EER>, "eer_interpolated": ..., "min_dcf_<name>": ...}`` for each
    name in ``presets`` (keys of :data:`DCF_PRESETS`); each value equals the one the
    corresponding function (:func:`eer`, :func:`min_dcf_preset`) returns.
    """
    unknown = [name for name in presets if name not in DCF_PRESETS]
    if unknown:
        raise ValueError(f"unknown DCF preset(s) {unknown}; choose from {sorted(DCF_PRESETS)}")
    c = _counts(*check_scores_labels(scores, labels))
    out = {"eer": _eer_rocch(c), "eer_interpolated": _eer_interpolated(c)}
    for name in presets:
        out[f"min_dcf_{name}"] = _min_dcf(c, *DCF_PRESETS[name])[0]
    return out
