"""The exposures planted in each participant's phantom: the cohort's, moved only where a phantom cannot hold them."""

from __future__ import annotations

import pandas as pd
import pytest

from backpain_epi.pipeline.run import planted_targets
from backpain_epi.segmentation.phantom_types import TARGET_LIMITS, PhantomTargets


def test_planted_targets_keep_feasible_values_and_clip_the_rest():
    cohort = pd.DataFrame({"participant_id": ["a", "b", "c"], "lmm_ml": [100.0, 1000.0, 500.0],
                           "intermat_ml": [10.0, 50.0, 400.0], "imf_pct": [0.5, 8.0, 50.0]})
    t, moved = planted_targets(cohort)
    assert moved == 2
    b = t.set_index("participant_id").loc["b"]
    assert (b["lmm_ml"], b["intermat_ml"], b["imf_pct"]) == (1000.0, 50.0, 8.0)  # feasible: unchanged
    a, c = t.set_index("participant_id").loc["a"], t.set_index("participant_id").loc["c"]
    assert a["lmm_ml"] == TARGET_LIMITS["lmm_ml"][0] and a["imf_pct"] == TARGET_LIMITS["imf_pct"][0]
    assert c["intermat_ml"] == pytest.approx(TARGET_LIMITS["intermat_per_lmm"] * 500.0)
    assert c["imf_pct"] == TARGET_LIMITS["imf_pct"][1]
    for r in t.itertuples():  # every planted row is a valid phantom target
        PhantomTargets(r.lmm_ml, r.intermat_ml, r.imf_pct)
