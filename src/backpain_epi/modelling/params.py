"""Names of the model's parameters and the choice of the activity term's parameterization.

Kept apart from :mod:`.build` (which imports PyMC and PyTensor), so that reading,
summarising and comparing runs never imports them.
"""

from __future__ import annotations

import numpy as np

from .design import Design

#: Free parameters that are reported or gated, by model part.
INTERCEPT, BETA, GROUP_SD, GROUP_Z = "intercept", "beta", "group_sd", "group_z"
#: The centred group intercepts (``group_z`` is then their deterministic ``group_effect / group_sd``).
GROUP_EFFECT = "group_effect"
ACT_LIN, SMOOTH_SD, SMOOTH_W = "activity_linear", "smooth_sd", "smooth_w"
GP_AMP, GP_LS, GP_Z = "gp_amplitude", "gp_lengthscale", "gp_z"
SMOOTH_Z = "smooth_z"
#: A spline exposure's penalized part: its SD (one per spline exposure) and coefficients (non-centred: ``exposure_smooth_z``).
EXP_SMOOTH_SD, EXP_SMOOTH_W, EXP_SMOOTH_Z = "exposure_smooth_sd", "exposure_smooth_w", "exposure_smooth_z"
#: ``auto`` centres the spline coefficients from this many events (outcome = 1) up.
CENTRED_MIN_EVENTS = 1000


def activity_parameterization(design: Design) -> str | None:
    """``centred`` or ``noncentred`` for the activity term of ``design`` (``None`` without a spline or HSGP term).

    The spec's choice if it makes one; ``auto``: the HSGP non-centred, the spline centred from
    :data:`CENTRED_MIN_EVENTS` events up (non-centred when ``design.noncentred``).
    """
    act = design.recipe.spec.activity
    if act is None or act.basis == "bands":
        return None
    if act.parameterization not in (None, "auto"):
        return act.parameterization
    if act.basis == "hsgp" or design.noncentred:
        return "noncentred"
    return "centred" if int(np.sum(design.y)) >= CENTRED_MIN_EVENTS else "noncentred"


#: ``auto`` centres the group intercepts when every group has this many events and as many non-events.
GROUP_CENTRED_MIN_EVENTS = 50


def group_parameterization(design: Design) -> str | None:
    """``centred`` or ``noncentred`` for the group intercepts of ``design`` (``None`` without a group).

    Centred when every group has at least :data:`GROUP_CENTRED_MIN_EVENTS` events and as
    many non-events: each group's intercept is then pinned down by its own data. At 27,518
    rows the centred form took 9 leapfrog steps per draw against 12 for the non-centred one,
    at a somewhat lower bulk ESS per draw for the exposures (BENCHMARKS.md). Non-centred when
    ``design.noncentred``.
    """
    if design.group is None:
        return None
    if design.noncentred:
        return "noncentred"
    n_groups = len(design.recipe.group_levels)
    events = np.bincount(design.group, weights=design.y, minlength=n_groups)
    rows = np.bincount(design.group, minlength=n_groups)
    return "centred" if min(events.min(), (rows - events).min()) >= GROUP_CENTRED_MIN_EVENTS else "noncentred"


def smooth_parameterization(design: Design) -> str | None:
    """``centred`` or ``noncentred`` for the spline exposures of ``design`` (``None`` without one): as the activity
    spline's ``auto``, centred from :data:`CENTRED_MIN_EVENTS` events up."""
    if not design.recipe.exposure_splines:
        return None
    if design.noncentred:
        return "noncentred"
    return "centred" if int(np.sum(design.y)) >= CENTRED_MIN_EVENTS else "noncentred"


def centred_parts(design: Design) -> list[str]:
    """The parts of ``design`` that are centred by an automatic choice (not by the spec), which the gate ladder
    may refit non-centred: ``activity``, ``exposure splines``, ``group``."""
    act = design.recipe.spec.activity
    auto_activity = act is not None and act.parameterization in (None, "auto")
    parts = {"activity": auto_activity and activity_parameterization(design) == "centred",
             "exposure splines": smooth_parameterization(design) == "centred",
             "group": group_parameterization(design) == "centred"}
    return [name for name, centred in parts.items() if centred]
