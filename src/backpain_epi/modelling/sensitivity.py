"""Prior sensitivity by power scaling (Kallioinen et al. 2024), on the draws of the saved log-likelihood.

Power-scaling the prior or the likelihood by ``alpha`` near 1 and importance-weighting the
posterior draws (PSIS) shows how far the posterior would move: :func:`arviz.psens` gives that
rate of change per parameter. Following priorsense, a parameter whose posterior moves with its
prior (prior sensitivity ≥ 0.05) is either in **prior-data conflict** (it moves with the
likelihood too) or has a **strong prior / weak likelihood** (it does not).

Only the top-level priors are scaled: the intercept, the coefficients, the scale parameters and
the activity term's linear part. The site effects (``group_z``) and the basis coefficients
(``smooth_w``/``smooth_z``, ``gp_z``/``gp_w``) are not: their priors are part of the model of the
groups and the curve, whose scales are the parameters scaled, as priorsense advises for
hierarchical models.

:func:`add_log_prior` adds the ``log_prior`` group to a fit's InferenceData on the draws that its
``log_likelihood`` group holds (:func:`~backpain_epi.modelling.fit.fit_model` keeps the
log-likelihood on a thinned subset); :func:`prior_sensitivity` reads both and returns a table.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd

from ..errors import BackpainEpiError
from .design import Design
from .params import ACT_LIN, BETA, EXP_SMOOTH_SD, GP_AMP, GP_LS, GROUP_SD, INTERCEPT, SMOOTH_SD

#: The priors power-scaled, in the order of the table (the intercept is scaled but not reported).
TOP_LEVEL = (INTERCEPT, BETA, GROUP_SD, ACT_LIN, SMOOTH_SD, GP_AMP, GP_LS, EXP_SMOOTH_SD)
#: Power-scaling sensitivity from which a parameter counts as sensitive (priorsense's default).
THRESHOLD = 0.05
CONFLICT, STRONG_PRIOR, NOT_SENSITIVE = "prior-data conflict", "strong prior / weak likelihood", "-"
COLUMNS = ["term", "parameter", "prior", "likelihood", "diagnosis"]


def add_log_prior(idata: az.InferenceData, design: Design) -> None:
    """Add a ``log_prior`` group (float32): the log prior density of each top-level parameter of ``design``'s model.

    Computed on the draws of ``idata.log_likelihood`` only, so that :func:`prior_sensitivity`
    weighs the same draws for the prior and the likelihood. An existing ``log_prior`` group is replaced.

    Raises
    ------
    BackpainEpiError
        ``idata`` has no ``log_likelihood`` group, or its posterior lacks a parameter of the model
        (the fit was of another design).
    """
    # lazy: PyMC and PyTensor take seconds to import; reading and reporting runs never call this
    import pymc as pm

    from .build import build_model

    if "log_likelihood" not in idata.groups():
        raise BackpainEpiError("add_log_prior: the InferenceData has no log_likelihood group; add it first "
                               "(fit_model does), the log prior is computed on its draws.")
    model = build_model(design)
    free = [rv.name for rv in model.free_RVs]
    missing = [name for name in free if name not in idata.posterior]
    if missing:
        raise BackpainEpiError(f"add_log_prior: the posterior lacks {', '.join(missing)} of the model of "
                               f"'{design.recipe.spec.name}'; give the design the run was fit with.")
    names = [name for name in TOP_LEVEL if name in free]
    thin = az.InferenceData(posterior=idata.posterior[free].sel(draw=idata.log_likelihood.draw.values))
    log_prior = pm.compute_log_prior(thin, var_names=names, model=model, extend_inferencedata=False, progressbar=False)
    # compute_log_prior numbers the draws from 0; put back the draws they are
    log_prior = log_prior.astype(np.float32).assign_coords(chain=thin.posterior.chain, draw=thin.posterior.draw)
    if "log_prior" in idata.groups():
        del idata["log_prior"]
    idata.add_groups({"log_prior": log_prior})


def prior_sensitivity(idata: az.InferenceData, *, threshold: float = THRESHOLD) -> pd.DataFrame:
    """Power-scaling sensitivity of each reported parameter to the prior and to the likelihood.

    One row per coefficient (``term``: the design term, ``parameter``: ``beta``) and per scale
    parameter (``term`` = ``parameter``); ``prior`` and ``likelihood`` are :func:`arviz.psens`
    with ``component="prior"`` and ``"likelihood"``, computed on the draws of the log-likelihood.
    ``diagnosis``: ``prior-data conflict`` where both are ≥ ``threshold``, ``strong prior / weak
    likelihood`` where only the prior's is, ``-`` otherwise.

    Raises
    ------
    BackpainEpiError
        ``idata`` has no ``log_prior`` group (a run fit before this version) or no ``log_likelihood``.
    """
    groups = idata.groups()
    if "log_prior" not in groups or "log_likelihood" not in groups:
        lacks = "log_prior" if "log_prior" not in groups else "log_likelihood"
        raise BackpainEpiError(f"prior sensitivity: the posterior has no {lacks} group (it was fit with an earlier version "
                               "of backpain-epi); refit the run with this version to record it.")
    keep = idata.log_likelihood.draw.values
    names = [name for name in TOP_LEVEL if name in idata.log_prior and name != INTERCEPT]
    thin = az.InferenceData(posterior=idata.posterior[names].sel(draw=keep),
                            log_likelihood=idata.log_likelihood, log_prior=idata.log_prior.sel(draw=keep))
    sens = {c: az.psens(thin, component=c, var_names=names) for c in ("prior", "likelihood")}
    rows = []
    for name in names:
        prior, lik = sens["prior"][name], sens["likelihood"][name]
        if prior.ndim:
            dim = prior.dims[0]
            rows += [(str(t), name, float(prior.sel({dim: t})), float(lik.sel({dim: t}))) for t in prior[dim].values]
        else:
            rows.append((name, name, float(prior), float(lik)))
    table = pd.DataFrame(rows, columns=COLUMNS[:-1])
    table["diagnosis"] = [_diagnosis(p, lk, threshold) for p, lk in zip(table["prior"], table["likelihood"])]
    return table


def _diagnosis(prior: float, likelihood: float, threshold: float) -> str:
    if prior >= threshold:
        return CONFLICT if likelihood >= threshold else STRONG_PRIOR
    return NOT_SENSITIVE


def sensitivity_verdict(table: pd.DataFrame, model: str | None = None) -> str:
    """One line on a :func:`prior_sensitivity` table: the odds ratios (and scale parameters) flagged, by diagnosis."""
    head = "Prior sensitivity (power scaling)" + (f", {model}" if model else "") + ": "
    flagged = table[table["diagnosis"] != NOT_SENSITIVE]
    ors = flagged[flagged["parameter"] == BETA]
    scales = flagged[flagged["parameter"] != BETA]

    def listed(rows: pd.DataFrame) -> str:
        return "; ".join(f"{', '.join(g['term'])} ({d})" for d, g in rows.groupby("diagnosis", sort=False))

    if ors.empty:
        line = head + "no reported odds ratio is sensitive to its prior"
    else:
        n = len(ors)
        line = head + f"{n} reported odds ratio{'s are' if n > 1 else ' is'} sensitive to the prior: {listed(ors)}"
    if not scales.empty:
        line += f"; scale parameters: {listed(scales)}"
    return line + "."
