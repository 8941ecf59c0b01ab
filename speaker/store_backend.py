"""A speaker store bound to an i-vector back-end: the extractor, the PLDA back-end and the
i-vector of every enrolled recording, in the store (docs/store.md, "A store bound to a back-end").

:class:`BackendBinding` is the third half of :class:`speaker.store.SpeakerStore` (a mixin):

* **binding** (:meth:`~BackendBinding.bind_backend`, ``speaker backend --store DB --ivector
  TV.npz --plda PLDA.npz``): the extractor must belong to the store's UBM and the back-end to
  the extractor (fingerprints); the i-vector of every enrolled recording is computed from the
  per-recording statistics the store keeps (zeroth and first order, format 2), no audio is read;
  binding another extractor recomputes every i-vector, in the same write transaction as the
  new extractor and fingerprints, so a store never holds i-vectors of two extractors (each row
  also names its extractor, and a reader refuses a row of another one);
* **enrolment** on a bound store computes the new recordings' i-vectors in the enrolment's
  transaction (:meth:`~BackendBinding._keep_ivectors`);
* **scoring** (:meth:`~BackendBinding._ivector_scores`, called by the one scoring path
  :meth:`speaker.verification.StoreScoring._system_scores`): the test's i-vector from its
  statistics under the UBM, then every speaker at once, enrolled as the batch back-end enrols
  (:func:`speaker.ivector_backend.enrol_speakers`: PLDA by count, cosine by the averaged
  vector) and scored as one matrix product (:class:`speaker.plda.PLDAScorer`; cosine: one gemm
  of length-normalised vectors); the prepared speakers are kept while no speaker changes.

Everything read back is untrusted like the rest of the store: array sizes are checked with
``length()`` before a BLOB is read, shapes against :mod:`speaker.limits`, values finite, the
back-end's covariances positive definite, and both fingerprints are recomputed from the stored
arrays and compared with the meta entries.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from gmmext import GMMStats

from .ivector import BATCH, TotalVariability, centre, extract_ivectors
from .ivector_backend import enrol_speakers, to_space
from .limits import MAX_RANK
from .plda import BACKEND_ARRAYS, PLDA, Backend, PLDAScorer, PLDATerms, backend_arrays_problem, length_norm

__all__ = ["BACKENDS", "FUSED", "BackendBinding", "BindResult", "BackendMismatchError"]

#: The back-ends a store scores with: ``gmm`` (MAP-adapted GMM-UBM, always), ``plda`` and
#: ``cosine`` (a bound i-vector back-end), ``fusion`` (plda and gmm fused by the store's fusion
#: calibration).
BACKENDS = ("gmm", "plda", "cosine", "fusion")
#: The systems a fusion combines, in the order of its calibration's columns: PLDA first (its
#: weight is the calibration's slope, which must be positive), the GMM-UBM score as the second
#: column (its weight is free: with strongly correlated systems BOSARIS's fusion may give it
#: either sign).
FUSED = ("plda", "gmm")


class BackendMismatchError(ValueError):
    """An extractor or back-end that does not belong to the store's UBM or to the extractor."""


class BindResult(NamedTuple):
    """What :meth:`BackendBinding.bind_backend` did: the extractor's and back-end's fingerprints,
    the recordings whose i-vectors were (re)computed (0 when the extractor was bound already),
    the speakers, and the bytes of i-vectors now kept."""

    ivector_fingerprint: str
    backend_fingerprint: str
    recomputed: int
    speakers: int
    ivector_bytes: int


