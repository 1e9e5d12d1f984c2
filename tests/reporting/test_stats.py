"""The report's statistics: the ICC is the published one and bias lowers it, the agreement table's numbers hold,
densities by outcome, odds-ratio tables in term and model order."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from backpain_epi.errors import BackpainEpiError
from backpain_epi.reporting.stats import (
    agreement_table, all_terms, density_by_outcome, exposure_odds_ratios, icc_absolute_agreement, paired_exposures, qc_counts,
)

# Shrout & Fleiss (1979), Table 2: six targets rated by four judges; ICC(2,1) = 0.29, ICC(3,1) = 0.71.
SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])


def test_icc_equals_shrout_fleiss_icc21():
    assert icc_absolute_agreement(SHROUT_FLEISS) == pytest.approx(0.29, abs=0.005)


def test_icc_is_one_for_identical_and_lowered_by_bias():
    rng = np.random.default_rng(0)
    x = rng.normal(100, 20, 200)
    assert icc_absolute_agreement(np.column_stack([x, x])) == pytest.approx(1.0)
    biased = icc_absolute_agreement(np.column_stack([x, x + 20]))  # perfectly correlated, shifted by 1 SD
    assert 0.6 < biased < 0.75  # 1 / (1 + 1/2): the shift counts against agreement
    with pytest.raises(BackpainEpiError, match="finite numbers"):
        icc_absolute_agreement(np.array([[1.0, np.nan], [2.0, 2.0]]))


def test_agreement_table_numbers():
    planted = pd.DataFrame({"participant_id": ["a", "b", "c", "d"], "lmm_ml": [900.0, 1000.0, 1100.0, 1200.0]})
    measured = pd.DataFrame({"participant_id": ["d", "c", "b", "a", "e"], "lmm_ml": [1210.0, 1090.0, 1010.0, 890.0, 5.0]})
    pairs = paired_exposures(measured, planted, ["lmm_ml"])
    assert len(pairs) == 4  # 'e' has no planted value
    row = agreement_table(pairs, ["lmm_ml"]).iloc[0]
    assert row["mean_difference"] == pytest.approx(0.0)
    sd = np.std([-10, 10, -10, 10], ddof=1)
    assert row["loa_hi"] == pytest.approx(1.96 * sd)
    assert row["median_abs_rel_error_pct"] == pytest.approx(100 * np.median([10 / 900, 10 / 1000, 10 / 1100, 10 / 1200]))
    with pytest.raises(BackpainEpiError, match="imf_pct missing"):
        paired_exposures(measured, planted, ["imf_pct"])


def test_density_by_outcome_on_one_grid():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"x": np.r_[rng.normal(0, 1, 300), rng.normal(2, 1, 300)], "cbp": [0] * 300 + [1] * 300})
    d = density_by_outcome(df, "x", "cbp", n_grid=128)
    assert list(d.columns) == ["outcome", "x", "density", "median"] and len(d) == 256
    g0, g1 = d[d["outcome"] == 0], d[d["outcome"] == 1]
    np.testing.assert_array_equal(g0["x"].to_numpy(), g1["x"].to_numpy())
    assert np.trapezoid(g0["density"], g0["x"]) == pytest.approx(1.0, abs=0.03)
    assert g1["median"].iloc[0] == pytest.approx(np.median(df.loc[df["cbp"] == 1, "x"]))
    one_value = df.assign(x=np.where(df["cbp"] == 1, 5.0, df["x"]))  # a group without spread has no estimate
    assert density_by_outcome(one_value, "x")["density"][lambda s: s.index >= 256].isna().all()


def _run(name, terms):
    summary = pd.DataFrame([{"term": t, "kind": k, "label": t, "or_median": 1.0} for t, k in terms])
    spec = SimpleNamespace(exposures=[t for t, k in terms if k == "exposure"])
    return SimpleNamespace(name=name, summary=summary, spec=spec)


def test_odds_ratio_tables_keep_term_and_model_order():
    runs = [_run("a", [("age", "covariate"), ("lmm_ml", "exposure"), ("intermat_ml", "exposure")]),
            _run("b", [("intermat_ml", "exposure"), ("imf_pct", "exposure")])]
    ors = exposure_odds_ratios(runs)
    assert list(zip(ors["term"], ors["model"])) == [("lmm_ml", "a"), ("intermat_ml", "a"), ("intermat_ml", "b"), ("imf_pct", "b")]
    terms = all_terms(runs)
    assert list(zip(terms["model"], terms["term"])) == [("a", "lmm_ml"), ("a", "intermat_ml"), ("a", "age"),
                                                        ("b", "intermat_ml"), ("b", "imf_pct")]


def test_qc_counts():
    exposures = pd.DataFrame({"participant_id": ["a", "b"], "qc_flag": [0, 0]})
    failures = pd.DataFrame({"participant_id": ["c"], "reason": ["water file not found: c.nii.gz"]})
    counts = qc_counts(exposures, failures).set_index("Step")["Participants"]
    assert counts.to_dict() == {"Scans in the manifest": 3, "Segmented": 2, "Failed (no exposures)": 1,
                                "  failed: water file not found": 1, "QC flagged (excluded from the models)": 0}


# --------------------------------------------------------------------------- posterior predictive check by decile, in chunks


@pytest.fixture(scope="module")
def report_run(unadjusted_run, cohort_csv, dictionary):
    from backpain_epi.modelling.fit import read_analysis_table
    from backpain_epi.reporting.runs import load_runs

    table, source = read_analysis_table(cohort_csv[0], dictionary, unadjusted_run.spec.columns())
    return load_runs([unadjusted_run], table, source, dictionary)[0]


def test_ppc_by_decile_in_one_chunk_equals_the_direct_computation(report_run):
    """The chunked check, in one chunk, gives exactly the draws x rows computation it replaced."""
    from scipy import special

    from backpain_epi.modelling.results import linear_predictor_draws
    from backpain_epi.reporting.stats import ppc_by_decile

    got = ppc_by_decile(report_run, max_draws=200, seed=3)
    p = special.expit(linear_predictor_draws(report_run.result.idata, report_run.result.recipe, report_run.analysed,
                                             seed=3, max_draws=200))
    p_mean = p.mean(axis=0)
    decile = pd.qcut(pd.Series(p_mean).rank(method="first"), 10, labels=False).to_numpy() + 1
    y_rep = np.random.default_rng(3).random(p.shape) < p
    for d in range(1, 11):
        rep = y_rep[:, decile == d].mean(axis=1)
        row = got.iloc[d - 1]
        assert row["predicted"] == pytest.approx(p_mean[decile == d].mean())
        assert (row["rep_lo95"], row["rep_hi95"]) == pytest.approx((np.quantile(rep, 0.025), np.quantile(rep, 0.975)))


def test_ppc_by_decile_in_small_chunks_keeps_the_deciles(report_run):
    """53-row chunks (memory 200 draws x 53 rows) give the same deciles and predictions, and intervals within Monte Carlo error."""
    from backpain_epi.reporting.stats import ppc_by_decile

    whole = ppc_by_decile(report_run, max_draws=200, seed=3)
    chunked = ppc_by_decile(report_run, max_draws=200, seed=3, chunk_rows=53)
    pd.testing.assert_frame_equal(whole[["decile", "n", "predicted", "observed"]], chunked[["decile", "n", "predicted", "observed"]])
    width = (whole["rep_hi95"] - whole["rep_lo95"]).to_numpy()
    assert np.all(np.abs(chunked["rep_lo95"] - whole["rep_lo95"]) < 0.35 * width)
    assert np.all(np.abs(chunked["rep_hi95"] - whole["rep_hi95"]) < 0.35 * width)
