"""A result of the compiled core is a function of its own inputs only.

* the E-step, statistics and log-likelihood products are BLAS gemms: the same call gives the
  same bits for a given thread count and BLAS kernel, whatever BLAS's own thread setting, and
  a frame's outputs in any call agree with SciPy to rounding;
* the own products (src/gmm_gemm.h) that a ModelStack's shared top-C scoring uses give every
  element by the same operations whatever the shapes and the instruction set: checked against
  numpy in float64 and between AVX2 and AVX-512, and for one row / one column computed alone;
* a model's score in a ModelStack (top-C and exact, i.e. C = K; shared and own variances; every
  covariance type; float32 and float64) does not depend on the stack's size, on the model's
  position in it, nor on the other models: stacks of 1, 3, 17 and 1000 give the same bits, and
  the same values as a direct SciPy log-sum-exp over the top-C components, to rounding.
"""
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from gmmext import GaussianMixture, ModelStack, _core
from conftest import random_params, reference_logprob

K, D = 16, 13          # D >= 13: where BLAS kernels gave a stack-dependent score


# ----------------------------------------------------------------------------- the products
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 3, 5), (70, 130, 39), (13, 64, 819), (200, 2, 60)])
def test_products_are_shape_and_instruction_set_independent(dtype, shape):
    m, n, k = shape
    rng = np.random.default_rng(m * n + k)
    A = rng.normal(size=(m, k)).astype(dtype)
    B = rng.normal(size=(k, n)).astype(dtype)
    best, isas = _core.gemm_isas()
    got = _core.gemm_kernel_test(A, B)
    want = A.astype(np.float64) @ B.astype(np.float64)
    tol = (5e-6 if dtype == np.float32 else 1e-14) * np.sqrt(k) * np.abs(A).max() * np.abs(B).max()
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)
    # one accumulator per element, the sum in order: a row or a column alone, a strided A,
    # a B cut elsewhere (another panel boundary) give the same bits
    i, j = m // 2, n // 2
    np.testing.assert_array_equal(_core.gemm_kernel_test(A[i:i + 1], B)[0], got[i])
    np.testing.assert_array_equal(_core.gemm_kernel_test(A, np.ascontiguousarray(B[:, j:j + 1]))[:, 0], got[:, j])
    np.testing.assert_array_equal(_core.gemm_kernel_test(np.asfortranarray(A), B), got)
    np.testing.assert_array_equal(_core.gemm_kernel_test(A, B[:, 1:]), got[:, 1:])
    # the FMA instruction sets agree bit for bit (the portable C one too where it has FMA)
    fma = [isa for isa in isas if isa != 1]
    for isa in fma:
        np.testing.assert_array_equal(_core.gemm_kernel_test(A, B, isa), got)
    if not fma:                                                   # pragma: no cover - a CPU without FMA
        pytest.skip("this CPU has neither AVX2+FMA nor AVX-512: only the portable product ran")


def test_outputs_repeat_bit_for_bit_and_agree_with_scipy_in_any_call():
    """The E-step's products are BLAS gemms (single-threaded, the summed dimension in slices of
    128): for a given thread count and BLAS kernel the same call gives the same bits, and with
    BLAS allowed more threads outside the core too (the core holds it single-threaded).  A
    frame's outputs in another call (another chunk around it) agree to rounding, and with a
    direct SciPy formula."""
    from threadpoolctl import threadpool_limits
    w, mu, var = random_params(40, 7, seed=11)
    rng = np.random.default_rng(12)
    for dtype, rtol in ((np.float32, 2e-5), (np.float64, 1e-12)):
        gm = GaussianMixture.from_parameters(*(a.astype(dtype) for a in (w, mu, var)), chunk_size=64)
        X = rng.normal(scale=3, size=(300, 7)).astype(dtype)
        ss, pp, (idx, ll) = gm.score_samples(X), gm.predict_proba(X), gm.top_components(X, 3)
        with threadpool_limits(limits=2, user_api="blas"):
            np.testing.assert_array_equal(gm.score_samples(X), ss)
            np.testing.assert_array_equal(gm.predict_proba(X), pp)
            np.testing.assert_array_equal(gm.top_components(X, 3)[0], idx)
        want = logsumexp(reference_logprob(X.astype(np.float64), w, mu, var), axis=1)
        np.testing.assert_allclose(ss, want, rtol=rtol, atol=rtol)
        for i in (0, 63, 64, 200, 299):
            for part in (X[i:i + 1], X[i:i + 5], np.concatenate([X[i:i + 1], X[::-1]])):
                np.testing.assert_allclose(gm.score_samples(part)[0], ss[i], rtol=rtol)
                np.testing.assert_allclose(gm.predict_proba(part)[0], pp[i], rtol=rtol, atol=1e-6)


