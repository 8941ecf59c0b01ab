"""The speaker store (speaker/store.py): exact incremental enrolment, models, decisions,
refusal of bad stores, concurrent writers (processes and threads) and SIGKILL, on both backends:
a real SQLite file and a real PostgreSQL server (``store_at`` and ``postgres_server`` in
conftest.py; a test that takes ``store_at`` runs once per backend)."""
import functools
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
from speaker.gates import NO_GATE
from speaker.store import SpeakerStore, StoreError

D = 6
#: The store without quality gates: these tests check the arithmetic on short synthetic features
#: (tests/test_decisions.py checks the gates).
Store = functools.partial(SpeakerStore, gate=NO_GATE)


@pytest.fixture(scope="module")
def ubm():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(loc=c, size=(800, D)) for c in (-2, 0, 2)]).astype(np.float32)
    return GaussianMixture(16, covariance_type="diag", random_state=0, max_iter=20).fit(X)


def recs(seed, n=4, shift=0.5, frames=150):
    rng = np.random.default_rng(seed)
    centre = rng.normal(scale=shift, size=D)
    return [(centre + rng.normal(size=(frames + 10 * i, D))).astype(np.float32) for i in range(n)]


def test_incremental_enrolment_equals_one_shot_bit_for_bit(store_at, ubm):
    r = recs(1, n=5)
    st = Store(store_at("s.db"), ubm)
    st.enroll("a", r[:2])
    st.enroll("a", r[2:3])
    st.enroll("a", r[3:])
    once = Store(store_at("once.db"), ubm)
    once.enroll("a", r)
    ref = map_adapt(ubm, r)                          # the batch path: statistics folded per recording
    for m in (st.model("a"), once.model("a"), Store(store_at("s.db")).model("a")):
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


def test_duplicates_skipped_replace_and_remove(store_at, ubm):
    r = recs(2, n=3)
    st = Store(store_at("s.db"), ubm)
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


def test_cache_follows_changes_made_by_another_process_object(store_at, ubm):
    r = recs(3)
    one, two = Store(store_at("s.db"), ubm), Store(store_at("s.db"))
    one.enroll("a", r[:1])
    first = one.model("a")
    assert one.model("a") is first                   # cached
    two.enroll("a", r[1:])
    assert np.array_equal(one.model("a").means_, map_adapt(ubm, r).means_)
    two.remove("a")
    two.enroll("a", r[:1])                           # same content as the first model, new generation
    assert one.model("a") is not first and np.array_equal(one.model("a").means_, first.means_)


def test_verify_and_identify(store_at, ubm):
    spk = {f"s{i}": recs(10 + i, shift=2.0) for i in range(5)}
    st = Store(store_at("s.db"), ubm, top_c=4)
    for i, r in spk.items():
        st.enroll(i, r[:3])
    test = spk["s2"][3]
    res = st.verify("s2", test)
    assert res.score == pytest.approx(llr(map_adapt(ubm, spk["s2"][:3]), ubm, test, top_c=4), abs=1e-12)
    # no calibration, no threshold: a score, no decision (never accept)
    assert (res.accept, res.decision, res.llr, res.threshold) == (False, "undecided", None, None)
    assert "no calibration and no threshold" in res.reason
    assert st.identify(test, n=3) == []
    assert [m.decision for m in st.candidates(test, n=3)] == ["undecided"] * 3
    assert st.verify("s2", test, threshold=res.score + 1e-9).decision == "reject"
    assert st.verify("s2", test, threshold=res.score).decision == "accept"
    ids, scores = st.scores_all(test)
    for i, s in zip(ids, scores):
        assert s == pytest.approx(llr(map_adapt(ubm, spk[i][:3]), ubm, test, top_c=4), abs=1e-9)
    best = st.candidates(test, n=3, threshold=-1e9)
    assert best == st.identify(test, n=3, threshold=-1e9)
    assert best[0][0] == "s2" and [b[1] for b in best] == sorted([b[1] for b in best], reverse=True)
    assert st.identify(test, n=3, threshold=float(scores.max()) + 1.0) == []     # open set: nobody passes
    Store(store_at("s.db")).enroll("s9", [test])     # another writer: the kept models are rebuilt
    ids, scores = st.scores_all(test)
    assert ids == [f"s{i}" for i in range(5)] + ["s9"]
    assert scores[-1] == pytest.approx(llr(map_adapt(ubm, test), ubm, test, top_c=4), abs=1e-9)
    Store(store_at("s.db")).remove("s9")
    assert st.scores_all(test)[0] == [f"s{i}" for i in range(5)]
    st.calibration = Calibration(2.0, -1.0)
    res = st.verify("s2", test, p_target=0.01)
    assert res.llr == pytest.approx(2 * res.score - 1) and res.threshold == pytest.approx(np.log(99))
    assert res.accept == (res.llr >= np.log(99))
    assert Store(store_at("s.db")).calibration == Calibration(2.0, -1.0)
    with pytest.raises(KeyError):
        st.verify("nobody", test)


