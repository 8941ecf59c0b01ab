#!/usr/bin/env python
"""gmmext against the other Gaussian-mixture libraries on this CPU, from the same initialisation.

N=200,000 frames, D=39, K=256, diagonal covariances, float32 and float64 (``--dtypes``), every
library on the same thread count (``--threads``, default all cores: torch's
``set_num_threads``, BLAS / OpenMP through threadpoolctl).  The data are drawn from a known
K-component mixture; every library starts from the same parameters (means: K rows drawn from
the data, weights equal, variances the data's global variance), covariance regularisation 1e-6
added to the variances.

Per library and dtype:

* **per iteration**: ``(t(fit, iters + 1 iterations) - t(fit, 1 iteration)) / iters``, so the
  set-up a fit pays once (validation, conversion, a trainer, an initial E-step) is not counted;
* **log-likelihood** (nats per frame) of the data under the model after ``iters + 1`` iterations
  from the shared start, computed by scikit-learn's ``score`` from the returned parameters, so a
  fast wrong answer shows;
* **whole fit** with the same start, up to ``--fit-iters`` iterations, ``tol`` 1e-3 on the change
  of the average log-likelihood per frame (each library's own stopping rule, given the same
  per-frame tolerance), and its log-likelihood likewise;
* **agrees with sklearn's EM step**: on a small case (N=4,000, D=39, K=16, same generator) the
  library's weights, means and variances after ONE iteration from the same start, against
  scikit-learn's ``GaussianMixture(max_iter=1)`` from that start in float64: the largest
  difference (weights relative, means in units of the standard deviation, variances relative),
  "yes" when under 1e-3: a wrong step (another start, a variance formula, a missed update) is far
  off.  In float64 a difference of ~1e-6 rather than ~1e-12 means the library accumulates its
  statistics in float32 (pomegranate's and torchgmm's buffers are float32 whatever the data).

How each library is given the start:

* gmmext, scikit-learn: ``weights_init``, ``means_init``, ``precisions_init``.
* PyCave, torchgmm: the public ``fit`` takes only initial means, then re-estimates weights and
  variances from a hard assignment; so the adapter builds the library's ``GaussianMixtureModel``,
  sets its ``component_probs``, ``means`` and ``precisions_cholesky`` to the start and runs the
  library's own EM module (``GaussianMixtureLightningModule``) with the estimator's trainer,
  exactly what ``fit`` does after its initialisation (including its two passes over the data per
  iteration when the data are one batch).  float64 runs with ``trainer_params["precision"]=64``.
* pomegranate: ``Normal(means, covs, covariance_type="diag")`` components and ``priors``; it has
  no additive regularisation (``min_cov`` clamps instead), so it runs without one and its EM-step
  check compares with scikit-learn at ``reg_covar=0``; its ``tol`` is on the summed
  log-likelihood, so it is given ``tol * N``.

Peers come from their own optional installs and are skipped with the reason when absent:
torchgmm and pomegranate 1.x from ``pip install ".[peers]"`` (torch; a CPU-only torch is enough).
PyCave 3.2.1 needs Python < 3.11, torch < 1.13, pytorch-lightning < 2 and numpy < 2, which
cannot live beside gmmext (numpy >= 2): give the benchmark an interpreter that has it with
``--pycave-python`` (it runs the PyCave rows in that interpreter, timed there, on the same data
and start passed through a temporary ``.npz``)::

    python3.10 -m venv /path/pycave-venv
    /path/pycave-venv/bin/pip install "pycave==3.2.1" "torch<1.13" "numpy<2"

Examples::

    python benchmarks/bench_peers.py --out benchmarks/results_peers.txt --pycave-python /path/pycave-venv/bin/python
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


class Skip(Exception):
    """A peer that cannot run here (not installed), with the reason."""


REG = 1e-6          # covariance regularisation added to the variances, where the library has one
SMALL = dict(n=4000, d=39, k=16)   # the EM-step check
TOLERANCE = 1e-3   # of the EM-step check


def _torch(threads: int):
    try:
        import torch
    except ImportError as exc:
        raise Skip(f"not installed (torch: {exc})") from None
    torch.set_num_threads(threads)
    return torch


# ----------------------------------------------------------------------------- the libraries
# Each: fit(X, start, iters, tol, threads, reg) -> (weights, means, variances) as float64 numpy
# arrays; tol None: exactly `iters` iterations, no early stop; tol: the change of the average
# log-likelihood per frame below which the library stops.
def fit_gmmext(X, start, iters, tol, threads, reg=REG):
    from gmmext import GaussianMixture
    w, mu, var = start
    gm = GaussianMixture(len(w), covariance_type="diag", max_iter=iters, tol=tol or 0.0, init_params="random",
                         weights_init=w, means_init=mu, precisions_init=1 / var, n_threads=threads,
                         reg_covar=reg)
    gm.fit(X)
    return gm.weights_, gm.means_, gm.covariances_


def fit_sklearn(X, start, iters, tol, threads, reg=REG):
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits
    w, mu, var = start
    with threadpool_limits(threads):
        gm = GaussianMixture(len(w), covariance_type="diag", max_iter=iters, tol=tol or 0.0, init_params="random",
                             weights_init=w, means_init=mu, precisions_init=1 / var, reg_covar=reg)
        gm.fit(X)
    return gm.weights_, gm.means_, gm.covariances_


def _fit_lightning(module: str, X, start, iters, tol, threads, reg):
    """PyCave / torchgmm (the same code base): the library's EM module from our start."""
    torch = _torch(threads)
    try:
        gmm = __import__(module + ".bayes.gmm", fromlist=["GaussianMixture"])
        lm = __import__(module + ".bayes.gmm.lightning_module", fromlist=["GaussianMixtureLightningModule"])
        md = __import__(module + ".bayes.gmm.model", fromlist=["GaussianMixtureModel"])
        data = __import__("lightkit.data" if module == "pycave" else module + ".base.data",
                          fromlist=["DataLoader"])
    except ImportError as exc:
        raise Skip(f"not installed ({module}: {exc})") from None
    import logging
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", module):
        logging.getLogger(name).setLevel(logging.ERROR)
    w, mu, var = start
    K, D = mu.shape
    dt = torch.from_numpy(X[:1]).dtype
    trainer_params = dict(max_epochs=iters, accelerator="cpu", devices=1, enable_progress_bar=False,
                          enable_model_summary=False, logger=False, enable_checkpointing=False)
    if dt == torch.float64:
        trainer_params["precision"] = 64
    est = gmm.GaussianMixture(num_components=K, covariance_type="diag", convergence_tolerance=tol or 0.0,
                              covariance_regularization=reg, batch_size=None, trainer_params=trainer_params)
    model = md.GaussianMixtureModel(md.GaussianMixtureModelConfig(num_components=K, num_features=D,
                                                                  covariance_type="diag")).to(dt)
    with torch.no_grad():
        model.component_probs.copy_(torch.from_numpy(w))
        model.means.copy_(torch.from_numpy(mu))
        model.precisions_cholesky.copy_(torch.from_numpy(var ** -0.5))
    est.model_ = model
    # from here on, what the estimator's fit does after its initialisation
    Xt = torch.from_numpy(X)
    loader = data.DataLoader(data.dataset_from_tensors(Xt), batch_size=len(Xt), collate_fn=data.collate_tensor)
    is_batch_training = est._num_batches_per_epoch(loader) == 1
    em = lm.GaussianMixtureLightningModule(model, convergence_tolerance=tol or 0.0, covariance_regularization=reg,
                                           is_batch_training=is_batch_training)
    est.trainer(max_epochs=iters * (1 + int(is_batch_training))).fit(em, loader)
    return (model.component_probs.double().numpy(), model.means.double().numpy(),
            model.precisions_cholesky.double().numpy() ** -2)


