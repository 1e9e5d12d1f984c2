"""The report's estimands beyond odds ratios: Table 3 (absolute risks, E-values), Table 4 (effect modification),
dose-response curves, and their plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from backpain_epi.modelling import fit_model
from backpain_epi.modelling.spec import ModelSpec
from backpain_epi.reporting import build_report
from backpain_epi.reporting.plots import text_overlaps
from backpain_epi.reporting.plots.estimands import plot_dose_response, plot_risk_differences, plot_strata

from ..conftest import MODELS, QUICK


# --------------------------------------------------------------------------- plots, on tables made here


def _curve(model="m", n=21):
    x = np.linspace(10, 200, n)
    lo = 0.004 * (x - 60)
    return pd.DataFrame({"model": model, "term": "intermat_ml", "x": x, "reference": 60.0, "or_median": np.exp(lo),
                         "or_lo95": np.exp(lo - 0.2), "or_hi95": np.exp(lo + 0.2)})


def test_dose_response_draws_the_curve_over_the_distribution():
    curves = pd.concat([_curve("a"), _curve("b")])
    axes = plot_dose_response(curves, np.random.default_rng(0).lognormal(4, 0.4, 500), xlabel="InterMAT volume (mL)")
    ax, hx = axes[:2]
    assert ax.get_yscale() == "log" and len(ax.get_lines()) >= 3  # two curves, OR = 1, the median
    assert hx.get_xlabel() == "InterMAT volume (mL)" and sum(p.get_height() for p in hx.patches) > 0
    assert not text_overlaps(ax.figure)


def test_strata_and_risk_difference_plots_have_a_row_per_estimate():
    strata = pd.DataFrame({"model": "m", "term": ["intermat_ml"] * 2, "modifier": "sex", "level": ["female", "male"],
                           "or": [1.3, 1.1], "or_lo95": [1.1, 0.9], "or_hi95": [1.5, 1.4]})
    ax = plot_strata(strata, labels={"intermat_ml": "InterMAT volume"})
    assert [t.get_text() for t in ax.get_yticklabels()] == ["InterMAT volume: sex female", "InterMAT volume: sex male"]
    rd = pd.DataFrame({"model": ["a", "b", "a"], "term": ["intermat_ml", "intermat_ml", "lmm_ml"],
                       "rd_per_1000": [30.0, 25.0, -20.0], "rd_lo95": [10.0, 5.0, -40.0], "rd_hi95": [50.0, 45.0, 0.0]})
    ax = plot_risk_differences(rd)
    assert len(ax.get_yticks()) == 3 and ax.get_xlim()[0] < -40 and ax.get_xlim()[1] > 50
    with pytest.raises(Exception, match="rd_per_1000"):
        plot_risk_differences(rd.drop(columns="rd_per_1000"))


# --------------------------------------------------------------------------- the report's sections, from fits


def _spec(**changes) -> ModelSpec:
    raw = yaml.safe_load((MODELS / "unadjusted.yaml").read_text())
    raw.update(changes)
    return ModelSpec.from_dict(raw)


@pytest.fixture(scope="module")
def estimand_report(cohort_csv, unadjusted_run, tmp_path_factory):
    by_sex = fit_model(cohort_csv[0], _spec(name="by_sex", effect_modifiers=["sex"]), **QUICK)
    spline = fit_model(cohort_csv[0], _spec(name="spline", exposures=[{"intermat_ml": "spline"}, "lmm_ml"]), **QUICK)
    out = tmp_path_factory.mktemp("estimands") / "report"
    report = build_report([unadjusted_run, by_sex, spline], cohort_csv[0], out=out, truth=cohort_csv[1].truth,
                          survival=False, progress=False)
    return report, out


@pytest.mark.slow
def test_table3_has_risks_rd_rr_e_values_and_the_true_rd(estimand_report):
    report, out = estimand_report
    t3 = pd.read_csv(report.tables["table3_absolute_risk"]["csv"])
    assert {"RD per 1,000 (95% CrI)", "RR (95% CrI)", "NNT/NNH", "E-value (CI limit)", "RD per 1,000, new site",
            "True RD per 1,000"} <= set(t3.columns)
    numeric = pd.read_csv(report.tables["table3_absolute_risk"]["numeric_csv"])
    assert set(numeric["model"]) == {"unadjusted", "by_sex", "spline"}
    t2 = pd.read_csv(report.tables["table2_odds_ratios"]["csv"])
    assert "E-value" in t2.columns and t2["E-value"].notna().any()
    html = (out / "index.html").read_text(encoding="utf-8")
    for heading in ("Absolute risks and E-values", "Effect modification", "Exposure dose–response"):
        assert f"<h2>{heading}</h2>" in html


@pytest.mark.slow
def test_table4_and_the_dose_response_with_its_loo_verdict(estimand_report):
    report, out = estimand_report
    t4 = pd.read_csv(report.tables["table4_effect_modification"]["numeric_csv"])
    assert set(t4["level"].astype(str)) == {"female", "male"} and (t4["model"] == "by_sex").all()
    assert (out / "figures" / "forest_by_stratum.png").is_file() and (out / "figures" / "dose_response_intermat_ml.svg").is_file()
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "PSIS-LOO prefers" in html and ("spline over unadjusted" in html or "unadjusted over spline" in html)
    methods = (out / "text" / "methods.md").read_text(encoding="utf-8")
    assert "g-computation" in methods and "E-values" in methods and "penalized cubic regression spline" in methods
    results = (out / "text" / "results.md").read_text(encoding="utf-8")
    assert "cases of chronic back pain per 1,000" in results and "ratio of ORs" in results
