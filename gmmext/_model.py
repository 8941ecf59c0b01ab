"""``gmmext.MixtureModel``: a Gaussian mixture given by its parameters, without scikit-learn.

Everything a fitted mixture does with its parameters lives here, once: the parameters and the
core's matrices derived from them (``gmmext._engine.CoreCache``), the boundary check of every
method taking X, scoring (``score_samples``, ``score``, ``predict``, ``predict_proba``,
``component_log_likelihood``, ``top_components``), the E-step statistics (``accumulate``,
``accumulate_segments``) and MAP adaptation (``map_parameters``, ``map_step``).
:class:`gmmext.GaussianMixture` is this class plus scikit-learn's estimator API and fitting
(EM, the ML M-step); its module imports scikit-learn, this one does not: a program that only
scores models made by :meth:`MixtureModel.from_parameters` (``speaker verify`` against a
store) never imports it.  scikit-learn is imported here only where its checks are asked for:
``check_input=True`` (``validate_data``), parameter arrays that are not float32 / float64
ndarrays (``check_array``) and settings other than the defaults (its parameter constraints),
so the messages are scikit-learn's either way.
"""
from __future__ import annotations

import itertools
import numbers
from numbers import Real
from typing import Any, Sequence

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _covariance as cv
from . import _missing
from ._blas import one_blas_thread
from ._engine import CoreCache, Engine
from ._stats import GMMStats
from ._validation import (check_sample_weight, check_stats, check_trusted, check_usable_parameters,
                          computation_dtype, first_unusable_diag, weights_sum_tolerance)

__all__ = ["MixtureModel"]

#: every spelling of a non-empty subset of Kaldi's update flags: weights, means, covariances
UPDATE_FLAGS = frozenset("".join(p) for r in (1, 2, 3) for p in itertools.permutations("wmc", r))
#: the settings a model made from parameters keeps (GaussianMixture's constructor parameters of the
#: same names and defaults), besides n_components and covariance_type
SETTINGS = {"chunk_size": None, "n_threads": None, "update_params": "wmc", "missing": "raise"}


def settings_constraints() -> dict:
    """scikit-learn's constraints of ``n_components``, ``covariance_type`` and :data:`SETTINGS`
    (part of ``GaussianMixture._parameter_constraints``; imports scikit-learn)."""
    from numbers import Integral
    from ._sklearn_compat import Interval, StrOptions
    return {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "covariance_type": [StrOptions(set(cv.COVARIANCE_TYPES))],
        "chunk_size": [Interval(Integral, 1, None, closed="left"), None],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "update_params": [StrOptions(set(UPDATE_FLAGS))],
        "missing": [StrOptions({"raise", "marginalize"})],
    }


def _parameter_array(a, name: str) -> np.ndarray:
    """A parameter array as scikit-learn's ``check_array`` gives it (float32 / float64 kept,
    other real types as float64, complex refused; NaN passes, checked by the caller): a
    float32 / float64 ndarray (or list of floats) is taken as it is, anything else goes through
    ``check_array``."""
    if isinstance(a, (list, tuple)):
        try:
            a = np.asarray(a) if all(isinstance(v, (float, list, tuple)) for v in a) else a
        except ValueError:                  # ragged: scikit-learn's message
            pass
    if isinstance(a, np.ndarray) and a.dtype in (np.float32, np.float64) and (a.ndim <= 2 or name == "covariances"):
        return a
    from sklearn.utils.validation import check_array
    return check_array(a, dtype=[np.float64, np.float32], ensure_2d=False, ensure_min_samples=0,
                       ensure_all_finite=False, input_name=name,
                       allow_nd=name == "covariances")                # refuses complex values


