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
                                               str(FX / "trials.txt"), "--out", str(d / f"s_{backend}.txt")] + common) == 0
    rows = [line.split() for line in (d / f"s_{backend}.txt").read_text().splitlines()]
    assert len(rows) == 720 and all(np.isfinite(float(r[2])) for r in rows)
    labels = {(f[0], f[1]): f[2] == "target" for f in (line.split() for line in (FX / "trials.txt").read_text().splitlines()
                                                        if line and not line.startswith("#"))}
    tar = np.mean([float(r[2]) for r in rows if labels[(r[0], r[1])]])
    non = np.mean([float(r[2]) for r in rows if not labels[(r[0], r[1])]])
    assert tar > non                                      # the back-end separates speakers on average
    assert main(["score"] + _ubm_tv(d) + be + ["--trials", str(FX / "trials_vox.txt"),
                                               "--out", str(d / f"sv_{backend}.txt")] + common) == 0
    assert len((d / f"sv_{backend}.txt").read_text().splitlines()) == 120


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
    assert main(["score"] + _ubm_tv(d) + ["--backend", "cosine", "--top-c", "5", "--trials",
                                          str(FX / "trials_vox.txt"), "--out", str(tmp_path / "s.txt")] + common) == 1
    assert "--top-c applies to GMM-UBM scoring" in capsys.readouterr().err
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


def _direct_scores(backend, be, E, C, Z):
    from speaker.plda import cosine, plda_llr
    return plda_llr(be.plda, E, C, Z) if backend == "plda" else cosine(E, Z)


@pytest.mark.parametrize("backend,norm", [("plda", "s"), ("cosine", "z"), ("plda", "t")])
def test_score_normalisation_applies_to_ivector_scores(work, tmp_path, backend, norm):
    """--norm with --backend plda|cosine: the scores of the command equal the direct formula on
    the i-vectors of extract-ivectors (models: single recordings of VoxCeleb-style trials; the
    cohort listed with relative paths resolved by --root, features on 2 processes)."""
    from speaker.plda import load_backend
    d, common = work
    cohort = [line for line in (FX / "ubm.lst").read_text().splitlines() if line and not line.startswith("#")][:8]
    (tmp_path / "cohort.lst").write_text("\n".join(cohort) + "\n")
    trials = [line.split() for line in (FX / "trials_vox.txt").read_text().splitlines()
              if line and not line.startswith("#")][:6]
    (tmp_path / "t.txt").write_text("".join(" ".join(t) + "\n" for t in trials))
    be_args = ["--backend", backend, "--plda", str(d / "plda.npz")]
    assert main(["score"] + _ubm_tv(d) + be_args + ["--trials", str(tmp_path / "t.txt"), "--root", str(FX),
                                                    "--norm", norm, "--cohort", str(tmp_path / "cohort.lst"),
                                                    "--out", str(tmp_path / "s.txt"), "--jobs", "2"] + common) == 0
    got = np.array([float(line.split()[2]) for line in (tmp_path / "s.txt").read_text().splitlines()])
    files = sorted({p for t in trials for p in t[1:]} | set(cohort))
    (tmp_path / "all.lst").write_text("\n".join(files) + "\n")
    assert main(["extract-ivectors"] + _ubm_tv(d) + ["--list", str(tmp_path / "all.lst"), "--root", str(FX),
                                                     "--out", str(tmp_path / "iv.npz")] + common) == 0
    z = np.load(tmp_path / "iv.npz")
    be = load_backend(d / "plda.npz")
    vec = dict(zip(z["ids"], be.transform(z["ivectors"])))
    Q = np.array([vec[c] for c in cohort])
    E = np.array([vec[t[1]] for t in trials])
    Z = np.array([vec[t[2]] for t in trials])
    one = np.ones(len(trials))
    raw = _direct_scores(backend, be, E, one, Z)
    # cohort scores by hand: every model (as enrolled) and every test against every cohort recording
    ez = np.array([[_direct_scores(backend, be, e[None], [1.0], q[None])[0] for q in Q] for e in E])
    tt = np.array([[_direct_scores(backend, be, q[None], [1.0], t[None])[0] for q in Q] for t in Z])
    zs = (raw - ez.mean(1)) / ez.std(1)
    ts = (raw - tt.mean(1)) / tt.std(1)
    want = {"z": zs, "t": ts, "s": (zs + ts) / 2}[norm]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_norm_without_cohort_is_one_line(work, tmp_path, capsys):
    d, common = work
    assert main(["score"] + _ubm_tv(d) + ["--backend", "cosine", "--trials", str(FX / "trials_vox.txt"), "--norm", "z",
                                          "--out", str(tmp_path / "s.txt")] + common) == 1
    err = capsys.readouterr().err
    assert "--cohort" in err and len(err.strip().splitlines()) == 1


