"""One fitted model used from several Python threads at once gives the sequential results.

The compiled core releases the GIL, so Python threads really do run it concurrently; every
public method uses its own thread's Engine (work buffers), so calls must not share state.  Each test
computes the expected results one call at a time, then runs the same calls (different and
identical inputs, interleaved, repeated) on 4 Python threads and requires bit-identical output.
No timing is asserted (benchmarks/bench_threads.py measures the speed-up).
"""
import itertools
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from threadpoolctl import threadpool_info, threadpool_limits

import speaker
from gmmext import GaussianMixture, GMMStats

K, D = 64, 20
N_WORKERS = 4


def _blas_threads():
    return [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]


@pytest.fixture(scope="module", autouse=True)
def _restore_blas_threads():
    """Give the rest of the session its BLAS threads back, whatever happens here."""
    with threadpool_limits(limits=max(_blas_threads(), default=None), user_api="blas"):
        yield


def _fit(dtype, n_threads):
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(4000, D)) * rng.uniform(0.5, 2.0, size=D)).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianMixture(K, init_params="random_from_data", max_iter=5, random_state=0,
                               n_threads=n_threads, chunk_size=256, covariance_type="diag").fit(X)


@pytest.fixture(scope="module", params=[(np.float64, 1), (np.float64, 2), (np.float32, 1), (np.float32, 2)],
                ids=lambda p: f"{np.dtype(p[0]).name}-n_threads{p[1]}")
def model(request):
    return _fit(*request.param)


def _inputs(dtype):
    """Different inputs: sizes around/below the chunk size, and non-contiguous layouts."""
    rng = np.random.default_rng(1)
    sizes = [1, 255, 256, 257, 1000, 3001]
    out = [rng.normal(scale=1.5, size=(n, D)).astype(dtype) for n in sizes]
    out.append(np.asfortranarray(rng.normal(size=(777, D)).astype(dtype)))
    out.append(rng.normal(size=(2 * 900, D)).astype(dtype)[::2])
    return out


def _call(model, method, X):
    if method == "score_samples":
        return model.score_samples(X)
    if method == "predict_proba":
        return model.predict_proba(X)
    if method == "accumulate":
        return model.accumulate(X)
    if method == "top_components":
        return model.top_components(X, 5)
    raise AssertionError(method)


def _assert_same(got, want):
    if isinstance(want, GMMStats):
        for field in ("n", "sum_x", "sum_xx"):
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
        assert got.loglik == want.loglik and got.n_samples == want.n_samples
    elif isinstance(want, tuple):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
    else:
        np.testing.assert_array_equal(got, want)


METHODS = ["score_samples", "predict_proba", "accumulate", "top_components"]


def _run_concurrently(fn, jobs, rounds=3):
    """fn(*job) for every job, ``rounds`` times over, on N_WORKERS threads; results in job order."""
    with ThreadPoolExecutor(max_workers=N_WORKERS) as pool:
        futures = [pool.submit(fn, *job) for _ in range(rounds) for job in jobs]
        results = [f.result() for f in futures]
    return [results[r * len(jobs):(r + 1) * len(jobs)] for r in range(rounds)]


@pytest.mark.parametrize("method", METHODS)
def test_one_method_different_inputs(model, method):
    inputs = _inputs(model.means_.dtype)
    expected = [_call(model, method, X) for X in inputs]
    for results in _run_concurrently(lambda X: _call(model, method, X), [(X,) for X in inputs]):
        for got, want in zip(results, expected):
            _assert_same(got, want)


@pytest.mark.parametrize("method", METHODS)
def test_one_method_identical_input(model, method):
    X = _inputs(model.means_.dtype)[4]                 # 1000 rows: several chunks
    expected = _call(model, method, X)
    for results in _run_concurrently(lambda X: _call(model, method, X), [(X,)] * (2 * N_WORKERS)):
        for got in results:
            _assert_same(got, expected)


def test_all_methods_interleaved(model):
    """Every method on every input, all in flight together (same array object shared too)."""
    inputs = _inputs(model.means_.dtype)
    jobs = list(itertools.product(METHODS, range(len(inputs))))
    expected = [_call(model, m, inputs[i]) for m, i in jobs]
    for results in _run_concurrently(lambda m, i: _call(model, m, inputs[i]), jobs, rounds=2):
        for got, want in zip(results, expected):
            _assert_same(got, want)


def test_float64_input_on_float32_model_concurrently():
    """Mixed precision (the model's dtype differs from the input's) is converted per call."""
    gm = _fit(np.float32, 2)
    inputs = _inputs(np.float64)
    expected = [gm.score_samples(X) for X in inputs]
    for results in _run_concurrently(gm.score_samples, [(X,) for X in inputs]):
        for got, want in zip(results, expected):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("top_c", [None, 5])
