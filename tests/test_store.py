"""The speaker store (speaker/store.py): exact incremental enrolment, models, decisions,
refusal of bad stores, concurrent writers and SIGKILL on a real store file."""
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from gmmext import GaussianMixture
from speaker import llr, load_model, map_adapt, save_model
from speaker.calibration import Calibration
from speaker.store import SpeakerStore, StoreError

D = 6


@pytest.fixture(scope="module")
def ubm():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(loc=c, size=(800, D)) for c in (-2, 0, 2)]).astype(np.float32)
    return GaussianMixture(16, covariance_type="diag", random_state=0, max_iter=20).fit(X)


def recs(seed, n=4, shift=0.5, frames=150):
    rng = np.random.default_rng(seed)
    centre = rng.normal(scale=shift, size=D)
    return [(centre + rng.normal(size=(frames + 10 * i, D))).astype(np.float32) for i in range(n)]


def test_incremental_enrolment_equals_one_shot_bit_for_bit(tmp_path, ubm):
    r = recs(1, n=5)
    st = SpeakerStore(tmp_path / "s.db", ubm)
    st.enroll("a", r[:2])
    st.enroll("a", r[2:3])
    st.enroll("a", r[3:])
    once = SpeakerStore(tmp_path / "once.db", ubm)
    once.enroll("a", r)
    ref = map_adapt(ubm, r)                          # the batch path: statistics folded per recording
    for m in (st.model("a"), once.model("a"), SpeakerStore(tmp_path / "s.db").model("a")):
        for attr in ("weights_", "means_", "covariances_"):
            assert np.array_equal(getattr(m, attr), getattr(ref, attr))
    stats = st.stats("a")
    acc = ubm.accumulate(r[0])
    for x in r[1:]:
        acc = acc + ubm.accumulate(x)
    assert np.array_equal(stats.n, acc.n) and np.array_equal(stats.sum_x, acc.sum_x)
    assert np.array_equal(stats.sum_xx, acc.sum_xx) and stats.n_samples == sum(len(x) for x in r)
    info, = st.speakers()
    assert (info.id, info.n_recordings, info.n_frames) == ("a", 5, sum(len(x) for x in r))
    assert [row[2] for row in st.recordings("a")] == [len(x) for x in r]


def test_duplicates_skipped_replace_and_remove(tmp_path, ubm):
    r = recs(2, n=3)
    st = SpeakerStore(tmp_path / "s.db", ubm)
    st.enroll("a", r[:2])
    res = st.enroll("a", [r[1], r[2]])                # r[1] again: same content, not counted twice
    assert res.added == ["<array>"] and list(res.skipped.values()) == ["already enrolled for this speaker (same content)"]
    assert np.array_equal(st.model("a").means_, map_adapt(ubm, r).means_)
    st.enroll("a", r[2:], replace=True)
    assert np.array_equal(st.model("a").means_, map_adapt(ubm, r[2:]).means_)
    assert st.speakers()[0].n_recordings == 1
    with pytest.raises(StoreError, match="nothing to enrol"):
        st.enroll("b", [np.full((5, D + 1), 1.0, dtype=np.float32)])
    assert "b" not in st
    st.remove("a")
    assert len(st) == 0
    with pytest.raises(KeyError):
        st.model("a")
    with pytest.raises(ValueError, match="whitespace"):
        st.enroll("a b", r)


def test_cache_follows_changes_made_by_another_process_object(tmp_path, ubm):
    r = recs(3)
    one, two = SpeakerStore(tmp_path / "s.db", ubm), SpeakerStore(tmp_path / "s.db")
    one.enroll("a", r[:1])
    first = one.model("a")
    assert one.model("a") is first                   # cached
    two.enroll("a", r[1:])
    assert np.array_equal(one.model("a").means_, map_adapt(ubm, r).means_)
    two.remove("a")
    two.enroll("a", r[:1])                           # same content as the first model, new generation
    assert one.model("a") is not first and np.array_equal(one.model("a").means_, first.means_)


def test_verify_and_identify(tmp_path, ubm):
    spk = {f"s{i}": recs(10 + i, shift=2.0) for i in range(5)}
    st = SpeakerStore(tmp_path / "s.db", ubm, top_c=4)
    for i, r in spk.items():
        st.enroll(i, r[:3])
    test = spk["s2"][3]
    res = st.verify("s2", test)
    assert res.score == pytest.approx(llr(map_adapt(ubm, spk["s2"][:3]), ubm, test, top_c=4), abs=1e-12)
    assert res.accept == (res.score >= 0) and res.llr is None and res.threshold == 0.0
    assert st.verify("s2", test, threshold=res.score + 1e-9).accept is False
    ids, scores = st.scores_all(test)
    for i, s in zip(ids, scores):
        assert s == pytest.approx(llr(map_adapt(ubm, spk[i][:3]), ubm, test, top_c=4), abs=1e-9)
    best = st.identify(test, n=3)
    assert best[0][0] == "s2" and [b[1] for b in best] == sorted([b[1] for b in best], reverse=True)
    assert st.identify(test, n=3, threshold=float(scores.max()) + 1.0) == []     # open set: nobody passes
    SpeakerStore(tmp_path / "s.db").enroll("s9", [test])     # another writer: the kept models are rebuilt
    ids, scores = st.scores_all(test)
    assert ids == [f"s{i}" for i in range(5)] + ["s9"]
    assert scores[-1] == pytest.approx(llr(map_adapt(ubm, test), ubm, test, top_c=4), abs=1e-9)
    SpeakerStore(tmp_path / "s.db").remove("s9")
    assert st.scores_all(test)[0] == [f"s{i}" for i in range(5)]
    st.calibration = Calibration(2.0, -1.0)
    res = st.verify("s2", test, p_target=0.01)
    assert res.llr == pytest.approx(2 * res.score - 1) and res.threshold == pytest.approx(np.log(99))
    assert res.accept == (res.llr >= np.log(99))
    assert SpeakerStore(tmp_path / "s.db").calibration == Calibration(2.0, -1.0)
    with pytest.raises(KeyError):
        st.verify("nobody", test)


