"""The PyMC model of a :class:`~backpain_epi.modelling.design.Design`.

Logistic regression of the outcome on the fixed-effect terms, the activity term
and a random intercept per group::

    logit P(cbp = 1) = intercept + X @ beta + f(activity) + group_sd * group_z[group]

- The group intercepts ``group_effect ~ Normal(0, group_sd)`` (with ``group_z`` their
  ``group_effect / group_sd``) come in the scaled form below, or non-centred
  (``group_z ~ Normal(0, 1)``) after the gate ladder's switch
  (:func:`~backpain_epi.modelling.params.group_parameterization`).
- A spline exposure (``{intermat_ml: spline}``) adds ``S_e @ w_e`` to its linear column of
  ``X``, with ``w_e ~ Normal(0, exposure_smooth_sd[e])``, in the same forms.
- ``f`` is either the spline ``activity_linear * a_lin + A_wiggly @ smooth_w`` with
  coefficients ``smooth_w ~ Normal(0, smooth_sd)``, or the HSGP
  ``phi @ (gp_z * sqrt_psd)`` with ``gp_z ~ Normal(0, 1)`` and the spectral
  weights ``sqrt_psd`` of ``pm.gp.HSGP``. Each comes centred, non-centred or scaled
  (the spec's ``activity.parameterization``; :func:`activity_parameterization`
  resolves ``auto`` to scaled).
- **The scaled form** (:func:`~backpain_epi.modelling.build_latent.scaled_normal`): a
  coefficient ``w ~ Normal(0, s)`` is ``z * s / c`` with the free ``z ~ Normal(0, c)``, ``c = sqrt(1 + s² d)`` and ``d`` the
  coefficient's data precision (:func:`data_precision`). It is non-centred where the data say
  little of the coefficient and centred where they pin it down, coefficient by coefficient, so
  neither a scale at 0 nor a large one makes a funnel. Measured (BENCHMARKS.md): the centred and
  non-centred forms each fail somewhere (at 27,518 rows the non-centred spline gave 5–287
  divergences in the upper tail of ``smooth_sd``, the centred one 0–2 with an activity effect and a
  funnel without; at 290 rows the centred spline gave 105, the non-centred 0; the centred HSGP 522
  at 27,518 rows, the non-centred 23–26). The scaled form gave none at 300, 3,000 and 27,518 rows,
  with and without an activity effect, nor for the HSGP at 27,518 rows (one seed each), at as few
  or fewer leapfrog steps per draw than the better of the other two.

A spec's ``impute`` and ``measurement_error`` add the latent part of :mod:`.build_latent`.

Priors come from the spec. The model has no per-row deterministics, so the cost of a
gradient is one pass over the rows. By default the data are constants of the graph, which
samples about 20 % faster per gradient than ``pm.Data`` containers (BENCHMARKS.md); the gate
ladder's attempts share one compiled model either way. ``build_model(shared=True)`` keeps the
data of a model without latent values in containers (:func:`model_data`) instead: two designs
with the same :func:`structure_key` (terms, bases, number of sites, priors, parameterization)
then give the same graph, and a compiled model is reused for the other with nutpie's
``with_data`` (:mod:`.sample`), as the cross-validation folds do. A model with latent values
(imputation, measurement error) always keeps its data as constants, since its graph depends on
which rows are missing.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from .build_latent import add_latent, mixture_logp, scaled_normal
from .design import Design
from .params import (ACT_LIN, BETA, EXP_SMOOTH_SD, EXP_SMOOTH_W, EXP_SMOOTH_W_SCALED, EXP_SMOOTH_Z, GP_AMP, GP_LS, GP_W_SCALED,
                     GP_Z, GROUP_EFFECT, GROUP_EFFECT_SCALED, GROUP_SD, GROUP_Z, INTERCEPT, SMOOTH_SD, SMOOTH_W, SMOOTH_W_SCALED,
                     SMOOTH_Z, activity_parameterization, group_parameterization, smooth_parameterization)
from .spec import Prior


def model_data(design: Design) -> dict[str, np.ndarray] | None:
    """The arrays of ``design`` as its model's ``pm.Data`` containers hold them; ``None`` for a model with latent values.

    Each container is one C-contiguous array that the graph uses whole (a spline's linear column
    and its penalized columns are two containers, not slices of one). Containers cost about 20 %
    per gradient against constants whatever their layout (BENCHMARKS.md), so only fits that reuse
    compiled models (``build_model(shared=True)``) have them.
    """
    if design.latent is not None:
        return None
    arrays = {"X": design.X, "S": design.S, "group_index": design.group, "y": design.y}
    act = design.recipe.activity
    if act is not None and act["basis"] == "spline":
        arrays |= {"A_linear": design.A[:, 0], "A_smooth": design.A[:, 1:]}
    else:
        arrays["A"] = design.A
    arrays |= precisions(design)
    return {k: np.ascontiguousarray(v) for k, v in arrays.items() if v is not None}


def precisions(design: Design) -> dict[str, np.ndarray]:
    """The data precision (:func:`data_precision`) of each coefficient of the activity term (``A_smooth_precision``
    for the spline's penalized part, ``A_precision`` for the HSGP), the spline exposures (``S_precision``) and the
    group intercepts (``group_precision``), as the scaled form uses them. They are data of the graph (containers
    in a shared model), so a compiled model given another fold's rows takes that fold's weights too."""
    out, act, y = {}, design.recipe.activity, design.y
    if act is not None:
        out |= ({"A_smooth_precision": data_precision(design.A[:, 1:], y)} if act["basis"] == "spline"
                else {"A_precision": data_precision(design.A, y)})
    if design.S is not None:
        out["S_precision"] = data_precision(design.S, y)
    if design.group is not None:
        out["group_precision"] = data_precision(None, y, np.bincount(design.group, minlength=len(design.recipe.group_levels)))
    return out


def structure_key(design: Design) -> str | None:
    """A hash of everything in the model's graph except its data: equal keys, interchangeable compiled models.

    ``None`` for a model with latent values (its graph holds the rows of the missing values).
    """
    data = model_data(design)
    if data is None:
        return None
    recipe, spec = design.recipe, design.recipe.spec
    act = recipe.activity
    parts = {
        "version": 2, "outcome": spec.outcome, "terms": design.terms, "priors": {k: str(v) for k, v in spec.priors.items()},
        "shapes": {k: list(v.shape[1:]) for k, v in data.items()}, "groups": len(recipe.group_levels or []),
        "activity": None if act is None else {"basis": act["basis"], **({"L": act["L"], "m": act["m"]} if act["basis"] == "hsgp" else {})},
        "activity_param": activity_parameterization(design), "smooth_param": smooth_parameterization(design),
        "group_param": group_parameterization(design),
        "smooth_index": recipe.smooth_index().tolist() if design.S is not None else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def build_model(design: Design, *, shared: bool = False) -> pm.Model:
    """PyMC model of ``design`` with the priors of its spec; the outcome is named after the spec's outcome.

    ``shared``: the data in ``pm.Data`` containers (:func:`model_data`), so that the compiled model can be
    given other rows (cross-validation folds); otherwise constants, which sample faster.
    """
    spec, recipe = design.recipe.spec, design.recipe
    coords = {"term": design.terms}
    if design.group is not None:
        coords["group"] = recipe.group_levels
    act = recipe.activity
    if act is not None:
        coords["activity_basis"] = [f"b{j}" for j in range(design.A.shape[1] - (1 if act["basis"] == "spline" else 0))]
    param = activity_parameterization(design)
    if design.S is not None:
        coords["smooth_exposure"] = list(recipe.exposure_splines)
        index = recipe.smooth_index()
        coords["exposure_basis"] = [f"{e}_b{j}" for i, e in enumerate(recipe.exposure_splines) for j in range(int((index == i).sum()))]
    with pm.Model(coords=coords) as model:
        containers = model_data(design) if shared else None
        if containers is not None:
            data = {name: pm.Data(name, values) for name, values in containers.items()}
        else:
            data = {k: pt.as_tensor(v) for k, v in {"X": design.X, "A": design.A, "S": design.S, **precisions(design)}.items()
                    if v is not None}
            data |= {"group_index": design.group, "y": design.y}
        if "A" in data and act is not None and act["basis"] == "spline":
            data |= {"A_linear": data["A"][:, 0], "A_smooth": data["A"][:, 1:]}
        X, A, S = data["X"], data.get("A"), data.get("S")
        intercept = _prior(INTERCEPT, spec.priors["intercept"])
        beta = _prior(BETA, spec.priors["coefficients"], dims="term")
        eta = intercept + pt.dot(X, beta)
        activity_coef = None
        if act is not None and act["basis"] == "spline":
            lin = _prior(ACT_LIN, spec.priors["coefficients"])
            sd = _prior(SMOOTH_SD, spec.priors["smooth_sd"])
            if param == "centred":
                w = pm.Normal(SMOOTH_W, 0.0, sd, dims="activity_basis")
            elif param == "scaled":
                w = pm.Deterministic(SMOOTH_W, scaled_normal(SMOOTH_W_SCALED, sd, data["A_smooth_precision"], "activity_basis"),
                                     dims="activity_basis")
            else:
                w = pm.Deterministic(SMOOTH_W, sd * pm.Normal(SMOOTH_Z, 0.0, 1.0, dims="activity_basis"), dims="activity_basis")
            eta = eta + lin * data["A_linear"] + pt.dot(data["A_smooth"], w)
            activity_coef = (lin, w)
        elif act is not None:
            amp = _prior(GP_AMP, spec.priors["gp_amplitude"])
            ls = _prior(GP_LS, spec.priors["gp_lengthscale"])
            gp = pm.gp.HSGP(m=[act["m"]], L=[act["L"]], cov_func=amp**2 * pm.gp.cov.ExpQuad(1, ls=ls))
            # pm.gp.HSGP gives the spectral weights (they depend on L, m and the kernel only);
            # the basis is the design's: the same eigenfunctions, centred over the data.
            _, sqrt_psd = gp.prior_linearized(X=np.zeros((1, 1)))
            if param == "noncentred":
                z = pm.Normal(GP_Z, 0.0, 1.0, dims="activity_basis")
                w = z * sqrt_psd
            else:
                w = (pm.Normal("gp_w", 0.0, sqrt_psd, dims="activity_basis") if param == "centred"
                     else scaled_normal(GP_W_SCALED, sqrt_psd, data["A_precision"], "activity_basis"))
                pm.Deterministic(GP_Z, w / sqrt_psd, dims="activity_basis")
            eta = eta + pt.dot(A, w)
            activity_coef = w
        if design.S is not None:
            esd = _prior(EXP_SMOOTH_SD, spec.priors["smooth_sd"], dims="smooth_exposure")
            scale = esd[recipe.smooth_index()]
            if smooth_parameterization(design) == "scaled":
                ew = scaled_normal(EXP_SMOOTH_W_SCALED, scale, data["S_precision"], "exposure_basis")
            else:
                ew = scale * pm.Normal(EXP_SMOOTH_Z, 0.0, 1.0, dims="exposure_basis")
            ew = pm.Deterministic(EXP_SMOOTH_W, ew, dims="exposure_basis")
            eta = eta + pt.dot(S, ew)
        if design.group is not None:
            sd = _prior(GROUP_SD, spec.priors["group_sd"])
            if group_parameterization(design) == "scaled":
                u = pm.Deterministic(GROUP_EFFECT, scaled_normal(GROUP_EFFECT_SCALED, sd, data["group_precision"], "group"),
                                     dims="group")
                pm.Deterministic(GROUP_Z, u / sd, dims="group")
            else:
                u = sd * pm.Normal(GROUP_Z, 0.0, 1.0, dims="group")
            eta = eta + u[data["group_index"]]
        mixtures = []
        if design.latent is not None:
            eta, mixtures = add_latent(design, eta, beta, activity_coef, model)
        if not mixtures:
            pm.CustomDist(spec.outcome, eta, logp=bernoulli_logit_logp, random=_bernoulli_logit_random, observed=data["y"])
        else:  # rows with a marginalised covariate: the mixture's log-likelihood (a potential); the others as usual
            plain = np.setdiff1d(np.arange(design.n), np.concatenate([sel for sel, _, _ in mixtures]))
            pm.CustomDist(spec.outcome, eta[plain], logp=bernoulli_logit_logp, random=_bernoulli_logit_random,
                          observed=design.y[plain])
            pm.Potential(f"{spec.outcome}_marginalised", pt.sum(pt.stack(mixture_logp(design.y, eta, mixtures))))
    return model


def data_precision(columns: np.ndarray | None, y: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """What the data say of each coefficient of ``columns`` (rows × k): its Fisher information in the logistic
    likelihood at the outcome's prevalence, ``p (1 - p) Σ_i x_ik²``; with ``rows`` instead, a group intercept's
    (``p (1 - p)`` times the group's rows).

    It sets the weights of the scaled form (:func:`~backpain_epi.modelling.build_latent.scaled_normal`) and nothing
    else: a rough value costs sampling efficiency, never correctness, since the model is the same for any positive
    ``d``.
    """
    p = float(np.clip(np.mean(y), 0.01, 0.99))
    counts = rows if columns is None else np.sum(np.square(columns), axis=0)
    return p * (1.0 - p) * np.asarray(counts, dtype=float)


def bernoulli_logit_logp(value, eta):
    """Bernoulli log-probability of ``value`` (0/1) at log-odds ``eta``: ``value * eta - softplus(eta)``.

    Equal to ``pm.Bernoulli(logit_p=eta)``'s (a test checks it), with one softplus
    per row where PyMC's evaluates two; the likelihood is the cost of every
    gradient, and this makes it about a third cheaper (BENCHMARKS.md).
    """
    return value * eta - pt.softplus(eta)


def _bernoulli_logit_random(eta, rng=None, size=None):
    return rng.binomial(1, 1.0 / (1.0 + np.exp(-eta)), size=size)


def _prior(name: str, prior: Prior, dims: str | None = None):
    family = {"normal": pm.Normal, "student_t": pm.StudentT, "halfnormal": pm.HalfNormal, "halfstudent_t": pm.HalfStudentT,
              "exponential": pm.Exponential, "lognormal": pm.LogNormal, "inversegamma": pm.InverseGamma}[prior.family]
    return family(name, **prior.kwargs, dims=dims)
