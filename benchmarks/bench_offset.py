"""Fits of data far from the origin: gmmext against scikit-learn, float64 and float32.

Two 2-D clusters of 500 rows each with unit variances (means 0 and 4), shifted by ``offset``
in every coordinate, cast to the dtype; ``GaussianMixture(2, covariance_type, random_state=0)``
of both libraries; printed: each fit's average log-likelihood on its data (nats; the true
model's is about -3.53 at every offset), or ``ValueError`` where the fit refused the data
(scikit-learn's "ill-defined empirical covariance").  gmmext's statistics are plain float64
sums, so a variance is a difference of two sums of size ~ offset**2: the offset/spread ratio
where the fits break is the float64 limit that docs/mixture.md names.  float32 data 1e7 off the
origin are already rounded to whole units (and to multiples of 8 at 1e8).

    python benchmarks/bench_offset.py [--out benchmarks/results_offset.txt]
"""
from __future__ import annotations

import argparse
import warnings

import numpy as np
from sklearn.mixture import GaussianMixture as SkGMM

from gmmext import GaussianMixture

OFFSETS = (0.0, 1e4, 1e6, 1e7, 1e8)
TYPES = ("full", "tied", "diag")


def _score(cls, X, cov: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return f"{cls(2, covariance_type=cov, random_state=0).fit(X).score(X):.4f}"
        except ValueError:
            return "ValueError"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="also write the table to this file")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    X0 = np.r_[rng.normal(size=(500, 2)), rng.normal(size=(500, 2)) + 4]
    lines = ["| offset | dtype | " + " | ".join(f"{t} gmmext | {t} scikit-learn" for t in TYPES) + " |",
             "|---|---|" + "---|---|" * len(TYPES)]
    for off in OFFSETS:
        for dtype in ("float64", "float32"):
            X = (X0 + off).astype(dtype)
            cells = [c for t in TYPES for c in (_score(GaussianMixture, X, t), _score(SkGMM, X, t))]
            lines.append(f"| {off:g} | {dtype} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
