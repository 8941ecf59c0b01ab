"""Initialisation statistics of every fit, on an abstract source of rows.

:func:`init_stats` returns the :class:`~gmmext.GMMStats` of the initial assignment; the M-step
turns them into the initial parameters.  It works on any *row source* (an in-memory array, a
memmap or array-like read in blocks, a Dask array) through this interface:

* ``n_rows``, ``n_features``, ``dtype``: the data's shape and the dtype it is fitted in;
* ``take(idx)``: the rows ``idx`` (sorted, int64; ``None``: all rows) as an (n, D) ndarray of
  ``dtype`` and their sample weights (float64 (n,) or None), validated;
* ``local``: True when ``stream(step)`` exists, yielding (rows, weights) for consecutive
  ``step``-row slices of all the data in order (sources read in this process);
* ``in_memory``: True when ``take(None)`` costs nothing (the rows are one ndarray).

The rules, the same for every source kind (so the same rows drawn from the same
``random_state`` give the same initial model), with N rows, K components and
``kms`` = :func:`max_samples` of ``kmeans_max_samples`` (``"auto"``, the default:
``max(AUTO_MIN_SAMPLES, AUTO_SAMPLES_PER_COMPONENT * K)`` rows, 10,000 for K <= 100;
``None``: N, every row, scikit-learn's initialisation whatever N; an int: that many):

* ``"kmeans"``: scikit-learn's ``KMeans(n_clusters=K, n_init=1)`` on all rows when
  N <= kms (exactly scikit-learn's initialisation), otherwise ``KMeans(n_clusters=K,
  n_init=min(3, N // kms), max_iter=20)`` (the lowest inertia of those runs) on kms rows drawn
  from ``random_state`` without replacement (:func:`sample_rows`, O(kms) memory), on one OpenMP
  thread per 2**22 (rows x K); the statistics are the hard assignment *of those rows*
  (no pass labelling every frame).  ``GaussianMixture`` then runs EM on 3 kms other rows
  drawn from ``random_state`` (:func:`sample_em_rows`) when 3 kms <= N // 2, until an iteration
  gains less than :func:`sample_em_tol` (at most ``SAMPLE_EM_MAX_ITER`` iterations);
* ``"random"``: scikit-learn's random responsibilities ``uniform(size=(N, K))``, normalised per
  row, streamed over all rows in order for a local source (the numbers scikit-learn draws); a
  Dask array, where that would draw N x K numbers on the client, takes them for all rows when
  N <= kms and for a kms-row sample otherwise;
* ``"random_from_data"``: K distinct rows drawn from ``random_state``, one per component: the rows
  of scikit-learn's ``random_state.choice(N, K, replace=False)`` (:func:`choice_rows`, the same
  numbers in O(K) memory, not 8 bytes per row);
* ``"k-means++"``: scikit-learn's ``kmeans_plusplus`` seeds, one row per component, on all rows
  for an in-memory array or when N <= kms, on a kms-row sample otherwise.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse

from ._engine import available_threads
from ._stats import GMMStats

__all__ = ["init_stats", "sample_em_rows", "SAMPLE_EM_FACTOR", "SAMPLE_EM_MAX_ITER", "sample_em_tol",
           "KMEANS_SAMPLE_MAX_ITER",
           "hard_stats", "random_resp_stats", "sample_rows", "choice_rows", "max_samples",
           "RANDOM_STEP_VALUES", "AUTO_MIN_SAMPLES", "AUTO_SAMPLES_PER_COMPONENT"]

#: ``kmeans_max_samples="auto"``: KMeans on max(AUTO_MIN_SAMPLES, AUTO_SAMPLES_PER_COMPONENT * K)
#: rows at most.  Measured by ``benchmarks/bench_fit.py`` (README, "A whole fit"): on 100,000 rows,
#: K=64, the whole fit is >= 5x scikit-learn's, with a held-out log-likelihood as good.
#: 100 rows per component, not 50: on speech frames (speechocean762 MFCCs, 200,000 x 60) at K=256
#: and 512, 50 left the fit's lower bound 0.035-0.036 nats below scikit-learn's (outside its spread
#: over random_state) and the held-out log-likelihood 0.016 below (``benchmarks/bench_fit_speech.py``,
#: ``benchmarks/results_fit_speech.txt``).
AUTO_MIN_SAMPLES = 10_000
AUTO_SAMPLES_PER_COMPONENT = 100
#: KMeans on a sample uses one OpenMP thread per this many (sampled rows x K) (at least one).
KMEANS_WORK_PER_THREAD = 1 << 22
#: KMeans on a sample of S of N rows: min(KMEANS_SAMPLE_N_INIT, N // S) runs, the best kept
#: (scikit-learn's ``n_init``): a better start than one run, on no more rows than one run on all.
KMEANS_SAMPLE_N_INIT = 3
#: ... each of at most KMEANS_SAMPLE_MAX_ITER Lloyd iterations (scikit-learn's default is 300): the
#: EM on a larger sample that follows (SAMPLE_EM_*) moves the centres further anyway.
KMEANS_SAMPLE_MAX_ITER = 20

#: EM's default convergence threshold (scikit-learn's): the mixtures' ``tol`` and the sampled
#: start's when ``tol=0`` (:func:`sample_em_tol`).
DEFAULT_TOL = 1e-3

#: A sampled KMeans start (``"kmeans"``, N > kms) is followed by EM on SAMPLE_EM_FACTOR * kms other
#: rows drawn from ``random_state`` when that is at most half the rows (:func:`sample_em_rows`;
#: ``GaussianMixture`` runs it until an iteration gains less than :func:`sample_em_tol`, at most
#: SAMPLE_EM_MAX_ITER iterations), then EM on all rows.
SAMPLE_EM_FACTOR = 3
SAMPLE_EM_MAX_ITER = 100

#: Random responsibilities are drawn in slices of about this many numbers (rows x K).
RANDOM_STEP_VALUES = 1 << 19


def _second_order(W, Xc, full: bool) -> np.ndarray:
    """``W @ Xc**2`` (K, D), or with ``full`` the (K, D, D) matrices ``sum_i W_ki x_i x_i^T``."""
    if not full:
        return W @ (Xc * Xc)
    W = W.toarray() if sparse.issparse(W) else np.asarray(W, dtype=np.float64)
    out = np.empty((W.shape[0], Xc.shape[1], Xc.shape[1]))
    for k, wk in enumerate(W):                  # per component: only the rows it holds
        nz = wk != 0
        Xk = Xc[nz]
        out[k] = (Xk * wk[nz, None]).T @ Xk
    return out


def hard_stats(X, labels, sw, K, full: bool = False) -> GMMStats:
    """Statistics of a hard assignment: row ``i`` belongs (with weight ``sw[i]``) to ``labels[i]``.

    X (n, D), labels (n,) in [0, K), sw (n,) or None; computed in float64 in 65536-row pieces.
    ``full``: second order as (K, D, D) matrices (full / tied models).
    """
    N, D = X.shape
    stats = GMMStats.zeros(K, D, full)
    step = 65536
    for s in range(0, N, step):
        lab = np.asarray(labels[s:s + step])
        Xc = np.asarray(X[s:s + step], dtype=np.float64)
        w = np.ones(len(lab)) if sw is None else sw[s:s + step]
        # one-hot (K, rows) sparse matrix times the block: O(rows * D)
        onehot = sparse.csr_matrix((w, (lab, np.arange(len(lab)))), shape=(K, len(lab)))
        stats = stats + GMMStats(np.bincount(lab, weights=w, minlength=K), onehot @ Xc,
                                 _second_order(onehot, Xc, full), 0.0, w.sum())
    return stats


def random_resp_stats(pieces, K, random_state, dtype, full: bool = False) -> GMMStats:
    """Statistics of scikit-learn's random responsibilities over (rows, weights) pieces in order.

    Each row draws ``K`` uniforms from ``random_state`` (in the dtype of the data, as
    scikit-learn does) normalised to sum to 1, then times its weight.
    """
    stats = None
    for X, sw in pieces:
        R = random_state.uniform(size=(X.shape[0], K)).astype(dtype)
        R /= R.sum(axis=1)[:, None]
        if sw is not None:
            R *= sw[:, None]
        Xc = np.asarray(X, dtype=np.float64)
        part = GMMStats(R.sum(axis=0), R.T @ Xc, _second_order(R.T, Xc, full), 0.0, R.sum())
        stats = part if stats is None else stats + part
    return stats


def sample_rows(n_rows: int, size: int, random_state) -> np.ndarray:
    """``size`` distinct row indices in [0, n_rows), sorted, drawn from ``random_state``.

    The draw uses a ``numpy.random.Generator`` seeded by one number from ``random_state``, whose
    ``choice(replace=False)`` needs O(size) memory (``RandomState.choice`` permutes all
    ``n_rows``: 8 bytes per row of a data set that may not fit in memory).
    """
    rng = np.random.default_rng(random_state.randint(np.iinfo(np.int64).max, dtype=np.int64))
    return np.sort(rng.choice(n_rows, size=size, replace=False))


#: Steps of the shuffle drawn at once by :func:`choice_rows` (at least; at most 1024 blocks).
CHOICE_BLOCK = 1 << 16


def choice_rows(n_rows: int, size: int, random_state, block: int = CHOICE_BLOCK) -> np.ndarray:
    """``random_state.choice(n_rows, size, replace=False)``: the same numbers, the same final state
    of ``random_state``, in O(size + block) memory instead of 8 bytes per row.

    ``RandomState.choice`` returns ``permutation(n_rows)[:size]``: a Fisher-Yates shuffle of
    ``arange(n_rows)`` (``for i = n-1 .. 1: swap(a[i], a[j_i])``, ``j_i`` =
    ``randint(0, i + 1)`` drawn in that order, which a ``randint`` with an array of upper bounds
    reproduces).  Here the draws are made in blocks of steps, keeping only the generator's state at
    each block's start; then, block by block from the last, the draws are made again and the
    ``size`` final positions are traced back through the swaps (a position moves only when a swap
    touches it, about ``size * (1 + ln(n_rows / size))`` times in all) to the values they started
    with: their index in ``arange``.
    """
    n, k = int(n_rows), int(size)
    block = max(int(block), -(-(n - 1) // 1024), 1)
    if n - 1 <= 2 * block:
        return random_state.choice(n, size=k, replace=False)
    starts = list(range(0, n - 1, block))
    states = []
    for t0 in starts:                                 # forward: consume the draws, keep the states
        states.append(random_state.get_state())
        random_state.randint(0, np.arange(n - t0, max(n - t0 - block, 1), -1))
    final = random_state.get_state()
    where = {p: p for p in range(k)}                  # current position -> output slot
    for b in reversed(range(len(starts))):
        random_state.set_state(states[b])
        t0 = starts[b]
        I = np.arange(n - 1 - t0, max(n - 1 - t0 - block, 0), -1)
        J = random_state.randint(0, I + 1)[::-1]      # in the order the swaps are undone: i ascending
        _undo_swaps(where, int(I[-1]), J)
    random_state.set_state(final)
    out = np.empty(k, dtype=np.int64)
    for p, slot in where.items():
        out[slot] = p
    return out


def _undo_swaps(where: dict, a: int, J: np.ndarray) -> None:
    """Undo the swaps ``(a + u, J[u])`` for u = 0, 1, ... (the reverse of the shuffle's order),
    moving the tracked positions of ``where`` (position -> output slot) in place."""
    import heapq
    L = len(J)
    order = np.argsort(J, kind="stable")              # equal J: ascending step, so the first is the next
    Js = J[order]

    def next_step(p: int, after: int) -> int:
        u = p - a if after < p - a < L else L
        lo = int(np.searchsorted(Js, p, "left"))
        hi = int(np.searchsorted(Js, p, "right"))
        if lo < hi:
            r = lo + int(np.searchsorted(order[lo:hi], after, "right"))
            if r < hi:
                u = min(u, int(order[r]))
        return u

    pos = np.fromiter(where.keys(), dtype=np.int64, count=len(where))
    u_i = np.where((pos >= a) & (pos < a + L), pos - a, L)
    lo = np.minimum(np.searchsorted(Js, pos, "left"), L - 1)
    u_j = np.where(Js[lo] == pos, order[lo], L)
    first = np.minimum(u_i, u_j)
    nxt = {int(p): int(u) for p, u in zip(pos, first) if u < L}
    heap = [(u, p) for p, u in nxt.items()]
    heapq.heapify(heap)
    while heap:
        u, p = heapq.heappop(heap)
        if nxt.get(p) != u:
            continue                                   # stale: the position moved or was handled
        i, j = a + u, int(J[u])
        si, sj = where.pop(i, None), where.pop(j, None)
        nxt.pop(i, None)
        nxt.pop(j, None)
        if si is not None:
            where[j] = si
        if sj is not None:
            where[i] = sj
        for q in {i, j}:
            if q in where:
                v = next_step(q, u)
                if v < L:
                    nxt[q] = v
                    heapq.heappush(heap, (v, q))


def _take_in_order(src, idx: np.ndarray):
    """Rows ``idx`` (any order, distinct) of ``src`` in that order, with their weights."""
    order = np.argsort(idx, kind="stable")
    rows_sorted, w_sorted = src.take(idx[order])
    rows = np.empty_like(rows_sorted)
    rows[order] = rows_sorted
    w = None
    if w_sorted is not None:
        w = np.empty_like(w_sorted)
        w[order] = w_sorted
    return rows, w


def max_samples(kmeans_max_samples, n_rows: int, K: int) -> int:
    """Rows a sampled initialisation may use: ``kmeans_max_samples`` (an int), ``n_rows`` for
    None (every row), ``max(AUTO_MIN_SAMPLES, AUTO_SAMPLES_PER_COMPONENT * K)`` for ``"auto"``."""
    if kmeans_max_samples is None:
        return int(n_rows)
    if isinstance(kmeans_max_samples, str):           # "auto" (validated at the boundary)
        return max(AUTO_MIN_SAMPLES, AUTO_SAMPLES_PER_COMPONENT * int(K))
    return int(kmeans_max_samples)


def sample_em_tol(tol: float, n_sample: int, n_rows: int) -> float:
    """Smallest gain of the sample's average log-likelihood (nats per row) for which the EM on the
    sample goes on: ``tol * n_sample / n_rows``.

    The fit on all rows stops when an iteration, which reads ``n_rows`` rows, gains less than
    ``tol``; an iteration on the sample reads ``n_sample`` rows, so it is worth its cost while it
    gains at least ``tol`` per ``n_rows`` rows read.  (20 fixed iterations before: on README's
    example the fit's lower bound stayed 0.0023 nats below scikit-learn's, more than scikit-learn's
    spread over ``random_state``; ``benchmarks/bench_fit.py``.)  ``tol = 0`` (EM on all rows
    without a convergence test) says nothing about the start: :data:`DEFAULT_TOL` (scikit-learn's
    default) is used then, not a sample EM run to its cap.
    """
    return (float(tol) if tol > 0 else DEFAULT_TOL) * n_sample / n_rows


def sample_em_rows(n_rows: int, init_params: str, K: int, kmeans_max_samples, random_state):
    """Rows (sorted int64) of the EM on a sample that follows a sampled KMeans start, drawn from
    ``random_state``, or None (no such EM): ``SAMPLE_EM_FACTOR * kms`` rows when ``init_params`` is
    ``"kmeans"`` and that is at most ``n_rows // 2`` (kms = :func:`max_samples`)."""
    size = SAMPLE_EM_FACTOR * max_samples(kmeans_max_samples, n_rows, K)
    if init_params != "kmeans" or size > n_rows // 2:
        return None
    return sample_rows(n_rows, size, random_state)


def init_stats(src, init_params: str, K: int, kmeans_max_samples: int | str | None, random_state,
               full: bool = False) -> GMMStats:
    """Statistics of the initial assignment of ``src``'s rows (rules in the module docstring).

    Parameters
    ----------
    src : row source (see the module docstring)
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}
    K : int, number of components (<= src.n_rows)
    kmeans_max_samples : int, "auto" or None, largest number of rows a sampled initialisation
        uses (:func:`max_samples`)
    random_state : numpy.random.RandomState, consumed as scikit-learn consumes it
    full : bool, second order as (K, D, D) matrices (full / tied models)

    Returns
    -------
    GMMStats of shape (K, D), float64.
    """
    N = src.n_rows
    kmeans_max_samples = max_samples(kmeans_max_samples, N, K)
    if init_params == "random_from_data":
        rows, w = _take_in_order(src, choice_rows(N, K, random_state))
        return hard_stats(rows, np.arange(K), w, K, full)
    if init_params == "random" and src.local:
        step = max(1, RANDOM_STEP_VALUES // max(K, 1))
        return random_resp_stats(src.stream(step), K, random_state, src.dtype, full)
    everything = N <= kmeans_max_samples or (init_params == "k-means++" and src.in_memory)
    if not everything and kmeans_max_samples < K:
        raise ValueError(f"kmeans_max_samples={kmeans_max_samples} is below n_components={K}: "
                         f"init_params={init_params!r} needs at least one sampled row per component")
    idx = None if everything else sample_rows(N, kmeans_max_samples, random_state)
    sample, w = src.take(idx)
    if init_params == "kmeans":
        from sklearn.cluster import KMeans
        from threadpoolctl import threadpool_limits
        # All rows: scikit-learn's KMeans(n_init=1) as it runs it.  A sample: up to
        # KMEANS_SAMPLE_N_INIT runs, the lowest inertia kept, never more rows in all than N;
        # a sample's KMeans is small: its OpenMP threads spend their time in barriers (~100
        # iterations of ~40 chunks of rows), so it runs on one thread per KMEANS_WORK_PER_THREAD
        # row x component pairs (10,000 rows, K=64: 1 thread)
        n_init, threads, max_iter = 1, None, 300
        if idx is not None:
            max_iter = KMEANS_SAMPLE_MAX_ITER
            n_init = max(1, min(KMEANS_SAMPLE_N_INIT, N // len(sample)))
            threads = max(1, min(available_threads(), len(sample) * K // KMEANS_WORK_PER_THREAD))
        with threadpool_limits(limits=threads, user_api="openmp"):
            km = KMeans(n_clusters=K, n_init=n_init, max_iter=max_iter, random_state=random_state).fit(sample, sample_weight=w)
        return hard_stats(sample, km.labels_, w, K, full)
    if init_params == "random":
        return random_resp_stats([(sample, w)], K, random_state, src.dtype, full)
    from sklearn.cluster import kmeans_plusplus                                    # k-means++
    _, j = kmeans_plusplus(sample, K, random_state=random_state, sample_weight=w)
    return hard_stats(sample[j], np.arange(K), None if w is None else w[j], K, full)
