"""SIGINT and SIGKILL in the middle of a job leave earlier outputs intact, and no partial file
under the final name."""
import json
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import FIX, speaker_cli, speaker_command
from speaker.model_io import load_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory, cli_trained):
    """Many audio paths (links to the fixtures) so that every job runs for several seconds,
    plus a finished UBM, models and scores to protect (copies of the test run's small UBM and
    models, conftest.cli_trained: their speakers include the two scored here)."""
    d = tmp_path_factory.mktemp("interrupt")
    wavs = sorted(FIX.glob("*.wav"))
    names = []
    for copy in range(4):
        for w in wavs:
            link = d / f"c{copy}_{w.name}"
            link.symlink_to(w)
            names.append(link.name)
    (d / "ubm.lst").write_text("\n".join(names) + "\n")
    spk = sorted({n.split("_")[2] for n in names})
    (d / "enroll.txt").write_text("".join(f"{s} " + " ".join(n for n in names if n.split("_")[2] == s) + "\n"
                                          for s in spk))
    (d / "trials.txt").write_text("".join(f"{s} {n}\n" for n in names for s in spk[:2]))
    for name in ("ubm.npz", "models.npz"):
        shutil.copy(cli_trained / name, d / name)
    assert set(spk[:2]) <= set(load_model(d / "models.npz", ubm=load_model(d / "ubm.npz").ubm).speakers)
    (d / "scores.txt").write_text("earlier scores\n")
    return d


