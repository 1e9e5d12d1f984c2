"""The synthetic cohort: reproducible, NAKO-like margins, and it carries its truth."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from backpain_epi import BackpainEpiError, CohortTruth, simulate_cohort, validate_table
from backpain_epi.cohort import scale_per_2sd

from .helpers import fit_logistic


def test_same_seed_same_cohort_other_seed_other_cohort():
    a, b = simulate_cohort(n=500, seed=3), simulate_cohort(n=500, seed=3)
    pd.testing.assert_frame_equal(a.data, b.data)
    assert a.truth == b.truth
    c = simulate_cohort(n=500, seed=4)
    assert not a.data["age"].equals(c.data["age"])


def test_nako_margins(nako_sized):
    d = nako_sized.data
    assert len(d) == 27_518
    assert d["age"].min() >= 19 and d["age"].max() <= 74
    assert 47 <= d["age"].median() <= 51
    assert (d["sex"] == "female").mean() == pytest.approx(0.44, abs=0.015)
    assert d["site"].nunique() == 18
    bands = d["activity_band"].value_counts(normalize=True)
    assert bands["<500"] == pytest.approx(0.40, abs=0.02)
    assert bands["500-5000"] == pytest.approx(0.47, abs=0.02)
    assert bands[">5000"] == pytest.approx(0.14, abs=0.015)
    assert d["cbp"].mean() == pytest.approx(0.22, abs=0.01)
    assert nako_sized.truth["prevalence"] == pytest.approx(d["cbp"].mean())


def test_comorbidities_rise_with_age(nako_sized):
    d = nako_sized.data
    young, old = d[d["age"] < 40], d[d["age"] >= 60]
    for name in ("diabetes", "dyslipidemia", "osteoporosis", "osteoarthritis"):
        assert old[name].mean() > 2 * young[name].mean(), name


def test_exposures_depend_on_sex_age_bmi_activity(nako_sized):
    d = nako_sized.data
    male = d["sex"] == "male"
    assert d.loc[male, "lmm_ml"].mean() > 1.2 * d.loc[~male, "lmm_ml"].mean()
    assert d.loc[~male, "imf_pct"].mean() > d.loc[male, "imf_pct"].mean()
    spearman = d[["lmm_ml", "intermat_ml", "imf_pct", "age", "bmi"]].assign(act=np.log1p(d["met_min_week"])).corr("spearman")
    assert spearman.loc["intermat_ml", "age"] > 0.1 and spearman.loc["imf_pct", "age"] > 0.1
    assert spearman.loc["lmm_ml", "age"] < -0.1
    assert spearman.loc["intermat_ml", "bmi"] > 0.05 and spearman.loc["imf_pct", "bmi"] > 0.05
    assert spearman.loc["lmm_ml", "act"] > 0.05
    assert (d["autochthon_ml"] - d["lmm_ml"] - d["intermat_ml"]).abs().max() < 0.11
    assert d["imf_pct"].between(2, 30).all()


def test_onset_ages_belong_to_cases_and_precede_the_exam(nako_sized):
    d = nako_sized.data
    assert d.loc[d["cbp"] == 1, "cbp_onset_age"].notna().all()
    assert d.loc[d["cbp"] == 0, "cbp_onset_age"].isna().all()
    assert (d["cbp_onset_age"] <= d["age"]).where(d["cbp"] == 1, True).all()
    assert d["cbp_onset_age"].min() >= 18


def _design(d: pd.DataFrame, truth: CohortTruth):
    """The truth's own design: per-2-SD continuous terms, binaries, activity pieces, intercept."""
    cols = [np.ones(len(d))]
    for name in ("intermat_ml", "lmm_ml", "imf_pct", "age", "bmi"):
        cols.append(scale_per_2sd(d[name])[0].to_numpy())
    cols.append((d["sex"] == "male").to_numpy(float))
    cols += [d[k].to_numpy(float) for k in ("diabetes", "dyslipidemia", "osteoporosis", "osteoarthritis")]
    u, u_opt = truth.activity_scale(d["met_min_week"].to_numpy()), truth.activity_scale(truth.activity_optimum_met)
    cols += [np.where(u < u_opt, (u - u_opt) ** 2, 0), np.where(u >= u_opt, (u - u_opt) ** 2, 0)]
    return np.column_stack(cols)


