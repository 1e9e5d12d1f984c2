"""Imputation inside the model and measurement error (issue 15): spec, design, in-graph bases, log-likelihood.

Quick tests build the model and evaluate it at a random point (no sampling); the fits are ``slow``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt
import pytest
import xarray as xr
import arviz as az
import yaml

from backpain_epi import simulate_cohort
from backpain_epi.modelling import fit as fit_module
from backpain_epi.modelling.build import build_model
from backpain_epi.modelling.build_latent import draw_imputed_values, hsgp_basis_pt, outcome_log_likelihood, spline_basis_pt
from backpain_epi.modelling.basis import _activity_basis_u
from backpain_epi.modelling.design import complete_rows, make_design
from backpain_epi.modelling.fit import read_analysis_table
from backpain_epi.modelling.imputed import row_latents
from backpain_epi.modelling.latent import hsgp_basis, spline_basis_pieces
from backpain_epi.modelling.spec import ModelSpec, SpecError
from backpain_epi.errors import BackpainEpiError

from ..conftest import MODELS


def _raw(name="full", **extra):
    raw = yaml.safe_load((MODELS / f"{name}.yaml").read_text())
    raw.update(extra)
    return raw


def _basis_raw(basis: str, **extra):
    if basis == "bands":
        return _raw("paper", **extra)
    raw = _raw("full", **extra)
    if basis == "hsgp":
        raw["activity"] = {"variable": "met_min_week", "basis": "hsgp", "m": 8}
        raw["priors"].pop("smooth_sd")
    return raw


@pytest.fixture(scope="module")
def mar_table(dictionary):
    sim = simulate_cohort(n=400, seed=21, mar_missing={"met_min_week": 0.25, "bmi": 0.2, "diabetes": 0.15},
                          measurement_error={"lmm_ml": 0.4})
    table, _ = read_analysis_table(sim.data, dictionary)
    return table


# --------------------------------------------------------------------------- spec


def test_spec_reads_impute_and_measurement_error(dictionary):
    spec = ModelSpec.from_dict(_raw(impute=["bmi", "met_min_week", "diabetes"], measurement_error={"lmm_ml": "lmm_ml_se"}), dictionary)
    assert spec.impute == ("bmi", "met_min_week", "diabetes")
    assert spec.measurement_error == {"lmm_ml": "lmm_ml_se"} and "lmm_ml_se" in spec.columns()
    assert ModelSpec.from_dict(spec.to_dict(), dictionary) == spec


def test_bands_impute_names_the_activity_band(dictionary):
    spec = ModelSpec.from_dict(_raw("paper", impute=["met_min_week"]), dictionary)
    assert spec.impute == ("activity_band",)


@pytest.mark.parametrize("impute, says", [
    (["cbp"], "never imputed"), (["intermat_ml"], "never imputed"), (["sex"], "category column"),
    (["osteoporosis", "osteoporosis"], "listed twice"), (["nonexistent"], "unknown column"),
])
def test_spec_refuses_what_cannot_be_imputed(dictionary, impute, says):
    with pytest.raises(SpecError, match=says):
        ModelSpec.from_dict(_raw(impute=impute), dictionary)


def test_spec_refuses_an_imputed_covariate_inside_a_term(dictionary):
    raw = _raw(impute=["bmi"])
    raw["covariates"] = [c for c in raw["covariates"] if c != "bmi"] + ["np.log(bmi)"]
    with pytest.raises(SpecError, match="plain column"):
        ModelSpec.from_dict(raw, dictionary)


@pytest.mark.parametrize("me, says", [
    ({"age": "intermat_ml_se"}, "not an exposure"), ({"intermat_ml": "age"}, "role covariate"),
    ({"intermat_ml": "nope_se"}, "unknown column"), ("intermat_ml", "must map"),
])
def test_spec_refuses_bad_measurement_error(dictionary, me, says):
    with pytest.raises(SpecError, match=says):
        ModelSpec.from_dict(_raw(measurement_error=me), dictionary)


def test_spec_refuses_measurement_error_on_a_spline_exposure(dictionary):
    raw = _raw("paper_intermat_spline", measurement_error={"intermat_ml": "intermat_ml_se"})
    with pytest.raises(SpecError, match="spline"):
        ModelSpec.from_dict(raw, dictionary)


# --------------------------------------------------------------------------- design


def test_rows_missing_an_imputed_covariate_are_kept_and_counted(mar_table, dictionary):
    spec = ModelSpec.from_dict(_raw(impute=["bmi", "met_min_week"]), dictionary)
    plain = ModelSpec.from_dict(_raw(), dictionary)
    kept, dropped = complete_rows(mar_table, spec)
    cc, cc_dropped = complete_rows(mar_table, plain)
    assert len(kept) > len(cc) and "bmi" not in dropped and cc_dropped["bmi"] > 0
    assert dropped["diabetes"] == cc_dropped["diabetes"]  # not imputed here: still dropped
    design = make_design(mar_table, spec, dictionary)
    assert design.imputed == {"bmi": int(kept["bmi"].isna().sum()), "met_min_week": int(kept["met_min_week"].isna().sum())}
    # per 2 SD of the observed values, not of the placeholders
    observed = kept["bmi"].dropna()
    assert design.recipe.scaling["bmi"] == pytest.approx([observed.mean(), 2 * observed.std(ddof=1)])
    j = design.terms.index("bmi")
    assert np.all(design.X[kept["bmi"].isna().to_numpy(), j] == 0)
    assert np.all(design.A[kept["met_min_week"].isna().to_numpy()] == 0)


def test_measurement_error_scales_by_the_true_sd(mar_table, dictionary):
    spec = ModelSpec.from_dict(_raw(measurement_error={"lmm_ml": "lmm_ml_se"}), dictionary)
    design = make_design(mar_table, spec, dictionary)
    rows, _ = complete_rows(mar_table, spec)
    sd_true = np.sqrt(rows["lmm_ml"].var(ddof=1) - np.mean(rows["lmm_ml_se"] ** 2))
    assert design.recipe.scaling["lmm_ml"][1] == pytest.approx(2 * sd_true)
    assert design.latent.recipe["measured"][0]["reliability"] < 1


def test_measurement_error_refuses_ses_larger_than_the_spread(mar_table, dictionary):
    spec = ModelSpec.from_dict(_raw(measurement_error={"lmm_ml": "lmm_ml_se"}), dictionary)
    table = mar_table.assign(lmm_ml_se=mar_table["lmm_ml_se"] * 50)
    with pytest.raises(BackpainEpiError, match="no variance"):
        make_design(table, spec, dictionary)


# --------------------------------------------------------------------------- the bases in the graph


@pytest.mark.parametrize("basis", ["spline", "hsgp"])
def test_in_graph_basis_equals_the_design_basis(mar_table, dictionary, basis):
    design = make_design(mar_table, ModelSpec.from_dict(_basis_raw(basis), dictionary), dictionary)
    act = design.recipe.activity
    u = np.concatenate([np.linspace(act["lower"] - 1, act["upper"] + 1, 2001), act.get("inner_knots", []),
                        [act["lower"], act["upper"]]])
    expected = _activity_basis_u(u, act)  # patsy cr (spline) or the numpy eigenfunctions (hsgp)
    x = pytensor.tensor.dvector("u")
    graph = spline_basis_pt(x, act) if basis == "spline" else hsgp_basis_pt(x, act)
    got = pytensor.function([x], graph)(u)
    np.testing.assert_allclose(got, expected, atol=1e-8, rtol=0)
    numpy_side = spline_basis_pieces(u, act) if basis == "spline" else hsgp_basis(u, act)
    np.testing.assert_allclose(numpy_side, expected, atol=1e-8, rtol=0)
    # and the design's own columns for the observed rows
    observed = mar_table.loc[mar_table["met_min_week"].notna()]
    assert np.ptp(got) > 0.1 and len(observed)


# --------------------------------------------------------------------------- the log-likelihood at a point


def _idata_at_random_point(model, seed=0):
    """An InferenceData of one draw: a random point of ``model`` with every free variable and deterministic."""
    rng = np.random.default_rng(seed)
    point = {k: v + rng.normal(0, 0.3, size=np.shape(v)) for k, v in model.initial_point().items()}
    names = [v.name for v in model.free_RVs + model.deterministics]
    outs = model.replace_rvs_by_values([model[n] for n in names])
    fn = pytensor.function(model.value_vars, outs, on_unused_input="ignore")
    values = fn(*[point[v.name] for v in model.value_vars])
    dims = model.named_vars_to_dims
    data = {}
    for n, v in zip(names, values):
        v = np.asarray(v)
        d = list(dims.get(n, [f"{n}_dim_{i}" for i in range(v.ndim)]))
        data[n] = (["chain", "draw", *d], v[None, None])
    coords = {k: np.asarray(v) for k, v in model.coords.items() if v is not None}
    post = xr.Dataset(data, coords={"chain": [0], "draw": [0], **{k: c for k, c in coords.items()}})
    return az.InferenceData(posterior=post), point


@pytest.mark.parametrize("basis", ["spline", "hsgp", "bands"])
def test_pointwise_log_likelihood_sums_to_the_models(mar_table, dictionary, basis):
    """The stored log-likelihood of rows with imputed values (and of marginalised binaries / bands) is the model's own."""
    impute = ["met_min_week", "bmi", "diabetes"] if basis != "bands" else ["met_min_week", "diabetes"]
    raw = _basis_raw(basis, impute=impute, measurement_error={"lmm_ml": "lmm_ml_se"})
    if basis == "bands":
        raw["covariates"] = raw["covariates"] + ["bmi"]
        raw["impute"] = impute + ["bmi"]
    spec = ModelSpec.from_dict(raw, dictionary)
    design = make_design(mar_table, spec, dictionary)
    rows, _ = complete_rows(mar_table, spec)
    rows = rows.reset_index(drop=True)
    model = build_model(design)
    idata, point = _idata_at_random_point(model)
    outcome_terms = [model[spec.outcome]] + [p for p in model.potentials if p.name == f"{spec.outcome}_marginalised"]
    expected = model.compile_logp(vars=outcome_terms, jacobian=False)(point)
    fit_module._add_log_likelihood(idata, design, 1, rows)
    got = idata.log_likelihood[spec.outcome].values.astype(float).sum()
    assert got == pytest.approx(float(expected), rel=1e-5)
    if "diabetes" in spec.impute:
        assert any(p.name == "cbp_marginalised" for p in model.potentials)
    # a naive log-likelihood at the placeholders differs: the imputed values matter
    naive = az.InferenceData(posterior=idata.posterior)
    fit_module._add_log_likelihood(naive, design, 1, rows.assign(**{c: rows[c].fillna(rows[c].median()) for c in ["bmi"]}))
    assert naive.log_likelihood[spec.outcome].values.sum() != pytest.approx(got, rel=1e-9)


