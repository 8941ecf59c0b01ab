"""gmmext.GaussianMixtureIC against R's mclust: selections and BIC values side by side.

Runs mclust's ``mclustBIC`` (models VVV, EEE, VVI, VII = gmmext's full, tied, diag, spherical)
and ``GaussianMixtureIC(covariance_type="all", criterion="bic")`` over the same numbers of
components on each data set, and prints, per data set: each side's selected (type, K) and BIC,
and each side's BIC of both selections, in gmmext's convention (``bic = -2 log L + p log n``,
lower is better; mclust's BIC is ``2 log L - p log n``, so it is negated here).  The parameter
counts agree (mclust's ``nMclustParams`` equals scikit-learn's ``_n_parameters`` for these four
models), so equal BIC means equal log-likelihood: a difference is a different local optimum
(mclust starts EM from model-based hierarchical agglomeration, gmmext from k-means).

Data sets: iris and wine (scikit-learn's copies; wine standardised per column), R's ``faithful``
(exported by R itself), and four synthetic ones drawn here: three well-separated full-covariance
clusters, three overlapping ones, four axis-aligned (diagonal) clusters in 3-D and three
spherical clusters of different radii.

Needs ``Rscript`` with mclust (Debian: ``apt-get install r-cran-mclust``).

    python tools/compare_mclust.py [--max-components 6] [--n-init 3] [--out docs/...]
"""
from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

MODELS = {"VVV": "full", "EEE": "tied", "VVI": "diag", "VII": "spherical"}

R_BIC = """
suppressMessages(library(mclust))
X <- as.matrix(read.csv("{path}", header = FALSE))
b <- mclustBIC(X, G = 1:{G}, modelNames = c("VVV", "EEE", "VVI", "VII"), verbose = FALSE)
write.csv(matrix(b, nrow = nrow(b), dimnames = dimnames(b)), stdout())
"""

R_FAITHFUL = 'write.table(datasets::faithful, "{path}", sep = ",", row.names = FALSE, col.names = FALSE)'


def have_mclust() -> bool:
    """Rscript is on PATH and loads mclust."""
    if shutil.which("Rscript") is None:
        return False
    r = subprocess.run(["Rscript", "-e", "suppressMessages(library(mclust))"], capture_output=True)
    return r.returncode == 0


def mclust_bic(X: np.ndarray, G: int) -> dict:
    """{(type, K): gmmext-convention BIC} from mclust (NaN where mclust could not fit)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.csv"
        np.savetxt(path, X, delimiter=",", fmt="%.17g")
        r = subprocess.run(["Rscript", "-e", R_BIC.format(path=path, G=G)], capture_output=True, text=True,
                           check=True)
    rows = list(csvrows(r.stdout))
    header, body = rows[0][1:], rows[1:]
    out = {}
    for row in body:
        k = int(row[0].strip('"'))
        for name, v in zip(header, row[1:]):
            out[(MODELS[name.strip('"')], k)] = -float(v) if v != "NA" else np.nan
    return out


def csvrows(text: str):
    import csv
    yield from csv.reader(io.StringIO(text))


def faithful() -> np.ndarray:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "f.csv"
        subprocess.run(["Rscript", "-e", R_FAITHFUL.format(path=path)], check=True, capture_output=True)
        return np.loadtxt(path, delimiter=",")


def synthetic(overlap: bool, seed: int = 0, n: int = 600) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [6.0, 1.0], [2.0, 6.0]]) * (0.35 if overlap else 1.0)
    covs = [np.array([[1.0, 0.6], [0.6, 1.0]]), np.array([[0.5, -0.2], [-0.2, 1.5]]), np.diag([2.0, 0.4])]
    lab = rng.integers(0, 3, n)
    return np.vstack([rng.multivariate_normal(centres[k], covs[k]) for k in lab])


def axis_aligned(spherical: bool, seed: int = 1) -> np.ndarray:
    """Four diagonal clusters in 3-D (800 rows), or three spherical ones in 2-D (600 rows)."""
    rng = np.random.default_rng(seed)
    if spherical:
        centres, scales, n = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 6.0]]), np.array([[0.5], [1.0], [1.8]]), 600
    else:
        centres = np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 1.0], [0.0, 5.0, -1.0], [5.0, 5.0, 4.0]])
        scales, n = np.array([[0.4, 1.5, 0.8], [1.2, 0.3, 1.0], [0.6, 0.6, 2.0], [1.5, 0.8, 0.4]]), 800
    lab = rng.integers(0, len(centres), n)
    return centres[lab] + rng.standard_normal((n, centres.shape[1])) * scales[lab]


def datasets() -> dict:
    from sklearn.datasets import load_iris, load_wine
    wine = load_wine().data
    return {"iris (150 x 4)": load_iris().data, "faithful (272 x 2)": faithful(),
            "wine, standardised (178 x 13)": (wine - wine.mean(0)) / wine.std(0),
            "separated, 3 full clusters (600 x 2)": synthetic(False),
            "overlapping, 3 full clusters (600 x 2)": synthetic(True),
            "4 axis-aligned clusters (800 x 3)": axis_aligned(False),
            "3 spherical clusters (600 x 2)": axis_aligned(True)}


def gmmext_bic(X: np.ndarray, G: int, n_init: int, seed: int):
    from gmmext import GaussianMixtureIC
    ic = GaussianMixtureIC(max_components=G, covariance_type="all", n_init=n_init, random_state=seed).fit(X)
    r = ic.cv_results_
    return ic, {(t, int(k)): float(b) for k, t, b in zip(r["param_n_components"], r["param_covariance_type"],
                                                          r["bic"])}


def compare(X: np.ndarray, G: int, n_init: int, seed: int = 0) -> dict:
    """Both sides' BIC tables and selections for one data set."""
    mc = mclust_bic(X, G)
    ic, gx = gmmext_bic(X, G, n_init, seed)
    mc_best = min((v, key) for key, v in mc.items() if np.isfinite(v))[1]
    gx_best = (ic.covariance_type_, ic.n_components_)
    return {"mclust": mc, "gmmext": gx, "mclust_best": mc_best, "gmmext_best": gx_best}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-components", type=int, default=6, help="candidates K = 1..this")
    ap.add_argument("--n-init", type=int, default=3, help="gmmext's initialisations per candidate")
    ap.add_argument("--out", default=None, help="also write the table (Markdown) to this file")
    a = ap.parse_args(argv)
    if not have_mclust():
        print("Rscript with mclust not found (Debian: apt-get install r-cran-mclust)", file=sys.stderr)
        return 2
    lines = ["| data set | mclust selects | its BIC (mclust / gmmext) | gmmext selects | its BIC "
             "(mclust / gmmext) | BIC tables: max abs diff where both fitted the same K, type |",
             "|---|---|---|---|---|---|"]
    for name, X in datasets().items():
        c = compare(X, a.max_components, a.n_init)
        mc, gx = c["mclust"], c["gmmext"]
        mb, gb = c["mclust_best"], c["gmmext_best"]
        diffs = [abs(mc[k] - gx[k]) for k in mc if np.isfinite(mc[k]) and k in gx]
        med = float(np.median(diffs))
        lines.append(f"| {name} | {mb[0]}, K={mb[1]} | {mc[mb]:.2f} / {gx[mb]:.2f} | {gb[0]}, K={gb[1]} | "
                     f"{mc.get(gb, np.nan):.2f} / {gx[gb]:.2f} | {max(diffs):.2f} (median {med:.2g}) |")
        print(lines[-1], flush=True)
    text = "\n".join(lines)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
