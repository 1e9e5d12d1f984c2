"""Values the model treats as unknown: imputed covariates and exposures measured with error (the numpy side).

A spec's ``impute`` keeps rows that miss only imputed covariates; ``measurement_error`` makes an exposure
latent. :func:`learn_latent` (called by :func:`~backpain_epi.modelling.design.make_design`) records, per
column, how it enters the design, in a JSON-ready ``DesignRecipe.latent``; :class:`Latents` holds the
arrays the PyMC model needs (:mod:`.build_latent`); :mod:`.imputed` turns posterior draws back into
the log-odds of analysed rows, for the pointwise log-likelihood (LOO) and for g-computation:

- a **continuous** covariate (``bmi``) enters per 2 SD of its observed values; its missing values are
  integrated out of the likelihood (or, beside a discrete or measurement-error column, parameters; see
  :mod:`.build_latent`), and stored on the raw scale as ``<column>_missing`` (dims ``<column>_missing_row``, the ids);
- the **activity** variable of a ``spline`` or ``hsgp`` term is imputed on the transformed scale
  (log1p MET) and its basis evaluated at the imputed value (:func:`spline_pieces`: the cubic
  regression spline as one cubic polynomial per knot interval, exact to rounding);
- a **binary** covariate and the **band** of a missing activity (``basis: bands``) are discrete: they
  are marginalised, a mixture over their values weighted by the imputation model's probabilities
  (``<column>_p_missing``). The pointwise log-likelihood is the log of that mixture; g-computation
  weights each value by its posterior probability given the row's outcome;
- an exposure with **measurement error** enters as its latent true value per 2 SD of the true
  exposure, ``true = observed + se * <exposure>_true_z`` (on the per-2-SD scale).

Nothing here imports PyMC.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..derived import ACTIVITY_BAND_EDGES
from ..errors import BackpainEpiError
from .basis import _activity_basis_u
from .spec import term_variables

CONTINUOUS, ACTIVITY, BINARY, BANDS = "continuous", "activity", "binary", "bands"
DISCRETE = (BINARY, BANDS)


def missing_name(column: str) -> str:
    """Posterior variable of a continuous column's imputed values (raw scale)."""
    return f"{column}_missing"


def prob_name(column: str) -> str:
    """Posterior variable of a discrete column's imputation probabilities."""
    return f"{column}_p_missing"


def row_dim(column: str) -> str:
    return f"{column}_missing_row"


def true_z_name(exposure: str) -> str:
    """Free parameter of a measurement-error exposure: ``(true - observed) / se`` per row."""
    return f"{exposure}_true_z"


def true_dim(exposure: str) -> str:
    return f"{exposure}_row"


@dataclass
class Latents:
    """Arrays of the latent part of a design (see the module notes); row indices are into the analysed rows."""

    recipe: dict
    missing_rows: dict[str, np.ndarray]          # column -> analysed-row indices of its missing values
    observed: dict[str, np.ndarray]              # column -> standardized values (nan where missing), for its imputation model
    Z: np.ndarray                                # predictors of the imputation models (fully observed columns)
    z_names: list[str]
    measured_obs: dict[str, np.ndarray] = field(default_factory=dict)   # exposure -> observed, per 2 SD of the true exposure
    measured_se: dict[str, np.ndarray] = field(default_factory=dict)    # exposure -> SE on the same scale

    def entries(self, kind: str | tuple[str, ...]) -> list[dict]:
        kinds = (kind,) if isinstance(kind, str) else kind
        return [e for e in self.recipe["imputed"] if e["kind"] in kinds]


# --------------------------------------------------------------------------- the spline as piecewise cubics


def spline_pieces(activity: dict) -> tuple[np.ndarray, np.ndarray]:
    """The activity spline of a design recipe as one cubic per knot interval.

    Returns ``(left, coef)``: ``left`` the left knot of each interval, ``coef`` of shape
    (intervals, 4, columns) with the basis at ``u`` in interval ``j`` equal to
    ``sum_p (u - left[j])**p * coef[j, p]`` (centred and transformed as the design's columns).
    Found by solving each interval's cubic from four points of the numpy/patsy basis.
    """
    knots = np.concatenate([[activity["lower"]], activity["inner_knots"], [activity["upper"]]])
    pieces = []
    for a, b in zip(knots[:-1], knots[1:]):
        t = a + (b - a) * (0.5 - 0.5 * np.cos(np.pi * (np.arange(4) + 0.5) / 4))  # Chebyshev points in (a, b)
        V = np.vander(t - a, 4, increasing=True)
        pieces.append(np.linalg.solve(V, _activity_basis_u(t, activity)))
    return knots[:-1], np.stack(pieces)


