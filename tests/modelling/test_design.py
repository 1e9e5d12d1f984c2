"""Design matrices: per-2-SD scaling, term names, identifiable activity bases, complete cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
import pytest

from backpain_epi import simulate_cohort
from backpain_epi.cohort import add_activity_band
from backpain_epi.errors import BackpainEpiError
from backpain_epi.modelling.design import DesignRecipe, make_design
from backpain_epi.modelling.spec import load_spec
from backpain_epi.validation import conform_table

from .conftest import MODELS


@pytest.fixture(scope="module")
def cohort(dictionary):
    sim = simulate_cohort(n=1500, seed=3, missing_frac=0.05)
    return add_activity_band(conform_table(sim.data.drop(columns="activity_band"), "cohort", dictionary), dictionary)


def _design(cohort, dictionary, name):
    return make_design(cohort, load_spec(MODELS / f"{name}.yaml"), dictionary)


def test_terms_are_dictionary_names_and_exposures_are_per_2sd(cohort, dictionary):
    d = _design(cohort, dictionary, "paper")
    assert set(d.terms) == {"intermat_ml", "lmm_ml", "age", "sex[male]", "diabetes", "dyslipidemia", "osteoporosis",
                            "osteoarthritis", "activity_band[<500]", "activity_band[>5000]"}
    x = cohort.loc[cohort["met_min_week"].notna(), "intermat_ml"].to_numpy()
    col = d.X[:, d.terms.index("intermat_ml")]
    np.testing.assert_allclose(col, (x - x.mean()) / (2 * x.std(ddof=1)))
    assert col.std(ddof=1) == pytest.approx(0.5)
    np.testing.assert_array_equal(d.X[:, d.terms.index("sex[male]")], (cohort.loc[cohort["met_min_week"].notna(), "sex"] == "male"))


def test_incomplete_rows_are_dropped_and_counted(cohort, dictionary):
    full = _design(cohort, dictionary, "full")
    n_bmi, n_met = int(cohort["bmi"].isna().sum()), int(cohort["met_min_week"].isna().sum())
    assert n_bmi > 0 and n_met > 0
    assert full.dropped["bmi"] == n_bmi and full.dropped["met_min_week"] == n_met
    assert full.dropped["any"] == int((cohort["bmi"].isna() | cohort["met_min_week"].isna()).sum())
    assert full.n == len(cohort) - full.dropped["any"]
    unadjusted = _design(cohort, dictionary, "unadjusted")
    assert unadjusted.dropped == {"any": 0} and unadjusted.n == len(cohort)


def test_segmentation_qc_flagged_rows_are_excluded_unless_asked(cohort, dictionary):
    flagged = cohort.assign(qc_flag=0)
    flagged.loc[flagged.index[:7], "qc_flag"] = 1
    flagged.loc[flagged.index[:2], "bmi"] = np.nan  # flagged and missing: counted once, as flagged
    spec = load_spec(MODELS / "full.yaml")
    d = make_design(flagged, spec, dictionary)
    assert d.dropped["qc_flag"] == 7 and d.dropped["bmi"] == int(cohort["bmi"].isna().sum() - cohort["bmi"].iloc[:7].isna().sum())
    assert not set(flagged["participant_id"].iloc[:7]) & set(d.ids)
    assert d.n == len(cohort) - d.dropped["any"]
    kept = make_design(flagged, spec, dictionary, include_qc_flagged=True)
    complete = flagged.iloc[:7].dropna(subset=spec.columns())["participant_id"]
    assert "qc_flag" not in kept.dropped and len(complete) and set(complete) <= set(kept.ids)


def test_spline_basis_is_centred_and_has_a_linear_part(cohort, dictionary):
    d = _design(cohort, dictionary, "full")
    np.testing.assert_allclose(d.A.mean(axis=0), 0, atol=1e-10)  # sums to zero: identifiable next to the intercept
    u = np.log1p(cohort.loc[cohort[["bmi", "met_min_week"]].notna().all(axis=1), "met_min_week"].to_numpy())
    assert np.corrcoef(d.A[:, 0], u)[0, 1] > 0.99
    assert d.A[:, 0].std(ddof=1) == pytest.approx(0.5, rel=1e-6)   # linear part per 2 SD
    assert np.var(d.A[:, 1:], axis=0, ddof=1).sum() == pytest.approx(1.0)
    assert np.linalg.matrix_rank(np.column_stack([np.ones(d.n), d.X, d.A])) == 1 + d.X.shape[1] + d.A.shape[1]


def test_hsgp_basis_is_pymc_hsgp_basis_centred(cohort, dictionary):
    d = _design(cohort, dictionary, "full_hsgp")
    act = d.recipe.activity
    u = np.log1p(cohort.loc[cohort[["bmi", "met_min_week"]].notna().all(axis=1), "met_min_week"].to_numpy())
    gp = pm.gp.HSGP(m=[act["m"]], L=[act["L"]], cov_func=pm.gp.cov.ExpQuad(1, ls=1.0))
    phi, _ = gp.prior_linearized(X=(u - act["centre"])[:, None])
    phi = phi.eval()
    np.testing.assert_allclose(d.A, phi - phi.mean(axis=0), atol=1e-8)


def test_recipe_transforms_new_rows_like_the_fit(cohort, dictionary):
    d = _design(cohort, dictionary, "full")
    recipe = DesignRecipe.from_dict(d.recipe.spec, d.recipe.to_dict())
    rows = cohort.loc[cohort[["bmi", "met_min_week"]].notna().all(axis=1)].iloc[:40]
    X, A, group = recipe.transform(rows)
    np.testing.assert_allclose(X, d.X[:40])
    np.testing.assert_allclose(A, d.A[:40])
    np.testing.assert_array_equal(group, d.group[:40])
    new_site = rows.assign(site="site99")
    assert (recipe.transform(new_site)[2] == -1).all()


def test_design_errors_name_the_problem(cohort, dictionary):
    spec = load_spec(MODELS / "full.yaml")
    with pytest.raises(BackpainEpiError, match="uses column.*imf_pct.*that the data does not have"):
        make_design(cohort.drop(columns="imf_pct"), spec, dictionary)
    with pytest.raises(BackpainEpiError, match="is 0 for every analysed row"):
        make_design(cohort.assign(cbp=0), spec, dictionary)
    with pytest.raises(BackpainEpiError, match="'diabetes' is constant"):
        make_design(cohort.assign(diabetes=pd.array([0] * len(cohort), dtype="Int64")), spec, dictionary)
