#!/usr/bin/env python
"""EM benchmark: gmmext vs scikit-learn vs a NumPy chunked reference, against the BLAS peak.

Every fit runs in its own child process (this script re-invoked with ``--child``), so its
peak RSS (``ru_maxrss``) is its own and the data of one case never inflates another.

Reported per case: seconds per EM iteration (median of ``--iters`` iterations after one
warm-up iteration; an iteration is exactly the body of ``fit``'s loop: E-step + statistics
+ M-step, on X validated once before the loop as ``fit`` does: ``accumulate(X,
check_input=False)``; scikit-learn's rows likewise time its ``_e_step`` + ``_m_step``),
GFLOP/s counted as ``8 N K D`` per iteration (two gemms of (N x 2D) by (2D x K)),
that rate as a fraction of the machine's ``numpy.matmul`` rate in the same dtype (the matmul
reference of ``benchmarks/_common.py``, best of 5 products, measured before every case and
after the last, the best of all measurements kept), peak
RSS of the child (VmHWM) and the memory ``fit`` added on top of the input (peak minus the RSS
just before ``fit``, the input included in the latter).  The GFLOP/s are *effective*: gmmext
sums the statistics of chunks whose responsibilities are sparse (most below 1e-15 of the
frame's largest) over the kept entries instead of by the second gemm, so it does less than
8NKD flops there; the ``gmm-dense`` rows are gmmext with that path disabled, and the
``gemms-only`` rows its two gemms alone on the same chunk shapes and threads (the bound of a
dense E-step made of BLAS gemms).  Also ``score_samples`` / ``predict_proba`` time relative to one E-step
(``accumulate``), float32 vs float64, gmmext vs scikit-learn, and a scaling table
(doubling N, K and D one at a time).

Examples::

    python benchmarks/bench_em.py                     # everything (several minutes)
    python benchmarks/bench_em.py --quick             # small sizes, ~30 s
    python benchmarks/bench_em.py --skip-sklearn --skip-big
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MATMUL_N, MatmulReference, environment, load_line, median_time, times  # noqa: E402

#: Products per matmul-reference measurement here (the best kept); measured before every case.
MATMUL_REPEATS_EM = 5


# ----------------------------------------------------------------------------- helpers
def _rss_mb() -> float:
    """Current resident set size of this process, MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _maxrss_mb() -> float:
    """Peak resident set size of this process so far, MB.

    VmHWM of /proc/self/status: unlike getrusage's ru_maxrss, it starts afresh at exec, so a
    child does not inherit the peak of the (forked) benchmark driver.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6  # Linux: KiB


def make_data(n: int, d: int, dtype, seed: int = 0) -> np.ndarray:
    """(n, d) data from a random 32-blob mixture, generated in blocks (no full-size temporary)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(32, d))
    scales = rng.uniform(0.5, 1.5, size=(32, d))
    X = np.empty((n, d), dtype=dtype)
    step = 1 << 16
    for s in range(0, n, step):
        m = min(step, n - s)
        lab = rng.integers(0, 32, size=m)
        X[s:s + m] = centres[lab] + rng.standard_normal((m, d)) * scales[lab]
    return X


# ----------------------------------------------------------------------------- child jobs
def child_gmmext(n, d, k, dtype, iters, predict, init, max_iter_fit, dense=False):
    from gmmext import GaussianMixture
    X = make_data(n, d, dtype)
    rss0 = _rss_mb()
    gm = GaussianMixture(k, init_params=init, max_iter=max_iter_fit, tol=0.0, random_state=0, covariance_type="diag")
    if dense:  # every chunk's statistics by the gemm, none by the sparse path
        gm._core_cache().sparse_limit = -1.0
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(X)
    t_fit = time.perf_counter() - t
    peak_fit = _maxrss_mb()
    out = dict(input_mb=X.nbytes / 1e6, rss_before_fit_mb=rss0, peak_fit_mb=peak_fit,
               fit_s=t_fit, fit_iters=max_iter_fit)

    def em_iteration():  # the body of fit's EM loop: X was validated once, before the loop
        gm.m_step(gm.accumulate(X, check_input=False))

    em_iteration()  # warm-up
    ts = times(em_iteration, iters)
    out["iter_s"], out["iter_min_s"] = float(np.median(ts)), float(min(ts))
    if predict:
        out["estep_s"] = median_time(lambda: gm.accumulate(X), iters)
        out["score_samples_s"] = median_time(lambda: gm.score_samples(X), iters)
        out["peak_score_mb"] = _maxrss_mb()

        def proba():
            p = gm.predict_proba(X)
            del p
        out["predict_proba_s"] = median_time(proba, iters)
    return out


