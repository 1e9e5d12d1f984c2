"""The report's figures: odds ratios, the activity curve, exposure distributions, model comparison,
calibration and segmentation QC overlays.

Every function takes its data as DataFrames or arrays, draws inside
:func:`~backpain_epi.reporting.style.figure_style` at a journal column width and
returns a :class:`matplotlib.figure.Figure`; none shows or saves (use
:func:`~backpain_epi.reporting.style.save_figure`). :func:`text_overlaps` lists
text that collides, which the tests use to keep every figure readable.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Text

from ..derived import ACTIVITY_BAND_EDGES
from ..dictionary import DataDictionary
from .style import (
    DOUBLE_COLUMN_IN,
    FLAG_COLOUR,
    OUTCOME_COLOURS,
    SEGMENTATION_LABELS,
    SINGLE_COLUMN_IN,
    figure_style,
    model_colour,
)

__all__ = [
    "forest_plot", "activity_curve_plot", "exposure_distributions", "loo_plot", "calibration_plot",
    "qc_overlays", "text_overlaps",
]

FOREST_COLUMNS = ("model", "term", "label", "per", "or_median", "or_lo95", "or_hi95")
CURVE_COLUMNS = ("model", "basis", "met_min_week", "reference_met", "or_median", "or_lo95", "or_hi95")
COMPARISON_COLUMNS = ("model", "rank", "elpd_loo", "se", "elpd_diff", "dse")
PPC_COLUMNS = ("model", "decile", "predicted", "observed", "rep_lo95", "rep_hi95")
QC_KEYS = ("participant_id", "water", "labels", "spacing")

#: Scale constant of the activity axis: x is drawn as log10(1 + MET/c), linear near 0, logarithmic above c.
MET_AXIS_C = 100.0

_LOG_TICK_TIERS = (
    (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100),
    (0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 5, 7, 10),
    (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.2, 1.5, 2, 2.5, 3),
    (0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.1, 1.2, 1.3, 1.4, 1.5, 1.7, 2),
    (0.8, 0.85, 0.9, 0.95, 1, 1.05, 1.1, 1.15, 1.2, 1.25, 1.3),
)


# --------------------------------------------------------------------------- helpers


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {', '.join(missing)}; it has {', '.join(map(str, df.columns))}")
    if df.empty:
        raise ValueError(f"{what} has no rows")


def _in_order(values) -> list:
    """Unique values in order of first appearance."""
    return list(dict.fromkeys(values))


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Readable ticks for a log axis spanning ``lo``–``hi``: the coarsest set giving at least 3 inside it."""
    best: list[float] = []
    for tier in _LOG_TICK_TIERS:
        inside = [t for t in tier if lo <= t <= hi]
        if 4 <= len(inside) <= 8:
            return inside
        if len(inside) > len(best) and len(inside) <= 8:
            best = inside
    return best or [t for t in (0.5, 1, 2) if lo <= t <= hi] or [1.0]


def _set_log_or_axis(axis, lo: float, hi: float) -> None:
    """A log odds-ratio axis with plain-number ticks (0.7, 1, 1.5) and no minor labels."""
    axis.set_major_locator(ticker.FixedLocator(_log_ticks(lo, hi)))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(ticker.NullLocator())
    axis.set_minor_formatter(ticker.NullFormatter())


def _or_limits(lo: np.ndarray, hi: np.ndarray, pad: float = 1.08) -> tuple[float, float]:
    lo, hi = np.nanmin(lo), np.nanmax(hi)
    return min(lo, 1.0) / pad, max(hi, 1.0) * pad


def _legend_ncol(names: Sequence[str], width_in: float, fontsize: float = 7.0) -> int:
    """Columns for a one-row legend if it fits ``width_in``, else as many rows as needed."""
    char_in = 0.55 * fontsize / 72
    widths = [len(str(n)) * char_in + 0.45 for n in names]
    ncol = len(names)
    while ncol > 1:
        rows = [widths[i:i + ncol] for i in range(0, len(widths), ncol)]
        col_w = [max(r[j] for r in rows if j < len(r)) for j in range(ncol)]
        if sum(col_w) <= 0.95 * width_in:
            break
        ncol -= 1
    return max(ncol, 1)


