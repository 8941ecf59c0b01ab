"""The total-variability model: i-vectors from a UBM's per-utterance statistics (Dehak 2011).

One short function per step of the recipe (MSR Identity Toolbox style):

1. :func:`centred_stats` - per utterance, zeroth order ``n_k`` and centred, whitened first order
   ``f_k = Sigma_k^{-1/2} (F_k - n_k mu_k)`` from ``ubm.accumulate_segments`` (one core call per
   batch; float32 features in, float64 statistics out).
2. :func:`posterior` - the i-vector posterior ``N(L^{-1} T^T f, L^{-1})`` with precision
   ``L = I + sum_k n_k T_k^T T_k``: for a batch of B utterances ``L`` is one gemm of ``n`` (B, K)
   with the flattened (K, R*R) products ``T_k^T T_k`` precomputed once per EM pass.
3. :func:`accumulate` / :func:`m_step` - EM for ``T`` (Kenny 2005; Dehak 2011):
   ``C = sum_u f_u E[w_u]^T`` (K*D, R), ``A_k = sum_u n_uk E[w_u w_u^T]`` (K, R, R), then
   ``T_k = C_k A_k^{-1}``; optional minimum-divergence re-estimation ``T <- T chol(H)``,
   ``H = mean_u E[w w^T]`` (Kenny 2008; Kaldi's ``ivector-extractor``).
4. :func:`log_likelihood` - the EM objective: the total log-likelihood of the statistics under
   the factor-analysis model, up to a constant independent of ``T``:
   ``sum_u 0.5 b_u^T L_u^{-1} b_u - 0.5 log|L_u|``, ``b_u = T^T f_u``.

Working in the whitened space (``Sigma_k = I``) is the same model as the usual
``T^T Sigma^{-1} ...`` formulas with ``T_white = Sigma^{-1/2} T``; only the whitened ``T`` is stored.
Memory is bounded by the accumulators (K*D*R + K*R*R float64) and one batch of statistics
(``batch`` utterances), never by the number of utterances: :func:`train_tv` and
:func:`extract_ivectors` stream batches from a callable.
"""
from __future__ import annotations

import os
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

import numpy as np

if TYPE_CHECKING:                      # annotations only: `speaker speakers` never imports scikit-learn
    from gmmext import GaussianMixture

from ._interrupt import check as check_interrupt
from ._npz import CheckpointError, NpzError, settings_hash
from ._npz import read_checkpoint as _read_checkpoint
from ._npz import write_checkpoint
from ._progress import Progress
from .limits import MAX_COMPONENTS, MAX_DIM, MAX_ELEMENTS, MAX_PASSES, MAX_RANK

__all__ = ["TotalVariability", "centred_stats", "centre", "stats_batches", "posterior", "accumulate", "m_step",
           "min_divergence", "log_likelihood", "init_tv", "train_tv", "extract_ivectors",
           "save_tv", "load_tv", "CheckpointError", "BATCH"]

#: Utterances per batch of statistics (K=512, D=60: 256 x 31k float64 = 63 MB).
BATCH = 256

TV_FORMAT = "gmmext-speaker-ivector"
TV_VERSION = 1
CHECKPOINT_FORMAT = "speaker-ivector-checkpoint"


@dataclass
class TotalVariability:
    """A trained total-variability matrix in the UBM's whitened space.

    ``T`` (K*D, R) float64, row ``k*D + d`` for component k, feature d; ``ubm_fingerprint``
    names the UBM it belongs to (see :func:`speaker.model_io.ubm_fingerprint`).
    """

    T: np.ndarray
    ubm_fingerprint: str = ""

    @functools.cached_property
    def fingerprint(self) -> str:
        """SHA-256 naming this extractor (its UBM's fingerprint and T): a back-end and models
        enrolled through it carry it (:func:`speaker.model_io.fingerprint`)."""
        from .model_io import fingerprint
        return fingerprint("gmmext-speaker-ivector-extractor", self.ubm_fingerprint, self.T)

    @property
    def rank(self) -> int:
        return self.T.shape[1]

    def blocks(self, n_components: int) -> np.ndarray:
        """``T`` as (K, D, R)."""
        return self.T.reshape(n_components, -1, self.rank)


