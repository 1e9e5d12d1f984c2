"""Leave-one-site-out cross-validation: elpd by held-out site and in total, and whether the PSIS-LOO ranking holds."""

from __future__ import annotations

import pandas as pd

from ..context import ReportContext
from ..plots.crossval import plot_loso
from .base import FigureItem, SectionOutput, TableItem

TITLE = "Leave-one-site-out cross-validation"


def crossval(ctx: ReportContext) -> SectionOutput:
    """Tables (elpd by site and model; totals) and a figure of ``ctx.crossval``; nothing without one.

    The lead is the verdict: whether the models rank as PSIS-LOO ranked them (``comparison``). Values:
    ``result`` (the :class:`~backpain_epi.modelling.crossval.CVResult`), ``verdict``, ``agrees`` (``None`` without a
    PSIS-LOO comparison), and the ``methods_text`` / ``results_text`` sentences.
    """
    cv = ctx.crossval
    if cv is None:
        return SectionOutput()
    notes = _mismatch_notes(ctx)
    loo = ctx.built["comparison"].values.get("comparison") if "comparison" in ctx.built else None
    lead_in = ""
    if loo is not None and len(cv.models) < 2:  # one model cross-validated: no ranking to hold
        loo = None
    if loo is not None:
        compared = set(map(str, loo["model"]))
        if not set(cv.models) <= compared:
            notes.append(f"The cross-validation scored {', '.join(cv.models)}, the report compares {', '.join(sorted(compared))}: "
                         "its verdict is not set against PSIS-LOO.")
            loo = None
        elif set(cv.models) < compared:  # some models only: the PSIS-LOO ranking among them
            loo = loo[loo["model"].astype(str).isin(cv.models)].sort_values("rank")
            lead_in = f"Of the models compared, {_and(cv.models)} were cross-validated leaving one site out. "
    verdict = lead_in + cv.verdict(loo)
    summary, wide = cv.summary, cv.wide()
    b = cv.by_site
    k, n_models = int(summary["n_sites"].iloc[0]), len(summary)
    settings = b.iloc[0]
    failed = int((~b["gate_passed"].astype(bool)).sum()) if "gate_passed" in b else 0
    methods = (f"Models were also compared by leave-one-site-out cross-validation: each model was refit {k} times, each time "
               f"without one study site (one attempt of {int(settings['chains'])} chains × {int(settings['draws'])} draws, "
               "the design recipe learned again on the remaining sites), and the held-out site was scored as a new site, its "
               "intercept drawn from the fitted site distribution and integrated over jointly for the site's participants "
               "(adaptive Gauss–Hermite quadrature); standard errors come from the per-site contributions.")
    results = verdict + (f" The diagnostics gate failed in {failed} of {len(b)} fold fits." if failed else "")
    tables = {
        "by_site": TableItem("loso_by_site", _format_wide(wide), f"Leave-one-site-out elpd of each held-out site under each model "
                             "(log predictive density of the site's participants jointly, the site new to the model; higher is "
                             "better)", numeric=wide),
        "summary": TableItem("loso_summary", _format_summary(summary), f"Leave-one-site-out cross-validation over {k} sites: total "
                             "elpd (SE), and difference from the best model (SE of the paired per-site differences)", numeric=summary),
    }
    figure = FigureItem("loso_by_site", plot_loso(b).figure,
                        "Difference in held-out elpd from the best model at each site (left of the dashed line: the best "
                        "model predicted the site better); the legend gives each model's total difference."
                        if n_models > 1 else "Held-out elpd of each site.")
    return SectionOutput(tables=tables, figures={"figure": figure}, notes=notes, title=TITLE, lead=[verdict],
                         values={"result": cv, "verdict": verdict, "agrees": cv.ranking_agrees(loo) if loo is not None else None,
                                 "methods_text": methods, "results_text": results})


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _mismatch_notes(ctx: ReportContext) -> list[str]:
    """A note when the cross-validation refit runs other than the report's (by run id, where recorded)."""
    if "run_id" not in ctx.crossval.by_site:
        return []
    ids = {r.name: r.provenance.run_id for r in ctx.runs}
    recorded = ctx.crossval.by_site.drop_duplicates("model").set_index("model")["run_id"].astype(str)
    other = [m for m, rid in recorded.items() if m in ids and rid and rid != "nan" and ids[m] and rid != ids[m]]
    return [f"The leave-one-site-out table refit other runs of {', '.join(other)} than the report shows (run ids differ); "
            "run `compare --cv site` again on these runs."] if other else []


def _format_wide(wide: pd.DataFrame) -> pd.DataFrame:
    out = wide.rename(columns={"site": "Site", "n": "n", "n_events": "Events"}).copy()
    for c in out.columns[3:]:
        out[c] = out[c].map("{:,.1f}".format)
    return out


def _format_summary(summary: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "Rank": summary["rank"], "Model": summary["model"],
        "elpd (SE)": [f"{e:,.1f} ({s:,.1f})" for e, s in zip(summary["elpd_total"], summary["se"])],
        "Δ elpd (SE)": ["best" if r == 1 else f"{d:,.1f} ({s:,.1f})" for r, d, s in zip(summary["rank"], summary["elpd_diff"], summary["dse"])],
        "Sites": summary["n_sites"], "n": summary["n"],
    })