def test_new_rows_with_missing_values_are_refused(mar_table, dictionary):
    from backpain_epi.modelling.results import linear_predictor_draws

    spec = ModelSpec.from_dict(_raw(impute=["bmi"]), dictionary)
    design = make_design(mar_table, spec, dictionary)
    model = build_model(design)
    idata, _ = _idata_at_random_point(model)
    draw_imputed_values(model, idata, design, seed=0)  # integrated out of the likelihood: drawn after sampling
    rows, _ = complete_rows(mar_table, spec)
    new = rows.head(20).assign(participant_id=[f"NEW{i}" for i in range(20)])
    new.loc[new.index[:3], "bmi"] = np.nan
    with pytest.raises(BackpainEpiError, match="miss 'bmi'"):
        linear_predictor_draws(idata, design.recipe, new)
    with pytest.raises(BackpainEpiError, match="new participants"):
        row_latents(idata, design.recipe, new, np.arange(1))
    # the analysed rows with missing bmi use their imputed draws
    lat = row_latents(idata, design.recipe, rows, np.arange(1))
    miss = rows["bmi"].isna().to_numpy()
    assert np.all(lat.shift[:, ~miss] == 0) and np.all(lat.shift[:, miss] != 0)


def test_analysed_rows_frame_is_aligned(mar_table, dictionary):
    spec = ModelSpec.from_dict(_raw(impute=["bmi"]), dictionary)
    design = make_design(mar_table, spec, dictionary)
    rows, _ = complete_rows(mar_table, spec)
    assert list(rows["participant_id"].astype(str)) == list(design.ids)
    assert isinstance(rows, pd.DataFrame)


