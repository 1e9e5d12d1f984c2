"""Shared fixtures: cohorts come from the simulator, never from downloaded files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backpain_epi import CohortTruth, load_dictionary, simulate_cohort
from backpain_epi.tableio import read_table

MODELS = Path(__file__).resolve().parents[1] / "models"
#: Sampler settings of the quick test fits: few draws, two chains, one attempt (at this size the gate may fail on
#: ESS, and the gate ladder's refits would triple the cost; tests/modelling/test_ladder.py tests the ladder).
QUICK = {"draws": 300, "tune": 300, "chains": 2, "progress": False, "ladder": False}


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
#
# `make test` runs the quick tests on two pytest-xdist workers. A session fixture runs once per
# worker, so the expensive ones (the fits) are made once per test run, under a file lock, in a
# folder both workers share, and read back by the other worker (load_run reads a run folder
# without refitting). Without xdist they are made as before.


def shared(tmp_path_factory, name: str, make, read):
    """``make(path)`` once per test run (``read(path)`` for a worker that finds it made), in a folder the workers share."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = root / "shared" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.parent / (path.name + ".lock"))):
        done = path.parent / (path.name + ".done")
        if done.exists():
            return read(path)
        result = make(path)
        done.touch()
        return result


@pytest.fixture(scope="session")
def cohort_csv(tmp_path_factory):
    """A 3,000-participant cohort with the default truth, as CSV, and its simulation (truth included)."""
    sim = simulate_cohort(n=3000, seed=7)
    path = shared(tmp_path_factory, "cohort.csv", lambda p: sim.write(p) or p, lambda p: p)
    return path, sim


def _shared_fit(tmp_path_factory, cohort_csv, spec: str):
    from backpain_epi.modelling import fit_model, load_run

    return shared(tmp_path_factory, f"runs/{spec}", lambda out: fit_model(cohort_csv[0], MODELS / f"{spec}.yaml", out=out, **QUICK),
                  load_run)


@pytest.fixture(scope="session")
def full_run(cohort_csv, tmp_path_factory):
    """models/full.yaml fit to the 3,000-row cohort, written to a run folder."""
    return _shared_fit(tmp_path_factory, cohort_csv, "full")


@pytest.fixture(scope="session")
def unadjusted_run(cohort_csv, tmp_path_factory):
    """models/unadjusted.yaml fit to the 3,000-row cohort, written to a run folder."""
    return _shared_fit(tmp_path_factory, cohort_csv, "unadjusted")
