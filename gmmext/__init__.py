"""gmmext: a fast Gaussian mixture model in Python (full, tied, diagonal and spherical covariances).

* :class:`GaussianMixture`: drop-in for ``sklearn.mixture.GaussianMixture`` (covariance types
  "full", "tied", "diag", "spherical"), fitted by EM in a compiled, chunked, multi-threaded
  core (float32 or float64).
* :class:`BayesianGaussianMixture`: drop-in for ``sklearn.mixture.BayesianGaussianMixture``, its
  variational E-step in the same core.
* :class:`GaussianMixtureIC`: the best mixture by BIC / AIC over numbers of components and
  covariance types (mclust's model selection).
* :class:`GMMStats`: mergeable sufficient statistics (``gm.accumulate(X)`` / ``gm.m_step(stats)``)
  for streaming and distributed training.
* :class:`ModelStack` / :func:`top_c_loglik`: top-C fast scoring of many models adapted from one UBM.
* ``single_thread_blas``: a context manager limiting BLAS to one thread, re-entrant and shared
  with the core (small matrix products are much faster on one thread, above all on a busy machine).
"""
from ._mixture import GaussianMixture
from ._bayesian import BayesianGaussianMixture
from ._selection import GaussianMixtureIC
from ._scoring import ModelStack, top_c_loglik
from ._stats import GMMStats
from ._dask import dask_accumulate
from ._blas import single_thread_blas

from importlib import metadata as _metadata

try:  # the installed distribution's version: pyproject.toml is its one source
    __version__ = _metadata.version("gmmext")
except _metadata.PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"
del _metadata
__all__ = ["GaussianMixture", "BayesianGaussianMixture", "GaussianMixtureIC", "GMMStats", "ModelStack", "dask_accumulate", "single_thread_blas", "top_c_loglik",
           "__version__"]