# --------------------------------------------------------------------------- fits (slow)


@pytest.mark.slow
@pytest.mark.parametrize("basis", ["spline", "hsgp", "bands"])
def test_fit_with_imputation_and_measurement_error_round_trips(mar_table, dictionary, basis, tmp_path):
    """Every activity basis, with the site intercept, imputation and measurement error together: fit, save, load, flow."""
    from backpain_epi.modelling import fit_model, load_run
    from backpain_epi.reporting.runs import ReportRun
    from backpain_epi.reporting.stats import participant_flow

    impute = ["met_min_week", "bmi", "diabetes"] if basis != "bands" else ["met_min_week", "diabetes"]
    spec = ModelSpec.from_dict(_basis_raw(basis, impute=impute, measurement_error={"lmm_ml": "lmm_ml_se"}), dictionary)
    result = fit_model(mar_table, spec, out=tmp_path / "run", draws=150, tune=150, chains=2, progress=False, ladder=False)
    post = result.idata.posterior
    for col, n in result.provenance.data.imputed.items():
        assert n > 0
    rows, _ = complete_rows(mar_table, spec)
    if basis != "bands":
        assert post["bmi_missing"].sizes["bmi_missing_row"] == int(rows["bmi"].isna().sum())
        assert float(post["bmi_missing"].mean()) == pytest.approx(rows["bmi"].mean(), rel=0.2)
        assert float(post["met_min_week_missing"].min()) >= 0
    assert "diabetes_p_missing" in post and "lmm_ml_true_z" in post
    from backpain_epi.modelling.sample import LOW_RANK_MAX_DIM

    options = result.provenance.sampler["options"]  # hundreds of latent values: low rank only up to LOW_RANK_MAX_DIM
    assert options["free_parameters"] > len(rows)  # a true lmm_ml per row, and the imputed values
    assert options["low_rank_modified_mass_matrix"] is (options["free_parameters"] <= LOW_RANK_MAX_DIM)
    assert result.idata.log_likelihood["cbp"].sizes["cbp_dim_0"] == len(rows)
    assert result.absolute_risk is not None and np.isfinite(result.absolute_risk["rd_per_1000"]).all()
    again = load_run(tmp_path / "run")
    assert again.recipe.latent == result.recipe.latent and again.provenance.data.imputed == result.provenance.data.imputed
    flow = participant_flow(mar_table, [ReportRun(result=again, analysed=rows)], dictionary)
    assert flow.loc["Analysed", spec.name] == len(rows)
    assert any(step.startswith("Kept, met_min_week imputed") for step in flow.index)


