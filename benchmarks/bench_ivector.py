#!/usr/bin/env python
"""One T-matrix EM pass and i-vector extraction on the 2,000 shared utterances (K=512, D=60, R=200).

The features of ``--data`` (default: the 2,000 speechocean762 sentences, default
``FeatureConfig``, D=60) are loaded as in ``bench_utterances.py`` (same cache format), and a
diagonal UBM of ``--components`` components is made from them the same way (means drawn from
the frames, global variance, equal weights: the dense T-step costs the same whatever the UBM's
quality).  Then, all with the functions of ``speaker/ivector.py``:

* Baum-Welch statistics of every utterance (``centred_stats``: one core ``accumulate_segments``
  call per batch of ``speaker.ivector.BATCH`` utterances);
* one EM pass (``accumulate`` + ``m_step`` + ``min_divergence``) from a random T, best of
  ``--repeats``, with the flops it needs (formula printed) and its GFLOP/s, against the
  matmul reference of ``benchmarks/_common.py`` measured in the same run (N = 2000, best of 3,
  before and after);
* where the time goes: each gemm of the pass timed on its own on one batch, scaled to the
  number of batches, and the per-utterance part (the core's Cholesky factor + inverse over the
  threads, ``gmmext.packed_posteriors``) as the rest of the posterior;
* extraction (posterior means) in utterances/s, from statistics and from features.

    python benchmarks/bench_ivector.py --data DATA/speechocean762 --cache /tmp/feats2000.npz
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MatmulReference, Report, best_time  # noqa: E402


def pass_flops(U: int, K: int, D: int, R: int) -> dict[str, float]:
    """Flops of one EM pass (multiply-add = 2), P = R(R+1)/2."""
    P = R * (R + 1) // 2
    return {"T_k'T_k (K gemms)": 2 * K * D * R * R, "precisions n @ TtT": 2 * U * K * P, "b = f T": 2 * U * K * D * R,
            "potrf + potri": U * R ** 3, "means": 2 * U * R * R, "A += n' Eww": 2 * U * K * P, "C += f' E[w]": 2 * U * K * D * R,
            "m-step solves": K * (2 * R ** 3 / 3 + 2 * R * R * D)}


def main(argv=None) -> int:
    from bench_utterances import load_features, make_model
    from speaker import ivector as iv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT / "../shared/data/speechocean762",
                    help="folder with wav.scp (default: ../shared/data/speechocean762 from the repository root)")
    ap.add_argument("--cache", type=Path, default=None, help="features cache .npz (outside the repository)")
    ap.add_argument("--limit", type=int, default=None, help="first N utterances only (default all)")
    ap.add_argument("--components", type=int, default=512, help="UBM size K (default 512)")
    ap.add_argument("--rank", type=int, default=200, help="i-vector dimension R (default 200)")
    ap.add_argument("--repeats", type=int, default=1, help="EM passes timed (best of; default 1)")
    ap.add_argument("--jobs", type=int, default=2, help="feature-extraction processes (default 2)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results_ivector.txt", help="results file")
    a = ap.parse_args(argv)

    feats = load_features(a.data, a.limit, a.jobs, a.cache)
    X = np.concatenate(feats)
    ubm = make_model(X, a.components)
    K, D = ubm.means_.shape
    R, U = a.rank, len(feats)
    say = Report(argv, __file__, prefix="# ")
    say(f"# {U} utterances, {len(X)} frames, K={K}, D={D}, R={R}, batch {iv.BATCH}, float64")
    ref = MatmulReference()
    mm0 = ref.measure()
    t = time.perf_counter()
    batches = list(iv.stats_batches(ubm, feats))
    t_stats = time.perf_counter() - t
    say(f"Baum-Welch statistics (centred_stats, core accumulate_segments): {t_stats:.1f} s = {U / t_stats:.0f} utt/s")

    T0 = iv.init_tv(K, D, R, 0)
    out = {}

    def one_pass():
        out["acc"] = acc = iv.accumulate(T0, batches, K)
        out["T1"] = iv.min_divergence(iv.m_step(acc, K), acc)
    best = best_time(one_pass, a.repeats)
    acc, T1 = out["acc"], out["T1"]
    mm1 = ref.measure()
    fl = pass_flops(U, K, D, R)
    total = sum(fl.values())
    say("flops of one pass, P = R(R+1)/2: 2KDR^2 + 2UKP (precisions) + 2UKDR (b) + UR^3 (potrf+potri) + 2UR^2 "
        "+ 2UKP (A) + 2UKDR (C) + K(2R^3/3 + 2R^2 D) (m-step)")
    say(f"  = {total / 1e9:.1f} GFLOP")
    say(ref.line())
    say(f"one EM pass: {best:.1f} s, {total / best / 1e9:.1f} GFLOP/s; numpy matmul (2000^2) in this run "
        f"{mm0:.1f} / {mm1:.1f} GFLOP/s (before / after): fraction {ref.percent(total / best / 1e9) / 100:.2f}")

    # where the time goes: the gemms of one batch on their own, scaled to all batches
    from gmmext import row_gemm
    n, f = batches[0]
    B, nb = len(n), U / len(n)
    TtT = iv.component_products(T0, K)
    mean, Eww, _, _ = iv._posterior(T0, n, f, TtT, cov="packed", second_moment=True)
    # the products as accumulate() and _posterior() compute them (gmmext.row_gemm)
    Cs, AH = np.zeros((K * D, R)), np.zeros((K + 1, TtT.shape[1]))
    n1 = np.ones((B, K + 1))
    n1[:, :K] = n
    parts = {}

    def timed(name, fn, scale=nb):
        parts[name] = best_time(fn, 3) * scale
    post = "posterior total (gemms + core Cholesky + inverse, E[ww'] packed)"
    timed("T_k'T_k (core dsyrk per component, once per pass)", lambda: iv.component_products(T0, K), 1)
    timed("precisions n @ TtT", lambda: row_gemm(n, TtT))
    timed("b = f T", lambda: row_gemm(f, T0))
    timed(post, lambda: iv._posterior(T0, n, f, TtT, cov="packed", second_moment=True))
    timed("[A; H] += [n, 1]' Eww (packed, in place)",
          lambda: row_gemm(n1.T, Eww, out=AH, beta=1.0))
    timed("C += f' E[w] (in place)", lambda: row_gemm(f.T, mean, out=Cs, beta=1.0))
    timed("m-step + min-divergence (once)", lambda: iv.min_divergence(iv.m_step(acc, K), acc), 1)
    parts["  of which per-utterance work in the core (posterior - its gemms)"] = (
        parts[post] - parts["precisions n @ TtT"] - parts["b = f T"])
    say("where the time goes (each piece timed alone, best of 3, on one batch x number of batches):")
    for name, s in parts.items():
        say(f"  {name:<66} {s:6.2f} s  ({100 * s / best:4.0f} % of the pass)")

    tv = iv.TotalVariability(T1)
    t = time.perf_counter()
    iv.extract_ivectors(tv, batches)
    t_ext = time.perf_counter() - t
    say(f"i-vector extraction from statistics: {U / t_ext:.0f} utt/s; from features (statistics + "
        f"extraction): {U / (t_ext + t_stats):.0f} utt/s")
    say.write(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
