"""Shared test helpers: synthetic data, reference formulas, and the `speaker` command line run in
this process (:func:`speaker_cli`) or as its own process (:func:`speaker_process`)."""
import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

# The front-end's tables cache (speaker._tables) of this test run: never the user's own folder.
if "SPEAKER_CACHE_DIR" not in os.environ:
    import atexit
    import tempfile
    os.environ["SPEAKER_CACHE_DIR"] = tempfile.mkdtemp(prefix="speaker-tables-")
    atexit.register(shutil.rmtree, os.environ["SPEAKER_CACHE_DIR"], True)


def make_blobs(n=1500, d=4, k=3, seed=0, dtype=np.float64):
    """Well-separated diagonal Gaussian blobs of unequal spread."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=6.0, size=(k, d))
    scales = rng.uniform(0.5, 2.0, size=(k, d))
    lab = rng.integers(0, k, size=n)
    X = centres[lab] + rng.standard_normal((n, d)) * scales[lab]
    return X.astype(dtype)


def random_params(k, d, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(k))
    mu = rng.normal(scale=3.0, size=(k, d))
    var = rng.uniform(0.3, 3.0, size=(k, d))
    return w, mu, var


def reference_logprob(X, w, mu, var):
    """(N, K) log w_k + sum_d log N(x_d; mu_kd, var_kd), straight from scipy.stats."""
    from scipy.stats import norm
    X = np.asarray(X, dtype=np.float64)
    return np.log(w)[None, :] + norm.logpdf(X[:, None, :], mu[None], np.sqrt(var)[None]).sum(-1)


@pytest.fixture
def blobs():
    return make_blobs()


# ----------------------------------------------------------------------------- the command line
FIX = Path(__file__).resolve().parent.parent / "audio_fixtures"


@dataclass
class CliResult:
    """What one `speaker` command returned and printed (like ``subprocess.CompletedProcess``)."""
    returncode: int
    stdout: str
    stderr: str


def _check(res, check):
    if check is not None:
        assert res.returncode == check, f"exit {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    return res


def speaker_cli(*args, check: int | None = None) -> CliResult:
    """Run ``speaker ARGS...`` in this process: ``speaker.cli.main`` with stdout/stderr captured.

    Starting a fresh interpreter costs seconds per command (numpy, scipy, scikit-learn, librosa
    imports, and numba's first calls), so every test that is about what a command does, not about
    the process that runs it, comes here; :func:`speaker_process` is for the others (signals, the
    installed console script's exit status). ``SystemExit`` (argparse's usage errors and
    ``--help``) becomes the exit code, as it would in the console script, and the SIGINT handler
    that ``main`` installs is put back afterwards. Works in fixtures of any scope (``capsys`` is
    function-scoped), and the stderr it captures is not a terminal, as in the subprocess.
    """
    from speaker.cli import main
    out, err = io.StringIO(), io.StringIO()
    handler = signal.getsignal(signal.SIGINT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("ignore")          # as PYTHONWARNINGS=ignore for the subprocess
            try:
                rc = main([str(a) for a in args])
            except SystemExit as exc:
                if exc.code is None or isinstance(exc.code, int):
                    rc = exc.code or 0
                else:                                # sys.exit("message"): printed, exit 1
                    print(exc.code, file=sys.stderr)
                    rc = 1
    finally:
        signal.signal(signal.SIGINT, handler)
    return _check(CliResult(rc, out.getvalue(), err.getvalue()), check)


def speaker_command() -> list[str]:
    """The installed console script (or ``python -m speaker`` when it is not on PATH)."""
    exe = shutil.which("speaker")
    return [exe] if exe else [sys.executable, "-m", "speaker"]


def speaker_process(*args, check: int | None = None, timeout: float = 300) -> CliResult:
    """Run ``speaker ARGS...`` as its own process (for tests about the process itself)."""
    p = subprocess.run(speaker_command() + [str(a) for a in args], capture_output=True, text=True,
                       timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return _check(CliResult(p.returncode, p.stdout, p.stderr), check)


CLI_SPEAKERS = ["george", "jackson", "lucas"]


def small_recipe(d):
    """Copies of 36 fixtures in ``d`` and lists relative to it (``ubm.lst``: 12 files, ``enroll.txt``:
    3 speakers x 4 files, ``trials.txt``: 18 labelled trials), a 4-component UBM and the models,
    made by the command line in this process; returns ``d``."""
    from speaker import cli
    for s in CLI_SPEAKERS:
        for dg in range(4):
            for i in range(3):
                shutil.copy(FIX / f"{dg}_{s}_{i}.wav", d / f"{dg}_{s}_{i}.wav")
    (d / "ubm.lst").write_text("".join(f"{dg}_{s}_0.wav\n" for s in CLI_SPEAKERS for dg in range(4)))
    (d / "enroll.txt").write_text("".join(f"{s} " + " ".join(f"{dg}_{s}_1.wav" for dg in range(4)) + "\n"
                                          for s in CLI_SPEAKERS))
    (d / "trials.txt").write_text("".join(f"{m} {dg}_{s}_2.wav {'target' if m == s else 'nontarget'}\n"
                                          for s in CLI_SPEAKERS for dg in range(2) for m in CLI_SPEAKERS))
    assert cli.main(["train-ubm", "--list", str(d / "ubm.lst"), "--out", str(d / "ubm.npz"), "--components", "4",
                     "--sample-rate", "8000", "--iters", "2", "--quiet"]) == 0
    assert cli.main(["enroll", "--ubm", str(d / "ubm.npz"), "--enroll", str(d / "enroll.txt"),
                     "--out", str(d / "models.npz"), "--quiet"]) == 0
    return d


@pytest.fixture(scope="session")
def cli_lists(tmp_path_factory):
    """Small lists over three speakers; paths relative to the fixtures folder (``--root``)."""
    d = tmp_path_factory.mktemp("lists")
    spk = CLI_SPEAKERS
    (d / "ubm.lst").write_text("".join(f"{dg}_{s}_2.wav\n" for s in spk for dg in range(10)))
    (d / "enroll.txt").write_text("".join(
        f"{s} " + " ".join(f"{dg}_{s}_{i}.wav" for dg in range(10) for i in (0, 1)) + "\n" for s in spk))
    (d / "trials.txt").write_text("".join(
        f"{m} {dg}_{s}_3.wav {'target' if m == s else 'nontarget'}\n"
        for s in spk for dg in range(10) for m in spk))
    (d / "vox.txt").write_text("".join(
        f"{int(s == o)} {dg}_{s}_0.wav {dg}_{o}_4.wav\n" for s in spk for o in spk for dg in (1, 5)))
    (d / "wav.scp").write_text("".join(f"utt_{s}_{dg} {FIX / f'{dg}_{s}_2.wav'}\n" for s in spk for dg in range(10)))
    return d


@pytest.fixture(scope="session")
def cli_trained(cli_lists, tmp_path_factory):
    """A small UBM (8 components) and the three speakers' models, made once per test run by the
    command line itself. Tests must not write into this folder (copy what they change)."""
    out = tmp_path_factory.mktemp("models")
    speaker_cli("train-ubm", "--list", cli_lists / "ubm.lst", "--root", FIX, "--out", out / "ubm.npz",
                "--components", 8, "--sample-rate", 8000, "--iters", 5, "--quiet", check=0)
    speaker_cli("enroll", "--ubm", out / "ubm.npz", "--enroll", cli_lists / "enroll.txt", "--root", FIX,
                "--out", out / "models.npz", "--quiet", check=0)
    return out


@pytest.fixture(scope="session")
def dask_cluster():
    """One dask.distributed LocalCluster (2 worker processes, loopback, no dashboard) for the whole
    test run: starting one costs seconds. Tests connect their own ``Client`` to it; the tests that
    use it share the xdist group "dask", so that they run on one xdist worker and share it too."""
    import logging
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1", silence_logs=logging.ERROR) as cluster:
        yield cluster


def pytest_collection_modifyitems(config, items):
    """Tests marked ``long(SECONDS)`` first, longest first (SECONDS: its duration on a quiet
    machine, only used for this order; the rest keep their order): with two xdist workers, a
    half-minute test that starts last would leave one worker idle for that long at the end. Only
    tests without module-scoped fixtures carry the mark, so that moving them sets nothing up twice."""
    def seconds(item):
        mark = item.get_closest_marker("long")
        return -(mark.args[0] if mark and mark.args else 0)
    items.sort(key=seconds)


# --- the two fixtures of scikit-learn's own conftest that tests/sklearn_mixture uses, with its defaults:
# global_dtype is float64, plus float32 when SKLEARN_RUN_FLOAT32_TESTS=1 (scikit-learn's rule; it doubles
# that suite's time, and gmmext's float32 path is checked in tests/test_gmm_covtypes.py);
# global_random_seed is scikit-learn's default, 42.
import os as _os  # noqa: E402

_SK_DTYPES = [np.float64] + ([np.float32] if _os.environ.get("SKLEARN_RUN_FLOAT32_TESTS") == "1" else [])


@pytest.fixture(params=_SK_DTYPES, ids=[np.dtype(d).name for d in _SK_DTYPES])
def global_dtype(request):
    return request.param


@pytest.fixture(params=[42])
def global_random_seed(request):
    return request.param


# ----------------------------------------------------------------------------- PostgreSQL
PG_PROGRAMS = ("initdb", "pg_ctl", "postgres")


def postgres_bin() -> str | None:
    """The folder of PostgreSQL's server programs: PATH first, then Debian's
    ``/usr/lib/postgresql/VERSION/bin`` (newest first); None when there are none."""
    import glob
    import re
    found = shutil.which("initdb")
    dirs = [os.path.dirname(os.path.realpath(found))] if found else []
    version = lambda d: [int(x) for x in re.findall(r"\d+", d)]  # noqa: E731
    dirs += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    for d in dirs:
        if all(os.access(os.path.join(d, p), os.X_OK) for p in PG_PROGRAMS):
            return d
    return None


def apt_install(packages: list[str], present) -> None:
    """On CI only (``CI`` set, root, Debian): ``apt-get install PACKAGES`` unless ``present()``,
    so that the README's one test command is all a clean machine needs. Under a file lock: the two
    xdist workers ask at once, and the second finds the programs installed."""
    import fcntl
    if not os.environ.get("CI") or os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    with open(f"/tmp/gmmext-apt-{'-'.join(packages)}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not present():
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(["apt-get", "update", "-q"], env=env, check=False, stdout=subprocess.DEVNULL)
            subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], env=env,
                           check=False, stdout=subprocess.DEVNULL)


def _install_postgres() -> None:
    """``apt-get install postgresql`` on CI when no server programs exist (:func:`apt_install`)."""
    apt_install(["postgresql"], lambda: postgres_bin() is not None)


@dataclass
class PostgresServer:
    """A PostgreSQL server of this test session, on a Unix socket in ``socket_dir`` (no TCP)."""
    socket_dir: str
    _n: int = 0

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@/{dbname}?host={self.socket_dir}"

    def new_database(self) -> str:
        """The URL of a new, empty database (one per test: tests do not see each other's stores)."""
        import psycopg
        self._n += 1
        name = f"t{os.getpid()}_{self._n}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the session: ``initdb`` into a temporary folder and
    ``pg_ctl start`` listening on a Unix socket there, as ``nobody`` when we are root (PostgreSQL
    refuses to run as root); stopped and removed at the end. Without the server programs the tests
    that need it are skipped, except on CI (``CI`` set), where they are installed
    (:func:`_install_postgres`) or the tests fail."""
    import tempfile
    if not os.environ.get("CI"):
        pytest.importorskip("psycopg")
    bindir = postgres_bin()
    if bindir is None and os.environ.get("CI"):
        _install_postgres()
        bindir = postgres_bin()
    if bindir is None:
        msg = "PostgreSQL server programs (initdb, pg_ctl, postgres) not found on PATH or in /usr/lib/postgresql/*/bin"
        if os.environ.get("CI"):
            pytest.fail(msg + " (CI: apt-get install postgresql did not provide them)")
        pytest.skip(msg)
    base = tempfile.mkdtemp(prefix="gmmext-pg-")
    user = {}
    if os.geteuid() == 0:
        import pwd
        pw = pwd.getpwnam("nobody")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        user = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
    data = os.path.join(base, "data")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}

    def run(*cmd):
        p = subprocess.run([os.path.join(bindir, cmd[0]), *cmd[1:]], cwd=base, env=env, capture_output=True,
                           text=True, timeout=120, **user)
        assert p.returncode == 0, f"{' '.join(cmd)}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    try:
        run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
        run("pg_ctl", "-D", data, "-l", os.path.join(base, "log"), "-w", "-t", "60", "-o",
            f"-k {base} -c listen_addresses='' -c max_connections=300 -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off",
            "start")
        yield PostgresServer(base)
    finally:
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            subprocess.run([os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"],
                           cwd=base, env=env, capture_output=True, timeout=60, **user)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_at(request, tmp_path):
    """Where a test's speaker stores live, on both backends: ``store_at(name)`` is a new SQLite
    file ``tmp_path / name`` or the URL of a new PostgreSQL database (``request.param``)."""
    if request.param == "sqlite":
        return lambda name="s.db": tmp_path / name
    server = request.getfixturevalue("postgres_server")
    urls: dict = {}

    def at(name="s.db"):
        if name not in urls:
            urls[name] = server.new_database()
        return urls[name]
    return at
