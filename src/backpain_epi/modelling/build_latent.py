"""The latent part of the PyMC model: imputation models, marginalised discrete covariates, measurement error.

Called by :func:`~backpain_epi.modelling.build.build_model` inside the model context; see
:mod:`~backpain_epi.modelling.latent` for the layout. Each imputed column ``c`` gets an imputation
model on the scale the design uses (per 2 SD for a numeric covariate, the standardized transformed
activity for the activity term, the logit for a binary one), conditional on the fully observed
columns of the design (exposures and covariates; the standardized transformed activity when it is
observed), the continuous columns imputed before it (the order of ``impute``) and a random
intercept per site:

- continuous: ``c ~ Normal(a_c + Z g_c + u_c[site], tau_c)``. By default (:data:`IMPUTE_PARAMETERIZATION`
  ``quadrature``) a row's missing values are integrated out of its likelihood (:func:`_quadrature`): given its
  observed imputed columns they are normal, the mean and variance of what they add to the log-odds come exactly
  (numeric covariates) or by Gauss–Hermite quadrature (the activity), and the logistic's expectation by the probit
  approximation. The sampler's dimension then does not grow with the rows, and the values are drawn after
  sampling (:func:`draw_imputed_values`). In a model that also imputes a discrete column or has a
  measurement-error exposure, they are sampled: ``mu + tau * <c>_missing_z`` (non-centred: the outcome says
  little about one value);
- binary: ``c ~ Bernoulli(logit⁻¹(a_c + Z g_c + u_c[site]))``; a missing value is marginalised;
- bands: the transformed activity is modelled as continuous; a missing band is marginalised with
  the probabilities of that normal between the band edges.

A measurement-error exposure ``x`` is latent on the per-2-SD scale of the true exposure, with the
measurement model ``x_obs ~ Normal(x_true, se)`` and the prior ``x_true ~ Normal(mu = a_x + Z g_x +
u_x[site], tau_x)``. By default (``marginal``) it is integrated out: ``x_obs ~ Normal(mu, sqrt(tau² + se²))``,
and given ``x_obs``, ``x_true ~ Normal(x_obs + c, s)`` with ``c = (mu - x_obs) se² / (tau² + se²)`` and
``s = tau se / sqrt(tau² + se²)``, so the log-odds are ``eta + beta c`` plus a normal term of variance
``beta² s²`` (summed over the measured exposures), whose expectation under the logistic is taken by the probit
approximation ``expit(m / sqrt(1 + pi v / 8))``. The sampler's dimension then does not grow with the rows
(at 27,518 rows: 15 leapfrog steps per draw against 31–40 with a true value per row); the true values are drawn
after sampling (:func:`draw_true_values`). In a model that also marginalises a discrete covariate, and with
``observation``, they are sampled: ``x_true = x_obs + se * <x>_true_z`` with ``<x>_true_z ~ Normal(0, 1)`` and the
prior as a potential.

The site intercepts ``u`` of every imputation and exposure model take the outcome model's scaled form
(:func:`scaled_normal`), each site's data precision its number of rows: at 27,518 rows that cut the sampling time
of the integrated imputation fit from 99 s to 73 s and of the marginal measurement-error fit from 88 s to 65 s
(BENCHMARKS.md; they were non-centred).

Only the missing rows carry parameters and in-graph bases; the data stay constants.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pymc.model.transform.conditioning import remove_value_transforms

from ..errors import BackpainEpiWarning
from .latent import ACTIVITY, BANDS, BINARY, CONTINUOUS, DISCRETE, band_cuts, hsgp_basis, missing_name, prob_name, row_dim, \
    spline_basis_pieces, spline_pieces, true_dim, true_z_name
from .params import BETA as BETA_NAME


#: How a measurement-error exposure's latent enters the sampler: ``marginal`` (the default: integrated out of the
#: likelihood, its values drawn after sampling by :func:`draw_true_values`; ``observation`` in a model that also
#: marginalises a discrete covariate), ``observation`` (sampled, ``x_obs + se * z``) or ``centred``
#: (sampled, ``x_true ~ Normal(mu, tau)``); BENCHMARKS.md compares them.
ME_PARAMETERIZATION = "marginal"
#: Candidates per row and draw of :func:`draw_true_values`.
SIR_CANDIDATES = 8
#: Above this SD of the log-odds' measurement-error part the probit approximation errs by more than 0.025 in log p.
PROBIT_SD_MAX = 0.3
#: How the missing values of continuous imputed columns (a numeric covariate, the activity of a spline or HSGP term)
#: enter the sampler: ``quadrature`` (the default: integrated out of the likelihood, :func:`_quadrature`, and drawn
#: after sampling by :func:`draw_imputed_values`; sampled in a model that also imputes a discrete column or has a
#: measurement-error exposure) or ``sampled`` (one parameter per missing value); BENCHMARKS.md compares them.
IMPUTE_PARAMETERIZATION = "quadrature"
#: Gauss–Hermite nodes along a missing activity (:func:`_activity_moments`); a test checks the whole likelihood against 40.
QUADRATURE_NODES = 7
#: Candidates per row and draw of :func:`draw_imputed_values`.
IMPUTE_SIR_CANDIDATES = 8


def spline_basis_pt(u, activity: dict, pieces=None):
    """The activity spline basis (centred, mixed-model columns) at a tensor ``u`` of transformed values: shape (len(u), cols)."""
    left, coef = pieces if pieces is not None else spline_pieces(activity)
    u = pt.clip(u, activity["lower"], activity["upper"])
    j = pt.clip(pt.sum(pt.ge(u[:, None], pt.as_tensor(left[1:])[None, :]), axis=1), 0, len(left) - 1)
    t = (u - pt.as_tensor(left)[j])[:, None]
    c = pt.as_tensor(coef)[j]
    return ((c[:, 3, :] * t + c[:, 2, :]) * t + c[:, 1, :]) * t + c[:, 0, :]


def hsgp_basis_pt(u, activity: dict):
    """The centred HSGP basis of the design at a tensor ``u`` of transformed values."""
    u = pt.clip(u, activity["lower"], activity["upper"])
    sqrt_lambda = np.arange(1, activity["m"] + 1) * np.pi / (2 * activity["L"])
    phi = np.sqrt(1 / activity["L"]) * pt.sin((u - activity["centre"] + activity["L"])[:, None] * sqrt_lambda[None, :])
    return phi - np.asarray(activity["column_means"])[None, :]


def scaled_normal(name: str, scale, precision: np.ndarray, dims: str):
    """Coefficients ``w ~ Normal(0, scale)`` in the scaled form (:func:`~backpain_epi.modelling.params.activity_parameterization`):
    the free ``z ~ Normal(0, c)`` (named ``name``), ``w = z * scale / c``, ``c = sqrt(1 + scale² precision)``."""
    c = pt.sqrt(1.0 + pt.square(scale) * precision)
    return pm.Normal(name, 0.0, c, dims=dims) * scale / c


def _imputation_parameters(name: str, n_coef: int, group: np.ndarray | None, n_groups: int):
    """The parameters of an imputation model: intercept ``a``, coefficients ``g`` (``n_coef``) and site intercepts
    ``u`` (``None`` without sites) in the scaled form of :func:`scaled_normal`, each
    site's data precision its number of rows (the columns are standardized, so a residual variance near 1: a rough
    value costs efficiency only)."""
    a = pm.Normal(f"{name}_imp_intercept", 0.0, 2.5)
    g = pm.Normal(f"{name}_imp_coef", 0.0, 1.0, shape=n_coef)
    u = None
    if group is not None:
        sd = pm.HalfNormal(f"{name}_imp_site_sd", 1.0)
        u = scaled_normal(f"{name}_imp_site_scaled", sd, np.bincount(group, minlength=n_groups).astype(float), "group")
    return a, g, u


def _regression_parts(name: str, Z: np.ndarray, n_extra: int, group, n_groups: int):
    """``(a + Z g + u[site], h)``: an imputation model's mean without its ``n_extra`` earlier imputed columns, and
    their coefficients ``h`` (standardized scale)."""
    a, g, u = _imputation_parameters(name, Z.shape[1] + n_extra, group, n_groups)
    base = a + pt.dot(pt.as_tensor(Z), g[:Z.shape[1]])
    if u is not None:
        base = base + u[group]
    return base, g[Z.shape[1]:]


def _observed_normal(name: str, v: np.ndarray, D: np.ndarray, theta, tau):
    """``sum log Normal(v; D theta, tau)`` as a potential, from the sufficient statistics ``v'v``, ``D'v`` and ``D'D``:
    the rows' normal likelihood (the brute-force test of the quadrature likelihood checks it), at a cost per gradient
    that does not grow with the rows."""
    vv, Dv, DD = float(v @ v), pt.as_tensor(D.T @ v), pt.as_tensor(D.T @ D)
    ss = vv - 2.0 * pt.dot(theta, Dv) + pt.dot(theta, pt.dot(DD, theta))
    n = len(v)
    return pm.Potential(name, -0.5 * ss / tau**2 - n * pt.log(tau) - 0.5 * n * np.log(2 * np.pi))


def _regression(name: str, Z: np.ndarray, extra: list, group, n_groups: int):
    """``a + Z g + (earlier imputed columns) h + u[site]``: the mean of an imputation model (standardized scale)."""
    mu, h = _regression_parts(name, Z, len(extra), group, n_groups)
    for k, v in enumerate(extra):
        mu = mu + v * h[k]
    return mu


def _quadrature_applies(L) -> bool:
    """Whether the continuous imputed columns of ``L`` are integrated out (:data:`IMPUTE_PARAMETERIZATION`)."""
    return (IMPUTE_PARAMETERIZATION == "quadrature" and 0 < len(L.entries((CONTINUOUS, ACTIVITY))) <= 4
            and not L.entries(DISCRETE) and not L.recipe["measured"])


def spline_function_pt(u, activity: dict, lin, w):
    """The activity spline ``lin * B[:, 0] + B[:, 1:] @ w`` at a tensor ``u`` (any shape), as one function: the cubic
    of the first knot interval plus a truncated cubic ``d_k (u - knot_k)_+^3`` per inner knot (the cubic regression
    spline is twice continuously differentiable, so only the cubic coefficient changes at a knot). Elementwise in ``u``,
    with the coefficients ``(4 + inner knots,)`` computed once; equal to the basis to rounding (a test checks it)."""
    left, coef = spline_pieces(activity)
    T = np.concatenate([coef[0], coef[1:, 3, :] - coef[:-1, 3, :]])      # (4 + inner knots, columns)
    g = pt.dot(pt.as_tensor(T), pt.concatenate([pt.atleast_1d(lin), w]))
    u = pt.clip(u, activity["lower"], activity["upper"])
    t = u - left[0]
    out = ((g[3] * t + g[2]) * t + g[1]) * t + g[0]
    for k, knot in enumerate(left[1:]):
        r = pt.maximum(u - knot, 0.0)
        out = out + g[4 + k] * (r * r * r)
    return out


def _contribution_pt(e: dict, v, beta, recipe, activity_coef):
    """What an imputed column at standardized values ``v`` (any shape) adds to the log-odds."""
    if e["kind"] == CONTINUOUS:
        return beta[recipe.terms.index(e["term"])] * v
    act = recipe.activity
    u = e["u_mean"] + e["u_sd"] * v
    if act["basis"] == "spline":
        return spline_function_pt(u, act, *activity_coef)
    return pt.dot(hsgp_basis_pt(u.reshape((-1,)), act), activity_coef).reshape(v.shape)


def _patterns(missing: np.ndarray):
    """Per pattern of missing columns (a row of ``missing``, some missing): the pattern and its rows."""
    for pattern in sorted({tuple(r) for r in missing[missing.any(axis=1)]}):
        yield pattern, np.flatnonzero((missing == np.array(pattern)).all(axis=1))


def _inv_det(M: list, k: int):
    """Inverse and determinant of a small symmetric positive-definite matrix ``M`` given as nested lists of scalar
    tensors (k ≤ 3), in closed form: the graph stays scalar and elementwise, which compiles and runs faster than
    matrix ops at this size."""
    if k == 1:
        return [[1.0 / M[0][0]]], M[0][0]
    if k == 2:
        a, b, d = M[0][0], M[0][1], M[1][1]
        det = a * d - b * b
        return [[d / det, -b / det], [-b / det, a / det]], det
    (a, b, c), (d, e, f), (g, h, i) = M
    cof = [[e * i - f * h, f * g - d * i, d * h - e * g], [c * h - b * i, a * i - c * g, b * g - a * h],
           [b * f - c * e, c * d - a * f, a * e - b * d]]
    det = a * cof[0][0] + b * cof[0][1] + c * cof[0][2]
    return [[cof[j][r] / det for j in range(3)] for r in range(3)], det


def _linear_moments(entries, Mi: list, cm: list, cov: list, beta, recipe):
    """What a pattern's missing values ``Mi`` add to the log-odds under their normal (conditional means ``cm``, one
    vector per missing column; covariance ``cov``, nested lists of scalars): the mean and variance (m,) of the
    numeric covariates' part (linear, so exact), and, where the activity is missing, ``(its conditional means (m,),
    its SD, c)`` with ``c = sum_j beta_j cov_ja / cov_aa``: a numeric covariate's regression on the activity is
    linear, so ``Cov(f, v_j) = cov_ja / cov_aa Cov(f, v_a)``."""
    ones = pt.ones(cm[0].shape[0])
    lin = [(a, beta[recipe.terms.index(entries[j]["term"])]) for a, j in enumerate(Mi) if entries[j]["kind"] == CONTINUOUS]
    mean, var = 0.0 * ones, pt.zeros(())
    for a, b in lin:
        mean = mean + b * cm[a]
        for c, d in lin:
            var = var + b * d * cov[a][c]
    act = [a for a, j in enumerate(Mi) if entries[j]["kind"] == ACTIVITY]
    if not act:
        return mean, var * ones, None
    a = act[0]
    c = sum((d * cov[k][a] for k, d in lin), pt.zeros(())) / cov[a][a]
    return mean, var * ones, (cm[a], pt.sqrt(cov[a][a]), c)


def _activity_moments(entry: dict, cm, sd, c, beta, recipe, activity_coef):
    """For rows whose activity is missing, ``Normal(cm, sd)`` (m,): the mean of the activity term ``f`` and what it adds
    to the variance, ``Var f + 2 c Cov(f, v_a)``, by :data:`QUADRATURE_NODES` Gauss–Hermite nodes (polynomials only)."""
    x, w = np.polynomial.hermite_e.hermegauss(QUADRATURE_NODES)
    w = w / w.sum()
    f = _contribution_pt(entry, cm[:, None] + sd[:, None] * pt.as_tensor(x)[None, :], beta, recipe, activity_coef)
    ef = pt.dot(f, w)
    return ef, pt.dot(f * f, w) - ef * ef + 2 * c * sd * pt.dot(f, w * x)


def _quadrature(design, eta, beta, activity_coef, model):
    """The continuous imputed columns integrated out (:data:`IMPUTE_PARAMETERIZATION` ``quadrature``); returns ``eta``.

    Given the fully observed columns and the site, the imputation models' chain ``v_j = base_j + sum_l h_jl v_l +
    tau_j e_j`` makes the imputed columns jointly normal, with means ``m`` per row and one covariance ``S = A A'``. For
    each pattern of missing columns ``M`` (observed ``O``), a row's observed values enter with their marginal
    density ``Normal(v_O; m_O, S_OO)`` (a potential), and its missing values are normal given them,
    ``Normal(m_M + K (v_O - m_O), S_MM - K S_OM)`` with ``K = S_MO S_OO^-1``. What they add to the log-odds, ``f``
    (linear for a numeric covariate, the activity spline or HSGP at its value), has its mean and variance under that
    normal (:func:`_linear_moments`, exact for the linear part; :func:`_activity_moments`, Gauss–Hermite nodes along
    the activity, polynomials only), and the logistic's expectation is taken by the probit approximation, as for
    measurement error:
    ``expit((eta + E f) / sqrt(1 + pi Var f / 8))``. Complete rows are observed along the chain, each column's
    likelihood from its sufficient statistics (:func:`_observed_normal`), so that only the incomplete rows cost per
    gradient more than the outcome does.
    """
    L, recipe, group = design.latent, design.recipe, design.group
    entries = L.entries((CONTINUOUS, ACTIVITY))
    J = len(entries)
    obs = np.column_stack([L.observed[e["column"]] for e in entries])
    missing, filled = ~np.isfinite(obs), np.nan_to_num(obs)
    complete, incomplete = np.flatnonzero(~missing.any(axis=1)), np.flatnonzero(missing.any(axis=1))
    at = np.full(design.n, -1)
    at[incomplete] = np.arange(len(incomplete))      # a row's position among the incomplete rows
    p = L.Z.shape[1]
    sites = [] if group is None else [np.eye(len(recipe.group_levels))[group[complete]]]
    means, loads = [], []   # per column: its marginal mean on the incomplete rows and its loadings on the chain's errors (J,)
    for j, e in enumerate(entries):
        col = e["column"]
        model.add_coord(row_dim(col), design.ids[L.missing_rows[col]])
        a, g, u = _imputation_parameters(col, p + j, group, len(recipe.group_levels or []))
        tau = pm.HalfNormal(f"{col}_imp_sd", 1.0)
        D = np.column_stack([np.ones(len(complete)), L.Z[complete], filled[complete, :j], *sites])
        _observed_normal(f"{col}_observed", obs[complete, j], D, pt.concatenate([a[None], g, *([u] if u is not None else [])]), tau)
        base = a + pt.dot(pt.as_tensor(L.Z[incomplete]), g[:p]) + (u[group[incomplete]] if u is not None else 0.0)
        h = g[p:]
        means.append(base + sum((h[k] * means[k] for k in range(j)), pt.zeros(())))
        # v_j's loading on error l: tau_j for l = j, sum_k h_k (loading of v_k on l) for l < j, none for l > j
        loads.append([sum((h[k] * loads[k][l] for k in range(l, j)), pt.zeros(())) if l < j else tau if l == j else None
                      for l in range(J)])
    S = [[sum((x * y for x, y in zip(loads[i], loads[k]) if x is not None and y is not None), pt.zeros(()))
          for k in range(J)] for i in range(J)]
    patterns = []
    for pattern, sel in _patterns(missing):
        Mi = [j for j in range(J) if pattern[j]]
        Oi = [j for j in range(J) if not pattern[j]]
        cm = [means[j][at[sel]] for j in Mi]
        cov = [[S[i][k] for k in Mi] for i in Mi]
        if Oi:
            r = [pt.as_tensor(obs[sel, o]) - means[o][at[sel]] for o in Oi]
            inv, det = _inv_det([[S[o][q] for q in Oi] for o in Oi], len(Oi))
            K = [[sum(S[i][Oi[q]] * inv[q][o] for q in range(len(Oi))) for o in range(len(Oi))] for i in Mi]
            cm = [cm[a] + sum(K[a][o] * r[o] for o in range(len(Oi))) for a in range(len(Mi))]
            cov = [[cov[a][c] - sum(K[a][o] * S[Oi[o]][Mi[c]] for o in range(len(Oi))) for c in range(len(Mi))]
                   for a in range(len(Mi))]
            quad = sum(r[o] * inv[o][q] * r[q] for o in range(len(Oi)) for q in range(len(Oi)))
            pm.Potential(f"imputed_observed_{''.join('m' if hit else 'o' for hit in pattern)}",
                         pt.sum(-0.5 * quad) - len(sel) * 0.5 * (pt.log(det) + len(Oi) * np.log(2 * np.pi)))
        patterns.append((tuple(Mi), sel, pt.stack(cm, axis=1), pt.stack([pt.stack(row) for row in cov]),
                         *_linear_moments(entries, Mi, cm, cov, beta, recipe)))
    # one pass over every row whose activity is missing (one kernel to compile, however many patterns), then the rest
    patterns.sort(key=lambda q: q[-1] is None)
    with_act = [q for q in patterns if q[-1] is not None]
    mean, var = pt.concatenate([q[4] for q in patterns]), pt.concatenate([q[5] for q in patterns])
    if with_act:
        entry = next(e for e in entries if e["kind"] == ACTIVITY)
        cat = [pt.concatenate([q[-1][0] for q in with_act]),
               *[pt.concatenate([q[-1][k] * pt.ones(len(q[1])) for q in with_act]) for k in (1, 2)]]
        m_act, v_act = _activity_moments(entry, *cat, beta, recipe, activity_coef)
        rest = sum(len(q[1]) for q in patterns) - sum(len(q[1]) for q in with_act)
        mean = mean + pt.concatenate([m_act, pt.zeros(rest)])
        var = var + pt.concatenate([v_act, pt.zeros(rest)])
    var = pt.maximum(var, 0.0)
    rows = np.concatenate([q[1] for q in patterns])
    eta = pt.set_subtensor(eta[rows], (eta[rows] + mean) / pt.sqrt(1.0 + np.pi / 8.0 * var))
    starts = np.cumsum([0] + [len(q[1]) for q in patterns])
    patterns = [(Mi, sel, cm, cov, var[starts[k]:starts[k + 1]]) for k, (Mi, sel, cm, cov, *_) in enumerate(patterns)]
    model.imputed_quadrature = ImputedQuadrature(tuple(entries), tuple(patterns), activity_coef)
    return eta


@dataclass(frozen=True)
class ImputedQuadrature:
    """The graph of a model whose continuous imputed columns are integrated out (:data:`IMPUTE_PARAMETERIZATION`
    ``quadrature``): the entries in order; per pattern ``(missing columns, rows, conditional means (m, |M|), conditional
    covariance (|M|, |M|), variance of the log-odds part (m,))``; the activity coefficients."""

    entries: tuple
    patterns: tuple
    activity_coef: object


def _contribution_np(e: dict, v: np.ndarray, beta: np.ndarray, recipe, coef, pieces) -> np.ndarray:
    """:func:`_contribution_pt` in numpy, at one draw: ``coef`` the activity coefficients as one vector."""
    if e["kind"] == CONTINUOUS:
        return beta[recipe.terms.index(e["term"])] * v
    u = e["u_mean"] + e["u_sd"] * v
    B = spline_basis_pieces(u, recipe.activity, pieces) if pieces is not None else hsgp_basis(u, recipe.activity)
    return B @ coef


def _warn_loose_probit(spread: np.ndarray, what: str) -> None:
    """Warn where the posterior median of ``spread`` (per draw, the largest SD over rows of the log-odds part integrated
    by the probit approximation) exceeds :data:`PROBIT_SD_MAX`; ``what`` names that part ("measurement error leaves")."""
    if np.median(spread) > PROBIT_SD_MAX:
        warnings.warn(f"{float(np.median(spread)):.2f}: the SD of the log-odds that {what} (largest over rows, posterior median) "
                      f"exceeds {PROBIT_SD_MAX}; the probit approximation of the likelihood errs by more than 0.025 in log p there "
                      "(0.06 at 0.5; BENCHMARKS.md): treat the intervals as approximate.", BackpainEpiWarning, stacklevel=4)


def draw_imputed_values(model, idata, design, seed: int, candidates: int = IMPUTE_SIR_CANDIDATES) -> None:
    """Add ``<column>_missing`` (raw scale, dims ``<column>_missing_row``) to the posterior of a ``quadrature`` fit.

    For each draw, each row's missing values are drawn from their posterior given the row's outcome, its observed
    imputed columns and that draw's parameters, by sampling-importance-resampling: ``candidates`` draws from their
    normal given the observed columns (:func:`_quadrature`), one kept with weight ``p(y | eta)``. The pointwise
    log-likelihood and g-computation then use them as they use a sampled fit's. Warns, as measurement error does,
    where the SD of the log-odds part integrated over exceeds :data:`PROBIT_SD_MAX`.
    """
    iq = model.imputed_quadrature
    recipe = design.recipe
    act = recipe.activity
    pieces = spline_pieces(act) if act is not None and act["basis"] == "spline" else None
    coef_t = [] if iq.activity_coef is None else (list(iq.activity_coef) if isinstance(iq.activity_coef, tuple) else [iq.activity_coef])
    outs = [model.imputed_eta, model[BETA_NAME], *coef_t, *[t for _, _, cm, cov, var in iq.patterns for t in (cm, cov, var)]]
    fn = model.compile_fn(outs=outs, inputs=model.free_RVs, on_unused_input="ignore", point_fn=True)
    post = idata.posterior
    names = [rv.name for rv in model.free_RVs]
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    L = design.latent
    drawn = [np.empty((n_chain, n_draw, len(L.missing_rows[e["column"]]))) for e in iq.entries]
    where = [np.searchsorted(L.missing_rows[e["column"]], np.arange(design.n)) for e in iq.entries]
    rng = np.random.default_rng(seed)
    y = design.y.astype(float)
    spread = np.zeros((n_chain, n_draw))
    nc = len(coef_t)
    for ci in range(n_chain):
        values = {k: post[k].isel(chain=ci).to_numpy() for k in names}
        for di in range(n_draw):
            res = fn({k: v[di] for k, v in values.items()})
            eta, beta = res[0], res[1]
            coef = np.concatenate([np.atleast_1d(c) for c in res[2:2 + nc]]) if nc else None
            for p, (Mi, sel, _, _, _) in enumerate(iq.patterns):
                cm, cov, var = res[2 + nc + 3 * p:5 + nc + 3 * p]
                spread[ci, di] = max(spread[ci, di], float(np.sqrt(var.max())))
                C = np.linalg.cholesky(np.atleast_2d(cov) + 1e-12 * np.eye(len(Mi)))
                v = cm[None] + rng.standard_normal((candidates, len(sel), len(Mi))) @ C.T    # (K, m, |M|)
                e_sel = eta[sel][None] + sum(_contribution_np(iq.entries[j], v[:, :, a], beta, recipe, coef, pieces)
                                             for a, j in enumerate(Mi))
                logw = y[sel] * e_sel - np.logaddexp(0.0, e_sel) + rng.gumbel(size=e_sel.shape)   # Gumbel-max: one by weight
                pick = v[logw.argmax(axis=0), np.arange(len(sel))]
                for a, j in enumerate(Mi):
                    drawn[j][ci, di, where[j][sel]] = pick[:, a]
    _warn_loose_probit(spread, "the imputed values leave")
    for j, e in enumerate(iq.entries):
        col, v = e["column"], drawn[j]
        if e["kind"] == CONTINUOUS:
            raw = e["centre"] + e["scale"] * v
        else:
            u = e["u_mean"] + e["u_sd"] * v
            raw = np.expm1(np.maximum(u, 0.0)) if e["transform"] == "log1p" else np.maximum(u, 0.0)
        idata.posterior[missing_name(col)] = (("chain", "draw", row_dim(col)), raw)
        idata.posterior = idata.posterior.assign_coords({row_dim(col): design.ids[L.missing_rows[col]]})


def add_latent(design, eta, beta, activity_coef, model):
    """Add the latent part to ``eta``; returns ``(eta, mixtures)`` with ``mixtures`` a list of ``(rows, logw, delta)``
    tensors: the log prior weights (m, K) and log-odds shifts (K,) of the combinations of marginalised values."""
    L = design.latent
    recipe = design.recipe
    terms = recipe.terms
    group, n_groups = design.group, len(recipe.group_levels or [])
    if _quadrature_applies(L):
        model.imputed_eta = eta
        return _quadrature(design, eta, beta, activity_coef, model), []
    continuous = []  # full-length standardized tensors of the continuous imputed columns, in order
    discrete = {}    # column -> (logw tensor (m_c, K_c), delta tensor (K_c,))
    for e in [e for e in L.recipe["imputed"] if e["kind"] in (CONTINUOUS, ACTIVITY)] + L.entries(DISCRETE):
        col, kind = e["column"], e["kind"]
        obs = L.observed[col]
        seen = np.flatnonzero(np.isfinite(obs))
        miss = L.missing_rows[col]
        model.add_coord(row_dim(col), design.ids[miss])
        if kind == BINARY:
            mu = _regression(col, L.Z, continuous, group, n_groups)
            pm.Bernoulli(f"{col}_observed", logit_p=mu[seen], observed=obs[seen].astype(np.int64))
            logit = mu[miss]
            pm.Deterministic(prob_name(col), pm.math.sigmoid(logit), dims=row_dim(col))
            logw = pt.stack([-pt.softplus(logit), -pt.softplus(-logit)], axis=1)
            delta = pt.stack([pt.zeros(()), beta[terms.index(e["term"])]])
            discrete[col] = (logw, delta)
            continue
        mu = _regression(col, L.Z, continuous, group, n_groups)
        tau = pm.HalfNormal(f"{col}_imp_sd", 1.0)
        pm.Normal(f"{col}_observed", mu[seen], tau, observed=obs[seen])
        if kind == BANDS:
            c = band_cuts(e)
            F = pt.stack([pm.math.invprobit((c[k] - mu[miss]) / tau) for k in range(len(c))], axis=1)
            p = pt.concatenate([F[:, :1], F[:, 1:] - F[:, :-1], 1 - F[:, -1:]], axis=1)
            model.add_coord(f"{col}_level", e["levels"])
            pm.Deterministic(prob_name(col), p, dims=(row_dim(col), f"{col}_level"))
            delta = pt.stack([beta[terms.index(t)] if t else pt.zeros(()) for t in e["level_terms"]])
            discrete[col] = (pt.log(pt.maximum(p, 1e-300)), delta)
            continue
        v = mu[miss] + tau * pm.Normal(f"{col}_missing_z", 0.0, 1.0, dims=row_dim(col))
        continuous.append(pt.set_subtensor(pt.as_tensor(np.nan_to_num(obs))[miss], v))
        if kind == CONTINUOUS:
            pm.Deterministic(missing_name(col), e["centre"] + e["scale"] * v, dims=row_dim(col))
            eta = pt.inc_subtensor(eta[miss], beta[terms.index(e["term"])] * v)
        else:
            u = e["u_mean"] + e["u_sd"] * v
            raw = pt.expm1(pt.maximum(u, 0.0)) if e["transform"] == "log1p" else pt.maximum(u, 0.0)
            pm.Deterministic(missing_name(col), raw, dims=row_dim(col))
            act = recipe.activity
            if act["basis"] == "spline":
                B = spline_basis_pt(u, act)
                lin, w = activity_coef
                eta = pt.inc_subtensor(eta[miss], lin * B[:, 0] + pt.dot(B[:, 1:], w))
            else:
                eta = pt.inc_subtensor(eta[miss], pt.dot(hsgp_basis_pt(u, act), activity_coef))
    marginal = ME_PARAMETERIZATION == "marginal" and not discrete
    eta_pre, parts, eta_var = eta, [], None
    for m in L.recipe["measured"]:
        ex = m["exposure"]
        model.add_coord(true_dim(ex), design.ids)
        mu = _regression(ex, L.Z, continuous, group, n_groups)
        tau = pm.HalfNormal(f"{ex}_true_sd", 1.0)
        se = L.measured_se[ex]
        b = beta[terms.index(m["term"])]
        if marginal:  # x_true | x_obs ~ Normal(obs + c, s), integrated out of the outcome's likelihood
            obs, se_t = pt.as_tensor(L.measured_obs[ex]), pt.as_tensor(se)
            var = tau**2 + se_t**2
            pm.Potential(f"{ex}_observed", pm.logp(pm.Normal.dist(mu, pt.sqrt(var)), obs).sum())
            c, s = (mu - obs) * se_t**2 / var, tau * se_t / pt.sqrt(var)
            eta = eta + b * c
            eta_var = b**2 * s**2 if eta_var is None else eta_var + b**2 * s**2
            parts.append((ex, m["term"], c, s))
            continue
        if ME_PARAMETERIZATION in ("observation", "marginal"):
            z = pm.Normal(true_z_name(ex), 0.0, 1.0, dims=true_dim(ex))
            shift = pt.as_tensor(se) * z
            x_true = pt.as_tensor(L.measured_obs[ex]) + shift
            pm.Potential(f"{ex}_true_prior", pm.logp(pm.Normal.dist(mu, tau), x_true).sum())
        else:  # centred on the prior: x_true ~ Normal(mu, tau), x_obs ~ Normal(x_true, se) (kept to measure against)
            x_true = pm.Normal(f"{ex}_true", mu, tau, dims=true_dim(ex))
            pm.Normal(f"{ex}_measured", x_true, se, observed=L.measured_obs[ex])
            shift = x_true - pt.as_tensor(L.measured_obs[ex])
            pm.Deterministic(true_z_name(ex), shift / pt.as_tensor(np.maximum(se, 1e-12)), dims=true_dim(ex))
        eta = eta + b * shift
    if parts:
        model.measured_marginal = MeasuredMarginal(eta_pre, tuple(parts))
        eta = eta / pt.sqrt(1.0 + np.pi / 8.0 * eta_var)  # E[expit(eta + N(0, v))] ≈ expit(eta / sqrt(1 + pi v / 8))
    return eta, _mixtures(design, discrete)


@dataclass(frozen=True)
class MeasuredMarginal:
    """The graph of a model whose measurement-error exposures are integrated out (:data:`ME_PARAMETERIZATION`
    ``marginal``): the log-odds without them, and per exposure ``(exposure, term, c, s)``, the conditional
    ``x_true | x_obs ~ Normal(x_obs + c, s)`` given the parameters (per 2 SD of the true exposure)."""

    eta_pre: object
    parts: tuple


def draw_true_values(model, idata, design, seed: int, candidates: int = SIR_CANDIDATES) -> None:
    """Add ``<exposure>_true_z`` (float32, ``(true - observed) / se``) to the posterior of a ``marginal`` fit.

    For each draw, the true values of each row are drawn from their posterior given the row's outcome and that
    draw's parameters, by sampling-importance-resampling: ``candidates`` draws from the conditional
    ``Normal(x_obs + c, s)`` of every measured exposure, one kept with weight ``p(y | eta)``. The outcome moves a
    row's true value little (one Bernoulli outcome against its measurement), so the weights are nearly even.
    What the pointwise log-likelihood and g-computation need of these values is then as in a sampled fit.
    """
    mm = model.measured_marginal
    terms = design.recipe.terms
    outs = [mm.eta_pre, *(c for _, _, c, _ in mm.parts), *(s for _, _, _, s in mm.parts)]
    fn = model.compile_fn(outs=outs, inputs=model.free_RVs, on_unused_input="ignore", point_fn=True)
    post = idata.posterior
    names = [rv.name for rv in model.free_RVs]
    n_chain, n_draw, n, J = post.sizes["chain"], post.sizes["draw"], design.n, len(mm.parts)
    z = np.empty((J, n_chain, n_draw, n), dtype=np.float32)
    se = np.stack([design.latent.measured_se[ex] for ex, _, _, _ in mm.parts])
    rng = np.random.default_rng(seed)
    y = design.y.astype(float)
    cols = [terms.index(term) for _, term, _, _ in mm.parts]
    spread = np.empty((n_chain, n_draw))  # the largest SD over rows of the log-odds' measurement-error part
    for ci in range(n_chain):
        values = {k: post[k].isel(chain=ci).to_numpy() for k in names}
        for di in range(n_draw):
            res = fn({k: v[di] for k, v in values.items()})
            eta_pre, c, s = res[0], np.stack(res[1:1 + J]), np.stack(res[1 + J:])
            beta = values["beta"][di][cols]
            shift = c[None] + s[None] * rng.standard_normal((candidates, J, n))           # (K, J, n), per 2 SD
            spread[ci, di] = np.sqrt(((beta[:, None] * s) ** 2).sum(axis=0)).max()
            eta = eta_pre[None] + np.einsum("j,kjn->kn", beta, shift)
            logw = y * eta - np.logaddexp(0.0, eta) + rng.gumbel(size=eta.shape)        # Gumbel-max: one by weight
            pick = np.take_along_axis(shift, logw.argmax(axis=0)[None, None, :].repeat(J, axis=1), axis=0)[0]
            z[:, ci, di] = pick / np.maximum(se, 1e-12)
    _warn_loose_probit(spread, "measurement error leaves")
    for j, (ex, _, _, _) in enumerate(mm.parts):
        idata.posterior[true_z_name(ex)] = (("chain", "draw", true_dim(ex)), z[j])
        idata.posterior = idata.posterior.assign_coords({true_dim(ex): design.ids})


def _mixtures(design, discrete: dict) -> list:
    if not discrete:
        return []
    L = design.latent
    names = list(discrete)
    masks = np.zeros((design.n, len(names)), dtype=bool)
    for k, c in enumerate(names):
        masks[L.missing_rows[c], k] = True
    out = []  # combinations by reshaping, last column fastest: the order of itertools.product in latent.row_latents
    for pattern in sorted({tuple(r) for r in masks[masks.any(axis=1)]}):
        sel = np.flatnonzero((masks == np.array(pattern)).all(axis=1))
        cols = [c for c, hit in zip(names, pattern) if hit]
        logw, delta = None, None
        for c in cols:
            lw_c = discrete[c][0][np.searchsorted(L.missing_rows[c], sel)]
            d_c = discrete[c][1]
            if logw is None:
                logw, delta = lw_c, d_c
            else:
                logw = (logw[:, :, None] + lw_c[:, None, :]).reshape((len(sel), -1))
                delta = (delta[:, None] + d_c[None, :]).reshape((-1,))
        out.append((sel, logw, delta))
    return out


def mixture_logp(y: np.ndarray, eta, mixtures) -> list:
    """Per mixture, the log-likelihood of its rows: ``logsumexp_k(logw_k + log p(y | eta + delta_k))``; ``delta`` is (K,)
    for marginalised discrete values, (m, K) for quadrature nodes."""
    out = []
    for sel, logw, delta in mixtures:
        e = eta[sel][:, None] + (delta if delta.ndim == 2 else delta[None, :])
        out.append(pm.math.logsumexp(logw + pt.as_tensor(y[sel])[:, None] * e - pt.softplus(e), axis=1).sum())
    return out



def integrated(model) -> bool:
    """Whether ``model`` integrates its latent values out of the outcome's likelihood (the quadrature imputation or the
    marginal measurement-error form): its outcome's log-likelihood is then ``log p(y | observed values)``."""
    return getattr(model, "imputed_quadrature", None) is not None or getattr(model, "measured_marginal", None) is not None


