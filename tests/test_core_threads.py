"""The compiled core called from many Python threads at once (pytest-run-parallel).

Every test here runs on 8 threads simultaneously (``force_parallel_threads``): each thread calls the
core (scoring a shared model, accumulating statistics, fitting its own model, top-C scoring) and
checks its own answer against a direct NumPy/SciPy formula, so that a race on any state the core
shared between calls (module-level state, a cached buffer, the frame table) would show up as a wrong
number in some thread.  The core releases the GIL, so its OpenMP regions really overlap here on
every CPython; on a free-threaded build the Python around them overlaps too, and pytest-run-parallel
fails the run if importing the core re-enabled the GIL (the ``freethreading_compatible`` directive,
setup.py; the audit behind it is in docs/install.md).

``pytest --parallel-threads=8 $(python tools/core_tests.py)`` runs the whole core subset this way.
"""
import sys
import sysconfig

import numpy as np
import pytest
from scipy.special import logsumexp

from conftest import make_blobs, random_params, reference_logprob
from gmmext import GaussianMixture, ModelStack, top_c_loglik

pytest.importorskip("pytest_run_parallel")
pytestmark = pytest.mark.force_parallel_threads(8)

K, D = 6, 5


@pytest.fixture(scope="module")
def shared():
    """One model and one data set that every thread reads at the same time."""
    w, mu, var = random_params(K, D, seed=3)
    X = make_blobs(n=3000, d=D, k=K, seed=3)
    gm = GaussianMixture.from_parameters(w, mu, var, covariance_type="diag", n_threads=2, chunk_size=256)
    return gm, X, reference_logprob(X, w, mu, var)


@pytest.fixture(scope="module")
def second():
    """A second model (for a stack of two) and its parameters."""
    w, mu, var = random_params(K, D, seed=4)
    return GaussianMixture.from_parameters(w, mu, var, covariance_type="diag", n_threads=2), (w, mu, var)


def test_score_samples_of_a_shared_model(shared):
    gm, X, ref = shared
    for _ in range(3):
        np.testing.assert_allclose(gm.score_samples(X), logsumexp(ref, axis=1), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(gm.predict_proba(X[:500]),
                                   np.exp(ref[:500] - logsumexp(ref[:500], axis=1, keepdims=True)), atol=1e-10)


def test_accumulate_of_a_shared_model(shared, thread_index):
    gm, X, ref = shared
    rows = slice(200 * thread_index, 200 * thread_index + 1200)      # every thread its own rows
    x = X[rows]
    r = np.exp(ref[rows] - logsumexp(ref[rows], axis=1, keepdims=True))
    st = gm.accumulate(x)
    np.testing.assert_allclose(st.n, r.sum(0), rtol=1e-9)
    np.testing.assert_allclose(st.sum_x, r.T @ x, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(st.sum_xx, r.T @ x**2, rtol=1e-9, atol=1e-9)
    assert st.loglik == pytest.approx(logsumexp(ref[rows], axis=1).sum(), rel=1e-11)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")      # the 1-iteration start
def test_fit_in_every_thread_raises_the_likelihood(thread_index):
    """Each thread fits its own data: EM from the same start never lowers the likelihood, and the
    fitted model's log-likelihoods are the formula's for its own parameters."""
    X = make_blobs(n=2000, d=D, k=3, seed=10 + thread_index)
    start = GaussianMixture(n_components=3, covariance_type="diag", random_state=0, max_iter=1,
                            n_threads=2).fit(X)
    gm = GaussianMixture(n_components=3, covariance_type="diag", random_state=0, max_iter=50, tol=1e-6,
                         n_threads=2).fit(X)
    assert gm.score(X) >= start.score(X) - 1e-9
    ref = reference_logprob(X, gm.weights_, gm.means_, gm.covariances_)
    np.testing.assert_allclose(gm.score_samples(X), logsumexp(ref, axis=1), rtol=1e-9, atol=1e-9)


def test_top_c_scoring_of_a_shared_stack(shared, second, thread_index):
    """Two models scored on each frame's 3 best components (of the first model, by the formula)."""
    gm, X, ref = shared
    other, (w2, mu2, var2) = second
    rows = slice(100 * thread_index, 100 * thread_index + 400)
    x = X[rows]
    idx = np.ascontiguousarray(np.argsort(-ref[rows], axis=1)[:, :3]).astype(np.int32)
    want = [np.take_along_axis(r, idx, axis=1) for r in (ref[rows], reference_logprob(x, w2, mu2, var2))]
    got = top_c_loglik(ModelStack([gm, other]), x, idx)
    np.testing.assert_allclose(got, [logsumexp(v, axis=1).sum() for v in want], rtol=1e-10)


@pytest.mark.skipif(not sysconfig.get_config_var("Py_GIL_DISABLED"), reason="a free-threaded CPython only")
def test_importing_the_core_keeps_the_gil_disabled():
    import gmmext._core  # noqa: F401

    assert not sys._is_gil_enabled()
