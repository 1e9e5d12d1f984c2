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

A measurement-error exposure ``x`` is latent on the per-2-SD scale of the true exposure:
``x_true = x_obs + se * <x>_true_z`` with ``<x>_true_z ~ Normal(0, 1)`` (which is the measurement
model ``x_obs ~ Normal(x_true, se)``, parameterized around the observation so that the latent is of
unit scale whatever the SE), and ``x_true ~ Normal(a_x + Z g_x + u_x[site], tau_x)`` (a potential).

Only the missing rows carry parameters and in-graph bases; the data stay constants.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from .latent import ACTIVITY, BANDS, BINARY, CONTINUOUS, DISCRETE, band_cuts, missing_name, prob_name, row_dim, spline_pieces, \
    true_dim, true_z_name


#: How a measurement-error exposure's latent is parameterized: ``observation`` (``x_obs + se * z``, the default) or
#: ``centred`` (``x_true ~ Normal(mu, tau)``); BENCHMARKS.md compares them.
ME_PARAMETERIZATION = "observation"


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
    for m in L.recipe["measured"]:
        ex = m["exposure"]
        model.add_coord(true_dim(ex), design.ids)
        mu = _regression(ex, L.Z, continuous, group)
        tau = pm.HalfNormal(f"{ex}_true_sd", 1.0)
        se = L.measured_se[ex]
        if ME_PARAMETERIZATION == "observation":
            z = pm.Normal(true_z_name(ex), 0.0, 1.0, dims=true_dim(ex))
            shift = pt.as_tensor(se) * z
            x_true = pt.as_tensor(L.measured_obs[ex]) + shift
            pm.Potential(f"{ex}_true_prior", pm.logp(pm.Normal.dist(mu, tau), x_true).sum())
        else:  # centred on the prior: x_true ~ Normal(mu, tau), x_obs ~ Normal(x_true, se) (kept to measure against)
            x_true = pm.Normal(f"{ex}_true", mu, tau, dims=true_dim(ex))
            pm.Normal(f"{ex}_measured", x_true, se, observed=L.measured_obs[ex])
            shift = x_true - pt.as_tensor(L.measured_obs[ex])
            pm.Deterministic(true_z_name(ex), shift / pt.as_tensor(np.maximum(se, 1e-12)), dims=true_dim(ex))
        eta = eta + beta[terms.index(m["term"])] * shift
    return eta, _mixtures(design, discrete)


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