def test_speaker_llr_from_threads(top_c):
    ubm = _fit(np.float32, 2)
    rng = np.random.default_rng(2)
    speakers = [speaker.map_adapt(ubm, rng.normal(loc=0.3 * s, size=(600, D)).astype(np.float32))
                for s in range(3)]
    tests = [rng.normal(loc=0.2 * t, size=(n, D)).astype(np.float32)
             for t, n in enumerate([50, 300, 1200, 257])]
    jobs = [(s, t) for s in range(len(speakers)) for t in range(len(tests))]

    def score(s, t):
        return speaker.llr(speakers[s], ubm, tests[t], top_c=top_c)

    expected = [score(s, t) for s, t in jobs]
    for results in _run_concurrently(score, jobs):
        assert results == expected


# (warnings.catch_warnings is not thread-safe, hence the mark rather than a context in fit)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fit_in_threads_matches_sequential_fit():
    """Independent models fitted at the same time in different threads (separate engines)."""
    seeds = [0, 1, 2, 3]
    data = [np.random.default_rng(s).normal(size=(1500, 5)) for s in seeds]

    def fit(i):
        gm = GaussianMixture(8, init_params="random_from_data", max_iter=10, random_state=i,
                             n_threads=1, chunk_size=128, covariance_type="diag").fit(data[i])
        return gm.weights_, gm.means_, gm.covariances_

    expected = [fit(i) for i in range(len(seeds))]
    for results in _run_concurrently(fit, [(i,) for i in range(len(seeds))], rounds=1):
        for got, want in zip(results, expected):
            _assert_same(got, want)


def test_overlapping_blas_limits_are_restored():
    """Deterministic form of the race: call A enters, B enters, A leaves, B leaves."""
    from gmmext._blas import single_thread_blas

    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        if not before or max(before) < 2:
            pytest.skip("BLAS cannot run 2 threads here")
        a = b = single_thread_blas     # one process-wide, re-entrant guard
        a.__enter__()
        b.__enter__()
        a.__exit__(None, None, None)
        inside_b = _blas_threads()
        b.__exit__(None, None, None)
        after = _blas_threads()
    assert inside_b == [1] * len(inside_b), "BLAS must stay single-threaded while B's core runs"
    assert after == before



@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_accumulate_in_a_new_thread_is_bitwise_the_main_threads(dtype):
    """The dense statistics product of a call from a fresh Python thread used to differ (1.7e-5
    relative in float32) from the main thread's: once the main thread had set a BLAS limit,
    threadpoolctl (>= 3.8) ignored the guard's limit from other threads and OpenBLAS ran the
    product multi-threaded, in other tiles.  The guard now sets each library's threads itself and
    the core cuts each gemm's summed dimension in slices of 128, so neither the calling thread
    nor BLAS's thread state can matter."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(20000, D)).astype(dtype)
    gm = GaussianMixture.from_parameters(np.full(K, 1 / K, dtype=dtype), rng.normal(size=(K, D)).astype(dtype),
                                         np.ones((K, D), dtype=dtype))
    gm._core_cache().sparse_limit = -1.0             # the dense (gemm) statistics path
    with threadpool_limits(limits=max(_blas_threads(), default=None), user_api="blas"):
        main = gm.accumulate(X)
        for _ in range(2):
            with ThreadPoolExecutor(1) as pool:
                other = pool.submit(gm.accumulate, X).result()
            _assert_same(other, main)


# ----------------------------------------------------------------------------- other BLAS kernels
# OpenBLAS picks its kernels by CPU (OPENBLAS_CORETYPE overrides it): the thread-dependence above
# showed only with some of them (Haswell's), so CI on any machine runs the key cases under
# several kernels, each in its own process.  The core's E-step, statistics and log-likelihood
# products are BLAS gemms: their outputs on fixed arrays (FINGERPRINT: no BLAS call of numpy's on
# the way) are the same bits from any calling thread under each kernel, and the same as in this
# process under this process's kernel.  The shared top-C scoring of a ModelStack uses the core's
# own products (src/gmm_gemm.h): its scores (SHARED) are the same bits under every kernel.
_FINGERPRINT = r"""
import hashlib
import numpy as np
from gmmext import _core
from gmmext._covariance import ModelMatrices
from gmmext._engine import Engine

