"""Scoring and decisions over a speaker store: ``verify``, ``identify``, ``scores_all``.

:class:`StoreScoring` is the half of :class:`speaker.store.SpeakerStore` that answers "who is
this?": the store's other half keeps rows and derives models (``model``, ``_all_stacks``), this
one scores a recording against them and applies the decision rule.

* **One scoring path.**  Every score goes through :meth:`_scores`: one
  :class:`speaker.scoring.Probe` per recording (the UBM's work once), exact or top-C as the store
  is configured, against the speakers' models (exact; top-C for given ids) or the store's
  prepared stacks (top-C, every speaker).  :meth:`verify` is :meth:`identify` restricted to one
  id (SpeechBrain's ``verify_files`` -> ``verify_batch`` shape), so both give the same score for
  the same speaker and recording.
* **One read transaction per call.**  The features are computed first (no transaction is held
  while audio is decoded); then the speakers' generations, rows, the models' cache checks and
  the calibration are read in one snapshot.
* **Validated once.**  A source is read and checked by the store's ``features`` at the public
  methods (the face); the internals trust the array.  A caller that has checked the array
  already (``speaker serve``) passes ``check_input=False``.
* **The decision** (:class:`Decision`): ``threshold`` on the raw score if given; otherwise,
  with a calibration (given, or the store's), the Bayes threshold of ``p_target`` / costs on the
  calibrated LLR; otherwise the raw score against 0.  The calibrated LLR is reported whenever
  a calibration is at hand.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np

from gmmext import ModelStack

from .adapt import map_parameters
from .calibration import Calibration, decision_threshold
from .scoring import Probe
from .sources import Source

__all__ = ["Decision", "Match", "VerifyResult", "StoreScoring", "BATCH"]

#: Speakers per :class:`gmmext.ModelStack` when a recording is scored against many (top-C).
BATCH = 1024


class VerifyResult(NamedTuple):
    """Outcome of :meth:`StoreScoring.verify`.

    ``score``: raw average LLR (nats per frame); ``llr``: the score calibrated to a
    log-likelihood ratio (natural log, :class:`speaker.calibration.Calibration`), or None
    without a calibration; ``accept``: the decision;
    ``threshold``: what was compared (on the ``llr`` scale when calibrated, else on ``score``).
    """

    score: float
    llr: float | None
    accept: bool
    threshold: float


class Match(NamedTuple):
    """One speaker of :meth:`StoreScoring.identify`: ``id``, raw ``score`` (average LLR, nats
    per frame) and the calibrated ``llr`` (None without a calibration)."""

    id: str
    score: float
    llr: float | None


@dataclass(frozen=True)
class Decision:
    """The decision rule, resolved once per call: accept iff the value is >= ``threshold``,
    the value being the calibrated LLR when ``on_llr``, else the raw score."""

    calibration: Calibration | None
    threshold: float
    on_llr: bool

    @classmethod
    def make(cls, calibration: Calibration | None, *, threshold: float | None = None,
             p_target: float | None = None, c_miss: float = 1.0, c_fa: float = 1.0) -> "Decision":
        """The rule of :func:`speaker.calibration.decision_threshold` (raw scores against 0
        without a threshold or a calibration)."""
        thr, on_llr = decision_threshold(calibration, threshold=threshold, p_target=p_target, c_miss=c_miss,
                                         c_fa=c_fa)
        return cls(calibration, thr, on_llr)

    def llr(self, score: float) -> float | None:
        """The calibrated LLR of a raw score, or None without a calibration."""
        return float(self.calibration.llr(score)) if self.calibration is not None else None

    def accepts(self, score: float) -> bool:
        value = self.llr(score) if self.on_llr else score
        return bool(value >= self.threshold)


class StoreScoring:
    """Scoring and decisions of :class:`speaker.store.SpeakerStore` (a mixin).

    It uses the store's ``ubm``, ``top_c``, ``calibration``, ``features(source)``, ``model(id)``,
    its rows (``_row(id)``, ``_generations()``), MAP settings, ``_db`` (transactions) and
    ``_lock``; it keeps every speaker's prepared top-C stacks (``_stacks``) while no speaker
    changes.
    """

    def score(self, speaker_id: str, source: Source, *, check_input: bool = True) -> float:
        """Raw score of a recording against a speaker: average LLR, nats per frame."""
        return self.scores_all(source, [speaker_id], check_input=check_input)[1][0]

    def scores_all(self, source: Source, ids: Sequence[str] | None = None, *, batch: int = BATCH,
                   check_input: bool = True) -> tuple[list[str], np.ndarray]:
        """Raw scores of one recording against many speakers (default all): (ids, scores).

        With ``top_c``, the UBM's top-C components of the recording are found once and the
        speakers are scored in batches of ``batch`` (one :class:`gmmext.ModelStack` each: one
        gemm per selected component against the whole batch).  For all speakers, the batches are
        built from the stored statistics by array operations and kept while no speaker changes
        (``_all_stacks``); for given ``ids``, from their (cached) models.  Without ``top_c``
        every model is scored exactly, one after the other.  KeyError for an unknown id.
        """
        X = self.features(source) if check_input else source
        with self._db.tx():
            return self._scores(X, ids, batch)

    def _scores(self, X: np.ndarray, ids: Sequence[str] | None, batch: int) -> tuple[list[str], np.ndarray]:
        """The one scoring path (inside the caller's snapshot; ``X`` checked)."""
        probe = Probe(self.ubm, X, self.top_c)
        if self.top_c is not None and ids is None:
            ids, stacks = self._all_stacks(batch)
            groups = [probe.llrs(stack) for stack in stacks]
        else:
            ids = list(ids) if ids is not None else [i for i, _ in self._generations()]
            groups = [probe.llrs([self.model(i) for i in ids[s:s + batch]]) for s in range(0, len(ids), batch)]
        return ids, (np.concatenate(groups) if groups else np.empty(0))

    def _decision(self, threshold, p_target, c_miss, c_fa, calibration) -> Decision:
        return Decision.make(calibration if calibration is not None else self.calibration,
                             threshold=threshold, p_target=p_target, c_miss=c_miss, c_fa=c_fa)

    def verify(self, speaker_id: str, source: Source, *, threshold: float | None = None,
               p_target: float | None = None, c_miss: float = 1.0, c_fa: float = 1.0,
               calibration: Calibration | None = None, check_input: bool = True) -> VerifyResult:
        """Is ``source`` speaker ``speaker_id``?  :meth:`identify` restricted to that speaker.

        Decision: ``threshold`` on the raw score if given; otherwise, with a calibration, the
        Bayes threshold ``log(c_fa (1 - p_target) / (c_miss p_target))`` on the calibrated LLR
        (``p_target`` default 0.5); otherwise the raw score against 0 (speaker as likely as
        the UBM).  ``calibration`` replaces the store's own.  KeyError for an unknown speaker.
        """
        X = self.features(source) if check_input else source
        with self._db.tx():
            rule = self._decision(threshold, p_target, c_miss, c_fa, calibration)
            (_, score, value), = self._matches(X, [speaker_id], rule, 1)
        return VerifyResult(score, value, rule.accepts(score), rule.threshold)

    def identify(self, source: Source, n: int = 1, *, threshold: float | None = None,
                 p_target: float | None = None, c_miss: float = 1.0, c_fa: float = 1.0,
                 calibration: Calibration | None = None, check_input: bool = True) -> list[Match]:
        """Open-set identification: the ``n`` best-scoring speakers that pass the decision rule
        of :meth:`verify`, best first, as :class:`Match` (id, raw score, calibrated LLR or
        None); empty when none passes."""
        X = self.features(source) if check_input else source
        with self._db.tx():
            rule = self._decision(threshold, p_target, c_miss, c_fa, calibration)
            best = self._matches(X, None, rule, max(0, int(n)))
        return [m for m in best if rule.accepts(m.score)]

    def _matches(self, X: np.ndarray, ids: Sequence[str] | None, rule: Decision, n: int) -> list[Match]:
        """The ``n`` best of every speaker (or of ``ids``), best first (ties in id order)."""
        ids, scores = self._scores(X, ids, BATCH)
        order = np.argsort(-scores, kind="stable")[:n]
        return [Match(ids[j], float(scores[j]), rule.llr(float(scores[j]))) for j in order]

    # ------------------------------------------------------------------ prepared stacks (top-C)
    def _all_stacks(self, batch: int) -> tuple[list[str], list[ModelStack]]:
        """Every speaker's model, in id order, as ModelStacks of ``batch`` models (top-C
        identification), kept until any speaker changes (one query of the generations checks it).

        A batch is derived without a ``GaussianMixture`` per speaker: the rows' statistics go
        through :func:`speaker.adapt.map_parameters` together and
        :meth:`gmmext.ModelStack.from_parameters` builds the matrices, the parameters
        :meth:`model` derives.  Only the stacked matrices are kept (``(D + 1) K`` values per
        mean-adapted speaker)."""
        with self._lock:                               # the cache is shared by threads
            key = (batch, tuple(self._generations()))
            if self._stacks is None or self._stacks[0] != key:
                self._stacks = None                    # free the old ones first
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
            self._db.fail(f"speakers {ids[0]!r}..{ids[-1]!r}: {exc}")