def test_calibration_applies_to_plda_scores(work, tmp_path):
    """speaker calibrate / eval --calibration on the PLDA score file: the fitted map equals
    speaker.calibration.fit_calibration on the same scores (an affine map fitted by logistic regression)."""
    import json
    from speaker.calibration import fit_calibration
    d, common = work
    be = ["--backend", "plda", "--plda", str(d / "plda.npz")]
    assert main(["enroll"] + _ubm_tv(d) + be + ["--enroll", str(FX / "enroll.txt"), "--out", str(tmp_path / "m.npz")]
                + common) == 0
    assert main(["score"] + _ubm_tv(d) + be + ["--models", str(tmp_path / "m.npz"), "--trials", str(FX / "trials.txt"),
                                               "--out", str(tmp_path / "s.txt")] + common) == 0
    assert main(["calibrate", "--scores", str(tmp_path / "s.txt"), "--trials", str(FX / "trials.txt"),
                 "--out", str(tmp_path / "cal.json")] + common) == 0
    cal = json.loads((tmp_path / "cal.json").read_text())
    rows = [line.split() for line in (tmp_path / "s.txt").read_text().splitlines()]
    lab = {(f[0], f[1]): f[2] == "target" for f in (line.split() for line in (FX / "trials.txt").read_text().splitlines()
                                                     if line and not line.startswith("#"))}
    want = fit_calibration([float(r[2]) for r in rows], [lab[(r[0], r[1])] for r in rows])
    assert cal["a"] == pytest.approx(want.a, rel=1e-6) and cal["b"] == pytest.approx(want.b, rel=1e-6, abs=1e-9)
    assert cal["a"] > 0
    assert main(["eval", "--scores", str(tmp_path / "s.txt"), "--trials", str(FX / "trials.txt"),
                 "--calibration", str(tmp_path / "cal.json")]) == 0


def test_enroll_average_is_the_normalised_mean_of_the_transformed_ivectors(work, tmp_path):
    """enroll --backend plda --average: each model is the length-normalised mean of its
    recordings' back-end vectors, count 1 (direct formula on extract-ivectors' output)."""
    from speaker.plda import load_backend
    d, common = work
    assert main(["enroll"] + _ubm_tv(d) + ["--backend", "plda", "--plda", str(d / "plda.npz"), "--average",
                                           "--enroll", str(FX / "enroll.txt"), "--out", str(tmp_path / "m.npz")]
                + common) == 0
    m = np.load(tmp_path / "m.npz")
    assert (m["counts"] == 1).all()
    spk, files = next(line.split(maxsplit=1) for line in (FX / "enroll.txt").read_text().splitlines()
                      if line and not line.startswith("#"))
    (tmp_path / "one.lst").write_text("\n".join(files.split()) + "\n")
    assert main(["extract-ivectors"] + _ubm_tv(d) + ["--list", str(tmp_path / "one.lst"), "--root", str(FX),
                                                     "--out", str(tmp_path / "iv.npz")] + common) == 0
    Z = load_backend(d / "plda.npz").transform(np.load(tmp_path / "iv.npz")["ivectors"]).mean(axis=0)
    row = list(m["speaker_ids"]).index(spk)
    np.testing.assert_allclose(m["means"][row], Z / np.linalg.norm(Z), rtol=1e-6, atol=1e-8)