@pytest.mark.slow
def test_measurement_error_undoes_the_attenuation(dictionary):
    """Classical error in InterMAT (reliability about 0.8): the naive OR is attenuated as the simulator's truth predicts,
    the measurement-error model's interval covers the true OR per 2 SD of the true exposure and its estimate is
    de-attenuated (further from 1 than the naive one on the same data)."""
    from backpain_epi.modelling import fit_model

    sim = simulate_cohort(n=4000, seed=8, measurement_error={"intermat_ml": 0.45})
    truth = sim.truth["measurement_error"]["intermat_ml"]
    # observed values below 0 (planted error is not clipped) fail validation; leaving those rows out selects on the
    # observed exposure only, which the outcome model conditions on
    settings = {"draws": 300, "tune": 300, "chains": 2, "progress": False, "ladder": False, "exclude_invalid_rows": True}
    naive = fit_model(sim.data, ModelSpec.from_dict(_raw(), dictionary), **settings).summary.set_index("term").loc["intermat_ml"]
    me = fit_model(sim.data, ModelSpec.from_dict(_raw(measurement_error={"intermat_ml": "intermat_ml_se"}), dictionary),
                   **settings).summary.set_index("term").loc["intermat_ml"]
    assert truth["reliability_ratio"] < 0.9
    assert naive["or_lo95"] <= truth["attenuated_or_per_2sd_observed"] <= naive["or_hi95"]
    assert me["or_lo95"] <= truth["or_per_2sd_true"] <= me["or_hi95"]
    assert np.log(me["or_median"]) > np.log(naive["or_median"]) > 0


# --------------------------------------------------------------------------- measurement error integrated out


@pytest.fixture(scope="module")
def marginal_model(mar_table, dictionary):
    """full.yaml (spline, site) with measurement error in lmm_ml and nothing imputed: the ``marginal`` form."""
    spec = ModelSpec.from_dict(_basis_raw("spline", measurement_error={"lmm_ml": "lmm_ml_se"}), dictionary)
    rows, _ = complete_rows(mar_table, spec)
    design = make_design(rows.reset_index(drop=True), spec, dictionary)
    return spec, design, build_model(design)


def test_the_marginal_form_samples_no_value_per_row(marginal_model):
    spec, design, model = marginal_model
    assert model.measured_marginal is not None and "lmm_ml_true_z" not in {v.name for v in model.free_RVs}
    assert len(model.free_RVs) < 40 < design.n  # the scales and coefficients only: the sampler's dimension does not grow with n


