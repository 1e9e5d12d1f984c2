"""The runs of a report: each fit with the rows of the analysis table it analysed, checked to be fit on that table."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from ..dictionary import DataDictionary
from ..errors import BackpainEpiError
from ..modelling.fit import FitResult, as_fit_result
from ..modelling.provenance import Provenance
from ..modelling.spec import ModelSpec
from ..records import table_hash


class ReportInputError(BackpainEpiError):
    """A run, the data or the segmentation folder cannot be used for the report."""


@dataclass(frozen=True)
class ReportRun:
    """One run as the report uses it: the fit and the rows of the analysis table it analysed, in its order."""

    result: FitResult
    analysed: pd.DataFrame

    @property
    def name(self) -> str:
        return self.result.name

    @property
    def path(self) -> Path | None:
        """The run folder, or ``None`` for a fit kept in memory."""
        return self.result.out

    @property
    def spec(self) -> ModelSpec:
        return self.result.spec

    @property
    def summary(self) -> pd.DataFrame:
        return self.result.summary

    @property
    def provenance(self) -> Provenance:
        return self.result.provenance


def load_runs(runs: list, table: pd.DataFrame, source: str, dictionary: DataDictionary) -> list[ReportRun]:
    """The runs (FitResults or run folders) with their analysed rows of ``table``, each checked to be fit on it.

    A second run of the same model name is named after its folder.
    """
    sha256 = table_hash(table)
    id_col = dictionary.id_column
    by_id = table.set_index(table[id_col].astype(str), drop=False)
    loaded: list[ReportRun] = []
    for run in runs:
        result = as_fit_result(run, dictionary)
        where = f"run {result.out}" if result.out is not None else f"the in-memory fit of '{result.name}'"
        d = result.provenance.data
        if d.sha256 != sha256:
            raise ReportInputError(
                f"{where} was fit on other data ({d.source}, {d.n_rows:,} rows) than {source} ({len(table):,} rows): "
                "the table's content differs. Give the table the runs were fit on, or refit them on this one."
            )
        names = [r.name for r in loaded]
        if result.name in names and result.out is not None:
            result = replace(result, name=result.out.name)
        if result.name in names:
            raise ReportInputError(f"two runs are both called '{result.name}'; give each model its own name (spec `name:`) "
                                   "or folder name.")
        loaded.append(ReportRun(result=result, analysed=by_id.loc[result.analysed_ids].reset_index(drop=True)))
    return loaded
