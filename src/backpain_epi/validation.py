"""Validate a table against the data dictionary and report every problem.

One pass, in this order:

1. the table's shape: duplicated column names, and columns whose stored type
   cannot hold what the dictionary defines (a date where a number belongs);
2. missing-value markers (``NA``, ``.``, ...) and codes (``-9``, ...) declared in
   the dictionary are read as missing, and counted;
3. per-column checks (presence, missing values, uniqueness, text, numbers that
   parse and are finite, whole numbers, 0/1 coding, levels, stray spaces,
   allowed and plausible ranges) run as a pandera schema generated from the
   dictionary, lazily, so that every failure is collected;
4. the cross-field rules named in the dictionary's ``rules:``, vectorised
   functions registered in :data:`backpain_epi.rules.RULES`.

Nothing here changes the caller's data: :func:`validate_table` only reports, and
:func:`conform_table` turns a table that passed into the dictionary's types.

An analysis that reads only some columns passes them as ``columns=``: errors in
the other columns then become warnings (:meth:`ValidationReport.scoped`; the
``validate`` command keeps them as errors), and ``allow_row_errors=True`` lets
errors confined to single rows of the used columns through, so that the
analysis can leave those rows out and count them
(:meth:`ValidationReport.invalid_rows`).
"""

from __future__ import annotations

import difflib
import os
import re
import warnings
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np
import pandas as pd
import pandera.pandas as pa

from .dictionary import Column, DataDictionary, load_dictionary
from .errors import DataQualityWarning, DataValidationError
from .rules import RULES
from .tableio import read_table

MAX_SHOWN = 5  # offending values and row ids shown per problem
#: Key of ``DataFrame.attrs`` under which an analysis table lists the rows to leave out: :meth:`ValidationReport.invalid_rows`.
INVALID_ROWS = "invalid_rows"
#: Rules whose rows cannot be left out one by one (a duplicated id: which copy is right?).
TABLE_RULES = frozenset({"duplicate", "duplicate_column", "required_column"})
#: The hint of a refused table whose errors sit in single rows of the columns used.
EXCLUDE_HINT = ("The errors marked (row) sit in single rows; to leave those rows out of the analysis, counted by rule "
                "in the participant flow, pass exclude_invalid_rows=True.")