JOBS = {
    "train-ubm": lambda d: ["train-ubm", "--list", d / "ubm.lst", "--out", d / "ubm.npz", "--components", 64,
                            "--sample-rate", 8000, "--iters", 10000, "--overwrite"],
    "enroll": lambda d: ["enroll", "--ubm", d / "ubm.npz", "--enroll", d / "enroll.txt", "--out", d / "models.npz",
                         "--overwrite"],
    "score": lambda d: ["score", "--ubm", d / "ubm.npz", "--models", d / "models.npz", "--trials",
                        d / "trials.txt", "--out", d / "scores.txt", "--overwrite"],
}
OUTPUT = {"train-ubm": "ubm.npz", "enroll": "models.npz", "score": "scores.txt"}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
@pytest.mark.parametrize("job", list(JOBS))
def test_interrupted_job_keeps_earlier_output(setup, job, sig):
    d = setup
    target = d / OUTPUT[job]
    before = target.read_bytes()
    cache = d / f"cache-{job}-{int(sig)}"           # fresh: every run extracts for a few seconds
    p = subprocess.Popen(speaker_command() + [str(a) for a in JOBS[job](d)] + ["--cache", str(cache)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # signal once the job is under way (first features cached), not while Python still imports
    deadline = time.monotonic() + 120
    while not any(cache.rglob("*.npy")) and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert p.poll() is None, "the job finished before it could be interrupted; make it longer"
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert p.returncode == 130, err
        assert "Traceback" not in err and "interrupted" in err
    else:
        assert p.returncode == -signal.SIGKILL
    assert target.read_bytes() == before
    leftovers = [x.name for x in d.iterdir() if x.name.startswith(".") and x.name.endswith(".tmp")]
    if sig == signal.SIGINT:
        assert leftovers == []            # a clean stop removes its temporary files
    for x in leftovers:                   # after SIGKILL a temporary file may remain, never the target
        (d / x).unlink()


def test_interrupt_during_the_write_itself(tmp_path, monkeypatch):
    """An exception raised half-way through writing a model file leaves the old file as it was."""
    import speaker.model_io as mio
    from gmmext import GaussianMixture
    ubm = GaussianMixture.from_parameters(np.ones(2) / 2, np.zeros((2, 3)), np.ones((2, 3)))
    mio.save_model(tmp_path / "ubm.npz", ubm)
    before = (tmp_path / "ubm.npz").read_bytes()

    def half_then_interrupt(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(mio.np, "savez", half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        mio.save_model(tmp_path / "ubm.npz", ubm)
    assert (tmp_path / "ubm.npz").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ubm.npz"]


def test_ctrl_c_that_numpy_turns_into_another_error_is_still_an_interrupt(tmp_path):
    """numpy's ``ndarray.tofile`` (under ``np.save``) replaces an exception raised in its
    ``os.PathLike`` check with a TypeError; a Ctrl-C delivered just then must still stop the
    command as an interrupt (exit 130), not as a failed job (exit 1). The CI run of 2026-12-07
    printed "speaker score: error: TypeError: expected str, bytes or os.PathLike object, not
    BufferedWriter" after a SIGINT."""
    script = f"""
import os, signal, sys
import numpy as np
from speaker import cli
from speaker.cli import evaluate

def run(args):
    def hook(cls, subclass):         # Ctrl-C arrives while numpy asks whether its file is a path
        os.kill(os.getpid(), signal.SIGINT)
        return NotImplemented
    os.PathLike.__subclasshook__ = classmethod(hook)
    os.PathLike._abc_caches_clear()
    with open({str(tmp_path / "x.npy")!r}, "wb") as f:
        np.save(f, np.zeros(3))
    return 0

evaluate.run = run
sys.exit(cli.main(["eval", "--scores", "s.txt", "--trials", "t.txt"]))
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 130, p.stderr
    assert "interrupted" in p.stderr and "TypeError" not in p.stderr and "Traceback" not in p.stderr


# --- found by an adversarial stress (SIGINT / SIGTERM at a uniform random instant of every command's
# run, docs/reliability.md section 4); each test delivers the signal at the exact spot, in a subprocess
def _python(script: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=cwd)


def _interrupted_in_one_line(p: subprocess.CompletedProcess, command: str = "eval") -> None:
    """``p`` stopped as an interrupt: exit 130 and the command's one line on stderr, nothing else."""
    assert p.returncode == 130, p.stderr
    assert p.stderr.strip().splitlines() == [f"speaker {command}: interrupted; earlier outputs are intact"], p.stderr


def test_signal_after_the_command_ended_keeps_its_exit_status(tmp_path):
    """The interpreter's shut-down after a command takes tens of milliseconds: a Ctrl-C or SIGTERM
    then killed the finished command (exit -2 / -15, a traceback when it came just after ``main``
    returned) although its outputs were all written. The console script's status is the command's."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        script = f"""
import os, signal, sys
from speaker import _entry
from speaker.cli import evaluate
evaluate.run = lambda args: 0
rc = _entry.main(["eval", "--scores", "s.txt", "--trials", "t.txt"])
os.kill(os.getpid(), {int(sig)})                  # the signal lands once the command has ended
sys.exit(rc)
"""
        p = _python(script, tmp_path)
        assert p.returncode == 0, (sig, p.returncode, p.stderr)
        assert p.stderr == "", p.stderr


def test_interrupt_swallowed_in_a_destructor_prints_no_traceback(tmp_path):
    """A Ctrl-C that lands in a ``__del__`` (llvmlite's, when numba's objects are collected) cannot
    propagate: Python printed "Exception ignored in ..." with a traceback. The request is recorded
    and the command stops at its next check, with the one-line message only."""
    script = f"""
import os, signal, sys
from speaker import cli
from speaker._atomic import write_text_atomic
from speaker.cli import evaluate

class Collected:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(100))                          # the handler runs here, inside __del__

def run(args):
    obj = Collected()
    del obj
    write_text_atomic({str(tmp_path / "out.txt")!r}, "new")
    return 0

evaluate.run = run
sys.exit(cli.main(["eval", "--scores", "s.txt", "--trials", "t.txt"]))
"""
    p = _python(script, tmp_path)
    _interrupted_in_one_line(p)
    assert not (tmp_path / "out.txt").exists()


def test_forked_worker_ignores_ctrl_c_and_ends_on_sigterm(tmp_path):
    """A terminal's Ctrl-C reaches the whole process group: the feature extraction's workers
    (forked, with the command's handlers) printed their own KeyboardInterrupt tracebacks, and the
    pool's SIGTERM to its workers another. In a forked worker SIGINT is ignored (the command stops
    the pool) and SIGTERM ends it at once, silently."""
    script = """
import os, signal, sys, time
from speaker import _interrupt
_interrupt.install()
codes = []
for sig in (signal.SIGINT, signal.SIGTERM):
    pid = os.fork()
    if pid == 0:
        os.kill(os.getpid(), sig)
        for _ in range(100):
            time.sleep(0.001)
        os._exit(7)                              # SIGINT ignored: the worker carries on
    codes.append(os.waitpid(pid, 0)[1])
print(os.waitstatus_to_exitcode(codes[0]), os.waitstatus_to_exitcode(codes[1]))
"""
    p = _python(script, tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["7", str(-signal.SIGTERM)], (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr and "KeyboardInterrupt" not in p.stderr, p.stderr


def test_interrupt_while_a_temporary_is_created_leaves_no_temporary(tmp_path):
    """An interrupt between the temporary file's creation and its recording for removal (inside
    ``tempfile.mkstemp``'s own Python code) left ``.NAME.*.tmp`` beside the output (seen on a
    train-ubm checkpoint)."""
    script = f"""
import os, signal, tempfile
from speaker import _atomic, _interrupt
real = tempfile.mkstemp

def mkstemp(*a, **k):
    made = real(*a, **k)
    os.kill(os.getpid(), signal.SIGINT)          # the handler runs before mkstemp returns
    return made

_interrupt.install()
_atomic.tempfile.mkstemp = mkstemp
try:
    _atomic.write_text_atomic({str(tmp_path / "out.txt")!r}, "new")
except KeyboardInterrupt:
    print("interrupted")
"""
    p = _python(script, tmp_path)
    assert p.stdout.strip() == "interrupted", p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == [], sorted(x.name for x in tmp_path.iterdir())


def test_swallowed_interrupt_does_not_commit_a_store_write(tmp_path):
    """A Ctrl-C swallowed during a store's write transaction (as a callback from C swallows it)
    must not let the transaction commit: the file outputs' atomic writes check for it, and so
    does the store's commit."""
    script = f"""
import os, signal
from speaker import _interrupt
from speaker._sql import Database
db = Database({str(tmp_path / "s.db")!r})
db.connect()
with db.write() as conn:
    db.run("CREATE TABLE t (x INTEGER)")
_interrupt.install()
try:
    with db.write():
        db.run("INSERT INTO t VALUES (1)")
        try:                                     # a C callback swallows the KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(100))
        except KeyboardInterrupt:
            pass
    print("committed")
except KeyboardInterrupt:
    print("interrupted")
print(db.rows("SELECT count(*) FROM t")[0][0])
"""
    p = _python(script, tmp_path)
    assert p.stdout.split() == ["interrupted", "0"], (p.stdout, p.stderr)


def test_interrupted_extract_leaves_the_whole_earlier_folder(tmp_path):
    """``extract --out DIR --overwrite`` replaced its .npy files one by one: interrupted half-way,
    the folder held new features beside old ones and the old list. Now the files and their list
    are one atomic set."""
    wavs = sorted(FIX.glob("*_george_0.wav"))[:3]
    (tmp_path / "a.lst").write_text("".join(f"{w}\n" for w in wavs))
    out = tmp_path / "feats"
    speaker_cli("extract", "--list", tmp_path / "a.lst", "--out", out, "--sample-rate", 8000, "--quiet", check=0)
    for f in out.iterdir():
        f.write_bytes(b"earlier " + f.name.encode())
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    assert len(before) == 4
    script = f"""
import os, signal, sys
import numpy as np
from speaker import cli
real, saved = np.save, []

def save(f, a, *args, **kw):
    real(f, a, *args, **kw)
    saved.append(1)
    if len(saved) == 2:                          # Ctrl-C once the second file is written
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(100))

np.save = save
sys.exit(cli.main(["extract", "--list", "a.lst", "--out", "feats", "--sample-rate", "8000", "--overwrite", "--quiet"]))
"""
    p = _python(script, tmp_path)
    assert p.returncode == 130, p.stderr
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before


def test_interrupted_demo_leaves_the_earlier_outputs_and_says_it_once(tmp_path):
    """``demo --out DIR --overwrite`` ran its steps over DIR's files: interrupted in ``enroll``, DIR
    held the new UBM beside the models of the old one, and stderr two lines (the step's, then the
    demo's). Now the steps write into a hidden folder and the five outputs replace DIR's as one set."""
    out = tmp_path / "demo"
    out.mkdir()
    names = ("features.json", "ubm.npz", "models.npz", "scores.txt", "scores_vox.txt")
    for n in names:
        (out / n).write_bytes(b"earlier " + n.encode())
    script = f"""
import os, signal, sys
from speaker import cli
from speaker.cli import enroll

def run(args):
    os.kill(os.getpid(), signal.SIGINT)
    sum(range(100))
    return 0

enroll.run = run
sys.exit(cli.main(["demo", "--out", "demo", "--components", "4", "--overwrite", "--quiet"]))
"""
    p = _python(script, tmp_path)
    _interrupted_in_one_line(p, "enroll")
    assert sorted(f.name for f in out.iterdir()) == sorted(names)        # nothing hidden left either
    assert all((out / n).read_bytes() == b"earlier " + n.encode() for n in names)


def test_second_signal_while_the_first_is_recorded_does_not_deadlock(tmp_path):
    """The handler recorded the request with ``threading.Event.set``, which takes a lock: a second
    signal (a Ctrl-C pressed twice, or SIGTERM sent to the process and to its group) arriving while
    the first handler held it ran the handler again inside, which waited for that lock forever
    (found by the stress: a ``train-ubm`` hung with every thread on a futex). The second signal
    here lands inside the first handler's recording, wherever that takes a lock or not."""
    script = """
import os, signal, sys, threading
from speaker import cli
from speaker.cli import evaluate
real, sent = threading.Condition.notify_all, []

def notify_all(self):                            # inside Event.set, with the Condition's lock held
    if not sent:
        sent.append(1)
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(100))
    real(self)

def run(args):
    threading.Condition.notify_all = notify_all
    orig = cli._interrupt._exception

    def exception():                             # ... or just after recording, when there is no lock
        if not sent:
            sent.append(1)
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(100))
        return orig()

    cli._interrupt._exception = exception
    os.kill(os.getpid(), signal.SIGINT)
    sum(range(100))
    return 0

evaluate.run = run
sys.exit(cli.main(["eval", "--scores", "s.txt", "--trials", "t.txt"]))
"""
    try:
        p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail("a second SIGINT while the first was being recorded deadlocked the command")
    _interrupted_in_one_line(p)


def test_interrupted_store_enrolment_says_which_speakers_were_enrolled(setup, tmp_path):
    """``enroll --store`` writes each speaker in its own transaction: interrupted at the second
    speaker, the first stays enrolled (the second is rolled back). The command said only
    "interrupted; earlier outputs are intact"; it now names the speakers already in the store."""
    d = setup
    spk = sorted({n.split("_")[2] for n in (d / "ubm.lst").read_text().split()})[:2]
    lines = [x for x in (d / "enroll.txt").read_text().splitlines() if x.split()[0] in spk]
    (tmp_path / "two.txt").write_text("\n".join(lines) + "\n")
    script = f"""
import os, signal, sys
from speaker import cli, store
real, calls = store.SpeakerStore.enroll, []

def enroll(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == 2:                          # Ctrl-C once the first speaker is committed
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(100))
    return real(self, *args, **kwargs)

store.SpeakerStore.enroll = enroll
sys.exit(cli.main(["enroll", "--ubm", {str(d / "ubm.npz")!r}, "--enroll", "two.txt", "--root", {str(d)!r},
                   "--store", "s.db", "--min-speech", "0.1", "--min-speaker-speech", "0.5", "--quiet"]))
"""
    p = _python(script, tmp_path)
    assert p.returncode == 130, p.stderr
    assert p.stderr.strip().splitlines() == [
        f"speaker enroll: 1 speaker(s) were enrolled into s.db before the interrupt ({spk[0]}); the others were not",
        "speaker enroll: interrupted; earlier outputs are intact"], p.stderr
    listed = speaker_cli("speakers", "--store", tmp_path / "s.db", "--json", check=0)
    assert [s["speaker"] for s in json.loads(listed.stdout)] == [spk[0]]


@pytest.mark.parametrize("cut", ["do_close", "do_rollback"])
def test_interrupt_while_a_store_connection_is_reset_or_closed_prints_no_traceback(tmp_path, cut):
    """SQLAlchemy catches an exception raised while it resets a connection going back to its pool
    (``do_rollback``) or closes one (``do_close``: ``speakers --remove`` closing the store after
    its commit, found by the stress), logs it with a traceback ("Exception closing connection ...")
    and raises it again. Both are clean-up after the work (a commit, a read): the interrupt is
    recorded for the next check, and a command with nothing left to do ends with its status."""
    script = f"""
import os, signal
from speaker import _interrupt
from speaker._sql import Database
db = Database({str(tmp_path / "s.db")!r})
db.connect()
with db.write():
    db.run("CREATE TABLE t (x INTEGER)")
_interrupt.install()
dialect = db.engine.dialect
real = dialect.{cut}

def cut(*args, **kwargs):
    dialect.{cut} = real
    os.kill(os.getpid(), signal.SIGINT)
    sum(range(100))
    return real(*args, **kwargs)

dialect.{cut} = cut
try:
    db.close() if {cut!r} == "do_close" else db.rows("SELECT count(*) FROM t")
    print("returned")                            # the clean-up ended, and with it the call
    _interrupt.check()                           # recorded: the next check raises it
    print("lost")
except KeyboardInterrupt:
    print("interrupted")
"""
    p = _python(script, tmp_path)
    assert p.stdout.split() == ["returned", "interrupted"], (p.stdout, p.stderr)
    assert p.stderr == "", p.stderr


def test_interrupt_as_streamed_features_are_handed_over_leaves_no_folder(tmp_path):
    """``train-ubm --stream`` without ``--cache`` extracts into ``.speaker-features-*`` beside the
    output, which the command removes; an interrupt between the folder's creation and the
    command's registering of its removal (as ``prepare_features`` returned) left it behind. The
    command now registers it as soon as it exists."""
    wavs = sorted(FIX.glob("*_george_0.wav"))[:3]
    (tmp_path / "u.lst").write_text("".join(f"{w}\n" for w in wavs))
    script = """
import os, signal, sys
from speaker import cli, featcache

class Prepared(featcache.PreparedFeatures):
    def __init__(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)      # as prepare_features hands the features over
        sum(range(100))
        super().__init__(*args, **kwargs)

featcache.PreparedFeatures = Prepared
sys.exit(cli.main(["train-ubm", "--list", "u.lst", "--out", "out/u.npz", "--components", "2",
                   "--sample-rate", "8000", "--stream", "--quiet"]))
"""
    (tmp_path / "out").mkdir()
    p = _python(script, tmp_path)
    assert p.returncode == 130, p.stderr
    assert list((tmp_path / "out").iterdir()) == [], list((tmp_path / "out").iterdir())


def test_interrupted_fuse_keeps_the_earlier_fusion(tmp_path):
    """``fuse`` wrote the fusion, then computed the Cllr and minCllr (PAV) of its summary line: a
    Ctrl-C then exited 130 with the output already replaced (found by the stress). The output is
    now the command's last act."""
    rng = np.random.default_rng(0)
    trials = [(f"m{i % 3}", f"t{i}", i % 2 == 0) for i in range(40)]
    (tmp_path / "trials.txt").write_text("".join(f"{m} {t} {'target' if y else 'nontarget'}\n" for m, t, y in trials))
    (tmp_path / "s.txt").write_text("".join(f"{m} {t} {rng.normal(2.0 if y else 0.0):.4f}\n" for m, t, y in trials))
    (tmp_path / "fusion.json").write_text("earlier fusion")
    script = """
import os, signal, sys
from speaker import calibration, cli
real = calibration.min_cllr

def min_cllr(*args, **kwargs):                   # Ctrl-C while the summary is computed
    os.kill(os.getpid(), signal.SIGINT)
    sum(range(100))
    return real(*args, **kwargs)

calibration.min_cllr = min_cllr
sys.exit(cli.main(["fuse", "--scores", "s.txt", "--trials", "trials.txt", "--out", "fusion.json", "--overwrite"]))
"""
    p = _python(script, tmp_path)
    assert p.returncode == 130, p.stderr
    assert (tmp_path / "fusion.json").read_text() == "earlier fusion"


def test_second_signal_while_the_interrupt_is_reported_gives_one_line(tmp_path):
    """Ctrl-C pressed twice, or SIGTERM sent to the process and to its group (found by the
    stress): while the start-up handler wrote its line, a second signal wrote it again; while the
    command line printed "interrupted", a second one escaped as a traceback (exit -2)."""
    early = """
import os, signal, sys
from speaker import _dist, _entry
real_write, hint = os.write, _dist.install_hint

def write(fd, data):
    n = real_write(fd, data)
    os.kill(os.getpid(), signal.SIGINT)          # the second signal, once the line is written
    sum(range(100))
    return n

def install_hint(what):                          # the first, while the entry point starts
    os.write = write
    os.kill(os.getpid(), signal.SIGINT)
    sum(range(100))
    return hint(what)

_dist.install_hint = install_hint
sys.exit(_entry.main(["eval", "--scores", "s.txt", "--trials", "t.txt"]))
"""
    late = """
import os, signal, sys
from speaker import _entry
from speaker.cli import evaluate

class Stderr:                                    # the second signal while the line is printed
    def __init__(self, real):
        self.real, self.sent = real, False
    def write(self, text):
        if not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(100))
        return self.real.write(text)
    def flush(self):
        self.real.flush()

def run(args):
    sys.stderr = Stderr(sys.stderr)
    os.kill(os.getpid(), signal.SIGINT)
    sum(range(100))
    return 0

evaluate.run = run
sys.exit(_entry.main(["eval", "--scores", "s.txt", "--trials", "t.txt"]))
"""
    for script, line in ((early, "speaker: interrupted while starting; nothing was written"),
                         (late, "speaker eval: interrupted; earlier outputs are intact")):
        p = _python(script, tmp_path)
        assert p.returncode == 130, p.stderr
        assert p.stderr.strip().splitlines() == [line], p.stderr


def test_destructor_of_an_object_the_interrupt_cut_prints_nothing(tmp_path):
    """A Ctrl-C inside llvmlite's ``OutputString.__init__`` (numba compiling for librosa) leaves an
    object without ``_ptr``, whose ``__del__`` then fails: "Exception ignored in ...
    AttributeError" and a traceback after the "interrupted" line (found by the stress). Once an
    interrupt was requested, such an error is its consequence and is not printed."""
    script = """
import os, signal, sys
from speaker import cli
from speaker.cli import evaluate

class Half:
    def __init__(self):
        os.kill(os.getpid(), signal.SIGINT)      # cut before _ptr is set
        sum(range(100))
        self._ptr = 1

    def __del__(self):
        self._ptr

def run(args):
    Half()
    return 0

evaluate.run = run
sys.exit(cli.main(["eval", "--scores", "s.txt", "--trials", "t.txt"]))
"""
    p = _python(script, tmp_path)
    _interrupted_in_one_line(p)


def test_signal_while_the_handlers_are_installed_is_one_line(tmp_path):
    """A SIGTERM just as the command line installed its SIGTERM handler (the start-up handler's
    moment over) raised outside the command's ``try``: a traceback and exit 1 (found by the stress,
    ``backend`` at 92 ms)."""
    script = """
import os, signal, sys
from speaker import _interrupt, cli
from speaker.cli import evaluate
real = signal.signal

def install(signum, handler):
    previous = real(signum, handler)
    if signum == signal.SIGTERM and handler is _interrupt._handler:
        signal.signal = real
        os.kill(os.getpid(), signal.SIGTERM)     # lands as the handler is in place
        sum(range(100))
    return previous

signal.signal = install
evaluate.run = lambda args: 0
sys.exit(cli.main(["eval", "--scores", "s.txt", "--trials", "t.txt"]))
"""
    p = _python(script, tmp_path)
    assert p.returncode == 143, p.stderr
    assert p.stderr.strip().splitlines() == ["speaker eval: terminated (SIGTERM); earlier outputs are intact"], p.stderr