class BackendBinding:
    """The bound i-vector back-end of :class:`speaker.store.SpeakerStore` (uses ``_db``,
    ``_get_meta``, ``_set_meta``, ``_lock``, ``_generations``, ``ubm``, ``fingerprint``, ``K``,
    ``D``, ``_arrays``, ``_create_tables``)."""

    _bound: tuple | None = None
    _prepared: dict | None = None
    _terms: tuple | None = None

    # ------------------------------------------------------------------ binding
    def bind_backend(self, tv: TotalVariability, backend: Backend) -> BindResult:
        """Bind an i-vector extractor and a PLDA back-end to the store (see the module docstring).

        Refused (:class:`BackendMismatchError`, nothing written) when ``tv`` was trained for
        another UBM, ``backend`` on another extractor's i-vectors or for another UBM, or has no
        PLDA model; ValueError when a speaker has no per-recording statistics (imported models,
        recordings enrolled before format 2: enrol them again with replace, or remove them)."""
        if not isinstance(tv, TotalVariability) or not isinstance(backend, Backend):
            raise TypeError("bind_backend takes a speaker.ivector.TotalVariability and a speaker.plda.Backend")
        if tv.ubm_fingerprint != self.fingerprint:
            raise BackendMismatchError(
                f"{self.path}: this i-vector extractor belongs to another UBM (fingerprint {tv.ubm_fingerprint[:12]}...) "
                f"than the store's ({self.fingerprint[:12]}...): train one on the store's UBM ('speaker store-info "
                f"--store {self.path} --export-ubm UBM.npz', then 'speaker train-ivector --ubm UBM.npz')")
        if tv.T.shape[0] != self.K * self.D or not 1 <= tv.rank <= MAX_RANK:
            raise BackendMismatchError(f"{self.path}: the extractor's T has shape {tv.T.shape}, not "
                                       f"({self.K * self.D}, R <= {MAX_RANK})")
        if backend.ivector_fingerprint != tv.fingerprint:
            raise BackendMismatchError(
                f"{self.path}: this PLDA back-end was trained on the i-vectors of "
                + (f"another extractor (fingerprint {backend.ivector_fingerprint[:12]}...)" if backend.ivector_fingerprint
                   else "an extractor it does not name")
                + f", not the given one ({tv.fingerprint[:12]}...): train it again with 'speaker train-plda "
                  "--ivector' this extractor")
        if backend.ubm_fingerprint and backend.ubm_fingerprint != self.fingerprint:
            raise BackendMismatchError(f"{self.path}: this PLDA back-end belongs to another UBM "
                                       f"(fingerprint {backend.ubm_fingerprint[:12]}...)")
        if backend.plda is None:
            raise BackendMismatchError(f"{self.path}: this back-end has no PLDA model")
        arrays = {"mean": backend.mean, "lda": backend.lda, "wccn": backend.wccn, "plda_mu": backend.plda.mu,
                  "plda_Sb": backend.plda.Sb, "plda_Sw": backend.plda.Sw}
        arrays = {k: None if v is None else np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
        why = backend_arrays_problem(arrays, tv.rank)
        if why is not None:
            raise BackendMismatchError(f"{self.path}: not a usable back-end: {why}")
        efp, bfp = tv.fingerprint, backend.fingerprint
        with self._db.write():
            self._create_tables(["extractor", "ivectors"])
            lacking = [i for i, kind, n, ns in self._db.rows(
                "SELECT s.id, s.kind, COUNT(r.seq), COUNT(r.stats_n) FROM speakers s LEFT JOIN recordings r "
                "ON r.speaker_id = s.id GROUP BY s.id, s.kind ORDER BY s.id") if kind != "stats" or ns < n]
            if lacking:
                raise ValueError(f"{self.path}: speakers without per-recording statistics, from which i-vectors are "
                                 f"computed: {', '.join(lacking[:5])}{' ...' if len(lacking) > 5 else ''} (imported "
                                 "models or recordings enrolled before format 2: enrol them again with replace, or "
                                 "remove them), nothing bound")
            recompute = self._get_meta("ivector_fingerprint") != efp
            if recompute or self._get_meta("backend_fingerprint") != bfp:
                self._forget_ivector_calibrations()
            self._db.run("DELETE FROM extractor")
            rows = [("T", *tv.T.shape, _blob(tv.T))] + [
                (k, v.shape[0], v.shape[1] if v.ndim == 2 else 0, _blob(v)) for k, v in arrays.items() if v is not None]
            self._db.many("INSERT INTO extractor VALUES (?, ?, ?, ?)", rows)
            done = 0
            if recompute:
                self._db.run("DELETE FROM ivectors")
                done = self._recompute_ivectors(tv, efp)
            self._set_meta("ivector_fingerprint", efp)
            self._set_meta("backend_fingerprint", bfp)
            n_spk, = self._db.rows("SELECT COUNT(*) FROM speakers")[0]
            n_iv, = self._db.rows("SELECT COUNT(*) FROM ivectors")[0]
        with self._lock:
            self._bound, self._prepared = (efp, bfp, tv, backend), None
        return BindResult(efp, bfp, done, n_spk, n_iv * 8 * tv.rank)

    def unbind_backend(self) -> None:
        """Forget the bound extractor, back-end and i-vectors (and so the plda, cosine and fusion
        back-ends), in one transaction."""
        with self._db.write():
            if "extractor" in self._db.tables():
                self._db.run("DELETE FROM ivectors")
                self._db.run("DELETE FROM extractor")
            for key in ("ivector_fingerprint", "backend_fingerprint"):
                self._set_meta(key, None)
            self._forget_ivector_calibrations()

    def _forget_ivector_calibrations(self) -> None:
        """No current calibration for plda, cosine and fusion (inside a write transaction): a new
        extractor or back-end makes new scores, which the old calibrations do not fit (they stay
        in the history)."""
        for key in ("calibration_id_plda", "calibration_id_cosine", "calibration_id_fusion"):
            self._set_meta(key, None)

    def _recompute_ivectors(self, tv: TotalVariability, efp: str) -> int:
        """The i-vector of every enrolled recording from its kept statistics (inside the
        caller's write transaction), ``BATCH`` recordings at a time; how many."""
        keys = [(i, s) for i, s in self._db.rows("SELECT speaker_id, seq FROM recordings ORDER BY speaker_id, seq")]
        for b in range(0, len(keys), BATCH):
            part = keys[b:b + BATCH]
            stats = [self._recording_stats(i, s) for i, s in part]
            vecs = self._ivectors_of(tv, stats)
            self._db.many("INSERT INTO ivectors VALUES (?, ?, ?, ?)",
                          [(i, s, efp, _blob(v)) for (i, s), v in zip(part, vecs)])
        return len(keys)

    def _recording_stats(self, speaker_id: str, seq: int) -> GMMStats:
        """One recording's kept statistics (zeroth and first order), validated."""
        K, D = self.K, self.D
        where = f"speaker {speaker_id!r}, recording {seq!r}"
        row = self._db.rows("SELECT n_frames, length(stats_n), length(stats_x) FROM recordings WHERE speaker_id=? "
                            "AND seq=?", (speaker_id, seq))
        frames, ln, lx = row[0]
        if not isinstance(frames, int) or frames < 1 or (ln, lx) != (8 * K, 8 * K * D):
            self._db.fail(f"{where}: statistics of {ln, lx} bytes, expected {8 * K, 8 * K * D}")
        a, b = self._db.rows("SELECT stats_n, stats_x FROM recordings WHERE speaker_id=? AND seq=?",
                             (speaker_id, seq))[0]
        a, b, c = self._arrays(where, "stats", frames, a, b, bytes(8 * K * D))
        return GMMStats(a, b, c, 0.0, float(frames))

    def _ivectors_of(self, tv: TotalVariability, stats: Sequence[GMMStats]) -> np.ndarray:
        """i-vectors (B, R) of recordings' statistics under the store's UBM (the batch recipe's
        :func:`speaker.ivector.centred_stats` and :func:`speaker.ivector.extract_ivectors`)."""
        if not stats:
            return np.zeros((0, tv.rank))
        n, f = centre(self.ubm, np.stack([s.n for s in stats]), np.stack([s.sum_x for s in stats]))
        return extract_ivectors(tv, [(n, f)])[0]

    def _keep_ivectors(self, speaker_id: str, seqs: Sequence[int], stats: Sequence[GMMStats]) -> None:
        """Inside an enrolment's write transaction: the new recordings' i-vectors, when the store
        is bound to an extractor."""
        bound = self._bound_backend()
        if bound is None:
            return
        efp, _, tv, _ = bound
        vecs = self._ivectors_of(tv, stats)
        self._db.many("INSERT INTO ivectors VALUES (?, ?, ?, ?)",
                      [(speaker_id, s, efp, _blob(v)) for s, v in zip(seqs, vecs)])

    # ------------------------------------------------------------------ reading
    def bound_backend(self) -> tuple[TotalVariability, Backend] | None:
        """The bound extractor and back-end, or None (read and validated once per binding)."""
        with self._db.tx():
            b = self._bound_backend()
        return None if b is None else (b[2], b[3])

    def backends(self) -> tuple[str, ...]:
        """The back-ends this store scores with now: ``gmm``, and with a bound extractor
        ``plda``, ``cosine`` and (scores only with a fusion calibration) ``fusion``."""
        with self._db.tx():
            return BACKENDS if self._get_meta("ivector_fingerprint") is not None else ("gmm",)

    def _bound_backend(self) -> tuple | None:
        """(extractor fingerprint, back-end fingerprint, tv, backend) inside the caller's
        snapshot, or None when the store is not bound."""
        efp, bfp = self._get_meta("ivector_fingerprint"), self._get_meta("backend_fingerprint")
        if efp is None and bfp is None:
            return None
        if efp is None or bfp is None or not _hex64(efp) or not _hex64(bfp):
            self._db.fail("bad meta entries ivector_fingerprint / backend_fingerprint")
        with self._lock:
            if self._bound is not None and self._bound[:2] == (efp, bfp):
                return self._bound
        tv, be = self._read_extractor(efp, bfp)
        with self._lock:
            self._bound, self._prepared = (efp, bfp, tv, be), None
            return self._bound

    def _read_extractor(self, efp: str, bfp: str) -> tuple[TotalVariability, Backend]:
        K, D = self.K, self.D
        if "extractor" not in self._db.tables():
            self._db.fail("bound to an i-vector extractor but has no extractor table")
        rows = self._db.rows("SELECT name, n_rows, n_cols, length(data) FROM extractor")
        arrays: dict = {k: None for k in ("T", *BACKEND_ARRAYS)}
        for name, r, c, size in rows:
            ok = (name in arrays and isinstance(r, int) and isinstance(c, int)
                  and (r == K * D and 1 <= c <= MAX_RANK if name == "T" else 1 <= r <= MAX_RANK and 0 <= c <= MAX_RANK)
                  and size == 8 * r * max(c, 1))
            if not ok:
                self._db.fail(f"extractor: malformed array row {str(name)[:20]!r} ({r!r} x {c!r}, {size!r} bytes)")
            data, = self._db.rows("SELECT data FROM extractor WHERE name=?", (name,))[0]
            a = np.frombuffer(data, "<f8").astype(np.float64)
            arrays[name] = a.reshape(r, c) if c else a
        if arrays["T"] is None or any(arrays[k] is None for k in ("mean", "plda_mu", "plda_Sb", "plda_Sw")):
            self._db.fail("extractor: arrays missing")
        T = arrays.pop("T")
        why = backend_arrays_problem(arrays, T.shape[1]) or (None if np.isfinite(T).all() else "T is not finite")
        if why is not None:
            self._db.fail(f"extractor: {why}")
        tv = TotalVariability(T, self.fingerprint)
        be = Backend(arrays["mean"], arrays["lda"], arrays["wccn"],
                     PLDA(arrays["plda_mu"], arrays["plda_Sb"], arrays["plda_Sw"]), self.fingerprint,
                     ivector_fingerprint=tv.fingerprint)
        if tv.fingerprint != efp or be.fingerprint != bfp:
            self._db.fail("the stored extractor or back-end does not match its fingerprint (corrupted?)")
        return tv, be

    def ivectors(self, speaker_id: str) -> np.ndarray:
        """The i-vectors (n, R) of a speaker's recordings, in enrolment order (KeyError for an
        unknown speaker, ValueError for a store without a bound extractor)."""
        with self._db.tx():
            bound = self._require_bound("plda")
            return self._read_ivectors([speaker_id], bound)[speaker_id]

    def _require_bound(self, backend: str) -> tuple:
        bound = self._bound_backend()
        if bound is None:
            raise ValueError(f"{self.path}: --backend {backend} needs an i-vector extractor and a PLDA back-end bound "
                             f"to the store ('speaker backend --store {self.path} --ivector TV.npz --plda PLDA.npz')")
        return bound

    def _read_ivectors(self, ids: Sequence[str] | None, bound: tuple) -> dict[str, np.ndarray]:
        """{speaker: (n, R) i-vectors} of ``ids`` (default every speaker, in id order), validated."""
        efp, _, tv, _ = bound
        R = tv.rank
        if ids is None:
            rows = self._db.rows("SELECT speaker_id, seq, extractor, length(data) FROM ivectors "
                                 "ORDER BY speaker_id, seq")
            want = [i for i, _ in self._generations()]
        else:
            want = list(dict.fromkeys(ids))
            rows = [r for i in want for r in self._db.rows(
                "SELECT speaker_id, seq, extractor, length(data) FROM ivectors WHERE speaker_id=? ORDER BY seq", (i,))]
        for r in rows:
            if r[2] != efp or r[3] != 8 * R:
                self._db.fail(f"speaker {str(r[0])[:40]!r}: an i-vector row of another extractor or size")
        data = {}
        for i, s, _, _ in rows:
            v, = self._db.rows("SELECT data FROM ivectors WHERE speaker_id=? AND seq=?", (i, s))[0]
            data.setdefault(i, []).append(np.frombuffer(v, "<f8").astype(np.float64))
        out = {}
        for i in want:
            if i not in data:
                if not self._db.rows("SELECT 1 FROM speakers WHERE id=?", (i,)):
                    raise KeyError(i)
                self._db.fail(f"speaker {i!r} has no i-vectors in a store bound to an extractor")
            out[i] = np.stack(data[i])
            if not np.isfinite(out[i]).all():
                self._db.fail(f"speaker {i!r}: i-vectors contain NaN or infinity")
        return out

    # ------------------------------------------------------------------ scoring
    def _test_ivector(self, X: np.ndarray, tv: TotalVariability) -> np.ndarray:
        """The i-vector (R,) of a checked feature array: its statistics under the UBM, as a
        kept recording's."""
        from ._batch import recording_stats
        return self._ivectors_of(tv, [recording_stats(self.ubm, X, check_input=False)])[0]

    def _ivector_scores(self, X: np.ndarray, ids: Sequence[str] | None, kind: str,
                        test: np.ndarray | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Scores (n,) of a recording against ``ids`` (default every speaker, in id order) by the
        bound back-end ``kind`` (``plda``: the PLDA LLR by count, nats; ``cosine``), and the
        recording's i-vector (R,) (``test``: computed already by the caller)."""
        bound = self._require_bound(kind)
        _, _, tv, be = bound
        test = self._test_ivector(X, tv) if test is None else test
        ids, scorer = self._speaker_matrix(ids, kind, bound)
        return ids, scorer(to_space(be, test[None]))[0], test

    def _left_out_score(self, speaker_id: str, j: int, kind: str) -> float:
        """Score of a speaker's recording ``j`` (its kept i-vector) against the speaker enrolled
        with its other recordings (``speaker calibrate --from-enrollments``; inside the caller's
        snapshot)."""
        bound = self._require_bound(kind)
        be = bound[3]
        vecs = self._read_ivectors([speaker_id], bound)[speaker_id]
        scorer = _prepare(kind, be, {speaker_id: np.delete(vecs, j, axis=0)}, self._plda_terms(bound))
        return float(scorer(to_space(be, vecs[j][None]))[0, 0])

    def _plda_terms(self, bound: tuple) -> PLDATerms:
        """The bound PLDA model's constant terms, computed once per binding."""
        with self._lock:
            if self._terms is None or self._terms[0] != bound[1]:
                self._terms = (bound[1], PLDATerms(bound[3].plda))
            return self._terms[1]

    def _speaker_matrix(self, ids: Sequence[str] | None, kind: str, bound: tuple):
        """(ids, tests (B, d) -> scores (B, S)) of the speakers enrolled in back-end space.

        Every speaker's terms are prepared at once and kept while no speaker changes and the
        binding stays (one query of the generations checks it); given ``ids`` take their
        columns of them, or, when they are few (under a quarter of the store) and nothing is
        prepared, are prepared alone (a verify right after an enrolment into a large store does
        not prepare every speaker)."""
        gens = self._generations()
        key = (kind, bound[0], bound[1], tuple(gens))
        with self._lock:
            hit = self._prepared.get(kind) if self._prepared is not None else None
            hit = hit if hit is not None and hit[0] == key else None
        be = bound[3]
        if hit is None and ids is not None and 4 * len(set(ids)) < len(gens):
            groups = self._read_ivectors(ids, bound)
            return list(groups), _prepare(kind, be, groups, self._plda_terms(bound))
        if hit is None:
            groups = self._read_ivectors(None, bound)
            all_ids = list(groups)
            hit = (key, all_ids, {i: j for j, i in enumerate(all_ids)},
                   _prepare(kind, be, groups, self._plda_terms(bound)) if all_ids else (lambda t: np.zeros((len(t), 0))))
            with self._lock:
                self._prepared = {**(self._prepared or {}), kind: hit}
        _, all_ids, where, scorer = hit
        if ids is None:
            return all_ids, scorer
        want = list(ids)
        for i in want:
            if i not in where:
                raise KeyError(i)
        cols = np.array([where[i] for i in want], dtype=np.intp)
        return want, (lambda t: scorer(t)[:, cols])

def _prepare(kind: str, be: Backend, groups: dict, terms: PLDATerms):
    """tests (B, d) in back-end space -> scores (B, S) against the speakers of ``groups``
    ({id: raw i-vectors (n, R)}), enrolled as the batch back-end enrols them
    (:func:`speaker.ivector_backend.enrol_speakers`): PLDA by count
    (:class:`speaker.plda.PLDAScorer`), cosine of the length-normalised averaged vector (one gemm)."""
    models = enrol_speakers(groups, kind, be)
    if kind == "plda":
        return PLDAScorer.prepare(terms, models.means, models.counts).scores
    E = length_norm(models.means)
    return lambda t: length_norm(t) @ E.T


def _blob(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype="<f8").tobytes()


def _hex64(text: object) -> bool:
    return isinstance(text, str) and len(text) == 64 and all(c in "0123456789abcdef" for c in text)