@dataclass(frozen=True)
class Problem:
    """One broken rule: which column, which rule, how many rows, examples.

    ``row_ids`` are the first offending rows in table order, as participant ids
    where those identify rows, else as ``"row N"`` (1-based data rows); ``rows``
    are all of them, as 0-based positions. ``outside`` marks an error turned
    into a warning because the analysis does not use its column.
    """

    severity: str
    column: str | None
    rule: str
    message: str
    n_rows: int = 0
    values: tuple = ()
    row_ids: tuple = ()
    rows: tuple = field(default=(), repr=False, compare=False)
    outside: bool = False

    @property
    def in_rows(self) -> bool:
        """Whether the problem sits in single rows, which an analysis may leave out (not a missing or duplicated column)."""
        return bool(self.rows) and self.rule not in TABLE_RULES

    def format(self) -> str:
        where = self.column if self.column is not None else "(table)"
        kind = " (an error, in a column this analysis does not use)" if self.outside else " (row)" if self.severity == "error" and self.in_rows else ""
        text = f"{self.severity.upper():7s} {where} [{self.rule}]{kind}: {self.message}"
        if self.values:
            more = len(self.values) == MAX_SHOWN  # values are capped there, so more may exist
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
        article = "an" if self.table[0] in "aeiou" else "a"
        return (
            f"{name} {verdict} validation as {article} {self.table} table: {self.n_rows:,} rows, {self.n_columns} columns, "
            f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)."
        )

    def format(self) -> str:
        """The headline followed by one line per problem, errors first."""
        return "\n".join([self.headline(), *(p.format() for p in self.errors + self.warnings)])

    def to_frame(self) -> pd.DataFrame:
        """One row per problem (severity, column, rule, message, n_rows, values, row_ids)."""
        rows = [{**asdict(p), "values": "; ".join(map(_show, p.values)), "row_ids": "; ".join(map(str, p.row_ids))} for p in self.problems]
        return pd.DataFrame(rows, columns=["severity", "column", "rule", "message", "n_rows", "values", "row_ids"])

    def raise_for_errors(self, *, allow_row_errors: bool = False) -> None:
        """Raise :class:`DataValidationError` if there is any error.

        With ``allow_row_errors``, errors that sit in single rows (:attr:`Problem.in_rows`)
        do not raise: the caller leaves those rows out (:meth:`invalid_rows`). Without it,
        a refused table with such errors says how to leave them out.
        """
        blocking = [p for p in self.errors if not (allow_row_errors and p.in_rows)]
        if blocking:
            hint = EXCLUDE_HINT if not allow_row_errors and any(p.in_rows for p in blocking) else None
            raise DataValidationError(self, hint=hint)

    def scoped(self, columns) -> "ValidationReport":
        """The report for an analysis that reads only ``columns``: errors in other columns become warnings.

        They stay in the report, marked ``outside``; problems of the table as a whole
        (no column) keep their severity.
        """
        keep = set(columns)
        problems = [replace(p, severity="warning", outside=True) if p.severity == "error" and p.column is not None
                    and p.column not in keep else p for p in self.problems]
        return replace(self, problems=problems)

    def invalid_rows(self) -> dict[str, tuple[str, np.ndarray]]:
        """The rows of each error that sits in single rows: ``"invalid <column> (<rule>)"`` -> (column, 0-based positions)."""
        return {f"invalid {p.column} ({p.rule})": (p.column, np.asarray(p.rows, dtype=np.int64)) for p in self.errors if p.in_rows}

    def notices(self) -> list[str]:
        """One line per problem an analysis lets through: each error outside its columns, then the count of warnings."""
        name = self.source or "the table"
        lines = [f"{name}: {p.column} [{p.rule}]: {p.message}; an error, but not in a column this analysis uses, so it does "
                 "not block it (`backpain-epi validate` refuses the table)" for p in self.warnings if p.outside]
        if any(not p.outside for p in self.warnings):
            lines.append(f"{self.headline()} Run `backpain-epi validate {self.source or 'TABLE'}` to list them.")
        return lines


