#!/usr/bin/env python
"""Costs behind gmmext's internal choices, each against its alternative in the same run.

* model-matrix cache: a lookup (``numpy.array_equal`` of the parameters against the snapshot)
  against a rebuild (``gmmext._covariance.model_matrices``), diag K=512, D=39, float32;
* BLAS threads: one M-step of a full model, K=64, D=39 (K Cholesky factors, triangular solves
  and eigenvalue problems), with BLAS limited to one thread against BLAS's default threads;
* the batched Cholesky of ``precisions_cholesky`` (one NumPy/SciPy call for all K matrices)
  against a Python loop of K LAPACK calls, K=64, D=39;
* top-C scoring of models sharing the UBM's variances (``ModelStack``, 30 and 700 models, a
  3-s recording of 300 frames, C=5, K=512, D=39): the core on one thread against two, the
  reason for ``gmmext._engine.SHARED_THREADS_CELLS``;
* building a ``ModelStack``: from models (one per trial as a per-trial LLR builds it, and 1,024
  at once) and from parameter arrays (1,024), each built and then scored once.

    python benchmarks/bench_internals.py [--repeats 5] [--out benchmarks/results_internals.txt]
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Report, best_time  # noqa: E402

from gmmext import GaussianMixture, ModelStack  # noqa: E402


def _diag(K: int, D: int, rng, dtype=np.float32, n_threads=None) -> GaussianMixture:
    return GaussianMixture.from_parameters(rng.dirichlet(np.ones(K)).astype(dtype),
                                           rng.normal(size=(K, D)).astype(dtype),
                                           rng.uniform(0.5, 2.0, (K, D)).astype(dtype), n_threads=n_threads)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per measurement, best kept (default 5)")
    ap.add_argument("--out", type=Path, default=None, help="also write the report to this file")
    a = ap.parse_args(argv)
    say = Report(argv, __file__)
    from gmmext._covariance import DIAG, FULL, model_matrices
    rng = np.random.default_rng(0)
    r = a.repeats

    # model-matrix cache
    gm = _diag(512, 39, rng)
    cache = gm._core_cache()
    gm.score_samples(gm.means_[:2])                                # built once
    t_hit = best_time(lambda: cache.matrices(gm.weights_, gm.means_, gm.covariances_, np.float32, DIAG), r)
    t_build = best_time(lambda: model_matrices(gm.weights_, gm.means_, gm.covariances_, np.float32, DIAG), r)
    say(f"model matrices, diag K=512 D=39 float32: cache lookup {1e6 * t_hit:.0f} us, rebuild "
        f"{1e6 * t_build:.0f} us ({t_build / t_hit:.0f}x)")

    # BLAS threads in the M-step
    X = rng.normal(size=(20_000, 39))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                             # one iteration: not converged
        full = GaussianMixture(64, covariance_type="full", init_params="random_from_data", max_iter=1,
                               random_state=0, reg_covar=1e-3).fit(X)
    stats = full.accumulate(X)
    t_one = best_time(lambda: full.m_step(stats), r)               # the estimator's own guard
    from gmmext import _blas
    guard = _blas.single_thread_blas
    real_enter, real_exit = type(guard).__enter__, type(guard).__exit__
    try:                                                            # the guard switched off
        type(guard).__enter__ = lambda self: self
        type(guard).__exit__ = lambda self, *exc: False
        t_default = best_time(lambda: full.m_step(stats), r)
    finally:
        type(guard).__enter__, type(guard).__exit__ = real_enter, real_exit
    blas = max(d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas")
    say(f"M-step, full K=64 D=39: BLAS on one thread {1e3 * t_one:.1f} ms, BLAS default ({blas} threads) "
        f"{1e3 * t_default:.1f} ms ({t_default / t_one:.1f}x)")

    # batched Cholesky
    cov = full.covariances_.astype(np.float64)
    from scipy import linalg

    def loop():
        return [linalg.solve_triangular(linalg.cholesky(c, lower=True), np.eye(39), lower=True).T for c in cov]
    with guard:
        t_batch = best_time(lambda: FULL.precisions_cholesky(cov), r)
        t_loop = best_time(loop, r)
    say(f"precisions_cholesky, K=64 D=39 (BLAS one thread): batched {1e3 * t_batch:.2f} ms, loop of K "
        f"LAPACK calls {1e3 * t_loop:.2f} ms ({t_loop / t_batch:.1f}x)")

    # top-C scoring of shared-variance models, one thread against two
    import gmmext._engine as eng
    ubm = _diag(512, 39, rng)
    Xt = rng.normal(size=(300, 39)).astype(np.float32)
    idx, _ = ubm.top_components(Xt, 5)
    for S in (30, 700):
        W = rng.dirichlet(np.ones(512), S).astype(np.float32)
        MU = (ubm.means_ + rng.normal(scale=0.3, size=(S, 512, 39))).astype(np.float32)
        stack = ModelStack.from_parameters(W, MU, ubm)
        stack.top_c_loglik(Xt, idx)
        saved = eng.SHARED_THREADS_CELLS
        try:
            eng.SHARED_THREADS_CELLS = 1 << 62                      # always one thread
            t1 = best_time(lambda: stack.top_c_loglik(Xt, idx), r)
            eng.SHARED_THREADS_CELLS = 0                            # always every thread
            t2 = best_time(lambda: stack.top_c_loglik(Xt, idx), r)
        finally:
            eng.SHARED_THREADS_CELLS = saved
        say(f"top-C scoring of {S} shared-variance models, 300 frames, C=5, K=512 D=39 float32 "
            f"({S * idx.size} cells): one thread {1e3 * t1:.2f} ms, two {1e3 * t2:.2f} ms")

    # building stacks
    models = [_diag(512, 39, rng) for _ in range(32)]
    for m in models:
        m.covariances_ = ubm.covariances_.copy()                    # MAP of means and weights
    trial = lambda m: ModelStack([m], reference=ubm).top_c_loglik(Xt, idx)    # noqa: E731
    t_trial = best_time(lambda: [trial(m) for m in models], r) / len(models)
    t_score = best_time(lambda: ModelStack(models, reference=ubm).top_c_loglik(Xt, idx), r)
    many = [models[i % len(models)] for i in range(1024)]
    t_many = best_time(lambda: ModelStack(many, reference=ubm).top_c_loglik(Xt, idx), max(1, r // 2))
    W = np.stack([m.weights_ for m in many])
    MU = np.stack([m.means_ for m in many])
    t_arrays = best_time(lambda: ModelStack.from_parameters(W, MU, ubm).top_c_loglik(Xt, idx), max(1, r // 2))
    say(f"ModelStack built and scored once (300 frames, C=5, K=512 D=39 float32): one model (a per-trial "
        f"stack) {1e3 * t_trial:.2f} ms; 32 models {1e3 * t_score:.1f} ms; 1,024 models from models "
        f"{1e3 * t_many:.0f} ms, from parameter arrays {1e3 * t_arrays:.0f} ms")
    say.write(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
