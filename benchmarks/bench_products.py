#!/usr/bin/env python
"""The core's own matrix products (src/gmm_gemm.h) against BLAS's gemm, same shapes, same run.

The compiled core computes every product itself, one accumulator per element, so that results
do not depend on shapes, threads or BLAS (docs/design.md).  This measures what that costs or
saves against the BLAS scipy links (OpenBLAS, single-threaded, as the core would call it), on
the shapes the core multiplies:

* ``logdens``: a chunk's log-densities, (rows x P) @ (P x K), diagonal layout (P = 2D);
* ``stats``: a chunk's statistics, (K x rows) @ (rows x P) with a transposed first operand;
* ``full``: the log-densities of a full-covariance model, P = D + D(D+1)/2;
* ``top-C``: one component's frame pairs against a stack of speaker models, (n_k x D) @
  (D x models), the models packed once (as ``ModelStack`` keeps them), BLAS given them as a
  plain (D, models) matrix.

Each line: GFLOP/s of the core (its best instruction set, and AVX2 when the CPU also has
AVX-512) and of BLAS's ``sgemm``/``dgemm``, the ratio core / BLAS; times are the best of
``--repeats`` after a warm-up.  The load average is printed: on a busy machine compare the
ratios, not the rates.

    python benchmarks/bench_products.py
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.linalg import blas
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Report, best_time  # noqa: E402

from gmmext import _core  # noqa: E402

# (name, m, n, k, first operand transposed in memory)
CASES = [("logdens D=39 K=512", 392, 512, 78, False),
         ("stats   D=39 K=512", 78, 512, 392, True),
         ("full    D=39 K=64", 148, 64, 819, False),
         ("top-C   3 pairs x 1024 models", 3, 1024, 60, False),
         ("top-C   30 pairs x 1024 models", 30, 1024, 60, False)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per case (best is kept)")
    ap.add_argument("--flops", type=float, default=2e8, help="flops per timed run (calls repeated to reach it)")
    ap.add_argument("--out", help="also append the report to this file")
    a = ap.parse_args(argv)
    say = Report(argv, __file__)
    best_isa, isas = _core.gemm_isas()
    names = {1: "portable", 2: "AVX2", 3: "AVX-512"}
    arch = sorted({str(d.get("architecture")) for d in threadpool_info() if d["user_api"] == "blas"})
    say(f"core products: {names[best_isa]} (CPU has {', '.join(names[i] for i in isas)}); "
          f"BLAS: {', '.join(arch)} kernels, 1 thread")
    other = 2 if best_isa == 3 else None
    head = f"{'case':32s} {'dtype':8s} {'core':>8s}" + (f" {'AVX2':>8s}" if other else "") + f" {'BLAS':>8s}  core/BLAS"
    say(head + "   (GFLOP/s)")
    rng = np.random.default_rng(0)
    with threadpool_limits(limits=1, user_api="blas"):
        for dtype in (np.float32, np.float64):
            gemm = blas.sgemm if dtype == np.float32 else blas.dgemm
            for name, m, n, k, trans in CASES:
                A = rng.normal(size=(k, m) if trans else (m, k)).astype(dtype)
                A = A.T if trans else A
                B = rng.normal(size=(k, n)).astype(dtype)
                reps = max(1, int(a.flops / (2 * m * n * k)))
                flop = 2.0 * m * n * k * reps
                each = not name.startswith("top-C")          # a stack's models are packed once
                t_core = best_time(lambda: _core.gemm_kernel_test(A, B, 0, reps, each), a.repeats, warmup=True)
                t_avx2 = (best_time(lambda: _core.gemm_kernel_test(A, B, 2, reps, each), a.repeats, warmup=True)
                          if other else None)
                Af, Bf = np.asfortranarray(A), np.asfortranarray(B)

                def run_blas():
                    for _ in range(reps):
                        gemm(1.0, Af, Bf)
                t_blas = best_time(run_blas, a.repeats, warmup=True)
                line = f"{name:32s} {np.dtype(dtype).name:8s} {flop / t_core / 1e9:8.1f}"
                if other:
                    line += f" {flop / t_avx2 / 1e9:8.1f}"
                say(line + f" {flop / t_blas / 1e9:8.1f}  {t_blas / t_core:8.2f}x")
    say("the core's times include packing the second operand on every call, except top-C's (a stack's "
        "models are packed once, when it is built); OPENBLAS_CORETYPE, if set, shows in the kernels above")
    say.write(a.out, append=True)


if __name__ == "__main__":
    main()
