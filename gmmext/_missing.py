"""Missing values (NaN) marginalised: EM and per-frame outputs on the observed coordinates.

``GaussianMixture(missing="marginalize")``.  Rows are grouped by their pattern of observed
coordinates ``o`` (one group per distinct pattern); every group runs through the compiled core
with the *marginal* model of its observed coordinates (means ``mu_k[o]``, covariances
``cov_k[o, o]``: a Gaussian's marginal is a Gaussian), so the responsibilities and the
log-likelihoods are those of the observed coordinates and the frames' arithmetic stays in the
core.  The E-step's statistics of the missing coordinates ``m`` are their conditional
expectations given the observed ones, per component (Ghahramani and Jordan 1994): with
``G_k = cov_k[m, o] inv(cov_k[o, o])`` and ``b_k = mu_k[m] - G_k mu_k[o]``,

    E[x_m | x_o, k]            = G_k x_o + b_k
    E[x_m x_m^T | x_o, k]      = E[x_m] E[x_m]^T + C_k,   C_k = cov_k[m, m] - G_k cov_k[o, m]

which are affine in ``x_o`` (and ``x_o x_o^T``), so a group's statistics follow from the core's
statistics of its observed coordinates by a few (K, D, D) products in float64.  Diagonal
models are the case ``G = 0``: ``E[x_m] = mu_m``, ``E[x_m^2] = mu_m^2 + var_m``.  The
M-step is the usual one on the completed statistics: EM on the observed-data likelihood, which
never decreases.

"diag" and "full" only; "tied" and "spherical" raise ``NotImplementedError`` (their M-steps
would need the same completion of pooled or averaged statistics, not written yet).
"""
from __future__ import annotations

import numpy as np

from ._blas import one_blas_thread
from ._covariance import CovarianceType, model_matrices
from ._engine import Engine
from ._stats import GMMStats

__all__ = ["SUPPORTED", "check_supported", "patterns", "accumulate", "evaluate", "impute_means"]

SUPPORTED = ("diag", "full")


def check_supported(kind: CovarianceType) -> None:
    """``NotImplementedError`` unless ``missing="marginalize"`` supports the type."""
    if kind.name not in SUPPORTED:
        raise NotImplementedError(
            f'missing="marginalize" supports covariance_type "diag" and "full", not {kind.name!r}')


def check_rows(X) -> None:
    """``ValueError`` naming the first row with no observed value (it carries no information)."""
    empty = np.isnan(X).all(axis=1)
    if np.any(empty):
        raise ValueError(f"row {int(np.argmax(empty))} has no observed value (every entry is NaN); "
                         "drop such rows")


def patterns(X) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(observed columns, rows), ...]``: the rows of X (N, D) grouped by their observed columns."""
    observed = ~np.isnan(X)
    keys, inverse = np.unique(observed, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(keys) + 1))
    return [(np.flatnonzero(keys[g]), order[bounds[g]:bounds[g + 1]]) for g in range(len(keys))]


def impute_means(X) -> np.ndarray:
    """X with every NaN replaced by its column's mean over the observed values (initialisation)."""
    means = np.nanmean(X, axis=0)
    return np.where(np.isnan(X), means.astype(X.dtype), X)


def _marginal(kind: CovarianceType, covariances, obs) -> np.ndarray:
    c = np.asarray(covariances, dtype=np.float64)
    return c[:, obs][:, :, obs] if kind.matrix else c[:, obs]


def _engine(gm, dtype, n_obs: int) -> Engine:
    return gm._core_cache().engine(dtype, n_obs, gm.n_components, gm.chunk_size, gm.n_threads, gm._kind)


