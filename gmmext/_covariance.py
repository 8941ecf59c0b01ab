"""The four covariance types as objects: every decision that depends on ``covariance_type``.

scikit-learn keeps a table of functions per covariance type (``_estimate_gaussian_covariances_*``,
``_compute_precision_cholesky``, ...); here each type is one small object, :data:`FULL`,
:data:`TIED`, :data:`DIAG`, :data:`SPHERICAL` (:func:`get` maps a name to it), and the rest of
gmmext asks it instead of testing the name.  What a type decides:

============  ====================  ===========================================================
type          ``covariances_``      ``precisions_cholesky_`` (what the E-step uses)
============  ====================  ===========================================================
"full"        (K, D, D)             upper-triangular ``C_k`` with ``C_k C_k^T = inv(cov_k)``
"tied"        (D, D)                one such ``C`` shared by every component
"diag"        (K, D)                ``1 / sqrt(cov)``
"spherical"   (K,)                  ``1 / sqrt(cov)``
============  ====================  ===========================================================

* shapes (:meth:`~CovarianceType.shape`, :meth:`~CovarianceType.n_parameters`);
* precisions (:meth:`~CovarianceType.precisions_cholesky`, :meth:`~CovarianceType.precisions`,
  :meth:`~CovarianceType.covariances_from_precisions`, :meth:`~CovarianceType.check_precisions_init`):
  ``precisions_`` is ``C C^T`` (full, tied) or ``1 / cov`` (diag, spherical), as scikit-learn;
* the statistics' layout (:attr:`~CovarianceType.matrix`, :attr:`~CovarianceType.pooled`,
  :meth:`~CovarianceType.zero_stats`): ``GMMStats.sum_xx`` is (K, D) for "diag" and "spherical",
  (K, D, D) for "full", and for "tied" the pooled (1, D, D) scatter matrix its M-step needs
  (statistics of (K, D, D) update a tied model too);
* the E-step's layout in the compiled core (:attr:`~CovarianceType.estep`,
  :attr:`~CovarianceType.whitened`, :meth:`~CovarianceType.terms`): "diag" and "spherical" use
  the diagonal layout (a spherical variance is a diagonal one repeated D times), "full" the full
  one, "tied" the diagonal one on whitened frames (``z = C^T (x - shift)``: unit variances);
  :func:`model_matrices` builds a model's :class:`ModelMatrices` from them;
* the M-step (:meth:`~CovarianceType.estimate`, :meth:`~CovarianceType.floor`,
  :meth:`~CovarianceType.regularisation`, :attr:`~CovarianceType.per_component`);
* the usable-parameter bounds (:meth:`~CovarianceType.bound_variances`) and sampling
  (:meth:`~CovarianceType.sample`).

NumPy and SciPy only; the estimator, the engine, the validation and the block tasks import this.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import linalg

from ._blas import one_blas_thread
from ._sklearn_compat import solve_triangular
from ._stats import GMMStats, within_covariance

__all__ = ["COVARIANCE_TYPES", "ILL_DEFINED", "CovarianceType", "FULL", "TIED", "DIAG", "SPHERICAL",
           "get", "Terms", "ModelMatrices", "model_matrices", "mixture_mean", "gconst"]

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

ILL_DEFINED = (
    "Fitting the mixture model failed because some components have ill-defined empirical "
    "covariance (for instance caused by singleton or collapsed samples). Try to decrease the "
    "number of components, increase reg_covar, or scale the input data. (gmmext: var_floor "
    "helps too.)")


class Terms(NamedTuple):
    """A model's log-density terms in the core's layout, float64, for K components (any leading axes).

    With ``phi`` the core's feature map of a frame ``y = x - shift`` (:func:`model_matrices`),
    the weighted log-densities are ``phi(y) @ [lin, quad]^T + gconst``.
    """

    lin: np.ndarray        #: (..., K, D): the first-order rows of M, transposed
    quad: np.ndarray       #: (..., K, P - D): the second-order rows of M, transposed
    gconst: np.ndarray     #: (..., K): the per-component constant
    whiten: np.ndarray | None   #: (D, D) the frames' whitening T in the model's dtype (tied), else None
    chol: np.ndarray | None = None   #: (K, D, D) the precisions' upper-triangular Cholesky factors (full)


class ModelMatrices(NamedTuple):
    """What the compiled core needs of one model, in the model's dtype (Kaldi's ``gconsts_`` /
    ``means_invvars_``): built by :func:`model_matrices`, kept by the estimator's cache.

    ``phi(y) @ M + gconst``, ``y = x - shift`` (``z = whiten y`` first when ``whiten`` is given),
    are the weighted log-densities ``log w_k + log N(x | mu_k, cov_k)``.
    """

    shift: np.ndarray           #: (D,): subtracted from every frame (the mixture's mean, usually)
    M: np.ndarray               #: (P, K): P = 2D (diagonal layout) or D + D(D+1)/2 (full layout)
    gconst: np.ndarray          #: (K,)
    whiten: np.ndarray | None   #: (D, D) lower-triangular whitening of the frames (tied), else None
    #: float32 full models: (means (K, D), Cholesky factors C_k (K, D, D), log w_k - D/2 log(2 pi)
    #: + log det C_k (K,)), float64: the core recomputes the log-densities near each frame's
    #: best centred, ``||(x - mu_k) C_k||^2`` in float64 (the expanded form cancels in float32)
    refine: tuple | None = None


def gconst(logw, D: int, logdet, quad):
    """``log w - D/2 log(2 pi) + log det L - quad / 2``: the per-component constant of M's layout."""
    return logw - 0.5 * D * np.log(2.0 * np.pi) + logdet - 0.5 * quad