def test_the_marginal_likelihood_is_the_logistic_normal_integral(marginal_model):
    """The outcome's log-likelihood (probit approximation) against the integral by 80-node Gauss–Hermite quadrature,
    at a point whose lmm_ml coefficient is larger than NAKO's (log OR 0.5 per 2 SD; the error grows with it: BENCHMARKS.md)."""
    spec, design, model = marginal_model
    point = model.initial_point()
    beta = point["beta"].copy()
    beta[design.terms.index("lmm_ml")] = 0.5
    point["beta"] = beta
    mm = model.measured_marginal
    parts = pytensor.function(model.value_vars, model.replace_rvs_by_values([mm.eta_pre, mm.parts[0][2], mm.parts[0][3]]),
                              on_unused_input="ignore")(*[point[v.name] for v in model.value_vars])
    eta_pre, c, s = (np.asarray(p) for p in parts)
    mean, sd = eta_pre + 0.5 * c, 0.5 * s
    t, w = np.polynomial.hermite_e.hermegauss(80)
    p = (w[None, :] / w.sum() * (1 / (1 + np.exp(-(mean[:, None] + sd[:, None] * t[None, :]))))).sum(axis=1)
    exact = float(np.sum(design.y * np.log(p) + (1 - design.y) * np.log1p(-p)))
    got = float(model.compile_logp(vars=[model[spec.outcome]], jacobian=False)(point))
    assert sd.max() > 0.03  # the error matters at this point
    assert got == pytest.approx(exact, rel=1e-4)
    plugged = float(np.sum(design.y * mean - np.logaddexp(0, mean)))  # the outcome at the conditional mean: not the same
    assert abs(plugged - exact) > 3 * abs(got - exact)  # measured: 0.0154 against 0.0032


def test_true_values_drawn_after_sampling_follow_their_conditional(marginal_model):
    """With no outcome effect of lmm_ml the outcome says nothing about its true value: the drawn values are then the
    conditional Normal(x_obs + c, s) itself (mean and SD over 4,000 draws of one point)."""
    from backpain_epi.modelling.build_latent import draw_true_values

    spec, design, model = marginal_model
    idata, point = _idata_at_random_point(model)
    j = design.terms.index("lmm_ml")
    post = idata.posterior.drop_vars([v for v in idata.posterior.data_vars if v not in {r.name for r in model.free_RVs}])
    post = post.isel(draw=np.zeros(4000, dtype=int)).assign_coords(draw=np.arange(4000))
    post["beta"][..., j] = 0.0
    idata = az.InferenceData(posterior=post)
    draw_true_values(model, idata, design, seed=1)
    point["beta"] = post["beta"].values[0, 0]
    mm = model.measured_marginal
    c, s = (np.asarray(v) for v in pytensor.function(model.value_vars, model.replace_rvs_by_values([mm.parts[0][2], mm.parts[0][3]]),
                                                     on_unused_input="ignore")(*[point[v.name] for v in model.value_vars]))
    shift = idata.posterior["lmm_ml_true_z"].values[0] * design.latent.measured_se["lmm_ml"]  # (draws, rows), per 2 SD
    assert idata.posterior["lmm_ml_true_z"].dims == ("chain", "draw", "lmm_ml_row")
    np.testing.assert_allclose(shift.mean(axis=0), c, atol=4 * s.max() / np.sqrt(4000))
    np.testing.assert_allclose(shift.std(axis=0), s, rtol=0.1)


@pytest.mark.slow
def test_a_marginal_fit_round_trips_with_its_true_values_and_says_so(mar_table, dictionary, tmp_path):
    from types import SimpleNamespace

    from backpain_epi.modelling import fit_model, load_run
    from backpain_epi.reporting.text import latent_methods

    spec = ModelSpec.from_dict(_basis_raw("spline", measurement_error={"lmm_ml": "lmm_ml_se"}), dictionary)
    rows, _ = complete_rows(mar_table, spec)
    result = fit_model(rows, spec, out=tmp_path / "run", draws=150, tune=150, chains=2, progress=False, ladder=False)
    options = result.provenance.sampler["options"]
    assert options["measurement_error"] == "marginal" and options["free_parameters"] < 100 < len(rows)  # no value per row
    z = result.idata.posterior["lmm_ml_true_z"]
    assert z.sizes["lmm_ml_row"] == len(rows) and 0.3 < float(z.std()) < 1.5  # a spread of the size of the SE
    assert result.idata.log_likelihood["cbp"].sizes["cbp_dim_0"] == len(rows) and np.isfinite(result.idata.log_likelihood["cbp"]).all()
    assert result.absolute_risk is not None and np.isfinite(result.absolute_risk["rd_per_1000"]).all()
    assert result.provenance.timings["true_values_s"] > 0
    again = load_run(tmp_path / "run")
    assert again.provenance == result.provenance
    text = latent_methods([SimpleNamespace(name=spec.name, spec=spec, provenance=again.provenance)], dictionary)
    assert "integrated out of the outcome's likelihood" in text


