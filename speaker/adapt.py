"""Step 2 of GMM-UBM: MAP adaptation of the UBM to one speaker (Reynolds et al., 2000).

With the UBM's statistics of the speaker's frames (``ubm.accumulate``: n_k, E_k[x] and
E_k[x^2] in the paper's eqs. 8-10), for each component k

    alpha_k = n_k / (n_k + r)                                     (eq. 14, one r for all)
    w_k'    = [alpha_k n_k / T + (1 - alpha_k) w_k] * gamma       (eq. 11, gamma: sum to 1)
    mu_k'   = alpha_k E_k[x] + (1 - alpha_k) mu_k                  (eq. 12)
    var_k'  = alpha_k E_k[x^2] + (1 - alpha_k)(var_k + mu_k^2) - mu_k'^2   (eq. 13)

Eq. 13 is the adapted second moment minus the square of the adapted mean: the variance
about the mean the new model has when means are adapted too.  When variances are adapted
but means are not, the model keeps the UBM mean c = mu_k, and the variance about it is

    var_k'  = m2 - 2 c m1 + c^2,   m2 = alpha_k E_k[x^2] + (1 - alpha_k)(var_k + mu_k^2),
                                   m1 = alpha_k E_k[x] + (1 - alpha_k) mu_k

(the same formula with c = m1 is eq. 13); it is never below m2 - m1^2 > 0, whereas eq. 13
taken literally with an unadapted mean can go negative.  Parameters not adapted keep the
UBM's values.  The formulas are gmmext's (``GaussianMixture.map_parameters`` / ``map_step``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np

from gmmext import GMMStats

if TYPE_CHECKING:                  # (the estimators import scikit-learn: imported where used)
    from gmmext import GaussianMixture

from ._batch import BATCH_UTTERANCES, speaker_stats
from ._interrupt import check as check_interrupt
from ._progress import Progress

__all__ = ["map_adapt", "map_adapt_many", "map_from_stats", "map_parameters", "require_diag", "model_like"]


def model_like(template: GaussianMixture, weights, means, covariances, dtype=None) -> GaussianMixture:
    """A model with these parameters and ``template``'s constructor parameters (all but
    ``n_components``, which the parameters give), cast to ``dtype`` (default: the fitted
    template's): a speaker model like its UBM, a UBM like its training template; of the
    template's class (``gmmext.MixtureModel.like``: a store's models are MixtureModels)."""
    return template.like(weights, means, covariances, dtype)


def require_diag(gm: GaussianMixture, what: str = "the UBM") -> None:
    """ValueError unless ``gm`` has diagonal covariances: the GMM-UBM recipe's models (the MAP
    formulas of this module, model files, the speaker store).  Every entry point of MAP
    adaptation checks it before any statistics are computed."""
    kind = getattr(gm, "covariance_type", "diag")
    if kind != "diag" or np.ndim(gm.covariances_) != 2:
        raise ValueError(f"{what} has covariance_type={kind!r}; speaker's GMM-UBM recipe (MAP adaptation, "
                         "model files, the store) needs covariance_type='diag'")


def _check_adapt(adapt: str) -> str:
    if not isinstance(adapt, str) or not adapt or set(adapt) - set("mwv") or len(set(adapt)) != len(adapt):
        raise ValueError(f"adapt must combine the letters 'm', 'w' and 'v' (e.g. 'm', 'mw', 'mwv'); got {adapt!r}")
    return adapt


def map_from_stats(ubm: GaussianMixture, stats: GMMStats, *, relevance_factor: float = 16.0,
                   adapt: str = "m") -> GaussianMixture:
    """MAP-adapted copy of ``ubm`` from the UBM statistics of the speaker's data.

    Parameters
    ----------
    ubm : fitted gmmext.GaussianMixture, (K, D)
    stats : gmmext.GMMStats
        ``ubm.accumulate(features)`` (summed over the speaker's utterances).
    relevance_factor : float
        r > 0 in alpha_k = n_k / (n_k + r).
    adapt : str
        Any combination of "m" (means), "w" (weights), "v" (variances).

    Returns
    -------
    gmmext.GaussianMixture with the UBM's dtype and constructor parameters.
    """
    adapt = _check_adapt(adapt)
    if not np.isfinite(relevance_factor) or relevance_factor <= 0:
        raise ValueError(f"relevance_factor must be > 0, got {relevance_factor!r}")
    if stats.sum_x.shape != ubm.means_.shape:
        raise ValueError(f"statistics of shape {stats.sum_x.shape} do not match the UBM {ubm.means_.shape}")
    if not stats.n_samples > 0:
        raise ValueError("no frames to adapt from")
    require_diag(ubm)
    model = model_like(ubm, ubm.weights_, ubm.means_, ubm.covariances_)
    return model.map_step(stats, relevance_factor=relevance_factor, params=adapt)


def map_parameters(ubm: GaussianMixture, n, sum_x, sum_xx, n_samples, *, relevance_factor: float = 16.0,
                   adapt: str = "m") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The MAP formulas of the module docstring for one or many speakers at once (float64).

    ``n`` (..., K), ``sum_x`` and ``sum_xx`` (..., K, D), ``n_samples`` (...): the speakers'
    statistics (leading axes broadcast; ``sum_xx`` is used only when "v" is adapted).  Returns
    ``(weights (..., K), means (..., K, D), variances (..., K, D))``; a parameter not adapted
    is the UBM's own (K,) or (K, D) array, in float64.  The formulas are gmmext's
    (``GaussianMixture.map_parameters``, which ``map_step`` applies); :func:`map_from_stats` is
    ``map_step`` on a copy of the UBM; the speaker store derives a batch of speakers with this
    (one set of array operations instead of a model per speaker).  Arguments are not checked
    here, but the UBM must be diagonal (:func:`require_diag`).
    """
    require_diag(ubm)
    return ubm.map_parameters(n, sum_x, sum_xx, n_samples, relevance_factor=relevance_factor, params=adapt)


def map_adapt(ubm: GaussianMixture, features: np.ndarray | Iterable[np.ndarray], *,
              relevance_factor: float = 16.0, adapt: str = "m") -> GaussianMixture:
    """Enrol a speaker: MAP-adapt ``ubm`` to the speaker's features.

    Parameters
    ----------
    ubm : fitted gmmext.GaussianMixture
    features : ndarray (frames, D) or iterable of them (the speaker's enrolment utterances)
    relevance_factor : float, default 16 (Reynolds 2000)
    adapt : str, default "m"
        Which parameters to adapt: any combination of "m", "w", "v".

    Returns
    -------
    gmmext.GaussianMixture: the speaker model, same K and D as the UBM.
    """
    require_diag(ubm)
    arrays = [features] if isinstance(features, np.ndarray) else list(features)
    if not arrays:
        raise ValueError("no enrolment features given")
    stats = speaker_stats(ubm, arrays)          # all enrolment utterances in one core call
    return map_from_stats(ubm, stats, relevance_factor=relevance_factor, adapt=adapt)


def map_adapt_many(ubm: GaussianMixture, speakers: Mapping[str, Sequence[np.ndarray]], *,
                   relevance_factor: float = 16.0, adapt: str = "m",
                   progress: bool = False) -> dict[str, GaussianMixture]:
    """Enrol many speakers: ``{speaker: map_adapt(ubm, utterances)}``, the same models.

    The utterances of several speakers go to the core together, in batches of about
    ``BATCH_UTTERANCES`` utterances (whole speakers), each utterance's statistics summed into
    its speaker's; ``progress`` reports the speakers done on stderr.

    Parameters
    ----------
    speakers : mapping speaker id -> sequence of (frames, D) arrays (at least one each)
    relevance_factor, adapt : as :func:`map_adapt`
    """
    _check_adapt(adapt)
    require_diag(ubm)
    items = [(spk, [np.asarray(f) for f in feats]) for spk, feats in speakers.items()]
    empty = [spk for spk, feats in items if not feats]
    if empty:
        raise ValueError(f"no enrolment features given for {empty[:5]}")
    models: dict[str, GaussianMixture] = {}
    with Progress(len(items), "enrolment", "speaker", enabled=progress) as bar:
        start = 0
        while start < len(items):
            stop, n = start, 0
            while stop < len(items) and (n == 0 or n + len(items[stop][1]) <= BATCH_UTTERANCES):
                n += len(items[stop][1])
                stop += 1
            batch = items[start:stop]
            groups = np.repeat(np.arange(len(batch)), [len(feats) for _, feats in batch])
            per_speaker = ubm.accumulate_segments([f for _, feats in batch for f in feats], groups=groups)
            for (spk, _), stats in zip(batch, per_speaker):
                models[spk] = map_from_stats(ubm, stats, relevance_factor=relevance_factor, adapt=adapt)
            bar.update(stop - start)
            check_interrupt()
            start = stop
    return models

