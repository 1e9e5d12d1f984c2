"""Forest plot: odds ratios of the exposure terms, models side by side."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from ...dictionary import DataDictionary
from ..style import DOUBLE_COLUMN_IN, SINGLE_COLUMN_IN, model_colour
from ._axes import in_order, legend, legend_ncol, or_limits, own_axes, require, set_log_or_axis

FOREST_COLUMNS = ("model", "term", "label", "per", "or_median", "or_lo95", "or_hi95")


def plot_forest(ors: pd.DataFrame, *, dictionary: DataDictionary | None = None, ax: Axes | None = None) -> Axes:
    """Odds ratios (posterior median, 95% credible interval) of the exposure terms, models side by side.

    Parameters
    ----------
    ors
        Long table, one row per (model, term), with columns ``model``, ``term``,
        ``label``, ``per``, ``or_median``, ``or_lo95``, ``or_hi95``: the rows of
        kind ``exposure`` of several runs' ``summary.csv`` with a ``model``
        column. Terms are drawn top to bottom and models within a term in the
        order they first appear. A model without a term leaves its slot empty.
    dictionary
        Used for the label of a term whose ``label`` is missing.
    ax
        Axes to draw in; by default a new figure, single-column wide for up to 3
        terms and double-column beyond, its height growing with the rows.

    Returns
    -------
    Axes
        One row block per term (label and the ``per`` contrast on the y axis),
        models dodged within it in model colours with a legend (above the axes of
        a figure the plot made), log x axis with a reference line at 1.
    """
    require(ors, FOREST_COLUMNS, "ors")
    models = in_order(ors["model"])
    terms = in_order(ors["term"])
    nm, nt = len(models), len(terms)
    width = SINGLE_COLUMN_IN if nt <= 3 else DOUBLE_COLUMN_IN
    height = 0.75 + nt * (0.22 + 0.11 * nm) + 0.15 * math.ceil(nm / legend_ncol(models, width))
    dodge = 0.7 / max(nm, 1)
    with own_axes(ax, width, height) as (ax, own):
        ticklabels = []
        for i, term in enumerate(terms):
            first = ors[ors["term"] == term].iloc[0]
            label = first["label"]
            if not isinstance(label, str) or not label:
                label = dictionary.label(term, unit=False) if dictionary is not None and term in dictionary else term
            per = first["per"]
            ticklabels.append(f"{label}\n({per})" if isinstance(per, str) and per else label)
            if i % 2 == 1:
                ax.axhspan(-i - 0.5, -i + 0.5, color="0.95", zorder=0, lw=0)
        for j, model in enumerate(models):
            rows = ors[ors["model"] == model].set_index("term")
            ys, med, lo, hi = [], [], [], []
            for i, term in enumerate(terms):
                if term not in rows.index:
                    continue
                r = rows.loc[term]
                if isinstance(r, pd.DataFrame):
                    r = r.iloc[0]
                ys.append(-i + (nm - 1) / 2 * dodge - j * dodge)
                med.append(r["or_median"]), lo.append(r["or_lo95"]), hi.append(r["or_hi95"])
            med, lo, hi = map(np.asarray, (med, lo, hi))
            ax.errorbar(med, ys, xerr=[med - lo, hi - med], fmt="o", ms=3.2, lw=1.1, capsize=0,
                        color=model_colour(j), label=str(model), zorder=3)
        ax.axvline(1.0, color="0.3", lw=0.7, ls="--", zorder=1)
        ax.set_xscale("log")
        x0, x1 = or_limits(ors["or_lo95"].to_numpy(float), ors["or_hi95"].to_numpy(float))
        ax.set_xlim(x0, x1)
        set_log_or_axis(ax.xaxis, x0, x1)
        ax.set_yticks([-i for i in range(nt)], ticklabels)
        ax.set_ylim(-nt + 0.5, 0.5)
        ax.tick_params(axis="y", length=0)
        ax.set_xlabel("Odds ratio per 2 SD (95% credible interval)")
        legend(ax, own, legend_ncol(models, width), handletextpad=0.3, columnspacing=1.0, borderaxespad=0.2)
    return ax