# --------------------------------------------------------------------------- imputed values integrated out (quadrature)


@pytest.fixture(scope="module")
def quadrature_model(mar_table, dictionary):
    """full.yaml (spline, site) imputing activity and BMI, nothing discrete, no measurement error: the ``quadrature`` form."""
    spec = ModelSpec.from_dict(_basis_raw("spline", impute=["met_min_week", "bmi"]), dictionary)
    rows, _ = complete_rows(mar_table, spec)
    rows = rows.reset_index(drop=True)
    design = make_design(rows, spec, dictionary)
    return spec, design, rows, build_model(design)


def test_the_spline_as_one_function_equals_its_basis(mar_table, dictionary):
    from backpain_epi.modelling.build_latent import spline_function_pt

    design = make_design(mar_table, ModelSpec.from_dict(_basis_raw("spline"), dictionary), dictionary)
    act = design.recipe.activity
    u = np.concatenate([np.linspace(act["lower"] - 1, act["upper"] + 1, 2001), act["inner_knots"]])
    coef = np.random.default_rng(3).normal(size=design.A.shape[1])
    x = pytensor.tensor.dvector("u")
    got = pytensor.function([x], spline_function_pt(x, act, coef[0], pytensor.tensor.as_tensor(coef[1:])))(u)
    np.testing.assert_allclose(got, _activity_basis_u(u, act) @ coef, atol=1e-9, rtol=0)


def test_the_quadrature_form_samples_no_value_per_row(quadrature_model):
    spec, design, rows, model = quadrature_model
    assert model.imputed_quadrature is not None
    names = {v.name for v in model.free_RVs}
    assert "bmi_missing_z" not in names and "met_min_week_missing_z" not in names
    assert len(model.free_RVs) < 40 and rows["bmi"].isna().sum() > 40


def _imputation_regression(point, col, design, n_extra):
    """numpy: an imputation model's ``base`` (n,), earlier-column coefficients and SD at ``point`` (unconstrained values)."""
    L = design.latent
    g = point[f"{col}_imp_coef"]
    base = point[f"{col}_imp_intercept"] + L.Z @ g[:L.Z.shape[1]]
    sd, rows = np.exp(point[f"{col}_imp_site_sd_log__"]), np.bincount(design.group, minlength=len(design.recipe.group_levels))
    c = np.sqrt(1 + sd**2 * rows)                                 # the scaled form: u = z sd / c
    base = base + (point[f"{col}_imp_site_scaled"] * sd / c)[design.group]
    return base, g[L.Z.shape[1]:], float(np.exp(point[f"{col}_imp_sd_log__"]))