def fit_pycave(X, start, iters, tol, threads, reg=REG):
    return _fit_lightning("pycave", X, start, iters, tol, threads, reg)


def fit_torchgmm(X, start, iters, tol, threads, reg=REG):
    return _fit_lightning("torchgmm", X, start, iters, tol, threads, reg)


def fit_pomegranate(X, start, iters, tol, threads, reg=REG):
    torch = _torch(threads)
    try:
        from pomegranate.distributions import Normal
        from pomegranate.gmm import GeneralMixtureModel
    except ImportError as exc:
        raise Skip(f"not installed (pomegranate: {exc})") from None
    w, mu, var = start
    comps = [Normal(means=torch.from_numpy(mu[k].copy()), covs=torch.from_numpy(var[k].copy()),
                    covariance_type="diag") for k in range(len(w))]
    gm = GeneralMixtureModel(comps, priors=torch.from_numpy(w.copy()), max_iter=iters,
                             tol=-np.inf if tol is None else tol * len(X), inertia=0.0, verbose=False)
    gm.fit(torch.from_numpy(X))
    return (gm.priors.detach().double().numpy(), np.stack([c.means.detach().double().numpy() for c in gm.distributions]),
            np.stack([c.covs.detach().double().numpy() for c in gm.distributions]))


LIBRARIES = {"gmmext": fit_gmmext, "scikit-learn": fit_sklearn, "PyCave": fit_pycave, "torchgmm": fit_torchgmm,
             "pomegranate": fit_pomegranate}
NO_REG = {"pomegranate"}   # no additive covariance regularisation


