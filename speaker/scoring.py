"""Step 3 of GMM-UBM: score test utterances against speaker models.

The score of a trial is the average per-frame log-likelihood ratio

    llr = (1 / T) sum_t [log p(x_t | speaker) - log p(x_t | UBM)]        (nats per frame)

With ``top_c=C`` (Reynolds et al. 2000, C=5 customary), the UBM's C best components of each
frame are found once per test utterance, and the UBM and every speaker model are evaluated
on those C components only (gmmext's compiled ``top_components`` / ``ModelStack``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Hashable, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:                  # (the estimators import scikit-learn: imported where used)
    from gmmext import GaussianMixture

from ._interrupt import check as check_interrupt
from ._progress import progress as report

__all__ = ["llr", "score_trials", "Probe", "check_features", "check_top_c"]


def check_features(features, n_features: int, name: str = "features") -> np.ndarray:
    """The validation at the face: ``features`` as a (frames >= 1, ``n_features``) finite float32
    or float64 array, else ValueError (``name`` starts the message).  Everything below it
    (:class:`Probe`) trusts the array."""
    X = np.asarray(features)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"{name} must have shape (frames >= 1, dims); got {X.shape}")
    if X.shape[1] != n_features:
        raise ValueError(f"{name} have {X.shape[1]} dims but the UBM has {n_features}")
    if X.dtype not in (np.float32, np.float64):
        if X.dtype.kind not in "iuf":
            raise ValueError(f"{name} must be real numbers, got dtype {X.dtype}")
        X = X.astype(np.float64)
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contain NaN or infinity")
    return X


def check_top_c(top_c, n_components: int) -> None:
    """ValueError unless ``top_c`` is None or an int in [1, ``n_components``]."""
    if top_c is not None and not (isinstance(top_c, (int, np.integer)) and 1 <= top_c <= n_components):
        raise ValueError(f"top_c must be None or an int in [1, {n_components}], got {top_c!r}")


class Probe:
    """One test recording prepared for scoring against models adapted from ``ubm``: the one
    scoring path of the package (:func:`llr`, :func:`score_trials`, the speaker store's
    ``verify`` / ``identify`` and the cohort all score through :meth:`llrs`).

    The UBM's work on the recording is done once, here: its total log-likelihood (exact), or
    its ``top_c`` best components per frame and their total (top-C).  ``X`` must be checked
    already (:func:`check_features`; ``top_c`` by :func:`check_top_c`): a probe trusts it and
    calls gmmext with ``check_input=False`` (no second scan of the frames).
    Totals are summed over frames in float64 (``score_samples`` keeps float32 for float32
    features), so a speaker's score is the same number whichever way it is asked for.
    """

    def __init__(self, ubm: GaussianMixture, X: np.ndarray, top_c: int | None = None) -> None:
        self.ubm, self.X, self.top_c = ubm, X, top_c
        if top_c is None:
            self.indices, self.ubm_total = None, _total(ubm, X)
        else:
            self.indices, ll = ubm.top_components(X, top_c, check_input=False)
            self.ubm_total = float(ll.sum(dtype=np.float64))

    def llrs(self, models: Sequence[GaussianMixture] | ModelStack, which: Sequence[int] | None = None
             ) -> np.ndarray:
        """Average log-likelihood ratio (nats per frame) of the recording against each model.

        ``models``: models adapted from the UBM, or (top-C) a :class:`gmmext.ModelStack` built
        on it; ``which`` restricts them to those positions (results in that order).  Exact
        scoring takes every model's log-likelihood of every frame; top-C scoring stacks the
        models (or uses the given stack) and evaluates the UBM's components of each frame only.
        """
        from gmmext import ModelStack
        if self.indices is None:
            if isinstance(models, ModelStack):
                raise ValueError("exact scoring needs the models, not a top-C ModelStack")
            chosen = models if which is None else [models[r] for r in which]
            totals = np.array([_total(m, self.X) for m in chosen], dtype=np.float64)
        else:
            stack = models if isinstance(models, ModelStack) else ModelStack(list(models), reference=self.ubm)
            totals = stack.top_c_loglik(self.X, self.indices, which=which, check_input=False)
        return (totals - self.ubm_total) / self.X.shape[0]


def _total(model: GaussianMixture, X: np.ndarray) -> float:
    """Total log-likelihood of X (checked; nats), summed in float64 (``score_samples`` keeps the
    input's dtype, float32 for float32 features)."""
    return float(model.score_samples(X, check_input=False).sum(dtype=np.float64))


def llr(model: GaussianMixture, ubm: GaussianMixture, features: np.ndarray, *,
        top_c: int | None = None) -> float:
    """Average per-frame log-likelihood ratio of ``features`` (frames, D): speaker vs UBM.

    ``top_c=None`` scores with all components; ``top_c=C`` uses the UBM's C best components
    of each frame for both models.  Returns nats per frame (positive favours the speaker).
    """
    X = check_features(features, ubm.means_.shape[1])
    check_top_c(top_c, ubm.n_components)
    return float(Probe(ubm, X, top_c).llrs([model])[0])


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
    check_top_c(top_c, ubm.n_components)
    trials = list(trials)
    unknown = sorted({m for m, _ in trials if m not in models})
    if unknown:
        raise KeyError(f"trials refer to unknown model ids: {unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
    ids = list(models)
    row = {m: i for i, m in enumerate(ids)}
    model_list = [models[m] for m in ids]
    if top_c is not None:
        from gmmext import ModelStack
    stack = ModelStack(model_list, reference=ubm) if top_c is not None else None
    by_test: dict = {}
    for t, (m, test) in enumerate(trials):
        by_test.setdefault(test, []).append((t, row[m]))
    get = features if callable(features) else features.__getitem__
    scores = np.full(len(trials), np.nan)
    for test, items in report(by_test.items(), "scoring", "utt", total=len(by_test), enabled=progress):
        check_interrupt()
        try:
            X = check_features(get(test), ubm.means_.shape[1])
        except Exception as exc:  # noqa: BLE001 - reported to the caller, who asked to skip
            if errors is None:
                raise
            errors[test] = f"{type(exc).__name__}: {exc}"
            continue
        which = sorted({r for _, r in items})
        spk = dict(zip(which, Probe(ubm, X, top_c).llrs(stack if stack is not None else model_list, which)))
        for t, r in items:
            scores[t] = spk[r]
    return scores
