"""Decisions one can trust by default (docs/store.md): no accept without a calibration or a
threshold, self-calibration from the store's own enrolments, kept calibrations, decisions at a
target false-accept rate, quality gates, open-set candidates, format-1 stores upgraded.

References are independent of the code under test: MAP from the remaining recordings' audio
(``speaker.map_adapt`` on features extracted again), scikit-learn's ``LogisticRegression`` with
the prior weights, Clopper-Pearson intervals by root-finding on ``scipy.stats.binom.cdf``, counts
made with NumPy, exhaustive threshold searches."""
from __future__ import annotations

import json
import math
import sqlite3

import numpy as np
import pytest

from conftest import FIX, speaker_cli
from speaker import extract_features, llr, map_adapt
from speaker.calibration import Calibration, far_threshold, rate_interval
from speaker.gates import DEFAULT_GATE, NO_GATE, Gate
from speaker.store import EnrolmentRefused, SpeakerStore, StoreError

from test_store import recs, ubm  # noqa: F401  (the same small UBM fixture and synthetic recordings)


def population(st, n_speakers=12, n_rec=3, seed=0):
    data = {f"s{i:02d}": recs(seed + i, n=n_rec + 1, shift=1.0) for i in range(n_speakers)}
    for i, r in data.items():
        st.enroll(i, r[:n_rec])
    return data


# ---------------------------------------------------------------------------- no rule, no accept
def test_an_uncalibrated_store_never_accepts(tmp_path, ubm):
    st = SpeakerStore(tmp_path / "s.db", ubm, gate=NO_GATE)
    data = population(st, n_speakers=4)
    for i, r in data.items():
        for test in (r[-1], data["s00"][-1]):
            v = st.verify(i, test)
            assert (v.decision, v.accept, v.threshold, v.llr) == ("undecided", False, None, None)
            assert st.identify(test, n=4) == []
            assert {m.decision for m in st.candidates(test, n=4)} == {"undecided"}
    # a rule: a threshold or a calibration; the score is the same number either way
    v = st.verify("s01", data["s01"][-1], threshold=-1e9)
    assert v.decision == "accept" and v.score == st.verify("s01", data["s01"][-1]).score
    st.calibration = Calibration(1.0, 0.0)
    assert st.verify("s01", data["s01"][-1]).decision in ("accept", "reject")
    st.calibration = None                                     # back to none: undecided again
    assert st.verify("s01", data["s01"][-1]).decision == "undecided"
    with pytest.raises(ValueError, match="needs a calibration"):
        st.verify("s01", data["s01"][-1], target_far=0.01)


def test_a_test_with_too_little_speech_is_undecided_whatever_the_rule(tmp_path, ubm):
    st = SpeakerStore(tmp_path / "s.db", ubm, gate=NO_GATE)
    r = recs(1, n=3)
    st.enroll("a", r[:2])
    gate = NO_GATE.with_min_speech(test=1.0)                  # 100 frames of 10 ms
    short, ok = r[2][:99], r[2][:100]
    v = st.verify("a", short, threshold=-1e9, gate=gate)
    assert v.decision == "undecided" and v.reason.startswith("insufficient speech") and not v.accept
    assert st.verify("a", ok, threshold=-1e9, gate=gate).decision == "accept"
    assert st.identify(short, threshold=-1e9, gate=gate) == []
    m, = st.candidates(short, threshold=-1e9, gate=gate)
    assert m.decision == "undecided" and "insufficient speech" in m.reason


