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