def _new_figure(width: float, height: float) -> Figure:
    """A figure with constrained layout on an Agg canvas (not registered with pyplot, so nothing leaks)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _fmt_int(v: float) -> str:
    return f"{v:,.0f}"


# --------------------------------------------------------------------------- 1. forest plot


def forest_plot(ors: pd.DataFrame, dictionary: DataDictionary | None = None) -> Figure:
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

    Returns
    -------
    Figure
        One row block per term (label and the ``per`` contrast on the y axis),
        models dodged within it in model colours with a legend, log x axis with a
        reference line at 1. Single-column width for up to 3 terms, double beyond.
    """
    _require(ors, FOREST_COLUMNS, "ors")
    models = _in_order(ors["model"])
    terms = _in_order(ors["term"])
    nm, nt = len(models), len(terms)
    width = SINGLE_COLUMN_IN if nt <= 3 else DOUBLE_COLUMN_IN
    height = 0.75 + nt * (0.22 + 0.11 * nm) + 0.15 * math.ceil(nm / _legend_ncol(models, width))
    dodge = 0.7 / max(nm, 1)
    with figure_style():
        fig = _new_figure(width, height)
        ax = fig.add_subplot()
        ticklabels = []
        for i, term in enumerate(terms):
            rows = ors[ors["term"] == term]
            first = rows.iloc[0]
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
        x0, x1 = _or_limits(ors["or_lo95"].to_numpy(float), ors["or_hi95"].to_numpy(float))
        ax.set_xlim(x0, x1)
        _set_log_or_axis(ax.xaxis, x0, x1)
        ax.set_yticks([-i for i in range(nt)], ticklabels)
        ax.set_ylim(-nt + 0.5, 0.5)
        ax.tick_params(axis="y", length=0)
        ax.set_xlabel("Odds ratio per 2 SD (95% credible interval)")
        fig.legend(loc="outside upper center", ncol=_legend_ncol(models, width), handletextpad=0.3,
                   columnspacing=1.0, borderaxespad=0.2)
    return fig


# --------------------------------------------------------------------------- 2. activity curve


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


def activity_curve_plot(curves: pd.DataFrame, met, *, who_met: float = 600.0,
                        dictionary: DataDictionary | None = None,
                        band_edges: Sequence[float] = ACTIVITY_BAND_EDGES) -> Figure:
    """Odds ratio of CBP against physical activity, one curve per model, over the activity distribution.

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

    Returns
    -------
    Figure
        Double-column width. The x axis is ``log10(1 + MET/100)``: linear near 0,
        logarithmic above, so the 0–2,000 range where most participants are takes
        most of the width; log y axis. Histogram bins are equal on that scale.
    """
    _require(curves, CURVE_COLUMNS, "curves")
    met = pd.to_numeric(pd.Series(np.asarray(met).ravel()), errors="coerce").dropna().to_numpy(float)
    models = _in_order(curves["model"])
    refs = _in_order(curves["reference_met"].dropna())
    ref_text = _fmt_int(refs[0]) if len(refs) == 1 else "reference"
    xlabel = dictionary.label("met_min_week") if dictionary is not None and "met_min_week" in dictionary \
        else "Physical activity (MET-min/week)"
    x_max = max(curves["met_min_week"].max(), met.max() if met.size else 0.0)
    with figure_style():
        fig = _new_figure(DOUBLE_COLUMN_IN, 3.6)
        ax, hx = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3.2, 1]})
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
                           label=f"Reference ({_fmt_int(r)} MET-min/week)")
        handles.append(ref)
        for a in (ax, hx):
            a.axvline(who_met, color="0.2", lw=0.8, ls=(0, (4, 2)), zorder=1)
        ax.text(who_met, 0.98, f" WHO minimum ({_fmt_int(who_met)})", transform=ax.get_xaxis_transform(),
                ha="left", va="top", fontsize=7, color="0.2")
        ax.set_yscale("log")
        y0, y1 = _or_limits(curves["or_lo95"].to_numpy(float), curves["or_hi95"].to_numpy(float), pad=1.04)
        y1 *= 1.06  # room for the WHO label
        ax.set_ylim(y0, y1)
        _set_log_or_axis(ax.yaxis, y0, y1)
        ax.set_ylabel(f"Odds ratio of CBP\nvs {ref_text} MET-min/week")
        ax.tick_params(axis="x", labelbottom=False)

        ax.set_xscale("function", functions=(_met_forward, _met_inverse))
        ax.set_xlim(0, x_max)
        ticks = [t for t in (0, 100, 300, 1000, 3000, 10000, 30000) if t <= x_max]
        hx.xaxis.set_major_locator(ticker.FixedLocator(ticks))
        hx.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _fmt_int(v)))
        minor = [m * d for d in (10, 100, 1000, 10000) for m in range(2, 10) if m * d <= x_max and m * d not in ticks]
        hx.xaxis.set_minor_locator(ticker.FixedLocator(minor))
        hx.xaxis.set_minor_formatter(ticker.NullFormatter())

        if met.size:
            bins = _met_inverse(np.linspace(0, _met_forward(x_max), 41))
            hx.hist(np.clip(met, 0, x_max), bins=bins, color="0.6", edgecolor="white", lw=0.3)
        hx.set_ylabel("Participants")
        hx.yaxis.set_major_locator(ticker.MaxNLocator(3, integer=True))
        hx.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _fmt_int(v)))
        hx.set_xlabel(xlabel)
        fig.legend(handles=handles, loc="outside upper center", ncol=_legend_ncol(
            [h.get_label() for h in handles], DOUBLE_COLUMN_IN), handletextpad=0.4, columnspacing=1.2)
        fig.align_ylabels([ax, hx])
    return fig


