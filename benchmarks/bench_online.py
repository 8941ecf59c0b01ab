"""How close ``GaussianMixture.partial_fit`` (stepwise online EM) gets to the batch fit of the same data.

A stream of ``--batches`` batches of ``--rows`` rows drawn from a known 3-component, 2-D diagonal
mixture (weights 0.5 / 0.3 / 0.2, unit-scale spreads) goes through ``partial_fit`` once, in order;
the batch fit is ``fit`` on all the rows (tol 1e-6).  Printed per ``learning_decay``: the largest
absolute difference of the means, of the weights, the largest relative difference of the
variances (components matched by their first coordinate), the average log-likelihood per row of
the batch fit minus the online one's (nats), and the online pass's time.

    python benchmarks/bench_online.py [--batches 200] [--rows 500] [--out benchmarks/results_online.txt]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Report  # noqa: E402

from gmmext import GaussianMixture  # noqa: E402

WEIGHTS = np.array([0.5, 0.3, 0.2])
MEANS = np.array([[0.0, 0.0], [5.0, 5.0], [-5.0, 4.0]])
SDS = np.array([[1.0, 0.5], [0.7, 1.2], [1.5, 1.0]])


def draw(rng, n: int) -> np.ndarray:
    lab = rng.choice(3, n, p=WEIGHTS)
    return MEANS[lab] + rng.standard_normal((n, 2)) * SDS[lab]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, default=200, help="batches in the stream")
    ap.add_argument("--rows", type=int, default=500, help="rows per batch")
    ap.add_argument("--out", default=None, help="also write the report to this file")
    a = ap.parse_args(argv)
    say = Report(argv, __file__)
    rng = np.random.default_rng(0)
    batches = [draw(rng, a.rows) for _ in range(a.batches)]
    X = np.vstack(batches)
    ba = GaussianMixture(3, covariance_type="diag", random_state=0, tol=1e-6, max_iter=500).fit(X)
    j = np.argsort(ba.means_[:, 0])
    for decay in (0.6, 0.8, 1.0):
        t = time.perf_counter()
        on = GaussianMixture(3, covariance_type="diag", random_state=0, learning_decay=decay)
        for b in batches:
            on.partial_fit(b)
        dt = time.perf_counter() - t
        i = np.argsort(on.means_[:, 0])
        say(f"learning_decay={decay}: {a.batches} batches x {a.rows} rows: max |mean diff| "
            f"{np.abs(on.means_[i] - ba.means_[j]).max():.2e}, max |weight diff| "
            f"{np.abs(on.weights_[i] - ba.weights_[j]).max():.2e}, max relative variance diff "
            f"{np.abs(on.covariances_[i] / ba.covariances_[j] - 1).max():.2e}, batch - online "
            f"log-likelihood {ba.score(X) - on.score(X):.2e} nats/row; online pass {dt:.2f} s")
    say.write(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
