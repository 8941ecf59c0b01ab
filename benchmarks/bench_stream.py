"""Streaming verification with an early decision, measured on a development protocol of
speechocean762 (docs/serve.md, "Streaming verification").

Protocol (the speaker groups of ``benchmarks/protocol_speechocean.py``): a UBM of K components on
speakers 1-40; speakers 51-75 (dev) and 76-100 (eval) enrolled on their first 5 utterances and
tested on the other 15, every model against every test of its group (9,375 trials per group:
375 target, 9,000 non-target).  The calibration is fitted on the dev group's whole-recording
scores; the sequential test's ``reference_seconds`` is the dev tests' median speech.  Every figure
is measured on the eval group:

* **whole recording**: the batch front-end on the whole test, the calibrated LLR against the
  Bayes threshold at p_target = 0.5 (llr >= 0), what ``POST /verify`` answers;
* **online front-end, whole recording**: the same decision from the online front-end's features
  of the whole test (:class:`speaker.stream.OnlineFeatures`): what computing features
  incrementally costs;
* **streaming**: the test fed in blocks of ``--block`` seconds (what the service's WebSocket does),
  the evidence checked after every block (:class:`speaker.stream.SequentialTest`); a trial the
  test has not decided when the audio ends is decided on the whole recording as above.

    python benchmarks/bench_stream.py --data DIR/speechocean762 --work /tmp/so762-stream
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, load_line  # noqa: E402
from protocol_speechocean import build_lists  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def read_enrol(path: Path) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in path.read_text().splitlines() if line.strip()}


def read_trials(path: Path) -> list[tuple[str, str, bool]]:
    return [(m, t, lab == "target") for m, t, lab in (line.split() for line in path.read_text().splitlines() if line)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="the speechocean762 folder (wav.scp, utt2spk)")
    ap.add_argument("--work", type=Path, required=True, help="folder for lists, the UBM and stores (reused)")
    ap.add_argument("--components", type=int, default=128, help="UBM size (default 128)")
    ap.add_argument("--block", type=float, default=0.25, help="seconds of audio per streamed block (default 0.25)")
    ap.add_argument("--min-speech", type=float, default=1.0, help="speech before an early decision (default 1 s)")
    ap.add_argument("--targets", default="0.01:0.05,0.001:0.01",
                    help="operating points 'far:miss,...' of the sequential test (default 0.01:0.05,0.001:0.01)")
    ap.add_argument("--jobs", type=int, default=2, help="feature-extraction processes for the UBM (default 2)")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results_stream.txt")
    args = ap.parse_args(argv)

    import soundfile as sf

    from speaker.calibration import fit_calibration
    from speaker.cli import main as cli
    from speaker.features import extract_features
    from speaker.metrics import eer
    from speaker.scoring import Probe
    from speaker.store import SpeakerStore
    from speaker.stream import OnlineFeatures, SequentialTest

    t0 = time.time()
    header = "\n".join(environment(argv))
    paths = build_lists(args.data, args.work)
    ubm = args.work / "ubm.npz"
    if not ubm.exists():
        rc = cli(["train-ubm", "--list", str(paths["ubm"]), "--out", str(ubm), "--components", str(args.components),
                  "--sample-rate", "16000", "--iters", "10", "--jobs", str(args.jobs), "--cache",
                  str(args.work / "cache"), "--quiet"])
        assert rc == 0
    groups = {}
    for g in ("dev", "eval"):
        db = args.work / f"{g}.db"
        if not db.exists():
            assert cli(["enroll", "--ubm", str(ubm), "--enroll", str(paths[f"enroll_{g}"]), "--store", str(db),
                        "--quiet"]) == 0
        groups[g] = (db, read_trials(paths[f"trials_{g}"]))

    def whole_scores(store, trials, features):
        ids = sorted({m for m, _, _ in trials})
        models = [store.model(i) for i in ids]
        col = {m: j for j, m in enumerate(ids)}
        per_test = {}
        for t in sorted({t for _, t, _ in trials}):
            per_test[t] = Probe(store.ubm, features(t), store.top_c).llrs(models)
        return np.array([per_test[t][col[m]] for m, t, _ in trials]), np.array([lab for _, _, lab in trials])

    with SpeakerStore(groups["dev"][0]) as dev:
        cfg = dev.config
        frames = {}

        def batch(t):
            if t not in frames:
                frames[t] = extract_features(t, config=cfg)
            return frames[t]
        s_dev, l_dev = whole_scores(dev, groups["dev"][1], batch)
        ref_seconds = float(np.median([frames[t].shape[0] for t in frames])) * cfg.hop_length_ms / 1000
    cal = fit_calibration(s_dev, l_dev, prior=0.5)

    with SpeakerStore(groups["eval"][0]) as ev:
        trials = groups["eval"][1]
        ids = sorted({m for m, _, _ in trials})
        models = [ev.model(i) for i in ids]
        col = {m: j for j, m in enumerate(ids)}
        tests = sorted({t for _, t, _ in trials})
        batch_llr, online_llr, blocks = {}, {}, {}
        hop = cfg.hop_length_ms / 1000
        for t in tests:
            X = extract_features(t, config=cfg)
            batch_llr[t] = cal.llr(Probe(ev.ubm, X, ev.top_c).llrs(models))
            y, sr = sf.read(t, dtype="float32")
            assert sr == cfg.sample_rate
            front, step = OnlineFeatures(cfg), int(args.block * sr)
            totals, counts = [], []
            for i in range(0, len(y), step):
                Xb = front.push(y[i:i + step])
                totals.append(Probe(ev.ubm, Xb, ev.top_c).llrs(models) * Xb.shape[0] if Xb.shape[0]
                              else np.zeros(len(models)))
                counts.append(Xb.shape[0])
            S, N = np.cumsum(totals, axis=0), np.cumsum(counts)
            blocks[t] = (S, N)
            online_llr[t] = cal.llr(S[-1] / max(1, N[-1]))
        labels = np.array([lab for _, _, lab in trials])
        whole = np.array([batch_llr[t][col[m]] for m, t, _ in trials])
        online = np.array([online_llr[t][col[m]] for m, t, _ in trials])

    def rates(accept, lab):
        return 100 * np.mean(~accept[lab]), 100 * np.mean(accept[~lab])

    lines = [header, "",
             f"speechocean762 development protocol: UBM K={args.components} on speakers 1-40; calibration fitted on "
             f"the dev group (speakers 51-75, {len(l_dev)} trials), figures on the eval group (speakers 76-100, "
             f"{len(labels)} trials: {labels.sum()} target, {(~labels).sum()} non-target); 5 enrolment utterances "
             f"per speaker; exact scoring; streamed in blocks of {args.block:g} s",
             f"calibration llr = {cal.a:.4f} * score + {cal.b:.4f}; reference_seconds = {ref_seconds:.2f} "
             "(median speech of the dev tests)", ""]
    miss, fa = rates(whole >= 0, labels)
    lines.append(f"{'decision':44s} {'EER %':>6s} {'miss %':>7s} {'FA %':>6s}")
    lines.append(f"{'whole recording, batch front-end (llr >= 0)':44s} {100 * eer(whole, labels):6.2f} "
                 f"{miss:7.2f} {fa:6.2f}")
    miss, fa = rates(online >= 0, labels)
    lines.append(f"{'whole recording, online front-end':44s} {100 * eer(online, labels):6.2f} {miss:7.2f} {fa:6.2f}")
    speech_all = np.array([blocks[t][1][-1] * hop for _, t, _ in trials])
    lines += ["", f"speech per test recording: median {np.median(speech_all):.2f} s (online front-end)", "",
              f"{'sequential test':24s} {'A':>5s} {'B':>6s} {'early %':>8s} {'early miss %':>13s} "
              f"{'early FA %':>11s} {'miss %':>7s} {'FA %':>6s} {'median speech s':>16s} {'(early only)':>13s}"]
    for point in args.targets.split(","):
        far, miss_t = map(float, point.split(":"))
        test = SequentialTest(target_far=far, target_miss=miss_t, min_speech=args.min_speech,
                              reference_seconds=ref_seconds)
        decided, accept, needed = [], [], []
        for (m, t, _), w in zip(trials, whole):
            S, N = blocks[t]
            lam = test.evidence(cal, S[:, col[m]], N, hop)
            verdicts = [test.decide(float(x), n * hop) for x, n in zip(lam, N)]
            k = next((i for i, v in enumerate(verdicts) if v != "undecided"), None)
            decided.append(k is not None)
            accept.append(verdicts[k] == "accept" if k is not None else w >= 0)
            needed.append(N[k] * hop if k is not None else N[-1] * hop)
        decided, accept, needed = map(np.array, (decided, accept, needed))
        e_miss = 100 * np.mean(~accept[decided & labels]) if (decided & labels).any() else float("nan")
        e_fa = 100 * np.mean(accept[decided & ~labels]) if (decided & ~labels).any() else float("nan")
        miss, fa = rates(accept, labels)
        lines.append(f"far {far:<6g} miss {miss_t:<5g}  {test.accept_at:5.2f} {test.reject_at:6.2f} "
                     f"{100 * decided.mean():8.1f} {e_miss:13.2f} {e_fa:11.2f} {miss:7.2f} {fa:6.2f} "
                     f"{np.median(needed):16.2f} {np.median(needed[decided]) if decided.any() else float('nan'):13.2f}")
        lines.append(f"{'':24s} targets: {100 * decided[labels].mean():.1f} % decided early, median speech "
                     f"{np.median(needed[labels]):.2f} s; non-targets: {100 * decided[~labels].mean():.1f} % early, "
                     f"median {np.median(needed[~labels]):.2f} s")
    lines += ["", "early %: trials the sequential test decided before the audio ended; early miss / FA: the error "
                  "rates among those; miss / FA: all trials (early decisions, the rest decided on the whole "
                  "recording); median speech: speech heard when the decision was made (the whole recording's "
                  "speech for trials decided at the end)",
              f"total time {time.time() - t0:.0f} s", load_line()]
    text = "\n".join(lines) + "\n"
    args.results.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
