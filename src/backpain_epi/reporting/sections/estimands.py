"""What a paper reports beyond odds ratios: absolute risks and E-values, effect modification, exposure dose–response."""

from __future__ import annotations

import pandas as pd

from ...formatting import format_or, format_prob, format_sig
from ...modelling.compare import compare_runs
from ..context import ReportContext
from ..plots.estimands import plot_dose_response, plot_risk_differences, plot_strata
from ..runs import ReportRun
from ..text import lower
from .base import FigureItem, SectionOutput, TableItem


def _labels(ctx: ReportContext) -> dict[str, str]:
    dd = ctx.dictionary
    return {e: dd.label(e, unit=False) for e in ctx.exposures if e in dd}


def _ci(mid: float, lo: float, hi: float, digits: int = 1) -> str:
    return format_or(mid, lo, hi, digits=digits)


def absolute_risk_long(runs: list[ReportRun]) -> pd.DataFrame:
    """The runs' ``absolute_risk.csv`` stacked with a ``model`` column (runs without one are left out)."""
    frames = [r.result.absolute_risk.assign(model=r.name) for r in runs if r.result.absolute_risk is not None]
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    return out[["model", *[c for c in out.columns if c != "model"]]]


def format_absolute_risk(table: pd.DataFrame, labels: dict[str, str], units: dict[str, str]) -> pd.DataFrame:
    """Table 3: per exposure and model, the risks at −1 SD and +1 SD, RD per 1,000, RR, NNT/NNH and E-values."""
    rows = []
    for term, sub in table.groupby("term", sort=False):
        for i, r in enumerate(sub.itertuples()):
            unit = f" {units[term]}" if units.get(term) else ""
            nnt = f"{r.nnt_kind} {r.nnt:.0f} ({r.nnt_lo95:.0f}–{r.nnt_hi95:.0f})" if isinstance(r.nnt_kind, str) and r.nnt_kind else "–"
            rows.append({
                "Exposure": labels.get(term, term) if i == 0 else "", "Model": r.model,
                "−1 SD → +1 SD": f"{format_sig(r.low_value)} → {format_sig(r.high_value)}{unit}",
                "Risk at −1 SD, %": _ci(100 * r.risk_low, 100 * r.risk_low_lo95, 100 * r.risk_low_hi95),
                "Risk at +1 SD, %": _ci(100 * r.risk_high, 100 * r.risk_high_lo95, 100 * r.risk_high_hi95),
                "RD per 1,000 (95% CrI)": _ci(r.rd_per_1000, r.rd_lo95, r.rd_hi95),
                "RR (95% CrI)": format_or(r.rr, r.rr_lo95, r.rr_hi95),
                "NNT/NNH": nnt,
                "E-value (CI limit)": f"{r.e_value:.2f} ({r.e_value_ci:.2f})",
                "RD per 1,000, new site": _ci(r.new_site_rd_per_1000, r.new_site_rd_lo95, r.new_site_rd_hi95),
            })
            if "true_rd_per_1000" in table.columns:
                covered = r.rd_lo95 <= r.true_rd_per_1000 <= r.rd_hi95
                rows[-1]["True RD per 1,000"] = f"{r.true_rd_per_1000:.1f} {'✓' if covered else '✗'}"
    return pd.DataFrame(rows)


