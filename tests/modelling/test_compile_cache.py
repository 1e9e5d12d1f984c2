"""Compiled models are reused across fits of the same structure (issue 16, item 8): same draws, no second compile."""

from __future__ import annotations

import numpy as np
import pytest

from backpain_epi import simulate_cohort
from backpain_epi.modelling import fit_model
from backpain_epi.modelling import sample as sample_module
from backpain_epi.modelling.design import make_design
from backpain_epi.modelling.fit import read_analysis_table
from backpain_epi.modelling.spec import load_spec

from ..conftest import MODELS

FEW = {"draws": 150, "tune": 150, "chains": 2, "progress": False, "ladder": False, "estimands": False, "reuse_compiled": True}


def _design(data, spec, dictionary):
    table, _ = read_analysis_table(data, dictionary, spec.columns())
    return make_design(table, spec, dictionary)


def test_structure_key_ignores_the_data_but_not_the_terms(dictionary):
    from backpain_epi.modelling.build import structure_key

    spec = load_spec(MODELS / "unadjusted.yaml", dictionary)
    a = _design(simulate_cohort(n=300, seed=1, n_sites=5).data, spec, dictionary)
    b = _design(simulate_cohort(n=450, seed=2, n_sites=5).data, spec, dictionary)
    c = _design(simulate_cohort(n=300, seed=1, n_sites=6).data, spec, dictionary)
    full = _design(simulate_cohort(n=300, seed=1, n_sites=5).data, load_spec(MODELS / "paper.yaml", dictionary), dictionary)
    assert structure_key(a) == structure_key(b)
    assert structure_key(a) != structure_key(c)  # another number of sites: other parameters
    assert structure_key(a) != structure_key(full)


def test_a_second_fit_of_the_same_structure_reuses_the_compiled_model_with_the_same_draws(dictionary):
    spec = load_spec(MODELS / "unadjusted.yaml", dictionary)
    first = simulate_cohort(n=300, seed=1, n_sites=5).data
    second = simulate_cohort(n=450, seed=2, n_sites=5).data
    second["site"] = second["site"].str.replace("site", "centre")  # other site names: the coordinates must follow
    sample_module._COMPILED.clear()
    a = fit_model(first, spec, **FEW)
    reused = fit_model(second, spec, **FEW)
    assert a.provenance.sampler["compiled"] == "compiled" and reused.provenance.sampler["compiled"] == "reused"
    assert reused.provenance.timings["compile_s"] < 1.0
    sample_module._COMPILED.clear()
    fresh = fit_model(second, spec, **FEW)
    assert fresh.provenance.sampler["compiled"] == "compiled"
    np.testing.assert_array_equal(reused.idata.posterior["beta"].values, fresh.idata.posterior["beta"].values)
    np.testing.assert_array_equal(reused.idata.posterior["group_z"].values, fresh.idata.posterior["group_z"].values)
    assert list(reused.idata.posterior["group"].values) == sorted(second["site"].unique())
    assert list(reused.summary["or_median"]) == pytest.approx(list(fresh.summary["or_median"]))


def test_without_reuse_the_data_are_constants_and_every_fit_compiles(dictionary):
    """Constants sample about 20 % faster per gradient than pm.Data containers, so only fits asking for reuse
    (cross-validation folds) get containers; a spline's columns are whole containers, never slices of one."""
    from backpain_epi.modelling.build import build_model, model_data

    spec = load_spec(MODELS / "paper_by_sex.yaml", dictionary)
    design = _design(simulate_cohort(n=300, seed=1, n_sites=5).data, load_spec(MODELS / "full.yaml", dictionary), dictionary)
    assert build_model(design).data_vars == []
    shared = build_model(design, shared=True)
    assert {v.name for v in shared.data_vars} == set(model_data(design)) == {"X", "A_linear", "A_smooth", "group_index", "y", "A_smooth_precision", "group_precision"}
    assert all(v.get_value().flags.c_contiguous for v in shared.data_vars)
    sample_module._COMPILED.clear()
    data = simulate_cohort(n=300, seed=1, n_sites=5).data
    first, second = (fit_model(data, spec, **{**FEW, "reuse_compiled": False}) for _ in range(2))
    assert first.provenance.sampler["compiled"] == second.provenance.sampler["compiled"] == "compiled"
    assert not sample_module._COMPILED
