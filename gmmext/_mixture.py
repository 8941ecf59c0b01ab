"""``gmmext.GaussianMixture``: a drop-in for scikit-learn's GaussianMixture (all covariance types).

The E-step, the statistics and every log-likelihood come from the compiled core
(``gmmext._core``) through :class:`gmmext._engine.Engine`.  Scoring, statistics and MAP
adaptation are :class:`gmmext.MixtureModel`'s (``gmmext._model``, no scikit-learn); this
module holds the estimator: its parameter constraints, the EM loop and the M-step on the
statistics.  The checks
shared by every input kind are in ``gmmext._validation``, the initialisation statistics in
``gmmext._init``, out-of-core input in ``gmmext._blocked`` (memmap, array-like) and
``gmmext._dask`` (imported only for Dask input).
"""
from __future__ import annotations

import numbers
import warnings
from numbers import Integral, Real
from time import time
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from . import _covariance as cv
from . import _missing
from ._blocked import ArraySource, is_dask_array, wants_blocked
from ._blas import one_blas_thread

from ._init import DEFAULT_TOL, SAMPLE_EM_MAX_ITER, init_stats, sample_em_rows, sample_em_tol
from ._sklearn_compat import Interval, StrOptions, _fit_context
from ._stats import MOMENTS_EPS, GMMStats
from ._model import MixtureModel, settings_constraints
from ._validation import check_stats, check_usable_parameters

__all__ = ["GaussianMixture"]

_INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")
#: what the M-step does with a component whose covariance is ill-defined (not positive definite)
_ON_DEGENERATE = ("raise", "floor", "reseed")
#: the floor of ``on_degenerate="floor"``: this fraction of the data's variance (unless var_floor is larger)
DEGENERATE_FLOOR = 1e-3
#: with on_degenerate "floor" / "reseed", a variance below this fraction of the data's (a collapse
#: that rounding left positive) is degenerate too
COLLAPSED = 1e-10
#: ``(mean / spread)**2`` of a feature above which ``fit`` warns: the statistics are plain float64
#: sums, so a variance ``sum_xx / n - mean**2`` is then known to ~1e-3 of itself at best
#: (docs/mixture.md, "Data far from the origin")
FAR_FROM_ORIGIN = 1e13


