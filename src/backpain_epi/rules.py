"""The cross-field rules a table is checked against, by name.

The dictionary's ``rules:`` says which rules run and how severe they are
(:mod:`backpain_epi.dictionary` checks the names against :data:`RULES`);
:mod:`backpain_epi.validation` runs them.
"""

from __future__ import annotations

from typing import Callable

import pandas as pd

from .derived import activity_band

def _onset_not_after_age(df, x, dd):
    return x["cbp_onset_age"] > x["age"], "onset after the age at examination"


def _onset_only_with_cbp(df, x, dd):
    return x["cbp_onset_age"].notna() & (x["cbp"] == 0), "an onset age is given while cbp = 0"


def _onset_missing_for_case(df, x, dd):
    return x["cbp_onset_age"].isna() & (x["cbp"] == 1), "cbp = 1 without an onset age; left out of the survival analysis"


def _activity_band_matches(df, x, dd):
    expected = pd.Series(activity_band(x["met_min_week"], dd["activity_band"].levels), index=df.index).astype(object)
    given = df["activity_band"].astype(object)
    return given.notna() & expected.notna() & (given.astype(str) != expected.astype(str)), "activity_band disagrees with met_min_week"


#: Cross-field rules: name -> (columns they need, the column reported, check).
#: A check takes the table, its parsed columns and the dictionary and returns
#: (bad rows, message). The dictionary's ``rules:`` says which
#: run and how severe they are; ``unknown_column`` is handled in place.
RULES: dict[str, tuple[tuple[str, ...], str, Callable]] = {
    "onset_not_after_age": (("cbp_onset_age", "age"), "cbp_onset_age", _onset_not_after_age),
    "onset_only_with_cbp": (("cbp_onset_age", "cbp"), "cbp_onset_age", _onset_only_with_cbp),
    "onset_missing_for_case": (("cbp_onset_age", "cbp"), "cbp_onset_age", _onset_missing_for_case),
    "activity_band_matches": (("activity_band", "met_min_week"), "activity_band", _activity_band_matches),
    "unknown_column": ((), "", None),
}
