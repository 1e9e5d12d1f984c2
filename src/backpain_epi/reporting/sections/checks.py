"""The checks of the fits: the sampler's diagnostics gate and the posterior predictive check."""

from __future__ import annotations

import pandas as pd

from ..context import ReportContext
from ..plots import plot_calibration
from ..stats import ppc_by_decile
from ..tables import format_diagnostics, format_ppc
from .base import FigureItem, SectionOutput, TableItem


def diagnostics(ctx: ReportContext) -> SectionOutput:
    """Each run's diagnostics gate and checks. Values: ``failed``, the names of the runs whose gate failed."""
    return SectionOutput(
        tables={"table": TableItem("diagnostics", format_diagnostics(ctx.runs), "Sampler diagnostics: every model must have "
                                   "R-hat ≤ 1.01, bulk ESS ≥ 400, no divergent transitions and E-BFMI ≥ 0.3 in every chain; a fit failing on "
                                   "divergences, ESS or R-hat is refit with a higher target_accept and more tuning or draws "
                                   "(Attempts), and the last attempt is reported")},
        values={"failed": [r.name for r in ctx.runs if not r.provenance.diagnostics.passed]},
    )


def predictive_check(ctx: ReportContext) -> SectionOutput:
    """Calibration by decile of predicted risk. Values: ``inside``, per model the deciles inside the replicated interval."""
    ppc = pd.concat([ppc_by_decile(r) for r in ctx.runs], ignore_index=True)
    return SectionOutput(
        figures={"figure": FigureItem("ppc_calibration", plot_calibration(ppc)[0].figure, "Posterior predictive check: observed "
                                      "proportion with chronic back pain against mean predicted risk, by decile of predicted "
                                      "risk; bars: 95% interval of the proportion replicated from the posterior.")},
        tables={"table": TableItem("ppc_deciles", format_ppc(ppc), "Observed and predicted chronic back pain by decile of "
                                   "predicted risk", numeric=ppc)},
        values={"inside": {m: int(g["inside"].sum()) for m, g in ppc.groupby("model", sort=False)}},
    )