def mixture_mean(weights, means) -> np.ndarray:
    """The mixture's mean ``sum_k w_k mu_k / sum_k w_k`` (D,), float64: the core's default shift."""
    w = np.asarray(weights, dtype=np.float64)
    return (w / w.sum()) @ np.asarray(means, dtype=np.float64)


# ------------------------------------------------------------------------------ the types
class CovarianceType:
    """What one ``covariance_type`` decides; the four instances are :data:`FULL`, :data:`TIED`,
    :data:`DIAG` and :data:`SPHERICAL` (singletons: compare with ``is``)."""

    name: str = ""
    #: covariances are (D, D) matrices (full, tied), not variances; the statistics' second
    #: order is then (K, D, D) matrices (or pooled (1, D, D)), else (K, D)
    matrix: bool = False
    #: the E-step's statistics pool the second order into one (1, D, D) matrix (tied)
    pooled: bool = False
    #: every component has its own covariance (False: tied)
    per_component: bool = True
    #: the compiled core's layout of the E-step: "diag" (P = 2D) or "full" (P = D + D(D+1)/2)
    estep: str = "diag"
    #: frames are whitened by the shared ``C^T`` before the diagonal layout (tied)
    whitened: bool = False

    def __repr__(self) -> str:
        return f"<covariance type {self.name!r}>"

    def __reduce__(self):                 # unpickles as the same singleton (Dask block tasks)
        return (get, (self.name,))

    # -- shapes
    def shape(self, K: int, D: int) -> tuple[int, ...]:
        """Shape of ``covariances_`` (and ``precisions_``, ``precisions_init``)."""
        raise NotImplementedError

    def _free(self, K: int, D: int) -> float:
        raise NotImplementedError

    def n_parameters(self, K: int, D: int) -> int:
        """Free parameters of the model (scikit-learn's count, for ``bic`` / ``aic``)."""
        return int(self._free(K, D) + K * D + K - 1)

    def feature_columns(self, D: int) -> int:
        """P, the columns of the core's feature map for this type's E-step."""
        return D + D * (D + 1) // 2 if self.estep == "full" else 2 * D

    def stats_shape(self, K: int, D: int) -> tuple[int, ...]:
        """Shape of ``sum_xx`` of the E-step's statistics."""
        if not self.matrix:
            return (K, D)
        return (1 if self.pooled else K, D, D)

    def zero_stats(self, K: int, D: int) -> GMMStats:
        """Empty statistics of this type's E-step layout."""
        return GMMStats.zeros(K, D, self.matrix, pooled=self.pooled)

    def same_layout(self, other: "CovarianceType") -> bool:
        """Models of type ``other`` can be scored with this type's frames (same E-step layout
        and whitening): "diag" with "spherical", each other type only with itself."""
        return (self.estep, self.whitened) == (other.estep, other.whitened)

    # -- precisions
    def precisions_cholesky(self, covariances) -> np.ndarray:
        """scikit-learn's ``precisions_cholesky_`` of ``covariances`` (float64); ``ValueError``
        (scikit-learn's message, :data:`ILL_DEFINED`) unless finite and positive (definite)."""
        raise NotImplementedError

    def precisions(self, prec_chol) -> np.ndarray:
        """``precisions_`` from ``precisions_cholesky_``: ``C C^T`` or ``C**2``."""
        raise NotImplementedError

    def covariances_from_precisions(self, precisions) -> np.ndarray:
        """Covariances of user-given (validated) precisions: their inverse."""
        raise NotImplementedError

    def expand(self, covariances, K: int, D: int) -> np.ndarray:
        """float64 covariances one per component: (..., K, D) variances ("diag", "spherical":
        each repeated D times) or (K, D, D) matrices ("full", "tied": the shared one repeated)."""
        raise NotImplementedError

    def check_precisions_init(self, precisions) -> None:
        """Raise scikit-learn's ``ValueError`` unless ``precisions`` (of :meth:`shape`) are
        positive (definite, symmetric)."""
        raise NotImplementedError

    # -- the E-step's layout
    def terms(self, logw, mu, covariances, dtype) -> Terms:
        """:class:`Terms` of models with ``logw`` (..., K), means ``mu`` (..., K, D) already
        shifted, and ``covariances`` of :meth:`shape` (or with the same leading axes as ``mu``,
        a batch of models; "tied": one (D, D) shared by all).  float64; ``dtype`` is the
        model's, in which the core whitens frames ("tied")."""
        raise NotImplementedError

    # -- M-step
    def estimate(self, stats: GMMStats, eps: float) -> tuple[np.ndarray, np.ndarray]:
        """Maximum-likelihood means (K, D) and covariances (this type's shape) of ``stats``,
        before floor and regularisation (scikit-learn's ``_estimate_gaussian_covariances_*``
        written on the statistics; ``eps`` added to every occupancy)."""
        means, cov = stats.moments(eps)
        return means, cov

    def global_covariance(self, gcov) -> np.ndarray:
        """The data's covariance ``gcov`` ((D,) variances or (D, D)) in one component's shape
        of this type: the reference of the variance floor."""
        return gcov

    def floor(self, cov, floor) -> np.ndarray:
        """Covariances floored at ``floor`` (one component's shape, :meth:`global_covariance`)."""
        return np.maximum(cov, floor)

    def regularisation(self, reg_covar: float, D: int):
        """What ``reg_covar`` adds to a covariance: to every variance, or to the diagonal."""
        return reg_covar * np.eye(D) if self.matrix else reg_covar

    def about(self, cov, means, centre, nk) -> np.ndarray:
        """Covariances about ``centre`` (K, D) instead of the estimated ``means`` (K, D): the
        M-step with frozen means (``cov + d d^T``, ``d = means - centre``; ``nk`` (K,) weights
        the pooled "tied" one)."""
        raise NotImplementedError

    def ill_defined(self, covariances, small=None) -> np.ndarray:
        """(K,) bool (tied: (1,)): which covariances are not finite and positive (definite),
        i.e. those :meth:`precisions_cholesky` refuses, or collapsed: with ``small`` (one
        component's shape, :meth:`global_covariance` times a tiny factor) a variance below it
        (full / tied: an eigenvalue below its mean diagonal)."""
        raise NotImplementedError

    def split_offset(self, cov, D: int) -> np.ndarray:
        """(D,) offset ``sqrt(2/pi) sqrt(lambda) v`` along the principal axis ``v`` (variance
        ``lambda``) of one component's covariance ``cov``: splitting a Gaussian in two there
        puts the halves' means at the means of its two half-spaces."""
        c = self.expand(np.asarray(cov, dtype=np.float64)[None], 1, D)[0]
        if c.ndim == 1:
            d = int(np.argmax(c))
            out = np.zeros(D)
            out[d] = np.sqrt(2 / np.pi * c[d])
            return out
        lam, V = np.linalg.eigh(c)
        return np.sqrt(2 / np.pi * max(lam[-1], 0.0)) * V[:, -1]

    # -- the variational (Bayesian) model: scikit-learn's BayesianGaussianMixture
    def wishart(self, nk, xk, sk, prior) -> tuple[np.ndarray, np.ndarray]:
        """Degrees of freedom (K,) (tied: a scalar) and covariances (this type's shape,
        normalised by the degrees of freedom) of the variational posterior: scikit-learn's
        ``_estimate_wishart_*`` (Bishop 10.62-10.63).  ``nk`` (K,), ``xk`` (K, D) means, ``sk``
        the ML covariances of this type plus ``reg_covar``; ``prior`` has ``dof``, ``cov``
        (this type's prior), ``beta0`` (mean precision prior), ``beta`` (K,) and ``m0`` (D,)."""
        raise NotImplementedError

    def log_det_cholesky(self, prec_chol, D: int) -> np.ndarray:
        """``log det C`` per component (K,) (tied: a scalar): half the log-determinant of the
        precisions (scikit-learn's ``_compute_log_det_cholesky``)."""
        raise NotImplementedError

    def quadratic_total(self, stats: GMMStats, means, precisions) -> float:
        """``sum_k sum_i w_i r_ik (x_i - mu_k)^T P_k (x_i - mu_k)`` from the statistics (float64),
        ``precisions`` of this type's shape (``precisions_``)."""
        raise NotImplementedError

    # -- bounds and sampling
    def bound_variances(self, covariances, K: int, D: int) -> np.ndarray:
        """(K, D) "variances" for the usable-parameter bounds (``gmmext._validation``): the
        variances, or each component's smallest eigenvalue repeated D times (full, tied: the
        bound ``sum_d R_d**2 / var_kd`` then bounds ``R^T inv(cov_k) R``)."""
        raise NotImplementedError

    def sample(self, rng, means, covariances, counts) -> np.ndarray:
        """``counts[k]`` draws from every component, in component order (scikit-learn's draws)."""
        raise NotImplementedError