def _count_transactions(st):
    """A counter of the store's transactions (SQLAlchemy's "begin" event of its engine)."""
    import sqlalchemy as sa
    n = [0]
    sa.event.listen(st._db.engine, "begin", lambda conn: n.__setitem__(0, n[0] + 1))
    return n


@pytest.mark.parametrize("top_c", [None, 4])
def test_identify_and_verify_give_bitwise_equal_scores_in_one_transaction_each(store_at, ubm, top_c):
    """verify is identify restricted to one id: the same number, to the last bit, for every
    speaker and recording (float32 features: an exact score summed in float32 differed in the
    7th digit), exact and top-C; each call is one read transaction of the store; identify's LLR
    is the calibration's, as verify's."""
    spk = {f"s{i}": recs(60 + i, shift=2.0) for i in range(6)}
    st = Store(store_at("s.db"), ubm, top_c=top_c)
    for i, r in spk.items():
        st.enroll(i, r[:3])
    count = _count_transactions(st)
    for i, r in spk.items():
        for test in (r[3], spk["s0"][3]):
            count[0] = 0
            v = st.verify(i, test, threshold=-1e9)
            assert count[0] == 1
            count[0] = 0
            best = st.identify(test, n=5, threshold=-1e9)
            assert count[0] == 1 and len(best) == 5
            every = {m.id: m.score for m in st.identify(test, n=len(spk), threshold=-1e9)}
            assert every[i] == v.score                       # bitwise
            assert st.scores_all(test, [i])[1][0] == v.score == st.score(i, test)
    st.calibration = Calibration(2.0, -1.0)
    test = spk["s1"][3]
    count[0] = 0
    m, = st.identify(test, n=1)
    v = st.verify(m.id, test)
    assert count[0] == 2 and (m.id, m.score, m.llr) == ("s1", v.score, v.llr) and v.llr == 2 * v.score - 1


@pytest.mark.parametrize("top_c", [None, 4])
def test_a_recording_is_checked_once_at_the_face(store_at, ubm, top_c, monkeypatch):
    """verify / identify / enroll check a feature array once (SpeakerStore.features); gmmext
    is then called with check_input=False and validates nothing again."""
    import speaker.store
    st = Store(store_at("s.db"), ubm, top_c=top_c)
    st.enroll("a", recs(70, n=2))
    faces, scans = [], []
    check = speaker.store.check_features
    monkeypatch.setattr(speaker.store, "check_features", lambda *a, **k: faces.append(1) or check(*a, **k))
    monkeypatch.setattr(GaussianMixture, "_validate_X", lambda self, X, reset: scans.append(1) or X)
    segments = GaussianMixture._prepare_segments
    monkeypatch.setattr(GaussianMixture, "_prepare_segments",
                        lambda self, segs, check_input=True: scans.extend([1] * check_input) or segments(self, segs, check_input))
    test = recs(71, n=1)[0]
    st.verify("a", test)
    st.identify(test, n=1)
    st.enroll("b", [test])
    assert (len(faces), len(scans)) == (3, 0)


@pytest.mark.parametrize("adapt", ["m", "mw", "mwv"])
def test_identify_stacks_built_from_rows_score_as_the_models(tmp_path, store_at, ubm, adapt):
    """The batches identification derives from the stored statistics by array operations (and
    imported models, with their own variances) score exactly as the models ``model`` derives,
    scored one by one with the direct formula: log sum over the UBM's top-C components."""
    from scipy.special import logsumexp
    from conftest import reference_logprob
    st = Store(store_at("s.db"), ubm, adapt=adapt, top_c=3)
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


