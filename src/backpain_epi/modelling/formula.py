"""Fixed-effect terms as users write them: patsy terms over raw values, scaled per 2 SD after patsy.

Patsy evaluates every factor of a term (``age``, ``np.log(bmi)``, ``I(age**2)``,
``C(sex, Treatment('male'))``) on the raw columns. Each factor is then fixed by
the design recipe, so that prediction rebuilds exactly the columns of the fit:

- a numeric factor is centred and divided by 2 SD of its own values over the
  analysed rows (``np.log(bmi)`` per 2 SD of log BMI), unless it is a binary
  column of the dictionary, kept as 0/1;
- a categorical factor keeps the levels it had in the fit.

An interaction multiplies the fixed factors (``age:sex[male]`` is age per 2 SD
among men), as patsy does.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import patsy
from patsy.categorical import C, _CategoricalBox

from ..cohort import scale_per_2sd
from ..errors import BackpainEpiError
from .spec import SUPPORTED_TERMS, ModelSpec, SpecError


def formula(spec: ModelSpec) -> str:
    """The right-hand side patsy formula of the fixed effects (intercept, exposures, covariates, activity bands)."""
    terms = list(spec.exposures) + list(spec.covariates) + spec.modifier_terms()
    if spec.activity and spec.activity.basis == "bands":
        terms.append(spec.activity.variable)
    return "1 + " + " + ".join(terms)


class _FixedFactor:
    """A patsy factor evaluated as patsy does, then scaled (numeric) or given fixed levels (categorical)."""

    def __init__(self, inner: patsy.EvalFactor, scaling: list[float] | None = None, levels: list | None = None):
        self.inner, self.scaling, self.levels = inner, scaling, levels
        self.origin = inner.origin

    def name(self) -> str:
        return self.inner.name()

    def __eq__(self, other) -> bool:
        return isinstance(other, _FixedFactor) and self.inner == other.inner

    def __hash__(self) -> int:
        return hash((_FixedFactor, self.inner))

    def memorize_passes_needed(self, state, eval_env):
        return self.inner.memorize_passes_needed(state, eval_env)

    def memorize_chunk(self, state, which_pass, data):
        self.inner.memorize_chunk(state, which_pass, data)

    def memorize_finish(self, state, which_pass):
        self.inner.memorize_finish(state, which_pass)

    def eval(self, state, data):
        with np.errstate(all="ignore"):  # a log of 0 is reported below, naming the term
            value = self.inner.eval(state, data)
        if self.levels is not None:
            if isinstance(value, _CategoricalBox):
                return C(value.data, value.contrast, levels=self.levels)
            return C(value, levels=self.levels)
        if isinstance(value, (pd.Series, pd.DataFrame, np.ndarray)) and np.asarray(value).dtype.kind in "iuf":
            x = np.asarray(value, dtype=float)
            bad = ~np.isfinite(x)
            if bad.any():
                raise BackpainEpiError(f"term '{self.name()}' is not finite (nan or ±inf) in {int(bad.sum()):,} of {len(x):,} rows; "
                                       "use a transform defined for every value, e.g. np.log1p(x) where x can be 0.")
            if self.scaling is not None:
                centre, scale = self.scaling
                return (x - centre) / scale
        return value


def _desc(spec: ModelSpec, fixed) -> patsy.ModelDesc:
    """The spec's terms with each factor wrapped by ``fixed`` (a :class:`_FixedFactor` maker)."""
    desc = patsy.ModelDesc.from_formula(formula(spec))
    terms = [patsy.Term([fixed(f) for f in term.factors]) for term in desc.rhs_termlist]
    return patsy.ModelDesc([], terms)


def _dmatrix(desc: patsy.ModelDesc, frame: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    try:
        return patsy.dmatrix(desc, frame, NA_action="raise", return_type="dataframe", eval_env=patsy.EvalEnvironment([{"np": np}]))
    except patsy.PatsyError as exc:
        o = exc.origin
        where = f" '{o.code[o.start:o.end]}'" if o is not None else "s"
        raise SpecError(f"model '{spec.name}': cannot build the term{where} ({str(exc).splitlines()[0]}); "
                        f"a covariate is {SUPPORTED_TERMS}.") from None


def learn_factors(frame: pd.DataFrame, spec: ModelSpec, binary: set[str]) -> tuple[dict[str, list[float]], dict[str, list]]:
    """Per-2-SD centre and scale of each numeric factor and the levels of each categorical one, from the analysed rows.

    ``binary`` names the 0/1 columns, kept unscaled. Returns ``(scaling, categories)`` keyed by the factor's
    patsy code (``age``, ``np.log(bmi)``, ``sex``).
    """
    info = _dmatrix(_desc(spec, _FixedFactor), frame, spec).design_info
    scaling, categories = {}, {}
    for factor, fi in info.factor_infos.items():
        code = factor.name()
        if fi.type == "categorical":
            categories[code] = [v.item() if isinstance(v, np.generic) else v for v in fi.categories]
        elif fi.num_columns != 1:
            raise SpecError(f"model '{spec.name}': term '{code}' gives {fi.num_columns} columns; a covariate is {SUPPORTED_TERMS}.")
        elif code not in binary:
            values = factor.eval(fi.state, frame)
            _, centre, scale = scale_per_2sd(pd.Series(np.asarray(values, dtype=float).ravel(), name=code))
            scaling[code] = [centre, scale]
    return scaling, categories


def fixed_effects(frame: pd.DataFrame, spec: ModelSpec, scaling: dict[str, list[float]],
                  categories: dict[str, list]) -> pd.DataFrame:
    """The fixed-effect columns of ``frame`` (raw values; categoricals as ``pd.Categorical``), named as in ``summary.csv``."""
    def fixed(factor):
        code = factor.name()
        return _FixedFactor(factor, scaling=scaling.get(code), levels=categories.get(code))

    dm = _dmatrix(_desc(spec, fixed), frame, spec)
    dm.columns = [term_name(c) for c in dm.columns]
    return dm.drop(columns="Intercept")


def term_name(patsy_name: str) -> str:
    """Patsy's ``sex[T.male]`` as ``sex[male]``, in every factor of an interaction."""
    return re.sub(r"\[T\.([^\]]*)\]", r"[\1]", patsy_name)
