"""Model specifications: the YAML files in ``models/`` that users copy and edit.

A spec is data, not code. It names the outcome, the exposures (entered per 2 SD,
so that odds ratios are per 2 SD of the raw exposure), the covariates (patsy
terms over dictionary columns), the physical-activity term, the grouping column
of the random intercept, the priors and the sampler settings::

    name: full
    outcome: cbp
    exposures: [intermat_ml, lmm_ml, imf_pct]
    covariates: [age, sex, bmi, diabetes]
    activity: {variable: met_min_week, basis: spline, transform: log1p, df: 6}
    group: site
    priors: {coefficients: normal(0, 1)}
    sampler: {draws: 1000, tune: 1000, chains: 4}

Everything is checked when the spec is loaded, against the data dictionary,
and every problem is reported at once with the fix.
"""

from __future__ import annotations

import ast
import math
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import patsy
import yaml

from ..dictionary import DataDictionary, load_dictionary
from ..errors import BackpainEpiError, InputFileError, unknown_choice


class SpecError(BackpainEpiError):
    """A model spec is malformed: an unknown column, basis, prior or setting."""


#: Prior distributions a spec may name, with their parameters in order.
PRIOR_FAMILIES: dict[str, tuple[str, ...]] = {
    "normal": ("mu", "sigma"),
    "student_t": ("nu", "mu", "sigma"),
    "halfnormal": ("sigma",),
    "halfstudent_t": ("nu", "sigma"),
    "exponential": ("lam",),
    "lognormal": ("mu", "sigma"),
    "inversegamma": ("alpha", "beta"),
}
_POSITIVE_FAMILIES = ("halfnormal", "halfstudent_t", "exponential", "lognormal", "inversegamma")
_POSITIVE_PARAMS = ("sigma", "nu", "lam", "alpha", "beta")

#: The priors of a model, what each is on, and its default.
DEFAULT_PRIORS: dict[str, str] = {
    "intercept": "normal(0, 2.5)",
    "coefficients": "normal(0, 1)",
    "group_sd": "halfnormal(1)",
    "smooth_sd": "halfnormal(1)",
    "gp_amplitude": "halfnormal(1)",
    "gp_lengthscale": "lognormal(0.7, 0.5)",
}
PRIOR_ROLES: dict[str, str] = {
    "intercept": "log-odds of CBP at the mean of every scaled term and the reference of every categorical one",
    "coefficients": "log odds ratio of each term (per 2 SD for numeric columns)",
    "group_sd": "SD of the random intercept per group (log-odds)",
    "smooth_sd": "SD of the penalized (wiggly) part of each spline: activity's and a spline exposure's (log-odds)",
    "gp_amplitude": "marginal SD of the activity Gaussian process (log-odds)",
    "gp_lengthscale": "length scale of the activity Gaussian process (on the transformed activity scale)",
}
_SCALE_PRIORS = ("group_sd", "smooth_sd", "gp_amplitude", "gp_lengthscale")
#: Knots of an exposure spline written ``{column: spline}``.
EXPOSURE_SPLINE_DF = 5

BASES = ("bands", "spline", "hsgp")
PARAMETERIZATIONS = ("auto", "scaled", "centred", "noncentred")
TRANSFORMS = ("log1p", "identity")
SAMPLERS = ("nutpie", "pymc")
_PATSY_NAMES = {"C", "Treatment", "Sum", "Poly", "Helmert", "Diff", "I", "np"}
#: Patsy's stateful transforms: they learn from the data, which the design recipe cannot replay for new rows.
_STATEFUL = {"center", "standardize", "scale", "bs", "cr", "cc", "te"}
#: What a covariate may be, for the messages that refuse one.
SUPPORTED_TERMS = ("a column (age), an interaction (age:sex, age*sex, intermat_ml:sex), a numeric transform of raw values "
                   "(np.log(bmi), np.sqrt(bmi), I(age**2)) or a categorical with its reference (C(sex, Treatment('male')))")


