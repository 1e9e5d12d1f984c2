"""Modelling tests share the quick fits of ``tests/conftest.py`` (also used by the reporting tests)."""

from __future__ import annotations

import pytest

from backpain_epi import CohortTruth

from ..conftest import MODELS, QUICK  # noqa: F401  (imported by the test modules)


@pytest.fixture(scope="session")
def strong_truth():
    """Another truth: stronger InterMAT, no lean-muscle effect, flat activity, no site effect."""
    return CohortTruth(odds_ratios={"intermat_ml": 1.8, "lmm_ml": 1.0}, site_sd=0.0, activity_or_at_0=1.0, activity_or_at_10000=1.0)
