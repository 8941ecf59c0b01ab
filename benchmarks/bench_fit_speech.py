#!/usr/bin/env python
"""A whole ``fit()`` of gmmext against scikit-learn's on speech frames, at a UBM's sizes.

``bench_fit.py`` compares the default initialisation on 100,000 x 20 synthetic rows, K=64;
here the rows are what this project fits most: MFCC frames of speechocean762 (the speaker
package's default features, 60 dimensions, float32, cached under ``--out``), K=256 (and any
other ``--components``), diag.  Training frames: ``--frames`` frames drawn (seed 1) from the
utterances of speakers 1-50; held-out: as many drawn (seed 2) from speakers 51-100, so the
held-out log-likelihood is of other speakers.

For each K and each ``random_state`` in 0 .. ``--seeds`` - 1: gmmext's default
(``kmeans_max_samples="auto"``), gmmext with ``kmeans_max_samples`` = each value of
``--kms-per-component`` times K (other sampling rates, e.g. the previous default's 50), and
scikit-learn's ``GaussianMixture(K, covariance_type="diag")``, every other setting the default;
printed per estimator: mean training lower bound and held-out log-likelihood (nats per frame),
EM iterations, median seconds per fit, and the verdicts against scikit-learn's spread over
``random_state`` (max - min), as in ``bench_fit.py``.

Example (about 6 minutes for K=256, most of it scikit-learn)::

    python benchmarks/bench_fit_speech.py --data DATA --out /tmp/fitspeech \\
        --results benchmarks/results_fit_speech.txt
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
from protocol_backends import DEFAULT_DATA, split  # noqa: E402


def _frames(F: dict, paths: list, n: int, seed: int) -> np.ndarray:
    X = np.concatenate([F[p] for p in paths if p in F]).astype(np.float32)
    take = np.random.default_rng(seed).choice(len(X), min(n, len(X)), replace=False)
    return X[np.sort(take)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the speechocean762 folder (wav.scp, utt2spk)")
    ap.add_argument("--out", type=Path, required=True, help="work folder (the feature cache)")
    ap.add_argument("--components", default="256", help="comma-separated K values (default 256)")
    ap.add_argument("--frames", type=int, default=200_000, help="training frames, and held-out frames (default 200000)")
    ap.add_argument("--seeds", type=int, default=3, help="random_states 0 .. SEEDS-1 (default 3)")
    ap.add_argument("--kms-per-component", default="50",
                    help="also gmmext with kmeans_max_samples = these x K (comma-separated; '' none; default 50)")
    ap.add_argument("--results", type=Path, help="append the report to this file")
    ap.add_argument("--jobs", type=int, default=2, help="feature extraction processes (default 2)")
    args = ap.parse_args(argv)
    if args.seeds < 2:
        ap.error("--seeds must be >= 2")
    warnings.simplefilter("ignore")
    from sklearn.mixture import GaussianMixture as SK

    from gmmext import GaussianMixture
    from speaker.featcache import FeatureCache
    from speaker.features import FeatureConfig

    rep = Report(argv, __file__)
    sp = split(args.data, 50)
    held_paths = [p for g in ("dev", "eval") for v in sp[g].values() for p in v]
    args.out.mkdir(parents=True, exist_ok=True)
    with FeatureCache(FeatureConfig(), cache_dir=args.out / "cache", jobs=args.jobs) as fc:
        fc.load(sp["ubm"] + held_paths, desc="features")
    if fc.errors:
        rep(f"# {len(fc.errors)} unusable files skipped, e.g. {next(iter(fc.errors.items()))}")
    X, X_test = _frames(fc.features, sp["ubm"], args.frames, 1), _frames(fc.features, held_paths, args.frames, 2)
    rep(f"# speechocean762 MFCCs (speaker's default features): X {X.shape[0]} x {X.shape[1]} float32 from "
        f"speakers 1-50, held-out {X_test.shape[0]} frames of speakers 51-100; diag; random_state 0..{args.seeds - 1}")
    rates = [int(v) for v in args.kms_per_component.split(",") if v.strip()]
    for K in [int(v) for v in args.components.split(",")]:
        makers = {"gmmext (default, kmeans_max_samples='auto')":
                  lambda s, K=K: GaussianMixture(K, covariance_type="diag", random_state=s)}
        for r in rates:
            makers[f"gmmext, kmeans_max_samples={r} K = {r * K}"] = (
                lambda s, K=K, r=r: GaussianMixture(K, covariance_type="diag", random_state=s,
                                                    kmeans_max_samples=r * K))
        makers["scikit-learn"] = lambda s, K=K: SK(K, covariance_type="diag", random_state=s)
        runs: dict = {name: [] for name in makers}
        for seed in range(args.seeds):              # interleaved: every estimator at each seed
            for name, make in makers.items():
                est = make(seed)
                t = time.perf_counter()
                est.fit(X)
                t = time.perf_counter() - t
                runs[name].append((float(est.lower_bound_), float(est.score(X_test)), est.n_iter_, t))
        rep(f"\n=== K={K}")
        rep(f"{'estimator':52s} {'lower bound':>12s} {'held-out':>10s} {'iter':>7s} {'s/fit':>7s} "
            f"{'sklearn / this':>15s}")
        sk = np.array(runs["scikit-learn"])
        for name, r in runs.items():
            r = np.array(r)
            rep(f"{name:52s} {r[:, 0].mean():12.5f} {r[:, 1].mean():10.5f} {r[:, 2].min():3.0f}-{r[:, 2].max():<3.0f} "
                f"{np.median(r[:, 3]):7.2f} {np.median(sk[:, 3]) / np.median(r[:, 3]):14.2f}x")
        spread_lb, spread_ho = np.ptp(sk[:, 0]), np.ptp(sk[:, 1])
        rep(f"scikit-learn's spread over random_state: lower bound {spread_lb:.5f}, held-out {spread_ho:.5f}")
        for name, r in runs.items():
            if name == "scikit-learn":
                continue
            r = np.array(r)
            gap_lb, gap_ho = r[:, 0].mean() - sk[:, 0].mean(), r[:, 1].mean() - sk[:, 1].mean()
            rep(f"  {name}: lower bound {gap_lb:+.5f} ({'ok' if gap_lb >= -spread_lb else 'MISS'}), "
                f"held-out {gap_ho:+.5f} ({'ok' if gap_ho >= -spread_ho else 'MISS'})")
    rep.write(args.results, append=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
