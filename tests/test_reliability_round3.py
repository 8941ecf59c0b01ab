"""Reliability, round three (the speaker package): outputs that must not be replaced, hostile model
files and stores, faults.  Each test reproduces an attack or a fault that got through before its
fix (docs/reliability.md, section 10).  Device nodes and FIFOs are made privately in the test's
temporary folder; loops are bounded in count and time."""
import contextlib
import errno
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import small_recipe, speaker_cli

FIX = Path(__file__).resolve().parent.parent / "audio_fixtures"
SPK = ["george", "jackson", "lucas"]


def run(*args):
    """(exit code, stderr) of ``speaker ARGS`` in this process."""
    r = speaker_cli(*args)
    return r.returncode, r.stderr


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Lists over three speakers (relative to a folder of copies), a UBM, models and scores."""
    d = small_recipe(tmp_path_factory.mktemp("round3"))
    run("score", "--ubm", d / "ubm.npz", "--models", d / "models.npz", "--trials", d / "trials.txt",
        "--out", d / "scores.txt", "--quiet")
    assert (d / "scores.txt").exists()
    return d


def _snapshot(folder: Path) -> dict:
    return {p.name: (p.read_bytes() if p.is_file() else None) for p in folder.iterdir()}


# ======================================================================= outputs (items 11-13, 17)
def test_every_command_refuses_an_existing_output_without_overwrite(work, tmp_path):
    """train-ubm, train-ivector, train-plda, calibrate --out, extract-ivectors, score --out,
    eval --det, extract, export, store-info --export-ubm, demo --out replaced an existing file
    without a word (a replaced UBM makes every models file and store made from it unusable).
    Now: exit 1 before any work, one line naming the file and --overwrite, the file unchanged."""
    d = work
    old = tmp_path / "old.bin"
    old.write_bytes(b"earlier output")
    ark = tmp_path / "f.ark"
    ark.write_bytes(b"earlier archive")
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "ubm.npz").write_bytes(b"earlier")
    ubm, lst = d / "ubm.npz", d / "ubm.lst"
    cases = {
        "train-ubm": ["train-ubm", "--list", lst, "--out", old, "--components", 2, "--sample-rate", 8000],
        "train-ivector": ["train-ivector", "--ubm", ubm, "--list", lst, "--out", old],
        "train-plda": ["train-plda", "--ubm", ubm, "--ivector", d / "none.npz", "--enroll", d / "enroll.txt",
                       "--out", old],
        "extract-ivectors": ["extract-ivectors", "--ubm", ubm, "--ivector", d / "none.npz", "--list", lst,
                             "--out", old],
        "extract-ivectors --ark": ["extract-ivectors", "--ubm", ubm, "--ivector", d / "none.npz", "--list", lst,
                                   "--ark", ark],
        "calibrate": ["calibrate", "--scores", d / "scores.txt", "--trials", d / "trials.txt", "--out", old],
        "score": ["score", "--ubm", ubm, "--models", d / "models.npz", "--trials", d / "trials.txt", "--out", old],
        "eval --det": ["eval", "--scores", d / "scores.txt", "--trials", d / "trials.txt", "--det", old],
        "extract --ark": ["extract", "--list", lst, "--ark", ark, "--sample-rate", 8000],
        "enroll": ["enroll", "--ubm", ubm, "--enroll", d / "enroll.txt", "--out", old],
        "demo": ["demo", "--out", tmp_path / "demo"],
    }
    before = _snapshot(tmp_path)
    for name, args in cases.items():
        rc, err = run(*args, *([] if args[0] == "eval" else ["--quiet"]))
        assert rc == 1, (name, err)
        assert "exists; give --overwrite to replace it" in err and len(err.strip().splitlines()) == 1, (name, err)
    assert _snapshot(tmp_path) == before
    # extract --out DIR: an existing .npy of the folder
    out = tmp_path / "feats"
    out.mkdir()
    (out / "0_george_0.npy").write_bytes(b"earlier")
    rc, err = run("extract", "--list", lst, "--out", out, "--sample-rate", 8000)
    assert rc == 1 and "0_george_0.npy exists; give --overwrite" in err, err
    assert (out / "0_george_0.npy").read_bytes() == b"earlier"
    # with --overwrite they are replaced (cheap ones here; the others share the same check)
    assert run("calibrate", "--scores", d / "scores.txt", "--trials", d / "trials.txt", "--out", old,
               "--overwrite", "--quiet")[0] == 0
    assert old.read_text().startswith("{")
    assert run("extract", "--list", lst, "--out", out, "--sample-rate", 8000, "--overwrite", "--quiet")[0] == 0
    assert np.load(out / "0_george_0.npy").ndim == 2


def test_a_checkpoint_left_by_an_interrupted_run_is_resumed_or_overwritten_never_silently_restarted(work, tmp_path):
    ck = tmp_path / "u.ckpt.npz"
    ck.write_bytes(b"an interrupted run's checkpoint")
    rc, err = run("train-ubm", "--list", work / "ubm.lst", "--out", tmp_path / "u.npz", "--components", 2,
                  "--sample-rate", 8000)
    assert rc == 1 and "checkpoint" in err and "--resume" in err and "--overwrite" in err, err
    assert ck.read_bytes() == b"an interrupted run's checkpoint"


def _fifo_reader(path: Path, got: list):
    def read():
        with open(path, "rb") as f:
            got.append(f.read())
    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


def _release(path: Path, reader: threading.Thread) -> None:
    """If the reader still waits for a writer (the command never opened the FIFO), let it go."""
    if reader.is_alive():
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    reader.join(10)


def test_outputs_that_are_fifos_or_devices_are_written_into_never_replaced(work, tmp_path):
    """As root, ``--out /dev/null`` renamed a regular file over the system's /dev/null.  A FIFO or
    a character device is now written into (as a shell redirection does) and stays what it was;
    a folder is refused.  The device node is made privately here (mknod, root only)."""
    d = work
    score = ["score", "--ubm", d / "ubm.npz", "--models", d / "models.npz", "--trials", d / "trials.txt", "--quiet"]
    fifo = tmp_path / "scores.fifo"
    os.mkfifo(fifo)
    got: list = []
    reader = _fifo_reader(fifo, got)
    rc, err = run(*score, "--out", fifo)
    _release(fifo, reader)
    assert rc == 0, err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert got and got[0] == (d / "scores.txt").read_bytes()
    rc, err = run(*score, "--out", tmp_path)
    assert rc == 1 and "is a folder, not a file to write" in err, err
    # an .ark and its .scp are a pair of regular files: a FIFO there is refused, not waited on
    rc, err = run("extract", "--list", d / "ubm.lst", "--ark", fifo, "--sample-rate", 8000)
    assert rc == 1 and "is a FIFO" in err, err
    if os.geteuid() != 0:
        pytest.skip("making a character device node (mknod) needs root")
    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    rdev = os.lstat(null).st_rdev
    for args in (score + ["--out", null],
                 ["calibrate", "--scores", d / "scores.txt", "--trials", d / "trials.txt", "--out", null],
                 ["enroll", "--ubm", d / "ubm.npz", "--enroll", d / "enroll.txt", "--out", null]):
        rc, err = run(*args, "--quiet")
        assert rc == 0, (args[0], err)
        st = os.lstat(null)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == rdev, args[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null", "scores.fifo"]


def test_library_writes_never_rename_over_a_device(tmp_path):
    """The one atomic-output helper, below the command line: a device is written into, a
    folder or a block device refused, an existing file kept without overwrite."""
    from speaker._atomic import WriteError, atomic_path, write_text_atomic
    f = tmp_path / "f.txt"
    f.write_text("old")
    with pytest.raises(WriteError, match="exists; give --overwrite"):
        write_text_atomic(f, "new", overwrite=False)
    assert f.read_text() == "old"
    with pytest.raises(WriteError, match="is a folder"):
        write_text_atomic(tmp_path, "x")
    # a file that appears while the output is being written is not replaced either
    g = tmp_path / "g.txt"
    with pytest.raises(WriteError, match="appeared while this command ran"):
        with atomic_path(g, overwrite=False) as tmp:
            tmp.write_text("mine")
            g.write_text("someone else's")
    assert g.read_text() == "someone else's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt", "g.txt"]
    if os.geteuid() != 0:
        pytest.skip("making device nodes (mknod) needs root")
    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    write_text_atomic(null, "discarded", overwrite=False)
    assert stat.S_ISCHR(os.lstat(null).st_mode)
    blk = tmp_path / "blk"
    os.mknod(blk, 0o600 | stat.S_IFBLK, os.makedev(7, 200))
    with pytest.raises(WriteError, match="is a block device"):
        write_text_atomic(blk, "x", overwrite=True)
    assert stat.S_ISBLK(os.lstat(blk).st_mode)


def test_store_on_a_fifo_or_device_is_refused_without_creating_a_journal(work, tmp_path):
    """``--store`` naming a character device made SQLite create ``NAME-journal`` beside it (a
    FIFO hung it).  Now refused before SQLite opens anything."""
    fifo = tmp_path / "s.fifo"
    os.mkfifo(fifo)
    nodes = [fifo]
    if os.geteuid() == 0:
        dev = tmp_path / "s.dev"
        os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        nodes.append(dev)
    for node in nodes:
        for args in (["speakers", "--store", node],
                     ["enroll", "--ubm", work / "ubm.npz", "--enroll", work / "enroll.txt", "--store", node]):
            rc, err = run(*args, "--quiet")
            assert rc == 1 and ("is a FIFO" in err or "is a character device" in err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n.name for n in nodes)


# ----------------------------------------------------------------------- .ark + .scp as a pair
def _ark_pair(folder: Path):
    return (folder / "f.ark").read_bytes(), (folder / "f.scp").read_bytes()


def test_extract_ark_failure_keeps_the_previous_pair(work, tmp_path, monkeypatch):
    """``extract --ark`` wrote in place: a failed write destroyed the previous archive and left a
    truncated .ark with a partial .scp under the final names.  Now both are temporaries until
    the archive is complete; a failure (disk full mid-write, or the second rename) leaves the
    previous pair byte for byte, and no temporary file."""
    import kaldiio
    import speaker._atomic as at
    lst = work / "ubm.lst"
    assert run("extract", "--list", lst, "--ark", tmp_path / "f.ark", "--sample-rate", 8000, "--quiet")[0] == 0
    before = _ark_pair(tmp_path)
    feats = kaldiio.load_scp(str(tmp_path / "f.scp"))
    assert len(feats) == 12 and all(v.ndim == 2 for v in feats.values())
    calls = {"n": 0}
    real_call = kaldiio.WriteHelper.__call__

    def disk_full_on_the_third(self, key, value):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_call(self, key, value)
    monkeypatch.setattr(kaldiio.WriteHelper, "__call__", disk_full_on_the_third)
    rc, err = run("extract", "--list", lst, "--ark", tmp_path / "f.ark", "--sample-rate", 8000, "--overwrite",
                  "--quiet")
    assert rc == 1 and "No space left on device" in err and "f.ark" in err, err
    assert _ark_pair(tmp_path) == before
    monkeypatch.setattr(kaldiio.WriteHelper, "__call__", real_call)
    real_install = at._install

    def scp_rename_fails(tmp, path, overwrite):
        if path.suffix == ".scp":
            raise OSError(errno.EIO, "Input/output error")
        return real_install(tmp, path, overwrite)
    monkeypatch.setattr(at, "_install", scp_rename_fails)
    rc, err = run("extract", "--list", lst, "--ark", tmp_path / "f.ark", "--sample-rate", 16000, "--overwrite",
                  "--quiet")
    assert rc == 1 and "Input/output error" in err, err
    assert _ark_pair(tmp_path) == before                  # the new .ark was put back to the old one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.ark", "f.scp"]


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_in_the_middle_of_an_ark_write_keeps_the_previous_pair(work, tmp_path, sig, code):
    """Not tried before: a real signal delivered while the archive is being written (the process
    sends it to itself after the second matrix).  Exit 130 / 143, one line, the previous pair
    intact, no temporary file."""
    lst = work / "ubm.lst"
    assert run("extract", "--list", lst, "--ark", tmp_path / "f.ark", "--sample-rate", 8000, "--quiet")[0] == 0
    before = _ark_pair(tmp_path)
    script = textwrap.dedent(f"""
        import os, sys, kaldiio
        from speaker.cli import main
        real, n = kaldiio.WriteHelper.__call__, [0]
        def call(self, key, value):
            n[0] += 1
            if n[0] == 3:
                os.kill(os.getpid(), {int(sig)})
            return real(self, key, value)
        kaldiio.WriteHelper.__call__ = call
        sys.exit(main(["extract", "--list", {str(lst)!r}, "--ark", {str(tmp_path / "f.ark")!r},
                       "--sample-rate", "16000", "--overwrite", "--quiet"]))
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert p.returncode == code, p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert _ark_pair(tmp_path) == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["f.ark", "f.scp"]