def spline_basis_pieces(u: np.ndarray, activity: dict, pieces=None) -> np.ndarray:
    """The activity spline basis at transformed values ``u`` (any shape) from :func:`spline_pieces`; shape ``u.shape + (cols,)``."""
    left, coef = pieces if pieces is not None else spline_pieces(activity)
    u = np.clip(np.asarray(u, dtype=float), activity["lower"], activity["upper"])
    j = np.clip(np.searchsorted(left, u, side="right") - 1, 0, len(left) - 1)
    t = u - left[j]
    c = coef[j]
    return ((c[..., 3, :] * t[..., None] + c[..., 2, :]) * t[..., None] + c[..., 1, :]) * t[..., None] + c[..., 0, :]


def hsgp_basis(u: np.ndarray, activity: dict) -> np.ndarray:
    """The centred HSGP basis of the design at transformed values ``u`` (any shape)."""
    u = np.clip(np.asarray(u, dtype=float), activity["lower"], activity["upper"])
    sqrt_lambda = np.arange(1, activity["m"] + 1) * np.pi / (2 * activity["L"])
    phi = np.sqrt(1 / activity["L"]) * np.sin((u - activity["centre"] + activity["L"])[..., None] * sqrt_lambda)
    return phi - np.asarray(activity["column_means"])


def band_cuts(entry: dict) -> np.ndarray:
    """Band edges of the activity on the standardized transformed scale of its imputation model."""
    edges = np.asarray(ACTIVITY_BAND_EDGES, dtype=float)
    u = np.log1p(edges) if entry["transform"] == "log1p" else edges
    return (u - entry["u_mean"]) / entry["u_sd"]


# --------------------------------------------------------------------------- learning the latent part of a design


def placeholders(data: pd.DataFrame, spec, dictionary, levels: dict) -> dict:
    """The latent recipe's first part: per imputed column its kind, term and the placeholder of its missing cells."""
    if not spec.impute and not spec.measurement_error:
        return {}
    act = spec.activity
    imputed = []
    for col in spec.impute:
        observed = data[col].dropna()
        if len(observed) < 10:
            raise BackpainEpiError(f"impute: '{col}' is observed in {len(observed)} analysed row(s) only; its imputation model "
                                   "needs at least 10. Remove it from impute.")
        if act is not None and col == act.variable:
            kind = BANDS if act.basis == "bands" else ACTIVITY
        else:
            kind = BINARY if dictionary[col].type == "binary" else CONTINUOUS
        entry = {"column": col, "kind": kind}
        if kind == CONTINUOUS:
            entry |= {"term": col, "fill": float(observed.astype(float).mean())}
        elif kind == BINARY:
            values = set(observed.astype(float).unique())
            if not values <= {0.0, 1.0}:
                raise BackpainEpiError(f"impute: binary column '{col}' has values {sorted(values)}; it must be 0/1.")
            entry |= {"term": col, "fill": 0.0}
        elif kind == ACTIVITY:
            entry |= {"transform": act.transform, "fill": float(observed.astype(float).median())}
        else:
            reference = levels[col][0]
            entry |= {"levels": list(dictionary[col].levels), "reference": reference, "fill": reference, "transform": "log1p",
                      "source": "met_min_week"}
        imputed.append(entry)
    measured = [{"exposure": e, "se": se, "term": e} for e, se in spec.measurement_error.items()]
    return {"imputed": imputed, "measured": measured}


def _standardize(u: np.ndarray) -> tuple[float, float]:
    u = u[np.isfinite(u)]
    return float(u.mean()), float(u.std(ddof=1))


