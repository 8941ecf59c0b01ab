"""``gmmext.BayesianGaussianMixture``: scikit-learn's variational Gaussian mixture on the compiled core.

The variational E-step has the EM E-step's shape (Bishop 2006, 10.46-10.49): the log-density
of frame i under component k is

    E[log pi_k] + 1/2 E[log det Lambda_k] - D/2 log(2 pi) - D / (2 beta_k)
        - nu_k / 2 (x_i - m_k)^T W_k (x_i - m_k)

that is, a Gaussian log-density with the *expected* precision ``nu_k W_k`` (scikit-learn's
``precisions_``: the inverse of ``covariances_``), in which ``log w_k`` is replaced by the
per-component constant

    E[log pi_k] + 1/2 (E[log det Lambda_k] - log det(nu_k W_k)) - D / (2 beta_k)
  = E[log pi_k] + 1/2 (D log 2 + sum_d digamma((nu_k - d) / 2) - D log nu_k - D / beta_k)

(``E[log pi_k]`` from digammas of the Dirichlet / stick-breaking posterior).  So the core's
chunked kernels run it unchanged: the model matrices are built by
``gmmext._covariance.model_matrices`` from (means, covariances) with these constants as
``log_weights``, and the E-step yields the same mergeable :class:`~gmmext.GMMStats`.  The
M-step (:meth:`BayesianGaussianMixture.m_step`) is scikit-learn's ``_m_step`` written on the
statistics; the per-type Wishart updates are the covariance-type objects' ``wishart``.

The lower bound is scikit-learn's ``_compute_lower_bound``; its one term that needs the frames,
the responsibilities' entropy ``-sum_i w_i sum_k r_ik log r_ik``, is ``loglik - sum_ik w_i r_ik
log p_ik``, and ``sum_ik w_i r_ik log p_ik`` is linear in the statistics: ``sum_k n_k c_k -
1/2 sum_k sum_i w_i r_ik (x_i - m_k)^T P_k (x_i - m_k)`` (``CovarianceType.quadratic_total``),
evaluated in float64 with the E-step's model.
"""
from __future__ import annotations

from numbers import Real
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import betaln, digamma, gammaln
from sklearn.utils.validation import check_array

from . import _covariance as cv
from ._blas import one_blas_thread
from ._blocked import ArraySource
from ._init import DEFAULT_TOL, init_stats
from ._mixture import GaussianMixture
from ._sklearn_compat import Interval, StrOptions
from ._stats import MOMENTS_EPS, GMMStats

__all__ = ["BayesianGaussianMixture"]


class _Prior(NamedTuple):
    dof: float            #: degrees_of_freedom_prior_
    cov: Any              #: covariance_prior_ of the type's shape
    beta0: float          #: mean_precision_prior_
    beta: np.ndarray      #: (K,) mean_precision_ of this M-step
    m0: np.ndarray        #: (D,) mean_prior_


class _Unavailable:
    """A ``GaussianMixture`` method that a variational model does not have (``hasattr`` is False)."""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, objtype=None):
        raise AttributeError(f"BayesianGaussianMixture has no {self.name!r} (a GaussianMixture method)")


def _log_dirichlet_norm(alpha) -> float:
    return gammaln(np.sum(alpha)) - np.sum(gammaln(alpha))


def _log_wishart_norm(dof, log_det_chol, D: int):
    """scikit-learn's ``_log_wishart_norm`` (without the log(pi) term)."""
    return -(dof * log_det_chol + dof * D * 0.5 * np.log(2.0)
             + np.sum(gammaln(0.5 * (dof - np.arange(D)[:, None])), 0))


