"""Prior sensitivity by power scaling: the log prior of the top-level priors, the psens table, its verdict and report section."""

from __future__ import annotations

import warnings
from dataclasses import replace
from types import SimpleNamespace

import arviz as az
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from backpain_epi import simulate_cohort
from backpain_epi.errors import BackpainEpiError
from backpain_epi.modelling.design import make_design
from backpain_epi.modelling.fit import fit_model, read_analysis_table
from backpain_epi.modelling.sensitivity import (CONFLICT, NOT_SENSITIVE, STRONG_PRIOR, add_log_prior, prior_sensitivity,
                                                sensitivity_verdict)
from backpain_epi.modelling.spec import Prior, load_spec
from backpain_epi.reporting.runs import ReportRun
from backpain_epi.reporting.sections import SECTIONS, sensitivity as section

from .conftest import MODELS, QUICK

EXPOSURES = ("intermat_ml", "lmm_ml")


def _fit_with_log_prior(data: pd.DataFrame, spec, dictionary, **settings):
    """``spec`` fit to ``data`` (the gate is not at issue here), with the log prior added on a design rebuilt from ``data``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_model(data, spec, dictionary=dictionary, **settings)
    table, _ = read_analysis_table(data, dictionary, spec.columns())
    add_log_prior(result.idata, make_design(table, spec, dictionary))
    return result


@pytest.fixture(scope="module")
def small():
    return simulate_cohort(n=500, seed=11).data


@pytest.fixture(scope="module")
def shipped_fit(small, dictionary):
    """models/unadjusted.yaml on 500 rows, the log-likelihood (and so the log prior) on 200 of the 600 draws."""
    return _fit_with_log_prior(small, load_spec(MODELS / "unadjusted.yaml", dictionary), dictionary, loo_draws=200, **QUICK)


@pytest.fixture(scope="module")
def strong_fit(small, dictionary):
    """The same model with a deliberately strong prior on every coefficient: normal(0, 0.02), a 95% prior OR of 0.96–1.04."""
    spec = load_spec(MODELS / "unadjusted.yaml", dictionary)
    spec = replace(spec, priors={**spec.priors, "coefficients": Prior.parse("normal(0, 0.02)")})
    return _fit_with_log_prior(small, spec, dictionary, **QUICK)


def test_log_prior_holds_the_top_level_priors_on_the_log_likelihood_draws(shipped_fit):
    idata = shipped_fit.idata
    lp = idata.log_prior
    assert set(lp.data_vars) == {"intercept", "beta", "group_sd"}  # not group_z: the site effects are not scaled
    assert "group_z" in idata.posterior
    np.testing.assert_array_equal(lp.draw.values, idata.log_likelihood.draw.values)
    assert lp.sizes["draw"] == 100 < idata.posterior.sizes["draw"]
    assert all(lp[v].dtype == np.float32 for v in lp.data_vars)
    assert list(lp.beta.term.values) == list(idata.posterior.beta.term.values)
    chain, draw = 1, int(lp.draw.values[37])
    post = idata.posterior.sel(chain=chain, draw=draw)
    at = lp.sel(chain=chain, draw=draw)
    np.testing.assert_allclose(float(at.intercept), stats.norm(0, 2.5).logpdf(float(post.intercept)), rtol=1e-5)
    np.testing.assert_allclose(at.beta.values, stats.norm(0, 1).logpdf(post.beta.values), rtol=1e-5)
    np.testing.assert_allclose(float(at.group_sd), stats.halfnorm(scale=1).logpdf(float(post.group_sd)), rtol=1e-5)


def test_the_table_has_a_row_per_term_and_scale_parameter(shipped_fit):
    table = prior_sensitivity(shipped_fit.idata)
    assert list(table.columns) == ["term", "parameter", "prior", "likelihood", "diagnosis"]
    assert list(table["term"]) == [*shipped_fit.summary["term"], "group_sd"]
    assert table[["prior", "likelihood"]].notna().all().all() and (table[["prior", "likelihood"]] >= 0).all().all()
    expected = np.where(table["prior"] >= 0.05, np.where(table["likelihood"] >= 0.05, CONFLICT, STRONG_PRIOR), NOT_SENSITIVE)
    assert list(table["diagnosis"]) == list(expected)


def test_a_deliberately_strong_prior_is_flagged(strong_fit, shipped_fit):
    strong = prior_sensitivity(strong_fit.idata).set_index("term")
    shipped = prior_sensitivity(shipped_fit.idata).set_index("term")
    for term in EXPOSURES:
        assert strong.loc[term, "prior"] >= 0.05 and strong.loc[term, "diagnosis"] in (CONFLICT, STRONG_PRIOR)
        assert strong.loc[term, "prior"] > 2 * shipped.loc[term, "prior"]
    verdict = sensitivity_verdict(strong.reset_index(), model="strong")
    assert verdict.startswith("Prior sensitivity (power scaling), strong: ") and all(t in verdict for t in EXPOSURES)
    assert "no reported odds ratio" not in verdict


def test_the_verdict_names_flagged_terms_by_diagnosis():
    table = pd.DataFrame({"term": ["a", "b", "c", "group_sd"], "parameter": ["beta", "beta", "beta", "group_sd"],
                          "prior": [0.01, 0.2, 0.1, 0.3], "likelihood": [0.2, 0.1, 0.01, 0.01],
                          "diagnosis": [NOT_SENSITIVE, CONFLICT, STRONG_PRIOR, STRONG_PRIOR]})
    assert sensitivity_verdict(table) == ("Prior sensitivity (power scaling): 2 reported odds ratios are sensitive to the prior: "
                                          f"b ({CONFLICT}); c ({STRONG_PRIOR}); scale parameters: group_sd ({STRONG_PRIOR}).")
    calm = table.assign(diagnosis=NOT_SENSITIVE)
    assert sensitivity_verdict(calm) == "Prior sensitivity (power scaling): no reported odds ratio is sensitive to its prior."


def test_a_posterior_without_log_prior_is_refused_with_what_to_do(shipped_fit):
    old = az.InferenceData(**{g: shipped_fit.idata[g] for g in shipped_fit.idata.groups() if g != "log_prior"})
    with pytest.raises(BackpainEpiError, match="no log_prior group.*refit"):
        prior_sensitivity(old)
    bare = az.InferenceData(posterior=shipped_fit.idata.posterior)
    with pytest.raises(BackpainEpiError, match="no log_likelihood group"):
        add_log_prior(bare, None)


def test_the_section_gives_a_table_and_verdict_and_a_note_for_an_old_run(shipped_fit, strong_fit):
    assert SECTIONS.index(section.prior_sensitivity) == [s.__name__ for s in SECTIONS].index("predictive_check") + 1
    old_idata = az.InferenceData(**{g: shipped_fit.idata[g] for g in shipped_fit.idata.groups() if g != "log_prior"})
    runs = [ReportRun(result=replace(shipped_fit, name="shipped"), analysed=pd.DataFrame()),
            ReportRun(result=replace(strong_fit, name="strong"), analysed=pd.DataFrame()),
            ReportRun(result=replace(shipped_fit, name="old", idata=old_idata), analysed=pd.DataFrame())]
    out = section.prior_sensitivity(SimpleNamespace(runs=runs))
    assert out.title == "Prior sensitivity" and out.shown
    assert out.lead == [out.values["verdicts"]["shipped"], out.values["verdicts"]["strong"]]
    assert set(out.values["verdicts"]) == {"shipped", "strong"}
    assert len(out.notes) == 1 and "'old'" in out.notes[0] and "refit" in out.notes[0]
    item = out.tables["table"]
    assert list(item.numeric["model"].unique()) == ["shipped", "strong"]
    assert list(item.df.columns) == ["Model", "Term", "Prior", "Likelihood", "Diagnosis"]
    assert item.df["Prior"].str.fullmatch(r"\d\.\d{3}").all()
    strong_rows = item.numeric[item.numeric["model"] == "strong"].set_index("term")
    assert set(strong_rows.loc[list(EXPOSURES), "diagnosis"]) <= {CONFLICT, STRONG_PRIOR}
    assert "Kallioinen" in out.values["methods_text"] and "strong 4 of 4" in out.values["results_text"]
    assert "InterMAT" in out.values["results_text"]  # the dictionary's label, not the column name


def test_the_section_of_old_runs_only_is_a_note(shipped_fit):
    old_idata = az.InferenceData(**{g: shipped_fit.idata[g] for g in shipped_fit.idata.groups() if g != "log_prior"})
    out = section.prior_sensitivity(SimpleNamespace(runs=[ReportRun(result=replace(shipped_fit, idata=old_idata),
                                                                      analysed=pd.DataFrame())]))
    assert not out.shown and len(out.notes) == 1 and not out.values.get("results_text")


@pytest.mark.slow
def test_the_shipped_priors_are_not_flagged_at_the_nako_size(nako_sized, dictionary):
    spec = load_spec(MODELS / "paper.yaml", dictionary)
    result = _fit_with_log_prior(nako_sized.data, spec, dictionary, draws=500, tune=500, chains=2, progress=False, ladder=False)
    table = prior_sensitivity(result.idata)
    assert len(table) == len(result.summary) + 1
    assert (table["diagnosis"] == NOT_SENSITIVE).all(), table.to_string()
    assert (table["prior"] < 0.05).all()
    exposures = table.set_index("term").loc[list(EXPOSURES)]
    assert (exposures["likelihood"] >= 0.05).all()  # the data, not the prior, make these odds ratios
    assert sensitivity_verdict(table) == "Prior sensitivity (power scaling): no reported odds ratio is sensitive to its prior."
