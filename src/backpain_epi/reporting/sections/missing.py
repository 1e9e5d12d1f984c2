"""Complete-case against imputed: the odds ratios of two runs that differ only in the spec's ``impute`` (issue 15)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...formatting import format_int, format_or
from ..context import ReportContext
from .base import SectionOutput, TableItem

#: Spec keys two runs may differ in and still be one model, fit complete-case and with imputation.
_IGNORED = ("name", "description", "impute", "sampler")


def _same_model(a, b) -> bool:
    da, db = a.spec.to_dict(), b.spec.to_dict()
    return {k: v for k, v in da.items() if k not in _IGNORED} == {k: v for k, v in db.items() if k not in _IGNORED}


def pairs(runs) -> list[tuple]:
    """``(complete_case, imputed)`` runs: the same spec without and with ``impute``."""
    return [(cc, imp) for imp in runs if imp.spec.impute for cc in runs if not cc.spec.impute and _same_model(cc, imp)]


def comparison_table(cc, imp) -> pd.DataFrame:
    """One row per term of both runs: each run's OR and 95% interval, and the imputed interval's width over the
    complete-case one (on the log scale)."""
    a, b = cc.summary.set_index("term"), imp.summary.set_index("term")
    rows = []
    for term in [t for t in a.index if t in b.index]:
        ra, rb = a.loc[term], b.loc[term]
        rows.append({"complete_case": cc.name, "imputed": imp.name, "term": term, "label": ra["label"], "kind": ra["kind"],
                     "or_cc": ra["or_median"], "lo_cc": ra["or_lo95"], "hi_cc": ra["or_hi95"],
                     "or_imp": rb["or_median"], "lo_imp": rb["or_lo95"], "hi_imp": rb["or_hi95"],
                     "width_ratio": float(np.log(rb["or_hi95"] / rb["or_lo95"]) / np.log(ra["or_hi95"] / ra["or_lo95"]))})
    return pd.DataFrame(rows)


def missing_data(ctx: ReportContext) -> SectionOutput:
    """Complete-case vs imputed odds ratios, for each pair of runs that differ only in ``impute``; nothing otherwise."""
    found = pairs(ctx.runs)
    if not found:
        return SectionOutput(title="Missing covariates: complete case and imputed")
    numeric = pd.concat([comparison_table(cc, imp) for cc, imp in found], ignore_index=True)
    shown = pd.DataFrame({
        "Models": [f"{r.complete_case} / {r.imputed}" for r in numeric.itertuples()],
        "Term": numeric["label"],
        "Complete case OR (95% CrI)": [format_or(r.or_cc, r.lo_cc, r.hi_cc) for r in numeric.itertuples()],
        "Imputed OR (95% CrI)": [format_or(r.or_imp, r.lo_imp, r.hi_imp) for r in numeric.itertuples()],
        "Width ratio": numeric["width_ratio"].map("{:.2f}".format),
    })
    lead, results = [], []
    for cc, imp in found:
        n_cc, n_imp = cc.provenance.data.n_analysed, imp.provenance.data.n_analysed
        counts = ", ".join(f"{c} {format_int(n)}" for c, n in imp.provenance.data.imputed.items())
        ex = numeric[(numeric["imputed"] == imp.name) & (numeric["kind"] == "exposure")]
        lead.append(f"{imp.name} imputes {', '.join(imp.spec.impute)} inside the model and analyses {format_int(n_imp)} participants "
                    f"(imputed: {counts}); {cc.name}, the same model complete case, analyses {format_int(n_cc)}. The exposures' "
                    f"intervals are {ex['width_ratio'].mean():.2f} times as wide on average.")
        results.append(f"With missing covariates imputed inside the model ({imp.name}, {format_int(n_imp)} participants) the "
                       "exposure odds ratios were " + "; ".join(f"{r.label} {format_or(r.or_imp, r.lo_imp, r.hi_imp)}"
                                                                for r in ex.itertuples())
                       + f", against {'; '.join(f'{format_or(r.or_cc, r.lo_cc, r.hi_cc)}' for r in ex.itertuples())} "
                       f"complete case ({cc.name}, {format_int(n_cc)}).")
    caption = ("Odds ratios of each term in the complete-case fit and in the same model with missing covariates imputed inside "
               "the model (posterior median, 95% credible interval); width ratio: the imputed interval's width over the "
               "complete-case one, on the log scale.")
    return SectionOutput(title="Missing covariates: complete case and imputed", lead=lead,
                         tables={"table": TableItem("missing_comparison", shown, caption, numeric=numeric)},
                         values={"results_text": " ".join(results), "pairs": [(cc.name, imp.name) for cc, imp in found]})
