"""Sufficient statistics of a GMM (every covariance type): mergeable, so EM can stream or be distributed."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["GMMStats", "MOMENTS_EPS", "within_covariance"]

#: What the M-step adds to every occupancy in :meth:`GMMStats.moments`: scikit-learn's ``10 *
#: eps`` of the dtype it computes in, which for the moments is float64 (the statistics and the
#: M-step are float64) whatever the model's dtype.  The added weight acts as a point at the
#: origin, adding ``mean**2 * eps / n`` to a variance: float32's eps (1.2e-6) would add 0.24 to
#: a unit variance of data 1e4 off the origin with 500 rows per component; float64's, 4e-10.
MOMENTS_EPS = 10 * np.finfo(np.float64).eps


def within_covariance(sum_xx, nk, means) -> np.ndarray:
    """The tied (within-component) covariance ``(sum_xx - sum_k n_k mu_k mu_k^T) / sum_k n_k``, symmetrised.

    ``sum_xx`` (D, D): the second order summed over components; ``nk`` (K,) occupancies;
    ``means`` (K, D).  The one formula of the tied M-step (:meth:`GMMStats.moments` of pooled
    statistics and ``gmmext._covariance.TIED``).
    """
    cov = (sum_xx - np.einsum("k,ki,kj->ij", nk, means, means)) / nk.sum()
    return 0.5 * (cov + cov.T)


@dataclass
class GMMStats:
    """Zeroth-, first- and second-order statistics of frames under a K-component GMM.

    Produced by :meth:`gmmext.GaussianMixture.accumulate`, consumed by
    :meth:`gmmext.GaussianMixture.m_step`.  All arrays are float64 whatever the
    data's dtype.  Statistics of disjoint pieces of data add up (``a + b``, and
    ``sum(list_of_stats)`` works) to the statistics of their union.

    Attributes
    ----------
    n : ndarray of shape (K,)
        Occupancy of each component: ``sum_i w_i r_ik``.
    sum_x : ndarray of shape (K, D)
        ``sum_i w_i r_ik x_i``.
    sum_xx : ndarray of shape (K, D), (K, D, D) or (1, D, D)
        Second order: ``sum_i w_i r_ik x_i**2`` (element-wise square, shape (K, D)) for the
        "diag" and "spherical" covariance types, ``sum_i w_i r_ik x_i x_i^T`` (K, D, D) for
        "full", and for "tied" the pooled ``sum_i w_i x_i x_i^T`` (1, D, D): the sum over
        components of the full statistics (responsibilities sum to 1), the data's weighted
        scatter matrix, all a tied M-step needs.  The M-step derives spherical covariances from
        diagonal statistics, and tied ones from full or pooled statistics.
    loglik : float
        Total weighted log-likelihood ``sum_i w_i log p(x_i)`` (nats) under the model
        that produced the statistics.
    n_samples : float
        Total weight ``sum_i w_i`` (the number of frames when unweighted).
    """

    n: np.ndarray
    sum_x: np.ndarray
    sum_xx: np.ndarray
    loglik: float = 0.0
    n_samples: float = 0.0

    def __post_init__(self) -> None:
        self.n = np.asarray(self.n, dtype=np.float64)
        self.sum_x = np.asarray(self.sum_x, dtype=np.float64)
        self.sum_xx = np.asarray(self.sum_xx, dtype=np.float64)
        self.loglik = float(self.loglik)
        self.n_samples = float(self.n_samples)
        ok = self.n.ndim == 1 and self.sum_x.ndim == 2 and self.sum_x.shape[0] == self.n.shape[0]
        ok = ok and self.sum_xx.shape in (self.sum_x.shape, self.sum_x.shape + self.sum_x.shape[1:],
                                          (1,) + self.sum_x.shape[1:] * 2)
        if not ok:
            raise ValueError(
                "GMMStats shapes are inconsistent: n %s, sum_x %s, sum_xx %s; expected (K,), (K, D), "
                "(K, D), (K, D, D) or (1, D, D)" % (self.n.shape, self.sum_x.shape, self.sum_xx.shape))

    @classmethod
    def zeros(cls, n_components: int, n_features: int, full: bool = False,
              pooled: bool = False) -> "GMMStats":
        """Empty statistics (the neutral element of ``+``); ``full``: sum_xx (K, D, D), or (1, D, D) if ``pooled``."""
        K, D = n_components, n_features
        shape = ((1 if pooled else K), D, D) if full else (K, D)
        return cls(np.zeros(K), np.zeros((K, D)), np.zeros(shape), 0.0, 0.0)

    @property
    def full(self) -> bool:
        """True when ``sum_xx`` holds (K, D, D) second-order matrices."""
        return self.sum_xx.ndim == 3

    @property
    def pooled_second_order(self) -> bool:
        """True when ``sum_xx`` is one (1, D, D) matrix for all K > 1 components (tied statistics)."""
        return self.full and self.sum_xx.shape[0] != self.n.shape[0]

    @property
    def n_components(self) -> int:
        return self.n.shape[0]

    @property
    def n_features(self) -> int:
        return self.sum_x.shape[1]

    def _check_addable(self, other: "GMMStats") -> None:
        if other.sum_xx.shape != self.sum_xx.shape or other.sum_x.shape != self.sum_x.shape:
            raise ValueError("cannot add GMMStats of shapes (K, D) = %s and %s (sum_xx %s and %s)"
                             % (self.sum_x.shape, other.sum_x.shape, self.sum_xx.shape, other.sum_xx.shape))

    def __add__(self, other: "GMMStats") -> "GMMStats":
        if isinstance(other, (int, float)) and other == 0:  # sum() starts from 0
            return self
        if not isinstance(other, GMMStats):
            return NotImplemented
        self._check_addable(other)
        return GMMStats(self.n + other.n, self.sum_x + other.sum_x, self.sum_xx + other.sum_xx,
                        self.loglik + other.loglik, self.n_samples + other.n_samples)

    @classmethod
    def total(cls, stats: "Sequence[GMMStats]") -> "GMMStats":
        """``stats[0] + stats[1] + ...`` left to right (the same bits), added in place into one
        copy of the first: no new arrays per term (600 utterances' statistics at K=512, D=60
        would otherwise allocate 300 MB).  ValueError when ``stats`` is empty or the shapes differ."""
        if not stats:
            raise ValueError("no statistics to add")
        first = stats[0]
        n, sx, sxx = (np.array(a, dtype=np.float64) for a in (first.n, first.sum_x, first.sum_xx))
        loglik, n_samples = first.loglik, first.n_samples
        for s in stats[1:]:
            first._check_addable(s)
            n += s.n
            sx += s.sum_x
            sxx += s.sum_xx
            loglik += s.loglik
            n_samples += s.n_samples
        return cls(n, sx, sxx, loglik, n_samples)

    __radd__ = __add__

    def scaled(self, factor: float) -> "GMMStats":
        """Every statistic (``loglik`` and ``n_samples`` too) times ``factor``: the statistics of
        the same data with every weight multiplied by ``factor`` (online EM's averages)."""
        f = float(factor)
        return GMMStats(self.n * f, self.sum_x * f, self.sum_xx * f, self.loglik * f, self.n_samples * f)

    def pooled(self) -> "GMMStats":
        """The statistics of all components pooled into one: shape (1,), (1, D), (1, D) or (1, D, D).

        ``m_step`` of a one-component model on them gives the data's global mean and
        (per-dimension) variance, the formula being the M-step's own.
        """
        return GMMStats(self.n.sum(keepdims=True), self.sum_x.sum(axis=0, keepdims=True),
                        self.sum_xx.sum(axis=0, keepdims=True), self.loglik, self.n_samples)

    def moments(self, eps: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Per-component means (K, D) and variances (K, D) or covariances (K, D, D): the M-step's formula.

        ``mean = sum_x / (n + eps)``, ``var = max(sum_xx / (n + eps) - mean**2, 0)`` (a variance
        that rounding made slightly negative is a zero variance); with (K, D, D) statistics
        ``cov = sum_xx / (n + eps) - mean mean^T``, symmetrised.  ``eps`` keeps an empty
        component finite (the M-step passes :data:`MOMENTS_EPS`).
        ``self.pooled().moments()`` is the data's global mean and variance (or covariance).
        Pooled (1, D, D) second order gives the one within-component covariance (1, D, D):
        ``(sum_xx - sum_k n_k mean_k mean_k^T) / sum_k n_k``, the tied estimator.
        """
        nk = self.n + eps
        mean = self.sum_x / nk[:, None]
        if self.pooled_second_order:
            return mean, within_covariance(self.sum_xx[0], nk, mean)[None]
        if self.full:
            cov = self.sum_xx / nk[:, None, None] - mean[:, :, None] * mean[:, None, :]
            return mean, 0.5 * (cov + np.swapaxes(cov, 1, 2))
        var = np.maximum(self.sum_xx / nk[:, None] - mean ** 2, 0.0)
        return mean, var

    def mean_loglik(self) -> float:
        """Average log-likelihood per unit of weight (what scikit-learn calls the lower bound)."""
        return self.loglik / self.n_samples if self.n_samples > 0 else -np.inf
