"""Top-C fast scoring of many models (Reynolds et al. 2000): :class:`ModelStack`, :func:`top_c_loglik`.

Per frame, the C best components of the UBM are found once (``GaussianMixture.top_components``);
every model adapted from that UBM is then evaluated on those C components only, in the
compiled core (``gmmext._core.topc_loglik``).  This module stacks the models' matrices and
checks the indices; it computes no likelihood itself.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from sklearn.utils.validation import check_is_fitted


if TYPE_CHECKING:
    from ._mixture import GaussianMixture

__all__ = ["ModelStack", "top_c_loglik"]


def _kind(covariance_type: str) -> str:
    """Types whose models can share one stack: "diag" and "spherical" together, the others alone."""
    return "diag" if covariance_type == "spherical" else covariance_type


class ModelStack:
    """S fitted models of the same (K, D), prepared once for repeated top-C scoring.

    Scoring many test utterances against the same speaker models re-uses the stacked
    (S, K, P) matrices built here.  All matrices are built about the mixture mean of
    ``reference`` (the UBM, usually), the model whose :meth:`GaussianMixture.top_components`
    provides the indices.  Every covariance type works; the core's layout, and with it P,
    follows the type (2D for "diag", "spherical" and "tied", D + D(D+1)/2 for "full"), so the
    models must be of the reference's feature layout, and tied models, scored on frames whitened
    once by the reference's shared covariance, must all have exactly that covariance (as MAP
    adaptation of means and weights leaves it); ``ValueError`` otherwise.
    """

    def __init__(self, models, reference: "GaussianMixture | None" = None):
        self.models = list(models)
        if not self.models:
            raise ValueError("ModelStack needs at least one model")
        ref = reference if reference is not None else self.models[0]
        check_is_fitted(ref)
        self.K, self.D = ref.means_.shape
        for m in self.models:
            check_is_fitted(m)
            if m.means_.shape != (self.K, self.D):
                raise ValueError(f"all models must have the same (K, D) = {(self.K, self.D)}; "
                                 f"got {m.means_.shape}")
            if _kind(m.covariance_type) != _kind(ref.covariance_type):
                raise ValueError(f"a covariance_type={m.covariance_type!r} model cannot be scored in a "
                                 f"stack whose reference is {ref.covariance_type!r}: the types must "
                                 f"be equal, or both in {('diag', 'spherical')}")
            if ref.covariance_type == "tied" and not np.array_equal(m.covariances_, ref.covariances_):
                raise ValueError("tied models are scored in the reference's whitened space: every "
                                 "model of the stack must have the reference's covariances_")
        self.reference = ref
        self._cache = {}

    def __len__(self) -> int:
        return len(self.models)

    def _stack(self, dtype):
        """(shift, Mt (S, K, P), gconst (S, K), whiten) in ``dtype``, stacked once per dtype.

        Every model's matrices about the reference's shift come from that model's own cache
        (``GaussianMixture._matrices``), so stacks rebuilt for the same models (e.g. one
        ``ModelStack`` per trial) cost a copy, not a rebuild.  The stack is taken when first
        needed: parameters changed after that are not seen (make a new ``ModelStack``).
        """
        dtype = np.dtype(dtype)
        if dtype not in self._cache:
            shift, M_ref, _, whiten = self.reference._matrices(dtype)
            Mt = np.empty((len(self.models), self.K, M_ref.shape[0]), dtype=dtype)
            gconst = np.empty((len(self.models), self.K), dtype=dtype)
            for s, m in enumerate(self.models):
                _, M, g, _ = m._matrices(dtype, shift=shift)
                Mt[s] = M.T
                gconst[s] = g
            self._cache[dtype] = (shift, Mt, gconst, whiten)
        return self._cache[dtype]

    def top_c_loglik(self, X, indices, which=None) -> np.ndarray:
        """Total top-C log-likelihood of X (n_frames, D) under every model, shape (S,), nats.

        ``which`` (sequence of model positions) restricts the scoring to those models and
        returns their totals in that order.
        """
        X = self.reference._prepare(X)
        idx = np.ascontiguousarray(indices)
        K = self.K
        if idx.ndim != 2 or idx.shape[0] != X.shape[0] or not 1 <= idx.shape[1] <= K:
            raise ValueError(f"indices must have shape (n_frames={X.shape[0]}, C) with 1 <= C <= {K}; "
                             f"got {idx.shape}")
        if not np.issubdtype(idx.dtype, np.integer) or (idx.size and (idx.min() < 0 or idx.max() >= K)):
            raise ValueError(f"indices must be integers in [0, {K})")
        shift, Mt, gconst, whiten = self._stack(X.dtype)
        if which is not None:
            which = np.asarray(which, dtype=np.intp)
            Mt, gconst = Mt[which], gconst[which]
        engine = self.reference._engine(X.dtype, self.D)
        return engine.top_c_loglik(X, idx.astype(np.int32, copy=False), shift, Mt, gconst, whiten)


def top_c_loglik(models, X, indices) -> np.ndarray:
    """Log-likelihood of X under each model, every frame restricted to its given components.

    The second half of top-C fast scoring: ``indices`` come from the UBM's
    :meth:`GaussianMixture.top_components`, and every model (typically MAP-adapted from that
    UBM) is evaluated on those components only, so the UBM work is done once per utterance.

    Parameters
    ----------
    models : sequence of fitted GaussianMixture, all with the same (K, D), or a ModelStack
    X : array-like of shape (n_frames, D)
    indices : ndarray of shape (n_frames, C), integer in [0, K)

    Returns
    -------
    ndarray of shape (len(models),)
        ``sum_i log sum_{k in indices[i]} w_k N(x_i | mu_k, var_k)`` for each model (nats,
        a total over frames: divide by n_frames for the average).
    """
    if isinstance(models, ModelStack):
        return models.top_c_loglik(X, indices)
    models = list(models)
    if not models:
        return np.zeros(0)
    return ModelStack(models).top_c_loglik(X, indices)
