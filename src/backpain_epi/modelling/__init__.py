"""Bayesian hierarchical models of chronic back pain: specs, PyMC builder, fitting, diagnostics, comparison.

>>> from backpain_epi.modelling import fit_model, compare_runs   # doctest: +SKIP
>>> run = fit_model("cohort.csv", "models/full.yaml", out="runs/full")
>>> run.summary[["term", "or_median", "or_lo95", "or_hi95"]]

Names load on first use: reading and comparing runs never imports PyMC.
"""

import warnings as _warnings

import lazy_loader as _lazy

# ArviZ 0.23 announces its 1.0 refactor with a FutureWarning on import; users cannot act on it.
_warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submod_attrs={
    "compare": ["compare_runs"],
    "diagnostics": ["GateFailedWarning"],
    "fit": ["FitResult", "as_fit_result", "fit_model", "load_run"],
    "provenance": ["Provenance"],
    "spec": ["ModelSpec", "Prior", "SpecError", "load_spec"],
    "survival": ["SurvivalResult", "survival_analysis"],
})
