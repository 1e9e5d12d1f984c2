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


# --- covariates as users write them: patsy over raw values, per-2-SD scaling after patsy ----------------------

def _with_covariates(dictionary, covariates, name="unadjusted"):
    from backpain_epi.modelling.spec import ModelSpec
    import yaml

    raw = yaml.safe_load((MODELS / f"{name}.yaml").read_text())
    raw["covariates"] = covariates
    return ModelSpec.from_dict(raw, dictionary)


def _per_2sd(x):
    x = np.asarray(x, dtype=float)
    return (x - x.mean()) / (2 * x.std(ddof=1))


def test_shipped_specs_keep_their_terms_and_scaling(cohort, dictionary):
    """The move to scaling after patsy leaves the shipped specs' terms, columns and recipe as they were."""
    d = _design(cohort, dictionary, "full")
    assert d.terms == ["sex[male]", "intermat_ml", "lmm_ml", "imf_pct", "age", "bmi", "diabetes", "dyslipidemia",
                       "osteoporosis", "osteoarthritis"]
    assert set(d.recipe.scaling) == {"intermat_ml", "lmm_ml", "imf_pct", "age", "bmi"} and d.recipe.categories == {}
    rows = cohort.loc[cohort[["bmi", "met_min_week"]].notna().all(axis=1)]
    for col in ("age", "bmi", "imf_pct"):
        np.testing.assert_allclose(d.X[:, d.terms.index(col)], _per_2sd(rows[col]))
    np.testing.assert_array_equal(d.X[:, d.terms.index("diabetes")], rows["diabetes"].astype(float))


def test_readme_interaction_and_exposure_interaction(cohort, dictionary):
    d = make_design(cohort, _with_covariates(dictionary, ["age", "sex", "age:sex", "intermat_ml:sex"]), dictionary)
    assert set(d.terms) == {"sex[male]", "intermat_ml", "lmm_ml", "age", "age:sex[male]", "intermat_ml:sex[male]"}
    male = (cohort["sex"] == "male").to_numpy()
    np.testing.assert_allclose(d.X[:, d.terms.index("age:sex[male]")], _per_2sd(cohort["age"]) * male)
    np.testing.assert_allclose(d.X[:, d.terms.index("intermat_ml:sex[male]")], _per_2sd(cohort["intermat_ml"]) * male)
    star = make_design(cohort, _with_covariates(dictionary, ["age*sex"]), dictionary)
    assert set(star.terms) == {"sex[male]", "intermat_ml", "lmm_ml", "age", "age:sex[male]"}
    np.testing.assert_array_equal(star.X, d.X[:, [d.terms.index(t) for t in star.terms]])


def test_transforms_act_on_raw_values_then_scale(cohort, dictionary):
    """Issue 16: ``np.log(bmi)`` crashed with a PatsyError, because bmi was scaled (negative) before patsy saw it."""
    d = make_design(cohort, _with_covariates(dictionary, ["age", "sex", "np.log(bmi)", "I(age**2)"]), dictionary)
    rows = cohort.loc[cohort["bmi"].notna()]
    assert set(d.terms) == {"sex[male]", "intermat_ml", "lmm_ml", "age", "np.log(bmi)", "I(age ** 2)"}
    np.testing.assert_allclose(d.X[:, d.terms.index("np.log(bmi)")], _per_2sd(np.log(rows["bmi"])))
    np.testing.assert_allclose(d.X[:, d.terms.index("I(age ** 2)")], _per_2sd(rows["age"] ** 2))
    ref = make_design(cohort, _with_covariates(dictionary, ["age", "C(sex, Treatment('male'))"]), dictionary)
    assert "C(sex, Treatment('male'))[female]" in ref.terms


def test_summary_describes_new_terms(cohort, dictionary):
    from backpain_epi.modelling.results import describe_term

    spec = _with_covariates(dictionary, ["age", "sex", "age:sex", "np.log(bmi)", "C(sex, Treatment('male'))"])
    recipe = make_design(cohort, spec, dictionary).recipe
    age_sd = recipe.scaling["age"][1]
    assert describe_term("age:sex[male]", recipe, dictionary) == ("covariate", "Age × Sex: male",
                                                                  f"2 SD = {age_sd:.3g} years; male vs female")
    kind, label, per = describe_term("np.log(bmi)", recipe, dictionary)
    assert per == f"2 SD = {recipe.scaling['np.log(bmi)'][1]:.3g}" and label == "np.log(bmi)"
    assert describe_term("C(sex, Treatment('male'))[female]", recipe, dictionary)[2] == "vs male"
    assert describe_term("sex[male]", recipe, dictionary) == ("covariate", "Sex: male", "vs female")
    assert describe_term("intermat_ml", recipe, dictionary)[0] == "exposure"


def test_prediction_rebuilds_new_terms(cohort, dictionary):
    """Predicting on the training rows (recipe read back from JSON) gives the in-sample linear predictor."""
    import json

    import arviz as az

    from backpain_epi.modelling.params import BETA, GROUP_SD, GROUP_Z, INTERCEPT
    from backpain_epi.modelling.results import eta_from_arrays, linear_predictor_draws

    spec = _with_covariates(dictionary, ["age*sex", "intermat_ml:sex", "np.log(bmi)", "I(age**2)", "C(age > 50)"])
    d = make_design(cohort, spec, dictionary)
    assert "C(age > 50)[True]" in d.terms and d.recipe.categories == {"C(age > 50)": [False, True]}
    recipe = DesignRecipe.from_dict(spec, json.loads(json.dumps(d.recipe.to_dict())))
    rows = cohort.loc[cohort["bmi"].notna()]
    rng = np.random.default_rng(0)
    idata = az.from_dict(posterior={INTERCEPT: rng.normal(size=(1, 20)), BETA: rng.normal(size=(1, 20, len(d.terms))),
                                    GROUP_SD: rng.uniform(0.1, 1, size=(1, 20)),
                                    GROUP_Z: rng.normal(size=(1, 20, len(d.recipe.group_levels)))})
    np.testing.assert_allclose(linear_predictor_draws(idata, recipe, rows), eta_from_arrays(idata, d.recipe, d.X, d.A, d.group))
    few = rows[rows["age"] > 60].iloc[:3]   # one level of C(age > 50) only: the fit's columns all the same
    np.testing.assert_allclose(recipe.transform(few)[0], d.X[np.flatnonzero((rows["age"] > 60).to_numpy())[:3]])


def test_transform_errors_name_the_term(cohort, dictionary):
    from backpain_epi.modelling.spec import SpecError

    zero_bmi = cohort.assign(bmi=cohort["bmi"].where(cohort.index != cohort.index[0], 0.0))
    with pytest.raises(BackpainEpiError, match=r"term 'np.log\(bmi\)' is not finite \(nan or ±inf\) in 1 of") as err:
        make_design(zero_bmi, _with_covariates(dictionary, ["age", "sex", "np.log(bmi)"]), dictionary)
    assert "\n" not in str(err.value)
    with pytest.raises(SpecError, match=r"cannot build the term 'np.column_stack\(\[age, bmi\]\)'|gives 2 columns"):
        make_design(cohort, _with_covariates(dictionary, ["np.column_stack([age, bmi])"]), dictionary)
