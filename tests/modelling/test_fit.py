"""Fitting: run folder contents, provenance, gate, predictions, and agreement with the truth and with ML."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pymc as pm
import pytest

from backpain_epi import simulate_cohort
from backpain_epi.errors import BackpainEpiError, InputFileError
from backpain_epi.modelling import GateFailedWarning, Provenance, fit_model, load_run
from backpain_epi.modelling.build import build_model
from backpain_epi.modelling.design import make_design
from backpain_epi.modelling.results import SUMMARY_COLUMNS
from backpain_epi.records import ids_hash, table_hash
from backpain_epi.tableio import read_table

from ..helpers import fit_logistic
from .conftest import MODELS, QUICK


def test_run_folder_holds_every_file(full_run):
    out = full_run.out
    for name in ("posterior.nc", "summary.csv", "activity_curve.csv", "spec.yaml", "provenance.json"):
        assert (out / name).is_file(), name
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == [*SUMMARY_COLUMNS, "run_id"]
    assert (summary["run_id"] == full_run.provenance.run_id).all() and len(full_run.provenance.run_id) == 32
    assert set(summary["term"]) == {"intermat_ml", "lmm_ml", "imf_pct", "age", "bmi", "sex[male]", "diabetes",
                                    "dyslipidemia", "osteoporosis", "osteoarthritis"}
    row = summary.set_index("term").loc["intermat_ml"]
    assert row.or_lo95 < row.or_median < row.or_hi95
    assert row.or_median == pytest.approx(np.exp(row.log_or_mean), rel=0.05)
    assert 0 <= row.p_or_gt_1 <= 1 and row.per.startswith("2 SD = ") and row.per.endswith("mL")


def test_provenance_records_data_sampler_and_verdict(full_run, cohort_csv):
    p = json.loads((full_run.out / "provenance.json").read_text())
    assert p["data"]["sha256"] == table_hash(full_run_table(cohort_csv[0]))
    assert p["data"]["n_analysed"] == 3000 and p["data"]["dropped"] == {"any": 0}
    assert p["sampler"]["used"] == "nutpie" and p["sampler"]["fallback_reason"] is None
    assert p["settings"] == {"draws": 300, "tune": 300, "chains": 2, "target_accept": 0.9, "seed": 2025}
    assert p["versions"]["pymc"] and p["versions"]["nutpie"] and p["timings"]["sampling_s"] > 0
    assert p["priors"]["smooth_sd"] == "halfnormal(1)"
    assert p["activity_parameterization"] == p["group_parameterization"] == "scaled"  # auto
    assert p["sampler"]["options"]["low_rank_modified_mass_matrix"] is True and p["sampler"]["options"]["free_parameters"] < 100
    assert p["diagnostics"]["passed"] == full_run.diagnostics.passed
    assert {c["name"] for c in p["diagnostics"]["checks"]} == {"R-hat", "bulk ESS", "divergences", "E-BFMI"}
    assert Provenance.from_dict(p) == full_run.provenance  # the typed provenance is the file, both ways
    assert json.loads(full_run.provenance.to_json()) == p
    assert p["data"]["analysed_sha256"] == ids_hash(full_run.analysed_ids)


def test_result_names_prints_and_renders(full_run, capsys):
    assert full_run.name == "full" and len(full_run.analysed_ids) == 3000
    assert full_run.print_summary() is None
    printed = capsys.readouterr().out
    assert printed.startswith("full: intermat_ml (per 2 SD) + ") and "DIAGNOSTICS" in printed.upper()
    assert "| term" in full_run.format_summary("markdown") and "\\begin{tabular}" in full_run.format_summary("latex")
    html = full_run._repr_html_()
    assert "<table" in html and "3,000 analysed" in html
    with pytest.raises(BackpainEpiError, match="did you mean 'markdown'"):
        full_run.format_summary("markdwn")
    loaded = load_run(full_run.out)
    assert loaded.analysed_ids == full_run.analysed_ids and loaded.provenance == full_run.provenance


def test_a_posterior_of_other_participants_is_refused(full_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(full_run.out, run)
    prov = json.loads((run / "provenance.json").read_text())
    prov["data"]["analysed_sha256"] = ids_hash(["someone", "else"])
    (run / "provenance.json").write_text(json.dumps(prov))
    with pytest.raises(InputFileError, match="analysed ids differ"):
        load_run(run)


def full_run_table(path):
    from backpain_epi.cohort import load_cohort

    return load_cohort(path)[0]


@pytest.mark.slow
def test_same_seed_same_draws(cohort_csv, tmp_path):
    spec = MODELS / "unadjusted.yaml"
    a = fit_model(cohort_csv[0], spec, draws=50, tune=50, chains=2, progress=False, seed=5)
    b = fit_model(cohort_csv[0], spec, draws=50, tune=50, chains=2, progress=False, seed=5)
    np.testing.assert_array_equal(a.idata.posterior["beta"].values, b.idata.posterior["beta"].values)


def test_load_run_reads_back_without_refitting(full_run):
    again = load_run(full_run.out)
    pd.testing.assert_frame_equal(again.summary, pd.read_csv(full_run.out / "summary.csv").drop(columns="run_id"))
    assert list(again.summary.columns) == SUMMARY_COLUMNS and again.idata.attrs["run_id"] == full_run.provenance.run_id
    assert again.spec == full_run.spec
    assert again.diagnostics.passed == full_run.diagnostics.passed


def test_log_likelihood_in_chunks_of_rows_is_the_same(full_run, cohort_csv, dictionary, monkeypatch):
    """Issue 16, memory: the log-likelihood is computed a few rows at a time; the result does not depend on the chunk."""
    from backpain_epi.modelling import fit as fit_module

    design = make_design(full_run_table(cohort_csv[0]), full_run.spec, dictionary)
    stored = full_run.idata.log_likelihood["cbp"].values
    n_draws = stored.shape[0] * stored.shape[1]
    idata = full_run.idata.copy()
    del idata.log_likelihood
    monkeypatch.setattr(fit_module, "LL_CHUNK_CELLS", n_draws * 7)  # 7 rows a chunk, 429 chunks
    fit_module._add_log_likelihood(idata, design, n_draws)
    np.testing.assert_allclose(idata.log_likelihood["cbp"].values, stored, rtol=1e-6)


def test_log_likelihood_matches_pymc(full_run, cohort_csv, dictionary):
    """The stored pointwise log-likelihood is PyMC's Bernoulli log-density at the same draws."""
    ll = full_run.idata.log_likelihood["cbp"]
    assert ll.dtype == np.float32 and ll.sizes["cbp_dim_0"] == 3000
    design = make_design(full_run_table(cohort_csv[0]), full_run.spec, dictionary)
    model = build_model(design)
    point_fn = model.compile_fn(model.logp(vars=model.observed_RVs, sum=False)[0], inputs=model.value_vars, on_unused_input="ignore")
    draw = int(ll.draw.values[3])
    post = full_run.idata.posterior.sel(chain=1, draw=draw)
    values = {}
    for rv in model.free_RVs:
        value_var = model.rvs_to_values[rv]
        transform = model.rvs_to_transforms[rv]
        x = post[rv.name].values
        values[value_var.name] = transform.forward(x).eval() if transform is not None else x
    expected = point_fn(values)
    np.testing.assert_allclose(ll.sel(chain=1, draw=draw).values, expected, rtol=1e-4, atol=1e-5)


