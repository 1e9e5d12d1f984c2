"""Helpers shared by the plots: where a plot draws, odds-ratio axes, legends, and the text-overlap check.

A plot given ``ax`` (or ``axes``) draws there in the caller's style; given none, it
makes its own figure at a journal column width and draws it inside
:func:`~backpain_epi.reporting.style.figure_style` (:func:`own_axes`, :func:`own_grid`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from ..style import figure_style

_LOG_TICK_TIERS = (
    (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100),
    (0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 5, 7, 10),
    (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.2, 1.5, 2, 2.5, 3),
    (0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.1, 1.2, 1.3, 1.4, 1.5, 1.7, 2),
    (0.8, 0.85, 0.9, 0.95, 1, 1.05, 1.1, 1.15, 1.2, 1.25, 1.3),
)


# --------------------------------------------------------------------------- where a plot draws


def new_figure(width: float, height: float) -> Figure:
    """A figure with constrained layout on an Agg canvas (not registered with pyplot, so nothing leaks)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


@contextlib.contextmanager
def own_axes(ax: Axes | None, width: float, height: float) -> Iterator[tuple[Axes, bool]]:
    """Yield ``(ax, own)``: the caller's ``ax`` (``own`` False), or the axes of a new figure drawn in the report style."""
    if ax is not None:
        yield ax, False
        return
    with figure_style():
        yield new_figure(width, height).add_subplot(), True


@contextlib.contextmanager
def own_grid(axes, n: int, nrow: int, ncol: int, width: float, height: float,
             **subplots) -> Iterator[tuple[np.ndarray, bool]]:
    """Yield ``(axes, own)`` for an ``n``-panel plot: the caller's axes (at least ``n``), or a new ``nrow`` × ``ncol`` grid.

    The axes come as a flat object array; a new grid is drawn in the report style
    (``subplots`` goes to :meth:`~matplotlib.figure.Figure.subplots`).
    """
    if axes is not None:
        flat = np.asarray(axes, dtype=object).ravel()
        if len(flat) < n:
            raise ValueError(f"this plot has {n} panel(s) but axes holds {len(flat)}; give at least {n} axes")
        yield flat, False
        return
    with figure_style():
        fig = new_figure(width, height)
        yield np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False, **subplots)).ravel(), True


def grid_columns(axes: np.ndarray) -> int:
    """Columns of the grid ``axes`` lie on (from their subplot spec; one row of all of them otherwise)."""
    spec = axes[0].get_subplotspec()
    return spec.get_gridspec().ncols if spec is not None else len(axes)


def legend(ax: Axes, own: bool, ncol: int, **kwargs) -> None:
    """A legend above the panels of a figure the plot made, or inside the caller's ``ax``."""
    if own:
        ax.figure.legend(loc="outside upper center", ncol=ncol, **kwargs)
    else:
        ax.legend(**kwargs)


# --------------------------------------------------------------------------- data checks


def require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Refuse a table without the ``columns`` a plot needs, or without rows."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {', '.join(missing)}; it has {', '.join(map(str, df.columns))}")
    if df.empty:
        raise ValueError(f"{what} has no rows")


def in_order(values) -> list:
    """Unique values in order of first appearance."""
    return list(dict.fromkeys(values))


# --------------------------------------------------------------------------- axes


def log_ticks(lo: float, hi: float) -> list[float]:
    """Readable ticks for a log axis spanning ``lo``–``hi``: the coarsest set giving at least 3 inside it."""
    best: list[float] = []
    for tier in _LOG_TICK_TIERS:
        inside = [t for t in tier if lo <= t <= hi]
        if 4 <= len(inside) <= 8:
            return inside
        if len(inside) > len(best) and len(inside) <= 8:
            best = inside
    return best or [t for t in (0.5, 1, 2) if lo <= t <= hi] or [1.0]


def set_log_or_axis(axis, lo: float, hi: float) -> None:
    """A log odds-ratio axis with plain-number ticks (0.7, 1, 1.5) and no minor labels."""
    axis.set_major_locator(ticker.FixedLocator(log_ticks(lo, hi)))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(ticker.NullLocator())
    axis.set_minor_formatter(ticker.NullFormatter())


def or_limits(lo: np.ndarray, hi: np.ndarray, pad: float = 1.08) -> tuple[float, float]:
    """Limits of an odds-ratio axis: the intervals and 1, padded by the factor ``pad`` on the log scale."""
    lo, hi = np.nanmin(lo), np.nanmax(hi)
    return min(lo, 1.0) / pad, max(hi, 1.0) * pad


def legend_ncol(names: Sequence[str], width_in: float, fontsize: float = 7.0) -> int:
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


# --------------------------------------------------------------------------- text overlaps


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

    Parameters
    ----------
    fig
        The figure to check (``ax.figure`` of a plot).
    tol
        Overlap, in pixels along both axes, below which two texts do not count as colliding.

    Returns
    -------
    list of tuple of str
        Each pair described as ``"<kind> '<text>'"``, e.g. ``"ytick 'InterMAT'"``; empty when nothing collides.
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
