"""Model specs: the shipped ones load; every kind of mistake gives a clear message."""

from __future__ import annotations

import pytest
import yaml

from backpain_epi.errors import InputFileError
from backpain_epi.modelling.spec import ModelSpec, Prior, SpecError, load_spec

from .conftest import MODELS

SHIPPED = ["unadjusted", "paper", "full", "full_hsgp"]


def _raw(name="full"):
    return yaml.safe_load((MODELS / f"{name}.yaml").read_text())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_specs_load_and_round_trip(name, dictionary):
    spec = load_spec(MODELS / f"{name}.yaml")
    assert spec.name == name
    assert spec.outcome == "cbp" and spec.group == "site"
    assert {"intermat_ml", "lmm_ml"} <= set(spec.exposures)
    assert ModelSpec.from_dict(yaml.safe_load(spec.to_yaml()), dictionary) == spec


def test_specs_hold_what_the_issue_names():
    paper, full, hsgp = (load_spec(MODELS / f"{n}.yaml") for n in ("paper", "full", "full_hsgp"))
    assert paper.activity.basis == "bands" and paper.activity.reference == "500-5000"
    assert set(paper.covariates) == {"age", "sex", "diabetes", "dyslipidemia", "osteoporosis", "osteoarthritis"}
    assert set(full.exposures) == {"intermat_ml", "lmm_ml", "imf_pct"} and "bmi" in full.covariates
    assert full.activity.basis == "spline" and full.activity.transform == "log1p"
    assert hsgp.activity.basis == "hsgp" and "gp_lengthscale" in hsgp.priors
    assert set(full.priors) == {"intercept", "coefficients", "group_sd", "smooth_sd"}


