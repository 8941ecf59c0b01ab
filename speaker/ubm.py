"""Step 1 of GMM-UBM: train the universal background model by EM.

Data may be larger than memory: ``features`` is either a sequence of (frames, dims) arrays or a
zero-argument callable returning a fresh iterator over them (for example, one that loads cached
feature files one at a time).  Every EM pass streams through it once, summing the
:class:`gmmext.GMMStats` of each array (``ubm.accumulate``) and ending with ``ubm.m_step``; the
arithmetic stays in gmmext's compiled core.
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator, Sequence, Union

import numpy as np
from tqdm.auto import tqdm

from gmmext import GaussianMixture, GMMStats

FeatureSource = Union[Sequence[np.ndarray], Callable[[], Iterable[np.ndarray]]]

__all__ = ["train_ubm", "FeatureSource"]


def _iterate(features: FeatureSource) -> Iterator[np.ndarray]:
    items = features() if callable(features) else features
    for f in items:
        f = np.asarray(f)
        if f.ndim != 2:
            raise ValueError(f"each feature array must have shape (frames, dims); got {f.shape}")
        if f.shape[0]:
            yield f


def _pass(gm: GaussianMixture, features: FeatureSource) -> GMMStats:
    """One E-step over all features: summed statistics."""
    stats = None
    for f in _iterate(features):
        s = gm.accumulate(f)
        stats = s if stats is None else stats + s
    if stats is None:
        raise ValueError("no feature frames to train on")
    return stats


def _global_model(stats: GMMStats, template: GaussianMixture, dtype) -> GaussianMixture:
    """One-component model from the statistics of any model (a global mean and variance)."""
    n = stats.n.sum()
    mean = stats.sum_x.sum(axis=0) / n
    var = np.maximum(stats.sum_xx.sum(axis=0) / n - mean ** 2, 0.0) + template.reg_covar
    if not np.all(var > 0):
        raise ValueError("the features have a dimension of zero variance; cannot train a UBM")
    return GaussianMixture.from_parameters(np.ones(1, dtype=dtype), mean[None].astype(dtype),
                                           var[None].astype(dtype), **_params(template))


def _params(template: GaussianMixture) -> dict:
    """Constructor parameters of ``template`` but n_components (taken from the parameters)."""
    p = template.get_params()
    p.pop("n_components")
    return p


def _split(gm: GaussianMixture, target: int, perturb: float) -> GaussianMixture:
    """Split the heaviest components until there are min(2K, target): mean +- perturb * sigma."""
    K = gm.n_components
    n_new = min(K, target - K)
    heaviest = np.argsort(-gm.weights_.astype(np.float64), kind="stable")[:n_new]
    w = gm.weights_.astype(np.float64).copy()
    mu = gm.means_.astype(np.float64).copy()
    var = gm.covariances_.astype(np.float64).copy()
    offset = perturb * np.sqrt(var[heaviest])
    w[heaviest] /= 2
    new_w, new_mu, new_var = w[heaviest], mu[heaviest] + offset, var[heaviest]
    mu[heaviest] -= offset
    w = np.concatenate([w, new_w])
    return GaussianMixture.from_parameters((w / w.sum()).astype(gm.means_.dtype),
                                           np.vstack([mu, new_mu]).astype(gm.means_.dtype),
                                           np.vstack([var, new_var]).astype(gm.means_.dtype),
                                           **_params(gm))


def train_ubm(features: FeatureSource, n_components: int, *, init: str = "split",
              n_iter: int = 10, n_iter_split: int = 4, perturb: float = 0.2,
              var_floor: float = 0.01, reg_covar: float = 1e-6, kmeans_frames: int = 100_000,
              random_state: int | None = 0, n_threads: int | None = None,
              dtype=np.float32, progress: bool = False,
              callback: Callable[[int, GaussianMixture, GMMStats], None] | None = None
              ) -> GaussianMixture:
    """Train a diagonal UBM with ``n_components`` components by EM over all feature frames.

    Parameters
    ----------
    features : sequence of ndarray (frames, dims), or callable returning an iterable of them
        All utterances of the background population.  A callable is called once per EM pass
        and may load arrays lazily, so the data need not fit in memory.
    n_components : int
        K, the number of Gaussians (powers of two are customary: 64 to 2048).
    init : {"split", "kmeans"}
        "split": binary splitting ("mix-up") from one Gaussian: the heaviest components are
        split (means moved by +-``perturb`` standard deviations, weights halved) until K
        doubles or reaches ``n_components``, with ``n_iter_split`` EM passes per size.
        "kmeans": scikit-learn's KMeans on a random subsample of at most ``kmeans_frames``
        frames (reproducible from ``random_state``), as gmmext's ``init_params="kmeans"``.
    n_iter : int
        EM passes at the final size.
    var_floor : float
        Variances are floored at ``var_floor`` times the global variance of the features
        (0.01 by default, as is customary for UBMs; 0 disables).
    reg_covar : float
        Added to every variance.
    dtype : float32 or float64
        Precision of the model and of the E-step (statistics are float64 in both cases).
    progress : bool
        Show a tqdm progress bar of EM passes (on stderr).
    callback : callable(pass_index, model, stats), optional
        Called after every EM pass with the updated model and the statistics of the pass
        (for logging or checkpoints).

    Returns
    -------
    gmmext.GaussianMixture
        The UBM; ``lower_bounds_`` holds the average log-likelihood per frame of every pass.
    """
    if not isinstance(n_components, (int, np.integer)) or n_components < 1:
        raise ValueError(f"n_components must be a positive int, got {n_components!r}")
    if init not in ("split", "kmeans"):
        raise ValueError(f"init must be 'split' or 'kmeans', got {init!r}")
    dtype = np.dtype(dtype)
    template = GaussianMixture(n_components, var_floor=var_floor, reg_covar=reg_covar,
                               random_state=random_state, n_threads=n_threads)
    if n_iter < 0 or n_iter_split < 0:
        raise ValueError("n_iter and n_iter_split must be >= 0")
    sizes = [1]
    while sizes[-1] < n_components:
        sizes.append(min(2 * sizes[-1], n_components))
    # EM passes, by model size: the intermediate sizes of the splitting, then the final size
    schedule = ([k for k in sizes[1:-1] for _ in range(n_iter_split)] if init == "split" else []) \
        + [n_components] * n_iter
    bar = tqdm(total=len(schedule) + 1, desc="UBM EM", unit="pass", disable=not progress, leave=False)
    try:
        if init == "split":
            # the statistics of any one-component model give the global mean and variance
            D = _dims(features)
            probe = GaussianMixture.from_parameters(np.ones(1), np.zeros((1, D)), np.ones((1, D)),
                                                    n_threads=n_threads)
            gm = _global_model(_pass(probe, features), template, dtype)
        else:
            gm = _kmeans_init(features, template, kmeans_frames, random_state, dtype)
        bar.update(1)
        lower_bounds = []
        for i, k in enumerate(schedule):
            if k > gm.n_components:
                gm = _split(gm, k, perturb)
            stats = _pass(gm, features)
            gm.m_step(stats)
            lower_bounds.append(stats.mean_loglik())
            bar.set_postfix(K=gm.n_components, ll=f"{lower_bounds[-1]:.3f}")
            bar.update(1)
            if callback is not None:
                callback(i, gm, stats)
    finally:
        bar.close()
    gm.lower_bounds_ = lower_bounds
    gm.lower_bound_ = lower_bounds[-1] if lower_bounds else -np.inf
    gm.n_iter_ = len(lower_bounds)
    return gm


def _dims(features: FeatureSource) -> int:
    for f in _iterate(features):
        return f.shape[1]
    raise ValueError("no feature frames to train on")


def _kmeans_init(features, template, max_frames, random_state, dtype) -> GaussianMixture:
    """Initial model from KMeans on a uniform random subsample of all frames."""
    rng = np.random.default_rng(random_state)
    sizes = [f.shape[0] for f in _iterate(features)]
    total = int(np.sum(sizes))
    if total < template.n_components:
        raise ValueError(f"{total} frames are fewer than n_components={template.n_components}")
    take = np.sort(rng.choice(total, size=min(max_frames, total), replace=False))
    parts, offset = [], 0
    for f in _iterate(features):
        sel = take[(take >= offset) & (take < offset + f.shape[0])] - offset
        if sel.size:
            parts.append(np.asarray(f)[sel])
        offset += f.shape[0]
    sample = np.vstack(parts).astype(dtype)
    gm = GaussianMixture(**{**template.get_params(), "max_iter": 0, "init_params": "kmeans"})
    gm.fit(sample)
    return gm