# --------------------------------------------------------------------------- 3. exposure distributions


def exposure_distributions(df: pd.DataFrame, exposures: Sequence[str], *, outcome: str = "cbp",
                           dictionary: DataDictionary | None = None) -> Figure:
    """Density of each exposure by CBP status (kernel density estimates, group medians marked).

    Parameters
    ----------
    df
        The cohort: one row per participant with the ``exposures`` columns and
        the binary ``outcome`` column (0 = no CBP, 1 = CBP). Missing values are
        dropped per exposure.
    exposures
        Columns to show, one panel each (up to 3 per row).
    outcome
        The outcome column.
    dictionary
        Gives each panel's x label (label and unit); the column name otherwise.

    Returns
    -------
    Figure
        Single-column width for one exposure, double otherwise; shared legend
        "No CBP" / "CBP" above the panels. Each curve spans the groups' 0.5–99.5th
        percentiles; the dashed line marks the group median.
    """
    from scipy.stats import gaussian_kde

    exposures = list(exposures)
    _require(df, exposures + [outcome], "df")
    n = len(exposures)
    ncol = min(n, 3)
    nrow = math.ceil(n / ncol)
    width = SINGLE_COLUMN_IN if n == 1 else DOUBLE_COLUMN_IN
    with figure_style():
        fig = _new_figure(width, 0.35 + 1.9 * nrow)
        axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
        y = pd.to_numeric(df[outcome], errors="coerce")
        for ax, col in zip(axes, exposures):
            x = pd.to_numeric(df[col], errors="coerce")
            ok = x.notna() & y.isin([0, 1])
            lo, hi = np.nanpercentile(x[ok], [0.5, 99.5])
            pad = 0.03 * (hi - lo)
            grid = np.linspace(lo - pad, hi + pad, 256)
            for k, name in enumerate(("No CBP", "CBP")):
                v = x[ok & (y == k)].to_numpy(float)
                if v.size < 2 or np.ptp(v) == 0:
                    continue
                dens = gaussian_kde(v)(grid)
                ax.plot(grid, dens, color=OUTCOME_COLOURS[k], lw=1.3, label=name)
                ax.fill_between(grid, 0, dens, color=OUTCOME_COLOURS[k], alpha=0.12, lw=0)
                med = float(np.median(v))
                ax.plot([med, med], [0, np.interp(med, grid, dens)], color=OUTCOME_COLOURS[k], lw=0.9,
                        ls=(0, (3, 2)))
            ax.set_xlim(grid[0], grid[-1])
            ax.set_ylim(bottom=0)
            ax.set_xlabel(dictionary.label(col) if dictionary is not None and col in dictionary else col)
            ax.xaxis.set_major_locator(ticker.MaxNLocator(5))
            ax.yaxis.set_major_locator(ticker.MaxNLocator(4))
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3), useMathText=True)
        for ax in axes[n:]:
            ax.set_visible(False)
        for i, ax in enumerate(axes[:n]):
            if i % ncol == 0:
                ax.set_ylabel("Density")
        handles = [Line2D([], [], color=OUTCOME_COLOURS[k], lw=1.3, label=lab) for k, lab in enumerate(("No CBP", "CBP"))]
        handles.append(Line2D([], [], color="0.3", lw=0.9, ls=(0, (3, 2)), label="Median"))
        fig.legend(handles=handles, loc="outside upper center", ncol=3)
    return fig


