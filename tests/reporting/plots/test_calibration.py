"""Calibration plot: one panel per model, equal limits everywhere, wraps after four panels."""

from __future__ import annotations

import pytest

from backpain_epi.reporting.plots import plot_calibration, text_overlaps

from .conftest import MODELS, caller_axes, ppc_table


def test_plot_calibration():
    axes = plot_calibration(ppc_table(MODELS))
    assert len(axes) == 4 and [a.get_title() for a in axes] == MODELS
    for a in axes:
        assert a.get_xlim() == pytest.approx(a.get_ylim())
        assert a.get_xlabel() == "Predicted CBP risk"
    assert axes[0].get_ylabel() == "Observed CBP proportion"
    assert all(a.get_xlim() == axes[0].get_xlim() for a in axes)
    assert text_overlaps(axes[0].figure) == []


def test_plot_calibration_wraps_after_four():
    axes = plot_calibration(ppc_table(MODELS + ["extra"]))
    visible = [a for a in axes if a.get_visible()]
    assert len(visible) == 5 and len(axes) == 8
    assert len({round(a.get_position().y0, 3) for a in visible}) == 2  # two rows
    assert text_overlaps(axes[0].figure) == []


def test_plot_calibration_draws_into_given_axes():
    given = caller_axes(2, 3)
    axes = plot_calibration(ppc_table(MODELS), axes=given)
    assert list(axes) == list(given.ravel())
    assert [a.get_title() for a in axes[:4]] == MODELS and not any(a.get_visible() for a in axes[4:])
    assert [bool(a.get_ylabel()) for a in axes[:4]] == [True, False, False, True]  # first column of the caller's 3 columns
    assert axes[0].get_legend() is not None and axes[0].figure.legends == []
