"""``gmmext.GaussianMixtureIC``: the best Gaussian mixture by BIC or AIC over components and types.

Every candidate ``(n_components, covariance_type)`` in the given ranges is fitted (best of
``n_init`` initialisations) and the one with the lowest criterion is kept (mclust's
``Mclust``, with scikit-learn's sign: lower is better).  Warm paths, where sound:

* X is validated once and every fit trusts it;
* the initialisations depend on ``n_components`` only (k-means labels, random responsibilities
  or rows), not on the covariance type, so each ``(n_components, init)`` draws its initial
  assignment once (``gmmext._init.init_stats``, from its own seed) and the four types start
  from the same assignment, through ``weights_init`` / ``means_init`` / ``precisions_init``
  (their initial parameters are what ``GaussianMixture``'s own initialisation gives from those
  statistics); a candidate's ``n_init`` fits are these shared starts, each followed, when
  ``GaussianMixture``'s would be (a sampled KMeans start), by its EM on the same drawn rows in the
  candidate's type (that EM depends on the type), so that a candidate's fit is
  ``GaussianMixture``'s from the same seed;
* the candidates' fits run in parallel threads (the core releases the GIL): ``n_jobs`` fits at
  once, each core call on ``max(1, n_threads // n_jobs)`` threads, so that the machine's
  threads are shared, not multiplied.

Results are deterministic for a given ``random_state``, ``n_jobs`` and ``n_threads`` (each
candidate's seeds are drawn up front, whatever order the threads finish in).
"""
from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral, Real
from typing import Any, Sequence

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _covariance as cv
from ._blocked import ArraySource
from ._engine import available_threads
from ._init import DEFAULT_TOL, init_stats, sample_em_rows
from ._mixture import _INIT_PARAMS, GaussianMixture
from ._sklearn_compat import Interval, StrOptions, _fit_context
from ._stats import GMMStats
from ._validation import check_sample_weight

__all__ = ["GaussianMixtureIC"]


def _types(covariance_type) -> tuple[str, ...]:
    if isinstance(covariance_type, str):
        return cv.COVARIANCE_TYPES if covariance_type == "all" else (covariance_type,)
    types = tuple(covariance_type)
    bad = [t for t in types if t not in cv.COVARIANCE_TYPES]
    if not types or bad or len(set(types)) != len(types):
        raise ValueError(f"covariance_type must be 'all', one of {cv.COVARIANCE_TYPES} or a list of "
                         f"distinct ones, got {covariance_type!r}")
    return types


def _type_stats(stats: GMMStats, kind: cv.CovarianceType) -> GMMStats:
    """Full (K, D, D) initial statistics in the layout of ``kind``'s M-step."""
    if kind.matrix:
        return stats
    return GMMStats(stats.n, stats.sum_x, np.diagonal(stats.sum_xx, axis1=1, axis2=2).copy(),
                    stats.loglik, stats.n_samples)