def validate_table(
    df: pd.DataFrame,
    table: str = "cohort",
    dictionary: DataDictionary | None = None,
    *,
    source: str | None = None,
    columns=None,
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
    columns
        The columns an analysis reads: errors in other columns are reported as
        warnings (:meth:`ValidationReport.scoped`). ``None``: every column.

    Returns
    -------
    ValidationReport
        Every problem, with the column, the rule, the number of rows, the first
        offending values and the first participant ids (or row numbers).
    """
    report = _Checked.run(df, table, dictionary or load_dictionary(), source).report
    return report if columns is None else report.scoped(columns)


def conform_table(df: pd.DataFrame, table: str = "cohort", dictionary: DataDictionary | None = None, *,
                  columns=None, allow_row_errors: bool = False) -> pd.DataFrame:
    """Return a copy of a table that passed validation, in the dictionary's types.

    Missing-value markers and codes become missing; ``float`` columns become
    float64, ``integer`` and ``binary`` nullable Int64, ``category`` a pandas
    Categorical with the dictionary's levels in order, ``string`` Python
    strings (object dtype). Columns the dictionary does not define for
    ``table`` are kept, unchanged, after the defined ones. ``columns`` and
    ``allow_row_errors`` as in :func:`load_table`.

    Raises
    ------
    DataValidationError
        The table does not pass :func:`validate_table`.
    """
    return load_table(df, table, dictionary, columns=columns, allow_row_errors=allow_row_errors, notify=False)[0]


def load_table(
    data: str | os.PathLike | pd.DataFrame,
    table: str = "cohort",
    dictionary: DataDictionary | None = None,
    *,
    sep: str | None = None,
    encoding: str = "utf-8",
    decimal: str = ".",
    columns=None,
    allow_row_errors: bool = False,
    notify: bool = True,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Read (a file) or take (a DataFrame), validate and conform a table in one step.

    Parameters
    ----------
    data
        A table file (read by :func:`backpain_epi.tableio.read_table` with ``sep``,
        ``encoding`` and ``decimal``) or a DataFrame as read.
    columns
        The columns the analysis reads; errors in other columns become warnings
        (:meth:`ValidationReport.scoped`). ``None``: every column blocks.
    allow_row_errors
        Let errors that sit in single rows of ``columns`` through (the caller leaves
        those rows out: :meth:`ValidationReport.invalid_rows`).
    notify
        Issue :meth:`ValidationReport.notices` as :class:`DataQualityWarning` (one per
        error outside ``columns``, one counting the warnings).

    Raises
    ------
    InputFileError
        The file cannot be read (see :func:`backpain_epi.tableio.read_table`).
    DataValidationError
        The table breaks the dictionary; its ``report`` lists every problem.
    """
    source = None if isinstance(data, pd.DataFrame) else str(data)
    raw = data if source is None else read_table(data, sep=sep, encoding=encoding, decimal=decimal)
    checked = _Checked.run(raw, table, dictionary or load_dictionary(), source)
    report = checked.report if columns is None else checked.report.scoped(columns)
    report.raise_for_errors(allow_row_errors=allow_row_errors)
    if notify:
        for line in report.notices():
            warnings.warn(line, DataQualityWarning, stacklevel=2)
    return checked.conformed(), report


@dataclass
class _Checked:
    """One validation pass: the report, plus the parsed values that conforming reuses.

    Each numeric column is parsed once (``numbers``: finite floats, NaN where
    missing or unparseable); every check and the final cast read from it.
    """

    df: pd.DataFrame
    columns: list[Column]
    numbers: dict[str, pd.Series]
    report: ValidationReport

    @classmethod
    def run(cls, df: pd.DataFrame, table: str, dd: DataDictionary, source: str | None = None) -> "_Checked":
        dd.check_table(table)
        report = ValidationReport(table=table, n_rows=len(df), n_columns=df.shape[1], source=source)
        df = _unique_columns(df.reset_index(drop=True), report.problems)
        key = dd.tables[table].get("key")
        rows = _RowNames(df, key)
        defined = [dd[name] for name in dd.names(table=table)]
        usable = [c for c in defined if c.name in df and _storage_ok(df[c.name], c, rows, report.problems)]
        numbers = {c.name: _numbers(df[c.name]) for c in usable if c.is_numeric}
        df = _read_missing(df, usable, dd.missing_markers, numbers, rows, report.problems)
        absent = [c for c in defined if c.name not in df]
        report.problems += _run_schema(_error_schema(usable + absent, table, numbers), df, "error", dd, rows)
        report.problems += _run_schema(_warning_schema(usable, numbers), df, "warning", dd, rows)
        report.problems += _missing_values(df, usable, rows)
        report.problems += _rule_problems(df, {c.name for c in usable}, numbers, dd, table, rows)
        return cls(df, usable, numbers, report)

    def conformed(self) -> pd.DataFrame:
        out = {c.name: _cast(self.df[c.name], c, self.numbers.get(c.name)) for c in self.columns}
        out |= {name: self.df[name] for name in self.df.columns if name not in out}
        return pd.DataFrame(out)


class _RowNames:
    """Names offending rows: by the table's key (participant id) where it identifies them."""

    def __init__(self, df: pd.DataFrame, key: str | None):
        self.key = key
        self.ids = df[key] if key and key in df else None

    def __call__(self, rows, column: str | None = None) -> tuple:
        """The first rows in table order; rows of the key column itself by number."""
        rows = np.sort(np.asarray(rows, dtype=int))[:MAX_SHOWN]
        if self.ids is None or column == self.key:
            return tuple(f"row {i + 1}" for i in rows)
        return tuple(v if isinstance(v := self.ids.iloc[i], str) and v else f"row {i + 1}" for i in rows)


# --- 1. shape and storage ------------------------------------------------------

def _unique_columns(df: pd.DataFrame, problems: list) -> pd.DataFrame:
    duplicated = df.columns.duplicated()
    if duplicated.any():
        names = list(dict.fromkeys(df.columns[duplicated]))
        problems.append(Problem("error", str(names[0]), "duplicate_column",
                                f"column name(s) {', '.join(map(repr, names))} appear more than once; only the first copy was checked"))
        df = df.loc[:, ~duplicated]
    return df


def _storage_ok(s: pd.Series, c: Column, rows: _RowNames, problems: list) -> bool:
    """Whether the stored dtype can hold the dictionary's type; a problem if not."""
    dtype = s.dtype
    if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        return True  # text, parsed by the checks
    if isinstance(dtype, pd.CategoricalDtype):
        ok = c.type in ("string", "category") or (c.is_numeric and pd.api.types.is_numeric_dtype(dtype.categories.dtype))
    elif pd.api.types.is_bool_dtype(dtype):
        ok = c.type == "binary"
    elif pd.api.types.is_numeric_dtype(dtype):
        ok = c.is_numeric
    else:  # datetime, timedelta, period, interval, ...
        ok = False
    if not ok:
        problems.append(Problem("error", c.name, "type", f"stored as {dtype}; the dictionary defines it as {_type_words(c)}"))
    return ok


def _type_words(c: Column) -> str:
    return {"string": "text (store it as text, e.g. df[col].astype(str))", "float": "a number", "integer": "a whole number",
            "binary": "0/1", "category": f"one of {', '.join(c.levels or ())}"}[c.type]


def _read_missing(df: pd.DataFrame, columns: list[Column], markers: tuple[str, ...], numbers: dict[str, pd.Series],
                  rows: _RowNames, problems: list) -> pd.DataFrame:
    """Return ``df`` with missing-value markers (text) and codes (numeric) set to NaN, each
    counted; the codes are set to NaN in ``numbers`` too (markers never parse as numbers)."""
    out = df
    for c in columns:
        s = df[c.name]
        coded = pd.Series(False, index=s.index)
        if markers and (pd.api.types.is_object_dtype(s.dtype) or pd.api.types.is_string_dtype(s.dtype)):
            coded |= s.isin(markers).fillna(False).astype(bool)
        if c.missing_codes and c.name in numbers:
            coded |= numbers[c.name].isin(c.missing_codes)
        if coded.any():
            out = df.copy() if out is df else out
            out.loc[coded, c.name] = np.nan
            if c.name in numbers:
                numbers[c.name] = numbers[c.name].mask(coded)
            which = ", ".join([repr(m) for m in markers] + [f"{v:g}" for v in c.missing_codes])
            problems.append(Problem(
                "warning", c.name, "missing_code", f"{int(coded.sum()):,} row(s) hold a missing-value marker or code ({which}) and are read as missing",
                int(coded.sum()), tuple(pd.unique(s[coded]))[:MAX_SHOWN], rows(np.flatnonzero(coded.to_numpy()), c.name),
            ))
    return out


def _numbers(s: pd.Series) -> pd.Series:
    """Finite float values; NaN where missing, not a number, or infinite."""
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype) and not isinstance(s.dtype, pd.CategoricalDtype):
        x = s.astype(float)
    else:
        x = pd.to_numeric(s.astype(object), errors="coerce").astype(float)
    return x.where(np.isfinite(x))