class _Variances(CovarianceType):
    """Diagonal and spherical: variances, the core's diagonal layout."""

    def precisions_cholesky(self, covariances) -> np.ndarray:
        cov = np.asarray(covariances, dtype=np.float64)
        if np.any(cov <= 0):
            raise ValueError(ILL_DEFINED)
        return 1.0 / np.sqrt(cov)

    def precisions(self, prec_chol) -> np.ndarray:
        C = np.asarray(prec_chol, dtype=np.float64)
        return C * C

    def covariances_from_precisions(self, precisions) -> np.ndarray:
        return 1.0 / np.asarray(precisions, dtype=np.float64)

    def check_precisions_init(self, precisions) -> None:
        if np.any(np.asarray(precisions) <= 0):
            raise ValueError(f"'{self.name} precision' should be positive")

    def ill_defined(self, covariances, small=None) -> np.ndarray:
        c = np.asarray(covariances, dtype=np.float64)
        bad = ~(np.isfinite(c) & (c > 0))
        if small is not None:
            bad |= c < small
        return bad.any(axis=1) if bad.ndim == 2 else bad

    def log_det_cholesky(self, prec_chol, D: int) -> np.ndarray:
        return np.log(self.expand(prec_chol, len(prec_chol), D)).sum(axis=1)

    def quadratic_total(self, stats: GMMStats, means, precisions) -> float:
        P = self.expand(precisions, *means.shape)
        sxx = stats.sum_xx if stats.sum_xx.ndim == 2 else np.diagonal(stats.sum_xx, axis1=1, axis2=2)
        return float((P * (sxx - 2 * means * stats.sum_x + stats.n[:, None] * means ** 2)).sum())

    def terms(self, logw, mu, covariances, dtype) -> Terms:
        prec = 1.0 / self.expand(covariances, mu.shape[-2], mu.shape[-1])
        lin, g = diag_terms(logw, mu, prec)
        return Terms(lin, np.broadcast_to(-0.5 * prec, lin.shape), g, None)

    def expand(self, covariances, K: int, D: int) -> np.ndarray:
        return np.asarray(covariances, dtype=np.float64)

    def bound_variances(self, covariances, K: int, D: int) -> np.ndarray:
        return self.expand(covariances, K, D)

    def sample(self, rng, means, covariances, counts) -> np.ndarray:
        D = means.shape[1]
        return np.vstack([mean + rng.standard_normal(size=(c, D)) * np.sqrt(cov)
                          for mean, cov, c in zip(means, covariances, counts)])


