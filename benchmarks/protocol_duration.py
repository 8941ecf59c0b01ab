"""Duration-aware calibration against duration-blind calibration on short tests (docs/calibration.md).

    python benchmarks/protocol_duration.py --data PATH/speechocean762 --out /tmp/so762dur

Protocol (speechocean762: 100 speakers x 20 read sentences, 16 kHz; speakers in id order):

* UBM:  speakers 1-40, all 20 utterances (800 recordings), diagonal GMM of K components
  (default 256, split initialisation, 10 EM passes at the final size), features cached in OUT;
* dev:  speakers 51-75: the calibrations are fitted on their trials only;
* eval: speakers 76-100: every reported figure.
  (Speakers 41-50 are left out, as the cohort of benchmarks/protocol_speechocean.py.)

A dev / eval speaker is enrolled (MAP, relevance 16) on the first 5 utterances in utterance-id
order, at full length; the other 15 are tests, each tried against every model of its group
(25 x 375 = 9,375 trials, 375 target). Each test is scored four times: cut to the first 1, 2 and
3 s of net speech (the audio is cut after the frame where the VAD's speech frames reach that
count, then its features and quality are extracted again, as a short login would be) and at full
length. A test with less net speech than a cut has no trial at that cut (the counts are printed).
Scores: average frame LLR, top-5 scoring.

Calibrations (prior-weighted logistic regression, speaker/calibration.py), each fitted on the dev
trials and applied to the eval trials:

* blind, full-length dev: ``llr = a s + b`` fitted on full-length dev tests only (what one does
  without short development tests);
* blind, pooled dev: the same fitted on the dev trials of all four conditions together;
* duration-aware, pooled dev: ``llr = a s + b + sum of c log(d) + e s log(d)`` over d = the
  enrolment's and the test's net speech seconds (each clamped to its dev range), on the same trials.

Reported per eval condition: EER, minDCF and actual DCF at p_target = 0.01 (normalised, Bayes
threshold on the LLR), Cllr and minCllr (bits).  Appends to benchmarks/results_duration.txt.
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import append_lines, environment  # noqa: E402

CUTS = (1.0, 2.0, 3.0, None)          # seconds of net speech; None = full length
N_ENROL = 5


def _config():
    from speaker.features import FeatureConfig
    return FeatureConfig()             # 16 kHz, the front-end's defaults


def _cuts(path: str) -> list:
    """[(cut, features, net speech seconds) for each cut the recording is long enough for]."""
    import librosa

    from speaker.audio import load_audio
    from speaker.features import LOG_FLOOR, extract_features_and_quality, vad
    cfg = _config()
    y = load_audio(path, target_rate=cfg.sample_rate)
    frames = librosa.util.frame(y, frame_length=cfg.win_samples, hop_length=cfg.hop_samples, axis=0)
    log_energy = np.log(np.maximum(np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / cfg.win_samples,
                                   LOG_FLOOR))                    # the front-end's frame log-energy
    speech_at = np.flatnonzero(vad(log_energy, cfg))              # frame indices of speech
    out = []
    for cut in CUTS:
        if cut is None:
            feats, q = extract_features_and_quality(y, cfg.sample_rate, cfg)
        else:
            n = int(round(cut * 100))
            if speech_at.size <= n:                               # not that much speech: no trial at this cut
                continue
            end = speech_at[n - 1] * cfg.hop_samples + cfg.win_samples
            feats, q = extract_features_and_quality(y[:end], cfg.sample_rate, cfg)
        out.append((cut, feats, q.speech_seconds))
    return out


def protocol(data: Path):
    from speaker.lists import read_scp
    wav = read_scp(data / "wav.scp", root=data)
    spk_of = dict(line.split() for line in (data / "utt2spk").read_text().splitlines() if line.strip())
    by_spk: dict[str, list[str]] = {}
    for u in sorted(wav):
        by_spk.setdefault(spk_of[u], []).append(wav[u])
    spk = sorted(by_spk)
    if len(spk) < 100:
        raise SystemExit(f"{data}: expected 100 speakers, found {len(spk)}")
    return by_spk, {"ubm": spk[:40], "dev": spk[50:75], "eval": spk[75:100]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="speechocean762 folder (wav.scp, utt2spk)")
    ap.add_argument("--out", type=Path, required=True, help="work folder (feature cache, UBM)")
    ap.add_argument("--components", type=int, default=256, help="UBM size K (default 256)")
    ap.add_argument("--prior", type=float, default=0.5, help="training prior of the calibrations (default 0.5)")
    ap.add_argument("--p-target", type=float, default=0.01, help="prior of the actual and minimum DCF (default 0.01)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results_duration.txt",
                    help="append the table to this file")
    a = ap.parse_args(argv)
    header = [f"# {x}" for x in environment(argv, __file__)]
    from speaker.adapt import map_adapt_many
    from speaker.calibration import ENROL_SPEECH, TEST_SPEECH, cllr, fit_calibration, min_cllr
    from speaker.featcache import FeatureCache
    from speaker.features import extract_features_and_quality
    from speaker.metrics import actual_dcf, bayes_threshold, eer, min_dcf
    from speaker.model_io import load_model, save_model
    from speaker.scoring import score_trials
    from speaker.ubm import train_ubm

    t0 = time.time()
    by_spk, groups = protocol(a.data)
    a.out.mkdir(parents=True, exist_ok=True)
    cfg = _config()
    ubm_path = a.out / f"ubm_K{a.components}.npz"
    if ubm_path.exists():
        ubm = load_model(ubm_path).ubm
    else:
        with FeatureCache(cfg, a.out / "cache", jobs=a.jobs) as fc:
            files = [f for s in groups["ubm"] for f in by_spk[s]]
            fc.load(files)
            ubm = train_ubm([fc.features[f] for f in files], a.components, n_iter=10, random_state=0)
        save_model(ubm_path, ubm, config=cfg)
    t_ubm = time.time() - t0

    results = {}
    with ProcessPoolExecutor(a.jobs) as ex:
        for g in ("dev", "eval"):
            enrol = {s: by_spk[s][:N_ENROL] for s in groups[g]}
            tests = [(s, f) for s in groups[g] for f in by_spk[s][N_ENROL:]]
            eq = dict(zip([f for fs in enrol.values() for f in fs],
                          ex.map(extract_features_and_quality, [f for fs in enrol.values() for f in fs])))
            models = map_adapt_many(ubm, {s: [eq[f][0] for f in fs] for s, fs in enrol.items()})
            enrol_speech = {s: sum(eq[f][1].speech_seconds for f in fs) for s, fs in enrol.items()}
            cut_of = dict(zip(tests, ex.map(_cuts, [f for _, f in tests], chunksize=8)))
            for cut in CUTS:
                feats, trials, lab, q_e, q_t = {}, [], [], [], []
                for (s, f), cuts in cut_of.items():
                    for c, X, sp in cuts:
                        if c == cut:
                            feats[f] = X
                            for m in groups[g]:
                                trials.append((m, f))
                                lab.append(m == s)
                                q_e.append(enrol_speech[m])
                                q_t.append(sp)
                scores = score_trials(trials, models, ubm, feats, top_c=5)
                results[g, cut] = (scores, np.array(lab), {ENROL_SPEECH: np.array(q_e), TEST_SPEECH: np.array(q_t)},
                                   len(feats))
    t_score = time.time() - t0 - t_ubm

    def pooled(g):
        s = np.concatenate([results[g, c][0] for c in CUTS])
        lab = np.concatenate([results[g, c][1] for c in CUTS])
        q = {k: np.concatenate([results[g, c][2][k] for c in CUTS]) for k in (ENROL_SPEECH, TEST_SPEECH)}
        return s, lab, q

    s_dev, l_dev, q_dev = pooled("dev")
    cals = {"blind, full-length dev": fit_calibration(results["dev", None][0], results["dev", None][1], a.prior),
            "blind, pooled dev": fit_calibration(s_dev, l_dev, a.prior),
            "duration-aware, pooled dev": fit_calibration(s_dev, l_dev, a.prior, quality=q_dev)}
    p = a.p_target
    thr = bayes_threshold(p)
    lines = header + [
        f"# UBM K={a.components} on speakers 1-40 (800 recordings), dev speakers 51-75, eval 76-100, "
        f"{N_ENROL} enrolment utterances, top-5 scoring; calibrations fitted at prior {a.prior}; "
        f"DCFs at p_target={p}",
        f"# wall seconds (loaded machine): UBM {t_ubm:.0f} (0 if cached), features+scoring {t_score:.0f}",
        f"# duration-aware calibration: {cals['duration-aware, pooled dev'].to_json()}",
        f"{'eval test':<10} {'tests':>5} {'trials':>6} {'EER %':>6} {'minDCF':>7} {'minCllr':>7}  "
        + "  ".join(f"{'actDCF':>7} {'Cllr':>6}" for _ in cals) + "   (" + " | ".join(cals) + ")"]
    for cut in CUTS:
        s, lab, q, n_tests = results["eval", cut]
        row = (f"{'full' if cut is None else f'{cut:g} s':<10} {n_tests:5d} {s.size:6d} {100 * eer(s, lab):6.2f} "
               f"{min_dcf(s, lab, p):7.4f} {min_cllr(s, lab):7.4f}  ")
        cells = []
        for cal in cals.values():
            llr = cal.llr(s, q)
            cells.append(f"{actual_dcf(llr, lab, thr, p):7.4f} {cllr(llr, lab):6.4f}")
        lines.append(row + "  ".join(cells))
    s_all, l_all, q_all = pooled("eval")
    cells = []
    for cal in cals.values():
        llr = cal.llr(s_all, q_all)
        cells.append(f"{actual_dcf(llr, l_all, thr, p):7.4f} {cllr(llr, l_all):6.4f}")
    lines.append(f"{'pooled':<10} {'':5} {s_all.size:6d} {100 * eer(s_all, l_all):6.2f} {min_dcf(s_all, l_all, p):7.4f} "
                 f"{min_cllr(s_all, l_all):7.4f}  " + "  ".join(cells))
    raw = float(np.median(s_dev[l_dev]))
    aware = cals["duration-aware, pooled dev"]
    lines.append(f"# the median dev target score {raw:.4f} read by the duration-aware calibration, enrolment 15 s: "
                 + ", ".join(f"test {d:g} s -> LLR {aware.llr(raw, {ENROL_SPEECH: 15.0, TEST_SPEECH: d}):.2f}"
                             for d in (1.0, 2.0, 3.0, 10.0))
                 + f"; duration-blind (pooled dev): {cals['blind, pooled dev'].llr(raw):.2f} whatever the length")
    append_lines(lines, a.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
