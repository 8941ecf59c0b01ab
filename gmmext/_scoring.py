"""Top-C fast scoring of many models (Reynolds et al. 2000): :class:`ModelStack`, :func:`top_c_loglik`.

Per frame, the C best components of the UBM are found once (``GaussianMixture.top_components``);
every model adapted from that UBM is then evaluated on those C components only, in the
compiled core (``gmmext._core.topc_loglik_shared`` for models with the UBM's variances, one
product per component over all models; ``gmmext._core.topc_loglik`` for any others).  This module
stacks the models' matrices and checks the indices; it computes no likelihood itself.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from sklearn.utils.validation import check_is_fitted

from . import _core


if TYPE_CHECKING:
    from ._mixture import GaussianMixture

__all__ = ["ModelStack", "top_c_loglik"]


def _kind(covariance_type: str) -> str:
    """Types whose models can share one stack: "diag" and "spherical" together, the others alone."""
    return "diag" if covariance_type == "spherical" else covariance_type


class ModelStack:
    """S fitted models of the same (K, D), prepared once for repeated top-C scoring.

    Scoring many test utterances against the same speaker models re-uses the stacked matrices
    built here.  All matrices are built about the mixture mean of ``reference`` (the UBM,
    usually), the model whose :meth:`GaussianMixture.top_components` provides the indices.

    Two kinds of models are told apart when the stack is built:

    * **shared**: diagonal models with exactly the reference's variances (MAP-adapted in the
      means and weights only, the usual speaker model).  Their log-density is the frame's part
      common to all of them plus one dot product of length D per (frame, component, model), so
      they are scored by the core's ``topc_loglik_shared``: one product per selected component
      against all of them, one model per vector lane, the models packed in panels of
      ``_core.panel_width`` (64 in float32, 32 in float64, 16 for a stack of up to 16), ``A``
      (K, n_pan, D, PW) plus ``G`` (K, n_pan * PW) per stack (``D + 1`` values per (model,
      component));
    * **general**: any other variances (adapted variances, other covariance types): the core's
      ``topc_loglik`` with every model's (K, P) matrix, one dot product of length P per
      (frame, component, model).

    Build it from models (``ModelStack(models, reference)``) or, for many speaker models at once
    without a ``GaussianMixture`` per model, from parameter arrays
    (:meth:`from_parameters`; ``models`` is then None).

    Every covariance type works: the core's layout, and with it P, follows the type (2D for
    "diag", "spherical" and "tied", D + D(D+1)/2 for "full"), so the models must be of the
    reference's feature layout, and tied models, scored on frames whitened once by the
    reference's shared covariance, must all have exactly that covariance (as MAP adaptation of
    means and weights leaves it); ``ValueError`` otherwise.

    **A model's score depends on that model only.**  For given frames and indices, a model's
    total from :meth:`top_c_loglik` is the same bits whatever the stack holds: its size (a
    stack of one, as ``speaker``'s ``verify`` builds, or of a thousand, as ``identify``
    does), the model's position in it, the other models, ``which``, and whether the stack
    was built from models or from :meth:`from_parameters` (the same float64 operations); for
    the shared kind, also the thread count (the general kind sums per-thread totals: the same
    bits for the reference's ``n_threads``, which every stack of that reference uses).  This
    holds for both kinds, every covariance type, float32 and float64, any C (C = K: the exact
    log-likelihood): the core computes every (frame, component, model) value with the same
    operations in the same order, one model per vector lane (``src/gmm_gemm.h``), and sums
    each model's frames in order with its own state.  The shared and general kinds are
    different formulas (equal to rounding, not bitwise), and a model is of one kind or the
    other by its own variances only.
    """

    #: models per step of :meth:`from_parameters` (bounds its float64 temporaries)
    BUILD_BATCH = 256

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
        self._n = len(self.models)
        self._params = None
        self._cache = {}

    @classmethod
    def from_parameters(cls, weights, means, reference: "GaussianMixture", covariances=None) -> "ModelStack":
        """A stack of S diagonal models given by their parameters, built with array operations.

        Parameters
        ----------
        weights : array-like (S, K), each row summing to 1
        means : array-like (S, K, D)
        reference : fitted diagonal GaussianMixture (K, D): the UBM whose top components are used
        covariances : None (every model has the reference's variances: MAP of means and weights),
            or array-like (S, K, D) of variances (rows equal to the reference's are "shared")

        The matrices are those :meth:`GaussianMixture._matrices` would give each model (the same
        float64 operations, broadcast over the models, then cast), built in steps of
        :attr:`BUILD_BATCH` models.
        """
        check_is_fitted(reference)
        if reference.covariance_type != "diag":
            raise ValueError(f"ModelStack.from_parameters needs a diagonal reference, "
                             f"not covariance_type={reference.covariance_type!r}")
        K, D = reference.means_.shape
        w = np.asarray(weights)
        mu = np.asarray(means)
        if w.ndim != 2 or w.shape[1] != K or w.shape[0] < 1 or mu.shape != (w.shape[0], K, D):
            raise ValueError(f"weights (S, {K}) and means (S, {K}, {D}) expected, S >= 1; "
                             f"got {w.shape} and {mu.shape}")
        var = None if covariances is None else np.asarray(covariances)
        if var is not None and var.shape != mu.shape:
            raise ValueError(f"covariances must be None or of shape {mu.shape}; got {var.shape}")
        for name, a in (("weights", w), ("means", mu), ("covariances", var)):
            if a is not None and not np.isfinite(a).all():
                raise ValueError(f"{name} contain NaN or infinity")
        if (w < 0).any() or (var is not None and not (var > 0).all()):
            raise ValueError("weights must be >= 0 and variances > 0")
        self = cls.__new__(cls)
        self.models, self.reference, self.K, self.D = None, reference, K, D
        self._n = w.shape[0]
        self._params = (w, mu, var)
        self._cache = {}
        return self

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        """Bytes of the matrices prepared so far (every dtype stacked)."""
        return sum(a.nbytes for st in self._cache.values() for a in st.values() if isinstance(a, np.ndarray))

    def _shares(self, m) -> bool:
        ref = self.reference
        return (ref.covariance_type in ("diag", "spherical") and m.covariance_type == ref.covariance_type
                and np.array_equal(m.covariances_, ref.covariances_))

    def _stack(self, dtype) -> dict:
        """The stacked matrices in ``dtype`` (a dict), built once per dtype.

        ``shift`` (D,); ``shared`` / ``general`` (intp): the positions of the two kinds of models;
        ``slot`` (S,): each model's row within its kind; for the shared ones ``Q`` (K, D) and
        the packed ``A`` (K, n_pan, D, PW), ``G`` (K, n_pan * PW) (:func:`_put_shared`); for the
        others ``Mt`` (S2, K, P), ``gconst`` (S2, K).

        From models, every model's matrices about the reference's shift come from that model's own
        cache (``GaussianMixture._matrices``), so stacks rebuilt for the same models (e.g. one
        ``ModelStack`` per trial) cost a copy, not a rebuild.  The stack is taken when first
        needed: parameters changed after that are not seen (make a new ``ModelStack``).
        """
        dtype = np.dtype(dtype)
        if dtype in self._cache:
            return self._cache[dtype]
        K, D = self.K, self.D
        shift, Mref, _, whiten = self.reference._matrices(dtype)
        if self.models is not None:
            kind = np.array([not self._shares(m) for m in self.models], dtype=np.intp)
        else:
            var = self._params[2]
            ref_var = self.reference.covariances_
            kind = (np.zeros(self._n, dtype=np.intp) if var is None
                    else (var != ref_var[None]).any(axis=(1, 2)).astype(np.intp))
        shared, general = np.flatnonzero(kind == 0), np.flatnonzero(kind == 1)
        slot = np.empty(self._n, dtype=np.intp)
        slot[shared], slot[general] = np.arange(shared.size), np.arange(general.size)
        pw = _core.panel_width(dtype, shared.size)
        n_pan = -(-shared.size // pw)
        st = dict(shift=shift, whiten=whiten, shared=shared, general=general, slot=slot,
                  Q=np.ascontiguousarray(Mref[D:2 * D].T) if Mref.shape[0] == 2 * D else None,
                  A=np.zeros((K, n_pan, D, pw), dtype=dtype), G=np.zeros((K, n_pan * pw), dtype=dtype))
        if self.models is not None:
            P = Mref.shape[0]
            st["Mt"] = np.empty((general.size, K, P), dtype=dtype)
            st["gconst"] = np.empty((general.size, K), dtype=dtype)
            for s, m in enumerate(self.models):
                _, M, g, _ = m._matrices(dtype, shift=shift)
                if kind[s] == 0:
                    _put_shared(st, slot[s:s + 1], M[:D].T[:, None], g[:, None])
                else:
                    st["Mt"][slot[s]] = M.T
                    st["gconst"][slot[s]] = g
        else:
            self._build_from_parameters(st, dtype)
        self._cache[dtype] = st
        return st

    def _build_from_parameters(self, st: dict, dtype) -> None:
        from ._engine import diag_terms
        w, mu, var = self._params
        K, D = self.K, self.D
        shift = st["shift"].astype(np.float64)
        ref_prec = 1.0 / self.reference.covariances_.astype(np.float64)
        st["Mt"] = np.empty((st["general"].size, K, 2 * D), dtype=dtype)
        st["gconst"] = np.empty((st["general"].size, K), dtype=dtype)
        for name, rows in (("shared", st["shared"]), ("general", st["general"])):
            for b in range(0, rows.size, self.BUILD_BATCH):
                r = rows[b:b + self.BUILD_BATCH]
                with np.errstate(divide="ignore"):
                    logw = np.log(w[r].astype(np.float64))
                prec = ref_prec if name == "shared" else 1.0 / var[r].astype(np.float64)
                lin, g = diag_terms(logw, mu[r].astype(np.float64) - shift, prec)
                at = st["slot"][r]
                if name == "shared":
                    _put_shared(st, at, lin.transpose(1, 0, 2), g.T)
                else:
                    st["Mt"][at[0]:at[-1] + 1, :, :D] = lin
                    st["Mt"][at[0]:at[-1] + 1, :, D:] = -0.5 * prec
                    st["gconst"][at[0]:at[-1] + 1] = g

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
        idx = idx.astype(np.int32, copy=False)
        st = self._stack(X.dtype)
        want = np.arange(self._n) if which is None else np.asarray(which, dtype=np.intp)
        engine = self.reference._engine(X.dtype, self.D)
        out = np.empty(want.size)
        general = np.isin(want, st["general"])
        if (~general).any():
            A, G, S = st["A"], st["G"], st["shared"].size
            if which is not None or st["general"].size:
                at = st["slot"][want[~general]]
                A, G, S = *_take_shared(A, G, at), at.size
            out[~general] = engine.top_c_loglik_shared(X, idx, st["shift"], st["Q"], A, G, S)
        if general.any():
            at = st["slot"][want[general]]
            out[general] = engine.top_c_loglik(X, idx, st["shift"], st["Mt"][at], st["gconst"][at],
                                                 st["whiten"])
        return out


def _put_shared(st: dict, slots, a, g) -> None:
    """Models ``slots`` (n,) of a stack's packed shared matrices <- ``a`` (K, n, D) and ``g`` (K, n).

    The core takes the shared models in panels of ``pw`` (``_core.panel_width``: 16, 32 or 64)
    models, one per vector lane: ``A`` (K, n_pan, D, pw) with model s at ``A[:, s // pw, :, s % pw]`` and ``G``
    (K, n_pan * pw) with model s in column s; lanes past the last model stay zero.
    """
    pw = st["A"].shape[3]
    slots = np.asarray(slots)
    st["A"][:, slots // pw, :, slots % pw] = np.moveaxis(a, 1, 0)      # (n, K, D) in that indexing
    st["G"][:, slots] = g


def _take_shared(A, G, slots) -> tuple:
    """The packed shared matrices of the models ``slots`` only, in that order (see :func:`_put_shared`)."""
    K, _, D, pw = A.shape
    new_pw = _core.panel_width(A.dtype, slots.size)
    n_pan = -(-slots.size // new_pw)
    st = dict(A=np.zeros((K, n_pan, D, new_pw), dtype=A.dtype), G=np.zeros((K, n_pan * new_pw), dtype=G.dtype))
    _put_shared(st, np.arange(slots.size), np.moveaxis(A[:, slots // pw, :, slots % pw], 0, 1), G[:, slots])
    return st["A"], st["G"]


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
