"""Step 3 of GMM-UBM: score test utterances against speaker models.

The score of a trial is the average per-frame log-likelihood ratio

    llr = (1 / T) sum_t [log p(x_t | speaker) - log p(x_t | UBM)]        (nats per frame)

With ``top_c=C`` (Reynolds et al. 2000, C=5 customary), the UBM's C best components of each
frame are found once per test utterance, and the UBM and every speaker model are evaluated
on those C components only (gmmext's compiled ``top_components`` / ``ModelStack``).
"""
from __future__ import annotations

from typing import Callable, Hashable, Mapping, Sequence

import numpy as np

from gmmext import GaussianMixture, ModelStack

from ._interrupt import check as check_interrupt
from ._progress import progress as report

__all__ = ["llr", "score_trials"]


def _check_features(features, ubm: GaussianMixture) -> np.ndarray:
    X = np.asarray(features)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"features must have shape (frames >= 1, dims); got {X.shape}")
    if X.shape[1] != ubm.means_.shape[1]:
        raise ValueError(f"features have {X.shape[1]} dims but the UBM has {ubm.means_.shape[1]}")
    return X


def _total(model: GaussianMixture, X: np.ndarray) -> float:
    """Total log-likelihood of X (nats), summed in float64 (``score_samples`` keeps the input's
    dtype, float32 for float32 features)."""
    return float(model.score_samples(X).sum(dtype=np.float64))


def _check_top_c(top_c, ubm) -> None:
    if top_c is not None and not (isinstance(top_c, (int, np.integer)) and 1 <= top_c <= ubm.n_components):
        raise ValueError(f"top_c must be None or an int in [1, {ubm.n_components}], got {top_c!r}")


def llr(model: GaussianMixture, ubm: GaussianMixture, features: np.ndarray, *,
        top_c: int | None = None) -> float:
    """Average per-frame log-likelihood ratio of ``features`` (frames, D): speaker vs UBM.

    ``top_c=None`` scores with all components; ``top_c=C`` uses the UBM's C best components
    of each frame for both models.  Returns nats per frame (positive favours the speaker).
    """
    X = _check_features(features, ubm)
    _check_top_c(top_c, ubm)
    if top_c is None:
        return float((_total(model, X) - _total(ubm, X)) / X.shape[0])
    idx, ubm_ll = ubm.top_components(X, top_c)
    spk = ModelStack([model], reference=ubm).top_c_loglik(X, idx)[0]
    return float((spk - ubm_ll.sum(dtype=np.float64)) / X.shape[0])


def score_trials(trials: Sequence[tuple[str, Hashable]], models: Mapping[str, GaussianMixture],
                 ubm: GaussianMixture, features: Callable[[Hashable], np.ndarray] | Mapping,
                 *, top_c: int | None = None, progress: bool = False,
                 errors: dict | None = None) -> np.ndarray:
    """Scores of many (model_id, test) trials, in trial order.

    Each distinct test utterance's features are obtained once (``features(test)`` or
    ``features[test]``), the UBM work on it is done once, and all models it is tried against
    are scored together.

    Parameters
    ----------
    trials : sequence of (model_id, test_key)
    models : mapping model_id -> speaker model (adapted from ``ubm``)
    ubm : the UBM
    features : callable test_key -> (frames, D) array, or a mapping
    top_c : None or int, see :func:`llr`
    progress : report progress over test utterances on stderr
    errors : dict, optional
        If given, a test whose features cannot be obtained (any exception) is recorded as
        ``errors[test_key] = "reason"`` and its trials score NaN; otherwise the error propagates.

    Returns
    -------
    ndarray of shape (len(trials),), float64: llr in nats per frame (NaN for skipped trials).
    """
    _check_top_c(top_c, ubm)
    trials = list(trials)
    unknown = sorted({m for m, _ in trials if m not in models})
    if unknown:
        raise KeyError(f"trials refer to unknown model ids: {unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
    ids = list(models)
    row = {m: i for i, m in enumerate(ids)}
    stack = ModelStack([models[m] for m in ids], reference=ubm) if top_c is not None else None
    by_test: dict = {}
    for t, (m, test) in enumerate(trials):
        by_test.setdefault(test, []).append((t, row[m]))
    get = features if callable(features) else features.__getitem__
    scores = np.full(len(trials), np.nan)
    for test, items in report(by_test.items(), "scoring", "utt", total=len(by_test), enabled=progress):
        check_interrupt()
        try:
            X = _check_features(get(test), ubm)
        except Exception as exc:  # noqa: BLE001 - reported to the caller, who asked to skip
            if errors is None:
                raise
            errors[test] = f"{type(exc).__name__}: {exc}"
            continue
        which = sorted({r for _, r in items})
        if top_c is None:
            ubm_ll = _total(ubm, X)
            spk = {r: _total(models[ids[r]], X) for r in which}
        else:
            idx, ll = ubm.top_components(X, top_c)
            ubm_ll = ll.sum(dtype=np.float64)
            spk = dict(zip(which, stack.top_c_loglik(X, idx, which=which)))
        for t, r in items:
            scores[t] = (spk[r] - ubm_ll) / X.shape[0]
    return scores
