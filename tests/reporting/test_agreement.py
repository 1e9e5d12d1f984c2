"""Agreement of measured with planted exposures: the ICC is the published one, bias lowers it, the table's numbers hold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backpain_epi.errors import BackpainEpiError
from backpain_epi.reporting.agreement import agreement_table, icc_absolute_agreement, paired_exposures

# Shrout & Fleiss (1979), Table 2: six targets rated by four judges; ICC(2,1) = 0.29, ICC(3,1) = 0.71.
SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])


def test_icc_equals_shrout_fleiss_icc21():
    assert icc_absolute_agreement(SHROUT_FLEISS) == pytest.approx(0.29, abs=0.005)


def test_icc_is_one_for_identical_and_lowered_by_bias():
    rng = np.random.default_rng(0)
    x = rng.normal(100, 20, 200)
    assert icc_absolute_agreement(np.column_stack([x, x])) == pytest.approx(1.0)
    biased = icc_absolute_agreement(np.column_stack([x, x + 20]))  # perfectly correlated, shifted by 1 SD
    assert 0.6 < biased < 0.75  # 1 / (1 + 1/2): the shift counts against agreement
    with pytest.raises(BackpainEpiError, match="finite numbers"):
        icc_absolute_agreement(np.array([[1.0, np.nan], [2.0, 2.0]]))


def test_agreement_table_numbers():
    planted = pd.DataFrame({"participant_id": ["a", "b", "c", "d"], "lmm_ml": [900.0, 1000.0, 1100.0, 1200.0]})
    measured = pd.DataFrame({"participant_id": ["d", "c", "b", "a", "e"], "lmm_ml": [1210.0, 1090.0, 1010.0, 890.0, 5.0]})
    pairs = paired_exposures(measured, planted, ["lmm_ml"])
    assert len(pairs) == 4  # 'e' has no planted value
    row = agreement_table(pairs, ["lmm_ml"]).iloc[0]
    assert row["mean_difference"] == pytest.approx(0.0)
    sd = np.std([-10, 10, -10, 10], ddof=1)
    assert row["loa_hi"] == pytest.approx(1.96 * sd)
    assert row["median_abs_rel_error_pct"] == pytest.approx(100 * np.median([10 / 900, 10 / 1000, 10 / 1100, 10 / 1200]))
    with pytest.raises(BackpainEpiError, match="imf_pct missing"):
        paired_exposures(measured, planted, ["imf_pct"])