# --- 3. per-column checks: a pandera schema generated from the dictionary -------

def _error_schema(columns: list[Column], table: str, numbers: dict[str, pd.Series]) -> pa.DataFrameSchema:
    """Checks receive the column as given (pandera leaves nulls out where they are
    allowed) and read the parsed values of the same rows from ``numbers``."""
    spec = {}
    for c in columns:
        checks = []
        if c.name in numbers:
            x = numbers[c.name]
            checks.append(pa.Check(lambda s, x=x: s.isna() | x.reindex(s.index).notna(), name="type"))
            if c.type == "integer":
                checks.append(pa.Check(lambda s, x=x: ~((x.reindex(s.index) % 1) > 0), name="whole_number"))
            if c.type == "binary":
                checks.append(pa.Check(_one_of(x, (0, 1)), name="binary"))
            if c.min is not None or c.max is not None:
                checks.append(pa.Check(_within(x, c.min, c.max), name="range"))
        if c.type == "string":
            checks.append(pa.Check(lambda s: s.map(lambda v: isinstance(v, str)), name="text"))
        if c.type in ("string", "category"):
            checks.append(pa.Check(lambda s: s.astype(str).str.strip() == s.astype(str), name="whitespace"))
        if c.type == "category":
            checks.append(pa.Check(lambda s, levels=set(c.levels): s.astype(str).isin(levels), name="level"))
        spec[c.name] = pa.Column(None, checks=checks, nullable=c.nullable, unique=c.unique, required=c.required_in(table))
    return pa.DataFrameSchema(spec)