def absolute_risk(ctx: ReportContext) -> SectionOutput:
    """Table 3 (absolute risks by g-computation, RD, RR, NNT/NNH, E-values) and a figure of the risk differences.

    Values: ``table`` (numeric, all models), ``methods_text``, ``results_text``.
    """
    table = absolute_risk_long(ctx.runs)
    if table.empty:
        return SectionOutput(notes=["No run has absolute risks (absolute_risk.csv): refit with this version to get them."])
    true = (ctx.truth or {}).get("absolute_risk") or {}
    if true:
        table["true_rd_per_1000"] = [true.get(t, {}).get("rd_per_1000", float("nan")) for t in table["term"]]
    dd = ctx.dictionary
    labels = _labels(ctx)
    units = {e: dd[e].unit for e in ctx.exposures if e in dd and dd[e].unit}
    primary = table[table["model"] == ctx.primary.name]
    results = []
    for r in primary.itertuples():
        results.append(f"In {r.model}, {lower(labels.get(r.term, r.term))} at its mean + 1 SD instead of − 1 SD went with "
                       f"{r.rd_per_1000:+.0f} cases of chronic back pain per 1,000 (95% CrI {r.rd_lo95:+.0f} to {r.rd_hi95:+.0f}; "
                       f"risk ratio {format_or(r.rr, r.rr_lo95, r.rr_hi95, interval='95% CrI')}; E-value {r.e_value:.2f}, "
                       f"for the interval {r.e_value_ci:.2f}).")
    methods = ("Absolute risks were estimated by marginal standardisation (g-computation): for each posterior draw, each "
               "exposure was set to its mean − 1 SD and its mean + 1 SD (the 2 SD contrast of the odds ratios) for every analysed "
               "participant, all other covariates kept as observed, and the predicted risks were averaged, over the observed "
               "study sites and, integrating the site intercept over its fitted distribution, for a new site; we report the "
               "risk difference per 1,000 and the risk ratio (posterior median, 95% equal-tailed interval), the number needed "
               "to treat or harm where the interval of the risk difference excludes 0, and E-values (VanderWeele and Ding 2017) "
               "of the g-computed risk ratio and of its interval limit nearest 1.")
    return SectionOutput(
        title="Absolute risks and E-values",
        lead=["Odds ratios overstate risk ratios when the outcome is common. Here each exposure is set to its mean − 1 SD "
              "and + 1 SD for every analysed participant, everything else as observed; an E-value is how strongly an "
              "unmeasured confounder would have to be associated with both exposure and outcome (risk-ratio scale) to "
              "explain the association away."],
        tables={"table": TableItem("table3_absolute_risk", format_absolute_risk(table, labels, units),
                                   "Table 3. Absolute risk of chronic back pain at each exposure's mean − 1 SD and + 1 SD "
                                   "(g-computation over the analysed participants and observed sites; posterior median, 95% CrI), "
                                   "risk difference per 1,000, risk ratio, NNT/NNH where the RD interval excludes 0, E-value of "
                                   "the RR (and of its CI limit nearest 1), and the risk difference in a new study site"
                                   + ("; in a simulated cohort, the true RD by g-computation on the generating model "
                                      "(✓ inside the 95% CrI)" if true else ""),
                                   numeric=table)},
        figures={"figure": FigureItem("risk_differences", plot_risk_differences(table, labels=labels).figure,
                                      "Risk difference of chronic back pain per 1,000 participants between each exposure's "
                                      "mean + 1 SD and mean − 1 SD (posterior median, 95% CrI), by model.")},
        values={"table": table, "methods_text": methods, "results_text": " ".join(results)},
    )


def effect_modification(ctx: ReportContext) -> SectionOutput:
    """Effects by stratum of the specs' ``effect_modifiers``: stratum ORs and RDs, ratio of ORs, RERI, forest plot by stratum."""
    frames = [r.result.effect_modification.assign(model=r.name) for r in ctx.runs if r.result.effect_modification is not None
              and len(r.result.effect_modification)]
    if not frames:
        return SectionOutput()
    table = pd.concat(frames, ignore_index=True)
    table["level"] = table["level"].astype(str)
    table["reference"] = table["reference"].astype(str)
    labels = _labels(ctx)
    rows, results = [], []
    for r in table.rename(columns={"or": "or_mid"}).itertuples():
        reference = r.level == r.reference
        rows.append({"Model": r.model, "Exposure": labels.get(r.term, r.term), "Stratum": f"{r.modifier} {r.level}", "n": r.n,
                     "OR per 2 SD (95% CrI)": format_or(r.or_mid, r.or_lo95, r.or_hi95),
                     "RD per 1,000 (95% CrI)": _ci(r.rd_per_1000, r.rd_lo95, r.rd_hi95),
                     "Ratio of ORs (95% CrI)": "reference" if reference else format_or(r.ratio_of_ors, r.ratio_lo95, r.ratio_hi95),
                     "P(ratio > 1)": "" if reference else format_prob(r.p_ratio_gt_1),
                     "RERI (95% CrI)": "" if reference else format_or(r.reri, r.reri_lo95, r.reri_hi95)})
        if not reference:
            results.append(f"In {r.model}, the odds ratio of {lower(labels.get(r.term, r.term))} in {r.modifier} {r.level} was "
                           f"{format_or(r.ratio_of_ors, r.ratio_lo95, r.ratio_hi95, interval='95% CrI')} times that in "
                           f"{r.modifier} {r.reference} (ratio of ORs; RERI {format_or(r.reri, r.reri_lo95, r.reri_hi95, interval='95% CrI')}).")
    modifiers = sorted({m for r in ctx.runs for m in r.spec.effect_modifiers})
    methods = (f"Effect modification by {', '.join(modifiers)} was assessed with exposure × modifier product terms; we report "
               "the stratum-specific odds ratios and risk differences (g-computation within the stratum), the ratio of odds "
               "ratios and the relative excess risk due to interaction (RERI, interaction on the additive scale, for 2 SD of "
               "the exposure and the modifier level against the reference).")
    return SectionOutput(
        title="Effect modification",
        lead=["Odds ratio and risk difference of each exposure within each stratum of its modifier; a ratio of ORs of 1 and a "
              "RERI of 0 mean no modification on the multiplicative and the additive scale."],
        tables={"table": TableItem("table4_effect_modification", pd.DataFrame(rows), "Table 4. Effect modification: odds ratio "
                                   "per 2 SD and risk difference per 1,000 (+1 SD vs −1 SD) within each stratum, the ratio of "
                                   "odds ratios against the reference stratum, and RERI (posterior median, 95% CrI)", numeric=table)},
        figures={"figure": FigureItem("forest_by_stratum", plot_strata(table, labels=labels).figure,
                                      "Odds ratios per 2 SD (posterior median, 95% CrI) of the exposures within each stratum.")},
        values={"table": table, "methods_text": methods, "results_text": " ".join(results)},
    )


