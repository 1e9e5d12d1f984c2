"""The latent part of the PyMC model: imputation models, marginalised discrete covariates, measurement error.

Called by :func:`~backpain_epi.modelling.build.build_model` inside the model context; see
:mod:`~backpain_epi.modelling.latent` for the layout. Each imputed column ``c`` gets an imputation
model on the scale the design uses (per 2 SD for a numeric covariate, the standardized transformed
activity for the activity term, the logit for a binary one), conditional on the fully observed
columns of the design (exposures and covariates; the standardized transformed activity when it is
observed), the continuous columns imputed before it (the order of ``impute``) and a random
intercept per site:

- continuous: ``c ~ Normal(a_c + Z g_c + u_c[site], tau_c)``; the missing values are
  ``mu + tau * <c>_missing_z`` (non-centred: the outcome says little about one value);
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

Only the missing rows carry parameters and in-graph bases; the data stay constants.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from ..errors import BackpainEpiWarning
from .latent import ACTIVITY, BANDS, BINARY, CONTINUOUS, DISCRETE, band_cuts, missing_name, prob_name, row_dim, spline_pieces, \
    true_dim, true_z_name


#: How a measurement-error exposure's latent enters the sampler: ``marginal`` (the default: integrated out of the
#: likelihood, its values drawn after sampling by :func:`draw_true_values`; ``observation`` in a model that also
#: marginalises a discrete covariate), ``observation`` (sampled, ``x_obs + se * z``) or ``centred``
#: (sampled, ``x_true ~ Normal(mu, tau)``); BENCHMARKS.md compares them.
ME_PARAMETERIZATION = "marginal"
#: Candidates per row and draw of :func:`draw_true_values`.
SIR_CANDIDATES = 8
#: Above this SD of the log-odds' measurement-error part the probit approximation errs by more than 0.025 in log p.
PROBIT_SD_MAX = 0.3


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


def _regression(name: str, Z: np.ndarray, extra: list, group, link_scale: float = 1.0):
    """``a + Z g + (earlier imputed columns) h + u[site]``: the mean of an imputation model (standardized scale)."""
    a = pm.Normal(f"{name}_imp_intercept", 0.0, 2.5 * link_scale)
    g = pm.Normal(f"{name}_imp_coef", 0.0, 1.0 * link_scale, shape=Z.shape[1] + len(extra))
    mu = a + pt.dot(pt.as_tensor(Z), g[:Z.shape[1]])
    for k, v in enumerate(extra):
        mu = mu + v * g[Z.shape[1] + k]
    if group is not None:
        sd = pm.HalfNormal(f"{name}_imp_site_sd", 1.0)
        z = pm.Normal(f"{name}_imp_site_z", 0.0, 1.0, dims="group")
        mu = mu + (sd * z)[group]
    return mu


def add_latent(design, eta, beta, activity_coef, model):
    """Add the latent part to ``eta``; returns ``(eta, mixtures)`` with ``mixtures`` a list of ``(rows, logw, delta)``
    tensors: the log prior weights (m, K) and log-odds shifts (K,) of the combinations of marginalised values."""
    L = design.latent
    recipe = design.recipe
    terms = recipe.terms
    group = design.group
    continuous = []  # full-length standardized tensors of the continuous imputed columns, in order
    discrete = {}    # column -> (logw tensor (m_c, K_c), delta tensor (K_c,))
    for e in [e for e in L.recipe["imputed"] if e["kind"] in (CONTINUOUS, ACTIVITY)] + L.entries(DISCRETE):
        col, kind = e["column"], e["kind"]
        obs = L.observed[col]
        seen = np.flatnonzero(np.isfinite(obs))
        miss = L.missing_rows[col]
        model.add_coord(row_dim(col), design.ids[miss])
        if kind == BINARY:
            mu = _regression(col, L.Z, continuous, group)
            pm.Bernoulli(f"{col}_observed", logit_p=mu[seen], observed=obs[seen].astype(np.int64))
            logit = mu[miss]
            pm.Deterministic(prob_name(col), pm.math.sigmoid(logit), dims=row_dim(col))
            logw = pt.stack([-pt.softplus(logit), -pt.softplus(-logit)], axis=1)
            delta = pt.stack([pt.zeros(()), beta[terms.index(e["term"])]])
            discrete[col] = (logw, delta)
            continue
        mu = _regression(col, L.Z, continuous, group)
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
        mu = _regression(ex, L.Z, continuous, group)
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
    if np.median(spread) > PROBIT_SD_MAX:
        warnings.warn(f"{float(np.median(spread)):.2f}: the SD of the log-odds that measurement error leaves (largest over rows, "
                      f"posterior median) exceeds {PROBIT_SD_MAX}; the probit approximation of the likelihood errs by more than 0.025 "
                      "in log p there (0.06 at 0.5; BENCHMARKS.md): treat the intervals as approximate.", BackpainEpiWarning, stacklevel=3)
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
    """Per mixture, the log-likelihood of its rows: ``logsumexp_k(logw_k + log p(y | eta + delta_k))``."""
    out = []
    for sel, logw, delta in mixtures:
        e = eta[sel][:, None] + delta[None, :]
        out.append(pm.math.logsumexp(logw + pt.as_tensor(y[sel])[:, None] * e - pt.softplus(e), axis=1).sum())
    return out

