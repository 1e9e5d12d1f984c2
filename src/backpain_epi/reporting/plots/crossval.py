"""Leave-one-site-out cross-validation: each model's elpd at each held-out site, against the best model's."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.axes import Axes

from ..style import SINGLE_COLUMN_IN, model_colour
from ._axes import legend, own_axes, require

BY_SITE_COLUMNS = ("model", "site", "elpd")


def plot_loso(by_site: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Per held-out site, each model's elpd minus the best model's (the best by total elpd; one model: its elpd).

    Parameters
    ----------
    by_site
        One row per model and site with columns ``model``, ``site`` and ``elpd`` (:attr:`CVResult.by_site
        <backpain_epi.modelling.crossval.CVResult>`).
    ax
        Axes to draw in; by default a new single-column figure, its height growing with the sites.

    Returns
    -------
    Axes
        Sites top to bottom; a point per site and model other than the best (left of the dashed zero line: the
        best model predicted that site better), the model's total difference in the legend.
    """
    require(by_site, BY_SITE_COLUMNS, "by_site")
    wide = by_site.pivot(index="site", columns="model", values="elpd")
    order = list(wide.sum().sort_values(ascending=False, kind="stable").index)
    best, others = order[0], order[1:]
    sites = list(wide.index)
    n = len(sites)
    with own_axes(ax, SINGLE_COLUMN_IN, 1.0 + 0.17 * n) as (ax, own):
        y = -np.arange(n, dtype=float)
        if others:
            offsets = np.linspace(-0.18, 0.18, len(others)) if len(others) > 1 else [0.0]
            for j, (m, dy) in enumerate(zip(others, offsets)):
                d = wide[m] - wide[best]
                ax.plot(d.to_numpy(), y + dy, "o", ms=3.5, color=model_colour(order.index(m)), zorder=3,
                        label=f"{m} ({d.sum():+,.1f})".replace("-", "\u2212"))
            ax.axvline(0.0, color="0.5", lw=0.7, ls="--", zorder=1)
            ax.set_xlabel(f"\u0394 elpd vs {best} (held-out site)")
        else:
            ax.plot(wide[best].to_numpy(), y, "o", ms=3.5, color=model_colour(0), zorder=3, label=best)
            ax.set_xlabel("elpd of the held-out site")
        ax.set_yticks(y, [str(s) for s in sites])
        ax.set_ylim(y[-1] - 0.6, 0.6)
        ax.tick_params(axis="y", length=0)
        ax.xaxis.set_major_locator(ticker.MaxNLocator(5))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}".replace("-", "\u2212")))
        legend(ax, own, min(2, max(1, len(others))), handletextpad=0.3, columnspacing=1.0)
    return ax
