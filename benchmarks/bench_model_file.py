#!/usr/bin/env python
"""Loading a speaker models file with many speakers: seconds and memory.

Writes a models file of ``--speakers`` speakers (default 50,000, K=2 components, D=2
dimensions, float64; written with ``numpy.savez`` in the documented layout of
``speaker.model_io``, so that writing takes no time), then, each in a fresh child process:

* **load**: ``speaker.model_io.load_model``: wall seconds, the ``tracemalloc`` peak (bytes
  Python allocates while loading) and the child's peak RSS growth (``VmHWM`` minus the RSS
  before loading);
* **load + read every model**: the same, then every speaker's ``GaussianMixture`` read once
  (what loading cost when every model was built up front).

The file's size and its arrays' bytes are printed beside them, and the load average.

Example::

    python benchmarks/bench_model_file.py
    python benchmarks/bench_model_file.py --speakers 5000 --K 64 --D 20
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, load_line  # noqa: E402

CHILD = r"""
import json, sys, time, tracemalloc
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
from speaker.model_io import load_model
import gmmext; gmmext.GaussianMixture                    # imports done before measuring
before = rss("VmRSS:")
tracemalloc.start()
t = time.perf_counter()
mf = load_model(sys.argv[1])
n = len(mf.speakers)
if sys.argv[2] == "all":
    for i in mf.speakers:
        mf.speakers[i]
dt = time.perf_counter() - t
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
print(json.dumps({"seconds": dt, "tracemalloc_peak": peak, "rss_growth": rss("VmHWM:") - before, "n": n}))
"""


def write_file(path: Path, S: int, K: int, D: int, seed: int = 0) -> int:
    """A valid models file of S random speakers; returns its arrays' bytes."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.5, 1.5, (S, K))
    w /= w.sum(axis=1, keepdims=True)
    mu = rng.normal(size=(S, K, D))
    var = rng.uniform(0.5, 2.0, (S, K, D))
    ids = np.array([f"spk{s:06d}" for s in range(S)])
    np.savez(path, format=np.array("gmmext-speaker"), format_version=np.array(1), kind=np.array("speakers"),
             feature_config=np.array(""), ubm_fingerprint=np.array("0" * 64), speaker_ids=ids,
             weights=w, means=mu, covariances=var)
    return w.nbytes + mu.nbytes + var.nbytes + ids.nbytes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speakers", type=int, default=50_000, help="number of speakers in the file (default 50000)")
    ap.add_argument("--K", type=int, default=2, help="components per model (default 2)")
    ap.add_argument("--D", type=int, default=2, help="feature dimensions (default 2)")
    ap.add_argument("--json", help="also write the results as JSON to this file")
    args = ap.parse_args(argv)
    print("\n".join(environment(argv)))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "models.npz"
        nbytes = write_file(path, args.speakers, args.K, args.D)
        print(f"models file: {args.speakers} speakers, K={args.K}, D={args.D}, float64: "
              f"{path.stat().st_size / 1e6:.2f} MB on disk, arrays {nbytes / 1e6:.2f} MB")
        for what in ("load", "all"):
            r = json.loads(subprocess.run([sys.executable, "-c", CHILD, str(path), what], check=True,
                                          capture_output=True, text=True).stdout)
            out[what] = r
            label = "load_model" if what == "load" else "load_model + read every model"
            print(f"{label:32s} {r['seconds']:8.3f} s   tracemalloc peak {r['tracemalloc_peak'] / 1e6:8.1f} MB "
                  f"({r['tracemalloc_peak'] / nbytes:.1f}x the arrays)   RSS growth {r['rss_growth'] / 1e6:8.1f} MB")
    print(load_line())
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
