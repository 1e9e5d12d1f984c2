"""Shared fixtures: cohorts come from the simulator, never from downloaded files."""

from __future__ import annotations

import pytest

from backpain_epi import CohortTruth, load_dictionary, simulate_cohort
from backpain_epi.tableio import read_table


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
