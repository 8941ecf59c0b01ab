"""DET plots: detection error trade-off curves on normal-deviate (probit) axes.

The curves are :func:`speaker.metrics.det_curve`'s operating points; every curve's legend
entry carries its EER, so that several systems drawn on one plot (:func:`det_figure`,
:func:`save_det_plots`, ``speaker eval --scores a.txt b.txt --det det.png --label A --label B``)
can be told apart at a glance; their legend sits below the axes.

matplotlib is an optional dependency (``pip install gmmext[plot]``); it is imported only when
a plot is drawn.  Files are written atomically with matplotlib's Agg canvas (no pyplot, no
global state, works headless).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._atomic import atomic_path
from .metrics import _diagonal_crossing, det_curve, eer

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_det", "det_figure", "save_det_plot", "save_det_plots"]

_DET_TICKS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4)
_NO_MATPLOTLIB = ("needs matplotlib, an optional dependency: "
                  "pip install 'gmmext[plot]' (or pip install matplotlib)")


def _curve_points(p_miss: ArrayLike | None, p_fa: ArrayLike | None, scores: ArrayLike | None,
                  labels: ArrayLike | None) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    if scores is not None or labels is not None:
        if p_miss is not None or p_fa is not None:
            raise ValueError("pass either (p_miss, p_fa) or scores= and labels=, not both")
        if scores is None or labels is None:
            raise ValueError("scores= and labels= must be given together")
        pm, pf, _ = det_curve(scores, labels)
        return pm, pf
    if p_miss is None or p_fa is None:
        raise ValueError("pass (p_miss, p_fa), e.g. from det_curve(), or scores= and labels=")
    pm = np.asarray(p_miss, dtype=np.float64)
    pf = np.asarray(p_fa, dtype=np.float64)
    if pm.ndim != 1 or pm.shape != pf.shape or pm.size == 0:
        raise ValueError(f"p_miss and p_fa must be non-empty 1-D arrays of equal length, "
                         f"got shapes {pm.shape} and {pf.shape}")
    if not (np.all((pm >= 0) & (pm <= 1)) and np.all((pf >= 0) & (pf <= 1))):
        raise ValueError("p_miss and p_fa must be probabilities in [0, 1]")
    return pm, pf


def plot_det(p_miss: ArrayLike | None = None, p_fa: ArrayLike | None = None, *,
             scores: ArrayLike | None = None, labels: ArrayLike | None = None,
             ax: "Axes | None" = None, label: str | None = None, mark_eer: bool = False,
             eer_in_label: bool = True, limits: tuple[float, float] = (0.0005, 0.5),
             **plot_kwargs: Any) -> "Axes":
    """Draw a DET curve on normal-deviate (probit) axes.

    Give either the operating points ``(p_miss, p_fa)`` (e.g. from :func:`det_curve`) or
    ``scores=`` and ``labels=``.  Both axes use the probit scale ``Phi^-1(p)`` with ticks at
    0.1, 0.5, 1, 2, 5, 10, 20 and 40 % (those inside ``limits``); ``limits`` are the axis limits
    as probabilities, used for both axes.  Points at 0 or 1 are drawn just outside the axes.

    ``label`` names the curve in the legend; with ``eer_in_label`` (the default) the entry
    reads ``"label (EER 4.39 %)"``: from scores the ROC-convex-hull EER (:func:`eer`, what
    ``speaker eval`` prints), from points the interpolated EER of the points.
    ``mark_eer`` marks the EER point on the diagonal: the interpolated EER of the plotted
    operating points (``eer(..., method="interpolated")`` when drawn from scores), which lies
    on the drawn curve.  ``plot_kwargs`` go to ``Axes.plot``.  Returns the axes (a new figure's
    if ``ax`` is None, which needs ``matplotlib.pyplot``).
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError("plot_det " + _NO_MATPLOTLIB) from exc
    from scipy.special import ndtri

    lo, hi = float(limits[0]), float(limits[1])
    if not 0.0 < lo < hi < 1.0:
        raise ValueError(f"limits must satisfy 0 < low < high < 1, got {limits!r}")
    pm, pf = _curve_points(p_miss, p_fa, scores, labels)
    if ax is None:
        import matplotlib.pyplot as plt
        _, ax = plt.subplots(figsize=(5.0, 5.0))

    def probit(p: NDArray[np.float64]) -> NDArray[np.float64]:
        eps = 1e-15  # keeps 0 and 1 finite (about -/+7.9 deviates), far outside any sane limits
        return ndtri(np.clip(p, eps, 1.0 - eps))

    crossing = _diagonal_crossing(pm, pf)
    if label is not None and eer_in_label:
        e = eer(scores, labels) if scores is not None else crossing
        if e is not None:
            label = f"{label} (EER {100 * e:.2f} %)"
    ax.plot(probit(pf), probit(pm), label=label, **plot_kwargs)
    if mark_eer and crossing is not None:
        z = float(probit(np.array([crossing]))[0])
        ax.plot([z], [z], marker="o", linestyle="none", markerfacecolor="none",
                color=ax.lines[-1].get_color(), label="_nolegend_")
    ticks = [t for t in _DET_TICKS if lo <= t <= hi]
    tick_pos = probit(np.asarray(ticks, dtype=np.float64))
    tick_lab = [f"{100 * t:g}" for t in ticks]
    ax.set_xticks(tick_pos, tick_lab)
    ax.set_yticks(tick_pos, tick_lab)
    lim = probit(np.array([lo, hi]))
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_xlabel("False-alarm probability (%)")
    ax.set_ylabel("Miss probability (%)")
    ax.set_aspect("equal")
    ax.grid(True, linestyle=":", linewidth=0.6)
    if label is not None:
        ax.legend(loc="upper right")
    return ax


