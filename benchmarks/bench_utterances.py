#!/usr/bin/env python
"""One UBM EM pass over thousands of short utterances: one core call per utterance vs one in all.

The features of the utterances of ``--data`` (a Kaldi-style folder with ``wav.scp``, e.g. the
2,000 sentences of speechocean762, 16 kHz) are extracted once with
``speaker.extract_features`` (default ``FeatureConfig``) on ``--jobs`` processes and kept in
memory (and cached in ``--cache``, outside the repository, to rerun quickly).  A diagonal
float32 model of ``--components`` (512) components (means drawn from the frames, the global
variance, equal weights) then computes the E-step statistics of all frames, four ways:

* (a) a loop of ``gm.accumulate(utt)``, one call per utterance (today's recipes);
* (b) ``gm.accumulate(list_of_utts)``: one core call, chunks running across utterances;
* (c) ``gm.accumulate_segments(list_of_utts)``: one core call, statistics per utterance;
* (d) ``gm.accumulate(concatenated)``: one call on the same frames in one array (the floor).

Each is timed as the best of ``--repeats`` runs, interleaved, and printed with its ratio to (d)
(target: (b) <= 1.15 x (d)).  Then the per-utterance overhead at K=64 on 3-s pieces
(300 frames): the loop of today's ``accumulate`` (matrices and engine cached), the loop as it
was before the cache (``model_matrices`` and a new ``Engine`` on every call, reproduced with
those functions), and the batched call, all against one call on the concatenation.

Examples::

    python benchmarks/bench_utterances.py --data DATA/speechocean762
    python benchmarks/bench_utterances.py --data DATA/speechocean762 --limit 200 --repeats 1   # quick
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Report, times  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def read_wav_scp(folder: Path, limit: int | None) -> list[tuple[str, Path]]:
    """``utt_id path`` lines of ``folder/wav.scp`` (paths relative to the folder), first ``limit``."""
    out = []
    for line in (folder / "wav.scp").read_text().splitlines():
        if line.strip():
            utt, path = line.split(maxsplit=1)
            out.append((utt, folder / path))
    return out[:limit] if limit else out


def _features(path: Path) -> np.ndarray:
    import speaker
    return speaker.extract_features(str(path), config=speaker.FeatureConfig()).astype(np.float32)


def load_features(folder: Path, limit: int | None, jobs: int, cache: Path | None) -> list:
    """Per-utterance feature arrays (float32), from ``cache`` when it holds the same list."""
    items = read_wav_scp(folder, limit)
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            if list(z["utts"]) == [u for u, _ in items]:
                off = z["offsets"]
                X = z["frames"]
                print(f"features: {len(items)} utterances from the cache {cache}")
                return [X[off[i]:off[i + 1]] for i in range(len(items))]
    t = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        feats = list(pool.map(_features, [p for _, p in items], chunksize=16))
    print(f"features: {len(items)} utterances extracted in {time.perf_counter() - t:.1f} s "
          f"on {jobs} processes")
    if cache is not None:
        off = np.concatenate([[0], np.cumsum([len(f) for f in feats])])
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, frames=np.concatenate(feats), offsets=off, utts=np.array([u for u, _ in items]))
        os.replace(tmp, cache)
    return feats


def make_model(X: np.ndarray, K: int, seed: int = 0):
    from gmmext import GaussianMixture
    rng = np.random.default_rng(seed)
    means = X[rng.choice(len(X), K, replace=False)].astype(np.float32)
    var = np.tile(X.astype(np.float64).var(axis=0), (K, 1)).astype(np.float32)
    return GaussianMixture.from_parameters(np.full(K, 1.0 / K, dtype=np.float32), means, var)


def best_times(fns: dict, repeats: int) -> dict:
    """Best wall time of each function over ``repeats`` interleaved rounds (after one warm-up).

    Each round runs the functions in another order (rotated), so that none always follows the
    same one (e.g. the per-segment variant's 1 GB of output being freed).
    """
    for fn in fns.values():
        fn()
    best = {name: np.inf for name in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            best[name] = min(best[name], times(fns[name], 1)[0])
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True,
                    help="folder with a Kaldi-style wav.scp (e.g. speechocean762's)")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N utterances (quick run)")
    ap.add_argument("--jobs", type=int, default=2, help="processes for the feature extraction (default 2)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="feature cache (.npz); default /tmp/bench_utterances_<N>.npz; 'none' disables it")
    ap.add_argument("--components", type=int, default=512, help="K of the model (default 512)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per variant, best kept (default 3)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results_utterances.txt",
                    help="where the report is written as well (default benchmarks/results_utterances.txt)")
    args = ap.parse_args(argv)
    cache = args.cache or Path(f"/tmp/bench_utterances_{args.limit or 'all'}.npz")
    if str(cache) == "none":
        cache = None

    say = Report(argv, __file__)
    from gmmext._covariance import DIAG, model_matrices
    from gmmext._engine import Engine, available_threads

    utts = load_features(args.data, args.limit, args.jobs, cache)
    X = np.concatenate(utts)
    lens = np.array([len(u) for u in utts])
    say(f"bench_utterances: {len(utts)} utterances of {args.data.name}, {len(X)} frames x {X.shape[1]} "
        f"(per utterance: median {int(np.median(lens))}, min {lens.min()}, max {lens.max()} frames), float32")
    say()

    gm = make_model(X, args.components)
    K = args.components
    fns = {
        "(a) loop: accumulate(utt) per utterance": lambda: sum(gm.accumulate(u) for u in utts),
        "(b) accumulate(list of utterances)": lambda: gm.accumulate(utts),
        "(c) accumulate_segments(list)": lambda: gm.accumulate_segments(utts),
        "(d) accumulate(concatenation)": lambda: gm.accumulate(X),
    }
    best = best_times(fns, args.repeats)
    floor = best["(d) accumulate(concatenation)"]
    say(f"one EM pass (E-step statistics), K={K}, D={X.shape[1]}, n_threads={available_threads()}, "
        f"best of {args.repeats}:")
    for name, t in best.items():
        say(f"  {name:45s} {t:8.3f} s   {t / floor:5.2f} x (d)")
    ratio = best["(b) accumulate(list of utterances)"] / floor
    say(f"  target (b) <= 1.15 x (d): {ratio:.2f} x  [{'ok' if ratio <= 1.15 else 'MISS'}]")
    b, d = gm.accumulate(utts), gm.accumulate(X)
    same = all(np.array_equal(getattr(b, f), getattr(d, f)) for f in ("n", "sum_x", "sum_xx"))
    per = gm.accumulate_segments(utts)
    rel = np.abs(sum(per).sum_x - d.sum_x).max() / np.abs(d.sum_x).max()
    say(f"  check: (b) equals (d) bitwise: {same}; sum of (c) vs (d): max relative difference {rel:.1e}")
    say()

    # per-utterance overhead at K=64 on 3-s pieces
    n3 = 300
    pieces = [X[s:s + n3] for s in range(0, len(X) - n3 + 1, n3)]
    Xp = X[:len(pieces) * n3]
    small = make_model(X, 64, seed=1)
    dtype = np.dtype(np.float32)

    def old_call(u):
        """accumulate as it was before the cache: model matrices and a new Engine on every call."""
        u = small.check_features(u)
        eng = Engine(dtype, u.shape[1], 64, small.chunk_size, small.n_threads)
        return eng.accumulate(u, None, model_matrices(small.weights_, small.means_, small.covariances_, dtype, DIAG))

    fns = {
        "loop, accumulate before the cache (rebuilt)": lambda: sum(old_call(u) for u in pieces),
        "loop, accumulate(utt) now (cached)": lambda: sum(small.accumulate(u) for u in pieces),
        "accumulate(list of pieces)": lambda: small.accumulate(pieces),
        "accumulate(concatenation)": lambda: small.accumulate(Xp),
    }
    best = best_times(fns, args.repeats)
    floor = best["accumulate(concatenation)"]
    say(f"per-utterance overhead, K=64, {len(pieces)} pieces of {n3} frames (3 s), best of {args.repeats}:")
    for name, t in best.items():
        say(f"  {name:45s} {t:8.3f} s   {t / floor:5.2f} x concatenation")
    say.write(args.out)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
