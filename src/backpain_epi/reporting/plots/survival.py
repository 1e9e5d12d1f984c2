"""Kaplan–Meier curves of CBP-free survival by exposure tertile, from the tables of a survival analysis."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from ...dictionary import DataDictionary
from ...formatting import format_p
from ..style import SINGLE_COLUMN_IN, TERTILE_COLOURS
from ._axes import own_axes


def plot_km(km: pd.DataFrame, km_groups: pd.DataFrame, logrank_p: float, dictionary: DataDictionary, *,
            exposure: str | None = None, ax: Axes | None = None) -> Axes:
    """Kaplan–Meier curves of CBP-free survival by exposure tertile, with 95% bands and the log-rank p.

    Parameters
    ----------
    km
        Tidy curves: ``group, age, survival, lo95, hi95`` (``SurvivalResult.km``).
    km_groups
        One row per group in legend order, with ``n`` and ``events`` (``SurvivalResult.km_groups``).
    logrank_p
        p-value of the log-rank test across the groups.
    dictionary
        Data dictionary, for the axis labels and the legend title.
    exposure
        Exposure column of the tertiles (default: ``km.attrs["exposure"]``, else
        ``km_groups.attrs["exposure"]``); it names the legend.
    ax
        Axes to draw in; by default a new single-column figure, 0.8 as high as wide.

    Returns
    -------
    Axes
        Steps per tertile in the tertile colours with 95% bands, the legend bottom
        left (events/n per group), the log-rank p top right. The y axis starts at 0
        unless every curve stays above one half; then it starts just below the
        lowest 95% band (to the 0.05 below). The x axis starts a little before the first event.
    """
    exposure = exposure or km.attrs.get("exposure") or km_groups.attrs.get("exposure")
    if exposure is None:
        raise ValueError("km names no exposure (attrs['exposure']); pass exposure=")
    title = dictionary.label(exposure) if exposure in dictionary else exposure
    age_label = dictionary.label("age") if "age" in dictionary else "Age (years)"
    lowest_curve = float(np.nanmin(km["survival"])) if len(km) else 0.0
    lowest_band = float(np.nanmin(km["lo95"])) if len(km) else 0.0
    y0 = 0.0 if lowest_curve <= 0.5 else max(0.0, math.floor((lowest_band - 0.02) * 20) / 20)
    events = km.loc[km["survival"] < 1, "age"]
    first = float(events.min()) if len(events) else 0.0
    x0 = max(0.0, math.floor((first - 5) / 10) * 10)
    x1 = float(km["age"].max()) if len(km) else 1.0

    with own_axes(ax, SINGLE_COLUMN_IN, SINGLE_COLUMN_IN * 0.8) as (ax, _own):
        for i, g in enumerate(km_groups.itertuples()):
            d = km[km["group"] == g.group].sort_values("age")
            if d.empty:
                continue
            colour = TERTILE_COLOURS[i % len(TERTILE_COLOURS)]
            age = np.append(d["age"].to_numpy(), x1)  # carry the last step to the end of the axis
            surv = np.append(d["survival"].to_numpy(), d["survival"].iloc[-1])
            lo = np.append(d["lo95"].to_numpy(), d["lo95"].iloc[-1])
            hi = np.append(d["hi95"].to_numpy(), d["hi95"].iloc[-1])
            ax.fill_between(age, lo, hi, step="post", color=colour, alpha=0.18, linewidth=0)
            ax.step(age, surv, where="post", color=colour, label=f"{g.group}: {g.events:,}/{g.n:,}")
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, 1.005)
        ax.set_xlabel(age_label)
        ax.set_ylabel("CBP-free proportion")
        # curves fall from the top left to the bottom right: the legend goes bottom left, the test top right
        ax.legend(title=f"{title} tertile (events/n)", loc="lower left", title_fontsize=7, handlelength=1.5,
                  alignment="left")
        ax.text(0.98, 0.98, f"log-rank {format_p(logrank_p, prefix=True)}", transform=ax.transAxes, ha="right", va="top")
    return ax
