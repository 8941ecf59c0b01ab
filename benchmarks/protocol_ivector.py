"""Development protocol on speechocean762: GMM-UBM vs i-vector cosine vs i-vector PLDA vs fusion.

    python benchmarks/protocol_ivector.py --components 256 --out /tmp/proto256

Speakers sorted by id: the first ``--train-speakers`` (default 50) train the UBM, T and the PLDA
back-end (all their recordings); every other speaker is enrolled with its first 5 recordings
(wav.scp order) and tested with the rest (15): every test recording against every enrolled
speaker (Kaldi-style trials).  Every step runs through the ``speaker`` command line in this
process, with one feature cache.  Fusion: logistic regression (scikit-learn) of the GMM-UBM and
PLDA scores, trained on the trials of half the enrolled speakers and applied to the other half,
and vice versa (2-fold by model, so no fused score comes from a fusion trained on its own trial).
Cllr is not reported: ``speaker.calibration`` is not in this tree.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def write_lists(data: Path, out: Path, n_train: int, n_enrol: int) -> dict:
    scp = dict(line.split(maxsplit=1) for line in (data / "wav.scp").read_text().split("\n") if line.strip())
    utt2spk = dict(line.split() for line in (data / "utt2spk").read_text().split("\n") if line.strip())
    by_spk: dict[str, list[str]] = {}
    for utt in scp:
        by_spk.setdefault(utt2spk[utt], []).append(utt)
    spks = sorted(by_spk)
    train, evals = spks[:n_train], spks[n_train:]
    path = lambda u: str((data / scp[u].strip()).resolve())     # noqa: E731
    (out / "train.lst").write_text("".join(f"{u} {path(u)}\n" for s in train for u in by_spk[s]))
    (out / "train_spk.txt").write_text("".join(f"{s} {' '.join(path(u) for u in by_spk[s])}\n" for s in train))
    (out / "enroll.txt").write_text("".join(f"{s} {' '.join(path(u) for u in by_spk[s][:n_enrol])}\n" for s in evals))
    tests = [(s, u) for s in evals for u in by_spk[s][n_enrol:]]
    (out / "trials.txt").write_text("".join(f"{m} {path(u)} {'target' if m == s else 'nontarget'}\n"
                                            for s, u in tests for m in evals))
    return dict(train_speakers=len(train), eval_speakers=len(evals), train_utts=sum(len(by_spk[s]) for s in train),
                trials=len(tests) * len(evals), targets=len(tests))


def read_scores(path: Path, trials: Path):
    lab = {tuple(f[:2]): f[2] == "target" for f in (line.split() for line in trials.read_text().splitlines())}
    rows = [line.split() for line in path.read_text().splitlines()]
    return ([(r[0], r[1]) for r in rows], np.array([float(r[2]) for r in rows]),
            np.array([lab[(r[0], r[1])] for r in rows]))


def fuse(keys, a, b, labels):
    """2-fold (by model id) logistic-regression fusion of two score lists in the same trial order."""
    from sklearn.linear_model import LogisticRegression
    models = sorted({k[0] for k in keys})
    fold = np.array([models.index(k[0]) % 2 for k in keys])
    X = np.column_stack([a, b])
    X = (X - X.mean(0)) / X.std(0)
    out = np.empty(len(a))
    for f in (0, 1):
        lr = LogisticRegression().fit(X[fold != f], labels[fold != f])
        out[fold == f] = lr.decision_function(X[fold == f])
    return out


def main() -> None:
    from speaker.cli import main as speaker
    from speaker.features import FeatureConfig
    from speaker.metrics import eer, min_dcf
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/speechocean762"), help="speechocean762 folder")
    ap.add_argument("--out", required=True, help="work folder (lists, models, scores, cache)")
    ap.add_argument("--components", type=int, default=256, help="UBM size K (default 256)")
    ap.add_argument("--rank", type=int, default=200, help="i-vector dimension (default 200)")
    ap.add_argument("--ivector-iters", type=int, default=10, help="T-matrix EM passes (default 10)")
    ap.add_argument("--lda-dim", type=int, default=40, help="LDA dimension before PLDA (default 40)")
    ap.add_argument("--train-speakers", type=int, default=50, help="speakers for UBM, T and PLDA (default 50)")
    ap.add_argument("--jobs", type=int, default=2, help="feature extraction processes (default 2)")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    info = write_lists(Path(a.data), out, a.train_speakers, 5)
    (out / "f.json").write_text(FeatureConfig(sample_rate=16000).to_json())
    common = ["--jobs", str(a.jobs), "--cache", str(out / "cache"), "--quiet"]
    ubm, tv, plda = str(out / "ubm.npz"), str(out / "tv.npz"), str(out / "plda.npz")
    iv = ["--ubm", ubm, "--ivector", tv, "--plda", plda]
    steps = [
        ("ubm", ["train-ubm", "--list", str(out / "train.lst"), "--out", ubm, "--components", str(a.components),
                 "--config", str(out / "f.json")]),
        ("gmm enrol", ["enroll", "--ubm", ubm, "--enroll", str(out / "enroll.txt"), "--out", str(out / "gmm.npz")]),
        ("gmm score", ["score", "--ubm", ubm, "--models", str(out / "gmm.npz"), "--trials", str(out / "trials.txt"),
                       "--out", str(out / "s_gmm.txt"), "--top-c", "5"]),
        ("T", ["train-ivector", "--ubm", ubm, "--list", str(out / "train.lst"), "--rank", str(a.rank),
               "--iters", str(a.ivector_iters), "--out", tv]),
        ("plda", ["train-plda", "--ubm", ubm, "--ivector", tv, "--enroll", str(out / "train_spk.txt"), "--out", plda,
                  "--lda-dim", str(a.lda_dim)]),
    ]
    for be in ("plda", "cosine"):
        steps += [(f"{be} enrol", ["enroll", "--backend", be] + iv + ["--enroll", str(out / "enroll.txt"),
                                                                      "--out", str(out / f"m_{be}.npz")]),
                  (f"{be} score", ["score", "--backend", be] + iv + ["--models", str(out / f"m_{be}.npz"), "--trials",
                                                                     str(out / "trials.txt"),
                                                                     "--out", str(out / f"s_{be}.txt")])]
    times = {}
    for name, argv in steps:
        t = time.perf_counter()
        if speaker(argv + common) != 0:
            raise SystemExit(f"step failed: speaker {' '.join(argv)}")
        times[name] = round(time.perf_counter() - t, 1)
        print(f"{name}: {times[name]} s", flush=True)
    res = {}
    keys, s_gmm, lab = read_scores(out / "s_gmm.txt", out / "trials.txt")
    systems = {}
    for be in ("gmm", "cosine", "plda"):
        k, s, _ = read_scores(out / f"s_{be}.txt", out / "trials.txt")
        assert k == keys
        systems[be] = s
    systems["fusion gmm+plda"] = fuse(keys, systems["gmm"], systems["plda"], lab)
    lines = [f"# benchmarks/protocol_ivector.py --components {a.components} --rank {a.rank} --ivector-iters "
             f"{a.ivector_iters} --lda-dim {a.lda_dim} --train-speakers {a.train_speakers}",
             f"# {json.dumps(info)}", f"# step wall seconds (loaded 2-core machine): {json.dumps(times)}",
             "# Cllr: not reported (speaker.calibration is not in this tree)",
             f"{'system':<22} {'EER %':>7} {'minDCF p=0.01':>14} {'minDCF p=0.05':>14}"]
    for name, s in systems.items():
        res[name] = (100 * eer(s, lab), min_dcf(s, lab, 0.01), min_dcf(s, lab, 0.05))
        lines.append(f"{name:<22} {res[name][0]:7.2f} {res[name][1]:14.4f} {res[name][2]:14.4f}")
    text = "\n".join(lines) + "\n"
    print(text)
    (out / "results.txt").write_text(text)


if __name__ == "__main__":
    main()
