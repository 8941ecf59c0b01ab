"""Scoring and decisions over a speaker store: ``verify``, ``identify``, ``scores_all``.

:class:`StoreScoring` is the half of :class:`speaker.store.SpeakerStore` that answers "who is
this?": the store's other half keeps rows and derives models (``model``, ``_stack_of``), this
one scores a recording against them and applies the decision rule.

* **One scoring path.**  Every score goes through :meth:`_scores`: one
  :class:`speaker.scoring.Probe` per recording (the UBM's work once), exact or top-C as the store
  is configured, against the speakers' models (exact; top-C for given ids) or the store's
  prepared stacks (top-C, every speaker).  :meth:`verify` is :meth:`identify` restricted to one
  id (SpeechBrain's ``verify_files`` -> ``verify_batch`` shape), so both give the same score for
  the same speaker and recording.
* **One path, four back-ends** (``backend``: :data:`speaker.store_backend.BACKENDS`):
  :meth:`_system_scores` computes the scores of the systems asked for, ``gmm`` through the
  Probe as above, ``plda`` / ``cosine`` through the store's bound i-vector back-end (the
  test's i-vector once, every speaker as one matrix product,
  :meth:`speaker.store_backend.BackendBinding._ivector_scores`); :meth:`_scores` is the
  back-end's score: one system's, or for ``fusion`` the gmm and plda columns fused by the
  store's fusion calibration (a fused LLR).  Each back-end has its own current calibration;
  the fused score is an LLR already (its decision's calibration is the identity).
* **One read transaction per call.**  The features are computed first (no transaction is held
  while audio is decoded); then the speakers' generations, rows, the models' cache checks and
  the calibration are read in one snapshot.
* **Validated once.**  A source is read and checked by the store's ``features`` at the public
  methods (the face); the internals trust the array.  A caller that has checked the array
  already (``speaker serve``) passes ``check_input=False``.
* **The decision** (:class:`Decision`, :meth:`Decision.decide`: the one function that turns a
  score into ``accept`` / ``reject`` / ``undecided`` for the library, the command line and the
  service): ``threshold`` on the raw score if given; else ``target_far`` (the threshold on the
  calibrated LLR at which that fraction of the calibration's non-target trials pass); else, with
  a calibration (given, or the store's current one), the Bayes threshold of ``p_target`` /
  costs on the calibrated LLR; else no rule: ``undecided``, never accept.  A test with less net
  speech than the gate's ``min_test_speech`` is ``undecided`` ("insufficient speech") whatever
  the rule.  The calibrated LLR is reported whenever a calibration is at hand.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, NamedTuple, Sequence

import numpy as np

if TYPE_CHECKING:                  # (the estimators import scikit-learn: imported where used)
    from gmmext import GaussianMixture, ModelStack

from ._batch import sum_in_order
from .adapt import map_from_stats, map_parameters
from .calibration import ENROL_SPEECH, TEST_SPEECH, Calibration, decision_threshold
from .store_backend import BACKENDS, FUSED
from .gates import DEFAULT_GATE, Gate, speech_seconds
from .limits import SCORING_BATCH_MB
from .quality import Quality
from .scoring import Probe
from .sources import Source

__all__ = ["check_backend", "Decision", "Match", "VerifyResult", "EnrolmentTrials", "StoreScoring", "ScoringCache", "BATCH", "ACCEPT", "REJECT", "UNDECIDED"]

#: Speakers per :class:`gmmext.ModelStack` when a recording is scored against many (top-C).
BATCH = 1024


def check_backend(backend: object) -> str:
    """A back-end name of :data:`speaker.store_backend.BACKENDS`, else ValueError."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown back-end {backend!r}; choose from {', '.join(BACKENDS)}")
    return backend


#: The three decisions.
ACCEPT, REJECT, UNDECIDED = "accept", "reject", "undecided"


