"""Names of the model's parameters and the choice of the hierarchical parts' parameterization.

Kept apart from :mod:`.build` (which imports PyMC and PyTensor), so that reading,
summarising and comparing runs never imports them.
"""

from __future__ import annotations

from .design import Design

#: Free parameters that are reported or gated, by model part.
INTERCEPT, BETA, GROUP_SD, GROUP_Z = "intercept", "beta", "group_sd", "group_z"
#: The group intercepts of the scaled form, a deterministic (``group_z`` is then ``group_effect / group_sd``).
GROUP_EFFECT = "group_effect"
ACT_LIN, SMOOTH_SD, SMOOTH_W = "activity_linear", "smooth_sd", "smooth_w"
GP_AMP, GP_LS, GP_Z = "gp_amplitude", "gp_lengthscale", "gp_z"
SMOOTH_Z = "smooth_z"
#: A spline exposure's penalized part: its SD (one per spline exposure) and coefficients (non-centred: ``exposure_smooth_z``).
EXP_SMOOTH_SD, EXP_SMOOTH_W, EXP_SMOOTH_Z = "exposure_smooth_sd", "exposure_smooth_w", "exposure_smooth_z"
#: The free coefficients of the scaled form (:func:`activity_parameterization`): ``z`` in ``w = z * scale / c``.
SMOOTH_W_SCALED, GP_W_SCALED = "smooth_w_scaled", "gp_w_scaled"
EXP_SMOOTH_W_SCALED, GROUP_EFFECT_SCALED = "exposure_smooth_w_scaled", "group_effect_scaled"


def activity_parameterization(design: Design) -> str | None:
    """``centred``, ``noncentred`` or ``scaled`` for the activity term of ``design`` (``None`` without a spline or HSGP
    term).

    The spec's choice if it makes one; ``auto``: the scaled form (non-centred when ``design.noncentred``, the gate
    ladder's refit after a funnel). The scaled form writes each coefficient ``w ~ Normal(0, s)`` as
    ``w = z * s / c`` with ``z ~ Normal(0, c)`` and ``c = sqrt(1 + s² d)``, where ``d`` is the coefficient's
    data precision (:func:`~backpain_epi.modelling.build.data_precision`). Given ``s``, ``z`` then has a posterior
    SD near 1 whatever ``s`` is: the form is non-centred where the data say little of a coefficient (``s² d`` ≪ 1)
    and centred where they pin it down (``s² d`` ≫ 1), coefficient by coefficient. This is a partially
    non-centred parameterization (Papaspiliopoulos, Roberts & Sköld 2007), with the weight of each coefficient
    set by its data. Measured with full.yaml (BENCHMARKS.md): at 27,518 rows with no activity effect the
    non-centred spline gave 28 divergences (in the upper tail of ``smooth_sd``) and the centred one a funnel,
    the scaled one none, at 9.9 leapfrog steps per draw against 14.9; with the default U-shaped activity it
    matched the centred spline (8.6 steps per draw against 8.7).
    """
    act = design.recipe.spec.activity
    if act is None or act.basis == "bands":
        return None
    if act.parameterization not in (None, "auto"):
        return act.parameterization
    return "noncentred" if design.noncentred else "scaled"


def group_parameterization(design: Design) -> str | None:
    """``scaled`` or ``noncentred`` (``design.noncentred``) for the group intercepts of ``design`` (``None`` without
    a group): the scaled form of :func:`activity_parameterization`, with a group's data precision from its rows.

    It replaced (2026-12-06) a choice between the centred form (every group with 50 events and as many non-events)
    and the non-centred one: with no site effect and about 1,500 rows per site neither suited, the centred form
    making a funnel (E-BFMI 0.25, 45 steps per draw at 27,518 rows) and the non-centred one diverging where the
    site SD is large (BENCHMARKS.md).
    """
    if design.group is None:
        return None
    return "noncentred" if design.noncentred else "scaled"


def smooth_parameterization(design: Design) -> str | None:
    """``scaled`` or ``noncentred`` (``design.noncentred``) for the spline exposures of ``design`` (``None`` without
    one), as :func:`group_parameterization`."""
    if not design.recipe.exposure_splines:
        return None
    return "noncentred" if design.noncentred else "scaled"


def auto_parts(design: Design) -> list[str]:
    """The parts of ``design`` whose parameterization is the automatic scaled form (not the spec's choice), which
    the gate ladder may refit non-centred: ``activity``, ``exposure splines``, ``group``."""
    act = design.recipe.spec.activity
    auto_activity = act is not None and act.parameterization in (None, "auto")
    parts = {"activity": auto_activity and activity_parameterization(design) == "scaled",
             "exposure splines": smooth_parameterization(design) == "scaled",
             "group": group_parameterization(design) == "scaled"}
    return [name for name, scaled in parts.items() if scaled]
