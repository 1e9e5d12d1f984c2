"""Absolute risks by g-computation, E-values, effect modification and spline exposures (issue 14, items 1-4)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import special

from backpain_epi.modelling import estimands
from backpain_epi.modelling.design import make_design
from backpain_epi.modelling.estimands import (ABSOLUTE_RISK_COLUMNS, contrast_summary, e_value, e_value_interval,
                                              exposure_contrast, marginal_risk_draws)
from backpain_epi.modelling.fit import load_run
from backpain_epi.modelling.params import GROUP_SD
from backpain_epi.modelling.results import _thin, draws, eta_from_arrays
from backpain_epi.modelling.spec import ModelSpec, SpecError, load_spec

from ..conftest import MODELS


# --------------------------------------------------------------------------- E-values


@pytest.mark.parametrize("rr, expected", [(3.9, 3.9 + np.sqrt(3.9 * 2.9)), (1.0, 1.0), (0.5, 2 + np.sqrt(2)), (1.22, 1.22 + np.sqrt(1.22 * 0.22))])
def test_e_value_is_the_vanderweele_ding_formula(rr, expected):
    assert e_value(rr) == pytest.approx(expected, rel=1e-12)


def test_e_value_of_the_published_example():
    # VanderWeele & Ding (2017): RR 3.9 gives an E-value of 7.26, its lower limit 1.8 gives 3.0
    assert round(e_value(3.9), 2) == 7.26
    assert round(e_value_interval(1.8, 8.7), 2) == 3.0


def test_e_value_interval_takes_the_limit_nearest_one():
    assert e_value_interval(0.9, 1.3) == 1.0
    assert e_value_interval(1.1, 1.5) == pytest.approx(e_value(1.1))
    assert e_value_interval(0.6, 0.8) == pytest.approx(e_value(0.8))


def test_e_value_refuses_a_non_positive_ratio():
    with pytest.raises(Exception, match="positive, finite risk ratio"):
        e_value(0.0)


def test_contrast_summary_gives_nnt_only_when_the_rd_interval_excludes_zero():
    rng = np.random.default_rng(0)
    low = rng.normal(0.20, 0.005, 4000)
    harm = contrast_summary(low, low + rng.normal(0.05, 0.005, 4000))
    assert harm["nnt_kind"] == "NNH" and harm["nnt"] == pytest.approx(20, rel=0.05)
    assert harm["nnt_lo95"] < harm["nnt"] < harm["nnt_hi95"]
    benefit = contrast_summary(low, low - 0.04)
    assert benefit["nnt_kind"] == "NNT" and benefit["nnt"] == pytest.approx(25, rel=0.01)
    null = contrast_summary(low, low + rng.normal(0.0, 0.02, 4000))
    assert null["nnt_kind"] == "" and np.isnan(null["nnt"]) and null["e_value_ci"] == 1.0


# --------------------------------------------------------------------------- g-computation


@pytest.fixture(scope="module")
def analysed(unadjusted_run, cohort_csv, dictionary):
    from backpain_epi.modelling.fit import read_analysis_table

    table, _ = read_analysis_table(cohort_csv[0], dictionary, unadjusted_run.spec.columns())
    by_id = table.set_index(table["participant_id"].astype(str), drop=False)
    return by_id.loc[unadjusted_run.analysed_ids].reset_index(drop=True)


def test_fit_writes_absolute_risk_with_the_issue_columns(unadjusted_run):
    risk = unadjusted_run.absolute_risk
    required = ["term", "risk_low", "risk_high", "rd_per_1000", "rd_lo95", "rd_hi95", "rr", "rr_lo95", "rr_hi95", "e_value", "e_value_ci"]
    assert list(risk.columns) == ABSOLUTE_RISK_COLUMNS and set(required) <= set(risk.columns)
    assert list(risk["term"]) == list(unadjusted_run.spec.exposures)
    assert (unadjusted_run.out / "absolute_risk.csv").is_file()
    assert load_run(unadjusted_run.out).absolute_risk["rd_per_1000"].tolist() == pytest.approx(risk["rd_per_1000"].tolist())
    for r in risk.itertuples():  # the RD, the RR and the E-value agree with each other and with the OR's direction
        assert r.rd_lo95 <= r.rd_per_1000 <= r.rd_hi95 and r.rr_lo95 <= r.rr <= r.rr_hi95
        assert np.sign(r.rd_per_1000) == np.sign(np.log(r.rr))
        assert r.e_value == pytest.approx(e_value(r.rr)) and 1 <= r.e_value_ci <= r.e_value
    odds = unadjusted_run.summary.set_index("term")["or_median"]
    for r in risk.itertuples():
        assert np.sign(np.log(odds[r.term])) == np.sign(r.rd_per_1000)
        assert abs(np.log(r.rr)) < abs(np.log(odds[r.term]))  # CBP is common: the RR is nearer 1 than the OR


def test_g_computation_equals_the_average_of_every_rows_risk(unadjusted_run, analysed, monkeypatch):
    """Chunked standardisation (7-row chunks) equals predicting every row at once and averaging, per draw."""
    run, e = unadjusted_run, "intermat_ml"
    low, _ = exposure_contrast(analysed, e)
    monkeypatch.setattr(estimands, "CHUNK_CELLS", 7 * 200)
    got = marginal_risk_draws(run.idata, run.recipe, analysed, {e: low}, max_draws=200)
    X, A, group = run.recipe.transform(analysed.assign(**{e: low}))
    brute = special.expit(eta_from_arrays(run.idata, run.recipe, X, A, group, max_draws=200)).mean(axis=1)
    np.testing.assert_allclose(got, brute, rtol=1e-10)


def test_new_site_risk_integrates_the_site_intercept(unadjusted_run, analysed):
    """Gauss-Hermite over Normal(0, group_sd) equals Monte Carlo over many new-site intercepts."""
    run = unadjusted_run
    rows = analysed.iloc[:300]
    got = marginal_risk_draws(run.idata, run.recipe, rows, new_site=True, max_draws=50)
    X, A, _ = run.recipe.transform(rows)
    eta = eta_from_arrays(run.idata, run.recipe, X, A, None, max_draws=50)
    sd = draws(run.idata, GROUP_SD)[_thin(run.idata, 50)]
    u = np.random.default_rng(1).standard_normal(20_000)
    mc = np.array([special.expit(eta[d][None, :] + sd[d] * u[:, None]).mean() for d in range(len(sd))])
    np.testing.assert_allclose(got, mc, atol=2e-3)
    observed = marginal_risk_draws(run.idata, run.recipe, rows, max_draws=50)
    assert not np.allclose(got, observed)  # the setting matters


def test_exposure_contrast_is_mean_plus_minus_one_sd(analysed):
    lo, hi = exposure_contrast(analysed, "intermat_ml")
    x = analysed["intermat_ml"].astype(float)
    assert (lo + hi) / 2 == pytest.approx(x.mean()) and (hi - lo) / 2 == pytest.approx(x.std(ddof=1))


# --------------------------------------------------------------------------- specs: effect modifiers and spline exposures


def _spec(**changes) -> ModelSpec:
    raw = yaml.safe_load((MODELS / "unadjusted.yaml").read_text())
    raw.update(changes)
    return ModelSpec.from_dict(raw)


def test_effect_modifiers_add_the_products_and_round_trip():
    spec = _spec(effect_modifiers=["sex"])
    assert spec.effect_modifiers == ("sex",)
    assert spec.modifier_terms() == ["sex", "intermat_ml:sex", "lmm_ml:sex"]
    assert ModelSpec.from_dict(yaml.safe_load(spec.to_yaml())) == spec


@pytest.mark.parametrize("modifiers, message", [
    (["age"], "is float; an effect modifier is categorical or binary"),
    (["intermat_ml"], "must be a covariate column"),
    (["sexx"], "did you mean 'sex'"),
])
def test_bad_effect_modifiers_are_refused(modifiers, message):
    with pytest.raises(SpecError, match=message):
        _spec(effect_modifiers=modifiers)


def test_a_modifier_written_twice_is_refused():
    with pytest.raises(SpecError, match="also written as the covariate"):
        _spec(effect_modifiers=["sex"], covariates=["age", "sex", "intermat_ml:sex"])


def test_spline_exposures_parse_and_round_trip():
    spec = _spec(exposures=[{"intermat_ml": "spline"}, "lmm_ml"])
    assert spec.exposures == ("intermat_ml", "lmm_ml") and spec.exposure_splines == {"intermat_ml": 5}
    assert "smooth_sd" in spec.priors
    assert ModelSpec.from_dict(yaml.safe_load(spec.to_yaml())) == spec
    assert _spec(exposures=[{"intermat_ml": {"basis": "spline", "df": 7}}]).exposure_splines == {"intermat_ml": 7}


@pytest.mark.parametrize("exposures, message", [
    ([{"intermat_ml": "bspline"}], "is not a form an exposure takes"),
    ([{"intermat_ml": {"basis": "spline", "df": 30}}], "df must be a whole number of knots from 4 to 12"),
    ([{"intermat_ml": "spline", "lmm_ml": "spline"}], "cannot read"),
])
def test_bad_spline_exposures_are_refused(exposures, message):
    with pytest.raises(SpecError, match=message):
        _spec(exposures=exposures)


def test_spline_exposures_cannot_be_modified():
    with pytest.raises(SpecError, match="no single odds ratio to modify"):
        _spec(exposures=[{"intermat_ml": "spline"}], effect_modifiers=["sex"])


def test_a_spline_exposure_design_keeps_the_linear_column_and_adds_penalized_ones(cohort_csv, dictionary):
    from backpain_epi.modelling.fit import read_analysis_table

    spec = _spec(exposures=[{"intermat_ml": "spline"}, "lmm_ml"])
    table, _ = read_analysis_table(cohort_csv[0], dictionary, spec.columns())
    design = make_design(table, spec, dictionary)
    assert "intermat_ml" in design.terms and design.S.shape == (design.n, 3)  # 5 knots: 3 penalized columns
    np.testing.assert_allclose(design.S.mean(axis=0), 0, atol=1e-10)  # centred: identifiable next to the intercept
    lin, wiggly = design.recipe.exposure_curve_basis("intermat_ml", np.array([10.0, 60.0, 200.0]),
                                                     design.recipe.exposure_splines["intermat_ml"]["median"])
    assert lin.shape == (3,) and wiggly.shape == (3, 3)
    ref = design.recipe.exposure_curve_basis("intermat_ml", np.array([design.recipe.exposure_splines["intermat_ml"]["median"]]),
                                             design.recipe.exposure_splines["intermat_ml"]["median"])
    np.testing.assert_allclose(np.concatenate([ref[0], ref[1].ravel()]), 0, atol=1e-12)


def test_effect_modification_table_combines_the_coefficients(cohort_csv, tmp_path):
    """Stratum ORs are exp(beta_e + beta_e:m), the ratio exp(beta_e:m), RERI from the three ORs; and the strata RDs exist."""
    from backpain_epi.modelling import fit_model

    from ..conftest import QUICK

    spec = _spec(effect_modifiers=["sex"])
    result = fit_model(cohort_csv[0], spec, out=tmp_path / "run", **QUICK)
    table = result.effect_modification
    assert len(table) == 4 and set(table["level"]) == {"female", "male"}
    beta = result.idata.posterior["beta"].stack(s=("chain", "draw"))
    b_e, b_int, b_m = (beta.sel(term=t).values for t in ("intermat_ml", "intermat_ml:sex[male]", "sex[male]"))
    male = table[(table.term == "intermat_ml") & (table.level == "male")].iloc[0]
    assert male["or"] == pytest.approx(np.median(np.exp(b_e + b_int)))
    assert male["ratio_of_ors"] == pytest.approx(np.median(np.exp(b_int)))
    assert male["reri"] == pytest.approx(np.median(np.exp(b_e + b_m + b_int) - np.exp(b_e) - np.exp(b_m) + 1))
    assert table["rd_per_1000"].notna().all() and table["n"].sum() == 2 * result.provenance.data.n_analysed
    assert load_run(tmp_path / "run").effect_modification.shape == table.shape


def test_loo_draws_are_capped_for_large_cohorts():
    from backpain_epi.modelling.fit import LL_MAX_CELLS, loo_draw_count

    assert loo_draw_count(3_000, 1000) == 1000
    assert loo_draw_count(27_518, 1000) == 1000
    assert loo_draw_count(300_000, 1000) == 400 and 300_000 * 400 <= 1.2 * LL_MAX_CELLS
    assert loo_draw_count(150_000, 1000) == LL_MAX_CELLS // 150_000
    assert loo_draw_count(1_000_000, 200) == 200  # never more than asked
