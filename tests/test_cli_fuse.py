"""speaker fuse: fusion weights against scikit-learn's prior-weighted logistic regression, the
fused scores against the weights applied with numpy, missing trials, and the output guards."""
import json
import math
import re

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from conftest import speaker_cli


def write_system(path, keys, scores, skip=()):
    path.write_text("".join(f"{m} {t} {s:.9f}\n" for (m, t), s in zip(keys, scores) if (m, t) not in skip))


@pytest.fixture
def dev(tmp_path):
    rng = np.random.default_rng(0)
    models = [f"spk{i}" for i in range(8)]
    tests = [(f"spk{i}", f"wav/{i}_{j}.wav") for i in range(8) for j in range(12)]
    keys = [(m, t) for _, t in tests for m in models]
    lab = np.array([m == s for s, t in tests for m in models])
    a = rng.normal(0, 1, lab.size) + 2.0 * lab
    b = 3 * (rng.normal(0, 1, lab.size) + 1.2 * lab) - 4 + 0.5 * a
    write_system(tmp_path / "A.txt", keys, a)
    write_system(tmp_path / "B.txt", keys, b, skip={keys[5], keys[17]})        # two trials missing from B
    (tmp_path / "trials.txt").write_text("".join(f"{m} {t} {'target' if l else 'nontarget'}\n"
                                                 for (m, t), l in zip(keys, lab)))
    keep = np.ones(lab.size, bool)
    keep[[5, 17]] = False
    return tmp_path, keys, np.column_stack([a, b]), lab, keep


def sklearn_fusion(X, lab, prior):
    n_tar, n_non = lab.sum(), (~lab).sum()
    w = np.where(lab, prior / n_tar, (1 - prior) / n_non) * lab.size
    lr = LogisticRegression(C=np.inf, tol=1e-12, max_iter=100_000).fit(X, lab, sample_weight=w)
    return lr.coef_[0], lr.intercept_[0] - math.log(prior / (1 - prior))


@pytest.mark.parametrize("prior", [0.5, 0.1])
def test_fit_and_apply_against_sklearn(dev, prior):
    d, keys, X, lab, keep = dev
    r = speaker_cli("fuse", "--scores", d / "A.txt", d / "B.txt", "--trials", d / "trials.txt",
                    "--out", d / "fusion.json", "--p-target", prior, "--names", "gmm", "plda", check=0)
    assert "skipped 2 trial(s)" in r.stderr and f"{keys[5][0]} {keys[5][1]}: not in {d / 'B.txt'}" in r.stderr
    doc = json.loads((d / "fusion.json").read_text())
    coef, bias = sklearn_fusion(X[keep], lab[keep], prior)
    # the formula printed is the fusion: 'llr = A * gmm + B * plda + C'
    num = r"(-?[0-9.]+(?:e[-+]?[0-9]+)?)"
    m = re.search(rf"fusion llr = {num} \* gmm \+ {num} \* plda \+ {num} at prior", r.stderr)
    assert m, r.stderr
    assert [float(g) for g in m.groups()] == pytest.approx([*coef, bias], rel=1e-4, abs=1e-5)
    assert doc["systems"] == ["gmm", "plda"] and doc["prior"] == prior
    assert [doc["a"], doc["terms"][0]["weight"]] == pytest.approx(coef, rel=1e-5)
    assert doc["b"] == pytest.approx(bias, rel=1e-5, abs=1e-6)

    # apply to "new" score files: every trial of A, one missing from B
    r = speaker_cli("fuse", "--apply", d / "fusion.json", "--scores", d / "A.txt", d / "B.txt",
                    "--out", d / "fused.txt", check=0)
    assert "skipped 2 trial(s)" in r.stderr
    rows = [line.split() for line in (d / "fused.txt").read_text().splitlines()]
    assert [(m, t) for m, t, _ in rows] == [k for k, ok in zip(keys, keep) if ok]
    got = np.array([float(s) for _, _, s in rows])
    assert got == pytest.approx(X[keep] @ coef + bias, rel=1e-4, abs=1e-4)


def test_one_score_file_is_a_calibration(dev):
    d, keys, X, lab, _ = dev
    speaker_cli("fuse", "--scores", d / "A.txt", "--trials", d / "trials.txt", "--out", d / "cal.json", check=0)
    doc = json.loads((d / "cal.json").read_text())
    coef, bias = sklearn_fusion(X[:, :1], lab, 0.5)
    assert doc["version"] == 1 and doc["a"] == pytest.approx(coef[0], rel=1e-5)  # what speaker calibrate writes
    assert doc["b"] == pytest.approx(bias, rel=1e-5, abs=1e-6)


def test_strict_and_refusals(dev):
    d, *_ = dev
    base = ["fuse", "--scores", d / "A.txt", d / "B.txt", "--trials", d / "trials.txt"]
    r = speaker_cli(*base, "--out", d / "f.json", "--strict", check=1)
    assert "--strict: 2 trial(s)" in r.stderr and not (d / "f.json").exists()
    speaker_cli(*base, "--out", d / "f.json", check=0)
    before = (d / "f.json").read_text()
    r = speaker_cli(*base, "--out", d / "f.json", check=1)
    assert "exists; give --overwrite" in r.stderr
    speaker_cli(*base, "--out", d / "f.json", "--overwrite", check=0)
    assert json.loads((d / "f.json").read_text()) == json.loads(before)
    (d / "folder").mkdir()
    r = speaker_cli(*base, "--out", d / "folder", "--overwrite", check=1)
    assert "not a regular file" in r.stderr
    r = speaker_cli(*base, "--out", d / "B.txt", "--overwrite", check=1)
    assert "refusing to overwrite an input" in r.stderr
    r = speaker_cli(*base, "--out", d / "g.json", "--names", "only_one", check=1)
    assert "1 --names for 2 score files" in r.stderr
    r = speaker_cli(*base, "--out", d / "g.json", "--names", "a b", "c", check=1)
    assert "name" in r.stderr
    r = speaker_cli(*base, "--apply", d / "f.json", "--out", d / "g.txt", check=1)
    assert "not both" in r.stderr
    r = speaker_cli("fuse", "--apply", d / "f.json", "--scores", d / "A.txt", "--out", d / "g.txt", check=1)
    assert "fuses 2 systems" in r.stderr
    (d / "bad.json").write_text('{"format": "gmmext-speaker-calibration", "version": 2, "a": 1}')
    r = speaker_cli("fuse", "--apply", d / "bad.json", "--scores", d / "A.txt", "--out", d / "g.txt", check=1)
    assert "not a fusion" in r.stderr and r.stderr.count("\n") == 1
    (d / "unlabelled.txt").write_text("spk0 wav/0_0.wav\n")
    r = speaker_cli("fuse", "--scores", d / "A.txt", "--trials", d / "unlabelled.txt", "--out", d / "g.json", check=1)
    assert "no trial has a label" in r.stderr
