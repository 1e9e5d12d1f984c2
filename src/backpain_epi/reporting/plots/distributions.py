"""Exposure distributions by CBP status: kernel density estimates with the group medians marked."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.lines import Line2D

from ...dictionary import DataDictionary
from ..stats import density_by_outcome
from ..style import DOUBLE_COLUMN_IN, OUTCOME_COLOURS, SINGLE_COLUMN_IN
from ._axes import grid_columns, legend, own_grid, require

OUTCOME_NAMES = ("No CBP", "CBP")


def plot_exposure_distributions(df: pd.DataFrame, exposures: Sequence[str], *, outcome: str = "cbp",
                                dictionary: DataDictionary | None = None, axes=None) -> np.ndarray:
    """Density of each exposure by CBP status (kernel density estimates, group medians marked).

    Parameters
    ----------
    df
        The cohort: one row per participant with the ``exposures`` columns and
        the binary ``outcome`` column (0 = no CBP, 1 = CBP). Missing values are
        dropped per exposure.
    exposures
        Columns to show, one panel each.
    outcome
        The outcome column.
    dictionary
        Gives each panel's x label (label and unit); the column name otherwise.
    axes
        At least one axes per exposure (the others are hidden); by default a new
        figure, single-column wide for one exposure and double otherwise, 3 panels a row.

    Returns
    -------
    numpy.ndarray
        The axes. Legend "No CBP" / "CBP" / "Median" above the panels of a figure
        the plot made, in the first panel otherwise. Each curve spans the groups'
        0.5–99.5th percentiles (:func:`~backpain_epi.reporting.stats.density_by_outcome`);
        the dashed line marks the group median.
    """
    exposures = list(exposures)
    require(df, exposures + [outcome], "df")
    n = len(exposures)
    ncol = min(n, 3)
    nrow = math.ceil(n / ncol)
    width = SINGLE_COLUMN_IN if n == 1 else DOUBLE_COLUMN_IN
    with own_grid(axes, n, nrow, ncol, width, 0.35 + 1.9 * nrow) as (axes, own):
        for ax, col in zip(axes, exposures):
            dens = density_by_outcome(df, col, outcome)
            grid = dens.loc[dens["outcome"] == 0, "x"].to_numpy(float)
            for k, name in enumerate(OUTCOME_NAMES):
                group = dens[dens["outcome"] == k]
                d = group["density"].to_numpy(float)
                if np.isnan(d).all():
                    continue
                ax.plot(grid, d, color=OUTCOME_COLOURS[k], lw=1.3, label=name)
                ax.fill_between(grid, 0, d, color=OUTCOME_COLOURS[k], alpha=0.12, lw=0)
                med = float(group["median"].iloc[0])
                ax.plot([med, med], [0, np.interp(med, grid, d)], color=OUTCOME_COLOURS[k], lw=0.9, ls=(0, (3, 2)))
            ax.set_xlim(grid[0], grid[-1])
            ax.set_ylim(bottom=0)
            ax.set_xlabel(dictionary.label(col) if dictionary is not None and col in dictionary else col)
            ax.xaxis.set_major_locator(ticker.MaxNLocator(5))
            ax.yaxis.set_major_locator(ticker.MaxNLocator(4))
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3), useMathText=True)
        for ax in axes[n:]:
            ax.set_visible(False)
        cols = grid_columns(axes)  # the caller's grid may have other columns
        for i, ax in enumerate(axes[:n]):
            if i % cols == 0:
                ax.set_ylabel("Density")
        handles = [Line2D([], [], color=OUTCOME_COLOURS[k], lw=1.3, label=lab) for k, lab in enumerate(OUTCOME_NAMES)]
        handles.append(Line2D([], [], color="0.3", lw=0.9, ls=(0, (3, 2)), label="Median"))
        legend(axes[0], own, 3, handles=handles)
    return axes