class _Diag(_Variances):
    name = "diag"

    def shape(self, K: int, D: int) -> tuple[int, ...]:
        return (K, D)

    def _free(self, K: int, D: int) -> float:
        return K * D

    def about(self, cov, means, centre, nk) -> np.ndarray:
        return cov + (means - centre) ** 2

    def wishart(self, nk, xk, sk, prior) -> tuple[np.ndarray, np.ndarray]:
        dof = prior.dof + nk
        diff = xk - prior.m0
        cov = prior.cov + nk[:, None] * (sk + (prior.beta0 / prior.beta)[:, None] * diff ** 2)
        return dof, cov / dof[:, None]


class _Spherical(_Variances):
    name = "spherical"

    def shape(self, K: int, D: int) -> tuple[int, ...]:
        return (K,)

    def _free(self, K: int, D: int) -> float:
        return K

    def expand(self, covariances, K: int, D: int) -> np.ndarray:
        cov = np.asarray(covariances, dtype=np.float64)
        return np.repeat(cov[..., None], D, axis=-1)

    def estimate(self, stats: GMMStats, eps: float) -> tuple[np.ndarray, np.ndarray]:
        means, var = stats.moments(eps)
        return means, var.mean(axis=1)

    def global_covariance(self, gcov) -> np.ndarray:
        return gcov.mean(keepdims=True)

    def about(self, cov, means, centre, nk) -> np.ndarray:
        return cov + ((means - centre) ** 2).mean(axis=1)

    def wishart(self, nk, xk, sk, prior) -> tuple[np.ndarray, np.ndarray]:
        dof = prior.dof + nk
        diff = xk - prior.m0
        cov = prior.cov + nk * (sk + prior.beta0 / prior.beta * (diff ** 2).mean(axis=1))
        return dof, cov / dof


