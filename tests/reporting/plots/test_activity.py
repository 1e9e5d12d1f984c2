"""Activity curve: one curve and band per model, bands as steps, the WHO line, the readable 0–2,000 range, the histogram."""

from __future__ import annotations

import numpy as np
import pytest

from backpain_epi.reporting.plots import plot_activity_curve, text_overlaps

from .conftest import caller_axes


def test_plot_activity_curve(curves, cohort, dd):
    axes = plot_activity_curve(curves, cohort["met_min_week"], dictionary=dd)
    ax, hx = axes
    fig = ax.figure
    assert fig.axes == [ax, hx]
    assert ax.get_yscale() == "log"
    assert hx.get_xlabel() == "Physical activity (MET-min/week)"
    assert ax.get_ylabel() == "Odds ratio of CBP\nvs 1,500 MET-min/week"
    assert hx.get_ylabel() == "Participants" and len(hx.patches) > 10
    who = [ln for ln in ax.lines if list(ln.get_xdata()) == [600.0, 600.0]]
    assert len(who) == 1
    assert any(t.get_text().strip() == "WHO minimum (600)" for t in ax.texts)
    models = curves["model"].unique()
    series = [ln for ln in ax.lines if ln.get_label().split(" (")[0] in models]
    assert len(series) == len(models)
    assert len(ax.collections) == len(models)  # one credible band per model
    # the bands model is piecewise constant with jumps at the band edges
    bands = next(ln for ln in series if ln.get_label() == "paper (bands)")
    x, y = np.asarray(bands.get_xdata()), np.asarray(bands.get_ydata())
    assert list(x) == [0, 500, 500, 5000, 5000, 15000]
    assert list(y) == pytest.approx([1.08, 1.08, 1.0, 1.0, 1.35, 1.35])
    # reference point and the readable 0–2,000 range: it takes more than half of the width
    assert any(list(ln.get_xdata()) == [1500.0] for ln in ax.lines)
    x0, x1 = ax.transData.transform([(0, 1), (2000, 1)])[:, 0]
    left, right = ax.get_window_extent().x0, ax.get_window_extent().x1
    assert (x1 - x0) / (right - left) > 0.5
    assert text_overlaps(fig) == []


@pytest.mark.parametrize("sharex", [True, False])
def test_plot_activity_curve_draws_into_given_axes(curves, cohort, sharex):
    given = caller_axes(2, 1, sharex=sharex)[:, 0]
    axes = plot_activity_curve(curves, cohort["met_min_week"], axes=given)
    assert list(axes) == list(given)
    ax, hx = given
    x_max = max(curves["met_min_week"].max(), cohort["met_min_week"].max())
    for a in (ax, hx):  # the activity scale on both, shared or not
        assert a.get_xscale() == "function" and a.get_xlim() == pytest.approx((0, x_max))
    assert len(hx.patches) > 10 and ax.get_legend() is not None and ax.figure.legends == []


def test_plot_activity_curve_needs_two_axes(curves, cohort):
    with pytest.raises(ValueError, match="at least 2 axes"):
        plot_activity_curve(curves, cohort["met_min_week"], axes=caller_axes()[0])