def test_predictions_for_known_and_new_sites(full_run, cohort_csv):
    table = full_run_table(cohort_csv[0])
    rows = table.iloc[:200]
    known = full_run.predict(rows)
    assert not known["new_group"].any()
    assert ((known.p_lo95 <= known.p_mean) & (known.p_mean <= known.p_hi95)).all()
    observed, predicted = rows["cbp"].to_numpy(), known["p_mean"].to_numpy()
    assert predicted[observed == 1].mean() > predicted[observed == 0].mean()  # discriminates
    new = full_run.predict(rows.assign(site="site_new"))
    assert new["new_group"].all()
    assert ((new.p_hi95 - new.p_lo95) > (known.p_hi95 - known.p_lo95)).mean() > 0.9  # an unseen site is less certain


def test_intervals_cover_the_default_truth(full_run, cohort_csv):
    truth = cohort_csv[1].truth["odds_ratios_per_2sd"]
    s = full_run.summary.set_index("term")
    for term in ("intermat_ml", "lmm_ml"):
        assert s.loc[term, "or_lo95"] <= truth[term] <= s.loc[term, "or_hi95"], term


@pytest.mark.slow
def test_another_truth_is_recovered(strong_truth, tmp_path):
    sim = simulate_cohort(n=3000, seed=21, truth=strong_truth)
    run = fit_model(sim.data, MODELS / "unadjusted.yaml", **QUICK)
    s = run.summary.set_index("term")
    assert s.loc["intermat_ml", "or_lo95"] <= 1.8 <= s.loc["intermat_ml", "or_hi95"]
    assert s.loc["intermat_ml", "or_lo95"] > 1.22  # not the default truth
    assert s.loc["lmm_ml", "or_lo95"] <= 1.0 <= s.loc["lmm_ml", "or_hi95"]
    assert run.idata.posterior["group_sd"].median() < 0.25  # no site effect was planted


