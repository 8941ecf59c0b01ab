"""The store, verify, identify, calibrate, export/import and --norm commands, in process
(speaker.cli.main) on the audio fixtures."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from speaker import FeatureConfig, extract_features, llr, load_model
from speaker.cli import main
from speaker.gates import NO_GATE

FIX = Path(__file__).resolve().parent.parent / "audio_fixtures"
SPK = ["george", "jackson", "lucas"]
CFG = FeatureConfig(sample_rate=8000)


def files(spk, digits, takes):
    return [f"{d}_{spk}_{t}.wav" for d in digits for t in takes]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("store-cli")
    (d / "ubm.lst").write_text("".join(f"{f}\n" for s in SPK for f in files(s, range(10), [2])))
    (d / "enroll_a.txt").write_text("".join(f"{s} {' '.join(files(s, range(5), [0, 1]))}\n" for s in SPK))
    (d / "enroll_b.txt").write_text("".join(f"{s} {' '.join(files(s, range(5, 10), [0, 1]))}\n" for s in SPK))
    (d / "enroll.txt").write_text("".join(f"{s} {' '.join(files(s, range(10), [0, 1]))}\n" for s in SPK))
    (d / "trials.txt").write_text("".join(f"{m} {f} {'target' if m == s else 'nontarget'}\n"
                                          for s in SPK for f in files(s, range(10), [3]) for m in SPK))
    (d / "cohort.lst").write_text("".join(f"{f}\n" for f in files("nicolas", range(6), [2])
                                          + files("theo", range(6), [2])))
    assert main(["train-ubm", "--list", str(d / "ubm.lst"), "--root", str(FIX), "--out", str(d / "ubm.npz"),
                 "--components", "8", "--sample-rate", "8000", "--iters", "3", "--quiet"]) == 0
    return d


#: The quality gates off for the commands that apply them: these tests check the commands on
#: one-digit recordings (well under a second of speech); tests/test_decisions.py checks the gates.
UNGATED = {"enroll": ["--min-speech", "0", "--min-speaker-speech", "0"], "verify": ["--min-test-speech", "0"],
           "identify": ["--min-test-speech", "0"]}


def run(work, *args):
    args = [str(a) for a in args]
    if args[0] != "enroll" or "--store" in args:
        args += UNGATED.get(args[0], [])
    return main(args)


def enrol_store(work, name):
    db = work / name
    for part in ("enroll_a.txt", "enroll_b.txt"):
        assert run(work, "enroll", "--ubm", work / "ubm.npz", "--enroll", work / part, "--root", FIX,
                   "--store", db, "--quiet") == 0
    return db


def test_store_enrolment_in_two_steps_equals_enroll_out(work, capsys):
    db = enrol_store(work, "two.db")
    assert run(work, "enroll", "--ubm", work / "ubm.npz", "--enroll", work / "enroll.txt", "--root", FIX,
               "--out", work / "once.npz", "--quiet", "--overwrite") == 0
    assert run(work, "export", "--store", db, "--out", work / "exported.npz", "--quiet") == 0
    once, exported = load_model(work / "once.npz").speakers, load_model(work / "exported.npz").speakers
    assert sorted(once) == sorted(exported) == SPK
    for s in SPK:
        for attr in ("weights_", "means_", "covariances_"):
            assert np.array_equal(getattr(once[s], attr), getattr(exported[s], attr))
    capsys.readouterr()
    assert run(work, "speakers", "--store", db, "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["speaker"], r["recordings"]) for r in rows] == [(s, 20) for s in SPK]
    # the same list again adds nothing
    assert run(work, "enroll", "--ubm", work / "ubm.npz", "--enroll", work / "enroll_a.txt", "--root", FIX,
               "--store", db, "--quiet") == 0
    assert run(work, "speakers", "--store", db, "--json") == 0
    assert [r["recordings"] for r in json.loads(capsys.readouterr().out)] == [20] * 3
    assert run(work, "enroll", "--ubm", work / "ubm.npz", "--enroll", work / "enroll_a.txt", "--root", FIX,
               "--store", db, "--replace", "--quiet") == 0
    assert run(work, "speakers", "--store", db) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["id", "recordings", "frames"]
    assert [line.split()[:2] for line in out[1:]] == [[s, "10"] for s in SPK]
    assert run(work, "speakers", "--store", db, "--remove", "lucas", "--quiet") == 0
    assert run(work, "speakers", "--store", db, "--remove", "nobody", "--quiet") == 1
    assert run(work, "speakers", "--store", db, "--json") == 0
    assert [r["speaker"] for r in json.loads(capsys.readouterr().out)] == ["george", "jackson"]


def test_enroll_out_refuses_to_replace_a_file(work, capsys):
    target = work / "keep.npz"
    target.write_bytes(b"precious")
    assert run(work, "enroll", "--ubm", work / "ubm.npz", "--enroll", work / "enroll_a.txt", "--root", FIX,
               "--out", target, "--quiet") == 1
    assert "exists; give --overwrite" in capsys.readouterr().err and target.read_bytes() == b"precious"
    assert run(work, "enroll", "--ubm", work / "ubm.npz", "--enroll", work / "enroll_a.txt", "--root", FIX,
               "--out", target, "--quiet", "--overwrite") == 0
    assert load_model(target).kind == "speakers"
    assert run(work, "enroll", "--ubm", work / "ubm.npz", "--enroll", work / "enroll_a.txt", "--quiet") == 1


def test_verify_identify_score_and_calibrate(work, capsys):
    db = enrol_store(work, "v.db")
    ubm = load_model(work / "ubm.npz").ubm
    models = {s: m for s, m in load_model(work / "exported.npz").speakers.items()} if (work / "exported.npz").exists() \
        else None
    g, lu = FIX / "7_george_4.wav", FIX / "7_lucas_4.wav"
    capsys.readouterr()
    # not calibrated, no threshold: scores, no decisions, one line on stderr, exit status 3
    assert run(work, "verify", "--store", db, "--speaker", "george", g, lu) == 3
    out, err = capsys.readouterr()
    assert [x.split()[3] for x in out.splitlines()] == ["undecided", "undecided"]
    assert len(err.splitlines()) == 1 and "no calibration" in err and "exit status 3" in err
    assert run(work, "verify", "--store", db, "--speaker", "george", g, lu, "--threshold", 0) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [(x[0], x[1], x[3]) for x in lines] == [("george", str(g), "accept"), ("george", str(lu), "reject")]
    if models is not None:
        assert float(lines[0][2]) == pytest.approx(llr(models["george"], ubm, extract_features(g, config=CFG)), abs=1e-6)
    assert run(work, "verify", "--store", db, "--speaker", "george", g, work / "missing.wav", "--threshold", 0) == 1
    assert len(capsys.readouterr().out.splitlines()) == 1
    assert run(work, "verify", "--store", db, "--speaker", "nobody", g) == 1
    assert run(work, "verify", "--store", db, "--speaker", "george", g, "--p-target", "0.1") == 1   # not calibrated
    capsys.readouterr()
    assert run(work, "identify", "--store", db, g, lu, "--top", "2") == 3         # two candidates each, undecided
    out = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [x[:2] for x in out[::2]] == [[str(g), "george"], [str(lu), "lucas"]]
    assert [x[3] for x in out] == ["undecided"] * 4 and [x[0] for x in out] == [str(g)] * 2 + [str(lu)] * 2
    assert run(work, "identify", "--store", db, g, "--threshold", "100") == 0     # nobody passes: still listed
    f, spk, score, decision = capsys.readouterr().out.split()
    assert (f, spk, decision) == (str(g), "george", "reject") and float(score) < 100
    # score --store writes what score --models writes
    assert run(work, "export", "--store", db, "--out", work / "v.npz", "--quiet", "--overwrite") == 0
    assert run(work, "score", "--store", db, "--trials", work / "trials.txt", "--root", FIX, "--out",
               work / "s_store.txt", "--quiet") == 0
    assert run(work, "score", "--ubm", work / "ubm.npz", "--models", work / "v.npz", "--trials", work / "trials.txt",
               "--root", FIX, "--out", work / "s_models.txt", "--quiet") == 0
    assert (work / "s_store.txt").read_text() == (work / "s_models.txt").read_text()
    # calibrate into a file and the store; verify then prints the calibrated LLR
    assert run(work, "calibrate", "--scores", work / "s_store.txt", "--trials", work / "trials.txt", "--root", FIX,
               "--out", work / "cal.json", "--store", db, "--quiet") == 0
    cal = json.loads((work / "cal.json").read_text())
    capsys.readouterr()
    assert run(work, "verify", "--store", db, "--speaker", "george", g, "--p-target", "0.2") == 0
    spk, path, score, decision, value = capsys.readouterr().out.split()
    assert float(value) == pytest.approx(cal["a"] * float(score) + cal["b"], abs=1e-5)
    assert decision == ("accept" if float(value) >= np.log(4) else "reject")
    assert run(work, "eval", "--scores", work / "s_store.txt", "--trials", work / "trials.txt", "--root", FIX,
               "--calibration", work / "cal.json", "--json", "--target-far", "0.05") == 0
    m = json.loads(capsys.readouterr().out)
    assert {"cllr", "min_cllr", "act_dcf", "threshold_eer", "threshold_far"} <= set(m)
    assert m["min_cllr"] <= m["cllr"] and m["threshold_far_p_fa"] <= 0.05
    assert run(work, "eval", "--scores", work / "s_store.txt", "--trials", work / "trials.txt", "--root", FIX) == 0
    text = capsys.readouterr().out
    assert "Cllr (scores read as LLRs)" in text and "threshold at the EER" in text and "actual DCF" not in text


@pytest.mark.parametrize("top_c", [None, 3])
def test_verify_and_identify_print_the_same_score(work, capsys, top_c):
    """The score 'verify' prints for a speaker is the one 'identify' prints for it (one scoring
    path), and the library's own (SpeakerStore.verify), exact and top-C."""
    from speaker.store import SpeakerStore
    db = work / "same.db" if (work / "same.db").exists() else enrol_store(work, "same.db")
    tests = [FIX / "8_george_4.wav", FIX / "8_lucas_4.wav", FIX / "9_jackson_4.wav"]
    fast = ["--top-c", top_c] if top_c else []
    capsys.readouterr()
    assert run(work, "identify", "--store", db, *tests, "--top", len(SPK), "--threshold", -1e9, *fast) == 0
    listed = {}
    for line in capsys.readouterr().out.splitlines():
        f, spk, score, decision = line.split()
        listed.setdefault(f, {})[spk] = score
    with SpeakerStore(db, top_c=top_c, gate=NO_GATE) as st:
        for s in SPK:
            assert run(work, "verify", "--store", db, "--speaker", s, *tests, "--threshold", -1e9, *fast) == 0
            for line, f in zip(capsys.readouterr().out.splitlines(), tests):
                spk, path, score, _ = line.split()
                assert (spk, path) == (s, str(f)) and score == listed[str(f)][s]
                assert score == f"{st.verify(s, f, threshold=-1e9).score:.6f}"


