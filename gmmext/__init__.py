"""gmmext: a fast Gaussian mixture model in Python (fastest for diagonal covariances).

* :class:`GaussianMixture`: drop-in for ``sklearn.mixture.GaussianMixture`` (covariance types
  "full", "tied", "diag", "spherical"), fitted by EM in a compiled, chunked, multi-threaded
  core (float32 or float64).
* :class:`GMMStats`: mergeable sufficient statistics (``gm.accumulate(X)`` / ``gm.m_step(stats)``)
  for streaming and distributed training.
"""
from ._mixture import GaussianMixture
from ._scoring import ModelStack, top_c_loglik
from ._stats import GMMStats
from ._dask import dask_accumulate

__version__ = "0.1.0"
__all__ = ["GaussianMixture", "GMMStats", "ModelStack", "dask_accumulate", "top_c_loglik", "__version__"]
