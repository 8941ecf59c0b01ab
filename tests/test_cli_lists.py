"""speaker lists: the split read back with the project's list readers and checked against what it
must be (disjoint roles, counts by formula, the seed), Kaldi data directories, the output guards,
and the lists run end to end through train-ubm / enroll / score on the bundled recordings."""
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import FIX, speaker_cli
from speaker.lists import read_audio_list, read_enroll_list, read_scores, read_trials


def tree(root: Path, sizes: dict) -> Path:
    for spk, n in sizes.items():
        for i in range(n):
            f = root / spk / ("sub" if i % 2 else "") / f"rec{i:02d}.wav"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"")                  # the lists never read audio
    return root


SIZES = {**{f"spk{i}": 6 + i % 3 for i in range(10)}, "few": 3, "two words": 7}


def read_back(out: Path):
    ubm = [p for _, p in read_audio_list(out / "ubm.lst")]
    enrol = {s: [p for _, p in v] for s, v in read_enroll_list(out / "enroll.txt").items()}
    _, kaldi = read_trials(out / "trials.txt")
    _, vox = read_trials(out / "trials_vox.txt")
    return ubm, enrol, kaldi, vox, json.loads((out / "split.json").read_text())


def test_folder_split(tmp_path):
    src = tree(tmp_path / "rec", SIZES)
    (src / "spk0" / "notes.txt").write_text("not audio")
    r = speaker_cli("lists", "--folder", src, "--out", tmp_path / "out", "--seed", 3, check=0)
    assert "1 file(s)" in r.stderr and "two words" in r.stderr         # left out: no whitespace in ids
    ubm, enrol, kaldi, vox, split = read_back(tmp_path / "out")
    spk_of = lambda p: Path(p).relative_to(src).parts[0]                 # noqa: E731
    ubm_spk, dev = set(map(spk_of, ubm)), set(enrol)
    valid = set(SIZES) - {"two words"}
    assert ubm_spk | dev == valid and not ubm_spk & dev
    assert "few" in ubm_spk and len(ubm_spk - {"few"}) == round(0.5 * 10)     # too few to enrol and test
    assert sorted(ubm) == sorted(str(p) for p in src.rglob("*.wav") if spk_of(p) in ubm_spk)
    tests = {}
    for s in dev:
        assert len(enrol[s]) == 3 and {spk_of(p) for p in enrol[s]} == {s}
        tests[s] = sorted(str(p) for p in (src / s).rglob("*.wav") if str(p) not in enrol[s])
        assert len(tests[s]) == SIZES[s] - 3
    assert len(kaldi) == sum(map(len, tests.values())) * len(dev)
    per_test = Counter((t.test, t.label) for t in kaldi)
    for s in dev:
        for t in tests[s]:
            assert per_test[(t, True)] == 1 and per_test[(t, False)] == len(dev) - 1
    assert all(t.label == (t.model == spk_of(t.test)) for t in kaldi)
    assert [(t.label, t.test) for t in vox] == [(t.label, t.test) for t in kaldi]
    assert all(t.model == enrol[k.model][0] for t, k in zip(vox, kaldi))
    # written down: the same roles and recordings, the seed and the settings
    assert split["seed"] == 3 and split["settings"]["enroll_recordings"] == 3 and "random.Random(seed)" in split["rule"]
    assert set(split["speakers"]["dev"]) == dev and split["speakers"]["ubm_too_few_recordings"] == ["few"]
    assert split["enrol"]["dev"] == enrol and {s: sorted(v) for s, v in split["tests"]["dev"].items()} == tests
    assert split["trials"]["dev"] == {"target": sum(map(len, tests.values())),
                                      "nontarget": sum(map(len, tests.values())) * (len(dev) - 1)}
    assert "two words" in split["skipped_speakers"]

    # the same seed gives the same files; another seed another split
    speaker_cli("lists", "--folder", src, "--out", tmp_path / "again", "--seed", 3, "--quiet", check=0)
    speaker_cli("lists", "--folder", src, "--out", tmp_path / "other", "--seed", 4, "--quiet", check=0)
    for name in ("ubm.lst", "enroll.txt", "trials.txt", "trials_vox.txt"):
        assert (tmp_path / "again" / name).read_bytes() == (tmp_path / "out" / name).read_bytes()
    assert any((tmp_path / "other" / n).read_bytes() != (tmp_path / "out" / n).read_bytes()
               for n in ("ubm.lst", "enroll.txt"))


def test_eval_speakers_limits_and_sampled_nontargets(tmp_path):
    src = tree(tmp_path / "rec", {f"s{i:02d}": 8 for i in range(20)})
    speaker_cli("lists", "--folder", src, "--out", tmp_path / "out", "--ubm-fraction", 0.4, "--eval-fraction", 0.3,
                "--enroll-recordings", 2, "--max-tests", 4, "--nontargets-per-test", 3, "--quiet", check=0)
    split = json.loads((tmp_path / "out" / "split.json").read_text())
    assert [len(split["speakers"][g]) for g in ("ubm", "eval", "dev")] == [8, 6, 6]
    for tag, g in (("", "dev"), ("_eval", "eval")):
        _, trials = read_trials(tmp_path / "out" / f"trials{tag}.txt")
        assert Counter(t.label for t in trials) == {True: 6 * 4, False: 6 * 4 * 3}
        assert all(len(v) == 2 for v in read_enroll_list(tmp_path / "out" / f"enroll{tag}.txt").values())
        assert set(read_enroll_list(tmp_path / "out" / f"enroll{tag}.txt")) == set(split["speakers"][g])