def test_the_quadrature_likelihood_is_the_integral_over_the_missing_values(quadrature_model):
    """The model's log-likelihood of the outcome and the imputed columns against brute force: per row, 40-node
    Gauss–Hermite quadrature along the chain of imputation models (activity, then BMI given activity), with the exact
    logistic, at a point where BMI depends strongly on activity, so the observed BMI informs a missing activity."""
    spec, design, rows, model = quadrature_model
    rng = np.random.default_rng(5)
    point = {k: v + rng.normal(0, 0.2, size=np.shape(v)) for k, v in model.initial_point().items()}
    point["bmi_imp_coef"][-1] = 0.8                       # BMI on the standardized activity
    point["bmi_imp_sd_log__"] = np.log(0.4)
    point["met_min_week_imp_sd_log__"] = np.log(0.9)
    beta = point["beta"].copy()
    beta[design.terms.index("bmi")] = 0.4
    point["beta"] = beta
    point["activity_linear"] = 0.3
    L, act = design.latent, design.recipe.activity
    ea, eb = L.entries(("continuous", "activity"))
    assert (ea["column"], eb["column"]) == ("met_min_week", "bmi")
    base_a, _, tau_a = _imputation_regression(point, "met_min_week", design, 0)
    base_b, h, tau_b = _imputation_regression(point, "bmi", design, 1)
    va, vb = L.observed["met_min_week"], L.observed["bmi"]
    ma, mb = ~np.isfinite(va), ~np.isfinite(vb)
    smooth_w = pytensor.function(model.value_vars, model.replace_rvs_by_values([model["smooth_w"]]),  # any parameterization
                                 on_unused_input="ignore")(*[point[v.name] for v in model.value_vars])[0]
    coef = np.concatenate([[point["activity_linear"]], smooth_w])
    b_bmi = beta[design.terms.index("bmi")]
    f_act = lambda v: spline_basis_pieces(ea["u_mean"] + ea["u_sd"] * v, act) @ coef
    # the log-odds without the imputed columns: the model's own, at this point
    eta_pre = np.asarray(pytensor.function(model.value_vars, model.replace_rvs_by_values([model.imputed_eta]),
                                           on_unused_input="ignore")(*[point[v.name] for v in model.value_vars])[0])
    y = design.y.astype(float)
    x, w = np.polynomial.hermite_e.hermegauss(40)
    w = w / w.sum()
    norm = lambda v, m, s: -0.5 * ((v - m) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)
    total, outcome_rows = 0.0, np.empty(design.n)  # the whole likelihood; each row's outcome given its observed values
    for i in range(design.n):
        if not ma[i] and not mb[i]:
            e = eta_pre[i]
            outcome_rows[i] = y[i] * e - np.logaddexp(0, e)
            total += outcome_rows[i] + norm(va[i], base_a[i], tau_a) + norm(vb[i], base_b[i] + h[0] * va[i], tau_b)
            continue
        a_nodes = base_a[i] + tau_a * x if ma[i] else np.array([va[i]])
        a_w = w if ma[i] else np.exp([norm(va[i], base_a[i], tau_a)])
        acc = observed = 0.0
        for a, wa in zip(a_nodes, a_w):
            if mb[i]:
                b_nodes, b_w = base_b[i] + h[0] * a + tau_b * x, w
            else:
                b_nodes, b_w = np.array([vb[i]]), np.exp([norm(vb[i], base_b[i] + h[0] * a, tau_b)])
            e = eta_pre[i] + (f_act(np.array([a]))[0] if ma[i] else 0.0) + (b_bmi * b_nodes if mb[i] else 0.0)
            p = 1 / (1 + np.exp(-e))
            acc += wa * np.sum(b_w * (p if y[i] else 1 - p))
            observed += wa * np.sum(b_w)
        total += np.log(acc)
        outcome_rows[i] = np.log(acc / observed)
    terms = [model[spec.outcome], *[p for p in model.potentials if p.name.startswith("imputed_observed_")],
             model["met_min_week_observed"], model["bmi_observed"]]
    got = float(model.compile_logp(vars=terms, jacobian=False)(point))
    assert ma.sum() > 50 and mb.sum() > 50 and (ma & mb).sum() > 5
    assert got == pytest.approx(total, abs=0.1)   # measured: 0.03 over 400 rows (the probit approximation's part)
    # the pointwise log-likelihood LOO gets: each row's outcome with its missing values integrated out
    rows_ll = outcome_log_likelihood(model, _posterior_at(model, point), spec.outcome)[0]
    missing = ma | mb
    np.testing.assert_allclose(rows_ll, outcome_rows, atol=0.01)
    np.testing.assert_allclose(rows_ll[~missing], outcome_rows[~missing], atol=1e-6)
    at_mean = y * eta_pre - np.logaddexp(0, eta_pre)  # not the outcome at the missing values' mean (0 here): it differs
    assert np.abs(at_mean - outcome_rows)[missing].max() > 10 * np.abs(rows_ll - outcome_rows)[missing].max()


def _posterior_at(model, point: dict) -> xr.Dataset:
    """A one-draw posterior (chain 1, draw 1) of the free variables' values at ``point`` (its transformed values)."""
    out = {}
    for rv in model.free_RVs:
        value = point[model.rvs_to_values[rv].name]
        transform = model.rvs_to_transforms.get(rv)
        value = np.asarray(transform.backward(pt.as_tensor(value), *rv.owner.inputs).eval()) if transform else np.asarray(value)
        out[rv.name] = (("chain", "draw", *[f"{rv.name}_{j}" for j in range(value.ndim)]), value[None, None])
    return xr.Dataset(out)