@dataclass(frozen=True)
class Prior:
    """A prior distribution, written in a spec as ``family(p1, p2, ...)``.

    >>> Prior.parse("normal(0, 2.5)")
    Prior(family='normal', params=(0.0, 2.5))
    """

    family: str
    params: tuple[float, ...]

    @classmethod
    def parse(cls, text: Any, where: str = "prior") -> "Prior":
        """Read ``"normal(0, 1)"``; raise :class:`SpecError` naming ``where`` if it is malformed."""
        example = "e.g. normal(0, 1) or halfnormal(1)"
        m = re.fullmatch(r"\s*([a-z_]+)\s*\((.*)\)\s*", str(text))
        if not isinstance(text, str) or not m:
            raise SpecError(f"{where}: cannot read prior {text!r}; write family(parameters), {example}.")
        family, args = m.group(1), m.group(2)
        if family not in PRIOR_FAMILIES:
            raise SpecError(f"{where}: {unknown_choice('prior family', family, PRIOR_FAMILIES)}")
        names = PRIOR_FAMILIES[family]
        try:
            params = tuple(float(a) for a in args.split(",")) if args.strip() else ()
        except ValueError:
            raise SpecError(f"{where}: prior {text!r} has a parameter that is not a number; {example}.") from None
        if len(params) != len(names):
            raise SpecError(f"{where}: {family} takes {len(names)} parameter(s) ({', '.join(names)}), got {len(params)} in {text!r}.")
        for name, value in zip(names, params):
            if not math.isfinite(value) or (name in _POSITIVE_PARAMS and value <= 0):
                raise SpecError(f"{where}: parameter {name} of {text!r} must be {'positive' if name in _POSITIVE_PARAMS else 'finite'}.")
        return cls(family, params)

    @property
    def kwargs(self) -> dict[str, float]:
        """Parameters by name, as PyMC's distribution takes them."""
        return dict(zip(PRIOR_FAMILIES[self.family], self.params))

    @property
    def positive(self) -> bool:
        return self.family in _POSITIVE_FAMILIES

    def __str__(self) -> str:
        return f"{self.family}({', '.join(f'{p:g}' for p in self.params)})"


@dataclass(frozen=True)
class ActivityTerm:
    """The non-linear physical-activity term.

    Attributes
    ----------
    variable
        Activity column (MET-min/week); for ``bands``, the band column.
    basis
        ``bands``: a categorical term of the activity bands against ``reference``;
        ``spline``: a penalized cubic regression spline of ``df`` knots on the
        transformed activity, centred (sum to zero over the data) and in mixed-model
        form (an unpenalized linear part and a shrunk wiggly part);
        ``hsgp``: a Hilbert-space Gaussian process (``pm.gp.HSGP``) with ``m``
        basis functions and boundary factor ``c``, its basis centred the same way.
    transform
        ``log1p`` or ``identity``, applied to ``variable`` before the basis.
    reference
        For ``bands``: the reference band (default: the band of 1,500 MET-min/week).
    parameterization
        For ``spline`` and ``hsgp``: ``centred`` (coefficients ~ Normal(0, scale)),
        ``noncentred`` (coefficients = scale × Normal(0, 1)), ``scaled`` (each coefficient
        between the two, by what the data say of it) or ``auto`` (the default): the scaled
        form, refit non-centred by the gate ladder after a funnel; see
        :func:`~backpain_epi.modelling.params.activity_parameterization`.
    """

    variable: str
    basis: str
    transform: str = "log1p"
    df: int = 6
    m: int = 20
    c: float = 1.5
    reference: str | None = None
    parameterization: str | None = None


@dataclass(frozen=True)
class SamplerSettings:
    """Sampler settings; the command line may override them."""

    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    target_accept: float = 0.8
    seed: int = 2025
    sampler: str = "nutpie"


