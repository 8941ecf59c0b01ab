"""gmmext: a fast Gaussian mixture model in Python (full, tied, diagonal and spherical covariances).

* :class:`GaussianMixture`: drop-in for ``sklearn.mixture.GaussianMixture`` (covariance types
  "full", "tied", "diag", "spherical"), fitted by EM in a compiled, chunked, multi-threaded
  core (float32 or float64).
* :class:`MixtureModel`: a mixture given by its parameters (``MixtureModel.from_parameters``):
  GaussianMixture's scoring, statistics and MAP adaptation (the same code: GaussianMixture is
  a MixtureModel plus fitting and scikit-learn's estimator API), without importing scikit-learn.
* :class:`BayesianGaussianMixture`: drop-in for ``sklearn.mixture.BayesianGaussianMixture``, its
  variational E-step in the same core.
* :class:`GaussianMixtureIC`: the best mixture by BIC / AIC over numbers of components and
  covariance types (mclust's model selection).
* :class:`GMMStats`: mergeable sufficient statistics (``gm.accumulate(X)`` / ``gm.m_step(stats)``)
  for streaming and distributed training.
* :class:`ModelStack` / :func:`top_c_loglik`: top-C fast scoring of many models adapted from one UBM.
* ``packed_gram`` / ``packed_posteriors`` / ``packed_solve``: per-matrix LAPACK on batches of
  small symmetric positive definite matrices held as packed upper triangles (Gaussian posteriors
  of factor-analysis models such as the i-vector extractor), threaded in the core; ``row_gemm``:
  a product whose rows are shared among the core's threads, BLAS's own threads left asleep.
* ``single_thread_blas``: a context manager limiting BLAS to one thread, re-entrant and shared
  with the core (small matrix products are much faster on one thread, above all on a busy machine).
"""
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._bayesian import BayesianGaussianMixture
    from ._blas import single_thread_blas
    from ._dask import dask_accumulate
    from ._mixture import GaussianMixture
    from ._model import MixtureModel
    from ._packed import packed_gram, packed_posteriors, packed_solve, row_gemm
    from ._scoring import ModelStack, top_c_loglik
    from ._selection import GaussianMixtureIC
    from ._stats import GMMStats


def __getattr__(name: str):
    """The public names, each imported on first use (PEP 562): ``import gmmext`` and
    ``from gmmext import GMMStats`` do not import scikit-learn (the estimators do), so a
    command that only reads statistics or a store starts quickly."""
    if name == "GaussianMixture":
        from ._mixture import GaussianMixture as value
    elif name == "MixtureModel":
        from ._model import MixtureModel as value
    elif name == "BayesianGaussianMixture":
        from ._bayesian import BayesianGaussianMixture as value
    elif name == "GaussianMixtureIC":
        from ._selection import GaussianMixtureIC as value
    elif name == "ModelStack":
        from ._scoring import ModelStack as value
    elif name == "top_c_loglik":
        from ._scoring import top_c_loglik as value
    elif name == "GMMStats":
        from ._stats import GMMStats as value
    elif name == "dask_accumulate":
        from ._dask import dask_accumulate as value
    elif name in ("packed_gram", "packed_posteriors", "packed_solve", "row_gemm"):
        from . import _packed
        value = getattr(_packed, name)
    elif name == "single_thread_blas":
        from ._blas import single_thread_blas as value
    else:
        raise AttributeError(f"module 'gmmext' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

from importlib import metadata as _metadata

try:  # the installed distribution's version: pyproject.toml is its one source
    __version__ = _metadata.version("gmmext")
except _metadata.PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"
del _metadata
__all__ = ["GaussianMixture", "MixtureModel", "BayesianGaussianMixture", "GaussianMixtureIC", "GMMStats", "ModelStack",
           "dask_accumulate", "packed_gram", "packed_posteriors", "packed_solve", "row_gemm", "single_thread_blas",
           "top_c_loglik", "__version__"]