def _warning_schema(columns: list[Column], numbers: dict[str, pd.Series]) -> pa.DataFrameSchema:
    spec = {
        c.name: pa.Column(None, checks=[pa.Check(_within(numbers[c.name], c.warn_min, c.warn_max), name="plausible_range")],
                          nullable=True, required=False)
        for c in columns
        if c.name in numbers and (c.warn_min is not None or c.warn_max is not None)
    }
    return pa.DataFrameSchema(spec)


def _one_of(numbers: pd.Series, allowed: tuple) -> Callable[[pd.Series], pd.Series]:
    def check(s: pd.Series) -> pd.Series:
        x = numbers.reindex(s.index)
        return x.isna() | x.isin(allowed)  # unparseable values are the type check's

    return check


def _within(numbers: pd.Series, lo: float | None, hi: float | None) -> Callable[[pd.Series], pd.Series]:
    def check(s: pd.Series) -> pd.Series:
        x = numbers.reindex(s.index)
        bad = pd.Series(False, index=s.index)
        if lo is not None:
            bad |= x < lo
        if hi is not None:
            bad |= x > hi
        return ~bad

    return check


_RULE_NAMES = {"not_nullable": "missing_value", "field_uniqueness": "duplicate"}


def _run_schema(schema: pa.DataFrameSchema, df: pd.DataFrame, severity: str, dd: DataDictionary, rows: _RowNames) -> list[Problem]:
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
        where = group["index"].dropna().astype(int).unique()
        values = tuple(pd.unique(group["failure_case"].dropna()))
        if check == "column_in_dataframe":  # pandera names the missing column as the failure case
            spare = [col for col in df.columns if col not in schema.columns]  # present but not defined here
            problems += [Problem(severity, name, "required_column", _missing_column_message(name, spare)) for name in values]
            continue
        c = dd[column]
        problems.append(Problem(
            severity=severity,
            column=column,
            rule=_RULE_NAMES.get(check, check),
            message=_column_message(check, c, len(where), values),
            n_rows=len(where),
            values=values[:MAX_SHOWN] if check != "not_nullable" else (),
            row_ids=rows(where, column),
            rows=tuple(int(i) for i in where),
        ))
    return problems


_MESSAGES = {
    "not_nullable": "{rows} without a value; this column may not be missing",
    "missing": "{rows} without a value; analyses that use {name} leave them out",
    "field_uniqueness": "{rows} share a value with another row; {name} must be unique",
    "type": "{rows} with values that are not finite numbers{hint}",
    "text": "{rows} with values that are not text",
    "whitespace": "{rows} with leading or trailing spaces; remove them (they would not match on merges)",
    "whole_number": "{rows} with values that are not whole numbers",
    "binary": "{rows} with values other than 0 and 1 (code no = 0, yes = 1)",
    "range": "{rows} outside the allowed range {allowed}{unit}",
    "plausible_range": "{rows} outside the plausible range {plausible}{unit}; check them",
    "level": "{rows} with values that are not one of: {levels}{hint}",
}