@dataclass(frozen=True)
class ModelSpec:
    """A validated model spec. Build one with :func:`load_spec` or :meth:`from_dict`."""

    name: str
    outcome: str
    exposures: tuple[str, ...]
    covariates: tuple[str, ...] = ()
    activity: ActivityTerm | None = None
    group: str | None = None
    priors: dict[str, Prior] = field(default_factory=dict)
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    description: str = ""
    effect_modifiers: tuple[str, ...] = ()
    exposure_splines: dict[str, int] = field(default_factory=dict)
    impute: tuple[str, ...] = ()
    measurement_error: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Any, dictionary: DataDictionary | None = None, *, source: str = "spec") -> "ModelSpec":
        """Check a parsed spec against the dictionary; raise :class:`SpecError` listing every problem."""
        return _SpecReader(raw, dictionary or load_dictionary(), source).read()

    def columns(self) -> list[str]:
        """Every data column the model uses, outcome first."""
        cols = [self.outcome, *self.exposures]
        for term in self.covariates:
            cols += [c for c in term_variables(term) if c not in cols]
        if self.activity and self.activity.variable not in cols:
            cols.append(self.activity.variable)
        if self.group and self.group not in cols:
            cols.append(self.group)
        cols += [m for m in self.effect_modifiers if m not in cols]
        cols += [se for se in self.measurement_error.values() if se not in cols]
        return cols

    def modifier_terms(self) -> list[str]:
        """The patsy terms ``effect_modifiers`` add: each modifier's main effect and its product with each exposure."""
        return [t for m in self.effect_modifiers for t in (m, *(f"{e}:{m}" for e in self.exposures))]

    def with_sampler(self, **overrides) -> "ModelSpec":
        """A copy with sampler settings replaced (``None`` values are ignored) and checked."""
        settings = replace(self.sampler, **{k: v for k, v in overrides.items() if v is not None})
        _check_sampler(settings, "command line")
        return replace(self, sampler=settings)

    def to_dict(self) -> dict:
        """The spec as plain data, in the YAML layout (round-trips through :meth:`from_dict`)."""
        exposures = [{e: {"basis": "spline", "df": self.exposure_splines[e]}} if e in self.exposure_splines else e
                     for e in self.exposures]
        out: dict[str, Any] = {"name": self.name, "description": self.description, "outcome": self.outcome,
                               "exposures": exposures, "covariates": list(self.covariates)}
        if self.activity:
            out["activity"] = {k: v for k, v in asdict(self.activity).items() if v is not None}
        if self.group:
            out["group"] = self.group
        if self.effect_modifiers:
            out["effect_modifiers"] = list(self.effect_modifiers)
        if self.impute:
            out["impute"] = list(self.impute)
        if self.measurement_error:
            out["measurement_error"] = dict(self.measurement_error)
        out["priors"] = {k: str(v) for k, v in self.priors.items()}
        out["sampler"] = asdict(self.sampler)
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def describe_priors(self) -> list[tuple[str, str, str]]:
        """(name, prior, what it is on) for every prior this model uses."""
        return [(k, str(self.priors[k]), PRIOR_ROLES[k]) for k in self.priors]

    def __str__(self) -> str:
        lines = [f"Model '{self.name}': logistic, {self.outcome} ~ " + " + ".join(self.terms_text())]
        lines += [f"  prior {name}: {prior}  ({role})" for name, prior, role in self.describe_priors()]
        return "\n".join(lines)

    def terms_text(self) -> list[str]:
        terms = [f"spline[{e}; {self.exposure_splines[e]} knots]" if e in self.exposure_splines else f"{e} (per 2 SD)"
                 for e in self.exposures] + list(self.covariates)
        if self.activity:
            a = self.activity
            detail = {"bands": f"reference {a.reference}", "spline": f"{a.df} knots", "hsgp": f"m={a.m}, c={a.c:g}"}[a.basis]
            where = a.variable if a.basis == "bands" else f"{a.transform}({a.variable})"
            terms.append(f"{a.basis}[{where}; {detail}]")
        if self.group:
            terms.append(f"(1 | {self.group})")
        terms += [f"{e} × {m}" for m in self.effect_modifiers for e in self.exposures]
        terms += [f"imputed[{c}]" for c in self.impute]
        terms += [f"measurement_error[{e}; se {se}]" for e, se in self.measurement_error.items()]
        return terms