class _Matrices(CovarianceType):
    """Full and tied: symmetric positive-definite (D, D) matrices."""

    matrix = True

    def _stacked(self, a) -> np.ndarray:
        """(n, D, D): the K matrices (full) or the one (tied)."""
        return a

    def _unstacked(self, a) -> np.ndarray:
        return a

    def precisions_cholesky(self, covariances) -> np.ndarray:
        """full / tied: ``solve_triangular(cholesky(cov, lower=True), I, lower=True).T`` per matrix,
        all in one batched call each (NumPy's Cholesky, SciPy's triangular solve, not a Python
        loop of K small LAPACK calls; SciPy < 1.16 loops, _sklearn_compat.solve_triangular)."""
        mats = self._stacked(np.asarray(covariances, dtype=np.float64))
        if not np.all(np.isfinite(mats)):
            raise ValueError(ILL_DEFINED)
        try:
            L = np.linalg.cholesky(mats)
        except np.linalg.LinAlgError:
            raise ValueError(ILL_DEFINED) from None
        eye = np.broadcast_to(np.eye(mats.shape[-1]), mats.shape)
        out = np.ascontiguousarray(np.swapaxes(solve_triangular(L, eye, lower=True), -1, -2))
        return self._unstacked(out)

    def precisions(self, prec_chol) -> np.ndarray:
        C = self._stacked(np.asarray(prec_chol, dtype=np.float64))
        return self._unstacked(np.einsum("kij,klj->kil", C, C))

    def covariances_from_precisions(self, precisions) -> np.ndarray:
        mats = self._stacked(np.asarray(precisions, dtype=np.float64))
        out = np.empty_like(mats)
        for k, m in enumerate(mats):
            C = linalg.cholesky(m, lower=True)
            Ci = linalg.solve_triangular(C, np.eye(m.shape[0]), lower=True)
            out[k] = Ci.T @ Ci
        return self._unstacked(out)

    def ill_defined(self, covariances, small=None) -> np.ndarray:
        mats = self._stacked(np.asarray(covariances, dtype=np.float64))
        bad = np.zeros(mats.shape[0], dtype=bool)
        tiny = None if small is None else np.trace(np.asarray(small)) / mats.shape[-1]
        for k, m in enumerate(mats):
            if not np.all(np.isfinite(m)):
                bad[k] = True
                continue
            try:
                np.linalg.cholesky(m)
            except np.linalg.LinAlgError:
                bad[k] = True
                continue
            if tiny is not None and np.linalg.eigvalsh(m)[0] < tiny:
                bad[k] = True
        return bad

    def check_precisions_init(self, precisions) -> None:
        for m in self._stacked(np.asarray(precisions)):
            if not (np.allclose(m, m.T) and np.all(np.linalg.eigvalsh(m) > 0.0)):
                raise ValueError(f"'{self.name} precision' should be symmetric, positive-definite")

    def floor(self, cov, floor) -> np.ndarray:
        """Eigenvalues floored relative to ``floor`` (Kaldi's ``SpMatrix::ApplyFloor``): see
        :func:`floor_matrices`."""
        return floor_matrices(cov, floor)

    def bound_variances(self, covariances, K: int, D: int) -> np.ndarray:
        lam = np.linalg.eigvalsh(self._stacked(np.asarray(covariances, dtype=np.float64)))[:, 0]
        return np.repeat(np.broadcast_to(lam, (K,))[:, None], D, axis=1)


