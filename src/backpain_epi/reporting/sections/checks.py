"""The checks of the fits: the sampler's diagnostics gate, the posterior predictive check and the CORP reliability diagram."""

from __future__ import annotations

import pandas as pd

from ..context import ReportContext
from ..plots import plot_calibration, plot_reliability
from ..stats import corp_decomposition, corp_reliability, ppc_by_decile
from ..tables import format_corp, format_diagnostics, format_ppc
from .base import FigureItem, SectionOutput, TableItem

#: Resamples and coverage of the CORP consistency band (the paper's figures show 90% bands).
CORP_RESAMPLES, CORP_LEVEL = 1000, 0.9


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
    """Calibration by decile of predicted risk, and the CORP reliability diagram with the Brier score's decomposition.

    Values: ``inside``, per model the deciles inside the replicated interval; ``corp``, the decomposition
    (:func:`~backpain_epi.reporting.stats.corp_decomposition`); ``methods_text`` and ``results_text``, sentences for the text.
    """
    ppc = pd.concat([ppc_by_decile(r) for r in ctx.runs], ignore_index=True)
    reliability = pd.concat([corp_reliability(r, n_resamples=CORP_RESAMPLES, level=CORP_LEVEL) for r in ctx.runs],
                            ignore_index=True)
    corp = corp_decomposition(reliability)
    band = f"{100 * CORP_LEVEL:.0f}%"
    return SectionOutput(
        figures={"figure": FigureItem("ppc_calibration", plot_calibration(ppc)[0].figure, "Posterior predictive check: observed "
                                      "proportion with chronic back pain against mean predicted risk, by decile of predicted "
                                      "risk; bars: 95% interval of the proportion replicated from the posterior."),
                 "reliability": FigureItem("corp_reliability", plot_reliability(reliability)[0].figure, "CORP reliability "
                                           "diagram: the probability of chronic back pain recalibrated by isotonic (PAV) "
                                           "regression of the outcome on each participant's posterior mean risk; shaded: "
                                           f"{band} consistency band, where the curve would lie if the model were calibrated "
                                           f"({CORP_RESAMPLES:,} resamples); grey: the distribution of the predictions; corner: "
                                           "the Brier score's miscalibration (MCB), discrimination (DSC) and uncertainty (UNC).")},
        tables={"table": TableItem("ppc_deciles", format_ppc(ppc), "Observed and predicted chronic back pain by decile of "
                                   "predicted risk", numeric=ppc),
                "corp_decomposition": TableItem("corp_decomposition", format_corp(corp), "CORP decomposition of the Brier "
                                                "score, BS = MCB − DSC + UNC (miscalibration, discrimination, uncertainty), "
                                                f"and the points of the reliability diagram where the PAV curve lies inside "
                                                f"the {band} consistency band", numeric=corp)},
        values={"inside": {m: int(g["inside"].sum()) for m, g in ppc.groupby("model", sort=False)}, "corp": corp,
                "methods_text": _corp_methods(band), "results_text": _corp_results(corp, band)},
    )


def _corp_methods(band: str) -> str:
    return ("Calibration was also assessed with CORP reliability diagrams (Dimitriadis, Gneiting & Jordan, 2021): the "
            "outcome was regressed on each participant's posterior mean risk by isotonic (pool-adjacent-violators) "
            f"regression, with a pointwise {band} consistency band from {CORP_RESAMPLES:,} sets of outcomes resampled "
            "from the predicted risks (the spread expected of a calibrated model), and the Brier score was decomposed "
            "as BS = MCB − DSC + UNC into miscalibration, discrimination and uncertainty.")


def _corp_results(corp: pd.DataFrame, band: str) -> str:
    parts = [f"{r.model} {r.mcb:.4f} (DSC {r.dsc:.4f}; PAV curve inside the {band} band at "
             f"{'all ' if r.pav_inside_band else ''}{r.inside} of {r.points} points)" for r in corp.itertuples()]
    return f"The miscalibration component of the Brier score (MCB) was {'; '.join(parts)}."
