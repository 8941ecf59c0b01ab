"""Opt-in stress of Ctrl-C / SIGTERM handling in the ``speaker`` console script (never a test: minutes).

Prepares a small recipe from ``audio_fixtures/`` in a temporary folder (12-file UBM list, 3
speakers, a UBM, models, scores, an i-vector extractor, PLDA, a calibration, a store of 2
speakers, ...). Then, for each command, many runs: each copies that folder, puts distinctive bytes
in the command's earlier outputs (so that no run can reproduce them), starts the command with
``--overwrite``, and sends SIGINT (3 in 4) or SIGTERM after a delay drawn uniformly over
[0, 1.15 x the command's clean run time], to the process or its whole group (a terminal's Ctrl-C),
with no / a fresh / a warm feature cache, cold or warm front-end tables, ``--jobs`` 1 or 2, and
with ``--twice P`` a share P of runs get a second signal 0-0.3 s after the first. Every run must
show one of:

* exit 130 (SIGINT) / 143 (SIGTERM), stderr only ``speaker ...`` lines ending with the command's
  "interrupted" / "terminated (SIGTERM)" line (or the entry point's "interrupted while starting"),
  every earlier output byte for byte as before, the store's content as before;
* exit 0 (3 for verify / identify "undecided") because it finished first: every output written;

and never a traceback, a ``.NAME.*.tmp`` / ``.speaker-*`` left, or a store that does not open.
A signal in Python's own start-up (the first ~20 ms, before this package runs) is counted apart.

    python tools/stress_interrupts.py --runs 25 --twice 0.15          # 600 runs: ~15 min on 2 cores
    python tools/stress_interrupts.py --runs 5 --only score,enroll-store

Exit status 1 if any run failed; failing runs' folders are kept (their paths are printed).
docs/reliability.md section 4 has what it found.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIX = Path(__file__).resolve().parent.parent / "audio_fixtures"
SPEAKERS = ("george", "jackson", "lucas")
OW = "--overwrite"
#: name -> (argv, the outputs it replaces, uses the store)
COMMANDS = {
    "train-ubm": (["train-ubm", "--list", "ubm.lst", "--out", "ubm.npz", "--components", "8", "--sample-rate", "8000",
                   "--iters", "5", OW], ["ubm.npz"], False),
    "train-ubm --stream": (["train-ubm", "--list", "ubm.lst", "--out", "ubm.npz", "--components", "8",
                            "--sample-rate", "8000", "--iters", "5", "--stream", OW], ["ubm.npz"], False),
    "enroll": (["enroll", "--ubm", "ubm.npz", "--enroll", "enroll.txt", "--out", "models.npz", OW], ["models.npz"],
               False),
    "score": (["score", "--ubm", "ubm.npz", "--models", "models.npz", "--trials", "trials.txt", "--out", "scores.txt",
               OW], ["scores.txt"], False),
    "extract": (["extract", "--list", "test.lst", "--out", "feats", OW], ["feats"], False),
    "extract --ark": (["extract", "--list", "test.lst", "--ark", "f.ark", OW], ["f.ark", "f.scp"], False),
    "train-ivector": (["train-ivector", "--ubm", "ubm.npz", "--list", "ubm.lst", "--out", "tv.npz", "--rank", "4",
                       "--iters", "2", OW], ["tv.npz"], False),
    "extract-ivectors": (["extract-ivectors", "--ubm", "ubm.npz", "--ivector", "tv.npz", "--list", "test.lst",
                          "--out", "iv.npz", OW], ["iv.npz"], False),
    "train-plda": (["train-plda", "--ubm", "ubm.npz", "--ivector", "tv.npz", "--enroll", "enroll.txt", "--out",
                    "plda.npz", OW], ["plda.npz"], False),
    "enroll --store": (["enroll", "--ubm", "ubm.npz", "--enroll", "enroll_new.txt", "--store", "s.db",
                        "--min-speech", "0.1", "--min-speaker-speech", "0.5"], [], True),
    "verify": (["verify", "--store", "s.db", "--speaker", "george", "--threshold", "0", "--min-test-speech", "0.1",
                "t_0_george.wav", "t_1_lucas.wav"], [], True),
    "identify": (["identify", "--store", "s.db", "--threshold", "0", "--min-test-speech", "0.1", "t_0_george.wav",
                  "t_1_lucas.wav"], [], True),
    "speakers": (["speakers", "--store", "s.db"], [], True),
    "speakers --remove": (["speakers", "--store", "s.db", "--remove", "jackson"], [], True),
    "calibrate": (["calibrate", "--scores", "scores.txt", "--trials", "trials.txt", "--out", "cal.json", OW],
                  ["cal.json"], False),
    "calibrate --store": (["calibrate", "--store", "s.db", "--trials", "trials2.txt", "--backend", "gmm"], [], True),
    "eval": (["eval", "--scores", "scores.txt", "--trials", "trials.txt", "--det", "det.png", OW], ["det.png"],
             False),
    "demo": (["demo", "--out", "demo", "--components", "8", OW], ["demo"], False),
    "fuse": (["fuse", "--scores", "scores.txt", "scores.txt", "--trials", "trials.txt", "--out", "fusion.json", OW],
             ["fusion.json"], False),
    "export": (["export", "--store", "s.db", "--out", "exported.npz", OW], ["exported.npz"], True),
    "import": (["import", "--store", "s.db", "--models", "models.npz", "--replace"], [], True),
    "cohort --add": (["cohort", "--store", "s.db", "--add", "test.lst"], [], True),
    "backend": (["backend", "--store", "s.db", "--ivector", "tv.npz", "--plda", "plda.npz"], [], True),
    "store-info": (["store-info", "--store", "s.db"], [], True),
}
NO_CACHE = ("eval", "calibrate", "speakers", "fuse", "export", "import", "backend", "store-info")   # no --cache / --jobs


def speaker() -> list[str]:
    exe = shutil.which("speaker")
    return [exe] if exe else [sys.executable, "-m", "speaker"]


def run_ok(args, cwd, env) -> None:
    p = subprocess.run(speaker() + args, cwd=cwd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"setup failed: speaker {' '.join(args)}: exit {p.returncode}\n{p.stderr}")


def setup(top: Path) -> dict:
    """The recipe every run copies (``top/base``), warm caches (``top/warm-*``)."""
    base = top / "base"
    base.mkdir()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "SPEAKER_CACHE_DIR": str(top / "warm-tables")}
    enroll, trials, ubm, test = [], [], [], []
    for s in SPEAKERS:
        for dg in range(4):
            (base / f"u_{dg}_{s}.wav").symlink_to(FIX / f"{dg}_{s}_0.wav")
            ubm.append(f"u_{dg}_{s}.wav")
            (base / f"e_{dg}_{s}.wav").symlink_to(FIX / f"{dg}_{s}_1.wav")
        enroll.append(f"{s} " + " ".join(f"e_{dg}_{s}.wav" for dg in range(4)))
        for dg in range(2):
            (base / f"t_{dg}_{s}.wav").symlink_to(FIX / f"{dg}_{s}_2.wav")
            test.append(f"t_{dg}_{s}.wav")
            trials += [f"{m} t_{dg}_{s}.wav {'target' if m == s else 'nontarget'}" for m in SPEAKERS]
    for name, lines in (("ubm.lst", ubm), ("enroll.txt", enroll), ("trials.txt", trials), ("test.lst", test),
                        ("enroll2.txt", enroll[:2]), ("enroll_new.txt", enroll[2:]),
                        ("trials2.txt", [t for t in trials if not t.startswith(SPEAKERS[2])])):
        (base / name).write_text("\n".join(lines) + "\n")
    for args in (["train-ubm", "--list", "ubm.lst", "--out", "ubm.npz", "--components", "8", "--sample-rate", "8000",
                  "--iters", "5"],
                 ["enroll", "--ubm", "ubm.npz", "--enroll", "enroll.txt", "--out", "models.npz"],
                 ["score", "--ubm", "ubm.npz", "--models", "models.npz", "--trials", "trials.txt", "--out",
                  "scores.txt"],
                 ["extract", "--list", "test.lst", "--out", "feats"],
                 ["extract", "--list", "test.lst", "--ark", "f.ark"],
                 ["train-ivector", "--ubm", "ubm.npz", "--list", "ubm.lst", "--out", "tv.npz", "--rank", "4",
                  "--iters", "2"],
                 ["extract-ivectors", "--ubm", "ubm.npz", "--ivector", "tv.npz", "--list", "test.lst", "--out",
                  "iv.npz"],
                 ["train-plda", "--ubm", "ubm.npz", "--ivector", "tv.npz", "--enroll", "enroll.txt", "--out",
                  "plda.npz"],
                 ["calibrate", "--scores", "scores.txt", "--trials", "trials.txt", "--out", "cal.json"],
                 ["eval", "--scores", "scores.txt", "--trials", "trials.txt", "--det", "det.png"],
                 ["enroll", "--ubm", "ubm.npz", "--enroll", "enroll2.txt", "--store", "s.db", "--min-speech", "0.1",
                  "--min-speaker-speech", "0.5"],
                 ["export", "--store", "s.db", "--out", "exported.npz"],
                 ["fuse", "--scores", "scores.txt", "scores.txt", "--trials", "trials.txt", "--out", "fusion.json"],
                 ["demo", "--out", "demo", "--components", "8"]):
        run_ok(args + ["--quiet"] * (args[0] != "eval"), base, env)
    for lst in ("ubm.lst", "test.lst", "enroll.txt"):                  # the warm feature cache
        cmd = (["enroll", "--ubm", "ubm.npz", "--enroll", lst, "--out", str(top / "m.npz"), OW] if lst == "enroll.txt"
               else ["extract", "--list", lst, "--out", str(top / "x"), OW])
        run_ok(cmd + ["--cache", str(top / "warm-cache"), "--quiet"], base, env)
    return env


def digest(path: Path) -> str | None:
    """Hash of a file, or of a folder's files and names (a train-ubm checkpoint aside); None if absent."""
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    if path.is_dir():
        h = hashlib.sha256()
        for p in sorted(path.rglob("*")):
            if p.is_file() and not p.name.endswith(".ckpt.npz"):
                h.update(str(p.relative_to(path)).encode() + b"\0" + p.read_bytes())
        return h.hexdigest()
    return None


