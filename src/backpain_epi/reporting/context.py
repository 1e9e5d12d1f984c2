"""What every section of the report reads: the runs, the analysis table, the dictionary, the inputs and the options.

:meth:`ReportContext.load` reads and checks everything once (the runs were fit on
this table, the columns exist, the segmentation folder and the truth and planted
files are readable and usable); the sections then only compute and draw.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..dictionary import DataDictionary
from ..errors import BackpainEpiError, InputFileError, unknown_choice
from ..modelling.crossval import CVResult
from ..modelling.fit import as_fit_result, read_analysis_table
from ..modelling.spec import ModelSpec
from ..modelling.survival import ONSET, TIME_SCALE
from ..segmentation.output import SegmentationOutput
from ..tableio import read_table
from .runs import ReportInputError, ReportRun, load_runs
from .stats import paired_exposures

if TYPE_CHECKING:
    from .sections.base import SectionOutput


@dataclass(frozen=True)
class ReportOptions:
    """What the report shows, beyond its inputs.

    Attributes
    ----------
    title
        Title of the page.
    table1_columns
        Characteristics in Table 1 (dictionary names); ``None``: every column the models use.
    survival
        Run the Cox / Kaplan–Meier sensitivity analysis.
    km_exposure
        Exposure whose tertiles split the Kaplan–Meier curves; ``None``: the dictionary's ``survival_exposure``.
    survival_spec
        Spec (or its path) whose terms the Cox model takes; ``None``: the survival module's default spec.
    exclude_invalid_rows
        Leave out rows with errors in single rows of the columns each analysis uses, counted per rule in the
        participant flow (the runs must have been fit with the same setting); otherwise such errors refuse the table.
    """

    title: str = "Back-muscle composition and chronic back pain"
    table1_columns: list[str] | None = None
    survival: bool = True
    km_exposure: str | None = None
    survival_spec: ModelSpec | str | os.PathLike | None = None
    exclude_invalid_rows: bool = False


@dataclass
class ReportContext:
    """The shared input of every section, and the outputs of the sections already built.

    Attributes
    ----------
    runs
        The runs, the primary (first) one first.
    table
        The analysis table the runs were fit on, as every analysis reads it.
    source
        Where the table came from (its path, or a description of a DataFrame).
    dictionary
        The data dictionary.
    options
        What the report shows (:class:`ReportOptions`).
    segmentation
        The segmentation folder's outputs, or ``None``.
    truth
        ``truth.json`` of a simulated cohort, or ``None``.
    planted
        Exposures planted in phantom scans (``participant_id`` and exposure columns), or ``None``.
    crossval
        Leave-one-site-out cross-validation of the runs (:class:`~backpain_epi.modelling.crossval.CVResult`), or ``None``.
    built
        The :class:`~backpain_epi.reporting.sections.base.SectionOutput` of each section built so far, by name.
    """

    runs: list[ReportRun]
    table: pd.DataFrame
    source: str
    dictionary: DataDictionary
    options: ReportOptions = field(default_factory=ReportOptions)
    segmentation: SegmentationOutput | None = None
    truth: dict | None = None
    planted: pd.DataFrame | None = None
    crossval: CVResult | None = None
    built: dict[str, SectionOutput] = field(default_factory=dict)

    @property
    def primary(self) -> ReportRun:
        """The first run: Table 1 and the exposure distributions describe its analysed participants."""
        return self.runs[0]

    @property
    def exposures(self) -> list[str]:
        """Every exposure of the runs, in the order the specs name them."""
        return list(dict.fromkeys(e for r in self.runs for e in r.spec.exposures))

    @property
    def km_exposure(self) -> str:
        """The exposure of the Kaplan–Meier tertiles: the option, else the dictionary's ``survival_exposure``."""
        return self.options.km_exposure or self.dictionary.survival_exposure

    @property
    def planted_exposures(self) -> list[str]:
        """The exposures the planted table has (none without one)."""
        return [e for e in self.exposures if self.planted is not None and e in self.planted.columns]

    @classmethod
    def load(cls, runs: list, data, dictionary: DataDictionary, *, options: ReportOptions = ReportOptions(),
             segmentation: str | os.PathLike | None = None, truth: str | os.PathLike | dict | None = None,
             planted: str | os.PathLike | pd.DataFrame | None = None, crossval: CVResult | str | os.PathLike | None = None,
             sep: str | None = None, encoding: str = "utf-8", decimal: str = ".") -> ReportContext:
        """Read and check the report's inputs (see :func:`~backpain_epi.reporting.report.build_report`).

        The table blocks on errors in the columns the report uses only: the runs' columns, Table 1's and,
        with the survival analysis, ``cbp_onset_age``, ``age`` and the Kaplan–Meier exposure.

        Raises
        ------
        ReportInputError, InputFileError
            No runs, a run fit on other data, two runs of one name, an unknown
            column, or an input file that is missing or unreadable.
        """
        if not runs:
            raise ReportInputError(": give at least one run (a run folder from `backpain-epi fit`, or a FitResult).", param="runs")
        runs = [as_fit_result(r, dictionary) for r in runs]
        used = [c for r in runs for c in r.spec.columns()] + list(options.table1_columns or [])
        if options.survival:
            used += [ONSET, TIME_SCALE, options.km_exposure or dictionary.survival_exposure]
        table, source = read_analysis_table(data, dictionary, used, exclude_invalid_rows=options.exclude_invalid_rows,
                                            sep=sep, encoding=encoding, decimal=decimal)
        if options.table1_columns is not None:
            check_columns(options.table1_columns, table, dictionary, "table1_columns")
        ctx = cls(runs=load_runs(runs, table, source, dictionary), table=table, source=source, dictionary=dictionary,
                  options=options, segmentation=SegmentationOutput.read(segmentation).check_current() if segmentation is not None else None,
                  truth=_read_truth(truth), planted=_read_planted(planted) if planted is not None else None,
                  crossval=crossval if crossval is None or isinstance(crossval, CVResult) else CVResult.read(crossval))
        if options.survival:
            check_columns([ctx.km_exposure], table, dictionary, "km_exposure")
        if ctx.planted is not None:
            _check_planted(ctx)
        return ctx


