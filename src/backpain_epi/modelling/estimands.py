"""What a paper reports beyond the odds ratio: absolute risks by g-computation, E-values, effects by stratum.

Pure functions of the posterior draws, the design recipe and the analysed rows; nothing here samples.

**Absolute risk (marginal standardisation, "g-computation").** For each exposure and each
posterior draw, the exposure is set to its mean − 1 SD for every analysed participant, all
other columns kept as observed, and the predicted risks are averaged; then the same at the
mean + 1 SD (a 2 SD contrast, the contrast of the odds ratios). The two averages give the
risk difference (per 1,000) and the risk ratio of that draw; medians and 95% equal-tailed
limits over the draws are reported. Two settings:

- **observed sites**: each participant keeps the intercept of their own study site;
- **a new site**: the site intercept is integrated out, per draw, over the fitted site
  distribution Normal(0, group_sd) by Gauss–Hermite quadrature (:data:`GH_NODES` nodes), which is
  the risk in a study site that was not in the data.

Rows are processed in chunks (:data:`CHUNK_CELLS` draws × rows at a time), so 300,000 rows
need the memory of a chunk, not of draws × rows.

**E-values** (VanderWeele & Ding, Ann Intern Med 2017) are computed from the g-computed
risk ratio, not from the odds ratio: ``RR + sqrt(RR × (RR − 1))`` for RR ≥ 1 (and of 1/RR
below 1), and for the interval limit nearest 1 (1 when the interval contains 1). An E-value
is the minimum strength of association, on the risk-ratio scale, that an unmeasured
confounder would need with both the exposure and the outcome to explain the estimate away.

**Effect modification** (a spec's ``effect_modifiers``): the stratum-specific odds ratios,
their ratio, the relative excess risk due to interaction (RERI, interaction on the additive
scale: OR11 − OR10 − OR01 + 1 with 2 SD of the exposure and the modifier's level against the
reference) and the stratum-specific risk differences by g-computation within the stratum.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import arviz as az
import numpy as np
import pandas as pd

from ..errors import BackpainEpiError
from .design import DesignRecipe
from .params import BETA
from .imputed import posterior_weights, risks, row_latents
from .results import LinearPredictor, _split_level, _split_top, draws

#: Gauss–Hermite nodes of the integral over a new site's intercept.
GH_NODES = 5
#: Posterior draws used at most (evenly thinned); medians and 95% limits are stable well below this.
G_DRAWS = 1000
#: Draws × rows of float64 held at once (about 32 MB per array).
CHUNK_CELLS = 4_000_000

ABSOLUTE_RISK_FILE = "absolute_risk.csv"
EFFECT_MODIFICATION_FILE = "effect_modification.csv"
ABSOLUTE_RISK_COLUMNS = [
    "term", "low_value", "high_value", "n",
    "risk_low", "risk_low_lo95", "risk_low_hi95", "risk_high", "risk_high_lo95", "risk_high_hi95",
    "rd_per_1000", "rd_lo95", "rd_hi95", "p_rd_gt_0", "rr", "rr_lo95", "rr_hi95",
    "nnt", "nnt_lo95", "nnt_hi95", "nnt_kind", "e_value", "e_value_ci",
    "new_site_risk_low", "new_site_risk_high", "new_site_rd_per_1000", "new_site_rd_lo95", "new_site_rd_hi95",
    "new_site_rr", "new_site_rr_lo95", "new_site_rr_hi95", "draws",
]


# --------------------------------------------------------------------------- E-values


def e_value(rr) -> np.ndarray | float:
    """E-value of a risk ratio (VanderWeele & Ding 2017): ``RR + sqrt(RR (RR - 1))``, of ``1/RR`` when RR < 1.

    >>> round(float(e_value(3.9)), 2)
    7.26
    """
    rr = np.asarray(rr, dtype=float)
    if np.any(~np.isfinite(rr)) or np.any(rr <= 0):
        raise BackpainEpiError(f"an E-value needs a positive, finite risk ratio, got {rr}.")
    r = np.where(rr < 1, 1 / rr, rr)
    out = r + np.sqrt(r * (r - 1))
    return float(out) if out.ndim == 0 else out


def e_value_interval(lo: float, hi: float) -> float:
    """E-value of the interval limit nearest 1; 1 when the interval ``[lo, hi]`` contains 1."""
    if lo <= 1 <= hi:
        return 1.0
    return float(e_value(lo if lo > 1 else hi))


# --------------------------------------------------------------------------- g-computation


def marginal_risk_draws(idata: az.InferenceData, recipe: DesignRecipe, rows: pd.DataFrame,
                        setting: dict[str, float] | None = None, *, new_site: bool = False,
                        max_draws: int = G_DRAWS) -> np.ndarray:
    """Per posterior draw, the mean predicted risk over ``rows`` with the columns of ``setting`` set to its values.

    ``new_site``: integrate each row's site intercept over Normal(0, group_sd) instead of using its own site's.
    Returns shape (draws,), the draws thinned evenly to ``max_draws``.
    """
    lp = LinearPredictor(idata, recipe, max_draws)
    take, n_draws = lp.take, len(lp)
    grouped = recipe.group_levels is not None
    if grouped:
        sd, u = lp.group_sd, lp.group_u
        nodes, weights = np.polynomial.hermite_e.hermegauss(GH_NODES)  # probabilists': ∫ f(x) φ(x) dx ≈ Σ w f(x) / √(2π)
        weights = weights / weights.sum()
    chunk = max(1, CHUNK_CELLS // (n_draws * (GH_NODES if new_site and grouped else 1)))
    # the design arrays of all rows at once (patsy per chunk costs more than the arithmetic); the observed ones
    # only where marginalised covariates need each row's posterior weights
    counterfactual = rows.assign(**setting) if setting else rows
    X, A, group = recipe.transform(counterfactual)
    S = recipe.smooth_columns(counterfactual)
    observed = None
    total = np.zeros(n_draws)
    for start in range(0, len(rows), chunk):
        s = slice(start, start + chunk)
        part = rows.iloc[s]
        lat, post_w = None, None
        if recipe.latent:  # imputed and true values: this draw's; marginalised ones weighted by their posterior probability
            lat = row_latents(idata, recipe, part, take, fixed=tuple(setting or ()))
            if lat.mixtures:
                if observed is None:
                    observed = (*recipe.transform(rows)[:2], recipe.smooth_columns(rows))
                X0, A0, S0 = observed
                eta0 = lp.eta(X0[s], None if A0 is None else A0[s], None if group is None else group[s],
                              S=None if S0 is None else S0[s])
                post_w = posterior_weights(part[recipe.spec.outcome].astype(int).to_numpy(), eta0, lat)
        eta = lp.eta(X[s], None if A is None else A[s], None, S=None if S is None else S[s])
        if not grouped:
            total += risks(eta, lat, post_w).sum(axis=1)
        elif new_site:
            for x, w in zip(nodes, weights):
                total += w * risks(eta + (x * sd)[:, None], lat, post_w).sum(axis=1)
        else:
            if (group[s] < 0).any():
                raise BackpainEpiError("g-computation over the observed sites needs rows of the fitted sites only.")
            total += risks(eta + u[:, group[s]], lat, post_w).sum(axis=1)
    return total / len(rows)


def exposure_contrast(rows: pd.DataFrame, exposure: str, recipe: DesignRecipe | None = None) -> tuple[float, float]:
    """The exposure's mean − 1 SD and mean + 1 SD over ``rows`` (SD with ddof 1): the 2 SD contrast of the odds ratios.

    For an exposure measured with error (``recipe``'s ``measurement_error``) the SD is that of the true exposure,
    ``sqrt(var(observed) − mean(se²))``, the SD its odds ratio is per.
    """
    x = pd.to_numeric(rows[exposure], errors="coerce").dropna().to_numpy(dtype=float)
    if len(x) < 2 or np.std(x) == 0:
        raise BackpainEpiError(f"exposure '{exposure}' has no variation in the analysed rows; no 2 SD contrast.")
    mean, sd = x.mean(), x.std(ddof=1)
    if recipe is not None and recipe.latent:
        for m in recipe.latent.get("measured", ()):
            if m["exposure"] == exposure:
                se = pd.to_numeric(rows[m["se"]], errors="coerce").to_numpy(dtype=float)
                sd = float(np.sqrt(max(x.var(ddof=1) - np.nanmean(se**2), 0.0)))
    return float(mean - sd), float(mean + sd)


def _limits(x: np.ndarray) -> tuple[float, float, float]:
    return float(np.median(x)), float(np.quantile(x, 0.025)), float(np.quantile(x, 0.975))


def contrast_summary(low: np.ndarray, high: np.ndarray) -> dict:
    """Medians and 95% limits of the two risks, the risk difference per 1,000 and the risk ratio; NNT/NNH and E-values.

    The number needed to treat (harm) is 1,000 / |RD per 1,000| and is given only when the RD
    interval excludes 0: ``nnt_kind`` is ``"NNH"`` when the higher exposure raises the risk
    (participants at +1 SD instead of −1 SD per extra case), ``"NNT"`` when it lowers it.
    """
    rd, rr = 1000 * (high - low), high / low
    out = {}
    for name, values in (("risk_low", low), ("risk_high", high)):
        out[name], out[f"{name}_lo95"], out[f"{name}_hi95"] = _limits(values)
    out["rd_per_1000"], out["rd_lo95"], out["rd_hi95"] = _limits(rd)
    out["p_rd_gt_0"] = float((rd > 0).mean())
    out["rr"], out["rr_lo95"], out["rr_hi95"] = _limits(rr)
    excludes = out["rd_lo95"] > 0 or out["rd_hi95"] < 0
    if excludes:
        near, far = sorted((abs(out["rd_lo95"]), abs(out["rd_hi95"])))
        out |= {"nnt": 1000 / abs(out["rd_per_1000"]), "nnt_lo95": 1000 / far, "nnt_hi95": 1000 / near,
                "nnt_kind": "NNH" if out["rd_per_1000"] > 0 else "NNT"}
    else:
        out |= {"nnt": np.nan, "nnt_lo95": np.nan, "nnt_hi95": np.nan, "nnt_kind": ""}
    out["e_value"] = float(e_value(out["rr"]))
    out["e_value_ci"] = e_value_interval(out["rr_lo95"], out["rr_hi95"])
    return out


def absolute_risks(idata: az.InferenceData, recipe: DesignRecipe, rows: pd.DataFrame, *,
                   exposures: Sequence[str] | None = None, max_draws: int = G_DRAWS,
                   progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Absolute risks at each exposure's mean ± 1 SD, standardised over ``rows`` (the analysed participants).

    One row per exposure (columns :data:`ABSOLUTE_RISK_COLUMNS`): the risks, the RD per 1,000 and
    the RR for the observed sites (posterior medians, 95% equal-tailed limits), NNT/NNH where the RD
    interval excludes 0, the E-values of the RR, and the same risks, RD and RR for a new site
    (``new_site_*``; equal to the observed ones in a model without a site intercept).
    """
    exposures = list(exposures if exposures is not None else recipe.spec.exposures)
    out = []
    for e in exposures:
        if progress:
            progress(e)
        lo_value, hi_value = exposure_contrast(rows, e, recipe)
        low = marginal_risk_draws(idata, recipe, rows, {e: lo_value}, max_draws=max_draws)
        high = marginal_risk_draws(idata, recipe, rows, {e: hi_value}, max_draws=max_draws)
        row = {"term": e, "low_value": lo_value, "high_value": hi_value, "n": len(rows), **contrast_summary(low, high)}
        if recipe.group_levels is not None:
            low = marginal_risk_draws(idata, recipe, rows, {e: lo_value}, new_site=True, max_draws=max_draws)
            high = marginal_risk_draws(idata, recipe, rows, {e: hi_value}, new_site=True, max_draws=max_draws)
        new = contrast_summary(low, high)
        row |= {"new_site_risk_low": new["risk_low"], "new_site_risk_high": new["risk_high"],
                "new_site_rd_per_1000": new["rd_per_1000"], "new_site_rd_lo95": new["rd_lo95"], "new_site_rd_hi95": new["rd_hi95"],
                "new_site_rr": new["rr"], "new_site_rr_lo95": new["rr_lo95"], "new_site_rr_hi95": new["rr_hi95"],
                "draws": len(low)}
        out.append(row)
    return pd.DataFrame(out, columns=ABSOLUTE_RISK_COLUMNS)


# --------------------------------------------------------------------------- effect modification

EFFECT_MODIFICATION_COLUMNS = [
    "term", "modifier", "level", "reference", "n", "or", "or_lo95", "or_hi95", "ratio_of_ors", "ratio_lo95", "ratio_hi95",
    "p_ratio_gt_1", "reri", "reri_lo95", "reri_hi95", "rd_per_1000", "rd_lo95", "rd_hi95", "rr", "rr_lo95", "rr_hi95",
]


def _modifier_levels(recipe: DesignRecipe, modifier: str) -> list[str]:
    levels = recipe.levels.get(modifier) or recipe.categories.get(modifier)
    return [str(v) for v in levels] if levels else ["0", "1"]


def _term_index(recipe: DesignRecipe, exposure: str, modifier: str, level: str) -> int | None:
    """Column of the exposure × modifier-level interaction (``intermat_ml:sex[male]``, ``intermat_ml:diabetes``)."""
    for j, term in enumerate(recipe.terms):
        parts = [_split_level(p) for p in _split_top(term, ":")]
        if len(parts) != 2:
            continue
        codes = {c: lv for c, lv in parts}
        if exposure in codes and modifier in codes and codes[exposure] is None and (codes[modifier] in (level, None)):
            if codes[modifier] is None and level in ("0", "False"):
                continue
            return j
    return None


def _main_index(recipe: DesignRecipe, modifier: str, level: str) -> int | None:
    for name in (f"{modifier}[{level}]", modifier if level not in ("0", "False") else None):
        if name is not None and name in recipe.terms:
            return recipe.terms.index(name)
    return None


def effect_modification(idata: az.InferenceData, recipe: DesignRecipe, rows: pd.DataFrame, *,
                        max_draws: int = G_DRAWS) -> pd.DataFrame:
    """Per exposure, modifier and level: the stratum's OR per 2 SD, the ratio of ORs against the reference level, RERI,
    and the stratum's RD per 1,000 and RR by g-computation within the stratum (observed sites); empty without modifiers."""
    spec = recipe.spec
    beta = draws(idata, BETA)
    out = []
    for modifier in spec.effect_modifiers:
        levels = _modifier_levels(recipe, modifier)
        reference = levels[0]
        values = rows[modifier].astype(str) if modifier in recipe.levels or modifier in recipe.categories else \
            rows[modifier].astype(int).astype(str)
        for e in spec.exposures:
            if e not in recipe.terms:
                continue  # a spline exposure has no single OR; its curve is by stratum elsewhere
            b_e = beta[:, recipe.terms.index(e)]
            lo_value, hi_value = exposure_contrast(rows, e, recipe)
            for level in levels:
                j = _term_index(recipe, e, modifier, level) if level != reference else None
                b_int = beta[:, j] if j is not None else np.zeros(len(beta))
                m = _main_index(recipe, modifier, level) if level != reference else None
                b_mod = beta[:, m] if m is not None else np.zeros(len(beta))
                stratum = rows[(values == level).to_numpy()]
                row = {"term": e, "modifier": modifier, "level": level, "reference": reference, "n": len(stratum)}
                row["or"], row["or_lo95"], row["or_hi95"] = _limits(np.exp(b_e + b_int))
                if level == reference:
                    row |= {k: np.nan for k in ("ratio_of_ors", "ratio_lo95", "ratio_hi95", "p_ratio_gt_1", "reri", "reri_lo95", "reri_hi95")}
                else:
                    row["ratio_of_ors"], row["ratio_lo95"], row["ratio_hi95"] = _limits(np.exp(b_int))
                    row["p_ratio_gt_1"] = float((b_int > 0).mean())
                    reri = np.exp(b_e + b_mod + b_int) - np.exp(b_e) - np.exp(b_mod) + 1
                    row["reri"], row["reri_lo95"], row["reri_hi95"] = _limits(reri)
                if len(stratum) >= 2:
                    low = marginal_risk_draws(idata, recipe, stratum, {e: lo_value}, max_draws=max_draws)
                    high = marginal_risk_draws(idata, recipe, stratum, {e: hi_value}, max_draws=max_draws)
                    s = contrast_summary(low, high)
                    row |= {k: s[k] for k in ("rd_per_1000", "rd_lo95", "rd_hi95", "rr", "rr_lo95", "rr_hi95")}
                out.append(row)
    return pd.DataFrame(out, columns=EFFECT_MODIFICATION_COLUMNS)
