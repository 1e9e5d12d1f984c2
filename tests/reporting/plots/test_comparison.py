"""LOO plot: models in rank order, ELPD ± SE and the differences to the best, the differences as numbers on the right."""

from __future__ import annotations

import pytest

from backpain_epi.reporting.plots import plot_loo, text_overlaps

from .conftest import caller_axes


def test_plot_loo(comparison):
    ax = plot_loo(comparison.sample(frac=1, random_state=2))  # input order does not matter
    fig = ax.figure
    assert [t.get_text() for t in ax.get_yticklabels()] == ["full_hsgp", "full", "paper", "unadjusted"]
    assert ax.get_xlabel() == "ELPD (LOO, higher is better)"
    elpd = ax.containers[0].lines[0]
    assert list(elpd.get_xdata()) == pytest.approx([-13729.0, -13729.5, -13736.5, -13896.8])
    assert len(ax.containers[1].lines[0].get_xdata()) == 3  # differences for all but the best
    right = [t.get_text() for t in fig.axes[1].get_yticklabels()]
    assert right[0] == "best" and right[3].startswith("\u2212167.8")
    assert text_overlaps(fig) == []


def test_plot_loo_draws_into_a_given_ax(comparison):
    ax = caller_axes()[0, 0]
    assert plot_loo(comparison, ax=ax) is ax
    assert len(ax.containers) == 2 and len(ax.figure.axes) == 2  # and the twin axis of the differences
    assert ax.get_legend() is not None and ax.figure.legends == []
