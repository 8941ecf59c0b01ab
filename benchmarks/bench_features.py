#!/usr/bin/env python
"""How fast is feature extraction through the ``speaker`` command, against the library call?

On the first ``--limit`` utterances of a Kaldi-style data folder (``wav.scp``; by default the
shared speechocean762: 16 kHz FLAC), with the default ``FeatureConfig`` (16 kHz MFCC + deltas,
energy VAD, CMVN), the rate is reported as seconds of audio per CPU second:

(a) the library: ``speaker.extract_features`` in a loop in this process, after a warm-up on
    the first file (CPU time of this process, ``time.process_time``);
(b) the command's features stage with ``--jobs`` workers: ``speaker extract --out DIR`` (and,
    unless ``--no-train-ubm``, ``speaker train-ubm --components 1 --iters 0``, whose EM part is
    one pass of a one-Gaussian model, negligible), started as ``python -m speaker``; CPU
    seconds of the whole process tree (``resource.getrusage(RUSAGE_CHILDREN)`` around the
    subprocess: the command, its worker processes, the interpreter's start-up and imports).

and the ratio b / a.  Target (issue 10): b >= 70 % of a, i.e. the command pays librosa's
first-call costs and its process start-up once, not per batch or per worker.

Examples::

    python benchmarks/bench_features.py --data /work/shared/data/speechocean762
    python benchmarks/bench_features.py --data ... --limit 400 --out benchmarks/results_features.txt
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT / ".." / "shared" / "data" / "speechocean762"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, load_line  # noqa: E402


def read_scp(data: Path, limit: int) -> list[tuple[str, str]]:
    out = []
    for line in (data / "wav.scp").read_text(encoding="utf-8").splitlines():
        f = line.split()
        if len(f) == 2:
            p = f[1] if os.path.isabs(f[1]) else str(data / f[1])
            out.append((f[0], p))
        if len(out) == limit:
            break
    return out


def library_rate(paths: list[str]) -> tuple[float, float, int]:
    """(audio seconds, CPU seconds, frames) of extract_features over ``paths`` in this process."""
    import soundfile as sf
    from speaker import FeatureConfig, extract_features
    config = FeatureConfig()
    extract_features(paths[0], config=config)                    # warm-up, not timed
    audio = sum(sf.info(p).duration for p in paths)
    frames = 0
    t = time.process_time()
    for p in paths:
        frames += extract_features(p, config=config).shape[0]
    return audio, time.process_time() - t, frames


def command_cpu(args: list[str]) -> tuple[float, float]:
    """(CPU seconds of the process tree, wall seconds) of ``python -m speaker ARGS``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "speaker", *args], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA,
                    help="Kaldi-style data folder with wav.scp (default ../shared/data/speechocean762)")
    ap.add_argument("--limit", type=int, default=2000, help="utterances to use (default 2000: all)")
    ap.add_argument("--jobs", type=int, default=2, help="--jobs of the command (default 2)")
    ap.add_argument("--no-train-ubm", action="store_true", help="measure 'speaker extract' only")
    ap.add_argument("--note", default="", help="a line about the machine's state, for the report")
    ap.add_argument("--out", help="also write the report to this file")
    args = ap.parse_args(argv)
    entries = read_scp(args.data, args.limit)
    if not entries:
        ap.error(f"no utterances in {args.data / 'wav.scp'}")
    header = environment(argv, __file__)                       # the load average at the start
    audio, lib_cpu, frames = library_rate([p for _, p in entries])
    a = audio / lib_cpu
    rows = [("(a) library: extract_features loop, 1 process", lib_cpu, None, a)]
    with tempfile.TemporaryDirectory() as d:
        lst = Path(d) / "wav.scp"
        lst.write_text("".join(f"{k} {p}\n" for k, p in entries), encoding="utf-8")
        cpu, wall = command_cpu(["extract", "--list", str(lst), "--out", str(Path(d) / "feats"),
                                 "--jobs", str(args.jobs), "--quiet"])
        rows.append((f"(b) speaker extract --jobs {args.jobs}", cpu, wall, audio / cpu))
        if not args.no_train_ubm:
            cpu, wall = command_cpu(["train-ubm", "--list", str(lst), "--out", str(Path(d) / "ubm.npz"),
                                     "--components", "1", "--iters", "0", "--jobs", str(args.jobs), "--quiet"])
            rows.append((f"(b) speaker train-ubm --jobs {args.jobs} (K=1, 0 iters)", cpu, wall, audio / cpu))
    lines = [f"# {line}" for line in header] + [f"# {load_line('at end')}"]
    if args.note:
        lines.append(f"# {args.note}")
    lines += ["", f"{len(entries)} utterances, {audio:.0f} s of audio, {frames} speech frames "
                  "(default FeatureConfig: 16 kHz, MFCC + deltas, VAD, CMVN)", "",
              f"{'':52s} {'CPU s':>8s} {'wall s':>8s} {'audio s / CPU s':>16s} {'b / a':>7s}", "-" * 96]
    for name, cpu, wall, rate in rows:
        ratio = "" if wall is None else f"{100 * rate / a:6.0f} %" + ("  [ok]" if rate >= 0.7 * a else "  [MISS]")
        lines.append(f"{name:52s} {cpu:8.1f} {'' if wall is None else f'{wall:8.1f}':>8s} {rate:16.0f} {ratio}")
    lines += ["", "target: b >= 70 % of a"]
    report = "\n".join(lines) + "\n"
    print(report, end="")
    if args.out:
        Path(args.out).write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