class MixtureModel:
    """A Gaussian mixture given by its parameters: scoring, E-step statistics and MAP adaptation.

    Made by :meth:`from_parameters` (the parameters validated as there); the base class of
    :class:`gmmext.GaussianMixture`, which adds fitting and scikit-learn's estimator API.  The
    methods, attributes and results are GaussianMixture's (the same code): ``weights_`` (K,),
    ``means_`` (K, D), ``covariances_`` (of ``covariance_type``'s shape), ``precisions_cholesky_``,
    ``precisions_``, ``n_features_in_``.  Importing it does not import scikit-learn.

    Parameters
    ----------
    n_components : int, default=1
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    chunk_size, n_threads, update_params, missing
        As :class:`gmmext.GaussianMixture`'s (rows per core chunk, threads, the parameters
        MAP may update, NaN handling).
    """

    def __init__(self, n_components: int = 1, *, covariance_type: str = "full", chunk_size: int | None = None,
                 n_threads: int | None = None, update_params: str = "wmc", missing: str = "raise"):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.chunk_size = chunk_size
        self.n_threads = n_threads
        self.update_params = update_params
        self.missing = missing

    def _check_is_fitted(self) -> None:
        """Nothing to check: a MixtureModel has its parameters from its construction
        (GaussianMixture: scikit-learn's ``check_is_fitted``)."""

    def _check_settings(self) -> None:
        """The settings as GaussianMixture checks its constructor parameters (scikit-learn's
        ``InvalidParameterError``); the defaults and any K >= 1 pass without scikit-learn."""
        plain = (type(self.n_components) is int and self.n_components >= 1
                 and self.covariance_type in cv.COVARIANCE_TYPES
                 and all(getattr(self, k) is v or (type(v) is str and getattr(self, k) == v) for k, v in SETTINGS.items()))
        if not plain:
            from sklearn.utils._param_validation import validate_parameter_constraints
            validate_parameter_constraints(settings_constraints(), self._settings(all_=True),
                                           caller_name=type(self).__name__)

    def _settings(self, all_: bool = False) -> dict:
        """The constructor parameters a model with other parameters keeps (:meth:`like`)."""
        keys = ("n_components", "covariance_type", *SETTINGS) if all_ else SETTINGS
        return {k: getattr(self, k) for k in keys}

    def like(self, weights: ArrayLike, means: ArrayLike, covariances: ArrayLike,
             dtype: DTypeLike | None = None) -> "MixtureModel":
        """A model of this class with these parameters and this model's settings (all its
        constructor parameters but ``n_components``, which the parameters give), cast to
        ``dtype`` (default: this model's), validated by :meth:`from_parameters`."""
        dtype = self.means_.dtype if dtype is None else dtype
        return type(self).from_parameters(np.asarray(weights).astype(dtype), np.asarray(means).astype(dtype),
                                          np.asarray(covariances).astype(dtype),
                                          covariance_type=self.covariance_type, **self._settings())

    @classmethod
    def from_parameters(cls, weights: ArrayLike, means: ArrayLike, covariances: ArrayLike,
                        covariance_type: str = "diag", **params: Any) -> "MixtureModel":
        """A fitted model with the given parameters (no data needed).

        Parameters
        ----------
        weights : array-like of shape (K,)
            Non-negative, summing to 1 (within ``max(1e-8, 4 K eps)`` of the dtype's eps).
        means : array-like of shape (K, D)
            Real; ``|means| <= sqrt(F) / 4`` (3.4e153 in float64, 4.6e18 in float32).
        covariances : array-like
            Of ``covariance_type``'s shape: (K, D, D) "full", (D, D) "tied", (K, D) "diag",
            (K,) "spherical".  Variances (full / tied: symmetric positive-definite matrices,
            the bounds then on their smallest eigenvalues), finite and ``>= 16 / F`` (8.9e-308
            in float64, 4.7e-38 in float32), and per component ``sum_d R_d**2 / var_kd <= F / 16``
            (``R_d`` the range of the means in dimension d): the bounds that keep every
            log-density finite in the model's dtype (``F`` its largest finite number;
            ``gmmext._validation.parameter_bounds``).
        covariance_type : {"full", "tied", "diag", "spherical"}, default="diag"
            The model's type.  The default here is "diag" (not the constructor's "full"), so
            that (K, D) variances saved by earlier versions load as they did.
        **params
            Constructor parameters (``n_components`` is taken from ``weights``), validated as
            ``fit`` validates them (scikit-learn's ``InvalidParameterError``).

        The parameters keep their dtype (float32 or float64; other real types become float64;
        complex values are refused).  Raises ``ValueError`` naming the first problem found.
        """
        arrays = []
        for name, a in (("weights", weights), ("means", means), ("covariances", covariances)):
            a = _parameter_array(a, name)
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{name} contain NaN or infinity")
            arrays.append(a)
        w, mu, var = arrays
        if w.ndim != 1 or w.shape[0] < 1:
            raise ValueError(f"weights must have shape (K,) with K >= 1, got {w.shape}")
        K = w.shape[0]
        if mu.ndim != 2 or mu.shape[0] != K or mu.shape[1] < 1:
            raise ValueError(f"means must have shape ({K}, D), got {mu.shape}")
        if covariance_type not in cv.COVARIANCE_TYPES:
            cls(covariance_type=covariance_type)._check_settings()      # scikit-learn's message
        kind = cv.get(covariance_type)
        shape = kind.shape(K, mu.shape[1])
        if var.shape != shape:
            raise ValueError(f"covariances of covariance_type={covariance_type!r} must have shape "
                             f"{shape}, got {var.shape}")
        if np.any(w < 0):
            raise ValueError("weights must be non-negative")
        atol = weights_sum_tolerance(K, w.dtype)
        if not abs(float(w.astype(np.float64).sum()) - 1.0) <= atol:
            raise ValueError(f"weights must sum to 1, got {float(w.sum())!r}")
        if not kind.matrix and np.any(var <= 0):
            raise ValueError("covariances (variances) must be > 0")
        dtype = np.result_type(w.dtype, mu.dtype, var.dtype)
        check_usable_parameters(w, mu, var, dtype, kind)
        gm = cls(n_components=K, covariance_type=covariance_type, **params)
        gm._check_settings()
        gm._set_params_arrays(w, mu, var, dtype)
        gm.n_features_in_ = mu.shape[1]
        return gm

    @staticmethod
    def first_unusable(weights: np.ndarray, means: np.ndarray, covariances: np.ndarray) -> int | None:
        """Index of the first of S diagonal models that :meth:`from_parameters` would refuse,
        or None when it accepts them all, checked in one vectorised pass (no model is built).

        Parameters
        ----------
        weights : ndarray of shape (S, K), float32 or float64
        means : ndarray of shape (S, K, D)
        covariances : ndarray of shape (S, K, D), variances

        The shapes must be consistent (``ValueError`` otherwise).  Call :meth:`from_parameters`
        on the model returned for the reason.
        """
        w, mu, var = np.asarray(weights), np.asarray(means), np.asarray(covariances)
        if w.ndim != 2 or mu.ndim != 3 or mu.shape[:2] != w.shape or var.shape != mu.shape:
            raise ValueError(f"weights (S, K), means and covariances (S, K, D) expected, got "
                             f"{w.shape}, {mu.shape}, {var.shape}")
        return first_unusable_diag(w, mu, var)

    def _validate_X(self, X, *, reset: bool = False):
        """X checked as scikit-learn's ``validate_data`` checks it for a fitted estimator
        (``check_array`` and the number of features, their messages); GaussianMixture runs
        ``validate_data`` itself (feature names, ``fit``'s reset)."""
        from sklearn.utils.validation import check_array      # only when X is to be checked
        marginalize = self.missing == "marginalize"
        X = check_array(X, dtype=[np.float64, np.float32], ensure_min_samples=1, estimator=self,
                        ensure_all_finite="allow-nan" if marginalize else True, input_name="X")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input.")
        if marginalize:
            _missing.check_rows(X)
        return X

    def _has_missing(self, X) -> bool:
        """X (validated) has NaN entries to marginalise (``missing="marginalize"``)."""
        return self.missing == "marginalize" and bool(np.isnan(X).any())

    def _check_sw(self, sample_weight, X):
        """Validated float64 (n_samples,) weights or None (:func:`gmmext._validation.check_sample_weight`)."""
        return check_sample_weight(sample_weight, X.shape[0])

    @property
    def _kind(self) -> cv.CovarianceType:
        """The object of ``covariance_type`` (``gmmext._covariance``): every per-type decision."""
        return cv.get(self.covariance_type)

    def _core_cache(self) -> CoreCache:
        """This estimator's model matrices and engines (gmmext._engine.CoreCache), made on first use."""
        cache = vars(self).get("_core")
        if cache is None:
            cache = vars(self).setdefault("_core", CoreCache())
        return cache

    def _engine(self, dtype, n_features: int) -> Engine:
        """The calling thread's Engine for this estimator's current setting (reused across calls)."""
        return self._core_cache().engine(dtype, n_features, self.n_components, self.chunk_size,
                                         self.n_threads, self._kind)

    def _matrices(self, dtype) -> cv.ModelMatrices:
        """The core's :class:`~gmmext._covariance.ModelMatrices` of the current parameters in
        ``dtype`` (built once, see ``gmmext._engine.CoreCache``)."""
        return self._core_cache().matrices(self.weights_, self.means_, self.covariances_, dtype, self._kind)

    def _compute_dtype(self, X):
        return computation_dtype(self.means_.dtype, X.dtype)

    def _prepare(self, X, check_input: bool = True, allow_missing: bool = False) -> np.ndarray:
        """X for the core, in the precision of the model or of X, whichever is higher.

        The one boundary check of every method taking X: ``check_input`` runs scikit-learn's
        ``validate_data``; False trusts the caller (:meth:`check_features`) and checks only
        what costs nothing (:func:`_check_trusted`).  Everything after this is trusted.
        NaN passes only with ``missing="marginalize"`` into a method that marginalises it
        (``allow_missing``).
        """
        self._check_is_fitted()
        if check_input:
            X = self._validate_X(X, reset=False)
            if not allow_missing and self._has_missing(X):
                raise ValueError(f"Input X contains NaN: {type(self).__name__} marginalises missing "
                                 "values in fit, fit_predict, partial_fit, accumulate, score_samples, "
                                 "score, predict, predict_proba and component_log_likelihood only.")
        else:
            check_trusted(X, self.n_features_in_)
        return X.astype(self._compute_dtype(X), copy=False)

    def check_features(self, X: ArrayLike) -> np.ndarray:
        """X validated as every method taking X validates it, in the computation dtype.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        ndarray of shape (n_samples, n_features_in_)
            float32 when X and the model are float32, else float64 (no copy when X already is
            that); finite.  Bad input raises scikit-learn's ``ValueError`` (NaN, infinity, wrong
            number of features, not 2-D).  Validate a recording once with this, then score it
            against many models with ``check_input=False`` (:meth:`score_samples`,
            :meth:`top_components`, :meth:`accumulate`, ``ModelStack.top_c_loglik``, ...).
        """
        return self._prepare(X)

    @one_blas_thread
    def _set_params_arrays(self, weights, means, covariances, dtype) -> None:
        kind = self._kind
        self.weights_ = np.asarray(weights, dtype=dtype)
        self.means_ = np.asarray(means, dtype=dtype)
        self.covariances_ = np.asarray(covariances, dtype=dtype)
        chol = kind.precisions_cholesky(covariances)
        self.precisions_cholesky_ = chol.astype(dtype)
        self.precisions_ = kind.precisions(chol).astype(dtype)
        self._core_cache().invalidate()

    def map_parameters(self, n: ArrayLike, sum_x: ArrayLike, sum_xx: ArrayLike | None,
                       n_samples: ArrayLike, *, relevance_factor: float = 16.0,
                       params: str = "mwv") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """MAP-adapted (weights, means, covariances) of this model from statistics (Reynolds et al.
        2000, eqs. 11-14), for one or many sets of statistics at once; nothing is changed.

        With ``alpha_k = n_k / (n_k + r)`` (eq. 14, ``r = relevance_factor``), ``E_k[x] = sum_x_k /
        n_k`` and ``E_k[x^2] = sum_xx_k / n_k``:

        * weights ``w_k' = [alpha_k n_k / T + (1 - alpha_k) w_k]``, normalised (eq. 11, T = n_samples);
        * means ``mu_k' = alpha_k E_k[x] + (1 - alpha_k) mu_k`` (eq. 12);
        * variances, with ``m1 = alpha_k E_k[x] + (1 - alpha_k) mu_k`` and ``m2 = alpha_k E_k[x^2]
          + (1 - alpha_k)(var_k + mu_k^2)``: ``var_k' = m2 - 2 c m1 + c^2`` about the model's new
          mean ``c`` (``c = mu_k'``: eq. 13; ``c = mu_k`` when means are not adapted, which keeps
          ``var_k' >= m2 - m1^2``), floored at ``1e-3 var_k`` against rounding; "full":
          ``m2 - c m1^T - m1 c^T + c c^T`` with ``E_k[x x^T]``; "spherical": the mean over
          dimensions of the diagonal rule; "tied": not adaptable (``NotImplementedError``).

        Parameters
        ----------
        n : array-like of shape (..., K)
            Occupancies (leading axes: one set of statistics per index, e.g. per speaker).
        sum_x : array-like of shape (..., K, D)
        sum_xx : array-like of shape (..., K, D) or (..., K, D, D), or None
            Second order, used only when variances are adapted ("full": (K, D, D) matrices).
        n_samples : array-like of shape (...)
            Total weight T of each set.
        relevance_factor : float, default=16.0
            r > 0 (Reynolds et al. use 16).
        params : str, default="mwv"
            Which parameters to adapt: any combination of "m" (means), "w" (weights) and "v"
            (variances / covariances); a parameter frozen by ``update_params`` is not adapted
            ("c" there is "v" here).  Not adapted: this model's own array.

        Returns
        -------
        weights (..., K), means (..., K, D), covariances (..., covariance shape), float64
            A parameter not adapted is this model's (K,), (K, D) or covariance array, in float64.
        """
        self._check_is_fitted()
        adapt = _map_flags(params, relevance_factor, self.update_params)
        kind = self._kind
        w = self.weights_.astype(np.float64)
        mu = self.means_.astype(np.float64)
        var = self.covariances_.astype(np.float64)
        n = np.asarray(n, dtype=np.float64)
        alpha = n / (n + relevance_factor)
        safe = np.maximum(n, np.finfo(np.float64).tiny)[..., None]
        ex = np.asarray(sum_x, dtype=np.float64) / safe       # weighted by alpha, so n = 0 is harmless
        new_w, new_mu, new_var = w, mu, var
        if "w" in adapt:
            new_w = alpha * n / np.asarray(n_samples, dtype=np.float64)[..., None] + (1 - alpha) * w
            new_w = new_w / new_w.sum(axis=-1, keepdims=True)
        if "m" in adapt and "v" not in adapt:        # the same operations in place (fewer temporaries)
            new_mu = np.multiply(alpha[..., None], ex, out=ex)
            new_mu += (1 - alpha[..., None]) * mu
        elif "m" in adapt:
            new_mu = alpha[..., None] * ex + (1 - alpha[..., None]) * mu
        if "v" in adapt:
            if not kind.per_component:
                raise NotImplementedError('MAP adaptation of "tied" covariances is not defined '
                                          '(adapt "m" and "w" only)')
            a = alpha[..., None]
            m1 = a * ex + (1 - a) * mu
            if kind.matrix:
                a = a[..., None]
                m2 = a * (np.asarray(sum_xx, dtype=np.float64) / safe[..., None]) \
                    + (1 - a) * (var + mu[..., :, None] * mu[..., None, :])
                c = new_mu
                new_var = (m2 - c[..., :, None] * m1[..., None, :] - m1[..., :, None] * c[..., None, :]
                           + c[..., :, None] * c[..., None, :])
                new_var = 0.5 * (new_var + np.swapaxes(new_var, -1, -2))
            else:
                v = kind.expand(var, *mu.shape)
                m2 = a * (np.asarray(sum_xx, dtype=np.float64) / safe) + (1 - a) * (v + mu ** 2)
                new_var = m2 - 2 * new_mu * m1 + new_mu ** 2
                new_var = np.maximum(new_var, 1e-3 * v)   # rounding guard; exact arithmetic keeps it >= (1-alpha) var
                if kind is cv.SPHERICAL:
                    new_var = new_var.mean(axis=-1)
        return new_w, new_mu, new_var

    def map_step(self, stats: GMMStats, relevance_factor: float = 16.0,
                 params: str = "mwv") -> "MixtureModel":
        """MAP update of this model from statistics (Reynolds et al. 2000), beside :meth:`m_step`.

        Kaldi's ``MapDiagGmmUpdate`` beside ``MleDiagGmmUpdate``: the formulas are those of
        :meth:`map_parameters`; ``params`` names what is adapted ("m", "w", "v"), and
        ``update_params`` freezes further.  The adapted parameters are cast to the model's
        dtype and must be usable (class Notes), else ``ValueError`` and the model is unchanged.

        Parameters
        ----------
        stats : GMMStats
            This model's statistics of the adaptation data (``accumulate``), (K, D).
        relevance_factor : float, default=16.0
        params : str, default="mwv"

        Returns
        -------
        self
        """
        if not isinstance(stats, GMMStats):
            raise TypeError(f"map_step expects GMMStats, got {type(stats).__name__}")
        self._check_is_fitted()
        dtype = self.means_.dtype
        check_stats(stats, self.n_components, self.n_features_in_, dtype, self._kind)
        w, m, c = (np.asarray(a).astype(dtype) for a in self.map_parameters(
            stats.n, stats.sum_x, stats.sum_xx, stats.n_samples, relevance_factor=relevance_factor,
            params=params))
        check_usable_parameters(w, m, c, dtype, self._kind)
        self._set_params_arrays(w, m, c, dtype)
        return self

    def accumulate(self, X: ArrayLike | Sequence[ArrayLike],
                   sample_weight: ArrayLike | Sequence[ArrayLike] | None = None, *,
                   second_order: bool = True, check_input: bool = True) -> GMMStats:
        """E-step over X and its sufficient statistics under the current parameters.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or a list/tuple of 2-D arrays
            A list (or tuple) of (n_u, n_features) float32/float64 arrays, e.g. one per
            utterance, gives the statistics of their concatenation (the same numbers as
            ``accumulate(np.concatenate(X))``, without the copy) from one core call: for
            thousands of short utterances, much cheaper than one call each.  Each array is
            validated as in :meth:`accumulate_segments`.
        sample_weight : array-like of shape (n_samples,), default=None
            For a list of arrays: None or a list of per-array weight vectors (n_u,).
        second_order : bool, default=True
            False: ``n`` and ``sum_x`` only (the core skips the second order; ``sum_xx`` is then
            a read-only array of zeros), as in :meth:`accumulate_segments`; with missing
            values to marginalise it is computed anyway.
        check_input : bool, default=True
            False: X is already validated (see :meth:`score_samples`); the weights are
            always checked.

        Returns
        -------
        GMMStats
            float64 statistics; ``loglik`` is the total weighted log-likelihood of X.
        """
        if _is_segment_list(X):
            segments, dtype = self._prepare_segments(X, check_input)
            sw = self._segment_weights(sample_weight, segments)
        else:
            X = self._prepare(X, check_input, allow_missing=True)
            sw = self._check_sw(sample_weight, X)
            if second_order or self._has_missing(X):
                return self._batch_stats(X, sw)
            segments, dtype = (X,), X.dtype
        return self._engine(dtype, self.n_features_in_).accumulate(segments, sw, self._matrices(dtype),
                                                                  second_order=bool(second_order))

    def _batch_stats(self, X, sw) -> GMMStats:
        """E-step statistics of a validated in-memory X (NaN marginalised with ``missing="marginalize"``)."""
        if self._has_missing(X):
            return _missing.accumulate(self, X, sw)
        return self._engine(X.dtype, X.shape[1]).accumulate(X, sw, self._matrices(X.dtype))

    def accumulate_segments(self, segments: Sequence[ArrayLike], *, second_order: bool = True,
                            groups: ArrayLike | None = None, check_input: bool = True) -> list[GMMStats]:
        """Sufficient statistics of every segment (e.g. utterance) separately, from one core call.

        Parameters
        ----------
        segments : sequence of arrays of shape (n_u, n_features)
            float32 or float64, finite; empty segments give zero statistics.  Computed in
            float32 when the model and every segment are float32, else in float64.
        second_order : bool, default=True
            False skips ``sum_xx`` (the core then computes first-order statistics only, as an
            i-vector extractor needs); ``sum_xx`` is then a read-only array of zeros.
        groups : array-like of shape (n_segments,), default=None
            Non-negative ints (e.g. a speaker index per utterance): one ``GMMStats`` per group
            g in ``0 .. max(groups)`` instead of per segment, group g's the sum of its segments'
            statistics added in segment order (the same bits as ``GMMStats.total`` of the
            per-segment ones; zeros for a group without segments).  Memory: a few segments'
            statistics (about 32 MB) whatever the number of segments.
        check_input : bool, default=True
            False: every segment is already validated (see :meth:`score_samples`).

        Returns
        -------
        list of GMMStats, one per segment
            float64; ``n`` (K,), ``sum_x`` (K, D) and ``sum_xx`` (K, D) for "diag" / "spherical"
            (views of one (U, K, 2D) array: U * K * D * 16 bytes in all), (K, D, D) for "full" /
            "tied" (U * K * D * D * 8 bytes more), ``loglik`` and ``n_samples`` of that segment.  A
            segment's statistics do not depend on the thread count nor on the other segments
            (each is done by one thread, in chunks of ``chunk_size`` rows); they equal
            ``accumulate(segment)`` to rounding.

        Raises ``ValueError`` naming the index of the first segment that is not a finite 2-D
        float32/float64 array with ``n_features_in_`` columns.
        """
        if isinstance(segments, np.ndarray):
            raise ValueError("segments must be a sequence of 2-D arrays, got one array; use "
                             "accumulate(X) for the statistics of one array")
        segments, dtype = self._prepare_segments(list(segments), check_input)
        if groups is not None:
            groups = np.asarray(groups)
            if groups.shape != (len(segments),) or (groups.size and (
                    not np.issubdtype(groups.dtype, np.integer) or groups.min() < 0)):
                raise ValueError(f"groups must be {len(segments)} non-negative ints, one per segment")
        return self._engine(dtype, self.n_features_in_).accumulate_segments(
            segments, None, self._matrices(dtype), second_order=bool(second_order), groups=groups)

    def _prepare_segments(self, segments, check_input: bool = True):
        """Validated segments (tuple) in the computation dtype, and that dtype."""
        self._check_is_fitted()
        D = self.n_features_in_
        arrays = []
        for u, a in enumerate(segments):
            if not check_input:
                check_trusted(a, D, f"segment {u}: ")
                arrays.append(a)
                continue
            a = np.asarray(a)
            if a.dtype.kind != "f" or a.dtype.itemsize not in (4, 8):
                raise ValueError(f"segment {u}: dtype {a.dtype}, expected float32 or float64")
            a = a.astype(a.dtype.newbyteorder("="), copy=False)     # the machine's byte order
            if a.ndim != 2:
                raise ValueError(f"segment {u}: expected a 2-D array (n_frames, {D}), got shape {a.shape}")
            if a.shape[1] != D:
                raise ValueError(f"segment {u}: X has {a.shape[1]} features, but GaussianMixture is "
                                 f"expecting {D} features as input")
            if not np.isfinite(a).all():
                raise ValueError(f"segment {u}: contains NaN or infinity")
            arrays.append(a)
        dtype = computation_dtype(self.means_.dtype, *(a.dtype for a in arrays))
        return tuple(a.astype(dtype, copy=False) for a in arrays), dtype

    def _segment_weights(self, sample_weight, segments):
        """Per-segment weight vectors as one validated (N,) float64 array, or None."""
        if sample_weight is None:
            return None
        if not isinstance(sample_weight, (list, tuple)) or len(sample_weight) != len(segments):
            raise ValueError(f"sample_weight for {len(segments)} segments must be None or a list of "
                             f"{len(segments)} weight arrays")
        for u, (w, a) in enumerate(zip(sample_weight, segments)):
            if np.shape(w) != (a.shape[0],):
                raise ValueError(f"sample_weight[{u}] has shape {np.shape(w)}, segment {u} has "
                                 f"{a.shape[0]} rows")
        sw = np.concatenate([np.asarray(w, dtype=np.float64) for w in sample_weight])
        return self._check_sw(sw, sw)      # the one weight check (sw stands for X: only its length is used)

    def _evaluate(self, X, check_input: bool, **want):
        """The core's per-frame outputs (``Engine.evaluate``) of X, with the frames whose float32
        arithmetic overflowed computed again in float64.

        In float32 the core's terms of a frame far from the model (``x x^T`` of a "full" model,
        ``x**2`` of the others, about the mixture's mean) can overflow although its
        log-densities are representable (scikit-learn whitens first): every log-density of such
        a frame came out -inf (or NaN) and its responsibilities 0.  Those frames, found by their
        log-likelihood, are evaluated again in float64 (the same parameters; the results rounded
        to float32 as scikit-learn's), so their responsibilities are one-hot rows as
        scikit-learn's.  In float64 that overflow happens only beyond ~1e154 from the mixture's
        mean, where the frame stays -inf with zero responsibilities (scikit-learn: NaN).
        """
        X = self._prepare(X, check_input, allow_missing=True)
        if self._has_missing(X):
            out = _missing.evaluate(self, X, **want)
            out["dtype"] = X.dtype
            return out
        first = dict(want, loglik=True) if X.dtype == np.float32 else want
        out = self._engine(X.dtype, X.shape[1]).evaluate(X, self._matrices(X.dtype), **first)
        if X.dtype == np.float32:
            bad = ~np.isfinite(out["loglik"])
            if bad.any():
                X64 = X[bad].astype(np.float64)
                redo = self._engine(np.float64, X.shape[1]).evaluate(X64, self._matrices(np.float64), **first)
                for key, values in redo.items():
                    out[key][bad] = values
            if not want.get("loglik"):
                del out["loglik"]
        out["dtype"] = X.dtype
        return out

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays this estimator holds between calls: its fitted attributes
        (``weights_``, ``means_``, ``covariances_``, ``precisions_cholesky_``, ...) and the core's
        matrices derived from them; not the per-thread work buffers (see :meth:`share_buffers`)."""
        own = sum(v.nbytes for k, v in vars(self).items() if k.endswith("_") and isinstance(v, np.ndarray))
        cache = vars(self).get("_core")
        return own + (cache.nbytes if cache is not None else 0)

    def share_buffers(self, owner: "MixtureModel") -> None:
        """Score and fit with ``owner``'s per-thread work buffers (the core's engines: about
        ``(2 chunk + 2 K) (2 D)`` values per thread and setting) instead of keeping a set of its
        own: a holder of many models (a cache of speaker models sharing their UBM's buffers)
        keeps one set per thread, not one per model and thread.  Results do not change (an
        engine's results never depend on its earlier use; a thread's calls run one after another)."""
        self._core_cache().share_engines(owner._core_cache())

    def score_samples(self, X: ArrayLike, *, check_input: bool = True) -> np.ndarray:
        """Log-likelihood ``log p(x)`` (nats) of each sample, shape (n_samples,).

        In the computation's dtype, as scikit-learn: float32 when X and the model are float32,
        else float64.  The core computes each frame's log-likelihood in float64 and rounds it
        only here; :meth:`score` is the mean of these values (in their dtype, as scikit-learn):
        sum them in float64 (``.sum(dtype=np.float64)``) for a total over many frames.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)
        check_input : bool, default=True
            Validate X (scikit-learn's ``validate_data``: 2-D, finite, ``n_features_in_``
            columns).  False skips the scan of every value, for an X the caller has validated
            already (:meth:`check_features`), e.g. one recording scored against many models
            (scikit-learn's ``check_input`` of ``DecisionTreeClassifier.fit``): X must then be
            a finite 2-D float32 / float64 ndarray with ``n_features_in_`` columns.  Only its
            type, dtype and shape are checked (the core never reads outside it); NaN or
            infinity give meaningless results.  The same holds for every ``check_input`` of
            this class.
        """
        out = self._evaluate(X, check_input, loglik=True)
        return out["loglik"].astype(out["dtype"], copy=False)

    def score(self, X: ArrayLike, y: Any = None, *, check_input: bool = True) -> float:
        """Average log-likelihood per sample (nats): ``score_samples(X).mean()``, as scikit-learn.

        For a float32 model that is a float32 mean of float32 values (scikit-learn's number);
        sum ``score_samples`` in float64, or use float64, for more digits.  ``check_input``:
        see :meth:`score_samples`.
        """
        return float(self.score_samples(X, check_input=check_input).mean())

    def predict(self, X: ArrayLike, *, check_input: bool = True) -> np.ndarray:
        """Most probable component of each sample, shape (n_samples,), int64.

        ``check_input``: see :meth:`score_samples`.
        """
        return self._evaluate(X, check_input, labels=True)["labels"]

    def predict_proba(self, X: ArrayLike, *, check_input: bool = True) -> np.ndarray:
        """Responsibilities ``p(k | x)``, shape (n_samples, n_components).

        ``check_input``: see :meth:`score_samples`.
        """
        return self._evaluate(X, check_input, resp=True)["resp"]

    def component_log_likelihood(self, X: ArrayLike, *, check_input: bool = True) -> np.ndarray:
        """Weighted log-densities ``log w_k + log N(x | mu_k, var_k)``, shape (n_samples, K).

        ``logsumexp`` over axis 1 gives :meth:`score_samples`.  ``check_input``: see
        :meth:`score_samples`.
        """
        return self._evaluate(X, check_input, logprob=True)["logprob"]

    def top_components(self, X: ArrayLike, c: int = 5, *,
                       check_input: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """The ``c`` most likely components of each sample (Reynolds et al. 2000 fast scoring).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        c : int
            1 <= c <= n_components.
        check_input : bool, default=True
            See :meth:`score_samples`.

        Returns
        -------
        indices : ndarray of shape (n_samples, c), int32
            Components by decreasing weighted log-density.
        loglik : ndarray of shape (n_samples,)
            ``log sum_{k in indices[i]} w_k N(x_i | k)``: the top-c approximation of
            :meth:`score_samples` (equal to it when ``c == n_components``), float64.
        """
        if not isinstance(c, numbers.Integral) or not 1 <= c <= self.n_components:
            raise ValueError(f"c must be an int in [1, n_components={self.n_components}], got {c!r}")
        X = self._prepare(X, check_input)
        return self._engine(X.dtype, X.shape[1]).top_components(X, self._matrices(X.dtype), int(c))


def _map_flags(params, relevance_factor, update_params: str) -> str:
    """``map_parameters``' checked letters, less those ``update_params`` freezes."""
    if not isinstance(params, str) or not params or set(params) - set("mwv") or len(set(params)) != len(params):
        raise ValueError(f"params must combine the letters 'm', 'w' and 'v' (e.g. 'm', 'mw', 'mwv'); got {params!r}")
    if not isinstance(relevance_factor, Real) or not np.isfinite(relevance_factor) or relevance_factor <= 0:
        raise ValueError(f"relevance_factor must be > 0, got {relevance_factor!r}")
    frozen = {"w": "w", "m": "m", "c": "v"}
    return "".join(p for p in params if p not in {frozen[f] for f in "wmc" if f not in update_params})

def _is_segment_list(X) -> bool:
    """A list/tuple of 2-D arrays (segments), as opposed to one array-like of rows."""
    return isinstance(X, (list, tuple)) and len(X) > 0 and np.ndim(X[0]) == 2