def test_import_into_a_new_store(work, capsys):
    db = enrol_store(work, "i.db")
    assert run(work, "export", "--store", db, "--out", work / "i.npz", "--quiet", "--overwrite") == 0
    assert run(work, "import", "--store", work / "new.db", "--models", work / "i.npz", "--quiet") == 1  # no such store
    assert run(work, "import", "--store", work / "new.db", "--models", work / "i.npz", "--ubm", work / "ubm.npz",
               "--quiet") == 0
    capsys.readouterr()
    for store in (db, work / "new.db"):
        assert run(work, "verify", "--store", store, "--speaker", "jackson", FIX / "3_jackson_4.wav", "--threshold", 0) == 0
    a, b = capsys.readouterr().out.splitlines()
    assert a == b


def test_znorm_from_the_command_line_matches_a_direct_computation(work):
    assert run(work, "enroll", "--ubm", work / "ubm.npz", "--enroll", work / "enroll.txt", "--root", FIX,
               "--out", work / "z.npz", "--quiet", "--overwrite") == 0
    for norm in ("z", "t", "s", "as", "zt"):
        args = ["score", "--ubm", work / "ubm.npz", "--models", work / "z.npz", "--trials", work / "trials.txt",
                "--root", FIX, "--out", work / f"n_{norm}.txt", "--norm", norm, "--cohort", work / "cohort.lst",
                "--quiet"]
        assert run(work, *args, *(["--cohort-size", "5"] if norm == "as" else [])) == 0
    ubm = load_model(work / "ubm.npz").ubm
    models = load_model(work / "z.npz", ubm=ubm).speakers
    cohort = [extract_features(FIX / line, config=CFG) for line in (work / "cohort.lst").read_text().split()]
    from speaker.adapt import map_adapt
    cohort_models = [map_adapt(ubm, X) for X in cohort]
    rows = [line.split() for line in (work / "n_z.txt").read_text().splitlines()]
    rows_t = {(r[0], r[1]): float(r[2]) for r in (line.split() for line in (work / "n_t.txt").read_text().splitlines())}
    rows_as = {(r[0], r[1]): float(r[2]) for r in (line.split() for line in (work / "n_as.txt").read_text().splitlines())}
    read = lambda name: {(r[0], r[1]): float(r[2]) for r in (line.split() for line in  # noqa: E731
                                                                 (work / name).read_text().splitlines())}
    rows_s, rows_zt, rows_z = read("n_s.txt"), read("n_zt.txt"), read("n_z.txt")
    for key, v in rows_s.items():
        assert v == pytest.approx((rows_z[key] + rows_t[key]) / 2, abs=2e-6)
    half = len(cohort) // 2                          # ZT: first half T models, second half Z tests
    t_z = []
    for c in cohort_models[:half]:
        own = np.array([llr(c, ubm, C) for C in cohort[half:]])
        t_z.append((own.mean(), own.std()))
    for m, test, value in rows[::7]:
        X = extract_features(FIX / test, config=CFG)
        raw = llr(models[m], ubm, X)
        zc = np.array([llr(models[m], ubm, C) for C in cohort])
        tc = np.array([llr(c, ubm, X) for c in cohort_models])
        assert float(value) == pytest.approx((raw - zc.mean()) / zc.std(), abs=1e-5)
        assert rows_t[(m, test)] == pytest.approx((raw - tc.mean()) / tc.std(), abs=1e-5)
        zz = zc[half:]
        tn = np.array([(tc[j] - m_) / s_ for j, (m_, s_) in enumerate(t_z)])
        assert rows_zt[(m, test)] == pytest.approx(((raw - zz.mean()) / zz.std() - tn.mean()) / tn.std(), abs=1e-5)
        z5, t5 = np.sort(zc)[-5:], np.sort(tc)[-5:]
        assert rows_as[(m, test)] == pytest.approx(((raw - z5.mean()) / z5.std() + (raw - t5.mean()) / t5.std()) / 2,
                                                   abs=1e-5)


