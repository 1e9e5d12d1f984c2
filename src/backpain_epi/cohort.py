"""Cohort tables: loading, derived variables, per-2-SD scaling and a quick summary."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .derived import DERIVED_FROM, activity_band
from .dictionary import DataDictionary, load_dictionary
from .errors import BackpainEpiError
from .validation import ValidationReport, load_table


def load_cohort(
    path: str | os.PathLike,
    dictionary: DataDictionary | None = None,
    *,
    sep: str | None = None,
    encoding: str = "utf-8",
    decimal: str = ".",
) -> tuple[pd.DataFrame, ValidationReport]:
    """Read and validate a cohort table, cast it to the dictionary's types, add derived columns.

    Returns the table and its validation report; raises
    :class:`~backpain_epi.errors.DataValidationError` if the table has errors.
    """
    df, report = load_table(path, "cohort", dictionary, sep=sep, encoding=encoding, decimal=decimal)
    return add_activity_band(df, dictionary), report


def analysis_columns(columns, dictionary: DataDictionary | None = None) -> list[str]:
    """Every column an analysis of ``columns`` reads: those, the columns derived ones are made from
    (``met_min_week`` for ``activity_band``), the id column and the segmentation QC flag."""
    dd = dictionary or load_dictionary()
    out = [*dd.names(role="id"), *columns]
    out += [src for c in columns for src in DERIVED_FROM.get(c, ())]
    out += [c for c in ("qc_flag",) if c in dd]
    return list(dict.fromkeys(out))


def add_activity_band(df: pd.DataFrame, dictionary: DataDictionary | None = None) -> pd.DataFrame:
    """Return ``df`` with ``activity_band`` derived from ``met_min_week``.

    The band labels are the dictionary's levels of ``activity_band``, the edges
    :data:`~backpain_epi.derived.ACTIVITY_BAND_EDGES`; missing activity gives a
    missing band. An existing ``activity_band`` is replaced (validation has
    already checked that it agrees with ``met_min_week``).
    """
    levels = (dictionary or load_dictionary())["activity_band"].levels
    return df.assign(activity_band=activity_band(pd.to_numeric(df["met_min_week"], errors="raise"), levels))


@dataclass
class MergeResult:
    """A cohort table with the segmentation's exposures merged in, and what the merge matched."""

    table: pd.DataFrame
    columns: list[str]  #: the exposure columns added
    n_matched: int  #: cohort participants with exposures
    unmatched_cohort: list[str]  #: cohort participants without exposures (their exposures are missing)
    unmatched_exposures: list[str]  #: segmented participants absent from the cohort table (left out)

    def format(self) -> str:
        lines = [f"Merged {', '.join(self.columns)} for {self.n_matched:,} of {len(self.table):,} participants."]
        if self.unmatched_cohort:
            lines.append(f"{len(self.unmatched_cohort):,} cohort participant(s) have no exposures (failed or missing scans), "
                         f"so their exposures are missing: {_first(self.unmatched_cohort)}.")
        if self.unmatched_exposures:
            lines.append(f"{len(self.unmatched_exposures):,} segmented participant(s) are not in the cohort table and were left out: "
                         f"{_first(self.unmatched_exposures)}.")
        return "\n".join(lines)


def merge_exposures(cohort: pd.DataFrame, exposures: pd.DataFrame, dictionary: DataDictionary | None = None) -> MergeResult:
    """Add the exposures of ``backpain-epi segment`` (``exposures.csv``) to a cohort table, matched on the id.

    The columns added are those of ``exposures`` that the dictionary places in the
    cohort table (``lmm_ml``, ``intermat_ml``, ``imf_pct``, ``autochthon_ml``,
    ``psoas_ml``, ``qc_flag``, and the measurement SEs ``lmm_ml_se``,
    ``intermat_ml_se``, ``imf_pct_se``); the per-side and other QC columns stay in
    ``exposures.csv``. Cohort participants without a row get missing exposures
    (the models then exclude them and the report counts them); segmented
    participants missing from the cohort are left out and listed.

    Raises
    ------
    BackpainEpiError
        The id column is missing, an id is duplicated, the cohort already has an
        exposure column, or no participant matches.
    """
    dd = dictionary or load_dictionary()
    id_col = dd.names(role="id")[0]
    for name, frame in (("cohort table", cohort), ("exposures table", exposures)):
        if id_col not in frame.columns:
            raise BackpainEpiError(f"the {name} has no {id_col} column to merge on.")
        dup = frame[id_col][frame[id_col].duplicated()].astype(str).tolist()
        if dup:
            raise BackpainEpiError(f"the {name} repeats {id_col} {_first(dup)}; each participant must appear once.")
    columns = [c for c in dd.names(table="cohort") if c in exposures.columns and c != id_col]
    if not columns:
        raise BackpainEpiError(f"the exposures table has none of the cohort's exposure columns ({', '.join(dd.names(table='exposures', role='exposure'))}).")
    clash = [c for c in columns if c in cohort.columns]
    if clash:
        raise BackpainEpiError(f"the cohort table already has {', '.join(clash)}; drop those columns before merging new exposures.")
    ids_c, ids_e = cohort[id_col].astype(str), exposures[id_col].astype(str)
    right = exposures[[id_col, *columns]].assign(**{id_col: ids_e})
    table = cohort.assign(**{id_col: ids_c}).merge(right, on=id_col, how="left", validate="one_to_one")
    matched = ids_c.isin(set(ids_e))
    if not matched.any():
        raise BackpainEpiError(f"no {id_col} of the exposures table is in the cohort table (e.g. {_first(ids_e.tolist())}).")
    return MergeResult(table, columns, int(matched.sum()), ids_c[~matched].tolist(), ids_e[~ids_e.isin(set(ids_c))].tolist())


def _first(ids: list[str], k: int = 5) -> str:
    return ", ".join(ids[:k]) + (", ..." if len(ids) > k else "")


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