class VerifyResult(NamedTuple):
    """Outcome of :meth:`StoreScoring.verify`.

    ``score``: raw average LLR (nats per frame); ``llr``: the score calibrated to a
    log-likelihood ratio (natural log, :class:`speaker.calibration.Calibration`), or None
    without a calibration; ``accept``: ``decision == "accept"``; ``threshold``: what was
    compared (on the ``llr`` scale when calibrated, else on ``score``; None without a rule);
    ``decision``: ``accept``, ``reject`` or ``undecided``; ``reason``: one line saying why
    (the rule applied, or why there was none).
    """

    score: float
    llr: float | None
    accept: bool
    threshold: float | None
    decision: str = UNDECIDED
    reason: str = ""


class Match(NamedTuple):
    """One speaker of :meth:`StoreScoring.identify` / :meth:`StoreScoring.candidates`: ``id``,
    raw ``score`` (average LLR, nats per frame), the calibrated ``llr`` (None without a
    calibration), its ``decision`` and the ``reason``."""

    id: str
    score: float
    llr: float | None
    decision: str = UNDECIDED
    reason: str = ""

    @property
    def accept(self) -> bool:
        return self.decision == ACCEPT


@dataclass(frozen=True)
class Decision:
    """The decision rule, resolved once per call (:func:`speaker.calibration.decision_threshold`):
    accept iff the value is >= ``threshold``, the value being the calibrated LLR when ``on_llr``,
    else the raw score; ``threshold`` None: no rule (``undecided``, ``rule`` says why).
    ``gate``: its ``min_test_speech`` is the shortest test (net speech seconds) that gets a
    decision."""

    calibration: Calibration | None
    threshold: float | None
    on_llr: bool
    rule: str = ""
    gate: Gate = DEFAULT_GATE

    @classmethod
    def make(cls, calibration: Calibration | None, *, threshold: float | None = None,
             p_target: float | None = None, c_miss: float = 1.0, c_fa: float = 1.0,
             target_far: float | None = None, nontarget_llrs=None, gate: Gate | None = None) -> "Decision":
        """The rule of :func:`speaker.calibration.decision_threshold` and the test gate of ``gate``."""
        if calibration is not None and set(calibration.inputs) - {ENROL_SPEECH, TEST_SPEECH}:
            raise ValueError(f"this calibration needs the quality inputs {list(calibration.inputs)}; a store "
                             f"measures {ENROL_SPEECH} and {TEST_SPEECH} only")
        thr, on_llr, rule = decision_threshold(calibration, threshold=threshold, p_target=p_target, c_miss=c_miss,
                                               c_fa=c_fa, target_far=target_far, nontarget_llrs=nontarget_llrs)
        return cls(calibration, thr, on_llr, rule, DEFAULT_GATE if gate is None else gate)

    def llr(self, score: float, enrol_seconds: float | None = None, test_seconds: float | None = None
            ) -> float | None:
        """The calibrated LLR of a raw score (None without a calibration); a duration-aware
        calibration reads the net speech seconds of the enrolment and of the test."""
        if self.calibration is None:
            return None
        if not self.calibration.inputs:
            return float(self.calibration.llr(score))
        return float(self.calibration.llr(score, {ENROL_SPEECH: enrol_seconds, TEST_SPEECH: test_seconds}))

    def decide(self, score: float, test_seconds: float, test_quality: Quality | None = None,
               enrol_seconds: float | None = None) -> tuple[float | None, str, str]:
        """``(llr, decision, reason)`` of a raw score for a test of ``test_seconds`` net speech
        (``test_quality``: its measures, None for features) against an enrolment of
        ``enrol_seconds``: the one place a score becomes ``accept`` / ``reject`` / ``undecided``."""
        llr = self.llr(score, enrol_seconds, test_seconds)
        if self.threshold is None:
            return llr, UNDECIDED, self.rule
        weak = self.gate.test_problem(test_quality, test_seconds)
        if weak is not None:
            return llr, UNDECIDED, weak
        value = llr if self.on_llr else score
        return llr, (ACCEPT if value >= self.threshold else REJECT), self.rule


