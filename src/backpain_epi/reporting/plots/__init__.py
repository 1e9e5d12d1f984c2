"""The report's plots, in the ArviZ shape: each takes its data and ``ax=None`` (``axes=None`` for several panels).

Given ``ax``, a plot draws there in the caller's style, so it works in a notebook;
given none, it makes its own figure at a journal column width, drawn inside
:func:`~backpain_epi.reporting.style.figure_style`. It returns its axes (an array of
them for several panels) and never shows or saves: save ``ax.figure`` with
:func:`~backpain_epi.reporting.style.save_figure`. :func:`text_overlaps` lists text
that collides, which the tests use to keep every figure readable.

This package is the plots' one public namespace; its modules hold one plot each.
"""

from ._axes import text_overlaps
from .activity import plot_activity_curve
from .agreement import plot_agreement
from .calibration import plot_calibration, plot_reliability
from .comparison import plot_loo
from .distributions import plot_exposure_distributions
from .forest import plot_forest
from .qc import plot_qc_overlays
from .survival import plot_km

__all__ = [
    "plot_activity_curve", "plot_agreement", "plot_calibration", "plot_exposure_distributions", "plot_forest", "plot_km",
    "plot_loo", "plot_qc_overlays", "plot_reliability", "text_overlaps",
]