# --------------------------------------------------------------------------- 4. LOO comparison


def loo_plot(comparison: pd.DataFrame) -> Figure:
    """Model comparison by expected log predictive density (PSIS-LOO), like ArviZ's ``plot_compare``.

    Parameters
    ----------
    comparison
        One row per model with columns ``model``, ``rank`` (1 = best),
        ``elpd_loo``, ``se``, ``elpd_diff`` (to the best, ≥ 0) and ``dse`` (its
        standard error); ``p_loo`` and ``weight`` may be present (unused).

    Returns
    -------
    Figure
        Single-column width, models top to bottom in rank order. Per model: ELPD
        ± SE (filled point, black bar) and, for all but the best, ELPD of the best
        minus the difference ± SE of the difference (grey triangle), a dashed line
        at the best ELPD; the right axis gives the difference ± SE as numbers.
    """
    _require(comparison, COMPARISON_COLUMNS, "comparison")
    c = comparison.sort_values("rank").reset_index(drop=True)
    n = len(c)
    best = float(c["elpd_loo"].iloc[0])
    with figure_style():
        fig = _new_figure(SINGLE_COLUMN_IN, 0.85 + 0.36 * n)
        ax = fig.add_subplot()
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
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _fmt_int(v).replace("-", "\u2212")))
        ax.set_xlabel("ELPD (LOO, higher is better)")
        right = ax.twinx()
        right.set_ylim(ax.get_ylim())
        diffs = ["best"] + [f"\u2212{r.elpd_diff:,.1f} \u00b1 {r.dse:,.1f}" for r in c.iloc[1:].itertuples()]
        right.set_yticks(y, diffs)
        right.tick_params(axis="y", length=0)
        right.spines["right"].set_visible(False)
        right.set_ylabel("\u0394 ELPD \u00b1 SE", rotation=270, va="bottom")
        fig.legend(loc="outside upper center", ncol=2, handletextpad=0.3, columnspacing=1.0)
    return fig


# --------------------------------------------------------------------------- 5. calibration


def calibration_plot(ppc: pd.DataFrame) -> Figure:
    """Posterior predictive check by decile of predicted risk, one panel per model.

    Parameters
    ----------
    ppc
        Long table with columns ``model``, ``decile`` (1–10), ``predicted`` (mean
        predicted probability in the decile), ``observed`` (observed proportion
        with CBP), ``rep_lo95``, ``rep_hi95`` (95% interval of the replicated
        proportion from the posterior predictive); ``n`` may be present (unused).

    Returns
    -------
    Figure
        Up to 4 panels side by side (wrapping after 4), same limits on both axes
        and in all panels, the diagonal y = x; observed proportions as points in
        the model's colour, replicated intervals as grey bars at the predicted risk.
    """
    _require(ppc, PPC_COLUMNS, "ppc")
    models = _in_order(ppc["model"])
    n = len(models)
    ncol = min(n, 4)
    nrow = math.ceil(n / ncol)
    width = SINGLE_COLUMN_IN if n == 1 else DOUBLE_COLUMN_IN
    panel = (width - 0.5) / ncol
    vals = ppc[["predicted", "observed", "rep_lo95", "rep_hi95"]].to_numpy(float)
    lo, hi = np.nanmin(vals), np.nanmax(vals)
    pad = 0.06 * (hi - lo) or 0.02
    lim = (max(0.0, lo - pad), min(1.0, hi + pad))
    with figure_style():
        fig = _new_figure(width, 0.75 + panel * nrow)
        axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False, sharex=True, sharey=True)).ravel()
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
        fig.legend(handles=handles, loc="outside upper center", ncol=_legend_ncol(
            [h.get_label() for h in handles], width))
    return fig


# --------------------------------------------------------------------------- 6. QC overlays


