"""The i-vector back-end: centring, LDA, WCCN, length normalisation, two-covariance PLDA, cosine.

One short function per step (Garcia-Romero & Espy-Wilson 2011; Sizov, Lee & Kinnunen 2014):

* :func:`fit_lda` - directions maximising between- over within-speaker scatter: the generalised
  eigenvectors of ``(S_b, S_w)`` (the subspace scikit-learn's ``LinearDiscriminantAnalysis``
  finds), the ``dim`` largest;
* :func:`fit_wccn` - ``B`` with ``B B^T = W^{-1}``, ``W`` the average within-speaker covariance,
  so that ``x B`` has identity within-speaker covariance (Hatch 2006);
* :func:`length_norm` - ``x / ||x||``;
* :func:`fit_plda` - the two-covariance model ``y ~ N(mu, S_b)``, ``x | y ~ N(y, S_w)`` trained by
  EM; :func:`plda_log_likelihood` is its exact likelihood (never lowered by an EM pass);
* :func:`plda_llr` - the closed-form log-likelihood ratio of a test vector against a speaker
  enrolled with ``n`` vectors of mean ``xbar`` (by the model: ``p(t | enrolment) / p(t)``, the
  predictive ``N(t; m_n, S_w + L_n^{-1})`` over ``N(t; mu, S_b + S_w)``); averaging the
  enrolment i-vectors first is :func:`enrol` with ``average=True``;
* :func:`cosine` - cosine similarity.

:class:`Backend` chains them (centre, LDA, WCCN, length norm, PLDA) and is saved with
:func:`save_backend` / :func:`load_backend` (safe ``.npz``, bound to the UBM's fingerprint).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .limits import MAX_RANK

__all__ = ["fit_lda", "fit_wccn", "length_norm", "PLDA", "fit_plda", "plda_log_likelihood", "plda_llr",
           "cosine", "PLDATerms", "PLDAScorer", "Backend", "train_backend", "enrol", "save_backend", "load_backend"]

BACKEND_FORMAT = "gmmext-speaker-backend"
BACKEND_VERSION = 1


def _groups(y) -> tuple[np.ndarray, np.ndarray]:
    """(labels 0..S-1 per row, counts (S,)) of any label array."""
    _, inv, counts = np.unique(np.asarray(y), return_inverse=True, return_counts=True)
    return inv, counts


def _class_means(X: np.ndarray, y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, counts (S,), class means (S, R))."""
    inv, counts = _groups(y)
    sums = np.zeros((len(counts), X.shape[1]))
    np.add.at(sums, inv, X)
    return inv, counts, sums / counts[:, None]


def within_between(X: np.ndarray, y) -> tuple[np.ndarray, np.ndarray]:
    """Within-speaker (pooled, / N) and between-speaker (weighted by counts, / N) covariances."""
    X = np.asarray(X, dtype=np.float64)
    inv, counts, means = _class_means(X, y)
    dev = X - means[inv]
    Sw = dev.T @ dev / len(X)
    cm = means - X.mean(axis=0)
    Sb = (cm * counts[:, None]).T @ cm / len(X)
    return Sw, Sb


def fit_lda(X: np.ndarray, y, dim: int) -> np.ndarray:
    """LDA projection (R, dim): the generalised eigenvectors of ``S_b v = lambda S_w v`` with
    the ``dim`` largest eigenvalues (columns, ``S_w``-orthonormal)."""
    Sw, Sb = within_between(X, y)
    if not 1 <= dim <= X.shape[1]:
        raise ValueError(f"LDA dimension must be in 1..{X.shape[1]}, got {dim}")
    import scipy.linalg
    vals, vecs = scipy.linalg.eigh(Sb, Sw + 1e-10 * np.trace(Sw) / len(Sw) * np.eye(len(Sw)))
    return vecs[:, np.argsort(vals)[::-1][:dim]]


def fit_wccn(X: np.ndarray, y) -> np.ndarray:
    """WCCN matrix ``B`` (d, d), lower triangular, ``B B^T = W^{-1}``, ``W`` the within-speaker
    covariance averaged over speakers (each speaker's own covariance, equal weight)."""
    X = np.asarray(X, dtype=np.float64)
    inv, counts, means = _class_means(X, y)
    W = np.zeros((X.shape[1], X.shape[1]))
    for s in range(len(counts)):
        dev = X[inv == s] - means[s]
        W += dev.T @ dev / counts[s]
    W /= len(counts)
    return np.linalg.cholesky(np.linalg.inv(W + 1e-10 * np.trace(W) / len(W) * np.eye(len(W))))


