"""Decisions by default on speechocean762 (docs/store.md, "Decisions you can trust by default").

The groups of ``protocol_speechocean.py``: UBM on speakers 1-40, development speakers 51-75,
evaluation speakers 76-100; each enrolled on its first 5 utterances (utterance-id order) and
tested on the other 15: 25 x 375 = 9,375 trials per group (375 target).  Everything a user
would type goes through the command line (``speaker.cli.main`` in this process):

1. ``enroll --store`` both groups with the default quality gates (what they refuse is printed);
2. **uncalibrated**: ``identify --top 25`` every evaluation test (every trial's decision);
3. **self-calibrated**: ``calibrate --store EVAL --from-enrollments --prior P --target-far F``
   (what it promises: the expected rates with their intervals), then ``identify`` at
   ``--p-target P`` and at ``--target-far F``: the measured rates on the evaluation trials;
4. the same with ``--duration-aware``;
5. **the figure to beat**: ``score`` the development trials, ``calibrate --scores --trials
   --store EVAL`` (kept as the store's next calibration), ``identify`` again;
6. **how many speakers a self-calibration needs** (library): stores of S of the evaluation
   speakers with R recordings each (random draws of speakers), self-calibrated, their
   calibration applied to all evaluation trials: promised and measured false-accept rates.

    python benchmarks/protocol_decide.py --data PATH/speechocean762 --out /tmp/decide

Results: ``benchmarks/results_decide.txt`` (``--results``).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, load_line  # noqa: E402
from protocol_speechocean import build_lists, read_kv  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def cli(*args) -> tuple[int, str, str]:
    """``speaker ARGS`` in this process: (exit status, stdout, stderr)."""
    from speaker.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    return rc, out.getvalue(), err.getvalue()


def must(*args) -> tuple[str, str]:
    rc, out, err = cli(*args)
    if rc != 0:
        raise SystemExit(f"speaker {' '.join(map(str, args[:3]))} ... exited {rc}: {err[-2000:]}")
    return out, err


def decisions(out: str, spk_of_file: dict[str, str]) -> dict[str, np.ndarray]:
    """identify's lines 'FILE ID score decision [llr]' -> arrays of labels, scores, decisions, llrs."""
    lab, score, dec, llr = [], [], [], []
    for line in out.splitlines():
        f, spk, s, d, *rest = line.split()
        lab.append(spk_of_file[f] == spk)
        score.append(float(s))
        dec.append(d)
        llr.append(float(rest[0]) if rest else np.nan)
    return {"label": np.array(lab), "score": np.array(score), "decision": np.array(dec), "llr": np.array(llr)}


def rates(d: dict[str, np.ndarray]) -> dict:
    from speaker.calibration import rate_interval
    lab, acc = d["label"], d["decision"] == "accept"
    n_t, n_n = int(lab.sum()), int((~lab).sum())
    miss, fa = int((lab & ~acc).sum()), int((~lab & acc).sum())
    return {"p_miss": miss / n_t, "p_miss_ci": rate_interval(miss, n_t), "p_fa": fa / n_n,
            "p_fa_ci": rate_interval(fa, n_n), "misses": miss, "fas": fa, "n_t": n_t, "n_n": n_n,
            "undecided": int((d["decision"] == "undecided").sum()), "accepts": int(acc.sum())}


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def ci(c) -> str:
    return f"[{100 * c[0]:.2f}, {100 * c[1]:.2f}]"