def test_printed_spec_lists_every_prior():
    text = str(load_spec(MODELS / "full.yaml"))
    for name in ("intercept", "coefficients", "group_sd", "smooth_sd"):
        assert f"prior {name}:" in text
    assert "intermat_ml (per 2 SD)" in text and "(1 | site)" in text


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.update(exposures=["intermat_mll", "lmm_ml"]), "unknown column 'intermat_mll'; did you mean 'intermat_ml'?"),
    (lambda r: r.update(covariates=["age", "sexx"]), "did you mean 'sex'?"),
    (lambda r: r["activity"].update(basis="splin"), "unknown basis 'splin'; did you mean 'spline'?"),
    (lambda r: r["priors"].update(coefficients="normal(0)"), "normal takes 2 parameter(s) (mu, sigma), got 1"),
    (lambda r: r["priors"].update(coefficients="gaussian(0, 1)"), "unknown prior family 'gaussian'"),
    (lambda r: r["priors"].update(coefficients="normal(0, -1)"), "parameter sigma of 'normal(0, -1)' must be positive"),
    (lambda r: r["priors"].update(group_sd="normal(0, 1)"), "a scale needs a positive family"),
    (lambda r: r["priors"].update(coefficients="N(0,1"), "cannot read prior 'N(0,1'"),
    (lambda r: r["priors"].update(gp_lengthscale="lognormal(0, 1)"), "'gp_lengthscale' is not used by this model"),
    (lambda r: r.update(exposures=["age"]), "role covariate in the dictionary, expected exposure"),
    (lambda r: r.update(covariates=["intermat_ml"]), "enters the model twice"),
    (lambda r: r.update(sampler={"draws": 0}), "draws must be a whole number ≥ 1"),
    (lambda r: r.update(sampler={"sampler": "stan"}), "unknown sampler 'stan'"),
    (lambda r: r.update(outcomes="cbp"), "unknown key 'outcomes'; did you mean 'outcome'?"),
    (lambda r: r["activity"].update(df=2), "df must be a whole number of knots from 4 to 20"),
    (lambda r: r["activity"].update(parameterization="non-centred"), "unknown parameterization 'non-centred'; did you mean 'noncentred'?"),
    (lambda r: r.update(activity={"basis": "bands", "parameterization": "centred"}), "parameterization applies to the spline and hsgp bases only"),
    (lambda r: r.update(group="sex"), "role covariate in the dictionary, expected group"),
])
def test_spec_mistakes_are_named(edit, message, dictionary):
    raw = _raw()
    edit(raw)
    with pytest.raises(SpecError) as err:
        ModelSpec.from_dict(raw, dictionary, source="my.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("my.yaml:")


def test_every_problem_is_reported_at_once(dictionary):
    raw = _raw()
    raw["exposures"] = ["intermat_mll"]
    raw["priors"]["coefficients"] = "normal(0)"
    raw["activity"]["basis"] = "cubic"
    with pytest.raises(SpecError, match="3 problem") as err:
        ModelSpec.from_dict(raw, dictionary)
    assert "intermat_mll" in str(err.value) and "normal takes 2" in str(err.value) and "basis 'cubic'" in str(err.value)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    bad.write_text("- a list\n")
    with pytest.raises(SpecError, match="a YAML mapping"):
        load_spec(bad)


def test_prior_parse():
    assert Prior.parse("student_t(3, 0, 2.5)").kwargs == {"nu": 3.0, "mu": 0.0, "sigma": 2.5}
    assert str(Prior.parse(" halfnormal( 0.5 ) ")) == "halfnormal(0.5)"


def test_sampler_overrides_are_checked():
    spec = load_spec(MODELS / "full.yaml")
    assert spec.with_sampler(draws=50, chains=None).sampler.draws == 50
    with pytest.raises(SpecError, match="chains must be"):
        spec.with_sampler(chains=0)


# --- covariates as users write them (README "Writing a spec", models/*.yaml) --------------------------------

#: Every covariate form the README and the shipped specs show, with the columns it reads.
FORMS = {
    "age": ["age"], "sex": ["sex"], "bmi": ["bmi"], "diabetes": ["diabetes"],     # models/*.yaml: bare columns
    "age:sex": ["age", "sex"],                                                      # README: an interaction
    "age*sex": ["age", "sex"], "intermat_ml:sex": ["intermat_ml", "sex"],
    "np.log(bmi)": ["bmi"], "I(age**2)": ["age"], "C(sex, Treatment('male'))": ["sex"],
}


@pytest.mark.parametrize("form", FORMS)
def test_every_documented_covariate_form_loads(form, dictionary):
    raw = _raw("unadjusted")
    raw["covariates"] = ["age", "sex", form] if form not in ("age", "sex") else ["age", "sex"]
    spec = ModelSpec.from_dict(raw, dictionary)
    assert set(FORMS[form]) <= set(spec.columns())


def test_readme_interaction_next_to_its_main_effects_loads(dictionary):
    """Issue 16: ``covariates: [age, sex, "age:sex"]`` was refused as 'column age enters the model twice'."""
    raw = _raw("unadjusted")
    raw["covariates"] = ["age", "sex", "age:sex"]
    assert ModelSpec.from_dict(raw, dictionary).covariates == ("age", "sex", "age:sex")
    raw["covariates"] = ["age", "sex", "I(age**2)", "np.log(bmi)"]
    assert "bmi" in ModelSpec.from_dict(raw, dictionary).columns()


@pytest.mark.parametrize("covariates, message", [
    (["age", "age"], "covariate 'age' enters the model twice (it is already in the model)"),
    (["age", "sex", "age:sex", "age*sex"], "covariate 'age*sex' enters the model twice"),
    (["intermat_ml"], "covariate 'intermat_ml' enters the model twice (it is already an exposure)"),
    (["bs(age, df=4)"], "covariate 'bs(age, df=4)': patsy's bs() learns from the data"),
    (["center(age)"], "patsy's center() learns from the data"),
    (["age - 1"], "the model always has an intercept"),
    (["np.logg(bmi)"], "unknown numpy function 'logg'; did you mean 'log'?"),
    (["age +"], "covariate 'age +': not a patsy term"),
    (["C(age)"], "covariate 'C(age)': age is a continuous column; C(age) would make one indicator per distinct value"),
    (["sex", "C(bmi):sex"], "C(bmi) would make one indicator per distinct value. Enter it as bmi (per 2 SD)"),
])
def test_unsupported_covariates_are_named_with_what_is_supported(covariates, message, dictionary):
    raw = _raw("unadjusted")
    raw["covariates"] = covariates
    with pytest.raises(SpecError) as err:
        ModelSpec.from_dict(raw, dictionary, source="my.yaml")
    assert message in str(err.value)
    problem = str(err.value).splitlines()[1]
    assert "twice" in problem or "continuous column" in problem or "a covariate is a column (age), an interaction (age:sex" in problem
