"""Issue 14's validity checks on simulated cohorts with planted truths (slow: each fits a few thousand rows).

- the absolute risk difference covers the true RD (g-computation on the true model, in truth.json);
- the ratio of ORs covers a planted effect modification, and covers 1 when nothing is planted;
- a spline exposure follows a planted threshold and LOO prefers it there, and is straight (and not
  preferred) when the truth is linear.

Intervals are checked with margin (the truth within 3 posterior SDs, taken from the 95% interval) so that
NUTS's machine-to-machine differences cannot turn a pass into a failure.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from backpain_epi import CohortTruth, simulate_cohort
from backpain_epi.modelling import compare_runs, fit_model
from backpain_epi.modelling.spec import ModelSpec

from ..conftest import MODELS

pytestmark = pytest.mark.slow
SETTINGS = {"draws": 500, "tune": 500, "chains": 2, "progress": False, "ladder": False}
Z95 = 1.959964


def _within(mid: float, lo: float, hi: float, truth: float, k: float = 3.0) -> bool:
    """``truth`` within ``k`` posterior SDs of ``mid``, the SD read off the 95% interval."""
    return abs(mid - truth) <= k * (hi - lo) / (2 * Z95)


def _spec(base: str = "paper", **changes) -> ModelSpec:
    raw = yaml.safe_load((MODELS / f"{base}.yaml").read_text())
    raw.update(changes)
    return ModelSpec.from_dict(raw)


def test_risk_difference_covers_the_true_rd():
    sim = simulate_cohort(n=5000, seed=31)
    result = fit_model(sim.data, _spec("full"), **SETTINGS)
    risk = result.absolute_risk.set_index("term")
    for e, true in sim.truth["absolute_risk"].items():
        r = risk.loc[e]
        assert r.low_value == pytest.approx(true["low_value"], rel=1e-9) and r.high_value == pytest.approx(true["high_value"], rel=1e-9)
        assert _within(r.rd_per_1000, r.rd_lo95, r.rd_hi95, true["rd_per_1000"]), (e, r.rd_per_1000, true["rd_per_1000"])
        assert _within(r.rr, r.rr_lo95, r.rr_hi95, true["rr"]), (e, r.rr, true["rr"])
    assert risk.loc["intermat_ml", "rd_lo95"] > 0  # the planted direction, clear at this size (OR 1.22 per 2 SD)


@pytest.mark.parametrize("ratio", [1.8, 1.0])
def test_ratio_of_ors_covers_the_planted_modification(ratio):
    planted = {"intermat_ml:sex[male]": ratio} if ratio != 1.0 else {}
    sim = simulate_cohort(n=6000, seed=32, truth=CohortTruth(effect_modification=planted))
    result = fit_model(sim.data, _spec("full", effect_modifiers=["sex"]), **SETTINGS)
    t = result.effect_modification
    male = t[(t.term == "intermat_ml") & (t.level.astype(str) == "male")].iloc[0]
    lo, mid, hi = np.log([male.ratio_lo95, male.ratio_of_ors, male.ratio_hi95])
    assert _within(mid, lo, hi, np.log(ratio)), (male.ratio_of_ors, ratio)
    if ratio == 1.0:
        assert male.ratio_lo95 < 1 < male.ratio_hi95
        other = t[(t.term == "lmm_ml") & (t.level.astype(str) == "male")].iloc[0]
        assert other.ratio_lo95 < 1 < other.ratio_hi95
    else:
        assert male.ratio_lo95 > 1
        assert male.reri_lo95 > 0  # on the additive scale too
        by = sim.truth["absolute_risk_by_stratum"]["intermat_ml"]
        female = t[(t.term == "intermat_ml") & (t.level.astype(str) == "female")].iloc[0]
        assert _within(female.rd_per_1000, female.rd_lo95, female.rd_hi95, by["female"]["rd_per_1000"])
        assert _within(male.rd_per_1000, male.rd_lo95, male.rd_hi95, by["male"]["rd_per_1000"])


def _dose_response_fits(shape: dict):
    truth = CohortTruth(odds_ratios={"intermat_ml": 2.5}, exposure_shape=shape)
    sim = simulate_cohort(n=8000, seed=33, truth=truth)
    linear = fit_model(sim.data, _spec("full", name="linear"), **SETTINGS)
    spline = fit_model(sim.data, _spec("full", name="spline", exposures=[{"intermat_ml": "spline"}, "lmm_ml", "imf_pct"]), **SETTINGS)
    return sim, linear, spline, compare_runs([linear, spline])


def test_spline_follows_a_planted_threshold_and_loo_prefers_it():
    sim, linear, spline, table = _dose_response_fits({"intermat_ml": {"threshold_quantile": 0.5}})
    assert table.iloc[0]["model"] == "spline" and table.iloc[1]["elpd_diff"] > table.iloc[1]["dse"], table
    curve = spline.exposure_curves
    tau = sim.truth["exposure_shape"]["intermat_ml"]["threshold"]
    below, above = curve[curve.x < tau - 5], curve[curve.x > tau + 20]
    slope = lambda c: np.polyfit(c.x, np.log(c.or_median), 1)[0]  # noqa: E731
    true_slope = sim.truth["exposure_shape"]["intermat_ml"]["log_or_per_unit_above"]
    assert abs(slope(below)) < 0.6 * slope(above), (slope(below), slope(above))  # flatter below than above
    assert slope(above) == pytest.approx(true_slope, rel=0.35), (slope(above), true_slope)
    true_curve = sim.truth["exposure_shape"]["intermat_ml"]["curve"]
    x_true = np.array([p["x"] for p in true_curve])
    lo_true = np.log([p["or_vs_median"] for p in true_curve])
    lo_fit = np.interp(x_true, curve.x, np.log(curve.or_median))
    sd = np.interp(x_true, curve.x, curve.log_or_sd)
    inside = np.abs(lo_fit - lo_true) <= 3 * sd + 0.05
    assert inside.mean() >= 0.9, (lo_fit - lo_true, sd)


def test_spline_is_straight_and_not_preferred_when_the_truth_is_linear():
    _, linear, spline, table = _dose_response_fits({})
    spline_row = table.set_index("model").loc["spline"]
    assert not (table.iloc[0]["model"] == "spline" and spline_row["rank"] == 1 and table.iloc[1]["elpd_diff"] > 2 * table.iloc[1]["dse"]), table
    curve = spline.exposure_curves
    log_or = np.log(curve.or_median.to_numpy())
    fit = np.polyval(np.polyfit(curve.x, log_or, 1), curve.x)
    deviation = np.abs(log_or - fit)
    assert deviation.max() < 0.1 * np.ptp(log_or), (deviation.max(), np.ptp(log_or))  # straight next to its rise
    assert (deviation <= 2 * curve.log_or_sd.to_numpy() + 0.05).mean() >= 0.9, deviation
