"""Cohort tables: loading, derived variables, per-2-SD scaling and a quick summary."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from .derived import activity_band
from .dictionary import DataDictionary, load_dictionary
from .errors import BackpainEpiError
from .validation import ValidationReport, load_table


def load_cohort(
    path: str | os.PathLike,
    dictionary: DataDictionary | None = None,
    *,
    sep: str | None = None,
    encoding: str = "utf-8",
) -> tuple[pd.DataFrame, ValidationReport]:
    """Read and validate a cohort table, cast it to the dictionary's types, add derived columns.

    Returns the table and its validation report; raises
    :class:`~backpain_epi.errors.DataValidationError` if the table has errors.
    """
    df, report = load_table(path, "cohort", dictionary, sep=sep, encoding=encoding)
    return add_activity_band(df, dictionary), report


def add_activity_band(df: pd.DataFrame, dictionary: DataDictionary | None = None) -> pd.DataFrame:
    """Return ``df`` with ``activity_band`` derived from ``met_min_week``.

    The band labels are the dictionary's levels of ``activity_band``, the edges
    :data:`~backpain_epi.derived.ACTIVITY_BAND_EDGES`; missing activity gives a
    missing band. An existing ``activity_band`` is replaced (validation has
    already checked that it agrees with ``met_min_week``).
    """
    levels = (dictionary or load_dictionary())["activity_band"].levels
    return df.assign(activity_band=activity_band(pd.to_numeric(df["met_min_week"], errors="raise"), levels))


def scale_per_2sd(x: pd.Series) -> tuple[pd.Series, float, float]:
    """Centre ``x`` and divide by two standard deviations (Gelman 2008).

    A coefficient of the scaled variable is the log odds ratio per 2 SD of the
    raw variable, comparable with that of a binary covariate.

    Returns
    -------
    scaled, center, scale
        ``scaled = (x - center) / scale`` with ``center`` the mean and
        ``scale`` twice the sample standard deviation (missing values ignored).

    Raises
    ------
    BackpainEpiError
        ``x`` has no variation.
    """
    x = pd.to_numeric(x, errors="raise").astype(float)
    center, scale = float(x.mean()), 2.0 * float(x.std())
    if not np.isfinite(scale) or scale == 0:
        raise BackpainEpiError(f"cannot scale '{x.name}' per 2 SD: it has no variation (a single value, or all missing).")
    return (x - center) / scale, center, scale


def describe_cohort(df: pd.DataFrame, dictionary: DataDictionary | None = None) -> pd.DataFrame:
    """A quick summary of a conformed cohort table, labelled from the dictionary.

    One row per defined column: median [IQR] for numeric columns, n (%) per
    level or of 1s for categorical and binary columns, and the missing count;
    overall and by CBP status. (The report's Table 1 is the publication
    version of this.)
    """
    dd = dictionary or load_dictionary()
    groups = {"All": df}
    if "cbp" in df:
        groups |= {f"{dd.label('cbp', unit=False)}: no": df[df["cbp"] == 0], f"{dd.label('cbp', unit=False)}: yes": df[df["cbp"] == 1]}
    rows = [{"variable": "n", **{g: f"{len(d):,}" for g, d in groups.items()}, "missing": ""}]
    for name in dd.names(table="cohort"):
        c = dd[name]
        if name not in df or c.role == "id" or name == "cbp":
            continue
        missing = _count_missing(df[name]) if c.missing != "allowed" else ""  # expected gaps are not counted
        if c.type in ("float", "integer"):
            rows.append({"variable": c.label_with_unit(), **{g: _median_iqr(d[name]) for g, d in groups.items()}, "missing": missing})
        elif c.type == "binary":
            rows.append({"variable": f"{c.label}, n (%)", **{g: _count_pct(d[name] == 1, d[name]) for g, d in groups.items()}, "missing": missing})
        elif c.type == "category":
            rows.append({"variable": f"{c.label_with_unit()}, n (%)", **{g: "" for g in groups}, "missing": missing})
            for level in c.levels:
                rows.append({"variable": f"  {level}", **{g: _count_pct(d[name] == level, d[name]) for g, d in groups.items()}, "missing": ""})
        elif c.role == "group":
            rows.append({"variable": f"{c.label}, n distinct", **{g: f"{d[name].nunique()}" for g, d in groups.items()}, "missing": missing})
    return pd.DataFrame(rows).set_index("variable")


def _median_iqr(x: pd.Series) -> str:
    x = pd.to_numeric(x, errors="coerce").dropna()
    if x.empty:
        return "–"
    q1, q2, q3 = np.percentile(x, [25, 50, 75])
    return f"{_fmt(q2)} [{_fmt(q1)}, {_fmt(q3)}]"


def _fmt(v: float) -> str:
    """Three significant digits without scientific notation: 2,570 / 49.7 / 8.71."""
    digits = max(0, 2 - int(np.floor(np.log10(abs(v))))) if v else 0
    return f"{v:,.{digits}f}"


def _count_pct(hit: pd.Series, x: pd.Series) -> str:
    n = int(x.notna().sum())
    k = int(hit.fillna(False).sum())
    return f"{k:,} ({100 * k / n:.1f})" if n else "–"


def _count_missing(x: pd.Series) -> str:
    k = int(x.isna().sum())
    return f"{k:,}" if k else ""