@one_blas_thread
def accumulate(gm, X, sample_weight, groups=None) -> GMMStats:
    """The completed E-step statistics of X (N, D) with NaN under ``gm``'s parameters (float64).

    ``loglik`` is the log-likelihood of the observed coordinates; ``sum_x`` / ``sum_xx`` hold the
    conditional expectations of the missing ones (module docstring).
    """
    kind = gm._kind
    K, D = gm.means_.shape
    dtype = X.dtype
    w = gm.weights_.astype(np.float64)
    mu = gm.means_.astype(np.float64)
    cov = np.asarray(gm.covariances_, dtype=np.float64)
    total = kind.zero_stats(K, D)
    for obs, rows in (groups if groups is not None else patterns(X)):
        sw = None if sample_weight is None else sample_weight[rows]
        if sw is not None and not sw.sum() > 0:
            continue
        if len(obs) == D:
            st = gm._engine(dtype, D).accumulate(X[rows], sw, gm._matrices(dtype))
            total = total + st
            continue
        mis = np.setdiff1d(np.arange(D), obs)
        Xo = np.ascontiguousarray(X[np.ix_(rows, obs)])
        mm = model_matrices(w, mu[:, obs], _marginal(kind, cov, obs), dtype, kind)
        st = _engine(gm, dtype, len(obs)).accumulate(Xo, sw, mm)
        n = st.n
        sx = np.empty((K, D))
        sx[:, obs] = st.sum_x
        if not kind.matrix:                              # diagonal: G = 0
            sxx = np.empty((K, D))
            sxx[:, obs] = st.sum_xx
            sx[:, mis] = n[:, None] * mu[:, mis]
            sxx[:, mis] = n[:, None] * (mu[:, mis] ** 2 + cov[:, mis])
        else:
            Soo = cov[:, obs][:, :, obs]
            Smo = cov[:, mis][:, :, obs]
            G = np.swapaxes(np.linalg.solve(Soo, np.swapaxes(Smo, 1, 2)), 1, 2)    # (K, m, o)
            b = mu[:, mis] - np.einsum("kmo,ko->km", G, mu[:, obs])
            C = cov[:, mis][:, :, mis] - np.einsum("kmo,kpo->kmp", G, Smo)
            so, soo = st.sum_x, st.sum_xx                                          # (K, o), (K, o, o)
            sm = np.einsum("kmo,ko->km", G, so) + n[:, None] * b
            smo = np.einsum("kmo,kop->kmp", G, soo) + b[:, :, None] * so[:, None, :]
            gso = np.einsum("kmo,ko->km", G, so)
            smm = (np.einsum("kmo,kop,kqp->kmq", G, soo, G) + gso[:, :, None] * b[:, None, :]
                   + b[:, :, None] * gso[:, None, :] + n[:, None, None] * (b[:, :, None] * b[:, None, :] + C))
            sxx = np.empty((K, D, D))
            sxx[np.ix_(range(K), obs, obs)] = soo
            sxx[np.ix_(range(K), mis, obs)] = smo
            sxx[np.ix_(range(K), obs, mis)] = np.swapaxes(smo, 1, 2)
            sxx[np.ix_(range(K), mis, mis)] = 0.5 * (smm + np.swapaxes(smm, 1, 2))
            sx[:, mis] = sm
        total = total + GMMStats(n, sx, sxx, st.loglik, st.n_samples)
    return total


@one_blas_thread
def evaluate(gm, X, **want) -> dict:
    """Per-frame outputs of X (N, D) with NaN (``Engine.evaluate``'s keys), each row under the
    marginal model of its observed coordinates."""
    kind = gm._kind
    N = X.shape[0]
    K, D = gm.means_.shape
    dtype = X.dtype
    w = gm.weights_.astype(np.float64)
    mu = gm.means_.astype(np.float64)
    out = {}
    for obs, rows in patterns(X):
        if len(obs) == D:
            part = gm._engine(dtype, D).evaluate(np.ascontiguousarray(X[rows]), gm._matrices(dtype), **want)
        else:
            mm = model_matrices(w, mu[:, obs], _marginal(kind, gm.covariances_, obs), dtype, kind)
            part = _engine(gm, dtype, len(obs)).evaluate(np.ascontiguousarray(X[np.ix_(rows, obs)]), mm, **want)
        for key, val in part.items():
            if key not in out:
                out[key] = np.empty((N,) + val.shape[1:], dtype=val.dtype)
            out[key][rows] = val
    return out