def _column_message(check: str, c: Column, n: int, values: tuple) -> str:
    hint = ""
    if check == "type" and c.type == "binary":
        hint = " (code no = 0, yes = 1)"
    elif check == "type" and any(re.fullmatch(r"-?\d+,\d+", str(v)) for v in values):
        hint = " (decimal commas? give the decimal mark, decimal=',', or write 1.5, not 1,5)"
    elif check == "level" and values:
        close = difflib.get_close_matches(str(values[0]).strip().lower(), c.levels, n=1)
        hint = f" (did you mean '{close[0]}' for '{values[0]}'?)" if close else ""
    return _MESSAGES.get(check, "{rows} fail check " + check).format(
        rows=f"{n:,} row{'s' if n != 1 else ''}", name=c.name, hint=hint, unit=f" {c.unit}" if c.unit else "",
        allowed=_range(c.min, c.max), plausible=_range(c.warn_min, c.warn_max), levels=", ".join(c.levels or ()),
    )


def _missing_column_message(name: str, present) -> str:
    present = [str(p) for p in present]
    same = [p for p in present if p.strip().lower() == name]
    close = same or difflib.get_close_matches(name, present, n=1, cutoff=0.6)
    hint = f"; the table has '{close[0]}': rename it to '{name}'" if close else ""
    return f"required column '{name}' is missing{hint}"


def _range(lo, hi) -> str:
    if lo is None and hi is None:
        return "(none)"
    if lo is not None and hi is not None:
        return f"{lo:g}–{hi:g}"
    return f"≥ {lo:g}" if lo is not None else f"≤ {hi:g}"


def _missing_values(df: pd.DataFrame, columns: list[Column], rows: _RowNames) -> list[Problem]:
    """Warnings for missing values in ``missing: warn`` columns (pandera skips nulls there)."""
    problems = []
    for c in columns:
        if c.missing == "warn":
            where = np.flatnonzero(df[c.name].isna().to_numpy())
            if len(where):
                problems.append(Problem("warning", c.name, "missing", _column_message("missing", c, len(where), ()), len(where), (), rows(where, c.name)))
    return problems


# --- 4. cross-field rules (their checks: backpain_epi.rules) ------------------------

def _rule_problems(df, usable: set[str], numbers, dd: DataDictionary, table: str, rows: _RowNames) -> list[Problem]:
    problems = []
    for rule in dd.rules:
        if rule.name == "unknown_column":
            unknown = [str(c) for c in df.columns if c not in set(dd.names(table=table))]
            if unknown:
                problems.append(Problem(rule.severity, None, rule.name,
                                        f"{len(unknown)} column(s) not defined for the {table} table in the dictionary; they are ignored",
                                        len(unknown), tuple(unknown[:MAX_SHOWN])))
            continue
        needed, column, check = RULES[rule.name]
        if not usable.issuperset(needed):  # absent, or stored in a type already reported
            continue
        parsed = {c: numbers.get(c, df[c]) for c in needed}
        bad, message = check(df, parsed, dd)
        where = np.flatnonzero(bad.fillna(False).to_numpy())
        if len(where):
            values = tuple(", ".join(f"{c}={_show(df[c].iloc[i])}" for c in needed) for i in where[:MAX_SHOWN])
            problems.append(Problem(rule.severity, column, rule.name, f"{len(where):,} row(s): {message}", len(where), values, rows(where, column),
                                    tuple(int(i) for i in where)))
    return problems


def _cast(s: pd.Series, c: Column, numbers: pd.Series | None) -> pd.Series:
    if c.type == "float":
        return numbers.astype("float64")
    if c.type in ("integer", "binary"):
        return numbers.astype("Int64")
    text = s.astype(object).where(s.notna(), np.nan)
    if c.type == "category":
        return pd.Series(pd.Categorical(text, categories=list(c.levels)), index=s.index, name=s.name)
    return text


def _show(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return f"{v:g}"
    return repr(v) if isinstance(v, str) and v.strip() != v else str(v)