class BayesianGaussianMixture(GaussianMixture):
    """Variational Bayesian Gaussian mixture: a drop-in for ``sklearn.mixture.BayesianGaussianMixture``.

    scikit-learn's parameters, defaults, attributes and results (both weight-concentration prior
    types, the four covariance types), with the variational E-step in gmmext's compiled core
    (module docstring): float32 input is fitted in float32, ``sample_weight`` weighs the
    statistics (and the data's mean and covariance in the default priors) as in
    ``gmmext.GaussianMixture``, and :meth:`accumulate` / :meth:`m_step` expose the mergeable
    statistics of the variational E-step (one ``fit`` iteration is ``m_step(accumulate(X))``).

    Parameters
    ----------
    n_components : int, default=1
        Upper bound K on the number of components; the posterior switches off the ones the data
        do not need.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    tol : float, default=1e-3
        EM stops when the lower bound (nats, summed over the samples) changes by less than ``tol``.
    reg_covar : float, default=1e-6
        Added to the diagonal of the ML covariances before the Wishart update.
    max_iter : int, default=100
    n_init : int, default=1
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
    weight_concentration_prior_type : {"dirichlet_process", "dirichlet_distribution"}, default="dirichlet_process"
    weight_concentration_prior : float or None, default=None
        gamma_0 > 0 (None: 1 / n_components).
    mean_precision_prior : float or None, default=None
        beta_0 > 0 (None: 1).
    mean_prior : array-like of shape (n_features,) or None, default=None
        m_0 (None: the data's (weighted) mean).
    degrees_of_freedom_prior : float or None, default=None
        nu_0 > n_features - 1 (None: n_features).
    covariance_prior : float or array-like, default=None
        The Wishart prior's covariance: (D, D) "full" / "tied", (D,) "diag", a float
        "spherical" (None: the data's (weighted, ddof=1) covariance of that shape).
    random_state, warm_start, verbose, verbose_interval : as scikit-learn
    chunk_size, n_threads, kmeans_max_samples : as ``gmmext.GaussianMixture``, except that the
        sampled KMeans start is not followed by EM on a larger sample (the priors are scaled to
        every row)

    Attributes
    ----------
    weights_ : ndarray of shape (K,)
    means_ : ndarray of shape (K, D)
    covariances_, precisions_, precisions_cholesky_ : ndarray of the covariance type's shape
        (K, D, D) "full", (D, D) "tied", (K, D) "diag", (K,) "spherical"; the covariances are
        the Wishart's normalised by the degrees of freedom (scikit-learn's).
    weight_concentration_prior_ : float
    weight_concentration_ : ndarray of shape (K,), or tuple of two (K,) ("dirichlet_process")
    mean_precision_prior_ : float
    mean_precision_ : ndarray of shape (K,)
    mean_prior_ : ndarray of shape (D,)
    degrees_of_freedom_prior_ : float
    degrees_of_freedom_ : ndarray of shape (K,) (a float for "tied")
    covariance_prior_ : float or ndarray
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        The variational lower bound (nats, summed over the samples, scikit-learn's constants
        dropped) of the best initialisation.
    lower_bounds_ : list of float
        The same, for every iteration of the best initialisation.
    n_features_in_ : int
    """

    _parameter_constraints: dict = {
        **{k: v for k, v in GaussianMixture._parameter_constraints.items()
           if k not in ("weights_init", "means_init", "precisions_init", "var_floor", "update_params",
                        "on_degenerate", "missing", "learning_decay")},
        "weight_concentration_prior_type": [StrOptions({"dirichlet_process", "dirichlet_distribution"})],
        "weight_concentration_prior": [None, Interval(Real, 0.0, None, closed="neither")],
        "mean_precision_prior": [None, Interval(Real, 0.0, None, closed="neither")],
        "mean_prior": [None, "array-like"],
        "degrees_of_freedom_prior": [None, Interval(Real, 0.0, None, closed="neither")],
        "covariance_prior": [None, "array-like", Interval(Real, 0.0, None, closed="neither")],
    }

    # GaussianMixture's knobs that the variational model does not have: fixed here
    weights_init = means_init = precisions_init = None
    var_floor = 0.0
    update_params = "wmc"
    on_degenerate = "raise"
    missing = "raise"

    from_parameters = _Unavailable()
    bic = _Unavailable()
    aic = _Unavailable()
    map_step = _Unavailable()
    map_parameters = _Unavailable()
    partial_fit = _Unavailable()

    def __init__(self, *, n_components: int = 1, covariance_type: str = "full", tol: float = DEFAULT_TOL,
                 reg_covar: float = 1e-6, max_iter: int = 100, n_init: int = 1,
                 init_params: str = "kmeans",
                 weight_concentration_prior_type: str = "dirichlet_process",
                 weight_concentration_prior: float | None = None,
                 mean_precision_prior: float | None = None, mean_prior: ArrayLike | None = None,
                 degrees_of_freedom_prior: float | None = None,
                 covariance_prior: float | ArrayLike | None = None,
                 random_state: int | np.random.RandomState | None = None, warm_start: bool = False,
                 verbose: int = 0, verbose_interval: int = 10, chunk_size: int | None = None,
                 n_threads: int | None = None, kmeans_max_samples: int | str | None = "auto"):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.chunk_size = chunk_size
        self.n_threads = n_threads
        self.kmeans_max_samples = kmeans_max_samples

    # ------------------------------------------------------------------ priors
    def _check_data_parameters(self, src) -> None:
        """The priors' values from the parameters and the data (scikit-learn's ``_check_parameters``)."""
        D = src.n_features
        K = self.n_components
        kind = self._kind
        self.weight_concentration_prior_ = (1.0 / K if self.weight_concentration_prior is None
                                            else self.weight_concentration_prior)
        self.mean_precision_prior_ = 1.0 if self.mean_precision_prior is None else self.mean_precision_prior
        need_mean = self.mean_prior is None
        need_cov = self.covariance_prior is None
        if need_mean or need_cov:
            mean, cov = _data_moments(src, self)
        if need_mean:
            self.mean_prior_ = mean
        else:
            self.mean_prior_ = check_array(self.mean_prior, dtype=[np.float64, np.float32], ensure_2d=False)
            _check_shape(self.mean_prior_, (D,), "means")
        if self.degrees_of_freedom_prior is None:
            self.degrees_of_freedom_prior_ = D
        elif self.degrees_of_freedom_prior > D - 1.0:
            self.degrees_of_freedom_prior_ = self.degrees_of_freedom_prior
        else:
            raise ValueError("The parameter 'degrees_of_freedom_prior' should be greater than %d, but got "
                             "%.3f." % (D - 1, self.degrees_of_freedom_prior))
        if need_cov:
            self.covariance_prior_ = {"full": cov, "tied": cov, "diag": np.diag(cov).copy(),
                                      "spherical": np.diag(cov).mean()}[kind.name]
        elif kind is cv.SPHERICAL:
            self.covariance_prior_ = self.covariance_prior
        else:
            p = check_array(self.covariance_prior, dtype=[np.float64, np.float32], ensure_2d=False)
            shape = (D, D) if kind.matrix else (D,)
            _check_shape(p, shape, f"{kind.name} covariance_prior")
            kind.check_precisions_init(p[None] if kind is cv.FULL else p)
            self.covariance_prior_ = p

    def _check_parameters(self, X: ArrayLike) -> None:
        """scikit-learn's private ``_check_parameters(X)``: the priors from in-memory X."""
        X = check_array(X, dtype=[np.float64, np.float32])
        self._check_data_parameters(ArraySource(X, None, self.n_threads, checked=True))

    def _initialize_parameters(self, X: ArrayLike, random_state) -> None:
        """scikit-learn's private ``_initialize_parameters(X, random_state)`` for in-memory X."""
        X = check_array(X, dtype=[np.float64, np.float32])
        self._initialize(ArraySource(X, None, self.n_threads, checked=True), random_state)

    # ------------------------------------------------------------------ the variational model
    def _prior(self, beta) -> _Prior:
        return _Prior(float(self.degrees_of_freedom_prior_), np.asarray(self.covariance_prior_, dtype=np.float64),
                      float(self.mean_precision_prior_), beta, np.asarray(self.mean_prior_, dtype=np.float64))

    def _estimate_log_weights(self) -> np.ndarray:
        """E[log pi_k] (K,) (scikit-learn's ``_estimate_log_weights``)."""
        wc = self.weight_concentration_
        if self.weight_concentration_prior_type == "dirichlet_process":
            digamma_sum = digamma(wc[0] + wc[1])
            digamma_a = digamma(wc[0])
            digamma_b = digamma(wc[1])
            return digamma_a - digamma_sum + np.hstack((0, np.cumsum(digamma_b - digamma_sum)[:-1]))
        return digamma(wc) - digamma(np.sum(wc))

    def _core_log_weights(self) -> np.ndarray:
        """The per-component constants that replace ``log w_k`` in the E-step (module docstring)."""
        D = self.means_.shape[1]
        dof = np.asarray(self.degrees_of_freedom_, dtype=np.float64)
        log_lambda = D * np.log(2.0) + np.sum(digamma(0.5 * (dof - np.arange(D)[:, None])), 0)
        const = 0.5 * (log_lambda - D / self.mean_precision_) - 0.5 * D * np.log(dof)
        return self._estimate_log_weights() + const

    def _matrices(self, dtype) -> cv.ModelMatrices:
        return self._core_cache().matrices(self.weights_, self.means_, self.covariances_, dtype, self._kind,
                                           log_weights=self._core_log_weights())

    # ------------------------------------------------------------------ M-step
    @one_blas_thread
    def m_step(self, stats: GMMStats) -> "BayesianGaussianMixture":
        """Variational M-step from the E-step's statistics (scikit-learn's ``_m_step``).

        ``nk = n + 10 eps``, ``xk`` and ``sk`` the ML means and covariances of the type (:meth:`GMMStats.moments`, float64's eps) plus
        ``reg_covar`` give the Dirichlet (or stick-breaking Beta) posterior
        ``weight_concentration_``, ``mean_precision_ = beta_0 + nk``, ``means_ = (beta_0 m_0 + nk
        xk) / mean_precision_`` and the Wishart's ``degrees_of_freedom_`` / ``covariances_``
        (Bishop 10.58-10.63).  The priors are set by ``fit`` (or ``_check_parameters``).

        Parameters
        ----------
        stats : GMMStats
            Statistics of this model's E-step (:meth:`accumulate`), (K, D), summed over any
            number of pieces of data.

        Returns
        -------
        self
        """
        if not isinstance(stats, GMMStats):
            raise TypeError(f"m_step expects GMMStats, got {type(stats).__name__}")
        kind = self._kind
        dtype = self.means_.dtype if hasattr(self, "means_") else np.float64
        stats = self._checked_stats(stats, dtype)
        eps = 10 * np.finfo(dtype).eps
        nk = stats.n + eps
        xk, sk = kind.estimate(stats, MOMENTS_EPS)
        sk = sk + kind.regularisation(self.reg_covar, xk.shape[1])
        if self.weight_concentration_prior_type == "dirichlet_process":
            wc = (1.0 + nk, self.weight_concentration_prior_ + np.hstack((np.cumsum(nk[::-1])[-2::-1], 0)))
        else:
            wc = self.weight_concentration_prior_ + nk
        beta = self.mean_precision_prior_ + nk
        means = (self.mean_precision_prior_ * np.asarray(self.mean_prior_, dtype=np.float64)
                 + nk[:, None] * xk) / beta[:, None]
        dof, cov = kind.wishart(nk, xk, sk, self._prior(beta))
        if not np.all(np.isfinite(cov)) or not np.all(np.isfinite(means)):
            raise ValueError(cv.ILL_DEFINED)
        self._set_parameters((wc, beta, means, dof, cov), dtype)
        if not hasattr(self, "n_features_in_"):
            self.n_features_in_ = means.shape[1]
        return self

    @one_blas_thread
    def _set_parameters(self, params, dtype) -> None:
        wc, beta, means, dof, cov = params
        kind = self._kind
        chol = kind.precisions_cholesky(cov)      # scikit-learn's message unless positive definite
        self.weight_concentration_ = wc
        self.mean_precision_ = np.asarray(beta, dtype=np.float64)
        self.degrees_of_freedom_ = dof
        if self.weight_concentration_prior_type == "dirichlet_process":
            s = wc[0] + wc[1]
            w = wc[0] / s * np.hstack((1, np.cumprod(wc[1][:-1] / s[:-1])))
        else:
            w = np.asarray(wc, dtype=np.float64)
        self.weights_ = (w / np.sum(w)).astype(dtype)
        self.means_ = np.asarray(means, dtype=dtype)
        self.covariances_ = np.asarray(cov, dtype=dtype)
        self.precisions_cholesky_ = chol.astype(dtype)
        self.precisions_ = kind.precisions(chol).astype(dtype)
        self._core_cache().invalidate()

    def _get_parameters(self):
        wc = self.weight_concentration_
        wc = tuple(a.copy() for a in wc) if isinstance(wc, tuple) else np.copy(wc)
        return (wc, self.mean_precision_.copy(), self.means_.astype(np.float64),
                np.copy(self.degrees_of_freedom_), self.covariances_.astype(np.float64))

    # ------------------------------------------------------------------ EM
    def _sample_em(self, src, random_state) -> None:
        """None here: the variational fit starts from the (sampled) KMeans statistics, as before;
        its priors are scaled to all rows, not to a sample."""

    def _initialize(self, src, random_state) -> None:
        stats = init_stats(src, self.init_params, self.n_components, self.kmeans_max_samples, random_state,
                           full=self._kind.matrix)
        for attr in ("means_", "covariances_"):
            if hasattr(self, attr):
                delattr(self, attr)
        dtype = src.dtype
        self.means_ = np.zeros((self.n_components, src.n_features), dtype=dtype)   # m_step's dtype and D
        self.m_step(stats)

    @one_blas_thread
    def _em_iteration(self, stats: GMMStats) -> float:
        """M-step, then scikit-learn's lower bound: the E-step's entropy with the new parameters' terms."""
        entropy = stats.loglik - self._expected_log_prob(stats)
        self.m_step(stats)
        return entropy + self._bound_terms()

    def _expected_log_prob(self, stats: GMMStats) -> float:
        """``sum_i w_i sum_k r_ik log p_ik`` of the statistics under the current (E-step) model."""
        kind = self._kind
        K, D = self.means_.shape
        chol = kind.precisions_cholesky(self.covariances_.astype(np.float64))
        const = (self._core_log_weights() - 0.5 * D * np.log(2 * np.pi)
                 + kind.log_det_cholesky(chol, D))
        quad = kind.quadratic_total(stats, self.means_.astype(np.float64), kind.precisions(chol))
        return float((stats.n * const).sum() - 0.5 * quad)

    def _bound_terms(self) -> float:
        """scikit-learn's ``_compute_lower_bound`` less the entropy term, for the current parameters."""
        kind = self._kind
        D = self.means_.shape[1]
        chol = kind.precisions_cholesky(self.covariances_.astype(np.float64))
        dof = self.degrees_of_freedom_
        log_det = kind.log_det_cholesky(chol, D) - 0.5 * D * np.log(dof)
        if kind is cv.TIED:
            log_wishart = self.n_components * np.float64(_log_wishart_norm(dof, log_det, D)[0])
        else:
            log_wishart = np.sum(_log_wishart_norm(dof, log_det, D))
        if self.weight_concentration_prior_type == "dirichlet_process":
            log_norm_weight = -np.sum(betaln(self.weight_concentration_[0], self.weight_concentration_[1]))
        else:
            log_norm_weight = _log_dirichlet_norm(self.weight_concentration_)
        return float(-log_wishart - log_norm_weight - 0.5 * D * np.sum(np.log(self.mean_precision_)))