class _Full(_Matrices):
    name = "full"
    estep = "full"

    def shape(self, K: int, D: int) -> tuple[int, ...]:
        return (K, D, D)

    def _free(self, K: int, D: int) -> float:
        return K * D * (D + 1) / 2

    def expand(self, covariances, K: int, D: int) -> np.ndarray:
        return np.asarray(covariances, dtype=np.float64)

    def about(self, cov, means, centre, nk) -> np.ndarray:
        d = means - centre
        return cov + d[:, :, None] * d[:, None, :]

    def wishart(self, nk, xk, sk, prior) -> tuple[np.ndarray, np.ndarray]:
        dof = prior.dof + nk
        diff = xk - prior.m0
        cov = (prior.cov + nk[:, None, None] * sk
               + (nk * prior.beta0 / prior.beta)[:, None, None] * diff[:, :, None] * diff[:, None, :])
        return dof, cov / dof[:, None, None]

    def log_det_cholesky(self, prec_chol, D: int) -> np.ndarray:
        return np.log(np.diagonal(prec_chol, axis1=1, axis2=2)).sum(axis=1)

    def quadratic_total(self, stats: GMMStats, means, precisions) -> float:
        P = np.asarray(precisions, dtype=np.float64)
        Pm = np.einsum("kij,kj->ki", P, means)
        return float(np.einsum("kij,kij->", P, stats.sum_xx) - 2 * (Pm * stats.sum_x).sum()
                     + (stats.n * (Pm * means).sum(axis=1)).sum())

    def terms(self, logw, mu, covariances, dtype) -> Terms:
        K, D = mu.shape[-2:]
        lead = mu.shape[:-2]
        C = self.precisions_cholesky(np.reshape(covariances, (-1, D, D)))
        prec = np.einsum("kij,klj->kil", C, C)                                   # P_k
        pm = np.einsum("kij,kj->ki", prec, mu.reshape(-1, D))                    # P_k mu_k
        a, b = np.triu_indices(D)
        quad = prec[:, a, b] * np.where(a == b, -0.5, -1.0)
        logdet = np.log(np.diagonal(C, axis1=1, axis2=2)).sum(axis=1)
        q = (pm * mu.reshape(-1, D)).sum(axis=1)
        g = gconst(logw, D, logdet.reshape(lead + (K,)), q.reshape(lead + (K,)))
        return Terms(pm.reshape(mu.shape), quad.reshape(lead + (K, -1)), g, None, C)

    def sample(self, rng, means, covariances, counts) -> np.ndarray:
        return np.vstack([rng.multivariate_normal(mean, cov, int(c))
                          for mean, cov, c in zip(means, covariances, counts)])