# ---------------------------------------------------------------------------- quality gates
def test_enrolment_gates_refuse_short_recordings_and_speakers_saying_why(tmp_path, ubm):
    gate = NO_GATE.with_min_speech(recording=1.0, speaker=3.0)
    st = SpeakerStore(tmp_path / "s.db", ubm, gate=gate)
    r = recs(2, n=3, frames=120)                              # 1.2, 1.3, 1.4 s
    short = r[0][:80]                                         # 0.8 s
    res = st.enroll("a", [short, *r])
    assert res.added == ["<array>"] * 3 and res.refused == {"<array>": "insufficient_speech"}
    assert res.skipped["<array>"] == "insufficient speech: 0.80 s of net speech, at least 1 s needed"
    assert res.speech_seconds == pytest.approx(sum(len(x) for x in r) / 100)
    with pytest.raises(EnrolmentRefused, match=r"'b' not enrolled: insufficient speech: 2\.50 s of net speech in 2 "):
        st.enroll("b", recs(3, n=2, frames=120))
    assert "b" not in st                                      # nothing written
    # the quality measures are kept per recording, the net speech summed per speaker
    kept = st.kept_recordings("a")
    assert [k.speech_seconds for k in kept] == pytest.approx([len(x) / 100 for x in r])
    assert all(k.quality is None for k in kept)                          # features: no samples to measure
    assert st.speakers("a")[0].speech_seconds == pytest.approx(res.speech_seconds)


def test_clipped_and_noise_only_audio_is_refused_and_measures_are_kept(tmp_path, cli_trained):
    """Real audio: digits joined into a 3-s recording (kept, with its measures), the same
    clipped, and white noise (refused, saying which gate and why); the service answers 422."""
    import soundfile as sf
    y = np.concatenate([sf.read(FIX / f"{dg}_george_0.wav", dtype="float32")[0] for dg in range(8)])
    clean, clipped, noise = tmp_path / "clean.wav", tmp_path / "clipped.wav", tmp_path / "noise.wav"
    sf.write(clean, y / np.abs(y).max() * 0.5, 8000)
    sf.write(clipped, np.clip(y / np.abs(y).max() * 4, -0.9, 0.9), 8000)
    sf.write(noise, 0.1 * np.random.default_rng(0).standard_normal(16000).astype(np.float32), 8000)
    st = SpeakerStore(tmp_path / "s.db", cli_trained / "ubm.npz", gate=DEFAULT_GATE.with_min_speech(speaker=1.0))
    res = st.enroll("g", [clean, clipped, noise])
    assert res.added == [str(clean)] and res.refused == {str(clipped): "clipped", str(noise): "noise_only"}
    assert res.skipped[str(clipped)].startswith("clipped: ") and "at most 1 %" in res.skipped[str(clipped)]
    assert res.skipped[str(noise)].startswith("noise only: ")
    k, = st.kept_recordings("g")
    from speaker.features import extract_features_and_quality
    X, q = extract_features_and_quality(clean, config=st.config)
    assert k.quality == q and k.speech_seconds == q.speech_seconds and np.array_equal(k.features, X)
    v = st.verify("g", noise, threshold=-1e9)                              # a test that is noise: no decision
    assert v.decision == "undecided" and v.reason.startswith("noise only")
    if _has_service():
        from speaker.serve import ServiceConfig, create_app
        app = create_app(st, ServiceConfig(threshold=-1e9))
        enrol, one_short, ver = _call(app, ("POST", "/v1/speakers/h/enrollments", clipped.read_bytes()),
                                      ("POST", "/v1/speakers/h/enrollments", clean.read_bytes()),
                                      ("POST", "/v1/speakers/g/verify", noise.read_bytes()))
        assert enrol.status_code == 422 and enrol.json()["error"] == "clipped"
        assert one_short.status_code == 200                                # the speaker minimum is 1 s here
        assert ver.json()["decision"] == "undecided" and ver.json()["reason"].startswith("noise only")
        health, plain, ident = _call(create_app(st, ServiceConfig()), ("GET", "/healthz", None),
                                     ("POST", "/v1/speakers/g/verify", clean.read_bytes()),
                                     ("POST", "/v1/identify?top=2", clean.read_bytes()))
        assert health.json()["calibrated"] is False and "undecided" in health.json()["warning"]
        assert plain.json()["decision"] == "undecided" and "no calibration" in plain.json()["reason"]
        assert ident.json()["speakers"] == [] and {c["decision"] for c in ident.json()["candidates"]} == {"undecided"}


