"""Step 1 of GMM-UBM: train the universal background model by EM (the recipe).

Data may be larger than memory.  ``features`` is any of

* a sequence of (frames, dims) arrays (all in memory);
* a zero-argument callable returning a fresh iterator over them, for example
  :class:`speaker.featcache.FeatureFiles`, which reads ``.npy`` files or Kaldi archive entries
  from disk at every EM pass, so that only a batch of utterances is in memory at once;
* a :class:`speaker.cluster.DaskFeatures`: features held (or read from a shared filesystem) by
  the workers of a ``dask.distributed`` cluster; every pass sends the model (O(K*D) numbers) to
  the workers, which compute the statistics of their own features, summed in a tree.

Every EM pass sums the :class:`gmmext.GMMStats` of all frames and ends with ``ubm.m_step``;
the arithmetic stays in gmmext's compiled core.  In-memory utterances go to the core all at
once, streamed ones in batches of :data:`BATCH_UTTERANCES`.  With ``checkpoint=PATH`` the
model is written (atomically) after every pass, and ``resume=True`` continues from it to the
same model an uninterrupted run gives.

Feature preparation (:func:`speaker.featcache.prepare_features`) and the Dask cluster
(:mod:`speaker.cluster`) live in their own modules.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence, Union

import numpy as np

from gmmext import GaussianMixture, GMMStats

from ._batch import BATCH_UTTERANCES
from ._interrupt import check as check_interrupt
from ._npz import CheckpointError, NpzError, settings_hash, write_checkpoint
from ._npz import read_checkpoint as _read_checkpoint
from ._progress import Progress
from .adapt import model_like
from .featcache import take_rows
from .limits import MAX_COMPONENTS, MAX_DIM, MAX_PASSES, ubm_shape_problem

if TYPE_CHECKING:  # pragma: no cover
    from .cluster import DaskFeatures

FeatureSource = Union[Sequence[np.ndarray], Callable[[], Iterable[np.ndarray]]]

__all__ = ["train_ubm", "FeatureSource", "CheckpointError", "read_checkpoint", "BATCH_UTTERANCES"]

CHECKPOINT_FORMAT = "speaker-ubm-checkpoint"


# ----------------------------------------------------------------------------- feature sources
def _iterate(features: FeatureSource) -> Iterator[np.ndarray]:
    items = features() if callable(features) else features
    for f in items:
        f = np.asarray(f)
        if f.ndim != 2:
            raise ValueError(f"each feature array must have shape (frames, dims); got {f.shape}")
        if f.shape[0]:
            yield f


class _LocalFeatures:
    """A FeatureSource (in memory or streamed) in this process, as train_ubm uses it."""

    def __init__(self, features: FeatureSource):
        self.features = features
        self._counts = getattr(features, "n_frames", None)

    @property
    def n_features(self) -> int:
        for f in _iterate(self.features):
            return f.shape[1]
        raise ValueError("no feature frames to train on")

    def frame_counts(self) -> list[int]:
        if self._counts is None:
            self._counts = [f.shape[0] for f in _iterate(self.features)]
        return [n for n in self._counts if n]

    def accumulate(self, gm: GaussianMixture) -> GMMStats:
        """One E-step over all features: their statistics, summed in order."""
        arrays = _iterate(self.features)
        if callable(self.features):
            batches = iter(lambda: list(itertools.islice(arrays, BATCH_UTTERANCES)), [])
        else:
            batches = iter([list(arrays)])
        stats = None
        for batch in batches:
            if batch:
                s = gm.accumulate(batch)
                stats = s if stats is None else stats + s
            check_interrupt()
        if stats is None:
            raise ValueError("no feature frames to train on")
        return stats

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Frames at the given (sorted) global positions, in order."""
        return take_rows(_iterate(self.features), rows, self.frame_counts())


def _source(features) -> Any:
    if all(hasattr(features, a) for a in ("accumulate", "take", "frame_counts", "n_features")):
        return features
    return _LocalFeatures(features)


# ----------------------------------------------------------------------------- initial models
def _global_model(src, template: GaussianMixture, dtype) -> GaussianMixture:
    """The one-component start of the splitting: the global mean and variance of all frames.

    The statistics come from one pass under a one-component model (any: its posteriors are all
    1), a float64 "probe" of mean 0 and variance 1; ``m_step`` on their pooled form turns them
    into the mean and variance by the M-step's own formula.
    """
    D = src.n_features
    probe = model_like(template, np.ones(1), np.zeros((1, D)), np.ones((1, D)), np.float64)
    probe.m_step(src.accumulate(probe).pooled())
    if not np.all(probe.covariances_ > 0):
        raise ValueError("the features have a dimension of zero variance; cannot train a UBM")
    return model_like(template, probe.weights_, probe.means_, probe.covariances_, dtype)


