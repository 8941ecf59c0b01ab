"""float32 full covariance on overlapping components: the cost of the float64 recomputation.

The float32 full-covariance E-step recomputes in float64 (centred on the component) the
log-densities within 12 nats of each frame's best (README, "float32 full covariance").  On
well-separated components that is about one component per frame; on overlapping ones (a model
fitted for one iteration to unclustered data) it is nearly all of them.  This script times
``accumulate`` and ``score_samples`` in float32 and float64 on such a model (best of 5, same
process, interleaved), and prints the float32 / float64 ratios and the float32 accuracy against
the float64 arithmetic on the same float32 numbers.

    python benchmarks/bench_full_overlap.py --out benchmarks/results_full_overlap.txt
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Report  # noqa: E402


def _best(f, repeats: int) -> float:
    f()
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=200_000, help="frames (default 200000)")
    ap.add_argument("-d", type=int, default=39, help="dimensions (default 39)")
    ap.add_argument("-k", type=int, default=64, help="components (default 64)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs, best kept (default 5)")
    ap.add_argument("--out", help="also write the report to this file")
    args = ap.parse_args(argv)
    from gmmext import GaussianMixture
    rep = Report(argv, __file__)
    rng = np.random.default_rng(0)
    X64 = rng.normal(size=(args.n, args.d))
    X32 = X64.astype(np.float32)
    g32 = GaussianMixture(args.k, covariance_type="full", max_iter=1, init_params="random_from_data",
                          random_state=0).fit(X32[:20_000])
    g64 = GaussianMixture.from_parameters(g32.weights_.astype(np.float64), g32.means_.astype(np.float64),
                                          g32.covariances_.astype(np.float64), covariance_type="full")
    X32as64 = X32.astype(np.float64)
    rep(f"overlapping full model: N={args.n}, D={args.d}, K={args.k}, one EM iteration from rows of a "
        "standard normal (no clusters); float64 model = the float32 parameters cast")
    err = np.abs(g32.score_samples(X32).astype(np.float64) - g64.score_samples(X32as64))
    rep(f"float32 score_samples vs float64 arithmetic on the same numbers: |difference| mean {err.mean():.2e}, "
        f"max {err.max():.2e} nats per frame (target max <= 1e-04: {'ok' if err.max() <= 1e-4 else 'MISS'})")
    for what, f32, f64 in (
            ("accumulate", lambda: g32.accumulate(X32, check_input=False),
             lambda: g64.accumulate(X32as64, check_input=False)),
            ("score_samples", lambda: g32.score_samples(X32), lambda: g64.score_samples(X32as64))):
        t64, t32 = _best(f64, args.repeats), _best(f32, args.repeats)
        rep(f"{what:14s} float32 {t32:.4f} s, float64 {t64:.4f} s: float32 / float64 = {t32 / t64:.2f} "
            f"(target <= 1.2: {'ok' if t32 / t64 <= 1.2 else 'MISS'})")
    rep.write(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