@pytest.mark.parametrize(
    "truth",
    [
        CohortTruth(site_sd=0.0),
        CohortTruth(odds_ratios={"intermat_ml": 1.6, "lmm_ml": 1.0, "imf_pct": 0.8}, site_sd=0.0,
                    activity_or_at_0=1.0, activity_or_at_10000=1.0),
    ],
    ids=["default", "other-truth-flat-activity"],
)
def test_outcome_carries_the_planted_odds_ratios(truth):
    """A maximum-likelihood fit of the truth's own model recovers the planted ORs."""
    sim = simulate_cohort(n=27_518, seed=21, truth=truth)
    beta, se = fit_logistic(_design(sim.data, truth), sim.data["cbp"].to_numpy(float))
    terms = ("intermat_ml", "lmm_ml", "imf_pct", "age", "bmi", "sex[male]", "diabetes", "dyslipidemia", "osteoporosis", "osteoarthritis")
    for i, name in enumerate(terms, start=1):
        assert abs(beta[i] - np.log(truth.odds_ratios[name])) < 3.5 * se[i], name
    low, high = truth.activity_log_or(0.0), truth.activity_log_or(10_000.0)
    u_opt = truth.activity_scale(truth.activity_optimum_met)
    d_low, d_high = (truth.activity_scale(0.0) - u_opt) ** 2, (truth.activity_scale(1e4) - u_opt) ** 2
    assert abs(beta[-2] * d_low - low) < 3.5 * se[-2] * d_low
    assert abs(beta[-1] * d_high - high) < 3.5 * se[-1] * d_high


def _truth_linear_predictor(t: dict, d: pd.DataFrame) -> np.ndarray:
    """The linear predictor rebuilt from the truth JSON alone (no simulator code)."""
    lp = np.full(len(d), t["intercept"])
    for name, beta in t["log_or_per_unit"].items():
        if name == "sex[male]":
            lp += beta * (d["sex"] == "male")
        elif name in t["means"]:
            lp += beta * (d[name] - t["means"][name])
        else:
            lp += beta * d[name]
    act = t["activity"]
    grid = [row["met_min_week"] for row in act["curve"]]
    log_or = np.log([row["or_vs_optimum"] for row in act["curve"]])
    lp += np.interp(d["met_min_week"], grid, log_or)  # the grid is dense enough for a mean check
    return np.asarray(lp + d["site"].map(t["site_effects"]).to_numpy(), dtype=float)


def test_truth_json_reproduces_the_outcome_model(nako_sized):
    t, d = nako_sized.truth, nako_sized.data
    json.dumps(t)  # JSON-ready
    assert t["odds_ratios_per_2sd"]["intermat_ml"] == 1.22 and t["odds_ratios_binary"]["osteoarthritis"] == 1.8
    assert t["log_or_per_unit"]["intermat_ml"] * 2 * t["sd"]["intermat_ml"] == pytest.approx(np.log(1.22))
    lp = _truth_linear_predictor(t, d)
    risk = 1 / (1 + np.exp(-lp))
    assert risk.mean() == pytest.approx(t["prevalence_target"], abs=0.01)
    # cases have higher modelled risk than controls, by a margin the planted ORs imply
    assert risk[d["cbp"] == 1].mean() - risk[d["cbp"] == 0].mean() > 0.05
    curve = {row["met_min_week"]: row for row in t["activity"]["curve"]}
    assert curve[1500.0]["or_vs_reference"] == pytest.approx(1.0)
    assert curve[0.0]["or_vs_optimum"] == pytest.approx(1.35) and curve[10000.0]["or_vs_optimum"] == pytest.approx(1.25)


def test_site_effects_shape_site_prevalence(nako_sized):
    """Sites with a larger planted intercept have more CBP (not only noise)."""
    t, d = nako_sized.truth, nako_sized.data
    by_site = d.groupby("site")["cbp"].mean()
    effects = pd.Series(t["site_effects"])[by_site.index]
    assert by_site.corr(effects, method="spearman") > 0.6


