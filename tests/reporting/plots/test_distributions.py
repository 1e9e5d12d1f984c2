"""Exposure distributions: one panel per exposure with labels and units, both outcome groups in their colours."""

from __future__ import annotations

import matplotlib.colors as mcolors
import pytest

from backpain_epi.reporting.plots import plot_exposure_distributions, text_overlaps
from backpain_epi.reporting.style import DOUBLE_COLUMN_IN, OUTCOME_COLOURS

from .conftest import caller_axes

EXPOSURES = ["intermat_ml", "lmm_ml", "imf_pct"]


def test_plot_exposure_distributions(cohort, dd):
    axes = plot_exposure_distributions(cohort, EXPOSURES, dictionary=dd)
    fig = axes[0].figure
    assert [a for a in fig.axes if a.get_visible()] == list(axes)
    assert [a.get_xlabel() for a in axes] == [dd.label(c) for c in EXPOSURES]
    assert "(mL)" in axes[0].get_xlabel() and "(%)" in axes[2].get_xlabel()
    assert axes[0].get_ylabel() == "Density"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:2] == ["No CBP", "CBP"]
    curve_colours = {mcolors.to_hex(ln.get_color()) for ln in axes[0].lines}
    assert {c.lower() for c in OUTCOME_COLOURS} <= curve_colours
    assert fig.get_size_inches()[0] == pytest.approx(DOUBLE_COLUMN_IN)
    assert text_overlaps(fig) == []


def test_plot_exposure_distributions_draws_into_given_axes(cohort, dd):
    given = caller_axes(2, 2)
    axes = plot_exposure_distributions(cohort, EXPOSURES, dictionary=dd, axes=given)
    assert list(axes) == list(given.ravel())
    assert [a.get_visible() for a in axes] == [True, True, True, False]  # the spare one hidden
    assert [a.get_ylabel() for a in axes[:3]] == ["Density", "", "Density"]  # first column of the caller's 2 × 2 grid
    assert axes[0].get_legend() is not None and axes[0].figure.legends == []


def test_too_few_axes_are_refused(cohort):
    with pytest.raises(ValueError, match="3 panel"):
        plot_exposure_distributions(cohort, EXPOSURES, axes=caller_axes(1, 2))
