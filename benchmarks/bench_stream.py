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
    ap.add_argument("--min-speech", default="1,2", help="speech before an early decision, seconds, one row each "
                                                       "(default 1,2)")
    ap.add_argument("--targets", default="0.01:0.05,0.001:0.01",
                    help="operating points 'far:miss,...' of the sequential test (default 0.01:0.05,0.001:0.01)")
    ap.add_argument("--jobs", type=int, default=2, help="feature-extraction processes for the UBM (default 2)")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results_stream.txt")
    args = ap.parse_args(argv)

    import soundfile as sf

    from speaker.calibration import ENROL_SPEECH, TEST_SPEECH, fit_calibration
    from speaker.gates import NO_GATE
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
            # every speaker enrolled, as in protocol_speechocean.py (the gates are not what is measured)
            assert cli(["enroll", "--ubm", str(ubm), "--enroll", str(paths[f"enroll_{g}"]), "--store", str(db),
                        "--min-speech", "0", "--min-speaker-speech", "0", "--quiet"]) == 0
        groups[g] = (db, read_trials(paths[f"trials_{g}"]))

    hop = None

    def stream_group(db: Path, trials):
        """Per trial: (batch score of the whole test, cumulative raw LLR totals and speech frames
        after each streamed block, the model's enrolment speech), with the group's store."""
        nonlocal hop
        with SpeakerStore(db, gate=NO_GATE) as st:
            cfg = st.config
            hop = cfg.hop_length_ms / 1000
            ids = sorted({m for m, _, _ in trials})
            models = [st.model(i) for i in ids]
            enrol = {r.id: r.speech_seconds or r.n_frames * hop for r in st.speakers()}
            col = {m: j for j, m in enumerate(ids)}
            per_test = {}
            for t in sorted({t for _, t, _ in trials}):
                X = extract_features(t, config=cfg)
                whole_scores = Probe(st.ubm, X, st.top_c).llrs(models)
                y, sr = sf.read(t, dtype="float32")
                assert sr == cfg.sample_rate
                front, step = OnlineFeatures(cfg), int(args.block * sr)
                totals, counts = [], []
                for i in range(0, len(y), step):
                    Xb = front.push(y[i:i + step])
                    totals.append(Probe(st.ubm, Xb, st.top_c).llrs(models) * Xb.shape[0] if Xb.shape[0]
                                  else np.zeros(len(models)))
                    counts.append(Xb.shape[0])
                per_test[t] = (whole_scores, np.cumsum(totals, axis=0), np.cumsum(counts), X.shape[0] * hop)
        out = []
        for m, t, lab in trials:
            w, S, N, seconds = per_test[t]
            out.append((w[col[m]], S[:, col[m]], N, seconds, enrol[m], lab))
        return out

    dev = stream_group(groups["dev"][0], groups["dev"][1])
    ev = stream_group(groups["eval"][0], groups["eval"][1])
    l_dev = np.array([x[5] for x in dev])
    labels = np.array([x[5] for x in ev])
    ref_seconds = float(np.median([x[3] for x in dev]))
    # duration-blind: the whole dev tests; duration-aware: the dev tests and their streamed prefixes
    # at 1, 2 and 3 s of speech, with the enrolment's and the test's net speech as quality inputs
    blind = fit_calibration(np.array([x[0] for x in dev]), l_dev, prior=0.5)
    sc, lab, tq, eq = [], [], [], []
    for w, S, N, seconds, enrol, label in dev:
        for k in [int(np.searchsorted(N * hop, d)) for d in (1.0, 2.0, 3.0)] + [None]:
            if k is None:
                sc.append(w), tq.append(seconds)
            elif k < len(N) and N[k] > 0:
                sc.append(S[k] / N[k]), tq.append(N[k] * hop)
            else:
                continue
            lab.append(label), eq.append(enrol)
    aware = fit_calibration(np.array(sc), np.array(lab), prior=0.5,
                            quality={ENROL_SPEECH: np.array(eq), TEST_SPEECH: np.array(tq)})

    def whole_llr(cal, rows, online=False):
        if online:
            scores = np.array([S[-1] / max(1, N[-1]) for _, S, N, _, _, _ in rows])
            seconds = np.array([max(N[-1], 1) * hop for _, S, N, _, _, _ in rows])
        else:
            scores, seconds = np.array([x[0] for x in rows]), np.array([x[3] for x in rows])
        q = {ENROL_SPEECH: np.array([x[4] for x in rows]), TEST_SPEECH: seconds}
        return np.asarray(cal.llr(scores, {k: q[k] for k in cal.inputs}))

    def rates(accept, lab):
        return 100 * np.mean(~accept[lab]), 100 * np.mean(accept[~lab])

    lines = [header, "",
             f"speechocean762 development protocol: UBM K={args.components} on speakers 1-40; calibrations fitted on "
             f"the dev group (speakers 51-75, {len(l_dev)} trials), figures on the eval group (speakers 76-100, "
             f"{len(labels)} trials: {labels.sum()} target, {(~labels).sum()} non-target); 5 enrolment utterances "
             f"per speaker; exact scoring; streamed in blocks of {args.block:g} s",
             f"duration-blind calibration: llr = {blind.a:.4f} * score + {blind.b:.4f} (whole dev tests); the "
             f"sequential test spreads it over reference_seconds = {ref_seconds:.2f} (median speech of the dev tests)",
             "duration-aware calibration: score, log(enrol_speech), log(test_speech) and their products with the "
             "score (dev tests whole and cut to 1, 2, 3 s of streamed speech); the test uses the LLR of the prefix",
             ""]
    lines.append(f"{'decision on the whole recording':50s} {'EER %':>6s} {'miss %':>7s} {'FA %':>6s}")
    for name, cal in (("duration-blind", blind), ("duration-aware", aware)):
        for online in (False, True):
            llr = whole_llr(cal, ev, online)
            miss, fa = rates(llr >= 0, labels)
            lines.append(f"{name + (', online front-end' if online else ', batch front-end') + ' (llr >= 0)':50s} "
                         f"{100 * eer(llr, labels):6.2f} {miss:7.2f} {fa:6.2f}")
    lines += ["", f"speech per test recording: median {np.median([x[3] for x in ev]):.2f} s (batch front-end)", "",
              f"{'calibration':15s} {'early':>5s} {'min s':>5s} {'far':>6s} {'miss':>5s} {'A':>5s} {'B':>6s} {'early %':>8s} {'early miss %':>13s} "
              f"{'early FA %':>11s} {'miss %':>7s} {'FA %':>6s} {'median speech s':>16s} {'(early only)':>13s}"]
    runs = [(n, c, float(m), p, True) for n, c in (("duration-blind", blind), ("duration-aware", aware))
            for m in args.min_speech.split(",") for p in args.targets.split(",")]
    runs += [(n, c, float(args.min_speech.split(",")[0]), p, False) for n, c in (("duration-blind", blind),
                                                                               ("duration-aware", aware))
             for p in args.targets.split(",")]
    for name, cal, min_speech, point, early_reject in runs:
        whole = whole_llr(cal, ev)
        far, miss_t = map(float, point.split(":"))
        test = SequentialTest(target_far=far, target_miss=miss_t, min_speech=min_speech,
                              reference_seconds=ref_seconds, early_reject=early_reject)
        decided, accept, needed = [], [], []
        for (w, S, N, seconds, enrol, _), wl in zip(ev, whole):
            lam = test.evidence(cal, S, N, hop, enrol)
            k = next((i for i, (x, n) in enumerate(zip(lam, N)) if test.decide(float(x), n * hop) != "undecided"),
                     None)
            decided.append(k is not None)
            accept.append(test.decide(float(lam[k]), N[k] * hop) == "accept" if k is not None else wl >= 0)
            needed.append(N[k] * hop if k is not None else seconds)
        decided, accept, needed = map(np.array, (decided, accept, needed))
        e_miss = 100 * np.mean((decided & ~accept)[labels])          # of all targets (Wald's beta)
        e_fa = 100 * np.mean((decided & accept)[~labels])            # of all non-targets (Wald's alpha)
        miss, fa = rates(accept, labels)
        lines.append(f"{name:15s} {'both' if early_reject else 'acc.':>5s} {min_speech:5g} {far:6g} {miss_t:5g} "
                     f"{test.accept_at:5.2f} {test.reject_at if early_reject else float('nan'):6.2f} "
                     f"{100 * decided.mean():8.1f} {e_miss:13.2f} {e_fa:11.2f} {miss:7.2f} {fa:6.2f} "
                     f"{np.median(needed):16.2f} "
                     f"{np.median(needed[decided]) if decided.any() else float('nan'):13.2f}")
        lines.append(f"{'':15s} targets: {100 * decided[labels].mean():.1f} % decided early, median speech "
                     f"{np.median(needed[labels]):.2f} s; non-targets: {100 * decided[~labels].mean():.1f} % "
                     f"early, median {np.median(needed[~labels]):.2f} s")
    lines += ["", "early: 'both' = the test accepts or rejects early, 'acc.' = it only accepts early (--stream-early "
                  "accept); min s: speech before an early decision",
              "early %: trials the sequential test decided before the audio ended; early miss / FA: targets "
                  "rejected early among all targets / non-targets accepted early among all non-targets (what "
                  "Wald's beta / alpha bound for an exact likelihood ratio); miss / FA: all trials (early decisions, the rest decided on the whole "
                  "recording); median speech: speech heard when the decision was made (the whole recording's "
                  "speech for trials decided at the end)",
              f"total time {time.time() - t0:.0f} s", load_line()]
    text = "\n".join(lines) + "\n"
    args.results.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
