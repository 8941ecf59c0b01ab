"""speaker.train_ubm / `speaker train-ubm` at scale: streaming from disk, Dask workers, checkpoints.

Every result is compared with the plain in-memory, single-process, uninterrupted run. The commands
run in this process (conftest.speaker_cli), except the ones interrupted by a signal."""
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import FIX, speaker_cli as run, speaker_command
from speaker.featcache import FeatureFiles
from speaker.ubm import CheckpointError, read_checkpoint, train_ubm

KEYS = ("weights", "means", "covariances")


def popen(*args):
    return subprocess.Popen(speaker_command() + [str(a) for a in args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def model(path):
    with np.load(path) as z:
        return {k: z[k] for k in KEYS}


def assert_equal_models(a, b, rtol=0.0):
    for k in KEYS:
        if rtol == 0:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=rtol * np.abs(b[k]).max(), err_msg=k)


# ----------------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def npy_list(tmp_path_factory):
    """24 utterances of 14-dim features as .npy files, a list of them and one of the first 8."""
    d = tmp_path_factory.mktemp("npy")
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3.0, size=(40, 14))
    lines = []
    for i in range(24):
        lab = rng.integers(0, 40, size=int(rng.integers(2500, 4500)))
        np.save(d / f"u{i:02d}.npy", (centres[lab] + rng.standard_normal((len(lab), 14))).astype(np.float32))
        lines.append(f"utt{i:02d} u{i:02d}.npy")
    (d / "feats.lst").write_text("\n".join(lines) + "\n")
    (d / "few.lst").write_text("\n".join(lines[:8]) + "\n")
    return d / "feats.lst"


@pytest.fixture(scope="module")
def audio_list(tmp_path_factory):
    d = tmp_path_factory.mktemp("audio")
    (d / "ubm.lst").write_text("".join(f"{FIX / f'{dg}_{s}_2.wav'}\n"
                                       for s in ("george", "lucas", "theo") for dg in range(10)))
    return d / "ubm.lst"


AUDIO_ARGS = ("--components", 8, "--iters", 3, "--sample-rate", 8000, "--quiet")


