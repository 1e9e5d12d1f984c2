"""Prior sensitivity of every model by power scaling (:mod:`backpain_epi.modelling.sensitivity`)."""

from __future__ import annotations

import pandas as pd

from ...modelling.params import BETA
from ...modelling.sensitivity import NOT_SENSITIVE, THRESHOLD, sensitivity_verdict
from ...modelling.sensitivity import prior_sensitivity as sensitivity_table
from ..context import ReportContext
from .base import SectionOutput, TableItem

METHODS = ("Prior sensitivity was checked by power-scaling (Kallioinen et al. 2024; arviz.psens) the top-level priors "
           "(intercept, coefficients and scale parameters; the site effects and basis coefficients were not scaled) and the "
           f"likelihood, flagging a parameter whose sensitivity to its prior reached {THRESHOLD:g} as a prior-data conflict when "
           f"its sensitivity to the likelihood reached {THRESHOLD:g} too, else as a strong prior with a weak likelihood.")


def prior_sensitivity(ctx: ReportContext) -> SectionOutput:
    """Power-scaling sensitivity of each reported parameter of every run, and a verdict line per model.

    A run without a ``log_prior`` group (fit with an earlier version) gets a note. Values: ``verdicts``
    (by model), ``methods_text`` and ``results_text`` (one sentence each, for the text section).
    """
    tables, verdicts, notes = [], {}, []
    for run in ctx.runs:
        if "log_prior" not in run.result.idata.groups():
            notes.append(f"Prior sensitivity: run '{run.name}' has no log prior in its posterior (fit with an earlier version "
                         "of backpain-epi); refit it to include it in the power-scaling check.")
            continue
        table = sensitivity_table(run.result.idata)
        verdicts[run.name] = sensitivity_verdict(table, model=run.name)
        labels = dict(zip(run.summary["term"], run.summary["label"]))
        tables.append(table.assign(model=run.name, label=[labels.get(t, t) if p == BETA else t
                                                          for t, p in zip(table["term"], table["parameter"])]))
    if not tables:
        return SectionOutput(notes=notes, title="Prior sensitivity")
    numeric = pd.concat(tables, ignore_index=True)[["model", "term", "label", "parameter", "prior", "likelihood", "diagnosis"]]
    caption = (f"Power-scaling sensitivity of each parameter to its prior and to the likelihood (arviz.psens; ≥ {THRESHOLD:g}: "
               "sensitive). Prior-data conflict: sensitive to both; strong prior / weak likelihood: to the prior only.")
    return SectionOutput(
        title="Prior sensitivity", lead=list(verdicts.values()), notes=notes,
        tables={"table": TableItem("prior_sensitivity", format_sensitivity(numeric), caption, numeric=numeric)},
        values={"verdicts": verdicts, "methods_text": METHODS, "results_text": _results_sentence(numeric)},
    )


def format_sensitivity(numeric: pd.DataFrame) -> pd.DataFrame:
    """The table for display: model (once per block), term, prior and likelihood sensitivity (3 decimals), diagnosis."""
    return pd.DataFrame({
        "Model": numeric["model"].where(~numeric["model"].duplicated(), ""), "Term": numeric["label"],
        "Prior": numeric["prior"].map("{:.3f}".format), "Likelihood": numeric["likelihood"].map("{:.3f}".format),
        "Diagnosis": numeric["diagnosis"],
    })


def _results_sentence(numeric: pd.DataFrame) -> str:
    flagged = numeric[(numeric["diagnosis"] != NOT_SENSITIVE) & (numeric["parameter"] == BETA)]
    if flagged.empty:
        return "Under power scaling, no reported odds ratio of any model was sensitive to its prior."
    reported = numeric[numeric["parameter"] == BETA].groupby("model", sort=False).size()
    parts = []
    for model, g in flagged.groupby("model", sort=False):
        by = "; ".join(f"{d}: {', '.join(h['label'])}" for d, h in g.groupby("diagnosis", sort=False))
        parts.append(f"{model} {len(g)} of {reported[model]} ({by})")
    return (f"Under power scaling, odds ratios sensitive to their prior were found in {'; '.join(parts)}; "
            "their intervals depend on the prior as well as the data, which is expected in a small cohort.")
