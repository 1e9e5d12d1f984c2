"""Figures of the estimands beyond the odds ratio: an exposure's dose–response curve, effects by stratum, risk differences."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import ticker

from ...formatting import format_int
from ..style import DOUBLE_COLUMN_IN, SINGLE_COLUMN_IN, model_colour
from ._axes import in_order, legend, legend_ncol, or_limits, own_axes, own_grid, require, set_log_or_axis

DOSE_RESPONSE_COLUMNS = ("model", "term", "x", "reference", "or_median", "or_lo95", "or_hi95")
STRATA_COLUMNS = ("model", "term", "modifier", "level", "or", "or_lo95", "or_hi95")
RD_COLUMNS = ("model", "term", "rd_per_1000", "rd_lo95", "rd_hi95")


def plot_dose_response(curves: pd.DataFrame, values, *, xlabel: str = "", axes=None) -> np.ndarray:
    """Odds ratio of CBP against one exposure (a spline term) relative to its median, above the exposure's distribution.

    Parameters
    ----------
    curves
        Rows of one exposure (``term``) from one or more models: ``model, term, x, reference, or_median, or_lo95, or_hi95``
        (the runs' ``exposure_curves.csv`` with a model column).
    values
        The exposure's observed values, drawn as a histogram below.
    xlabel
        The exposure's label and unit.
    axes
        Two axes (curve, distribution); by default a new single-column figure.

    Returns
    -------
    numpy.ndarray
        The two axes: log OR axis with the line OR = 1 and the reference (median) marked; histogram below.
    """
    require(curves, DOSE_RESPONSE_COLUMNS, "curves")
    x_obs = pd.to_numeric(pd.Series(np.asarray(values).ravel()), errors="coerce").dropna().to_numpy(float)
    models = in_order(curves["model"])
    with own_grid(axes, 2, 2, 1, SINGLE_COLUMN_IN, 3.2, sharex=True, gridspec_kw={"height_ratios": [3.0, 1]}) as (axes, own):
        ax, hx = axes[:2]
        handles = []
        for j, model in enumerate(models):
            c = curves[curves["model"] == model].sort_values("x")
            colour = model_colour(j)
            line, = ax.plot(c["x"], c["or_median"], color=colour, lw=1.4, label=model)
            ax.fill_between(c["x"], c["or_lo95"], c["or_hi95"], color=colour, alpha=0.15, lw=0)
            handles.append(line)
        ref = float(curves["reference"].iloc[0])
        ax.axhline(1.0, color="0.3", lw=0.7, zorder=1)
        point, = ax.plot([ref], [1.0], "o", ms=4.5, mfc="white", mec="black", mew=1.0, zorder=5, label=f"Median ({ref:.3g})")
        handles.append(point)
        ax.set_yscale("log")
        y0, y1 = or_limits(curves["or_lo95"].to_numpy(float), curves["or_hi95"].to_numpy(float), pad=1.04)
        ax.set_ylim(y0, y1)
        set_log_or_axis(ax.yaxis, y0, y1)
        ax.set_ylabel("Odds ratio of CBP\nvs the median")
        ax.tick_params(axis="x", labelbottom=False)
        lo, hi = float(curves["x"].min()), float(curves["x"].max())
        if x_obs.size:
            inside = x_obs[(x_obs >= lo) & (x_obs <= hi)]  # the curve's range (2nd-98th percentile); no pile-up at the edges
            hx.hist(inside, bins=np.linspace(lo, hi, 31), color="0.6", edgecolor="white", lw=0.3)
        hx.set_xlim(lo, hi)
        hx.set_ylabel("Participants")
        hx.yaxis.set_major_locator(ticker.MaxNLocator(3, integer=True))
        hx.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: format_int(v)))
        hx.set_xlabel(xlabel or str(curves["term"].iloc[0]))
        legend(ax, own, legend_ncol([h.get_label() for h in handles], SINGLE_COLUMN_IN), handles=handles,
               handletextpad=0.4, columnspacing=1.0)
        ax.figure.align_ylabels([ax, hx])
    return axes


def plot_strata(table: pd.DataFrame, *, labels: dict[str, str] | None = None, ax=None):
    """Forest plot of the odds ratio per 2 SD of each exposure within each stratum of its modifier.

    ``table``: ``model, term, modifier, level, or, or_lo95, or_hi95`` (the runs' ``effect_modification.csv`` with a model
    column); ``labels`` maps terms to display labels. One row per exposure × level (× model), grouped by exposure; log x axis.
    """
    require(table, STRATA_COLUMNS, "table")
    labels = labels or {}
    rows = table.reset_index(drop=True)
    models = in_order(rows["model"])
    n = len(rows)
    with own_axes(ax, SINGLE_COLUMN_IN, 0.9 + 0.22 * n) as (ax, own):
        y = np.arange(n)[::-1]
        for i, r in rows.iterrows():
            colour = model_colour(models.index(r["model"]))
            ax.plot([r["or_lo95"], r["or_hi95"]], [y[i], y[i]], color=colour, lw=1.2)
            ax.plot([r["or"]], [y[i]], "s", color=colour, ms=4)
        names = [f"{labels.get(r.term, r.term)}: {r.modifier} {r.level}" + (f" ({r.model})" if len(models) > 1 else "")
                 for r in rows.itertuples()]
        ax.set_yticks(y, names)
        ax.axvline(1.0, color="0.3", lw=0.7)
        ax.set_xscale("log")
        x0, x1 = or_limits(rows["or_lo95"].to_numpy(float), rows["or_hi95"].to_numpy(float))
        ax.set_xlim(x0, x1)
        set_log_or_axis(ax.xaxis, x0, x1)
        ax.set_xlabel("Odds ratio per 2 SD (95% CrI) within the stratum")
        ax.set_ylim(-0.7, n - 0.3)
    return ax


def plot_risk_differences(table: pd.DataFrame, *, labels: dict[str, str] | None = None, ax=None):
    """Risk difference per 1,000 (95% CrI) between each exposure's mean + 1 SD and mean − 1 SD, by model.

    ``table``: ``model, term, rd_per_1000, rd_lo95, rd_hi95`` (the runs' ``absolute_risk.csv`` with a model column).
    """
    require(table, RD_COLUMNS, "table")
    labels = labels or {}
    rows = table.reset_index(drop=True)
    models = in_order(rows["model"])
    terms = in_order(rows["term"])
    n = len(rows)
    with own_axes(ax, SINGLE_COLUMN_IN, 0.9 + 0.22 * n) as (ax, own):
        order = sorted(range(n), key=lambda i: (terms.index(rows.loc[i, "term"]), models.index(rows.loc[i, "model"])))
        y = np.arange(n)[::-1]
        handles = {}
        for k, i in enumerate(order):
            r = rows.loc[i]
            colour = model_colour(models.index(r["model"]))
            ax.plot([r["rd_lo95"], r["rd_hi95"]], [y[k], y[k]], color=colour, lw=1.2)
            handles[r["model"]], = ax.plot([r["rd_per_1000"]], [y[k]], "o", color=colour, ms=4, label=r["model"])
        ax.set_yticks(y, [labels.get(rows.loc[i, "term"], rows.loc[i, "term"]) if k == 0 or rows.loc[i, "term"] !=
                          rows.loc[order[k - 1], "term"] else "" for k, i in enumerate(order)])
        ax.axvline(0.0, color="0.3", lw=0.7)
        ax.set_xlabel("Risk difference per 1,000 (+1 SD vs −1 SD)")
        ax.set_ylim(-0.7, n - 0.3)
        if len(models) > 1:
            legend(ax, own, legend_ncol(list(handles), SINGLE_COLUMN_IN), handles=list(handles.values()))
    return ax
