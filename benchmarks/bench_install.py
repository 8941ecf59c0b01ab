#!/usr/bin/env python
"""What does installing gmmext cost?  The core against ``gmmext[speaker]``, and ``import gmmext``
against ``import sklearn.mixture``.

1. A wheel of this checkout is built once (``pip wheel --no-deps``), or ``--wheel`` names one.
2. Three fresh venvs of this interpreter: an empty one (the baseline: pip itself), one with
   ``pip install WHEEL`` (the core) and one with ``pip install "WHEEL[speaker]"``.  For each: the
   distributions installed beyond the baseline and the size of ``site-packages`` beyond the
   baseline's (MB = 10^6 bytes, file sizes as ``du --apparent-size`` adds them).
3. In the core venv, ``python -c "import gmmext"``, ``python -c "import sklearn.mixture"`` and
   ``python -c "pass"`` (the interpreter's own start) are each run ``--runs`` times, interleaved so
   that a change in the machine's load hits all alike; the medians and min are reported, with
   each import's cost beyond the bare start and the ratio of the two.

The load average is printed with the figures: on a busy machine they are "loaded machine" figures.

    python benchmarks/bench_install.py                       # builds a wheel (a minute), 21 runs each
    python benchmarks/bench_install.py --wheel dist/gmmext-*.whl --runs 31 --out benchmarks/results_install.txt
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ("librosa", "soundfile", "av", "soxr", "numba", "llvmlite", "kaldiio", "tqdm", "sqlalchemy")


def sh(cmd: list, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, **kw)


def site_packages(venv: Path) -> Path:
    return Path(sh([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
                   ).stdout.strip())


def tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def dists(venv: Path) -> dict[str, str]:
    out = sh([venv / "bin" / "python", "-m", "pip", "list", "--format", "json"]).stdout
    return {d["name"].lower(): d["version"] for d in json.loads(out)}


def make_venv(where: Path, name: str, spec: str | None) -> dict:
    venv = where / name
    sh([sys.executable, "-m", "venv", venv])
    t = time.perf_counter()
    if spec is not None:
        sh([venv / "bin" / "python", "-m", "pip", "install", "-q", "--only-binary", ":all:", spec])
    return {"venv": venv, "seconds": time.perf_counter() - t, "bytes": tree_bytes(site_packages(venv)),
            "dists": dists(venv)}


def median_min(xs: list[float]) -> tuple[float, float]:
    return statistics.median(xs), min(xs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheel", type=Path, help="a gmmext wheel for this interpreter (default: build one)")
    ap.add_argument("--runs", type=int, default=21, help="runs of each import command (default 21)")
    ap.add_argument("--out", type=Path, help="also write the report to this file")
    args = ap.parse_args(argv)

    lines = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    with tempfile.TemporaryDirectory(prefix="gmmext-bench-install-") as tmp:
        tmp = Path(tmp)
        wheel = args.wheel
        if wheel is None:
            sh([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "wheel", ROOT])
            wheel = next((tmp / "wheel").glob("gmmext-*.whl"))
        wheel = wheel.resolve()
        base = make_venv(tmp, "empty", None)
        core = make_venv(tmp, "core", str(wheel))
        spk = make_venv(tmp, "speaker", f"{wheel}[speaker]")

        say(f"# bench_install: {time.strftime('%Y-%m-%d %H:%M')}, Python {platform.python_version()}, "
            f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start")
        say(f"# wheel: {wheel.name}")
        say()
        say("install                          distributions added   site-packages added   speech packages")
        for label, v in (("pip install gmmext", core), ("pip install 'gmmext[speaker]'", spk)):
            extra = sorted(set(v["dists"]) - set(base["dists"]))
            speech = [d for d in SPEECH if d in v["dists"]]
            say(f"{label:<33}{len(extra):>19}   {(v['bytes'] - base['bytes']) / 1e6:>16.1f} MB   "
                f"{', '.join(speech) or 'none'}")
        say("(added: beyond a fresh venv's own pip and setuptools)")
        say()
        say("core: " + ", ".join(f"{d} {core['dists'][d]}" for d in sorted(set(core["dists"]) - set(base["dists"]))))
        say()

        py = core["venv"] / "bin" / "python"
        cmds = {"python -c pass": [py, "-c", "pass"],
                'python -c "import gmmext"': [py, "-c", "import gmmext"],
                'python -c "import sklearn.mixture"': [py, "-c", "import sklearn.mixture"]}
        for c in cmds.values():                                    # warm the file cache, check they run
            sh(c, cwd=tmp)
        times = {k: [] for k in cmds}
        load0 = os.getloadavg()[0]
        for _ in range(args.runs):
            for k, c in cmds.items():
                t = time.perf_counter()
                subprocess.run([str(x) for x in c], check=True, cwd=tmp, stdout=subprocess.DEVNULL)
                times[k].append(time.perf_counter() - t)
        load1 = os.getloadavg()[0]
        say(f"start-up in the core venv, {args.runs} interleaved runs each (load average {load0:.2f} -> {load1:.2f})")
        say("command                               median      min   beyond 'pass' (median)")
        bare = median_min(times["python -c pass"])[0]
        for k, xs in times.items():
            med, lo = median_min(xs)
            say(f"{k:<36}{med * 1e3:>7.0f} ms {lo * 1e3:>6.0f} ms   {(med - bare) * 1e3:>8.0f} ms")
        g = median_min(times['python -c "import gmmext"'])[0] - bare
        s = median_min(times['python -c "import sklearn.mixture"'])[0] - bare
        say(f"import gmmext / import sklearn.mixture, beyond the bare start: {g / s:.2f}")
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