def length_norm(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit Euclidean length (zero rows stay zero)."""
    X = np.asarray(X, dtype=np.float64)
    norm = np.linalg.norm(X, axis=-1, keepdims=True)
    return X / np.where(norm > 0, norm, 1.0)


def cosine(E: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Cosine similarity of paired rows of ``E`` and ``T`` (M, d) -> (M,)."""
    return np.einsum("md,md->m", length_norm(E), length_norm(T))


# ----------------------------------------------------------------------------- PLDA
@dataclass
class PLDA:
    """Two-covariance PLDA: speaker ``y ~ N(mu, Sb)``, recording ``x | y ~ N(y, Sw)``."""

    mu: np.ndarray
    Sb: np.ndarray
    Sw: np.ndarray


def plda_log_likelihood(model: PLDA, X: np.ndarray, y) -> float:
    """Exact log-likelihood (nats) of recordings ``X`` (N, d) grouped by speaker labels ``y``.

    Per speaker with n recordings of mean xbar: ``log N(xbar; mu, Sb + Sw/n)`` plus the
    within-speaker term of the deviations (``-(n-1) d/2 log 2pi - (n-1)/2 log|Sw| - d/2 log n
    - 1/2 sum_i (x_i - xbar)^T Sw^-1 (x_i - xbar)``).
    """
    from scipy.stats import multivariate_normal
    X = np.asarray(X, dtype=np.float64)
    inv, counts, means = _class_means(X, y)
    d = X.shape[1]
    _, logdet_w = np.linalg.slogdet(model.Sw)
    dev = X - means[inv]
    quad = np.einsum("nd,nd->", dev @ np.linalg.inv(model.Sw), dev)
    total = -0.5 * quad
    for n in np.unique(counts):
        sel = counts == n
        total += np.atleast_1d(multivariate_normal(model.mu, model.Sb + model.Sw / n).logpdf(means[sel])).sum()
        total += sel.sum() * (-(n - 1) * d / 2 * np.log(2 * np.pi) - (n - 1) / 2 * logdet_w - d / 2 * np.log(n))
    return float(total)


def _posterior_y(model: PLDA, means: np.ndarray, counts: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Posterior of each speaker variable: means (S, d), and the covariances (U, d, d) of the U
    distinct counts with ``which`` (S,): speaker s has covariance ``covs[which[s]]``.

    The covariance ``(Sb^-1 + n Sw^-1)^-1`` depends on the count n only, so it is inverted once
    per distinct count (not once per trial: 10,000 trials of d=200 would be 3 GB).
    """
    Bi, Wi = np.linalg.inv(model.Sb), np.linalg.inv(model.Sw)
    ucounts, which = np.unique(counts, return_inverse=True)
    which = which.reshape(-1)
    covs = np.linalg.inv(Bi[None] + ucounts[:, None, None] * Wi[None])
    rhs = (Bi @ model.mu)[None] + counts[:, None] * (means @ Wi)
    m = np.empty_like(rhs)
    for u, c in enumerate(covs):
        sel = which == u
        m[sel] = rhs[sel] @ c                          # c symmetric
    return m, covs, which


def fit_plda(X: np.ndarray, y, n_iter: int = 10, callback=None) -> PLDA:
    """Two-covariance PLDA by EM, from the within/between covariances (``callback(it, model)``
    after every pass)."""
    X = np.asarray(X, dtype=np.float64)
    inv, counts, means = _class_means(X, y)
    Sw, Sb = within_between(X, y)
    d = X.shape[1]
    jitter = 1e-6 * np.eye(d) * max(np.trace(Sw) / d, 1e-12)
    model = PLDA(X.mean(axis=0), Sb + jitter, Sw + jitter)
    sums = means * counts[:, None]
    xx = X.T @ X
    for it in range(n_iter):
        m, covs, which = _posterior_y(model, means, counts)
        per = np.bincount(which, minlength=len(covs)).astype(float)           # speakers per distinct count
        frames = np.bincount(which, weights=counts, minlength=len(covs))      # their recordings
        mu = m.mean(axis=0)
        Sb = (np.einsum("u,ude->de", per, covs) + m.T @ m) / len(m) - np.outer(mu, mu)
        cross = sums.T @ m
        Syy = np.einsum("u,ude->de", frames, covs) + (m * counts[:, None]).T @ m    # sum_s n_s E[y y^T]
        Sw = (xx - cross - cross.T + Syy) / len(X)
        model = PLDA(mu, (Sb + Sb.T) / 2, (Sw + Sw.T) / 2)
        if callback is not None:
            callback(it, model)
    return model


def plda_llr(model: PLDA, enrol_means: np.ndarray, enrol_counts: np.ndarray, tests: np.ndarray) -> np.ndarray:
    """LLR (nats) of paired rows: test ``tests[i]`` against a speaker enrolled with
    ``enrol_counts[i]`` vectors of mean ``enrol_means[i]`` (M, d), (M,), (M, d) -> (M,).

    ``log N(t; m_n, Sw + L_n^{-1}) - log N(t; mu, Sb + Sw)``, ``L_n = Sb^{-1} + n Sw^{-1}``,
    ``m_n`` the posterior mean of the speaker variable: the same-speaker over different-speaker
    likelihood ratio of the stacked vectors (by the model).
    """
    import scipy.linalg
    from scipy.stats import multivariate_normal
    enrol_means = np.atleast_2d(np.asarray(enrol_means, dtype=np.float64))
    tests = np.atleast_2d(np.asarray(tests, dtype=np.float64))
    counts = np.asarray(enrol_counts, dtype=np.float64).reshape(-1)
    m, covs, which = _posterior_y(model, enrol_means, counts)
    out = -multivariate_normal(model.mu, model.Sb + model.Sw).logpdf(tests).reshape(-1)
    for u, cov in enumerate(covs):                    # the predictive covariance depends on n only
        sel = np.flatnonzero(which == u)
        c = cov + model.Sw
        chol = np.linalg.cholesky(c)
        z = scipy.linalg.solve_triangular(chol, (tests[sel] - m[sel]).T, lower=True)
        out[sel] += -0.5 * (z * z).sum(axis=0) - np.log(np.diag(chol)).sum() - len(c) / 2 * np.log(2 * np.pi)
    return out


class PLDATerms:
    """What :class:`PLDAScorer` needs of a PLDA model, computed once per model: the inverses
    ``Sb^-1``, ``Sw^-1``, the whitening of the different-speaker density ``N(mu, Sb + Sw)``
    and, per enrolment count n (kept as they are asked for), the speaker posterior covariance
    ``(Sb^-1 + n Sw^-1)^-1``, the predictive precision ``P_n^-1`` and ``log|P_n|``."""

    def __init__(self, model: PLDA) -> None:
        import scipy.linalg          # (here: a command that only opens a store imports no SciPy)
        d = model.mu.shape[0]
        self.model, self.d = model, d
        self.Bi, self.Wi = np.linalg.inv(model.Sb), np.linalg.inv(model.Sw)
        chol = np.linalg.cholesky(model.Sb + model.Sw)
        self.null_white = scipy.linalg.solve_triangular(chol, np.eye(d), lower=True)      # L^-1
        self.null_const = -np.log(np.diag(chol)).sum() - d / 2 * np.log(2 * np.pi)
        self._per_count: dict[float, tuple[np.ndarray, np.ndarray, float]] = {}

    def count(self, n: float) -> tuple[np.ndarray, np.ndarray, float]:
        """(posterior covariance, predictive precision, log|P_n|) of a speaker of count ``n``."""
        hit = self._per_count.get(float(n))
        if hit is None:
            cov = np.linalg.inv(self.Bi + n * self.Wi)
            chol = np.linalg.cholesky(cov + self.model.Sw)
            import scipy.linalg
            inv_chol = scipy.linalg.solve_triangular(chol, np.eye(self.d), lower=True)
            hit = self._per_count[float(n)] = (cov, inv_chol.T @ inv_chol, 2.0 * np.log(np.diag(chol)).sum())
        return hit

    def null(self, tests: np.ndarray) -> np.ndarray:
        """``log N(t; mu, Sb + Sw)`` of tests (B, d) -> (B,)."""
        z = (tests - self.model.mu) @ self.null_white.T
        return -0.5 * np.einsum("bd,bd->b", z, z) + self.null_const


@dataclass
class PLDAScorer:
    """:func:`plda_llr` of many tests against many enrolled speakers as one matrix product.

    The predictive covariance ``P_n = Sw + L_n^{-1}`` depends on a speaker's count n only, so
    ``log N(t; m_s, P_n) = t^T A_s - 1/2 t^T P_n^{-1} t + c_s`` with ``A_s = P_n^{-1} m_s`` (S, d)
    and ``c_s = -1/2 (m_s^T A_s + log|P_n| + d log 2pi)`` (S,) computed once per enrolment
    (:meth:`prepare`); a batch of tests (B, d) is then ``tests @ A.T`` (one gemm), plus one
    quadratic form per test and distinct count, minus the different-speaker density."""

    terms: PLDATerms
    A: np.ndarray
    c: np.ndarray
    which: np.ndarray
    precisions: np.ndarray

    @classmethod
    def prepare(cls, model: PLDA | PLDATerms, enrol_means: np.ndarray, enrol_counts: np.ndarray) -> "PLDAScorer":
        """The per-speaker terms of speakers enrolled with ``enrol_counts`` (S,) vectors of mean
        ``enrol_means`` (S, d) in back-end space (``model``: the PLDA, or its :class:`PLDATerms`
        computed once)."""
        terms = model if isinstance(model, PLDATerms) else PLDATerms(model)
        d = terms.d
        means = np.asarray(enrol_means, dtype=np.float64).reshape(-1, d)
        counts = np.asarray(enrol_counts, dtype=np.float64).reshape(-1)
        ucounts, which = np.unique(counts, return_inverse=True)
        which = which.reshape(-1)
        per = [terms.count(n) for n in ucounts]
        prec = np.array([p[1] for p in per]).reshape(-1, d, d)
        logdet = np.array([p[2] for p in per])
        rhs = (terms.Bi @ terms.model.mu)[None] + counts[:, None] * (means @ terms.Wi)
        m = np.empty_like(rhs)
        A = np.empty_like(rhs)
        for u, (cov, P, _) in enumerate(per):
            sel = which == u
            m[sel] = rhs[sel] @ cov                        # the speakers' posterior means
            A[sel] = m[sel] @ P
        c = -0.5 * (np.einsum("sd,sd->s", m, A) + logdet[which] + d * np.log(2 * np.pi))
        return cls(terms, A, c, which, prec)

    def scores(self, tests: np.ndarray) -> np.ndarray:
        """LLRs (B, S) of tests (B, d) against every prepared speaker (nats)."""
        t = np.atleast_2d(np.asarray(tests, dtype=np.float64))
        quad = np.einsum("bd,ude,be->bu", t, self.precisions, t)
        return t @ self.A.T + self.c[None, :] - 0.5 * quad[:, self.which] - self.terms.null(t)[:, None]


# ----------------------------------------------------------------------------- the chain
@dataclass
class Backend:
    """Centring (``mean`` (R,)), optional LDA (``lda`` (R, d)), optional WCCN (``wccn`` (d, d)),
    length normalisation, and a PLDA model in the transformed space."""

    mean: np.ndarray
    lda: np.ndarray | None = None
    wccn: np.ndarray | None = None
    plda: PLDA | None = None
    ubm_fingerprint: str = ""
    meta: dict = field(default_factory=dict)
    #: The fingerprint of the i-vector extractor whose i-vectors it was trained on
    #: (:attr:`speaker.ivector.TotalVariability.fingerprint`; "" unknown).
    ivector_fingerprint: str = ""

    @property
    def fingerprint(self) -> str:
        """SHA-256 naming this back-end (its parameters and its extractor's fingerprint):
        speaker models enrolled through it carry it."""
        from .model_io import fingerprint
        p = self.plda
        return fingerprint("gmmext-speaker-backend", self.ivector_fingerprint, self.mean, self.lda, self.wccn,
                           *((p.mu, p.Sb, p.Sw) if p is not None else (None,)))

    def transform(self, X: np.ndarray) -> np.ndarray:
        """i-vectors (N, R) -> back-end space (N, d): centre, LDA, WCCN, length-normalise."""
        Z = np.atleast_2d(np.asarray(X, dtype=np.float64)) - self.mean
        if self.lda is not None:
            Z = Z @ self.lda
        if self.wccn is not None:
            Z = Z @ self.wccn
        return length_norm(Z)


def train_backend(X: np.ndarray, y, *, lda_dim: int | None = None, wccn: bool = False,
                  plda_iters: int = 10) -> Backend:
    """Fit the chain on training i-vectors ``X`` (N, R) of speakers ``y`` (each step on the
    output of the previous one)."""
    X = np.asarray(X, dtype=np.float64)
    be = Backend(X.mean(axis=0))
    Z = X - be.mean
    if lda_dim:
        be.lda = fit_lda(Z, y, lda_dim)
        Z = Z @ be.lda
    if wccn:
        be.wccn = fit_wccn(Z, y)
        Z = Z @ be.wccn
    Z = length_norm(Z)
    be.plda = fit_plda(Z, y, plda_iters)
    return be


def enrol(backend: Backend, groups: list[np.ndarray], *, average: bool = False
          ) -> tuple[np.ndarray, np.ndarray]:
    """Speaker models from raw i-vectors, one (n_s, R) array per speaker: (means (S, d),
    counts (S,)) in back-end space.  ``average=True``: the mean i-vector, length-normalised,
    counted as one recording (i-vector averaging); else the mean of the n_s transformed vectors
    with count n_s (the by-the-model PLDA enrolment)."""
    means, counts = [], []
    for g in groups:
        Z = backend.transform(g)
        if average:
            means.append(length_norm(Z.mean(axis=0, keepdims=True))[0])
            counts.append(1)
        else:
            means.append(Z.mean(axis=0))
            counts.append(len(Z))
    return np.asarray(means), np.asarray(counts, dtype=np.float64)


def save_backend(path: str | os.PathLike, be: Backend, config=None, *, overwrite: bool = True) -> None:
    """Write ``be`` as ``.npz`` (atomically, bound to the UBM's fingerprint; ``overwrite=False``
    refuses an existing file)."""
    from .model_io import save_npz
    p = be.plda
    save_npz(path, BACKEND_FORMAT, BACKEND_VERSION, "backend", be.ubm_fingerprint, config, overwrite=overwrite,
             ivector_fingerprint=np.array(be.ivector_fingerprint),
             mean=be.mean, lda=be.lda, wccn=be.wccn, plda_mu=p.mu, plda_Sb=p.Sb, plda_Sw=p.Sw)


def load_backend(path: str | os.PathLike, ubm=None, rank: int | None = None, tv=None) -> Backend:
    """Read and validate a back-end file (shapes consistent, covariances positive definite).

    ``tv`` (a :class:`speaker.ivector.TotalVariability`): the back-end must have been trained on
    its i-vectors (same fingerprint), else ModelError; a file of an earlier version, which does
    not name its extractor, is refused then too (train it again)."""
    from .model_io import ArraySpec, load_npz
    from .model_io import ModelError
    R, sq = (MAX_RANK,), (MAX_RANK, MAX_RANK)                  # every axis at most the largest rank
    fp, a = load_npz(path, BACKEND_FORMAT, BACKEND_VERSION, "backend", ubm,
                     dict(mean=ArraySpec(1, most=R), lda=ArraySpec(2, True, most=sq),
                          wccn=ArraySpec(2, True, most=sq), plda_mu=ArraySpec(1, most=R),
                          plda_Sb=ArraySpec(2, most=sq), plda_Sw=ArraySpec(2, most=sq),
                          ivector_fingerprint=ArraySpec(0, optional=True, text=True)))
    ext = str(a["ivector_fingerprint"][()]) if a["ivector_fingerprint"] is not None else ""
    if tv is not None and ext != tv.fingerprint:
        raise ModelError(f"{path}: " + (
            "this back-end was trained on the i-vectors of another extractor (fingerprint "
            f"{ext[:12]}...), not the given one ({tv.fingerprint[:12]}...)" if ext else
            "this back-end file does not name the i-vector extractor it was trained on (made by an earlier "
            "version): train it again with 'speaker train-plda' and this extractor"))
    why = backend_arrays_problem(a, rank)
    if why is not None:
        raise ModelError(f"{path}: not a usable backend file: {why}")
    return Backend(a["mean"], a["lda"], a["wccn"], PLDA(a["plda_mu"], a["plda_Sb"], a["plda_Sw"]), fp,
                   ivector_fingerprint=ext)


#: The arrays of a back-end (``lda`` and ``wccn`` may be None), as a file or a store keeps them.
BACKEND_ARRAYS = ("mean", "lda", "wccn", "plda_mu", "plda_Sb", "plda_Sw")


def backend_arrays_problem(a: dict, rank: int | None = None) -> str | None:
    """Why the arrays of a back-end (:data:`BACKEND_ARRAYS`, read from an untrusted file or
    store, each within :data:`speaker.limits.MAX_RANK`) are not a usable one, or None: shapes
    consistent (with the extractor's ``rank`` when given), values finite, PLDA covariances
    positive definite."""
    R = len(a["mean"])
    d = a["lda"].shape[1] if a["lda"] is not None else R
    ok = ((rank is None or R == rank) and (a["lda"] is None or a["lda"].shape[0] == R)
          and (a["wccn"] is None or a["wccn"].shape == (d, d)) and a["plda_mu"].shape == (d,)
          and a["plda_Sb"].shape == (d, d) and a["plda_Sw"].shape == (d, d))
    if not ok:
        return f"inconsistent shapes{'' if rank is None else f' (the i-vector extractor has rank {rank})'}"
    if not all(np.isfinite(a[k]).all() for k in BACKEND_ARRAYS if a[k] is not None):
        return "values are not finite"
    for key in ("plda_Sb", "plda_Sw"):
        try:
            np.linalg.cholesky(a[key])
        except np.linalg.LinAlgError:
            return f"{key!r} is not positive definite"
    return None
