"""SIGINT and SIGKILL in the middle of a job leave earlier outputs intact, and no partial file
under the final name."""
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import FIX, speaker_command
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