# ----------------------------------------------------------------------------- model stacks
def _reference(X, idx, logprob):
    """sum_i log sum_{k in idx[i]} exp(logprob[i, k]) (SciPy), float64."""
    return logsumexp(np.take_along_axis(logprob, idx.astype(int), 1), axis=1).sum()


def _stack_cases(dtype, kind, n_models, seed):
    """(ubm, models as GaussianMixture, their parameter arrays, a reference log-density function)."""
    rng = np.random.default_rng(seed)
    w, mu, var = random_params(K, D, seed=seed)
    if kind in ("diag-shared", "diag-own"):
        ubm = GaussianMixture.from_parameters(*(a.astype(dtype) for a in (w, mu, var)))
        W = rng.dirichlet(np.ones(K), n_models).astype(dtype)
        MU = (mu[None] + rng.normal(scale=0.7, size=(n_models, K, D))).astype(dtype)
        VAR = None if kind == "diag-shared" else (var[None] * rng.uniform(0.5, 2, size=(n_models, K, D))).astype(dtype)
        return ubm, W, MU, VAR
    cov_type = kind
    X0 = rng.normal(scale=2, size=(2000, D))
    ubm = GaussianMixture(K, covariance_type=cov_type, max_iter=3, random_state=0, tol=0,
                          init_params="random_from_data").fit(X0.astype(dtype))
    W = rng.dirichlet(np.ones(K), n_models).astype(dtype)
    MU = (ubm.means_[None].astype(np.float64) + rng.normal(scale=0.5, size=(n_models, K, D))).astype(dtype)
    return ubm, W, MU, None


def _model(ubm, w, mu, var=None):
    cov = ubm.covariances_ if var is None else var
    return GaussianMixture.from_parameters(w, mu, cov, covariance_type=ubm.covariance_type)


def _logprob(m, X):
    X = X.astype(np.float64)
    w, mu, cov = (a.astype(np.float64) for a in (m.weights_, m.means_, m.covariances_))
    if m.covariance_type == "diag":
        return reference_logprob(X, w, mu, cov)
    if m.covariance_type == "spherical":
        return reference_logprob(X, w, mu, np.repeat(cov[:, None], X.shape[1], axis=1))
    covs = [cov] * len(w) if m.covariance_type == "tied" else cov
    return np.stack([np.log(w[k]) + multivariate_normal(mu[k], covs[k]).logpdf(X) for k in range(len(w))], axis=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["diag-shared", "diag-own"])
