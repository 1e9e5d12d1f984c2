"""The simulator's richer truths: effect modification by sex, a threshold shape, true marginal risks.

Each planted truth is checked against the simulated outcome (a plain maximum-likelihood fit or
binned log odds), and the truth JSON's g-computation against a recomputation from the JSON alone.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from backpain_epi import BackpainEpiError, CohortTruth, simulate_cohort

from .helpers import fit_logistic

#: sha256 of ``simulate_cohort(n=500, seed=3).data.to_csv(index=False)``, taken before these truths were
#: added: the default cohort (and so the demo and every test built on it) must keep its random stream.
DEFAULT_STREAM_SHA256 = "a4283d9eb0e7b347382efff68c4040b14526c796b6ee0c3cfe4a378503110537"
EXPOSURES = ("intermat_ml", "lmm_ml", "imf_pct")
NULL_OTHERS = {"age": 1.0, "bmi": 1.0, "sex[male]": 1.0, "diabetes": 1.0, "dyslipidemia": 1.0, "osteoporosis": 1.0,
               "osteoarthritis": 1.0}
REL = 1e-5  # the truth JSON rounds the site effects to 6 decimals
FLAT = {"site_sd": 0.0, "activity_or_at_0": 1.0, "activity_or_at_10000": 1.0}


def _csv_sha256(data: pd.DataFrame) -> str:
    return hashlib.sha256(data.to_csv(index=False).encode()).hexdigest()


def test_default_cohort_keeps_its_random_stream():
    sim = simulate_cohort(n=500, seed=3)
    assert _csv_sha256(sim.data) == DEFAULT_STREAM_SHA256
    assert sim.truth["effect_modification"] == {} and sim.truth["exposure_shape"] == {}
    assert sim.truth["absolute_risk_by_stratum"] == {}
    # a shape spelled "linear" is the default, not a new truth
    linear = simulate_cohort(n=500, seed=3, truth=CohortTruth(exposure_shape={"lmm_ml": "linear"}))
    assert _csv_sha256(linear.data) == DEFAULT_STREAM_SHA256 and linear.truth["exposure_shape"] == {}


def test_planted_ratio_of_ors_is_recovered():
    """A logistic fit with an exposure x male term recovers log(ratio of ORs) per 2 SD."""
    ratio = 1.8
    truth = CohortTruth(odds_ratios={"intermat_ml": 1.3, "lmm_ml": 1.0, "imf_pct": 1.0},
                        effect_modification={"intermat_ml:sex[male]": ratio}, **FLAT)
    sim = simulate_cohort(n=20_000, seed=11, truth=truth)
    d, t = sim.data, sim.truth
    male = (d["sex"] == "male").to_numpy(float)
    z = {name: ((d[name] - t["means"][name]) / (2 * t["sd"][name])).to_numpy() for name in ("intermat_ml", "age", "bmi")}
    comorb = [d[k].to_numpy(float) for k in ("diabetes", "dyslipidemia", "osteoporosis", "osteoarthritis")]
    X = np.column_stack([np.ones(len(d)), z["intermat_ml"], male, z["intermat_ml"] * male, z["age"], z["bmi"], *comorb])
    beta, se = fit_logistic(X, d["cbp"].to_numpy(float))
    assert abs(beta[1] - np.log(1.3)) < 3.5 * se[1]  # the OR in women, the reference stratum
    assert abs(beta[2] - np.log(truth.odds_ratios["sex[male]"])) < 3.5 * se[2]  # men vs women at the exposure mean
    assert abs(beta[3] - np.log(ratio)) < 3.5 * se[3]
    assert beta[3] > 4 * se[3]  # the modification is really there, not within noise of none
    em = t["effect_modification"]["intermat_ml"]
    assert em["ratio_of_ors"] == ratio and em["or_by_stratum"] == pytest.approx({"female": 1.3, "male": 1.3 * ratio})
    assert t["odds_ratios_per_2sd"]["intermat_ml"] == 1.3  # the reference stratum's OR
    assert em["log_or_per_unit_interaction"] * 2 * t["sd"]["intermat_ml"] == pytest.approx(np.log(ratio))


def test_reri_of_the_planted_modification():
    truth = CohortTruth(odds_ratios={"lmm_ml": 0.7, "sex[male]": 1.4}, effect_modification={"lmm_ml:sex[male]": 0.5})
    reri = simulate_cohort(n=300, seed=2, truth=truth).truth["effect_modification"]["lmm_ml"]["reri"]
    or10, or01, or11 = 0.7, 1.4, 1.4 * 0.7 * 0.5
    assert (reri["or10"], reri["or01"], reri["or11"]) == pytest.approx((or10, or01, or11))
    assert reri["value"] == pytest.approx(or11 - or10 - or01 + 1)


def _binned_logits(x: np.ndarray, y: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean x, empirical log odds and its SE in each bin ``[edges[i], edges[i+1])`` (the last one closed)."""
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    mean_x, logit, se = [], [], []
    for b in range(len(edges) - 1):
        yb = y[idx == b]
        p = yb.mean()
        mean_x.append(x[idx == b].mean())
        logit.append(np.log(p / (1 - p)))
        se.append(1 / np.sqrt(len(yb) * p * (1 - p)))
    return np.array(mean_x), np.array(logit), np.array(se)