@pytest.mark.parametrize("adapt", ["m", "mw", "mwv"])
def test_identify_stacks_built_from_rows_score_as_the_models(tmp_path, ubm, adapt):
    """The batches identification derives from the stored statistics by array operations (and
    imported models, with their own variances) score exactly as the models ``model`` derives,
    scored one by one with the direct formula: log sum over the UBM's top-C components."""
    from scipy.special import logsumexp
    from conftest import reference_logprob
    st = SpeakerStore(tmp_path / "s.db", ubm, adapt=adapt, top_c=3)
    for i in range(5):
        st.enroll(f"s{i}", recs(40 + i, n=2, shift=1.5))
    other = GaussianMixture.from_parameters(ubm.weights_, ubm.means_ + np.float32(0.3),
                                            ubm.covariances_ * np.float32(1.5), covariance_type="diag")
    save_model(tmp_path / "m.npz", {"imported": other}, ubm=ubm)
    st.import_models(tmp_path / "m.npz")
    test = recs(99, n=1)[0]
    X = test.astype(np.float64)
    idx, _ = ubm.top_components(test, 3)
    ubm_ll = logsumexp(np.take_along_axis(reference_logprob(X, *(np.float64(a) for a in (
        ubm.weights_, ubm.means_, ubm.covariances_))), idx.astype(int), 1), axis=1).sum()
    for batch in (2, 1024):                            # several stacks, and one
        ids, scores = st.scores_all(test, batch=batch)
        assert ids == ["imported"] + [f"s{i}" for i in range(5)]
        for i, s in zip(ids, scores):
            m = st.model(i)
            ll = logsumexp(np.take_along_axis(reference_logprob(X, *(np.float64(a) for a in (
                m.weights_, m.means_, m.covariances_))), idx.astype(int), 1), axis=1).sum()
            assert s == pytest.approx((ll - ubm_ll) / len(X), abs=1e-4)
        np.testing.assert_allclose(scores, st.scores_all(test, ids)[1], rtol=1e-6, atol=1e-6)


def test_export_and_import(tmp_path, ubm):
    st = SpeakerStore(tmp_path / "s.db", ubm)
    st.enroll("a", recs(4))
    st.enroll("b", recs(5))
    st.export(tmp_path / "models.npz")
    mf = load_model(tmp_path / "models.npz", ubm=ubm)
    assert np.array_equal(mf.speakers["a"].means_, st.model("a").means_)
    other = SpeakerStore(tmp_path / "t.db", ubm)
    assert other.import_models(tmp_path / "models.npz") == ["a", "b"]
    assert np.array_equal(other.model("b").means_, st.model("b").means_)
    assert [s.kind for s in other.speakers()] == ["model", "model"]
    with pytest.raises(StoreError, match="imported as a model"):
        other.enroll("a", recs(6))
    with pytest.raises(StoreError, match="already in the store"):
        other.import_models(tmp_path / "models.npz")
    other.enroll("a", recs(6), replace=True)
    assert other.speakers()[0].kind == "stats"


# ---------------------------------------------------------------------------- untrusted stores
def _store_with_speaker(tmp_path, ubm):
    st = SpeakerStore(tmp_path / "s.db", ubm)
    st.enroll("a", recs(7))
    st.close()
    return tmp_path / "s.db"


def _tamper(path, sql, params=()):
    with sqlite3.connect(path) as db:
        db.execute(sql, params)


@pytest.mark.parametrize("sql, params, message", [
    ("UPDATE meta SET value='2' WHERE key='format_version'", (), "unsupported format_version '2'"),
    ("UPDATE meta SET value='other' WHERE key='format'", (), "format is not"),
    ("DELETE FROM meta WHERE key='adapt'", (), "bad meta entry"),
    ("UPDATE ubm SET means=zeroblob(8)", (), "malformed UBM row"),
    ("UPDATE ubm SET means=means", (), None),
    ("UPDATE meta SET value='00' WHERE key='ubm_fingerprint'", (), "does not match its fingerprint"),
    ("DROP TABLE recordings", (), "missing tables"),
])
def test_tampered_store_metadata_is_refused(tmp_path, ubm, sql, params, message):
    path = _store_with_speaker(tmp_path, ubm)
    _tamper(path, sql, params)
    if message is None:
        SpeakerStore(path)                           # a no-op change: still fine
        return
    with pytest.raises(StoreError, match=message):
        SpeakerStore(path)