def test_imputed_values_drawn_after_sampling_follow_their_conditional(quadrature_model):
    """With no outcome effect of activity or BMI, the outcome says nothing about them: a missing activity drawn for a row
    that observes BMI then follows its normal given that BMI, computed here in closed form from the chain
    (activity ~ Normal(m_a, tau_a), BMI ~ Normal(base_b + h activity, tau_b)); 4,000 draws of one point."""
    spec, design, rows, model = quadrature_model
    idata, point = _idata_at_random_point(model)
    free = {r.name for r in model.free_RVs}
    post = idata.posterior.drop_vars([v for v in idata.posterior.data_vars if v not in free])
    post = post.isel(draw=np.zeros(4000, dtype=int)).assign_coords(draw=np.arange(4000))
    post["beta"][..., design.terms.index("bmi")] = 0.0
    post["activity_linear"][...] = 0.0
    for name in ("smooth_w", "smooth_z"):
        if name in post:
            post[name][...] = 0.0
    post["bmi_imp_coef"][..., -1] = 0.8
    idata = az.InferenceData(posterior=post)
    draw_imputed_values(model, idata, design, seed=2)
    # the point on the unconstrained scale the helper reads (the posterior holds the constrained SDs)
    point = {v.name: (np.log(post[v.name[:-6]].values[0, 0]) if v.name.endswith("_log__") else post[v.name].values[0, 0])
             for v in model.value_vars}
    base_a, _, tau_a = _imputation_regression(point, "met_min_week", design, 0)
    base_b, h, tau_b = _imputation_regression(point, "bmi", design, 1)
    L = design.latent
    va, vb = L.observed["met_min_week"], L.observed["bmi"]
    target = np.flatnonzero(~np.isfinite(va) & np.isfinite(vb))
    gain = h[0] * tau_a**2 / (tau_b**2 + h[0] ** 2 * tau_a**2)
    mean = base_a[target] + gain * (vb[target] - base_b[target] - h[0] * base_a[target])
    sd = np.sqrt(tau_a**2 * tau_b**2 / (tau_b**2 + h[0] ** 2 * tau_a**2))
    e = L.entries("activity")[0]
    raw = idata.posterior["met_min_week_missing"].values[0]                     # (draws, missing rows), MET-min/week
    pos = np.searchsorted(L.missing_rows["met_min_week"], target)
    v = (np.log1p(raw[:, pos]) - e["u_mean"]) / e["u_sd"]                        # standardized log1p; the clip at 0 aside
    keep = mean - 3 * sd > (np.log1p(0) - e["u_mean"]) / e["u_sd"]              # rows whose draws never reach MET 0
    assert keep.sum() > 10 and abs(h[0]) > 0.5 and sd < tau_a * 0.9              # the observed BMI narrows the activity
    np.testing.assert_allclose(v[:, keep].mean(axis=0), mean[keep], atol=4 * sd / np.sqrt(4000))
    np.testing.assert_allclose(v[:, keep].std(axis=0), sd, rtol=0.08)


@pytest.mark.slow
@pytest.mark.parametrize("basis", ["spline", "hsgp"])
def test_a_quadrature_fit_round_trips_with_its_imputed_values_and_says_so(mar_table, dictionary, tmp_path, basis):
    from types import SimpleNamespace

    from backpain_epi.modelling import fit_model, load_run
    from backpain_epi.reporting.text import latent_methods

    spec = ModelSpec.from_dict(_basis_raw(basis, impute=["met_min_week", "bmi"]), dictionary)
    rows, _ = complete_rows(mar_table, spec)
    result = fit_model(rows, spec, out=tmp_path / "run", draws=150, tune=150, chains=2, progress=False, ladder=False)
    options = result.provenance.sampler["options"]
    n_missing = int(rows["bmi"].isna().sum() + rows["met_min_week"].isna().sum())
    assert options["imputation"] == "quadrature" and options["free_parameters"] < min(130, n_missing)   # no value per row
    post = result.idata.posterior
    assert post["bmi_missing"].sizes["bmi_missing_row"] == int(rows["bmi"].isna().sum())
    assert float(post["bmi_missing"].mean()) == pytest.approx(rows["bmi"].mean(), rel=0.1)
    assert float(post["bmi_missing"].std()) > 0.3 * rows["bmi"].std()            # a spread of the imputation model's size
    assert float(post["met_min_week_missing"].min()) >= 0
    assert np.isfinite(result.idata.log_likelihood["cbp"]).all() and result.idata.log_likelihood["cbp"].sizes["cbp_dim_0"] == len(rows)
    assert result.absolute_risk is not None and np.isfinite(result.absolute_risk["rd_per_1000"]).all()
    assert result.provenance.timings["imputed_values_s"] > 0
    again = load_run(tmp_path / "run")
    assert again.provenance == result.provenance
    text = latent_methods([SimpleNamespace(name=spec.name, spec=spec, provenance=again.provenance)], dictionary)
    assert "integrated out of the outcome's likelihood rather than sampled per participant" in text
