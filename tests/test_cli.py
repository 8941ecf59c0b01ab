"""The `speaker` command line on the audio fixtures.

The commands run in this process (``speaker.cli.main``, see conftest.speaker_cli): a fresh
interpreter per command cost seconds each. What only a process can show (the installed console
script, its exit status) is tested with ``speaker_process``."""
import json
import shutil

import numpy as np
import pytest

from conftest import CLI_SPEAKERS as SPEAKERS, FIX, speaker_cli as run, speaker_process

COMMANDS = ["train-ubm", "enroll", "score", "eval", "extract", "demo"]


@pytest.fixture
def lists(cli_lists):
    return cli_lists


@pytest.fixture
def trained(cli_trained):
    return cli_trained


@pytest.mark.parametrize("command", COMMANDS)
def test_help_for_every_command(command):
    p = run(command, "--help", check=0)
    assert p.stdout.startswith("usage: speaker " + command)
    assert len(p.stdout) > 200


def test_console_script_help_and_usage_exit_status():
    """The installed `speaker` script itself: --help exits 0, bad usage exits 2."""
    p = speaker_process("--help", check=0)
    assert p.stdout.startswith("usage: speaker") and all(c in p.stdout for c in COMMANDS)
    p = speaker_process("train-ubm", "--list", "x", "--out", "y", "--components", "0", check=2)
    assert "components" in p.stderr and "Traceback" not in p.stderr


def test_usage_errors_exit_2():
    assert run().returncode == 2
    assert run("bogus").returncode == 2
    assert run("train-ubm", "--list", "x").returncode == 2            # missing required options
    p = run("train-ubm", "--list", "x", "--out", "y", "--components", "0")
    assert p.returncode == 2 and "components" in p.stderr


def test_kaldi_recipe_end_to_end(trained, lists, tmp_path):
    scores = tmp_path / "scores.txt"
    run("score", "--ubm", trained / "ubm.npz", "--models", trained / "models.npz", "--trials",
        lists / "trials.txt", "--root", FIX, "--out", scores, "--top-c", 4, "--quiet", check=0)
    rows = [line.split() for line in scores.read_text().splitlines()]
    trials = [line.split() for line in (lists / "trials.txt").read_text().splitlines()]
    assert [r[:2] for r in rows] == [t[:2] for t in trials]          # trial order kept
    s = np.array([float(r[2]) for r in rows])
    tar = np.array([t[2] == "target" for t in trials])
    assert s[tar].mean() > s[~tar].mean()
    p = run("eval", "--scores", scores, "--trials", lists / "trials.txt", "--json", check=0)
    m = json.loads(p.stdout)
    assert m["n_trials"] == 90 and m["n_target"] == 30
    assert 0 <= m["eer"] < 0.3                                          # far below chance (0.5)
    p = run("eval", "--scores", scores, "--trials", lists / "trials.txt", "--det", tmp_path / "det.png", check=0)
    assert "EER" in p.stdout and "minDCF SRE08" in p.stdout
    assert (tmp_path / "det.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_voxceleb_trials(trained, lists, tmp_path):
    out = tmp_path / "vox.txt"
    run("score", "--ubm", trained / "ubm.npz", "--trials", lists / "vox.txt", "--root", FIX,
        "--out", out, "--quiet", check=0)
    rows = [line.split() for line in out.read_text().splitlines()]
    assert len(rows) == 18 and rows[0][:2] == ["1_george_0.wav", "1_george_4.wav"]
    p = run("eval", "--scores", out, "--trials", lists / "vox.txt", "--root", FIX, "--json", check=0)
    assert json.loads(p.stdout)["n_target"] == 6


def test_scp_lists_and_extract(trained, lists, tmp_path):
    run("train-ubm", "--list", lists / "wav.scp", "--out", tmp_path / "u.npz", "--components", 4,
        "--sample-rate", 8000, "--iters", 2, "--quiet", check=0)
    # trials naming utterances by id through --scp
    (tmp_path / "t.txt").write_text("george utt_george_3 target\njackson utt_george_3 nontarget\n")
    run("score", "--ubm", trained / "ubm.npz", "--models", trained / "models.npz", "--trials",
        tmp_path / "t.txt", "--scp", lists / "wav.scp", "--out", tmp_path / "s.txt", "--quiet", check=0)
    assert (tmp_path / "s.txt").read_text().split()[:2] == ["george", "utt_george_3"]
    # precomputed features: .npy folder and Kaldi ark, both usable as lists
    run("extract", "--list", lists / "wav.scp", "--out", tmp_path / "feats", "--sample-rate", 8000,
        "--quiet", check=0)
    lst = (tmp_path / "feats" / "feats.lst").read_text().splitlines()
    assert len(lst) == 30 and lst[0].endswith(".npy")
    run("train-ubm", "--list", tmp_path / "feats" / "feats.lst", "--out", tmp_path / "u2.npz",
        "--components", 4, "--iters", 2, "--quiet", check=0)
    run("extract", "--list", lists / "wav.scp", "--ark", tmp_path / "feats.ark", "--sample-rate", 8000,
        "--quiet", check=0)
    import kaldiio
    ark = dict(kaldiio.load_scp(str(tmp_path / "feats.scp")))
    npy = np.load(tmp_path / "feats" / "utt_george_0.npy")
    np.testing.assert_allclose(ark["utt_george_0"], npy)
    run("train-ubm", "--list", tmp_path / "feats.scp", "--out", tmp_path / "u3.npz",
        "--components", 4, "--iters", 2, "--quiet", check=0)


def test_malformed_lists_name_file_and_line(trained, tmp_path):
    bad = tmp_path / "bad_trials.txt"
    bad.write_text("george 0_george_3.wav target\n\njackson 0_george_3.wav maybe\n")
    p = run("score", "--ubm", trained / "ubm.npz", "--models", trained / "models.npz", "--trials", bad,
            "--root", FIX, "--out", tmp_path / "s.txt", check=1)
    assert f"{bad}:3:" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "s.txt").exists()
    enr = tmp_path / "enroll.txt"
    enr.write_text("george 0_george_0.wav\nlonely\n")
    p = run("enroll", "--ubm", trained / "ubm.npz", "--enroll", enr, "--root", FIX, "--out", tmp_path / "m.npz", check=1)
    assert f"{enr}:2:" in p.stderr
    p = run("enroll", "--ubm", tmp_path / "missing.npz", "--enroll", enr, "--out", tmp_path / "m.npz", check=1)
    assert "missing.npz" in p.stderr and "Traceback" not in p.stderr


