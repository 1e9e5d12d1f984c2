"""Forest plot: log OR axis with plain ticks, one series per model in model colours, size grows with the rows."""

from __future__ import annotations

import matplotlib.colors as mcolors
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from PIL import Image

from backpain_epi.reporting.plots import plot_forest, text_overlaps
from backpain_epi.reporting.style import DOUBLE_COLUMN_IN, SINGLE_COLUMN_IN, model_colour, save_figure

from .conftest import MODELS, caller_axes


def test_plot_forest(ors, dd):
    ax = plot_forest(ors, dictionary=dd)
    assert isinstance(ax, Axes)
    fig = ax.figure
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel() == "Odds ratio per 2 SD (95% credible interval)"
    assert len(ax.containers) == len(MODELS)  # one error-bar series per model
    assert [t.get_text() for t in fig.legends[0].get_texts()] == MODELS
    colours = [mcolors.to_hex(c.lines[0].get_color()) for c in ax.containers]
    assert colours == [model_colour(i).lower() for i in range(len(MODELS))]
    ylabels = [t.get_text() for t in ax.get_yticklabels()]
    assert ylabels[0] == "InterMAT volume\n(2 SD = 120 mL)" and "mL" in ylabels[1] and "%" in ylabels[2]
    ticks = ax.get_xticks()
    assert 1.0 in ticks and len(ticks) >= 4
    assert all(t.get_text() for t in ax.get_xticklabels())  # plain numbers, no empty or 10^x labels
    assert any(isinstance(a, Line2D) and list(a.get_xdata()) == [1, 1] for a in ax.lines)  # reference at 1
    assert fig.get_size_inches()[0] == pytest.approx(SINGLE_COLUMN_IN)
    assert text_overlaps(fig) == []


def test_plot_forest_grows_with_rows(ors):
    small = plot_forest(ors[ors["term"] == "intermat_ml"]).figure
    big = plot_forest(ors).figure
    assert big.get_size_inches()[1] > small.get_size_inches()[1]
    many = pd.concat([ors, ors.assign(term="psoas_ml", label="Psoas volume", per="2 SD = 150 mL")])
    assert plot_forest(many).figure.get_size_inches()[0] == pytest.approx(DOUBLE_COLUMN_IN)


def test_plot_forest_draws_into_a_given_ax(ors):
    ax = caller_axes()[0, 0]
    assert plot_forest(ors, ax=ax) is ax
    assert len(ax.containers) == len(MODELS) and ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == MODELS  # in the axes, not above a figure it does not own
    assert ax.figure.legends == [] and tuple(ax.figure.get_size_inches()) == (4, 3)


def test_missing_columns_are_reported(ors):
    with pytest.raises(ValueError, match="or_hi95"):
        plot_forest(ors.drop(columns="or_hi95"))


def test_save_figure_png_300_dpi_and_svg(tmp_path, ors):
    paths = save_figure(plot_forest(ors).figure, tmp_path / "fig", "forest")
    with Image.open(paths["png"]) as im:
        assert im.info["dpi"] == pytest.approx((300, 300), abs=0.5)
        assert im.size[0] == pytest.approx(SINGLE_COLUMN_IN * 300, rel=0.1)
    svg = paths["svg"].read_text()
    assert "<svg" in svg
    assert "InterMAT volume" in svg  # text kept as text, editable
