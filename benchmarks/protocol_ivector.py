"""Development protocol on speechocean762: GMM-UBM vs i-vector cosine vs i-vector PLDA vs fusion.

    python benchmarks/protocol_ivector.py --components 256 --out /tmp/ivproto
    python benchmarks/protocol_ivector.py --components 512 --out /tmp/ivproto

Speakers in id order are split into three disjoint groups (as benchmarks/protocol_speechocean.py):

* train: speakers 1-50 (all 20 utterances, 1,000 files): UBM, T matrix and the PLDA back-end;
* dev:   speakers 51-75: tuning (LDA dimension, WCCN, enrolment mode) and the fusion/calibration
  weights are fitted on these trials only;
* eval:  speakers 76-100: every reported figure.

Each dev / eval speaker is enrolled on its first 5 utterances (utterance-id order) and tested on
the other 15, every model against every test of its group (25 x 375 = 9,375 trials, 375 target).

Every model is made by the ``speaker`` command line (in this process, one feature cache in
``OUT/cache``); a step whose output exists is skipped, so a rerun after an interruption costs
only the missing steps (``train-ivector`` also resumes from its per-pass checkpoint).  Tuning
uses the i-vectors written by ``speaker extract-ivectors`` and ``speaker.plda`` directly; the
chosen settings are then run through ``train-plda`` / ``enroll`` / ``score``.

Fusion: ``s = a1 z(gmm) + a2 z(plda) + b`` by prior-weighted logistic regression (P = 0.5) fitted
on the dev trials and applied to the eval trials (a calibration part disjoint from the evaluation
part, not cross-validation); single systems are calibrated the same way (``fit_calibration`` on
dev).  Cllr is of these calibrated eval scores; minCllr is the PAV bound.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_line  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "speechocean762"


def write_lists(data: Path, out: Path, n_enrol: int = 5) -> dict:
    read = lambda p: dict(l.split(maxsplit=1) for l in p.read_text().split("\n") if l.strip())  # noqa: E731,E741
    wav = {u: str((data / p.strip()).resolve()) for u, p in read(data / "wav.scp").items()}
    spk_of = {u: s.strip() for u, s in read(data / "utt2spk").items()}
    by_spk: dict[str, list[str]] = {}
    for u in sorted(wav):
        by_spk.setdefault(spk_of[u], []).append(u)
    spk = sorted(by_spk)
    if len(spk) < 100:
        raise SystemExit(f"{data}: expected 100 speakers, found {len(spk)}")
    groups = {"train": spk[:50], "dev": spk[50:75], "eval": spk[75:100]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.lst").write_text("".join(f"{u} {wav[u]}\n" for s in groups["train"] for u in by_spk[s]))
    (out / "train_spk.txt").write_text("".join(f"spk{s} " + " ".join(wav[u] for u in by_spk[s]) + "\n"
                                               for s in groups["train"]))
    for g in ("dev", "eval"):
        (out / f"{g}.lst").write_text("".join(f"{u} {wav[u]}\n" for s in groups[g] for u in by_spk[s]))
        (out / f"enroll_{g}.txt").write_text("".join(f"spk{s} " + " ".join(wav[u] for u in by_spk[s][:n_enrol])
                                                     + "\n" for s in groups[g]))
        (out / f"trials_{g}.txt").write_text("".join(
            f"spk{m} {wav[u]} {'target' if m == s else 'nontarget'}\n"
            for s in groups[g] for u in by_spk[s][n_enrol:] for m in groups[g]))
    spk_utts = {f"spk{s}": by_spk[s] for s in spk}
    (out / "speakers.json").write_text(json.dumps(spk_utts))
    return dict(train_speakers=50, dev_speakers=25, eval_speakers=25, train_utts=50 * 20,
                trials_per_group=25 * 25 * (20 - n_enrol), targets_per_group=25 * (20 - n_enrol))


def labelled(scores: Path, trials: Path) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels in the trial list's order (every trial must be scored)."""
    from speaker.lists import read_scores, read_trials
    sc = read_scores(scores)
    _, trials_ = read_trials(trials)
    return np.array([sc[(t.model, t.test)] for t in trials_]), np.array([t.label for t in trials_], dtype=bool)