def _qc_slice(labels: np.ndarray) -> int:
    """Index (last axis) of the slice through the middle of the labelled muscle; the middle slice if none."""
    z = np.flatnonzero((labels > 0).any(axis=(0, 1)))
    return int((z[0] + z[-1]) // 2) if z.size else labels.shape[2] // 2


def qc_overlays(samples: Sequence[dict], *, crop_mm: float | None = 30.0) -> Figure:
    """Segmentation QC: an axial water slice per participant with the label contours.

    Parameters
    ----------
    samples
        Up to 6 dicts (more are ignored), each with ``participant_id`` (str),
        ``water`` (3-D array), ``labels`` (3-D int array, same shape; 0
        background, 1/2 autochthonous left/right, 3/4 psoas left/right),
        ``spacing`` (voxel size in mm per axis) and optionally ``flagged``
        (bool) and ``note`` (str). Arrays are in RAS orientation, as
        :meth:`backpain_epi.segmentation.io.Grid.to_canonical` gives them:
        axis 0 left→right, axis 1 posterior→anterior, the last axis the slice
        axis; ``spacing`` is then ``Grid.spacing``.
    crop_mm
        Margin (mm) around the labelled muscle of the shown slice: each panel is a
        square window centred on it (black outside the image); ``None`` shows the whole slice.

    Returns
    -------
    Figure
        Double-column width, up to 3 panels per row. Each shows the slice through
        the middle of the labelled muscle in radiological view (anterior up,
        patient's right on the left), windowed to the slice's 1st–99th
        percentile, with true aspect from the spacing; contours in four colours
        with a shared legend; the title is red with "· QC flagged" when flagged,
        and the note is written below the panel.
    """
    samples = list(samples)[:6]
    if not samples:
        raise ValueError("samples is empty: give at least one participant")
    for i, s in enumerate(samples):
        missing = [k for k in QC_KEYS if k not in s]
        if missing:
            raise ValueError(f"sample {i} lacks key(s) {', '.join(missing)}")
    n = len(samples)
    ncol = min(n, 3)
    nrow = math.ceil(n / ncol)
    panel = (DOUBLE_COLUMN_IN - 0.1) / 3
    with figure_style():
        fig = _new_figure(DOUBLE_COLUMN_IN, 0.35 + (panel + 0.5) * nrow)
        fig.get_layout_engine().set(h_pad=0.06, hspace=0.06)
        axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
        for ax, s in zip(axes, samples):
            water, labels = np.asarray(s["water"], dtype=float), np.asarray(s["labels"])
            if water.ndim != 3 or labels.shape != water.shape:
                raise ValueError(f"{s['participant_id']}: water {water.shape} and labels {labels.shape} "
                                 "must be 3-D arrays of the same shape")
            sx, sy = (float(v) for v in s["spacing"][:2])
            k = _qc_slice(labels)
            img, lab = water[:, :, k], labels[:, :, k]
            vmin, vmax = np.percentile(img, [1, 99])
            if vmax <= vmin:
                vmax = vmin + 1
            nx, ny = img.shape
            extent = (-0.5 * sx, (nx - 0.5) * sx, -0.5 * sy, (ny - 0.5) * sy)
            ax.imshow(img.T, cmap="gray", vmin=vmin, vmax=vmax, origin="lower", extent=extent,
                      interpolation="nearest", aspect="equal")
            xc, yc = np.arange(nx) * sx, np.arange(ny) * sy
            for value, (_, colour) in SEGMENTATION_LABELS.items():
                mask = lab == value
                if mask.any():
                    ax.contour(xc, yc, mask.T.astype(float), levels=[0.5], colors=[colour], linewidths=0.9)
            if crop_mm is not None and (lab > 0).any():
                # a square window around the labelled muscle, so that all panels have the same size
                ix, iy = np.nonzero(lab > 0)
                cx, cy = (ix.min() + ix.max()) / 2 * sx, (iy.min() + iy.max()) / 2 * sy
                half = max((ix.max() - ix.min() + 1) * sx, (iy.max() - iy.min() + 1) * sy) / 2 + crop_mm
                ax.set_xlim(cx - half, cx + half)
                ax.set_ylim(cy - half, cy + half)
                ax.set_facecolor("black")
            else:
                ax.set_xlim(extent[0], extent[1])
                ax.set_ylim(extent[2], extent[3])
            ax.invert_xaxis()  # radiological view: the patient's right (+x in RAS) on the left
            ax.set_xticks([]), ax.set_yticks([])
            flagged = bool(s.get("flagged", False))
            title = str(s["participant_id"]) + (" \u00b7 QC flagged" if flagged else "")
            ax.set_title(title, color=FLAG_COLOUR if flagged else "black",
                         fontweight="bold" if flagged else "normal")
            if flagged:
                for sp in ax.spines.values():
                    sp.set_visible(True)
                    sp.set_color(FLAG_COLOUR)
                    sp.set_linewidth(1.2)
            else:
                for sp in ax.spines.values():
                    sp.set_visible(False)
            note = str(s.get("note") or "")
            label = f"slice {k + 1}/{labels.shape[2]}" + (f" \u00b7 {note}" if note else "")
            ax.set_xlabel(textwrap.fill(label, 48), fontsize=6.5)
        for ax in axes[n:]:
            ax.set_visible(False)
        handles = [Patch(facecolor="none", edgecolor=colour, lw=1.2, label=name)
                   for name, colour in SEGMENTATION_LABELS.values()]
        fig.legend(handles=handles, loc="outside upper center", ncol=4)
    return fig


# --------------------------------------------------------------------------- 7. text overlaps


def _tick_texts(axis) -> list[Text]:
    """Tick labels that are drawn: visible, of ticks inside the view interval."""
    lo, hi = sorted(axis.get_view_interval())
    eps = 1e-9 * max(hi - lo, 1e-300)
    out = []
    for tick in list(axis.get_major_ticks()) + list(axis.get_minor_ticks()):
        loc = tick.get_loc()
        if loc is None or not np.isfinite(loc) or not lo - eps <= loc <= hi + eps:
            continue
        for t in (tick.label1, tick.label2):
            if tick.get_visible() and t.get_visible():
                out.append(t)
    return out


def _describe(t: Text, kinds: dict) -> str:
    kind = kinds.get(id(t), "text")
    return f"{kind} {t.get_text()!r}"


def text_overlaps(fig: Figure, tol: float = 1.0) -> list[tuple[str, str]]:
    """Pairs of drawn, non-empty texts of ``fig`` whose extents overlap by more than ``tol`` pixels.

    The figure is drawn with its own renderer; tick labels (of ticks in view),
    axis labels, titles, legend texts, annotations and other texts are compared.
    Each pair is described as ``"<kind> '<text>'"``, e.g. ``"ytick 'InterMAT'"``.
    """
    if not hasattr(fig.canvas, "get_renderer"):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    tick_ids: set[int] = set()
    texts: list[Text] = []
    kinds: dict[int, str] = {}
    for ax in fig.axes:
        for name, axis in (("xtick", ax.xaxis), ("ytick", ax.yaxis)):
            for tick in list(axis.get_major_ticks()) + list(axis.get_minor_ticks()):
                tick_ids.update({id(tick.label1), id(tick.label2)})
            if not ax.get_visible() or not axis.get_visible():
                continue
            for t in _tick_texts(axis):
                kinds[id(t)] = name
                texts.append(t)
        kinds[id(ax.xaxis.label)] = "xlabel"
        kinds[id(ax.yaxis.label)] = "ylabel"
        for t in (ax.title, ax._left_title, ax._right_title) if hasattr(ax, "_left_title") else (ax.title,):
            kinds[id(t)] = "title"
    for leg in fig.legends + [a.get_legend() for a in fig.axes if a.get_legend() is not None]:
        for t in leg.get_texts():
            kinds[id(t)] = "legend"
    for t in fig.findobj(Text):
        if id(t) in tick_ids:
            continue
        ax = t.axes
        if ax is not None and not ax.get_visible():
            continue
        texts.append(t)
    seen, boxes = set(), []
    for t in texts:
        if id(t) in seen or not t.get_visible() or not t.get_text().strip():
            continue
        seen.add(id(t))
        bb = t.get_window_extent(renderer)
        if bb.width <= 0 or bb.height <= 0 or not np.isfinite(bb.get_points()).all():
            continue
        boxes.append((t, bb))
    pairs = []
    for i in range(len(boxes)):
        ti, bi = boxes[i]
        for j in range(i + 1, len(boxes)):
            tj, bj = boxes[j]
            w = min(bi.x1, bj.x1) - max(bi.x0, bj.x0)
            h = min(bi.y1, bj.y1) - max(bi.y0, bj.y0)
            if w > tol and h > tol:
                pairs.append((_describe(ti, kinds), _describe(tj, kinds)))
    return pairs
