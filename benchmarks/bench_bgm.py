"""Per-iteration time of gmmext.BayesianGaussianMixture against scikit-learn's, every covariance type.

Every number is a ratio measured in this run (the machine may be loaded): for each covariance
type, seconds per variational EM iteration (E-step, statistics, M-step and the lower bound),
scikit-learn / gmmext, float64, both weight-concentration prior types alike (they differ only
in K digammas), with numpy's matmul rate measured in the same run (``benchmarks/_common.py``).

Both sides are timed on the body of their fit loop, from the same start (one iteration from
the same ``init_params="random_from_data"`` draw, no k-means), best of ``--iters`` after one
untimed iteration: scikit-learn's ``_e_step(X)``, ``_m_step(X, log_resp)`` and
``_compute_lower_bound(log_resp, log_prob_norm)`` (what ``BaseMixture.fit_predict`` runs per
iteration), gmmext's ``_em_iteration(accumulate(X, check_input=False))`` (what its ``fit`` runs per
iteration).  Neither includes the validation of X, which each ``fit`` does once.  Each line also
gives gmmext's split: the E-step (compiled core, statistics) and the rest (M-step, digammas,
lower bound in NumPy/SciPy), each best of ``--iters``.

    python benchmarks/bench_bgm.py [--n 100000] [--iters 5] [--types full,diag] [--out benchmarks/results_bgm.txt]
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MatmulReference, Report, best_time  # noqa: E402

from gmmext import BayesianGaussianMixture  # noqa: E402

#: (covariance type, D, K) of each case
CASES = (("full", 20, 32), ("tied", 39, 128), ("diag", 39, 128), ("spherical", 39, 128))


def _blobs(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, k, n)
    centres = rng.normal(scale=3.0, size=(k, d))
    return centres[lab] + rng.standard_normal((n, d)) * rng.uniform(0.5, 2.0, size=(k, d))[lab]


def _params(cov, K):
    return dict(n_components=K, covariance_type=cov, init_params="random_from_data", random_state=0,
                tol=0.0, reg_covar=1e-3)


def gmmext_iter(X, cov, K, iters):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bg = BayesianGaussianMixture(max_iter=1, **_params(cov, K)).fit(X)
    bg._em_iteration(bg.accumulate(X))                # warm: engine and matrices built
    whole = best_time(lambda: bg._em_iteration(bg.accumulate(X, check_input=False)), iters)
    e_step = best_time(lambda: bg.accumulate(X, check_input=False), iters)
    stats = bg.accumulate(X, check_input=False)
    state = bg._get_parameters()

    def rest():
        bg._set_parameters(state, X.dtype)            # the same M-step each time
        bg._em_iteration(stats)
    return whole, e_step, best_time(rest, iters)


def sklearn_iter(X, cov, K, iters):
    from sklearn.mixture import BayesianGaussianMixture as SK

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = SK(max_iter=1, **_params(cov, K)).fit(X)

    def iteration():                                  # BaseMixture.fit_predict's loop body
        log_prob_norm, log_resp = sk._e_step(X)
        sk._m_step(X, log_resp)
        sk._compute_lower_bound(log_resp, log_prob_norm)
    return best_time(iteration, iters, warmup=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="rows N of every case")
    ap.add_argument("--iters", type=int, default=5, help="iterations timed per measurement")
    ap.add_argument("--types", default="full,tied,diag,spherical",
                    help="comma-separated covariance types to time (default: all four)")
    ap.add_argument("--out", default=None, help="also write the report to this file")
    a = ap.parse_args(argv)
    say = Report(argv, __file__)
    mm = MatmulReference()
    mm.measure(np.float64)
    say(mm.line())
    for cov, D, K in CASES:
        if cov not in a.types.split(","):
            continue
        X = _blobs(a.n, D, max(4, K // 4))
        t_g, t_e, t_m = gmmext_iter(X, cov, K, a.iters)
        t_s = sklearn_iter(X, cov, K, a.iters)
        say(f"{cov:9s} N={a.n} D={D} K={K} float64: gmmext {t_g:.4f} s/iter, scikit-learn "
            f"{t_s:.4f} s/iter: {t_s / t_g:.2f}x (gmmext: E-step {t_e:.4f} s, M-step + lower bound "
            f"{t_m:.4f} s)")
    say.write(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