@pytest.mark.parametrize("column, value, message", [
    ("a", np.zeros(15).tobytes(), "array sizes"),
    ("b", b"x" * 10, "array sizes"),
    ("c", np.full((16, D), np.nan).tobytes(), "NaN"),
    ("a", np.full(16, -1.0).tobytes(), "inconsistent"),
    ("a", np.full(16, 1e6).tobytes(), "inconsistent"),
    ("k", 17, "shape"),
    ("kind", "pickle", "bad kind"),
    ("n_frames", float("inf"), "non-finite"),
    ("loglik", "text", "non-numeric"),
])
def test_invalid_rows_are_refused(tmp_path, ubm, column, value, message):
    path = _store_with_speaker(tmp_path, ubm)
    _tamper(path, f"UPDATE speakers SET {column}=?", (value,))
    st = SpeakerStore(path)
    with pytest.raises(StoreError, match=message):
        st.model("a")


def test_another_ubm_garbage_and_missing_files(tmp_path, ubm):
    path = _store_with_speaker(tmp_path, ubm)
    other = GaussianMixture.from_parameters(ubm.weights_, ubm.means_ + 1, ubm.covariances_)
    with pytest.raises(StoreError, match="bound to another UBM"):
        SpeakerStore(path, other)
    with pytest.raises(StoreError, match="no such speaker store"):
        SpeakerStore(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()
    (tmp_path / "text.db").write_text("hello, not a database\n" * 100)
    with pytest.raises(StoreError, match="not a usable speaker store"):
        SpeakerStore(tmp_path / "text.db")
    data = path.read_bytes()
    (tmp_path / "cut.db").write_bytes(data[:len(data) // 3])
    with pytest.raises(StoreError):
        SpeakerStore(tmp_path / "cut.db").model("a")


# ---------------------------------------------------------------------------- processes
CHILD = textwrap.dedent("""
    import sys, time, pathlib
    import numpy as np
    from speaker.store import SpeakerStore
    db, ubm, marker, *specs = sys.argv[1:]
    class Slow(SpeakerStore):
        def _before_commit(self, speaker_id):
            if marker != "-":
                pathlib.Path(marker).write_text("in transaction")
                time.sleep(60)
    st = Slow(db, ubm)
    for spec in specs:
        spk, *files = spec.split(",")
        st.enroll(spk, files)
""")


def _write_recordings(tmp_path, seed, n=3):
    paths = []
    for i, x in enumerate(recs(seed, n=n)):
        p = tmp_path / f"r{seed}_{i}.npy"
        np.save(p, x)
        paths.append(p)
    return paths


def _child(tmp_path, db, marker, specs):
    return subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(tmp_path / "ubm.npz"), str(marker)] + specs,
                            stderr=subprocess.PIPE, text=True)


def test_two_processes_enrolling_at_once_lose_nothing(tmp_path, ubm):
    save_model(tmp_path / "ubm.npz", ubm)
    db = tmp_path / "s.db"
    SpeakerStore(db, ubm).close()
    files = {f"p{w}_{j}": _write_recordings(tmp_path, 100 * w + j) for w in range(2) for j in range(12)}
    specs = [[k + "," + ",".join(map(str, v)) for k, v in files.items() if k.startswith(f"p{w}_")] for w in range(2)]
    procs = [_child(tmp_path, db, "-", s) for s in specs]
    for p in procs:
        assert p.wait(timeout=240) == 0, p.stderr.read()
    st = SpeakerStore(db)
    assert sorted(s.id for s in st.speakers()) == sorted(files)
    for k, paths in files.items():
        assert np.array_equal(st.model(k).means_, map_adapt(ubm, [np.load(p) for p in paths]).means_)


def test_sigkill_mid_enrolment_leaves_the_store_as_before(tmp_path, ubm):
    save_model(tmp_path / "ubm.npz", ubm)
    db = tmp_path / "s.db"
    st = SpeakerStore(db, ubm)
    first = _write_recordings(tmp_path, 1)
    st.enroll("a", first)
    before = (st.speakers(), st.recordings("a"), st.stats("a").sum_x.copy())
    marker = tmp_path / "marker"
    p = _child(tmp_path, db, marker, ["a," + ",".join(map(str, _write_recordings(tmp_path, 2))),
                                      ])
    deadline = time.time() + 120
    while not marker.exists():
        assert p.poll() is None, p.stderr.read()
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL
    after = SpeakerStore(db)
    assert after.speakers() == before[0] and after.recordings("a") == before[1]
    assert np.array_equal(after.stats("a").sum_x, before[2])
    after.enroll("b", first)                         # and it is still writable
    assert len(after) == 2
