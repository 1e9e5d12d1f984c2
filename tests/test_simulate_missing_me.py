"""The simulator's MAR missingness and planted measurement error (issue 15, Validity).

MAR: the realised fraction matches, and values go missing more often in older participants and in cases.
Measurement error: the SE column is there, observed minus true has the stated SD, the reliability ratio in
the truth is that of the table, a naive logistic fit is attenuated as the truth predicts, and neither option
moves the default random stream or the rest of the table.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from backpain_epi import BackpainEpiError, CohortTruth, simulate_cohort
from backpain_epi.simulate import COMORBIDITIES, MAR_MECHANISM
from backpain_epi.validation import validate_table

from .helpers import fit_logistic
from .test_simulate_truths import DEFAULT_STREAM_SHA256


def _sha(data: pd.DataFrame) -> str:
    return hashlib.sha256(data.to_csv(index=False).encode()).hexdigest()


@pytest.fixture(scope="module")
def mar():
    return simulate_cohort(n=20_000, seed=5, mar_missing={"met_min_week": 0.2, "bmi": 0.15, "diabetes": 0.1})


def test_mar_fraction_and_truth(mar):
    d, miss = mar.data, mar.truth["missingness"]
    assert set(miss) == {"met_min_week", "bmi", "diabetes"}
    for name, frac in (("met_min_week", 0.2), ("bmi", 0.15), ("diabetes", 0.1)):
        assert d[name].isna().mean() == pytest.approx(frac, abs=0.012)
        assert miss[name]["fraction"] == frac and miss[name]["realised_fraction"] == pytest.approx(d[name].isna().mean())
        assert miss[name]["mechanism"] == MAR_MECHANISM
        c = miss[name]["coefficients"]
        z = (d["age"] - miss[name]["z_age"]["mean"]) / miss[name]["z_age"]["sd"]
        expected = 1 / (1 + np.exp(-(c["a"] + c["b_age"] * z + c["b_cbp"] * d["cbp"])))
        assert expected.mean() == pytest.approx(frac, rel=1e-6)  # the intercept is solved for the fraction
    assert d["activity_band"].isna().sum() == d["met_min_week"].isna().sum()
    assert set(d["diabetes"].dropna().unique()) <= {0.0, 1.0}
    report = validate_table(d)
    assert report.ok  # missing covariates are warnings, not errors


def test_mar_is_more_often_in_old_participants_and_cases(mar):
    d = mar.data
    old = d["age"] > d["age"].median()
    for name in ("met_min_week", "bmi"):
        m = d[name].isna()
        assert m[old].mean() > 1.3 * m[~old].mean()
        assert m[d["cbp"] == 1].mean() > 1.3 * m[d["cbp"] == 0].mean()
        # and conditional on age: within age halves, cases still more often missing
        for half in (old, ~old):
            assert m[half & (d["cbp"] == 1)].mean() > m[half & (d["cbp"] == 0)].mean()


def test_mar_leaves_the_rest_of_the_table_as_it_was(mar):
    plain = simulate_cohort(n=20_000, seed=5)
    a, b = mar.data, plain.data
    others = [c for c in b.columns if c not in ("met_min_week", "bmi", "diabetes", "activity_band")]
    pd.testing.assert_frame_equal(a[others], b[others])
    observed = a["bmi"].notna()
    np.testing.assert_array_equal(a.loc[observed, "bmi"], b.loc[observed, "bmi"])
    assert mar.truth["intercept"] == plain.truth["intercept"]


def test_options_do_not_move_the_default_stream():
    assert _sha(simulate_cohort(n=500, seed=3).data) == DEFAULT_STREAM_SHA256
    assert _sha(simulate_cohort(n=500, seed=3, mar_missing={}, measurement_error={}).data) == DEFAULT_STREAM_SHA256
    assert _sha(simulate_cohort(n=500, seed=3, mar_missing={"bmi": 0.0}).data) == DEFAULT_STREAM_SHA256
    plain = simulate_cohort(n=500, seed=3)
    assert plain.truth["missingness"] == {} and plain.truth["measurement_error"] == {} and plain.true_exposures is None


@pytest.fixture(scope="module")
def me():
    truth = CohortTruth(odds_ratios={"intermat_ml": 1.6, "lmm_ml": 1.0, "imf_pct": 1.0}, site_sd=0.0)
    return simulate_cohort(n=40_000, seed=7, truth=truth, measurement_error={"intermat_ml": 0.8, "imf_pct": 0.3})


def test_measurement_error_columns_and_sd(me):
    d, t = me.data, me.truth["measurement_error"]
    assert {"intermat_ml_se", "imf_pct_se"} <= set(d.columns) and "lmm_ml_se" not in d.columns
    true = me.true_exposures
    assert list(true.columns) == ["participant_id", "intermat_ml", "imf_pct"]
    assert (true["participant_id"] == d["participant_id"]).all()
    for name, value in (("intermat_ml", 0.8), ("imf_pct", 0.3)):
        err, se = d[name] - true[name], d[f"{name}_se"]
        sd_true = me.truth["sd"][name]
        assert true[name].std() == pytest.approx(sd_true)  # the truth's SD is of the true exposure
        assert se.min() >= 0.5 * value * sd_true * (1 - 1e-9) and se.max() <= 1.5 * value * sd_true * (1 + 1e-9)
        assert se.std() > 0.2 * se.mean()  # heteroscedastic
        assert (err / se).std() == pytest.approx(1.0, abs=0.02)
        assert err.mean() == pytest.approx(0.0, abs=4 * value * sd_true / np.sqrt(len(d)))
        assert t[name]["reliability_ratio"] == pytest.approx(true[name].var() / d[name].var())
        assert t[name]["reliability_ratio"] == pytest.approx(t[name]["reliability_ratio_expected"], abs=0.02)
        assert t[name]["se_column"] == f"{name}_se"
    # the untouched exposure is the same as without the option
    plain = simulate_cohort(n=40_000, seed=7, truth=CohortTruth(odds_ratios={"intermat_ml": 1.6, "lmm_ml": 1.0, "imf_pct": 1.0},
                                                                site_sd=0.0))
    pd.testing.assert_series_equal(d["lmm_ml"], plain.data["lmm_ml"])
    pd.testing.assert_series_equal(true["intermat_ml"], plain.data["intermat_ml"])
    pd.testing.assert_series_equal(d["cbp"], plain.data["cbp"])  # the outcome is drawn from the true exposure


def _adjusted_fit(d: pd.DataFrame, t: dict, exposure_values: dict) -> np.ndarray:
    cols = {k: (np.asarray(v, float) - t["means"][k]) / (2 * t["sd"][k]) for k, v in exposure_values.items()}
    male = (d["sex"] == "male").to_numpy(float)
    met = np.log1p(d["met_min_week"].to_numpy(float))
    X = np.column_stack([np.ones(len(d)), *cols.values(), (d["age"] - 48) / 28, (d["bmi"] - 26.5) / 8.6, male,
                         *(d[k].to_numpy(float) for k in COMORBIDITIES), met, met**2])
    return fit_logistic(X, d["cbp"].to_numpy(float))


def test_naive_fit_is_attenuated_as_the_truth_predicts(me):
    d, t = me.data, me.truth
    names = ("intermat_ml", "lmm_ml", "imf_pct")
    beta_true, se_true = _adjusted_fit(d, t, {k: (me.true_exposures[k] if k in me.true_exposures else d[k]) for k in names})
    beta_naive, se_naive = _adjusted_fit(d, t, {k: d[k] for k in names})
    log_or = np.log(1.6)
    assert abs(beta_true[1] - log_or) < 3.5 * se_true[1]  # error-free data recover the planted OR per 2 SD
    expected = np.log(t["measurement_error"]["intermat_ml"]["attenuated_or_per_2sd_true"])
    assert expected < 0.8 * log_or  # the planted error really attenuates
    assert abs(beta_naive[1] - expected) < 3.5 * se_naive[1]
    assert beta_naive[1] < beta_true[1] - 2 * se_naive[1]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mar_missing": {"cbp": 0.1}}, "unknown column 'cbp'"),
        ({"mar_missing": {"intermat_ml": 0.1}}, "covariates only"),
        ({"mar_missing": {"bmii": 0.1}}, "did you mean 'bmi'"),
        ({"mar_missing": {"bmi": 0.7}}, r"\[0, 0.6\]"),
        ({"mar_missing": {"bmi": -0.1}}, r"\[0, 0.6\]"),
        ({"mar_missing": {"bmi": "0.1"}}, r"\[0, 0.6\]"),
        ({"mar_missing": ["bmi"]}, "mapping"),
        ({"measurement_error": {"age": 0.3}}, "unknown exposure 'age'"),
        ({"measurement_error": {"intermat_ml": 0.0}}, r"\(0, 2\]"),
        ({"measurement_error": {"intermat_ml": 2.5}}, r"\(0, 2\]"),
        ({"measurement_error": {"intermat_ml": True}}, r"\(0, 2\]"),
    ],
)
def test_bad_options(kwargs, message):
    with pytest.raises(BackpainEpiError, match=message):
        simulate_cohort(n=100, seed=1, **kwargs)


def test_table_with_measurement_error_validates_or_counts_what_it_breaks():
    small = simulate_cohort(n=2000, seed=2, measurement_error={"lmm_ml": 0.3})
    report = validate_table(small.data)
    assert report.ok, report.format()  # the SE columns are in the dictionary
    assert {t["n_outside_range"] for t in small.truth["measurement_error"].values()} == {0}
    large = simulate_cohort(n=2000, seed=2, measurement_error={"imf_pct": 0.6})  # observed values are not clipped
    n_out = large.truth["measurement_error"]["imf_pct"]["n_outside_range"]
    assert n_out == int((large.data["imf_pct"] < 0).sum()) > 0
    errors = validate_table(large.data).errors
    assert [p.column for p in errors] == ["imf_pct"] and f"{n_out} rows outside" in errors[0].message