def test_stack_score_independent_of_size_and_position_diag(dtype, kind):
    """1000 random diagonal models (the UBM's variances: the shared kernel; their own: the
    per-model one): every model scores the same bits alone, in stacks of 3 and 17 at several
    positions, in the stack of 1000 and in that stack shuffled; and the direct formula."""
    S = 1000
    ubm, W, MU, VAR = _stack_cases(dtype, kind, S, seed=21)
    rng = np.random.default_rng(22)
    X = rng.normal(scale=3, size=(150, D)).astype(dtype)
    big = ModelStack.from_parameters(W, MU, ubm, covariances=VAR)
    perm = rng.permutation(S)
    shuffled = ModelStack.from_parameters(W[perm], MU[perm], ubm, covariances=None if VAR is None else VAR[perm])
    probes = [0, 1, 31, 32, 63, 64, 500, 998, 999]
    for C in (1, 3, K):                                          # C = K: the exact log-likelihood
        idx, _ = ubm.top_components(X, C)
        scores = big.top_c_loglik(X, idx)
        np.testing.assert_array_equal(shuffled.top_c_loglik(X, idx), scores[perm])
        np.testing.assert_array_equal(big.top_c_loglik(X, idx, which=probes[::-1]), scores[probes[::-1]])
        for p in probes:
            mine = _model(ubm, W[p], MU[p], None if VAR is None else VAR[p])
            others = [_model(ubm, W[q], MU[q], None if VAR is None else VAR[q]) for q in rng.choice(S, 16)]
            assert ModelStack([mine], reference=ubm).top_c_loglik(X, idx)[0] == scores[p]
            for size in (3, 17):
                for at in (0, size // 2, size - 1):
                    stack = others[:at] + [mine] + others[at:size - 1]
                    assert ModelStack(stack, reference=ubm).top_c_loglik(X, idx)[at] == scores[p]
            want = _reference(X, idx, _logprob(mine, X))
            assert scores[p] == pytest.approx(want, rel=2e-5 if dtype == np.float32 else 1e-11)
        if C == K:
            assert scores[probes[3]] == pytest.approx(
                _model(ubm, W[32], MU[32], None if VAR is None else VAR[32]).score_samples(X).astype(np.float64).sum(),
                rel=2e-5 if dtype == np.float32 else 1e-11)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["spherical", "tied", "full"])
def test_stack_score_independent_of_size_and_position_other_types(dtype, kind):
    """The other covariance types a stack holds (spherical with the UBM's variances: the shared
    kernel; tied and full: the per-model one): alone and in stacks of 3 and 17 at several
    positions, the same bits; and the direct formula."""
    ubm, W, MU, _ = _stack_cases(dtype, kind, 20, seed=31)
    rng = np.random.default_rng(32)
    X = rng.normal(scale=2, size=(120, D)).astype(dtype)
    models = [_model(ubm, W[s], MU[s]) for s in range(20)]
    for C in (2, K):
        idx, _ = ubm.top_components(X, C)
        alone = np.array([ModelStack([m], reference=ubm).top_c_loglik(X, idx)[0] for m in models])
        for size in (3, 17):
            for start in (0, 2, 20 - size):
                np.testing.assert_array_equal(ModelStack(models[start:start + size], reference=ubm).top_c_loglik(X, idx),
                                              alone[start:start + size])
        want = [_reference(X, idx, _logprob(m, X)) for m in models[:4]]
        np.testing.assert_allclose(alone[:4], want, rtol=5e-5 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("adapt", ["mw", "mwv"])
def test_store_verify_equals_identify_top_c(tmp_path, adapt):
    """The speaker store's two endpoints on the same speaker and recording: ``verify`` scores a
    stack of one model, ``identify`` (``scores_all``) stacks of many built from the stored
    statistics, in batches of 1, 2 or all: the same bits (top-C)."""
    from speaker.gates import NO_GATE
    from speaker.store import SpeakerStore
    rng = np.random.default_rng(41)
    X = np.concatenate([rng.normal(loc=c, size=(600, D)) for c in (-2, 0, 2)]).astype(np.float32)
    ubm = GaussianMixture(K, covariance_type="diag", random_state=0, max_iter=10, tol=1e-2).fit(X)
    st = SpeakerStore(tmp_path / "s.db", ubm, adapt=adapt, top_c=3, gate=NO_GATE)  # 2 s per speaker
    for i in range(7):
        centre = rng.normal(scale=1.5, size=D)
        st.enroll(f"s{i}", [(centre + rng.normal(size=(200, D))).astype(np.float32) for _ in range(2)])
    test = rng.normal(size=(180, D)).astype(np.float32)
    verify = {i: st.verify(i, test).score for i in (f"s{j}" for j in range(7))}
    for batch in (1, 2, 1024):
        ids, scores = st.scores_all(test, batch=batch)
        assert dict(zip(ids, scores.tolist())) == verify
    st.close()
