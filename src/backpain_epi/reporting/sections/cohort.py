"""The participants (flow and Table 1) and the exposure distributions of the primary model."""

from __future__ import annotations

from ...formatting import format_int
from ...table1 import table1
from ..context import ReportContext
from ..plots import plot_exposure_distributions
from ..stats import participant_flow
from ..tables import format_flow
from .base import FigureItem, SectionOutput, TableItem


def table1_columns(ctx: ReportContext) -> list[str]:
    """The default characteristics of Table 1: every column the models use (raw activity too), outcome and group
    excepted, in dictionary order."""
    used: set[str] = set()
    for run in ctx.runs:
        spec = run.spec
        used |= set(spec.columns()) - {spec.outcome, spec.group}
        if spec.activity is not None:
            used |= {"met_min_week", spec.activity.variable} - {None}
    return [c for c in ctx.dictionary.names() if c in used and c in ctx.table.columns]


def participants(ctx: ReportContext) -> SectionOutput:
    """The participant flow of every model and Table 1 of the primary model's analysed participants.

    Values: ``flow``, the flow's counts (:func:`~backpain_epi.reporting.stats.participant_flow`).
    """
    dd, primary = ctx.dictionary, ctx.primary
    failed = ctx.segmentation.failed_ids if ctx.segmentation is not None else None
    flow = participant_flow(ctx.table, ctx.runs, dd, failed)
    columns = ctx.options.table1_columns or table1_columns(ctx)
    t1 = table1(primary.analysed, columns, dd, outcome=primary.spec.outcome)
    return SectionOutput(
        tables={
            "flow": TableItem("flow", format_flow(flow), "Participant flow: exclusions in order, per model"),
            "table1": TableItem("table1", t1, f"Table 1. Characteristics of the {format_int(len(primary.analysed))} participants "
                                f"analysed in {primary.name}, by chronic back pain (median [Q1, Q3] or n (%); SMD: standardized "
                                "mean difference)"),
        },
        values={"flow": flow},
    )


def exposures(ctx: ReportContext) -> SectionOutput:
    """The distribution of each exposure by CBP status among the primary model's analysed participants."""
    primary = ctx.primary
    axes = plot_exposure_distributions(primary.analysed, ctx.exposures, outcome=primary.spec.outcome, dictionary=ctx.dictionary)
    return SectionOutput(figures={"figure": FigureItem(
        "exposure_distributions", axes[0].figure,
        "Distributions of the exposures by chronic back pain status (participants analysed in the primary model).")})