def loglik(X, params) -> float:
    """Average log-likelihood (nats per frame) of X under (weights, means, variances), by scikit-learn."""
    from sklearn.mixture import GaussianMixture
    w, mu, var = (np.asarray(a, dtype=np.float64) for a in params)
    gm = GaussianMixture(len(w), covariance_type="diag")
    gm.weights_, gm.means_, gm.covariances_ = w / w.sum(), mu, var
    gm.precisions_cholesky_ = 1 / np.sqrt(var)
    return float(gm.score(X.astype(np.float64)))


def step_difference(params, reference) -> float:
    """Largest difference between two (weights, means, variances): weights and variances relative,
    means in units of the reference's standard deviation."""
    (w, mu, var), (w0, mu0, var0) = ((np.asarray(a, dtype=np.float64) for a in p) for p in (params, reference))
    return float(max(np.max(np.abs(w - w0) / w0), np.max(np.abs(mu - mu0) / np.sqrt(var0)),
                     np.max(np.abs(var - var0) / var0)))


def fit_cols(X, r: dict) -> str:
    """The whole fit's two columns: seconds and log-likelihood, or "not run"."""
    if r["pf"] is None:
        return f"{'not run':>12s} {'':>10s}"
    return f"{r['tf']:12.2f} {loglik(X, r['pf']):10.5f}"


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


def mixture_data(rng, n: int, d: int, k: int):
    """n frames from a k-component diagonal mixture, and the shared start (float64)."""
    centres = rng.normal(scale=2.0, size=(k, d))
    X = centres[rng.integers(0, k, n)] + rng.normal(scale=rng.uniform(0.5, 1.5, size=d), size=(n, d))
    return X, (np.full(k, 1 / k), X[rng.choice(n, k, replace=False)], np.tile(X.var(axis=0), (k, 1)))


def measure(name: str, X, start, Xs, starts, iters: int, fit_iters: int, threads: int) -> dict:
    """Everything the table shows for one library and dtype (raises Skip when it is absent);
    ``fit_iters`` 0: no whole fit."""
    fit = LIBRARIES[name]
    reg = 0.0 if name in NO_REG else REG
    fit(X[:2000], start, 1, None, threads, reg)                        # imports, warm-up
    t1, _ = timed(fit, X, start, 1, None, threads, reg)
    tn, pn = timed(fit, X, start, iters + 1, None, threads, reg)
    tf, pf = timed(fit, X, start, fit_iters, 1e-3, threads, reg) if fit_iters else (np.nan, None)
    step = fit(Xs, starts, 1, None, threads, reg)
    return dict(t1=t1, tn=tn, tf=tf, pn=pn, pf=pf, step=step)


def measure_elsewhere(python: str, name: str, X, start, Xs, starts, iters, fit_iters, threads) -> dict:
    """:func:`measure` run by another interpreter (PyCave's own environment), on the same arrays."""
    import json
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, X=X, Xs=Xs, **{f"start{i}": a for i, a in enumerate(start)},
                 **{f"starts{i}": a for i, a in enumerate(starts)})
        spec = json.dumps(dict(name=name, iters=iters, fit_iters=fit_iters, threads=threads))
        run = subprocess.run([python, __file__, "--worker", spec, str(src), str(dst)], capture_output=True, text=True)
        if run.returncode == 3:
            raise Skip(run.stdout.strip().splitlines()[-1] + f" (in {python})")
        if run.returncode:
            raise RuntimeError(f"{python}: " + (run.stderr.strip().splitlines() or ["exit %d" % run.returncode])[-1])
        with np.load(dst, allow_pickle=False) as r:
            out = {k: float(r[k]) for k in ("t1", "tn", "tf")}
            for key in ("pn", "pf", "step"):
                out[key] = tuple(r[f"{key}{i}"] for i in range(3)) if f"{key}0" in r else None
        return out


