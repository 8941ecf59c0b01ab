"""Speed of the speaker store (docs/store.md): verify, identify, enrolment.

* verify one 3-s recording against one speaker, K=512, D=60, in process (feature extraction +
  scoring): median and p99 over --runs calls of ``SpeakerStore.verify``, against the bare library
  calls it makes (``extract_features`` + ``llr``) and against the start-up of
  ``python -c "import numpy"`` and of the ``speaker verify`` command;
* identify one 3-s recording among S enrolled speakers (synthetic statistics), K=512, top-C 5:
  first call (models derived from the stored statistics) and later calls (prepared models kept
  by the open store), for each S of --speakers, with the memory of the prepared stacks, against
  one numpy matmul of the same flops and (S <= 1000) against the core's per-model kernel;
* enrol 1,000 speakers x 5 recordings of 3 s (feature arrays: no audio decoding): time, store
  size, peak memory, against ``ubm.accumulate`` alone.

    python benchmarks/bench_store.py                    # writes benchmarks/results_store.txt
    python benchmarks/bench_store.py --speakers 100,1000 --enrol 200 --runs 50   # quicker

The UBM is synthetic (means drawn from real feature frames): timings do not depend on its
quality.  The 3-s recording is cut from a speechocean762 utterance (``--data``), or synthesised
when the data are not there.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Report, matmul_seconds, median_time  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "speechocean762"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def recording(data: Path, work: Path, seconds: float = 3.0) -> tuple[Path, list[Path]]:
    """A 3-s test WAV and a few longer files (for the UBM frames and the enrolment)."""
    sr = 16000
    files = sorted(data.glob("WAVE/*/*.flac"))[:12] if data.exists() else []
    if files:
        y, sr = sf.read(files[0], dtype="float32")
        reps = int(np.ceil(seconds * sr / len(y)))
        y = np.tile(y, reps)[:int(seconds * sr)]
    else:
        rng = np.random.default_rng(0)
        t = np.arange(int(seconds * sr)) / sr
        y = (0.1 * rng.standard_normal(t.size) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
        for i in range(6):
            p = work / f"synthetic{i}.wav"
            sf.write(p, (0.1 * rng.standard_normal(sr * 4)).astype(np.float32), sr)
            files.append(p)
    test = work / "test3s.wav"
    sf.write(test, y, sr)
    return test, files[1:]


def setup(data: Path, work: Path, components: int):
    """(FeatureConfig, 3-s test WAV, features of the other files, their frames stacked, the random
    generator, a synthetic float32 UBM of ``components`` whose means are drawn from the frames)."""
    from gmmext import GaussianMixture
    from speaker import FeatureConfig, extract_features
    cfg = FeatureConfig()
    test, files = recording(data, work)
    feats = [extract_features(f, config=cfg) for f in files]
    frames = np.concatenate(feats)
    rng = np.random.default_rng(0)
    K = components
    ubm = GaussianMixture.from_parameters(np.full(K, 1.0 / K, np.float32),
                                          frames[rng.choice(len(frames), K, replace=False)].astype(np.float32),
                                          np.tile(frames.var(axis=0), (K, 1)).astype(np.float32))
    return cfg, test, feats, frames, rng, ubm


def pct(x, q) -> float:
    return float(np.percentile(np.asarray(x) * 1e3, q))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--components", type=int, default=512)
    ap.add_argument("--runs", type=int, default=200, help="verify calls (default 200)")
    ap.add_argument("--speakers", default="100,1000,3000,10000", help="identify store sizes")
    ap.add_argument("--exact-speakers", default="300,1000",
                    help="exact-identify store sizes (memory kept by the open store; '' to skip)")
    ap.add_argument("--enrol", type=int, default=1000, help="speakers enrolled x 5 recordings (default 1000)")
    ap.add_argument("--top-c", type=int, default=5)
    ap.add_argument("--work", type=Path, help="folder for the stores (default: a temporary one, removed)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results_store.txt")
    a = ap.parse_args(argv)
    from gmmext import GMMStats
    from speaker import extract_features, llr
    from speaker.gates import NO_GATE
    from speaker.store import SpeakerStore as _Store
    from speaker import limits
    STORE_CACHE_MB = getattr(limits, "STORE_CACHE_MB", "no")

    def SpeakerStore(*args, **kwargs):                 # speed, not the quality gates (3-s cuts, synthetic statistics)
        return _Store(*args, gate=NO_GATE, **kwargs)

    work = Path(a.work or tempfile.mkdtemp(prefix="bench-store-"))
    work.mkdir(parents=True, exist_ok=True)
    say = Report(argv, __file__)
    cfg, test, feats, frames, rng, ubm = setup(a.data, work, a.components)
    K, D = ubm.means_.shape
    say(f"speaker store benchmark: K={K}, D={D}, float32 UBM")

    # ------------------------------------------------------------------ verify
    db = work / "verify.db"
    st = SpeakerStore(db, ubm, config=cfg, top_c=None)
    st.enroll("alice", feats[:3])
    X = extract_features(test, config=cfg)
    top = SpeakerStore(db, top_c=a.top_c)
    for _ in range(3):
        st.verify("alice", test)
        top.verify("alice", test)
    t_ver, t_feat, t_score, t_top = [], [], [], []
    model = st.model("alice")
    for _ in range(a.runs):                  # interleaved: the machine's load falls on all alike
        t0 = time.perf_counter()
        st.verify("alice", test)
        t1 = time.perf_counter()
        extract_features(test, config=cfg)
        t2 = time.perf_counter()
        llr(model, ubm, X)
        t3 = time.perf_counter()
        top.verify("alice", test)
        t4 = time.perf_counter()
        t_ver.append(t1 - t0)
        t_feat.append(t2 - t1)
        t_score.append(t3 - t2)
        t_top.append(t4 - t3)
    say()
    say(f"verify one 3-s recording ({X.shape[0]} speech frames) against one speaker, exact scoring, {a.runs} runs:")
    say(f"  SpeakerStore.verify            median {pct(t_ver, 50):7.2f} ms   p99 {pct(t_ver, 99):7.2f} ms")
    say(f"  extract_features alone         median {pct(t_feat, 50):7.2f} ms   p99 {pct(t_feat, 99):7.2f} ms")
    say(f"  llr alone (exact, K={K})       median {pct(t_score, 50):7.2f} ms   p99 {pct(t_score, 99):7.2f} ms")
    say(f"  verify / (features + llr)      {np.median(t_ver) / (np.median(t_feat) + np.median(t_score)):.2f}x "
        "(the store's own work: a generation query, the content checks, the decision)")
    say(f"  SpeakerStore.verify, top-C {a.top_c}  median {pct(t_top, 50):7.2f} ms   p99 {pct(t_top, 99):7.2f} ms "
        f"({np.median(t_top) / np.median(t_ver):.2f}x exact)")
    st.close()
    top.close()
    exe = shutil.which("speaker")
    start = []
    for cmd in ([sys.executable, "-c", "import numpy"], [exe, "verify", "--store", str(db), "--speaker", "alice",
                                                         str(test), "--threshold", "0", "--quiet"] if exe else None):
        if cmd is None:
            continue
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            ts.append(time.perf_counter() - t0)
        start.append(float(np.median(ts)))
    if len(start) == 2:
        say(f"  for comparison: python -c 'import numpy' {1e3 * start[0]:.0f} ms; the 'speaker verify' command "
            f"{1e3 * start[1]:.0f} ms ({start[1] / start[0]:.1f}x; interpreter and imports dominate)")

    # ------------------------------------------------------------------ enrolment
    db = work / "speakers.db"
    st = SpeakerStore(db, ubm, config=cfg)
    recs = [rng.standard_normal((300, D)).astype(np.float32) * frames.std(axis=0) + frames.mean(axis=0)
            for _ in range(25)]
    t0 = time.perf_counter()
    for r in recs:
        ubm.accumulate(r)
    t_acc = (time.perf_counter() - t0) / len(recs)
    rss0, cur0 = rss_mb(), current_rss_mb()
    t0 = time.perf_counter()
    for s in range(a.enrol):
        # 5 distinct 3-s recordings per speaker (a shifted copy of the pool: contents differ)
        st.enroll(f"spk{s:05d}", [recs[(5 * s + i) % len(recs)] + np.float32(1e-3 * s) for i in range(5)])
    t_enrol = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in work.glob("speakers.db*"))
    say()
    say(f"enrol {a.enrol} speakers x 5 recordings of 3 s (300 frames, feature arrays) into the store:")
    say(f"  {t_enrol:.1f} s ({1e3 * t_enrol / (5 * a.enrol):.2f} ms per recording; ubm.accumulate alone "
        f"{1e3 * t_acc:.2f} ms: {t_enrol / (5 * a.enrol) / t_acc:.2f}x)")
    kept = 5 * (8 * K * (D + 1) + 300 * D * 4)          # per-recording statistics + float32 features
    say(f"  store size {size / 2 ** 20:.0f} MB ({size / a.enrol / 1024:.0f} KB per speaker; the speaker's sums are "
        f"{8 * K * (2 * D + 1) / 1024:.0f} KB, the 5 recordings' statistics and features {kept / 1024:.0f} KB)")
    say(f"  memory: peak RSS {rss_mb():.0f} MB (before {rss0:.0f} MB); current {current_rss_mb():.0f} MB "
        f"(before {cur0:.0f} MB)")

    # ------------------------------------------------------------------ identify
    base = st.stats("spk00000")
    st.close()
    say()
    say(f"identify one 3-s recording among S speakers, top-C {a.top_c}, in a store of synthetic statistics (the "
        "first speaker's above, scaled); 'later calls' keep the prepared models of the open store:")
    say("  stacks MB: the prepared matrices kept by the open store; matmul: one numpy float32 matmul with the "
        "same flops as the identification's gemms ((frames x C, D) @ (D, S)); general: the same models scored "
        "by the core's per-model top-C kernel (models whose variances differ from the UBM's), S <= 1000")
    say(f"  {'S':>6s} {'first call s':>13s} {'later calls s':>14s} {'us/speaker':>11s} {'stacks MB':>10s} "
        f"{'RSS MB':>7s} {'later/matmul':>13s} {'general/shared':>14s}")
    db = work / "identify.db"
    st = SpeakerStore(db, ubm, config=cfg)
    n_have = 0
    for S in [int(x) for x in a.speakers.split(",") if x]:
        while n_have < S:
            scale = rng.uniform(0.5, 2.0)
            fake = GMMStats(base.n * scale, base.sum_x * scale, base.sum_xx * scale, base.loglik * scale,
                            base.n_samples * scale)
            digest = hashlib.sha256(f"synthetic {n_have}".encode()).hexdigest()
            st.enroll_statistics(f"spk{n_have:05d}", [("<synthetic>", digest, fake)])
            n_have += 1
        reader = SpeakerStore(db, top_c=a.top_c)
        t0 = time.perf_counter()
        reader.identify(test, 5)
        first = time.perf_counter() - t0
        ts = []
        for _ in range(5):
            t0 = time.perf_counter()
            reader.identify(test, 5)
            ts.append(time.perf_counter() - t0)
        later = float(np.median(ts))
        kept = reader._all_stacks(reader._batch_size(1024))[2]
        stack_mb = sum(x.nbytes for x in kept if x is not None) / 2 ** 20
        stacks = [reader._stack_of(reader._all_stacks(reader._batch_size(1024))[1][s:s + 1024])
                  for s in range(0, S, 1024)] if S <= 1000 else kept
        Xt = reader.features(test)
        idx, _ = ubm.top_components(Xt, a.top_c)
        ratio_gen = ""
        if S <= 1000:
            from gmmext import ModelStack
            gen = []
            for x in stacks:
                shared = x._stack(np.float32).shared_m
                Ap = shared.A                              # (K, n_pan, D, PW): the models in panels
                A = Ap.transpose(1, 3, 0, 2).reshape(-1, K, D)[:len(x)]      # (S, K, D)
                var = np.broadcast_to(ubm.covariances_ * np.float32(1 + 1e-6), (len(x), K, D))
                mu = A / (1.0 / ubm.covariances_)[None] + shared.shift
                gen.append(ModelStack.from_parameters(np.full((len(x), K), 1.0 / K), mu, ubm, covariances=var))
                gen[-1]._stack(np.float32)
            t_gen = median_time(lambda: [g.top_c_loglik(Xt, idx) for g in gen], 3)
            t_shared = median_time(lambda: [x.top_c_loglik(Xt, idx) for x in stacks], 3)
            ratio_gen = f"{t_gen / t_shared:14.1f}"
            del gen
        say(f"  {S:6d} {first:13.2f} {later:14.3f} {1e6 * later / S:11.1f} {stack_mb:10.0f} {current_rss_mb():7.0f} "
            f"{later / matmul_seconds(idx.size, D, S):13.1f} {ratio_gen}")
        reader.close()
        del reader
    st.close()

    # ------------------------------------------------------------------ exact identify: memory kept
    say()
    say(f"identify one 3-s recording among S speakers, exact scoring (the default), in the same store: first call, "
        f"later calls (median of 3), what the open store keeps (cache MB, bound {STORE_CACHE_MB} MB) and the "
        "process's RSS growth over the calls (MB, and KB per speaker)")
    say(f"  {'S':>6s} {'first call s':>13s} {'later calls s':>14s} {'us/speaker':>11s} {'cache MB':>9s} "
        f"{'RSS +MB':>8s} {'KB/speaker':>11s}")
    for S in [int(x) for x in a.exact_speakers.split(",") if x]:
        small = work / f"exact{S}.db"
        st = SpeakerStore(small, ubm, config=cfg)
        for s in range(S):
            scale = rng.uniform(0.5, 2.0)
            fake = GMMStats(base.n * scale, base.sum_x * scale, base.sum_xx * scale, base.loglik * scale,
                            base.n_samples * scale)
            st.enroll_statistics(f"spk{s:05d}", [("<synthetic>", hashlib.sha256(f"x{s}".encode()).hexdigest(), fake)])
        st.close()
        reader = SpeakerStore(small)
        reader.features(test)
        cur0 = current_rss_mb()
        t0 = time.perf_counter()
        reader.identify(test, 5)
        first = time.perf_counter() - t0
        later = median_time(lambda: reader.identify(test, 5), 3)
        grown = current_rss_mb() - cur0
        cache = getattr(reader, "cache_nbytes", None)
        say(f"  {S:6d} {first:13.2f} {later:14.3f} {1e6 * later / S:11.1f} "
            f"{'n/a' if cache is None else f'{cache / 2 ** 20:.0f}':>9s} {grown:8.0f} {1024 * grown / S:11.0f}")
        reader.close()
        del reader
    if a.work is None:
        shutil.rmtree(work, ignore_errors=True)
    say.write(a.out)
    print(f"-> {a.out}")


if __name__ == "__main__":
    main()
