"""Validate a table against the data dictionary and report every problem.

The per-column checks (presence, missing values, uniqueness, type, whole
numbers, 0/1 coding, levels, ranges) form a pandera schema generated from the
dictionary and run lazily, so that every failure is collected; the cross-field
rules named in the dictionary's ``rules:`` are plain vectorised functions below.
Nothing here changes the data: :func:`validate_table` only reports, and
:func:`conform_table` turns a table that passed into the dictionary's types.
"""

from __future__ import annotations

import difflib
import os
import re
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import pandera.pandas as pa

from .dictionary import Column, DataDictionary, load_dictionary
from .errors import DataQualityWarning, DataValidationError, DictionaryError
from .tableio import read_table

MAX_SHOWN = 5  # offending values and row ids shown per problem


@dataclass(frozen=True)
class Problem:
    """One broken rule: which column, which rule, how many rows, examples."""

    severity: str
    column: str | None
    rule: str
    message: str
    n_rows: int = 0
    values: tuple = ()
    row_ids: tuple = ()

    def format(self) -> str:
        where = self.column if self.column is not None else "(table)"
        text = f"{self.severity.upper():7s} {where} [{self.rule}]: {self.message}"
        if self.values:
            more = len(self.values) == MAX_SHOWN and self.n_rows > MAX_SHOWN
            text += f"; values: {', '.join(map(_show, self.values))}{', …' if more else ''}"
        if self.row_ids:
            text += f"; rows: {', '.join(map(str, self.row_ids))}{', …' if self.n_rows > len(self.row_ids) else ''}"
        return text


@dataclass
class ValidationReport:
    """All problems found in one table; ``ok`` when there is no error."""

    table: str
    n_rows: int
    n_columns: int
    source: str | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def headline(self) -> str:
        name = self.source or "The table"
        verdict = "passes" if self.ok else "fails"
        return (
            f"{name} {verdict} validation as a {self.table} table: {self.n_rows:,} rows, {self.n_columns} columns, "
            f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)."
        )

    def format(self) -> str:
        """The headline followed by one line per problem, errors first."""
        ordered = self.errors + self.warnings
        return "\n".join([self.headline(), *(p.format() for p in ordered)])

    def to_frame(self) -> pd.DataFrame:
        """One row per problem (severity, column, rule, message, n_rows, values, row_ids)."""
        rows = [{**asdict(p), "values": "; ".join(map(_show, p.values)), "row_ids": "; ".join(map(str, p.row_ids))} for p in self.problems]
        return pd.DataFrame(rows, columns=["severity", "column", "rule", "message", "n_rows", "values", "row_ids"])

    def raise_for_errors(self) -> None:
        """Raise :class:`DataValidationError` if there is any error."""
        if not self.ok:
            raise DataValidationError(self)


def validate_table(
    df: pd.DataFrame,
    table: str = "cohort",
    dictionary: DataDictionary | None = None,
    *,
    source: str | None = None,
) -> ValidationReport:
    """Check ``df`` against the dictionary's definition of ``table``.

    Parameters
    ----------
    df
        The table as read (text columns are parsed here, not before).
    table
        Which table of the dictionary ``df`` is: ``"cohort"``, ``"exposures"``
        or ``"manifest"``.
    dictionary
        Defaults to the package's dictionary.
    source
        Name shown in the report (usually the file path).

    Returns
    -------
    ValidationReport
        Every problem, with the column, the rule, the number of rows, the first
        offending values and the first participant ids (or row numbers).
    """
    return _Checked.run(df, table, dictionary or load_dictionary(), source).report


def conform_table(df: pd.DataFrame, table: str = "cohort", dictionary: DataDictionary | None = None) -> pd.DataFrame:
    """Return a copy of a table that passed validation, in the dictionary's types.

    Missing-value codes become missing; ``float`` columns become float64,
    ``integer`` and ``binary`` nullable Int64, ``category`` an ordered-as-listed
    pandas Categorical, ``string`` Python strings. Columns the dictionary does
    not define are kept, unchanged, after the defined ones.

    Raises
    ------
    DataValidationError
        The table does not pass :func:`validate_table`.
    """
    checked = _Checked.run(df, table, dictionary or load_dictionary())
    checked.report.raise_for_errors()
    return checked.conformed()


