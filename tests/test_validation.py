"""Validation against the dictionary: every class of problem, every row, no coercion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backpain_epi import DataQualityWarning, DataValidationError, conform_table, load_table, validate_table


def _by_rule(report):
    return {(p.column, p.rule): p for p in report.problems}


def test_clean_simulated_cohort_passes(small_raw):
    report = validate_table(small_raw)
    assert report.ok and not report.problems, report.format()
    assert report.n_rows == 300


def test_nako_sized_cohort_passes_without_warnings(nako_sized):
    report = validate_table(nako_sized.data)
    assert report.ok and not report.warnings, report.format()


def test_each_class_of_problem_is_named(small_raw):
    df = small_raw.copy()
    ids = df["participant_id"]
    df.loc[2, "age"] = "abc"  # wrong type
    df.loc[4, "bmi"] = "75"  # out of range
    df.loc[6, "sex"] = "Female"  # unknown level (close to a level)
    df.loc[8, "participant_id"] = ids[7]  # duplicate id
    df.loc[10, "cbp"] = np.nan  # missing value in a required column
    df.loc[12, "diabetes"] = "2"  # not 0/1
    case = df.index[df["cbp"] == "1"][0]
    df.loc[case, "cbp_onset_age"] = str(float(df.loc[case, "age"]) + 5)  # onset after age
    control = df.index[df["cbp"] == "0"][0]
    df.loc[control, "cbp_onset_age"] = "30"  # onset without CBP
    df = df.drop(columns=["site"])  # missing required column

    report = validate_table(df, source="seeded.csv")
    problems = _by_rule(report)
    expected = {
        ("age", "type"): [ids[2]],
        ("bmi", "range"): [ids[4]],
        ("sex", "level"): [ids[6]],
        ("participant_id", "duplicate"): ["row 8", "row 9"],  # the key's own problems name rows by number
        ("cbp", "missing_value"): [ids[10]],
        ("diabetes", "binary"): [ids[12]],
        ("cbp_onset_age", "onset_not_after_age"): [ids[case]],
        ("cbp_onset_age", "onset_only_with_cbp"): [ids[control]],
        ("site", "required_column"): [],
    }
    assert set(expected) <= set(problems), report.format()
    for key, rows in expected.items():
        p = problems[key]
        assert p.severity == "error"
        assert list(p.row_ids) == rows, key
        assert p.n_rows == len(rows), key
    assert len(report.errors) == len(expected), report.format()
    assert problems[("bmi", "range")].values == ("75",)
    assert "14–60 kg/m²" in problems[("bmi", "range")].message
    assert "did you mean 'female' for 'Female'" in problems[("sex", "level")].message
    assert "abc" in problems[("age", "type")].values
    text = report.format()
    assert text.startswith("seeded.csv fails validation") and "9 error(s)" in text
    for column, rule in expected:
        assert f"{column} [{rule}]" in text


def test_many_rows_are_counted_and_a_few_shown(small_raw):
    df = small_raw.copy()
    df.loc[:49, "age"] = "12"
    p = validate_table(df).errors[0]
    assert (p.column, p.rule, p.n_rows) == ("age", "range", 50)
    assert len(p.row_ids) == 5 and "…" in p.format()


def test_missing_required_column_suggests_the_near_name(small_raw):
    df = small_raw.rename(columns={"age": "Age"})
    problems = _by_rule(validate_table(df))
    assert "rename it to 'age'" in problems[("age", "required_column")].message
    assert problems[(None, "unknown_column")].values == ("Age",)


def test_decimal_comma_gets_a_hint(small_raw):
    df = small_raw.copy()
    df.loc[0, "bmi"] = "27,5"
    assert "decimal commas" in validate_table(df).errors[0].message


def test_warnings_only_still_pass(small_raw):
    df = small_raw.copy()
    active = df.index[df["activity_band"] == ">5000"][0]
    df.loc[active, "met_min_week"] = "35000"  # implausible but allowed
    df.loc[1, "bmi"] = np.nan  # nullable covariate
    df["extra"] = "x"  # unknown column
    report = validate_table(df)
    assert report.ok, report.format()
    assert {(p.column, p.rule) for p in report.warnings} == {
        ("met_min_week", "plausible_range"), ("bmi", "missing"), (None, "unknown_column")}
    assert _by_rule(report)[(None, "unknown_column")].values == ("extra",)


def test_missing_codes_are_read_as_missing_and_reported(small_raw):
    df = small_raw.copy()
    df.loc[[3, 4], "bmi"] = "-9"
    report = validate_table(df)
    assert report.ok  # -9 is outside 14–60 but is a declared missing code
    coded = _by_rule(report)[("bmi", "missing_code")]
    assert coded.n_rows == 2 and coded.severity == "warning"
    assert conform_table(df)["bmi"].isna().sum() == 2


def test_whole_number_rule_for_integer_columns(tmp_path, small_raw):
    import yaml

    from backpain_epi import load_dictionary

    raw = yaml.safe_load(load_dictionary().path.read_text(encoding="utf-8"))
    raw["columns"]["age"]["type"] = "integer"
    path = tmp_path / "dd.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    df = small_raw.copy()
    df["age"] = np.ceil(df["age"].astype(float)).astype(int).astype(str)  # whole years, onset still ≤ age
    control = df.index[df["cbp"] == "0"][0]
    df.loc[control, "age"] = "40.5"
    errors = validate_table(df, dictionary=load_dictionary(path)).errors
    assert [(p.column, p.rule, p.n_rows) for p in errors] == [("age", "whole_number", 1)]


def test_validation_does_not_change_the_input(small_raw):
    df = small_raw.copy()
    df.loc[0, "bmi"] = "-9"
    before = df.copy()
    validate_table(df)
    pd.testing.assert_frame_equal(df, before)


def test_conform_gives_dictionary_types(small_raw):
    df = conform_table(small_raw)
    assert df["age"].dtype == "float64"
    assert str(df["cbp"].dtype) == "Int64"
    assert isinstance(df["sex"].dtype, pd.CategoricalDtype) and list(df["sex"].cat.categories) == ["female", "male"]
    assert df["participant_id"].map(type).eq(str).all()


def test_conform_refuses_a_bad_table(small_raw):
    df = small_raw.copy()
    df.loc[0, "age"] = "old"
    with pytest.raises(DataValidationError, match="1 error") as info:
        conform_table(df)
    assert info.value.report.errors[0].column == "age"


def test_load_table_warns_about_warnings(tmp_path, small_raw):
    df = small_raw.copy()
    df["extra"] = 1
    path = tmp_path / "c.csv"
    df.to_csv(path, index=False)
    with pytest.warns(DataQualityWarning, match="1 warning"):
        out, report = load_table(path)
    assert len(out) == 300 and report.ok


def test_other_tables(small_raw):
    manifest = pd.DataFrame({"participant_id": ["a", "b"], "water": ["a_w.nii.gz", "b_w.nii.gz"]})
    problems = _by_rule(validate_table(manifest, "manifest"))
    assert problems[("fat", "required_column")].severity == "error"
    exposures = pd.DataFrame({"participant_id": ["a"], "lmm_ml": [900.0], "intermat_ml": [-1.0], "imf_pct": [8.0],
                              "autochthon_ml": [950.0], "psoas_ml": [400.0], "qc_flag": [0]})
    errors = validate_table(exposures, "exposures").errors
    assert [(p.column, p.rule) for p in errors] == [("intermat_ml", "range")]


def test_text_markers_are_read_as_missing_and_reported(small_raw):
    df = small_raw.copy()
    df.loc[[0, 1], "bmi"] = ["NA", "."]
    df.loc[2, "sex"] = "N/A"
    problems = _by_rule(validate_table(df))
    assert problems[("bmi", "missing_code")].n_rows == 2
    assert problems[("sex", "missing_code")].n_rows == 1
    assert problems[("sex", "missing_value")].severity == "error"  # sex may not be missing


def test_infinite_numbers_are_type_errors(small_raw):
    df = small_raw.copy()
    df.loc[0, "autochthon_ml"] = "inf"
    df.loc[1, "met_min_week"] = "-Infinity"
    errors = _by_rule(validate_table(df))
    assert errors[("autochthon_ml", "type")].n_rows == 1 and errors[("met_min_week", "type")].n_rows == 1
    assert "not finite numbers" in errors[("autochthon_ml", "type")].message


def test_stray_spaces_in_text_are_errors(small_raw):
    df = small_raw.copy()
    df.loc[0, "participant_id"] = df.loc[0, "participant_id"] + " "
    df.loc[1, "sex"] = " male"
    problems = _by_rule(validate_table(df))
    assert problems[("participant_id", "whitespace")].row_ids == ("row 1",)
    assert problems[("sex", "whitespace")].severity == "error"


def test_row_ids_are_the_first_rows_in_table_order(small_raw):
    df = small_raw.copy()
    df.loc[:49, "age"] = "12"
    df.index = range(1000, 1300)  # a DataFrame index is not a row number
    p = validate_table(df).errors[0]
    assert p.row_ids == tuple(small_raw["participant_id"].iloc[:5])


def test_duplicated_column_names_in_a_dataframe(small_raw):
    df = pd.concat([small_raw, small_raw[["age"]].assign(age="999")], axis=1)
    report = validate_table(df)
    assert [(p.column, p.rule) for p in report.errors] == [("age", "duplicate_column")]


def test_activity_band_must_agree_with_activity(small_raw):
    df = small_raw.copy()
    low = df.index[df["activity_band"] == "<500"][0]
    df.loc[low, "activity_band"] = ">5000"
    p = _by_rule(validate_table(df))[("activity_band", "activity_band_matches")]
    assert p.severity == "error" and p.row_ids == (df.loc[low, "participant_id"],)


def test_case_without_onset_is_a_warning(small_raw):
    df = small_raw.copy()
    case = df.index[df["cbp"] == "1"][0]
    df.loc[case, "cbp_onset_age"] = np.nan
    report = validate_table(df)
    assert report.ok
    assert _by_rule(report)[("cbp_onset_age", "onset_missing_for_case")].row_ids == (df.loc[case, "participant_id"],)


def test_stored_types_are_checked_not_converted(small_raw):
    """Parquet and DataFrames keep their types; a type that cannot hold the column is an error."""
    df = conform_table(small_raw)
    bad = df.assign(participant_id=np.arange(len(df)), age=pd.Timestamp("2020-01-01"))
    problems = _by_rule(validate_table(bad))
    assert "stored as int64" in problems[("participant_id", "type")].message
    assert "stored as datetime64" in problems[("age", "type")].message
    ok = df.assign(diabetes=df["diabetes"].astype(bool), sex=df["sex"].astype("category"))
    assert validate_table(ok).ok
    mixed = df.assign(participant_id=df["participant_id"].astype(object))
    mixed.loc[0, "participant_id"] = 17
    assert _by_rule(validate_table(mixed))[("participant_id", "text")].row_ids == ("row 1",)


def test_conform_round_trips_a_parquet_file(tmp_path, small_raw):
    df = conform_table(small_raw)
    path = tmp_path / "c.parquet"
    df.to_parquet(path)
    again, report = load_table(path)
    assert report.ok
    pd.testing.assert_frame_equal(again, df)


def test_rename_hint_never_points_at_another_defined_column(small_raw):
    problems = _by_rule(validate_table(small_raw.drop(columns=["osteoarthritis"])))
    assert problems[("osteoarthritis", "required_column")].message == "required column 'osteoarthritis' is missing"


# --- validation scoped to the analysis (issue 16, item 4) -------------------------------------------------

PAPER_COLUMNS = ["participant_id", "cbp", "intermat_ml", "lmm_ml", "age", "sex", "site"]


def _unused_errors(small_raw):
    """Errors in columns the logistic model never reads: an onset after the age (3 rows), psoas_ml = -5 (2 rows)."""
    df = small_raw.copy()
    cases = df.index[df["cbp"] == "1"][:3]
    df.loc[cases, "cbp_onset_age"] = (df.loc[cases, "age"].astype(float) + 0.5).astype(str)
    df.loc[df.index[:2], "psoas_ml"] = "-5"
    return df


def test_errors_in_unused_columns_are_warnings_when_scoped(small_raw):
    df = _unused_errors(small_raw)
    assert not validate_table(df).ok  # `validate` keeps them as errors
    report = validate_table(df, columns=PAPER_COLUMNS)
    assert report.ok, report.format()
    outside = {(p.column, p.rule): p for p in report.warnings if p.outside}
    assert outside[("psoas_ml", "range")].n_rows == 2 and outside[("cbp_onset_age", "onset_not_after_age")].n_rows == 3
    assert "not use" in outside[("psoas_ml", "range")].format()


def test_load_table_issues_one_notice_per_unused_column_error(small_raw):
    with pytest.warns(DataQualityWarning) as record:
        df, report = load_table(_unused_errors(small_raw), columns=PAPER_COLUMNS)
    lines = [str(w.message) for w in record]
    assert len(df) == 300 and len(lines) == 2, lines
    assert any("psoas_ml [range]: 2 rows" in m for m in lines) and any("cbp_onset_age [onset_not_after_age]: 3 row(s)" in m for m in lines)
    assert all("\n" not in m for m in lines)


def test_row_errors_in_used_columns_block_and_name_the_flag(small_raw):
    df = small_raw.copy()
    df.loc[df.index[[4, 9]], "intermat_ml"] = "-1"
    with pytest.raises(DataValidationError, match="exclude_invalid_rows=True") as exc:
        load_table(df, columns=PAPER_COLUMNS, notify=False)
    assert "intermat_ml [range] (row)" in str(exc.value)
    _, report = load_table(df, columns=PAPER_COLUMNS, allow_row_errors=True, notify=False)
    column, rows = report.invalid_rows()["invalid intermat_ml (range)"]
    assert column == "intermat_ml" and rows.tolist() == [4, 9]


def test_table_errors_in_used_columns_still_block_with_row_errors_allowed(small_raw):
    df = small_raw.drop(columns=["age"])
    with pytest.raises(DataValidationError, match="required column 'age'") as exc:
        load_table(df, columns=PAPER_COLUMNS, allow_row_errors=True, notify=False)
    assert "exclude_invalid_rows" not in str(exc.value)
    twice = small_raw.copy()
    twice.loc[1, "participant_id"] = twice.loc[0, "participant_id"]  # which copy is right? not left out row by row
    with pytest.raises(DataValidationError, match=r"participant_id \[duplicate\]"):
        load_table(twice, columns=PAPER_COLUMNS, allow_row_errors=True, notify=False)
    df2 = small_raw.drop(columns=["bmi"])  # a required column the analysis does not use: a warning
    assert not validate_table(df2).ok and len(load_table(df2, columns=PAPER_COLUMNS, notify=False)[0]) == 300


def test_measurement_se_columns(small_raw):
    """``<exposure>_se`` columns are declared (role measurement_se, unit of the exposure, ≥ 0, missing allowed)."""
    from backpain_epi.dictionary import load_dictionary

    dd = load_dictionary()
    for e in ("lmm_ml", "intermat_ml", "imf_pct"):
        c = dd[f"{e}_se"]
        assert (c.role, c.type, c.unit, c.source, c.min) == ("measurement_se", "float", dd[e].unit, "segmentation", 0)
        assert set(c.tables) == {"cohort", "exposures"} and c.nullable
    df = small_raw.assign(intermat_ml_se=1.5, lmm_ml_se=np.nan, imf_pct_se="0.2")
    assert validate_table(df.assign(imf_pct_se=0.2)).ok
    errors = validate_table(df.assign(intermat_ml_se=-0.1)).errors
    assert [p.column for p in errors] == ["intermat_ml_se"]