@dataclass
class EnrolmentTrials:
    """Trials from a store's enrolments (:meth:`StoreScoring.enrolment_trials`).

    ``target`` / ``nontarget``: raw scores ((n,), or (n, m) for the m systems of a fusion);
    ``systems``: their names; ``target_seconds`` / ``nontarget_seconds``:
    (n, 2) net speech seconds of each trial's enrolment and test; ``target_speakers`` /
    ``nontarget_speakers``: the test recording's speaker of each trial; ``speakers``: the
    eligible speakers (whose recordings are the tests); ``left_out``: the others and why;
    ``models_per_test``: non-target models each test was tried against; ``n_models``: speakers
    in the store."""

    target: np.ndarray
    nontarget: np.ndarray
    target_seconds: np.ndarray
    nontarget_seconds: np.ndarray
    target_speakers: list
    nontarget_speakers: list
    speakers: list
    left_out: dict
    models_per_test: int
    n_models: int
    systems: tuple = ("gmm",)


class ScoringCache:
    """What an open store keeps to score quickly, within ``limit`` bytes of arrays held.

    * **models** (exact scoring, :meth:`SpeakerStore.model`): speaker id -> (generation, model,
      bytes), least recently used first.  A model's bytes are ``GaussianMixture.nbytes`` (its
      parameters and the core's matrices) once it has scored; its per-thread work buffers are
      the UBM's (``share_buffers``, set by the store's ``_derive``), not one set per model.
    * **stacks** (top-C identification over every speaker): the batches of
      :meth:`StoreScoring._all_stacks`, each kept (``ModelStack.nbytes``) while it fits.

    :attr:`nbytes` never exceeds ``limit``: something that does not fit is used for its call and
    dropped.  A single model asked for (``verify``, ``model``) evicts the least recently used
    models; a scan of every speaker (``identify``) only fills free room, since under a
    least-recently-used rule a scan larger than the cache would evict exactly the speaker it
    needs next and keep nothing useful.  Thread-safe (one lock)."""

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self.models: OrderedDict[str, tuple[int, GaussianMixture, int]] = OrderedDict()
        self.model_bytes = 0
        self.stacks: tuple | None = None          #: (key, ids, [ModelStack or None per batch])
        self.stack_bytes = 0
        self.lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays held (models and stacks)."""
        return self.model_bytes + self.stack_bytes

    def model(self, speaker_id: str, generation: int) -> GaussianMixture | None:
        """The kept model of that generation (now the most recently used), or None."""
        with self.lock:
            hit = self.models.get(speaker_id)
            if hit is None or hit[0] != generation:
                return None
            self.models.move_to_end(speaker_id)
            return hit[1]

    def keep_model(self, speaker_id: str, generation: int, model: GaussianMixture, evict: bool) -> None:
        """Keep ``model`` (measured now: call it again after the model has scored, its matrices
        then count) if it fits, as the most recently used (``evict``: making room by dropping the
        least recently used)."""
        size = model.nbytes
        with self.lock:
            self._drop_model(speaker_id)
            if evict:
                while self.models and self.nbytes + size > self.limit:
                    self._drop_model(next(iter(self.models)))
            if self.nbytes + size <= self.limit:
                self.models[speaker_id] = (generation, model, size)
                self.model_bytes += size

    def forget(self, speaker_id: str) -> None:
        with self.lock:
            self._drop_model(speaker_id)

    def _drop_model(self, speaker_id: str) -> None:
        old = self.models.pop(speaker_id, None)
        if old is not None:
            self.model_bytes -= old[2]

    def stack_list(self, key: tuple, ids: Callable[[], list[str]], n_batches: Callable[[int], int]
                   ) -> tuple[list[str], list]:
        """(ids, kept stacks or None per batch) for ``key``; a new key drops the old stacks."""
        with self.lock:
            if self.stacks is None or self.stacks[0] != key:
                self.stacks, self.stack_bytes = None, 0           # free the old ones first
                every = ids()
                self.stacks = (key, every, [None] * n_batches(len(every)))
            return self.stacks[1], self.stacks[2]

    def keep_stack(self, key: tuple, b: int, stack: ModelStack) -> None:
        """Keep batch ``b``'s stack of ``key`` if it fits in the free room (stacks evict nothing)."""
        size = stack.nbytes
        with self.lock:
            if self.stacks is not None and self.stacks[0] == key and self.stacks[2][b] is None \
                    and self.nbytes + size <= self.limit:
                self.stacks[2][b] = stack
                self.stack_bytes += size