def _has_service() -> bool:
    import importlib.util
    return all(importlib.util.find_spec(m) for m in ("fastapi", "httpx"))


def _call(app, *reqs):
    """Requests ((method, url, body bytes or a JSON-able object)) to an app in this process."""
    import asyncio

    import httpx

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as c:
            return [await (c.request(m, u, content=b) if isinstance(b, bytes) else c.request(m, u, json=b))
                    for m, u, b in reqs]
    try:
        return asyncio.run(go())
    finally:
        app.state.service.pool.shutdown()


def test_the_command_line_defaults_are_the_gates(tmp_path):
    from speaker.cli import _common, calibrate, enroll
    from speaker.selfcal import MIN_RECORDINGS, MIN_SPEAKERS
    assert (enroll.DEFAULT_RECORDING_SPEECH, enroll.DEFAULT_SPEAKER_SPEECH, _common.DEFAULT_TEST_SPEECH) == \
        (DEFAULT_GATE.recording.min_speech_seconds, DEFAULT_GATE.min_speaker_speech, DEFAULT_GATE.test.min_speech_seconds)
    assert calibrate.MIN_SPEAKERS_TEXT == f"{MIN_SPEAKERS} speakers with {MIN_RECORDINGS} recordings each"


# ---------------------------------------------------------------------------- leave one recording out
def test_leave_one_out_targets_are_map_from_the_remaining_recordings_audio(tmp_path, cli_trained):
    """Each target trial of the store's own enrolments is the recording scored against MAP of the
    other recordings' audio, features extracted again by the direct path: the same number."""
    from speaker.model_io import load_model
    ubm = load_model(cli_trained / "ubm.npz").ubm
    st = SpeakerStore(tmp_path / "s.db", cli_trained / "ubm.npz", gate=NO_GATE)
    files = {s: [FIX / f"{dg}_{s}_0.wav" for dg in range(4)] for s in ("george", "lucas", "jackson")}
    for s, f in files.items():
        st.enroll(s, f)
    feats = {s: [extract_features(p, config=st.config) for p in f] for s, f in files.items()}
    trials = st.enrolment_trials(min_recordings=2)
    assert trials.speakers == sorted(files) and len(trials.target) == 12 and len(trials.nontarget) == 24
    k = 0
    for s in sorted(files):
        for j in range(4):
            rest = [x for i, x in enumerate(feats[s]) if i != j]
            assert trials.target[k] == llr(map_adapt(ubm, rest), ubm, feats[s][j])      # bit for bit
            k += 1
    # non-targets: each recording against the other speakers' full models, in id order
    k = 0
    for s in sorted(files):
        for j in range(4):
            for o in sorted(files):
                if o != s:
                    assert trials.nontarget[k] == pytest.approx(llr(map_adapt(ubm, feats[o]), ubm, feats[s][j]),
                                                                abs=1e-12)
                    k += 1


def _clopper_pearson(k, n, alpha=0.05):
    """The exact interval by its definition, solved with brentq on the binomial CDF."""
    from scipy.optimize import brentq
    from scipy.stats import binom
    lo = 0.0 if k == 0 else brentq(lambda p: binom.sf(k - 1, n, p) - alpha / 2, 1e-15, 1 - 1e-15)
    hi = 1.0 if k == n else brentq(lambda p: binom.cdf(k, n, p) - alpha / 2, 1e-15, 1 - 1e-15)
    return lo, hi


@pytest.mark.parametrize("k, n", [(0, 50), (3, 120), (30, 3000), (119, 120), (7, 7)])
def test_confidence_intervals_are_clopper_pearsons(k, n):
    assert rate_interval(k, n) == pytest.approx(_clopper_pearson(k, n), abs=1e-9)


