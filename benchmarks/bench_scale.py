#!/usr/bin/env python
"""Scale benchmark: distributed EM on Dask (1 and 2 workers), bytes sent per iteration, the
per-frame cost of a UBM-sized E-step, and out-of-core fitting of a memmap larger than the
memory the process may allocate.

Reported (and written as JSON with ``--json``):

* **dask**: for a LocalCluster of 1 and of 2 single-threaded worker processes on this machine
  (loopback), seconds per EM iteration (median; an iteration is exactly what
  ``GaussianMixture.fit`` does on a Dask array: parameters out, ``accumulate`` on every block
  where it lives, tree sum, ``m_step`` on the client), and the bytes moved per iteration from
  Dask's own counters: the workers' ``transfer_outgoing_bytes_total`` (worker-to-worker
  transfers) and ``dask.sizeof`` of the parameters and of every statistics result; the
  loopback interface's byte counter (``/proc/net/dev``, all traffic on ``lo``, for a
  cross-check).  The data are generated on the workers and never move.  Also the in-process
  in-memory iteration with 1 and 2 core threads for comparison.
* **per_frame**: seconds per frame of one E-step + statistics (``accumulate``) at a UBM's size
  (default K=2048, D=60, float32) on one core thread: the input of the projection in
  ``docs/scaling.md``.
* **memmap**: a child process fits a float32 ``numpy.memmap`` of ``--memmap-gb`` GB under an
  ``RLIMIT_DATA`` (``ulimit -d``) of ``--data-limit-mb`` MB; reported: its peak RSS
  (``VmHWM``, which counts the file's pages the kernel maps in and can drop at any time), its
  peak anonymous memory (``RssAnon`` sampled every 10 ms: what the fit really allocates) and
  seconds per EM iteration; then the same file loaded into memory (``np.load``) under the same
  limit, which must fail.

Examples::

    python benchmarks/bench_scale.py                      # everything (a few minutes)
    python benchmarks/bench_scale.py --quick              # small sizes, ~1 min
    python benchmarks/bench_scale.py --skip-memmap --json out.json
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_time, environment, load_line, median_time  # noqa: E402


# ----------------------------------------------------------------------------- helpers
def _status_kb(field: str, pid: str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def _lo_bytes() -> int:
    """Bytes received on the loopback interface so far (= sent on it)."""
    with open("/proc/net/dev") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name.strip() == "lo":
                return int(rest.split()[0])
    return -1


def _model(K: int, D: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return dict(weights_init=np.full(K, 1.0 / K), means_init=rng.normal(size=(K, D)),
                precisions_init=np.full((K, D), 0.5))


# ----------------------------------------------------------------------------- Dask
def bench_dask(n_workers: int, N: int, D: int, K: int, block: int, iters: int) -> dict:
    import dask
    import dask.array as da
    from dask.sizeof import sizeof
    from distributed import Client, LocalCluster, wait

    from gmmext import GaussianMixture
    from gmmext import dask_accumulate
    from gmmext._blocked import StatsParams
    from gmmext._dask import stats_task

    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1", silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        rs = da.random.RandomState(0)
        X = rs.standard_normal((N, D), chunks=(block, D)).astype(np.float32).persist()
        wait(X)
        gm = GaussianMixture(K, max_iter=1, tol=0.0, **_model(K, D), covariance_type="diag")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm.fit(X)                                    # warm-up: imports, first task on each worker

        def w2w() -> tuple[int, int]:
            c = client.run(lambda dask_worker: (dask_worker.transfer_outgoing_bytes_total,
                                                dask_worker.transfer_outgoing_count_total))
            return sum(v[0] for v in c.values()), sum(v[1] for v in c.values())

        times, moved, count, lo = [], [], [], []
        for _ in range(iters):
            (b0, c0), l0 = w2w(), _lo_bytes()
            t0 = time.perf_counter()
            stats = dask_accumulate(gm, X)               # parameters out, statistics tree-summed back
            gm.m_step(stats)
            times.append(time.perf_counter() - t0)
            (b1, c1), l1 = w2w(), _lo_bytes()
            moved.append(b1 - b0)
            count.append(c1 - c0)
            lo.append(l1 - l0)
        n_blocks = X.numblocks[0]
        one = dask.compute(dask.delayed(stats_task)(StatsParams.of(gm, 1), X.to_delayed()[0, 0]))[0]
        return {
            "workers": n_workers, "frames": N, "dims": D, "components": K, "blocks": n_blocks,
            "block_rows": block, "sec_per_iter": statistics.median(times), "sec_per_iter_all": times,
            "worker_to_worker_bytes_per_iter": statistics.median(moved),
            "transfers_per_iter": statistics.median(count),
            "loopback_bytes_per_iter": statistics.median(lo),
            "params_bytes": int(sizeof(StatsParams.of(gm, 1))),
            "stats_bytes_per_result": int(sizeof(one)),
            "results_per_iter": n_blocks + _n_sums(n_blocks),
            "data_bytes": int(N * D * 4),
        }


def _n_sums(n: int, split_every: int = 8) -> int:
    total = 0
    while n > 1:
        n = -(-n // split_every)
        total += n
    return total


def _one_blas_thread():
    """BLAS on one thread, as in a Dask worker (whose nanny sets OPENBLAS_NUM_THREADS=1): the
    M-step's small products too (the core limits BLAS for its own calls)."""
    from gmmext import single_thread_blas
    return single_thread_blas