def test_fixed_effects_agree_with_maximum_likelihood(unadjusted_run, cohort_csv, dictionary):
    """Posterior means agree with an ML logistic fit with site indicators (weak priors, n = 3,000)."""
    design = make_design(full_run_table(cohort_csv[0]), unadjusted_run.spec, dictionary)
    sites = np.eye(len(design.recipe.group_levels))[design.group]
    X = np.column_stack([np.ones(design.n), design.X, sites[:, 1:]])
    beta, se = fit_logistic(X, design.y)
    bayes = unadjusted_run.summary.set_index("term")
    for j, term in enumerate(design.terms):
        assert abs(bayes.loc[term, "log_or_mean"] - beta[1 + j]) < 0.25 * se[1 + j] + 0.02, term


def test_failed_gate_is_reported_not_hidden(cohort_csv):
    with pytest.warns(GateFailedWarning, match="diagnostics gate failed for model 'unadjusted'.*Do not report.*tune="):
        run = fit_model(cohort_csv[0], MODELS / "unadjusted.yaml", draws=30, tune=30, chains=2, progress=False, ladder=False)
    assert not run.diagnostics.passed
    assert "bulk ESS" in {c.name for c in run.diagnostics.failed}
    assert run.diagnostics.format().startswith("DIAGNOSTICS FAILED")
    assert run.provenance.diagnostics.passed is False


def test_activity_curve_is_relative_to_1500(full_run):
    curve = pd.read_csv(full_run.out / "activity_curve.csv")
    ref = curve.set_index("met_min_week").loc[1500]
    assert ref.or_mean == pytest.approx(1.0) and ref.or_lo95 == pytest.approx(1.0)
    assert (curve.or_lo95 <= curve.or_median).all() and (curve.or_median <= curve.or_hi95).all()
    assert list(curve.columns[:2]) == ["met_min_week", "reference_met"]


@pytest.mark.slow
def test_bands_curve_is_the_band_odds_ratios(cohort_csv, tmp_path):
    run = fit_model(cohort_csv[0], MODELS / "paper.yaml", draws=100, tune=100, chains=2, progress=False)
    curve = run.curve.set_index("met_min_week")
    low = np.exp(run.idata.posterior["beta"].sel(term="activity_band[<500]").values.ravel())
    assert curve.loc[100, "or_median"] == pytest.approx(np.median(low))
    assert curve.loc[1500, "or_median"] == pytest.approx(1.0) and curve.loc[3000, "or_median"] == pytest.approx(1.0)


def test_data_errors_stop_before_sampling(cohort_csv, tmp_path):
    from backpain_epi.errors import BackpainEpiError, DataValidationError

    bad = read_table(cohort_csv[0])
    bad.loc[3, "age"] = "200"
    with pytest.raises(DataValidationError, match="age"):
        fit_model(bad, MODELS / "full.yaml", **QUICK)
    with pytest.raises(BackpainEpiError, match="does not have"):
        fit_model(read_table(cohort_csv[0]).drop(columns="imf_pct"), MODELS / "full.yaml", **QUICK)
    (tmp_path / "file").write_text("x")
    with pytest.raises(BackpainEpiError, match="is a file"):
        fit_model(cohort_csv[0], MODELS / "full.yaml", out=tmp_path / "file", **QUICK)