def _linear_counterpart(run: ReportRun, runs: list[ReportRun]) -> ReportRun | None:
    """A run whose spec is ``run``'s with every exposure entered linearly (the same terms otherwise)."""
    s = run.spec
    for other in runs:
        o = other.spec
        if other is run or o.exposure_splines:
            continue
        if (o.exposures, o.covariates, o.activity, o.group, o.effect_modifiers, o.outcome) == \
                (s.exposures, s.covariates, s.activity, s.group, s.effect_modifiers, s.outcome):
            return other
    return None


def dose_response(ctx: ReportContext) -> SectionOutput:
    """The OR curve of each spline exposure against its median, over its distribution, and LOO against the linear form."""
    spline_runs = [r for r in ctx.runs if r.result.exposure_curves is not None]
    if not spline_runs:
        return SectionOutput()
    dd = ctx.dictionary
    figures, verdicts = {}, []
    curves = pd.concat([r.result.exposure_curves.assign(model=r.name) for r in spline_runs], ignore_index=True)
    for term, sub in curves.groupby("term", sort=False):
        values = ctx.primary.analysed[term] if term in ctx.primary.analysed else ctx.table[term]
        axes = plot_dose_response(sub, values, xlabel=dd.label(term) if term in dd else term)
        figures[term] = FigureItem(f"dose_response_{term}", axes[0].figure, f"Odds ratio of chronic back pain against "
                                   f"{lower(dd.label(term, unit=False)) if term in dd else term} (penalized spline; posterior "
                                   "median and 95% band) relative to its median, between its 2nd and 98th percentiles; below: its "
                                   "distribution over that range.")
    for run in spline_runs:
        linear = _linear_counterpart(run, ctx.runs)
        if linear is None:
            verdicts.append(f"{run.name}: no run with the same terms entered linearly is in the report, so LOO does not compare "
                            "the spline with the linear form.")
            continue
        cmp = compare_runs([run.result, linear.result])
        best, second = cmp.iloc[0], cmp.iloc[1]
        clear = second.elpd_diff > 2 * second.dse
        form = "the spline" if best.model == run.name else "the linear form"
        verdicts.append(f"PSIS-LOO prefers {form} ({best.model} over {second.model}: elpd difference {second.elpd_diff:.1f}, "
                        f"SE {second.dse:.1f}{'' if clear else '; less than 2 SE, so not clearly'}).")
    methods = ("Departure from linearity of an exposure was assessed by entering it as a penalized cubic regression spline "
               "(its linear part with the coefficients' prior, its wiggly part shrunk towards a straight line) and comparing "
               "that model with the linear one by PSIS-LOO.")
    table = curves[["model", "term", "x", "reference", "or_median", "or_lo95", "or_hi95"]]
    return SectionOutput(
        title="Exposure dose–response",
        lead=verdicts,
        figures=figures,
        tables={"table": TableItem("tableS3_dose_response", table.assign(
            **{"OR (95% CrI)": [format_or(a, b, c) for a, b, c in zip(table.or_median, table.or_lo95, table.or_hi95)]})
            [["model", "term", "x", "reference", "OR (95% CrI)"]].iloc[::4],
            "Supplementary Table S3. Odds ratio (95% CrI) of a spline exposure against its median at selected values",
            numeric=table)},
        values={"curves": curves, "verdicts": verdicts, "methods_text": methods, "results_text": " ".join(verdicts)},
    )
