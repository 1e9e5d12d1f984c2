"""Design matrices: from a cohort table and a :class:`ModelSpec` to the arrays a model needs.

:func:`make_design` learns a :class:`DesignRecipe` from the analysed rows (the
per-2-SD centres and scales, the category levels, the activity basis) and
applies it. The recipe is plain data (:meth:`DesignRecipe.to_dict`), saved with
every fit, so that new participants are put through exactly the same
transformation when predicting (:meth:`DesignRecipe.transform`).

Term names follow the data dictionary: a numeric column keeps its name
(``intermat_ml``), a level of a categorical one is ``column[level]``
(``sex[male]``, ``activity_band[<500]``); patsy's ``[T.level]`` is rewritten.
Covariates are patsy terms over the raw columns, each numeric factor scaled per
2 SD after patsy has evaluated it (:mod:`~backpain_epi.modelling.formula`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..derived import DERIVED_FROM
from ..dictionary import DataDictionary
from ..errors import BackpainEpiError
from .formula import fixed_effects, learn_factors
from ..validation import INVALID_ROWS
from .basis import _activity_basis_u, _cr, _hsgp_phi
from .latent import Latents, finish_latent_recipe, latent_arrays, placeholders
from .spec import ModelSpec

#: Activity grid (MET-min/week) of the activity curve written with every fit.
ACTIVITY_GRID = np.array([0, 50, 100, 200, 300, 400, 500, 600, 750, 1000, 1250, 1500, 2000, 2500, 3000, 4000, 5000,
                          6000, 7500, 10_000, 12_500, 15_000], dtype=float)


@dataclass
class Design:
    """The arrays of one model fit, and the recipe that made them.

    Attributes
    ----------
    y
        Outcome (0/1) of the analysed rows.
    X
        Fixed-effect columns (one per reported term), scaled as the recipe says.
    terms
        Column names of ``X``: the ``term`` of ``summary.csv``.
    A
        Activity basis columns for ``spline`` and ``hsgp`` (``None`` otherwise);
        for ``spline`` the first column is the unpenalized linear part.
    group
        Index of each row's group (``None`` without a random intercept).
    S
        The penalized (wiggly) columns of the spline exposures, side by side in the spec's order
        (``None`` without one); their linear parts are the exposures' columns of ``X``.
    ids
        Participant ids of the analysed rows.
    dropped
        Rows dropped: ``"qc_flag"`` for segmentation-QC-flagged rows, then per
        missing column (a row can count under several), and ``"any"`` for the total.
    include_qc_flagged
        Whether QC-flagged rows were kept.
    noncentred
        Whether every part whose parameterization is chosen automatically (the ``auto`` activity term, the
        spline exposures, the group intercepts) is non-centred: the gate ladder's refit after a fit in the scaled
        form failed on divergences or E-BFMI (:mod:`~backpain_epi.modelling.ladder`).
    """

    y: np.ndarray
    X: np.ndarray
    terms: list[str]
    A: np.ndarray | None
    group: np.ndarray | None
    ids: np.ndarray
    recipe: "DesignRecipe"
    dropped: dict[str, int] = field(default_factory=dict)
    include_qc_flagged: bool = False
    S: np.ndarray | None = None
    latent: "Latents | None" = None
    imputed: dict[str, int] = field(default_factory=dict)
    noncentred: bool = False

    @property
    def n(self) -> int:
        return len(self.y)


@dataclass
class DesignRecipe:
    """How the design of a fit was made; JSON-ready via :meth:`to_dict`."""

    spec: ModelSpec
    scaling: dict[str, list[float]]        # numeric factor (age, np.log(bmi)) -> [centre, scale (2 SD)]
    levels: dict[str, list[str]]           # categorical column -> levels, reference first
    terms: list[str]
    group_levels: list[str] | None
    activity: dict | None                  # basis parameters (knots, transform matrix, ...)
    categories: dict[str, list] = field(default_factory=dict)  # other categorical factor (C(age > 50)) -> levels
    exposure_splines: dict[str, dict] = field(default_factory=dict)  # spline exposure -> its basis (knots, transform, grid)
    latent: dict = field(default_factory=dict)  # imputed and measurement-error columns (modelling.latent)

    def transform(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Design rows (``X``, ``A``, group index) of a complete table ``df``.

        A group level not seen in the fit gets index -1 (a new group). In a model that imputes
        (``impute``), a missing value of an imputed column is allowed: its cells of ``X`` (and its
        row of ``A`` for the activity) are 0, and :func:`~backpain_epi.modelling.latent.row_latents`
        adds what its imputed draws contribute.
        """
        df, masks = self._filled(df)
        X, A, group = self._transform(df)
        for e in self.latent.get("imputed", ()):
            miss = masks.get(e["column"])
            if miss is None or not miss.any():
                continue
            if e["kind"] == "activity":
                A[miss] = 0.0
            elif e["kind"] in ("continuous", "binary"):
                X[miss, self.terms.index(e["term"])] = 0.0
        return X, A, group

    def _filled(self, df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
        """``df`` with the missing values of imputed columns set to placeholders, and where they were."""
        masks, fill = {}, {}
        for e in self.latent.get("imputed", ()):
            col = e["column"]
            if col in df and df[col].isna().any():
                masks[col] = df[col].isna().to_numpy()
                fill[col] = df[col].where(~df[col].isna(), e["fill"])
                if e["kind"] == "bands":
                    fill[col] = fill[col].astype(object)
        return (df.assign(**fill) if fill else df), masks

    def _transform(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        dm = fixed_effects(self._prepared(df), self.spec, self.scaling, {**self.levels, **self.categories})
        missing = [t for t in self.terms if t not in dm.columns]
        if missing:
            raise BackpainEpiError(f"model '{self.spec.name}': the rows give no column for term(s) {', '.join(missing)} of the fit.")
        X = dm[self.terms].to_numpy(dtype=np.float64)
        A = _activity_basis(df[self.spec.activity.variable], self.activity, self.spec.activity.transform) if self.activity else None
        group = None
        if self.group_levels is not None:
            lookup = {g: i for i, g in enumerate(self.group_levels)}
            group = np.array([lookup.get(str(g), -1) for g in df[self.spec.group]], dtype=np.int64)
        return X, A, group

    def smooth_columns(self, df: pd.DataFrame) -> np.ndarray | None:
        """The penalized columns of the spline exposures for the rows of ``df`` (``Design.S``); ``None`` without one."""
        if not self.exposure_splines:
            return None
        return np.column_stack([_spline_wiggly(df[e], r) for e, r in self.exposure_splines.items()])

    def smooth_index(self) -> np.ndarray:
        """For each column of :meth:`smooth_columns`, the index of its exposure in ``exposure_splines``."""
        return np.concatenate([np.full(len(r["transform_matrix"][0]) - 1, i) for i, r in enumerate(self.exposure_splines.values())])

    def exposure_curve_basis(self, exposure: str, x: np.ndarray, reference: float) -> tuple[np.ndarray, np.ndarray]:
        """Linear and penalized rows of a spline exposure's log odds ratio at ``x`` against ``reference``.

        Returns ``(lin, wiggly)``: ``lin`` the per-2-SD exposure difference (multiplies the exposure's
        coefficient), ``wiggly`` the rows of the penalized columns (multiply its spline coefficients).
        """
        r = self.exposure_splines[exposure]
        centre, scale = self.scaling[exposure]
        x = np.asarray(x, dtype=float)
        lin = (x - reference) / scale
        wiggly = _spline_wiggly(pd.Series(x), r) - _spline_wiggly(pd.Series([float(reference)]), r)
        return lin, wiggly

    def _prepared(self, df: pd.DataFrame) -> pd.DataFrame:
        out = {}
        for col, levels in self.levels.items():
            unknown = set(df[col].dropna().astype(str)) - set(levels)
            if unknown:
                raise BackpainEpiError(f"column '{col}' has level(s) {sorted(unknown)} that the model was not fit with ({', '.join(levels)}).")
            out[col] = pd.Categorical(df[col].astype(str), categories=levels)
        for col in self.spec.columns():
            if col not in out and col in df and col != self.spec.outcome:
                out[col] = df[col].astype(float) if pd.api.types.is_numeric_dtype(df[col]) else df[col]
        return pd.DataFrame(out, index=df.index)

    def to_dict(self) -> dict:
        out = {"scaling": self.scaling, "levels": self.levels, "categories": self.categories, "terms": self.terms,
               "group_levels": self.group_levels, "activity": self.activity}
        if self.exposure_splines:
            out["exposure_splines"] = self.exposure_splines
        if self.latent:
            out["latent"] = self.latent
        return out

    @classmethod
    def from_dict(cls, spec: ModelSpec, raw: dict) -> "DesignRecipe":
        return cls(spec=spec, scaling={k: list(v) for k, v in raw["scaling"].items()}, levels=raw["levels"],
                   terms=list(raw["terms"]), group_levels=raw["group_levels"], activity=raw["activity"],
                   categories=raw.get("categories", {}), exposure_splines=raw.get("exposure_splines", {}),
                   latent=raw.get("latent", {}))

    def activity_curve_basis(self, met: np.ndarray, reference: float) -> np.ndarray:
        """Activity basis at ``met`` minus that at ``reference`` (rows of the curve's log odds ratio)."""
        variable = pd.Series(np.asarray(met, dtype=float))
        ref = pd.Series([float(reference)])
        t = self.spec.activity.transform
        return _activity_basis(variable, self.activity, t) - _activity_basis(ref, self.activity, t)


#: The segmentation QC column: rows where it is 1 are excluded unless asked otherwise (data dictionary).
QC_FLAG = "qc_flag"


def complete_rows(df: pd.DataFrame, spec: ModelSpec, *, include_qc_flagged: bool = False) -> tuple[pd.DataFrame, dict[str, int]]:
    """Rows of ``df`` to analyse, and how many were dropped, per reason.

    A row is dropped, in this order, when the segmentation flagged it (``qc_flag`` = 1,
    unless ``include_qc_flagged``; key ``"qc_flag"``), when validation found an error in
    it that the analysis lets through (``df.attrs["invalid_rows"]``, set by
    :func:`~backpain_epi.modelling.fit.read_analysis_table` with ``exclude_invalid_rows``;
    one key per rule, ``"invalid <column> (<rule>)"``, each counting rows not dropped
    before), or when it is missing a column the model uses (one key per column, counted
    among the rows not dropped before, so a row missing two columns counts under both;
    a derived column is named by its source: ``met_min_week`` for ``activity_band``).
    ``"any"`` is the number of rows dropped.
    """
    missing_cols = [c for c in spec.columns() if c not in df.columns]
    if missing_cols:
        raise BackpainEpiError(
            f"model '{spec.name}' uses column(s) {', '.join(missing_cols)} that the data does not have; "
            "add them to the table or remove them from the spec."
        )
    cols = spec.columns()
    flagged = np.zeros(len(df), dtype=bool)
    dropped: dict[str, int] = {}
    if QC_FLAG in df.columns and not include_qc_flagged:
        flagged = (pd.to_numeric(df[QC_FLAG], errors="coerce") == 1).to_numpy()
        if flagged.any():
            dropped[QC_FLAG] = int(flagged.sum())
    left = ~flagged
    for reason, (_, rows) in df.attrs.get(INVALID_ROWS, {}).items():
        hit = left & df.index.isin(rows)
        if hit.any():
            dropped[reason] = int(hit.sum())
        left &= ~hit
    na = df[cols].isna()
    for c in _imputed_columns(spec):
        na[c] = False  # kept: its missing values are parameters of the model
    for c in cols:
        if na[c][left].any():
            dropped[" / ".join(DERIVED_FROM.get(c, (c,)))] = int(na[c][left].sum())  # activity_band is missing where met_min_week is
    keep = ~na.any(axis=1).to_numpy() & left
    dropped["any"] = int((~keep).sum())
    return df.loc[keep], dropped


def _imputed_columns(spec: ModelSpec) -> list[str]:
    """Columns whose missing values the model imputes (``activity_band`` stands for ``met_min_week`` under ``bands``)."""
    return list(spec.impute)


def make_design(df: pd.DataFrame, spec: ModelSpec, dictionary: DataDictionary, *, include_qc_flagged: bool = False) -> Design:
    """Drop incomplete (and segmentation-QC-flagged) rows, learn the recipe from the rest and build the design.

    See :func:`complete_rows` for which rows are dropped; ``Design.dropped`` counts them.

    Raises
    ------
    BackpainEpiError
        A column is missing, no complete rows remain, the outcome has one value
        only, or a term has no variation.
    """
    data, dropped = complete_rows(df, spec, include_qc_flagged=include_qc_flagged)
    imputed = {" / ".join(DERIVED_FROM.get(c, (c,))): int(data[c].isna().sum()) for c in spec.impute}
    if len(data) < 10:
        raise BackpainEpiError(f"model '{spec.name}': only {len(data)} complete row(s) remain after dropping incomplete rows {dropped}.")
    y = data[spec.outcome].astype(int).to_numpy()
    if y.min() == y.max():
        raise BackpainEpiError(f"outcome '{spec.outcome}' is {y[0]} for every analysed row; a logistic model needs both 0 and 1.")
    levels = {}
    for col in spec.columns():
        c = dictionary[col]
        if col in (spec.outcome, spec.group) or (spec.activity and col == spec.activity.variable):
            continue
        if c.type in ("category", "string"):
            levels[col] = _levels(data[col], c.levels)
    activity = None
    if spec.activity:
        a = spec.activity
        if a.basis == "bands":
            levels[a.variable] = _levels(data[a.variable], dictionary[a.variable].levels, reference=a.reference)
        else:
            activity = _learn_activity(data[a.variable].dropna(), a)
    group_levels = sorted(data[spec.group].astype(str).unique()) if spec.group else None
    recipe = DesignRecipe(spec=spec, scaling={}, levels=levels, terms=[], group_levels=group_levels, activity=activity)
    recipe.latent = placeholders(data, spec, dictionary, levels)
    filled, _ = recipe._filled(data)
    frame = recipe._prepared(filled)
    binary = {c for c in spec.columns() if dictionary[c].type == "binary"}
    recipe.scaling, categories = learn_factors(frame, spec, binary)
    recipe.categories = {k: v for k, v in categories.items() if k not in levels}
    recipe.terms = list(fixed_effects(frame, spec, recipe.scaling, {**levels, **recipe.categories}).columns)
    recipe.exposure_splines = {e: _learn_exposure_spline(data[e], df) for e, df in spec.exposure_splines.items()}
    if recipe.latent:
        finish_latent_recipe(recipe, data, dictionary_id(dictionary))  # observed-only scaling; the true exposures' 2 SD
    X, A, group = recipe.transform(data)
    for j, term in enumerate(recipe.terms):
        if np.ptp(X[:, j]) == 0:
            raise BackpainEpiError(f"term '{term}' is constant in the {len(data):,} analysed rows; remove it from the spec.")
    design = Design(y=y, X=X, terms=recipe.terms, A=A, group=group, ids=data[dictionary_id(dictionary)].astype(str).to_numpy(),
                    recipe=recipe, dropped=dropped, include_qc_flagged=include_qc_flagged, S=recipe.smooth_columns(data),
                    imputed=imputed)
    if recipe.latent:
        design.latent = latent_arrays(design, data)
    return design


def dictionary_id(dictionary: DataDictionary) -> str:
    return dictionary.names(role="id")[0]


def _levels(s: pd.Series, dictionary_levels, reference: str | None = None) -> list[str]:
    present = set(s.astype(str))
    ordered = [lv for lv in (dictionary_levels or sorted(present)) if lv in present]
    if reference is not None:
        if reference not in present:
            raise BackpainEpiError(f"reference level '{reference}' of '{s.name}' does not occur in the analysed rows.")
        ordered = [reference] + [lv for lv in ordered if lv != reference]
    return ordered


# --- the activity basis ---------------------------------------------------------------------

def _transformed(x: pd.Series, transform: str) -> np.ndarray:
    x = x.astype(float).to_numpy()
    return np.log1p(x) if transform == "log1p" else x


def _learn_activity(x: pd.Series, a) -> dict:
    u = _transformed(x, a.transform)
    lo, hi = float(u.min()), float(u.max())
    if a.basis == "spline":
        return _learn_spline(u, a.df, lo, hi)
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    L = a.c * half
    phi = _hsgp_phi(u - centre, L, a.m)
    return {"basis": "hsgp", "lower": lo, "upper": hi, "centre": centre, "L": L, "m": a.m,
            "column_means": phi.mean(axis=0).tolist()}


def _learn_spline(u: np.ndarray, k: int, lo: float, hi: float, what: str = "the activity variable") -> dict:
    """A centred cubic regression spline in mixed-model form (linear part + penalized part).

    The basis of patsy's ``cr`` is parameterized by the function's values at
    ``k`` knots. Centring its columns over the data makes the function sum to
    zero (identifiable next to the intercept). The penalty on second divided
    differences of the knot values leaves constant and linear functions free;
    its eigen-decomposition gives one unpenalized linear column (scaled per 2 SD
    of the transformed activity) and ``k - 2`` penalized columns, scaled
    together so that ``smooth_sd`` is the SD of the wiggly part over the data.
    """
    knots = np.unique(np.quantile(u, np.linspace(0, 1, k)))
    if len(knots) < k:
        raise BackpainEpiError(f"{what} has too few distinct values for a spline of {k} knots; lower df.")
    inner = knots[1:-1]
    B = _cr(u, inner, lo, hi)
    means = B.mean(axis=0)
    Bc = B - means
    h = np.diff(knots)
    D = np.zeros((k - 2, k))
    for j in range(1, k - 1):
        D[j - 1, j - 1], D[j - 1, j], D[j - 1, j + 1] = 1 / h[j - 1], -1 / h[j - 1] - 1 / h[j], 1 / h[j]
    eigval, eigvec = np.linalg.eigh(D.T @ D)
    wiggly = eigvec[:, 2:] / np.sqrt(eigval[2:])
    lin = knots - knots.mean()
    lin = lin / (2 * np.std(Bc @ lin, ddof=1))
    wiggly = wiggly / np.sqrt(np.var(Bc @ wiggly, axis=0, ddof=1).sum())
    T = np.column_stack([lin, wiggly])
    return {"basis": "spline", "lower": lo, "upper": hi, "inner_knots": inner.tolist(), "column_means": means.tolist(),
            "transform_matrix": T.tolist()}


#: Points of a spline exposure's dose–response curve, between its 2nd and 98th percentiles.
EXPOSURE_GRID_POINTS = 41


def _learn_exposure_spline(x: pd.Series, k: int) -> dict:
    """The spline of an exposure entered as ``{column: spline}``: :func:`_learn_spline` on its raw values.

    Only its penalized columns enter the model; the linear part is the exposure's own per-2-SD
    column, so that the unpenalized straight line keeps the prior of every coefficient.
    """
    u = x.astype(float).to_numpy()
    out = _learn_spline(u, k, float(u.min()), float(u.max()), what=f"exposure '{x.name}'")
    lo, hi = np.quantile(u, [0.02, 0.98])
    out |= {"median": float(np.median(u)), "grid": np.linspace(lo, hi, EXPOSURE_GRID_POINTS).tolist()}
    return out


def _spline_wiggly(x: pd.Series, recipe: dict) -> np.ndarray:
    u = np.clip(np.asarray(x, dtype=float), recipe["lower"], recipe["upper"])
    B = _cr(u, recipe["inner_knots"], recipe["lower"], recipe["upper"])
    return (B - np.asarray(recipe["column_means"])) @ np.asarray(recipe["transform_matrix"])[:, 1:]


def _activity_basis(x: pd.Series, recipe: dict, transform: str) -> np.ndarray:
    return _activity_basis_u(_transformed(x, transform), recipe)