def test_far_threshold_is_the_lowest_with_at_most_f_false_accepts():
    rng = np.random.default_rng(5)
    for n, far in [(1000, 0.01), (2000, 0.05), (1500, 0.013)]:
        non = np.round(rng.normal(size=n), 2)                  # ties
        t = far_threshold(non, far)
        assert (non >= t).mean() <= far
        # every lower candidate (each distinct value) lets more than F pass
        lower = np.unique(non[non < t])
        assert all((non >= c).mean() > far for c in lower)
    with pytest.raises(ValueError, match="at least 1000 non-target trials"):
        far_threshold(np.zeros(999), 0.01)


def test_self_calibration_from_enrolments(tmp_path, ubm):
    """calibrate_from_enrollments: the refusal below the minimum, the fit (scikit-learn's
    LogisticRegression with the prior weights on the same trials), the expected rates (counted
    directly, Clopper-Pearson intervals), kept with its trials, decisions at a target FAR."""
    from sklearn.linear_model import LogisticRegression
    from speaker.selfcal import NotEnoughEnrolments, calibrate_from_enrollments
    st = SpeakerStore(tmp_path / "s.db", ubm, gate=NO_GATE)
    data = population(st, n_speakers=14, n_rec=3)
    st.enroll("short", recs(99, n=2))                          # two recordings: a non-target model only
    with pytest.raises(NotEnoughEnrolments, match=r"at least 15 speakers with at least 3 recordings each; the "
                                                  r"store has 14: missing 1 more speaker.*'?short"):
        calibrate_from_enrollments(st)
    st.enroll("s14", recs(14, n=3, shift=1.0))
    res = calibrate_from_enrollments(st, prior=0.1, target_far=0.05)
    tr = res.trials
    assert len(tr.speakers) == 15 and len(tr.target) == 45 and len(tr.nontarget) == 45 * 15
    assert "short" in tr.left_out and "fewer than 3" in tr.left_out["short"]
    # the fit: prior-weighted logistic regression (BOSARIS), against scikit-learn
    s = np.concatenate([tr.target, tr.nontarget])
    y = np.r_[np.ones(len(tr.target)), np.zeros(len(tr.nontarget))]
    w = np.where(y == 1, 0.1 / len(tr.target), 0.9 / len(tr.nontarget))
    lr = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(s[:, None], y, sample_weight=w * len(s))
    assert res.calibration.a == pytest.approx(lr.coef_[0, 0], rel=1e-4)
    assert res.calibration.b == pytest.approx(lr.intercept_[0] - math.log(0.1 / 0.9), rel=1e-4, abs=1e-4)
    # the expected rates at the Bayes threshold of the prior: counted directly
    pt = res.report["operating_points"][0]
    t = math.log(0.9 / 0.1)
    tar, non = res.calibration.llr(tr.target), res.calibration.llr(tr.nontarget)
    assert pt["threshold"] == pytest.approx(t)
    assert (pt["misses"], pt["false_accepts"]) == (int((tar < t).sum()), int((non >= t).sum()))
    assert pt["p_fa_ci"] == pytest.approx(_clopper_pearson(pt["false_accepts"], len(non)), abs=1e-9)
    assert any("only 15 speakers" in w for w in res.warnings)
    assert any("within an hour" in w for w in res.warnings)     # enrolled just now: one session
    # kept, current, with its trials: a decision at a target FAR takes its threshold from them
    assert st.current_calibration().id == res.id
    kept_t, kept_n = st.calibration_trials()
    assert np.array_equal(kept_t, tar) and np.array_equal(kept_n, np.sort(non))
    for i, r in list(data.items())[:3]:
        v = st.verify(i, r[-1], target_far=0.05)
        assert v.threshold == far_threshold(non, 0.05) and v.decision == ("accept" if v.llr >= v.threshold else "reject")
    with pytest.raises(ValueError, match="needs at least 10000 non-target"):
        st.verify("s00", data["s00"][-1], target_far=0.001)
    # duration-aware: the same trials with log net speech of the test (and its product with the
    # score) as columns, against scikit-learn; verify reads the test's net speech
    dur = calibrate_from_enrollments(st, prior=0.1, duration_aware=True)
    sec = np.log(np.concatenate([tr.target_seconds, tr.nontarget_seconds]))
    Z = np.column_stack([s, sec[:, 1], s * sec[:, 1]])
    mu, sd = Z.mean(0), Z.std(0)
    lr = LogisticRegression(C=np.inf, tol=1e-12, max_iter=100_000).fit((Z - mu) / sd, y, sample_weight=w * len(s))
    coef = lr.coef_[0] / sd
    cal = dur.calibration
    assert [cal.a] + [t.weight for t in cal.terms] == pytest.approx(coef, rel=1e-3, abs=1e-6)
    assert cal.b == pytest.approx(lr.intercept_[0] - coef @ mu - math.log(0.1 / 0.9), rel=1e-3, abs=1e-4)
    test = data["s02"][-1]
    v = st.verify("s02", test, threshold=0.0)
    enrol = sum(len(x) for x in data["s02"][:3]) / 100
    assert v.llr == pytest.approx(cal.llr(v.score, {"enrol_speech": enrol, "test_speech": len(test) / 100}))


