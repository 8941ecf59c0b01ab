"""The four covariance types: shapes, precisions and the core's layout (NumPy only).

scikit-learn's semantics, per ``covariance_type`` with K components in D dimensions:

============  ====================  ===========================================================
type          ``covariances_``      ``precisions_cholesky_`` (what the E-step uses)
============  ====================  ===========================================================
"full"        (K, D, D)             upper-triangular ``C_k`` with ``C_k C_k^T = inv(cov_k)``
"tied"        (D, D)                one such ``C`` shared by every component
"diag"        (K, D)                ``1 / sqrt(cov)``
"spherical"   (K,)                  ``1 / sqrt(cov)``
============  ====================  ===========================================================

``precisions_`` is ``C C^T`` (full, tied) or ``1 / cov`` (diag, spherical), as scikit-learn
computes them.  The compiled core has two layouts (``src/_core.pyx``): "diag" and "spherical"
use the diagonal one (a spherical variance is a diagonal one repeated D times), "full" the
full one, and "tied" the diagonal one on whitened frames (``z = C^T (x - shift)``: unit
variances, see :func:`feature_layout`).  The statistics follow :func:`layout`:
``GMMStats.sum_xx`` is (K, D) for "diag" and "spherical", (K, D, D) for "full", and for
"tied" the pooled (1, D, D) scatter matrix its M-step needs (statistics of (K, D, D) update
a tied model too: its M-step sums them over components).
"""
from __future__ import annotations

import numpy as np
from scipy import linalg

__all__ = ["COVARIANCE_TYPES", "ILL_DEFINED", "layout", "cov_shape", "n_parameters",
           "feature_layout", "precisions_cholesky", "precisions_from_cholesky", "covariances_from_precisions",
           "per_component_full", "per_component_diag", "min_eigenvalues"]

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

ILL_DEFINED = (
    "Fitting the mixture model failed because some components have ill-defined empirical "
    "covariance (for instance caused by singleton or collapsed samples). Try to decrease the "
    "number of components, increase reg_covar, or scale the input data. (gmmext: var_floor "
    "helps too.)")


def layout(covariance_type: str) -> str:
    """The core's layout: "diag" (diag, spherical) or "full" (full, tied)."""
    return "full" if covariance_type in ("full", "tied") else "diag"


def feature_layout(covariance_type: str) -> str:
    """The core's feature map for the E-step: "full" for "full", "diag" for the other three.

    "tied" is scored in the diagonal layout after whitening every frame by the shared
    ``C^T`` (one triangular (D x D) product per frame), which costs ``2D`` feature columns
    per component instead of the full layout's ``D + D(D+1)/2``.
    """
    return "full" if covariance_type == "full" else "diag"


def cov_shape(covariance_type: str, K: int, D: int) -> tuple:
    """Shape of ``covariances_`` (and ``precisions_``, ``precisions_init``)."""
    return {"full": (K, D, D), "tied": (D, D), "diag": (K, D), "spherical": (K,)}[covariance_type]


def n_parameters(covariance_type: str, K: int, D: int) -> int:
    """Free parameters of the model (scikit-learn's count, for ``bic`` / ``aic``)."""
    cov = {"full": K * D * (D + 1) / 2, "tied": D * (D + 1) / 2, "diag": K * D,
           "spherical": K}[covariance_type]
    return int(cov + K * D + K - 1)


def precisions_cholesky(covariances, covariance_type: str) -> np.ndarray:
    """scikit-learn's ``precisions_cholesky_`` of ``covariances`` (float64).

    full / tied: ``solve_triangular(cholesky(cov, lower=True), I, lower=True).T`` per matrix,
    all K matrices in one batched call each (NumPy's Cholesky, SciPy's triangular solve; a
    Python loop of K small LAPACK calls cost 6 ms at K=64, D=39, and far more with a threaded
    BLAS on a loaded machine); a matrix that is not finite and positive-definite raises
    ``ValueError`` (scikit-learn's message).
    """
    cov = np.asarray(covariances, dtype=np.float64)
    if covariance_type in ("diag", "spherical"):
        if np.any(cov <= 0):
            raise ValueError(ILL_DEFINED)
        return 1.0 / np.sqrt(cov)
    mats = cov[None] if covariance_type == "tied" else cov
    if not np.all(np.isfinite(mats)):
        raise ValueError(ILL_DEFINED)
    try:
        L = np.linalg.cholesky(mats)
    except np.linalg.LinAlgError:
        raise ValueError(ILL_DEFINED) from None
    eye = np.broadcast_to(np.eye(mats.shape[-1]), mats.shape)
    out = np.ascontiguousarray(np.swapaxes(linalg.solve_triangular(L, eye, lower=True), -1, -2))
    return out[0] if covariance_type == "tied" else out


def precisions_from_cholesky(prec_chol, covariance_type: str) -> np.ndarray:
    """``precisions_``: ``C C^T`` (full, tied) or ``C**2`` (diag, spherical)."""
    C = np.asarray(prec_chol, dtype=np.float64)
    if covariance_type == "full":
        return np.einsum("kij,klj->kil", C, C)
    if covariance_type == "tied":
        return C @ C.T
    return C * C


def covariances_from_precisions(precisions, covariance_type: str) -> np.ndarray:
    """Covariances of user-given (validated) precisions: their inverse."""
    p = np.asarray(precisions, dtype=np.float64)
    if covariance_type in ("diag", "spherical"):
        return 1.0 / p
    mats = p[None] if covariance_type == "tied" else p
    out = np.empty_like(mats)
    for k, m in enumerate(mats):
        C = linalg.cholesky(m, lower=True)
        Ci = linalg.solve_triangular(C, np.eye(m.shape[0]), lower=True)
        out[k] = Ci.T @ Ci
    return out[0] if covariance_type == "tied" else out


def per_component_full(covariances, covariance_type: str, K: int) -> np.ndarray:
    """(K, D, D) covariance matrices of a full or tied model (tied: the shared one repeated)."""
    cov = np.asarray(covariances, dtype=np.float64)
    return np.broadcast_to(cov, (K,) + cov.shape) if covariance_type == "tied" else cov


def per_component_diag(covariances, covariance_type: str, D: int) -> np.ndarray:
    """(K, D) variances of a diag or spherical model (spherical: repeated D times)."""
    cov = np.asarray(covariances, dtype=np.float64)
    return np.repeat(cov[:, None], D, axis=1) if covariance_type == "spherical" else cov


def min_eigenvalues(covariances, covariance_type: str, K: int, D: int) -> np.ndarray:
    """(K, D) "variances" for the usable-parameter bounds of any type.

    diag / spherical: the variances; full / tied: each component's smallest eigenvalue,
    repeated D times (the bound ``sum_d R_d**2 / var_kd`` then bounds ``R^T inv(cov_k) R``).
    """
    if layout(covariance_type) == "diag":
        return per_component_diag(covariances, covariance_type, D)
    cov = np.asarray(covariances, dtype=np.float64)
    mats = cov[None] if covariance_type == "tied" else cov
    lam = np.linalg.eigvalsh(mats)[:, 0]
    lam = np.broadcast_to(lam, (K,)) if covariance_type == "tied" else lam
    return np.repeat(lam[:, None], D, axis=1)
