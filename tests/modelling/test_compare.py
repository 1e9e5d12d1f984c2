"""LOO comparison of runs, and its refusal of runs fit on different data."""

from __future__ import annotations

import shutil

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


def test_runs_on_other_data_are_refused(full_run, tmp_path):
    other = fit_model(simulate_cohort(n=500, seed=99).data, MODELS / "unadjusted.yaml", out=tmp_path / "other",
                      draws=50, tune=50, chains=2, progress=False)
    with pytest.raises(RunMismatchError, match="fit on different data"):
        compare_runs([full_run.out, other.out])


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
