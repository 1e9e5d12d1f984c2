"""Results of a fit as data: the odds-ratio summary, the activity curve, predictions.

Pure functions of the posterior draws and the design recipe; nothing here
samples, draws or prints.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
from scipy import special

from ..cohort import add_activity_band
from ..derived import ACTIVITY_REFERENCE_MET
from ..dictionary import DataDictionary
from ..errors import BackpainEpiError
from .params import ACT_LIN, BETA, EXP_SMOOTH_SD, EXP_SMOOTH_W, GP_AMP, GP_LS, GP_Z, GROUP_SD, GROUP_Z, INTERCEPT, SMOOTH_SD, SMOOTH_W
from .design import ACTIVITY_GRID, DesignRecipe
from .spec import term_variables

SUMMARY_COLUMNS = ["term", "kind", "label", "per", "or_mean", "or_median", "or_lo95", "or_hi95", "log_or_mean", "log_or_sd",
                   "p_or_gt_1", "r_hat", "ess_bulk", "ess_tail"]


def draws(idata: az.InferenceData, name: str) -> np.ndarray:
    """Posterior draws of ``name``, chains stacked: shape (samples, ...)."""
    da = idata.posterior[name]
    return da.stack(sample=("chain", "draw")).transpose("sample", ...).to_numpy()


def scale_parameters(recipe: DesignRecipe) -> list[str]:
    """Names of the model's scale parameters (checked by the gate alongside the terms)."""
    names = [GROUP_SD] if recipe.group_levels is not None else []
    if recipe.activity:
        names += [SMOOTH_SD, ACT_LIN] if recipe.activity["basis"] == "spline" else [GP_AMP, GP_LS]
    if recipe.exposure_splines:
        names.append(EXP_SMOOTH_SD)
    return names



def describe_term(term: str, recipe, dictionary: DataDictionary) -> tuple[str, str, str]:
    """``(kind, label, per)`` of a design term: ``exposure``/``covariate``/``activity``, its dictionary label
    (``Sex: male`` for a level, ``Age × Sex: male`` for an interaction), and what a coefficient compares
    (``2 SD = 41.3 mL``, ``vs female``, ``yes vs no``; ``2 SD = 25.1 years; male vs female`` for an interaction)."""
    spec = recipe.spec
    parts = [_split_level(p) for p in _split_top(term, ":")]
    pers, labels, columns = [], [], []
    for code, level in parts:
        c = dictionary[code] if code in dictionary else None
        columns += [code] if c else term_variables(code)
        labels.append((c.label if c else code) + (f": {level}" if level is not None else ""))
        if code in recipe.scaling:
            pers.append(f"2 SD = {recipe.scaling[code][1]:.3g}{' ' + c.unit if c and c.unit else ''}"
                        + ("; linear part of a spline" if code in recipe.exposure_splines and len(parts) == 1 else ""))
        elif level is not None:
            ref = _reference(code, recipe)
            pers.append((f"{level} vs {ref}" if len(parts) > 1 else f"vs {ref}") if ref is not None else f"in {level}")
        else:
            pers.append("yes vs no")
    kind = ("exposure" if set(columns) & set(spec.exposures)
            else "activity" if spec.activity and spec.activity.variable in columns else "covariate")
    return kind, " × ".join(labels), "; ".join(pers)


