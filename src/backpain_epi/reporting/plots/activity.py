"""The activity curve: odds ratio of CBP against physical activity, one curve per model, over the activity distribution."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import ticker

from ...derived import ACTIVITY_BAND_EDGES
from ...dictionary import DataDictionary
from ...formatting import format_int
from ..stats import CURVE_COLUMNS
from ..style import DOUBLE_COLUMN_IN, model_colour
from ._axes import in_order, legend, legend_ncol, or_limits, own_grid, require, set_log_or_axis

#: The WHO guideline minimum of physical activity (MET-min/week), drawn as a dashed line.
WHO_MIN_MET = 600.0
#: Scale constant of the activity axis: x is drawn as log10(1 + MET/c), linear near 0, logarithmic above c.
MET_AXIS_C = 100.0


def _met_forward(x):
    return np.log10(1.0 + np.maximum(np.asarray(x, dtype=float), 0.0) / MET_AXIS_C)


def _met_inverse(y):
    return MET_AXIS_C * (10.0 ** np.asarray(y, dtype=float) - 1.0)


def _band_steps(grid: pd.DataFrame, edges: Sequence[float], x_max: float):
    """Vertices of a piecewise-constant (banded) curve: the value of each band held from edge to edge."""
    x = grid["met_min_week"].to_numpy(float)
    edges = [float(e) for e in edges]
    # bands as in derived.activity_band: [.., e0), [e0, e1], (e1, ..)
    code = np.searchsorted(edges, x, side="right")
    if len(edges) >= 2:
        code = np.where(np.isin(x, edges[1:]), code - 1, code)
    bounds = [min(x.min(), 0.0)] + edges + [max(x_max, x.max())]
    xs, cols = [], {c: [] for c in ("or_median", "or_lo95", "or_hi95")}
    for b in range(len(edges) + 1):
        inside = grid[code == b]
        if inside.empty:
            continue
        xs += [bounds[b], bounds[b + 1]]
        for c in cols:
            cols[c] += [float(inside[c].iloc[0])] * 2
    return np.asarray(xs), {c: np.asarray(v) for c, v in cols.items()}


def plot_activity_curve(curves: pd.DataFrame, met, *, who_met: float = WHO_MIN_MET, dictionary: DataDictionary | None = None,
                        band_edges: Sequence[float] = ACTIVITY_BAND_EDGES, axes=None) -> np.ndarray:
    """Odds ratio of CBP against physical activity, one curve per model, above the activity distribution.

    Parameters
    ----------
    curves
        Long table with columns ``model``, ``basis`` (``"spline"``, ``"hsgp"`` or
        ``"bands"``), ``met_min_week``, ``reference_met``, ``or_median``,
        ``or_lo95``, ``or_hi95``: several runs' ``activity_curve.csv`` with a
        model and a basis column. Models keep the order they first appear in.
    met
        Observed MET-min/week values (missing values are dropped), shown as a
        histogram in the lower panel.
    who_met
        WHO guideline minimum, drawn as a dashed vertical line.
    dictionary
        Gives the x label (``met_min_week``'s label and unit) when passed.
    band_edges
        Edges of the activity bands of a ``"bands"`` model, which is drawn as
        steps: the value of each band held from edge to edge.
    axes
        Two axes, the curves' and the distribution's below it (best with a shared
        x axis); by default a new double-column figure with the curves taking
        3.2 parts of the height and the distribution 1.

    Returns
    -------
    numpy.ndarray
        The two axes. The x axis is ``log10(1 + MET/100)``: linear near 0,
        logarithmic above, so the 0–2,000 range where most participants are takes
        most of the width; log y axis. Histogram bins are equal on that scale.
        The legend is above the axes of a figure the plot made, inside the curves' axes otherwise.
    """
    require(curves, CURVE_COLUMNS, "curves")
    met = pd.to_numeric(pd.Series(np.asarray(met).ravel()), errors="coerce").dropna().to_numpy(float)
    models = in_order(curves["model"])
    refs = in_order(curves["reference_met"].dropna())
    ref_text = format_int(refs[0]) if len(refs) == 1 else "reference"
    xlabel = dictionary.label("met_min_week") if dictionary is not None and "met_min_week" in dictionary \
        else "Physical activity (MET-min/week)"
    x_max = max(curves["met_min_week"].max(), met.max() if met.size else 0.0)
    with own_grid(axes, 2, 2, 1, DOUBLE_COLUMN_IN, 3.6, sharex=True,
                  gridspec_kw={"height_ratios": [3.2, 1]}) as (axes, own):
        ax, hx = axes[:2]
        handles = []
        for j, model in enumerate(models):
            c = curves[curves["model"] == model].sort_values("met_min_week")
            colour = model_colour(j)
            basis = str(c["basis"].iloc[0])
            if basis == "bands":
                xs, v = _band_steps(c, band_edges, c["met_min_week"].max())
                line, = ax.plot(xs, v["or_median"], color=colour, lw=1.4, label=f"{model} (bands)")
                ax.fill_between(xs, v["or_lo95"], v["or_hi95"], color=colour, alpha=0.15, lw=0)
            else:
                x = c["met_min_week"].to_numpy(float)
                line, = ax.plot(x, c["or_median"], color=colour, lw=1.4, label=f"{model} ({basis})")
                ax.fill_between(x, c["or_lo95"], c["or_hi95"], color=colour, alpha=0.15, lw=0)
            handles.append(line)
        ax.axhline(1.0, color="0.3", lw=0.7, zorder=1)
        for r in refs:
            ref, = ax.plot([r], [1.0], "o", ms=4.5, mfc="white", mec="black", mew=1.0, zorder=5,
                           label=f"Reference ({format_int(r)} MET-min/week)")
        handles.append(ref)
        for a in (ax, hx):
            a.axvline(who_met, color="0.2", lw=0.8, ls=(0, (4, 2)), zorder=1)
        ax.text(who_met, 0.98, f" WHO minimum ({format_int(who_met)})", transform=ax.get_xaxis_transform(),
                ha="left", va="top", fontsize=7, color="0.2")
        ax.set_yscale("log")
        y0, y1 = or_limits(curves["or_lo95"].to_numpy(float), curves["or_hi95"].to_numpy(float), pad=1.04)
        y1 *= 1.06  # room for the WHO label
        ax.set_ylim(y0, y1)
        set_log_or_axis(ax.yaxis, y0, y1)
        ax.set_ylabel(f"Odds ratio of CBP\nvs {ref_text} MET-min/week")
        ax.tick_params(axis="x", labelbottom=False)

        ticks = [t for t in (0, 100, 300, 1000, 3000, 10000, 30000) if t <= x_max]
        minor = [m * d for d in (10, 100, 1000, 10000) for m in range(2, 10) if m * d <= x_max and m * d not in ticks]
        for a in (ax, hx):  # both, so that axes without a shared x axis get the same scale
            a.set_xscale("function", functions=(_met_forward, _met_inverse))
            a.set_xlim(0, x_max)
        for a in (ax, hx):
            a.xaxis.set_major_locator(ticker.FixedLocator(ticks))
            a.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: format_int(v)))
            a.xaxis.set_minor_locator(ticker.FixedLocator(minor))
            a.xaxis.set_minor_formatter(ticker.NullFormatter())

        if met.size:
            bins = _met_inverse(np.linspace(0, _met_forward(x_max), 41))
            hx.hist(np.clip(met, 0, x_max), bins=bins, color="0.6", edgecolor="white", lw=0.3)
        hx.set_ylabel("Participants")
        hx.yaxis.set_major_locator(ticker.MaxNLocator(3, integer=True))
        hx.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: format_int(v)))
        hx.set_xlabel(xlabel)
        legend(ax, own, legend_ncol([h.get_label() for h in handles], DOUBLE_COLUMN_IN), handles=handles,
               handletextpad=0.4, columnspacing=1.2)
        ax.figure.align_ylabels([ax, hx])
    return axes
