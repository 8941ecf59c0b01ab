"""Model matrices and engines are built once and reused, and never go stale.

The reference for every result is a model freshly made by ``from_parameters`` from the same
parameters (whose cache is empty), and for the counts a wrapper around
``gmmext._engine.model_matrices`` that counts the builds.
"""
import copy
import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sklearn.base import clone

import gmmext._engine as engine_mod
from gmmext import GaussianMixture, ModelStack
from conftest import random_params

K, D = 5, 3


def _model(dtype=np.float64, seed=1, **kw):
    w, mu, var = random_params(K, D, seed=seed)
    return GaussianMixture.from_parameters(w.astype(dtype), mu.astype(dtype), var.astype(dtype), **kw)


def _fresh(gm):
    return GaussianMixture.from_parameters(gm.weights_.copy(), gm.means_.copy(), gm.covariances_.copy(),
                                           chunk_size=gm.chunk_size, n_threads=gm.n_threads)


@pytest.fixture
def builds(monkeypatch):
    """The number of model_matrices builds so far (a list of one counter)."""
    count = [0]
    real = engine_mod.model_matrices

    def counting(*a, **kw):
        count[0] += 1
        return real(*a, **kw)

    monkeypatch.setattr(engine_mod, "model_matrices", counting)
    return count


def _X(n=200, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).normal(scale=3.0, size=(n, D)).astype(dtype)


def test_matrices_are_built_once_per_dtype(builds):
    gm = _model()
    X = _X()
    for _ in range(20):
        gm.accumulate(X)
        gm.score_samples(X)
        gm.top_components(X, 2)
    gm.accumulate([X[:50], X[50:]])
    gm.accumulate_segments([X[:50], X[50:]])
    assert builds[0] == 1
    gm.score_samples(X.astype(np.float32))      # float64 model: still computed in float64
    assert builds[0] == 1
    m32 = _model(np.float32)
    for _ in range(5):
        m32.score_samples(X.astype(np.float32))
        m32.score_samples(X)                    # float64 input: the float64 matrices
    assert builds[0] == 3


def test_assigning_or_editing_parameters_is_seen(builds):
    gm = _model()
    X = _X()
    gm.score_samples(X)
    rng = np.random.default_rng(2)
    gm.means_ = gm.means_ + rng.normal(size=(K, D))            # a new array assigned
    np.testing.assert_array_equal(gm.score_samples(X), _fresh(gm).score_samples(X))
    gm.means_[1] += 0.5                                         # an in-place edit
    gm.covariances_[0, 2] *= 2.0
    np.testing.assert_array_equal(gm.accumulate(X).sum_x, _fresh(gm).accumulate(X).sum_x)
    w = gm.weights_
    w[:] = np.roll(w, 1)
    np.testing.assert_array_equal(gm.predict_proba(X), _fresh(gm).predict_proba(X))


def test_m_step_and_fit_invalidate():
    gm = _model()
    X = _X(500)
    before = gm.score_samples(X)
    gm.m_step(gm.accumulate(X))
    after = gm.score_samples(X)
    assert not np.array_equal(before, after)
    np.testing.assert_array_equal(after, _fresh(gm).score_samples(X))
    gm.set_params(max_iter=2, tol=0.0, init_params="random_from_data", random_state=0)
    with pytest.warns(Warning):
        gm.fit(X)
    np.testing.assert_array_equal(gm.score_samples(X), _fresh(gm).score_samples(X))


def test_engines_are_reused_per_thread_and_follow_set_params():
    gm = _model()
    X = _X()
    e1 = gm._engine(np.float64, D)
    assert gm._engine(np.float64, D) is e1
    with ThreadPoolExecutor(1) as pool:
        e2 = pool.submit(gm._engine, np.float64, D).result()
    assert e2 is not e1
    gm.set_params(n_threads=1, chunk_size=16)
    e3 = gm._engine(np.float64, D)
    assert e3 is not e1 and (e3.threads, e3.chunk) == (1, 16)
    np.testing.assert_array_equal(gm.score_samples(X), _fresh(gm).score_samples(X))


