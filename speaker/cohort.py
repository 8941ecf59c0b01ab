"""Score normalisation from a cohort of recordings (``speaker score --norm``).

A cohort is a set of recordings of speakers who are not in the trials (for example a held-back
part of the UBM list).  Each recording plays both roles the normalisations of
:mod:`speaker.score_norm` need:

* an **impostor test** (Z side): every trial model is scored against every cohort recording;
* a **cohort model** (T side): the recording is enrolled by MAP, like a speaker, and scored
  against every trial's test recording.

Features and UBM statistics of each cohort recording are computed once (the statistics give its
model, the features its scores as a test).  ZT-norm also needs the cohort models scored against
the Z cohort; a recording must not be scored against its own model, so for ZT the cohort is split
in two (the first half are the T models, the second half the Z tests).  All scoring goes through
:func:`speaker.scoring.score_trials` (one UBM pass per recording, models stacked for top-C).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Hashable, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:                  # (the estimators import scikit-learn: imported where used)
    from gmmext import GaussianMixture

from . import score_norm
from ._batch import recording_stats
from .adapt import map_from_stats
from .score_norm import NORMS
from .scoring import score_trials

__all__ = ["Cohort", "normalise", "NORMS"]



@dataclass
class Cohort:
    """Cohort recordings: ``ids`` (n,), their ``features`` and MAP ``models`` under ``ubm``."""

    ubm: GaussianMixture
    ids: list[str]
    features: list[np.ndarray]
    models: list[GaussianMixture]
    top_c: int | None = None

    @classmethod
    def from_features(cls, ubm: GaussianMixture, ids: Sequence[str], features: Sequence[np.ndarray], *,
                      relevance_factor: float = 16.0, adapt: str = "m", top_c: int | None = None) -> "Cohort":
        """Enrol each cohort recording (features (frames, D)) as a cohort model."""
        if len(ids) != len(features) or len(ids) < 2:
            raise ValueError(f"a cohort needs at least 2 recordings with one id each; got {len(ids)} ids, "
                             f"{len(features)} feature arrays")
        models = [map_from_stats(ubm, recording_stats(ubm, X), relevance_factor=relevance_factor, adapt=adapt)
                  for X in features]
        return cls(ubm, list(ids), list(features), models, top_c)

    def __len__(self) -> int:
        return len(self.ids)

    def enrol_side(self, models: Mapping[str, GaussianMixture], rows: Sequence[int] | None = None
                   ) -> dict[str, np.ndarray]:
        """Each model scored against the cohort recordings (all, or those at ``rows``): id -> (n,)."""
        rows = range(len(self)) if rows is None else rows
        trials = [(m, j) for m in models for j in rows]
        s = score_trials(trials, models, self.ubm, {j: self.features[j] for j in rows}, top_c=self.top_c)
        return {m: s[i * len(rows):(i + 1) * len(rows)] for i, m in enumerate(models)}

    def test_side(self, tests: Sequence[Hashable], features: Callable[[Hashable], np.ndarray],
                  rows: Sequence[int] | None = None) -> dict[Hashable, np.ndarray]:
        """The cohort models (all, or those at ``rows``) scored against each test: test -> (n,)."""
        rows = list(range(len(self)) if rows is None else rows)
        models = {j: self.models[j] for j in rows}
        tests = list(dict.fromkeys(tests))
        s = score_trials([(j, t) for t in tests for j in rows], models, self.ubm, features, top_c=self.top_c)
        return {t: s[i * len(rows):(i + 1) * len(rows)] for i, t in enumerate(tests)}


def normalise(kind: str, pairs: Sequence[tuple[str, Hashable]], scores: np.ndarray,
              models: Mapping[str, GaussianMixture], features: Callable[[Hashable], np.ndarray],
              cohort: Cohort, *, top_n: int | None = None) -> np.ndarray:
    """Normalised scores of trials ``pairs`` (model_id, test key) with raw ``scores`` (n_trials,).

    ``kind`` is one of z, t, zt, s, as (see :func:`speaker.score_norm.normalise`, which checks
    the cohort's size); ``top_n`` is AS-norm's number of closest cohort scores per side
    (default min(AS_NORM_TOP_N = 200, cohort size)).  Each model's and each test's cohort
    scores are computed once.
    """
    used = {m: models[m] for m in dict.fromkeys(m for m, _ in pairs)}
    tests = [t for _, t in pairs]

    def enrol_side(rows):
        side = cohort.enrol_side(used, list(rows))
        return np.stack([side[m] for m, _ in pairs])

    def test_side(rows):
        side = cohort.test_side(tests, features, list(rows))
        return np.stack([side[t] for t in tests])

    def cohort_side(t_rows, z_rows):
        side = cohort.enrol_side({j: cohort.models[j] for j in t_rows}, list(z_rows))
        return np.stack([side[j] for j in t_rows])
    return score_norm.normalise(kind, scores, len(cohort), enrol_side, test_side, cohort_side, top_n=top_n)