def test_likelihood_is_pymc_bernoulli():
    from backpain_epi.modelling.build import bernoulli_logit_logp

    eta = np.linspace(-30, 30, 61)
    for y in (0, 1):
        value = np.full_like(eta, y)
        ours = bernoulli_logit_logp(value, eta).eval()
        np.testing.assert_allclose(ours, y * eta - np.logaddexp(0.0, eta), rtol=1e-12, atol=1e-300)  # exact
        pymc = pm.logp(pm.Bernoulli.dist(logit_p=eta), value.astype(int)).eval()
        near = np.abs(eta) <= 20  # beyond that PyMC's own piecewise log1p(exp) drifts (1e-3 at |eta| = 30)
        np.testing.assert_allclose(ours[near], pymc[near], rtol=1e-6)


def test_auto_parameterization_is_the_scaled_form_unless_the_ladder_switched_or_the_spec_chose():
    from types import SimpleNamespace

    from backpain_epi.modelling.params import activity_parameterization, group_parameterization, smooth_parameterization
    from backpain_epi.modelling.spec import ActivityTerm

    def design(basis, parameterization, noncentred=False):
        act = ActivityTerm(variable="met_min_week", basis=basis, parameterization=parameterization)
        return SimpleNamespace(noncentred=noncentred, group=np.zeros(3, int),
                               recipe=SimpleNamespace(spec=SimpleNamespace(activity=act), exposure_splines=["intermat_ml"]))

    for basis in ("spline", "hsgp"):
        assert activity_parameterization(design(basis, "auto")) == "scaled"
        assert activity_parameterization(design(basis, "auto", noncentred=True)) == "noncentred"
        for chosen in ("centred", "noncentred", "scaled"):
            assert activity_parameterization(design(basis, chosen, noncentred=True)) == chosen  # the spec's own is kept
    assert group_parameterization(design("spline", "auto")) == smooth_parameterization(design("spline", "auto")) == "scaled"
    assert group_parameterization(design("spline", "auto", True)) == smooth_parameterization(design("spline", "auto", True)) == "noncentred"
    assert group_parameterization(SimpleNamespace(group=None)) is None
    assert smooth_parameterization(SimpleNamespace(recipe=SimpleNamespace(exposure_splines=[]))) is None


#: The scaled parts of each spec: (the coefficients, their prior SD as a function of the draws).
SCALED_PARTS = {
    "full.yaml": [("smooth_w", lambda d: d["smooth_sd"][:, None]), ("group_effect", lambda d: d["group_sd"][:, None])],
    "full_hsgp.yaml": [("gp_z", lambda d: 1.0)],
    "paper_intermat_spline.yaml": [("exposure_smooth_w", lambda d: d["exposure_smooth_sd"][:, :1])],
}


@pytest.fixture(scope="module")
def nako_cohort():
    return simulate_cohort(n=27518, seed=2025).data


