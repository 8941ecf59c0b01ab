"""The speaker store: enrolled speakers over time, in one SQLite file (``sqlite3``, WAL mode).

A store is bound to one UBM, which it holds (so ``verify`` / ``identify`` need nothing else),
together with its SHA-256 fingerprint (:func:`speaker.model_io.ubm_fingerprint`), the
``FeatureConfig`` it was trained with, the MAP settings (relevance factor, adapted parameters)
and a format version.  Per speaker it keeps the **sufficient statistics** of all enrolment data
under the UBM (``GMMStats``: n_k, sum_x, sum_xx in float64, the frame count and total
log-likelihood) and one row per enrolled recording (source, SHA-256 of its content, frames,
time).  The model is derived by MAP (:func:`speaker.adapt.map_from_stats`) when needed and
cached in the process; the cache is keyed by the speaker's *generation*, a store-wide counter
taken by every change, so a change made by another process is seen at the next call.

Incremental enrolment is exact.  Enrolling recordings r1, ..., rn at once folds their statistics
left to right (``((s1 + s2) + s3) + ...``, as :func:`speaker.map_adapt` does); adding r3 later
to a speaker holding ``s1 + s2`` computes ``(s1 + s2) + s3``: the same float64 operations in the
same order, stored as raw bytes (an exact round trip), hence bit for bit the same model.  A
recording already enrolled for the speaker (same content hash) is skipped, so re-running an
enrolment does not count it twice.  Only per-speaker sums are stored (K (2 D + 1) float64
values: 496 KB at K=512, D=60), not per-recording statistics (5 times more for 5 recordings);
the price is that a single recording cannot be taken out again (replace the speaker instead).

Concurrency and faults: every change is one ``BEGIN IMMEDIATE`` transaction (feature extraction
and statistics are computed before it, so the write lock is held for milliseconds); writers
queue on SQLite's lock (``timeout``) and readers see a consistent snapshot (WAL).  A process
killed mid-enrolment leaves the store as it was (SQLite's journal).  The store is untrusted
input, like a model file: format and version, the UBM (parameters re-validated, fingerprint
recomputed), every row's shapes, byte sizes (checked with ``length()`` before a BLOB is read),
dtypes and values (finite, non-negative counts that add up to the frame count) are checked
before use, and arrays are raw little-endian float64 bytes with shape columns: nothing is
unpickled.  Every problem raises :class:`StoreError` naming the file and the reason.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, NamedTuple, Sequence, Union

import numpy as np

from gmmext import GaussianMixture, GMMStats, ModelStack

from .adapt import map_from_stats, map_parameters
from .calibration import Calibration, decision_threshold
from .featstore import read_source
from .features import FeatureConfig
from .model_io import ModelError, load_model, save_model, ubm_fingerprint
from .scoring import llr

__all__ = ["StoreError", "SpeakerStore", "SpeakerInfo", "EnrollResult", "VerifyResult"]

FORMAT = "gmmext-speaker-store"
FORMAT_VERSION = 1
_MAX_K, _MAX_D, _MAX_KD = 1 << 16, 4096, 1 << 24          # a (K, D) float64 BLOB <= 128 MB
_MAX_ID = 256

Source = Union[str, os.PathLike, np.ndarray]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ubm (
    id INTEGER PRIMARY KEY CHECK (id = 1), dtype TEXT NOT NULL, k INTEGER NOT NULL, d INTEGER NOT NULL,
    weights BLOB NOT NULL, means BLOB NOT NULL, covariances BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS speakers (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, generation INTEGER NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, k INTEGER NOT NULL, d INTEGER NOT NULL,
    n_frames REAL NOT NULL, loglik REAL NOT NULL, a BLOB NOT NULL, b BLOB NOT NULL, c BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS recordings (
    speaker_id TEXT NOT NULL REFERENCES speakers(id) ON DELETE CASCADE, seq INTEGER NOT NULL,
    source TEXT NOT NULL, sha256 TEXT NOT NULL, n_frames INTEGER NOT NULL, enrolled_at REAL NOT NULL,
    PRIMARY KEY (speaker_id, seq));
"""
# speakers.kind: "stats" (a, b, c = n (K,), sum_x (K, D), sum_xx (K, D)) or "model" (imported from a
# models.npz without statistics: a, b, c = weights, means, variances; cannot be extended).


class StoreError(ModelError):
    """A speaker store that cannot be used (unreadable, malformed, another UBM or version),
    or an operation it refuses (unknown speaker, nothing usable to enrol)."""


