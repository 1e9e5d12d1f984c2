"""Agreement plot: measured against planted per exposure, the line of identity, the ICC as the title."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backpain_epi.reporting.plots import plot_agreement, text_overlaps
from backpain_epi.reporting.stats import PLANTED_SUFFIX
from backpain_epi.reporting.style import DOUBLE_COLUMN_IN

from .conftest import caller_axes

EXPOSURES = ["lmm_ml", "intermat_ml"]


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(4)
    planted = {"lmm_ml": rng.normal(1000, 150, 80), "intermat_ml": rng.normal(120, 30, 80)}
    frame = {c: v * rng.normal(1, 0.03, 80) for c, v in planted.items()}
    frame |= {c + PLANTED_SUFFIX: v for c, v in planted.items()}
    return pd.DataFrame(frame)


def test_plot_agreement(pairs, dd):
    axes = plot_agreement(pairs, EXPOSURES, dd)
    fig = axes[0].figure
    assert len(axes) == 2 and fig.get_size_inches()[0] == pytest.approx(DOUBLE_COLUMN_IN)
    for a, c in zip(axes, EXPOSURES):
        assert a.get_xlabel() == f"Planted: {dd.label(c)}" and a.get_ylabel() == "Measured by segmentation"
        assert a.get_title().startswith("ICC 0.9") and a.get_xlim() == pytest.approx(a.get_ylim())
        assert len(a.collections[0].get_offsets()) == len(pairs)
    assert text_overlaps(fig) == []


def test_plot_agreement_draws_into_given_axes(pairs, dd):
    given = caller_axes(1, 3)
    axes = plot_agreement(pairs, EXPOSURES, dd, axes=given)
    assert list(axes) == list(given.ravel())
    assert [a.get_visible() for a in axes] == [True, True, False]