@pytest.mark.parametrize("spec_file", sorted(SCALED_PARTS))
def test_the_scaled_form_keeps_the_prior_and_gives_unit_posterior_curvature_at_any_scale(spec_file, dictionary, nako_cohort):
    """The scaled form (``w = z s / c``, ``z ~ Normal(0, c)``, ``c = sqrt(1 + s² d)``) is a reparameterization: the prior
    draws of each coefficient divided by its prior SD are standard normal. And it does what it is for: given its scale,
    each free ``z`` has a curvature (negative second derivative of the log density) near 1 at a tiny and at a large
    scale, where the centred form's spans 1 / s² + d (orders of magnitude) and the non-centred form's 1 + s² d."""
    import pytensor

    from backpain_epi.modelling import load_spec

    design = make_design(nako_cohort, load_spec(MODELS / spec_file, dictionary), dictionary)
    model = build_model(design)
    for name, prior_sd in SCALED_PARTS[spec_file]:
        scale_vars = [v for v in model.free_RVs if v.name in ("smooth_sd", "group_sd", "exposure_smooth_sd", "gp_amplitude")]
        draws = dict(zip([name] + [v.name for v in scale_vars], pm.draw([model[name], *scale_vars], draws=4000, random_seed=3)))
        standard = draws[name] / prior_sd(draws)
        assert abs(standard.mean()) < 0.05 and standard.std() == pytest.approx(1.0, abs=0.04), name
    free = [v for v in model.value_vars if v.name.endswith("_scaled")]
    assert free, "no scaled part"
    logp = model.logp()
    hessians = {v.name: pytensor.function(model.value_vars, -pytensor.gradient.hessian(logp, v), on_unused_input="ignore")
                for v in free}
    p = design.y.mean()
    for log_scale in (np.log(0.002), np.log(0.5)):
        point = model.initial_point()
        point["intercept"] = np.log(p / (1 - p))                # where the data precision is measured
        for key in point:
            if key.endswith("_log__") and not key.startswith("gp_lengthscale"):
                point[key] = np.full_like(point[key], log_scale)
        for vname, f in hessians.items():
            curvature = np.diag(f(*[point[v.name] for v in model.value_vars]))
            assert np.all((curvature > 0.6) & (curvature < 1.6)), (spec_file, vname, np.exp(log_scale), curvature)
    if spec_file == "full.yaml":  # the same bound fails for the non-centred form at the large scale: the test can tell
        nc = build_model(replace(design, noncentred=True))
        point = nc.initial_point() | {"intercept": np.log(p / (1 - p)), "smooth_sd_log__": np.log(0.5)}
        f = pytensor.function(nc.value_vars, -pytensor.gradient.hessian(nc.logp(), nc.rvs_to_values[nc["smooth_z"]]), on_unused_input="ignore")
        assert np.diag(f(*[point[v.name] for v in nc.value_vars])).max() > 100



def test_the_fast_logistic_equals_scipys():
    from scipy import special

    from backpain_epi.modelling.imputed import expit

    eta = np.r_[np.linspace(-40, 40, 10001), -745.0, 709.0]
    np.testing.assert_allclose(expit(eta), special.expit(eta), rtol=1e-12, atol=1e-15)
    eta.setflags(write=False)  # a new array: the argument is left alone
    assert expit(eta) is not eta


# --------------------------------------------------------------------------- the run folder: whole or not at all


SMALL = {"name": "small", "outcome": "cbp", "exposures": ["intermat_ml"], "covariates": ["age", "sex"]}


@pytest.fixture(scope="module")
def small_fits(cohort_csv):
    """Two fits of one small model (no random intercept) kept in memory: one quick fit, and it under another run id."""
    from backpain_epi.modelling import ModelSpec

    import uuid
    from dataclasses import replace

    spec = ModelSpec.from_dict(SMALL)
    with pytest.warns(GateFailedWarning):  # 50 draws: the gate fails on ESS, which does not matter here
        fit = fit_model(cohort_csv[0], spec, draws=50, tune=50, chains=2, seed=1, progress=False, ladder=False)
    # a second fit of the same model differs, for these tests, only in its run id
    return [fit, replace(fit, provenance=replace(fit.provenance, run_id=uuid.uuid4().hex))]


def test_a_summary_from_another_fit_is_refused(small_fits, tmp_path, cohort_csv):
    from backpain_epi.modelling import compare_runs
    from backpain_epi.modelling.fit import save_run
    from backpain_epi.reporting import build_report

    a, b = (save_run(r, tmp_path / name) for r, name in zip(small_fits, ("a", "b")))
    assert load_run(a).provenance.run_id == small_fits[0].provenance.run_id != small_fits[1].provenance.run_id
    (a / "summary.csv").write_bytes((b / "summary.csv").read_bytes())  # the same model, another fit
    with pytest.raises(InputFileError, match=r"run .*a: its files come from different fits .*summary.csv [0-9a-f]{32}.*Refit the run"):
        load_run(a)
    with pytest.raises(InputFileError, match="different fits"):
        compare_runs([a, b])
    with pytest.raises(InputFileError, match="different fits"):
        build_report([a], cohort_csv[0], out=tmp_path / "rep", survival=False, progress=False)
    assert not (tmp_path / "rep" / "index.html").exists()


