"""The estimates: odds ratios of every model (and against a simulation's truth), the activity curve, the LOO comparison."""

from __future__ import annotations

import pandas as pd

from ...formatting import format_int
from ...modelling.compare import compare_runs
from ..context import ReportContext
from ..plots import plot_activity_curve, plot_forest, plot_loo
from ..plots.activity import WHO_MIN_MET
from ..stats import activity_long, all_terms, exposure_odds_ratios, truth_coverage
from ..tables import (
    comparison_verdict, format_activity, format_all_terms, format_comparison, format_odds_ratios, format_truth,
)
from .base import FigureItem, SectionOutput, TableItem


def _true_odds_ratios(truth: dict) -> dict[str, float]:
    """The odds ratios of a ``truth.json``: per 2 SD and of the binary terms."""
    return {**(truth.get("odds_ratios_binary") or {}), **(truth.get("odds_ratios_per_2sd") or truth.get("odds_ratios") or {})}


def _with_e_values(ors, ctx: ReportContext):
    """``ors`` with the E-values of each run's ``absolute_risk.csv`` (``e_value``, ``e_value_ci``; empty for runs without one)."""
    frames = [r.result.absolute_risk[["term", "e_value", "e_value_ci"]].assign(model=r.name) for r in ctx.runs
              if r.result.absolute_risk is not None]
    if not frames:
        return ors
    return ors.merge(pd.concat(frames, ignore_index=True), on=["model", "term"], how="left")


def odds_ratios(ctx: ReportContext) -> SectionOutput:
    """Table 2 and the forest plot of the exposures, Supplementary Table S1 of every term, and the truth of a simulation."""
    dd = ctx.dictionary
    ors, terms = exposure_odds_ratios(ctx.runs), all_terms(ctx.runs)
    ors = _with_e_values(ors, ctx)
    tables = {
        "table2": TableItem("table2_odds_ratios", format_odds_ratios(ors, dd), "Table 2. Odds ratios of chronic back pain per 2 SD "
                            "of each exposure (posterior median, 95% credible interval), posterior probability that the OR "
                            "exceeds 1, and the E-value of the g-computed risk ratio for the same contrast (in brackets: of "
                            "its interval limit nearest 1), by model", numeric=ors),
        "supplementary": TableItem("tableS1_all_terms", format_all_terms(terms), "Supplementary Table S1. All terms of every "
                                   "model: odds ratios (95% CrI), P(OR > 1), R-hat and bulk effective sample size", numeric=terms),
    }
    coverage = truth_coverage(_true_odds_ratios(ctx.truth), terms) if ctx.truth else None
    if coverage is not None and len(coverage):
        tables["truth"] = TableItem("truth_vs_estimates", format_truth(coverage), "Odds ratios planted in the simulated cohort "
                                    "beside the estimates (posterior median, 95% CrI; ✓ the interval covers the truth)")
    forest = FigureItem("forest_exposures", plot_forest(ors, dictionary=dd).figure,
                        "Odds ratios per 2 SD (posterior median, 95% credible interval) of the exposures across models.")
    return SectionOutput(tables=tables, figures={"forest": forest})


def activity(ctx: ReportContext) -> SectionOutput:
    """The odds ratio against physical activity of every model with an activity term, over the activity distribution."""
    curves = activity_long(ctx.runs)
    if curves.empty:
        return SectionOutput(notes=["No model has an activity term: the activity section is empty."])
    analysed = ctx.primary.analysed
    met = (analysed if "met_min_week" in analysed else ctx.table)["met_min_week"].dropna()
    axes = plot_activity_curve(curves, met, dictionary=ctx.dictionary)
    return SectionOutput(
        figures={"figure": FigureItem("activity_curve", axes[0].figure, "Odds ratio of chronic back pain against physical activity "
                                      "(posterior median and 95% band), relative to the reference activity; dashed: WHO minimum "
                                      f"of {format_int(WHO_MIN_MET)} MET-min/week; below: the distribution of activity.")},
        tables={"table": TableItem("tableS2_activity", format_activity(curves), "Supplementary Table S2. Odds ratio (95% CrI) of "
                                   "chronic back pain at selected activity levels, against each model's reference", numeric=curves)},
    )


def comparison(ctx: ReportContext) -> SectionOutput:
    """The PSIS-LOO comparison of two or more runs.

    Values: ``comparison`` (:func:`~backpain_epi.modelling.compare.compare_runs`) and ``verdict`` (a sentence).
    """
    if len(ctx.runs) < 2:
        return SectionOutput(notes=["One run only: no model comparison (give two or more runs)."])
    table = compare_runs([r.result for r in ctx.runs])
    return SectionOutput(
        tables={"table": TableItem("model_comparison", format_comparison(table), "Model comparison by PSIS-LOO cross-validation "
                                   "(expected log pointwise predictive density; higher is better)", numeric=table)},
        figures={"figure": FigureItem("model_comparison", plot_loo(table).figure, "ELPD-LOO of each model (± SE) and its "
                                      "difference from the best (± SE of the difference).")},
        values={"comparison": table, "verdict": comparison_verdict(table)},
    )
