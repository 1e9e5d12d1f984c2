"""The gate ladder: a fit failing the gate is refit with safer settings, every attempt recorded and reported."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import pytest

from backpain_epi.modelling import GateFailedWarning, ModelSpec, fit_model, load_run
from backpain_epi.modelling.diagnostics import Check, Diagnostics
from backpain_epi.modelling.ladder import Attempt, GateLadder, LadderStep
from backpain_epi.modelling.spec import SamplerSettings
from backpain_epi.reporting.tables import format_diagnostics

#: A small model without a random intercept: its ESS per draw is high, so 600 draws × 2 chains pass with margin.
SMALL = {"name": "small", "outcome": "cbp", "exposures": ["intermat_ml"], "covariates": ["age", "sex"]}
TINY = {"draws": 50, "tune": 50, "chains": 2, "progress": False}
#: One step with enough draws to pass where 50 draws fail bulk ESS.
TO_PASS = GateLadder((LadderStep(0.95, tune_factor=4, draws_factor=12),))


def test_default_ladder_raises_target_accept_then_tuning():
    base = SamplerSettings(draws=1000, tune=1000, chains=4, target_accept=0.9)
    steps = GateLadder().settings(base)
    assert [(s.target_accept, s.tune, s.draws) for s in steps] == [(0.9, 1000, 1000), (0.95, 1000, 1500), (0.99, 2000, 2000)]
    assert GateLadder.off().settings(base) == [base]
    assert GateLadder.of(False) == GateLadder.off() and GateLadder.of(None) == GateLadder.of(True) == GateLadder()
    # a step that changes nothing is not sampled again; the spec's higher target_accept is kept
    high = SamplerSettings(target_accept=0.99)
    assert [s.target_accept for s in GateLadder((LadderStep(0.95), LadderStep(0.99, tune_factor=2))).settings(high)] == [0.99, 0.99]
    with pytest.raises(ValueError, match="target_accept"):
        LadderStep(1.2)


def test_only_checks_a_refit_can_fix_start_the_ladder():
    def verdict(*failed):
        return Diagnostics(tuple(Check(n, n not in failed, "x", "y") for n in ("R-hat", "bulk ESS", "divergences", "E-BFMI")))

    assert GateLadder.retry(verdict("divergences"), chains=4) and GateLadder.retry(verdict("bulk ESS"), chains=2)
    assert not GateLadder.retry(verdict("E-BFMI"), chains=4)
    assert not GateLadder.retry(verdict("R-hat"), chains=1)  # not computable from one chain: more draws do not help


@pytest.fixture(scope="module")
def laddered(cohort_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("ladder") / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("error", GateFailedWarning)  # the ladder's last attempt passes: no warning
        result = fit_model(cohort_csv[0], ModelSpec.from_dict(SMALL), out=out, ladder=TO_PASS, **TINY)
    return result


def test_a_failed_gate_is_refit_and_every_attempt_recorded(laddered):
    first, second = laddered.provenance.attempts
    assert not first.passed and "bulk ESS" in {c.name for c in first.diagnostics.failed}
    assert first.settings == {"draws": 50, "tune": 50, "chains": 2, "target_accept": 0.8, "seed": 2025}
    assert second.passed and laddered.diagnostics.passed
    assert second.settings == {"draws": 600, "tune": 200, "chains": 2, "target_accept": 0.95, "seed": 2025}
    assert first.timings["sampling_s"] > 0 and second.timings["sampling_s"] > 0
    # the result is the last attempt's: posterior, settings, spec as used
    assert laddered.idata.posterior.sizes["draw"] == 600
    assert laddered.provenance.settings == second.settings and laddered.spec.sampler.draws == 600
    p = json.loads((laddered.out / "provenance.json").read_text())
    assert [a["number"] for a in p["attempts"]] == [1, 2] and p["attempts"][0]["diagnostics"]["passed"] is False
    assert load_run(laddered.out).provenance == laddered.provenance


def test_the_report_shows_the_attempts(laddered):
    table = format_diagnostics([SimpleNamespace(name="small", provenance=laddered.provenance)])
    cell = table.loc[0, "Attempts"]
    assert cell.startswith("2; 1. target_accept 0.8, tune 50, draws 50: failed (") and "bulk ESS" in cell
    assert "2. target_accept 0.95, tune 200, draws 600: passed" in cell and table.loc[0, "Gate"] == "passed"
    old = SimpleNamespace(name="old", provenance=laddered.provenance.__class__(**{**laddered.provenance.__dict__, "attempts": ()}))
    assert format_diagnostics([old]).loc[0, "Attempts"] == "1"  # a run written before the ladder


@pytest.mark.slow  # tests/modelling/test_fit.py::test_failed_gate_is_reported_not_hidden fits with ladder=False too
def test_without_the_ladder_one_attempt_stays_failed(cohort_csv):
    with pytest.warns(GateFailedWarning) as caught:
        run = fit_model(cohort_csv[0], ModelSpec.from_dict(SMALL), ladder=False, **TINY)
    assert len(run.provenance.attempts) == 1 and not run.diagnostics.passed
    assert "attempts" not in str(caught[0].message)


@pytest.mark.slow
def test_a_gate_failing_after_the_ladder_stays_failed_and_loud(cohort_csv):
    ladder = GateLadder((LadderStep(0.95, tune_factor=1.2),))  # too little to fix 50 draws
    with pytest.warns(GateFailedWarning, match="after 2 attempts of the gate ladder: .*bulk ESS"):
        run = fit_model(cohort_csv[0], ModelSpec.from_dict(SMALL), ladder=ladder, **TINY)
    assert [a.passed for a in run.provenance.attempts] == [False, False] and not run.diagnostics.passed
    assert run.provenance.attempts[-1].settings["target_accept"] == 0.95
    assert isinstance(run.provenance.attempts[0], Attempt)


# --- a funnel is refit non-centred ---------------------------------------------------------------------------------

SPLINE = {**SMALL, "activity": {"variable": "met_min_week", "transform": "log1p", "basis": "spline", "df": 6}, "group": "site"}


def _verdict(*failed, divergences: int = 100):
    return Diagnostics(tuple(Check(n, n not in failed, str(divergences) if n == "divergences" else "x", "y")
                             for n in ("R-hat", "bulk ESS", "divergences", "E-BFMI")))


@pytest.fixture
def scripted_ladder(cohort_csv, monkeypatch):
    """Run the ladder of fit on the 3,000-row cohort with both parts in ``auto``'s scaled form, the sampler and the gate
    scripted: returns ``run(spec, verdicts, ladder) -> (attempts, design, builds)``, ``builds`` the parameterizations
    of each model built."""
    import backpain_epi.modelling.build as build
    import backpain_epi.modelling.fit as fit
    import backpain_epi.modelling.sample as sample
    from backpain_epi.dictionary import load_dictionary
    from backpain_epi.modelling import params
    from backpain_epi.modelling.design import make_design

    dd = load_dictionary()
    table, _ = fit.read_analysis_table(cohort_csv[0], dd)

    def run(spec: dict, verdicts: list, ladder: GateLadder = GateLadder()):
        spec = ModelSpec.from_dict(spec).with_sampler(target_accept=0.9)
        builds, verdicts = [], iter(verdicts)
        monkeypatch.setattr(build, "build_model", lambda d, shared=False: builds.append(
            (params.activity_parameterization(d), params.group_parameterization(d))) or object())
        monkeypatch.setattr(sample, "sample_model", lambda *a, **k: (None, {"timings": {"sampling_s": 1.0}}))
        monkeypatch.setattr(fit, "check_diagnostics", lambda *a: next(verdicts))
        _, _, design, attempts, _ = fit._sample_along_ladder(make_design(table, spec, dd), spec, ladder, progress=False)
        return attempts, design, builds

    return run


def test_a_scaled_fit_failing_like_a_funnel_is_refit_noncentred_at_the_same_settings(scripted_ladder):
    attempts, design, builds = scripted_ladder(SPLINE, [_verdict("E-BFMI"), _verdict()])
    assert builds == [("scaled", "scaled"), ("noncentred", "noncentred")]
    assert [a.noncentred for a in attempts] == [(), ("activity", "group")] and design.noncentred
    assert attempts[0].settings == attempts[1].settings and attempts[1].passed
    assert "non-centred activity and group: passed" in attempts[1].describe()
    assert Attempt.from_dict(attempts[1].to_dict()) == attempts[1] and "noncentred" not in attempts[0].to_dict()


def test_after_the_switch_the_ladder_goes_on_noncentred_and_switches_once(scripted_ladder):
    attempts, design, builds = scripted_ladder(SPLINE, [_verdict("divergences")] * 4)
    assert [(a.settings["target_accept"], a.noncentred) for a in attempts] == [
        (0.9, ()), (0.9, ("activity", "group")), (0.95, ("activity", "group")), (0.99, ("activity", "group"))]
    assert len(builds) == 2  # one model per parameterization: the ladder's attempts share its compiled model


def test_no_switch_for_ess_or_a_few_divergences_for_a_parameterization_the_spec_chose_or_without_the_ladder(scripted_ladder):
    attempts, design, _ = scripted_ladder(SPLINE, [_verdict("bulk ESS"), _verdict()])
    assert [(a.settings["target_accept"], a.noncentred) for a in attempts] == [(0.9, ()), (0.95, ())] and not design.noncentred
    # 2 of 4 × 1,000 draws diverged: NUTS's noise at the edge of the gate, not a funnel; 40 (1 %) are one
    few, many = scripted_ladder(SPLINE, [_verdict("divergences", divergences=2), _verdict()]), \
        scripted_ladder(SPLINE, [_verdict("divergences", divergences=40), _verdict()])
    assert [a.noncentred for a in few[0]] == [(), ()] and [a.noncentred for a in many[0]] == [(), ("activity", "group")]
    chosen = {**SPLINE, "activity": {**SPLINE["activity"], "parameterization": "centred"}}
    chosen.pop("group")
    attempts, _, builds = scripted_ladder(chosen, [_verdict("E-BFMI")])
    assert len(attempts) == 1 and builds == [("centred", None)]  # E-BFMI is not retryable; the spec's centred is kept
    attempts, _, _ = scripted_ladder(SPLINE, [_verdict("E-BFMI")], GateLadder.off())
    assert len(attempts) == 1


@pytest.mark.slow
def test_the_scaled_form_samples_a_flat_truth_where_the_centred_spline_diverges(tmp_path):
    """No activity effect and no site effect (the flat-truth benchmark at 27,518 rows failed its gate on it: a funnel
    centred, divergences in the upper tail of ``smooth_sd`` non-centred). The spec's centred spline diverges here; the
    automatic scaled form, fitted to the same rows, diverges at least four times less often and passes the gate.
    Measured here: 87 divergences with both parts centred (the old automatic choice at the NAKO size), ..."""
    from backpain_epi import CohortTruth, simulate_cohort

    truth = CohortTruth(odds_ratios={"intermat_ml": 1.8, "lmm_ml": 1.0}, site_sd=0.0, activity_or_at_0=1.0, activity_or_at_10000=1.0)
    sim = simulate_cohort(n=1000, seed=77, truth=truth, n_sites=6)
    centred = {**SPLINE, "activity": {**SPLINE["activity"], "parameterization": "centred"}}
    runs = {}
    for name, spec in (("centred", centred), ("auto", SPLINE)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GateFailedWarning)
            runs[name] = fit_model(sim.data, ModelSpec.from_dict(spec), out=tmp_path / name, ladder=False,
                                   draws=800, tune=800, chains=2, progress=False)
    divergences = {k: int(r.idata.sample_stats["diverging"].sum()) for k, r in runs.items()}
    assert divergences["auto"] * 4 < divergences["centred"], divergences
    run = runs["auto"]
    assert run.provenance.activity_parameterization == run.provenance.group_parameterization == "scaled"
    assert {"smooth_w_scaled", "group_effect_scaled"} <= set(run.idata.posterior.data_vars)
    assert load_run(run.out).provenance == run.provenance