def finish_latent_recipe(recipe, data: pd.DataFrame, id_column: str) -> None:
    """Complete ``recipe.latent`` once the terms are known: observed-only scaling of imputed columns, the scales of
    the activity's imputation model, the bands' terms, and each measurement-error exposure's 2 SD of the true exposure."""
    lat = recipe.latent
    lat["id_column"] = id_column
    for e in lat["imputed"]:
        col = e["column"]
        if e["kind"] == CONTINUOUS:
            x = data[col].astype(float).to_numpy()
            centre, sd = _standardize(x)
            recipe.scaling[col] = [centre, 2 * sd]
            e["centre"], e["scale"] = centre, 2 * sd
        elif e["kind"] == ACTIVITY:
            x = data[col].astype(float).to_numpy()
            e["u_mean"], e["u_sd"] = _standardize(np.log1p(x) if e["transform"] == "log1p" else x)
        elif e["kind"] == BANDS:
            if e["source"] not in data:
                raise BackpainEpiError(f"impute: the activity band is imputed from '{e['source']}', which the table lacks.")
            e["u_mean"], e["u_sd"] = _standardize(np.log1p(data[e["source"]].astype(float).to_numpy()))
            e["level_terms"] = [None if lv == e["reference"] else (f"{col}[{lv}]" if f"{col}[{lv}]" in recipe.terms else "")
                                for lv in e["levels"]]
            e["level_terms"] = [t or None for t in e["level_terms"]]
    for m in lat["measured"]:
        obs = data[m["exposure"]].astype(float).to_numpy()
        se = data[m["se"]].astype(float).to_numpy()
        if not np.all(np.isfinite(se)) or (se < 0).any():
            raise BackpainEpiError(f"measurement_error: column '{m['se']}' has {int((~np.isfinite(se) | (se < 0)).sum()):,} "
                                   "negative or non-finite SE(s); an SE is ≥ 0.")
        var_obs, mse = float(np.var(obs, ddof=1)), float(np.mean(se**2))
        if var_obs <= mse:
            raise BackpainEpiError(f"measurement_error: the SEs of '{m['exposure']}' (root mean square {np.sqrt(mse):.3g}) are as "
                                   f"large as its spread (SD {np.sqrt(var_obs):.3g}): the true exposure would have no variance. "
                                   f"Check that '{m['se']}' is on the scale of '{m['exposure']}'.")
        sd_true = float(np.sqrt(var_obs - mse))
        centre = float(obs.mean())
        recipe.scaling[m["exposure"]] = [centre, 2 * sd_true]
        m |= {"centre": centre, "scale": 2 * sd_true, "sd_true": sd_true, "sd_observed": float(np.sqrt(var_obs)),
              "mean_se": float(se.mean()), "reliability": float((var_obs - mse) / var_obs)}


def _term_columns(term: str) -> set[str]:
    out = set()
    for part in term.split(":"):
        code = part[:part.index("[")] if part.endswith("]") and "[" in part else part
        try:
            out |= set(term_variables(code))
        except Exception:  # noqa: BLE001 - a term that does not parse involves no latent column by name
            out.add(code)
    return out


def latent_arrays(design, data: pd.DataFrame) -> Latents:
    """The :class:`Latents` of a design made from the analysed rows ``data``."""
    recipe = design.recipe
    lat = recipe.latent
    involved = {e["column"] for e in lat["imputed"]} | {m["exposure"] for m in lat["measured"]}
    keep = [j for j, t in enumerate(recipe.terms) if not (_term_columns(t) & involved)]
    Z, names = [design.X[:, keep]], [recipe.terms[j] for j in keep]
    act = recipe.spec.activity
    if design.A is not None and not any(e["kind"] == ACTIVITY for e in lat["imputed"]):
        x = data[act.variable].astype(float).to_numpy()
        u = np.log1p(x) if act.transform == "log1p" else x
        Z.append(((u - u.mean()) / (2 * u.std(ddof=1)))[:, None])
        names.append(f"{act.transform}({act.variable})")
    missing_rows, observed = {}, {}
    for e in lat["imputed"]:
        col = e["column"]
        miss = data[col].isna().to_numpy()
        missing_rows[col] = np.flatnonzero(miss)
        if e["kind"] == CONTINUOUS:
            observed[col] = (data[col].astype(float).to_numpy() - e["centre"]) / e["scale"]
        elif e["kind"] == ACTIVITY:
            x = data[col].astype(float).to_numpy()
            observed[col] = ((np.log1p(x) if e["transform"] == "log1p" else x) - e["u_mean"]) / e["u_sd"]
        elif e["kind"] == BINARY:
            observed[col] = data[col].astype(float).to_numpy()
        else:
            observed[col] = (np.log1p(data[e["source"]].astype(float).to_numpy()) - e["u_mean"]) / e["u_sd"]
    out = Latents(recipe=lat, missing_rows=missing_rows, observed=observed, Z=np.column_stack(Z), z_names=names)
    for m in lat["measured"]:
        out.measured_obs[m["exposure"]] = design.X[:, recipe.terms.index(m["term"])].copy()
        out.measured_se[m["exposure"]] = data[m["se"]].astype(float).to_numpy() / m["scale"]
    return out