class GaussianMixture(MixtureModel, DensityMixin, BaseEstimator):
    """Gaussian mixture (full, tied, diagonal or spherical covariances), fitted by EM in a compiled, chunked core.

    A drop-in for ``sklearn.mixture.GaussianMixture`` for every ``covariance_type``: the same
    constructor parameters, defaults, methods and fitted attributes, and the same results
    from the same initialisation (to floating-point rounding).  Frames are processed in
    chunks of ``chunk_size`` rows on ``n_threads`` threads, so ``fit`` needs memory for the
    input plus one chunk per thread, never an (n_samples, n_components) array.

    float32 input is fitted in float32 (faster; statistics are still accumulated in
    float64) and gives float32 parameters; float64 stays float64.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components K.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        As scikit-learn.  "diag" and "spherical" run the core's diagonal layout (``[y, y**2]``
        per frame), "tied" the same on frames whitened once by the shared ``C^T`` (unit
        variances; its statistics' second order is the pooled (1, D, D) scatter), "full" the
        full layout (``[y, upper triangle of y y^T]``, D + D(D+1)/2 columns: the cost per frame
        grows with D**2); see docs/design.md.
    tol : float, default=1e-3
        EM stops when the average log-likelihood per sample (nats) changes by less than ``tol``.
        The EM on a sample that follows a sampled KMeans start (``init_params``) stops at
        ``tol`` (1e-3 when ``tol`` is 0) x its share of the rows.
    reg_covar : float, default=1e-6
        Added to every variance (the diagonal of every covariance matrix) after the M-step.
    max_iter : int, default=100
        EM iterations per initialisation.
    n_init : int, default=1
        Initialisations; the one with the highest final average log-likelihood is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        As in scikit-learn.  "kmeans" runs scikit-learn's ``KMeans(n_init=1)`` on at most
        ``kmeans_max_samples`` rows: all rows when n_samples <= ``kmeans_max_samples`` (exactly
        scikit-learn's initialisation; ``kmeans_max_samples=None`` always), otherwise that many
        rows drawn from ``random_state`` without replacement (the best of up to 3 runs of at most
        20 Lloyd iterations); the initial parameters are the hard-assignment statistics of those
        rows (no pass labelling every row), then, when 3 x that many rows are at most half the
        data, EM on 3 x that many other drawn rows until an iteration gains less than
        ``tol`` x (those rows / n_samples) per row (at most 100 iterations; docs/mixture.md).
        "k-means++" seeds on all rows of an in-memory array, on such a sample for out-of-core
        input larger than ``kmeans_max_samples``.  The same rows drawn from the same ``random_state`` give the
        same initial model for every input kind (in memory, memmap, array-like, Dask); the
        rules are in ``gmmext/_init.py``.
    weights_init : array-like of shape (K,), default=None
    means_init : array-like of shape (K, D), default=None
    precisions_init : array-like, default=None
        Initial precisions (inverse covariances), scikit-learn's shapes: (K, D, D) "full",
        (D, D) "tied", (K, D) "diag", (K,) "spherical".
    random_state : int, RandomState instance or None, default=None
    warm_start : bool, default=False
        Start the next ``fit`` from the current parameters (one initialisation).  A fitted model
        whose number of components, number of features or covariance shape differs from this
        fit's (``n_components`` or ``covariance_type`` changed by ``set_params``, other data) is a
        ``ValueError`` saying so; scikit-learn goes on with the old components (or fails inside
        its arithmetic), which would leave a model that contradicts its own parameters.
    verbose : int, default=0
    verbose_interval : int, default=10
    var_floor : float, default=0.0
        Variances are floored at ``var_floor`` times the data's global per-dimension variance
        (as Kaldi, ALIZE and the MSR toolbox do), then ``reg_covar`` is added.  0 disables it.
        "spherical": ``var_floor`` times the mean global variance; "full" / "tied": the
        eigenvalues of the covariance relative to the global covariance matrix ``G`` (those of
        ``L^-1 cov L^-T``, ``G = L L^T``) are floored at ``var_floor`` (Kaldi's
        ``SpMatrix::ApplyFloor``).
    chunk_size : int or None, default=None
        Rows per chunk; None picks about 1 MiB of work buffers per thread.
    n_threads : int or None, default=None
        OpenMP threads; None uses every core this process may run on.  Results are
        deterministic for a given ``random_state``, ``chunk_size`` and ``n_threads``, and agree
        across thread counts to floating-point rounding.
    kmeans_max_samples : int, "auto" or None, default="auto"
        Largest number of rows given to ``KMeans`` by ``init_params="kmeans"`` (and to the
        other sampled initialisations of out-of-core input).  "auto": ``max(10_000, 100 *
        n_components)``; on more rows than that KMeans runs on a random sample of that size
        (on 100,000 rows, K=64, it is most of scikit-learn's fit time otherwise; README, "A
        whole fit"), followed by EM on a sample of 3 x that size (see ``init_params``).  None: every row, scikit-learn's exact initialisation whatever n_samples
        (and, for a Dask array with ``init_params="random"``, N x K random numbers drawn on
        the client).
    update_params : str, default="wmc"
        Which parameters EM updates (Kaldi's update flags): any non-empty combination of "w"
        (weights), "m" (means) and "c" (covariances).  The others keep their initial values
        (``*_init``, the initialisation, or the current model for :meth:`m_step`,
        :meth:`map_step`, ``warm_start`` and :meth:`partial_fit`); with means frozen the
        covariances are estimated about the frozen means (``E[(x - mu)(x - mu)^T]``).
    on_degenerate : {"raise", "floor", "reseed"}, default="raise"
        What the M-step does with a component whose covariance is ill-defined (not positive
        definite: a collapsed component, e.g. with ``reg_covar=0``; with "floor" / "reseed" also
        a variance, or eigenvalue, below ``1e-10`` of the data's, a collapse that rounding left
        positive).  "raise": scikit-learn's ``ValueError``.  "floor": floor that covariance at ``max(var_floor, 1e-3)`` times the
        data's global variance (the ``var_floor`` rule) plus ``reg_covar``.  "reseed": drop the
        component and split the heaviest one in two (means ``mu_h +- sqrt(2/pi) sqrt(lambda) v``
        along its principal axis ``v``, occupancy halved, as Kaldi's ``MleDiagGmmUpdate`` removes
        a low-count Gaussian and ``DiagGmm::Split`` splits the heaviest); "tied" models, whose one
        covariance cannot be re-seeded, are floored.  What was done is in ``degenerate_log_``.
    missing : {"raise", "marginalize"}, default="raise"
        NaN in X: "raise" refuses it (scikit-learn's ``ValueError``); "marginalize" treats NaN
        entries as missing at random: EM maximises the likelihood of the observed coordinates
        (the missing ones marginalised: their conditional expectations given the observed ones
        enter the statistics), and :meth:`score_samples`, :meth:`predict_proba`,
        :meth:`predict` give the marginal density of each row's observed coordinates.
        "diag" and "full" only ("tied" / "spherical" raise ``NotImplementedError``); in-memory
        arrays only; a row with no observed value is refused; the initialisation runs on the
        data with NaN replaced by the column means.
    learning_decay : float in (0.5, 1], default=0.6
        :meth:`partial_fit`'s step sizes ``gamma_t = t ** -learning_decay`` (t = 1, 2, ...:
        the first batch replaces the statistics), Cappé and Moulines' (2009) condition for
        stochastic-approximation EM to converge.

    Parameters are validated by ``fit`` as scikit-learn validates its estimators'
    (``_parameter_constraints``): a bad value raises scikit-learn's ``InvalidParameterError``
    (a ``ValueError``) with its message.

    Attributes
    ----------
    weights_ : ndarray of shape (K,)
    means_ : ndarray of shape (K, D)
    covariances_ : ndarray
        (K, D, D) "full", (D, D) "tied", (K, D) "diag" (variances), (K,) "spherical".
    precisions_ : ndarray, the shape of ``covariances_``
        Their inverses (``C C^T`` for "full" / "tied", ``1 / covariances_`` otherwise).
    precisions_cholesky_ : ndarray, the shape of ``covariances_``
        scikit-learn's: the upper-triangular ``C`` with ``C C^T = inv(cov)`` for "full" /
        "tied", ``1 / sqrt(covariances_)`` otherwise.
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Average log-likelihood per sample of the best initialisation's last E-step.
    lower_bounds_ : list of float
        The same, for every iteration of the best initialisation.
    n_features_in_ : int
    degenerate_log_ : list of dict
        What ``on_degenerate`` did in the best initialisation's fit (and later M-steps): one
        dict per ill-defined component, ``{"iteration": i, "component": k, "action": "floor"
        | "reseed", "split": h}`` (``iteration`` 0 is the initialisation, None an M-step outside
        ``fit``; ``split`` the component split by "reseed", else None).  Empty when none was.
    n_steps_ : int
        Batches seen by :meth:`partial_fit` since the model was initialised (0 after ``fit``).

    Notes
    -----
    Precision: the log-density of a frame is computed as one matrix product about a shift (the
    mixture's mean), Kaldi's layout; in float32 its absolute rounding error is about
    ``1e-7 * sum_d (x_d - shift_d)**2 / var_kd`` (full / tied: ``1e-7 * |y|**2 / lambda_min``).  When a component collapses to a variance of
    ``reg_covar`` (1e-6) on data of unit scale, that reaches ~1e-3 nats and EM may then lower
    the likelihood slightly between iterations; ``var_floor`` (e.g. 1e-3) or float64 avoids it.

    Statistics: a chunk's responsibilities below 1e-15 of their frame's largest are left out
    of the statistics when that skips most of them (the mass dropped is below the rounding
    of the float64 sums); see ``src/gmm_kernels.h``.

    Empty components: a component whose occupancy falls to ``<= max(10 * eps, 1e-10 * n)``
    (eps of the data's dtype, n the total weight) keeps its previous mean and variance (or takes
    the global mean and variance when there is none) and gets the weight ``(occupancy + 10 eps)
    / n`` that scikit-learn would give it; it never produces NaN.

    Usable parameters: every model this class holds (from ``fit``, ``m_step`` or
    ``from_parameters``) has log-densities that are finite in its dtype: variances >=
    ``16 / F``, ``|means| <= sqrt(F) / 4`` and, per component, ``sum_d R_d**2 / var_kd <= F / 16``
    (``F`` the dtype's largest finite number, ``R_d`` the range of the means in dimension
    ``d``; see ``gmmext._validation.parameter_bounds``).  Parameters outside raise ``ValueError``.
    """

    _parameter_constraints: dict = {
        "tol": [Interval(Real, 0.0, None, closed="left")],
        "reg_covar": [Interval(Real, 0.0, np.inf, closed="left")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "init_params": [StrOptions(set(_INIT_PARAMS))],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "verbose_interval": [Interval(Integral, 1, None, closed="left")],
        "var_floor": [Interval(Real, 0.0, np.inf, closed="left")],
        "kmeans_max_samples": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
        "on_degenerate": [StrOptions(set(_ON_DEGENERATE))],
        "learning_decay": [Interval(Real, 0.5, 1.0, closed="right")],
        **settings_constraints(),        # those MixtureModel keeps: n_components, covariance_type, ...
    }

    def __init__(self, n_components: int = 1, *, covariance_type: str = "full", tol: float = DEFAULT_TOL,
                 reg_covar: float = 1e-6, max_iter: int = 100, n_init: int = 1,
                 init_params: str = "kmeans", weights_init: ArrayLike | None = None,
                 means_init: ArrayLike | None = None, precisions_init: ArrayLike | None = None,
                 random_state: int | np.random.RandomState | None = None, warm_start: bool = False,
                 verbose: int = 0, verbose_interval: int = 10, var_floor: float = 0.0,
                 chunk_size: int | None = None, n_threads: int | None = None,
                 kmeans_max_samples: int | str | None = "auto", update_params: str = "wmc",
                 on_degenerate: str = "raise", missing: str = "raise", learning_decay: float = 0.6):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.var_floor = var_floor
        self.chunk_size = chunk_size
        self.n_threads = n_threads
        self.kmeans_max_samples = kmeans_max_samples
        self.update_params = update_params
        self.on_degenerate = on_degenerate
        self.missing = missing
        self.learning_decay = learning_decay

    @classmethod
    def from_parameters(cls, weights: ArrayLike, means: ArrayLike, covariances: ArrayLike,
                        covariance_type: str = "diag", **params: Any) -> "GaussianMixture":
        """A fitted estimator with the given parameters (no data needed): :meth:`MixtureModel.from_parameters`
        (the same checks), ``**params`` any constructor parameters (validated as ``fit`` validates
        them: scikit-learn's ``InvalidParameterError``), and the fitted attributes of a model that
        did not iterate (``converged_ = True``, ``n_iter_ = 0``, ``lower_bound_ = -inf``)."""
        gm = super().from_parameters(weights, means, covariances, covariance_type, **params)
        gm.converged_ = True
        gm.n_iter_ = 0
        gm.lower_bound_ = -np.inf
        gm.lower_bounds_ = []
        gm.degenerate_log_ = []
        gm.n_steps_ = 0
        return gm

    def _check_is_fitted(self) -> None:
        check_is_fitted(self)

    def _validate_X(self, X, *, reset: bool = False):
        marginalize = self.missing == "marginalize"
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=reset,
                          ensure_min_samples=2 if reset else 1,
                          ensure_all_finite="allow-nan" if marginalize else True)
        if marginalize:
            _missing.check_rows(X)
        return X

    def _check_settings(self) -> None:
        self._validate_params()

    def _settings(self, all_: bool = False) -> dict:
        params = self.get_params()
        if not all_:
            del params["n_components"], params["covariance_type"]
        return params

    # ------------------------------------------------------------------ validation
    def _check_initial(self, n_features: int, dtype):
        """The user's weights_init / means_init / precisions_init, validated, in float64."""
        K = self.n_components
        out = {}
        if self.weights_init is not None:
            w = check_array(self.weights_init, dtype=[np.float64, np.float32], ensure_2d=False)
            if w.shape != (K,):
                raise ValueError(f"The parameter 'weights' should have the shape of ({K},), but got {w.shape}")
            if np.any(w < 0) or np.any(w > 1):
                # scikit-learn's message, which prints the minimum as "max" and the maximum as "min"
                raise ValueError("The parameter 'weights' should be in the range [0, 1], but got max "
                                 f"value {w.min():.5f}, min value {w.max():.5f}")
            atol = 1e-6 if w.dtype == np.float32 else 1e-8
            if not abs(1.0 - float(w.sum())) <= atol:
                raise ValueError(f"The parameter 'weights' should be normalized, but got sum(weights) = {w.sum():.5f}")
            out["weights"] = w.astype(np.float64)
        if self.means_init is not None:
            m = check_array(self.means_init, dtype=[np.float64, np.float32], ensure_2d=False)
            if m.shape != (K, n_features):
                raise ValueError(f"The parameter 'means' should have the shape of ({K}, {n_features}), but got {m.shape}")
            out["means"] = m.astype(np.float64)
        if self.precisions_init is not None:
            kind = self._kind
            shape = kind.shape(K, n_features)
            p = check_array(self.precisions_init, dtype=[np.float64, np.float32], ensure_2d=False,
                            allow_nd=len(shape) > 2)
            if p.shape != shape:
                raise ValueError(f"The parameter '{kind.name} precision' should have the shape of {shape}, "
                                 f"but got {p.shape}")
            kind.check_precisions_init(p)
            out["covariances"] = kind.covariances_from_precisions(p)
        return out

    # ------------------------------------------------------------------ core access
    # ------------------------------------------------------------------ M-step
    @one_blas_thread
    def _params_from_stats(self, stats: GMMStats, dtype):
        """Maximum-likelihood (weights, means, covariances) in float64 from statistics.

        The statistics are checked against the model first (:func:`gmmext._validation.check_stats`)
        and the result must be usable in ``dtype`` (:func:`gmmext._validation.check_usable_parameters`).
        scikit-learn's estimators per type (``_estimate_gaussian_covariances_*``), written on
        the statistics: full ``sum_xx_k / n_k - mu_k mu_k^T``; tied ``(sum_k sum_xx_k - sum_k
        n_k mu_k mu_k^T) / sum_k n_k``; diag ``sum_xx / n - mu**2``; spherical the mean over
        dimensions of the diag one (``n`` plus :data:`gmmext._stats.MOMENTS_EPS`); then ``+ reg_covar`` on
        the (diagonal of the) covariance.
        """
        kind = self._kind
        stats = self._checked_stats(stats, dtype)
        K, D = stats.sum_x.shape
        eps = 10 * np.finfo(dtype).eps
        nk = stats.n + eps
        prev = hasattr(self, "means_") and self.means_.shape == (K, D) \
            and np.shape(getattr(self, "covariances_", None)) == kind.shape(K, D)
        flags = self.update_params if prev else "wmc"        # frozen parameters need a model
        means, cov = kind.estimate(stats, MOMENTS_EPS)
        if "m" not in flags:                                 # covariances about the frozen means
            fixed = self.means_.astype(np.float64)
            cov = kind.about(cov, means, fixed, nk)
            means = fixed.copy()
        gmean, gcov = (a[0] for a in stats.pooled().moments())
        gcov = kind.global_covariance(gcov)
        tot = stats.n.sum()
        if self.var_floor > 0:
            cov = kind.floor(cov, self.var_floor * gcov)
        empty = stats.n <= max(eps, 1e-10 * tot)
        reg = kind.regularisation(self.reg_covar, D)
        if np.any(empty):
            if prev:
                means[empty] = self.means_[empty]
                if kind.per_component:
                    cov[empty] = self.covariances_[empty] - reg
            else:
                means[empty] = gmean
                if kind.per_component:
                    cov[empty] = kind.floor(gcov, self.var_floor * gcov) if self.var_floor > 0 else gcov
        cov = cov + reg
        if "c" not in flags:
            cov = np.array(self.covariances_, dtype=np.float64)
        events = []
        if self.on_degenerate != "raise" and np.all(np.isfinite(means)):
            bad = kind.ill_defined(cov, COLLAPSED * gcov)
            if np.any(bad):
                events = self._recover(kind, bad, means, cov, nk, gcov, reg)
        if not np.all(np.isfinite(cov)) or not np.all(np.isfinite(means)):
            raise ValueError(cv.ILL_DEFINED)
        chol = kind.precisions_cholesky(cov)   # positive (definite), else scikit-learn's message
        weights = nk / nk.sum() if "w" in flags else self.weights_.astype(np.float64)
        _check_fitted_usable(weights, means, cov, dtype, kind, chol)
        return weights, means, cov, events

    def _checked_stats(self, stats: GMMStats, dtype) -> GMMStats:
        """``stats`` checked against this model (:func:`gmmext._validation.check_stats`), with the
        occupancies and variance sums that rounding left below zero (within the check's
        tolerance) set to zero: what every M-step starts from."""
        kind = self._kind
        D = self.means_.shape[1] if hasattr(self, "means_") else None
        check_stats(stats, self.n_components, D, dtype, kind)
        sxx = stats.sum_xx if kind.matrix else np.maximum(stats.sum_xx, 0.0)
        return GMMStats(np.maximum(stats.n, 0.0), stats.sum_x, sxx, stats.loglik, stats.n_samples)

    def _recover(self, kind: cv.CovarianceType, bad, means, cov, nk, gcov, reg) -> list:
        """``on_degenerate``: floor or re-seed the ill-defined components (``bad``), in place.

        Returns one event dict per component (``degenerate_log_`` without the iteration).
        """
        level = max(self.var_floor, DEGENERATE_FLOOR) * gcov
        events = []

        def floor(c):
            shape = np.shape(c)
            c = np.where(np.isfinite(c), c - reg, gcov)
            return np.reshape(kind.floor(c, level) + reg, shape)

        if not kind.per_component:                      # tied: its one covariance
            cov[...] = floor(cov)
            return [{"component": None, "action": "floor", "split": None}]
        good = ~bad
        for k in np.flatnonzero(bad):
            if self.on_degenerate == "reseed" and np.any(good):
                h = int(np.flatnonzero(good)[np.argmax(nk[good])])
                delta = kind.split_offset(cov[h], means.shape[1])
                means[k], means[h] = means[h] + delta, means[h] - delta
                cov[k] = cov[h]
                nk[k] = nk[h] = nk[h] / 2
                events.append({"component": int(k), "action": "reseed", "split": h})
            else:
                cov[k] = floor(cov[k])
                events.append({"component": int(k), "action": "floor", "split": None})
        return events

    def _log_degenerate(self, events: list) -> None:
        """Append what :meth:`_recover` did to ``degenerate_log_`` with the EM iteration."""
        log = vars(self).setdefault("degenerate_log_", [])
        it = vars(self).get("_em_iter")
        log.extend({"iteration": it, **e} for e in events)

    def m_step(self, stats: GMMStats) -> "GaussianMixture":
        """Maximum-likelihood update of all parameters from sufficient statistics.

        ``weights_ = (n + 10 eps) / sum`` (eps of the model's dtype), ``means_ = sum_x / (n + e)``,
        ``covariances_ = max(sum_xx / (n + e) - means_**2, var_floor * global_var, 0) + reg_covar``
        for "diag" (``e`` = 10 eps of float64, the M-step's dtype: :data:`gmmext._stats.MOMENTS_EPS`), where ``global_var`` is the data's per-dimension variance, read off the
        statistics with the same formula (``stats.pooled().moments()``); the other types use
        scikit-learn's estimator of their type (see ``_params_from_stats``), the floor being
        ``var_floor`` times the global variance averaged over dimensions for "spherical" and,
        for "full" and "tied", a floor on the eigenvalues of the covariance relative to the
        global covariance matrix G: with ``G = L L^T``, the eigenvalues of ``L^-1 cov L^-T`` are
        raised to at least ``var_floor`` (Kaldi's ``SpMatrix::ApplyFloor(G, var_floor)``; for
        diagonal matrices it is the diagonal rule).  Components with occupancy
        ``<= max(10 eps, 1e-10 n)`` keep their previous mean and variance (see the class Notes).
        One ``fit`` iteration is exactly ``m_step(accumulate(X))``.  ``m_step`` of a
        one-component model on ``stats.pooled()`` is the data's global model.

        Parameters
        ----------
        stats : GMMStats
            Statistics of (K, D) matching this model (its K, once fitted its D, and ``sum_xx`` of
            (K, D) for "diag" / "spherical", (K, D, D) for "full" / "tied"), e.g. a sum
            of :meth:`accumulate` results: finite, total weight ``n_samples > 0``, occupancies
            ``n`` and second moments ``sum_xx`` >= 0 (up to 1e-12 of their total, rounding).
            Anything else raises ``ValueError`` and leaves the model unchanged; so do results
            outside the usable bounds of the class Notes.

        Returns
        -------
        self
        """
        if not isinstance(stats, GMMStats):
            raise TypeError(f"m_step expects GMMStats, got {type(stats).__name__}")
        dtype = self.means_.dtype if hasattr(self, "means_") else np.float64
        w, m, c, events = self._params_from_stats(stats, dtype)
        self._set_params_arrays(w, m, c, dtype)
        self._log_degenerate(events)
        if not hasattr(self, "n_features_in_"):     # a model made by m_step alone checks its input's D
            self.n_features_in_ = m.shape[1]
        return self

    # ------------------------------------------------------------------ online EM
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: ArrayLike, y: Any = None,
                    sample_weight: ArrayLike | None = None) -> "GaussianMixture":
        """One step of stepwise online EM (Cappé and Moulines 2009) on a batch of rows.

        The running statistics ``s`` (per unit of weight) move towards the batch's:
        ``s_t = (1 - gamma_t) s_{t-1} + gamma_t sbar_t``, ``sbar_t`` the batch's statistics
        under the current model divided by its total weight, ``gamma_t = t ** -learning_decay``
        (``gamma_1 = 1``), then the M-step ``m_step(s_t)`` (with ``update_params``,
        ``on_degenerate`` and ``missing`` as in ``fit``).  The first call on a model that is not
        fitted initialises it from that batch (``init_params``, ``*_init``, ``random_state``),
        which must have at least ``n_components`` rows; a fitted model (``fit``,
        ``from_parameters``) continues from its parameters.  ``fit`` forgets the running statistics.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        if not hasattr(self, "means_"):
            X = self._validate_X(X, reset=True)
            if X.shape[0] < self.n_components:
                raise ValueError("Expected n_samples >= n_components but got n_components = "
                                 f"{self.n_components}, n_samples = {X.shape[0]}")
            self._check_initial(X.shape[1], X.dtype)
            if self.missing == "marginalize":
                _missing.check_supported(self._kind)
            sw = self._check_sw(sample_weight, X)
            init_X = _missing.impute_means(X) if self._has_missing(X) else X
            self._em_iter, self.degenerate_log_ = 0, []
            self._initialize(ArraySource(init_X, sw, self.n_threads, checked=True),
                             check_random_state(self.random_state))
            self.converged_, self.n_iter_, self.n_steps_ = False, 0, 0
            self.lower_bound_, self.lower_bounds_ = -np.inf, []
            vars(self).pop("_online", None)
            X = X.astype(self._compute_dtype(X), copy=False)
        else:
            X = self._prepare(X, allow_missing=True)
            sw = self._check_sw(sample_weight, X)
        stats = self._batch_stats(X, sw)
        if not stats.n_samples > 0:
            raise ValueError("partial_fit needs a batch of positive total weight")
        online = vars(self).get("_online")
        t = getattr(self, "n_steps_", 0) + 1 if online is not None else 1
        gamma = float(t) ** -self.learning_decay
        sbar = stats.scaled(1.0 / stats.n_samples)
        s = sbar if online is None else online.scaled(1.0 - gamma) + sbar.scaled(gamma)
        self._em_iter = t
        self.m_step(s)
        self._em_iter = None
        self._online = s
        self.n_steps_ = t
        self.n_iter_ = getattr(self, "n_iter_", 0) + 1
        self.lower_bound_ = stats.mean_loglik()
        self.lower_bounds_ = list(getattr(self, "lower_bounds_", [])) + [self.lower_bound_]
        return self

    # ------------------------------------------------------------------ initialisation
    def _initialize(self, src, random_state) -> None:
        """Initial parameters from the user's ``*_init`` and ``gmmext._init``'s statistics of ``src``."""
        dtype = src.dtype
        given = self._check_initial(src.n_features, dtype)
        if len(given) == 3:
            w, m, c = given["weights"], given["means"], given["covariances"]
        else:
            for attr in ("means_", "covariances_"):  # start fresh: no "previous" parameters
                if hasattr(self, attr):
                    delattr(self, attr)
            stats = init_stats(src, self.init_params, self.n_components, self.kmeans_max_samples, random_state,
                               full=self._kind.matrix)
            w, m, c, events = self._params_from_stats(stats, dtype)
            self._log_degenerate(events)
            w, m, c = given.get("weights", w), given.get("means", m), given.get("covariances", c)
        if given:                              # the user's weights_init / means_init / precisions_init
            check_usable_parameters(w, m, c, dtype, self._kind)
        self._set_params_arrays(w, m, c, dtype)

    def _sample_em(self, src, random_state) -> None:
        """After a sampled KMeans start, :meth:`_em_on_sample` on the rows
        :func:`gmmext._init.sample_em_rows` draws from ``random_state`` (none when KMeans used every
        row or the user gave any ``*_init``): the start of EM on all rows."""
        if any(getattr(self, p) is not None for p in ("weights_init", "means_init", "precisions_init")):
            return
        idx = sample_em_rows(src.n_rows, self.init_params, self.n_components, self.kmeans_max_samples,
                             random_state)
        if idx is None:
            return
        rows, w = src.take(idx)
        self._em_on_sample(rows, w, src.n_rows)

    def _em_on_sample(self, rows: np.ndarray, w: np.ndarray | None, n_rows: int) -> None:
        """EM from the current parameters on ``rows`` (validated, (n, D), weights ``w`` or None),
        drawn from ``n_rows`` rows, until an iteration raises their average log-likelihood by less
        than :func:`gmmext._init.sample_em_tol` (at most ``SAMPLE_EM_MAX_ITER``; none when the rows'
        weights are all 0).  Also :class:`gmmext.GaussianMixtureIC`'s, per candidate."""
        engine, scatter = self._engine(rows.dtype, rows.shape[1]), {}
        stop, previous = sample_em_tol(self.tol, len(rows), n_rows), -np.inf
        for _ in range(SAMPLE_EM_MAX_ITER):
            stats = engine.accumulate(rows, w, self._matrices(rows.dtype), scatter)
            if not stats.n_samples > 0:              # the drawn rows weigh nothing: the KMeans start
                break
            average = self._em_iteration(stats)
            if abs(average - previous) < stop:       # scikit-learn's test, with the sample's tol
                break
            previous = average

    # ------------------------------------------------------------------ EM
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike, y: Any = None, sample_weight: ArrayLike | None = None) -> "GaussianMixture":
        """Estimate the parameters by EM (best of ``n_init`` initialisations).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            float32 or float64 (other types are converted to float64); any memory layout.
            A ``numpy.memmap`` or another lazily sliced array-like is streamed in row blocks,
            a ``dask.array.Array`` is fitted where its blocks live (docs/scaling.md); every
            block is validated as it is read, with the checks and messages of in-memory input.
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative per-sample weights; an integer weight acts like repeating the row
            in the statistics (the initialisation draws rows, so it is not repetition there).
            Their scale does not matter while the total weight is above about 1e-9 (the M-step
            adds scikit-learn's absolute ``10 eps`` to every occupancy: with the weights of
            600 rows scaled to a total of 8.6e-10 the means moved by 2e-5, at 8.6e-12 by
            2e-3); rescale tinier weights (e.g. to a mean of 1).

        Returns
        -------
        self
        """
        self._fit(X, sample_weight, labels=False)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_predict(self, X: ArrayLike, y: Any = None, sample_weight: ArrayLike | None = None) -> np.ndarray:
        """Fit, then return the most probable component of each sample, shape (n_samples,)."""
        return self._fit(X, sample_weight, labels=True)

    def _source(self, X, sample_weight):
        """The row source of ``X`` (``gmmext._init``'s interface): a Dask array, blocks read in this
        process (memmap, array-like), or an in-memory array validated here."""
        if is_dask_array(X):
            from ._dask import DaskSource      # Dask itself is imported only for Dask input
            return DaskSource(X, sample_weight, self.n_threads)
        if wants_blocked(X):
            return ArraySource(X, sample_weight, self.n_threads)
        X = self._validate_X(X, reset=True)
        return ArraySource(X, sample_weight, self.n_threads, checked=True)

    def _fit(self, X, sample_weight, labels: bool):
        src = self._source(X, sample_weight)
        N, D = src.n_rows, src.n_features
        if not src.in_memory:                  # what validate_data checks for in-memory input
            if D < 1:
                raise ValueError(f"0 feature(s) (shape=({N}, 0)) while a minimum of 1 is required.")
            if N < 2:
                raise ValueError(f"Found array with {N} sample(s) (shape=({N}, {D})) while a minimum "
                                 "of 2 is required.")
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
            self.n_features_in_ = D
        if N < self.n_components:
            raise ValueError("Expected n_samples >= n_components but got n_components = "
                             f"{self.n_components}, n_samples = {N}")
        self._check_initial(D, src.dtype)
        self._check_warm_start(D)
        self._check_data_parameters(src)
        if self.missing == "marginalize":
            _missing.check_supported(self._kind)
        init_src = src
        if src.in_memory and self._has_missing(src.X):
            X, sw = src.X, src.sw
            groups = _missing.patterns(X)
            init_src = ArraySource(_missing.impute_means(X), sw, self.n_threads, checked=True)
            e_step = lambda: _missing.accumulate(self, X, sw, groups)                  # noqa: E731
        elif src.in_memory:                    # one engine for the whole fit
            X, sw, engine = src.X, src.sw, self._engine(src.dtype, D)
            scatter: dict = {}                 # "tied": the pooled scatter, once per fit
            e_step = lambda: engine.accumulate(X, sw, self._matrices(X.dtype), scatter)   # noqa: E731
        else:
            e_step = lambda: src.e_step(self)                                        # noqa: E731

        def initialize(rs):
            self._initialize(init_src, rs)
            if init_src is src:                # not on mean-imputed rows (missing values)
                self._sample_em(src, rs)
        self._run_em(src.dtype, initialize, e_step)
        if not labels:
            return None
        if src.in_memory:
            return self._evaluate(src.X, False, labels=True)["labels"]
        return src.labels(self)

    def _check_warm_start(self, D: int) -> None:
        """With ``warm_start`` after a fit: the fitted model must have this fit's K, D and type shape."""
        if not (self.warm_start and hasattr(self, "converged_")):
            return
        K0, D0 = self.means_.shape
        shape = self._kind.shape(self.n_components, D)
        if (K0, D0) != (self.n_components, D) or self.covariances_.shape != shape:
            self.n_features_in_ = D0           # the fitted model stays usable as it was
            raise ValueError(
                f"warm_start=True continues from the fitted model, which has {K0} components of {D0} "
                f"features and covariances of shape {self.covariances_.shape}; this fit has "
                f"n_components={self.n_components}, {D} features and covariance_type="
                f"{self.covariance_type!r} (shape {shape}): set warm_start=False to start afresh")

    def _run_em(self, dtype, initialize, e_step) -> None:
        """The EM loop of every fit (in memory, blocked, Dask), with scikit-learn's semantics.

        ``initialize(random_state)`` sets initial parameters; ``e_step()`` returns the
        ``GMMStats`` of all the data under the current parameters.  Best of ``n_init``
        initialisations (one with ``warm_start`` after a first fit), ``max_iter`` iterations,
        stop when the average log-likelihood changes by less than ``tol``; sets the fitted
        parameters, ``converged_``, ``n_iter_``, ``lower_bound_`` and ``lower_bounds_``.
        """
        do_init = not (self.warm_start and hasattr(self, "converged_"))
        n_init = self.n_init if do_init else 1
        if not do_init:
            self._set_parameters(self._get_parameters(), dtype)
        random_state = check_random_state(self.random_state)
        max_lower_bound = -np.inf
        best_params, best_n_iter, best_lower_bounds, best_log = None, 0, [], []
        self.converged_ = False
        vars(self).pop("_online", None)                 # partial_fit starts afresh after a fit
        self.n_steps_ = 0
        for init in range(n_init):
            self._verbose_init_beg(init)
            self._em_iter = 0
            if do_init or not hasattr(self, "degenerate_log_"):
                self.degenerate_log_ = []
            if do_init:
                initialize(random_state)
            lower_bound = -np.inf if do_init else self.lower_bound_
            current = []
            if self.max_iter == 0:
                best_params, best_n_iter, best_log = self._get_parameters(), 0, list(self.degenerate_log_)
                continue
            converged = False
            for n_iter in range(1, self.max_iter + 1):
                prev = lower_bound
                self._em_iter = n_iter
                stats = e_step()
                if init == 0 and n_iter == 1:
                    _warn_far_from_origin(stats, self.reg_covar)
                lower_bound = self._em_iteration(stats)
                current.append(lower_bound)
                change = lower_bound - prev
                self._verbose_iter_end(n_iter, change)
                if abs(change) < self.tol:
                    converged = True
                    break
            self._verbose_init_end(lower_bound, converged)
            if lower_bound > max_lower_bound or max_lower_bound == -np.inf:
                max_lower_bound = lower_bound
                best_params, best_n_iter, best_lower_bounds = self._get_parameters(), n_iter, current
                best_log = list(self.degenerate_log_)
                self.converged_ = converged
        if not self.converged_ and self.max_iter > 0:
            warnings.warn("Best performing initialization did not converge. Try different init "
                          "parameters, or increase max_iter, tol, or check for degenerate data.",
                          ConvergenceWarning)
        self._set_parameters(best_params, dtype)
        self.n_iter_ = best_n_iter
        self.lower_bound_ = max_lower_bound
        self.lower_bounds_ = best_lower_bounds
        self.degenerate_log_ = best_log
        self._em_iter = None

    def _check_data_parameters(self, src) -> None:
        """Parameters derived from the data before EM (``BayesianGaussianMixture``'s priors); none here."""

    def _em_iteration(self, stats: GMMStats) -> float:
        """The M-step of one EM iteration on the E-step's statistics; returns the iteration's
        lower bound (here the average log-likelihood per sample under the E-step's model)."""
        self.m_step(stats)
        return stats.mean_loglik()

    def _get_parameters(self):
        return (self.weights_.copy(), self.means_.copy(), self.covariances_.copy())

    def _set_parameters(self, params, dtype) -> None:
        self._set_params_arrays(*params, dtype)

    # ------------------------------------------------------------------ statistics API
    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw samples; returns X (n_samples, n_features) and component labels (n_samples,).

        Uses ``random_state`` exactly as scikit-learn does.
        """
        check_is_fitted(self)
        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"Invalid value for 'n_samples': {n_samples!r}. The sampling requires "
                             "at least one sample.")
        rng = check_random_state(self.random_state)
        counts = rng.multinomial(n_samples, self.weights_.astype(np.float64))
        X = self._kind.sample(rng, self.means_, self.covariances_, counts)
        y = np.concatenate([np.full(c, j, dtype=np.int64) for j, c in enumerate(counts)])
        return X.astype(np.float64), y

    def _n_parameters(self) -> int:
        K, D = self.means_.shape
        return self._kind.n_parameters(K, D)

    def bic(self, X: ArrayLike) -> float:
        """Bayesian information criterion on X (lower is better)."""
        X = self._prepare(X)
        return -2 * self.score(X, check_input=False) * X.shape[0] + self._n_parameters() * np.log(X.shape[0])

    def aic(self, X: ArrayLike) -> float:
        """Akaike information criterion on X (lower is better)."""
        X = self._prepare(X)
        return -2 * self.score(X, check_input=False) * X.shape[0] + 2 * self._n_parameters()

    # ------------------------------------------------------------------ verbose output
    def _verbose_init_beg(self, n_init):
        if self.verbose == 1:
            print(f"Initialization {n_init}")
        elif self.verbose >= 2:
            print(f"Initialization {n_init}")
            self._init_prev_time = time()
            self._iter_prev_time = self._init_prev_time

    def _verbose_iter_end(self, n_iter, diff_ll):
        if n_iter % self.verbose_interval == 0:
            if self.verbose == 1:
                print(f"  Iteration {n_iter}")
            elif self.verbose >= 2:
                cur = time()
                print(f"  Iteration {n_iter}\t time lapse {cur - self._iter_prev_time:.5f}s\t ll change {diff_ll:.5f}")
                self._iter_prev_time = cur

    def _verbose_init_end(self, lb, converged):
        msg = "Initialization converged." if converged else "Initialization did not converge."
        if self.verbose == 1:
            print(msg)
        elif self.verbose >= 2:
            print(f"{msg} time lapse {time() - self._init_prev_time:.5f}s\t lower bound {lb:.5f}.")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self.missing == "marginalize"
        return tags


def _warn_far_from_origin(stats: GMMStats, reg_covar: float) -> None:
    """Warn when a feature's mean is so far from the origin, relative to its spread, that the
    float64 statistics' variances keep few digits (:data:`FAR_FROM_ORIGIN`; at 1e8 times the
    spread a "diag" fit is silently wrong): centring the features is the fix (README).  The
    spread counts as at least ``reg_covar``, which every variance gets anyway; a feature of zero
    spread (constant) is not one of these."""
    mean, cov = (a[0] for a in stats.pooled().moments())
    spread2 = np.maximum(np.diagonal(cov) if cov.ndim == 2 else cov, reg_covar)
    ratio = np.divide(mean ** 2, spread2, out=np.zeros_like(spread2), where=spread2 > 0)
    far = np.flatnonzero(ratio > FAR_FROM_ORIGIN)
    if far.size:
        worst = float(np.max(ratio[far]))
        digits = max(0, int(16 - np.log10(worst)))
        warnings.warn(f"feature(s) {far[:10].tolist()} have a mean about {np.sqrt(worst):.0e} times their "
                      f"spread: gmmext's statistics are plain float64 sums, whose variances keep about "
                      f"{digits} significant digits there; centre the features first (e.g. "
                      "sklearn.preprocessing.StandardScaler)", UserWarning)


def _check_fitted_usable(weights, means, covariances, dtype, kind: cv.CovarianceType,
                         prec_chol=None) -> None:
    """:func:`check_usable_parameters` for parameters estimated from data: the message adds the remedy."""
    try:
        check_usable_parameters(weights, means, covariances, dtype, kind, prec_chol)
    except ValueError as exc:
        hint = ("Use float64 input or rescale the data" if np.dtype(dtype) == np.float32
                else "Rescale the data") + " (e.g. sklearn.preprocessing.StandardScaler)."
        raise ValueError(f"the estimated parameters are not usable: {exc}; the data's magnitude "
                         f"overflows {np.dtype(dtype).name} arithmetic. {hint}") from None

