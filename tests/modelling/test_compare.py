"""LOO comparison of runs, and its refusal of runs fit on different data."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pandas as pd
import pytest

from backpain_epi import simulate_cohort
from backpain_epi.errors import BackpainEpiError, InputFileError
from backpain_epi.modelling import compare_runs, fit_model
from backpain_epi.modelling.compare import RunMismatchError, format_comparison

from .conftest import MODELS


def test_compare_ranks_runs_with_weights(full_run, unadjusted_run, tmp_path):
    table = compare_runs([unadjusted_run.out, full_run.out], out=tmp_path / "comparison.csv")
    assert list(table["rank"]) == [1, 2]
    assert set(table["model"]) == {"full", "unadjusted"}
    assert table["weight"].sum() == pytest.approx(1.0)
    assert table.iloc[0]["elpd_diff"] == 0 and table.iloc[1]["elpd_diff"] >= 0
    assert (table["elpd_loo"].diff().dropna() <= 0).all()
    assert (table["n_obs"] == 3000).all() and (table["loo_draws"] == 600).all()
    assert pd.read_csv(tmp_path / "comparison.csv")["model"].tolist() == table["model"].tolist()
    text = format_comparison(table)
    assert "predicts best" in text and table.iloc[0]["model"] in text.splitlines()[1]


def _with_data(run, **changes):
    """``run`` with its provenance's data record changed: an in-memory stand-in for a run fit on other rows or data."""
    data = replace(run.provenance.data, **changes)
    return replace(run, provenance=replace(run.provenance, data=data), out=None, name=f"{run.name}-other")


def test_fits_in_memory_on_other_data_or_rows_are_refused(full_run, unadjusted_run):
    with pytest.raises(RunMismatchError, match="fit on different data: .* on .*the in-memory fit of 'full-other'"):
        compare_runs([unadjusted_run, _with_data(full_run, sha256="0" * 64, source="other.csv")])
    with pytest.raises(RunMismatchError, match="different rows of the same table.*drop the incomplete rows"):
        compare_runs([unadjusted_run, _with_data(full_run, analysed_sha256="0" * 64, n_analysed=2999)])
    with pytest.raises(BackpainEpiError, match="given twice"):
        compare_runs([full_run, full_run.out])
    table = compare_runs([unadjusted_run, full_run])  # FitResults in memory compare as their folders do
    assert table.equals(compare_runs([unadjusted_run.out, full_run.out]))


@pytest.mark.slow
def test_runs_on_other_data_are_refused(full_run, tmp_path):
    other = fit_model(simulate_cohort(n=500, seed=99).data, MODELS / "unadjusted.yaml", out=tmp_path / "other",
                      draws=50, tune=50, chains=2, progress=False)
    with pytest.raises(RunMismatchError, match="fit on different data"):
        compare_runs([full_run.out, other.out])


@pytest.mark.slow
def test_runs_on_other_rows_are_refused(tmp_path):
    data = simulate_cohort(n=400, seed=5, missing_frac=0.1).data
    a = fit_model(data, MODELS / "unadjusted.yaml", out=tmp_path / "a", draws=50, tune=50, chains=2, progress=False)
    b = fit_model(data, MODELS / "full.yaml", out=tmp_path / "b", draws=50, tune=50, chains=2, progress=False)
    with pytest.raises(RunMismatchError, match="different rows of the same table.*drop the incomplete rows"):
        compare_runs([a.out, b.out])


def test_missing_or_broken_run_folders(full_run, tmp_path):
    with pytest.raises(InputFileError, match="not a run folder"):
        compare_runs([full_run.out, tmp_path / "nothing"])
    broken = tmp_path / "broken"
    shutil.copytree(full_run.out, broken)
    (broken / "posterior.nc").unlink()
    with pytest.raises(InputFileError, match="posterior.nc missing"):
        compare_runs([full_run.out, broken])
    with pytest.raises(BackpainEpiError, match="at least two"):
        compare_runs([full_run.out])
