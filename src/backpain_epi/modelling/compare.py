"""PSIS-LOO comparison of fitted runs (``backpain-epi compare``).

Runs are comparable only when they were fit to the same table and analysed the
same participants: :func:`compare_runs` checks both hashes recorded in
``provenance.json`` and refuses otherwise, naming the runs that differ.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd

from ..errors import BackpainEpiError, InputFileError
from ..tableio import write_table
from .fit import RUN_FILES

PARETO_K_BAD = 0.7
COMPARISON_COLUMNS = ["model", "rank", "elpd_loo", "se", "p_loo", "elpd_diff", "dse", "weight", "n_pareto_k_gt_0_7", "n_obs",
                      "loo_draws", "run"]


class RunMismatchError(BackpainEpiError):
    """Runs fit on different data (or different rows of it) cannot be compared by LOO."""


def run_loo(run: str | os.PathLike) -> az.ELPDData:
    """PSIS-LOO of a run folder, from the log-likelihood draws stored in its ``posterior.nc``.

    The relative efficiency is computed on the same (thinned) draws as the log-likelihood.
    """
    idata = az.from_netcdf(str(Path(run) / "posterior.nc"))
    if "log_likelihood" not in idata.groups():
        raise InputFileError(f"{run}/posterior.nc has no log_likelihood group; refit the run with this version of backpain-epi.")
    thin = idata.sel(draw=idata.log_likelihood.draw.values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Pareto-k warnings are counted and reported by compare_runs
        return az.loo(thin, pointwise=True)


def compare_runs(runs: list[str | os.PathLike], *, out: str | os.PathLike | None = None) -> pd.DataFrame:
    """Rank runs by expected log predictive density (PSIS-LOO), with stacking weights.

    Parameters
    ----------
    runs
        Two or more run folders written by :func:`~backpain_epi.modelling.fit_model`.
    out
        Also write the table here (CSV, TSV or Parquet).

    Returns
    -------
    DataFrame
        One row per model, best first: ``elpd_loo`` and its ``se``, ``p_loo``,
        ``elpd_diff`` from the best and its standard error ``dse``, the
        stacking ``weight``, and the number of observations whose Pareto k
        exceeds 0.7 (their LOO estimate is unreliable).

    Raises
    ------
    RunMismatchError
        The runs were fit on different tables or analysed different rows.
    """
    if len(runs) < 2:
        raise BackpainEpiError("compare needs at least two run folders.")
    provenance = {}
    for run in map(Path, runs):
        missing = [f for f in RUN_FILES if not (run / f).is_file()]
        if not run.is_dir() or missing:
            raise InputFileError(f"{run} is not a run folder ({'missing' if not run.is_dir() else ', '.join(missing) + ' missing'}); "
                                 "make one with `backpain-epi fit --out`.")
        provenance[run] = json.loads((run / "provenance.json").read_text(encoding="utf-8"))
    _check_same_data(provenance)
    names = _model_names(provenance)
    loos = {names[run]: run_loo(run) for run in provenance}
    table = az.compare(loos, ic="loo", method="stacking", scale="log")
    rows = []
    for model, r in table.iterrows():
        loo = loos[model]
        run = next(run for run, n in names.items() if n == model)
        rows.append({"model": model, "rank": int(r["rank"]) + 1, "elpd_loo": r["elpd_loo"], "se": r["se"], "p_loo": r["p_loo"],
                     "elpd_diff": r["elpd_diff"], "dse": r["dse"], "weight": r["weight"],
                     "n_pareto_k_gt_0_7": int((np.asarray(loo.pareto_k) > PARETO_K_BAD).sum()), "n_obs": int(loo.n_data_points),
                     "loo_draws": int(loo.n_samples), "run": str(run)})
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


def _check_same_data(provenance: dict[Path, dict]) -> None:
    data = {run: p["data"] for run, p in provenance.items()}
    first_run, first = next(iter(data.items()))
    for run, d in data.items():
        if d["sha256"] != first["sha256"]:
            raise RunMismatchError(
                f"runs were fit on different data: {first_run} on {first['source']} (sha256 {first['sha256'][:12]}…), "
                f"{run} on {d['source']} (sha256 {d['sha256'][:12]}…); LOO compares models on the same data, so refit them on one table."
            )
        if d["analysed_sha256"] != first["analysed_sha256"]:
            raise RunMismatchError(
                f"runs analysed different rows of the same table: {first_run} {first['n_analysed']:,} rows "
                f"(dropped {first['dropped']}), {run} {d['n_analysed']:,} rows (dropped {d['dropped']}); "
                "drop the incomplete rows from the table first, so that every model sees the same participants."
            )


def _model_names(provenance: dict[Path, dict]) -> dict[Path, str]:
    names = {run: p["model"] for run, p in provenance.items()}
    if len(set(names.values())) < len(names):  # the same spec fit twice: tell them apart by folder
        names = {run: f"{p['model']} ({run.name})" for run, p in provenance.items()}
    return names