def _figure(draw: Callable[["Axes"], None], title: str | None, figsize: tuple[float, float], dpi: float,
            what: str) -> "Figure":
    """A new Agg figure (no pyplot) with one axes, drawn by ``draw(ax)``, laid out."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover
        raise ImportError(what + " " + _NO_MATPLOTLIB) from exc
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    draw(ax)
    if title is not None:
        ax.set_title(title)
    return fig


def _write_png(fig: "Figure", path: str | os.PathLike[str], dpi: float, overwrite: bool = True) -> Path:
    """``fig`` written to ``path`` as a PNG, atomically; the image is cropped to what is drawn, and
    extends to a legend outside the axes."""
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.1)
    return path


def save_det_plot(path: str | os.PathLike[str], p_miss: ArrayLike | None = None,
                  p_fa: ArrayLike | None = None, *, scores: ArrayLike | None = None,
                  labels: ArrayLike | None = None, label: str | None = None,
                  mark_eer: bool = True, title: str | None = None,
                  figsize: tuple[float, float] = (5.0, 5.0), dpi: float = 150,
                  **plot_kwargs: Any) -> Path:
    """Draw one DET curve (see :func:`plot_det`) and write it to ``path`` as a PNG, atomically.

    The image is written to a temporary file in the destination folder, flushed to disk and
    renamed over ``path`` with ``os.replace``, so readers never see a partial file and a failure
    leaves any previous file intact.  Returns ``path`` as a ``Path``.
    """
    def draw(ax: "Axes") -> None:
        plot_det(p_miss, p_fa, scores=scores, labels=labels, ax=ax, label=label, mark_eer=mark_eer,
                 **plot_kwargs)
    return _write_png(_figure(draw, title, figsize, dpi, "save_det_plot"), path, dpi)


def det_figure(systems: Mapping[str, tuple[ArrayLike, ArrayLike]] | Sequence[tuple[str, ArrayLike, ArrayLike]],
               *, mark_eer: bool = True, title: str | None = None,
               figsize: tuple[float, float] = (5.0, 5.0), dpi: float = 150) -> "Figure":
    """DET curves of several systems on one plot: a matplotlib ``Figure`` (Agg, no pyplot).

    ``systems`` maps a name to ``(scores, labels)``, or is a sequence of ``(name, scores,
    labels)``; each system is one curve and one legend entry, ``"name (EER 4.39 %)"``.  The
    legend sits below the axes, one entry per line, so that it never covers a curve (it lies
    outside the figure's ``figsize``; :func:`save_det_plots` writes an image that includes it).
    """
    items = [(k, *v) for k, v in systems.items()] if isinstance(systems, Mapping) else list(systems)
    if not items:
        raise ValueError("no systems to plot")

    def draw(ax: "Axes") -> None:
        for name, s, lab in items:
            plot_det(scores=s, labels=lab, ax=ax, label=name, mark_eer=mark_eer)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), borderaxespad=0.0, frameon=False)

    return _figure(draw, title, figsize, dpi, "det_figure")


def save_det_plots(path: str | os.PathLike[str],
                   systems: Mapping[str, tuple[ArrayLike, ArrayLike]] | Sequence[tuple[str, ArrayLike, ArrayLike]],
                   *, mark_eer: bool = True, title: str | None = None,
                   figsize: tuple[float, float] = (5.0, 5.0), dpi: float = 150, overwrite: bool = True) -> Path:
    """:func:`det_figure` of several systems written to ``path`` as a PNG like :func:`save_det_plot`
    (``overwrite=False`` refuses an existing file)."""
    return _write_png(det_figure(systems, mark_eer=mark_eer, title=title, figsize=figsize, dpi=dpi), path, dpi,
                      overwrite)