def test_corrupt_audio_is_skipped_and_reported(trained, tmp_path):
    for s in SPEAKERS:
        shutil.copy(FIX / f"3_{s}_3.wav", tmp_path)
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    trials = tmp_path / "trials.txt"
    trials.write_text("".join(f"{m} {t} {'target' if t.startswith('3_' + m) else 'nontarget'}\n"
                              for t in ["3_george_3.wav", "broken.wav", "3_lucas_3.wav"] for m in SPEAKERS))
    out = tmp_path / "scores.txt"
    p = run("score", "--ubm", trained / "ubm.npz", "--models", trained / "models.npz", "--trials", trials,
            "--out", out, check=0)
    assert "broken.wav" in p.stderr and "skipped 3 trial" in p.stderr
    rows = out.read_text().splitlines()
    assert len(rows) == 6 and not any("broken" in r for r in rows)
    p = run("score", "--ubm", trained / "ubm.npz", "--models", trained / "models.npz", "--trials", trials,
            "--out", tmp_path / "strict.txt", "--strict", check=1)
    # one bad file and its three trials, each counted as what it is (was '4 input(s)')
    assert "--strict: 1 input(s) could not be used and 3 trial(s) were skipped" in p.stderr
    assert not (tmp_path / "strict.txt").exists()
    # train-ubm: a corrupt file in the middle of the list is skipped, the rest is used
    (tmp_path / "ubm.lst").write_text("3_george_3.wav\nbroken.wav\n3_lucas_3.wav\n3_jackson_3.wav\n")
    p = run("train-ubm", "--list", tmp_path / "ubm.lst", "--out", tmp_path / "u.npz", "--components", 2,
            "--sample-rate", 8000, "--iters", 2, check=0)
    assert "broken.wav" in p.stderr and "from 3 files" in p.stderr
    # nothing usable at all: exit 1, no output file
    (tmp_path / "only_bad.lst").write_text("broken.wav\n")
    p = run("train-ubm", "--list", tmp_path / "only_bad.lst", "--out", tmp_path / "none.npz",
            "--components", 2, check=1)
    assert "no usable audio" in p.stderr and not (tmp_path / "none.npz").exists()


def test_demo_end_to_end(tmp_path):
    p = run("demo", "--out", tmp_path, "--quiet", check=0)
    assert p.stdout.count("EER (ROCCH)") == 2
    eer = float(p.stdout.split("EER (ROCCH)")[1].split("%")[0])
    assert eer < 20.0                                                   # chance is 50 %
    assert (tmp_path / "ubm.npz").exists() and (tmp_path / "scores.txt").exists()


def test_demo_step_lines_name_the_files_where_they_end_up(tmp_path):
    """Each step's result line named the hidden staging folder ('-> OUT/.speaker-demo-x/ubm.npz'),
    a path that is gone when the demo ends: it names OUT/ubm.npz, as the recipe lines do."""
    p = run("demo", "--out", tmp_path, "--components", 4, check=0)
    results = [line.rsplit("-> ", 1)[1] for line in p.stderr.splitlines() if "-> " in line]
    assert results == [str(tmp_path / name) for name in
                       ("ubm.npz", "models.npz", "scores.txt", "scores_vox.txt")], p.stderr
    assert ".speaker-demo-" not in p.stderr + p.stdout
    assert all((tmp_path / name).is_file() for name in ("ubm.npz", "models.npz", "scores.txt"))


def test_demo_with_a_ubm_smaller_than_its_top_c(tmp_path):
    """'demo --components 4' failed at its score step: it asked for the top 5 of 4 components."""
    from speaker.cli.demo import fixtures_dir
    run("demo", "--out", tmp_path, "--components", 4, "--quiet", check=0)
    for scores, trials in (("scores.txt", "trials.txt"), ("scores_vox.txt", "trials_vox.txt")):
        lines = (fixtures_dir() / trials).read_text().splitlines()
        n_trials = sum(1 for line in lines if line.strip() and not line.startswith("#"))
        assert len((tmp_path / scores).read_text().splitlines()) == n_trials
