"""The data dictionary: one definition of every column the package reads or writes.

``data_dictionary.yaml`` (shipped inside the package, linked from the
repository root) gives each column its label, unit, type, range or levels, role,
source and the tables it belongs to. Code asks the dictionary for names, labels
and units instead of writing them again::

    >>> from backpain_epi import load_dictionary
    >>> dd = load_dictionary()
    >>> dd.label("met_min_week")
    'Physical activity (MET-min/week)'
    >>> dd.names(table="cohort", role="exposure")
    ['lmm_ml', 'intermat_ml', 'imf_pct', 'autochthon_ml', 'psoas_ml']
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import DictionaryError, InputFileError, unknown_choice
from .rules import RULES

TYPES = ("string", "float", "integer", "binary", "category")
NUMERIC_TYPES = ("float", "integer", "binary")
ROLES = ("id", "group", "outcome", "exposure", "covariate", "path", "qc", "measurement_se")
SOURCES = ("questionnaire", "segmentation", "derived", "input")
PRESENCE = ("required", "optional")
MISSING = ("error", "warn", "allowed")
SEVERITIES = ("error", "warning")

_COLUMN_FIELDS = {
    "label", "description", "type", "unit", "min", "max", "warn_min", "warn_max", "levels",
    "role", "source", "tables", "missing", "unique", "missing_codes", "primary", "survival_default",
}


@dataclass(frozen=True)
class Column:
    """One column of the dictionary (see the field notes in data_dictionary.yaml)."""

    name: str
    label: str
    description: str
    type: str
    role: str
    source: str
    tables: dict[str, str]
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    warn_min: float | None = None
    warn_max: float | None = None
    levels: tuple[str, ...] | None = None
    missing: str = "error"
    unique: bool = False
    missing_codes: tuple[float, ...] = ()
    primary: bool = False
    survival_default: bool = False

    @property
    def nullable(self) -> bool:
        """Whether missing values are allowed (``missing`` is warn or allowed)."""
        return self.missing != "error"

    @property
    def is_numeric(self) -> bool:
        return self.type in NUMERIC_TYPES

    def label_with_unit(self) -> str:
        """``"Age (years)"``; the bare label for unitless columns."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    def required_in(self, table: str) -> bool:
        return self.tables.get(table) == "required"


@dataclass(frozen=True)
class Rule:
    """A cross-field rule; its check is implemented in :mod:`backpain_epi.validation`."""

    name: str
    description: str
    severity: str


@dataclass(frozen=True)
class DataDictionary:
    """The parsed dictionary. Build it with :func:`load_dictionary`."""

    columns: dict[str, Column]
    tables: dict[str, dict[str, Any]]
    rules: tuple[Rule, ...] = ()
    missing_markers: tuple[str, ...] = ()
    path: Path | None = field(default=None, compare=False)

    def __getitem__(self, name: str) -> Column:
        try:
            return self.columns[name]
        except KeyError:
            raise DictionaryError(unknown_choice("column", name, self.columns)) from None

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    def label(self, name: str, *, unit: bool = True) -> str:
        """Label of column ``name``, with its unit in parentheses unless ``unit=False``."""
        column = self[name]
        return column.label_with_unit() if unit else column.label

    def names(self, *, table: str | None = None, role: str | None = None, required: bool | None = None) -> list[str]:
        """Column names in dictionary order, filtered by table, role and presence."""
        if table is not None:
            self.check_table(table)
        if role is not None and role not in ROLES:
            raise DictionaryError(unknown_choice("role", role, ROLES))
        out = []
        for c in self.columns.values():
            if table is not None and table not in c.tables:
                continue
            if role is not None and c.role != role:
                continue
            if required is not None and table is not None and c.required_in(table) != required:
                continue
            out.append(c.name)
        return out

    @property
    def id_column(self) -> str:
        """The participant id column (role ``id``)."""
        return self.names(role="id")[0]

    @property
    def primary_exposures(self) -> list[str]:
        """The exposures the analysis is about (``primary: true``): those a phantom plants and a report leads with."""
        return [c.name for c in self.columns.values() if c.role == "exposure" and c.primary]

    @property
    def survival_exposure(self) -> str:
        """Default exposure of the Kaplan–Meier curves (``survival_default: true``; else the first primary exposure)."""
        marked = [c.name for c in self.columns.values() if c.survival_default]
        if marked:
            return marked[0]
        if not self.primary_exposures:
            raise DictionaryError("the dictionary marks no exposure as primary (primary: true) or as survival_default.")
        return self.primary_exposures[0]

    def check_table(self, table: str) -> None:
        if table not in self.tables:
            raise DictionaryError(unknown_choice("table", table, self.tables))


def load_dictionary(path: str | os.PathLike | None = None) -> DataDictionary:
    """Load and check a data dictionary.

    Parameters
    ----------
    path
        A dictionary YAML file; by default the one shipped with the package.

    Raises
    ------
    InputFileError
        The file is missing or is not YAML.
    DictionaryError
        Entries are malformed; the message has one line per broken column or
        rule, naming it and the field.
    """
    if path is None:
        return _default_dictionary()
    return _load(Path(path))


