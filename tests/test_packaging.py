"""The distribution: a light core, the speaker extra's guard, one version, the sdist, the build's errors.

The wheels themselves (build, auditwheel repair, install without a compiler on every Python) are the
opt-in tests/test_wheels.py and tools/build_wheels.py.
"""
import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:          # Python 3.10: tomli, the same parser ([test] installs it there)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import core_tests  # noqa: E402  (tools/core_tests.py)

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CORE_DISTS = {"numpy", "scipy", "scikit-learn", "threadpoolctl"}
SPEECH_MODULES = ("librosa", "soundfile", "numba", "llvmlite", "kaldiio", "tqdm", "sqlalchemy", "fastapi",
                  "uvicorn", "psycopg", "matplotlib", "av")


def _blocker(modules) -> str:
    """Python source that makes importing any of ``modules`` fail, as if they were not installed."""
    return textwrap.dedent(f"""
        import sys
        class _Absent:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {tuple(modules)!r}:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        sys.meta_path.insert(0, _Absent())
        """)


def test_the_installed_core_requires_only_the_core_dependencies():
    """Requirements without an extra marker, read from the installed metadata (what pip installs)."""
    unconditional = [r for r in importlib.metadata.requires("gmmext") if "extra ==" not in r]
    names = {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in unconditional}
    assert names == CORE_DISTS


def test_gmmext_imports_and_fits_without_the_speech_stack():
    """A fresh interpreter in which every speech, database, plotting or serving module is absent."""
    code = _blocker(SPEECH_MODULES + ("dask", "distributed")) + textwrap.dedent("""
        import numpy as np
        import gmmext
        X = np.random.default_rng(0).normal(size=(500, 3))
        gm = gmmext.GaussianMixture(2, covariance_type="diag", random_state=0, n_threads=2).fit(X)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print(gm.converged_, loaded)
        """).replace("BLOCKED", repr(SPEECH_MODULES))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["True", "[]"]


def test_gmmext_module_level_imports_are_core_dependencies():
    """Every third-party import at module level in gmmext/ is one of the core's distributions (a
    speech or Dask import may only be deferred into the function that needs it)."""
    module_of = {"numpy": "numpy", "scipy": "scipy", "sklearn": "scikit-learn", "threadpoolctl": "threadpoolctl"}
    bad = []
    for path in sorted((ROOT / "gmmext").glob("*.py")):
        for node in ast.parse(path.read_text()).body:          # module level only
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            bad += [f"{path.name}: {t}" for t in tops
                    if t not in sys.stdlib_module_names and t not in module_of and t not in ("gmmext", "__future__")]
    assert not bad
    assert set(module_of.values()) == CORE_DISTS


def _entry(args, missing=("librosa", "soundfile")) -> subprocess.CompletedProcess:
    """The console script's entry point, in a fresh interpreter where the distributions ``missing``
    are not installed (their metadata and modules absent) and no speech module can load."""
    code = _blocker(SPEECH_MODULES) + textwrap.dedent(f"""
        from importlib import metadata
        _real = metadata.distribution
        def _distribution(name):
            if name.lower() in {tuple(m.lower() for m in missing)!r}:
                raise metadata.PackageNotFoundError(name)
            return _real(name)
        metadata.distribution = _distribution
        from speaker._entry import main
        sys.exit(main(sys.argv[1:]))
        """)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def _commands() -> list[str]:
    from speaker.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sorted(sub.choices)


@pytest.mark.long(8)
def test_every_speaker_command_without_the_extra_names_what_to_install():
    commands = _commands()
    assert {"demo", "train-ubm", "serve", "verify"} <= set(commands)
    for args in [[c] for c in commands] + [[], ["--help"], ["demo", "--quiet"]]:
        p = _entry(args)
        assert p.returncode == 1, (args, p.stderr)
        assert p.stdout == "", args
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1, (args, p.stderr)
        assert "gmmext[speaker]" in lines[0] and "librosa, soundfile are not installed" in lines[0], lines[0]


