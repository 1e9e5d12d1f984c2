"""Shared fixtures: cohorts come from the simulator, never from downloaded files."""

from __future__ import annotations

import pytest

from pathlib import Path

from backpain_epi import CohortTruth, load_dictionary, simulate_cohort
from backpain_epi.tableio import read_table

MODELS = Path(__file__).resolve().parents[1] / "models"
#: Sampler settings of the quick test fits: few draws, two chains.
QUICK = {"draws": 300, "tune": 300, "chains": 2, "progress": False}


@pytest.fixture(scope="session")
def dictionary():
    return load_dictionary()


@pytest.fixture(scope="session")
def nako_sized():
    """A cohort of the NAKO analysis' size (27,518) with the default truth."""
    return simulate_cohort(seed=11)


@pytest.fixture()
def small_csv(tmp_path):
    """A clean 300-participant cohort written as CSV; returns its path."""
    path = tmp_path / "cohort.csv"
    simulate_cohort(n=300, seed=5).write(path)
    return path


@pytest.fixture()
def small_raw(small_csv):
    """The clean small cohort as read from CSV (all columns text)."""
    return read_table(small_csv)


@pytest.fixture(scope="session")
def flat_truth():
    return CohortTruth(site_sd=0.0, activity_or_at_0=1.0, activity_or_at_10000=1.0)


@pytest.fixture()
def edited_csv(small_raw, tmp_path):
    """Write the small cohort with some cells changed: ``edited_csv({(row, column): value, ...})``."""

    def write(edits: dict):
        df = small_raw.copy()
        for (row, column), value in edits.items():
            df.loc[row, column] = value
        path = tmp_path / "edited.csv"
        df.to_csv(path, index=False)
        return path

    return write


# --------------------------------------------------------------------------- quick fits shared by modelling and reporting tests


@pytest.fixture(scope="session")
def cohort_csv(tmp_path_factory):
    """A 3,000-participant cohort with the default truth, as CSV, and its simulation (truth included)."""
    path = tmp_path_factory.mktemp("data") / "cohort.csv"
    sim = simulate_cohort(n=3000, seed=7)
    sim.write(path)
    return path, sim


@pytest.fixture(scope="session")
def full_run(cohort_csv, tmp_path_factory):
    """models/full.yaml fit to the 3,000-row cohort, written to a run folder."""
    from backpain_epi.modelling import fit_model

    out = tmp_path_factory.mktemp("runs") / "full"
    return fit_model(cohort_csv[0], MODELS / "full.yaml", out=out, **QUICK)


@pytest.fixture(scope="session")
def unadjusted_run(cohort_csv, tmp_path_factory):
    from backpain_epi.modelling import fit_model

    out = tmp_path_factory.mktemp("runs") / "unadjusted"
    return fit_model(cohort_csv[0], MODELS / "unadjusted.yaml", out=out, **QUICK)
