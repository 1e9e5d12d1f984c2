"""The report as a list of sections, in page order.

Each section is a function of the shared
:class:`~backpain_epi.reporting.context.ReportContext` returning a
:class:`~backpain_epi.reporting.sections.base.SectionOutput`; its name is the
key of its output in ``ctx.built`` and on the page.
"""

from collections.abc import Callable

from ..context import ReportContext
from . import checks, cohort, crossval, estimands, estimates, missing, segmentation, sensitivity, survival, text
from .base import FigureItem, SectionOutput, TableItem
from .survival import save_km_figure

#: A section of the report.
Section = Callable[[ReportContext], SectionOutput]

#: The sections in page order; later ones may read what earlier ones built.
SECTIONS: tuple[Section, ...] = (
    cohort.participants, cohort.exposures, estimates.odds_ratios, estimands.absolute_risk, estimands.effect_modification,
    estimates.activity, estimands.dose_response, estimates.comparison, missing.missing_data, crossval.crossval,
    checks.diagnostics, checks.predictive_check, sensitivity.prior_sensitivity, survival.survival,
    segmentation.segmentation_qc, segmentation.agreement, text.text,
)

__all__ = ["SECTIONS", "FigureItem", "Section", "SectionOutput", "TableItem", "save_km_figure"]
