"""Top-C fast scoring of many models (Reynolds et al. 2000): :class:`ModelStack`, :func:`top_c_loglik`.

Per frame, the C best components of the UBM are found once (``GaussianMixture.top_components``);
every model adapted from that UBM is then evaluated on those C components only, in the
compiled core (``gmmext._core.topc_loglik_shared`` for models with the UBM's variances, one
product per component over all models; ``gmmext._core.topc_loglik`` for any others).  This module
stacks the models' matrices and checks the indices; it computes no likelihood itself.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, NamedTuple, Sequence

import numpy as np
from numpy.typing import ArrayLike

from . import _core
from . import _covariance as cv
from ._engine import CoreCache, SharedMatrices, StackedMatrices
from ._model import MixtureModel
from ._validation import check_bounds, check_trusted, computation_dtype

if TYPE_CHECKING:
    from ._mixture import GaussianMixture

__all__ = ["ModelStack", "top_c_loglik"]

#: Engines (work buffers) of every ModelStack, per thread and setting: stacks of the same
#: (K, D, dtype, threads) share them, as they shared their reference's before.
_ENGINES = CoreCache()



def _check_fitted(model) -> None:
    """A model to stack must have its parameters: a :class:`gmmext.MixtureModel` knows (always
    for one made from parameters; scikit-learn's ``check_is_fitted`` for an estimator); any
    other object gets scikit-learn's check (``NotFittedError`` / ``TypeError``)."""
    if isinstance(model, MixtureModel):
        model._check_is_fitted()
    else:
        from sklearn.utils.validation import check_is_fitted
        check_is_fitted(model)

class _Stack(NamedTuple):
    """A stack's matrices in one dtype: the two kinds of models and where each model is."""

    shared: np.ndarray              #: (S1,) positions of the models with the reference's variances
    general: np.ndarray             #: (S2,) positions of the others
    slot: np.ndarray                #: (S,) each model's row within its kind
    shared_m: SharedMatrices        #: A (K, S1, D), G (S1, K), the reference's Q (K, D)
    general_m: StackedMatrices      #: Mt (S2, K, P), gconst (S2, K)


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
    without a ``GaussianMixture`` per model, from parameter arrays (:meth:`from_parameters`;
    ``models`` is then None).  Either way the matrices come from the models' parameter arrays
    (``weights_``, ``means_``, ``covariances_``) through one builder, in steps of
    :attr:`BUILD_BATCH` models, when a dtype is first scored: parameters changed after that are
    not seen (make a new ``ModelStack``).

    Every covariance type works: the core's layout, and with it P, follows the type (2D for
    "diag", "spherical" and "tied", D + D(D+1)/2 for "full"), so the models must be of the
    reference's feature layout, and tied models, scored on frames whitened once by the
    reference's shared covariance, must all have exactly that covariance (as MAP adaptation of
    means and weights leaves it); ``ValueError`` otherwise.

    **A model's score depends on that model only.**  For given frames and indices, a model's
    total from :meth:`top_c_loglik` is the same bits whatever the stack holds: its size (a
    stack of one, as ``speaker``'s ``verify`` builds, or of a thousand, as ``identify``
    does), the model's position in it, the other models, ``which``, and whether the stack
    was built from models or from :meth:`from_parameters` (the one builder); for the shared
    kind, also the thread count (the general kind sums per-thread totals: the same bits for
    the reference's ``n_threads``, which every stack of that reference uses).  This holds for
    both kinds, every covariance type, float32 and float64, any C (C = K: the exact
    log-likelihood): the core computes every (frame, component, model) value with the same
    operations in the same order, one model per vector lane (``src/gmm_gemm.h``), and sums
    each model's frames in order with its own state.  The shared and general kinds are
    different formulas (equal to rounding, not bitwise), and a model is of one kind or the
    other by its own variances only.
    """

    #: models per step of the builder (bounds its float64 temporaries)
    BUILD_BATCH = 256

    def __init__(self, models: Iterable["GaussianMixture"], reference: "GaussianMixture | None" = None):
        self.models = list(models)
        if not self.models:
            raise ValueError("ModelStack needs at least one model")
        ref = reference if reference is not None else self.models[0]
        _check_fitted(ref)
        self.K, self.D = ref.means_.shape
        kind = cv.get(ref.covariance_type)
        for m in self.models:
            _check_fitted(m)
            if m.means_.shape != (self.K, self.D):
                raise ValueError(f"all models must have the same (K, D) = {(self.K, self.D)}; "
                                 f"got {m.means_.shape}")
            if not kind.same_layout(cv.get(m.covariance_type)):
                raise ValueError(f"a covariance_type={m.covariance_type!r} model cannot be scored in a "
                                 f"stack whose reference is {ref.covariance_type!r}: the types must "
                                 f"be equal, or both in {('diag', 'spherical')}")
            if kind.whitened and not np.array_equal(m.covariances_, ref.covariances_):
                raise ValueError("tied models are scored in the reference's whitened space: every "
                                 "model of the stack must have the reference's covariances_")
        self.reference = ref
        self._n = len(self.models)
        self._params = None
        self._cache: dict = {}

    @classmethod
    def from_parameters(cls, weights: ArrayLike, means: ArrayLike, reference: "GaussianMixture",
                        covariances: ArrayLike | None = None) -> "ModelStack":
        """A stack of S diagonal models given by their parameters, built with array operations.

        Parameters
        ----------
        weights : array-like (S, K), each row summing to 1
        means : array-like (S, K, D)
        reference : fitted diagonal GaussianMixture (K, D): the UBM whose top components are used
        covariances : None (every model has the reference's variances: MAP of means and weights),
            or array-like (S, K, D) of variances (rows equal to the reference's are "shared")

        Every model must be inside the usable-parameter bounds of ``GaussianMixture`` in the
        arrays' dtype (``gmmext._validation.parameter_bounds``), else ``ValueError`` naming the
        first model outside.

        The matrices are those a stack of ``GaussianMixture`` models with these parameters gets
        (the same builder).
        """
        _check_fitted(reference)
        if cv.get(reference.covariance_type) is not cv.DIAG:
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
        # the bounds every model gmmext scores is inside (GaussianMixture.from_parameters' own)
        check_bounds(mu, reference.covariances_ if var is None else var,
                     np.result_type(w, mu, reference.covariances_ if var is None else var))
        self = cls.__new__(cls)
        self.models, self.reference, self.K, self.D = None, reference, K, D
        self._n = w.shape[0]
        shared = (np.ones(self._n, dtype=bool) if var is None
                  else ~(var != reference.covariances_[None]).any(axis=(1, 2)))
        self._params = (w, mu, None if shared.all() else var[~shared], shared)
        self._cache = {}
        return self

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays the stack holds: the matrices prepared so far (every dtype
        stacked) and the stacked parameters they are built from (``from_parameters``' arrays, or
        the models' stacked once scored)."""
        params = [a for a in (self._params or ())[:3] if isinstance(a, np.ndarray)]
        return sum(a.nbytes for st in self._cache.values() for part in (st.shared_m, st.general_m)
                   for a in part if isinstance(a, np.ndarray)) + sum(a.nbytes for a in params)

    def release_parameters(self) -> None:
        """Drop the stacked parameter arrays once the matrices of the dtypes to be scored are
        prepared (a first :meth:`top_c_loglik` in each): scoring needs only the matrices, and for
        mean-adapted models the parameters are as large again (a holder of many stacks keeps half
        the memory).  A stack built from models stacks them again if another dtype is asked for;
        one from :meth:`from_parameters` raises ``ValueError`` then."""
        if self._cache:
            self._params = None

    def _shares(self, m) -> bool:
        """``m`` has exactly the reference's diagonal variances (the shared path)."""
        ref = self.reference
        return (not cv.get(ref.covariance_type).matrix and m.covariance_type == ref.covariance_type
                and np.array_equal(m.covariances_, ref.covariances_))

    def _parameters(self) -> tuple:
        """(weights (S, K), means (S, K, D), covariances, shared (S,) bool).

        ``covariances``: None when every model has the reference's ("tied", or MAP of means and
        weights only), else the general models' (in the order of their positions), one per
        component in the stack type's layout (variances (S2, K, D) for "diag" / "spherical",
        matrices (S2, K, D, D) for "full").  From models: their arrays, taken when first needed."""
        if self._params is None:
            if self.models is None:
                raise ValueError("this stack's parameters were released (release_parameters): it scores "
                                 f"only the dtypes prepared before, {[str(d) for d in self._cache]}")
            ms = self.models
            kind = cv.get(self.reference.covariance_type)
            shared = np.array([self._shares(m) for m in ms], dtype=bool)
            var = None
            if not kind.whitened and not shared.all():
                var = np.stack([cv.get(m.covariance_type).expand(m.covariances_, self.K, self.D)
                                for m, s in zip(ms, shared) if not s])
            self._params = (np.stack([m.weights_ for m in ms]), np.stack([m.means_ for m in ms]), var, shared)
        return self._params

    def _stack(self, dtype) -> _Stack:
        """The stacked matrices in ``dtype``, built once per dtype: the one builder.

        Every model's terms come from ``gmmext._covariance`` (the reference's type's
        :meth:`~gmmext._covariance.CovarianceType.terms`, the function that builds a single
        model's matrices), about the reference's shift, :attr:`BUILD_BATCH` models at a time:
        shared models into ``A`` / ``G``, the others into ``Mt`` / ``gconst``.
        """
        dtype = np.dtype(dtype)
        if dtype in self._cache:
            return self._cache[dtype]
        ref, K, D = self.reference, self.K, self.D
        kind = cv.get(ref.covariance_type)
        shift = np.ascontiguousarray(cv.mixture_mean(ref.weights_, ref.means_), dtype=dtype)
        # variances ("diag" and "spherical" models together) are built as diagonal ones, one per
        # component; matrices by their own type ("tied": every model has the reference's)
        build, ref_cov = ((kind, ref.covariances_) if kind.matrix
                          else (cv.DIAG, kind.expand(ref.covariances_, K, D)))
        w, mu, var, is_shared = self._parameters()
        shared, general = np.flatnonzero(is_shared), np.flatnonzero(~is_shared)
        slot = np.empty(self._n, dtype=np.intp)
        slot[shared], slot[general] = np.arange(shared.size), np.arange(general.size)
        sh = _packed(shift, None, K, D, shared.size, dtype)
        gen = StackedMatrices(shift, np.empty((general.size, K, kind.feature_columns(D)), dtype=dtype),
                              np.empty((general.size, K), dtype=dtype), None)
        shift64 = shift.astype(np.float64)
        for rows, own in ((shared, False), (general, True)):
            for b in range(0, rows.size, self.BUILD_BATCH):
                r = rows[b:b + self.BUILD_BATCH]
                at = slice(b, b + r.size)
                with np.errstate(divide="ignore"):
                    logw = np.log(w[r].astype(np.float64))
                cov = var[at] if own and var is not None else ref_cov
                t = build.terms(logw, np.subtract(mu[r], shift64, dtype=np.float64), cov, dtype)
                if own:
                    gen.Mt[at, :, :D] = t.lin
                    gen.Mt[at, :, D:] = t.quad
                    gen.gconst[at] = t.gconst
                    gen = gen._replace(whiten=t.whiten)          # the reference's ("tied"), or None
                else:
                    _put_shared(sh, np.arange(at.start, at.stop), t.lin.transpose(1, 0, 2), t.gconst.T)
                    sh = sh._replace(Q=np.ascontiguousarray(t.quad[0], dtype=dtype))   # the reference's -1 / (2 var)
        st = self._cache[dtype] = _Stack(shared, general, slot, sh, gen)
        return st

    def top_c_loglik(self, X: ArrayLike, indices: ArrayLike, which: Sequence[int] | None = None, *,
                     check_input: bool = True) -> np.ndarray:
        """Total top-C log-likelihood of X (n_frames, D) under every model, shape (S,), nats.

        ``which`` (sequence of model positions) restricts the scoring to those models and
        returns their totals in that order.  ``check_input=False``: X was validated by the
        caller (``reference.check_features``) and ``indices`` come from
        ``reference.top_components``; their values are not scanned again (the core still
        refuses an index out of range), see :meth:`GaussianMixture.score_samples`.
        """
        ref = self.reference
        if check_input:
            X = ref.check_features(X)
        else:
            check_trusted(X, self.D)
            X = X.astype(computation_dtype(ref.means_.dtype, X.dtype), copy=False)
        idx = np.ascontiguousarray(indices)
        K = self.K
        if idx.ndim != 2 or idx.shape[0] != X.shape[0] or not 1 <= idx.shape[1] <= K:
            raise ValueError(f"indices must have shape (n_frames={X.shape[0]}, C) with 1 <= C <= {K}; "
                             f"got {idx.shape}")
        if not np.issubdtype(idx.dtype, np.integer) or (
                check_input and idx.size and (idx.min() < 0 or idx.max() >= K)):
            raise ValueError(f"indices must be integers in [0, {K})")
        idx = idx.astype(np.int32, copy=False)
        st = self._stack(X.dtype)
        want = np.arange(self._n) if which is None else np.asarray(which, dtype=np.intp)
        engine = _ENGINES.engine(X.dtype, self.D, K, ref.chunk_size, ref.n_threads,
                                 cv.get(ref.covariance_type))
        out = np.empty(want.size)
        general = np.isin(want, st.general)
        if (~general).any():
            sh = st.shared_m
            if which is not None or st.general.size:
                at = st.slot[want[~general]]
                sh = _take_shared(sh, at)
            out[~general] = engine.top_c_loglik_shared(X, idx, sh)
        if general.any():
            at = st.slot[want[general]]
            gen = st.general_m
            out[general] = engine.top_c_loglik(X, idx, gen._replace(Mt=gen.Mt[at], gconst=gen.gconst[at]))
        return out


def _packed(shift, Q, K: int, D: int, S: int, dtype) -> SharedMatrices:
    """Zeroed :class:`SharedMatrices` for S models, packed in panels of ``_core.panel_width`` lanes."""
    pw = _core.panel_width(dtype, S)
    n_pan = -(-S // pw)
    return SharedMatrices(shift, Q, np.zeros((K, n_pan, D, pw), dtype=dtype),
                          np.zeros((K, n_pan * pw), dtype=dtype), S)


def _put_shared(sh: SharedMatrices, slots, a, g) -> None:
    """Models ``slots`` (n,) of packed shared matrices <- ``a`` (K, n, D) and ``g`` (K, n).

    The core takes the shared models in panels of ``pw`` (``_core.panel_width``: 16, 32 or 64)
    models, one per vector lane: ``A`` (K, n_pan, D, pw) with model s at ``A[:, s // pw, :, s % pw]``
    and ``G`` (K, n_pan * pw) with model s in column s; lanes past the last model stay zero.
    """
    pw = sh.A.shape[3]
    slots = np.asarray(slots)
    sh.A[:, slots // pw, :, slots % pw] = np.moveaxis(a, 1, 0)      # (n, K, D) in that indexing
    sh.G[:, slots] = g


def _take_shared(sh: SharedMatrices, slots) -> SharedMatrices:
    """The packed shared matrices of the models ``slots`` only, in that order (see :func:`_put_shared`)."""
    K, _, D, pw = sh.A.shape
    out = _packed(sh.shift, sh.Q, K, D, slots.size, sh.A.dtype)
    _put_shared(out, np.arange(slots.size), np.moveaxis(sh.A[:, slots // pw, :, slots % pw], 0, 1),
                sh.G[:, slots])
    return out


def top_c_loglik(models: "Iterable[GaussianMixture] | ModelStack", X: ArrayLike, indices: ArrayLike, *,
                 check_input: bool = True) -> np.ndarray:
    """Log-likelihood of X under each model, every frame restricted to its given components.

    The second half of top-C fast scoring: ``indices`` come from the UBM's
    :meth:`GaussianMixture.top_components`, and every model (typically MAP-adapted from that
    UBM) is evaluated on those components only, so the UBM work is done once per utterance.

    Parameters
    ----------
    models : sequence of fitted GaussianMixture, all with the same (K, D), or a ModelStack
    X : array-like of shape (n_frames, D)
    indices : ndarray of shape (n_frames, C), integer in [0, K)
    check_input : bool, default=True
        False: X and ``indices`` are already validated (see :meth:`ModelStack.top_c_loglik`).

    Returns
    -------
    ndarray of shape (len(models),)
        ``sum_i log sum_{k in indices[i]} w_k N(x_i | mu_k, var_k)`` for each model (nats,
        a total over frames: divide by n_frames for the average).
    """
    if isinstance(models, ModelStack):
        return models.top_c_loglik(X, indices, check_input=check_input)
    models = list(models)
    if not models:
        return np.zeros(0)
    return ModelStack(models).top_c_loglik(X, indices, check_input=check_input)