# ---------------------------------------------------------------------------- kept calibrations
def test_calibrations_are_kept_and_one_command_goes_back(tmp_path, ubm):
    db = tmp_path / "s.db"
    st = SpeakerStore(db, ubm, gate=NO_GATE)
    data = population(st, n_speakers=15)
    r = speaker_cli("calibrate", "--store", db, "--from-enrollments", "--prior", "0.2", check=0)
    assert "calibration 1 (current)" in r.stdout and "expected miss rate" in r.stdout and "Clopper-Pearson" in r.stdout
    assert "warning: only 15 speakers" in r.stderr
    first = st.current_calibration()
    st.calibration = Calibration(3.0, -1.0)                    # a second one, given through the library
    r = speaker_cli("calibrate", "--store", db, "--show", check=0)
    assert r.stdout.index("calibration 2 (current)") < r.stdout.index("calibration 1:")
    assert "fitted on the store's enrolments: 15 speakers" in r.stdout and "its trials are not kept" in r.stdout
    shown = json.loads(speaker_cli("calibrate", "--store", db, "--show", "--json", check=0).stdout)
    assert [c["id"] for c in shown] == [2, 1] and shown[1]["created_at"].endswith("Z")
    assert shown[1]["report"]["cllr"] == pytest.approx(first.report["cllr"])
    speaker_cli("calibrate", "--store", db, "--use", "1", check=0)
    assert SpeakerStore(db).calibration == first.calibration
    speaker_cli("calibrate", "--store", db, "--use", "7", check=1)
    # verify at a target FAR from the command line: the library's decision
    test = tmp_path / "t.npy"
    np.save(test, data["s03"][-1])
    r = speaker_cli("verify", "--store", db, "--speaker", "s03", test, "--target-far", "0.05", "--min-test-speech", 0)
    ref = SpeakerStore(db, gate=NO_GATE).verify("s03", data["s03"][-1], target_far=0.05)
    assert r.stdout.split()[3] == ref.decision and r.returncode == 0
    r = speaker_cli("calibrate", "--store", tmp_path / "s.db", "--from-enrollments", "--json", check=0)
    assert json.loads(r.stdout)["id"] == 3


def test_too_few_enrolments_are_refused_from_the_command_line(tmp_path, ubm):
    db = tmp_path / "s.db"
    population(SpeakerStore(db, ubm, gate=NO_GATE), n_speakers=4)
    r = speaker_cli("calibrate", "--store", db, "--from-enrollments", check=1)
    assert "missing 11 more speaker(s)" in r.stderr and "Traceback" not in r.stderr
    r = speaker_cli("verify", "--store", db, "--speaker", "s00", "--target-far", "0.01", FIX / "0_george_0.wav", check=1)
    assert "needs a calibration" in r.stderr