def worker(spec: str, src: str, dst: str) -> int:
    """The other side of :func:`measure_elsewhere` (no gmmext, scikit-learn or _common needed)."""
    import json
    args = json.loads(spec)
    with np.load(src, allow_pickle=False) as r:
        X, Xs = r["X"], r["Xs"]
        start, starts = (tuple(r[f"{key}{i}"] for i in range(3)) for key in ("start", "starts"))
    warnings.simplefilter("ignore")
    try:
        out = measure(args["name"], X, start, Xs, starts, args["iters"], args["fit_iters"], args["threads"])
    except Skip as exc:
        print(exc)
        return 3
    np.savez(dst, t1=out["t1"], tn=out["tn"], tf=out["tf"],
             **{f"{key}{i}": np.asarray(out[key][i]) for key in ("pn", "pf", "step") for i in range(3)
                if out[key] is not None})
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--worker"]:
        return worker(*argv[1:4])
    from _common import Report
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=200_000, help="frames (default 200000)")
    ap.add_argument("-d", type=int, default=39, help="dimensions (default 39)")
    ap.add_argument("-k", type=int, default=256, help="components (default 256)")
    ap.add_argument("--dtypes", default="float32,float64", help="comma-separated (default float32,float64)")
    ap.add_argument("--iters", type=int, default=5, help="iterations timed per library (default 5)")
    ap.add_argument("--fit-iters", type=int, default=20, help="iteration cap of the whole fit (default 20)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads of every library")
    ap.add_argument("--only", help="comma-separated libraries to run (default all)")
    ap.add_argument("--pycave-python", metavar="PYTHON",
                    help="an interpreter with PyCave 3.2.1 installed (Python < 3.11, numpy < 2): the PyCave "
                         "rows run there (default: import PyCave here)")
    ap.add_argument("--no-fit", default="", metavar="LIBS",
                    help="comma-separated libraries whose whole fit is not run (the slow ones, when time is short)")
    ap.add_argument("--out", help="also write the report to this file")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    rep = Report(argv, __file__)
    N, D, K = args.n, args.d, args.k
    X64, start = mixture_data(np.random.default_rng(0), N, D, K)
    Xs64, starts64 = mixture_data(np.random.default_rng(1), SMALL["n"], SMALL["d"], SMALL["k"])
    reference = {reg: fit_sklearn(Xs64, starts64, 1, None, args.threads, reg) for reg in (REG, 0.0)}
    libs = [n for n in LIBRARIES if not args.only or n in args.only.split(",")]
    versions = []
    for mod in ("torch", "pycave", "torchgmm", "pomegranate", "pytorch_lightning"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except Exception:  # noqa: BLE001 - absent here
            pass
    if args.pycave_python:
        import subprocess
        v = subprocess.run([args.pycave_python, "-c", "import sys, importlib.metadata as m, torch, numpy; print("
                            "'python %d.%d.%d,' % sys.version_info[:3], *(f'{p} {m.version(p)},' for p in "
                            "('pycave', 'torch', 'pytorch-lightning', 'numpy')))"], capture_output=True, text=True)
        versions.append("PyCave run by " + args.pycave_python + ": " + (v.stdout.strip().rstrip(",") or "(failed)"))
    rep("peers: " + ("; ".join(versions) or "none installed"))
    rep(f"N={N}, D={D}, K={K}, diagonal, {args.threads} thread(s), the same start for every library; "
        f"per iteration = (t({args.iters + 1} iterations) - t(1)) / {args.iters}; log-likelihood by "
        "scikit-learn's score (nats per frame) after the same iterations; whole fit: up to "
        f"{args.fit_iters} iterations, tol 1e-3; EM step check: N={SMALL['n']}, K={SMALL['k']}, one iteration "
        "from the same start against scikit-learn's in float64 (max difference)")
    rep()
    rep(f"{'library':14s} {'dtype':8s} {'s/iteration':>12s} {'vs gmmext':>10s} {'loglik after ' + str(args.iters + 1):>18s} "
        f"{'whole fit s':>12s} {'loglik':>10s}  agrees with sklearn EM step")
    for dt in args.dtypes.split(","):
        X = X64.astype(dt)
        st = tuple(a.astype(dt) for a in start)
        Xs = Xs64.astype(dt)
        sts = tuple(a.astype(dt) for a in starts64)
        base = None
        for name in libs:
            fit_iters = 0 if name in args.no_fit.split(",") else args.fit_iters
            try:
                if name == "PyCave" and args.pycave_python:
                    r = measure_elsewhere(args.pycave_python, name, X, st, Xs, sts, args.iters, fit_iters,
                                          args.threads)
                else:
                    r = measure(name, X, st, Xs, sts, args.iters, fit_iters, args.threads)
            except Skip as exc:
                rep(f"{name:14s} {dt:8s} skipped: {exc}")
                continue
            except Exception as exc:  # noqa: BLE001 - a peer's API changed: say so, go on
                rep(f"{name:14s} {dt:8s} failed: {type(exc).__name__}: {str(exc)[:160]}")
                continue
            per = max(r["tn"] - r["t1"], 0.0) / args.iters
            base = per if name == "gmmext" else base
            diff = step_difference(r["step"], reference[0.0 if name in NO_REG else REG])
            ok = "yes" if diff < TOLERANCE else "NO"
            rep(f"{name:14s} {dt:8s} {per:12.4f} {per / base if base else float('nan'):9.1f}x "
                f"{loglik(X, r['pn']):18.5f} {fit_cols(X, r)}  {ok} ({diff:.1e})")
    rep.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
