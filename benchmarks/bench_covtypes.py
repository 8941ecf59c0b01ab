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
* the float32 precision of the full type: per-frame log-likelihood of a float32 model on
  float32 frames against float64 arithmetic on the same float32 numbers, written out here
  with SciPy (Cholesky of each covariance, triangular solve of ``x - mu_k``, logsumexp): on the
  benchmark's model, and on models whose covariances have condition numbers 1e1 .. 1e5 (random
  rotations of eigenvalues spread over that many decades, means 1e3 from the origin, frames
  drawn from the model); target max |difference| <= 1e-4 nats per frame.  And the float32
  E-step's time (``accumulate``: E-step and statistics) over the float64 one on the same model
  and frames, measured in alternation (target <= 1.2), with the share of it spent recomputing
  the log-densities near each frame's best in float64 (the float32 path's accuracy fix:
  ``src/_core.pyx``, ``_refine_full``), measured against the same E-step without it;
* tied and spherical at the diagonal benchmark's size (D=39, K=256): scikit-learn / gmmext;
  tied needs ``N D(D+1)`` (whitening) ``+ 4 N D K`` (log-densities on [z, z^2]) ``+ 2 N D K``
  (first-order statistics) ``+ 2 N P`` (pooled scatter) flops;
* full, D=60, K=512, float32 (a Kaldi-size full UBM): seconds per iteration and the memory
  the iteration allocates (tracemalloc peak: buffers and statistics, not the input).

scikit-learn's time per iteration is ``(t(fit, max_iter=1 + n) - t(fit, max_iter=1)) / n``
from the same given parameters (``init_params="random_from_data"`` with weights, means and
precisions given, so no k-means runs); gmmext's is ``m_step(accumulate(X))``.

    python benchmarks/bench_covtypes.py [--n 200000] [--iters 2] [--rounds 3] [--n-acc 20000] [--out benchmarks/results_covtypes.txt]