def load_spec(path: str | os.PathLike, dictionary: DataDictionary | None = None) -> ModelSpec:
    """Read and check a model spec YAML file.

    Raises
    ------
    InputFileError
        The file is missing or is not YAML.
    SpecError
        The spec breaks a rule; the message lists every problem and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"model spec {path} not found; the shipped specs are in models/ (e.g. models/full.yaml).")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}).") from None
    return ModelSpec.from_dict(raw, dictionary, source=str(path))


def term_variables(term: str) -> list[str]:
    """Column names a patsy term refers to: ``"age:C(sex)"`` gives ``["age", "sex"]``."""
    names: list[str] = []
    for factor in term.split(":"):
        try:
            tree = ast.parse(factor.strip(), mode="eval")
        except SyntaxError:
            raise SpecError(f"covariate {term!r}: not a patsy term; a covariate is {SUPPORTED_TERMS}.") from None
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id not in _PATSY_NAMES | _STATEFUL and node.id not in names:
                names.append(node.id)
    return names


def _categorised(term: str) -> list[str]:
    """Columns a term puts in ``C(...)``: ``"C(site):age"`` gives ``["site"]`` (an unparsable term gives none)."""
    try:
        tree = ast.parse(term.replace(":", "*"), mode="eval")
    except SyntaxError:
        return []
    return [node.args[0].id for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "C"
            and node.args and isinstance(node.args[0], ast.Name)]


def patsy_terms(term: str) -> list[patsy.Term]:
    """The model terms a covariate adds (``"age*sex"`` gives age, sex and age:sex); :class:`SpecError` if unsupported."""
    refuse = f"covariate {term!r}: {{}}; a covariate is {SUPPORTED_TERMS}."
    try:
        tree = ast.parse(term.replace(":", "*"), mode="eval")
    except SyntaxError:
        raise SpecError(refuse.format("not a patsy term")) from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in _STATEFUL:
            raise SpecError(refuse.format(f"patsy's {node.id}() learns from the data, which the model cannot replay when "
                                          "predicting (numeric terms are centred and scaled per 2 SD already)"))
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "np" and not hasattr(np, node.attr):
            raise SpecError(refuse.format(unknown_choice("numpy function", node.attr, [n for n in dir(np) if not n.startswith("_")])))
    try:
        desc = patsy.ModelDesc.from_formula(term)
    except patsy.PatsyError as exc:
        raise SpecError(refuse.format(f"not a patsy term ({str(exc).splitlines()[0]})")) from None
    if desc.lhs_termlist:
        raise SpecError(refuse.format("a covariate has no '~'; the outcome is the spec's 'outcome'"))
    if patsy.INTERCEPT not in desc.rhs_termlist:
        raise SpecError(refuse.format("the model always has an intercept; remove '- 1' or '0 +'"))
    return [t for t in desc.rhs_termlist if t != patsy.INTERCEPT]


class _SpecReader:
    """Reads a raw spec, collecting every problem before raising one :class:`SpecError`."""

    _KEYS = ("name", "description", "outcome", "exposures", "covariates", "effect_modifiers", "activity", "group", "priors", "sampler",
             "impute", "measurement_error")

    def __init__(self, raw: Any, dd: DataDictionary, source: str):
        self.raw, self.dd, self.source, self.problems = raw, dd, source, []

    def read(self) -> ModelSpec:
        if not isinstance(self.raw, dict):
            raise SpecError(f"{self.source}: a model spec is a YAML mapping with keys {', '.join(self._KEYS)}.")
        for key in self.raw:
            if key not in self._KEYS:
                self.problems.append(unknown_choice("key", key, self._KEYS))
        name = self._text("name", required=True)
        outcome = self._column(self._text("outcome", required=True), "outcome", roles=("outcome",))
        exposures, splines = self._exposures(self.raw.get("exposures"))
        covariates = tuple(self._covariate(t) for t in self._list("covariates"))
        activity = self._activity(self.raw.get("activity"))
        group = self.raw.get("group")
        if group is not None:
            group = self._column(group, "group", roles=("group",))
        priors = self._priors(self.raw.get("priors") or {}, activity, group, bool(splines))
        sampler = self._sampler(self.raw.get("sampler") or {})
        self._check_twice(exposures, covariates)
        modifiers = tuple(self._modifier(m, exposures, covariates) for m in self._list("effect_modifiers"))
        if modifiers and splines:
            self.problems.append(f"effect_modifiers: the spline exposure(s) {', '.join(splines)} have no single odds ratio to "
                                 "modify; enter them linearly in a model with effect modifiers")
        impute = self._impute(self._list("impute"), outcome, exposures, covariates, activity, modifiers)
        errors = self._measurement_error(self.raw.get("measurement_error"), exposures, splines, covariates, modifiers)
        if self.problems:
            raise SpecError(f"{self.source}: {len(self.problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in self.problems))
        return ModelSpec(name=name, outcome=outcome, exposures=exposures, covariates=covariates, activity=activity,
                         group=group, priors=priors, sampler=sampler, description=str(self.raw.get("description") or "").strip(),
                         effect_modifiers=modifiers, exposure_splines=splines, impute=impute, measurement_error=errors)

    def _impute(self, names: list, outcome, exposures: tuple, covariates: tuple, activity, modifiers: tuple) -> tuple[str, ...]:
        """Covariates whose missing values become parameters: each a plain covariate term or the activity variable.

        ``met_min_week`` names the activity term whichever its basis (for ``bands``: ``activity_band``, derived from it).
        """
        out: list[str] = []
        how = ("list covariates that enter the model as a plain term (bmi, diabetes) or the activity variable "
               "(met_min_week)")
        for name in names:
            where = f"impute: '{name}'"
            if name == outcome or name in exposures:
                self.problems.append(f"{where} is the {'outcome' if name == outcome else 'exposure'}; the outcome and the "
                                     "exposures are never imputed (rows missing them are dropped); remove it from impute")
                continue
            if name not in self.dd:
                self.problems.append(f"impute: {unknown_choice('column', name, self.dd.columns)}")
                continue
            column = name
            if activity and (name == activity.variable or (activity.basis == "bands" and name == "met_min_week")):
                column = activity.variable
            else:
                plain = [t for t in covariates if t.strip() == name]
                others = [t for t in covariates if t.strip() != name and name in term_variables(t)]
                if name in modifiers:
                    self.problems.append(f"{where} is an effect modifier; imputing a modifier is not supported, remove it from "
                                         "impute or from effect_modifiers")
                    continue
                if others:
                    self.problems.append(f"{where} enters the term(s) {', '.join(map(repr, others))}; an imputed covariate must "
                                         f"enter as the plain column only (write '{name}', or remove it from impute)")
                    continue
                if not plain:
                    self.problems.append(f"{where} is not a covariate of this model; {how}")
                    continue
                c = self.dd[name]
                if c.type not in ("float", "integer", "binary"):
                    self.problems.append(f"{where} is a {c.type} column; numeric covariates are imputed and binary (0/1) ones "
                                         "marginalised; remove it from impute (rows missing it are dropped)")
                    continue
            if column in out:
                self.problems.append(f"{where} is listed twice; list it once")
                continue
            out.append(column)
        return tuple(out)

    def _measurement_error(self, raw: Any, exposures: tuple, splines: dict, covariates: tuple, modifiers: tuple) -> dict[str, str]:
        """``{exposure: its SE column}``: exposures observed with a known per-row standard error."""
        if raw is None:
            return {}
        example = "e.g. measurement_error: {intermat_ml: intermat_ml_se}"
        if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
            self.problems.append(f"'measurement_error' must map an exposure to its SE column, {example}; got {raw!r}")
            return {}
        out = {}
        for exposure, se in raw.items():
            where = f"measurement_error: '{exposure}'"
            if exposure not in exposures:
                self.problems.append(f"{where} is not an exposure of this model (exposures: {', '.join(map(str, exposures))}); "
                                     "only an exposure can be modelled as measured with error")
                continue
            if exposure in splines:
                self.problems.append(f"{where} enters as a spline; a measurement-error exposure enters linearly (per 2 SD "
                                     "of the true exposure): write it as a plain column")
                continue
            if modifiers or any(exposure in term_variables(t) for t in covariates):
                self.problems.append(f"{where} enters an interaction (effect_modifiers or a covariate term); a measurement-error "
                                     "exposure enters as its main effect only")
                continue
            if se not in self.dd:
                self.problems.append(f"{where}: its SE {unknown_choice('column', se, self.dd.columns)} (the segmentation "
                                     f"writes {exposure}_se)")
                continue
            c = self.dd[se]
            if c.role != "measurement_se" or c.type not in ("float", "integer"):
                self.problems.append(f"{where}: column '{se}' has role {c.role} and type {c.type}; the SE column must be a "
                                     f"numeric column of role measurement_se (such as {exposure}_se)")
                continue
            out[exposure] = se
        return out

    def _text(self, key: str, required: bool = False) -> str | None:
        value = self.raw.get(key)
        if value is None:
            if required:
                self.problems.append(f"'{key}' is missing")
            return None
        if not isinstance(value, str) or not value.strip():
            self.problems.append(f"'{key}' must be a text, got {value!r}")
            return None
        return value.strip()

    def _list(self, key: str, required: bool = False) -> list:
        value = self.raw.get(key)
        if value is None:
            if required:
                self.problems.append(f"'{key}' is missing; list at least one column")
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problems.append(f"'{key}' must be a list of column names, got {value!r}")
            return []
        return value

    def _column(self, name: str | None, where: str, roles: tuple[str, ...] | None = None, numeric: bool = False) -> str | None:
        if name is None:
            return None
        if name not in self.dd:
            self.problems.append(f"{where}: {unknown_choice('column', name, self.dd.columns)} (columns are defined in data_dictionary.yaml)")
            return name
        c = self.dd[name]
        if roles and c.role not in roles:
            self.problems.append(f"{where}: column '{name}' has role {c.role} in the dictionary, expected {' or '.join(roles)}")
        if (numeric or where == "exposures") and c.type not in ("float", "integer"):
            self.problems.append(f"{where}: column '{name}' is {c.type}; it must be numeric to enter per 2 SD")
        return name

    def _check_twice(self, exposures: tuple, covariates: tuple) -> None:
        """A covariate that adds no term the model does not have already (``intermat_ml`` next to the exposure, ``age`` twice)."""
        present = {patsy.Term([patsy.EvalFactor(e)]) for e in exposures if e}
        for term in covariates:
            try:
                terms = patsy_terms(term)
            except SpecError:
                continue  # reported by _covariate
            if terms and set(terms) <= present:
                where = "an exposure" if all(len(t.factors) == 1 and t.factors[0].name() in exposures for t in terms) else "in the model"
                self.problems.append(f"covariate {term!r} enters the model twice (it is already {where}); keep it in one place")
            present |= set(terms)

    def _exposures(self, raw: Any) -> tuple[tuple[str, ...], dict[str, int]]:
        """Exposure names, and the knots of those entered as a penalized spline.

        An item is a column name (linear, per 2 SD), ``{column: spline}`` (a spline of
        :data:`EXPOSURE_SPLINE_DF` knots) or ``{column: {basis: spline, df: k}}``.
        """
        example = "write a column name (intermat_ml), or {intermat_ml: spline} for a penalized spline"
        if raw is None:
            self.problems.append("'exposures' is missing; list at least one column")
            return (), {}
        items = [raw] if isinstance(raw, (str, dict)) else raw
        if not isinstance(items, list) or not items:
            self.problems.append(f"'exposures' must be a list of columns; {example}, got {raw!r}")
            return (), {}
        names, splines = [], {}
        for item in items:
            if isinstance(item, str):
                names.append(self._column(item, "exposures", roles=("exposure",)))
                continue
            if not (isinstance(item, dict) and len(item) == 1):
                self.problems.append(f"exposures: cannot read {item!r}; {example}")
                continue
            (name, form), = item.items()
            form = {"basis": form} if isinstance(form, str) else form
            if not isinstance(form, dict) or form.get("basis") != "spline" or set(form) - {"basis", "df"}:
                self.problems.append(f"exposures: {name}: {form!r} is not a form an exposure takes; {example} "
                                     f"or {{{name}: {{basis: spline, df: 5}}}}")
                continue
            df = form.get("df", EXPOSURE_SPLINE_DF)
            if not (isinstance(df, int) and not isinstance(df, bool) and 4 <= df <= 12):
                self.problems.append(f"exposures: {name}: df must be a whole number of knots from 4 to 12, got {df!r}")
            names.append(self._column(name, "exposures", roles=("exposure",)))
            splines[name] = df
        if len(set(splines.values())) > 1:
            self.problems.append(f"exposures: the spline exposures must share one df (got {splines}); give each the same df")
        return tuple(names), splines

    def _modifier(self, name: str, exposures: tuple, covariates: tuple) -> str:
        """An effect modifier: a categorical or binary covariate column, not an exposure, not written as an interaction too."""
        where = f"effect_modifiers: '{name}'"
        if name not in self.dd:
            self.problems.append(f"effect_modifiers: {unknown_choice('column', name, self.dd.columns)}")
            return name
        c = self.dd[name]
        if name in exposures or c.role not in ("covariate",):
            self.problems.append(f"{where} must be a covariate column (role covariate in the dictionary), not {c.role}")
        elif c.type not in ("category", "binary", "string"):
            self.problems.append(f"{where} is {c.type}; an effect modifier is categorical or binary (sex, diabetes); "
                                 "for a numeric one write the interaction as a covariate, e.g. 'intermat_ml:age'")
        written = [t for t in covariates for e in exposures if {e, name} <= set(term_variables(t)) and ":" in t.replace("*", ":")]
        if written:
            self.problems.append(f"{where} is also written as the covariate(s) {', '.join(map(repr, written))}; keep one of the two")
        return name

    def _covariate(self, term: str) -> str:
        try:
            names = term_variables(term)
            patsy_terms(term)
        except SpecError as exc:
            self.problems.append(str(exc))
            return term
        for name in names:
            self._column(name, f"covariate {term!r}", roles=("covariate", "exposure"))
        for name in _categorised(term):
            if name in self.dd and self.dd[name].type == "float":
                self.problems.append(f"covariate {term!r}: {name} is a continuous column; C({name}) would make one indicator "
                                     f"per distinct value. Enter it as {name} (per 2 SD), a transform of it (np.log({name}), "
                                     f"I({name}**2)), or derive a categorical column from it first")
        return term

    def _activity(self, raw: Any) -> ActivityTerm | None:
        if raw is None:
            return None
        if not isinstance(raw, dict):
            self.problems.append(f"'activity' must be a mapping with variable and basis, got {raw!r}")
            return None
        allowed = ("variable", "basis", "transform", "df", "m", "c", "reference", "parameterization")
        for key in raw:
            if key not in allowed:
                self.problems.append(f"activity: {unknown_choice('key', key, allowed)}")
        basis = raw.get("basis")
        if basis not in BASES:
            self.problems.append(f"activity: {unknown_choice('basis', basis, BASES)}")
            return None
        variable = raw.get("variable", "activity_band" if basis == "bands" else "met_min_week")
        transform = raw.get("transform", "log1p")
        if transform not in TRANSFORMS:
            self.problems.append(f"activity: {unknown_choice('transform', transform, TRANSFORMS)}")
        if variable not in self.dd:
            self.problems.append(f"activity: {unknown_choice('column', variable, self.dd.columns)}")
            return None
        column = self.dd[variable]
        reference = raw.get("reference")
        if basis == "bands":
            if column.type != "category":
                self.problems.append(f"activity: basis bands needs a category column such as activity_band, got '{variable}' ({column.type})")
            elif reference is None:
                reference = column.levels[1] if len(column.levels) > 2 else column.levels[0]
            elif reference not in column.levels:
                self.problems.append(f"activity: reference {unknown_choice('level', reference, column.levels)}")
        elif column.type not in ("float", "integer"):
            self.problems.append(f"activity: basis {basis} needs a numeric column such as met_min_week, got '{variable}' ({column.type})")
        df, m, c = raw.get("df", 6), raw.get("m", 20), raw.get("c", 1.5)
        if basis == "spline" and not (isinstance(df, int) and 4 <= df <= 20):
            self.problems.append(f"activity: df must be a whole number of knots from 4 to 20, got {df!r}")
        if basis == "hsgp":
            if not (isinstance(m, int) and 4 <= m <= 200):
                self.problems.append(f"activity: m must be a whole number of basis functions from 4 to 200, got {m!r}")
            if not (isinstance(c, (int, float)) and c >= 1.2):
                self.problems.append(f"activity: c must be a boundary factor ≥ 1.2 (1.5 is usual), got {c!r}")
        parameterization = raw.get("parameterization", None if basis == "bands" else "auto")
        if basis == "bands" and parameterization is not None:
            self.problems.append("activity: parameterization applies to the spline and hsgp bases only; remove it for bands")
        elif basis != "bands" and parameterization not in PARAMETERIZATIONS:
            self.problems.append(f"activity: {unknown_choice('parameterization', parameterization, PARAMETERIZATIONS)}")
        return ActivityTerm(variable=variable, basis=basis, transform=transform, df=df, m=m, c=float(c) if isinstance(c, (int, float)) else c,
                            reference=reference if basis == "bands" else None, parameterization=parameterization)

    def _priors(self, raw: Any, activity: ActivityTerm | None, group: str | None, splines: bool = False) -> dict[str, Prior]:
        if not isinstance(raw, dict):
            self.problems.append(f"'priors' must be a mapping of name: family(parameters), got {raw!r}")
            raw = {}
        needed = ["intercept", "coefficients"] + (["group_sd"] if group else [])
        if (activity and activity.basis == "spline") or splines:
            needed.append("smooth_sd")
        if activity and activity.basis == "hsgp":
            needed += ["gp_amplitude", "gp_lengthscale"]
        priors = {}
        for key in raw:
            if key not in DEFAULT_PRIORS:
                self.problems.append(f"priors: {unknown_choice('prior', key, DEFAULT_PRIORS)}")
            elif key not in needed and not (activity is None and self.raw.get("activity") is not None):  # not twice for one mistake
                self.problems.append(f"priors: '{key}' is not used by this model (it uses {', '.join(needed)})")
        for key in needed:
            try:
                prior = Prior.parse(raw.get(key, DEFAULT_PRIORS[key]), where=f"priors.{key}")
            except SpecError as exc:
                self.problems.append(str(exc))
                continue
            if key in _SCALE_PRIORS and not prior.positive:
                self.problems.append(f"priors.{key}: {prior} can be negative; a scale needs a positive family such as halfnormal(1)")
            priors[key] = prior
        return priors

    def _sampler(self, raw: Any) -> SamplerSettings:
        if not isinstance(raw, dict):
            self.problems.append(f"'sampler' must be a mapping (draws, tune, chains, target_accept, seed, sampler), got {raw!r}")
            return SamplerSettings()
        fields = SamplerSettings.__dataclass_fields__
        for key in raw:
            if key not in fields:
                self.problems.append(f"sampler: {unknown_choice('setting', key, fields)}")
        settings = SamplerSettings(**{k: v for k, v in raw.items() if k in fields})
        try:
            _check_sampler(settings, "sampler")
        except SpecError as exc:
            self.problems.append(str(exc))
        return settings


def _check_sampler(s: SamplerSettings, where: str) -> None:
    for key in ("draws", "tune", "chains"):
        value = getattr(s, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < (1 if key != "tune" else 0):
            raise SpecError(f"{where}: {key} must be a whole number ≥ {1 if key != 'tune' else 0}, got {value!r}")
    if not isinstance(s.seed, int) or isinstance(s.seed, bool) or s.seed < 0:
        raise SpecError(f"{where}: seed must be a whole number ≥ 0, got {s.seed!r}")
    if not isinstance(s.target_accept, (int, float)) or not 0.5 <= s.target_accept < 1:
        raise SpecError(f"{where}: target_accept must lie in [0.5, 1), got {s.target_accept!r}")
    if s.sampler not in SAMPLERS:
        raise SpecError(f"{where}: {unknown_choice('sampler', s.sampler, SAMPLERS)}")