# ---------------------------------------------------------------------------- format 1 -> 2
def _as_format_1(path):
    """A format-1 store made from a new one: the per-recording columns and the calibrations
    table dropped, format_version 1, the calibration kept in meta as format 1 kept it."""
    from speaker.store import RECORDING_DATA
    with sqlite3.connect(path) as db:
        for c in RECORDING_DATA:
            db.execute(f"ALTER TABLE recordings DROP COLUMN {c}")
        db.execute("DROP TABLE calibrations")
        db.execute("DELETE FROM meta WHERE key='calibration_id'")
        db.execute("UPDATE meta SET value='1' WHERE key='format_version'")
        db.execute("INSERT INTO meta VALUES ('calibration', ?)", (Calibration(2.0, -1.0, 0.3).to_json(),))


def test_a_format_1_store_is_refused_until_upgraded_and_keeps_what_it_had(tmp_path, ubm):
    db = tmp_path / "old.db"
    st = SpeakerStore(db, ubm, gate=NO_GATE)
    data = population(st, n_speakers=3)
    model = st.model("s01")
    st.close()
    _as_format_1(db)
    with pytest.raises(StoreError, match="format 1 speaker store .* --upgrade"):
        SpeakerStore(db)
    r = speaker_cli("store-info", "--store", db, "--upgrade", check=0)
    assert "upgraded to format 2" in r.stderr
    st = SpeakerStore(db, gate=NO_GATE)
    assert np.array_equal(st.model("s01").means_, model.means_)          # the models are as before
    row, = st.calibrations()                                              # the calibration moved to the history
    assert row.calibration == Calibration(2.0, -1.0, 0.3) and row.current and "format-1" in row.fitted_on
    assert all(k.stats is None and k.features is None for k in st.kept_recordings("s01"))
    st.enroll("new", recs(50))                                            # new recordings keep their data
    assert all(k.stats is not None for k in st.kept_recordings("new"))
    tr = st.enrolment_trials()
    assert tr.speakers == ["new"] and "enrol it again" in tr.left_out["s01"]
    st.enroll("s01", data["s01"][:3], replace=True)
    assert "s01" in st.enrolment_trials().speakers
    assert not SpeakerStore(db, upgrade=True).upgraded                    # once only


# ---------------------------------------------------------------------------- the service
def test_the_service_says_what_it_decides(tmp_path, ubm):
    if not _has_service():
        pytest.skip("the serve extra is not installed")
    from speaker.serve import ServiceConfig, create_app
    st = SpeakerStore(tmp_path / "s.db", ubm, gate=NO_GATE)
    population(st, n_speakers=15)
    h, cal, again, hist = _call(create_app(st, ServiceConfig()), ("GET", "/healthz", None),
                                ("POST", "/v1/calibration", {"prior": 0.05}), ("GET", "/healthz", None),
                                ("GET", "/v1/calibrations", None))
    h = h.json()
    assert h["calibrated"] is False and h["decisions"]["possible"] is False and "undecided" in h["warning"]
    assert cal.status_code == 200 and cal.json()["id"] == 1 and cal.json()["report"]["operating_points"]
    assert again.json()["calibrated"] is True and again.json().get("warning") is None
    assert [c["id"] for c in hist.json()["calibrations"]] == [1]
    bad, = _call(create_app(st, ServiceConfig()), ("POST", "/v1/calibration", {"prior": 2}))
    assert bad.status_code == 400
    st2 = SpeakerStore(tmp_path / "few.db", ubm, gate=NO_GATE)
    population(st2, n_speakers=3)
    few, = _call(create_app(st2, ServiceConfig()), ("POST", "/v1/calibration", None))
    assert few.status_code == 422 and few.json()["error"] == "not_enough_enrolments"
