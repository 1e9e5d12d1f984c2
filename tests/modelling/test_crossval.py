"""Leave-one-site-out cross-validation: the held-out elpd's quadrature, the summary, the refits and their ranking."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize, special

from backpain_epi import CohortTruth, simulate_cohort
from backpain_epi.errors import BackpainEpiError
from backpain_epi.modelling import fit_model, load_spec
from backpain_epi.modelling.crossval import CVResult, cross_validate_sites, heldout_elpd, summarise
from backpain_epi.modelling.spec import ModelSpec

from .conftest import MODELS

FEW = {"draws": 200, "tune": 200, "chains": 2, "progress": False, "ladder": False}


def _loglik(eta, y):
    return y * eta - np.logaddexp(0.0, eta)


# --------------------------------------------------------------------------- the quadrature


def test_heldout_elpd_matches_brute_force_monte_carlo():
    rng = np.random.default_rng(1)
    eta, y, sd = rng.normal(-0.8, 0.6, (3, 6)), np.array([1, 0, 0, 1, 0, 1.0]), np.array([0.3, 0.8, 1.5])
    elpd, pointwise = heldout_elpd(eta, y, sd)
    u = rng.standard_normal((3, 400_000)) * sd[:, None]                            # the new site's intercept, per draw
    ll = _loglik(eta[:, None, :] + u[:, :, None], y)                               # (draws, u, rows)
    mc = special.logsumexp(special.logsumexp(ll.sum(axis=2), axis=1) - np.log(u.shape[1])) - np.log(3)
    mc_rows = special.logsumexp(special.logsumexp(ll, axis=1) - np.log(u.shape[1]), axis=0) - np.log(3)
    assert elpd == pytest.approx(mc, abs=5e-3)
    np.testing.assert_allclose(pointwise, mc_rows, atol=5e-3)
    assert elpd != pytest.approx(pointwise.sum(), abs=0.05)                         # the rows share the intercept


def test_heldout_elpd_of_a_large_site_matches_adaptive_integration():
    """800 rows pin the intercept to about ±0.08: the nodes must follow the integrand, not the prior."""
    rng = np.random.default_rng(0)
    eta, y, sd = rng.normal(-1, 0.5, (4, 800)), (rng.random(800) < 0.3).astype(float), np.array([0.2, 0.5, 1.0, 0.05])
    exact = []
    for e, s in zip(eta, sd):
        g = lambda u: _loglik(e + u, y).sum() - 0.5 * (u / s) ** 2  # noqa: E731
        m = optimize.minimize_scalar(lambda u: -g(u)).x
        value, _ = integrate.quad(lambda u: np.exp(g(u) - g(m)), m - 2, m + 2, points=[m], limit=200)
        exact.append(np.log(value) + g(m) - np.log(np.sqrt(2 * np.pi) * s))
    elpd, _ = heldout_elpd(eta, y, sd, chunk_cells=5_000)                            # several chunks of draws
    assert elpd == pytest.approx(special.logsumexp(exact) - np.log(4), abs=1e-6)


# --------------------------------------------------------------------------- the summary


def _by_site(a, b, models=("a", "b")):
    sites = [f"s{i}" for i in range(len(a))]
    rows = [{"model": m, "site": s, "fold": i, "n": 10, "n_events": 3, "elpd": v}
            for m, values in zip(models, (a, b)) for i, (s, v) in enumerate(zip(sites, values))]
    return pd.DataFrame(rows)


def test_summary_totals_standard_errors_and_paired_differences():
    a, b = np.array([-5.0, -6.0, -4.0, -7.0]), np.array([-5.5, -6.2, -4.9, -7.1])
    s = summarise(_by_site(b, a, models=("b", "a"))).set_index("model")
    assert list(s.index) == ["a", "b"] and list(s["rank"]) == [1, 2]
    assert s.loc["a", "elpd_total"] == pytest.approx(-22.0) and s.loc["b", "elpd_total"] == pytest.approx(-23.7)
    assert s.loc["a", "se"] == pytest.approx(2 * np.std(a, ddof=1))
    assert s.loc["b", "elpd_diff"] == pytest.approx(1.7) and s.loc["b", "dse"] == pytest.approx(2 * np.std(a - b, ddof=1))
    assert s.loc["a", "elpd_diff"] == 0 and s.loc["a", "dse"] == 0 and s.loc["a", "n"] == 40


def test_ranking_against_psis_loo_and_the_verdict():
    cv = CVResult(_by_site([-5.0, -6.0, -4.0, -7.0], [-5.5, -6.2, -4.9, -7.1]))
    same = pd.DataFrame({"model": ["a", "b"], "rank": [1, 2]})
    other = pd.DataFrame({"model": ["b", "a"], "rank": [1, 2]})
    assert cv.ranking_agrees(same) and not cv.ranking_agrees(other)
    assert cv.verdict(same).startswith("Leave-one-site-out cross-validation confirms the PSIS-LOO ranking (a > b): a predicts")
    assert "clearly better than b" in cv.verdict(same)
    assert cv.verdict(other).startswith("Leave-one-site-out cross-validation does not confirm the PSIS-LOO ranking (b > a;")
    with pytest.raises(BackpainEpiError, match="loo_table: PSIS-LOO compared a, c"):
        cv.ranking_agrees(pd.DataFrame({"model": ["a", "c"], "rank": [1, 2]}))


def test_save_and_read_back(tmp_path):
    cv = CVResult(_by_site([-5.0, -6.0], [-5.5, -6.2]), pd.DataFrame({"model": ["a"], "site": ["s0"], "participant_id": ["p1"],
                                                                     "elpd": [-0.5]}))
    paths = cv.save(tmp_path / "cv")
    assert paths["by_site"] == tmp_path / "cv" / "loso.csv" and paths["summary"].name == "loso_summary.csv"
    for where in (tmp_path / "cv", paths["by_site"]):
        back = CVResult.read(where)
        pd.testing.assert_frame_equal(back.summary, cv.summary)
        assert back.pointwise is not None and len(back.pointwise) == 1
    with pytest.raises(BackpainEpiError, match="crossval .*nothing.csv: file not found"):
        CVResult.read(tmp_path / "nothing.csv")


# --------------------------------------------------------------------------- refits


NULL_SPEC = {"name": "null", "outcome": "cbp", "exposures": ["lmm_ml"], "group": "site",
             "priors": {"intercept": "normal(0, 2.5)", "coefficients": "normal(0, 1)", "group_sd": "halfnormal(1)"}}


@pytest.fixture(scope="module")
def loso_cohort():
    """300 participants at 4 sites; InterMAT and age carry the risk, lean muscle none."""
    truth = CohortTruth(odds_ratios={"intermat_ml": 4.0, "lmm_ml": 1.0}, site_sd=0.4)
    return simulate_cohort(n=300, seed=21, n_sites=4, truth=truth).data


@pytest.fixture(scope="module")
def loso(loso_cohort, dictionary):
    true = fit_model(loso_cohort, MODELS / "unadjusted.yaml", dictionary=dictionary, **FEW)
    null = fit_model(loso_cohort, ModelSpec.from_dict(NULL_SPEC, dictionary), dictionary=dictionary, **FEW)
    return (true, null), cross_validate_sites([true, null], loso_cohort, progress=False, dictionary=dictionary)


@pytest.mark.slow
def test_loso_ranks_the_true_model_above_a_null_model(loso, loso_cohort):
    (true, null), cv = loso
    s = cv.summary
    assert list(s["model"]) == ["unadjusted", "null"] and s["n_sites"].iloc[0] == 4 and s["n"].iloc[0] == true.provenance.data.n_analysed
    assert s["elpd_diff"].iloc[1] > 2 * s["dse"].iloc[1]
    b = cv.by_site
    assert set(b["site"]) == set(loso_cohort["site"]) and (b["ladder"] == False).all()  # noqa: E712
    assert list(b.loc[b["model"] == "null", "seed"]) == [null.spec.sampler.seed + k for k in range(4)]
    assert set(b["run_id"]) == {true.provenance.run_id, null.provenance.run_id}
    assert len(cv.pointwise) == 2 * true.provenance.data.n_analysed
    wide = cv.wide()
    assert list(wide.columns) == ["site", "n", "n_events", "unadjusted", "null"] and wide["n"].sum() == s["n"].iloc[0]


@pytest.mark.slow
def test_two_processes_give_the_serial_table(loso, loso_cohort, dictionary):
    """Seeds are fixed per fold, so where a fold runs does not matter (map_tasks on Dask: tests/modelling/test_parallel.py)."""
    (_, null), cv = loso
    serial = cv.by_site[cv.by_site["model"] == "null"].reset_index(drop=True).drop(columns="fit_s")
    two = cross_validate_sites([null], loso_cohort, workers=2, progress=False, dictionary=dictionary)
    pd.testing.assert_frame_equal(two.by_site.drop(columns="fit_s"), serial)
    pd.testing.assert_frame_equal(two.pointwise, cv.pointwise[cv.pointwise["model"] == "null"].reset_index(drop=True))


@pytest.mark.slow
def test_refusals(loso, loso_cohort, dictionary):
    (true, null), _ = loso
    no_group = dataclasses.replace(null, spec=dataclasses.replace(null.spec, group=None), name="flat")
    with pytest.raises(BackpainEpiError, match="model 'flat' has no group term"):
        cross_validate_sites([no_group], loso_cohort, progress=False)
    with pytest.raises(BackpainEpiError, match="data DataFrame: the in-memory fit of 'unadjusted' was fit on other data"):
        cross_validate_sites([true], loso_cohort.iloc[:-1], progress=False)


@pytest.mark.slow
def test_a_spline_exposure_model_is_cross_validated(loso_cohort, dictionary):
    """The held-out score of a model with a spline exposure uses its penalized columns (it raised before)."""
    raw = {**NULL_SPEC, "name": "spline", "exposures": [{"intermat_ml": {"basis": "spline", "df": 4}}],
           "priors": {**NULL_SPEC["priors"], "smooth_sd": "halfnormal(1)"}}
    spline = fit_model(loso_cohort, ModelSpec.from_dict(raw, dictionary), dictionary=dictionary, **FEW)
    cv = cross_validate_sites([spline], loso_cohort, progress=False, dictionary=dictionary)
    assert len(cv.by_site) == 4 and np.isfinite(cv.by_site["elpd"]).all()
