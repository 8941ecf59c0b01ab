"""Development protocol on speechocean762 (100 speakers x 20 utterances, 16 kHz): lists, and the
effect of score normalisation and calibration (docs/store.md).

Speakers in id order are split into disjoint groups:

* UBM:         speakers  1-40 (all 20 utterances each, 800 files);
* cohort:      speakers 41-50 (5 utterances each, 50 recordings: cohort models and impostor tests);
* calibration: speakers 51-75 (development trials: the calibration is fitted on them);
* evaluation:  speakers 76-100 (evaluation trials: every figure is measured here).

Each calibration / evaluation speaker is enrolled on its first 5 utterances (utterance-id
order) and tested on the other 15; every model is tried against every test of its group
(25 x 375 = 9,375 trials: 375 target, 9,000 non-target per group).

    python benchmarks/protocol_speechocean.py --out /tmp/so762            # the lists only
    python benchmarks/protocol_speechocean.py --out /tmp/so762 --run      # + UBM, stores, scores, table

With ``--run`` the results go to ``benchmarks/results_protocol.txt`` (``--results``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_line  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "speechocean762"
NORMS = ["none", "z", "t", "zt", "s", "as"]


def read_kv(path: Path) -> dict[str, str]:
    return dict(line.split(maxsplit=1) for line in path.read_text().split("\n") if line.strip())


def build_lists(data: Path, out: Path, n_enrol: int = 5) -> dict[str, Path]:
    wav = {u: str((data / p.strip()).resolve()) for u, p in read_kv(data / "wav.scp").items()}
    spk_of = {u: s.strip() for u, s in read_kv(data / "utt2spk").items()}
    by_spk: dict[str, list[str]] = {}
    for u in sorted(wav):
        by_spk.setdefault(spk_of[u], []).append(u)
    spk = sorted(by_spk)
    if len(spk) < 100:
        raise SystemExit(f"{data}: expected 100 speakers, found {len(spk)}")
    groups = {"ubm": spk[:40], "cohort": spk[40:50], "dev": spk[50:75], "eval": spk[75:100]}
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    paths["ubm"] = out / "ubm.lst"
    paths["ubm"].write_text("".join(f"{u} {wav[u]}\n" for s in groups["ubm"] for u in by_spk[s]))
    paths["cohort"] = out / "cohort.lst"
    paths["cohort"].write_text("".join(f"{u} {wav[u]}\n" for s in groups["cohort"] for u in by_spk[s][:5]))
    for g in ("dev", "eval"):
        paths[f"enroll_{g}"] = out / f"enroll_{g}.txt"
        paths[f"enroll_{g}"].write_text("".join(f"spk{s} " + " ".join(wav[u] for u in by_spk[s][:n_enrol]) + "\n"
                                                for s in groups[g]))
        paths[f"trials_{g}"] = out / f"trials_{g}.txt"
        paths[f"trials_{g}"].write_text("".join(
            f"spk{m} {wav[u]} {'target' if m == s else 'nontarget'}\n"
            for s in groups[g] for u in by_spk[s][n_enrol:] for m in groups[g]))
    return paths


def run(paths: dict[str, Path], out: Path, components: int, jobs: int, results: Path) -> None:
    from speaker.calibration import calibration_metrics, cllr, fit_calibration
    from speaker.cli import main
    from speaker.lists import read_scores, read_trials
    from speaker.metrics import actual_dcf, bayes_threshold, eer, min_dcf

    cache = str(out / "cache")
    common = ["--jobs", str(jobs), "--cache", cache, "--quiet"]
    t0 = time.time()
    steps = [["train-ubm", "--list", paths["ubm"], "--out", out / "ubm.npz", "--components", components,
              "--sample-rate", 16000, "--iters", 10]]
    for g in ("dev", "eval"):
        (out / f"{g}.db").unlink(missing_ok=True)
        # every speaker enrolled as before the quality gates (this protocol compares norms on all 25)
        steps.append(["enroll", "--ubm", out / "ubm.npz", "--enroll", paths[f"enroll_{g}"], "--store", out / f"{g}.db",
                      "--min-speech", 0, "--min-speaker-speech", 0])
        for norm in NORMS:
            extra = [] if norm == "none" else ["--norm", norm, "--cohort", paths["cohort"], "--cohort-size", 20]
            steps.append(["score", "--store", out / f"{g}.db", "--trials", paths[f"trials_{g}"],
                          "--out", out / f"scores_{g}_{norm}.txt", *extra])
    for step in steps:
        if step[0] == "train-ubm" and (out / "ubm.npz").exists():
            continue
        print("$ speaker " + " ".join(map(str, step)), file=sys.stderr, flush=True)
        rc = main([str(a) for a in step] + common)
        if rc != 0:
            raise SystemExit(f"step failed ({rc}): {step}")

    def load(g, norm):
        _, trials = read_trials(paths[f"trials_{g}"])
        sc = read_scores(out / f"scores_{g}_{norm}.txt")
        keep = [t for t in trials if (t.model, t.test) in sc]
        return np.array([sc[(t.model, t.test)] for t in keep]), np.array([t.label for t in keep], dtype=bool)

    p = 0.01
    lines = [f"speechocean762 protocol (docs/store.md): UBM K={components} on speakers 1-40, cohort 41-50 "
             f"(50 recordings, AS-norm top 20), calibration trials on 51-75, evaluation trials on 76-100",
             f"(9,375 trials per group: 375 target); actual DCF at p_target={p} (c_miss = c_fa = 1), Bayes threshold",
             "", f"{'norm':6s} {'EER %':>7s} {'minDCF':>7s} {'Cllr raw':>9s} {'minCllr':>8s} {'actDCF raw':>11s} "
                 f"{'Cllr cal':>9s} {'actDCF cal':>11s}"]
    for norm in NORMS:
        s_dev, l_dev = load("dev", norm)
        s, lab = load("eval", norm)
        cal = fit_calibration(s_dev, l_dev, prior=0.5)
        m = calibration_metrics(s, lab, calibration=cal, p_target=p)
        raw_act = actual_dcf(s, lab, bayes_threshold(p), p)
        lines.append(f"{norm:6s} {100 * eer(s, lab):7.2f} {min_dcf(s, lab, p):7.4f} {cllr(s, lab):9.4f} "
                     f"{m['min_cllr']:8.4f} {raw_act:11.4f} {m['cllr']:9.4f} {m['act_dcf']:11.4f}")
    lines += ["", f"total time {time.time() - t0:.0f} s (feature extraction cached in {cache}); "
                  f"{load_line()} (the machine's load: every absolute time depends on it)"]
    text = "\n".join(lines) + "\n"
    results.write_text(text)
    print(text)


def main_(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the speechocean762 folder (wav.scp, utt2spk)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the lists (and, with --run, models, scores)")
    ap.add_argument("--run", action="store_true", help="also train, enrol, score and print the table")
    ap.add_argument("--components", type=int, default=128, help="UBM size (default 128)")
    ap.add_argument("--jobs", type=int, default=2, help="feature-extraction processes (default 2)")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results_protocol.txt")
    a = ap.parse_args(argv)
    paths = build_lists(a.data, a.out)
    print("lists: " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    if a.run:
        run(paths, a.out, a.components, a.jobs, a.results)


if __name__ == "__main__":
    main_()
