"""The fit and compare commands: output, exit status, and clear errors."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from backpain_epi.cli import main

from .conftest import MODELS


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.slow
def test_fit_prints_model_priors_table_and_gate(cohort_csv, tmp_path):
    out = tmp_path / "run"
    r = _run("fit", "--data", cohort_csv[0], "--spec", MODELS / "unadjusted.yaml", "--out", out,
             "--draws", 400, "--tune", 400, "--chains", 2, "--quiet", "--allow-failed-diagnostics", "--no-ladder")
    assert r.exit_code == 0, r.output
    assert "prior group_sd: halfnormal(1)" in r.output
    assert "Sampling with nutpie: 2 chains × 400 draws after 400 tuning steps, seed 2025." in r.output
    assert "Analysed 3,000 participants" in r.output
    assert "intermat_ml" in r.output and "Diagnostics" in r.output.replace("DIAGNOSTICS", "Diagnostics")
    assert json.loads((out / "provenance.json").read_text())["settings"]["draws"] == 400
    assert "Absolute risk at mean - 1 SD -> mean + 1 SD" in r.output and "E-value" in r.output  # issue 14 on the command line
    assert "Prior sensitivity (power scaling)" in r.output
    assert "absolute_risk.csv" in r.output.split("Wrote")[-1]


def test_failed_gate_exits_non_zero(cohort_csv, tmp_path):
    args = ["fit", "--data", cohort_csv[0], "--spec", MODELS / "unadjusted.yaml", "--out", tmp_path / "r",
            "--draws", 20, "--tune", 20, "--chains", 2, "--quiet", "--no-ladder"]
    r = _run(*args)
    assert r.exit_code == 3
    assert "prior group_sd: halfnormal(1)" in r.output and "Analysed 3,000 participants" in r.output
    assert "Sampling with nutpie: 2 chains × 20 draws after 20 tuning steps, seed 2025." in r.output
    assert "DIAGNOSTICS FAILED" in r.output and "[FAIL] bulk ESS" in r.output
    assert "GateFailedWarning" not in r.output and r.output.count("DIAGNOSTICS FAILED") == 1  # said once, by the CLI
    assert json.loads((tmp_path / "r" / "provenance.json").read_text())["diagnostics"]["passed"] is False


@pytest.mark.slow
def test_the_cli_climbs_the_gate_ladder_and_prints_every_attempt(cohort_csv, tmp_path):
    args = ["fit", "--data", cohort_csv[0], "--spec", MODELS / "unadjusted.yaml", "--out", tmp_path / "r",
            "--draws", 20, "--tune", 20, "--chains", 2, "--quiet"]
    r = _run(*args)
    assert r.exit_code == 3
    assert "Gate ladder: 3 attempts; the last is kept." in r.output and "  3. target_accept 0.99, tune 40, draws 40: failed (" in r.output
    assert r.output.count("DIAGNOSTICS FAILED") == 1


@pytest.mark.slow
def test_failed_gate_exits_0_when_allowed(cohort_csv, tmp_path):
    args = ["fit", "--data", cohort_csv[0], "--spec", MODELS / "unadjusted.yaml", "--out", tmp_path / "r",
            "--draws", 20, "--tune", 20, "--chains", 2, "--quiet", "--allow-failed-diagnostics"]
    assert _run(*args).exit_code == 0


def test_spec_and_data_errors_are_one_clear_message(cohort_csv, tmp_path):
    bad_spec = tmp_path / "bad.yaml"
    bad_spec.write_text((MODELS / "full.yaml").read_text().replace("basis: spline", "basis: splines"))
    r = _run("fit", "--data", cohort_csv[0], "--spec", bad_spec, "--out", tmp_path / "x")
    assert r.exit_code == 2
    assert "error:" in r.output and "unknown basis 'splines'; did you mean 'spline'?" in r.output
    assert "Traceback" not in r.output
    bad_data = tmp_path / "bad.csv"
    bad_data.write_text(cohort_csv[0].read_text().replace("female", "femail", 1))
    r = _run("fit", "--data", bad_data, "--spec", MODELS / "full.yaml", "--out", tmp_path / "y")
    assert r.exit_code == 2 and "sex" in r.output and "femail" in r.output
    r = _run("fit", "--data", tmp_path / "none.csv", "--spec", MODELS / "full.yaml", "--out", tmp_path / "z")
    assert r.exit_code == 2 and "none.csv" in r.output


def test_compare_command(full_run, unadjusted_run, tmp_path):
    r = _run("compare", full_run.out, unadjusted_run.out, "--out", tmp_path / "cmp.csv")
    assert r.exit_code == 0, r.output
    assert "elpd_loo" in r.output and "predicts best" in r.output and (tmp_path / "cmp.csv").is_file()
    r = _run("compare", full_run.out, tmp_path / "nope")
    assert r.exit_code == 2 and "not a run folder" in r.output


def test_compare_cv_refusals(full_run, unadjusted_run, cohort_csv, tmp_path):
    runs = (full_run.out, unadjusted_run.out)
    r = _run("compare", *runs, "--cv", "site")
    assert r.exit_code == 2 and "--data: needed by --cv site" in r.output and "Traceback" not in r.output
    r = _run("compare", *runs, "--cv", "sites", "--data", cohort_csv[0])
    assert r.exit_code == 2 and "Invalid value for '--cv'" in r.output and "'site'" in r.output
    r = _run("compare", *runs, "--data", cohort_csv[0])
    assert r.exit_code == 2 and "--data is used by leave-one-site-out cross-validation only; add --cv site" in r.output
    flat = tmp_path / "flat"
    shutil.copytree(unadjusted_run.out, flat)
    spec = flat / "spec.yaml"
    spec.write_text("".join(line for line in spec.read_text().splitlines(keepends=True) if not line.lstrip().startswith(("group:", "group_sd:"))))
    r = _run("compare", full_run.out, flat, "--cv", "site", "--data", cohort_csv[0])
    assert r.exit_code == 2 and "has no group term (random intercept per site)" in r.output, r.output
