"""Calibration: the posterior predictive check by decile of predicted risk, one panel per model."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.lines import Line2D

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
    models = in_order(ppc["model"])
    n = len(models)
    ncol = min(n, 4)
    nrow = math.ceil(n / ncol)
    width = SINGLE_COLUMN_IN if n == 1 else DOUBLE_COLUMN_IN
    panel = (width - 0.5) / ncol
    vals = ppc[["predicted", "observed", "rep_lo95", "rep_hi95"]].to_numpy(float)
    lo, hi = np.nanmin(vals), np.nanmax(vals)
    pad = 0.06 * (hi - lo) or 0.02
    lim = (max(0.0, lo - pad), min(1.0, hi + pad))
    with own_grid(axes, n, nrow, ncol, width, 0.75 + panel * nrow, sharex=True, sharey=True) as (axes, own):
        ncol = grid_columns(axes)  # the caller's grid may have other columns
        nrow = math.ceil(n / ncol)
        for j, (ax, model) in enumerate(zip(axes, models)):
            p = ppc[ppc["model"] == model].sort_values("decile")
            ax.plot(lim, lim, color="0.5", lw=0.7, ls="--", zorder=1)
            ax.errorbar(p["predicted"], (p["rep_lo95"] + p["rep_hi95"]) / 2,
                        yerr=(p["rep_hi95"] - p["rep_lo95"]) / 2, fmt="none", ecolor="0.6", elinewidth=2.2,
                        capsize=0, zorder=2)
            ax.plot(p["predicted"], p["observed"], "o", ms=3.5, color=model_colour(j), zorder=3)
            ax.set_title(str(model))
            ax.set_xlim(lim)
            ax.set_ylim(lim)
            ax.set_aspect("equal", adjustable="box")
            ax.xaxis.set_major_locator(ticker.MaxNLocator(4))
            ax.yaxis.set_major_locator(ticker.MaxNLocator(4))
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.2g}"))
            ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.2g}"))
            if j % ncol == 0:
                ax.set_ylabel("Observed CBP proportion")
            if j >= n - ncol:
                ax.set_xlabel("Predicted CBP risk")
            if j >= n - ncol and j < (nrow - 1) * ncol:  # a panel above an empty one shows its x ticks
                ax.tick_params(axis="x", labelbottom=True)
        for ax in axes[n:]:
            ax.set_visible(False)
        handles = [Line2D([], [], ls="none", marker="o", ms=3.5, color="0.2", label="Observed"),
                   Line2D([], [], color="0.6", lw=2.2, label="95% interval of replicated data"),
                   Line2D([], [], color="0.5", lw=0.7, ls="--", label="Perfect calibration")]
        legend(axes[0], own, legend_ncol([h.get_label() for h in handles], width), handles=handles)
    return axes
