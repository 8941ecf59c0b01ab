#!/usr/bin/env python
"""How quickly does the ``speaker`` command start?  ``--help`` against ``import numpy``, and two
whole store commands against their targets in seconds.

Each command line is run ``--runs`` times in a fresh interpreter (the runs of all command lines
interleaved, so that a change in the machine's load hits all of them alike) and its median
wall time is reported with the ratio to the median of ``python -c "import numpy"`` in the same
run.  Target (issue 10): every ratio below 3.

The console script is started as ``python -m speaker`` with this interpreter (the same code
as the ``speaker`` entry point, without depending on PATH).

The store commands run on a store this script makes in a temporary folder (a K=256 diagonal UBM
with the default features' D, one speaker enrolled from synthetic features) and a 3-s 16 kHz WAV
it writes: ``speaker speakers --store S`` (target 0.5 s) and ``speaker verify --store S --speaker
X --threshold 0 FILE`` (target 1 s, both on an idle machine).  Their CPU seconds (user + system of
the child) are printed too: on a loaded machine the wall time includes waiting for a core, the
CPU time is close to what an idle machine's wall time would be.  The commands run with a cache
folder of the front-end's tables of their own (``SPEAKER_CACHE_DIR`` in the temporary folder):
the untimed first run of each command line fills it, as the first feature extraction of a
setting does on a user's machine (``speaker/_tables.py``).

Examples::

    python benchmarks/bench_startup.py                 # 15 runs of each, table on stdout
    python benchmarks/bench_startup.py --runs 31 --out benchmarks/results_startup.txt
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, load_line, times  # noqa: E402


def commands() -> list[tuple[str, list[str]]]:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from speaker.cli import COMMANDS
    py = [sys.executable]
    out = [('python -c "import numpy"', py + ["-c", "import numpy"]),
           ("speaker --help", py + ["-m", "speaker", "--help"])]
    out += [(f"speaker {c.NAME} --help", py + ["-m", "speaker", c.NAME, "--help"]) for c in COMMANDS]
    return out


#: Whole commands on a store: name -> target wall seconds on an idle machine.
STORE_TARGETS = {"speaker speakers --store S": 0.5, "speaker verify --store S --speaker X FILE": 1.0}


def store_commands(folder: Path) -> list[tuple[str, list[str]]]:
    """Make the store and the recording in ``folder``; the two store command lines."""
    import numpy as np
    import soundfile as sf
    from gmmext import GaussianMixture
    from speaker import FeatureConfig
    from speaker.store import SpeakerStore
    rng = np.random.default_rng(0)
    K, D = 256, FeatureConfig().dim
    ubm = GaussianMixture.from_parameters(np.full(K, 1 / K), rng.normal(size=(K, D)), rng.uniform(0.5, 2, (K, D)),
                                          covariance_type="diag")
    with SpeakerStore(folder / "s.db", ubm) as st:
        st.enroll("X", [rng.normal(size=(3000, D))])
    t = np.arange(3 * 16000) / 16000
    sf.write(folder / "x.wav", (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
                                + 0.01 * rng.normal(size=t.size)).astype(np.float32), 16000)
    py = [sys.executable, "-m", "speaker"]
    return [("speaker speakers --store S", py + ["speakers", "--store", str(folder / "s.db")]),
            ("speaker verify --store S --speaker X FILE",
             py + ["verify", "--store", str(folder / "s.db"), "--speaker", "X", "--threshold", "0",
                   str(folder / "x.wav")])]


CPU: dict[str, list[float]] = {}


def wall(cmd: list[str], name: str | None = None) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = times(lambda: subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     check=name not in STORE_TARGETS), 1)[0]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if name is not None:
        CPU.setdefault(name, []).append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=15, help="runs of every command line (default 15)")
    ap.add_argument("--out", help="also write the report to this file")
    ap.add_argument("--help-only", action="store_true", help="only the --help command lines (no store)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SPEAKER_CACHE_DIR"] = os.path.join(tmp, "cache")          # inherited by the commands
        cmds = commands() + ([] if args.help_only else store_commands(Path(tmp)))
        return _run(args, argv, cmds)


def _run(args, argv, cmds) -> int:
    for _, cmd in cmds:                      # warm the OS file cache once, untimed
        wall(cmd)
    runs: dict[str, list[float]] = {name: [] for name, _ in cmds}
    for _ in range(args.runs):
        for name, cmd in cmds:
            runs[name].append(wall(cmd, name))
    base = statistics.median(runs[cmds[0][0]])
    lines = [f"# {line}" for line in environment(argv, __file__)] + [f"# {load_line('at end')}"]
    lines += ["", f"{'command':34s} {'median':>9s} {'min':>9s} {'ratio':>7s}  target < 3x",
             "-" * 72]
    worst = 0.0
    for name, _ in cmds:
        med = statistics.median(runs[name])
        ratio = med / base
        if name != cmds[0][0] and name not in STORE_TARGETS:
            worst = max(worst, ratio)
        if name in STORE_TARGETS:
            continue
        ok = "" if name == cmds[0][0] else ("[ok]" if ratio < 3 else "[MISS]")
        lines.append(f"{name:34s} {med * 1000:7.0f}ms {min(runs[name]) * 1000:7.0f}ms {ratio:6.2f}x  {ok}")
    lines += ["", f"worst ratio to 'import numpy': {worst:.2f}x ({'ok' if worst < 3 else 'MISS'})"]
    store = [name for name, _ in cmds if name in STORE_TARGETS]
    if store:
        lines += ["", f"{'whole command on a store':42s} {'wall med':>9s} {'cpu med':>9s} {'vs numpy':>8s}  "
                      "target (idle machine)", "-" * 96]
        numpy_cpu = statistics.median(CPU[cmds[0][0]])
        lines.append(f"{cmds[0][0]:42s} {base * 1000:7.0f}ms {numpy_cpu * 1000:7.0f}ms {1:7.2f}x  (the baseline)")
        for name in store:
            med, cpu = statistics.median(runs[name]), statistics.median(CPU[name])
            target = STORE_TARGETS[name]
            lines.append(f"{name:42s} {med * 1000:7.0f}ms {cpu * 1000:7.0f}ms {med / base:7.2f}x  <= {target:g} s: "
                         f"wall {'ok' if med <= target else 'MISS'}, cpu {'ok' if cpu <= target else 'MISS'}")
    report = "\n".join(lines) + "\n"
    print(report, end="")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