def test_a_run_folder_without_run_ids_still_loads(small_fits, tmp_path):
    from backpain_epi.modelling.fit import save_run

    run = save_run(small_fits[0], tmp_path / "old")
    prov = json.loads((run / "provenance.json").read_text())
    del prov["run_id"], prov["attempts"]  # as written before run ids and the gate ladder
    (run / "provenance.json").write_text(json.dumps(prov))
    pd.read_csv(run / "summary.csv").drop(columns="run_id").to_csv(run / "summary.csv", index=False)
    import arviz as az

    idata = az.from_netcdf(str(run / "posterior.nc"))
    idata.load()
    del idata.attrs["run_id"]
    idata.to_netcdf(str(tmp_path / "p.nc"), engine="h5netcdf")
    (tmp_path / "p.nc").replace(run / "posterior.nc")
    old = load_run(run)
    assert old.provenance.run_id == "" and old.provenance.attempts == () and old.provenance.n_attempts == 1


def test_an_interrupted_save_leaves_the_old_run_folder(small_fits, tmp_path, monkeypatch):
    from dataclasses import replace

    import arviz as az

    from backpain_epi.modelling.fit import save_run

    run = save_run(small_fits[0], tmp_path / "run")
    before = {f.name: f.read_bytes() for f in run.iterdir()}
    newer = small_fits[1]

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the refit is stopped while the posterior is written

    monkeypatch.setattr(az.InferenceData, "to_netcdf", killed)
    with pytest.raises(KeyboardInterrupt):
        save_run(newer, run)
    assert {f.name: f.read_bytes() for f in run.iterdir()} == before  # the new summary did not land beside the old posterior
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no partial folder left beside it
    assert load_run(run).provenance.run_id == small_fits[0].provenance.run_id
    monkeypatch.undo()
    save_run(newer, run)  # a save that finishes replaces the folder whole
    assert load_run(run).provenance.run_id == newer.provenance.run_id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert replace(newer, out=run).provenance == load_run(run).provenance


def test_a_folder_with_other_files_is_not_replaced(small_fits, tmp_path):
    from backpain_epi.modelling.fit import save_run

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputFileError, match="not a run's \\(notes.txt\\)"):
        save_run(small_fits[0], tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


# --- validation scoped to the analysis (issue 16, items 4 and 6) --------------------------------------------

def test_fit_blocks_only_on_used_columns_and_excludes_invalid_rows_by_rule(edited_csv, dictionary):
    from backpain_epi.errors import DataQualityWarning, DataValidationError
    from backpain_epi.modelling.fit import read_analysis_table

    path = edited_csv({(4, "intermat_ml"): "-1", (9, "intermat_ml"): "-2", (0, "psoas_ml"): "-5",
                       (1, "met_min_week"): "", (2, "met_min_week"): "", (3, "met_min_week"): ""})
    quick = {**QUICK, "draws": 50, "tune": 50}
    with pytest.raises(DataValidationError, match="exclude_invalid_rows=True"):
        fit_model(path, MODELS / "paper.yaml", **quick)
    with pytest.warns(DataQualityWarning, match=r"psoas_ml \[range\]"):
        result = fit_model(path, MODELS / "paper.yaml", exclude_invalid_rows=True, **quick)
    assert result.dropped == {"invalid intermat_ml (range)": 2, "met_min_week": 3, "any": 5}  # not 'activity_band'
    d = result.provenance.data
    assert d.n_rows == 300 and d.n_analysed == 295
    assert not {"P000005", "P000010"} & set(result.analysed_ids)
    table, _ = read_analysis_table(path, dictionary, ["psoas_ml"], exclude_invalid_rows=True)  # another analysis: same hash
    assert table_hash(table) == d.sha256
