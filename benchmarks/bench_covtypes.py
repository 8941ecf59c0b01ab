"""Per-EM-iteration time of gmmext against scikit-learn for the full, tied and spherical types.

Every number is a ratio measured in this run (the machine may be loaded):

* full, N x D=39, K=64, float64: seconds per EM iteration (E-step + statistics + M-step),
  scikit-learn / gmmext, and gmmext's GFLOP/s as a fraction of numpy's matmul GFLOP/s.  The
  flops counted are those the method needs, the full layout's two gemms per chunk
  (``src/_core.pyx``): log-densities ``(rows x P) @ (P x K)`` and statistics
  ``(P x rows) @ (rows x K)``, P = D + D(D+1)/2, i.e. ``4 N P K`` per iteration (the feature
  map's N D(D+1)/2 products, the N K exps and the M-step are not counted), timed with the
  dense statistics gemm (sparse statistics off, so every counted flop is done).  The matmul
  reference (``benchmarks/_common.py``: the definition of "% of matmul peak" shared by every
  results file) and gmmext's time are measured in alternation, ``--rounds`` times, and the
  fraction is given from the best of each and as the median of the per-round fractions, so
  that a load that comes and goes hits both;
* the float32 precision of the full type: per-frame log-likelihood of the same model and data
  in float32 against float64;
* tied and spherical at the diagonal benchmark's size (D=39, K=256): scikit-learn / gmmext;
  tied needs ``N D(D+1)`` (whitening) ``+ 4 N D K`` (log-densities on [z, z^2]) ``+ 2 N D K``
  (first-order statistics) ``+ 2 N P`` (pooled scatter) flops;
* full, D=60, K=512, float32 (a Kaldi-size full UBM): seconds per iteration and the memory
  the iteration allocates (tracemalloc peak: buffers and statistics, not the input).

scikit-learn's time per iteration is ``(t(fit, max_iter=1 + n) - t(fit, max_iter=1)) / n``
from the same given parameters (``init_params="random_from_data"`` with weights, means and
precisions given, so no k-means runs); gmmext's is ``m_step(accumulate(X))``.

    python benchmarks/bench_covtypes.py [--n 200000] [--iters 2] [--rounds 3] [--out benchmarks/results_covtypes.txt]
"""
from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MatmulReference, Report, best_time, load_line  # noqa: E402

from gmmext import GaussianMixture  # noqa: E402


def _blobs(n, d, k, dtype, seed=0):
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, k, n)
    centres = rng.normal(scale=3.0, size=(k, d))
    A = rng.normal(size=(k, d, d)) / np.sqrt(d)
    X = centres[lab] + np.einsum("nd,nde->ne", rng.standard_normal((n, d)), A[lab])
    return X.astype(dtype)


