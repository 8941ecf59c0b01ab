#!/usr/bin/env python
"""gmmext against the other Gaussian-mixture libraries on this CPU, from the same initialisation.

N=200,000 frames, D=39, K=256, diagonal covariances, float32 and float64 (``--dtypes``), every
library on the same thread count (``--threads``, default all cores: torch's
``set_num_threads``, BLAS / OpenMP through threadpoolctl).  The data are drawn from a known
K-component mixture; every library starts from the same parameters (means: K rows drawn from
the data, weights equal, variances the data's global variance).

Per library and dtype:

* **per iteration**: ``(t(fit, iters + 1 iterations) - t(fit, 1 iteration)) / iters``, so the
  set-up a fit pays once (validation, conversion, an initial E-step) is not counted;
* **log-likelihood** (nats per frame) of the data under the model after ``iters + 1`` iterations
  from the shared start, computed by scikit-learn's ``score`` from the returned parameters, so a
  fast wrong answer shows;
* **whole fit** with the same start, up to ``--fit-iters`` iterations, ``tol`` 1e-3 (each
  library's own stopping rule where it has one), and its log-likelihood likewise.

Peers come from their own optional installs and are skipped with the reason when absent:
scikit-learn (a dependency), PyCave 3.2.1 (``pip install pycave``), torchgmm (``pip install
torchgmm``), pomegranate 1.x (``pip install pomegranate``); ``pip install ".[peers]"`` installs
those three.

Examples::

    python benchmarks/bench_peers.py --out benchmarks/results_peers.txt
    python benchmarks/bench_peers.py -n 20000 -k 64 --iters 2 --fit-iters 5      # quick
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Report  # noqa: E402


class Skip(Exception):
    """A peer that cannot run here (not installed), with the reason."""


def _torch(threads: int):
    try:
        import torch
    except ImportError as exc:
        raise Skip(f"not installed (torch: {exc})") from None
    torch.set_num_threads(threads)
    return torch


# ----------------------------------------------------------------------------- the libraries
# Each: fit(X, start, iters, tol) -> (weights, means, variances) as float64 numpy arrays.
def fit_gmmext(X, start, iters, tol, threads):
    from gmmext import GaussianMixture
    w, mu, var = start
    gm = GaussianMixture(len(w), covariance_type="diag", max_iter=iters, tol=tol, init_params="random",
                         weights_init=w, means_init=mu, precisions_init=1 / var, n_threads=threads,
                         reg_covar=1e-6)
    gm.fit(X)
    return gm.weights_, gm.means_, gm.covariances_


def fit_sklearn(X, start, iters, tol, threads):
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits
    w, mu, var = start
    with threadpool_limits(threads):
        gm = GaussianMixture(len(w), covariance_type="diag", max_iter=iters, tol=tol, init_params="random",
                             weights_init=w, means_init=mu, precisions_init=1 / var, reg_covar=1e-6)
        gm.fit(X)
    return gm.weights_, gm.means_, gm.covariances_


def _fit_lightning(module: str, X, start, iters, tol, threads):
    torch = _torch(threads)
    try:
        mod = __import__(module + ".bayes", fromlist=["GaussianMixture"])
    except ImportError as exc:
        raise Skip(f"not installed ({module}: {exc})") from None
    w, mu, var = start
    gm = mod.GaussianMixture(num_components=len(w), covariance_type="diag", init_means=torch.from_numpy(mu).to(
        torch.from_numpy(X[:1]).dtype), convergence_tolerance=tol, batch_size=None,
        trainer_params=dict(max_epochs=iters, accelerator="cpu", devices=1, enable_progress_bar=False,
                            enable_model_summary=False, logger=False, enable_checkpointing=False))
    gm.fit(torch.from_numpy(X))
    p = gm.model_
    return (p.component_probs.double().numpy(), p.means.double().numpy(), p.precisions_cholesky.double().numpy() ** -2)


def fit_pycave(X, start, iters, tol, threads):
    return _fit_lightning("pycave", X, start, iters, tol, threads)


def fit_torchgmm(X, start, iters, tol, threads):
    return _fit_lightning("torchgmm", X, start, iters, tol, threads)


def fit_pomegranate(X, start, iters, tol, threads):
    torch = _torch(threads)
    try:
        from pomegranate.distributions import Normal
        from pomegranate.gmm import GeneralMixtureModel
    except ImportError as exc:
        raise Skip(f"not installed (pomegranate: {exc})") from None
    w, mu, var = start
    dt = torch.from_numpy(X[:1]).dtype
    comps = [Normal(means=torch.from_numpy(mu[k]).to(dt), covs=torch.from_numpy(var[k]).to(dt),
                    covariance_type="diag") for k in range(len(w))]
    gm = GeneralMixtureModel(comps, priors=torch.from_numpy(w).to(dt), max_iter=iters, tol=tol, inertia=0.0,
                             init="first-k", verbose=False)
    gm.fit(torch.from_numpy(X))
    W = gm.priors.double().numpy()
    return W, np.stack([c.means.double().numpy() for c in gm.distributions]), \
        np.stack([c.covs.double().numpy() for c in gm.distributions])


LIBRARIES = {"gmmext": fit_gmmext, "scikit-learn": fit_sklearn, "PyCave": fit_pycave, "torchgmm": fit_torchgmm,
             "pomegranate": fit_pomegranate}


def loglik(X, params) -> float:
    """Average log-likelihood (nats per frame) of X under (weights, means, variances), by scikit-learn."""
    from sklearn.mixture import GaussianMixture
    w, mu, var = (np.asarray(a, dtype=np.float64) for a in params)
    gm = GaussianMixture(len(w), covariance_type="diag")
    gm.weights_, gm.means_, gm.covariances_ = w / w.sum(), mu, var
    gm.precisions_cholesky_ = 1 / np.sqrt(var)
    return float(gm.score(X.astype(np.float64)))


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=200_000, help="frames (default 200000)")
    ap.add_argument("-d", type=int, default=39, help="dimensions (default 39)")
    ap.add_argument("-k", type=int, default=256, help="components (default 256)")
    ap.add_argument("--dtypes", default="float32,float64", help="comma-separated (default float32,float64)")
    ap.add_argument("--iters", type=int, default=5, help="iterations timed per library (default 5)")
    ap.add_argument("--fit-iters", type=int, default=20, help="iteration cap of the whole fit (default 20)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads of every library")
    ap.add_argument("--only", help="comma-separated libraries to run (default all)")
    ap.add_argument("--out", help="also write the report to this file")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    rep = Report(argv, __file__)
    rng = np.random.default_rng(0)
    N, D, K = args.n, args.d, args.k
    centres = rng.normal(scale=2.0, size=(K, D))
    X64 = centres[rng.integers(0, K, N)] + rng.normal(scale=rng.uniform(0.5, 1.5, size=D), size=(N, D))
    start = (np.full(K, 1 / K), X64[rng.choice(N, K, replace=False)], np.tile(X64.var(axis=0), (K, 1)))
    libs = [n for n in LIBRARIES if not args.only or n in args.only.split(",")]
    rep(f"N={N}, D={D}, K={K}, diagonal, {args.threads} thread(s), the same start for every library; "
        f"per iteration = (t({args.iters + 1} iterations) - t(1)) / {args.iters}; log-likelihood by "
        "scikit-learn's score (nats per frame) after the same iterations")
    rep()
    rep(f"{'library':14s} {'dtype':8s} {'s/iteration':>12s} {'vs gmmext':>10s} {'loglik after ' + str(args.iters + 1):>18s} "
        f"{'whole fit s':>12s} {'loglik':>10s}")
    for dt in args.dtypes.split(","):
        X = X64.astype(dt)
        st = tuple(a.astype(dt) for a in start)
        base = None
        for name in libs:
            fit = LIBRARIES[name]
            try:
                fit(X[:2000], st, 1, 0.0, args.threads)                       # imports, warm-up
                t1, _ = timed(fit, X, st, 1, 0.0, args.threads)
                tn, pn = timed(fit, X, st, args.iters + 1, 0.0, args.threads)
                per = max(tn - t1, 0.0) / args.iters
                tf, pf = timed(fit, X, st, args.fit_iters, 1e-3, args.threads)
            except Skip as exc:
                rep(f"{name:14s} {dt:8s} skipped: {exc}")
                continue
            except Exception as exc:  # noqa: BLE001 - a peer's API changed: say so, go on
                rep(f"{name:14s} {dt:8s} failed: {type(exc).__name__}: {str(exc)[:120]}")
                continue
            base = per if name == "gmmext" else base
            rep(f"{name:14s} {dt:8s} {per:12.4f} {per / base if base else float('nan'):9.1f}x "
                f"{loglik(X, pn):18.5f} {tf:12.2f} {loglik(X, pf):10.5f}")
    rep.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