@pytest.mark.parametrize("command", ["speakers", "verify", "identify", "calibrate", "export", "import", "cohort",
                                     "store-info"])
def test_help_for_every_new_command(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: speaker " + command) and len(out) > 300


def test_store_of_another_ubm_is_refused(work, capsys):
    db = enrol_store(work, "other.db")
    assert run(work, "train-ubm", "--list", work / "ubm.lst", "--root", FIX, "--out", work / "ubm2.npz",
               "--components", "4", "--sample-rate", "8000", "--iters", "2", "--quiet") == 0
    capsys.readouterr()
    assert run(work, "score", "--store", db, "--ubm", work / "ubm2.npz", "--trials", work / "trials.txt", "--root",
               FIX, "--out", work / "never.txt", "--quiet") == 1
    err = capsys.readouterr().err
    assert "bound to another UBM" in err and "Traceback" not in err and not (work / "never.txt").exists()
    assert run(work, "enroll", "--ubm", work / "ubm2.npz", "--enroll", work / "enroll_a.txt", "--root", FIX,
               "--store", db, "--quiet") == 1
    err = capsys.readouterr().err
    # the message names both UBMs by the fingerprint their files carry, and the command that tells them apart
    stored, given = load_model(work / "ubm.npz").ubm_fingerprint, load_model(work / "ubm2.npz").ubm_fingerprint
    assert f"bound to another UBM (fingerprint {stored}), not the given one (fingerprint {given})" in err
    assert f"'speaker store-info --store {db} --ubm FILE ...'" in err and len(err.strip().splitlines()) == 1
    assert run(work, "import", "--store", db, "--ubm", work / "ubm2.npz", "--models", work / "ubm2.npz") == 1
    assert "speaker store-info" in capsys.readouterr().err
    (work / "garbage.db").write_bytes(b"\x00junk" * 500)
    assert run(work, "speakers", "--store", work / "garbage.db") == 1
    assert "not a usable speaker store" in capsys.readouterr().err


def test_the_store_keeps_the_cohort(work, capsys):
    """speaker cohort --store --add; score --store --norm without --cohort uses it, and the scores
    are speaker.score_norm's formulas on cohort scores computed here with speaker.llr."""
    from speaker.adapt import map_adapt
    from speaker.score_norm import as_norm, snorm, tnorm, znorm, ztnorm
    db = enrol_store(work, "cohort.db")
    common = ["score", "--store", db, "--trials", work / "trials.txt", "--root", FIX, "--quiet"]
    assert run(work, *common, "--out", work / "never.txt", "--norm", "z") == 1          # no cohort yet
    assert "a cohort of at least 3 recordings kept in" in capsys.readouterr().err
    assert run(work, "cohort", "--store", db, "--add", work / "cohort.lst", "--root", FIX, "--quiet") == 0
    assert run(work, "cohort", "--store", db, "--add", work / "cohort.lst", "--root", FIX) == 0    # adds nothing
    assert "added 0 cohort recording(s)" in capsys.readouterr().err
    assert run(work, "cohort", "--store", db, "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    names = (work / "cohort.lst").read_text().split()
    assert [r["recording"] for r in listed] == names
    for norm in ("z", "t", "zt", "s", "as"):
        size = ["--cohort-size", "5"] if norm == "as" else []
        assert run(work, *common, "--out", work / f"c_{norm}.txt", "--norm", norm, *size) == 0
        assert run(work, *common, "--out", work / f"l_{norm}.txt", "--norm", norm, *size,
                   "--cohort", work / "cohort.lst") == 0
        assert (work / f"c_{norm}.txt").read_text() == (work / f"l_{norm}.txt").read_text()
    assert run(work, "export", "--store", db, "--out", work / "cohort_models.npz", "--quiet", "--overwrite") == 0
    ubm = load_model(work / "ubm.npz").ubm
    models = load_model(work / "cohort_models.npz", ubm=ubm).speakers
    cohort = [extract_features(FIX / n, config=CFG) for n in names]
    cmodels = [map_adapt(ubm, X) for X in cohort]
    read = lambda norm: [(r[0], r[1], float(r[2])) for r in  # noqa: E731
                         (line.split() for line in (work / f"c_{norm}.txt").read_text().splitlines())]
    rows = read("z")[::5]
    tests = [extract_features(FIX / t, config=CFG) for _, t, _ in rows]
    raw = np.array([llr(models[m], ubm, X) for (m, _, _), X in zip(rows, tests)])
    E = np.array([[llr(models[m], ubm, C) for C in cohort] for m, _, _ in rows])
    T = np.array([[llr(c, ubm, X) for c in cmodels] for X in tests])
    half = len(cohort) // 2
    TZ = np.array([[llr(c, ubm, C) for C in cohort[half:]] for c in cmodels[:half]])
    want = {"z": znorm(raw, E), "t": tnorm(raw, T), "s": snorm(raw, E, T), "as": as_norm(raw, E, T, top_n=5),
            "zt": ztnorm(raw, E[:, half:], T[:, :half], TZ)}
    for norm, expected in want.items():
        got = {(m, t): v for m, t, v in read(norm)}
        assert np.allclose([got[(m, t)] for m, t, _ in rows], expected, atol=1e-5), norm
    assert run(work, "cohort", "--store", db, "--remove", names[0], "nobody", "--quiet") == 1   # nobody: unknown
    assert run(work, "cohort", "--store", db, "--json") == 0                        # all or nothing
    assert [r["recording"] for r in json.loads(capsys.readouterr().out)] == names
    assert run(work, "cohort", "--store", db, "--remove", names[0], "--quiet") == 0
    assert run(work, "cohort", "--store", db, "--json") == 0
    assert [r["recording"] for r in json.loads(capsys.readouterr().out)] == names[1:]
    assert run(work, "cohort", "--store", db, "--clear", "--quiet") == 0
    assert run(work, "cohort", "--store", db) == 0
    assert capsys.readouterr().out == ""


def test_commands_take_a_postgresql_url(work, postgres_server, capsys):
    """--store postgresql://...: the same commands, the same results as a SQLite file."""
    url, lite = postgres_server.new_database(), enrol_store(work, "pg_twin.db")
    for part in ("enroll_a.txt", "enroll_b.txt"):
        assert run(work, "enroll", "--ubm", work / "ubm.npz", "--enroll", work / part, "--root", FIX,
                   "--store", url, "--quiet") == 0
    assert run(work, "enroll", "--ubm", work / "ubm.npz", "--enroll", work / "enroll.txt", "--root", FIX,
               "--out", work / "pg_once.npz", "--quiet", "--overwrite") == 0
    assert run(work, "export", "--store", url, "--out", work / "pg_exported.npz", "--quiet", "--overwrite") == 0
    once, exported = load_model(work / "pg_once.npz").speakers, load_model(work / "pg_exported.npz").speakers
    assert all(np.array_equal(once[s].means_, exported[s].means_) for s in SPK)
    capsys.readouterr()
    for store in (url, lite):
        assert run(work, "verify", "--store", store, "--speaker", "lucas", FIX / "7_lucas_4.wav", FIX / "7_theo_4.wav",
                   "--threshold", 0) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == out[2:] and len(out) == 4
    assert run(work, "speakers", "--store", url, "--json") == 0
    assert [(r["speaker"], r["recordings"]) for r in json.loads(capsys.readouterr().out)] == [(s, 20) for s in SPK]
    assert run(work, "speakers", "--store", postgres_server.url("no_such_db")) == 1
    err = capsys.readouterr().err
    assert "cannot connect" in err and "Traceback" not in err


def test_top_c_is_top_c_scoring_in_score_verify_and_identify(work, capsys):
    """--top-c C gives speaker.llr(..., top_c=C) in score, verify and identify; without it, exact scores."""
    db = enrol_store(work, "topc.db")
    assert run(work, "export", "--store", db, "--out", work / "topc.npz", "--quiet", "--overwrite") == 0
    ubm = load_model(work / "ubm.npz").ubm
    george = load_model(work / "topc.npz", ubm=ubm).speakers["george"]
    g = FIX / "7_george_3.wav"
    X = extract_features(g, config=CFG)
    assert llr(george, ubm, X, top_c=2) != pytest.approx(llr(george, ubm, X), abs=1e-4)   # the option matters
    for c in (None, 2):
        opt = [] if c is None else ["--top-c", c]
        want = llr(george, ubm, X, top_c=c)
        capsys.readouterr()
        assert run(work, "verify", "--store", db, "--speaker", "george", g, "--threshold", "0", *opt) == 0
        assert float(capsys.readouterr().out.split()[2]) == pytest.approx(want, abs=1e-6)
        assert run(work, "identify", "--store", db, g, "--top", "3", "--threshold=-1e9", *opt) == 0
        items = capsys.readouterr().out.split()[1:]
        assert float(dict(zip(items[::2], items[1::2]))["george"]) == pytest.approx(want, abs=1e-6)
        out = work / f"topc_{c}.txt"
        assert run(work, "score", "--ubm", work / "ubm.npz", "--models", work / "topc.npz", "--trials",
                   work / "trials.txt", "--root", FIX, "--out", out, "--quiet", *opt) == 0
        rows = {(m, t): float(v) for m, t, v in (line.split() for line in out.read_text().splitlines())}
        assert rows[("george", "7_george_3.wav")] == pytest.approx(want, abs=1e-6)


def test_as_norm_with_a_small_cohort_says_it_is_s_norm(work, capsys):
    """The cohort (12 recordings) is no larger than the AS-norm size: one note on stderr, and the
    scores are the s-norm scores."""
    assert run(work, "enroll", "--ubm", work / "ubm.npz", "--enroll", work / "enroll.txt", "--root", FIX,
               "--out", work / "asn.npz", "--quiet", "--overwrite") == 0
    common = ["score", "--ubm", work / "ubm.npz", "--models", work / "asn.npz", "--trials", work / "trials.txt",
              "--root", FIX, "--cohort", work / "cohort.lst"]
    capsys.readouterr()
    for norm, size, note in (("as", [], True), ("as", ["--cohort-size", "12"], True), ("as", ["--cohort-size", "5"], False),
                             ("s", [], False)):
        assert run(work, *common, "--out", work / f"asn_{norm}{''.join(size[1:])}.txt", "--norm", norm,
                   *size) == 0
        err = capsys.readouterr().err
        notes = [line for line in err.splitlines() if line.startswith("note: --norm as")]
        assert len(notes) == (1 if note else 0), err
        if note:
            assert "the cohort has 12 recordings, so it equals --norm s here" in notes[0]
    assert (work / "asn_as.txt").read_text() == (work / "asn_s.txt").read_text()
    assert (work / "asn_as12.txt").read_text() == (work / "asn_s.txt").read_text()
    assert (work / "asn_as5.txt").read_text() != (work / "asn_s.txt").read_text()


def test_store_info_shows_and_exports_the_stores_ubm(work, capsys):
    db = enrol_store(work, "info.db")
    assert run(work, "train-ubm", "--list", work / "ubm.lst", "--root", FIX, "--out", work / "ubm_other.npz",
               "--components", "4", "--sample-rate", "8000", "--iters", "2", "--quiet") == 0
    capsys.readouterr()
    assert run(work, "store-info", "--store", db, "--json", "--ubm", work / "ubm.npz", work / "ubm_other.npz",
               work / "trials.txt", "--export-ubm", work / "exported_ubm.npz") == 0
    info = json.loads(capsys.readouterr().out)
    mine, other = load_model(work / "ubm.npz"), load_model(work / "ubm_other.npz")
    assert info["ubm_fingerprint"] == mine.ubm_fingerprint != other.ubm_fingerprint     # as written by train-ubm
    assert (info["ubm_components"], info["n_speakers"], info["n_cohort"]) == (8, 3, 0)
    files = info["ubm_files"]
    assert files[str(work / "ubm.npz")] == {"kind": "ubm", "fingerprint": mine.ubm_fingerprint, "is_store_ubm": True}
    assert files[str(work / "ubm_other.npz")]["is_store_ubm"] is False
    assert "error" in files[str(work / "trials.txt")]
    exported = load_model(work / "exported_ubm.npz")
    assert exported.kind == "ubm" and exported.config == mine.config
    for attr in ("weights_", "means_", "covariances_"):
        assert np.array_equal(getattr(exported.ubm, attr), getattr(mine.ubm, attr))
    assert run(work, "store-info", "--store", db, "--export-ubm", work / "exported_ubm.npz") == 1     # exists
    assert "--overwrite" in capsys.readouterr().err
    assert run(work, "store-info", "--store", db, "--ubm", work / "ubm_other.npz") == 0
    out = capsys.readouterr().out
    assert f"UBM fingerprint  {mine.ubm_fingerprint}" in out and "another UBM (this store refuses it)" in out
    assert run(work, "store-info", "--store", work / "no_such.db") == 1 and not (work / "no_such.db").exists()


def _unquoted_options(text: str) -> set[str]:
    """The options a message tells to give to the command itself (not inside a quoted command)."""
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", re.sub(r"'[^']*'", "", text)))


def test_every_remedy_the_undecided_message_names_works(work, capsys):
    """Without a calibration the message named '--target-far F' beside --threshold, but a decision
    at a target false-accept rate needs a calibration's non-target trials: verify refused it."""
    from speaker.calibration import NO_RULE
    db = enrol_store(work, "remedies.db")
    g = FIX / "7_george_4.wav"
    capsys.readouterr()
    assert run(work, "verify", "--store", db, "--speaker", "george", g) == 3
    err = capsys.readouterr().err
    value = {"--threshold": "0", "--target-far": "0.01", "--p-target": "0.01"}
    for text in (err, NO_RULE):                      # the command line's line, the result's reason
        named = _unquoted_options(text)
        assert named and named <= set(value), text
        for opt in named:
            assert run(work, "verify", "--store", db, "--speaker", "george", g, opt, value[opt]) == 0, opt
    assert run(work, "verify", "--store", db, "--speaker", "george", g, "--target-far", "0.01") == 1


def test_a_missing_store_says_how_to_create_it(work, capsys):
    """Commands that cannot create a store said 'give the UBM to create one', which they have no
    option for; the message now names the command that creates it, or this command's --ubm."""
    missing = work / "missing.db"
    capsys.readouterr()
    assert run(work, "calibrate", "--store", missing, "--from-enrollments") == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "no such speaker store" in err and "'speaker enroll --ubm UBM" in err, err
    assert _unquoted_options(err) == set() and not missing.exists()
    assert run(work, "export", "--store", missing, "--out", work / "x.npz") == 1
    assert "'speaker enroll --ubm UBM" in capsys.readouterr().err
    assert run(work, "import", "--store", missing, "--models", work / "none.npz") == 1
    err = capsys.readouterr().err
    assert "give --ubm UBM to create it" in err and not missing.exists(), err