def store_state(db: Path) -> str:
    """Hash of the store's whole content (SQLite's dump), or why it does not open."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            if con.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                return "integrity_check failed"
            return hashlib.sha256("\n".join(con.iterdump()).encode()).hexdigest()
        finally:
            con.close()
    except sqlite3.Error as exc:
        return f"sqlite: {exc}"


def store_speakers(db: Path, env) -> list[str] | str:
    p = subprocess.run(speaker() + ["speakers", "--store", str(db), "--json"], capture_output=True, text=True,
                       env=env)
    if p.returncode != 0:
        return f"speakers exit {p.returncode}: {p.stderr.strip()}"
    rows = json.loads(p.stdout)
    rows = rows if isinstance(rows, list) else rows.get("speakers", [])
    return sorted(str(r.get("speaker")) if isinstance(r, dict) else str(r) for r in rows)


def leftovers(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob(".*")
                  if p.name.endswith(".tmp") or ".previous" in p.name or p.name.startswith(".speaker-"))


def one_run(top: Path, env0: dict, name: str, delay: float | None, sig: int, cache: str, tables: str, jobs: int,
            group: bool, second: float | None) -> dict:
    argv, outputs, store = COMMANDS[name]
    d = Path(tempfile.mkdtemp(prefix=name.replace(" ", "").replace("--", "_") + "-", dir=top / "runs"))
    shutil.rmtree(d)
    shutil.copytree(top / "base", d, symlinks=True)
    env = {**env0, "SPEAKER_CACHE_DIR": str(d / "tables")}
    if tables == "warm":
        shutil.copytree(top / "warm-tables", d / "tables")
    if cache == "warm":
        shutil.copytree(top / "warm-cache", d / "cache")
    for o in outputs:                           # earlier outputs that no run reproduces byte for byte
        for f in [d / o] if (d / o).is_file() else sorted((d / o).rglob("*")):
            if f.is_file():
                f.write_bytes(b"earlier " + f.name.encode())
    argv = list(argv)
    if argv[0] not in NO_CACHE:
        argv += ["--cache", "cache"] * (cache != "none") + ["--jobs", "2"] * (jobs > 1)
    before = {o: digest(d / o) for o in outputs}
    state = store_state(d / "s.db") if store else None
    spk = store_speakers(d / "s.db", env) if store else None
    t0 = time.monotonic()
    p = subprocess.Popen(speaker() + argv, cwd=d, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    sent = False
    if delay is not None:                      # wake when the process ends (pidfd); never signal one that ended
        fd = os.pidfd_open(p.pid)
        try:
            if not select.select([fd], [], [], delay)[0] and \
                    os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                signal.pidfd_send_signal(fd, sig)
                if group:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(p.pid, sig)
                sent = True
                if second is not None and not select.select([fd], [], [], second)[0]:
                    signal.pidfd_send_signal(fd, sig)
        finally:
            os.close(fd)
    try:
        out, err = p.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        return {"name": name, "outcome": "hung", "problems": ["hung: killed after 300 s"], "dir": str(d), "err": err}
    elapsed = time.monotonic() - t0
    rc, problems = p.returncode, []
    lines = err.strip().splitlines()
    want = 143 if sig == signal.SIGTERM else 130
    word = "terminated" if sig == signal.SIGTERM else "interrupted"
    finished = rc in (0, 3)
    if "Traceback" in err and lines[-1] == "KeyboardInterrupt" and "in _handler" not in err:
        outcome = "signal in Python's own start-up"        # Python's default handler: before speaker._entry
    elif rc == -sig and not err and not out and delay is not None and delay < 0.1:
        outcome = "signal in Python's own start-up"
    elif finished:
        outcome = "finished" if not sent else "finished (signal at the end)"
        problems += [f"exit {rc} but {o} is the earlier one" for o in outputs if digest(d / o) == before[o]]
    elif rc == want and lines == ["speaker: interrupted while starting; nothing was written"]:
        outcome = "stopped while starting"
    elif rc == want:
        outcome = word
        # demo's steps are commands of their own: the interrupted step's line names it
        if not (lines and re.match(rf"speaker {argv[0] if argv[0] != 'demo' else '[a-z-]+'}: {word}", lines[-1])):
            problems.append("last stderr line is not the command's interrupt line")
        elif argv[0] != "demo" and not all(x.startswith("speaker ") for x in lines):   # demo reports its steps
            problems.append("stderr has other lines than the command's")
        elif any("--resume" in x for x in lines):
            outcome += " (+ a resume hint)"
    else:
        outcome = f"exit {rc}"
        problems.append(f"exit {rc}")
    if "Traceback" in err and not outcome.startswith("signal in Python"):
        problems.append("Traceback in stderr")
    if not finished:
        problems += [f"{o} changed" for o in outputs if digest(d / o) != before[o]]
    problems += [f"left: {x}" for x in leftovers(d)[:3]]
    if store:
        now = store_state(d / "s.db")
        if len(now) != 64:
            problems.append(f"store: {now}")
        elif not finished and now != state:
            problems.append("store content changed")
        after = store_speakers(d / "s.db", env)
        if isinstance(after, str) or (not finished and after != spk):
            problems.append(f"speakers: {spk} -> {after}")
    res = {"name": name, "delay": round(delay, 4) if delay is not None else None, "sig": signal.Signals(sig).name,
           "cache": cache, "tables": tables, "jobs": jobs, "group": group, "second": second, "rc": rc,
           "elapsed": round(elapsed, 3), "outcome": outcome, "problems": problems, "err": err[-2000:], "dir": str(d)}
    if not problems:
        shutil.rmtree(d, ignore_errors=True)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="runs per command (default 20)")
    ap.add_argument("--only", default="", help="comma-separated command names (default: all): "
                                              + ", ".join(COMMANDS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--twice", type=float, default=0.0, help="share of runs that get a second signal 0-0.3 s later")
    ap.add_argument("--log", help="append every run's record (JSON lines) to this file")
    a = ap.parse_args()
    names = [n for n in COMMANDS if not a.only or n in a.only.split(",")]
    top = Path(tempfile.mkdtemp(prefix="speaker-stress-"))
    (top / "runs").mkdir()
    print(f"working in {top}; load average {os.getloadavg()[0]:.2f}", flush=True)
    env = setup(top)
    span = {}
    for n in names:                             # the longest variant: cold tables, fresh cache
        r = one_run(top, env, n, None, signal.SIGINT, "fresh", "cold", 1, False, None)
        span[n] = r["elapsed"]
        print(f"{n}: clean run exit {r['rc']} in {r['elapsed']:.2f} s {r['problems'] or ''}", flush=True)
    rng = random.Random(a.seed)
    plan = []
    for n in names:
        for _ in range(a.runs):
            plan.append((n, rng.uniform(0, 1.15 * span[n]), signal.SIGTERM if rng.random() < 0.25 else signal.SIGINT,
                         rng.choice(["none", "fresh", "warm"]), rng.choice(["cold", "warm"]),
                         2 if rng.random() < 0.2 else 1, rng.random() < 0.5,
                         rng.uniform(0, 0.3) if rng.random() < a.twice else None))
    rng.shuffle(plan)
    counts: dict = {}
    failed = 0
    log = open(a.log, "a") if a.log else None
    for i, t in enumerate(plan):
        r = one_run(top, env, *t)
        if log:
            log.write(json.dumps(r) + "\n")
            log.flush()
        counts.setdefault(r["name"], {}).setdefault(r["outcome"], 0)
        counts[r["name"]][r["outcome"]] += 1
        if r["problems"]:
            failed += 1
            print(f"FAIL {r['name']} delay={r['delay']} {r['sig']} second={r['second']} cache={r['cache']} "
                  f"jobs={r['jobs']} group={r['group']} exit {r['rc']}: {r['problems']}\n  "
                  + r["err"].strip().replace("\n", "\n  ")[-1200:] + f"\n  kept in {r['dir']}", flush=True)
        if (i + 1) % 50 == 0:
            print(f"... {i + 1}/{len(plan)} runs, {failed} failed; load average {os.getloadavg()[0]:.2f}", flush=True)
    print("\noutcomes per command (clean run time; runs by outcome):")
    for n in names:
        print(f"  {n:20s} {span[n]:5.2f} s  " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.get(n, {}).items())))
    print(f"{len(plan)} runs, {failed} failed; load average {os.getloadavg()[0]:.2f}")
    if not failed:
        shutil.rmtree(top, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
