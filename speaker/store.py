"""The speaker store: enrolled speakers over time in one database (a SQLite file, or
PostgreSQL shared by several machines; docs/store.md), bound to one UBM, which it holds with
its fingerprint, ``FeatureConfig``, MAP settings and a format version.

This module keeps the rows and derives the models: per speaker the **sufficient statistics** of
all its enrolment data under the UBM (``GMMStats`` in float64) and one row per enrolled
recording (source, SHA-256 of its content, frames, time); per cohort recording its features and
statistics.  Models are derived by MAP (:func:`speaker.adapt.map_from_stats`) and cached in the
process by the speaker's *generation* (a store-wide counter every change takes), so another
process's change is seen at the next call.  Elsewhere: the SQL plumbing (engine, transactions,
dialects, :class:`StoreError`) is :mod:`speaker._sql`; scoring and decisions (``verify``,
``identify``) are :mod:`speaker.verification`; what a source is, :mod:`speaker.sources`.

Incremental enrolment is exact: adding r3 to a speaker holding ``s1 + s2`` computes
``(s1 + s2) + s3``, the float64 operations :func:`speaker.map_adapt` does for r1..r3 at once,
stored as raw bytes, hence bit for bit the same model; a recording already enrolled (same
content hash) is skipped.  Only per-speaker sums are kept (K (2 D + 1) float64 values), so a
single recording cannot be taken out again (replace the speaker instead).

The store is untrusted input, like a model file: format and version, the UBM (re-validated, its
fingerprint recomputed, within :mod:`speaker.limits`), every row's shapes, BLOB sizes (checked
with ``length()`` before a BLOB is read), dtypes and values are checked before use; arrays are
raw little-endian bytes with shape columns, nothing is unpickled.  Every problem raises
:class:`StoreError` naming the store and the reason.
"""
from __future__ import annotations

import functools
import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, ContextManager, Iterable, NamedTuple, Sequence

import numpy as np

from gmmext import GMMStats

if TYPE_CHECKING:                  # (the estimators import scikit-learn: imported where used)
    from gmmext import GaussianMixture

from ._batch import recording_stats
from ._sql import Database, StoreError, StoreInvalid, StoreUnavailable, one_snapshot, store_location
from .adapt import map_from_stats, model_like
from .calhistory import CalibrationHistory, StoredCalibration
from .calibration import Calibration
from .features import FeatureConfig, extract_features, extract_features_and_quality
from .gates import DEFAULT_GATE, Gate, speech_seconds
from .quality import Quality
from .limits import (MAX_COHORT_ELEMENTS, MAX_COHORT_FRAMES, MAX_KEPT_ELEMENTS, MAX_KEPT_FRAMES, STORE_CACHE_MB,
                     recording_id_problem, speaker_id_problem, ubm_shape_problem)
from .model_io import ModelError, arrays_fingerprint, load_model, save_model, ubm_fingerprint
from .scoring import check_features, check_top_c
from .sources import Source, Waveform, content_hash, read_source, read_source_and_quality, source_kind
from .store_backend import BackendBinding, BackendMismatchError, BindResult
from .verification import Match, ScoringCache, StoreScoring, VerifyResult

__all__ = ["StoreError", "StoreUnavailable", "StoreInvalid", "NoSuchStore", "UBMMismatchError", "EnrolmentRefused", "SpeakerStore", "SpeakerInfo", "CohortInfo",
           "EnrollResult", "EnrolmentItem", "KeptRecording", "StoredCalibration", "VerifyResult", "Match",
           "store_location", "BackendMismatchError", "BindResult"]

FORMAT = "gmmext-speaker-store"
FORMAT_VERSION = 2
#: Store formats this version opens after an explicit upgrade (:meth:`SpeakerStore.upgrade`).
UPGRADABLE = ("1",)

_TABLES = ("meta", "ubm", "speakers", "recordings", "calibrations")
#: The meta entries a store of this format holds (and may hold), and the values they may take.
_META_REQUIRED = ("format", "format_version", "ubm_fingerprint", "feature_config", "relevance_factor", "adapt",
                  "generation", "created_at")
_META_OPTIONAL = ("calibration_id", "calibration_id_plda", "calibration_id_cosine", "calibration_id_fusion",
                  "ivector_fingerprint", "backend_fingerprint")
#: Tables a store creates when first needed.
_OPTIONAL_TABLES = ("cohort", "extractor", "ivectors")
_MAX_COUNTER = 1 << 62


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _relevance_ok(text: str) -> bool:
    return 0.0 < _float(text) < math.inf            # as speaker.adapt accepts it


def _adapt_ok(text: str) -> bool:
    return bool(text) and not set(text) - set("mwv") and len(set(text)) == len(text)


def _time_ok(text: str) -> bool:
    return math.isfinite(_float(text))


