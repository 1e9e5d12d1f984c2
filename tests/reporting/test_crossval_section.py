"""The leave-one-site-out section: shown from a CVResult (in memory or its saved table), absent without one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backpain_epi.modelling.compare import compare_runs
from backpain_epi.modelling.crossval import CVResult
from backpain_epi.reporting.context import ReportContext, ReportOptions
from backpain_epi.reporting.plots import text_overlaps
from backpain_epi.reporting.sections import crossval as section
from backpain_epi.reporting.sections import estimates


def _cv(runs, flip=False) -> CVResult:
    """A by-site table for the report's runs: the PSIS-LOO winner better at every site (or worse, with ``flip``)."""
    loo = compare_runs(runs)
    rng = np.random.default_rng(0)
    sites = [f"site{i:02d}" for i in range(1, 19)]
    base = rng.normal(-90, 10, len(sites))
    rows = []
    for rank, r in enumerate(loo.itertuples()):
        run = next(x for x in runs if x.name == r.model)
        shift = (rank if flip else -rank) * 0.8
        rows += [{"model": r.model, "site": s, "fold": k, "n": 160, "n_events": 40, "elpd": base[k] + shift + rng.normal(0, 0.2),
                  "seed": 2025 + k, "draws": 300, "tune": 300, "chains": 2, "ladder": False, "gate_passed": True, "fit_s": 1.0,
                  "run_id": run.provenance.run_id} for k, s in enumerate(sites)]
    return CVResult(pd.DataFrame(rows))


def _ctx(runs, data, dictionary, cv):
    ctx = ReportContext.load(runs, data, dictionary, options=ReportOptions(survival=False), crossval=cv)
    ctx.built["comparison"] = estimates.comparison(ctx)
    return ctx


@pytest.mark.parametrize("flip", [False, True])
def test_the_section_says_whether_the_psis_loo_ranking_holds(full_run, unadjusted_run, cohort_csv, dictionary, flip):
    runs = [full_run, unadjusted_run]
    cv = _cv(runs, flip=flip)
    out = section.crossval(_ctx(runs, cohort_csv[0], dictionary, cv))
    assert out.shown and out.title == "Leave-one-site-out cross-validation"
    assert out.values["agrees"] is (not flip)
    assert out.lead == [out.values["verdict"]] and ("does not confirm" in out.lead[0]) is flip
    assert out.values["results_text"].startswith(out.lead[0]) and "refit 18 times" in out.values["methods_text"]
    wide = out.tables["by_site"].numeric
    assert len(wide) == 18 and list(wide.columns[3:]) == list(cv.summary["model"])
    assert out.tables["summary"].df["Δ elpd (SE)"].iloc[0] == "best"
    assert not text_overlaps(out.figures["figure"].figure) and not out.notes


def test_the_section_reads_the_saved_table_and_flags_other_runs(full_run, unadjusted_run, cohort_csv, dictionary, tmp_path):
    runs = [full_run, unadjusted_run]
    cv = _cv(runs)
    cv.by_site.loc[cv.by_site["model"] == "full", "run_id"] = "0" * 32
    path = cv.save(tmp_path / "cmp_loso.csv")["by_site"]
    out = section.crossval(_ctx(runs, cohort_csv[0], dictionary, path))
    assert out.shown and "refit other runs of full" in out.notes[0]
    pd.testing.assert_frame_equal(out.values["result"].summary, cv.summary)


def test_without_a_cross_validation_the_section_is_not_shown(full_run, cohort_csv, dictionary):
    out = section.crossval(_ctx([full_run], cohort_csv[0], dictionary, None))
    assert not out.shown and out.title == "" and not out.values
