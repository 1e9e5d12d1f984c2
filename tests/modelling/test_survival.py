"""Survival sensitivity analysis: Cox hazard ratios on age as time scale, Kaplan–Meier by exposure tertile."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from backpain_epi import simulate_cohort
from backpain_epi.cli import main
from backpain_epi.modelling import SurvivalResult, load_spec, survival_analysis
from backpain_epi.modelling.survival import FILES, HR_COLUMNS, NO_ONSET_REASON, SurvivalError

from .conftest import MODELS

PAPER = MODELS / "paper.yaml"
pytestmark = pytest.mark.filterwarnings("ignore::backpain_epi.errors.DataQualityWarning")


@pytest.fixture(scope="module")
def cohort():
    """3,000 simulated participants, with some CBP onset ages and InterMAT volumes removed."""
    df = simulate_cohort(n=3000, seed=7).data.copy()
    rng = np.random.default_rng(3)
    cases = np.flatnonzero(df["cbp"].to_numpy() == 1)
    df.loc[df.index[rng.choice(cases, 40, replace=False)], "cbp_onset_age"] = np.nan
    df.loc[df.index[rng.choice(len(df), 30, replace=False)], "intermat_ml"] = np.nan
    return df


@pytest.fixture(scope="module")
def result(cohort):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return survival_analysis(cohort, PAPER)


@pytest.fixture(scope="module")
def cohort_csv(cohort, tmp_path_factory):
    path = tmp_path_factory.mktemp("surv") / "cohort.csv"
    cohort.to_csv(path, index=False)
    return path


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.mark.slow
def test_exposure_hazard_ratios_have_the_planted_directions_on_a_large_cohort():
    data = simulate_cohort(n=27_518, seed=2025).data
    hr = _quiet(survival_analysis, data, PAPER).hazard_ratios.set_index("term")
    assert hr.loc["intermat_ml", "hr_lo95"] > 1  # truth: OR 1.22 per 2 SD
    assert hr.loc["lmm_ml", "hr_hi95"] < 1  # truth: OR 0.80, protective
    # Without the birth-cohort adjustment the young (more lean muscle) carry the recalled, early onsets:
    # lean muscle looks harmful. This is why birth_cohort=True is the default.
    no_cohort = _quiet(survival_analysis, data, PAPER, birth_cohort=False).hazard_ratios.set_index("term")
    assert "age" not in no_cohort.index and no_cohort.loc["lmm_ml", "hr"] > 1


def test_result_tables_and_terms(result):
    assert isinstance(result, SurvivalResult)
    hr = result.hazard_ratios
    assert list(hr.columns) == HR_COLUMNS
    assert "age" in set(hr["term"])  # age at examination: the birth-cohort adjustment
    assert list(hr["term"][:2]) == ["intermat_ml", "lmm_ml"] and set(hr["kind"][:2]) == {"exposure"}
    assert {"sex[male]", "activity_band[<500]", "activity_band[>5000]"} <= set(hr["term"])
    assert (hr["hr_lo95"] < hr["hr"]).all() and (hr["hr"] < hr["hr_hi95"]).all()
    assert np.allclose(np.exp(hr["log_hr"]), hr["hr"])
    row = hr.set_index("term").loc["intermat_ml"]
    assert row["label"] == "InterMAT volume" and row["per"].startswith("2 SD = ") and row["per"].endswith(" mL")
    assert hr.set_index("term").loc["activity_band[<500]", "per"] == "vs 500-5000"
    assert set(result.ph_test["term"]) == set(hr["term"])
    assert (result.ph_test["ph_violated"] == (result.ph_test["p"] < 0.05)).all()
    assert 0 <= result.logrank_p <= 1
    notes = " ".join(result.notes)
    assert "time scale" in notes and "Stratified by study site" in notes and "large cohort" in notes


def test_counts_add_up(result, cohort):
    c = result.counts
    assert c["n_in"] == len(cohort)
    assert c["n_in"] - sum(c["excluded"].values()) == c["n_analysed"]
    assert c["excluded"][NO_ONSET_REASON] == 40 - int(cohort.loc[cohort["cbp_onset_age"].isna() & (cohort["cbp"] == 1), "intermat_ml"].isna().sum())
    assert c["missing"]["intermat_ml"] == 30
    complete = cohort[cohort["intermat_ml"].notna()]
    assert c["n_events"] == int(((complete["cbp"] == 1) & complete["cbp_onset_age"].notna()).sum())
    assert c["n_analysed"] == int((complete["cbp"] == 0).sum()) + c["n_events"]


def test_kaplan_meier_curves_and_tertiles(result):
    km, groups = result.km, result.km_groups
    assert list(groups["group"]) == list(dict.fromkeys(km["group"]))
    assert groups["group"].str.match(r"^T1 \(≤ .+ mL\)$").iloc[0] and groups["group"].iloc[2].startswith("T3 (> ")
    for _, d in km.groupby("group"):
        d = d.sort_values("age")
        assert d["survival"].iloc[0] == 1.0
        assert (np.diff(d["survival"]) <= 1e-12).all()
        assert ((d["lo95"] <= d["survival"] + 1e-12) & (d["survival"] <= d["hi95"] + 1e-12)).all()
    n = result.counts["n_analysed"]
    assert groups["n"].sum() == n and groups["events"].sum() == result.counts["n_events"]
    assert (abs(groups["n"] - n / 3) <= 0.01 * n).all()
    assert (groups["upper"].iloc[:-1].to_numpy() < groups["lower"].iloc[1:].to_numpy()).all()


def test_save_writes_files_matching_the_result(result, tmp_path):
    paths = result.save(tmp_path / "surv")
    assert set(paths) == set(FILES) and all(p.is_file() for p in paths.values())
    hr = pd.read_csv(paths["hazard_ratios.csv"])
    assert list(hr["term"]) == list(result.hazard_ratios["term"])
    assert np.allclose(hr[["hr", "hr_lo95", "hr_hi95", "p"]], result.hazard_ratios[["hr", "hr_lo95", "hr_hi95", "p"]], rtol=1e-12)
    km = pd.read_csv(paths["km.csv"])
    assert np.allclose(km["survival"], result.km["survival"], rtol=1e-12)
    info = json.loads(paths["survival.json"].read_text(encoding="utf-8"))
    assert info["counts"] == result.counts and info["logrank_p"] == result.logrank_p and info["versions"]["lifelines"]
    assert not any(name.endswith((".png", ".svg")) for name in paths)  # figures are drawn by reporting


def test_errors(cohort):
    with pytest.raises(SurvivalError, match="cbp_onset_age"):
        _quiet(survival_analysis, cohort.drop(columns="cbp_onset_age"), PAPER)
    with pytest.raises(SurvivalError, match="did you mean 'intermat_ml'"):
        _quiet(survival_analysis, cohort, PAPER, exposure="intermat_mll")
    with pytest.raises(SurvivalError, match="not numeric"):
        _quiet(survival_analysis, cohort, PAPER, exposure="sex")
    no_onset = cohort.assign(cbp_onset_age=np.nan)
    with pytest.raises(SurvivalError, match="no CBP onsets"):
        _quiet(survival_analysis, no_onset, PAPER)


def test_default_spec_is_models_paper_yaml(cohort, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # not in the repository root: falls back to the checkout's models/paper.yaml
    res = _quiet(survival_analysis, cohort)
    assert res.spec.name == "paper" and "age" in res.spec.covariates


def test_convergence_error_becomes_a_clear_message(cohort, monkeypatch):
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError

    def fail(self, *args, **kwargs):
        raise ConvergenceError("Convergence halted due to matrix inversion problems.")

    monkeypatch.setattr(CoxPHFitter, "fit", fail)
    with pytest.raises(SurvivalError, match="did not converge"):
        _quiet(survival_analysis, cohort, load_spec(PAPER))


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_survival(cohort_csv, tmp_path):
    out = tmp_path / "run"
    r = _cli("survival", "--data", cohort_csv, "--spec", PAPER, "--out", out)
    assert r.exit_code == 0, r.output
    assert "Hazard ratios" in r.output and "InterMAT volume" in r.output and "log-rank p" in r.output
    assert "Proportional-hazards" in r.output and "excluded, CBP without onset age" in r.output
    assert all((out / f).is_file() for f in FILES)


def test_cli_survival_bad_input(cohort, tmp_path):
    no_onset = tmp_path / "no_onset.csv"
    cohort.drop(columns="cbp_onset_age").to_csv(no_onset, index=False)
    r = _cli("survival", "--data", no_onset, "--spec", PAPER, "--out", tmp_path / "a")
    assert r.exit_code == 2 and "error:" in r.output and "cbp_onset_age" in r.output and "Traceback" not in r.output
    good = tmp_path / "good.csv"
    cohort.to_csv(good, index=False)
    r = _cli("survival", "--data", good, "--spec", PAPER, "--exposure", "intermat", "--out", tmp_path / "b")
    assert r.exit_code == 2 and "error:" in r.output and "did you mean 'intermat_ml'" in r.output