def tune(work: Path, lda_dims: list[int]) -> tuple[list[tuple], dict]:
    """PLDA / cosine settings on the dev trials, from the extracted i-vectors: [(name, dev EER %,
    dev minDCF)], and the chosen settings (lowest dev EER)."""
    from speaker.metrics import eer, min_dcf
    from speaker.plda import cosine, enrol, length_norm, plda_llr, train_backend
    spk = json.loads((work.parent / "speakers.json").read_text())
    utt2spk = {u: s for s, us in spk.items() for u in us}

    def load(name):
        with np.load(work / f"iv_{name}.npz", allow_pickle=False) as z:
            return list(z["ids"]), z["ivectors"]
    tr_ids, Xtr = load("train")
    ytr = np.array([utt2spk[u] for u in tr_ids])
    dv_ids, Xdv = load("dev")
    pos = {u: i for i, u in enumerate(dv_ids)}
    models = sorted({utt2spk[u] for u in dv_ids})
    enr = [[pos[u] for u in spk[m][:5]] for m in models]
    tests = [(pos[u], utt2spk[u]) for m in models for u in spk[m][5:]]
    lab = np.array([s == m for _, s in tests for m in models])
    rows = []
    for lda in [0] + lda_dims:
        for wccn in (False, True):
            be = train_backend(Xtr, ytr, lda_dim=lda or None, wccn=wccn)
            Z = be.transform(Xdv)
            for avg in (False, True):
                means, counts = enrol(be, [Xdv[i] for i in enr], average=avg)
                E = np.repeat(means[None], len(tests), 0).reshape(-1, means.shape[1])
                C = np.tile(counts, len(tests))
                T = np.repeat(Z[[t for t, _ in tests]], len(models), 0)
                s = plda_llr(be.plda, E, C, T)
                rows.append((f"plda lda={lda or 'none'} wccn={int(wccn)} {'avg' if avg else 'by-model'}",
                             100 * eer(s, lab), min_dcf(s, lab, 0.01), dict(kind="plda", lda=lda, wccn=wccn, avg=avg)))
            Ec = np.array([length_norm(Z[e].mean(0, keepdims=True))[0] for e in enr])
            s = cosine(np.repeat(Ec[None], len(tests), 0).reshape(-1, Ec.shape[1]), T)
            rows.append((f"cosine lda={lda or 'none'} wccn={int(wccn)}", 100 * eer(s, lab), min_dcf(s, lab, 0.01),
                         dict(kind="cosine", lda=lda, wccn=wccn)))
    Zr = length_norm(Xdv)
    Ec = np.array([length_norm(Zr[e].mean(0, keepdims=True))[0] for e in enr])
    s = cosine(np.repeat(Ec[None], len(tests), 0).reshape(-1, Ec.shape[1]),
               np.repeat(Zr[[t for t, _ in tests]], len(models), 0))
    rows.append(("cosine raw (no back-end)", 100 * eer(s, lab), min_dcf(s, lab, 0.01), dict(kind="cosine", lda=None)))
    best = {k: min((r for r in rows if r[3]["kind"] == k), key=lambda r: (r[1], r[2]))[3] for k in ("plda", "cosine")}
    return [r[:3] for r in rows], best


