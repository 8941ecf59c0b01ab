"""A speaker store bound to an i-vector back-end (speaker.store_backend): i-vectors from the kept
statistics, binding checks, PLDA / cosine / fusion scoring through the store's one scoring path.

Small synthetic models (K=8, D=3, R=4) keep it quick; every expectation is computed
independently: the batch recipe's extraction from the features, and the PLDA LLR of
scipy's multivariate normal densities (:func:`speaker.plda.plda_llr`)."""
from __future__ import annotations

import functools

import numpy as np
import pytest

from gmmext import GaussianMixture
from speaker.gates import NO_GATE
from speaker.ivector import TotalVariability, extract_ivectors, stats_batches, train_tv
from speaker.plda import cosine, length_norm, plda_llr, train_backend
from speaker.store import BackendMismatchError, SpeakerStore, StoreError

D, K, R = 3, 8, 4
Store = functools.partial(SpeakerStore, gate=NO_GATE)


def _speaker(seed, n=4, frames=120, scale=0.8):
    rng = np.random.default_rng(seed)
    centre = rng.normal(scale=scale, size=D)
    return [(centre + rng.normal(size=(frames + 7 * i, D))).astype(np.float32) for i in range(n)]


@pytest.fixture(scope="module")
def chain():
    """(ubm, tv, backend, {speaker: recordings}) trained on 12 other speakers."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(loc=c, size=(600, D)) for c in (-2, 0, 2)]).astype(np.float32)
    ubm = GaussianMixture(K, covariance_type="diag", random_state=0, max_iter=20).fit(X)
    from speaker.model_io import ubm_fingerprint
    train = {f"t{s}": _speaker(100 + s) for s in range(12)}
    feats = [x for recs in train.values() for x in recs]
    tv = train_tv(ubm, lambda: stats_batches(ubm, feats), R, n_iter=3)
    assert tv.ubm_fingerprint == ubm_fingerprint(ubm)
    iv = extract_ivectors(tv, stats_batches(ubm, feats))[0]
    y = np.repeat(np.arange(12), 4)
    be = train_backend(iv, y)
    be.ubm_fingerprint, be.ivector_fingerprint = tv.ubm_fingerprint, tv.fingerprint
    enrol = {f"s{s}": _speaker(s) for s in range(5)}
    return ubm, tv, be, enrol


def _batch_ivectors(ubm, tv, recs):
    return extract_ivectors(tv, stats_batches(ubm, recs))[0]


def test_bound_store_ivectors_are_the_batch_recipes_and_rebinding_recomputes_them(store_at, chain):
    ubm, tv, be, enrol = chain
    with Store(store_at(), ubm) as st:
        for i in ("s0", "s1"):
            st.enroll(i, enrol[i])
        assert st.backends() == ("gmm",)
        res = st.bind_backend(tv, be)
        assert res.recomputed == 8 and res.speakers == 2 and res.ivector_bytes == 8 * 8 * R
        assert st.backends() == ("gmm", "plda", "cosine", "fusion")
        st.enroll("s2", enrol["s2"][:2])                       # enrolled on a bound store
        st.enroll("s2", enrol["s2"][2:])                       # extended
        for i in ("s0", "s1", "s2"):
            np.testing.assert_allclose(st.ivectors(i), _batch_ivectors(ubm, tv, enrol[i]), rtol=1e-9, atol=1e-12)
        # another extractor of the same UBM (and its back-end): every i-vector recomputed, none of the old left
        tv2 = TotalVariability(tv.T * 1.5 + 0.01, tv.ubm_fingerprint)
        be2 = train_backend(np.random.default_rng(1).normal(size=(40, R)), np.repeat(np.arange(10), 4))
        be2.ivector_fingerprint = tv2.fingerprint
        assert st.bind_backend(tv2, be2).recomputed == 12
        for i in ("s0", "s1", "s2"):
            np.testing.assert_allclose(st.ivectors(i), _batch_ivectors(ubm, tv2, enrol[i]), rtol=1e-9, atol=1e-12)
        st.enroll("s2", enrol["s3"][:1], replace=True)         # replace: the old rows go with the speaker
        assert st.ivectors("s2").shape == (1, R)
    with Store(store_at()) as st:                              # another process reads it back, validated
        tv_read, be_read = st.bound_backend()
        assert tv_read.fingerprint == tv2.fingerprint and be_read.fingerprint == be2.fingerprint


def test_a_store_refuses_an_extractor_or_backend_that_is_not_its_own(tmp_path, chain):
    ubm, tv, be, enrol = chain
    with Store(tmp_path / "s.db", ubm) as st:
        st.enroll("s0", enrol["s0"])
        other = TotalVariability(tv.T, "0" * 64)               # trained for another UBM
        with pytest.raises(BackendMismatchError, match="another UBM"):
            st.bind_backend(other, be)
        tv2 = TotalVariability(tv.T + 0.1, tv.ubm_fingerprint)  # the back-end was trained on tv's i-vectors
        with pytest.raises(BackendMismatchError, match="another extractor"):
            st.bind_backend(tv2, be)
        assert st.backends() == ("gmm",) and st.bound_backend() is None
        with pytest.raises(ValueError, match="speaker backend --store"):
            st.verify("s0", enrol["s0"][0], backend="plda")
        st.export(tmp_path / "m.npz")
        st.bind_backend(tv, be)
        with pytest.raises(StoreError, match="bound to an i-vector back-end"):
            st.import_models(tmp_path / "m.npz", replace=True)


def test_store_plda_and_cosine_scores_equal_the_batch_backend(tmp_path, chain):
    ubm, tv, be, enrol = chain
    tests = _speaker(50, n=3) + [enrol["s1"][0] + 0.3]
    with Store(tmp_path / "s.db", ubm) as st:
        for i, recs in enrol.items():
            st.enroll(i, recs[:1 + int(i[1:]) % 4])           # 1 to 4 recordings: PLDA by count
        st.bind_backend(tv, be)
        ids = sorted(enrol)
        # the batch recipe: i-vectors from the audio, enrolment means and counts, the closed-form LLR
        groups = {i: be.transform(_batch_ivectors(ubm, tv, enrol[i][:1 + int(i[1:]) % 4])) for i in ids}
        means = np.array([groups[i].mean(axis=0) for i in ids])
        counts = np.array([len(groups[i]) for i in ids], dtype=float)
        for x in tests:
            t = be.transform(_batch_ivectors(ubm, tv, [x]))
            got_ids, got = st.scores_all(x, backend="plda")
            assert got_ids == ids
            want = plda_llr(be.plda, means, counts, np.repeat(t, len(ids), axis=0))
            np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-8)
            _, cos = st.scores_all(x, backend="cosine")
            avg = length_norm(means * 0 + np.array([length_norm(groups[i].mean(axis=0, keepdims=True))[0] for i in ids]))
            np.testing.assert_allclose(cos, cosine(avg, np.repeat(t, len(ids), axis=0)), rtol=1e-10, atol=1e-12)
            # verify is identify restricted to one speaker: the same score
            r = st.verify("s3", x, backend="plda")
            assert r.score == pytest.approx(got[ids.index("s3")], rel=1e-12)
            assert r.decision == "undecided"                      # no plda calibration, no threshold
            assert st.verify("s3", x, backend="plda", threshold=-1e9).decision == "accept"
            best = st.candidates(x, 2, backend="plda")
            assert [m.id for m in best] == [ids[j] for j in np.argsort(-got, kind="stable")[:2]]


def test_backend_command_binds_and_refuses_with_the_remedy(tmp_path, chain):
    from conftest import speaker_cli
    from speaker.ivector import save_tv
    from speaker.plda import save_backend
    ubm, tv, be, enrol = chain
    db = tmp_path / "s.db"
    with Store(db, ubm) as st:
        st.enroll("s0", enrol["s0"])
    save_tv(tmp_path / "tv.npz", tv)
    save_backend(tmp_path / "plda.npz", be)
    tv2 = TotalVariability(tv.T + 0.1, tv.ubm_fingerprint)
    save_tv(tmp_path / "tv2.npz", tv2)
    r = speaker_cli("backend", "--store", db, "--ivector", tmp_path / "tv2.npz", "--plda", tmp_path / "plda.npz", check=1)
    assert "another extractor" in r.stderr and "speaker train-plda" in r.stderr
    r = speaker_cli("backend", "--store", db, "--ivector", tmp_path / "tv.npz", "--plda", tmp_path / "plda.npz", check=0)
    assert "4 recording i-vector(s)" in r.stderr
    info = speaker_cli("store-info", "--store", db, "--json", check=0)
    assert '"backends": [\n    "gmm",\n    "plda"' in info.stdout and tv.fingerprint in info.stdout
    assert "calibrated: none of them" in speaker_cli("store-info", "--store", db, check=0).stdout
    r = speaker_cli("verify", "--store", db, "--backend", "plda", "--speaker", "s0", "--threshold=-1e9",
                    _npy(tmp_path, enrol["s0"][0]), check=0)
    assert r.stdout.split()[3] == "accept"
    speaker_cli("backend", "--store", db, "--unbind", check=0)
    r = speaker_cli("verify", "--store", db, "--backend", "plda", "--speaker", "s0", _npy(tmp_path, enrol["s0"][0]))
    assert r.returncode == 1 and "speaker backend --store" in r.stderr


def _npy(tmp_path, X):
    p = tmp_path / f"x{abs(hash(X.tobytes())) % 10**8}.npy"
    np.save(p, X)
    return p


def test_score_store_backend_writes_the_stores_scores(tmp_path, chain):
    from conftest import speaker_cli
    ubm, tv, be, enrol = chain
    db = tmp_path / "s.db"
    tests = [_npy(tmp_path, x) for x in _speaker(60, n=2)]
    with Store(db, ubm) as st:
        for i in ("s0", "s1"):
            st.enroll(i, enrol[i])
        st.bind_backend(tv, be)
        want = {(i, str(p)): s for p in tests for i, s in zip(*st.scores_all(np.load(p), backend="plda"))}
    (tmp_path / "trials.txt").write_text("".join(f"{i} {p}\n" for p in tests for i in ("s1", "s0", "nobody")))
    r = speaker_cli("score", "--store", db, "--backend", "plda", "--trials", tmp_path / "trials.txt",
                    "--out", tmp_path / "scores.txt", check=0)
    assert "unknown model id" in r.stderr
    lines = [ln.split() for ln in (tmp_path / "scores.txt").read_text().splitlines()]
    assert [(m, t) for m, t, _ in lines] == [(i, str(p)) for p in tests for i in ("s1", "s0")]
    for m, t, s in lines:
        assert float(s) == pytest.approx(want[(m, t)], abs=1e-6)
    r = speaker_cli("score", "--store", db, "--backend", "fusion", "--trials", tmp_path / "trials.txt",
                    "--out", tmp_path / "fused.txt")
    assert r.returncode == 1 and "speaker calibrate --store" in r.stderr


def test_service_verifies_and_identifies_with_the_backend_a_request_names(tmp_path, chain):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from test_serve import in_process
    from speaker.serve import ServiceConfig, create_app
    ubm, tv, be, enrol = chain
    with Store(tmp_path / "s.db", ubm) as st:
        for i in ("s0", "s1", "s2"):
            st.enroll(i, enrol[i])
        st.bind_backend(tv, be)
        x = enrol["s1"][0] + 0.2
        svc_app = create_app(st, ServiceConfig(threshold=-1e9, backend="plda"))
        svc = svc_app.state.service
        j = svc.verify_features("s1", x)                               # the service's default back-end
        assert j["score"] == st.verify("s1", x, backend="plda", threshold=-1e9).score
        g = svc.verify_features("s1", x, backend="gmm")
        assert g["score"] == st.verify("s1", x, threshold=-1e9).score
        _, plda_all = st.scores_all(x, backend="plda")
        health, bad, cal = in_process(svc_app, [("GET", "/healthz", b""), ("POST", "/v1/identify?backend=lda", b"x"),
                                                ("POST", "/v1/calibration", b'{"backend": "fusion"}')])
        assert cal["error"] == "not_enough_enrolments"                 # 3 speakers: far below the minimum
        assert health["backend"] == "plda" and health["backends"] == ["gmm", "plda", "cosine", "fusion"]
        assert "error" in bad and "backend" in bad["detail"]            # refused by the query's pattern
        assert j["score"] == pytest.approx(plda_all[1], rel=1e-12)      # s1 among all: the same score


def test_fusion_is_fitted_with_the_calibration_and_scores_what_it_was_fitted_on(tmp_path, chain):
    import math

    from sklearn.linear_model import LogisticRegression
    from speaker.selfcal import calibrate_from_enrollments
    ubm, tv, be, _ = chain
    enrol = {f"m{s}": _speaker(200 + s, scale=0.3) for s in range(8)}    # classes that overlap (a finite fit)
    with Store(tmp_path / "s.db", ubm) as st:
        for i, recs in enrol.items():
            st.enroll(i, recs)
        st.bind_backend(tv, be)
        with pytest.raises(ValueError, match="fusion calibration"):
            st.verify("m0", enrol["m0"][0], backend="fusion")
        prior = 0.1
        res = calibrate_from_enrollments(st, prior=prior, min_speakers=4, backend="fusion")
        cal, fused = res.calibration, res.trials
        assert fused.target.shape == (32, 2) and fused.systems == ("plda", "gmm")
        gmm = st.enrolment_trials(backend="gmm")
        np.testing.assert_array_equal(fused.target[:, 1], gmm.target)
        np.testing.assert_array_equal(fused.nontarget[:, 1], gmm.nontarget)
        # a left-out PLDA target trial by hand: the other three recordings' batch i-vectors, by count
        vecs = be.transform(_batch_ivectors(ubm, tv, enrol["m0"]))
        want = plda_llr(be.plda, vecs[1:].mean(axis=0, keepdims=True), [3.0], vecs[:1])[0]
        assert fused.target[fused.target_speakers.index("m0"), 0] == pytest.approx(want, rel=1e-8, abs=1e-8)
        S = np.r_[fused.target, fused.nontarget]
        lab = np.r_[np.ones(len(fused.target), bool), np.zeros(len(fused.nontarget), bool)]
        w = np.where(lab, prior / lab.sum(), (1 - prior) / (~lab).sum()) * len(lab)
        lr = LogisticRegression(C=np.inf, tol=1e-12, max_iter=100_000).fit(S, lab, sample_weight=w)
        assert [cal.a, cal.terms[0].weight] == pytest.approx(lr.coef_[0], rel=1e-4, abs=1e-6)
        assert cal.b == pytest.approx(lr.intercept_[0] - math.log(prior / (1 - prior)), rel=1e-4, abs=1e-5)
        assert st.current_calibration("fusion").id == res.id and st.current_calibration() is None
        x = enrol["m2"][0] + 0.1
        r = st.verify("m2", x, backend="fusion")
        g, p = st.score("m2", x), st.score("m2", x, backend="plda")
        assert r.score == pytest.approx(cal.a * p + cal.b + cal.terms[0].weight * g, rel=1e-10)
        assert r.llr == pytest.approx(r.score) and r.decision in ("accept", "reject")
        assert r.threshold == pytest.approx(math.log((1 - prior) / prior))   # the Bayes threshold at its prior
        assert st.verify("m2", x, backend="plda").decision == "undecided"   # plda has no calibration of its own
        be2 = train_backend(np.random.default_rng(2).normal(size=(40, R)), np.repeat(np.arange(10), 4))
        be2.ubm_fingerprint, be2.ivector_fingerprint = tv.ubm_fingerprint, tv.fingerprint
        st.bind_backend(tv, be2)                                          # another PLDA: new scores
        assert st.current_calibration("fusion") is None and len(st.calibrations()) == 1


def test_calibrate_command_fits_the_fusion_on_trials_the_store_scores(tmp_path, chain):
    from conftest import speaker_cli
    from speaker.calibration import fit_calibration
    ubm, tv, be, _ = chain
    enrol = {f"m{s}": _speaker(300 + s, n=6, scale=0.3) for s in range(6)}
    db = tmp_path / "s.db"
    with Store(db, ubm) as st:
        for i, recs in enrol.items():
            st.enroll(i, recs[:3])
        st.bind_backend(tv, be)
        rows, want = [], []
        for i, recs in enrol.items():
            for x in recs[3:]:
                p = _npy(tmp_path, x)
                ids, S = st.system_scores(x, sorted(enrol))
                for m, row in zip(ids, S):
                    rows.append(f"{m} {p} {'target' if m == i else 'nontarget'}\n")
                    want.append((row, m == i))
    (tmp_path / "dev.txt").write_text("".join(rows))
    speaker_cli("calibrate", "--store", db, "--backend", "fusion", "--trials", tmp_path / "dev.txt", check=0)
    ref = fit_calibration(np.array([w[0] for w in want]), np.array([w[1] for w in want]), systems=("plda", "gmm"))
    with Store(db) as st:
        cal = st.current_calibration("fusion").calibration
        assert st.current_calibration() is None and st.current_calibration("plda") is None
    assert (cal.a, cal.terms[0].weight, cal.b) == pytest.approx((ref.a, ref.terms[0].weight, ref.b), rel=1e-6)
    r = speaker_cli("verify", "--store", db, "--backend", "fusion", "--speaker", "m0", "--min-test-speech", "0",
                    _npy(tmp_path, enrol["m0"][5] + 0.01), check=0)
    assert r.stdout.split()[3] in ("accept", "reject")