class StoreScoring:
    """Scoring and decisions of :class:`speaker.store.SpeakerStore` (a mixin).

    It uses the store's ``ubm``, ``top_c``, ``config``, ``gate``, ``current_calibration()``,
    ``features(source)``, ``model(id)``,
    its rows (``_row(id)``, ``_generations()``), MAP settings, ``_db`` (transactions) and
    ``_lock``; it keeps models and every speaker's prepared top-C stacks in ``_cache`` (a
    :class:`ScoringCache` bounded by the store's ``cache_mb``) while no speaker changes.
    """

    def score(self, speaker_id: str, source: Source, *, check_input: bool = True, backend: str = "gmm") -> float:
        """Raw score of a recording against a speaker: ``gmm`` average LLR, nats per frame;
        ``plda`` the PLDA LLR (nats); ``cosine``; ``fusion`` the fused LLR."""
        return self.scores_all(source, [speaker_id], check_input=check_input, backend=backend)[1][0]

    def scores_all(self, source: Source, ids: Sequence[str] | None = None, *, batch: int = BATCH,
                   check_input: bool = True, backend: str = "gmm") -> tuple[list[str], np.ndarray]:
        """Raw scores of one recording against many speakers (default all): (ids, scores).

        With ``top_c``, the UBM's top-C components of the recording are found once and the
        speakers are scored in batches of ``batch`` (one :class:`gmmext.ModelStack` each: one
        gemm per selected component against the whole batch).  For all speakers, the batches are
        built from the stored statistics by array operations and kept while no speaker changes
        (``_all_stacks``) and kept while they fit in the store's ``cache_mb``; for given ``ids``,
        built for the call.  Without ``top_c`` every model is scored exactly, one after the
        other (kept models, or derived for the call).  KeyError for an unknown id.
        ``backend``: see :meth:`_scores` (ValueError for one the store cannot score with).
        """
        check_backend(backend)
        X = self.features(source) if check_input else source
        with self._db.tx():
            return self._scores(X, ids, batch, backend=backend)

    def system_scores(self, source: Source, ids: Sequence[str] | None = None, *, systems: Sequence[str] = FUSED,
                      check_input: bool = True) -> tuple[list[str], np.ndarray]:
        """Raw scores (n, len(systems)) of one recording against ``ids`` (default every speaker)
        by each of ``systems`` (``gmm``, ``plda``, ``cosine``): the columns a fusion is fitted on
        (``speaker calibrate --store DB --backend fusion --trials DEV``)."""
        for system in systems:
            if check_backend(system) == "fusion":
                raise ValueError("a fusion's systems are gmm, plda, cosine")
        X = self.features(source) if check_input else source
        with self._db.tx():
            return self._system_scores(X, ids, BATCH, None, tuple(systems))

    def _scores(self, X: np.ndarray, ids: Sequence[str] | None, batch: int,
                probe: Probe | None = None, backend: str = "gmm") -> tuple[list[str], np.ndarray]:
        """The one scoring path (inside the caller's snapshot; ``X`` checked; ``probe``: X's,
        when the caller scores it against other models too): the scores (n,) of ``backend``,
        one system's (:meth:`_system_scores`) or, for ``fusion``, the fused LLR of the gmm and
        plda scores by the store's fusion calibration."""
        if backend != "fusion":
            ids, S = self._system_scores(X, ids, batch, probe, (backend,))
            return ids, S[:, 0]
        fusion = self._fusion()
        ids, S = self._system_scores(X, ids, batch, probe, FUSED)
        return ids, (np.asarray(fusion.llr(S), dtype=np.float64).reshape(-1) if len(ids) else np.empty(0))

    def _fusion(self) -> Calibration:
        """The store's current fusion calibration (inside the caller's snapshot), else ValueError."""
        cur = self.current_calibration("fusion")
        if cur is None:
            raise ValueError(f"{self.path}: --backend fusion needs the store's fusion calibration ('speaker calibrate "
                             f"--store {self.path} --backend fusion', with --trials or --from-enrollments)")
        if cur.calibration.systems != FUSED or cur.calibration.inputs:
            self._db.fail(f"calibration {cur.id}: not a fusion of {FUSED} without quality inputs")
        return cur.calibration

    def _system_scores(self, X: np.ndarray, ids: Sequence[str] | None, batch: int, probe: Probe | None,
                       systems: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """Scores (n, len(systems)) of ``X`` against ``ids`` (default every speaker, in id order)
        by each of ``systems`` (``gmm``, ``plda``, ``cosine``)."""
        cols, out_ids, test = [], None, None
        for system in systems:
            if system == "gmm":
                got_ids, sc = self._gmm_scores(X, ids, batch, probe)
            else:
                got_ids, sc, test = self._ivector_scores(X, ids, system, test)
            if out_ids is not None and got_ids != out_ids:
                self._db.fail("the back-ends' speakers differ (a speaker without i-vectors?)")
            out_ids = got_ids
            cols.append(sc)
        return out_ids, np.column_stack(cols) if cols else np.empty((0, 0))

    def _gmm_scores(self, X: np.ndarray, ids: Sequence[str] | None, batch: int,
                    probe: Probe | None) -> tuple[list[str], np.ndarray]:
        """GMM-UBM scores: average LLR per frame (nats) against the speakers' MAP models.

        Exact: each speaker's model (kept in the store's bounded cache, or derived for the call),
        one after the other.  Top-C: stacks of at most ``batch`` speakers (and at most
        :data:`speaker.limits.SCORING_BATCH_MB`) built from the rows: every speaker's from the
        prepared stacks of :meth:`_all_stacks` (built when missing, kept while they fit), given
        ids' for the call (one id: a stack of its kept model, as exact scoring keeps it).  A
        speaker's score is the same bits in a stack of one as among many."""
        probe = Probe(self.ubm, X, self.top_c) if probe is None else probe
        if self.top_c is None:
            gens = dict(self._generations()) if ids is None else None
            ids = list(gens) if gens is not None else list(ids)
            out = np.empty(len(ids))
            for j, i in enumerate(ids):
                g, model = self._model(i, None if gens is None else gens[i])
                out[j] = probe.llrs([model])[0]
                self._cache.keep_model(i, g, model, evict=gens is None and len(ids) == 1)   # measured now
            return ids, out
        batch = self._batch_size(batch)
        key = kept = None
        if ids is None:
            key, ids, kept = self._all_stacks(batch)
        else:
            ids = list(ids)
        groups = []
        for b, s in enumerate(range(0, len(ids), batch)):
            stack = kept[b] if kept is not None else None
            fresh = stack is None
            if fresh and len(ids) == 1:                # verify: the speaker's kept model, stacked
                from gmmext import ModelStack
                g, model = self._model(ids[0], None)
                stack = ModelStack([model], reference=self.ubm)
                self._cache.keep_model(ids[0], g, model, evict=True)
            elif fresh:
                stack = self._stack_of(ids[s:s + batch])
            groups.append(probe.llrs(stack))
            if fresh and kept is not None:
                stack.release_parameters()            # the matrices of this dtype are all it needs now
                self._cache.keep_stack(key, b, stack)
            del stack
        return ids, (np.concatenate(groups) if groups else np.empty(0))

    def _batch_size(self, batch: int) -> int:
        """Speakers per top-C stack: at most ``batch`` and about :data:`speaker.limits.SCORING_BATCH_MB`
        of stacked values (a speaker's parameters and matrices: ``2 (D + 1) K`` values in the
        UBM's dtype for a mean-adapted one, ``(4 D + 2) K`` with adapted variances)."""
        per = self.ubm.means_.dtype.itemsize * self.K * (2 * self.D + 2 + (2 * self.D if "v" in self.adapt else 0))
        return max(1, min(int(batch), (SCORING_BATCH_MB << 20) // per))

    def _decision(self, threshold, p_target, c_miss, c_fa, calibration, target_far, gate,
                  backend: str = "gmm") -> Decision:
        """The call's rule (inside its snapshot): a given calibration, else the store's current
        one for ``backend`` (with its trials' LLRs when ``target_far`` asks for them); the
        fusion's score is its LLR (an identity calibration at the fusion's prior)."""
        non = None
        if calibration is None:
            cur = self.current_calibration(backend)
            if cur is not None:
                calibration = cur.calibration
                if backend == "fusion":
                    calibration = Calibration(1.0, 0.0, calibration.prior, calibration.n_target,
                                              calibration.n_nontarget, systems=("fusion",))
                if target_far is not None and threshold is None and cur.has_trials:
                    non = self._trial_llrs(cur)[1]
        return Decision.make(calibration, threshold=threshold, p_target=p_target, c_miss=c_miss, c_fa=c_fa,
                             target_far=target_far, nontarget_llrs=non, gate=self.gate if gate is None else gate)

    def decision(self, *, threshold: float | None = None, p_target: float | None = None, c_miss: float = 1.0,
                 c_fa: float = 1.0, calibration: Calibration | None = None, target_far: float | None = None,
                 gate: Gate | None = None, backend: str = "gmm") -> Decision:
        """The rule :meth:`verify` and :meth:`identify` would apply with these arguments now
        (``decision.rule`` says it in one line; ``decision.threshold`` is None without one).
        ValueError for arguments that make no rule (e.g. ``target_far`` without a calibration)."""
        check_backend(backend)
        with self._db.tx():
            return self._decision(threshold, p_target, c_miss, c_fa, calibration, target_far, gate, backend)

    def verify(self, speaker_id: str, source: Source, *, threshold: float | None = None,
               p_target: float | None = None, c_miss: float = 1.0, c_fa: float = 1.0,
               calibration: Calibration | None = None, target_far: float | None = None,
               gate: Gate | None = None, check_input: bool = True, quality: Quality | None = None,
               backend: str = "gmm") -> VerifyResult:
        """Is ``source`` speaker ``speaker_id``?  :meth:`identify` restricted to that speaker.

        Decision (:class:`Decision`): ``threshold`` on the raw score if given; else
        ``target_far`` F, the threshold on the calibrated LLR at which F of the calibration's
        non-target trials pass; else, with a calibration, the Bayes threshold
        ``log(c_fa (1 - p_target) / (c_miss p_target))`` on the calibrated LLR (``p_target``
        default: the prior the calibration was fitted at); else ``undecided`` (never accept
        without a calibration or a threshold).  A test that fails the test gate of ``gate``
        (default the store's: too little net speech, clipped, noise only) is ``undecided``.
        ``calibration`` replaces the store's own.  ``check_input=False``: ``source`` is a
        checked feature array and ``quality`` its recording's measures (None: net speech from
        its frames).  ``backend``: ``gmm`` (default), ``plda``, ``cosine`` (a store bound to an
        i-vector back-end) or ``fusion`` (also needs the store's fusion calibration); each has
        its own calibration, and without it (or a threshold) the decision is ``undecided``.
        KeyError for an unknown speaker; ValueError for a rule that cannot be made
        (``p_target`` / ``target_far`` without a calibration) or a back-end the store lacks.
        """
        check_backend(backend)
        X, q = self.features_and_quality(source) if check_input else (source, quality)
        with self._db.tx():
            rule = self._decision(threshold, p_target, c_miss, c_fa, calibration, target_far, gate, backend)
            m, = self._matches(X, q, [speaker_id], rule, 1, backend)
        return VerifyResult(m.score, m.llr, m.accept, rule.threshold, m.decision, m.reason)

    def candidates(self, source: Source, n: int = 1, *, threshold: float | None = None,
                   p_target: float | None = None, c_miss: float = 1.0, c_fa: float = 1.0,
                   calibration: Calibration | None = None, target_far: float | None = None,
                   gate: Gate | None = None, check_input: bool = True, quality: Quality | None = None,
                   backend: str = "gmm") -> list[Match]:
        """The ``n`` best-scoring speakers, best first (ties in id order), each with its
        decision (the rule of :meth:`verify`, ``backend`` as there), whether or not any passes."""
        check_backend(backend)
        X, q = self.features_and_quality(source) if check_input else (source, quality)
        with self._db.tx():
            rule = self._decision(threshold, p_target, c_miss, c_fa, calibration, target_far, gate, backend)
            return self._matches(X, q, None, rule, max(0, int(n)), backend)

    def identify(self, source: Source, n: int = 1, *, threshold: float | None = None,
                 p_target: float | None = None, c_miss: float = 1.0, c_fa: float = 1.0,
                 calibration: Calibration | None = None, target_far: float | None = None,
                 gate: Gate | None = None, check_input: bool = True, quality: Quality | None = None,
                 backend: str = "gmm") -> list[Match]:
        """Open-set identification: those of the ``n`` best-scoring speakers that are accepted
        by the decision rule of :meth:`verify`, best first; empty when none is (and always
        without a calibration or a threshold: see :meth:`candidates` for the ranking with
        every candidate's decision)."""
        return [m for m in self.candidates(source, n, threshold=threshold, p_target=p_target, c_miss=c_miss,
                                           c_fa=c_fa, calibration=calibration, target_far=target_far, gate=gate,
                                           check_input=check_input, quality=quality, backend=backend) if m.accept]

    def _matches(self, X: np.ndarray, q: Quality | None, ids: Sequence[str] | None, rule: Decision,
                 n: int, backend: str = "gmm") -> list[Match]:
        """The ``n`` best of every speaker (or of ``ids``), best first (ties in id order), decided."""
        ids, scores = self._scores(X, ids, BATCH, backend=backend)
        order = np.argsort(-scores, kind="stable")[:n]
        seconds = q.speech_seconds if q is not None else speech_seconds(X.shape[0], self.config)
        enrol = (self._speech_of([ids[j] for j in order]) if rule.calibration is not None and rule.calibration.inputs
                 else {})
        return [Match(ids[j], float(scores[j]), *rule.decide(float(scores[j]), seconds, q, enrol.get(ids[j])))
                for j in order]

    # ------------------------------------------------------------------ trials from the enrolments
    def enrolment_trials(self, *, min_recordings: int = 2, max_nontarget: int = 50_000, seed: int = 0,
                         batch: int = BATCH, backend: str = "gmm") -> "EnrolmentTrials":
        """Trials built from what is enrolled (``speaker calibrate --from-enrollments``), in one
        read transaction, scored through the one scoring path.

        * **targets**: each recording of an eligible speaker (every recording kept with its
          statistics and features, at least ``min_recordings`` of them) against its speaker's
          model re-adapted without it: MAP from the left fold, in enrolment order, of the other
          recordings' kept statistics, i.e. the model enrolling those recordings would give,
          bit for bit (leave one recording out);
        * **non-targets**: the same recordings against the other speakers' full models (every
          speaker of the store, eligible or not); when that would make more than
          ``max_nontarget`` trials, each recording is tried against a random sample of the
          other speakers (the same number for each, at least one; ``seed`` fixes it).

        Each trial carries its enrolment's and test's net speech seconds (for a calibration
        that takes durations into account).

        ``backend``: whose raw scores (``gmm``, ``plda``, ``cosine``: the trials' scores (n,);
        ``fusion``: the (n, 2) scores of its systems :data:`speaker.store_backend.FUSED`, to fit
        the fusion on).  An i-vector back-end's leave-one-out model enrols the speaker's other
        recordings' kept i-vectors (by count, as the speaker's model does); its test is the held-out
        recording's i-vector."""
        check_backend(backend)
        systems = FUSED if backend == "fusion" else (backend,)
        rng = np.random.default_rng(seed)
        with self._db.tx():
            info = {s.id: s for s in self.speakers()}
            ids = sorted(info)
            kept_counts = self._kept_counts()
            eligible, left_out = {}, {}
            for i in ids:
                n, n_stats, n_feats = kept_counts.get(i, (0, 0, 0))
                if info[i].kind != "stats":
                    left_out[i] = "an imported model (no recordings)"
                elif n_stats < n or n_feats < n:
                    left_out[i] = ("recordings enrolled before the store kept per-recording statistics and features "
                                   "(enrol it again with replace to use it)")
                elif n < min_recordings:
                    left_out[i] = f"{n} recording(s), fewer than {min_recordings}"
                else:
                    eligible[i] = n
            n_tests = sum(info[i].n_recordings for i in eligible)
            others = max(0, len(ids) - 1)
            per_test = others if n_tests * others <= max_nontarget else max(1, max_nontarget // max(1, n_tests))
            tar, non, tar_q, non_q, tar_spk, non_spk = [], [], [], [], [], []
            for i in eligible:
                kept = self.kept_recordings(i)
                total = sum(r.speech_seconds for r in kept)
                for j, r in enumerate(kept):
                    probe = Probe(self.ubm, r.features, self.top_c) if "gmm" in systems else None
                    row = []
                    for system in systems:
                        if system == "gmm":
                            rest = [q.stats for k, q in enumerate(kept) if k != j]
                            loo = map_from_stats(self.ubm, sum_in_order(rest), relevance_factor=self.relevance_factor,
                                                 adapt=self.adapt)
                            row.append(float(probe.llrs([loo])[0]))
                        else:
                            row.append(self._left_out_score(i, j, system))
                    tar.append(row)
                    tar_q.append((total - r.speech_seconds, r.speech_seconds))
                    tar_spk.append(i)
                    pool = [k for k in ids if k != i]
                    if per_test < len(pool):
                        pool = sorted(rng.choice(pool, size=per_test, replace=False).tolist())
                        got_ids, got = self._system_scores(r.features, pool, batch, probe, systems)
                    else:
                        got_ids, got = self._system_scores(r.features, None, batch, probe, systems)
                    for k, sc in zip(got_ids, got):
                        if k != i:
                            non.append([float(v) for v in sc])
                            non_q.append((info[k].speech_seconds, r.speech_seconds))
                            non_spk.append(i)
        m = len(systems)
        tar_a, non_a = np.array(tar, dtype=np.float64).reshape(-1, m), np.array(non, dtype=np.float64).reshape(-1, m)
        if m == 1:
            tar_a, non_a = tar_a[:, 0], non_a[:, 0]
        return EnrolmentTrials(tar_a, non_a, np.array(tar_q).reshape(-1, 2),
                               np.array(non_q).reshape(-1, 2), tar_spk, non_spk, sorted(eligible), left_out,
                               per_test, len(ids), tuple(systems))

    # ------------------------------------------------------------------ prepared stacks (top-C)
    def _all_stacks(self, batch: int) -> tuple[tuple, list[str], list[ModelStack | None]]:
        """(key, every speaker's id in id order, the kept ModelStack of each batch of ``batch``
        speakers or None), kept until any speaker changes (one query of the generations checks
        it).  :meth:`_scores` builds a missing batch (:meth:`_stack_of`) and the cache keeps it
        while it fits in ``cache_mb`` (the first batches, in id order)."""
        key = (batch, tuple(self._generations()))
        ids, kept = self._cache.stack_list(key, lambda: [i for i, _ in key[1]], lambda n: -(-n // batch))
        return key, ids, kept

    def _stack_of(self, ids: Sequence[str]) -> ModelStack:
        """One ModelStack of the speakers ``ids`` from their rows, derived without a
        ``GaussianMixture`` per speaker: the rows' statistics go through
        :func:`speaker.adapt.map_parameters` together and :meth:`gmmext.ModelStack.from_parameters`
        builds the matrices, the parameters :meth:`model` derives.  KeyError for an unknown id."""
        from gmmext import ModelStack
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
            self._db.fail(f"speakers {ids[0]!r}..{ids[-1]!r}: {exc}")