@functools.lru_cache(maxsize=1)
def _default_dictionary() -> DataDictionary:
    with resources.as_file(resources.files(__package__) / "data_dictionary.yaml") as p:
        return _load(Path(p))


def _load(path: Path) -> DataDictionary:
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory; give the path of a dictionary YAML file.")
    if not path.is_file():
        raise InputFileError(f"{path}: no such dictionary file.")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        detail = " ".join(str(exc).split())  # one line
        raise InputFileError(f"{path}: not a readable YAML file ({detail}).") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("columns"), dict) or not raw["columns"]:
        raise DictionaryError(f"{path}: a dictionary needs a 'columns:' mapping of column names to definitions.")
    tables = raw.get("tables") or {}
    default_codes = tuple(raw.get("missing_codes") or ())
    columns, rules, problems = {}, [], []
    for name, spec in raw["columns"].items():  # collect every broken entry, then report them all
        try:
            columns[name] = _column(name, spec, tables, default_codes, path)
        except DictionaryError as exc:
            problems.append(str(exc))
    for spec in raw.get("rules") or ():
        try:
            rules.append(_rule(spec, path))
        except DictionaryError as exc:
            problems.append(str(exc))
    if problems:
        raise DictionaryError("\n".join(problems))
    rules = tuple(rules)
    markers = tuple(str(m) for m in raw.get("missing_markers") or ())
    return DataDictionary(columns=columns, tables=tables, rules=rules, missing_markers=markers, path=path)


def _column(name: str, spec: Any, tables: dict, default_codes: tuple, path: Path) -> Column:
    where = f"{path}: column '{name}'"
    if not isinstance(spec, dict):
        raise DictionaryError(f"{where}: expected a mapping of fields, got {type(spec).__name__}.")
    extra = set(spec) - _COLUMN_FIELDS
    if extra:
        bad = sorted(extra)[0]
        raise DictionaryError(f"{where}: {unknown_choice('field', bad, _COLUMN_FIELDS)}")
    for key in ("label", "description", "type", "role", "source", "tables"):
        if key not in spec:
            raise DictionaryError(f"{where}: missing field '{key}'.")
    for key, allowed in (("type", TYPES), ("role", ROLES), ("source", SOURCES), ("missing", MISSING)):
        if key in spec and spec[key] not in allowed:
            raise DictionaryError(f"{where}: {key} {unknown_choice(key, spec[key], allowed)}")
    if not isinstance(spec["tables"], dict) or not spec["tables"]:
        raise DictionaryError(f"{where}: 'tables' must map table names to 'required' or 'optional'.")
    for table, presence in spec["tables"].items():
        if table not in tables:
            raise DictionaryError(f"{where}: {unknown_choice('table', table, tables)}")
        if presence not in PRESENCE:
            raise DictionaryError(f"{where}: table '{table}' must be 'required' or 'optional', not {presence!r}.")
    levels = spec.get("levels")
    if (spec["type"] == "category") != (levels is not None):
        raise DictionaryError(f"{where}: 'levels' is needed for type category, and only there.")
    for key in ("min", "max", "warn_min", "warn_max"):
        if key in spec and not isinstance(spec[key], (int, float)):
            raise DictionaryError(f"{where}: '{key}' must be a number, not {spec[key]!r}.")
    codes = spec.get("missing_codes", default_codes if spec["type"] in NUMERIC_TYPES else ())
    return Column(
        name=name,
        label=str(spec["label"]),
        description=str(spec["description"]),
        type=spec["type"],
        role=spec["role"],
        source=spec["source"],
        tables=dict(spec["tables"]),
        unit=spec.get("unit"),
        min=spec.get("min"),
        max=spec.get("max"),
        warn_min=spec.get("warn_min"),
        warn_max=spec.get("warn_max"),
        levels=tuple(str(v) for v in levels) if levels is not None else None,
        missing=spec.get("missing", "error"),
        unique=bool(spec.get("unique", False)),
        missing_codes=tuple(codes),
        primary=bool(spec.get("primary", False)),
        survival_default=bool(spec.get("survival_default", False)),
    )


def _rule(spec: Any, path: Path) -> Rule:
    if not isinstance(spec, dict) or {"name", "description", "severity"} - set(spec):
        raise DictionaryError(f"{path}: each rule needs 'name', 'description' and 'severity'; got {spec!r}.")
    if spec["name"] not in RULES:
        raise DictionaryError(f"{path}: {unknown_choice('rule', spec['name'], RULES)} Rules are implemented in backpain_epi.rules.RULES.")
    if spec["severity"] not in SEVERITIES:
        raise DictionaryError(f"{path}: rule '{spec['name']}': severity {unknown_choice('severity', spec['severity'], SEVERITIES)}")
    return Rule(name=spec["name"], description=spec["description"], severity=spec["severity"])