def bench_in_memory(N: int, D: int, K: int, iters: int, threads: int) -> dict:
    from gmmext import GaussianMixture
    X = np.random.default_rng(0).standard_normal((N, D)).astype(np.float32)
    gm = GaussianMixture(K, max_iter=1, tol=0.0, n_threads=threads, **_model(K, D), covariance_type="diag")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(X)
    with _one_blas_thread():
        t = median_time(lambda: gm.m_step(gm.accumulate(X)), iters)
    return {"threads": threads, "frames": N, "sec_per_iter": t}


def bench_per_frame(N: int, D: int, K: int, repeats: int = 3) -> dict:
    from gmmext import GaussianMixture
    X = np.random.default_rng(1).standard_normal((N, D)).astype(np.float32)
    m = _model(K, D)
    gm = GaussianMixture.from_parameters(m["weights_init"].astype(np.float32), m["means_init"].astype(np.float32),
                                         (1.0 / m["precisions_init"]).astype(np.float32), n_threads=1)
    with _one_blas_thread():
        gm.accumulate(X[:4096])
        best = best_time(lambda: gm.accumulate(X), repeats)
    stats = gm.accumulate(X[:10_000])
    m_step = median_time(lambda: gm.m_step(stats), 10)
    return {"frames": N, "dims": D, "components": K, "threads": 1, "sec": best,
            "sec_per_frame": best / N, "gflops": 8.0 * N * K * D / best / 1e9, "m_step_sec": m_step}


def bench_features(seconds: float = 60.0) -> dict:
    """Feature extraction (speaker.extract_features, default FeatureConfig: 16 kHz MFCC + deltas,
    VAD, CMVN) of a synthetic recording, one process: seconds of CPU per second of audio."""
    import soundfile as sf

    from speaker import FeatureConfig, extract_features
    sr = 16000
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(0)
    y = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
         + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "a.wav")
        sf.write(path, y, sr)
        f = extract_features(path, config=FeatureConfig())        # warm-up (numba JIT in librosa)
        best = best_time(lambda: extract_features(path, config=FeatureConfig()), 3)
    return {"audio_sec": seconds, "sec": best, "real_time_factor": best / seconds, "frames": int(f.shape[0]),
            "dims": int(f.shape[1])}


# ----------------------------------------------------------------------------- memmap
def child_memmap(path: str, K: int, iters: int, mode: str) -> None:
    """In a child process (under the parent's RLIMIT_DATA): fit the memmap, or load it (must fail)."""
    peak = {"anon": 0}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak["anon"] = max(peak["anon"], _status_kb("RssAnon"))
            time.sleep(0.01)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out = {"mode": mode}
    try:
        if mode == "load":
            try:
                X = np.load(path)                        # the whole file in memory
                out["loaded"] = True
                out["sum"] = float(X[:10].sum())
            except MemoryError as exc:
                out["loaded"] = False
                out["error"] = f"MemoryError: {exc}"[:200]
        else:
            from gmmext import GaussianMixture
            X = np.load(path, mmap_mode="r")
            t0 = time.perf_counter()
            gm = GaussianMixture(K, max_iter=iters, tol=0.0, random_state=0, n_threads=None, covariance_type="diag")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                gm.fit(X)
            out["fit_sec"] = time.perf_counter() - t0
            out["lower_bounds"] = [float(v) for v in gm.lower_bounds_]
            t0 = time.perf_counter()
            gm.m_step(gm.accumulate(X))                  # one more iteration, timed alone
            out["sec_per_iter"] = time.perf_counter() - t0
            out["shape"] = list(X.shape)
    finally:
        stop.set()
        th.join()
    out["peak_rss_mb"] = _status_kb("VmHWM") / 1024
    out["peak_anon_mb"] = peak["anon"] / 1024
    print(json.dumps(out))


