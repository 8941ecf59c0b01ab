import numpy as np
import pytest


def make_blobs(n=1500, d=4, k=3, seed=0, dtype=np.float64):
    """Well-separated diagonal Gaussian blobs of unequal spread."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=6.0, size=(k, d))
    scales = rng.uniform(0.5, 2.0, size=(k, d))
    lab = rng.integers(0, k, size=n)
    X = centres[lab] + rng.standard_normal((n, d)) * scales[lab]
    return X.astype(dtype)


def random_params(k, d, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(k))
    mu = rng.normal(scale=3.0, size=(k, d))
    var = rng.uniform(0.3, 3.0, size=(k, d))
    return w, mu, var


def reference_logprob(X, w, mu, var):
    """(N, K) log w_k + sum_d log N(x_d; mu_kd, var_kd), straight from scipy.stats."""
    from scipy.stats import norm
    X = np.asarray(X, dtype=np.float64)
    return np.log(w)[None, :] + norm.logpdf(X[:, None, :], mu[None], np.sqrt(var)[None]).sum(-1)


@pytest.fixture
def blobs():
    return make_blobs()


# --- the two fixtures of scikit-learn's own conftest that tests/sklearn_mixture uses, with its defaults:
# global_dtype is float64, plus float32 when SKLEARN_RUN_FLOAT32_TESTS=1 (scikit-learn's rule; it doubles
# that suite's time, and gmmext's float32 path is checked in tests/test_gmm_covtypes.py);
# global_random_seed is scikit-learn's default, 42.
import os as _os  # noqa: E402

_SK_DTYPES = [np.float64] + ([np.float32] if _os.environ.get("SKLEARN_RUN_FLOAT32_TESTS") == "1" else [])


@pytest.fixture(params=_SK_DTYPES, ids=[np.dtype(d).name for d in _SK_DTYPES])
def global_dtype(request):
    return request.param


@pytest.fixture(params=[42])
def global_random_seed(request):
    return request.param