def kaldi_dir(d: Path, with_utt2spk=True) -> Path:
    d.mkdir()
    utts = [(f"u{s}{i}", f"s{s}") for s in range(6) for i in range(5)]
    (d / "wav.scp").write_text("".join(f"{u} wav/{u}.flac\n" for u, _ in utts) + "orphan wav/orphan.flac\n")
    if with_utt2spk:
        (d / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in utts))
    else:
        (d / "spk2utt").write_text("".join(f"s{s} " + " ".join(f"u{s}{i}" for i in range(5)) + "\n" for s in range(6)))
    return d


def test_kaldi_data_directory(tmp_path):
    outs = []
    for name, utt2spk in (("a", True), ("b", False)):
        d = kaldi_dir(tmp_path / name, utt2spk)
        r = speaker_cli("lists", "--kaldi", d, "--out", tmp_path / f"out_{name}", "--enroll-recordings", 2, check=0)
        assert "orphan: no speaker" in r.stderr
        outs.append(tmp_path / f"out_{name}")
        ubm = read_audio_list(outs[-1] / "ubm.lst")
        assert all(p == str(d / "wav" / f"{u}.flac") for u, p in ubm)          # utterance ids, resolved paths
    for n in ("enroll.txt", "trials.txt"):                                       # utt2spk and spk2utt agree
        a, b = ((o / n).read_text().replace("/a/", "/X/").replace("/b/", "/X/") for o in outs)
        assert a == b
    (tmp_path / "a" / "segments").write_text("u00 rec 0 1\n")
    r = speaker_cli("lists", "--kaldi", tmp_path / "a", "--out", tmp_path / "out_c", check=1)
    assert "segments" in r.stderr and r.stderr.count("\n") == 1


def test_outputs_are_guarded(tmp_path):
    src = tree(tmp_path / "rec", {f"s{i}": 5 for i in range(4)})
    args = ["lists", "--folder", src, "--out", tmp_path / "out", "--quiet"]
    speaker_cli(*args, check=0)
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    r = speaker_cli(*args, "--seed", 9, check=1)
    assert "exists; give --overwrite" in r.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before
    speaker_cli(*args, "--seed", 9, "--overwrite", check=0)
    assert json.loads((tmp_path / "out" / "split.json").read_text())["seed"] == 9
    (tmp_path / "out" / "trials.txt").unlink()
    (tmp_path / "out" / "trials.txt").mkdir()
    r = speaker_cli(*args, "--overwrite", check=1)
    assert "not a regular file" in r.stderr
    r = speaker_cli("lists", "--folder", src, "--out", tmp_path / "o2", "--ubm-fraction", 0.75, check=1)
    assert "1 dev speaker(s): need at least 2" in r.stderr
    r = speaker_cli("lists", "--folder", src, "--out", tmp_path / "o3", "--ubm-fraction", 1.0, check=2)


@pytest.mark.long(4)
def test_lists_work_end_to_end(tmp_path):
    """A folder of the bundled recordings (one subfolder per speaker, links) -> speaker lists ->
    train-ubm, enroll, score with both trial styles: every trial scored, targets above non-targets."""
    src = tmp_path / "recordings"
    for f in sorted(FIX.glob("*.wav")):
        spk = f.stem.split("_")[1]
        (src / spk).mkdir(parents=True, exist_ok=True)
        (src / spk / f.name).symlink_to(f)
    lists, work = tmp_path / "lists", tmp_path / "work"
    speaker_cli("lists", "--folder", src, "--out", lists, "--enroll-recordings", 10, "--max-tests", 8, "--seed", 1,
                "--quiet", check=0)
    speaker_cli("train-ubm", "--list", lists / "ubm.lst", "--out", work / "ubm.npz", "--components", 8,
                "--sample-rate", 8000, "--iters", 3, "--quiet", check=0)
    speaker_cli("enroll", "--ubm", work / "ubm.npz", "--enroll", lists / "enroll.txt", "--out", work / "models.npz",
                "--quiet", check=0)
    for trials, extra in (("trials.txt", ["--models", work / "models.npz"]), ("trials_vox.txt", [])):
        speaker_cli("score", "--ubm", work / "ubm.npz", *extra, "--trials", lists / trials,
                    "--out", work / f"{trials}.scores", "--quiet", check=0)
        _, tr = read_trials(lists / trials)
        sc = read_scores(work / f"{trials}.scores")
        assert len(sc) == len(tr) == 3 * 8 * 3
        s = np.array([sc[(t.model, t.test)] for t in tr])
        lab = np.array([t.label for t in tr])
        assert s[lab].mean() > s[~lab].mean()
    r = speaker_cli("eval", "--scores", work / "trials.txt.scores", "--trials", lists / "trials.txt", check=0)
    assert "EER" in r.stdout + r.stderr