def child_sklearn(n, d, k, dtype, iters):
    from sklearn.mixture import GaussianMixture as SK
    X = make_data(n, d, dtype)
    rss0 = _rss_mb()
    sk = SK(k, covariance_type="diag", init_params="random_from_data", max_iter=1, tol=0.0,
            random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.fit(X)
    peak = _maxrss_mb()

    def em_iteration():  # the body of sklearn's EM loop
        _, log_resp = sk._e_step(X)
        sk._m_step(X, log_resp)

    em_iteration()
    ts = times(em_iteration, iters)
    return dict(input_mb=X.nbytes / 1e6, rss_before_fit_mb=rss0, peak_fit_mb=peak,
                iter_s=float(np.median(ts)), iter_min_s=float(min(ts)))


def child_numpy(n, d, k, dtype, iters, chunk=4096):
    """The reference algorithm in plain NumPy: per chunk one gemm on [x, x^2], softmax, one gemm back."""
    X = make_data(n, d, dtype)
    rng = np.random.default_rng(1)
    mu = X[rng.choice(n, k, replace=False)].astype(np.float64)
    var = np.tile(X.var(axis=0, dtype=np.float64), (k, 1))
    w = np.full(k, 1.0 / k)
    rss0 = _rss_mb()

    def em_iteration():
        nonlocal mu, var, w
        shift = mu.mean(axis=0)
        m = mu - shift
        prec = 1.0 / var
        M = np.vstack([(m * prec).T, (-0.5 * prec).T]).astype(dtype)
        g = (np.log(w) - 0.5 * d * np.log(2 * np.pi) + 0.5 * np.log(prec).sum(1)
             - 0.5 * (m * m * prec).sum(1)).astype(dtype)
        S = np.zeros((k, 2 * d))
        nk = np.zeros(k)
        xx = np.empty((chunk, 2 * d), dtype=dtype)
        for s in range(0, n, chunk):
            rows = min(chunk, n - s)
            y = xx[:rows]
            np.subtract(X[s:s + rows], shift.astype(dtype), out=y[:, :d])
            np.multiply(y[:, :d], y[:, :d], out=y[:, d:])
            L = y @ M
            L += g
            L -= L.max(axis=1, keepdims=True)
            np.exp(L, out=L)
            L /= L.sum(axis=1, keepdims=True)
            S += L.T @ y
            nk += L.sum(axis=0)
        sx = S[:, :d] / nk[:, None]
        var = np.maximum(S[:, d:] / nk[:, None] - sx * sx, 1e-6)
        mu = sx + shift
        w = nk / n

    em_iteration()
    ts = times(em_iteration, iters)
    return dict(input_mb=X.nbytes / 1e6, rss_before_fit_mb=rss0, peak_fit_mb=_maxrss_mb(),
                iter_s=float(np.median(ts)), iter_min_s=float(min(ts)))


def child_gemms(n, d, k, dtype, iters):
    """The dense E-step's two gemms alone (``_core.dense_gemms_test``): the same BLAS calls on
    the same chunk shapes and threads as gmmext's dense-statistics ``accumulate``, without its
    feature map, row kernel (exponentials) and additions.  Its rate bounds the dense E-step's."""
    from gmmext import _core
    from gmmext._blas import available_threads, single_thread_blas
    from gmmext._engine import default_chunk_size
    dt = np.dtype(dtype)
    T, P = available_threads(), 2 * d
    chunk = default_chunk_size(d, k, dt.itemsize)
    rng = np.random.default_rng(0)
    M = (0.1 * rng.standard_normal((P, k))).astype(dt)
    xx = rng.standard_normal((T, chunk, P)).astype(dt)
    L = np.zeros((T, chunk, k), dtype=dt)
    S = np.zeros((T, k, P), dtype=dt)
    acc = np.zeros((T, k, P))

    def run():
        L.fill(0)  # the products add into L: keep its values bounded
        with single_thread_blas:
            _core.dense_gemms_test(M, n, chunk, T, xx, L, S, acc)

    run()
    ts = times(run, iters)
    return dict(input_mb=0.0, rss_before_fit_mb=_rss_mb(), peak_fit_mb=_maxrss_mb(),
                iter_s=float(np.median(ts)), iter_min_s=float(min(ts)), chunk=chunk, threads=T)


def run_child(job: dict, timeout: float) -> dict:
    """Run one job in a fresh interpreter; returns its result dict (or {'error': ...})."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(job)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def child_main(spec: str) -> None:
    job = json.loads(spec)
    kind = job.pop("kind")
    job["dtype"] = np.dtype(job["dtype"])
    fn = {"gmmext": child_gmmext, "sklearn": child_sklearn, "numpy": child_numpy,
          "gemms": child_gemms}[kind]
    print(json.dumps(fn(**job)))


# ----------------------------------------------------------------------------- report
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true",
                    help="small sizes (N=20000, D=13, K=64; big case N=200000, K=128): a quick check")
    ap.add_argument("-n", "--n-samples", type=int, help="N of the main case (default 200000)")
    ap.add_argument("-d", "--n-features", type=int, help="D of the main case (default 39)")
    ap.add_argument("-k", "--n-components", type=int, help="K of the main case (default 256)")
    ap.add_argument("--iters", type=int, default=5,
                    help="timed EM iterations per case, after one warm-up (median reported; default 5)")
    ap.add_argument("--matmul-size", type=int, default=None,
                    help=f"side of the square matmul giving the peak (default {MATMUL_N}; 1000 with --quick)")
    ap.add_argument("--skip-sklearn", action="store_true", help="do not run scikit-learn (slow)")
    ap.add_argument("--skip-numpy", action="store_true", help="do not run the NumPy reference")
    ap.add_argument("--skip-big", action="store_true",
                    help="do not run the big float32 case (N=5,000,000, D=39, K=1024)")
    ap.add_argument("--skip-scaling", action="store_true", help="do not run the N/K/D doubling table")
    ap.add_argument("--big-n", type=int, help="N of the big float32 case (default 5000000)")
    ap.add_argument("--big-k", type=int, help="K of the big float32 case (default 1024)")
    ap.add_argument("--big-init", default="kmeans",
                    help="init_params of the big case's fit (default kmeans, the estimator's default)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed per child process")
    args = ap.parse_args(argv)
    if args.child:
        child_main(args.child)
        return 0

    q = args.quick
    N = args.n_samples or (20_000 if q else 200_000)
    D = args.n_features or (13 if q else 39)
    K = args.n_components or (64 if q else 256)
    big_n = args.big_n or (200_000 if q else 5_000_000)
    big_k = args.big_k or (128 if q else 1024)
    it = args.iters
    msize = args.matmul_size or (1000 if q else MATMUL_N)
    flops = lambda n, d, k: 8.0 * n * k * d  # noqa: E731

    print("\n".join(environment(argv, __file__)), flush=True)
    lines = []
    # the peak is measured again before every case and after the last, the best kept (other load on the machine
    # can only lower it, which would flatter the fractions)
    mm = MatmulReference(msize, repeats=MATMUL_REPEATS_EM)
    lines.append(f"numpy.matmul {msize}x{msize} (first measurement): float64 {mm.measure(np.float64):.1f}, "
                 f"float32 {mm.measure(np.float32):.1f} GFLOP/s")
    lines.append(f"main case N={N} D={D} K={K}; s/iter = median of {it} EM iterations after a warm-up; "
                 f"GFLOP/s = 8NKD / (s/iter); %peak vs matmul of the same dtype")
    lines.append("")
    for line in lines:
        print(line, flush=True)

    def gm_job(n, d, k, dtype, predict=False, init="random_from_data", max_iter_fit=2, iters=it,
               dense=False):
        return dict(kind="gmmext", n=n, d=d, k=k, dtype=np.dtype(dtype).name, iters=iters,
                    predict=predict, init=init, max_iter_fit=max_iter_fit, dense=dense)

    rows = []  # (name, dtype, N, D, K, result)
    jobs = [("gmmext", "float64", N, D, K, gm_job(N, D, K, np.float64, predict=True, init="kmeans", max_iter_fit=3)),
            ("gmmext", "float32", N, D, K, gm_job(N, D, K, np.float32, predict=True, init="kmeans", max_iter_fit=3))]
    # the same without the sparse statistics path (every chunk's R^T [x, x^2] by a gemm), each
    # followed by its two gemms alone at the same chunk shapes (what the dense E-step cannot beat)
    for dt in ("float64", "float32"):
        jobs.append(("gmm-dense", dt, N, D, K, gm_job(N, D, K, dt, init="kmeans", max_iter_fit=3, dense=True)))
        jobs.append(("gemms-only", dt, N, D, K, dict(kind="gemms", n=N, d=D, k=K, dtype=dt, iters=it)))
    if not args.skip_numpy:
        for dt in ("float64", "float32"):
            jobs.append(("numpy-ref", dt, N, D, K, dict(kind="numpy", n=N, d=D, k=K, dtype=dt, iters=it)))
    if not args.skip_sklearn:
        jobs.append(("sklearn", "float64", N, D, K,
                     dict(kind="sklearn", n=N, d=D, k=K, dtype="float64", iters=max(2, min(it, 3)))))
    if not args.skip_big:
        jobs.append(("gmmext-big", "float32", big_n, D, big_k,
                     gm_job(big_n, D, big_k, np.float32, init=args.big_init, max_iter_fit=2, iters=2)))
    if not args.skip_scaling:
        # the base case again, right before its doublings, so that the ratios compare runs
        # made close together (random_from_data init: the iteration cost does not depend on it)
        for n, d, k in ((N, D, K), (2 * N, D, K), (N, 2 * D, K), (N, D, 2 * K)):
            jobs.append(("scaling", "float64", n, d, k, gm_job(n, d, k, np.float64)))

    hdr = (f"{'impl':<11} {'dtype':<8} {'N':>8} {'D':>4} {'K':>5} {'s/iter':>8} {'(min)':>8} {'GFLOP/s':>8} "
           f"{'%peak':>6} {'input MB':>9} {'peakRSS MB':>11} {'fit+MB':>7}")
    results = []
    for name, dt, n, d, k, job in jobs:
        # the reference measured again before every case: a load that comes and goes lowers
        # some measurements; the best of all of them is kept
        mm.measure(np.float64)
        mm.measure(np.float32)
        print(f"  running {name} {dt} N={n} D={d} K={k} ...", flush=True)
        results.append((name, dt, n, d, k, run_child(job, args.timeout)))
    mm.measure(np.float64)
    mm.measure(np.float32)
    peak64, peak32 = mm.best(np.float64), mm.best(np.float32)
    print(mm.line(), flush=True)
    print("", flush=True)
    print(hdr, flush=True)
    table = [hdr]
    for name, dt, n, d, k, r in results:
        rows.append((name, dt, n, d, k, r))
        if "error" in r:
            line = f"{name:<11} {dt:<8} {n:>8} {d:>4} {k:>5}  ERROR {r['error']}"
        else:
            gf = flops(n, d, k) / r["iter_s"] / 1e9
            line = (f"{name:<11} {dt:<8} {n:>8} {d:>4} {k:>5} {r['iter_s']:>8.4f} {r['iter_min_s']:>8.4f} {gf:>8.1f} "
                    f"{100 * gf / (peak64 if dt == 'float64' else peak32):>5.0f}% {r['input_mb']:>9.1f} {r['peak_fit_mb']:>11.1f} "
                    f"{r['peak_fit_mb'] - r['rss_before_fit_mb']:>7.1f}")
        print(line, flush=True)
        table.append(line)

    def find(name, dt, n=N, d=D, k=K):
        for r in rows:
            if r[:5] == (name, dt, n, d, k) and "error" not in r[5]:
                return r[5]
        return None

    g64, g32 = find("gmmext", "float64"), find("gmmext", "float32")
    out = ["", "checks (targets of the issue):"]

    def check(label, ok, detail):
        out.append(f"  [{'ok' if ok else 'MISS'}] {label}: {detail}")

    def gemms_alone(dt, dense_gflops, peak):
        """The info line: the dense E-step's two gemms alone, and the E-step's rate as a share of theirs."""
        go = find("gemms-only", dt)
        if go:
            gg = flops(N, D, K) / go["iter_s"] / 1e9
            out.append(f"  [info] dense {dt}'s two gemms alone (chunk {go['chunk']}, {go['threads']} threads): "
                       f"{go['iter_s']:.4f} s/iter = {gg:.1f} GFLOP/s = {100 * gg / peak:.0f}% of matmul; "
                       f"the dense E-step runs at {100 * dense_gflops / gg:.0f}% of their rate")

    if g64:
        gf = flops(N, D, K) / g64["iter_s"] / 1e9
        check("float64 >= 60% of matmul peak", gf >= 0.6 * peak64,
              f"{gf:.1f} GFLOP/s = {100 * gf / peak64:.0f}% of {peak64:.1f}")
        sk = find("sklearn", "float64")
        if sk:
            check("float64 >= 15x scikit-learn", sk["iter_s"] >= 15 * g64["iter_s"],
                  f"{sk['iter_s'] / g64['iter_s']:.1f}x ({sk['iter_s']:.3f} vs {g64['iter_s']:.4f} s/iter)")
        dn = find("gmm-dense", "float64")
        if dn:
            gd = flops(N, D, K) / dn["iter_s"] / 1e9
            check("dense float64 >= 80 % of matmul", gd >= 0.8 * peak64,
                  f"dense-statistics gmmext (no sparse path): {dn['iter_s']:.4f} s/iter = {gd:.1f} GFLOP/s = "
                  f"{100 * gd / peak64:.0f}% of {peak64:.1f}"
                  + (f", {sk['iter_s'] / dn['iter_s']:.1f}x scikit-learn" if sk else ""))
            gemms_alone("float64", gd, peak64)
            dn32 = find("gmm-dense", "float32")
            if dn32:
                gd32 = flops(N, D, K) / dn32["iter_s"] / 1e9
                out.append(f"  [info] dense-statistics float32: {dn32['iter_s']:.4f} s/iter = {gd32:.1f} GFLOP/s = "
                           f"{100 * gd32 / peak32:.0f}% of {peak32:.1f}, "
                           f"{dn['iter_s'] / dn32['iter_s']:.2f}x faster than dense float64")
                gemms_alone("float32", gd32, peak32)
        ref = find("numpy-ref", "float64")
        if ref:
            out.append(f"  [info] gmmext vs NumPy reference, float64: {ref['iter_s'] / g64['iter_s']:.2f}x")
        extra = g64["peak_fit_mb"] - g64["rss_before_fit_mb"]
        check("fit peak <= input + 150 MB (float64)", extra <= 150,
              f"fit added {extra:.1f} MB over the input ({g64['input_mb']:.0f} MB); peak RSS {g64['peak_fit_mb']:.0f} MB")
        for m in ("score_samples", "predict_proba"):
            ratio = g64[m + "_s"] / g64["estep_s"]
            check(f"{m} <= 1.3x E-step (float64)", ratio <= 1.3,
                  f"{ratio:.2f}x ({g64[m + '_s']:.4f} vs accumulate {g64['estep_s']:.4f} s)")
        out.append(f"  [info] score_samples peak RSS {g64['peak_score_mb']:.0f} MB "
                   f"(fit peak {g64['peak_fit_mb']:.0f} MB)")
    if g64 and g32:
        sp = g64["iter_s"] / g32["iter_s"]
        check("float32 >= 1.7x faster than float64", sp >= 1.7, f"{sp:.2f}x")
        for m in ("score_samples", "predict_proba"):
            ratio = g32[m + "_s"] / g32["estep_s"]
            check(f"{m} <= 1.3x E-step (float32)", ratio <= 1.3, f"{ratio:.2f}x")
    big = find("gmmext-big", "float32", big_n, D, big_k)
    if big:
        check(f"fit N={big_n} K={big_k} float32 peak RSS < 2x input", big["peak_fit_mb"] < 2 * big["input_mb"],
              f"peak {big['peak_fit_mb']:.0f} MB, input {big['input_mb']:.0f} MB "
              f"({big['peak_fit_mb'] / big['input_mb']:.2f}x); fit {big['fit_s']:.0f} s")
    if not args.skip_scaling:
        out.append("")
        out.append("scaling (float64, gmmext): time ratio when one size doubles (linear = 2.00)")
        base = find("scaling", "float64")
        for label, (n, d, k) in (("1x", (N, D, K)), ("2N", (2 * N, D, K)), ("2D", (N, 2 * D, K)),
                                 ("2K", (N, D, 2 * K))):
            r = find("scaling", "float64", n, d, k)
            if r and base:
                out.append(f"  {label:<3} N={n:<8} D={d:<4} K={k:<5} {r['iter_s']:.4f} s/iter  "
                           f"ratio {r['iter_s'] / base['iter_s']:.2f}  (min-based {r['iter_min_s'] / base['iter_min_s']:.2f})")
    out.append(load_line("at end"))
    for line in out:
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