class SpeakerInfo(NamedTuple):
    """One row of :meth:`SpeakerStore.speakers`: ``enrolled_at`` / ``updated_at`` are Unix times."""

    id: str
    n_recordings: int
    n_frames: int
    enrolled_at: float
    updated_at: float
    kind: str


class VerifyResult(NamedTuple):
    """Outcome of :meth:`SpeakerStore.verify`.

    ``score``: raw average LLR (nats per frame); ``llr``: the score calibrated to a
    log-likelihood ratio (natural log, :class:`speaker.calibration.Calibration`), or None
    without a calibration; ``accept``: the decision;
    ``threshold``: what was compared (on the ``llr`` scale when calibrated, else on ``score``).
    """

    score: float
    llr: float | None
    accept: bool
    threshold: float


@dataclass
class EnrollResult:
    """What :meth:`SpeakerStore.enroll` did: recordings ``added``, ``skipped`` (source -> reason)."""

    speaker_id: str
    added: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    n_recordings: int = 0
    n_frames: int = 0


def _blob(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype="<f8").tobytes()


def content_hash(source: Source, features: np.ndarray | None = None) -> str:
    """SHA-256 of a recording: the file's bytes, or the float32 features of an array / ark entry."""
    if isinstance(source, np.ndarray):
        return hashlib.sha256(np.ascontiguousarray(source, dtype="<f4").tobytes()).hexdigest()
    s = os.fspath(source)
    head, sep, tail = s.rpartition(".ark:")
    if sep and tail.isdigit() and features is not None:
        return hashlib.sha256(np.ascontiguousarray(features, dtype="<f4").tobytes()).hexdigest()
    h = hashlib.sha256()
    with open(s, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_speaker_id(speaker_id: object) -> str:
    """A speaker id: a non-empty string of at most 256 characters without whitespace."""
    if not isinstance(speaker_id, str) or not speaker_id or len(speaker_id) > _MAX_ID \
            or any(c.isspace() for c in speaker_id) or not speaker_id.isprintable():
        raise ValueError(f"speaker ids must be non-empty printable strings of at most {_MAX_ID} characters "
                         f"without whitespace; got {speaker_id!r}")
    return speaker_id


class SpeakerStore:
    """Enrolled speakers in one SQLite file, bound to one UBM.

    Parameters
    ----------
    path : the store file (``.db``)
    ubm : GaussianMixture, path of a UBM ``.npz``, or None
        Needed to create a store; when the store exists it must be the store's UBM
        (same fingerprint), or None to use the one in the store.
    config : FeatureConfig for a new store (default: the UBM file's, or ``FeatureConfig()``)
    relevance_factor, adapt : MAP settings of a new store (see :func:`speaker.map_adapt`);
        stored, so every process derives the same models.
    top_c : fast scoring with the UBM's C best components per frame in :meth:`verify` /
        :meth:`identify` (None, the default: exact, as ``speaker score``; a calibration must
        come from scores computed the same way)
    timeout : seconds a write waits for another process's transaction
    create : False to refuse creating a missing store

    Raises
    ------
    StoreError when the file is not a usable store of this format version and UBM.
    """

    def __init__(self, path: str | os.PathLike, ubm: GaussianMixture | str | os.PathLike | None = None, *,
                 config: FeatureConfig | None = None, relevance_factor: float = 16.0, adapt: str = "m",
                 top_c: int | None = None, timeout: float = 60.0, create: bool = True) -> None:
        self.path = Path(path)
        self.top_c = top_c
        self._cache: dict[str, tuple[int, GaussianMixture]] = {}
        self._stacks: tuple | None = None
        if isinstance(ubm, (str, os.PathLike)):
            mf = load_model(ubm)
            if mf.kind != "ubm":
                raise StoreError(f"{ubm}: holds speaker models, not a UBM")
            ubm, config = mf.ubm, (config or mf.config)
        exists = self.path.exists() and self.path.stat().st_size > 0
        if not exists and (ubm is None or not create):
            raise StoreError(f"{self.path}: no such speaker store"
                             + (" (give the UBM to create one)" if ubm is None else ""))
        try:
            self._db = sqlite3.connect(f"file:{self.path}?mode={'rw' if exists else 'rwc'}", uri=True,
                                       timeout=timeout, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: not a usable speaker store: {exc}") from None
        try:
            if not exists or not self._has_meta():
                self._create(ubm, config or FeatureConfig(), relevance_factor, adapt)
            self._open(ubm)
        except BaseException:
            self._db.close()
            raise

    # ------------------------------------------------------------------ opening
    def _fail(self, why: str):
        raise StoreError(f"{self.path}: not a usable speaker store: {why}")

    def _sql(self, query: str, params: Sequence = ()) -> list[tuple]:
        try:
            return self._db.execute(query, params).fetchall()
        except sqlite3.DatabaseError as exc:
            self._fail(f"{type(exc).__name__}: {exc}")

    def _has_meta(self) -> bool:
        return bool(self._sql("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"))

    def _create(self, ubm: GaussianMixture, config: FeatureConfig, relevance_factor: float, adapt: str) -> None:
        # validates relevance_factor and adapt the way every later derivation will use them
        map_from_stats(ubm, GMMStats(np.ones(ubm.n_components), ubm.means_, ubm.means_ ** 2, 0.0,
                                     float(ubm.n_components)), relevance_factor=relevance_factor, adapt=adapt)
        K, D = ubm.means_.shape
        if not (1 <= K <= _MAX_K and 1 <= D <= _MAX_D and K * D <= _MAX_KD):
            raise StoreError(f"{self.path}: a UBM of K={K}, D={D} is too large for a store")
        with self._write():
            if self._sql("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"):
                return                                   # another process created it meanwhile
            for stmt in _SCHEMA.strip().split(";"):
                if stmt.strip():
                    self._db.execute(stmt)
            meta = dict(format=FORMAT, format_version=str(FORMAT_VERSION), ubm_fingerprint=ubm_fingerprint(ubm),
                        feature_config=config.to_json(), relevance_factor=repr(float(relevance_factor)),
                        adapt=adapt, generation="0", created_at=repr(time.time()))
            self._db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            self._db.execute("INSERT INTO ubm VALUES (1, ?, ?, ?, ?, ?, ?)",
                             (str(ubm.means_.dtype), K, D, _blob(ubm.weights_), _blob(ubm.means_),
                              _blob(ubm.covariances_)))

    def _open(self, ubm: GaussianMixture | None) -> None:
        tables = {r[0] for r in self._sql("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"meta", "ubm", "speakers", "recordings"} <= tables:
            self._fail(f"missing tables {sorted({'meta', 'ubm', 'speakers', 'recordings'} - tables)}")
        meta = {}
        for k, v in self._sql("SELECT key, value FROM meta"):
            if not isinstance(k, str) or not isinstance(v, str) or len(v) > 1 << 20:
                self._fail("malformed meta table")
            meta[k] = v
        if meta.get("format") != FORMAT:
            self._fail(f"format is not {FORMAT!r}")
        if meta.get("format_version") != str(FORMAT_VERSION):
            self._fail(f"unsupported format_version {meta.get('format_version')!r} "
                       f"(this version reads {FORMAT_VERSION})")
        try:
            self.config = FeatureConfig.from_json(meta["feature_config"])
            self.relevance_factor = float(meta["relevance_factor"])
            self.adapt = meta["adapt"]
            fp = meta["ubm_fingerprint"]
        except (KeyError, ValueError, TypeError) as exc:
            self._fail(f"bad meta entry: {type(exc).__name__}: {exc}")
        rows = self._sql("SELECT dtype, k, d, length(weights), length(means), length(covariances) FROM ubm")
        if len(rows) != 1:
            self._fail("the UBM row is missing")
        dtype, K, D, lw, lm, lv = rows[0]
        if dtype not in ("float32", "float64") or not all(isinstance(x, int) for x in (K, D)) \
                or not (1 <= K <= _MAX_K and 1 <= D <= _MAX_D and K * D <= _MAX_KD) \
                or (lw, lm, lv) != (8 * K, 8 * K * D, 8 * K * D):
            self._fail("malformed UBM row (dtype, shape or sizes)")
        w, mu, var = self._sql("SELECT weights, means, covariances FROM ubm")[0]
        try:
            stored = GaussianMixture.from_parameters(
                np.frombuffer(w, "<f8").astype(dtype), np.frombuffer(mu, "<f8").reshape(K, D).astype(dtype),
                np.frombuffer(var, "<f8").reshape(K, D).astype(dtype), covariance_type="diag")
        except ValueError as exc:
            self._fail(f"UBM: {exc}")
        if ubm_fingerprint(stored) != fp:
            self._fail("the stored UBM does not match its fingerprint (corrupted?)")
        if ubm is not None and ubm_fingerprint(ubm) != fp:
            raise StoreError(f"{self.path}: this store is bound to another UBM (fingerprint {fp[:12]}...), "
                             f"not the given one ({ubm_fingerprint(ubm)[:12]}...)")
        self.ubm, self.fingerprint, self.K, self.D = (ubm if ubm is not None else stored), fp, K, D
        if self.top_c is not None and not (isinstance(self.top_c, (int, np.integer)) and 1 <= self.top_c <= K):
            raise ValueError(f"top_c must be None or an int in [1, {K}], got {self.top_c!r}")
        self._meta = meta

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> "SpeakerStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ transactions
    class _Write:
        def __init__(self, store):
            self.store = store

        def __enter__(self):
            try:
                self.store._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreError(f"{self.store.path}: cannot write: {exc}") from None

        def __exit__(self, typ, exc, tb):
            db = self.store._db
            if typ is None:
                try:
                    db.execute("COMMIT")
                    return
                except sqlite3.Error as err:         # e.g. disk full: nothing of the transaction stays
                    exc = err
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"{self.store.path}: {type(exc).__name__}: {exc}") from None

    def _write(self) -> "_Write":
        return SpeakerStore._Write(self)

    def _next_generation(self) -> int:
        (g,), = self._sql("SELECT value FROM meta WHERE key='generation'")
        g = int(g) + 1
        self._db.execute("UPDATE meta SET value=? WHERE key='generation'", (str(g),))
        return g

    # ------------------------------------------------------------------ meta values
    def _get_meta(self, key: str) -> str | None:
        rows = self._sql("SELECT value FROM meta WHERE key=?", (key,))
        return rows[0][0] if rows else None

    def _set_meta(self, key: str, value: str | None) -> None:
        with self._write():
            if value is None:
                self._db.execute("DELETE FROM meta WHERE key=?", (key,))
            else:
                self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @property
    def calibration(self) -> Calibration | None:
        """The score calibration kept in the store (``speaker calibrate --store``), or None."""
        text = self._get_meta("calibration")
        if text is None:
            return None
        try:
            return Calibration.from_json(text)
        except ValueError as exc:
            self._fail(f"bad calibration: {exc}")

    @calibration.setter
    def calibration(self, cal: Calibration | None) -> None:
        self._set_meta("calibration", None if cal is None else cal.to_json())

    # ------------------------------------------------------------------ features and statistics
    def features(self, source: Source) -> np.ndarray:
        """Features (frames, D) of an audio file, ``.npy``, ``ark:offset`` or a feature array."""
        if isinstance(source, np.ndarray):
            X = np.asarray(source)
            if X.ndim != 2 or X.shape[0] == 0 or not np.isfinite(X).all():
                raise ValueError(f"feature arrays must be finite with shape (frames >= 1, D); got {X.shape}")
        else:
            X = read_source(os.fspath(source), self.config)
        if X.shape[1] != self.D:
            raise ValueError(f"{'<array>' if isinstance(source, np.ndarray) else source}: features have "
                             f"{X.shape[1]} dims, the store's UBM {self.D}")
        return X

    # ------------------------------------------------------------------ enrolment
    def enroll(self, speaker_id: str, sources: Iterable[Source], *, replace: bool = False,
               features: Callable[[Source], np.ndarray] | None = None) -> EnrollResult:
        """Add recordings to a speaker (created if new), or start it over with ``replace=True``.

        Each source is an audio file, ``.npy`` / ``ark:offset`` features, or a (frames, D) array.
        A source that cannot be read, or whose content is already enrolled for this speaker, is
        skipped (``result.skipped``: source -> reason).  The statistics of the rest are added in
        the given order, in one transaction.  Raises StoreError when nothing could be added and
        the speaker would be left without recordings.  ``features`` (source -> (frames, D)
        array) replaces the store's own extraction, e.g. ``FeatureStore.get`` after a parallel
        or cached extraction; recordings are still hashed from their files.
        """
        check_speaker_id(speaker_id)
        items: list[tuple[str, str, GMMStats]] = []
        result = EnrollResult(speaker_id)
        for src in sources:
            name = "<array>" if isinstance(src, np.ndarray) else os.fspath(src)
            try:
                X = self.features(src if features is None else features(src))
                digest = content_hash(src, X)
            except Exception as exc:  # noqa: BLE001 - reported per recording
                result.skipped[name] = str(exc) if str(exc).startswith(name) else f"{type(exc).__name__}: {exc}"
                continue
            # per-recording statistics as map_adapt takes them (speaker._batch): bit-for-bit equal
            items.append((name, digest, self.ubm.accumulate_segments([X])[0]))
        return self.enroll_statistics(speaker_id, items, replace=replace, _result=result)

    def enroll_statistics(self, speaker_id: str, items: Sequence[tuple[str, str, GMMStats]], *,
                          replace: bool = False, _result: EnrollResult | None = None) -> EnrollResult:
        """:meth:`enroll` with statistics computed elsewhere (another machine, a Dask worker):
        ``items`` are (source name, SHA-256 of its content, ``ubm.accumulate(features)``)."""
        check_speaker_id(speaker_id)
        result = _result if _result is not None else EnrollResult(speaker_id)
        for name, digest, st in items:
            if not isinstance(st, GMMStats) or st.sum_x.shape != (self.K, self.D) \
                    or not (np.isfinite(st.n).all() and np.isfinite(st.sum_x).all() and np.isfinite(st.sum_xx).all()):
                raise ValueError(f"{name}: statistics must be finite GMMStats of shape (K, D) = {(self.K, self.D)}")
        with self._write():
            rows = self._sql("SELECT kind FROM speakers WHERE id=?", (speaker_id,))
            if rows and not replace and rows[0][0] != "stats":
                raise StoreError(f"speaker {speaker_id!r} was imported as a model without statistics: "
                                 "it cannot be extended (enrol it again with replace)")
            current, seen, seq, created = None, set(), 0, time.time()
            if rows and not replace:
                current, created = self._stats(speaker_id)
                seen = {h for h, in self._sql("SELECT sha256 FROM recordings WHERE speaker_id=?", (speaker_id,))}
                seq = self._sql("SELECT COALESCE(MAX(seq), -1) + 1 FROM recordings WHERE speaker_id=?",
                                (speaker_id,))[0][0]
            added = []
            for name, digest, st in items:
                if digest in seen:
                    result.skipped[name] = "already enrolled for this speaker (same content)"
                    continue
                seen.add(digest)
                current = st if current is None else current + st
                added.append((name, digest, st))
            if current is None:
                raise StoreError(f"speaker {speaker_id!r}: nothing to enrol ("
                                 + ("; ".join(f"{k}: {v}" for k, v in list(result.skipped.items())[:3]) or "no recordings")
                                 + ")")
            if added:
                now = time.time()
                # a DELETE (not INSERT OR REPLACE on an extended speaker) cascades to its recordings
                if replace:
                    self._db.execute("DELETE FROM speakers WHERE id=?", (speaker_id,))
                self._db.execute(
                    "INSERT INTO speakers VALUES (?, 'stats', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE "
                    "SET generation=excluded.generation, updated_at=excluded.updated_at, n_frames=excluded.n_frames, "
                    "loglik=excluded.loglik, a=excluded.a, b=excluded.b, c=excluded.c",
                    (speaker_id, self._next_generation(), created, now, self.K, self.D, current.n_samples,
                     current.loglik, _blob(current.n), _blob(current.sum_x), _blob(current.sum_xx)))
                self._db.executemany("INSERT INTO recordings VALUES (?, ?, ?, ?, ?, ?)",
                                     [(speaker_id, seq + i, name, digest, int(round(st.n_samples)), now)
                                      for i, (name, digest, st) in enumerate(added)])
                self._before_commit(speaker_id)
            result.added = [name for name, _, _ in added]
            n_rec, = self._sql("SELECT COUNT(*) FROM recordings WHERE speaker_id=?", (speaker_id,))[0]
            result.n_recordings, result.n_frames = n_rec, int(round(current.n_samples))
        return result

    def _before_commit(self, speaker_id: str) -> None:
        """Called inside an enrolment's transaction, just before the commit (a hook for tests)."""

    def remove(self, speaker_id: str) -> None:
        """Remove a speaker and its recordings; KeyError if unknown."""
        with self._write():
            if not self._db.execute("DELETE FROM speakers WHERE id=?", (speaker_id,)).rowcount:
                raise KeyError(speaker_id)
        self._cache.pop(speaker_id, None)

    def import_models(self, path: str | os.PathLike, *, replace: bool = False) -> list[str]:
        """Add the speaker models of a ``models.npz`` (adapted from this store's UBM).

        Such speakers have no statistics: they can be scored, exported and removed, not extended.
        An id already in the store is refused unless ``replace``.  Returns the ids imported.
        """
        try:
            mf = load_model(path, ubm=self.ubm)
        except ModelError as exc:
            raise StoreError(str(exc)) from None
        if mf.kind != "speakers":
            raise StoreError(f"{path}: holds a UBM, not speaker models")
        with self._write():
            have = {i for i, in self._sql("SELECT id FROM speakers")}
            clash = sorted(set(mf.speakers) & have)
            if clash and not replace:
                raise StoreError(f"{path}: speakers already in the store: {', '.join(clash[:5])}"
                                 f"{' ...' if len(clash) > 5 else ''} (replace them explicitly)")
            now = time.time()
            for i, m in mf.speakers.items():
                self._db.execute("DELETE FROM speakers WHERE id=?", (i,))
                self._db.execute("INSERT INTO speakers VALUES (?, 'model', ?, ?, ?, ?, ?, 0, 0, ?, ?, ?)",
                                 (i, self._next_generation(), now, now, self.K, self.D, _blob(m.weights_),
                                  _blob(m.means_), _blob(m.covariances_)))
        return list(mf.speakers)

    def export(self, path: str | os.PathLike, ids: Sequence[str] | None = None) -> list[str]:
        """Write the models of ``ids`` (default all) to a ``models.npz`` (atomically)."""
        ids = list(ids) if ids is not None else [s.id for s in self.speakers()]
        if not ids:
            raise StoreError(f"{self.path}: no speakers to export")
        save_model(path, {i: self.model(i) for i in ids}, ubm=self.ubm, config=self.config)
        return ids

    # ------------------------------------------------------------------ reading rows
    def _row(self, speaker_id: str) -> tuple[str, int, float, float, np.ndarray, np.ndarray, np.ndarray]:
        """(kind, generation, created, n_frames, loglik, a, b, c) of one speaker, validated."""
        rows = self._sql("SELECT kind, generation, created_at, k, d, n_frames, loglik, length(a), length(b), "
                         "length(c) FROM speakers WHERE id=?", (speaker_id,))
        if not rows:
            raise KeyError(speaker_id)
        kind, gen, created, K, D, n_frames, loglik, la, lb, lc = rows[0]
        where = f"speaker {speaker_id!r}"
        if kind not in ("stats", "model") or not isinstance(gen, int) or (K, D) != (self.K, self.D):
            self._fail(f"{where}: bad kind, generation or shape ({kind!r}, K={K!r}, D={D!r})")
        if (la, lb, lc) != (8 * K, 8 * K * D, 8 * K * D):
            self._fail(f"{where}: array sizes {la, lb, lc} bytes, expected {8 * K, 8 * K * D, 8 * K * D}")
        if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in (created, n_frames, loglik)):
            self._fail(f"{where}: non-numeric or non-finite frame count, log-likelihood or time")
        a, b, c = self._sql("SELECT a, b, c FROM speakers WHERE id=?", (speaker_id,))[0]
        a = np.frombuffer(a, "<f8").astype(np.float64)
        b = np.frombuffer(b, "<f8").reshape(K, D).astype(np.float64)
        c = np.frombuffer(c, "<f8").reshape(K, D).astype(np.float64)
        if not (np.isfinite(a).all() and np.isfinite(b).all() and np.isfinite(c).all()):
            self._fail(f"{where}: arrays contain NaN or infinity")
        if kind == "stats":
            if (a < 0).any() or (c < 0).any() or not n_frames > 0 \
                    or abs(a.sum() - n_frames) > 1e-6 * n_frames + 1e-6:
                self._fail(f"{where}: statistics are inconsistent (negative counts or second moments, "
                           "or counts that do not add up to the frame count)")
        return kind, gen, created, float(n_frames), float(loglik), a, b, c

    def _stats(self, speaker_id: str) -> tuple[GMMStats, float]:
        kind, _, created, n_frames, loglik, a, b, c = self._row(speaker_id)
        return GMMStats(a, b, c, loglik, n_frames), created

    def stats(self, speaker_id: str) -> GMMStats:
        """The speaker's enrolment statistics under the UBM (KeyError if unknown)."""
        return self._stats(speaker_id)[0]

    def speakers(self) -> list[SpeakerInfo]:
        """Every speaker, by id: recordings, frames, first enrolled, last changed."""
        rows = self._sql("SELECT s.id, COUNT(r.seq), s.n_frames, s.created_at, s.updated_at, s.kind "
                         "FROM speakers s LEFT JOIN recordings r ON r.speaker_id = s.id "
                         "GROUP BY s.id ORDER BY s.id")
        out = []
        for i, n, frames, created, updated, kind in rows:
            if not isinstance(i, str) or not all(isinstance(x, (int, float)) for x in (frames, created, updated)):
                self._fail("malformed speakers table")
            out.append(SpeakerInfo(i, int(n), int(round(frames)), float(created), float(updated), str(kind)))
        return out

    def recordings(self, speaker_id: str) -> list[tuple[str, str, int, float]]:
        """The speaker's enrolled recordings in order: (source, sha256, frames, enrolled_at)."""
        return [tuple(r) for r in self._sql("SELECT source, sha256, n_frames, enrolled_at FROM recordings "
                                            "WHERE speaker_id=? ORDER BY seq", (speaker_id,))]

    def __contains__(self, speaker_id: object) -> bool:
        return bool(self._sql("SELECT 1 FROM speakers WHERE id=?", (speaker_id,)))

    def __len__(self) -> int:
        return self._sql("SELECT COUNT(*) FROM speakers")[0][0]

    # ------------------------------------------------------------------ models and scoring
    def model(self, speaker_id: str) -> GaussianMixture:
        """The speaker's model: MAP from the statistics (cached until the speaker changes)."""
        gen = self._sql("SELECT generation FROM speakers WHERE id=?", (speaker_id,))
        if not gen:
            self._cache.pop(speaker_id, None)
            raise KeyError(speaker_id)
        hit = self._cache.get(speaker_id)
        if hit is not None and hit[0] == gen[0][0]:
            return hit[1]
        g, model = self._derive(speaker_id)
        self._cache[speaker_id] = (g, model)
        return model

    def _derive(self, speaker_id: str) -> tuple[int, GaussianMixture]:
        """(generation, model) of a speaker from its row (not cached)."""
        kind, g, _, n_frames, loglik, a, b, c = self._row(speaker_id)
        if kind == "stats":
            model = map_from_stats(self.ubm, GMMStats(a, b, c, loglik, n_frames),
                                   relevance_factor=self.relevance_factor, adapt=self.adapt)
        else:
            dtype = self.ubm.means_.dtype
            try:
                model = GaussianMixture.from_parameters(a.astype(dtype), b.astype(dtype), c.astype(dtype),
                                                        **{k: v for k, v in self.ubm.get_params().items()
                                                           if k != "n_components"})
            except ValueError as exc:
                self._fail(f"speaker {speaker_id!r}: {exc}")
        return g, model

    def score(self, speaker_id: str, source: Source) -> float:
        """Raw score of a recording against a speaker: average LLR, nats per frame."""
        return llr(self.model(speaker_id), self.ubm, self.features(source), top_c=self.top_c)

    def _decide(self, score: float, threshold: float | None, p_target: float | None, c_miss: float,
                c_fa: float, calibration: Calibration | None = None) -> tuple[float | None, bool, float]:
        cal = calibration if calibration is not None else self.calibration
        value = cal.llr(score) if cal is not None else None
        thr, on_llr = decision_threshold(cal, threshold=threshold, p_target=p_target, c_miss=c_miss, c_fa=c_fa,
                                         default=self._default_threshold())
        return value, bool((value if on_llr else score) >= thr), thr

    def _default_threshold(self) -> float:
        t = self._get_meta("threshold")
        try:
            return float(t) if t is not None else 0.0
        except ValueError:
            self._fail(f"bad threshold {t!r}")

    def verify(self, speaker_id: str, source: Source, *, threshold: float | None = None,
               p_target: float | None = None, c_miss: float = 1.0, c_fa: float = 1.0,
               calibration: Calibration | None = None) -> VerifyResult:
        """Is ``source`` speaker ``speaker_id``?

        Decision: ``threshold`` on the raw score if given; otherwise, with a calibration, the
        Bayes threshold ``log(c_fa (1 - p_target) / (c_miss p_target))`` on the calibrated LLR
        (``p_target`` default 0.5); otherwise the raw score against 0 (speaker as likely as
        the UBM).  ``calibration`` replaces the store's own.  KeyError for an unknown speaker.
        """
        s = self.score(speaker_id, source)
        value, accept, thr = self._decide(s, threshold, p_target, c_miss, c_fa, calibration)
        return VerifyResult(s, value, accept, thr)

    def scores_all(self, source: Source, ids: Sequence[str] | None = None, *,
                   batch: int = 1024) -> tuple[list[str], np.ndarray]:
        """Raw scores of one recording against many speakers (default all): (ids, scores).

        With ``top_c``, the UBM's top-C components of the recording are found once and the
        speakers are scored in batches of ``batch`` (one :class:`gmmext.ModelStack` each: one
        gemm per selected component against the whole batch).  For all speakers, the batches are
        built from the stored statistics by array operations and kept while no speaker changes
        (:meth:`_all_stacks`); for given ``ids``, from their (cached) models.  Without ``top_c``
        every model is scored exactly, one after the other.
        """
        X = self.features(source)
        ids = list(ids) if ids is not None else None
        if self.top_c is None:
            ubm_ll = self.ubm.score_samples(X).sum()
            ids = ids if ids is not None else [i for i, _ in self._generations()]
            return ids, np.array([(self.model(i).score_samples(X).sum() - ubm_ll) / X.shape[0] for i in ids])
        idx, ll = self.ubm.top_components(X, self.top_c)
        if ids is None:
            ids, stacks = self._all_stacks(batch)
        else:
            stacks = (ModelStack([self.model(i) for i in ids[s:s + batch]], reference=self.ubm)
                      for s in range(0, len(ids), batch))
        out = np.empty(len(ids))
        for j, stack in enumerate(stacks):
            out[j * batch:(j + 1) * batch] = (stack.top_c_loglik(X, idx) - ll.sum()) / X.shape[0]
        return ids, out

    def _generations(self) -> list[tuple[str, int]]:
        return [tuple(r) for r in self._sql("SELECT id, generation FROM speakers ORDER BY id")]

    def _all_stacks(self, batch: int) -> tuple[list[str], list[ModelStack]]:
        """Every speaker's model, in id order, as ModelStacks of ``batch`` models, kept in memory
        until any speaker changes (one query of the generations checks it): identification
        against a long-lived store scores prepared matrices and reads no statistics.

        A batch is derived without a ``GaussianMixture`` per speaker: the rows' statistics go
        through :func:`speaker.adapt.map_parameters` together (the formulas of
        :func:`speaker.adapt.map_from_stats`, cast to the UBM's dtype as a model's parameters
        are) and :meth:`gmmext.ModelStack.from_parameters` builds the matrices, so the scores
        equal those of the models :meth:`model` derives.  Only the stacked matrices are kept
        (for mean-adapted models ``(D + 1) K`` values per speaker: 123 KB in float32 at K=512,
        D=60).
        """
        key = (batch, tuple(self._generations()))
        if self._stacks is None or self._stacks[0] != key:
            self._stacks = None                        # free the old ones first
            ids = [i for i, _ in key[1]]
            stacks = [self._stack_of(ids[s:s + batch]) for s in range(0, len(ids), batch)]
            self._stacks = (key, ids, stacks)
        return self._stacks[1], self._stacks[2]

    def _stack_of(self, ids: Sequence[str]) -> ModelStack:
        """One ModelStack of the speakers ``ids`` from their rows (see :meth:`_all_stacks`)."""
        K, D, dtype = self.K, self.D, self.ubm.means_.dtype
        rows = [self._row(i) for i in ids]
        W, MU = np.empty((len(ids), K), dtype), np.empty((len(ids), K, D), dtype)
        own_var = "v" in self.adapt or any(r[0] == "model" for r in rows)
        VAR = np.empty((len(ids), K, D), dtype) if own_var else None
        stats = [j for j, r in enumerate(rows) if r[0] == "stats"]
        for b in range(0, len(stats), ModelStack.BUILD_BATCH):       # bounds the float64 temporaries
            part = stats[b:b + ModelStack.BUILD_BATCH]
            w, mu, var = map_parameters(self.ubm, np.stack([rows[j][5] for j in part]),
                                        np.stack([rows[j][6] for j in part]),
                                        np.stack([rows[j][7] for j in part]) if "v" in self.adapt else None,
                                        np.array([rows[j][3] for j in part]),
                                        relevance_factor=self.relevance_factor, adapt=self.adapt)
            W[part], MU[part] = w, mu
            if VAR is not None:
                VAR[part] = var
        for j, r in enumerate(rows):
            if r[0] == "model":
                W[j], MU[j], VAR[j] = r[5], r[6], r[7]
        try:
            return ModelStack.from_parameters(W, MU, self.ubm, covariances=VAR)
        except ValueError as exc:
            self._fail(f"speakers {ids[0]!r}..{ids[-1]!r}: {exc}")

    def identify(self, source: Source, n: int = 1, *, threshold: float | None = None,
                 p_target: float | None = None, c_miss: float = 1.0, c_fa: float = 1.0,
                 calibration: Calibration | None = None) -> list[tuple[str, float]]:
        """Open-set identification: the ``n`` best-scoring speakers that pass the decision rule
        of :meth:`verify`, best first, as (id, raw score); empty when none passes."""
        ids, scores = self.scores_all(source)
        order = np.argsort(-scores, kind="stable")
        out = []
        for j in order[:max(0, int(n))]:
            if self._decide(float(scores[j]), threshold, p_target, c_miss, c_fa, calibration)[1]:
                out.append((ids[j], float(scores[j])))
        return out
