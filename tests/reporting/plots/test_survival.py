"""Kaplan–Meier plot: labels, the legend with events/n, the log-rank p apart from the legend, the y axis above one half."""

from __future__ import annotations

import pytest

from backpain_epi.reporting.plots import plot_km, text_overlaps
from backpain_epi.reporting.style import SINGLE_COLUMN_IN, TERTILE_COLOURS

from .conftest import caller_axes


def test_plot_km(km_tables, dd):
    km, groups = km_tables
    ax = plot_km(km, groups, 0.0004, dd)
    fig = ax.figure
    assert fig.get_size_inches()[0] == pytest.approx(SINGLE_COLUMN_IN)
    assert ax.get_xlabel() == "Age (years)" and ax.get_ylabel() == "CBP-free proportion"
    legend = ax.get_legend()
    assert legend.get_title().get_text() == "InterMAT volume (mL) tertile (events/n)"
    assert [t.get_text() for t in legend.get_texts()] == ["low: 200/1,000", "middle: 260/1,000", "high: 320/1,000"]
    assert [ln.get_color() for ln in ax.lines] == list(TERTILE_COLOURS)
    assert km["survival"].min() > 0.5 and ax.get_ylim()[0] > 0  # the curves stay above one half
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    p_text = [t for t in ax.texts if "log-rank p" in t.get_text()]
    assert [t.get_text() for t in p_text] == ["log-rank p < 0.001"]
    assert not p_text[0].get_window_extent(renderer).overlaps(legend.get_window_extent(renderer))
    assert text_overlaps(fig) == []


def test_plot_km_draws_into_a_given_ax(km_tables, dd):
    km, groups = km_tables
    ax = caller_axes()[0, 0]
    assert plot_km(km, groups, 0.2, dd, ax=ax) is ax
    assert len(ax.lines) == 3 and any(t.get_text() == "log-rank p = 0.200" for t in ax.texts)


def test_plot_km_needs_the_exposure(km_tables, dd):
    km, groups = km_tables
    bare_km, bare_groups = km.copy(), groups.copy()
    bare_km.attrs, bare_groups.attrs = {}, {}  # as read back from km.csv
    with pytest.raises(ValueError, match="exposure="):
        plot_km(bare_km, bare_groups, 0.5, dd)
    assert plot_km(km, groups, 0.5, dd, exposure="lmm_ml").get_legend().get_title().get_text().startswith("Lean muscle")