def fingerprint():
    h, hs = hashlib.sha256(), hashlib.sha256()
    rng = np.random.default_rng(5)
    N, D, K, C = 700, 20, 64, 5
    for dt in (np.float32, np.float64):
        X = rng.normal(size=(N, D)).astype(dt)
        shift = (0.1 * rng.normal(size=D)).astype(dt)
        M = (0.2 * rng.normal(size=(2 * D, K))).astype(dt)
        M[D:] = -np.abs(M[D:])
        g = rng.normal(size=K).astype(dt)
        eng = Engine(dt, D, K, chunk_size=128, n_threads=2, sparse_limit=-1.0)
        mm = ModelMatrices(shift, M, g, None)
        st = eng.accumulate([X[:300], X[300:]], None, mm)
        ev = eng.evaluate(X, mm, loglik=True, resp=True)
        idx, ll = eng.top_components(X, mm, C)
        S = 70
        pw = _core.panel_width(dt, S)
        n_pan = -(-S // pw)
        A = (0.1 * rng.normal(size=(K, n_pan, D, pw))).astype(dt)
        G = rng.normal(size=(K, n_pan * pw)).astype(dt)
        out = np.zeros(S)
        _core.topc_loglik_shared((X,), idx, shift, np.ascontiguousarray(M[D:].T), A, G, 2, out)
        for a in (st.n, st.sum_x, st.sum_xx, np.float64(st.loglik), ev["loglik"], ev["resp"], idx, ll, out):
            h.update(np.ascontiguousarray(a).tobytes())
        # the stack's scores from fixed top-C indices (not the BLAS-computed ones above)
        fixed = np.ascontiguousarray(np.argsort(rng.normal(size=(N, K)), axis=1)[:, :C].astype(np.int32))
        out[:] = 0
        _core.topc_loglik_shared((X,), fixed, shift, np.ascontiguousarray(M[D:].T), A, G, 2, out)
        hs.update(out.tobytes())
    return h.hexdigest(), hs.hexdigest()
"""

_CORETYPE_SCRIPT = _FINGERPRINT + r"""
import sys, warnings
from concurrent.futures import ThreadPoolExecutor
from threadpoolctl import threadpool_info, threadpool_limits
from sklearn.exceptions import ConvergenceWarning
from gmmext import GaussianMixture

arch = {d.get("architecture") for d in threadpool_info() if d["user_api"] == "blas"}
print("ARCH", ",".join(sorted(map(str, arch))))
_full, _shared = fingerprint()
print("FINGERPRINT", _full)
print("SHARED", _shared)
rng = np.random.default_rng(0)
for dtype in (np.float32, np.float64):
    X = (rng.normal(size=(3000, 20)) * rng.uniform(0.5, 2.0, size=20)).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(64, init_params="random_from_data", max_iter=3, random_state=0,
                             n_threads=1, chunk_size=256).fit(X)
    Y = rng.normal(scale=1.5, size=(1000, 20)).astype(dtype)
    calls = [gm.score_samples, gm.predict_proba, lambda Y: gm.top_components(Y, 5),
             lambda Y: gm.accumulate([Y[:300], Y[300:]]).sum_x]
    with threadpool_limits(limits=2, user_api="blas"):     # the main thread sets a limit first
        main = [f(Y) for f in calls]
        assert np.array_equal(gm.accumulate(Y).sum_xx, gm.accumulate([Y[:300], Y[300:]]).sum_xx)
        for _ in range(2):
            with ThreadPoolExecutor(2) as pool:
                other = [pool.submit(f, Y).result() for f in calls]
            for m, o in zip(main, other):
                for a, b in zip(m if isinstance(m, tuple) else (m,), o if isinstance(o, tuple) else (o,)):
                    assert np.array_equal(a, b), (np.dtype(dtype).name, np.count_nonzero(a != b))
print("OK")
"""


@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="the sanitizer run (tools/check_core_memory.sh) checks memory, not BLAS kernels")
@pytest.mark.parametrize("coretype", ["Haswell", "SkylakeX", "Sandybridge"])
def test_results_do_not_depend_on_blas_kernel_or_calling_thread(coretype):
    import subprocess
    import sys
    env = dict(os.environ, OPENBLAS_CORETYPE=coretype)
    res = subprocess.run([sys.executable, "-c", _CORETYPE_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=300)
    lines = dict(line.split(" ", 1) for line in res.stdout.splitlines() if " " in line)
    if res.returncode == 0 and lines.get("ARCH") and lines["ARCH"] != coretype:
        pytest.skip(f"this CPU's OpenBLAS refuses OPENBLAS_CORETYPE={coretype} (runs {lines['ARCH']})")
    assert res.returncode == 0 and res.stdout.rstrip().endswith("OK"), res.stdout[-3000:] + res.stderr[-3000:]
    here = {}
    exec(_FINGERPRINT, here)
    full, shared = here["fingerprint"]()
    assert lines["SHARED"] == shared, "a ModelStack's shared top-C scores depend on BLAS's kernel"
    mine = {d.get("architecture") for d in threadpool_info() if d["user_api"] == "blas"}
    if lines["ARCH"] == ",".join(sorted(map(str, mine))):
        assert lines["FINGERPRINT"] == full, "the core's results differ between two processes on one BLAS kernel"
