"""Fits shared by the modelling tests: small cohorts, few draws, fitted once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from backpain_epi import CohortTruth, simulate_cohort
from backpain_epi.modelling import fit_model

MODELS = Path(__file__).resolve().parents[2] / "models"
QUICK = {"draws": 300, "tune": 300, "chains": 2, "progress": False}


@pytest.fixture(scope="session")
def cohort_csv(tmp_path_factory):
    """A 3,000-participant cohort with the default truth, as CSV, and its truth."""
    path = tmp_path_factory.mktemp("data") / "cohort.csv"
    sim = simulate_cohort(n=3000, seed=7)
    sim.write(path)
    return path, sim


@pytest.fixture(scope="session")
def full_run(cohort_csv, tmp_path_factory):
    """models/full.yaml fit to the 3,000-row cohort, written to a run folder."""
    out = tmp_path_factory.mktemp("runs") / "full"
    return fit_model(cohort_csv[0], MODELS / "full.yaml", out=out, **QUICK)


@pytest.fixture(scope="session")
def unadjusted_run(cohort_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "unadjusted"
    return fit_model(cohort_csv[0], MODELS / "unadjusted.yaml", out=out, **QUICK)


@pytest.fixture(scope="session")
def strong_truth():
    """Another truth: stronger InterMAT, no lean-muscle effect, flat activity, no site effect."""
    return CohortTruth(odds_ratios={"intermat_ml": 1.8, "lmm_ml": 1.0}, site_sd=0.0, activity_or_at_0=1.0, activity_or_at_10000=1.0)
