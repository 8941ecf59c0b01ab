#!/usr/bin/env python
"""A whole ``fit()`` (initialisation included) of gmmext against scikit-learn's, README's example.

X = 100,000 x 20 float32 standard-normal rows (``np.random.default_rng(0)``), K=64, "diag",
``random_state=0``, every other setting the default (KMeans initialisation, ``tol`` 1e-3,
``max_iter`` 100), best of ``--repeats`` interleaved runs.  Printed per fit: seconds, EM
iterations, the final lower bound (average log-likelihood, nats per frame), and scikit-learn's
time over gmmext's (target: >= 5x with a lower bound as good).  gmmext runs twice: with the
default ``kmeans_max_samples`` (100,000: KMeans on every row, as scikit-learn, so the same
start) and with ``kmeans_max_samples=10_000`` (KMeans on 10,000 rows drawn from
``random_state``).  This figure is per fit; ``bench_em.py`` gives the per-iteration one.

Example::

    python benchmarks/bench_fit.py --out benchmarks/results_fit.txt
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Report  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=2, help="interleaved runs, best kept (default 2)")
    ap.add_argument("--out", help="also write the report to this file")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    from sklearn.mixture import GaussianMixture as SK

    from gmmext import GaussianMixture
    rep = Report(argv, __file__)
    X = np.random.default_rng(0).normal(size=(100_000, 20)).astype(np.float32)
    makers = {"gmmext (default: KMeans on all 100,000 rows)":
              lambda: GaussianMixture(64, covariance_type="diag", random_state=0),
              "gmmext, kmeans_max_samples=10_000": lambda: GaussianMixture(64, covariance_type="diag", random_state=0,
                                                                         kmeans_max_samples=10_000),
              "scikit-learn": lambda: SK(64, covariance_type="diag", random_state=0)}
    best: dict = {}
    for _ in range(args.repeats):
        for name, make in makers.items():
            est = make()
            t = time.perf_counter()
            est.fit(X)
            t = time.perf_counter() - t
            if name not in best or t < best[name][0]:
                best[name] = (t, est.n_iter_, est.lower_bound_)
    sk = best["scikit-learn"][0]
    rep("whole fit() per call (initialisation + EM), X 100000 x 20 float32, K=64, diag, random_state=0")
    rep(f"{'estimator':48s} {'s':>8s} {'iterations':>10s} {'lower bound':>12s} {'sklearn / this':>15s}")
    for name, (t, it, lb) in best.items():
        rep(f"{name:48s} {t:8.2f} {it:10d} {lb:12.5f} {sk / t:14.2f}x")
    rep.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
