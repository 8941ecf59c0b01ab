#!/usr/bin/env python
"""Does gmmext's compiled core release the GIL?  Score one batch from 1 vs 2 Python threads.

A (K, D) diagonal GMM with ``n_threads=1`` (one OpenMP thread per call) scores a batch of N
frames (``score_samples``) split in two halves:

* ``1 Python thread``: the two halves one after the other;
* ``2 Python threads``: each half in its own ``threading.Thread``, at the same time.

If the core holds the GIL the two threads take as long as one thread doing both halves
(ratio ~1); if it releases the GIL they run on two cores (ratio ~2 on a 2-core machine).
For reference, the same batch scored by one Python thread with an ``n_threads=2`` model
(the core's own OpenMP parallelism).  BLAS is limited to ``--blas-threads`` (default 1) for
all runs, so that "one thread" really is one core.  Times are the best of ``--repeats`` runs
after a warm-up; the results of the threaded runs are checked equal to the sequential ones.

Examples::

    python benchmarks/bench_threads.py              # N=400,000, D=39, K=256, float32 and float64
    python benchmarks/bench_threads.py --quick      # N=200,000, K=128: a few seconds
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_time, environment, load_line  # noqa: E402

from gmmext import GaussianMixture  # noqa: E402


def make_model(K: int, D: int, dtype, n_threads: int, seed: int = 0) -> GaussianMixture:
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(K))
    mu = rng.normal(size=(K, D))
    var = rng.uniform(0.5, 2.0, size=(K, D))
    return GaussianMixture.from_parameters(w.astype(dtype), mu.astype(dtype), var.astype(dtype),
                                           n_threads=n_threads)


def timed(fn, repeats: int) -> tuple[float, object]:
    """(best seconds of ``repeats`` calls, the result): the untimed first call (warm-up:
    allocations, page faults) gives the result, which is the same at every call."""
    out = fn()
    return best_time(fn, repeats), out


def run_case(N: int, K: int, D: int, dtype, repeats: int) -> dict:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(N, D)).astype(dtype)
    halves = [X[: N // 2], X[N // 2:]]
    gm1 = make_model(K, D, dtype, n_threads=1)
    gm2 = make_model(K, D, dtype, n_threads=2)

    def sequential():
        return [gm1.score_samples(h) for h in halves]

    cpu = [0.0, 0.0]

    def two_threads():
        out = [None, None]

        def work(i):
            c = time.thread_time()
            out[i] = gm1.score_samples(halves[i])
            cpu[i] = time.thread_time() - c

        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out

    def openmp():
        return gm2.score_samples(X)

    t_seq, r_seq = timed(sequential, repeats)
    t_par, r_par = timed(two_threads, repeats)
    cpu_par = sum(cpu)                                     # of the last run
    t_omp, r_omp = timed(openmp, repeats)
    same = all(np.array_equal(a, b) for a, b in zip(r_seq, r_par))
    omp_close = np.allclose(np.concatenate(r_seq), r_omp, rtol=1e-5 if dtype == np.float32 else 1e-12)
    return dict(dtype=np.dtype(dtype).name, seq=t_seq, par=t_par, omp=t_omp, same=same,
                omp_close=omp_close, par_cpu=cpu_par)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small problem (N=200,000, K=128), a few seconds")
    p.add_argument("--n", type=int, default=None, help="frames (default 400,000; 200,000 with --quick)")
    p.add_argument("--d", type=int, default=39, help="dimensions (default 39)")
    p.add_argument("--k", type=int, default=None, help="components (default 256; 128 with --quick)")
    p.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per measurement, best kept "
                   "(default 5; 3 with --quick)")
    p.add_argument("--blas-threads", type=int, default=1, help="BLAS thread limit for all runs (default 1)")
    a = p.parse_args(argv)
    N = a.n or (200_000 if a.quick else 400_000)
    K = a.k or (128 if a.quick else 256)
    repeats = a.repeats or (3 if a.quick else 5)
    dtypes = [np.float32, np.float64] if a.dtype == "both" else [np.dtype(a.dtype).type]

    for line in environment(argv, __file__):
        print(line)
    print(f"problem: score_samples of N={N:,} frames, D={a.d}, K={K}; BLAS limited to "
          f"{a.blas_threads} thread(s); best of {repeats} after a warm-up")
    print()
    hdr = (f"{'dtype':8} {'1 thread, halves in turn':>25} {'2 threads, 1 half each':>23} "
           f"{'ratio':>6} {'CPU/wall':>8} {'1 thread, n_threads=2':>22} {'ratio':>6}  results")
    print(hdr)
    print("-" * len(hdr))
    ok = True
    with threadpool_limits(limits=a.blas_threads, user_api="blas"):
        for dtype in dtypes:
            r = run_case(N, K, a.d, dtype, repeats)
            ok &= r["same"] and r["omp_close"]
            check = ("identical" if r["same"] else "DIFFER") + (", n_threads=2 agrees" if r["omp_close"] else ", n_threads=2 DIFFERS")
            print(f"{r['dtype']:8} {r['seq']:>24.3f}s {r['par']:>22.3f}s {r['seq'] / r['par']:>5.2f}x "
                  f"{r['par_cpu'] / r['par']:>8.2f} {r['omp']:>21.3f}s {r['seq'] / r['omp']:>5.2f}x  {check}",
                  flush=True)
    print()
    print("ratio = (1 thread, halves in turn) / (the column before it): ~2 on 2 idle cores means the\n"
          "core runs without the GIL (two Python threads in parallel) / uses both cores (OpenMP).\n"
          "CPU/wall = CPU seconds of the two Python threads (time.thread_time) / wall seconds of the\n"
          "2-thread run: ~2 when they ran at the same time; a core holding the GIL would give <= 1.\n"
          f"{load_line('at end')} (other processes competing for the cores lower both ratios)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
