"""The i-vector back-end's speaker side: enrolment in back-end space, the i-vector models file,
scoring trials and normalising their scores with a cohort.

:mod:`speaker.ivector` extracts i-vectors and :mod:`speaker.plda` trains the chain (centring,
LDA, WCCN, length normalisation, PLDA); this module turns them into speakers and decisions, for
``speaker enroll|score --backend plda|cosine`` and any Python caller (or a service)::

    models = enrol_speakers({"alice": iv_alice, "bob": iv_bob}, "plda", backend)   # (n_s, R) i-vectors
    save_models("models.npz", models, config)
    scores = score_pairs("plda", backend, models.means[rows], models.counts[rows], to_space(backend, tests))
    normed = normalise_scores("s", scores, E, C, Z, to_space(backend, cohort), score_fn)

Two back-ends (:data:`BACKENDS`): ``plda`` (the PLDA LLR of a speaker enrolled with n
recordings, :func:`speaker.plda.plda_llr`) and ``cosine`` (cosine similarity of length-normalised
vectors, after the back-end's centring/LDA/WCCN when one is given).  A speaker's model is its
mean vector in back-end space and the number of recordings it stands for.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from . import score_norm
from .limits import MAX_RANK, MAX_SPEAKERS, speaker_id_problem
from .model_io import ArraySpec, ModelError, load_npz, save_npz
from .plda import Backend, cosine, enrol, length_norm, plda_llr

__all__ = ["BACKENDS", "MODELS_FORMAT", "IvectorModels", "to_space", "enrol_speakers", "save_models",
           "load_models", "score_pairs", "normalise_scores"]

#: The i-vector back-ends.
BACKENDS = ("plda", "cosine")
#: The models file of :func:`save_models` (``kind`` = ``ivector-models-<backend>``).
MODELS_FORMAT = "gmmext-speaker-ivector-models"
MODELS_VERSION = 1

#: Scores of paired rows: (model means (n, d), model counts (n,), tests (n, d)) -> (n,).
PairScorer = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class IvectorModels:
    """Enrolled speakers of one back-end: ``ids`` (S,), ``means`` (S, d) in back-end space,
    ``counts`` (S,) recordings each stands for, the ``kind`` of back-end and the fingerprint of
    the UBM the i-vectors come from, of the i-vector extractor and of the back-end (""
    without one) they were enrolled through."""

    kind: str
    ids: list[str]
    means: np.ndarray
    counts: np.ndarray
    ubm_fingerprint: str = ""
    ivector_fingerprint: str = ""
    backend_fingerprint: str = ""

    def __len__(self) -> int:
        return len(self.ids)

    def as_dict(self) -> dict[str, tuple[np.ndarray, float]]:
        """{id: (mean (d,), count)}."""
        return {i: (m, float(c)) for i, m, c in zip(self.ids, self.means, self.counts)}


def _check_kind(kind: str, backend: Backend | None) -> None:
    if kind not in BACKENDS:
        raise ValueError(f"unknown i-vector back-end {kind!r}; choose from {BACKENDS}")
    if kind == "plda" and (backend is None or backend.plda is None):
        raise ValueError("the plda back-end needs a trained back-end with a PLDA model (speaker.plda.train_backend)")


def to_space(backend: Backend | None, X: np.ndarray) -> np.ndarray:
    """i-vectors (N, R) in the back-end's space (N, d): ``backend.transform``, or without a
    back-end the raw i-vectors length-normalised."""
    return backend.transform(X) if backend is not None else length_norm(X)


def enrol_speakers(groups: Mapping[str, np.ndarray], kind: str, backend: Backend | None = None, *,
                   average: bool = False, ubm_fingerprint: str = "", ivector_fingerprint: str = "") -> IvectorModels:
    """Speaker models from their raw i-vectors (``{id: (n_s, R)}``, n_s >= 1).

    With a back-end: :func:`speaker.plda.enrol` (the mean of the n_s transformed vectors with
    count n_s, or with ``average`` and always for ``cosine`` the length-normalised mean
    i-vector, count 1).  Without one (``cosine`` only): the mean of the length-normalised
    i-vectors, count 1.
    """
    _check_kind(kind, backend)
    ids = list(groups)
    empty = [i for i in ids if len(groups[i]) == 0]
    if not ids or empty:
        raise ValueError(f"no i-vectors to enrol{f' for {empty[:5]}' if empty else ''}")
    if backend is not None:
        means, counts = enrol(backend, [groups[i] for i in ids], average=average or kind == "cosine")
    else:
        means = np.array([to_space(None, groups[i]).mean(axis=0) for i in ids])
        counts = np.ones(len(ids))
    return IvectorModels(kind, ids, means, counts, ubm_fingerprint, ivector_fingerprint,
                         backend.fingerprint if backend is not None else "")


def save_models(path: str | os.PathLike, models: IvectorModels, config=None, *, overwrite: bool = True) -> None:
    """Write ``models`` as a models file (atomically; :func:`speaker.model_io.save_npz`); ids follow
    the one speaker-id rule (:func:`speaker.limits.speaker_id_problem`), else ValueError."""
    for i in models.ids:
        if speaker_id_problem(i) is not None:
            raise ValueError(speaker_id_problem(i))
    save_npz(path, MODELS_FORMAT, MODELS_VERSION, f"ivector-models-{models.kind}", models.ubm_fingerprint, config,
             overwrite=overwrite,
             speaker_ids=np.array(models.ids, dtype=str), means=models.means, counts=models.counts,
             ivector_fingerprint=np.array(models.ivector_fingerprint),
             backend_fingerprint=np.array(models.backend_fingerprint))


def load_models(path: str | os.PathLike, kind: str, ubm=None, tv=None, backend: Backend | None = None,
                check_chain: bool = False) -> IvectorModels:
    """Read and validate a models file of :func:`save_models` for back-end ``kind`` (refused if
    made from another UBM than ``ubm``, or for the other back-end).  With ``check_chain``, the
    models must have been enrolled through the i-vector extractor ``tv`` and the back-end
    ``backend`` (None: none) they are scored with (same fingerprints), else ModelError; a file of
    an earlier version, which names neither, is refused then too (enrol again)."""
    fp, a = load_npz(path, MODELS_FORMAT, MODELS_VERSION, f"ivector-models-{kind}", ubm,
                     dict(speaker_ids=ArraySpec(1, text=True, most=(MAX_SPEAKERS,)),
                          means=ArraySpec(2, most=(MAX_SPEAKERS, MAX_RANK)), counts=ArraySpec(1, most=(MAX_SPEAKERS,)),
                          ivector_fingerprint=ArraySpec(0, optional=True, text=True),
                          backend_fingerprint=ArraySpec(0, optional=True, text=True)))
    ext, bfp = (str(a[k][()]) if a[k] is not None else None for k in ("ivector_fingerprint", "backend_fingerprint"))
    if check_chain:
        want = (tv.fingerprint if tv is not None else "", backend.fingerprint if backend is not None else "")
        if ext is None or bfp is None:
            raise ModelError(f"{path}: these speaker models do not name the i-vector extractor and back-end they were "
                             "enrolled through (made by an earlier version): enrol them again")
        if ext != want[0]:
            raise ModelError(f"{path}: these speaker models were enrolled through another i-vector extractor "
                             f"(fingerprint {ext[:12]}...), not the given one ({want[0][:12]}...)")
        if bfp != want[1]:
            raise ModelError(f"{path}: these speaker models were enrolled through " + (
                f"another back-end (fingerprint {bfp[:12]}...)" if bfp else "no back-end") + ", not the given "
                + (f"one ({want[1][:12]}...)" if want[1] else "none"))
    if not (len(a["speaker_ids"]) == len(a["means"]) == len(a["counts"])) or (a["counts"] < 1).any():
        raise ModelError(f"{path}: not a usable ivector-models file: inconsistent speaker ids, means, counts")
    ids = [str(i) for i in a["speaker_ids"]]
    for i in ids:
        if speaker_id_problem(i) is not None:
            raise ModelError(f"{path}: not a usable ivector-models file: {speaker_id_problem(i)}")
    return IvectorModels(kind, ids, a["means"], a["counts"], fp, ext or "", bfp or "")


def score_pairs(kind: str, backend: Backend | None, means: np.ndarray, counts: np.ndarray,
                tests: np.ndarray) -> np.ndarray:
    """Scores of paired rows (n,): model ``means[i]`` standing for ``counts[i]`` recordings
    against test ``tests[i]`` (both in back-end space): the PLDA LLR (nats) or the cosine."""
    _check_kind(kind, backend)
    return plda_llr(backend.plda, means, counts, tests) if kind == "plda" else cosine(means, tests)


def normalise_scores(norm: str, scores: np.ndarray, means: np.ndarray, counts: np.ndarray, tests: np.ndarray,
                     cohort: np.ndarray, pairs: PairScorer, *, top_n: int | None = None) -> np.ndarray:
    """Trial scores normalised with a cohort of i-vectors (:func:`speaker.score_norm.normalise`).

    Trial ``i`` is model (``means[i]`` (d,), ``counts[i]``) against ``tests[i]`` (d,), all in
    back-end space; ``cohort`` (n_c, d) is in back-end space too.  Each cohort recording is a
    single-recording model (T side) and an impostor test (Z side), scored by the same back-end:
    ``pairs(means, counts, tests)`` (e.g. ``lambda E, C, Z: score_pairs("plda", be, E, C, Z)``;
    the scorers are symmetric, so a test against a cohort model is scored as a one-recording
    model against a cohort test).  Each distinct model's and test's cohort scores are computed
    once.  ``norm``: z, t, zt, s, as; ValueError for a cohort too small for it.
    """
    def matrix(E, C, Q):
        """Scores of each (model row of E, C) against every cohort test: (n, n_c)."""
        n, m = len(E), len(Q)
        return pairs(np.repeat(E, m, axis=0), np.repeat(C, m), np.tile(Q, (n, 1))).reshape(n, m)

    def unique_rows(*arrays):
        key = np.column_stack([a.reshape(len(a), -1) for a in arrays])
        _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        return first, inverse.ravel()

    means, counts = np.asarray(means, dtype=np.float64), np.asarray(counts, dtype=np.float64)
    tests, cohort = np.asarray(tests, dtype=np.float64), np.asarray(cohort, dtype=np.float64)
    m_first, m_inv = unique_rows(means, counts)
    t_first, t_inv = unique_rows(tests)
    return score_norm.normalise(
        norm, scores, len(cohort),
        enrol_side=lambda rows: matrix(means[m_first], counts[m_first], cohort[rows])[m_inv],
        test_side=lambda rows: matrix(tests[t_first], np.ones(len(t_first)), cohort[rows])[t_inv],
        cohort_side=lambda t_rows, z_rows: matrix(cohort[t_rows], np.ones(len(t_rows)), cohort[z_rows]),
        top_n=top_n)