def _split(gm: GaussianMixture, target: int, perturb: float) -> GaussianMixture:
    """Binary split ("mix-up") from K to min(2K, target) components.

    The ``n = min(K, target - K)`` heaviest components (stable order of decreasing weight) are
    split in two: the original keeps its place with mean ``mu - perturb * sigma``, the copy
    (appended, in the same order) gets ``mu + perturb * sigma``; both get half the weight and
    the original variance.  Computed in float64, returned in the model's dtype.
    """
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
    return model_like(gm, w / w.sum(), np.vstack([mu, new_mu]), np.vstack([var, new_var]))


def _kmeans_init(src, template, max_frames, random_state, dtype) -> GaussianMixture:
    """Initial model from KMeans on a uniform random sample of at most ``max_frames`` frames.

    This is gmmext's ``init_params="kmeans"`` meaning (the one both packages use): KMeans on a
    random sample of at most ``kmeans_max_samples`` rows, the initial parameters being the hard
    statistics of those rows.  Only the sample leaves the features (:func:`take_rows`, or the
    Dask workers), and a ``max_iter=0`` fit of gmmext on it gives those parameters.
    """
    rng = np.random.default_rng(random_state)
    total = int(np.sum(src.frame_counts()))
    if total < template.n_components:
        raise ValueError(f"{total} frames are fewer than n_components={template.n_components}")
    take = np.sort(rng.choice(total, size=min(max_frames, total), replace=False))
    sample = src.take(take).astype(dtype)
    gm = GaussianMixture(**{**template.get_params(), "max_iter": 0, "init_params": "kmeans",
                            "kmeans_max_samples": None})     # KMeans on the whole sample drawn here
    gm.fit(sample)
    return gm


# ----------------------------------------------------------------------------- checkpoints
def read_checkpoint(path: str | os.PathLike) -> dict:
    """Contents of a checkpoint written by :func:`train_ubm`.

    Returns a dict with ``done`` (EM passes completed; 0: the initial model), ``total`` (passes
    of the whole schedule), ``settings_hash``, ``weights`` (K,), ``means`` (K, D),
    ``covariances`` (K, D) and ``lower_bounds`` (done,) (average log-likelihood per frame, nats).
    Raises :class:`CheckpointError` for a file that is not a readable checkpoint; its members'
    declared shapes are checked against the limits (:mod:`speaker.limits`) before any is read.
    """
    return _read_checkpoint(path, CHECKPOINT_FORMAT, "a UBM", max_elements=MAX_COMPONENTS * MAX_DIM,
                            check=_check_members)


def _check_members(h: dict) -> None:
    """A UBM checkpoint's declared members: weights (K,), means and covariances (K, D) within the
    limits, at most ``MAX_PASSES`` lower bounds."""
    mu = h.get("means")
    if mu is None or any(k not in h for k in ("weights", "covariances", "lower_bounds")):
        raise NpzError("missing 'weights', 'means', 'covariances' or 'lower_bounds'")
    if len(mu.shape) != 2 or ubm_shape_problem(*mu.shape) is not None:
        raise NpzError(f"'means' declares shape {mu.shape}: (K <= {MAX_COMPONENTS}, D <= {MAX_DIM}) expected")
    for key, shape in (("weights", mu.shape[:1]), ("covariances", mu.shape)):
        if h[key].shape != shape:
            raise NpzError(f"inconsistent shapes: '{key}' {h[key].shape}, means {mu.shape}")
    lb = h["lower_bounds"]
    if len(lb.shape) != 1 or lb.shape[0] > MAX_PASSES:
        raise NpzError(f"'lower_bounds' declares shape {lb.shape}")


def _write_checkpoint(path, gm: GaussianMixture, done: int, total: int, settings_hash: str,
                      lower_bounds: list[float]) -> None:
    write_checkpoint(path, CHECKPOINT_FORMAT, done=done, total=total, settings_hash=settings_hash,
                     weights=gm.weights_, means=gm.means_, covariances=gm.covariances_,
                     lower_bounds=np.asarray(lower_bounds, dtype=np.float64))