def main(argv=None) -> None:
    from speaker.calibration import cllr, fit_calibration, min_cllr
    from speaker.cli import main as speaker
    from speaker.metrics import eer, min_dcf
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="speechocean762 folder (wav.scp, utt2spk)")
    ap.add_argument("--out", type=Path, required=True, help="work folder (lists, cache; models and scores in OUT/K<k>)")
    ap.add_argument("--components", type=int, default=256, help="UBM size K (default 256)")
    ap.add_argument("--rank", type=int, default=200, help="i-vector dimension R (default 200)")
    ap.add_argument("--ivector-iters", type=int, default=10, help="T-matrix EM passes (default 10)")
    ap.add_argument("--lda-dims", default="20,30,40,49", help="LDA dimensions tried on dev (default 20,30,40,49)")
    ap.add_argument("--jobs", type=int, default=2, help="feature extraction processes (default 2)")
    ap.add_argument("--results", type=Path, default=None,
                    help="append the table to this file (default benchmarks/results_ivector_protocol.txt)")
    a = ap.parse_args(argv)
    out = a.out
    info = write_lists(a.data, out)
    work = out / f"K{a.components}_R{a.rank}"
    work.mkdir(parents=True, exist_ok=True)
    common = ["--jobs", str(a.jobs), "--cache", str(out / "cache"), "--quiet"]
    ubm, tv = str(work / "ubm.npz"), str(work / "tv.npz")
    times: dict[str, float] = {}

    def run(name, argv, output):
        if Path(output).exists():
            return
        t = time.perf_counter()
        print(f"$ speaker {' '.join(argv)}", flush=True)
        if speaker(argv + common) != 0:
            raise SystemExit(f"step failed: speaker {' '.join(argv)}")
        times[name] = round(time.perf_counter() - t, 1)
        print(f"  {name}: {times[name]} s", flush=True)

    run("train-ubm", ["train-ubm", "--list", str(out / "train.lst"), "--out", ubm, "--components",
                      str(a.components), "--sample-rate", "16000", "--iters", "10"], ubm)
    for g in ("dev", "eval"):
        run(f"gmm enroll {g}", ["enroll", "--ubm", ubm, "--enroll", str(out / f"enroll_{g}.txt"),
                                "--out", str(work / f"gmm_{g}.npz")], work / f"gmm_{g}.npz")
        run(f"gmm score {g}", ["score", "--ubm", ubm, "--models", str(work / f"gmm_{g}.npz"), "--trials",
                               str(out / f"trials_{g}.txt"), "--out", str(work / f"s_gmm_{g}.txt"), "--top-c", "5"],
            work / f"s_gmm_{g}.txt")
    run("train-ivector", ["train-ivector", "--ubm", ubm, "--list", str(out / "train.lst"), "--rank", str(a.rank),
                          "--iters", str(a.ivector_iters), "--out", tv, "--resume"], tv)
    for g in ("train", "dev"):
        run(f"extract-ivectors {g}", ["extract-ivectors", "--ubm", ubm, "--ivector", tv, "--list",
                                      str(out / f"{g}.lst"), "--out", str(work / f"iv_{g}.npz")], work / f"iv_{g}.npz")
    t = time.perf_counter()
    grid, best = tune(work, [int(d) for d in a.lda_dims.split(",") if d])
    times["tuning on dev"] = round(time.perf_counter() - t, 1)
    bp, bc = best["plda"], best["cosine"]
    tag = f"lda{bp['lda'] or 0}{'_wccn' if bp['wccn'] else ''}"
    plda = str(work / f"plda_{tag}.npz")
    run("train-plda", ["train-plda", "--ubm", ubm, "--ivector", tv, "--enroll", str(out / "train_spk.txt"),
                       "--out", plda] + (["--lda-dim", str(bp["lda"])] if bp["lda"] else [])
        + (["--wccn"] if bp["wccn"] else []), plda)
    cos_plda = None
    if bc.get("lda") is not None:
        ctag = f"lda{bc['lda'] or 0}{'_wccn' if bc['wccn'] else ''}"
        cos_plda = str(work / f"plda_{ctag}.npz")
        run("train-plda (cosine)", ["train-plda", "--ubm", ubm, "--ivector", tv, "--enroll",
                                    str(out / "train_spk.txt"), "--out", cos_plda]
            + (["--lda-dim", str(bc["lda"])] if bc["lda"] else []) + (["--wccn"] if bc["wccn"] else []), cos_plda)
    for g in ("dev", "eval"):
        for be, extra in (("plda", ["--plda", plda] + (["--average"] if bp["avg"] else [])),
                          ("cosine", ["--plda", cos_plda] if cos_plda else [])):
            iv = ["--backend", be, "--ubm", ubm, "--ivector", tv] + extra
            m = work / f"m_{be}_{g}_{tag if be == 'plda' else 'c'}.npz"
            run(f"{be} enroll {g}", ["enroll"] + iv + ["--enroll", str(out / f"enroll_{g}.txt"), "--out", str(m)], m)
            sfile = work / f"s_{be}_{g}_{tag if be == 'plda' else 'c'}.txt"
            run(f"{be} score {g}", ["score"] + iv + ["--models", str(m), "--trials", str(out / f"trials_{g}.txt"),
                                                     "--out", str(sfile)], sfile)
    scores = {}
    for g in ("dev", "eval"):
        scores[g] = {"GMM-UBM": labelled(work / f"s_gmm_{g}.txt", out / f"trials_{g}.txt"),
                     "i-vector cosine": labelled(work / f"s_cosine_{g}_c.txt", out / f"trials_{g}.txt"),
                     "i-vector PLDA": labelled(work / f"s_plda_{g}_{tag}.txt", out / f"trials_{g}.txt")}
    # fusion: z-normalise each system with dev statistics, fit weights on dev, apply to eval
    from sklearn.linear_model import LogisticRegression
    names = ["GMM-UBM", "i-vector PLDA"]
    Xd = np.column_stack([scores["dev"][n][0] for n in names])
    mu, sd = Xd.mean(0), Xd.std(0)
    ld = scores["dev"]["GMM-UBM"][1]
    w = np.where(ld, 0.5 / ld.sum(), 0.5 / (~ld).sum())            # prior-weighted (P = 0.5): outputs are LLRs
    lr = LogisticRegression(C=1e6).fit((Xd - mu) / sd, ld, sample_weight=w * len(ld))
    for g in ("dev", "eval"):
        X = np.column_stack([scores[g][n][0] for n in names])
        scores[g]["fusion GMM-UBM + PLDA"] = (lr.decision_function((X - mu) / sd), scores[g]["GMM-UBM"][1])
    lines = [f"## K={a.components} R={a.rank}: benchmarks/protocol_ivector.py --components {a.components} "
             f"--rank {a.rank} --ivector-iters {a.ivector_iters} --lda-dims {a.lda_dims}",
             f"# {json.dumps(info)}",
             f"# step wall seconds this run ({load_line()}; skipped steps absent): {json.dumps(times)}",
             f"# chosen on dev: PLDA {json.dumps(bp)}, cosine {json.dumps(bc)}; fusion weights (z-scored "
             f"inputs {names}) {np.round(lr.coef_[0], 3).tolist()} bias {lr.intercept_[0]:.3f}",
             "# dev tuning grid (dev EER %, dev minDCF p=0.01):"]
    lines += [f"#   {n:<34} {e:6.2f} {d:7.4f}" for n, e, d in grid]
    lines.append(f"{'eval system':<24} {'EER %':>7} {'minDCF p=0.01':>14} {'Cllr (cal. on dev)':>19} {'minCllr':>8}")
    for name, (s, lab) in scores["eval"].items():
        if name.startswith("fusion"):
            llr = s
        else:
            sd_, ld_ = scores["dev"][name]
            llr = fit_calibration(sd_, ld_, prior=0.5).llr(s)
        lines.append(f"{name:<24} {100 * eer(s, lab):7.2f} {min_dcf(s, lab, 0.01):14.4f} {cllr(llr, lab):19.4f} "
                     f"{min_cllr(s, lab):8.4f}")
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    (work / "results.txt").write_text(text)
    res = a.results or ROOT / "benchmarks" / "results_ivector_protocol.txt"
    with open(res, "a") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
