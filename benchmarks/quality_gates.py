"""What the quality gates (speaker/quality.py) would refuse on real recordings.

    python benchmarks/quality_gates.py --data PATH/speechocean762 --fsdd PATH/fsdd

Measures every recording's :class:`speaker.quality.Quality` (speechocean762 at 16 kHz, FSDD at
8 kHz, the front-end's defaults otherwise) and prints, per corpus, the distribution of net speech,
SNR estimate and clipping, and the fraction of recordings each gate refuses at the default and at
neighbouring thresholds; for speechocean762 also the per-speaker enrolment total of the
development protocols (each speaker's first 5 utterances, docs/calibration.md).  Appends to
``benchmarks/results_quality.txt`` (``--results``).
"""
from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import append_lines, environment  # noqa: E402


def _measure(args):
    from speaker.features import FeatureConfig, extract_features_and_quality
    path, rate = args
    return extract_features_and_quality(path, config=FeatureConfig(sample_rate=rate))[1]


def _pct(x, qs=(1, 5, 50, 95, 99)):
    return " ".join(f"p{q}={np.percentile(x, q):.2f}" for q in qs)


def report(name: str, files: list[str], rate: int, jobs: int, groups: dict[str, list[int]] | None = None) -> list[str]:
    from speaker import quality as Q
    with ProcessPoolExecutor(jobs) as ex:
        qs = list(ex.map(_measure, [(f, rate) for f in files], chunksize=16))
    sp = np.array([q.speech_seconds for q in qs])
    snr = np.array([q.snr_db for q in qs])
    clip = np.array([q.clipped_fraction for q in qs])
    n = len(qs)
    out = [f"## {name}: {n} recordings at {rate} Hz",
           f"net speech s:      {_pct(sp)}",
           f"SNR estimate dB:   {_pct(snr)}",
           f"clipped fraction:  {_pct(clip, (50, 99, 100))}; recordings with a clipped run: "
           f"{sum(q.clipped_runs > 0 for q in qs)}",
           "gate (refused when ...)                       refused"]
    rows = [(f"net speech < {t:g} s" + (" (default, test & per recording)" if t == Q.MIN_TEST_SPEECH else ""),
             np.mean(sp < t)) for t in (0.5, 1.0, 2.0, 3.0)]
    rows += [(f"clipped fraction > {t:g}" + (" (default)" if t == Q.MAX_CLIPPED_FRACTION else ""), np.mean(clip > t))
             for t in (0.001, 0.01)]
    rows += [(f"SNR estimate < {t:g} dB" + (" (default: noise only)" if t == Q.NOISE_ONLY_SNR_DB else ""),
              np.mean(snr < t)) for t in (5.0, 10.0, 15.0)]
    rows.append(("noise only (< 5 dB in a recording >= 1 s)", np.mean([q.noise_only for q in qs])))
    gates = Q.QualityGates()
    rows.append(("any default gate (one enrolment recording)", np.mean([bool(gates.problems(q)) for q in qs])))
    out += [f"{r:<45} {100 * f:6.2f} %  ({round(f * n)})" for r, f in rows]
    if groups:
        tot = np.array([sp[idx].sum() for idx in groups.values()])
        out.append(f"per speaker, first 5 utterances: net speech s {_pct(tot, (0, 5, 50, 95))}; "
                   f"< {Q.MIN_ENROL_SPEAKER_SPEECH:g} s (default): {np.mean(tot < Q.MIN_ENROL_SPEAKER_SPEECH) * 100:.1f} % "
                   f"of {len(tot)} speakers")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="speechocean762 folder (wav.scp, utt2spk)")
    ap.add_argument("--fsdd", type=Path, default=None, help="FSDD folder of WAV files (optional)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results_quality.txt",
                    help="append the report to this file")
    a = ap.parse_args(argv)
    lines = [f"# {x}" for x in environment(argv, __file__)]
    from speaker.lists import read_scp
    wav = read_scp(a.data / "wav.scp", root=a.data)
    spk = dict(line.split() for line in (a.data / "utt2spk").read_text().splitlines() if line.strip())
    utts = sorted(wav)
    groups: dict[str, list[int]] = {}
    for i, u in enumerate(utts):
        g = groups.setdefault(spk[u], [])
        if len(g) < 5:
            g.append(i)
    lines += report("speechocean762", [wav[u] for u in utts], 16000, a.jobs, groups)
    if a.fsdd is not None:
        lines += report("FSDD", sorted(str(p) for p in a.fsdd.glob("*.wav")), 8000, a.jobs)
    append_lines(lines, a.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
