"""Segmentation agreement: exposures measured by segmentation against the values planted in the images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ...dictionary import DataDictionary
from ..stats import PLANTED_SUFFIX, icc_absolute_agreement
from ..style import DOUBLE_COLUMN_IN
from ._axes import own_grid


def plot_agreement(pairs: pd.DataFrame, exposures: Sequence[str], dictionary: DataDictionary, *, axes=None) -> np.ndarray:
    """Measured against planted value of each exposure (one panel each), with the line of identity.

    Parameters
    ----------
    pairs
        Measured (``<col>``) and planted (``<col>_planted``) values side by side,
        as :func:`~backpain_epi.reporting.stats.paired_exposures` gives them.
    exposures
        Exposure columns to show, one panel each.
    dictionary
        Gives the x labels (label and unit).
    axes
        At least one axes per exposure; by default a new double-column figure with the panels in a row.

    Returns
    -------
    numpy.ndarray
        The axes (any beyond the exposures hidden): equal limits and aspect on both axes, the dashed line of
        identity, one point per participant, the ICC(A,1) as the title.
    """
    exposures = list(exposures)
    n = len(exposures)
    with own_grid(axes, n, 1, n, DOUBLE_COLUMN_IN, 2.5) as (axes, _own):
        for ax, c in zip(axes, exposures):
            x, y = pairs[c + PLANTED_SUFFIX].to_numpy(float), pairs[c].to_numpy(float)
            lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
            pad = 0.04 * (hi - lo or 1.0)
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], ls="--", lw=0.8, color="0.45", zorder=1)
            ax.scatter(x, y, s=6, alpha=0.6, color="#0072B2", edgecolors="none", zorder=2)
            ax.set_xlim(lo - pad, hi + pad)
            ax.set_ylim(lo - pad, hi + pad)
            ax.set_aspect("equal", adjustable="box")
            ax.set_xlabel(f"Planted: {dictionary.label(c)}")
            ax.set_ylabel("Measured by segmentation")
            ax.set_title(f"ICC {icc_absolute_agreement(np.column_stack([x, y])):.3f}", fontsize=7.5)
            ax.locator_params(nbins=4)
        for ax in axes[n:]:
            ax.set_visible(False)
    return axes