def load_table(
    path: str | os.PathLike,
    table: str = "cohort",
    dictionary: DataDictionary | None = None,
    *,
    sep: str | None = None,
    encoding: str = "utf-8",
) -> tuple[pd.DataFrame, ValidationReport]:
    """Read, validate and conform a table file in one step.

    Warnings in the report are also issued as :class:`DataQualityWarning`.

    Raises
    ------
    InputFileError
        The file cannot be read (see :func:`backpain_epi.tableio.read_table`).
    DataValidationError
        The table breaks the dictionary; its ``report`` lists every problem.
    """
    raw = read_table(path, sep=sep, encoding=encoding)
    checked = _Checked.run(raw, table, dictionary or load_dictionary(), str(path))
    report = checked.report
    report.raise_for_errors()
    if report.warnings:
        warnings.warn(f"{report.headline()} Run `backpain-epi validate {path}` to list them.", DataQualityWarning, stacklevel=2)
    return checked.conformed(), report


@dataclass
class _Checked:
    """One validation pass: the report, plus the parsed values that conforming reuses.

    Each numeric column is parsed once (``numbers``), with missing-value codes
    already turned into NaN; every check and the final cast read from it.
    """

    df: pd.DataFrame
    columns: list[Column]
    numbers: dict[str, pd.Series]
    report: ValidationReport

    @classmethod
    def run(cls, df: pd.DataFrame, table: str, dd: DataDictionary, source: str | None = None) -> "_Checked":
        dd.check_table(table)
        df = df.reset_index(drop=True)
        report = ValidationReport(table=table, n_rows=len(df), n_columns=df.shape[1], source=source)
        ids = df["participant_id"] if "participant_id" in df else None
        columns = [dd[name] for name in dd.names(table=table)]
        numbers = {c.name: _numbers(df[c.name]) for c in columns if c.is_numeric and c.name in df}
        df = _apply_missing_codes(df, columns, numbers, ids, report.problems)
        for severity, schema in (("error", _error_schema(columns, table, numbers)), ("warning", _warning_schema(columns, numbers))):
            report.problems += _run_schema(schema, df, severity, dd, ids)
        report.problems += _missing_values(df, columns, ids)
        report.problems += _cross_field_problems(df, numbers, dd, table, ids)
        return cls(df, columns, numbers, report)

    def conformed(self) -> pd.DataFrame:
        out = {c.name: _cast(self.df[c.name], c, self.numbers.get(c.name)) for c in self.columns if c.name in self.df}
        out |= {name: self.df[name] for name in self.df.columns if name not in out}
        return pd.DataFrame(out)


# --- per-column checks: a pandera schema generated from the dictionary -------

