#!/usr/bin/env python
"""How quickly does the ``speaker`` command start?  ``--help`` against ``import numpy``.

Each command line is run ``--runs`` times in a fresh interpreter (the runs of all command lines
interleaved, so that a change in the machine's load hits all of them alike) and its median
wall time is reported with the ratio to the median of ``python -c "import numpy"`` in the same
run.  Target (issue 10): every ratio below 3.

The console script is started as ``python -m speaker`` with this interpreter (the same code
as the ``speaker`` entry point, without depending on PATH).

Examples::

    python benchmarks/bench_startup.py                 # 15 runs of each, table on stdout
    python benchmarks/bench_startup.py --runs 31 --out benchmarks/results_startup.txt
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
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


def wall(cmd: list[str]) -> float:
    return times(lambda: subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True),
                 1)[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=15, help="runs of every command line (default 15)")
    ap.add_argument("--out", help="also write the report to this file")
    args = ap.parse_args(argv)
    cmds = commands()
    for _, cmd in cmds:                      # warm the OS file cache once, untimed
        wall(cmd)
    runs: dict[str, list[float]] = {name: [] for name, _ in cmds}
    for _ in range(args.runs):
        for name, cmd in cmds:
            runs[name].append(wall(cmd))
    base = statistics.median(runs[cmds[0][0]])
    lines = [f"# {line}" for line in environment(argv, __file__)] + [f"# {load_line('at end')}"]
    lines += ["", f"{'command':34s} {'median':>9s} {'min':>9s} {'ratio':>7s}  target < 3x",
             "-" * 72]
    worst = 0.0
    for name, _ in cmds:
        med = statistics.median(runs[name])
        ratio = med / base
        if name != cmds[0][0]:
            worst = max(worst, ratio)
        ok = "" if name == cmds[0][0] else ("[ok]" if ratio < 3 else "[MISS]")
        lines.append(f"{name:34s} {med * 1000:7.0f}ms {min(runs[name]) * 1000:7.0f}ms {ratio:6.2f}x  {ok}")
    lines += ["", f"worst ratio to 'import numpy': {worst:.2f}x ({'ok' if worst < 3 else 'MISS'})"]
    report = "\n".join(lines) + "\n"
    print(report, end="")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