class _Tied(_Matrices):
    name = "tied"
    pooled = True
    per_component = False
    whitened = True

    def shape(self, K: int, D: int) -> tuple[int, ...]:
        return (D, D)

    def _free(self, K: int, D: int) -> float:
        return D * (D + 1) / 2

    def expand(self, covariances, K: int, D: int) -> np.ndarray:
        cov = np.asarray(covariances, dtype=np.float64)
        return np.broadcast_to(cov, (K,) + cov.shape)

    def _stacked(self, a) -> np.ndarray:
        return a[None]

    def about(self, cov, means, centre, nk) -> np.ndarray:
        d = means - centre
        return cov + np.einsum("k,ki,kj->ij", nk, d, d) / nk.sum()

    def wishart(self, nk, xk, sk, prior) -> tuple[np.ndarray, np.ndarray]:
        K = nk.shape[0]
        dof = prior.dof + nk.sum() / K
        diff = xk - prior.m0
        cov = (prior.cov + sk * nk.sum() / K
               + prior.beta0 / K * np.dot((nk / prior.beta) * diff.T, diff))
        return np.float64(dof), cov / dof

    def log_det_cholesky(self, prec_chol, D: int) -> np.ndarray:
        return np.float64(np.log(np.diag(prec_chol)).sum())

    def quadratic_total(self, stats: GMMStats, means, precisions) -> float:
        P = np.asarray(precisions, dtype=np.float64)
        Pm = means @ P
        return float((P * stats.sum_xx.sum(axis=0)).sum() - 2 * (Pm * stats.sum_x).sum()
                     + (stats.n * (Pm * means).sum(axis=1)).sum())

    def _unstacked(self, a) -> np.ndarray:
        return a[0]

    def precisions(self, prec_chol) -> np.ndarray:
        C = np.asarray(prec_chol, dtype=np.float64)
        return C @ C.T

    def terms(self, logw, mu, covariances, dtype) -> Terms:
        """Whitened frames ``z = T y``, ``T = C^T`` in ``dtype`` (what the core multiplies by):
        the diagonal layout with unit variances and means ``T mu_k``."""
        D = mu.shape[-1]
        C = self.precisions_cholesky(covariances)
        whiten = np.ascontiguousarray(C.T, dtype=dtype)
        mz = mu @ whiten.T.astype(np.float64)                        # T mu_k, as rows
        logdet = np.log(np.diagonal(C)).sum()
        g = gconst(logw, D, logdet, (mz * mz).sum(axis=-1))
        return Terms(mz, np.broadcast_to(-0.5, mz.shape), g, whiten)

    def estimate(self, stats: GMMStats, eps: float) -> tuple[np.ndarray, np.ndarray]:
        """``(sum_k sum_xx_k - sum_k n_k mu_k mu_k^T) / sum_k n_k`` (pooled or per-component statistics)."""
        nk = stats.n + eps
        means = stats.sum_x / nk[:, None]
        return means, within_covariance(stats.sum_xx.sum(axis=0), nk, means)

    def sample(self, rng, means, covariances, counts) -> np.ndarray:
        return np.vstack([rng.multivariate_normal(mean, covariances, int(c))
                          for mean, c in zip(means, counts)])


FULL, TIED, DIAG, SPHERICAL = _Full(), _Tied(), _Diag(), _Spherical()
_BY_NAME = {t.name: t for t in (FULL, TIED, DIAG, SPHERICAL)}


def get(covariance_type: "str | CovarianceType") -> CovarianceType:
    """The :class:`CovarianceType` of a name in :data:`COVARIANCE_TYPES` (an object is returned as is)."""
    if isinstance(covariance_type, CovarianceType):
        return covariance_type
    try:
        return _BY_NAME[covariance_type]
    except (KeyError, TypeError):
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}") from None


# ------------------------------------------------------------------------------ helpers
def diag_terms(logw, mu, prec):
    """Diagonal layout: ``(mu * prec, gconst)`` for ``mu`` already shifted, broadcasting over leading axes.

    ``logw`` (..., K), ``mu`` (..., K, D), ``prec`` (K, D) or (..., K, D) (``1 / variance``), float64.
    """
    D = mu.shape[-1]
    logdet = 0.5 * np.log(prec).sum(axis=-1)
    quad = (mu * mu * prec).sum(axis=-1)
    return mu * prec, gconst(logw, D, logdet, quad)


