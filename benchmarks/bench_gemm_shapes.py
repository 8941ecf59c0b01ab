#!/usr/bin/env python
"""The dense diagonal E-step's two gemms at the core's chunk shapes, one thread, against matmul.

Per chunk of ``rows`` frames (the core's default chunk for D=39, K=256: 392 rows in float64,
784 in float32) the dense E-step makes two BLAS products (``src/_core.pyx``):

* log-densities: L (rows x K) = xx (rows x 2D) @ M (2D x K), L row-major (as the core has it);
* statistics: S (2D x K) = xx^T (2D x rows) @ L (rows x K), L row-major (BLAS packs it
  transposed), whole or with its summed dimension in slices of 128 (as the core's ``_gemm``);
* the same two with L column-major (a layout the core does not use: every reader of L reads
  rows), to show what that layout would change.

Each is timed with SciPy's BLAS on one thread (as inside the core's OpenMP threads), best of
``--repeats`` runs of 200 products, and printed as GFLOP/s and as a fraction of the same BLAS's
single-thread rate on a 1000x1000 product in the same run.

    python benchmarks/bench_gemm_shapes.py [--repeats 5] [--out benchmarks/results_gemm_shapes.txt]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.linalg import blas
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Report, best_time  # noqa: E402

from gmmext._engine import default_chunk_size  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of 200 products each, best kept (default 5)")
    ap.add_argument("-d", "--n-features", type=int, default=39, help="D (default 39)")
    ap.add_argument("-k", "--n-components", type=int, default=256, help="K (default 256)")
    ap.add_argument("--out", type=Path, default=None, help="also write the report to this file")
    a = ap.parse_args(argv)
    say = Report(argv, __file__)
    rng = np.random.default_rng(0)
    D, K, P, n = a.n_features, a.n_components, 2 * a.n_features, 200
    say(f"D={D} K={K}: one thread (threadpoolctl), best of {a.repeats} x {n} products; "
        "% = of the single-thread 1000x1000 product in the same dtype")
    with threadpool_limits(1):
        for dt, gemm in ((np.float64, blas.dgemm), (np.float32, blas.sgemm)):
            A = np.asfortranarray(rng.standard_normal((1000, 1000)).astype(dt))
            C = np.zeros((1000, 1000), dt, order="F")
            peak = 2e9 / best_time(lambda: gemm(1.0, A, A, 0.0, C, overwrite_c=1), a.repeats, warmup=True)
            rows = default_chunk_size(D, K, np.dtype(dt).itemsize)
            flops = 2.0 * rows * K * P
            xT = np.asfortranarray(rng.standard_normal((P, rows)).astype(dt))    # row-major xx
            Mt = np.asfortranarray(rng.standard_normal((K, P)).astype(dt))       # row-major M
            L_rm = np.zeros((K, rows), dt, order="F")                             # row-major L
            L_cm = np.zeros((rows, K), dt, order="F")                             # column-major L
            S = np.zeros((P, K), dt, order="F")

            def sliced():
                for s in range(0, rows, 128):
                    gemm(1.0, xT[:, s:s + 128], L_rm[:, s:s + 128], 1.0, S, trans_b=1, overwrite_c=1)
            cases = [
                ("log-densities, L row-major (the core)", lambda: gemm(1.0, Mt, xT, 1.0, L_rm, overwrite_c=1)),
                ("statistics, L row-major, slices of 128 (the core)", sliced),
                ("statistics, L row-major, one call", lambda: gemm(1.0, xT, L_rm, 1.0, S, trans_b=1, overwrite_c=1)),
                ("log-densities, L column-major", lambda: gemm(1.0, xT, Mt, 1.0, L_cm, trans_a=1, trans_b=1,
                                                                overwrite_c=1)),
                ("statistics, L column-major", lambda: gemm(1.0, xT, L_cm, 1.0, S, overwrite_c=1)),
            ]
            say(f"{np.dtype(dt).name}: chunk {rows} rows; single-thread 1000x1000 product {peak / 1e9:.1f} GFLOP/s")
            for name, fn in cases:
                t = best_time(lambda: [fn() for _ in range(n)], a.repeats, warmup=True) / n
                say(f"  {name:52s} {flops / t / 1e9:7.1f} GFLOP/s  {100 * flops / t / peak:4.0f} %")
    say.write(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