def _split_top(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside brackets and quotes (``C(sex, Treatment('a:b')):age`` in two)."""
    out, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == sep and depth == 0:
            out.append(text[start:i])
            start = i + 1
    return out + [text[start:]]


def _split_level(factor: str) -> tuple[str, str | None]:
    """``sex[male]`` as ``("sex", "male")``; ``age`` as ``("age", None)``."""
    if factor.endswith("]"):
        depth = 0
        for i in range(len(factor) - 1, -1, -1):
            depth += {"]": 1, "[": -1}.get(factor[i], 0)
            if depth == 0:
                return factor[:i], factor[i + 1:-1]
    return factor, None


def _reference(code: str, recipe) -> str | None:
    """The level of a categorical factor that no term names: its reference (``None`` when every level has a column)."""
    levels = recipe.levels.get(code) or recipe.categories.get(code) or []
    seen = {level for t in recipe.terms for c, level in map(_split_level, _split_top(t, ":")) if c == code}
    unseen = [str(lv) for lv in levels if str(lv) not in seen]
    return unseen[0] if unseen else None


def odds_ratio_summary(idata: az.InferenceData, recipe: DesignRecipe, dictionary: DataDictionary) -> pd.DataFrame:
    """One row per reported term: odds ratio (mean, median, 95% equal-tailed interval), log OR, P(OR > 1), R-hat, ESS.

    ``per`` says what the odds ratio compares: ``2 SD = 41.3 ml`` for a numeric
    term, ``vs female`` for a level of a categorical one, ``yes vs no`` for a binary one.
    """
    beta = draws(idata, BETA)
    diag = az.summary(idata, var_names=[BETA], kind="diagnostics")
    rows = []
    for j, term in enumerate(recipe.terms):
        b = beta[:, j]
        odds = np.exp(b)
        kind, label, per = describe_term(term, recipe, dictionary)
        d = diag.loc[f"{BETA}[{term}]"]
        rows.append({
            "term": term, "kind": kind, "label": label, "per": per,
            "or_mean": odds.mean(), "or_median": np.median(odds),
            "or_lo95": np.quantile(odds, 0.025), "or_hi95": np.quantile(odds, 0.975),
            "log_or_mean": b.mean(), "log_or_sd": b.std(ddof=1), "p_or_gt_1": (b > 0).mean(),
            "r_hat": d["r_hat"], "ess_bulk": d["ess_bulk"], "ess_tail": d["ess_tail"],
        })
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def activity_log_or_draws(idata: az.InferenceData, recipe: DesignRecipe, met: np.ndarray,
                          reference: float = ACTIVITY_REFERENCE_MET) -> np.ndarray:
    """Draws of the activity log odds ratio at ``met`` against ``reference``: shape (samples, len(met))."""
    spec = recipe.spec
    if spec.activity is None:
        raise ValueError(f"model '{spec.name}' has no activity term")
    if spec.activity.basis == "bands":
        bands = add_activity_band(pd.DataFrame({"met_min_week": np.append(met, reference)}))["activity_band"].astype(str)
        levels = recipe.levels[spec.activity.variable]
        beta = draws(idata, BETA)
        cols = [recipe.terms.index(f"{spec.activity.variable}[{lv}]") if lv != levels[0] else None for lv in bands]
        lo = np.column_stack([beta[:, j] if j is not None else np.zeros(len(beta)) for j in cols])
        return lo[:, :-1] - lo[:, -1:]
    basis = recipe.activity_curve_basis(met, reference)
    if recipe.activity["basis"] == "spline":
        coef = np.column_stack([draws(idata, ACT_LIN), draws(idata, SMOOTH_W)])
    else:
        coef = draws(idata, GP_Z) * _hsgp_sqrt_psd(idata, recipe)
    return coef @ basis.T


def activity_curve(idata: az.InferenceData, recipe: DesignRecipe, met: np.ndarray = ACTIVITY_GRID,
                   reference: float = ACTIVITY_REFERENCE_MET) -> pd.DataFrame:
    """Odds ratio of the activity term at each of ``met`` against ``reference`` MET-min/week: mean and 95% interval."""
    lo = activity_log_or_draws(idata, recipe, met, reference)
    odds = np.exp(lo)
    return pd.DataFrame({
        "met_min_week": met, "reference_met": reference,
        "or_mean": odds.mean(axis=0), "or_median": np.median(odds, axis=0),
        "or_lo95": np.quantile(odds, 0.025, axis=0), "or_hi95": np.quantile(odds, 0.975, axis=0),
        "log_or_mean": lo.mean(axis=0), "log_or_sd": lo.std(axis=0, ddof=1),
    })


def exposure_curve(idata: az.InferenceData, recipe: DesignRecipe, exposure: str) -> pd.DataFrame:
    """Odds ratio of a spline exposure on its grid (2nd–98th percentile) against its median: median and 95% interval."""
    r = recipe.exposure_splines[exposure]
    x = np.asarray(r["grid"], dtype=float)
    lin, wiggly = recipe.exposure_curve_basis(exposure, x, r["median"])
    i = list(recipe.exposure_splines).index(exposure)
    cols = np.flatnonzero(recipe.smooth_index() == i)
    lo = draws(idata, BETA)[:, recipe.terms.index(exposure), None] * lin + draws(idata, EXP_SMOOTH_W)[:, cols] @ wiggly.T
    odds = np.exp(lo)
    return pd.DataFrame({
        "term": exposure, "x": x, "reference": r["median"], "or_median": np.median(odds, axis=0),
        "or_lo95": np.quantile(odds, 0.025, axis=0), "or_hi95": np.quantile(odds, 0.975, axis=0),
        "log_or_mean": lo.mean(axis=0), "log_or_sd": lo.std(axis=0, ddof=1),
    })


def exposure_curves(idata: az.InferenceData, recipe: DesignRecipe) -> pd.DataFrame | None:
    """:func:`exposure_curve` of every spline exposure, stacked; ``None`` without one."""
    if not recipe.exposure_splines:
        return None
    return pd.concat([exposure_curve(idata, recipe, e) for e in recipe.exposure_splines], ignore_index=True)


def linear_predictor_draws(idata: az.InferenceData, recipe: DesignRecipe, df: pd.DataFrame, *, seed: int = 0,
                           max_draws: int | None = None) -> np.ndarray:
    """Draws of the log-odds of each row of ``df`` (complete in the model's columns): shape (samples, rows).

    An exposure measured with error is taken at its measured value. A row whose group was in the fit gets that group's intercept; a row of a
    group not seen in the fit (a new study site) gets a new intercept drawn from
    the fitted group distribution, so its interval carries that uncertainty.
    """
    for e in (recipe.latent or {}).get("imputed", ()):
        if e["column"] in df and df[e["column"]].isna().any():
            raise BackpainEpiError(f"model '{recipe.spec.name}': {int(df[e['column']].isna().sum()):,} row(s) miss '{e['column']}'; "
                                   "the model imputes missing values of the participants it was fit on only (used by its "
                                   "g-computation); give complete values to predict.")
    X, A, group = recipe.transform(df)
    return eta_from_arrays(idata, recipe, X, A, group, seed=seed, max_draws=max_draws, S=recipe.smooth_columns(df))


def eta_from_arrays(idata: az.InferenceData, recipe: DesignRecipe, X: np.ndarray, A: np.ndarray | None, group: np.ndarray | None,
                    *, seed: int = 0, max_draws: int | None = None, S: np.ndarray | None = None) -> np.ndarray:
    """Log-odds draws from design arrays (see :func:`linear_predictor_draws`); group -1 is a new group.

    ``S`` holds the penalized columns of the spline exposures (:meth:`DesignRecipe.smooth_columns`), needed when the recipe has any.
    For many calls on the same posterior (rows in chunks), build one :class:`LinearPredictor` instead.
    """
    return LinearPredictor(idata, recipe, max_draws).eta(X, A, group, S=S, seed=seed)


class LinearPredictor:
    """The posterior draws of the linear predictor's parameters, taken (and thinned to ``max_draws``) once.

    :meth:`eta` gives the log-odds draws of rows given as design arrays; code that goes
    through a cohort in row chunks builds one of these rather than reading the draws from
    the posterior again for every chunk.
    """

    def __init__(self, idata: az.InferenceData, recipe: DesignRecipe, max_draws: int | None = None):
        self.recipe = recipe
        self.take = _thin(idata, max_draws)
        take = self.take
        self.intercept = draws(idata, INTERCEPT)[take, None]
        self.beta = draws(idata, BETA)[take]
        self.exposure_w = draws(idata, EXP_SMOOTH_W)[take] if recipe.exposure_splines else None
        self.activity_linear = self.activity_w = None
        if recipe.activity is not None:
            if recipe.activity["basis"] == "spline":
                self.activity_linear, self.activity_w = draws(idata, ACT_LIN)[take, None], draws(idata, SMOOTH_W)[take]
            else:
                self.activity_w = (draws(idata, GP_Z) * _hsgp_sqrt_psd(idata, recipe))[take]
        self.group_sd = self.group_u = None
        if recipe.group_levels is not None:
            self.group_sd = draws(idata, GROUP_SD)[take]
            self.group_u = draws(idata, GROUP_Z)[take] * self.group_sd[:, None]

    def __len__(self) -> int:
        return len(self.take)

    def eta(self, X: np.ndarray, A: np.ndarray | None, group: np.ndarray | None, *, S: np.ndarray | None = None,
            seed: int = 0) -> np.ndarray:
        """Log-odds draws (draws, rows); ``group`` ``None`` leaves the group intercepts out, -1 draws a new group's."""
        recipe = self.recipe
        eta = self.intercept + self.beta @ X.T
        if self.exposure_w is not None:
            if S is None:
                raise ValueError("the model has spline exposures: pass their columns (recipe.smooth_columns) as S")
            eta += self.exposure_w @ S.T
        if recipe.activity is not None:
            if self.activity_linear is not None:
                eta += self.activity_linear * A[:, 0] + self.activity_w @ A[:, 1:].T
            else:
                eta += self.activity_w @ A.T
        if group is not None:
            u = self.group_u
            if (group < 0).any():
                new = np.random.default_rng(seed).standard_normal(len(u)) * self.group_sd
                eta += np.where(group >= 0, u[:, np.maximum(group, 0)], new[:, None])
            else:
                eta += u[:, group]
        return eta


def predict(idata: az.InferenceData, recipe: DesignRecipe, df: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """Predicted probability of the outcome for each row of ``df``: mean and 95% interval, and whether its group is new."""
    p = special.expit(linear_predictor_draws(idata, recipe, df, seed=seed))
    out = pd.DataFrame({"p_mean": p.mean(axis=0), "p_lo95": np.quantile(p, 0.025, axis=0), "p_hi95": np.quantile(p, 0.975, axis=0)},
                       index=df.index)
    if recipe.group_levels is not None:
        out["new_group"] = ~df[recipe.spec.group].astype(str).isin(recipe.group_levels).to_numpy()
    return out


def _hsgp_sqrt_psd(idata: az.InferenceData, recipe: DesignRecipe) -> np.ndarray:
    """Square root of the squared-exponential spectral density at the HSGP frequencies, per draw (as pm.gp.HSGP)."""
    act = recipe.activity
    omega = np.arange(1, act["m"] + 1) * np.pi / (2 * act["L"])
    amp, ls = draws(idata, GP_AMP)[:, None], draws(idata, GP_LS)[:, None]
    return np.sqrt(amp**2 * np.sqrt(2 * np.pi) * ls * np.exp(-0.5 * (ls * omega) ** 2))


def _thin(idata: az.InferenceData, max_draws: int | None) -> np.ndarray:
    n = idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]
    if max_draws is None or max_draws >= n:
        return np.arange(n)
    return np.linspace(0, n - 1, max_draws).round().astype(int)
