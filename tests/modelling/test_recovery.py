"""End-to-end recovery at a realistic size (slow: run by CI and `make test TESTS=all`)."""

from __future__ import annotations

import numpy as np
import pytest

from backpain_epi import simulate_cohort
from backpain_epi.modelling import fit_model

from .conftest import MODELS

pytestmark = pytest.mark.slow


# Another truth with flat activity at this size: `python benchmarks/bench_modelling.py flat-truth` (its funnel
# makes the gate ladder refit twice, 7 minutes, and the gate still fails: BENCHMARKS.md; tests/modelling/test_fit.py
# recovers another truth at n=3,000).


def test_full_model_recovers_default_truth_and_u_shaped_activity():
    sim = simulate_cohort(n=27_518, seed=2025)  # the NAKO size: the activity arms need it
    run = fit_model(sim.data, MODELS / "full.yaml", draws=500, tune=500, chains=2, progress=False)
    s = run.summary.set_index("term")
    truth = sim.truth["odds_ratios_per_2sd"] | sim.truth["odds_ratios_binary"]
    for term in ("intermat_ml", "lmm_ml"):
        assert s.loc[term, "or_lo95"] <= truth[term] <= s.loc[term, "or_hi95"], term
        assert abs(s.loc[term, "log_or_mean"] - np.log(truth[term])) < 2.5 * s.loc[term, "log_or_sd"], term
    covered = [s.loc[t, "or_lo95"] <= truth[t] <= s.loc[t, "or_hi95"] for t in truth]
    assert sum(covered) >= len(truth) - 1  # 95% intervals: at most one of ten may miss
    curve = run.curve.set_index("met_min_week")
    assert curve.loc[0, "or_lo95"] > 1.0 and curve.loc[10_000, "or_lo95"] > 1.0  # U-shaped around 1,500
    assert curve.loc[[750, 2500], "or_median"].between(0.9, 1.1).all()