def _finite(x: object) -> bool:
    """A finite number (not a bool) as a row holds it."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _hex64(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _counter_ok(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 19 and int(text) < _MAX_COUNTER
#: The per-recording columns format 2 added to ``recordings`` (NULL for recordings enrolled
#: before an upgrade from format 1): statistics, features and quality measures.
RECORDING_DATA = ("loglik", "stats_n", "stats_x", "stats_xx", "feat_dtype", "features", "speech_seconds",
                  "quality")


def _schema():
    """The store's tables (SQLAlchemy Core): the same on SQLite and PostgreSQL.

    Column types: TEXT, BIGINT, DOUBLE (float64: PostgreSQL's REAL would be float32) and BLOB
    (BYTEA on PostgreSQL).  The columns' order is the order of the INSERTs below.
    ``speakers.kind``: "stats" (a, b, c = n (K,), sum_x (K, D), sum_xx (K, D)) or "model" (imported
    from a models.npz without statistics: a, b, c = weights, means, variances; cannot be extended).
    ``recordings``: one row per enrolled recording and, since format 2 (NULL for recordings
    enrolled before an upgrade), its UBM statistics (``stats_n`` (K,), ``stats_x`` (K, D) and,
    for a store that adapts variances, ``stats_xx`` (K, D); float64 raw sums, as ``speakers``),
    its features (frames, D; ``feat_dtype`` float32 or float64), its net speech seconds and its
    quality measures (:class:`speaker.quality.Quality` as JSON; NULL for feature inputs).
    ``cohort`` (created when a cohort is first added; a store without it has an empty cohort):
    one row per cohort recording, its UBM statistics (a, b, c as in ``speakers``) and its
    features (frames, D) as raw little-endian float32 or float64.
    ``calibrations``: every calibration the store was given, current or not (the current one's
    id is ``meta.calibration_id``): when, what it was fitted on, its parameters and report
    (JSON) and the calibrated LLRs of its target and non-target trials (float64; NULL when the
    trials are not known), from which ``--target-far`` takes its threshold.
    ``extractor`` and ``ivectors`` (created when an i-vector back-end is first bound,
    :mod:`speaker.store_backend`): the bound extractor's T and the back-end's arrays (name,
    rows, columns (0 for a vector), float64 raw bytes), and the i-vector of every enrolled
    recording (float64 (R,)) with the fingerprint of the extractor it comes from.
    """
    import sqlalchemy as sa
    md = sa.MetaData()
    # text compares bytewise on both (PostgreSQL's default collation would order ids otherwise)
    txt = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
    big, dbl, blob = sa.BigInteger, sa.Double, sa.LargeBinary

    def col(name, typ, *args, **kw):
        return sa.Column(name, typ, *args, nullable=False, **kw)

    def opt(name, typ):
        return sa.Column(name, typ, nullable=True)
    sa.Table("meta", md, col("key", txt, primary_key=True), col("value", txt))
    sa.Table("ubm", md, col("id", sa.Integer, primary_key=True, autoincrement=False), col("dtype", txt),
             col("k", big), col("d", big), col("weights", blob), col("means", blob), col("covariances", blob),
             sa.CheckConstraint("id = 1", name="ubm_one_row"))
    sa.Table("speakers", md, col("id", txt, primary_key=True), col("kind", txt), col("generation", big),
             col("created_at", dbl), col("updated_at", dbl), col("k", big), col("d", big),
             col("n_frames", dbl), col("loglik", dbl), col("a", blob), col("b", blob), col("c", blob))
    sa.Table("recordings", md,
             col("speaker_id", txt, sa.ForeignKey("speakers.id", ondelete="CASCADE"), primary_key=True),
             col("seq", big, primary_key=True, autoincrement=False), col("source", txt), col("sha256", txt),
             col("n_frames", big), col("enrolled_at", dbl),
             # format 2 (appended, as ALTER TABLE adds them to an upgraded store): RECORDING_DATA
             opt("loglik", dbl), opt("stats_n", blob), opt("stats_x", blob), opt("stats_xx", blob),
             opt("feat_dtype", txt), opt("features", blob), opt("speech_seconds", dbl), opt("quality", txt))
    sa.Table("cohort", md, col("id", txt, primary_key=True), col("seq", big), col("generation", big),
             col("source", txt), col("sha256", txt), col("added_at", dbl), col("k", big), col("d", big),
             col("n_frames", dbl), col("loglik", dbl), col("a", blob), col("b", blob), col("c", blob),
             col("dtype", txt), col("frames", big), col("features", blob))
    sa.Table("extractor", md, col("name", txt, primary_key=True), col("n_rows", big), col("n_cols", big),
             col("data", blob))
    sa.Table("ivectors", md,
             col("speaker_id", txt, sa.ForeignKey("speakers.id", ondelete="CASCADE"), primary_key=True),
             col("seq", big, primary_key=True, autoincrement=False), col("extractor", txt), col("data", blob))
    sa.Table("calibrations", md, col("id", big, primary_key=True, autoincrement=False), col("created_at", dbl),
             col("fitted_on", txt), col("params", txt), col("report", txt), col("n_target", big),
             col("n_nontarget", big), opt("target_llrs", blob), opt("nontarget_llrs", blob))
    return md


class SpeakerInfo(NamedTuple):
    """One row of :meth:`SpeakerStore.speakers`: ``enrolled_at`` / ``updated_at`` are Unix times;
    ``speech_seconds`` the net speech of its recordings (:mod:`speaker.gates`)."""

    id: str
    n_recordings: int
    n_frames: int
    enrolled_at: float
    updated_at: float
    kind: str
    speech_seconds: float = 0.0


class EnrolmentItem(NamedTuple):
    """One recording to enrol with :meth:`SpeakerStore.enroll_statistics`: its source name,
    SHA-256, UBM statistics (:func:`speaker._batch.recording_stats`) and, optionally, its
    features (kept, so that ``speaker calibrate --from-enrollments`` can score it) and quality
    measures (:class:`speaker.quality.Quality` of an audio recording; None: only the net speech
    is known, from the frame count)."""

    source: str
    sha256: str
    stats: GMMStats
    features: np.ndarray | None = None
    quality: Quality | None = None


class KeptRecording(NamedTuple):
    """One enrolled recording as the store keeps it (:meth:`SpeakerStore.kept_recordings`):
    ``stats`` and ``features`` are None for a recording enrolled before the store's upgrade to
    format 2 (``features`` also for one longer than :data:`speaker.limits.MAX_KEPT_FRAMES`);
    ``speech_seconds`` its net speech; ``quality`` its measures (None for feature inputs and
    recordings enrolled before the upgrade)."""

    seq: int
    source: str
    n_frames: int
    stats: GMMStats | None
    features: np.ndarray | None
    speech_seconds: float
    quality: Quality | None


class CohortInfo(NamedTuple):
    """One row of :meth:`SpeakerStore.cohort_info`: a cohort recording (``added_at``: Unix time)."""

    id: str
    source: str
    sha256: str
    n_frames: int
    added_at: float


@dataclass
class EnrollResult:
    """What :meth:`SpeakerStore.enroll` did: recordings ``added``, ``skipped`` (source ->
    reason), ``refused`` (source -> the quality gate's code, for the skipped ones it refused:
    ``insufficient_speech``, ``clipped``, ``noise_only``), the speaker's recordings, frames and
    net speech seconds afterwards."""

    speaker_id: str
    added: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    n_recordings: int = 0
    n_frames: int = 0
    refused: dict[str, str] = field(default_factory=dict)
    speech_seconds: float = 0.0


class EnrolmentRefused(StoreError):
    """An enrolment the quality gates refuse as a whole (the speaker would have too little net
    speech): nothing was written.  ``code`` is ``insufficient_speech``; ``result`` the
    :class:`EnrollResult` of the recordings (which were usable, which refused and why)."""

    def __init__(self, message: str, result: EnrollResult, code: str = "insufficient_speech") -> None:
        super().__init__(message)
        self.result, self.code = result, code


def _blob(a: np.ndarray, dtype: str = "<f8") -> bytes:
    return np.ascontiguousarray(a, dtype=dtype).tobytes()


def check_speaker_id(speaker_id: object) -> str:
    """A speaker id (the one rule, :func:`speaker.limits.speaker_id_problem`), else ValueError."""
    why = speaker_id_problem(speaker_id)
    if why is not None:
        raise ValueError(why)
    return speaker_id


def _locked(method):
    """Run a method under the store's lock (its caches of derived models are shared by threads)."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return run


class NoSuchStore(StoreError):
    """No store at the path (or no store tables in the database), and no UBM to create one with
    (or ``create=False``): ``SpeakerStore(path, ubm)`` creates it."""

    #: the hint when no UBM was given (with one, the store would have been created)
    CREATE_HINT = "give the UBM to create one"

    def __init__(self, path: str, why: str | None = None, hint: str | None = None) -> None:
        notes = [n for n in (why, hint) if n]
        super().__init__(f"{path}: no such speaker store" + (f" ({'; '.join(notes)})" if notes else ""))
        self.path, self.why = path, why


class UBMMismatchError(StoreError):
    """The store is bound to another UBM than the one given: both SHA-256 fingerprints
    (:func:`speaker.model_io.ubm_fingerprint`) are in the message and in
    ``store_fingerprint`` / ``given_fingerprint``."""

    def __init__(self, path: str, store_fingerprint: str, given_fingerprint: str) -> None:
        super().__init__(f"{path}: this store is bound to another UBM (fingerprint {store_fingerprint}), not the "
                         f"given one (fingerprint {given_fingerprint})")
        self.store_fingerprint, self.given_fingerprint = store_fingerprint, given_fingerprint


class SpeakerStore(StoreScoring, CalibrationHistory, BackendBinding):
    """Enrolled speakers in one database (a SQLite file or PostgreSQL), bound to one UBM.

    Parameters
    ----------
    path : the store: a SQLite file path (``.db``), ``sqlite:///FILE`` or ``postgresql://...``
        (see :func:`store_location`; the PostgreSQL database must exist)
    ubm : GaussianMixture, path of a UBM ``.npz``, or None
        Needed to create a store; when the store exists it must be the store's UBM
        (same fingerprint), or None to use the one in the store.
    config : FeatureConfig for a new store (default: the UBM file's, or ``FeatureConfig()``)
    relevance_factor, adapt : MAP settings of a new store (see :func:`speaker.map_adapt`);
        stored, so every process derives the same models.
    top_c : fast scoring with the UBM's C best components per frame in :meth:`verify` /
        :meth:`identify` (None, the default: exact, as ``speaker score``; a calibration must
        come from scores computed the same way)
    cache_mb : megabytes of arrays this object keeps to score quickly (default
        :data:`speaker.limits.STORE_CACHE_MB`): speakers' models (exact scoring; least recently
        used dropped first) and the prepared stacks of top-C identification; beyond it speakers
        are derived per call (the same scores, slower).  ``store.cache_nbytes`` is what it holds
    timeout : seconds a write waits for another writer's transaction (and a PostgreSQL
        connection for the pool)
    create : False to refuse creating a missing store
    gate : the quality gates (:class:`speaker.gates.Gate`) of this object's enrolments and
        decisions unless a call gives its own (not kept in the store)
    upgrade : upgrade a store of an earlier format (:data:`UPGRADABLE`) to this one first, in
        one write transaction (one-way: earlier versions of ``speaker`` refuse it afterwards);
        without it such a store is refused with a message saying how to upgrade it

    Raises
    ------
    StoreError when the location is not a usable store of this format version and UBM.
    """

    #: One instance may be shared by threads: each transaction has its own pooled connection,
    #: the caches are guarded by a lock (checked by ``speaker serve``).
    thread_safe = True

    def __init__(self, path: str | os.PathLike, ubm: GaussianMixture | str | os.PathLike | None = None, *,
                 config: FeatureConfig | None = None, relevance_factor: float = 16.0, adapt: str = "m",
                 top_c: int | None = None, timeout: float = 60.0, create: bool = True,
                 upgrade: bool = False, gate: Gate = DEFAULT_GATE, cache_mb: float = STORE_CACHE_MB) -> None:
        self._db = Database(path, timeout=timeout)
        self.backend, self.path, self.timeout, file = self._db.backend, self._db.path, self._db.timeout, self._db.file
        self.top_c = top_c
        if not isinstance(gate, Gate):
            raise TypeError(f"gate must be a speaker.gates.Gate, got {type(gate).__name__}")
        self.gate = gate
        self.upgraded = False
        if isinstance(cache_mb, bool) or not isinstance(cache_mb, (int, float)) or not 0 <= cache_mb < math.inf:
            raise ValueError(f"cache_mb must be a number of megabytes >= 0, got {cache_mb!r}")
        self.cache_mb = float(cache_mb)
        self._cache = ScoringCache(int(self.cache_mb * (1 << 20)))
        self._calibration_rows: dict = {}
        self._cohort: tuple | None = None
        self._lock = threading.RLock()
        if isinstance(ubm, (str, os.PathLike)):
            mf = load_model(ubm)
            if mf.kind != "ubm":
                raise StoreError(f"{ubm}: holds speaker models, not a UBM")
            ubm, config = mf.ubm, (config or mf.config)
        if file is not None:
            self._db.check_files()
            exists = file.exists() and file.stat().st_size > 0
            if not exists and (ubm is None or not create):
                raise NoSuchStore(self.path, hint=NoSuchStore.CREATE_HINT if ubm is None else None)
        self._db.connect()
        try:
            if not self._has_meta():
                if ubm is None or not create:
                    raise NoSuchStore(self.path, "the database has no store tables",
                                      NoSuchStore.CREATE_HINT if ubm is None else None)
                self._create(ubm, config or FeatureConfig(), relevance_factor, adapt)
            if upgrade:
                self.upgraded = self._upgrade()
            self._open(ubm)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ opening
    def _has_meta(self) -> bool:
        return "meta" in self._db.tables()

    def _create(self, ubm: GaussianMixture, config: FeatureConfig, relevance_factor: float, adapt: str) -> None:
        # validates relevance_factor and adapt the way every later derivation will use them
        map_from_stats(ubm, GMMStats(np.ones(ubm.n_components), ubm.means_, ubm.means_ ** 2, 0.0,
                                     float(ubm.n_components)), relevance_factor=relevance_factor, adapt=adapt)
        K, D = ubm.means_.shape
        why = ubm_shape_problem(K, D)
        if why is not None:
            raise StoreError(f"{self.path}: a UBM of {why}")
        with self._db.write():
            if self._has_meta():
                return                                   # another process created it meanwhile
            self._db.check_schema(_schema(), ())         # an empty database: nothing planted in it
            self._db.create(_schema(), _TABLES)
            meta = dict(format=FORMAT, format_version=str(FORMAT_VERSION), ubm_fingerprint=ubm_fingerprint(ubm),
                        feature_config=config.to_json(), relevance_factor=repr(float(relevance_factor)),
                        adapt=adapt, generation="0", created_at=repr(time.time()))
            self._db.many("INSERT INTO meta VALUES (?, ?)", meta.items())
            self._db.run("INSERT INTO ubm VALUES (1, ?, ?, ?, ?, ?, ?)",
                         (str(ubm.means_.dtype), K, D, _blob(ubm.weights_), _blob(ubm.means_),
                          _blob(ubm.covariances_)))

    def _upgrade(self) -> bool:
        """Upgrade a format-1 store to format 2 in one write transaction; False when it was
        format 2 already.  Format 2 adds the per-recording columns (:data:`RECORDING_DATA`,
        NULL for the recordings already enrolled: their statistics, features and quality were
        never kept) and the ``calibrations`` table, into which a kept calibration moves."""
        import sqlalchemy as sa
        with self._db.write():
            if not set(_TABLES) - {"calibrations"} <= self._db.tables():
                self._db.fail("missing tables")
            version = self._get_meta("format_version")
            if version == str(FORMAT_VERSION):
                return False
            if version not in UPGRADABLE:
                self._db.fail(f"unsupported format_version {version!r} (this version upgrades {UPGRADABLE})")
            md = _schema()
            self._db.check_schema(md, ("meta", "ubm", "speakers", "recordings"), ("calibrations", "cohort"),
                                  prefixes={"recordings": 6})
            dialect = self._db.engine.dialect
            with self._db.tx() as conn:
                have = {c["name"] for c in sa.inspect(conn).get_columns("recordings")}
            for name in RECORDING_DATA:
                if name not in have:
                    typ = md.tables["recordings"].c[name].type.compile(dialect=dialect)
                    self._db.run(f"ALTER TABLE recordings ADD COLUMN {name} {typ}")
            self._db.create(md, ["calibrations"])
            old = self._get_meta("calibration")
            if old is not None:
                try:
                    cal = Calibration.from_json(old)
                except ValueError as exc:
                    self._db.fail(f"bad calibration: {exc}")
                cal_id = self._insert_calibration(cal, "kept by a format-1 store: the trials it was fitted on were "
                                                       "not recorded (time: the upgrade's)", {}, None, None)
                self._set_meta("calibration_id", str(cal_id))
                self._db.run("DELETE FROM meta WHERE key='calibration'")
            self._db.run("UPDATE meta SET value=? WHERE key='format_version'", (str(FORMAT_VERSION),))
            return True

    def _open(self, ubm: GaussianMixture | None) -> None:
        with self._db.tx():                                 # one snapshot
            self._open_snapshot(ubm)

    def _open_snapshot(self, ubm: GaussianMixture | None) -> None:
        tables = self._db.tables()
        if not {"meta", "ubm", "speakers", "recordings"} <= tables:       # (what every format has)
            self._db.fail(f"missing tables {sorted(set(_TABLES) - tables)}")
        meta = {}
        for k, v in self._db.rows("SELECT key, value FROM meta"):
            if not isinstance(k, str) or not isinstance(v, str) or len(v) > 1 << 20:
                self._db.fail("malformed meta table")
            meta[k] = v
        if meta.get("format") != FORMAT:
            self._db.fail(f"format is not {FORMAT!r}")
        if meta.get("format_version") in UPGRADABLE:
            raise StoreError(f"{self.path}: a format {meta['format_version']} speaker store (made by an earlier "
                             f"version): upgrade it once to format {FORMAT_VERSION} with 'speaker store-info --store "
                             f"{self.path} --upgrade' (one-way; copy the store first to keep the old one)")
        if meta.get("format_version") != str(FORMAT_VERSION):
            self._db.fail(f"unsupported format_version {meta.get('format_version')!r} "
                          f"(this version reads {FORMAT_VERSION})")
        self._db.check_schema(_schema(), _TABLES, _OPTIONAL_TABLES)
        self._check_meta(meta)
        try:
            self.config = FeatureConfig.from_json(meta["feature_config"])
        except (ValueError, TypeError) as exc:
            self._db.fail(f"bad meta entry feature_config: {type(exc).__name__}: {exc}")
        self.relevance_factor, self.adapt, fp = float(meta["relevance_factor"]), meta["adapt"], meta["ubm_fingerprint"]
        rows = self._db.rows("SELECT dtype, k, d, length(weights), length(means), length(covariances) FROM ubm")
        if len(rows) != 1:
            self._db.fail("the UBM row is missing")
        dtype, K, D, lw, lm, lv = rows[0]
        if dtype not in ("float32", "float64") or ubm_shape_problem(K, D) is not None \
                or (lw, lm, lv) != (8 * K, 8 * K * D, 8 * K * D):
            self._db.fail("malformed UBM row (dtype, shape or sizes)")
        w, mu, var = self._db.rows("SELECT weights, means, covariances FROM ubm")[0]
        stored = (np.frombuffer(w, "<f8").astype(dtype), np.frombuffer(mu, "<f8").reshape(K, D).astype(dtype),
                  np.frombuffer(var, "<f8").reshape(K, D).astype(dtype))
        if arrays_fingerprint(*stored) != fp:
            self._db.fail("the stored UBM does not match its fingerprint (corrupted?)")
        if ubm is not None and ubm_fingerprint(ubm) != fp:
            raise UBMMismatchError(self.path, fp, ubm_fingerprint(ubm))
        self._ubm, self._ubm_arrays, self.fingerprint, self.K, self.D = ubm, stored, fp, K, D
        check_top_c(self.top_c, K)

    @property
    def ubm(self) -> GaussianMixture:
        """The store's UBM, built from its row on first use (validated then: a malformed one is a
        :class:`StoreInvalid`): a :class:`gmmext.MixtureModel` (what scoring and MAP need; listing
        the speakers needs no model, scoring no scikit-learn)."""
        if self._ubm is None:
            from gmmext import MixtureModel
            with self._lock:
                if self._ubm is None:
                    try:
                        self._ubm = MixtureModel.from_parameters(*self._ubm_arrays, covariance_type="diag")
                    except (ValueError, TypeError) as exc:
                        self._db.fail(f"UBM: {exc}")
        return self._ubm

    def _check_meta(self, meta: dict) -> None:
        """Every meta entry is one the store writes, with a value it could have written."""
        missing = sorted(set(_META_REQUIRED) - set(meta))
        if missing:
            self._db.fail(f"bad meta entry: missing {missing}")
        unknown = sorted(set(meta) - set(_META_REQUIRED) - set(_META_OPTIONAL))
        if unknown:
            self._db.fail(f"meta entries the store did not write: {[k[:40] for k in unknown[:10]]}")
        for key, value in meta.items():
            ok = {"relevance_factor": _relevance_ok, "adapt": _adapt_ok,
                  "generation": _counter_ok, "calibration_id": _counter_ok, "created_at": _time_ok,
                  "calibration_id_plda": _counter_ok, "calibration_id_cosine": _counter_ok,
                  "calibration_id_fusion": _counter_ok, "ivector_fingerprint": _hex64,
                  "backend_fingerprint": _hex64}.get(key)
            if ok is not None and not ok(value):
                self._db.fail(f"bad meta entry {key}: {value[:60]!r}")

    def close(self) -> None:
        """Close the database connections (of every thread)."""
        self._db.close()

    def snapshot(self) -> ContextManager:
        """A read transaction: the store's calls inside it (in this thread) see one state of it.

        ``with store.snapshot(): store.speakers(i); store.recordings(i)``.  Every method is
        one transaction by itself; this joins several."""
        return self._db.tx()

    def __enter__(self) -> "SpeakerStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _next_generation(self) -> int:
        rows = self._db.rows("SELECT value FROM meta WHERE key='generation'")
        if len(rows) != 1 or not isinstance(rows[0][0], str) or not _counter_ok(rows[0][0]) \
                or int(rows[0][0]) + 1 >= _MAX_COUNTER:
            self._db.fail(f"bad meta entry generation: {str(rows)[:60]}")
        g = int(rows[0][0]) + 1
        self._db.run("UPDATE meta SET value=? WHERE key='generation'", (str(g),))
        return g

    def _create_tables(self, names: Sequence[str]) -> None:
        """Create the store's optional tables ``names`` (inside the caller's write transaction)."""
        self._db.create(_schema(), names)

    # ------------------------------------------------------------------ meta values
    def _get_meta(self, key: str) -> str | None:
        rows = self._db.rows("SELECT value FROM meta WHERE key=?", (key,))
        return rows[0][0] if rows else None

    def _set_meta(self, key: str, value: str | None) -> None:
        with self._db.write():
            if value is None:
                self._db.run("DELETE FROM meta WHERE key=?", (key,))
            else:
                self._db.run("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                             (key, value))

    # ------------------------------------------------------------------ features and statistics
    def features(self, source: Source) -> np.ndarray:
        """Features (frames, D) of an audio file, ``.npy``, ``ark:offset``, a :class:`Waveform` or a
        feature array, checked (the store's face: the scoring below trusts them); ValueError
        naming the source (:class:`speaker.audio.AudioError` for unusable audio)."""
        if isinstance(source, Waveform):
            X = extract_features(source.samples, sample_rate=source.sample_rate, config=self.config)
            return check_features(X, self.D, "<waveform>: features")
        if isinstance(source, np.ndarray):
            return check_features(source, self.D, "<array>: features")
        X = read_source(os.fspath(source), self.config)          # finite float32 (frames >= 1, dims)
        if X.shape[1] != self.D:
            raise ValueError(f"{source}: features have {X.shape[1]} dims but the UBM has {self.D}")
        return X

    def features_and_quality(self, source: Source) -> tuple[np.ndarray, Quality | None]:
        """:meth:`features` and, for an audio file or a :class:`Waveform`, its
        :class:`speaker.quality.Quality` measured in the same decode (None for feature inputs:
        only their frames are known)."""
        if isinstance(source, Waveform):
            X, q = extract_features_and_quality(source.samples, sample_rate=source.sample_rate, config=self.config)
            return check_features(X, self.D, "<waveform>: features"), q
        if isinstance(source, np.ndarray):
            return self.features(source), None
        X, q = read_source_and_quality(os.fspath(source), self.config)
        if X.shape[1] != self.D:
            raise ValueError(f"{source}: features have {X.shape[1]} dims but the UBM has {self.D}")
        return X, q

    # ------------------------------------------------------------------ enrolment
    def enroll(self, speaker_id: str, sources: Iterable[Source], *, replace: bool = False,
               features: Callable[[Source], np.ndarray] | None = None, gate: Gate | None = None) -> EnrollResult:
        """Add recordings to a speaker (created if new), or start it over with ``replace=True``.

        Each source is an audio file, ``.npy`` / ``ark:offset`` features, a :class:`Waveform`
        (samples in memory and their rate), or a (frames, D) feature array.
        A source that cannot be read, whose content is already enrolled for this speaker, or
        that the quality gates refuse (``gate``, default the store's: too little net speech,
        clipped, noise only; :mod:`speaker.gates`) is skipped (``result.skipped``: source -> reason).  The rest are
        added in the given order, in one transaction: their statistics to the speaker's sums,
        and each recording's statistics, features and quality measures to its row.  Raises
        :class:`EnrolmentRefused` (nothing written) when the speaker would have less net speech
        than ``gate.min_speaker_speech``, StoreError when nothing could be added and the
        speaker would be left without recordings.  ``features`` (source -> (frames, D) array)
        replaces the store's own extraction, e.g. ``FeatureCache.get`` after a parallel or
        cached extraction; recordings are still hashed (and measured) from their files.
        """
        check_speaker_id(speaker_id)
        items: list[EnrolmentItem] = []
        result = EnrollResult(speaker_id)
        for src in sources:
            name = ("<array>" if isinstance(src, np.ndarray) else "<waveform>" if isinstance(src, Waveform)
                    else os.fspath(src))
            try:
                if features is None:
                    X, q = self.features_and_quality(src)
                else:
                    X = self.features(features(src))
                    q = (self.features_and_quality(src)[1] if isinstance(src, Waveform)
                         or not isinstance(src, np.ndarray) and source_kind(os.fspath(src)) == "audio" else None)
                digest = content_hash(src, X)
            except Exception as exc:  # noqa: BLE001 - reported per recording
                result.skipped[name] = str(exc) if str(exc).startswith(name) else f"{type(exc).__name__}: {exc}"
                continue
            # per-recording statistics as map_adapt takes them (speaker._batch): bit-for-bit equal
            items.append(EnrolmentItem(name, digest, recording_stats(self.ubm, X, check_input=False), X, q))
        return self.enroll_statistics(speaker_id, items, replace=replace, gate=gate, _result=result)

    def enroll_statistics(self, speaker_id: str, items: Sequence[EnrolmentItem | tuple[str, str, GMMStats]], *,
                          replace: bool = False, gate: Gate | None = None,
                          _result: EnrollResult | None = None) -> EnrollResult:
        """:meth:`enroll` with statistics computed elsewhere (another machine, a Dask worker):
        ``items`` are :class:`EnrolmentItem` (or (source name, SHA-256 of its content,
        :func:`speaker._batch.recording_stats`) triples: no features kept, net speech from the
        frame count)."""
        check_speaker_id(speaker_id)
        gate = self.gate if gate is None else gate
        result = _result if _result is not None else EnrollResult(speaker_id)
        usable = []
        for item in items:
            item = EnrolmentItem(*item)
            st, X = item.stats, item.features
            if not isinstance(st, GMMStats) or st.sum_x.shape != (self.K, self.D) \
                    or not (np.isfinite(st.n).all() and np.isfinite(st.sum_x).all() and np.isfinite(st.sum_xx).all()):
                raise ValueError(f"{item.source}: statistics must be finite GMMStats of shape (K, D) = {(self.K, self.D)}")
            if X is not None and (not isinstance(X, np.ndarray) or X.ndim != 2 or X.shape[1] != self.D
                                  or abs(X.shape[0] - st.n_samples) > 1e-6 * X.shape[0] + 1e-6):
                raise ValueError(f"{item.source}: features must be (frames, D) and match the statistics' frame count")
            if item.quality is not None and not isinstance(item.quality, Quality):
                raise ValueError(f"{item.source}: quality must be a speaker.quality.Quality")
            seconds = (item.quality.speech_seconds if item.quality is not None
                       else speech_seconds(round(st.n_samples), self.config))
            problem = gate.recording_problem(item.quality, seconds)
            if problem is not None:
                result.refused[item.source], result.skipped[item.source] = problem
                continue
            usable.append((item, seconds))
        with self._db.write():
            rows = self._db.rows("SELECT kind FROM speakers WHERE id=?", (speaker_id,))
            if rows and not replace and rows[0][0] != "stats":
                raise StoreError(f"speaker {speaker_id!r} was imported as a model without statistics: "
                                 "it cannot be extended (enrol it again with replace)")
            current, seen, seq, created, seconds, n_rec = None, set(), 0, time.time(), 0.0, 0
            if rows and not replace:
                current, created = self._stats(speaker_id)
                seen = {h for h, in self._db.rows("SELECT sha256 FROM recordings WHERE speaker_id=?", (speaker_id,))}
                seq = self._db.rows("SELECT COALESCE(MAX(seq), -1) + 1 FROM recordings WHERE speaker_id=?",
                                    (speaker_id,))[0][0]
                seconds, n_rec = self._speech(speaker_id)
            added = []
            for item, sec in usable:
                if item.sha256 in seen:
                    result.skipped[item.source] = "already enrolled for this speaker (same content)"
                    continue
                seen.add(item.sha256)
                current = item.stats if current is None else current + item.stats
                seconds += sec
                added.append((item, sec))
            if current is None:
                raise StoreError(f"speaker {speaker_id!r}: nothing to enrol ("
                                 + ("; ".join(f"{k}: {v}" for k, v in list(result.skipped.items())[:3]) or "no recordings")
                                 + ")")
            why = gate.speaker_problem(seconds, n_rec + len(added)) if added else None
            if why is not None:
                result.speech_seconds = seconds
                raise EnrolmentRefused(f"speaker {speaker_id!r} not enrolled: {why}", result)
            if added:
                now = time.time()
                # a DELETE (not INSERT OR REPLACE on an extended speaker) cascades to its recordings
                if replace:
                    self._db.run("DELETE FROM speakers WHERE id=?", (speaker_id,))
                self._db.run(
                    "INSERT INTO speakers VALUES (?, 'stats', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE "
                    "SET generation=excluded.generation, updated_at=excluded.updated_at, n_frames=excluded.n_frames, "
                    "loglik=excluded.loglik, a=excluded.a, b=excluded.b, c=excluded.c",
                    (speaker_id, self._next_generation(), float(created), now, self.K, self.D,
                     float(current.n_samples), float(current.loglik), _blob(current.n), _blob(current.sum_x), _blob(current.sum_xx)))
                self._db.many(f"INSERT INTO recordings (speaker_id, seq, source, sha256, n_frames, enrolled_at, "
                              f"{', '.join(RECORDING_DATA)}) VALUES ({', '.join('?' * (6 + len(RECORDING_DATA)))})",
                              [(speaker_id, seq + i, item.source, item.sha256, int(round(item.stats.n_samples)), now)
                               + self._recording_data(item, sec) for i, (item, sec) in enumerate(added)])
                self._keep_ivectors(speaker_id, [seq + i for i in range(len(added))], [item.stats for item, _ in added])
                self._before_commit(speaker_id)
            result.added = [item.source for item, _ in added]
            n_rec, = self._db.rows("SELECT COUNT(*) FROM recordings WHERE speaker_id=?", (speaker_id,))[0]
            result.n_recordings, result.n_frames = n_rec, int(round(current.n_samples))
            result.speech_seconds = seconds
        return result

    def _recording_data(self, item: EnrolmentItem, seconds: float) -> tuple:
        """The format-2 columns of a recording row (:data:`RECORDING_DATA`)."""
        st, X, q = item.stats, item.features, item.quality
        keep = X is not None and X.shape[0] <= MAX_KEPT_FRAMES and X.size <= MAX_KEPT_ELEMENTS
        if keep:
            X = np.ascontiguousarray(X, dtype=np.float64 if X.dtype == np.float64 else np.float32)
        return (float(st.loglik), _blob(st.n), _blob(st.sum_x), _blob(st.sum_xx) if "v" in self.adapt else None,
                str(X.dtype) if keep else None, X.astype(X.dtype.newbyteorder("<")).tobytes() if keep else None,
                float(seconds), None if q is None else json.dumps(q.to_dict()))

    def _speech(self, speaker_id: str) -> tuple[float, int]:
        """(net speech seconds, recordings) of a speaker: the kept measure of each recording,
        else (recordings enrolled before format 2) its frames times the frame shift."""
        rows = self._db.rows("SELECT n_frames, speech_seconds FROM recordings WHERE speaker_id=?", (speaker_id,))
        total = 0.0
        for n, sec in rows:
            if sec is None:
                sec = speech_seconds(n, self.config) if isinstance(n, int) and n >= 0 else math.nan
            if not isinstance(sec, (int, float)) or not 0 <= sec < math.inf:
                self._db.fail(f"speaker {speaker_id!r}: a recording's frame count or net speech is malformed")
            total += float(sec)
        return total, len(rows)

    def _before_commit(self, speaker_id: str) -> None:
        """Called inside an enrolment's transaction, just before the commit (a hook for tests)."""

    def remove(self, speaker_id: str) -> None:
        """Remove a speaker and its recordings; KeyError if unknown."""
        self.remove_many([speaker_id])

    def remove_many(self, speaker_ids: Iterable[str]) -> int:
        """Remove speakers and their recordings in one transaction, all or nothing: when any id
        is unknown nothing is removed and KeyError's arguments are the unknown ids.  Returns how
        many were removed."""
        ids = list(dict.fromkeys(speaker_ids))
        with self._db.write():
            unknown = [i for i in ids if not self._db.rows("SELECT 1 FROM speakers WHERE id=?", (i,))]
            if unknown:
                raise KeyError(*unknown)
            for i in ids:
                self._db.run("DELETE FROM speakers WHERE id=?", (i,))
        for i in ids:
            self._cache.forget(i)
        return len(ids)

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
        for i in mf.speakers:                  # (load_model checks them too: one rule)
            if speaker_id_problem(i) is not None:
                raise StoreError(f"{path}: {speaker_id_problem(i)}")
        with self._db.write():
            if self._get_meta("ivector_fingerprint") is not None:
                raise StoreError(f"{path}: this store is bound to an i-vector back-end, which needs every speaker's "
                                 "recordings: imported models have none (enrol the recordings instead)")
            have = {i for i, in self._db.rows("SELECT id FROM speakers")}
            clash = sorted(set(mf.speakers) & have)
            if clash and not replace:
                raise StoreError(f"{path}: speakers already in the store: {', '.join(clash[:5])}"
                                 f"{' ...' if len(clash) > 5 else ''} (replace them explicitly)")
            now = time.time()
            for i in mf.speakers:
                w, mu, var = mf.speakers.arrays(i)          # (no model built)
                self._db.run("DELETE FROM speakers WHERE id=?", (i,))
                self._db.run("INSERT INTO speakers VALUES (?, 'model', ?, ?, ?, ?, ?, 0, 0, ?, ?, ?)",
                                    (i, self._next_generation(), now, now, self.K, self.D, _blob(w),
                                     _blob(mu), _blob(var)))
        return list(mf.speakers)

    @one_snapshot
    def export(self, path: str | os.PathLike, ids: Sequence[str] | None = None, *, overwrite: bool = True) -> list[str]:
        """Write the models of ``ids`` (default all) to a ``models.npz`` (atomically, read in one
        snapshot; ``overwrite=False`` refuses an existing file)."""
        ids = list(ids) if ids is not None else [s.id for s in self.speakers()]
        if not ids:
            raise StoreError(f"{self.path}: no speakers to export")
        save_model(path, {i: self.model(i) for i in ids}, ubm=self.ubm, config=self.config, overwrite=overwrite)
        return ids

    # ------------------------------------------------------------------ reading rows
    @one_snapshot
    def _row(self, speaker_id: str) -> tuple[str, int, float, float, np.ndarray, np.ndarray, np.ndarray]:
        """(kind, generation, created, n_frames, loglik, a, b, c) of one speaker, validated."""
        rows = self._db.rows("SELECT kind, generation, created_at, k, d, n_frames, loglik, length(a), length(b), "
                             "length(c) FROM speakers WHERE id=?", (speaker_id,))
        if not rows:
            raise KeyError(speaker_id)
        kind, gen, created, K, D, n_frames, loglik, la, lb, lc = rows[0]
        where = f"speaker {speaker_id!r}"
        if kind not in ("stats", "model") or not isinstance(gen, int) or not 0 <= gen < _MAX_COUNTER \
                or (K, D) != (self.K, self.D):
            self._db.fail(f"{where}: bad kind, generation or shape ({kind!r}, K={K!r}, D={D!r})")
        if (la, lb, lc) != (8 * K, 8 * K * D, 8 * K * D):
            self._db.fail(f"{where}: array sizes {la, lb, lc} bytes, expected {8 * K, 8 * K * D, 8 * K * D}")
        if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in (created, n_frames, loglik)):
            self._db.fail(f"{where}: non-numeric or non-finite frame count, log-likelihood or time")
        a, b, c = self._arrays(where, kind, n_frames, *self._db.rows("SELECT a, b, c FROM speakers WHERE id=?",
                                                                      (speaker_id,))[0])
        return kind, gen, created, float(n_frames), float(loglik), a, b, c

    def _arrays(self, where: str, kind: str, n_frames: float, a: bytes, b: bytes, c: bytes
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The (K,), (K, D), (K, D) float64 arrays of a row whose BLOB sizes were checked: finite,
        and for statistics non-negative counts and second moments adding up to ``n_frames``."""
        K, D = self.K, self.D
        a = np.frombuffer(a, "<f8").astype(np.float64)
        b = np.frombuffer(b, "<f8").reshape(K, D).astype(np.float64)
        c = np.frombuffer(c, "<f8").reshape(K, D).astype(np.float64)
        if not (np.isfinite(a).all() and np.isfinite(b).all() and np.isfinite(c).all()):
            self._db.fail(f"{where}: arrays contain NaN or infinity")
        if kind == "stats":
            if (a < 0).any() or (c < 0).any() or not n_frames > 0 \
                    or abs(a.sum() - n_frames) > 1e-6 * n_frames + 1e-6:
                self._db.fail(f"{where}: statistics are inconsistent (negative counts or second moments, "
                              "or counts that do not add up to the frame count)")
        return a, b, c

    def _stats(self, speaker_id: str) -> tuple[GMMStats, float]:
        kind, _, created, n_frames, loglik, a, b, c = self._row(speaker_id)
        return GMMStats(a, b, c, loglik, n_frames), created

    def stats(self, speaker_id: str) -> GMMStats:
        """The speaker's enrolment statistics under the UBM (KeyError if unknown)."""
        return self._stats(speaker_id)[0]

    def speakers(self, speaker_id: str | None = None) -> list[SpeakerInfo]:
        """Every speaker, by id (or only ``speaker_id``: an empty list when unknown): recordings,
        frames, first enrolled, last changed, net speech seconds."""
        where, params = ("WHERE s.id = ? ", (speaker_id,)) if speaker_id is not None else ("", ())
        hop = speech_seconds(1, self.config)
        rows = self._db.rows("SELECT s.id, COUNT(r.seq), s.n_frames, s.created_at, s.updated_at, s.kind, "
                             "SUM(COALESCE(r.speech_seconds, r.n_frames * ?)) "
                             "FROM speakers s LEFT JOIN recordings r ON r.speaker_id = s.id "
                             f"{where}GROUP BY s.id ORDER BY s.id", (hop, *params))
        out = []
        for i, n, frames, created, updated, kind, sec in rows:
            if not isinstance(i, str) or kind not in ("stats", "model") \
                    or not all(_finite(x) for x in (frames, created, updated)) or not 0 <= frames < 2 ** 62 \
                    or not (sec is None or _finite(sec) and sec >= 0):
                self._db.fail(f"speaker {str(i)[:40]!r}: malformed row (kind, frame count, times or net speech)")
            out.append(SpeakerInfo(i, int(n), int(round(frames)), float(created), float(updated), str(kind),
                                   float(sec or 0.0)))
        return out

    def recordings(self, speaker_id: str) -> list[tuple[str, str, int, float]]:
        """The speaker's enrolled recordings in order: (source, sha256, frames, enrolled_at),
        validated (a source name of at most 4096 characters, a SHA-256 in hex, frames >= 1, a
        finite time)."""
        out = []
        for row in self._db.rows("SELECT source, sha256, n_frames, enrolled_at FROM recordings "
                                 "WHERE speaker_id=? ORDER BY seq", (speaker_id,)):
            src, digest, frames, when = row
            if not (isinstance(src, str) and len(src) <= 4096 and isinstance(digest, str) and _hex64(digest)
                    and isinstance(frames, int) and 1 <= frames < 2 ** 62 and _finite(when)):
                self._db.fail(f"speaker {speaker_id!r}: malformed recording row {str(row)[:80]}")
            out.append((src, digest, frames, float(when)))
        return out

    def _speech_of(self, ids: Sequence[str]) -> dict[str, float]:
        """{speaker: net speech seconds of its recordings} of ``ids`` (a duration-aware
        calibration reads them)."""
        return {i: self._speech(i)[0] for i in ids}

    def _kept_counts(self) -> dict[str, tuple[int, int, int]]:
        """{speaker: (recordings, with statistics kept, with features kept)}."""
        return {i: (n, ns, nf) for i, n, ns, nf in self._db.rows(
            "SELECT speaker_id, COUNT(*), COUNT(stats_n), COUNT(features) FROM recordings GROUP BY speaker_id")}

    @one_snapshot
    def kept_recordings(self, speaker_id: str) -> list[KeptRecording]:
        """The speaker's enrolled recordings in order with what the store keeps of each: UBM
        statistics, features and quality measures,
        validated like speaker rows (KeyError for an unknown speaker)."""
        if not self._db.rows("SELECT 1 FROM speakers WHERE id=?", (speaker_id,)):
            raise KeyError(speaker_id)
        K, D = self.K, self.D
        out = []
        for row in self._db.rows("SELECT seq, source, n_frames, loglik, length(stats_n), length(stats_x), "
                                 "length(stats_xx), feat_dtype, length(features), speech_seconds, quality "
                                 "FROM recordings WHERE speaker_id=? ORDER BY seq", (speaker_id,)):
            seq, src, frames, loglik, ln, lx, lxx, dtype, lf, sec, qtext = row
            where = f"speaker {speaker_id!r}, recording {seq!r}"
            if not isinstance(seq, int) or not isinstance(src, str) or not isinstance(frames, int) or frames < 1:
                self._db.fail(f"{where}: malformed recording row")
            for name, v in (("net speech", sec), ("log-likelihood", loglik)):
                if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v)):
                    self._db.fail(f"{where}: non-numeric or non-finite {name}")
            q = None
            if qtext is not None:
                try:
                    if not isinstance(qtext, str) or len(qtext) > 4096:
                        raise ValueError("not a short JSON text")
                    q = Quality.from_dict(json.loads(qtext))
                except (ValueError, TypeError, RecursionError) as exc:
                    self._db.fail(f"{where}: bad quality: {exc}")
            if sec is None:
                sec = speech_seconds(frames, self.config)
            stats = None
            if ln is not None or lx is not None:
                vv = "v" in self.adapt
                if (ln, lx) != (8 * K, 8 * K * D) or lxx != (8 * K * D if vv else None) or loglik is None:
                    self._db.fail(f"{where}: statistics of {ln, lx, lxx} bytes, expected "
                                  f"{8 * K, 8 * K * D, 8 * K * D if vv else None}")
                a, b, c = self._db.rows("SELECT stats_n, stats_x, stats_xx FROM recordings WHERE speaker_id=? AND "
                                        "seq=?", (speaker_id, seq))[0]
                a, b, c = self._arrays(where, "stats", frames, a, b, c if vv else bytes(8 * K * D))
                stats = GMMStats(a, b, c, float(loglik), float(frames))
            X = None
            if lf is not None:
                if dtype not in ("float32", "float64") or frames > MAX_KEPT_FRAMES or frames * D > MAX_KEPT_ELEMENTS \
                        or lf != np.dtype(dtype).itemsize * frames * D:
                    self._db.fail(f"{where}: features of {lf} bytes ({dtype!r}) for {frames} frames of {D} dims")
                f, = self._db.rows("SELECT features FROM recordings WHERE speaker_id=? AND seq=?", (speaker_id, seq))[0]
                X = np.frombuffer(f, np.dtype(dtype).newbyteorder("<")).reshape(frames, D).astype(dtype)
                if not np.isfinite(X).all():
                    self._db.fail(f"{where}: features contain NaN or infinity")
            out.append(KeptRecording(seq, src, frames, stats, X, float(sec), q))
        return out

    def __contains__(self, speaker_id: object) -> bool:
        return bool(self._db.rows("SELECT 1 FROM speakers WHERE id=?", (speaker_id,)))

    def __len__(self) -> int:
        return self._db.rows("SELECT COUNT(*) FROM speakers")[0][0]

    # ------------------------------------------------------------------ the cohort
    def add_cohort(self, items: Iterable[tuple[str, Source]], *,
                   features: Callable[[Source], np.ndarray] | None = None) -> EnrollResult:
        """Keep cohort recordings (``speaker score --norm`` without ``--cohort``): ``items`` are
        (id, source) pairs, e.g. the keys and paths of an audio list.

        Each recording's features (float32, as the feature cache keeps them; float64 arrays as
        they are) and UBM statistics (:func:`speaker._batch.recording_stats`) are computed once and stored; the
        cohort model is derived from the statistics by MAP with the store's settings.  An id
        already in the cohort, content already in it (SHA-256) or a source that cannot be read
        is skipped (``result.skipped``); the rest are added in order, in one transaction.
        ``features`` replaces the store's own extraction, as in :meth:`enroll`.
        """
        result = EnrollResult("<cohort>")
        rows = []
        for key, src in items:
            name = ("<array>" if isinstance(src, np.ndarray) else "<waveform>" if isinstance(src, Waveform)
                    else os.fspath(src))
            try:
                if recording_id_problem(key) is not None:
                    raise ValueError(recording_id_problem(key))
                X = self.features(src if features is None else features(src))
                if X.shape[0] > MAX_COHORT_FRAMES or X.size > MAX_COHORT_ELEMENTS:
                    raise ValueError(f"{name}: {X.shape[0]} frames is too long for a cohort recording")
                X = np.ascontiguousarray(X, dtype=np.float64 if X.dtype == np.float64 else np.float32)
                digest = content_hash(src, X)
            except Exception as exc:  # noqa: BLE001 - reported per recording
                result.skipped[key] = str(exc) if str(exc).startswith(name) else f"{type(exc).__name__}: {exc}"
                continue
            rows.append((key, name, digest, X, recording_stats(self.ubm, X, check_input=False)))
        with self._db.write():
            self._db.create(_schema(), ["cohort"])
            have = {(i, h) for i, h in self._db.rows("SELECT id, sha256 FROM cohort")}
            ids, hashes = {i for i, _ in have}, {h for _, h in have}
            seq = self._db.rows("SELECT COALESCE(MAX(seq), -1) + 1 FROM cohort")[0][0]
            now = time.time()
            for key, name, digest, X, st in rows:
                if key in ids or digest in hashes:
                    result.skipped[key] = ("already in the cohort (same id)" if key in ids
                                           else "already in the cohort (same content)")
                    continue
                ids.add(key)
                hashes.add(digest)
                self._db.run("INSERT INTO cohort VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (key, seq, self._next_generation(), name, digest, now, self.K, self.D,
                              float(st.n_samples), float(st.loglik), _blob(st.n), _blob(st.sum_x), _blob(st.sum_xx),
                              str(X.dtype), int(X.shape[0]), X.astype(X.dtype.newbyteorder("<")).tobytes()))
                seq += 1
                result.added.append(key)
            result.n_recordings = self._db.rows("SELECT COUNT(*) FROM cohort")[0][0]
        return result

    def remove_cohort(self, ids: Sequence[str] | None = None) -> int:
        """Remove cohort recordings (``ids``, default all) in one transaction, all or nothing (an
        unknown id: KeyError with the unknown ids, nothing removed); returns how many were removed."""
        with self._db.write():
            have = "cohort" in self._db.tables()
            if ids is None:
                return self._db.run("DELETE FROM cohort").rowcount if have else 0
            ids = list(dict.fromkeys(ids))
            unknown = [i for i in ids if not have or not self._db.rows("SELECT 1 FROM cohort WHERE id=?", (i,))]
            if unknown:
                raise KeyError(*unknown)
            return sum(self._db.run("DELETE FROM cohort WHERE id=?", (i,)).rowcount for i in ids)

    @one_snapshot
    def cohort_info(self) -> list[CohortInfo]:
        """The cohort recordings in the order they were added (empty without a cohort)."""
        if "cohort" not in self._db.tables():
            return []
        out = []
        for i, src, h, frames, added in self._db.rows("SELECT id, source, sha256, frames, added_at FROM cohort "
                                                      "ORDER BY seq"):
            if not all(isinstance(x, str) for x in (i, src, h)) or not isinstance(frames, int) \
                    or not _finite(added):
                self._db.fail("malformed cohort table")
            out.append(CohortInfo(i, src, h, frames, float(added)))
        return out

    @_locked
    def cohort(self, top_c: int | None = None):
        """The stored cohort as a :class:`speaker.cohort.Cohort` (ids, features, MAP models), or
        None when the store keeps none.  Its rows are validated like speaker rows, and its models
        derived once and kept until the cohort changes (one query of the generations checks it)."""
        from .cohort import Cohort
        with self._db.tx():
            if "cohort" not in self._db.tables():
                return None
            key = tuple(self._db.rows("SELECT id, generation FROM cohort ORDER BY seq"))
            if not key:
                return None
            if self._cohort is None or self._cohort[0] != key:
                self._cohort = None
                self._cohort = (key, *self._read_cohort())
        _, ids, feats, models = self._cohort
        return Cohort(self.ubm, list(ids), list(feats), list(models), top_c)

    def _read_cohort(self) -> tuple[list[str], list[np.ndarray], list[GaussianMixture]]:
        ids, feats, models = [], [], []
        for row in self._db.rows("SELECT id, k, d, n_frames, loglik, dtype, frames, length(a), length(b), length(c), "
                                 "length(features) FROM cohort ORDER BY seq"):
            i, K, D, n_frames, loglik, dtype, frames, la, lb, lc, lf = row
            where = f"cohort recording {i!r}"
            if not isinstance(i, str) or (K, D) != (self.K, self.D) or dtype not in ("float32", "float64") \
                    or not isinstance(frames, int) or not 1 <= frames <= MAX_COHORT_FRAMES \
                    or frames * D > MAX_COHORT_ELEMENTS:
                self._db.fail(f"{where}: bad shape or dtype (K={K!r}, D={D!r}, frames={frames!r}, dtype={dtype!r})")
            size = np.dtype(dtype).itemsize
            if (la, lb, lc, lf) != (8 * K, 8 * K * D, 8 * K * D, size * frames * D):
                self._db.fail(f"{where}: array sizes {la, lb, lc, lf} bytes, expected "
                              f"{8 * K, 8 * K * D, 8 * K * D, size * frames * D}")
            if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in (n_frames, loglik)) \
                    or abs(n_frames - frames) > 1e-6 * frames + 1e-6:
                self._db.fail(f"{where}: non-numeric or non-finite frame count or log-likelihood, or a frame "
                              "count that is not the features'")
            a, b, c, f = self._db.rows("SELECT a, b, c, features FROM cohort WHERE id=?", (i,))[0]
            a, b, c = self._arrays(where, "stats", n_frames, a, b, c)
            X = np.frombuffer(f, np.dtype(dtype).newbyteorder("<")).reshape(frames, D).astype(dtype)
            if not np.isfinite(X).all():
                self._db.fail(f"{where}: features contain NaN or infinity")
            ids.append(i)
            feats.append(X)
            models.append(map_from_stats(self.ubm, GMMStats(a, b, c, float(loglik), float(n_frames)),
                                         relevance_factor=self.relevance_factor, adapt=self.adapt))
        return ids, feats, models

    # ------------------------------------------------------------------ models
    def model(self, speaker_id: str) -> GaussianMixture:
        """The speaker's model: MAP from the statistics (kept until the speaker changes, while it
        fits in ``cache_mb``)."""
        g, model = self._model(speaker_id, None)
        self._cache.keep_model(speaker_id, g, model, evict=True)
        return model

    @property
    def cache_nbytes(self) -> int:
        """Bytes of the arrays this object keeps to score quickly (at most ``cache_mb`` MB)."""
        return self._cache.nbytes

    def _model(self, speaker_id: str, generation: int | None) -> tuple[int, GaussianMixture]:
        """(generation, model) of a speaker: the kept one if current (``generation``: the
        speaker's current one when known), else derived (not kept: see
        :meth:`speaker.verification.ScoringCache.keep_model`)."""
        if generation is None:
            gen = self._db.rows("SELECT generation FROM speakers WHERE id=?", (speaker_id,))
            if not gen:
                self._cache.forget(speaker_id)
                raise KeyError(speaker_id)
            generation = gen[0][0]
        hit = self._cache.model(speaker_id, generation)
        return (generation, hit) if hit is not None else self._derive(speaker_id)

    def _derive(self, speaker_id: str) -> tuple[int, GaussianMixture]:
        """(generation, model) of a speaker from its row (not cached)."""
        kind, g, _, n_frames, loglik, a, b, c = self._row(speaker_id)
        if kind == "stats":
            model = map_from_stats(self.ubm, GMMStats(a, b, c, loglik, n_frames),
                                   relevance_factor=self.relevance_factor, adapt=self.adapt)
        else:
            try:
                model = model_like(self.ubm, a, b, c)
            except ValueError as exc:
                self._db.fail(f"speaker {speaker_id!r}: {exc}")
        model.share_buffers(self.ubm)        # one set of work buffers per thread for every model kept
        return g, model

    def _generations(self) -> list[tuple[str, int]]:
        return [tuple(r) for r in self._db.rows("SELECT id, generation FROM speakers ORDER BY id")]