def train_ubm(features: FeatureSource | DaskFeatures, n_components: int, *, init: str = "split",
              n_iter: int = 10, n_iter_split: int = 4, perturb: float = 0.2,
              var_floor: float = 0.01, reg_covar: float = 1e-6, kmeans_frames: int = 100_000,
              random_state: int | None = 0, n_threads: int | None = None,
              dtype=np.float32, progress: bool = False,
              callback: Callable[[int, GaussianMixture, GMMStats], None] | None = None,
              checkpoint: str | os.PathLike | None = None, resume: bool = False,
              inputs_id: str = "") -> GaussianMixture:
    """Train a diagonal UBM with ``n_components`` components by EM over all feature frames.

    Parameters
    ----------
    features : sequence of ndarray (frames, dims), callable returning an iterable of them, or
        :class:`speaker.cluster.DaskFeatures`
        All utterances of the background population.  A callable is called once per EM pass
        and may load arrays lazily (:class:`speaker.featcache.FeatureFiles`), so the data need not fit in memory;
        a :class:`DaskFeatures` runs every pass on its cluster.
    n_components : int
        K, the number of Gaussians (powers of two are customary: 64 to 2048).
    init : {"split", "kmeans"}
        "split": binary splitting ("mix-up") from one Gaussian: the heaviest components are
        split (means moved by +-``perturb`` standard deviations, weights halved) until K
        doubles or reaches ``n_components``, with ``n_iter_split`` EM passes per size.
        "kmeans": scikit-learn's KMeans on a random sample of at most ``kmeans_frames``
        frames (reproducible from ``random_state``); the initial parameters are the hard
        statistics of the sample, as gmmext's ``init_params="kmeans"``.
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
        Report the EM passes on stderr (a bar on a terminal, else a line every few seconds).
    callback : callable(pass_index, model, stats), optional
        Called after every EM pass with the updated model and the statistics of the pass
        (for logging), after the checkpoint is written.
    checkpoint : path, optional
        Write the model, the number of passes done and a hash of the settings and
        ``inputs_id`` to this ``.npz`` after the initialisation and after every pass
        (atomically: an interrupted run leaves the previous checkpoint).
    resume : bool
        Continue from ``checkpoint`` if it exists (else start from the beginning).  The result
        is the model of an uninterrupted run (bitwise, given the same ``n_threads``).  Raises
        :class:`CheckpointError` if the checkpoint was written with other settings or inputs.
    inputs_id : str
        Identifies the training data (e.g. a hash of the file list and feature configuration),
        stored in the checkpoint so that resuming on other data is refused.

    Returns
    -------
    gmmext.GaussianMixture
        The UBM; ``lower_bounds_`` holds the average log-likelihood per frame of every pass.
    """
    if not isinstance(n_components, (int, np.integer)) or not 1 <= n_components <= MAX_COMPONENTS:
        raise ValueError(f"n_components must be an int in [1, {MAX_COMPONENTS}] (speaker.limits), got {n_components!r}")
    if init not in ("split", "kmeans"):
        raise ValueError(f"init must be 'split' or 'kmeans', got {init!r}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    dtype = np.dtype(dtype)
    template = GaussianMixture(n_components, covariance_type="diag", var_floor=var_floor, reg_covar=reg_covar,
                               random_state=random_state, n_threads=n_threads)
    if n_iter < 0 or n_iter_split < 0:
        raise ValueError("n_iter and n_iter_split must be >= 0")
    src = _source(features)
    sizes = [1]
    while sizes[-1] < n_components:
        sizes.append(min(2 * sizes[-1], n_components))
    # EM passes, by model size: the intermediate sizes of the splitting, then the final size
    schedule = ([k for k in sizes[1:-1] for _ in range(n_iter_split)] if init == "split" else []) \
        + [n_components] * n_iter
    settings = dict(n_components=int(n_components), init=init, n_iter=int(n_iter),
                    n_iter_split=int(n_iter_split), perturb=float(perturb), var_floor=float(var_floor),
                    reg_covar=float(reg_covar), kmeans_frames=int(kmeans_frames),
                    random_state=random_state if random_state is None else int(random_state),
                    dtype=dtype.name, inputs=str(inputs_id))
    shash = settings_hash(settings)
    gm, done, lower_bounds = None, 0, []
    if resume and Path(checkpoint).exists():
        ck = read_checkpoint(checkpoint)
        if ck["settings_hash"] != shash or ck["total"] != len(schedule):
            raise CheckpointError(
                f"{checkpoint} was written for other training data or settings (list, features, "
                "components, iterations, init, seed or precision differ); delete it or run without resume")
        gm = model_like(template, ck["weights"], ck["means"], ck["covariances"], dtype)
        done, lower_bounds = ck["done"], [float(v) for v in ck["lower_bounds"]]
    with Progress(len(schedule) + 1, "UBM EM", "pass", initial=done + (gm is not None),
                  enabled=progress) as bar:
        if gm is None:
            if init == "split":
                gm = _global_model(src, template, dtype)
            else:
                gm = _kmeans_init(src, template, kmeans_frames, random_state, dtype)
            if checkpoint is not None:
                _write_checkpoint(checkpoint, gm, 0, len(schedule), shash, lower_bounds)
            bar.update(1)
        for i in range(done, len(schedule)):
            k = schedule[i]
            if k > gm.n_components:
                gm = _split(gm, k, perturb)
            stats = src.accumulate(gm)
            gm.m_step(stats)
            lower_bounds.append(stats.mean_loglik())
            if checkpoint is not None:
                _write_checkpoint(checkpoint, gm, i + 1, len(schedule), shash, lower_bounds)
            bar.set_postfix(K=gm.n_components, ll=f"{lower_bounds[-1]:.3f}")
            bar.update(1)
            if callback is not None:
                callback(i, gm, stats)
    gm.lower_bounds_ = lower_bounds
    gm.lower_bound_ = lower_bounds[-1] if lower_bounds else -np.inf
    gm.n_iter_ = len(lower_bounds)
    return gm