def test_export_and_import(tmp_path, store_at, ubm):
    st = Store(store_at("s.db"), ubm)
    st.enroll("a", recs(4))
    st.enroll("b", recs(5))
    st.export(tmp_path / "models.npz")
    mf = load_model(tmp_path / "models.npz", ubm=ubm)
    assert np.array_equal(mf.speakers["a"].means_, st.model("a").means_)
    other = Store(store_at("t.db"), ubm)
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
def _store_with_speaker(store_at, ubm):
    st = Store(store_at("s.db"), ubm)
    st.enroll("a", recs(7))
    st.close()
    return store_at("s.db")


def _tamper(location, sql, params=()):
    """Change a store behind its back: sqlite3 on the file, psycopg on the PostgreSQL database."""
    if isinstance(location, str) and location.startswith("postgresql://"):
        import psycopg
        with psycopg.connect(location) as db:
            db.execute(sql.replace("?", "%s"), params)
        return
    with sqlite3.connect(location) as db:
        db.execute(sql, params)


@pytest.mark.parametrize("sql, params, message", [
    ("UPDATE meta SET value='3' WHERE key='format_version'", (), "unsupported format_version '3'"),
    ("UPDATE meta SET value='other' WHERE key='format'", (), "format is not"),
    ("DELETE FROM meta WHERE key='adapt'", (), "bad meta entry"),
    ("UPDATE ubm SET means=?", (bytes(8),), "malformed UBM row"),
    ("UPDATE ubm SET means=means", (), None),
    ("UPDATE meta SET value='00' WHERE key='ubm_fingerprint'", (), "does not match its fingerprint"),
    ("DROP TABLE recordings", (), "missing tables"),
])
def test_tampered_store_metadata_is_refused(store_at, ubm, sql, params, message):
    path = _store_with_speaker(store_at, ubm)
    _tamper(path, sql, params)
    if message is None:
        Store(path)                           # a no-op change: still fine
        return
    with pytest.raises(StoreError, match=message):
        Store(path)


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
def test_invalid_rows_are_refused(store_at, ubm, column, value, message):
    path = _store_with_speaker(store_at, ubm)
    if isinstance(path, str) and isinstance(value, str) and column == "loglik":
        pytest.skip("PostgreSQL's typed columns refuse text in a DOUBLE PRECISION column themselves")
    _tamper(path, f"UPDATE speakers SET {column}=?", (value,))
    st = Store(path)
    with pytest.raises(StoreError, match=message):
        st.model("a")