# ----------------------------------------------------------------------------- 1. statistics
def centred_stats(ubm: GaussianMixture, features: Sequence[np.ndarray], *, whiten: bool = True
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per-utterance statistics: ``n`` (B, K) and ``f`` (B, K*D), float64.

    ``f[u, k*D:(k+1)*D] = (F_uk - n_uk mu_k) / sqrt(sigma2_k)`` (not divided with
    ``whiten=False``), ``F_uk`` the posterior-weighted sum of utterance u's frames.
    """
    stats = ubm.accumulate_segments(list(features), second_order=False)
    return centre(ubm, np.stack([s.n for s in stats]), np.stack([s.sum_x for s in stats]), whiten=whiten)


def centre(ubm: GaussianMixture, n: np.ndarray, sum_x: np.ndarray, *, whiten: bool = True
           ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`centred_stats` of statistics already accumulated (a speaker store keeps them per
    recording): zeroth order ``n`` (B, K) and first order ``sum_x`` (B, K, D) -> ``n`` (B, K),
    ``f`` (B, K*D), float64."""
    mu = np.asarray(ubm.means_, dtype=np.float64)
    n = np.asarray(n).astype(np.float64, copy=False)
    f = np.asarray(sum_x).astype(np.float64, copy=False) - n[:, :, None] * mu
    if whiten:
        f /= np.sqrt(np.asarray(ubm.covariances_, dtype=np.float64))
    return n, f.reshape(len(n), -1)


def stats_batches(ubm: GaussianMixture, features: Iterable[np.ndarray], batch: int = BATCH
                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """:func:`centred_stats` of ``features`` (any iterable of (frames, D) arrays), ``batch`` at a time."""
    buf: list[np.ndarray] = []
    for x in features:
        buf.append(x)
        if len(buf) == batch:
            yield centred_stats(ubm, buf)
            buf = []
    if buf:
        yield centred_stats(ubm, buf)


# ----------------------------------------------------------------------------- 2. posterior
# Why the products of an EM pass are not numpy's ``@``: numpy and SciPy each bundle their own
# OpenBLAS, and an OpenBLAS keeps its worker threads spinning for a while after each
# multi-threaded product.  Alternating the two libraries (numpy for the precisions, SciPy for
# the accumulators and for the core's per-utterance LAPACK) made every product share the cores
# with the other library's spinning workers: a SciPy product right after a numpy one cost
# 1.28x the process CPU time of one after a SciPy product (2 cores, loaded machine).  The same
# spinning, SciPy's own this time, slowed the core's per-utterance solves that follow each
# batch's products.  So every product here is ``gmmext.row_gemm``: SciPy's BLAS on one thread
# per block of rows, from the core's threads; BLAS's worker threads are never woken.


def _triu(R: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-major upper-triangle indices of an (R, R) matrix: the packed order (P = R(R+1)/2)."""
    return np.triu_indices(R)


def component_products(T: np.ndarray, n_components: int) -> np.ndarray:
    """``T_k^T T_k`` for every component, packed upper triangles: (K, R(R+1)/2).

    One ``dsyrk`` per component in the core (``gmmext.packed_gram``, components shared among
    the threads); packing halves the two big gemms of a pass (precisions and ``A``) and the
    memory of this table and of ``A``.
    """
    from gmmext import packed_gram
    return packed_gram(T.reshape(n_components, -1, T.shape[1]))


def unpack(P: np.ndarray, R: int) -> np.ndarray:
    """Packed upper triangles (..., R(R+1)/2) -> full symmetric matrices (..., R, R)."""
    i, j = _triu(R)
    out = np.zeros(P.shape[:-1] + (R, R))
    out[..., i, j] = P
    out[..., j, i] = P
    return out


def posterior(T: np.ndarray, n: np.ndarray, f: np.ndarray, TtT: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """i-vector posteriors of a batch: mean (B, R), covariance (B, R, R), log|L| (B,).

    ``n`` (B, K), ``f`` (B, K*D) from :func:`centred_stats`; ``TtT`` from
    :func:`component_products` (computed if not given).
    """
    return _posterior(T, n, f, TtT, cov="full")[:3]


def _posterior(T, n, f, TtT, cov="full", second_moment=False, buf=None):
    """Posterior mean (B, R), covariance (``cov``: "full" (B, R, R), "packed" (B, P) - with
    ``second_moment`` ``E[w w^T]`` instead - or None), log|L| (B,), ``b = f T`` (B, R).
    ``buf``: a list of one array (or None), the caller's buffer for the precisions (and the
    packed covariances, written over them), grown here and reused from batch to batch (a fresh
    40 MB array costs its page faults every batch).

    The heavy parts are gemms: the precisions ``L_u = I + sum_k n_uk T_k^T T_k`` of the whole
    batch are one (B, K) x (K, R(R+1)/2) product, the linear terms ``b = f T`` one
    (B, K*D) x (K*D, R) product; then per utterance LAPACK ``potrf`` (Cholesky, log|L|) and
    ``potri`` (``L^-1`` from the factor, R^3 flops in all) or ``potrs`` (the mean only), in the
    core (``gmmext.packed_posteriors``: utterances shared among the threads, one BLAS thread each,
    straight from and to packed triangles).
    """
    from gmmext import packed_posteriors, row_gemm
    K = n.shape[1]
    R = T.shape[1]
    if TtT is None:
        TtT = component_products(T, K)
    i, j = _triu(R)
    if buf is None:
        Lp = row_gemm(n, TtT)                                   # (B, R(R+1)/2)
    else:
        if buf[0] is None or len(buf[0]) < len(n):
            buf[0] = np.empty((len(n), TtT.shape[1]))
        Lp = row_gemm(n, TtT, out=buf[0][:len(n)])
    Lp[:, (i == j).nonzero()[0]] += 1.0
    b = row_gemm(f, T)                                          # (B, R)
    mean, c, logdet = packed_posteriors(Lp, b, cov=cov, second_moment=second_moment, overwrite_L=True)
    return mean, c, logdet, b


def log_likelihood(T: np.ndarray, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> float:
    """The EM objective: ``sum_u 0.5 b_u^T L_u^{-1} b_u - 0.5 log|L_u|`` (nats, up to a constant)."""
    total, TtT, buf = 0.0, None, [None]
    for n, f in batches:
        TtT = component_products(T, n.shape[1]) if TtT is None else TtT
        mean, _, logdet, b = _posterior(T, n, f, TtT, cov=None, buf=buf)
        total += float(0.5 * np.einsum("br,br->", mean, b) - 0.5 * logdet.sum())
    return total


# ----------------------------------------------------------------------------- 3. EM
@dataclass
class Accumulators:
    """EM statistics (float64): ``C`` (K*D, R), ``A`` (K, R(R+1)/2) packed upper triangles of
    ``sum_u n_uk E[w w^T]``, ``H`` = sum E[w w^T] (R, R), ``count``, ``llk``."""

    C: np.ndarray
    A: np.ndarray
    H: np.ndarray
    count: int = 0
    llk: float = 0.0


def accumulate(T: np.ndarray, batches: Iterable[tuple[np.ndarray, np.ndarray]], n_components: int,
               on_batch: Callable[[int], None] | None = None) -> Accumulators:
    """E-step over all batches: the accumulators of :func:`m_step` (float64).

    Per batch, after :func:`_posterior` (which gives ``E[w w^T]`` packed), two more gemms
    accumulated in place (``beta = 1``, no temporary, ``gmmext.row_gemm``): ``C += f^T E[w]``
    ((K*D, B) x (B, R)) and ``[A; H] += [n, 1]^T E[ww^T]`` ((K+1, B) x (B, R(R+1)/2), packed:
    ``H``, the sum of the second moments, is the product's last row, a column of ones appended
    to ``n``, not a separate pass over ``E[ww^T]``).  ``C`` and ``A`` are C-contiguous, as
    :func:`m_step` reads them.
    """
    from gmmext import row_gemm
    KD, R = T.shape
    P = R * (R + 1) // 2
    C, AH = np.zeros((KD, R)), np.zeros((n_components + 1, P))
    count, llk = 0, 0.0
    TtT = component_products(T, n_components)
    buf, n1 = [None], None
    for n, f in batches:
        check_interrupt()
        n = np.ascontiguousarray(n, dtype=np.float64)
        f = np.ascontiguousarray(f, dtype=np.float64)
        if len(n) == 0:
            continue
        mean, Eww, logdet, b = _posterior(T, n, f, TtT, cov="packed", second_moment=True, buf=buf)
        if n1 is None or len(n1) < len(n):
            n1 = np.ones((len(n), n_components + 1))
        n1[:len(n), :n_components] = n
        row_gemm(f.T, mean, out=C, beta=1.0)                    # C += f^T E[w]
        row_gemm(n1[:len(n)].T, Eww, out=AH, beta=1.0)          # [A; H] += [n, 1]^T E[ww^T]
        count += len(n)
        llk += float(0.5 * np.einsum("br,br->", mean, b) - 0.5 * logdet.sum())
        if on_batch is not None:
            on_batch(len(n))
    return Accumulators(C, AH[:n_components], unpack(AH[n_components], R), count, llk)


def m_step(acc: Accumulators, n_components: int) -> np.ndarray:
    """``T_k = C_k A_k^{-1}`` for every component: the new ``T`` (K*D, R).

    One Cholesky solve per component in the core (``gmmext.packed_solve``, straight from the
    packed ``A``; components shared among the threads)."""
    from gmmext import packed_solve
    KD, R = acc.C.shape
    Tk = packed_solve(acc.A, acc.C.reshape(n_components, -1, R))            # A_k symmetric
    return Tk.reshape(KD, R)


def min_divergence(T: np.ndarray, acc: Accumulators) -> np.ndarray:
    """Minimum-divergence re-estimation: ``T chol(H)``, ``H = mean_u E[w w^T]``, so that the
    i-vectors' second moment becomes the prior's identity (same likelihood, faster EM)."""
    from gmmext import row_gemm
    return row_gemm(T, np.linalg.cholesky(acc.H / max(acc.count, 1)))


def init_tv(n_components: int, n_features: int, rank: int, random_state: int | None = 0,
            scale: float = 0.1) -> np.ndarray:
    """A random starting ``T`` (K*D, R): independent N(0, scale^2) entries."""
    rng = np.random.default_rng(random_state)
    return rng.normal(scale=scale, size=(n_components * n_features, rank))


def read_checkpoint(path: str | os.PathLike, shape: tuple[int, int] | None = None) -> dict:
    """``done``, ``total``, ``settings_hash``, ``T``, ``llks`` of a :func:`train_tv` checkpoint.

    ``shape``: the ``T`` (K*D, R) the caller expects; a checkpoint that declares another is
    refused from its header, before its data is read (a 400 KB zip of zeros cannot make the
    reader allocate hundreds of megabytes).  Without it, ``T`` is bounded by the limits
    (:mod:`speaker.limits`: K*D <= MAX_COMPONENTS * MAX_DIM, R <= MAX_RANK).
    """
    def check(h):
        T, llks = h.get("T"), h.get("llks")
        if T is None or llks is None:
            raise NpzError("missing 'T' or 'llks'")
        if len(T.shape) != 2 or not (1 <= T.shape[0] <= MAX_COMPONENTS * MAX_DIM and 1 <= T.shape[1] <= MAX_RANK):
            raise NpzError(f"'T' declares shape {T.shape}: (K*D <= {MAX_COMPONENTS * MAX_DIM}, R <= {MAX_RANK}) expected")
        if shape is not None and T.shape != tuple(shape):
            raise NpzError(f"'T' declares shape {T.shape}, this training needs {tuple(shape)}")
        if len(llks.shape) != 1 or llks.shape[0] > MAX_PASSES:
            raise NpzError(f"'llks' declares shape {llks.shape}")
    out = _read_checkpoint(path, CHECKPOINT_FORMAT, "an i-vector", max_elements=MAX_ELEMENTS, check=check)
    T = out["T"]
    if T.dtype != np.float64 or not np.isfinite(T).all():
        raise CheckpointError(f"{path}: malformed T in checkpoint")
    out["llks"] = list(out["llks"])
    return out


def train_tv(ubm: GaussianMixture, batches: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]],
             rank: int, *, n_iter: int = 10, min_div: bool = True, random_state: int | None = 0,
             n_utterances: int | None = None, progress: bool = False,
             checkpoint: str | os.PathLike | None = None, resume: bool = False, inputs_id: str = "",
             callback: Callable[[int, np.ndarray, float], None] | None = None) -> TotalVariability:
    """Train ``T`` (K*D x ``rank``) by ``n_iter`` EM passes over ``batches()`` (a fresh iterable of
    :func:`centred_stats` batches per pass).

    With ``checkpoint``, ``T`` is written (atomically) after every pass; ``resume=True`` continues
    from it (refused with :class:`CheckpointError` if the settings or ``inputs_id`` differ), giving
    the same ``T`` as an uninterrupted run.  ``callback(pass, T, objective)`` is called after each
    pass with the objective of the ``T`` that pass started from (:func:`log_likelihood`).
    """
    from .model_io import ubm_fingerprint
    K, D = ubm.means_.shape
    if not isinstance(rank, (int, np.integer)) or not 1 <= rank <= MAX_RANK:
        raise ValueError(f"rank must be an int in [1, {MAX_RANK}] (speaker.limits), got {rank!r}")
    fp = ubm_fingerprint(ubm)
    settings = settings_hash(dict(ubm=fp, rank=rank, n_iter=n_iter, min_div=min_div,
                                   random_state=random_state, inputs=inputs_id))
    T, done, llks = init_tv(K, D, rank, random_state), 0, []
    if resume and checkpoint is not None and Path(checkpoint).exists():
        ck = read_checkpoint(checkpoint, shape=T.shape)           # another T: refused from its header
        if ck["settings_hash"] != settings:
            raise CheckpointError(f"{checkpoint}: made with other settings, UBM or inputs; refusing to resume")
        T, done, llks = ck["T"], ck["done"], ck["llks"]
    with Progress(n_iter * (n_utterances or 0) or None, "i-vector EM", "utt", enabled=progress,
                  initial=done * (n_utterances or 0)) as bar:
        for it in range(done, n_iter):
            acc = accumulate(T, batches(), K, on_batch=bar.update)
            T = m_step(acc, K)
            if min_div:
                T = min_divergence(T, acc)
            llks.append(acc.llk)
            bar.set_postfix(llk=f"{acc.llk / max(acc.count, 1):.3f}")
            if checkpoint is not None:
                write_checkpoint(checkpoint, CHECKPOINT_FORMAT, done=it + 1, total=n_iter,
                                 settings_hash=settings, T=T, llks=np.asarray(llks, dtype=np.float64))
            if callback is not None:
                callback(it, T, acc.llk)
    return TotalVariability(T, fp)


# ----------------------------------------------------------------------------- extraction
def extract_ivectors(tv: TotalVariability, batches: Iterable[tuple[np.ndarray, np.ndarray]], *,
                     with_cov: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Posterior means (U, R) (and covariances (U, R, R) with ``with_cov``) of every utterance
    of ``batches`` (:func:`stats_batches`), in order."""
    means, covs, TtT, buf = [], [], None, [None]
    for n, f in batches:
        check_interrupt()
        TtT = component_products(tv.T, n.shape[1]) if TtT is None else TtT
        m, c, _, _ = _posterior(tv.T, n, f, TtT, cov="full" if with_cov else None, buf=buf)
        means.append(m)
        if with_cov:
            covs.append(c)
    R = tv.rank
    mean = np.concatenate(means) if means else np.zeros((0, R))
    return mean, ((np.concatenate(covs) if covs else np.zeros((0, R, R))) if with_cov else None)


# ----------------------------------------------------------------------------- model file
def save_tv(path: str | os.PathLike, tv: TotalVariability, config=None, *, overwrite: bool = True) -> None:
    """Write ``tv`` as ``.npz`` (atomically; ``overwrite=False`` refuses an existing file): format,
    version, ubm_fingerprint, feature_config, T."""
    from .model_io import save_npz
    save_npz(path, TV_FORMAT, TV_VERSION, "ivector", tv.ubm_fingerprint, config, overwrite=overwrite, T=tv.T)


def load_tv(path: str | os.PathLike, ubm: GaussianMixture | None = None) -> TotalVariability:
    """Read and validate a file of :func:`save_tv` (refused if made for another UBM than ``ubm``)."""
    from .model_io import ArraySpec, load_npz
    rows = ubm.means_.size if ubm is not None else None      # refused from its header if another
    fp, arrays = load_npz(path, TV_FORMAT, TV_VERSION, "ivector", ubm,
                          {"T": ArraySpec(ndim=2, shape=(rows, None), most=(MAX_COMPONENTS * MAX_DIM, MAX_RANK))})
    T = arrays["T"]
    return TotalVariability(T, fp)