def outcome_log_likelihood(model, posterior, outcome: str) -> np.ndarray:
    """The outcome's log-likelihood of every row at every draw of ``posterior`` (chains × draws, rows; float32), from
    the model's own graph: for an :func:`integrated` model the marginal ``log p(y_i | observed values of row i)``, the
    missing or true values integrated out as in the fit.

    PSIS-LOO leaves a row out whole; the likelihood at values drawn given the row's own outcome (the conditional
    form) counts that outcome twice, and its ``p_loo`` came out 42 % above the marginal's in a 2,000-row imputed fit
    (BENCHMARKS.md). Evaluated one draw at a time, so no draws × rows array of float64 is held.
    """
    plain = remove_value_transforms(model)
    fn = plain.compile_fn(inputs=plain.value_vars, outs=plain.logp(vars=[plain[outcome]], sum=False)[0],
                          on_unused_input="ignore")
    names = [rv.name for rv in plain.free_RVs]
    stacked = {k: posterior[k].values.reshape(-1, *posterior[k].shape[2:]) for k in names}
    n_draws = posterior.sizes["chain"] * posterior.sizes["draw"]
    out = None
    for i in range(n_draws):
        ll = np.asarray(fn({k: v[i] for k, v in stacked.items()}))
        if out is None:
            out = np.empty((n_draws, ll.size), dtype=np.float32)
        out[i] = ll
    return out