def check_columns(columns, data: pd.DataFrame, dictionary: DataDictionary, param: str) -> list[str]:
    """Refuse columns the dictionary does not know or the data does not have (with did-you-mean); ``param`` names the argument."""
    for c in columns:
        if c not in dictionary:
            raise BackpainEpiError(": " + unknown_choice("column", c, dictionary.columns), param=param)
        if c not in data.columns:
            raise BackpainEpiError(f": the data has no column '{c}'.", param=param)
    return list(columns)


def _check_planted(ctx: ReportContext) -> None:
    """Refuse a planted table without the runs' exposures, or with fewer than two participants of the analysis table."""
    if not ctx.planted_exposures:
        raise ReportInputError(f": the table has none of the exposures {', '.join(ctx.exposures)}.", param="planted")
    if len(paired_exposures(ctx.table, ctx.planted, ctx.planted_exposures, id_col=ctx.dictionary.id_column)) < 2:
        raise ReportInputError(": fewer than two participants have both a planted and a measured exposure.", param="planted")


def _read_truth(truth) -> dict | None:
    if truth is None or isinstance(truth, dict):
        return truth
    path = Path(truth)
    if not path.is_file():
        raise InputFileError(f"{path}: file not found (it is written by `backpain-epi simulate --truth-out`).", param="truth")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputFileError(f"{path}: not JSON ({exc}).", param="truth") from None


def _read_planted(planted) -> pd.DataFrame:
    if isinstance(planted, pd.DataFrame):
        return planted
    path = Path(planted)
    if not path.is_file():
        raise InputFileError(f"{path}: file not found (the pipeline writes it as cohort/planted_exposures.csv).", param="planted")
    frame = read_table(path)
    if "participant_id" not in frame.columns:
        raise InputFileError(f"{path}: no participant_id column.", param="planted")
    for c in frame.columns:
        if c != "participant_id":
            frame[c] = pd.to_numeric(frame[c], errors="raise")
    return frame
