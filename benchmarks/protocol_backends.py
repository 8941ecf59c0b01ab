"""The speaker store's back-ends on speechocean762: gmm, plda, cosine and their fusion, through the store.

    python benchmarks/protocol_backends.py --data DATA --out /tmp/backends
    python benchmarks/protocol_backends.py --data DATA --out /tmp/backends --train-speakers 25

Protocol (docs/ivector.md, "The store's back-ends"): the 100 speakers in id order are split as in
``benchmarks/protocol_ivector.py``:

* train: the first ``--train-speakers`` of speakers 1-50 (all 20 utterances each): the UBM is
  trained on speakers 1-50 always, T and the PLDA back-end on the train speakers;
* dev:   speakers 51-75: the calibrations (and the fusion weights) are fitted on their trials;
* eval:  speakers 76-100: every reported figure.

Each dev / eval speaker is enrolled in a speaker store (one per run, ``OUT/store.db``) on its first 5
utterances (utterance-id order) and tested on the other 15 against every speaker of its group
(25 x 375 = 9,375 trials, 375 target). The store is bound to the extractor and back-end
(``SpeakerStore.bind_backend``: the enrolled recordings' i-vectors come from the statistics the
store keeps), and every trial is scored by the store's one scoring path
(``SpeakerStore.system_scores``: gmm, plda and cosine of one test against its group at once).
The batch figures beside them are the batch recipe's: i-vectors extracted from the features
(``speaker.ivector.extract_ivectors``), enrolled and scored by ``speaker.ivector_backend`` (as
``speaker enroll|score --backend plda|cosine``); the largest difference from the store's is printed.

Each system is calibrated by prior-weighted logistic regression (P = 0.5) on dev and applied to
eval; the fusion (plda + gmm, the store's ``--backend fusion``) is fitted the same way on both
columns. EER and minDCF (p_target 0.01) are of the eval scores, Cllr of the calibrated eval LLRs.

Timings (in process, features given, the machine's load printed): verify (median of repeated
calls) and identify among the 25 enrolled speakers per back-end, each through the store; and the
PLDA scoring of one test against 10,000 speakers, the matrix product the store runs for identify
(``speaker.plda.PLDAScorer``), on 10,000 synthetic speakers (5 i-vectors each, drawn from the
trained PLDA model: this dataset has 100 speakers).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Report  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("SPEECHOCEAN762", "speechocean762"))


def split(data: Path, n_train: int, n_enrol: int = 5) -> dict:
    """{"ubm": [paths], "train": {spk: [paths]}, "dev"/"eval": {spk: [paths]}} of speechocean762."""
    read = lambda p: dict(l.split(maxsplit=1) for l in p.read_text().split("\n") if l.strip())  # noqa: E731,E741
    wav = {u: str((data / p.strip()).resolve()) for u, p in read(data / "wav.scp").items()}
    spk_of = {u: s.strip() for u, s in read(data / "utt2spk").items()}
    by_spk: dict[str, list[str]] = {}
    for u in sorted(wav):
        by_spk.setdefault(spk_of[u], []).append(wav[u])
    spk = sorted(by_spk)
    if len(spk) < 100:
        raise SystemExit(f"{data}: expected 100 speakers, found {len(spk)}")
    return {"ubm": [p for s in spk[:50] for p in by_spk[s]], "train": {s: by_spk[s] for s in spk[:n_train]},
            "dev": {f"spk{s}": by_spk[s] for s in spk[50:75]}, "eval": {f"spk{s}": by_spk[s] for s in spk[75:100]},
            "n_enrol": n_enrol}


def metrics(scores, labels, llrs) -> tuple[float, float, float]:
    from speaker.calibration import cllr
    from speaker.metrics import eer, min_dcf
    return 100 * eer(scores, labels), min_dcf(scores, labels, 0.01), cllr(llrs, labels)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the speechocean762 folder (wav.scp, utt2spk)")
    ap.add_argument("--out", type=Path, required=True, help="work folder (feature cache, store)")
    ap.add_argument("--components", type=int, default=64)
    ap.add_argument("--rank", type=int, default=100)
    ap.add_argument("--ivector-iters", type=int, default=5)
    ap.add_argument("--train-speakers", type=int, default=50, help="speakers training T and PLDA (at most 50)")
    ap.add_argument("--synthetic", type=int, default=10_000, help="speakers of the identify timing")
    ap.add_argument("--results", type=Path, help="append the results here")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    rep = Report(argv, __file__)
    from gmmext import GaussianMixture
    from speaker.calibration import fit_calibration
    from speaker.featcache import FeatureCache
    from speaker.features import FeatureConfig
    from speaker.gates import NO_GATE
    from speaker.ivector import extract_ivectors, stats_batches, train_tv
    from speaker.ivector_backend import enrol_speakers, score_pairs, to_space
    from speaker.plda import PLDAScorer, train_backend
    from speaker.store import SpeakerStore
    from speaker.store_backend import FUSED

    sp = split(args.data, min(args.train_speakers, 50))
    args.out.mkdir(parents=True, exist_ok=True)
    config = FeatureConfig()
    wall = {}
    t0 = time.perf_counter()
    every = sp["ubm"] + [p for g in ("dev", "eval") for v in sp[g].values() for p in v]
    with FeatureCache(config, cache_dir=args.out / "cache", jobs=args.jobs) as fc:
        fc.load(every, desc="features")
    if fc.errors:
        rep(f"# {len(fc.errors)} unusable files skipped, e.g. {next(iter(fc.errors.items()))}")
    F = fc.features
    wall["features"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    ubm_frames = np.concatenate([F[p] for p in sp["ubm"] if p in F])
    ubm = GaussianMixture(args.components, covariance_type="diag", max_iter=10, random_state=0).fit(ubm_frames)
    del ubm_frames
    wall["ubm"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    train = [(s, p) for s, ps in sp["train"].items() for p in ps if p in F]
    feats = [F[p] for _, p in train]
    tv = train_tv(ubm, lambda: stats_batches(ubm, feats), args.rank, n_iter=args.ivector_iters)
    wall["T"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    iv = extract_ivectors(tv, stats_batches(ubm, feats))[0]
    be = train_backend(iv, [s for s, _ in train])
    be.ubm_fingerprint, be.ivector_fingerprint = tv.ubm_fingerprint, tv.fingerprint
    wall["plda"] = time.perf_counter() - t0

    db = args.out / "store.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    n_e = sp["n_enrol"]
    t0 = time.perf_counter()
    store = SpeakerStore(db, ubm, config=config, gate=NO_GATE)
    for g in ("dev", "eval"):
        for s, ps in sp[g].items():
            store.enroll(s, [F[p] for p in ps[:n_e] if p in F])
    wall["enrol"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    bound = store.bind_backend(tv, be)
    wall["bind"] = time.perf_counter() - t0

    systems = ("plda", "gmm", "cosine")
    trials = {}
    diff = {"plda": 0.0, "cosine": 0.0}
    t0 = time.perf_counter()
    for g in ("dev", "eval"):
        ids = sorted(sp[g])
        tests = [(s, p) for s in ids for p in sp[g][s][n_e:] if p in F]
        S = np.empty((len(tests), len(ids), len(systems)))
        for j, (_, p) in enumerate(tests):
            got, S[j] = store.system_scores(F[p], ids, systems=systems)
            assert got == ids
        lab = np.array([[s == m for m in ids] for s, _ in tests])
        trials[g] = (S, lab)
        # the batch recipe: i-vectors from the features, enrolled and scored by speaker.ivector_backend
        enr = {s: extract_ivectors(tv, stats_batches(ubm, [F[p] for p in sp[g][s][:n_e] if p in F]))[0] for s in ids}
        Z = to_space(be, extract_ivectors(tv, stats_batches(ubm, [F[p] for _, p in tests]))[0])
        for k, kind in ((0, "plda"), (2, "cosine")):
            models = enrol_speakers(enr, kind, be)
            E = np.repeat(models.means[None], len(tests), axis=0).reshape(-1, models.means.shape[1])
            C = np.tile(models.counts, len(tests))
            batch = score_pairs(kind, be, E, C, np.repeat(Z, len(ids), axis=0)).reshape(len(tests), len(ids))
            diff[kind] = max(diff[kind], float(np.abs(batch - S[:, :, k]).max()))
            trials[g + "_batch_" + kind] = batch
    wall["scoring (store) + batch reference"] = time.perf_counter() - t0

    rep(f"# speakers: UBM on 50 ({len(sp['ubm'])} files), T and PLDA on {len(sp['train'])} ({len(train)} files); "
        f"dev 25 and eval 25 enrolled in the store on {n_e} utterances each; "
        f"trials per group {trials['eval'][1].size}, {int(trials['eval'][1].sum())} target")
    rep(f"# K={args.components} R={args.rank} T-iters={args.ivector_iters}; bind: {bound.recomputed} i-vectors from "
        f"the kept statistics, {bound.ivector_bytes} bytes")
    rep("# wall seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in wall.items()))
    rep(f"# store vs batch recipe, largest |difference| of the same trials' scores: plda {diff['plda']:.2e}, "
        f"cosine {diff['cosine']:.2e}")
    rep("eval system              EER %  minDCF p=0.01  Cllr (cal. on dev)")
    (Sd, ld), (Se, le) = trials["dev"], trials["eval"]
    cols = {"plda": 0, "gmm": 1, "cosine": 2}
    for name in ("gmm", "plda", "cosine"):
        k = cols[name]
        cal = fit_calibration(Sd[:, :, k].ravel(), ld.ravel())
        e = metrics(Se[:, :, k].ravel(), le.ravel(), cal.llr(Se[:, :, k].ravel()))
        rep(f"{name + ' (store)':24s} {e[0]:6.2f}  {e[1]:13.4f}  {e[2]:18.4f}")
        if name != "gmm":
            B = trials["eval_batch_" + name].ravel()
            cb = fit_calibration(trials["dev_batch_" + name].ravel(), ld.ravel())
            e = metrics(B, le.ravel(), cb.llr(B))
            rep(f"{name + ' (batch)':24s} {e[0]:6.2f}  {e[1]:13.4f}  {e[2]:18.4f}")
    fuse = fit_calibration(Sd[:, :, :2].reshape(-1, 2), ld.ravel(), systems=FUSED)
    fe = np.asarray(fuse.llr(Se[:, :, :2].reshape(-1, 2)))
    e = metrics(fe, le.ravel(), fe)
    rep(f"{'fusion (store)':24s} {e[0]:6.2f}  {e[1]:13.4f}  {e[2]:18.4f}")
    rep(f"# fusion on dev: llr = {fuse.a:.4g} * plda + {fuse.terms[0].weight:.4g} * gmm + {fuse.b:.4g}")

    # ---------------------------------------------------------------- timings, through the store
    store.keep_calibration(fuse, fitted_on="dev trials of benchmarks/protocol_backends.py", backend="fusion")
    ids = sorted(sp["eval"])
    tests = [p for s in ids for p in sp["eval"][s][n_e:] if p in F][:20]
    rep(f"# timings: {len(tests)} eval tests (features in memory), {os.getloadavg()[0]:.2f} load average now")
    rep("back-end   verify p50 ms   identify among 25, p50 ms")
    for b in ("gmm", "plda", "cosine", "fusion"):
        store.candidates(F[tests[0]], 1, backend=b)            # the prepared speakers
        ver, ide = [], []
        for j, p in enumerate(tests):
            t = time.perf_counter()
            store.verify(ids[j % len(ids)], F[p], backend=b)
            ver.append(time.perf_counter() - t)
            t = time.perf_counter()
            store.candidates(F[p], 1, backend=b)
            ide.append(time.perf_counter() - t)
        rep(f"{b:9s}  {1e3 * np.median(ver):13.2f}   {1e3 * np.median(ide):13.2f}")
    rng = np.random.default_rng(0)
    d = be.plda.mu.shape[0]
    n = args.synthetic
    Y = rng.multivariate_normal(be.plda.mu, be.plda.Sb, size=n)
    means = Y + rng.multivariate_normal(np.zeros(d), be.plda.Sw, size=n) / np.sqrt(5)   # mean of 5 vectors
    t = time.perf_counter()
    scorer = PLDAScorer.prepare(be.plda, means, np.full(n, 5.0))
    prep = time.perf_counter() - t
    test = to_space(be, extract_ivectors(tv, stats_batches(ubm, [F[tests[0]]]))[0])
    times = []
    for _ in range(20):
        t = time.perf_counter()
        sc = scorer.scores(test)[0]
        np.argsort(-sc, kind="stable")[:1]
        times.append(time.perf_counter() - t)
    rep(f"# PLDA against {n} synthetic speakers (d={d}): prepare once {prep:.3f} s (kept by the store while no "
        f"speaker changes); one test's scores and ranking p50 {1e3 * np.median(times):.2f} ms: identify among {n} = "
        "this + the test's statistics and i-vector (the 25-speaker identify above less its scoring)")
    store.close()
    rep.write(args.results, append=True)


if __name__ == "__main__":
    main()
