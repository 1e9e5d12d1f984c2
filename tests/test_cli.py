"""The command line: lists its commands, round-trips simulate → validate → describe, fails cleanly."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from backpain_epi.cli import main


@pytest.fixture()
def run():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


def test_help_lists_the_commands(run):
    result = run("--help")
    assert result.exit_code == 0
    for command in ("simulate", "validate", "describe", "dictionary"):
        assert command in result.output


def test_simulate_validate_describe(run, tmp_path):
    out, truth = tmp_path / "c.parquet", tmp_path / "t.json"
    result = run("simulate", "--n", 400, "--seed", 9, "--out", out, "--truth-out", truth, "--or", "intermat_ml=1.5",
                 "--site-sd", 0, "--activity-or-at-0", 1)
    assert result.exit_code == 0, result.output
    assert "Wrote 400 participants" in result.output
    t = json.loads(truth.read_text())
    assert t["odds_ratios_per_2sd"]["intermat_ml"] == 1.5 and t["site_sd"] == 0 and t["activity"]["or_at_0"] == 1
    assert len(pd.read_parquet(out)) == 400

    result = run("validate", out, "--report-out", tmp_path / "problems.csv")
    assert result.exit_code == 0 and "passes validation" in result.output
    assert pd.read_csv(tmp_path / "problems.csv").empty

    result = run("describe", out)
    assert result.exit_code == 0
    assert "CBP (n = " in result.output and "InterMAT volume (mL)" in result.output


def test_validate_names_every_seeded_error_and_exits_2(run, small_raw, tmp_path):
    df = small_raw.copy()
    df.loc[0, "age"] = "abc"
    df.loc[1, "sex"] = "F"
    df.loc[2, "participant_id"] = df.loc[3, "participant_id"]
    df.loc[4, "osteoporosis"] = "yes"
    path = tmp_path / "bad.csv"
    df.drop(columns=["cbp"]).to_csv(path, index=False)
    result = run("validate", path, "--report-out", tmp_path / "problems.csv")
    assert result.exit_code == 2
    for text in ("age [type]", "sex [level]", "participant_id [duplicate]", "osteoporosis [type]", "code no = 0, yes = 1",
                 "cbp [required_column]", "5 error(s)"):
        assert text in result.output
    problems = pd.read_csv(tmp_path / "problems.csv")
    assert set(problems["column"]) == {"age", "sex", "participant_id", "osteoporosis", "cbp"}


def test_validate_other_table_and_dictionary_listing(run, tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("participant_id,water,fat\nP1,w.nii.gz,f.nii.gz\n", encoding="utf-8")
    assert run("validate", manifest, "--table", "manifest").exit_code == 0
    result = run("dictionary", "--table", "manifest")
    assert result.exit_code == 0 and "water" in result.output and "intermat_ml" not in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (("validate", "{tmp}/absent.csv"), "absent.csv: no such file"),
        (("validate", "{tmp}"), "is a directory"),
        (("validate", "{tmp}/c.csv", "--table", "cohrot"), "unknown table 'cohrot'; did you mean 'cohort'"),
        (("describe", "{tmp}/absent.csv"), "no such file"),
        (("simulate", "--out", "{tmp}/x.csv", "--or", "intermat_ml"), "expected TERM=NUMBER"),
        (("simulate", "--out", "{tmp}/x.csv", "--n", "5"), "at least 50"),
        (("validate", "{tmp}/c.csv", "--dictionary", "{tmp}/none.yaml"), "no such dictionary file"),
        (("validate", "{tmp}/c.csv", "--dictionary", "{tmp}"), "is a directory"),
        (("validate", "{tmp}/c.csv", "--report-out", "{tmp}"), "is a directory"),
        (("simulate", "--out", "{tmp}"), "is a directory"),
        (("simulate", "--out", "{tmp}/c.csv/x.csv"), "c.csv is a file, not a folder"),
        (("simulate", "--out", "{tmp}/x.csv", "--truth-out", "{tmp}"), "is a directory"),
        (("simulate", "--out", "{tmp}/x.csv", "--activity-or-at-0", "0.5"), "must be an odds ratio ≥ 1"),
        (("validate", "{tmp}/semi.csv"), "(--sep ';')"),
        (("validate", "{tmp}/tabs.csv"), "(--sep tab)"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(run, tmp_path, args, message):
    (tmp_path / "c.csv").write_text("participant_id\nP1\n", encoding="utf-8")
    (tmp_path / "semi.csv").write_text("participant_id;site\nP1;s1\n", encoding="utf-8")
    (tmp_path / "tabs.csv").write_text("participant_id\tsite\nP1\ts1\n", encoding="utf-8")
    result = run(*(a.format(tmp=tmp_path) for a in args))
    assert result.exit_code == 2
    assert message in result.output
    assert result.output.count("\n") == 1 and result.output.startswith("error: ")  # one line


def test_describe_refuses_a_table_with_errors(run, edited_csv):
    result = run("describe", edited_csv({(0, "age"): "200"}))
    assert result.exit_code == 2 and "fails validation" in result.output and "1 error(s)" in result.output
    assert "age [range]" in result.output  # the problems themselves, not only the count


def test_console_entry_point_without_traceback(tmp_path):
    """The real process: one line on stderr, exit status 2."""
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    proc = subprocess.run([sys.executable, "-m", "backpain_epi", "validate", str(empty)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {empty}: the file is empty."
    assert proc.stdout == ""


def test_warnings_alone_exit_0(run, edited_csv):
    result = run("validate", edited_csv({(0, "bmi"): "NA"}))
    assert result.exit_code == 0
    assert "passes validation" in result.output and "0 error(s)" in result.output
    assert "bmi [missing_code]" in result.output


def test_report_out_suffix_is_checked_first(run, small_csv, tmp_path):
    result = run("validate", small_csv, "--report-out", tmp_path / "r.xlsx")
    assert result.exit_code == 2 and "suffix '.xlsx'" in result.output
    assert "passes validation" not in result.output


def test_named_delimiters(run, small_raw, tmp_path):
    path = tmp_path / "tabs.csv"
    small_raw.to_csv(path, sep="\t", index=False)
    assert run("validate", path, "--sep", "tab").exit_code == 0


def test_describe_lists_the_warnings(run, edited_csv):
    result = run("describe", edited_csv({(0, "bmi"): "NA"}))
    assert result.exit_code == 0 and "bmi [missing_code]" in result.output


def test_dictionary_listing_shows_allowed_values_and_source(run):
    result = run("dictionary", "--table", "cohort")
    lines = {line.split()[0]: line for line in result.output.splitlines()[1:] if line.strip()}
    assert "18–80" in lines["age"] and "questionnaire" in lines["age"]
    assert "female / male" in lines["sex"] and "0 / 1" in lines["cbp"]


# --- validation scoped to the analysis, table options (issue 16, items 4 and 6) ---------------------------

MODEL_DIR = __import__("pathlib").Path(__file__).resolve().parents[1] / "models"


def test_fit_refuses_a_bad_used_column_before_sampling_and_names_the_flag(run, edited_csv, tmp_path):
    path = edited_csv({(4, "intermat_ml"): "-1"})
    result = run("fit", "--data", path, "--spec", MODEL_DIR / "paper.yaml", "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert "--exclude-invalid-rows" in result.output and "exclude_invalid_rows" not in result.output
    assert "Sampling with" not in result.output


def test_validation_notices_are_the_packages_own_lines(run, edited_csv, tmp_path):
    path = edited_csv({(0, "psoas_ml"): "-5", (1, "psoas_ml"): "-5"})
    assert run("validate", path).exit_code == 2  # validate keeps them as errors
    result = run("survival", "--data", path, "--spec", MODEL_DIR / "paper.yaml", "--out", tmp_path / "surv")
    assert result.exit_code == 0, result.output
    notices = [line for line in result.output.splitlines() if "psoas_ml" in line]
    assert len(notices) == 1 and notices[0].startswith("warning: ") and "[range]: 2 rows" in notices[0]
    assert "DataQualityWarning" not in result.output and ".py:" not in result.output


def test_semicolon_export_with_decimal_commas(run, small_raw, tmp_path):
    df = small_raw.copy()
    for c in ("age", "bmi", "met_min_week", "intermat_ml", "lmm_ml"):
        df[c] = df[c].str.replace(".", ",", regex=False)
    path = tmp_path / "export.csv"
    df.to_csv(path, index=False, sep=";")
    refused = run("validate", path)
    assert refused.exit_code == 2 and "--sep ';' --decimal ','" in refused.output
    for command in ("validate", "describe"):
        result = run(command, path, "--sep", ";", "--decimal", ",")
        assert result.exit_code == 0 and "passes validation" in result.output, result.output