def bench_memmap(gb: float, D: int, K: int, iters: int, data_limit_mb: int, folder: str | None) -> dict:
    N = int(gb * 1e9 / (D * 4))
    with tempfile.TemporaryDirectory(dir=folder, prefix="bench-memmap-") as d:
        path = os.path.join(d, "X.npy")
        t0 = time.perf_counter()
        M = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(N, D))
        rng = np.random.default_rng(0)
        centres = rng.normal(scale=3.0, size=(32, D)).astype(np.float32)
        step = 1 << 18
        for s in range(0, N, step):
            n = min(step, N - s)
            M[s:s + n] = centres[rng.integers(0, 32, n)] + rng.standard_normal((n, D), dtype=np.float32)
        M.flush()
        del M
        write_sec = time.perf_counter() - t0
        limit = data_limit_mb << 20

        def pre():
            resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

        res = {"file_gb": os.path.getsize(path) / 1e9, "frames": N, "dims": D, "components": K,
               "iters": iters, "data_limit_mb": data_limit_mb, "write_sec": write_sec}
        for mode in ("fit", "load"):
            p = subprocess.run([sys.executable, __file__, "--child-memmap", path, "--components", str(K),
                                "--iters", str(iters), "--child-mode", mode],
                               capture_output=True, text=True, preexec_fn=pre)
            try:
                res[mode] = json.loads(p.stdout.strip().splitlines()[-1])
            except (IndexError, json.JSONDecodeError):
                res[mode] = {"returncode": p.returncode, "stderr": p.stderr[-1000:]}
        return res


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes")
    ap.add_argument("--frames", type=int, help="frames of the Dask benchmark (default 2,000,000)")
    ap.add_argument("--dims", type=int, default=60)
    ap.add_argument("--components", type=int, default=256, help="K of the Dask and memmap benchmarks")
    ap.add_argument("--block-rows", type=int, default=100_000)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--ubm-components", type=int, default=2048, help="K of the per-frame cost")
    ap.add_argument("--memmap-gb", type=float, default=4.0)
    ap.add_argument("--data-limit-mb", type=int, default=1024)
    ap.add_argument("--memmap-dir", help="folder for the memmap file (default: the temporary folder)")
    ap.add_argument("--skip-memmap", action="store_true")
    ap.add_argument("--skip-dask", action="store_true")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--child-memmap", help=argparse.SUPPRESS)
    ap.add_argument("--child-mode", default="fit", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_memmap:
        child_memmap(args.child_memmap, args.components, args.iters, args.child_mode)
        return
    N = args.frames or (300_000 if args.quick else 2_000_000)
    res = {"environment": environment(None, __file__)}
    for line in res["environment"]:
        print(f"# {line}")
    if not args.skip_dask:
        res["in_memory"] = [bench_in_memory(N, args.dims, args.components, args.iters, t) for t in (1, 2)]
        for r in res["in_memory"]:
            print(f"in-memory, {r['threads']} core thread(s): {r['sec_per_iter']:.3f} s/iteration "
                  f"({N} frames x {args.dims} dims, K={args.components}, float32)")
        res["dask"] = [bench_dask(w, N, args.dims, args.components, args.block_rows, args.iters) for w in (1, 2)]
        for r in res["dask"]:
            print(f"Dask, {r['workers']} worker(s): {r['sec_per_iter']:.3f} s/iteration, {r['blocks']} blocks; "
                  f"sent by workers {r['worker_to_worker_bytes_per_iter'] / 1e6:.3f} MB/iteration "
                  f"({r['transfers_per_iter']:g} transfers), loopback "
                  f"{r['loopback_bytes_per_iter'] / 1e6:.3f} MB/iteration; parameters {r['params_bytes'] / 1e6:.3f} MB, "
                  f"one statistics result {r['stats_bytes_per_result'] / 1e6:.3f} MB x {r['results_per_iter']} "
                  f"results/iteration; data {r['data_bytes'] / 1e9:.2f} GB (never moved)")
    pf_n = 50_000 if args.quick else 200_000
    res["per_frame"] = bench_per_frame(pf_n, args.dims, args.ubm_components)
    r = res["per_frame"]
    print(f"E-step + statistics, K={r['components']}, D={r['dims']}, float32, 1 core thread: "
          f"{r['sec_per_frame'] * 1e6:.2f} us/frame ({r['gflops']:.1f} GFLOP/s counted as 8NKD); "
          f"M-step {r['m_step_sec'] * 1e3:.2f} ms")
    res["features"] = r = bench_features(20.0 if args.quick else 60.0)
    print(f"feature extraction (16 kHz, default FeatureConfig, 1 process): {r['real_time_factor']:.4f} s per "
          f"second of audio ({r['frames']} of {int(r['audio_sec'] * 100)} frames kept by the VAD)")
    if not args.skip_memmap:
        gb = 0.5 if args.quick else args.memmap_gb
        limit = 512 if args.quick else args.data_limit_mb
        res["memmap"] = m = bench_memmap(gb, args.dims, 16, 2, limit, args.memmap_dir)
        f = m.get("fit", {})
        print(f"memmap {m['file_gb']:.2f} GB ({m['frames']} x {m['dims']} float32), RLIMIT_DATA {limit} MB, K=16: "
              f"fit {f.get('fit_sec', float('nan')):.1f} s ({m['iters']} iterations + k-means init), "
              f"{f.get('sec_per_iter', float('nan')):.2f} s/iteration, peak RSS {f.get('peak_rss_mb', float('nan')):.0f} MB "
              f"(file pages included), peak anonymous memory {f.get('peak_anon_mb', float('nan')):.0f} MB")
        ld = m.get("load", {})
        print(f"  the same file loaded into memory under the same limit: "
              f"{'loaded (limit too high to show anything)' if ld.get('loaded') else ld.get('error', ld)}")
    res["load_avg_at_end"] = load_line("at end")
    print(f"# {res['load_avg_at_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