def main(argv=None) -> None:
    import warnings
    warnings.filterwarnings("ignore", category=RuntimeWarning)      # means of all-NaN columns, shown as "-"
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="the speechocean762 folder (wav.scp, utt2spk)")
    ap.add_argument("--out", type=Path, required=True, help="work folder: lists, UBM (reused if there), stores, cache")
    ap.add_argument("--components", type=int, default=128, help="UBM size (default 128)")
    ap.add_argument("--jobs", type=int, default=1, help="feature-extraction processes (default 1)")
    ap.add_argument("--p-target", type=float, default=0.01)
    ap.add_argument("--target-far", type=float, default=0.01)
    ap.add_argument("--draws", type=int, default=5, help="random speaker subsets per size in step 6 (default 5)")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results_decide.txt")
    a = ap.parse_args(argv)
    from speaker.calibration import Calibration, cllr, far_threshold
    from speaker.gates import NO_GATE
    from speaker.lists import read_trials
    from speaker.metrics import actual_dcf, bayes_threshold
    from speaker.selfcal import NotEnoughEnrolments, calibrate_from_enrollments
    from speaker.store import SpeakerStore

    t0 = time.time()
    out = a.out
    lines = environment(argv, __file__)

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    for x in lines:
        print(x)
    paths = build_lists(a.data, out)
    common = ["--jobs", a.jobs, "--cache", out / "cache", "--quiet"]
    if not (out / "ubm.npz").exists():
        must("train-ubm", "--list", paths["ubm"], "--out", out / "ubm.npz", "--components", a.components,
             "--sample-rate", 16000, "--iters", 10, *common)
    P, F = a.p_target, a.target_far
    say(f"speechocean762: UBM K={a.components} on speakers 1-40; development speakers 51-75, evaluation speakers "
        f"76-100, each enrolled on 5 utterances and tested on the other 15 (9,375 trials per group, 375 target); "
        f"operating points: p_target {P:g} (Bayes threshold, c_miss = c_fa = 1) and target false-accept rate {F:g}; "
        "95 % Clopper-Pearson intervals in brackets")

    # 1. enrolment with the default gates
    for g in ("dev", "eval"):
        for f in out.glob(f"{g}.db*"):
            f.unlink()
        rc, _, err = cli("enroll", "--ubm", out / "ubm.npz", "--enroll", paths[f"enroll_{g}"], "--store",
                         out / f"{g}.db", "--jobs", a.jobs, "--cache", out / "cache")
        refused = [x for x in err.splitlines() if "refused" in x or "not enrolled" in x]
        say(f"enrol {g}: exit {rc}; " + ("; ".join(refused) if refused else "the default gates refused nothing"))
    test_files = sorted({t.test for t in read_trials(paths["trials_eval"])[1]})
    spk_utts = {}
    scp = read_kv(a.data / "wav.scp")
    utt_spk = read_kv(a.data / "utt2spk")
    for u, p in scp.items():
        spk_utts[str((a.data / p.strip()).resolve())] = "spk" + utt_spk[u].strip()
    with SpeakerStore(out / "eval.db") as st:
        enrolled = [s.id for s in st.speakers()]
    test_files = [f for f in test_files if spk_utts[f] in enrolled]
    n_top = len(enrolled)
    ident = ["identify", "--store", out / "eval.db", "--top", n_top, *test_files]

    rows = []

    def measure(name: str, promised: dict | None, *extra) -> dict:
        rc, o, e = cli(*ident, *extra)
        d = decisions(o, spk_utts)
        r = rates(d)
        r.update(name=name, promised=promised, rc=rc, d=d)
        rows.append(r)
        return r

    # 2. uncalibrated
    r = measure("no calibration, no threshold", None)
    say(f"\n2. no calibration, no threshold: exit status {r['rc']}; {r['accepts']} accepts, {r['undecided']} of "
        f"{r['n_t'] + r['n_n']} trials undecided")
    scores, labels = r["d"]["score"], r["d"]["label"]

    # 3-4. self-calibration
    def selfcal(extra: list, label: str) -> None:
        o, e = must("calibrate", "--store", out / "eval.db", "--from-enrollments", "--prior", P, "--target-far", F,
                    "--json", *extra)
        rep = json.loads(o)
        pts = {p["kind"]: p for p in rep["report"]["operating_points"]}
        say(f"\n{label}: calibration {rep['id']}, fitted on {rep['fitted_on']}")
        for w in e.splitlines():
            if w.startswith("warning"):
                say(f"  {w}")
        measure(f"{label}, p_target {P:g}", pts.get("p_target"), "--p-target", P)
        measure(f"{label}, target FAR {F:g}", pts.get("target_far"), "--target-far", F)

    selfcal([], "3. self-calibrated")
    selfcal(["--duration-aware"], "4. self-calibrated, duration-aware")

    # 5. calibration on separate development trials
    must("score", "--store", out / "dev.db", "--trials", paths["trials_dev"], "--out", out / "scores_dev.txt",
         *common)
    o, _ = must("calibrate", "--scores", out / "scores_dev.txt", "--trials", paths["trials_dev"], "--store",
                out / "eval.db", "--prior", P, "--target-far", F, "--json")
    rep = json.loads(o)
    pts = {p["kind"]: p for p in rep["report"]["operating_points"]}
    say(f"\n5. calibrated on the development trials (speakers 51-75): calibration {rep['id']}")
    measure(f"5. development trials, p_target {P:g}", pts.get("p_target"), "--p-target", P)
    measure(f"5. development trials, target FAR {F:g}", pts.get("target_far"), "--target-far", F)
    o, _ = must("calibrate", "--store", out / "eval.db", "--show")
    say("\n$ speaker calibrate --store eval.db --show")
    for x in o.splitlines():
        say("  " + x)

    say(f"\n{'decisions on the evaluation trials':46s} {'promised FA %':>22s} {'measured FA %':>22s} "
        f"{'measured miss %':>22s} {'actDCF':>7s} {'Cllr':>7s}")
    p_thr = bayes_threshold(P)
    for r in rows:
        pr = r["promised"]
        prom = f"{pct(pr['p_fa'])} {ci(pr['p_fa_ci'])}" if pr else "-"
        llr, lab = r["d"]["llr"], r["d"]["label"]
        calib = np.isfinite(llr).all()
        act = f"{actual_dcf(llr, lab, p_thr, P):7.4f}" if calib else f"{'-':>7s}"
        cl = f"{cllr(llr, lab):7.4f}" if calib else f"{'-':>7s}"
        say(f"{r['name'][:46]:46s} {prom:>22s} {pct(r['p_fa']) + ' ' + ci(r['p_fa_ci']):>22s} "
            f"{pct(r['p_miss']) + ' ' + ci(r['p_miss_ci']):>22s} {act} {cl}"
            + (f"  ({r['undecided']} undecided)" if r["undecided"] else ""))

    # 6. how many speakers: subsets of the evaluation store, calibration applied to every evaluation trial
    say(f"\n6. self-calibration on S of the evaluation speakers with R recordings each ({a.draws} random draws of "
        f"speakers per S; R: their first R; no quality gates, so that every draw has S speakers), applied to all "
        f"{len(labels):,} evaluation trials: false-accept rate promised (on the store's own trials) and measured, at "
        f"p_target {P:g} and at target FAR {F:g}; mean over draws [min, max]")
    feats = {}
    with SpeakerStore(out / "eval.db") as st:
        for s in enrolled:
            feats[s] = [k.features for k in st.kept_recordings(s)]
    eval_scores, eval_lab = scores, labels
    rng = np.random.default_rng(0)
    say(f"{'S':>3s} {'R':>2s} {'trials tar/non':>15s} {'promised FA % (p)':>19s} {'measured FA % (p)':>19s} "
        f"{'actDCF':>15s} {'promised FA % (F)':>19s} {'measured FA % (F)':>19s} {'refused':>8s}")
    for R in (2, 3, 5):
        for S in sorted({5, 10, 15, 20, len(enrolled)}):
            got = []
            refused = 0
            for draw in range(a.draws if S < len(enrolled) else 1):
                pick = sorted(rng.choice(enrolled, size=S, replace=False).tolist())
                db = out / "subset.db"
                for f in out.glob("subset.db*"):
                    f.unlink()
                with SpeakerStore(db, out / "ubm.npz", gate=NO_GATE) as sub:
                    for s in pick:
                        sub.enroll(s, feats[s][:R])
                    try:
                        res = calibrate_from_enrollments(sub, prior=P, target_far=F, min_speakers=1,
                                                         min_recordings=2, keep=False)
                    except (NotEnoughEnrolments, ValueError):
                        refused += 1
                        continue
                cal: Calibration = res.calibration
                llr = cal.llr(eval_scores)
                pts = {p["kind"]: p for p in res.report["operating_points"]}
                non = np.sort(cal.llr(res.trials.nontarget))
                m_p = float((llr[~eval_lab] >= p_thr).mean())
                row = [pts["p_target"]["p_fa"], m_p, actual_dcf(llr, eval_lab, p_thr, P)]
                if "target_far" in pts:
                    t = far_threshold(non, F)
                    row += [pts["target_far"]["p_fa"], float((llr[~eval_lab] >= t).mean())]
                else:
                    row += [np.nan, np.nan]
                got.append(row)
            if not got:
                say(f"{S:3d} {R:2d} {'-':>15s}  every draw refused")
                continue
            g = np.array(got, dtype=np.float64)
            ntar, nnon = S * R, S * R * (S - 1)

            def cell(j, scale=100.0, fmt="{:.2f}"):
                col = g[:, j]
                if np.isnan(col).all():
                    return "-"
                col = col[~np.isnan(col)] * scale
                return f"{fmt.format(col.mean())} [{fmt.format(col.min())}, {fmt.format(col.max())}]"
            say(f"{S:3d} {R:2d} {f'{ntar}/{nnon}':>15s} {cell(0):>19s} {cell(1):>19s} "
                f"{cell(2, 1.0, '{:.3f}'):>15s} {cell(3):>19s} {cell(4):>19s} {refused:8d}")
    for f in out.glob("subset.db*"):
        f.unlink()
    say(f"\ntotal time {time.time() - t0:.0f} s (features cached in {out / 'cache'}); {load_line()}")
    a.results.write_text("\n".join(lines) + "\n")
    print(f"-> {a.results}", file=sys.stderr)


if __name__ == "__main__":
    main()
