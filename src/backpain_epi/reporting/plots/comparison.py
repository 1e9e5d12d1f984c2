"""Model comparison by expected log predictive density (PSIS-LOO), like ArviZ's ``plot_compare``."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.axes import Axes

from ...formatting import format_int
from ..style import SINGLE_COLUMN_IN
from ._axes import legend, own_axes, require

COMPARISON_COLUMNS = ("model", "rank", "elpd_loo", "se", "elpd_diff", "dse")


def plot_loo(comparison: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """ELPD-LOO of each model (± SE) and its difference from the best (± SE of the difference).

    Parameters
    ----------
    comparison
        One row per model with columns ``model``, ``rank`` (1 = best),
        ``elpd_loo``, ``se``, ``elpd_diff`` (to the best, ≥ 0) and ``dse`` (its
        standard error); ``p_loo`` and ``weight`` may be present (unused).
    ax
        Axes to draw in; by default a new single-column figure, its height growing with the models.

    Returns
    -------
    Axes
        Models top to bottom in rank order. Per model: ELPD ± SE (filled point,
        black bar) and, for all but the best, ELPD of the best minus the
        difference ± SE of the difference (grey triangle), a dashed line at the
        best ELPD; a twin axis on the right gives the difference ± SE as numbers.
    """
    require(comparison, COMPARISON_COLUMNS, "comparison")
    c = comparison.sort_values("rank").reset_index(drop=True)
    n = len(c)
    best = float(c["elpd_loo"].iloc[0])
    with own_axes(ax, SINGLE_COLUMN_IN, 0.85 + 0.36 * n) as (ax, own):
        y = -np.arange(n, dtype=float)
        ax.errorbar(c["elpd_loo"], y, xerr=c["se"], fmt="o", ms=4, color="black", mfc="black", lw=1.0,
                    capsize=0, label="ELPD ± SE", zorder=3)
        d = c.iloc[1:]
        if len(d):
            ax.errorbar(best - d["elpd_diff"], y[1:] - 0.28, xerr=d["dse"], fmt="^", ms=3.5, color="0.55",
                        lw=1.0, capsize=0, label="Difference to best ± SE", zorder=3)
        ax.axvline(best, color="0.5", lw=0.7, ls="--", zorder=1)
        ax.set_yticks(y, [str(m) for m in c["model"]])
        ax.set_ylim(y[-1] - 0.6, 0.45)
        ax.tick_params(axis="y", length=0)
        ax.xaxis.set_major_locator(ticker.MaxNLocator(4))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: format_int(v).replace("-", "\u2212")))
        ax.set_xlabel("ELPD (LOO, higher is better)")
        right = ax.twinx()
        right.set_ylim(ax.get_ylim())
        diffs = ["best"] + [f"\u2212{r.elpd_diff:,.1f} \u00b1 {r.dse:,.1f}" for r in c.iloc[1:].itertuples()]
        right.set_yticks(y, diffs)
        right.tick_params(axis="y", length=0)
        right.spines["right"].set_visible(False)
        right.set_ylabel("\u0394 ELPD \u00b1 SE", rotation=270, va="bottom")
        legend(ax, own, 2, handletextpad=0.3, columnspacing=1.0)
    return ax