def test_another_ubm_garbage_and_missing_files(tmp_path, ubm):
    path = _store_with_speaker(lambda name: tmp_path / name, ubm)
    other = GaussianMixture.from_parameters(ubm.weights_, ubm.means_ + 1, ubm.covariances_)
    with pytest.raises(StoreError, match="bound to another UBM"):
        Store(path, other)
    with pytest.raises(StoreError, match="no such speaker store"):
        Store(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()
    (tmp_path / "text.db").write_text("hello, not a database\n" * 100)
    with pytest.raises(StoreError, match="not a usable speaker store"):
        Store(tmp_path / "text.db")
    data = path.read_bytes()
    (tmp_path / "cut.db").write_bytes(data[:len(data) // 3])
    with pytest.raises(StoreError):
        Store(tmp_path / "cut.db").model("a")


@pytest.mark.parametrize("K, D", [(4097, 2), (2, 201)])
def test_a_ubm_beyond_the_limits_is_refused_by_the_store_as_by_the_model_files(tmp_path, K, D):
    """One home for K/D limits (speaker.limits): what a model file refuses, a store refuses."""
    from speaker.limits import MAX_COMPONENTS, MAX_DIM
    from speaker.model_io import ModelError
    assert (MAX_COMPONENTS, MAX_DIM) == (4096, 200)
    big = GaussianMixture.from_parameters(np.full(K, 1 / K), np.zeros((K, D)), np.ones((K, D)),
                                          covariance_type="diag")
    save_model(tmp_path / "big.npz", big)
    with pytest.raises(ModelError, match="at most 4096 components and 200 dimensions"):
        load_model(tmp_path / "big.npz")
    with pytest.raises(StoreError, match="at most 4096 components and 200 dimensions"):
        Store(tmp_path / "big.db", big)


def test_postgresql_locations_that_are_not_stores(postgres_server, ubm):
    empty = postgres_server.new_database()
    with pytest.raises(StoreError, match="no such speaker store"):
        Store(empty)                          # a database without the store's tables, no UBM
    with pytest.raises(StoreError, match="cannot connect"):
        Store(postgres_server.url("no_such_database"), ubm)
    st = Store(empty, ubm)                    # created in the existing database
    assert len(st) == 0 and st.backend == "postgresql" and "postgresql://" in str(st.path)
    with pytest.raises(StoreError, match="unsupported store URL"):
        Store("mysql://host/db", ubm)
    with pytest.raises(StoreError, match="names a file"):
        Store("sqlite://", ubm)               # in-memory: every pooled connection its own database


def test_sqlite_urls_and_paths_are_the_same_store(tmp_path, ubm, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Store("sqlite:///rel.db", ubm).enroll("a", recs(8))
    assert (tmp_path / "rel.db").exists() and "a" in Store(tmp_path / "rel.db")
    assert "a" in Store(f"sqlite:///{tmp_path / 'rel.db'}")     # sqlite:////absolute/path
    with sqlite3.connect(tmp_path / "rel.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# ---------------------------------------------------------------------------- the cohort
def test_cohort_kept_in_the_store(store_at, ubm):
    from speaker.cohort import Cohort
    st = Store(store_at("s.db"), ubm)
    assert st.cohort() is None and st.cohort_info() == [] and st.remove_cohort() == 0
    xs = recs(400, n=6, shift=2.0)
    res = st.add_cohort([(f"c{i}", x) for i, x in enumerate(xs)] + [("bad", np.ones((5, D + 1), np.float32))])
    assert res.added == [f"c{i}" for i in range(6)] and list(res.skipped) == ["bad"] and res.n_recordings == 6
    res = st.add_cohort([("c0", xs[1]), ("other", xs[2]), ("c9", recs(401, n=1)[0])])
    assert res.added == ["c9"] and res.skipped == {"c0": "already in the cohort (same id)",
                                                    "other": "already in the cohort (same content)"}
    c = Store(store_at("s.db")).cohort(top_c=3)          # another instance reads it back
    ref = Cohort.from_features(ubm, [f"c{i}" for i in range(6)] + ["c9"], xs + recs(401, n=1), top_c=3)
    assert c.ids == ref.ids and c.top_c == 3 and len(c) == 7
    for got, want in zip(c.features, ref.features):
        assert got.dtype == np.float32 and np.array_equal(got, want)
    for got, want, x in zip(c.models, ref.models, xs):
        assert np.array_equal(got.means_, want.means_)
        assert np.allclose(got.means_, map_adapt(ubm, [x]).means_, atol=1e-5)
    assert [i.n_frames for i in st.cohort_info()] == [len(x) for x in xs] + [150]
    assert st.cohort().models[0] is st.cohort().models[0]                  # derived once, kept
    with pytest.raises(KeyError):
        Store(store_at("s.db")).remove_cohort(["c1", "nobody"])             # all or nothing
    Store(store_at("s.db")).remove_cohort(["c1"])
    assert st.cohort().ids == ["c0", "c2", "c3", "c4", "c5", "c9"]          # another writer's change is seen
    assert st.remove_cohort() == 6 and st.cohort() is None


@pytest.mark.parametrize("sql, params, message", [
    ("UPDATE cohort SET features=?", (np.full((150, D), np.nan, np.float32).tobytes(),), "features contain NaN"),
    ("UPDATE cohort SET features=?", (bytes(12),), "array sizes"),
    ("UPDATE cohort SET frames=?", (151,), "array sizes"),
    ("UPDATE cohort SET n_frames=?", (10.0,), "not the features"),
    ("UPDATE cohort SET dtype=?", ("object",), "bad shape or dtype"),
    ("UPDATE cohort SET a=?", (np.full(16, -1.0).tobytes(),), "inconsistent"),
])
def test_invalid_cohort_rows_are_refused(store_at, ubm, sql, params, message):
    st = Store(store_at("s.db"), ubm)
    st.add_cohort([("c0", recs(402, n=1)[0])])
    _tamper(store_at("s.db"), sql, params)
    with pytest.raises(StoreError, match=message):
        Store(store_at("s.db")).cohort()


# ---------------------------------------------------------------------------- threads
def test_threads_share_one_store_and_lose_nothing(store_at, ubm):
    """One SpeakerStore, many threads: enrolments of different speakers and of one speaker at
    once, and verifications of a third speaker meanwhile."""
    from concurrent.futures import ThreadPoolExecutor
    assert SpeakerStore.thread_safe is True
    st = Store(store_at("s.db"), ubm)
    v = recs(50, n=3)
    st.enroll("v", v[:2])
    expected = llr(map_adapt(ubm, v[:2]), ubm, v[2])
    different = {f"t{i}": recs(200 + i, n=2) for i in range(10)}
    same = recs(300, n=10)                           # ten recordings for speaker "shared", one per call
    calls = [(lambda k=k, r=r: st.enroll(k, r)) for k, r in different.items()]
    calls += [(lambda x=x: st.enroll("shared", [x])) for x in same]
    calls += [(lambda: st.verify("v", v[2]).score) for _ in range(10)]
    order = np.random.default_rng(0).permutation(len(calls))
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda j: calls[j](), order))
    scores = [r for r in results if isinstance(r, float)]
    assert len(scores) == 10 and all(s == pytest.approx(expected, abs=1e-12) for s in scores)
    fresh = Store(store_at("s.db"))
    assert sorted(s.id for s in fresh.speakers()) == sorted(["v", "shared", *different])
    for k, r in different.items():
        assert np.array_equal(fresh.model(k).means_, map_adapt(ubm, r).means_)
    info = {s.id: s for s in fresh.speakers()}
    assert info["shared"].n_recordings == 10 and info["shared"].n_frames == sum(len(x) for x in same)
    stats = fresh.stats("shared")                    # the sum of all ten, in whichever order they came
    acc = [ubm.accumulate(x) for x in same]
    assert np.allclose(stats.n, sum(a.n for a in acc)) and np.allclose(stats.sum_x, sum(a.sum_x for a in acc))
    assert np.allclose(stats.sum_xx, sum(a.sum_xx for a in acc))
    # every change took its own generation
    assert int(fresh._get_meta("generation")) == 1 + len(different) + len(same)


# ---------------------------------------------------------------------------- processes
CHILD = textwrap.dedent("""
    import sys, time, pathlib
    import numpy as np
    from speaker.gates import NO_GATE
    from speaker.store import SpeakerStore
    db, ubm, marker, *specs = sys.argv[1:]
    class Slow(SpeakerStore):
        def _before_commit(self, speaker_id):
            if marker != "-":
                pathlib.Path(marker).write_text("in transaction")
                time.sleep(60)
    st = Slow(db, ubm, gate=NO_GATE)
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


def test_two_processes_enrolling_at_once_lose_nothing(tmp_path, store_at, ubm):
    save_model(tmp_path / "ubm.npz", ubm)
    db = store_at("s.db")
    Store(db, ubm).close()
    files = {f"p{w}_{j}": _write_recordings(tmp_path, 100 * w + j) for w in range(2) for j in range(12)}
    specs = [[k + "," + ",".join(map(str, v)) for k, v in files.items() if k.startswith(f"p{w}_")] for w in range(2)]
    procs = [_child(tmp_path, db, "-", s) for s in specs]
    for p in procs:
        assert p.wait(timeout=240) == 0, p.stderr.read()
    st = Store(db)
    assert sorted(s.id for s in st.speakers()) == sorted(files)
    for k, paths in files.items():
        assert np.array_equal(st.model(k).means_, map_adapt(ubm, [np.load(p) for p in paths]).means_)


def test_sigkill_mid_enrolment_leaves_the_store_as_before(tmp_path, store_at, ubm):
    save_model(tmp_path / "ubm.npz", ubm)
    db = store_at("s.db")
    st = Store(db, ubm)
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
    assert st.speakers() == before[0]               # meanwhile, readers see the store as before
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL
    after = Store(db)
    assert after.speakers() == before[0] and after.recordings("a") == before[1]
    assert np.array_equal(after.stats("a").sum_x, before[2])
    after.enroll("b", first)                         # and it is still writable
    assert len(after) == 2