def _start(X, k, cov):
    """A model after one EM iteration from a random-from-data start (the benchmark's parameters)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GaussianMixture(k, covariance_type=cov, init_params="random_from_data", max_iter=1,
                               random_state=0, reg_covar=1e-3).fit(X)


def gmmext_iter(gm, X, iters, dense=False):
    if dense:
        gm._core_cache().sparse_limit = -1.0
    gm.m_step(gm.accumulate(X))                          # warm: engine and matrices built
    t = best_time(lambda: gm.m_step(gm.accumulate(X)), iters)
    gm._core_cache().sparse_limit = 0.25
    return t


def sklearn_iter(gm, X, iters):
    from sklearn.mixture import GaussianMixture as SK

    def fit(m):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            SK(gm.n_components, covariance_type=gm.covariance_type, init_params="random_from_data",
               weights_init=gm.weights_, means_init=gm.means_, precisions_init=gm.precisions_,
               max_iter=m, tol=0.0, reg_covar=1e-3, random_state=0).fit(X)
    t0 = best_time(lambda: fit(1), 1)
    t1 = best_time(lambda: fit(1 + iters), 1)
    return max(t1 - t0, 1e-9) / iters


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200_000, help="rows N of the full/tied/spherical cases")
    ap.add_argument("--n-big", type=int, default=200_000, help="rows of the D=60, K=512 float32 case")
    ap.add_argument("--iters", type=int, default=2, help="EM iterations timed per measurement")
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternations of the matmul and the full type's dense iteration")
    ap.add_argument("--skip-sklearn-tied", action="store_true",
                    help="do not time scikit-learn's tied fit (the slowest of all)")
    ap.add_argument("--out", default=None, help="also write the report to this file")
    a = ap.parse_args(argv)
    say = Report(argv, __file__)

    D, K = 39, 64
    X = _blobs(a.n, D, K, np.float64)
    gm = _start(X, K, "full")
    P = D + D * (D + 1) // 2
    flops = 4.0 * a.n * P * K
    mm, gfs, dense = MatmulReference(), [], []
    for _ in range(a.rounds):                 # alternate, so that a passing load hits both
        gfs.append(mm.measure(np.float64))
        dense.append(gmmext_iter(gm, X, a.iters, dense=True))
    fr = [flops / t / 1e9 / g for t, g in zip(dense, gfs)]
    t_dense = min(dense)
    say(mm.line())
    t_g = gmmext_iter(gm, X, a.iters)
    t_s = sklearn_iter(gm, X, a.iters)
    say(f"full   N={a.n} D={D} K={K} float64: gmmext {t_g:.3f} s/iter (dense statistics {t_dense:.3f}), "
        f"scikit-learn {t_s:.3f} s/iter: {t_s / t_g:.2f}x; dense: {flops / 1e9:.1f} GFLOP/iter "
        f"(4 N P K, P={P}) = {flops / t_dense / 1e9:.1f} GFLOP/s = {mm.percent(flops / t_dense / 1e9):.0f} % "
        f"of the best matmul (median of the {a.rounds} rounds' fractions {100 * float(np.median(fr)):.0f} %)")
    n32 = min(a.n, 50_000)
    g32 = GaussianMixture.from_parameters(*(np.asarray(v, np.float32) for v in
                                            (gm.weights_, gm.means_, gm.covariances_)),
                                          covariance_type="full")
    l64 = gm.score_samples(X[:n32])
    l32 = g32.score_samples(X[:n32].astype(np.float32)).astype(np.float64)
    err = np.abs(l32 - l64)
    say(f"full   float32 vs float64 (same parameters, {n32} frames, log-likelihood per frame "
        f"{np.mean(l64):.2f} nats on average): |difference| mean {err.mean():.2e}, max {err.max():.2e} nats; "
        f"relative to |loglik| max {np.max(err / np.abs(l64)):.1e}")
    K = 256
    X = _blobs(a.n, D, 16, np.float64)
    for cov in ("tied", "spherical"):
        gm = _start(X, K, cov)
        t_g = gmmext_iter(gm, X, a.iters)
        if cov == "tied" and a.skip_sklearn_tied:
            say(f"{cov:9s} N={a.n} D={D} K={K} float64: gmmext {t_g:.3f} s/iter (scikit-learn not timed)")
            continue
        t_s = sklearn_iter(gm, X, 1 if cov == "tied" else a.iters)
        say(f"{cov:9s} N={a.n} D={D} K={K} float64: gmmext {t_g:.3f} s/iter, scikit-learn {t_s:.3f} s/iter: "
            f"{t_s / t_g:.2f}x")
    say(load_line("now"))
    D, K = 60, 512
    X = _blobs(a.n_big, D, 32, np.float32)
    gm = _start(X, K, "full")
    gm.m_step(gm.accumulate(X))
    tracemalloc.start()
    t = time.perf_counter()
    gm._core_cache()._local.engines = {}          # a new engine: its buffers are counted too
    gm.m_step(gm.accumulate(X))
    t = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    say(f"full   N={a.n_big} D={D} K={K} float32: gmmext {t:.2f} s/iter; memory allocated by the "
        f"iteration (peak, buffers + statistics) {peak / 2 ** 20:.0f} MiB; input {X.nbytes / 2 ** 20:.0f} MiB; "
        f"{4.0 * a.n_big * (D + D * (D + 1) // 2) * K / t / 1e9:.0f} GFLOP/s (4 N P K, sparse statistics on)")
    say.write(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