def test_speaker_with_the_extra_runs_and_its_version_needs_no_extra():
    version = importlib.metadata.version("gmmext")
    want = f"speaker (gmmext) {version}"
    p = _entry(["--version"])                       # extra missing: --version still answers
    assert (p.returncode, p.stdout.strip(), p.stderr) == (0, want, "")
    p = subprocess.run([sys.executable, "-m", "speaker", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert (p.returncode, p.stdout.strip()) == (0, want)
    p = _entry(["eval", "--help"], missing=())      # nothing missing: the command line as usual
    assert p.returncode == 0 and "--scores" in p.stdout, p.stderr


def test_one_version_number():
    import gmmext
    assert gmmext.__version__ == importlib.metadata.version("gmmext") == PYPROJECT["project"]["version"]
    assert "version" not in PYPROJECT["project"].get("dynamic", [])
    hard_coded = [p.name for p in (ROOT / "gmmext").glob("*.py")
                  if re.search(r"__version__\s*=\s*['\"]\d+\.\d+", p.read_text())]
    assert not hard_coded


def test_extras():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"speaker", "serve", "postgres", "dask", "plot", "all", "test"} <= set(extras)
    names = {k: {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in v} for k, v in extras.items()}
    assert names["speaker"] == {"librosa", "soundfile", "av", "soxr", "tqdm", "kaldiio", "sqlalchemy"}
    assert "gmmext" in names["serve"] and "fastapi" in names["serve"]   # [serve] pulls [speaker]
    assert "gmmext[all]" in extras["test"][0].replace(" ", "")
    assert "gmmext[speaker,serve,postgres,dask,plot]" == extras["all"][0].replace(" ", "")


def _tree_files(where: Path) -> list[str]:
    """The working tree's files as git sees them (tracked and new, not ignored), else every file."""
    git = shutil.which("git")
    if git and (ROOT / ".git").exists():
        p = subprocess.run([git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=where,
                           capture_output=True, text=True, check=True)
        return [f for f in p.stdout.split("\0") if f and (where / f).is_file()]
    pytest.skip("not a git checkout")


@pytest.mark.long(10)
def test_sdist_carries_what_a_source_build_and_the_demo_need(tmp_path):
    """Built from a copy of the checkout's files (never the untracked generated C or .so)."""
    pytest.importorskip("build")
    src = tmp_path / "tree"
    files = _tree_files(ROOT)
    for f in files:
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, src / f)
    # a generated C file beside its .pyx, as after any build in the tree: it must stay out
    (src / "src" / "_core.c").write_text("/* Generated by Cython */\n")
    p = subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", tmp_path / "dist",
                        src], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    (sdist,) = (tmp_path / "dist").glob("gmmext-*.tar.gz")
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    sources = {f for f in files if f.startswith("src/") and Path(f).suffix in (".pyx", ".pxd", ".pxi", ".h", ".c")}
    assert {"src/_core.pyx", "src/_topc_shared.pxi", "src/gmm_kernels.h"} <= sources
    assert sources <= names, sources - names
    assert "src/_core.c" not in names
    fixtures = {f for f in files if f.startswith("audio_fixtures/")}
    assert len(fixtures) > 300 and fixtures <= names, fixtures - names
    assert {"setup.py", "pyproject.toml", "MANIFEST.in", "LICENSE", "README.md", "tools/core_tests.py"} <= names
    assert not [n for n in names if n.endswith((".so", ".pyd", ".o"))]


# ----------------------------------------------------------------------------- setup.py's messages
def _setup_copy(tmp_path: Path) -> Path:
    """What ``setup.py build_ext`` reads, copied (the build must not touch the checkout)."""
    work = tmp_path / "w"
    for f in ["setup.py", "pyproject.toml", "README.md", "LICENSE", "audio_fixtures/LICENSE"] + \
             [str(p.relative_to(ROOT)) for p in (ROOT / "src").iterdir() if p.suffix in (".pyx", ".pxi", ".h")]:
        (work / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, work / f)
    return work


def _build_ext(work: Path, cc: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CFLAGS", "LDFLAGS", "LDSHARED")}
    return subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--build-temp", "t", "--build-lib", "l"],
                          cwd=work, env=dict(env, CC=cc), capture_output=True, text=True, timeout=300)


def _one_paragraph(p: subprocess.CompletedProcess) -> str:
    assert p.returncode != 0
    assert "Traceback" not in p.stdout + p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    return lines[0]


@pytest.mark.skipif(sys.platform != "linux", reason="setuptools' unix compiler, CC")
def test_setup_without_a_compiler_says_so_and_names_the_wheels(tmp_path):
    msg = _one_paragraph(_build_ext(_setup_copy(tmp_path), "/bin/false"))
    assert "no working C compiler" in msg and "/bin/false" in msg
    assert "--only-binary gmmext" in msg and "gcc" in msg


@pytest.mark.skipif(sys.platform != "linux" or not shutil.which("gcc"), reason="simulated with a gcc wrapper")
def test_setup_without_openmp_names_the_runtime(tmp_path):
    """A compiler that rejects -fopenmp, as clang does without libomp."""
    work = _setup_copy(tmp_path)
    cc = work / "noomp-cc"
    cc.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = -fopenmp ] && '
                  '{ echo "noomp-cc: error: unsupported option \'-fopenmp\'" >&2; exit 1; }; done\nexec gcc "$@"\n')
    cc.chmod(0o755)
    msg = _one_paragraph(_build_ext(work, str(cc)))
    assert "cannot build OpenMP code" in msg and "unsupported option '-fopenmp'" in msg
    assert "libgomp" in msg and "--only-binary gmmext" in msg


# ----------------------------------------------------------------------------- the core test subset
def test_core_subset_takes_only_files_that_need_nothing_beyond_the_core(tmp_path):
    (tmp_path / "test_a.py").write_text("import numpy as np\nfrom gmmext import GaussianMixture\nimport conftest\n")
    (tmp_path / "test_b.py").write_text("import gmmext\ndef test():\n    import soundfile\n")
    (tmp_path / "test_c.py").write_text("import numpy\nimport os\n")                  # no gmmext
    (tmp_path / "test_d.py").write_text("from speaker import llr\nimport gmmext\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "test_e.py").write_text("import hypothesis, sklearn.mixture, threadpoolctl, gmmext\n")
    assert [p.relative_to(tmp_path).as_posix() for p in core_tests.core_test_files(tmp_path)] == \
        ["sub/test_e.py", "test_a.py"]
    real = {p.name for p in core_tests.core_test_files()}
    assert {"test_gmm_core.py", "test_core_threads.py", "test_gaussian_mixture_sklearn.py"} <= real
    assert "test_cli.py" not in real and "test_concurrency.py" not in real      # they import speaker