def _check_shape(param, shape, name) -> None:
    if param.shape != shape:
        raise ValueError(f"The parameter '{name}' should have the shape of {shape}, but got {param.shape}")


def _data_moments(src, gm) -> tuple[np.ndarray, np.ndarray]:
    """The data's (weighted) mean (D,) and covariance (D, D) with ddof=1 (``numpy.cov``), float64.

    In-memory data: NumPy directly (scikit-learn's numbers when unweighted); other sources: one
    pass of a one-component "full" model's E-step (its statistics are the weighted sums).
    """
    if src.in_memory:
        X, sw = src.X, src.sw
        if sw is None:
            return X.mean(axis=0), np.atleast_2d(np.cov(X.T))
        mean = np.average(X, axis=0, weights=sw)
        d = X - mean
        return mean, (d.T * sw) @ d / (sw.sum() - 1.0)
    D = src.n_features
    one = GaussianMixture.from_parameters(np.ones(1), np.zeros((1, D)), np.eye(D)[None], covariance_type="full",
                                          chunk_size=gm.chunk_size, n_threads=gm.n_threads)
    st = src.e_step(one)
    n = st.n[0]
    mean = st.sum_x[0] / n
    return mean, (st.sum_xx[0] - n * np.outer(mean, mean)) / (n - 1.0)