def test_results_do_not_depend_on_the_calling_thread():
    gm = _model(np.float32, chunk_size=64, n_threads=2)
    X = _X(1000, dtype=np.float32)
    segs = [X[:10], X[10:300], X[300:]]
    main = [gm.accumulate(X), gm.accumulate(segs), gm.accumulate_segments(segs)[1]]
    with ThreadPoolExecutor(2) as pool:
        other = [pool.submit(gm.accumulate, X).result(), pool.submit(gm.accumulate, segs).result(),
                 pool.submit(gm.accumulate_segments, segs).result()[1]]
    for a, b in zip(main, other):
        for f in ("n", "sum_x", "sum_xx"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))


def test_pickle_copy_and_clone_do_not_share_the_cache():
    gm = _model()
    X = _X()
    ref = gm.score_samples(X)
    for other in (pickle.loads(pickle.dumps(gm)), copy.deepcopy(gm)):
        assert other._core_cache() is not gm._core_cache()
        np.testing.assert_array_equal(other.score_samples(X), ref)
        other.means_ = other.means_ + 1.0
        np.testing.assert_array_equal(gm.score_samples(X), ref)       # gm is unaffected
    assert "_core" not in vars(clone(gm))


def test_model_stack_builds_from_arrays_once_per_dtype(monkeypatch):
    """A stack builds its matrices from the models' parameter arrays (no model's cache is used or
    made), once per dtype however often it scores; the result is each model's own likelihood."""
    import gmmext._covariance as cov_mod
    count = [0]
    real = cov_mod.DIAG.terms

    def counting(*a, **kw):
        count[0] += 1
        return real(*a, **kw)

    monkeypatch.setattr(cov_mod.DIAG, "terms", counting)       # the builder of diagonal models
    ubm, spk = _model(seed=1), _model(seed=2)
    X = _X()
    idx, _ = ubm.top_components(X, K)
    count[0] = 0                                  # (the UBM's own matrices were built above)
    stack = ModelStack([spk], reference=ubm)
    first = stack.top_c_loglik(X, idx)
    assert count[0] == 1                          # one batch of models, once
    for _ in range(5):
        np.testing.assert_array_equal(stack.top_c_loglik(X, idx), first)
    assert count[0] == 1
    assert not spk._core_cache()._matrices       # the stack never used the model's cache
    np.testing.assert_allclose(first, spk.score_samples(X).sum(), rtol=1e-12)   # C = K: exact


def test_nbytes_and_released_buffers_leave_the_scores_as_they_were():
    """What a holder of many models counts and frees (the speaker store's bounded cache):
    ``nbytes`` is the fitted arrays plus the core's snapshot and matrices (counted here from the
    arrays themselves), ``share_buffers`` makes a model use another's work buffers (one set per
    thread for many models), and
    ``ModelStack.release_parameters`` the stacked parameters (counted out of ``nbytes``); the
    scores stay the same bits."""
    gm, X = _model(), _X()
    fitted = sum(v.nbytes for k, v in vars(gm).items() if k.endswith("_") and isinstance(v, np.ndarray))
    assert gm.nbytes == fitted
    first = gm.score_samples(X)
    with ThreadPoolExecutor(2) as pool:                      # buffers of other threads too
        list(pool.map(lambda _: gm.score_samples(X), range(4)))
    snapshot = gm.weights_.nbytes + gm.means_.nbytes + gm.covariances_.nbytes
    assert gm.nbytes > fitted + snapshot                     # + the parameters' snapshot and the matrices
    ubm = _model(seed=3)
    other = _fresh(gm)
    other.share_buffers(ubm)
    ubm.score_samples(X)
    np.testing.assert_array_equal(other.score_samples(X), first)
    assert ubm._engine(X.dtype, D) is other._engine(X.dtype, D)    # this thread's one set of buffers
    w, mu = np.stack([gm.weights_] * 3), np.stack([gm.means_] * 3)
    stack = ModelStack.from_parameters(w, mu, ubm)
    idx, _ = ubm.top_components(X, 2)
    before = stack.top_c_loglik(X, idx)
    full = stack.nbytes
    stack.release_parameters()
    assert stack.nbytes == full - w.nbytes - mu.nbytes
    np.testing.assert_array_equal(stack.top_c_loglik(X, idx), before)
