"""The i-vector commands in-process on the bundled fixtures (8 kHz, small K and R)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speaker.cli import main

FX = Path(__file__).resolve().parents[1] / "audio_fixtures"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    from speaker.features import FeatureConfig
    d = tmp_path_factory.mktemp("ivec")
    (d / "f.json").write_text(FeatureConfig(sample_rate=8000).to_json())
    common = ["--quiet", "--cache", str(d / "cache")]
    assert main(["train-ubm", "--list", str(FX / "ubm.lst"), "--out", str(d / "ubm.npz"), "--components", "8",
                 "--iters", "2", "--config", str(d / "f.json")] + common) == 0
    assert main(["train-ivector", "--ubm", str(d / "ubm.npz"), "--list", str(FX / "ubm.lst"), "--rank", "6",
                 "--iters", "3", "--out", str(d / "tv.npz")] + common) == 0
    assert main(["train-plda", "--ubm", str(d / "ubm.npz"), "--ivector", str(d / "tv.npz"), "--enroll",
                 str(FX / "enroll.txt"), "--out", str(d / "plda.npz"), "--lda-dim", "4", "--wccn"] + common) == 0
    return d, common


def _ubm_tv(d):
    return ["--ubm", str(d / "ubm.npz"), "--ivector", str(d / "tv.npz")]


@pytest.mark.parametrize("backend", ["plda", "cosine"])
def test_enroll_and_score_kaldi_and_voxceleb_trials(work, backend):
    d, common = work
    be = ["--backend", backend, "--plda", str(d / "plda.npz")]
    assert main(["enroll"] + _ubm_tv(d) + be + ["--enroll", str(FX / "enroll.txt"),
                                                "--out", str(d / f"m_{backend}.npz")] + common) == 0
    assert main(["score"] + _ubm_tv(d) + be + ["--models", str(d / f"m_{backend}.npz"), "--trials",
                                               str(FX / "trials.txt"), "--out", str(d / "s.txt")] + common) == 0
    rows = [line.split() for line in (d / "s.txt").read_text().splitlines()]
    assert len(rows) == 720 and all(np.isfinite(float(r[2])) for r in rows)
    labels = {(f[0], f[1]): f[2] == "target" for f in (line.split() for line in (FX / "trials.txt").read_text().splitlines()
                                                        if line and not line.startswith("#"))}
    tar = np.mean([float(r[2]) for r in rows if labels[(r[0], r[1])]])
    non = np.mean([float(r[2]) for r in rows if not labels[(r[0], r[1])]])
    assert tar > non                                      # the back-end separates speakers on average
    assert main(["score"] + _ubm_tv(d) + be + ["--trials", str(FX / "trials_vox.txt"),
                                               "--out", str(d / "sv.txt")] + common) == 0
    assert len((d / "sv.txt").read_text().splitlines()) == 120


def test_plda_scores_match_the_library(work):
    """The command's scores equal plda_llr on the i-vectors extracted by extract-ivectors."""
    from speaker.ivector import load_tv
    from speaker.plda import load_backend, plda_llr
    d, common = work
    assert main(["extract-ivectors"] + _ubm_tv(d) + ["--list", str(FX / "ubm.lst"), "--out", str(d / "iv.npz")]
                + common) == 0
    z = np.load(d / "iv.npz")
    ids, X = list(z["ids"]), z["ivectors"]
    assert X.shape == (60, 6) and X.dtype == np.float64
    trials = d / "t.txt"
    trials.write_text(f"1 {FX / ids[0]} {FX / ids[1]}\n0 {FX / ids[2]} {FX / ids[3]}\n")
    assert main(["score"] + _ubm_tv(d) + ["--backend", "plda", "--plda", str(d / "plda.npz"), "--trials", str(trials),
                                          "--out", str(d / "st.txt")] + common) == 0
    got = [float(line.split()[2]) for line in (d / "st.txt").read_text().splitlines()]
    be = load_backend(d / "plda.npz")
    Z = be.transform(X)
    want = plda_llr(be.plda, Z[[0, 2]], [1, 1], Z[[1, 3]])
    np.testing.assert_allclose(got, want, atol=2e-6)
    assert load_tv(d / "tv.npz").rank == 6