class GaussianMixtureIC(DensityMixin, BaseEstimator):
    """Gaussian mixture selected by BIC or AIC over numbers of components and covariance types.

    Fits ``gmmext.GaussianMixture`` for every ``n_components`` in ``[min_components,
    max_components]`` and every covariance type of ``covariance_type`` and keeps the one with the
    lowest criterion (module docstring: shared initialisations, parallel candidates).

    Parameters
    ----------
    min_components : int, default=1
    max_components : int, default=10
        Candidates' numbers of components (inclusive); those above n_samples are not fitted.
    covariance_type : "all", one of "full", "tied", "diag", "spherical", or a list of them, default="all"
        "all" is the four types (mclust's VVV, EEE, VVI, VII).
    criterion : {"bic", "aic"}, default="bic"
        ``bic = -2 log L + p log n``, ``aic = -2 log L + 2 p`` (log L the total log-likelihood
        in nats, p the free parameters, scikit-learn's ``bic`` / ``aic``; n the number of rows,
        the total weight with ``sample_weight``).  mclust's BIC is ``-bic``.
    n_init : int, default=1
        Initialisations per candidate; the highest final log-likelihood is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
    tol, reg_covar, max_iter, var_floor, chunk_size, kmeans_max_samples : as ``GaussianMixture``
    random_state : int, RandomState instance or None, default=None
    n_jobs : int or None, default=None
        Candidate fits run at once in threads (None: ``n_threads``, or every core).
    n_threads : int or None, default=None
        Threads in all (None: every core this process may run on); each fit's core calls get
        ``max(1, n_threads // n_jobs)``.

    Attributes
    ----------
    best_estimator_ : GaussianMixture
        The selected model, fitted on X.
    n_components_ : int
    covariance_type_ : str
    criterion_ : float
        Its criterion value.
    cv_results_ : dict of ndarrays, one entry per candidate (in order of n_components, then type)
        ``"param_n_components"`` (int), ``"param_covariance_type"`` (str), ``"bic"``, ``"aic"``,
        ``"log_likelihood"`` (total, nats), ``"n_parameters"`` (int), ``"converged"`` (bool),
        ``"n_iter"`` (int) and ``"rank"`` (1 = selected; by the criterion).
    n_features_in_ : int
    """

    _parameter_constraints: dict = {
        "min_components": [Interval(Integral, 1, None, closed="left")],
        "max_components": [Interval(Integral, 1, None, closed="left")],
        "covariance_type": [StrOptions({"all", *cv.COVARIANCE_TYPES}), list, tuple],
        "criterion": [StrOptions({"bic", "aic"})],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "init_params": [StrOptions(set(_INIT_PARAMS))],
        "tol": [Interval(Real, 0.0, None, closed="left")],
        "reg_covar": [Interval(Real, 0.0, np.inf, closed="left")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "var_floor": [Interval(Real, 0.0, np.inf, closed="left")],
        "random_state": ["random_state"],
        "n_jobs": [Interval(Integral, 1, None, closed="left"), None],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "chunk_size": [Interval(Integral, 1, None, closed="left"), None],
        "kmeans_max_samples": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
    }

    def __init__(self, *, min_components: int = 1, max_components: int = 10,
                 covariance_type: str | Sequence[str] = "all", criterion: str = "bic", n_init: int = 1,
                 init_params: str = "kmeans", tol: float = DEFAULT_TOL, reg_covar: float = 1e-6,
                 max_iter: int = 100, var_floor: float = 0.0,
                 random_state: int | np.random.RandomState | None = None, n_jobs: int | None = None,
                 n_threads: int | None = None, chunk_size: int | None = None,
                 kmeans_max_samples: int | str | None = "auto"):
        self.min_components = min_components
        self.max_components = max_components
        self.covariance_type = covariance_type
        self.criterion = criterion
        self.n_init = n_init
        self.init_params = init_params
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.var_floor = var_floor
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.n_threads = n_threads
        self.chunk_size = chunk_size
        self.kmeans_max_samples = kmeans_max_samples

    def _split_threads(self, n_candidates: int) -> tuple[int, int]:
        total = self.n_threads or available_threads()
        jobs = max(1, min(self.n_jobs or total, n_candidates))
        return jobs, max(1, total // jobs)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike, y: Any = None, sample_weight: ArrayLike | None = None) -> "GaussianMixtureIC":
        """Fit every candidate on X and keep the best.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None
            As ``GaussianMixture.fit``; n in the BIC is then the total weight.

        Returns
        -------
        self
        """
        types = _types(self.covariance_type)
        if self.min_components > self.max_components:
            raise ValueError(f"min_components ({self.min_components}) must be <= max_components "
                             f"({self.max_components})")
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        N = X.shape[0]
        sw = check_sample_weight(sample_weight, N)
        ks = [k for k in range(self.min_components, self.max_components + 1) if k <= N]
        if not ks:
            raise ValueError("Expected n_samples >= n_components but got n_components = "
                             f"{self.min_components}, n_samples = {N}")
        rng = check_random_state(self.random_state)
        seeds = rng.randint(np.iinfo(np.int32).max, size=(len(ks), self.n_init))
        src = ArraySource(X, sw, self.n_threads, checked=True)
        starts = {k: [self._start(src, k, s) for s in seeds[i]] for i, k in enumerate(ks)}
        candidates = [(k, t) for k in ks for t in types]
        jobs, threads = self._split_threads(len(candidates))
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            fitted = list(pool.map(lambda c: self._fit_candidate(X, sw, c[0], c[1], starts[c[0]], threads),
                                   candidates))
        n = float(N if sw is None else sw.sum())
        loglik = np.array([ll for _, ll in fitted])
        npar = np.array([gm._n_parameters() for gm, _ in fitted])
        bic = -2 * loglik + npar * np.log(n)
        aic = -2 * loglik + 2 * npar
        crit = bic if self.criterion == "bic" else aic
        order = np.argsort(crit, kind="stable")
        rank = np.empty(len(crit), dtype=np.int64)
        rank[order] = np.arange(1, len(crit) + 1)
        best = int(order[0])
        self.cv_results_ = {
            "param_n_components": np.array([k for k, _ in candidates]),
            "param_covariance_type": np.array([t for _, t in candidates]),
            "bic": bic, "aic": aic, "log_likelihood": loglik, "n_parameters": npar,
            "converged": np.array([gm.converged_ for gm, _ in fitted]),
            "n_iter": np.array([gm.n_iter_ for gm, _ in fitted]),
            "rank": rank,
        }
        self.best_estimator_ = fitted[best][0]
        self.best_estimator_.set_params(n_threads=self.n_threads)
        self.n_components_, self.covariance_type_ = candidates[best]
        self.criterion_ = float(crit[best])
        return self

    def _start(self, src, k: int, seed: int):
        """One shared start for ``k`` components: the initial statistics (full layout) and the rows
        of the EM on a sample that follows a sampled KMeans start, with their weights (None, None
        when there is none), drawn from one ``RandomState(seed)`` in ``GaussianMixture``'s order."""
        rs = np.random.RandomState(seed)
        stats = init_stats(src, self.init_params, k, self.kmeans_max_samples, rs, full=True)
        idx = sample_em_rows(src.n_rows, self.init_params, k, self.kmeans_max_samples, rs)
        return (stats, None, None) if idx is None else (stats, *src.take(idx))

    def _fit_candidate(self, X, sw, k: int, cov: str, starts: list, threads: int):
        """The best of the shared starts for one (k, type): (fitted model, total log-likelihood).
        A start with sampled rows gets ``GaussianMixture``'s EM on them in this type first."""
        kind = cv.get(cov)
        common = dict(covariance_type=cov, tol=self.tol, reg_covar=self.reg_covar, max_iter=self.max_iter,
                      var_floor=self.var_floor, chunk_size=self.chunk_size, n_threads=threads)
        best, best_ll = None, -np.inf
        for stats, rows, w in starts:
            init = GaussianMixture(k, **common).m_step(_type_stats(stats, kind))
            if rows is not None:
                init._em_on_sample(rows, w, X.shape[0])
            gm = GaussianMixture(k, weights_init=init.weights_, means_init=init.means_,
                                 precisions_init=init.precisions_, **common)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                gm.fit(X, sample_weight=sw)
            st = gm.accumulate(X, sample_weight=sw, check_input=False)
            if best is None or st.loglik > best_ll:
                best, best_ll = gm, st.loglik
        return best, best_ll

    # ------------------------------------------------------------------ the selected model
    def _checked(self, X):
        """X validated at this estimator's boundary as scikit-learn validates it for a fitted
        estimator (``validate_data``: feature names against fit's, the number of features,
        finiteness, this class's name in the messages); the selected model then trusts it
        (``check_input=False``: no second scan)."""
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=[np.float64, np.float32])

    def predict(self, X: ArrayLike) -> np.ndarray:
        """``best_estimator_.predict(X)``: the most probable component, (n_samples,) int64."""
        X = self._checked(X)
        return self.best_estimator_.predict(X, check_input=False)

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """``best_estimator_.predict_proba(X)``: (n_samples, n_components_)."""
        X = self._checked(X)
        return self.best_estimator_.predict_proba(X, check_input=False)

    def score_samples(self, X: ArrayLike) -> np.ndarray:
        """``best_estimator_.score_samples(X)``: log p(x) in nats, (n_samples,)."""
        X = self._checked(X)
        return self.best_estimator_.score_samples(X, check_input=False)

    def score(self, X: ArrayLike, y: Any = None) -> float:
        """Average log-likelihood per sample under the selected model (nats)."""
        X = self._checked(X)
        return self.best_estimator_.score(X, check_input=False)

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``best_estimator_.sample(n_samples)``: X (n_samples, n_features) and labels."""
        check_is_fitted(self)
        return self.best_estimator_.sample(n_samples)