def _numbers(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce")


def _error_schema(columns: list[Column], table: str, numbers: dict[str, pd.Series]) -> pa.DataFrameSchema:
    """Checks receive the column as given (pandera drops nulls where they are
    allowed) and read the parsed values of the same rows from ``numbers``."""
    spec = {}
    for c in columns:
        checks = []
        if c.is_numeric and c.name in numbers:
            x = numbers[c.name]
            checks.append(pa.Check(lambda s, x=x: s.isna() | x.reindex(s.index).notna(), name="type"))
            if c.type == "integer":
                checks.append(pa.Check(lambda s, x=x: ~((x.reindex(s.index) % 1) > 0), name="whole_number"))
            if c.type == "binary":
                checks.append(pa.Check(_in_values(x, [0, 1]), name="binary"))
            if c.min is not None or c.max is not None:
                checks.append(pa.Check(_outside(x, c.min, c.max), name="range"))
        if c.type == "category":
            levels = set(c.levels)
            checks.append(pa.Check(lambda s, levels=levels: s.isna() | s.astype(str).isin(levels), name="level"))
        spec[c.name] = pa.Column(None, checks=checks, nullable=c.nullable, unique=c.unique, required=c.required_in(table))
    return pa.DataFrameSchema(spec)


def _warning_schema(columns: list[Column], numbers: dict[str, pd.Series]) -> pa.DataFrameSchema:
    spec = {}
    for c in columns:
        checks = []
        if c.name in numbers and (c.warn_min is not None or c.warn_max is not None):
            checks.append(pa.Check(_outside(numbers[c.name], c.warn_min, c.warn_max), name="plausible_range"))
        if checks:
            spec[c.name] = pa.Column(None, checks=checks, nullable=True, required=False)
    return pa.DataFrameSchema(spec)


def _in_values(numbers: pd.Series, allowed: list) -> Callable[[pd.Series], pd.Series]:
    def check(s: pd.Series) -> pd.Series:
        x = numbers.reindex(s.index)
        return x.isna() | x.isin(allowed)

    return check


def _outside(numbers: pd.Series, lo: float | None, hi: float | None) -> Callable[[pd.Series], pd.Series]:
    def check(s: pd.Series) -> pd.Series:
        x = numbers.reindex(s.index)
        bad = pd.Series(False, index=s.index)
        if lo is not None:
            bad |= x < lo
        if hi is not None:
            bad |= x > hi
        return ~bad

    return check


def _run_schema(schema, df, severity, dd, ids) -> list[Problem]:
    if not schema.columns:
        return []
    try:
        schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        return []
    problems = []
    for (column, check), group in cases.groupby(["column", "check"], sort=False, dropna=False):
        rows = group["index"].dropna().astype(int).unique()
        values = tuple(pd.unique(group["failure_case"].dropna()))
        column = None if pd.isna(column) else column
        if check == "column_in_dataframe":  # pandera names the missing column as the failure case
            for name in values:
                problems.append(Problem(severity, name, "required_column", _missing_column_message(name, df.columns)))
            continue
        c = dd[column]
        problems.append(Problem(
            severity=severity,
            column=column,
            rule=_RULE_NAMES.get(check, check),
            message=_column_message(check, c, len(rows), values),
            n_rows=len(rows),
            values=values[:MAX_SHOWN] if check != "not_nullable" else (),
            row_ids=_row_ids(rows, ids),
        ))
    return problems


_RULE_NAMES = {"not_nullable": "missing_value", "field_uniqueness": "duplicate"}


def _column_message(check: str, c: Column, n: int, values: tuple) -> str:
    unit = f" {c.unit}" if c.unit else ""
    rows = f"{n:,} row{'s' if n != 1 else ''}"
    if check == "not_nullable":
        return f"{rows} without a value; this column may not be missing"
    if check == "missing":
        return f"{rows} without a value; analyses that use {c.name} leave them out"
    if check == "field_uniqueness":
        return f"{rows} share a value with another row; {c.name} must be unique"
    if check == "type":
        hint = " (decimal commas? write 1.5, not 1,5)" if any(re.fullmatch(r"-?\d+,\d+", str(v)) for v in values) else ""
        hint = " (code no = 0, yes = 1)" if c.type == "binary" else hint
        return f"{rows} with values that are not numbers{hint}"
    if check == "whole_number":
        return f"{rows} with values that are not whole numbers"
    if check == "binary":
        return f"{rows} with values other than 0 and 1 (code no = 0, yes = 1)"
    if check == "range":
        return f"{rows} outside the allowed range {_range(c.min, c.max)}{unit}"
    if check == "plausible_range":
        return f"{rows} outside the plausible range {_range(c.warn_min, c.warn_max)}{unit}; check them"
    if check == "level":
        close = difflib.get_close_matches(str(values[0]).lower(), c.levels, n=1) if values else []
        hint = f" (did you mean '{close[0]}' for '{values[0]}'?)" if close else ""
        return f"{rows} with values that are not one of: {', '.join(c.levels)}{hint}"
    return f"{rows} fail check {check}"


def _missing_column_message(name: str, present) -> str:
    close = difflib.get_close_matches(name, [str(p) for p in present], n=1, cutoff=0.6)
    lower = [p for p in present if str(p).strip().lower() == name]
    hint = f"; the table has '{(lower or close)[0]}': rename it to '{name}'" if (lower or close) else ""
    return f"required column '{name}' is missing{hint}"


def _range(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f"{lo:g}–{hi:g}"
    return f"≥ {lo:g}" if lo is not None else f"≤ {hi:g}"


# --- missing-value codes and cross-field rules -------------------------------

def _apply_missing_codes(df, columns: list[Column], numbers: dict[str, pd.Series], ids, problems: list) -> pd.DataFrame:
    """Return ``df`` with missing-value codes set to NaN (a copy if any); NaN them in ``numbers`` too."""
    out = df
    for c in columns:
        name = c.name
        if name not in numbers or not c.missing_codes:
            continue
        coded = numbers[name].isin(c.missing_codes)
        if coded.any():
            if out is df:
                out = df.copy()
            rows = np.flatnonzero(coded.to_numpy())
            out.loc[coded, name] = np.nan
            numbers[name] = numbers[name].mask(coded)
            problems.append(Problem(
                "warning", name, "missing_code",
                f"{len(rows):,} row(s) hold a missing-value code ({', '.join(f'{v:g}' for v in c.missing_codes)}) and are read as missing",
                n_rows=len(rows), values=tuple(pd.unique(df[name][coded]))[:MAX_SHOWN], row_ids=_row_ids(rows, ids),
            ))
    return out


def _missing_values(df: pd.DataFrame, columns: list[Column], ids) -> list[Problem]:
    """Warnings for missing values in ``missing: warn`` columns (pandera skips nulls there)."""
    problems = []
    for c in columns:
        if c.missing == "warn" and c.name in df:
            rows = np.flatnonzero(df[c.name].isna().to_numpy())
            if len(rows):
                problems.append(Problem("warning", c.name, "missing", _column_message("missing", c, len(rows), ()), len(rows), (), _row_ids(rows, ids)))
    return problems


def _onset_not_after_age(df, x):
    bad = x["cbp_onset_age"] > x["age"]
    return bad, "cbp_onset_age", "onset after the age at examination"


def _onset_only_with_cbp(df, x):
    bad = x["cbp_onset_age"].notna() & (x["cbp"] == 0)
    return bad, "cbp_onset_age", "an onset age is given while cbp = 0"


def _onset_missing_for_case(df, x):
    bad = df["cbp_onset_age"].isna() & (x["cbp"] == 1)
    return bad, "cbp_onset_age", "cbp = 1 without an onset age; left out of the survival analysis"


# rule name -> (columns it needs, check(df, parsed numbers) returning (bad rows, column, message))
_CROSS_FIELD: dict[str, tuple[tuple[str, ...], Callable]] = {
    "onset_not_after_age": (("cbp_onset_age", "age"), _onset_not_after_age),
    "onset_only_with_cbp": (("cbp_onset_age", "cbp"), _onset_only_with_cbp),
    "onset_missing_for_case": (("cbp_onset_age", "cbp"), _onset_missing_for_case),
}


def _cross_field_problems(df, numbers, dd: DataDictionary, table: str, ids) -> list[Problem]:
    problems = []
    for rule in dd.rules:
        if rule.name == "unknown_column":
            defined = set(dd.names(table=table))
            for name in (c for c in df.columns if c not in defined):
                where = "another table" if name in dd else "the dictionary"
                problems.append(Problem(rule.severity, str(name), rule.name, f"not a column of the {table} table in {where}; it is ignored"))
            continue
        if rule.name not in _CROSS_FIELD:
            raise DictionaryError(f"dictionary rule '{rule.name}' has no implementation; known rules: {', '.join(sorted(_CROSS_FIELD) + ['unknown_column'])}.")
        needed, check = _CROSS_FIELD[rule.name]
        if not all(c in numbers for c in needed):
            continue
        bad, column, message = check(df, numbers)
        rows = np.flatnonzero(bad.fillna(False).to_numpy())
        if len(rows):
            values = tuple(
                ", ".join(f"{c}={df[c].iloc[i]}" for c in needed) for i in rows[:MAX_SHOWN]
            )
            problems.append(Problem(rule.severity, column, rule.name, f"{len(rows):,} row(s): {message}", len(rows), values, _row_ids(rows, ids)))
    return problems


def _row_ids(rows, ids) -> tuple:
    rows = list(rows)[:MAX_SHOWN]
    if ids is not None:
        shown = [ids.iloc[i] for i in rows]
        if all(isinstance(v, str) for v in shown):
            return tuple(shown)
    return tuple(f"row {i + 1}" for i in rows)


def _cast(s: pd.Series, c: Column, numbers: pd.Series | None) -> pd.Series:
    if c.type == "float":
        return numbers.astype("float64")
    if c.type in ("integer", "binary"):
        return numbers.astype("Int64")
    if c.type == "category":
        return pd.Categorical(s.where(s.isna(), s.astype(str)), categories=list(c.levels))
    return s.where(s.isna(), s.astype(str))


def _show(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return f"{v:g}"
    return repr(v) if isinstance(v, str) and v.strip() != v else str(v)
