"""PSIS-LOO comparison of fitted runs (``backpain-epi compare``).

Runs are comparable only when they were fit to the same table and analysed the
same participants: :func:`compare_runs` checks both hashes of their provenance
and refuses otherwise, naming the runs that differ. Runs are
:class:`~backpain_epi.modelling.fit.FitResult` objects (in memory, as ``fit_model``
returns them) or run folders, alike.
"""

from __future__ import annotations

import os
import warnings

import arviz as az
import numpy as np
import pandas as pd

from ..errors import BackpainEpiError, InputFileError
from ..tableio import write_table
from .fit import FitResult, as_fit_result

PARETO_K_BAD = 0.7
COMPARISON_COLUMNS = ["model", "rank", "elpd_loo", "se", "p_loo", "elpd_diff", "dse", "weight", "n_pareto_k_gt_0_7", "n_obs",
                      "loo_draws", "run"]


class RunMismatchError(BackpainEpiError):
    """Runs fit on different data (or different rows of it) cannot be compared by LOO."""


def run_loo(run: FitResult | str | os.PathLike) -> az.ELPDData:
    """PSIS-LOO of a run, from the log-likelihood draws it stores (``posterior.nc`` of a folder).

    The relative efficiency is computed on the same (thinned) draws as the log-likelihood.
    """
    result = as_fit_result(run)
    idata = result.idata
    if "log_likelihood" not in idata.groups():
        raise InputFileError(f"{_where(result)} has no log_likelihood group; refit the run with this version of backpain-epi.")
    thin = idata.sel(draw=idata.log_likelihood.draw.values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Pareto-k warnings are counted and reported by compare_runs
        return az.loo(thin, pointwise=True)


def compare_runs(runs: list[FitResult | str | os.PathLike], *, out: str | os.PathLike | None = None) -> pd.DataFrame:
    """Rank runs by expected log predictive density (PSIS-LOO), with stacking weights.

    Parameters
    ----------
    runs
        Two or more fits: :class:`~backpain_epi.modelling.fit.FitResult` objects or run folders
        written by :func:`~backpain_epi.modelling.fit_model`, alike.
    out
        Also write the table here (CSV, TSV or Parquet).

    Returns
    -------
    DataFrame
        One row per model, best first: ``elpd_loo`` and its ``se``, ``p_loo``,
        ``elpd_diff`` from the best and its standard error ``dse``, the
        stacking ``weight``, the number of observations whose Pareto k
        exceeds 0.7 (their LOO estimate is unreliable), and the ``run`` folder
        (empty for a result kept in memory).

    Raises
    ------
    RunMismatchError
        The runs were fit on different tables or analysed different rows.
    """
    results = [as_fit_result(r) for r in runs]
    if len(results) < 2:
        raise BackpainEpiError("runs: compare needs at least two runs (FitResults or run folders).")
    seen = {}
    for r in results:
        key = id(r) if r.out is None else os.path.realpath(r.out)
        if key in seen:
            raise BackpainEpiError(f"runs: {_where(r)} is given twice; compare different runs.")
        seen[key] = r
    _check_same_data(results)
    names = _model_names(results)
    loos = {name: run_loo(r) for name, r in zip(names, results)}
    table = az.compare(loos, ic="loo", method="stacking", scale="log")
    rows = []
    for model, r in table.iterrows():
        loo = loos[model]
        result = results[names.index(model)]
        rows.append({"model": model, "rank": int(r["rank"]) + 1, "elpd_loo": r["elpd_loo"], "se": r["se"], "p_loo": r["p_loo"],
                     "elpd_diff": r["elpd_diff"], "dse": r["dse"], "weight": r["weight"],
                     "n_pareto_k_gt_0_7": int((np.asarray(loo.pareto_k) > PARETO_K_BAD).sum()), "n_obs": int(loo.n_data_points),
                     "loo_draws": int(loo.n_samples), "run": str(result.out) if result.out is not None else ""})
    result = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    if out is not None:
        write_table(result, out)
    return result


def format_comparison(table: pd.DataFrame) -> str:
    """The comparison as text, with a line for each model with unreliable Pareto k."""
    lines = [f"{'rank':>4s}  {'model':16s} {'elpd_loo':>10s} {'se':>7s} {'elpd_diff':>10s} {'dse':>7s} {'p_loo':>7s} {'weight':>7s}"]
    for r in table.itertuples():
        lines.append(f"{r.rank:4d}  {r.model:16s} {r.elpd_loo:10.1f} {r.se:7.1f} {r.elpd_diff:10.1f} {r.dse:7.1f} {r.p_loo:7.1f} {r.weight:7.3f}")
    for r in table.itertuples():
        if r.n_pareto_k_gt_0_7:
            lines.append(f"warning: {r.model}: {r.n_pareto_k_gt_0_7} observation(s) with Pareto k > 0.7; their LOO estimates are unreliable.")
    best = table.iloc[0]
    if len(table) > 1:
        second = table.iloc[1]
        verdict = "clearly" if second.elpd_diff > 2 * second.dse else "not clearly (difference < 2 SE)"
        lines.append(f"{best.model} predicts best; {verdict} better than {second.model} "
                     f"(elpd difference {second.elpd_diff:.1f}, SE {second.dse:.1f}).")
    return "\n".join(lines)


def _where(result: FitResult) -> str:
    return str(result.out) if result.out is not None else f"the in-memory fit of '{result.name}'"


def _check_same_data(results: list[FitResult]) -> None:
    first = results[0]
    f = first.provenance.data
    for r in results[1:]:
        d = r.provenance.data
        if d.sha256 != f.sha256:
            raise RunMismatchError(
                f"runs were fit on different data: {_where(first)} on {f.source} (sha256 {f.sha256[:12]}…), "
                f"{_where(r)} on {d.source} (sha256 {d.sha256[:12]}…); LOO compares models on the same data, so refit them on one table."
            )
        if d.analysed_sha256 != f.analysed_sha256:
            raise RunMismatchError(
                f"runs analysed different rows of the same table: {_where(first)} {f.n_analysed:,} rows "
                f"(dropped {f.dropped}), {_where(r)} {d.n_analysed:,} rows (dropped {d.dropped}); "
                "drop the incomplete rows from the table first, so that every model sees the same participants."
            )


def _model_names(results: list[FitResult]) -> list[str]:
    names = [r.name for r in results]
    if len(set(names)) < len(names):  # the same spec fit twice: tell them apart by folder
        names = [f"{r.name} ({r.out.name})" if r.out is not None else f"{r.name} ({i + 1})" for i, r in enumerate(results)]
    return names