@pytest.fixture(scope="module")
def audio_reference(audio_list, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ubm.npz"
    run("train-ubm", "--list", audio_list, "--out", out, *AUDIO_ARGS, check=0)
    return model(out)


# ----------------------------------------------------------------------------- library
def _arrays(npy_list):
    return [np.load(npy_list.parent / line.split()[1]) for line in npy_list.read_text().splitlines()]


def test_feature_files_stream_gives_the_in_memory_model(npy_list):
    feats = _arrays(npy_list)
    paths = [str(npy_list.parent / line.split()[1]) for line in npy_list.read_text().splitlines()]
    for init in ("split", "kmeans"):
        a = train_ubm(feats, 8, init=init, n_iter=3, n_iter_split=2, kmeans_frames=5000)
        b = train_ubm(FeatureFiles(paths), 8, init=init, n_iter=3, n_iter_split=2, kmeans_frames=5000)
        for name in ("weights_", "means_", "covariances_", "lower_bounds_"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_library_resume_equals_uninterrupted(npy_list, tmp_path):
    feats = _arrays(npy_list)[:12]
    kw = dict(n_iter=5, n_iter_split=2, inputs_id="twelve files")
    ref = train_ubm(feats, 8, **kw)
    ck = tmp_path / "ck.npz"

    def stop_after_4(i, gm, stats):
        if i == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_ubm(feats, 8, checkpoint=ck, callback=stop_after_4, **kw)
    assert read_checkpoint(ck)["done"] == 4
    with pytest.raises(CheckpointError, match="other training data or settings"):
        train_ubm(feats, 8, checkpoint=ck, resume=True, **{**kw, "inputs_id": "other files"})
    with pytest.raises(CheckpointError, match="other training data or settings"):
        train_ubm(feats, 8, checkpoint=ck, resume=True, **{**kw, "n_iter": 6})
    resumed = train_ubm(feats, 8, checkpoint=ck, resume=True, **kw)
    for name in ("weights_", "means_", "covariances_", "lower_bounds_"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(ref, name))
    assert read_checkpoint(ck)["done"] == read_checkpoint(ck)["total"] == 2 * 2 + 5
    (tmp_path / "bad.npz").write_bytes(b"nonsense")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        train_ubm(feats, 8, checkpoint=tmp_path / "bad.npz", resume=True, **kw)


# ----------------------------------------------------------------------------- command line
def test_cli_streaming_gives_the_plain_model(audio_list, audio_reference, tmp_path):
    """--stream (features read back at every pass) and the automatic switch beyond
    --stream-above (here 50 kB, so after a few files) give the in-memory model bitwise."""
    for extra in (["--stream", "--quiet"], ["--stream-above", "0.00005"]):
        out = tmp_path / "ubm.npz"
        p = run("train-ubm", "--list", audio_list, "--out", out, *AUDIO_ARGS[:-1], *extra, check=0)
        assert_equal_models(model(out), audio_reference)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["ubm.npz"]     # temporary cache removed
        out.unlink()
    assert "streamed from disk" in p.stderr


def test_cli_dask_workers_equal_the_plain_command(audio_list, audio_reference, tmp_path):
    out = tmp_path / "ubm.npz"
    p = run("train-ubm", "--list", audio_list, "--out", out, *AUDIO_ARGS[:-1], "--dask-workers", 2, check=0)
    assert "on Dask (2 workers" in p.stderr
    # float32 E-step: the in-memory pass is one core call chunked across utterances, the Dask
    # pass one call per part, so float32 chunk sums are rounded at other boundaries (~1e-6 of
    # the data's scale after 14 EM passes); the float64 sums of the statistics are exact either way
    assert_equal_models(model(out), audio_reference, rtol=1e-5)


@pytest.mark.xdist_group("dask")
def test_cli_existing_scheduler_with_kmeans_init(npy_list, tmp_path, dask_cluster):
    """On an existing scheduler (the test run's LocalCluster, 2 worker processes)."""
    args = ("--list", npy_list.with_name("few.lst"), "--components", 8, "--iters", 3, "--init", "kmeans", "--quiet")
    run("train-ubm", *args, "--out", tmp_path / "plain.npz", check=0)
    run("train-ubm", *args, "--out", tmp_path / "dask.npz", "--scheduler", dask_cluster.scheduler_address,
        "--stream", check=0)
    assert_equal_models(model(tmp_path / "dask.npz"), model(tmp_path / "plain.npz"), rtol=1e-6)


# enough EM passes (and checkpoint writes) that the run is still going when it is signalled
RESUME_ARGS = ("--components", 32, "--iters", 60)


@pytest.fixture(scope="module")
def uninterrupted(npy_list, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "ubm.npz"
    run("train-ubm", "--list", npy_list, "--out", out, *RESUME_ARGS, "--quiet", check=0)
    assert not out.with_name("ubm.ckpt.npz").exists()        # removed once the model is written
    return model(out)


def _wait_for_passes(proc, checkpoint: Path, n: int) -> int:
    deadline = time.time() + 120
    while time.time() < deadline:
        assert proc.poll() is None, "the run finished before it could be interrupted"
        try:
            done = read_checkpoint(checkpoint)["done"]
        except (CheckpointError, FileNotFoundError):
            done = -1
        if done >= n:
            return done
        time.sleep(0.005)
    raise AssertionError("no checkpoint progress")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_cli_resume_after_interruption_equals_uninterrupted(npy_list, uninterrupted, tmp_path, sig):
    out, ck = tmp_path / "ubm.npz", tmp_path / "ubm.ckpt.npz"
    args = ("train-ubm", "--list", npy_list, "--out", out, *RESUME_ARGS)
    proc = popen(*args)
    _wait_for_passes(proc, ck, 3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert proc.returncode == 130, err
        assert "Traceback" not in err and "--resume" in err
    else:
        assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    done = read_checkpoint(ck)["done"]
    assert 3 <= done < read_checkpoint(ck)["total"]
    if sig == signal.SIGKILL:
        p = run(*args[:-1], 9, "--resume")                      # other settings: refused
        assert p.returncode == 1 and "other training data or settings" in p.stderr and "Traceback" not in p.stderr
        assert read_checkpoint(ck)["done"] == done              # and the checkpoint is untouched
    run(*args, "--resume", "--quiet", check=0)
    assert_equal_models(model(out), uninterrupted)
    assert not ck.exists()