def test_threshold_shape_is_flat_below_and_rises_above():
    """With every other term null the marginal log odds is the planted shape: flat, then linear."""
    odds_ratio = 3.0
    truth = CohortTruth(odds_ratios={"intermat_ml": 1.0, "lmm_ml": 1.0, "imf_pct": odds_ratio, **NULL_OTHERS},
                        exposure_shape={"imf_pct": {"threshold_quantile": 0.5}}, **FLAT)
    sim = simulate_cohort(n=20_000, seed=5, truth=truth)
    x, y, t = sim.data["imf_pct"].to_numpy(), sim.data["cbp"].to_numpy(float), sim.truth
    shape = t["exposure_shape"]["imf_pct"]
    tau, sd = shape["threshold"], t["sd"]["imf_pct"]
    assert shape["kind"] == "threshold" and shape["quantile"] == 0.5 and tau == pytest.approx(np.median(x))

    below = np.quantile(x[x < tau], [0, 0.25, 0.5, 0.75, 1.0])
    above = np.quantile(x[x >= tau], [0, 0.25, 0.5, 0.75, 1.0])
    _, lo_logit, lo_se = _binned_logits(x[x < tau], y[x < tau], below)
    pooled = np.average(lo_logit, weights=lo_se**-2)
    assert np.all(np.abs(lo_logit - pooled) < 3.5 * lo_se)  # flat below the threshold
    _, hi_logit, hi_se = _binned_logits(x[x >= tau], y[x >= tau], above)
    assert np.all(np.diff(hi_logit) > 0) and hi_logit[-1] - pooled > 6 * hi_se[-1]  # and rising above it

    # a hinge fit: slope ~0 below, the planted per-unit slope above (OR per 2 SD above the threshold)
    X = np.column_stack([np.ones(len(x)), x - tau, np.maximum(x - tau, 0)])
    beta, se = fit_logistic(X, y)
    assert abs(beta[1]) < 3.5 * se[1]
    slope_above = beta[1] + beta[2]
    assert abs(slope_above - np.log(odds_ratio) / (2 * sd)) < 3.5 * np.hypot(se[1], se[2])
    assert slope_above > 8 * se[2]  # a linear truth would show the slope below as well: this tells them apart

    # the true curve in the JSON: flat vs the median below the threshold, OR per 2 SD above it
    gx = np.array([row["x"] for row in shape["curve"]])
    gor = np.array([row["or_vs_median"] for row in shape["curve"]])
    assert len(gx) == 25 and gx[0] == pytest.approx(np.quantile(x, 0.02)) and gx[-1] == pytest.approx(np.quantile(x, 0.98))
    assert np.allclose(gor[gx <= tau], 1.0)
    assert np.allclose(np.log(gor[gx > tau]), np.log(odds_ratio) / (2 * sd) * (gx[gx > tau] - tau))


def _true_risk_by_hand(t: dict, truth: CohortTruth, d: pd.DataFrame) -> np.ndarray:
    """The true probability of CBP for each row of ``d``, rebuilt from the truth JSON (and the activity curve)."""
    male = (d["sex"] == "male").to_numpy()
    lp = np.full(len(d), t["intercept"])
    for name, beta in t["log_or_per_unit"].items():
        if name == "sex[male]":
            lp += beta * male
        elif name not in t["means"]:
            lp += beta * d[name].to_numpy()
        else:
            x, mean = d[name].to_numpy(float), t["means"][name]
            if name in t["exposure_shape"]:
                tau = t["exposure_shape"][name]["threshold"]
                h = np.maximum(x - tau, 0) - max(mean - tau, 0)
            else:
                h = x - mean
            lp += beta * h
            if name in t["effect_modification"]:
                lp += t["effect_modification"][name]["log_or_per_unit_interaction"] * h * male
    lp += truth.activity_log_or(d["met_min_week"].to_numpy())
    lp += d["site"].map(t["site_effects"]).to_numpy()
    return 1 / (1 + np.exp(-lp))


