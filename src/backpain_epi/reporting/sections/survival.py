"""The survival sensitivity analysis: Cox hazard ratios with age as the time scale, Kaplan–Meier curves by exposure tertile.

The analysis (:func:`~backpain_epi.modelling.survival.survival_analysis`) returns data;
this section draws its Kaplan–Meier figure, and :func:`save_km_figure` writes that
figure beside a saved analysis for the ``survival`` command.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from matplotlib.figure import Figure

from ...dictionary import DataDictionary
from ...errors import DataValidationError
from ...formatting import format_p
from ...modelling.survival import ONSET, SurvivalError, SurvivalResult, survival_analysis
from ..context import ReportContext
from ..plots import plot_km
from ..style import save_figure
from ..tables import format_hazard_ratios, format_ph_test
from .base import FigureItem, SectionOutput, TableItem

#: File stem of the Kaplan–Meier figure, in the survival folder of a report or of ``backpain-epi survival --out``.
KM_STEM = "km_by_tertile"
#: Folder of the report the survival analysis is written to.
SURVIVAL_DIR = "survival"


def km_figure(result: SurvivalResult, dictionary: DataDictionary) -> Figure:
    """The Kaplan–Meier figure of ``result`` (:func:`~backpain_epi.reporting.plots.plot_km` on a figure of its own)."""
    return plot_km(result.km, result.km_groups, result.logrank_p, dictionary, exposure=result.exposure).figure


def save_km_figure(result: SurvivalResult, out_dir: str | os.PathLike, dictionary: DataDictionary) -> dict[str, Path]:
    """Write the Kaplan–Meier figure of ``result`` as ``km_by_tertile.png`` (300 dpi) and ``.svg``; file name -> path."""
    files = save_figure(km_figure(result, dictionary), out_dir, KM_STEM)
    return {p.name: p for p in files.values()}


def survival(ctx: ReportContext) -> SectionOutput:
    """The Cox model and Kaplan–Meier curves when the table has onset ages; a note when it cannot be fit.

    The Cox model takes the terms of ``ctx.options.survival_spec`` (the survival
    module's default spec when ``None``); the curves split the participants by
    tertile of ``ctx.km_exposure``. Values: ``result``, the
    :class:`~backpain_epi.modelling.survival.SurvivalResult`, which also writes
    its own tables into ``survival/``.
    """
    table, dd = ctx.table, ctx.dictionary
    if not ctx.options.survival:
        return SectionOutput()
    leave_out = " (report --no-survival leaves the section out)"
    if ONSET not in table.columns or not table[ONSET].notna().any():
        return SectionOutput(notes=[f"Survival analysis not run: the table has no {ONSET} values{leave_out}."])
    spec = {"spec": ctx.options.survival_spec} if ctx.options.survival_spec is not None else {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lifelines' StatisticalWarnings are summarised in the result's notes
            result = survival_analysis(table, exposure=ctx.km_exposure, dictionary=dd,
                                       exclude_invalid_rows=ctx.options.exclude_invalid_rows, **spec)
    except SurvivalError as exc:  # a sensitivity analysis that cannot be fit does not block the report
        return SectionOutput(notes=[f"Survival analysis not shown{leave_out}: {exc}"])
    except DataValidationError as exc:  # an error in a column of the survival spec only (the others were checked on loading)
        return SectionOutput(notes=[f"Survival analysis not shown{leave_out}: {str(exc).splitlines()[0]}"])
    hr = result.hazard_ratios
    return SectionOutput(
        tables={
            "hr": TableItem("survival_hazard_ratios", format_hazard_ratios(hr), "Cox proportional-hazards model with age as the "
                            "time scale: hazard ratios of chronic back pain onset (95% CI), stratified by site", numeric=hr),
            "ph": TableItem("survival_ph_test", format_ph_test(result.ph_test, hr), "Proportional-hazards check (scaled "
                            "Schoenfeld residuals, rank-transformed time)", numeric=result.ph_test),
        },
        figures={"km": FigureItem(KM_STEM, km_figure(result, dd), "Kaplan–Meier estimates of CBP-free survival by tertile of "
                                  f"{dd.label(result.exposure, unit=False)} (95% bands); log-rank "
                                  f"{format_p(result.logrank_p, prefix=True)}.", folder=SURVIVAL_DIR)},
        values={"result": result},
        saves={SURVIVAL_DIR: result},
    )