def test_activity_optimum_elsewhere():
    t = CohortTruth(activity_optimum_met=4000)
    sim = simulate_cohort(n=500, seed=1, truth=t)
    rows = {r["met_min_week"]: r for r in sim.truth["activity"]["curve"]}
    assert rows[0.0]["or_vs_optimum"] == pytest.approx(1.35)
    t_curve = t.activity_curve(np.array([1500.0, 4000.0]))
    assert rows[1500.0]["or_vs_reference"] == pytest.approx(1.0) and t_curve[1] < 1  # the optimum beats the reference


def test_onset_is_earlier_at_higher_risk(nako_sized):
    t, d = nako_sized.truth, nako_sized.data
    assert t["onset"]["risk_exponent"] > 0
    cases = d[d["cbp"] == 1]
    lp = _truth_linear_predictor(t, d)[(d["cbp"] == 1).to_numpy()]
    relative_onset = ((cases["cbp_onset_age"] - 18) / (cases["age"] - 18)).to_numpy()
    assert pd.Series(lp).corr(pd.Series(relative_onset), method="spearman") < -0.1


def test_no_site_effect_and_flat_activity(flat_truth):
    sim = simulate_cohort(n=1000, seed=1, truth=flat_truth)
    assert set(sim.truth["site_effects"].values()) == {0.0}
    assert np.allclose(flat_truth.activity_curve(np.array([0, 600, 20_000])), 1.0)


def test_u_shaped_activity_truth():
    t = CohortTruth()
    grid = np.array([0, 100, 600, 1500, 5000, 10_000])
    curve = t.activity_curve(grid)
    assert np.argmin(curve) == 3 and curve[0] == pytest.approx(1.35) and curve[-1] == pytest.approx(1.25)
    assert np.all(np.diff(curve[:4]) < 0) and np.all(np.diff(curve[3:]) > 0)
    assert curve[1] > 1.1  # low activity, not only none at all, carries excess risk


def test_missing_values_can_be_planted():
    sim = simulate_cohort(n=4000, seed=2, missing_frac=0.05)
    assert sim.data["bmi"].isna().mean() == pytest.approx(0.05, abs=0.015)
    assert sim.data["activity_band"].isna().sum() == sim.data["met_min_week"].isna().sum() > 0
    report = validate_table(sim.data)
    assert report.ok and {p.column for p in report.warnings} == {"bmi", "met_min_week"}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 10}, "at least 50"),
        ({"seed": -1}, "seed must be a whole number"),
        ({"seed": 1.5}, "seed must be a whole number"),
        ({"n_sites": 1}, "n_sites"),
        ({"missing_frac": 0.7}, "missing_frac"),
    ],
)
def test_bad_simulation_settings(kwargs, message):
    with pytest.raises(BackpainEpiError, match=message):
        simulate_cohort(**kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"odds_ratios": {"intermat": 1.2}}, "unknown truth term"),
        ({"odds_ratios": {"intermat_ml": -1}}, "positive odds ratio"),
        ({"prevalence": 1.2}, "prevalence"),
        ({"site_sd": -0.1}, "site_sd"),
        ({"site_sd": float("nan")}, "site_sd must be a finite number"),
        ({"prevalence": float("nan")}, "prevalence"),
        ({"activity_optimum_met": 0}, "activity_optimum_met"),
        ({"activity_or_at_0": 0.5}, "activity_or_at_0 must be an odds ratio ≥ 1"),
    ],
)
def test_bad_truth(kwargs, message):
    with pytest.raises(BackpainEpiError, match=message):
        CohortTruth(**kwargs)


def test_write_puts_the_truth_first_and_fails_cleanly(tmp_path):
    from backpain_epi import InputFileError

    sim = simulate_cohort(n=100, seed=1)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputFileError, match="cannot be written"):
        sim.write(tmp_path / "c.csv", truth_out=blocker / "t.json")
    assert not (tmp_path / "c.csv").exists()  # no table without its truth
    with pytest.raises(InputFileError, match="suffix '.xlsx'"):
        sim.write(tmp_path / "c.xlsx", truth_out=tmp_path / "t.json")
    assert not (tmp_path / "t.json").exists()