def test_ark_output(work):
    import kaldiio
    d, common = work
    assert main(["extract-ivectors"] + _ubm_tv(d) + ["--list", str(FX / "ubm.lst"), "--ark", str(d / "iv.ark")]
                + common) == 0
    vecs = dict(kaldiio.load_scp(str(d / "iv.scp")))
    assert len(vecs) == 60 and next(iter(vecs.values())).shape == (6,)


def test_resume_gives_the_same_extractor(work, monkeypatch):
    from speaker import ivector
    d, common = work
    args = ["train-ivector", "--ubm", str(d / "ubm.npz"), "--list", str(FX / "ubm.lst"), "--rank", "6",
            "--iters", "3"] + common
    real = ivector.m_step
    calls = []

    def interrupted(acc, K):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(acc, K)
    monkeypatch.setattr(ivector, "m_step", interrupted)
    assert main(args + ["--out", str(d / "tv2.npz")]) == 130
    assert ivector.read_checkpoint(d / "tv2.ckpt.npz")["done"] == 1
    monkeypatch.setattr(ivector, "m_step", real)
    assert main(args + ["--out", str(d / "tv2.npz"), "--resume"]) == 0
    assert not (d / "tv2.ckpt.npz").exists()
    np.testing.assert_array_equal(np.load(d / "tv2.npz")["T"], np.load(d / "tv.npz")["T"])


def test_errors_are_one_line(work, tmp_path, capsys):
    d, common = work
    other = tmp_path / "ubm2.npz"
    assert main(["train-ubm", "--list", str(FX / "ubm.lst"), "--out", str(other), "--components", "4", "--iters", "1",
                 "--config", str(d / "f.json")] + common) == 0
    capsys.readouterr()
    assert main(["extract-ivectors", "--ubm", str(other), "--ivector", str(d / "tv.npz"), "--list",
                 str(FX / "ubm.lst"), "--out", str(tmp_path / "x.npz")] + common) == 1
    err = capsys.readouterr().err
    assert "different UBM" in err and len(err.strip().splitlines()) == 1
    assert main(["score"] + _ubm_tv(d) + ["--backend", "plda", "--trials", str(FX / "trials_vox.txt"),
                                          "--out", str(tmp_path / "s.txt")] + common) == 1
    assert "--plda" in capsys.readouterr().err
    assert main(["score"] + _ubm_tv(d) + ["--backend", "plda", "--plda", str(d / "tv.npz"), "--trials",
                                          str(FX / "trials_vox.txt"), "--out", str(tmp_path / "s.txt")] + common) == 1
    assert "format" in capsys.readouterr().err
    assert not (tmp_path / "s.txt").exists()


@pytest.mark.parametrize("command", ["train-ivector", "train-plda", "extract-ivectors", "enroll", "score"])
def test_every_option_has_help(command):
    from speaker.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    for action in sub._actions:
        assert action.help, (command, action.dest)


def test_an_output_that_is_an_input_is_refused_before_any_work(tmp_path):
    """enroll --backend plda --out PLDA.npz once replaced the back-end it read (issue 11 item 1)."""
    from conftest import speaker_cli
    plda = tmp_path / "plda.npz"
    plda.write_bytes(b"precious")
    res = speaker_cli("enroll", "--ubm", tmp_path / "missing-ubm.npz", "--backend", "plda",
                      "--ivector", tmp_path / "tv.npz", "--plda", plda, "--enroll", tmp_path / "e.txt",
                      "--out", plda, "--overwrite")
    assert res.returncode != 0 and "plda.npz" in res.stderr and "Traceback" not in res.stderr
    assert plda.read_bytes() == b"precious"