"""
from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
from scipy import linalg
from scipy.special import logsumexp

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


def reference_logprob(X, w, means, covs):
    """(N, K) ``log w_k + log N(x | mu_k, cov_k)`` in float64 arithmetic on the given numbers (SciPy)."""
    X = np.asarray(X, dtype=np.float64)
    K, D = means.shape
    out = np.empty((X.shape[0], K))
    for k in range(K):
        c = linalg.cholesky(np.asarray(covs[k], dtype=np.float64), lower=True)
        z = linalg.solve_triangular(c, (X - np.asarray(means[k], dtype=np.float64)).T, lower=True)
        out[:, k] = (np.log(np.float64(w[k])) - 0.5 * D * np.log(2 * np.pi)
                     - np.log(np.diag(c)).sum() - 0.5 * (z * z).sum(axis=0))
    return out


def float32_error(g32, X32):
    """(mean, max) |float32 score_samples - float64 reference| nats, mean loglik, near-best components per frame."""
    lp = reference_logprob(X32, g32.weights_, g32.means_, g32.covariances_)
    ll = logsumexp(lp, axis=1)
    err = np.abs(g32.score_samples(X32) - ll)
    near = (lp >= lp.max(axis=1, keepdims=True) - 12.0).sum(axis=1).mean()
    return err.mean(), err.max(), ll.mean(), near


def conditioned_model(K, D, cond, offset, rng):
    """float32 full model: random rotations of eigenvalues 1 .. 1/cond, means ``offset`` away."""
    covs = []
    for _ in range(K):
        Q, _ = np.linalg.qr(rng.normal(size=(D, D)))
        covs.append((Q * np.logspace(0, -np.log10(cond), D)) @ Q.T)
    w, mu = rng.dirichlet(np.full(K, 5.0)), offset + rng.normal(size=(K, D))
    return GaussianMixture.from_parameters(*(np.asarray(a, np.float32) for a in (w, mu, np.array(covs))),
                                           covariance_type="full")


def estep_time(gm, X, iters, refine=True):
    """Best time of ``accumulate(X)`` (E-step and statistics); ``refine=False``: without the
    float32 full path's float64 recomputation (the engine called with ``refine=None``)."""
    eng, mm = gm._engine(X.dtype, X.shape[1]), gm._matrices(X.dtype)
    if not refine:
        mm = mm._replace(refine=None)
    eng.accumulate(X, None, mm)
    return best_time(lambda: eng.accumulate(X, None, mm), iters)


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
    # per iteration = difference of two whole fits; each is the best of 2 so that one slow
    # start does not make the difference vanish (a non-positive difference is reported as nan)
    t0 = best_time(lambda: fit(1), 2)
    t1 = best_time(lambda: fit(1 + iters), 2)
    return (t1 - t0) / iters if t1 > t0 else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200_000, help="rows N of the full/tied/spherical cases")
    ap.add_argument("--n-big", type=int, default=200_000, help="rows of the D=60, K=512 float32 case")
    ap.add_argument("--iters", type=int, default=2, help="EM iterations timed per measurement")
    ap.add_argument("--n-acc", type=int, default=20_000,
                    help="frames drawn from each conditioned model for the float32 accuracy lines")
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
    X32 = X.astype(np.float32)
    e_mean, e_max, ll, near = float32_error(g32, X32[:n32])
    say(f"full   float32 vs float64 arithmetic on the same float32 numbers (SciPy reference; this model, "
        f"{n32} frames, log-likelihood per frame {ll:.2f} nats on average): |difference| mean {e_mean:.2e}, "
        f"max {e_max:.2e} nats (target max <= 1e-04: {'ok' if e_max <= 1e-4 else 'MISS'}); "
        f"components within 12 nats of a frame's best (recomputed in float64): {near:.2f} per frame")
    rng = np.random.default_rng(0)
    worst = 0.0
    for cond in (1e1, 1e2, 1e3, 1e4, 1e5):
        gc = conditioned_model(K, D, cond, 1e3, rng)
        Xc = gc.sample(a.n_acc)[0].astype(np.float32)
        e_mean, e_max, ll, near = float32_error(gc, Xc)
        worst = max(worst, e_max)
        say(f"full   float32, covariances of condition number {cond:.0e}, means 1e3 from the origin, K={K} D={D}, "
            f"{a.n_acc} frames (log-likelihood {ll:.2f} nats per frame): |difference| mean {e_mean:.2e}, "
            f"max {e_max:.2e} nats; {near:.2f} components per frame recomputed")
    say(f"full   float32 accuracy, condition numbers 1e1..1e5: max {worst:.2e} nats per frame "
        f"(target <= 1e-04: {'ok' if worst <= 1e-4 else 'MISS'})")
    t32, t64, t32_plain = [], [], []
    for _ in range(a.rounds):                 # alternate, so that a passing load hits all three
        t64.append(estep_time(gm, X, a.iters))
        t32.append(estep_time(g32, X32, a.iters))
        t32_plain.append(estep_time(g32, X32, a.iters, refine=False))
    r = min(t32) / min(t64)
    say(f"full   N={a.n} D={D} K={K} E-step + statistics (accumulate): float32 {min(t32):.3f} s, float64 "
        f"{min(t64):.3f} s: float32 / float64 = {r:.2f} (target <= 1.2: {'ok' if r <= 1.2 else 'MISS'}; median of "
        f"the {a.rounds} rounds' ratios {float(np.median(np.array(t32) / np.array(t64))):.2f}); float32 without "
        f"the float64 recomputation {min(t32_plain):.3f} s (the recomputation costs "
        f"{100 * (min(t32) / min(t32_plain) - 1):+.0f} %)")
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
    t_plain = estep_time(gm, X, 1, refine=False)
    t_ref = estep_time(gm, X, 1)
    tracemalloc.start()
    t = time.perf_counter()
    gm._core_cache()._local.engines = {}          # a new engine: its buffers are counted too
    gm.m_step(gm.accumulate(X))
    t = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    say(f"full   N={a.n_big} D={D} K={K} float32: gmmext {t:.2f} s/iter; memory allocated by the "
        f"iteration (peak, buffers + statistics) {peak / 2 ** 20:.0f} MiB; input {X.nbytes / 2 ** 20:.0f} MiB; "
        f"{4.0 * a.n_big * (D + D * (D + 1) // 2) * K / t / 1e9:.0f} GFLOP/s (4 N P K, sparse statistics on); "
        f"E-step + statistics {t_ref:.2f} s, {t_plain:.2f} s without the float64 recomputation "
        f"({100 * (t_ref / t_plain - 1):+.0f} %)")
    say.write(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