def floor_matrices(cov, floor) -> np.ndarray:
    """Covariance matrices floored in the positive-definite sense (Kaldi's ``SpMatrix::ApplyFloor(floor, 1)``).

    ``cov`` (K, D, D) or (D, D), ``floor`` (D, D) = ``var_floor * G``; with ``G = L L^T`` the
    eigenvalues of ``L^-1 cov L^-T`` below 1 are raised to 1, so that ``cov - floor`` is positive
    semi-definite (for diagonal matrices: the element-wise floor of the variances).  A singular
    ``G`` (a constant dimension) is regularised by 1e-10 of its mean variance first.
    """
    D = floor.shape[0]
    G = floor + 1e-10 * max(np.trace(floor) / D, np.finfo(np.float64).tiny) * np.eye(D)
    try:
        L = linalg.cholesky(G, lower=True)
    except linalg.LinAlgError:
        return cov
    mats = cov[None] if cov.ndim == 2 else cov
    out = np.empty_like(mats)
    for k, c in enumerate(mats):
        A = linalg.solve_triangular(L, linalg.solve_triangular(L, c, lower=True).T, lower=True)
        lam, V = np.linalg.eigh(0.5 * (A + A.T))
        B = (V * np.maximum(lam, 1.0)) @ V.T
        out[k] = L @ B @ L.T
    return out[0] if cov.ndim == 2 else out


@one_blas_thread
def model_matrices(weights, means, covariances, dtype, kind: CovarianceType = DIAG,
                   shift=None, log_weights=None) -> ModelMatrices:
    """The :class:`ModelMatrices` of one model of type ``kind`` in ``dtype``.

    From (K,), (K, D) and ``covariances`` of ``kind``'s shape.  With ``y = x - shift``,
    ``phi(y) @ M + gconst`` are the weighted log-densities ``log w_k + log N(x | mu_k, cov_k)``,
    ``phi`` the core's feature map: ``[y, y**2]`` (P = 2D, diag and spherical) or ``[y, y_a y_b
    for a <= b]`` (P = D + D(D+1)/2, full; the quadratic rows hold ``-P_aa / 2`` and ``-P_ab``,
    P the precision matrix).  Tied: ``whiten`` is ``T = C^T`` (D, D), C the shared
    upper-triangular ``precisions_cholesky_``, and ``phi(T y)`` is the diagonal layout with unit
    variances (means ``T (mu_k - shift)``).  The shift is the mixture's mean unless given, so that
    ``y`` is centred.  Computed in float64 (precisions from the Cholesky factor, as
    scikit-learn), then cast.

    ``log_weights`` (K,), if given, replaces ``log w`` in ``gconst`` (the weights then only
    place the shift): the variational E-step of ``BayesianGaussianMixture`` is this E-step with
    its expected log-weights and Wishart constants there (``gmmext._bayesian``).

    float32 full models also get ``refine`` (see :class:`ModelMatrices`): in float32 the
    expanded quadratic form ``y^T P y - 2 mu^T P y + mu^T P mu`` cancels (errors of 1e-3 to
    1 nat per frame), and the core recomputes the log-densities that count from these.
    """
    w = np.asarray(weights, dtype=np.float64)
    mu0 = np.asarray(means, dtype=np.float64)
    shift = np.ascontiguousarray(mixture_mean(w, mu0) if shift is None else shift, dtype=dtype)
    K, D = mu0.shape
    with np.errstate(divide="ignore"):
        logw = np.log(w) if log_weights is None else np.asarray(log_weights, dtype=np.float64)
    t = kind.terms(logw, mu0 - shift.astype(np.float64), covariances, dtype)
    M = np.empty((kind.feature_columns(D), K), dtype=dtype)
    M[:D] = t.lin.T
    M[D:] = t.quad.T
    refine = None
    if t.chol is not None and np.dtype(dtype) == np.float32:
        logdet = kind.log_det_cholesky(t.chol, D)
        shift64 = shift.astype(np.float64)
        t64 = kind.terms(logw, mu0 - shift64, covariances, np.float64)
        M64 = np.empty((kind.feature_columns(D), K))
        M64[:D] = t64.lin.T
        M64[D:] = t64.quad.T
        refine = (np.ascontiguousarray(mu0), np.ascontiguousarray(t.chol, dtype=np.float64),
                  np.ascontiguousarray(gconst(logw, D, logdet, 0.0), dtype=np.float64),
                  M64, np.ascontiguousarray(t64.gconst, dtype=np.float64), shift64)
    return ModelMatrices(shift, M, np.ascontiguousarray(t.gconst, dtype=dtype), t.whiten, refine)
