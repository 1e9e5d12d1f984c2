"""Bayesian hierarchical models of chronic back pain: specs, PyMC builder, fitting, diagnostics, comparison.

>>> from backpain_epi.modelling import fit_model, compare_runs   # doctest: +SKIP
>>> run = fit_model("cohort.csv", "models/full.yaml", out="runs/full")
>>> run.summary[["term", "or_median", "or_lo95", "or_hi95"]]
"""

import warnings as _warnings

# ArviZ 0.23 announces its 1.0 refactor with a FutureWarning on import; users cannot act on it.
_warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")

from .compare import compare_runs  # noqa: E402
from .fit import FitResult, fit_model, load_run  # noqa: E402
from .spec import ModelSpec, Prior, SpecError, load_spec  # noqa: E402
from .survival import SurvivalResult, survival_analysis  # noqa: E402

__all__ = ["FitResult", "ModelSpec", "Prior", "SpecError", "SurvivalResult", "compare_runs", "fit_model", "load_run",
           "load_spec", "survival_analysis"]
