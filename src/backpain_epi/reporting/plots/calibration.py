"""Calibration, one panel per model: the posterior predictive check by decile of predicted risk, and the CORP reliability diagram."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..style import DOUBLE_COLUMN_IN, SINGLE_COLUMN_IN, model_colour
from ._axes import grid_columns, in_order, legend, legend_ncol, own_grid, require

PPC_COLUMNS = ("model", "decile", "predicted", "observed", "rep_lo95", "rep_hi95")


def plot_calibration(ppc: pd.DataFrame, *, axes=None) -> np.ndarray:
    """Observed against predicted CBP by decile of predicted risk, one panel per model.

    Parameters
    ----------
    ppc
        Long table with columns ``model``, ``decile`` (1–10), ``predicted`` (mean
        predicted probability in the decile), ``observed`` (observed proportion
        with CBP), ``rep_lo95``, ``rep_hi95`` (95% interval of the replicated
        proportion from the posterior predictive), as
        :func:`~backpain_epi.reporting.stats.ppc_by_decile` gives it; ``n`` may be present (unused).
    axes
        At least one axes per model (the others are hidden); by default a new
        figure of up to 4 panels a row with shared axes, single-column wide for
        one model and double otherwise.

    Returns
    -------
    numpy.ndarray
        The axes: same limits on both axes and in all panels, the diagonal y = x;
        observed proportions as points in the model's colour, replicated
        intervals as grey bars at the predicted risk; the legend above the
        panels of a figure the plot made, in the first panel otherwise.
    """
    require(ppc, PPC_COLUMNS, "ppc")
    models, lim, width, grid = _square_panels(ppc, ("predicted", "observed", "rep_lo95", "rep_hi95"))
    n = len(models)
    with own_grid(axes, n, *grid, sharex=True, sharey=True) as (axes, own):
        for j, (ax, model) in enumerate(zip(axes, models)):
            p = ppc[ppc["model"] == model].sort_values("decile")
            ax.plot(lim, lim, color="0.5", lw=0.7, ls="--", zorder=1)
            ax.errorbar(p["predicted"], (p["rep_lo95"] + p["rep_hi95"]) / 2,
                        yerr=(p["rep_hi95"] - p["rep_lo95"]) / 2, fmt="none", ecolor="0.6", elinewidth=2.2,
                        capsize=0, zorder=2)
            ax.plot(p["predicted"], p["observed"], "o", ms=3.5, color=model_colour(j), zorder=3)
            _square_axes(ax, str(model), lim)
        _label_panels(axes, n, "Observed CBP proportion")
        handles = [Line2D([], [], ls="none", marker="o", ms=3.5, color="0.2", label="Observed"),
                   Line2D([], [], color="0.6", lw=2.2, label="95% interval of replicated data"),
                   Line2D([], [], color="0.5", lw=0.7, ls="--", label="Perfect calibration")]
        legend(axes[0], own, legend_ncol([h.get_label() for h in handles], width), handles=handles)
    return axes


RELIABILITY_COLUMNS = ("model", "predicted", "recalibrated", "band_lo", "band_hi")
#: Height of the predictions' histogram along the bottom of a reliability panel, as a fraction of the panel.
HISTOGRAM_HEIGHT = 0.16


def plot_reliability(data: pd.DataFrame, *, axes=None) -> np.ndarray:
    """CORP reliability diagram: the PAV-recalibrated probability against the prediction, with its consistency band.

    Parameters
    ----------
    data
        Long table as :func:`~backpain_epi.reporting.stats.corp_reliability` gives it: ``model``,
        ``predicted`` (increasing within a model), ``recalibrated`` (PAV), ``band_lo``, ``band_hi``
        (the consistency band); optional ``share`` (the predictions' distribution, drawn as a
        histogram along the bottom), ``level`` (the band's coverage, in the legend) and ``mcb``,
        ``dsc``, ``unc`` (the Brier score's decomposition, written in the upper left corner).
    axes
        At least one axes per model (the others are hidden); by default a new figure as
        :func:`plot_calibration` makes.

    Returns
    -------
    numpy.ndarray
        The axes: same limits on both axes and in all panels, the diagonal y = x; the band
        shaded and the PAV curve as steps in the model's colour.
    """
    require(data, RELIABILITY_COLUMNS, "data")
    models, lim, width, grid = _square_panels(data, ("predicted", "recalibrated", "band_lo", "band_hi"))
    n = len(models)
    level = data["level"].iloc[0] if "level" in data.columns else None
    band_label = f"{100 * level:.0f}% consistency band" if level is not None else "Consistency band"
    with own_grid(axes, n, *grid, sharex=True, sharey=True) as (axes, own):
        for j, (ax, model) in enumerate(zip(axes, models)):
            d = data[data["model"] == model].sort_values("predicted")
            colour = model_colour(j)
            if "share" in d.columns:
                _histogram(ax, d["predicted"].to_numpy(float), d["share"].to_numpy(float), lim)
            ax.plot(lim, lim, color="0.5", lw=0.7, ls="--", zorder=1)
            ax.fill_between(d["predicted"], d["band_lo"], d["band_hi"], step="post", color=colour, alpha=0.22, lw=0, zorder=2)
            ax.plot(d["predicted"], d["recalibrated"], drawstyle="steps-post", color=colour, lw=1.2, zorder=3)
            if {"mcb", "dsc", "unc"} <= set(d.columns):
                s = d.iloc[0]
                ax.text(0.04, 0.96, f"MCB {s['mcb']:.4f}\nDSC {s['dsc']:.4f}\nUNC {s['unc']:.4f}", transform=ax.transAxes,
                        ha="left", va="top", fontsize=6.5, family="monospace", linespacing=1.3)
            _square_axes(ax, str(model), lim)
        _label_panels(axes, n, "Recalibrated CBP probability")
        handles = [Line2D([], [], color="0.2", lw=1.2, drawstyle="steps-post", label="CORP (PAV) recalibrated"),
                   Patch(facecolor="0.2", alpha=0.22, label=band_label),
                   Line2D([], [], color="0.5", lw=0.7, ls="--", label="Perfect calibration")]
        if "share" in data.columns:
            handles.append(Patch(facecolor="0.85", label="Predictions"))
        legend(axes[0], own, legend_ncol([h.get_label() for h in handles], width), handles=handles)
    return axes


def _square_panels(data: pd.DataFrame, columns) -> tuple[list, tuple[float, float], float, tuple]:
    """Models in order, the common axis limits (probabilities in ``columns``, padded, within 0-1), the
    figure width and the ``own_grid`` arguments (rows, columns, width, height) of square panels, 4 a row."""
    models = in_order(data["model"])
    n = len(models)
    ncol = min(n, 4)
    nrow = math.ceil(n / ncol)
    width = SINGLE_COLUMN_IN if n == 1 else DOUBLE_COLUMN_IN
    panel = (width - 0.5) / ncol
    vals = data[list(columns)].to_numpy(float)
    lo, hi = np.nanmin(vals), np.nanmax(vals)
    pad = 0.06 * (hi - lo) or 0.02
    lim = (max(0.0, lo - pad), min(1.0, hi + pad))
    return models, lim, width, (nrow, ncol, width, 0.75 + panel * nrow)


def _square_axes(ax, title: str, lim: tuple[float, float]) -> None:
    """A square panel with the same limits on both axes and a few short ticks."""
    ax.set_title(title)
    ax.set_xlim(lim)
    ax.set_ylim(lim)
    ax.set_aspect("equal", adjustable="box")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(ticker.MaxNLocator(4))
        axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.2g}"))


def _label_panels(axes, n: int, ylabel: str) -> None:
    """Axis labels on the outer panels of the first ``n`` axes, the rest hidden. The caller's grid may
    have other columns than ours; a panel above an empty one shows its x ticks."""
    ncol = grid_columns(axes)
    nrow = math.ceil(n / ncol)
    for j, ax in enumerate(axes[:n]):
        if j % ncol == 0:
            ax.set_ylabel(ylabel)
        if j >= n - ncol:
            ax.set_xlabel("Predicted CBP risk")
        if j >= n - ncol and j < (nrow - 1) * ncol:
            ax.tick_params(axis="x", labelbottom=True)
    for ax in axes[n:]:
        ax.set_visible(False)


def _histogram(ax, predicted: np.ndarray, share: np.ndarray, lim: tuple[float, float], bins: int = 30) -> None:
    """The predictions' distribution as a histogram along the bottom of ``ax`` (heights in axes fractions)."""
    counts, edges = np.histogram(predicted, bins=np.linspace(lim[0], lim[1], bins + 1), weights=share)
    if counts.max() <= 0:
        return
    ax.bar(edges[:-1], HISTOGRAM_HEIGHT * counts / counts.max(), width=np.diff(edges), align="edge",
           transform=ax.get_xaxis_transform(), color="0.85", lw=0, zorder=0)