@pytest.mark.parametrize(
    "truth",
    [
        CohortTruth(),
        CohortTruth(odds_ratios={"lmm_ml": 1.3, "imf_pct": 1.0},
                    effect_modification={"intermat_ml:sex[male]": 2.0, "lmm_ml:sex[male]": 0.6},
                    exposure_shape={"intermat_ml": {"threshold_quantile": 0.4}, "imf_pct": "threshold"}),
    ],
    ids=["default", "modified-and-shaped"],
)
def test_absolute_risks_are_the_g_computation_of_the_true_model(truth):
    sim = simulate_cohort(n=300, seed=8, truth=truth)
    t, d = json.loads(json.dumps(sim.truth)), sim.data  # JSON-ready
    male = (d["sex"] == "male").to_numpy()
    assert "held at their observed values" in t["absolute_risk_note"]
    for e in EXPOSURES:
        risk = t["absolute_risk"][e]
        low, high = t["means"][e] - t["sd"][e], t["means"][e] + t["sd"][e]
        assert (risk["low_value"], risk["high_value"]) == pytest.approx((low, high))
        p_low, p_high = (_true_risk_by_hand(t, truth, d.assign(**{e: v})) for v in (low, high))
        assert risk["risk_low"] == pytest.approx(p_low.mean(), rel=REL)
        assert risk["risk_high"] == pytest.approx(p_high.mean(), rel=REL)
        assert risk["rd_per_1000"] == pytest.approx(1000 * (p_high.mean() - p_low.mean()), rel=REL)
        assert risk["rr"] == pytest.approx(p_high.mean() / p_low.mean(), rel=REL)
        log_or = np.log(truth.odds_ratios[e])
        if e in t["effect_modification"]:
            strata = t["absolute_risk_by_stratum"][e]
            log_or_male = log_or + np.log(t["effect_modification"][e]["ratio_of_ors"])
            for level, keep, log_or_level in (("female", ~male, log_or), ("male", male, log_or_male)):
                assert strata[level]["risk_low"] == pytest.approx(p_low[keep].mean(), rel=REL)
                assert strata[level]["risk_high"] == pytest.approx(p_high[keep].mean(), rel=REL)
                assert np.sign(strata[level]["rd_per_1000"]) == np.sign(log_or_level) == np.sign(np.log(strata[level]["rr"]))
        else:
            assert e not in t["absolute_risk_by_stratum"]
            if log_or == 0:
                assert risk["rd_per_1000"] == 0.0 and risk["rr"] == 1.0
            else:
                assert np.sign(risk["rd_per_1000"]) == np.sign(log_or) == np.sign(np.log(risk["rr"]))
    # the risks of the sample as simulated agree with the realised prevalence target
    assert _true_risk_by_hand(t, truth, d).mean() == pytest.approx(t["prevalence_target"], abs=1e-6)


def test_modification_changes_the_rd_in_the_modified_stratum_only():
    base = simulate_cohort(n=2000, seed=4, truth=CohortTruth(effect_modification={"intermat_ml:sex[male]": 1.0}))
    strong = simulate_cohort(n=2000, seed=4, truth=CohortTruth(effect_modification={"intermat_ml:sex[male]": 2.5}))
    b, s = base.truth["absolute_risk_by_stratum"]["intermat_ml"], strong.truth["absolute_risk_by_stratum"]["intermat_ml"]
    assert s["male"]["rd_per_1000"] > 2 * b["male"]["rd_per_1000"] > 0
    assert s["female"]["rd_per_1000"] == pytest.approx(b["female"]["rd_per_1000"], rel=0.2)  # only the intercept moves


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"effect_modification": {"intermat:sex[male]": 1.5}}, r"did you mean 'intermat_ml:sex\[male\]'.*Allowed keys: intermat_ml"),
        ({"effect_modification": {"age:sex[male]": 1.5}}, r"Allowed keys: intermat_ml:sex\[male\], lmm_ml:sex\[male\], imf_pct"),
        ({"effect_modification": {"lmm_ml:sex[male]": -1.0}}, "must be a positive ratio of odds ratios"),
        ({"effect_modification": {"lmm_ml:sex[male]": "2"}}, "must be a positive ratio of odds ratios"),
        ({"effect_modification": {"lmm_ml:sex[male]": float("nan")}}, "must be a positive ratio of odds ratios"),
        ({"effect_modification": [("lmm_ml:sex[male]", 2.0)]}, "must be a mapping"),
        ({"exposure_shape": {"age": "threshold"}}, "Allowed: intermat_ml, lmm_ml, imf_pct"),
        ({"exposure_shape": {"imf_pct": "treshold"}}, "did you mean 'threshold'"),
        ({"exposure_shape": {"imf_pct": {"quantile": 0.5}}}, r"unknown key\(s\) \['quantile'\]"),
        ({"exposure_shape": {"imf_pct": {"threshold_quantile": 0.99}}}, "between 0.05 and 0.95"),
        ({"exposure_shape": "threshold"}, "must be a mapping of exposure to shape"),
    ],
)
def test_bad_planted_truths(kwargs, message):
    with pytest.raises(BackpainEpiError, match=message):
        CohortTruth(**kwargs)
