"""QC overlays: one panel per participant, flagged ones marked, true aspect, radiological view, six at most."""

from __future__ import annotations

import matplotlib.colors as mcolors
import numpy as np
import pytest

from backpain_epi.reporting.plots import plot_qc_overlays, text_overlaps
from backpain_epi.reporting.style import DOUBLE_COLUMN_IN, FLAG_COLOUR

from .conftest import caller_axes, qc_sample


def test_plot_qc_overlays(samples):
    axes = plot_qc_overlays(samples)
    fig = axes[0].figure
    shown = [a for a in axes if a.get_visible()]
    assert len(shown) == 5
    assert fig.get_size_inches()[0] == pytest.approx(DOUBLE_COLUMN_IN)
    assert shown[0].get_title() == "P000001"
    flagged = shown[2]
    assert flagged.get_title() == "P000003 \u00b7 QC flagged"
    assert mcolors.to_hex(flagged.title.get_color()) == FLAG_COLOUR.lower()
    assert "psoas_left_ml below 20 mL" in flagged.get_xlabel()
    assert "slice 5/10" in shown[0].get_xlabel()  # the middle of the labelled slices 3–8
    for a in shown:
        assert len(a.get_xticks()) == 0 and len(a.get_yticks()) == 0
        assert len(a.images) == 1
        assert len(a.collections) >= 4  # one contour set per label
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "Autochthonous L", "Autochthonous R", "Psoas L", "Psoas R"]
    assert text_overlaps(fig) == []


def test_plot_qc_overlays_aspect_follows_spacing():
    s = qc_sample("P000009", spacing=(1.0, 3.0, 5.0))
    ax = plot_qc_overlays([s], crop_mm=None)[0]
    x0, x1 = sorted(ax.get_xlim())
    y0, y1 = sorted(ax.get_ylim())
    assert (x1 - x0, y1 - y0) == pytest.approx((48 * 1.0, 40 * 3.0))
    assert ax.get_aspect() == 1.0
    assert ax.xaxis_inverted()  # radiological view
    image = ax.images[0].get_array()
    lo, hi = np.percentile(s["water"][:, :, 4], [1, 99])  # slice 5 of 10: middle of slices 3–8
    assert ax.images[0].get_clim() == pytest.approx((lo, hi))
    assert image.shape == (40, 48)


def test_plot_qc_overlays_takes_six_at_most(samples):
    axes = plot_qc_overlays(samples + [qc_sample(f"P1{i:05d}") for i in range(4)])
    assert len([a for a in axes if a.get_visible()]) == 6


def test_plot_qc_overlays_draws_into_given_axes(samples):
    given = caller_axes(1, 2)
    axes = plot_qc_overlays(samples[:2], axes=given)
    assert list(axes) == list(given.ravel())
    assert [a.get_title() for a in axes] == ["P000001", "P000002"] and all(len(a.images) == 1 for a in axes)
    assert axes[0].get_legend() is not None and axes[0].figure.legends == []
