"""merge_exposures: segmentation exposures joined to a questionnaire table on participant_id, with clear refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backpain_epi import BackpainEpiError, simulate_cohort, validate_table
from backpain_epi.cohort import merge_exposures

EXPOSURE_COLS = ["lmm_ml", "intermat_ml", "imf_pct"]


@pytest.fixture(scope="module")
def parts():
    data = simulate_cohort(n=120, seed=5).data
    questionnaire = data.drop(columns=[*EXPOSURE_COLS, "autochthon_ml", "psoas_ml"])
    exposures = data[["participant_id", *EXPOSURE_COLS, "autochthon_ml", "psoas_ml"]].assign(qc_flag=0, qc_asymmetry=0.05)
    return data, questionnaire, exposures


def test_merge_adds_the_cohort_exposure_columns(parts, dictionary):
    data, questionnaire, exposures = parts
    res = merge_exposures(questionnaire, exposures.sample(frac=1, random_state=1), dictionary)
    assert res.columns == ["lmm_ml", "intermat_ml", "imf_pct", "autochthon_ml", "psoas_ml", "qc_flag"]
    assert "qc_asymmetry" not in res.table.columns  # not a cohort column
    assert list(res.table["participant_id"]) == list(questionnaire["participant_id"])  # cohort order kept
    np.testing.assert_array_equal(res.table["intermat_ml"], data["intermat_ml"])
    assert res.n_matched == 120 and not res.unmatched_cohort and not res.unmatched_exposures
    assert validate_table(res.table, "cohort", dictionary).ok


def test_unmatched_participants_are_counted_not_dropped(parts, dictionary):
    _, questionnaire, exposures = parts
    extra = pd.DataFrame({"participant_id": ["X999"], **{c: [1.0] for c in exposures.columns if c != "participant_id"}})
    res = merge_exposures(questionnaire, pd.concat([exposures.iloc[3:], extra]), dictionary)
    assert res.unmatched_cohort == list(questionnaire["participant_id"].iloc[:3])
    assert res.unmatched_exposures == ["X999"]
    assert res.table["lmm_ml"].isna().sum() == 3 and len(res.table) == 120
    text = res.format()
    assert "3 cohort participant(s) have no exposures" in text and "X999" in text


def test_merge_refusals(parts, dictionary):
    data, questionnaire, exposures = parts
    with pytest.raises(BackpainEpiError, match="already has lmm_ml, intermat_ml, imf_pct, autochthon_ml, psoas_ml; drop those columns"):
        merge_exposures(data, exposures, dictionary)
    with pytest.raises(BackpainEpiError, match="exposures table repeats participant_id P000001"):
        merge_exposures(questionnaire, pd.concat([exposures, exposures.iloc[:1]]), dictionary)
    with pytest.raises(BackpainEpiError, match="no participant_id column"):
        merge_exposures(questionnaire, exposures.drop(columns="participant_id"), dictionary)
    with pytest.raises(BackpainEpiError, match="none of the cohort's exposure columns"):
        merge_exposures(questionnaire, exposures[["participant_id"]], dictionary)
    with pytest.raises(BackpainEpiError, match="no participant_id of the exposures table is in the cohort"):
        merge_exposures(questionnaire, exposures.assign(participant_id="Z" + exposures["participant_id"]), dictionary)


def test_merge_command(parts, tmp_path):
    from click.testing import CliRunner

    from backpain_epi.cli import main

    _, questionnaire, exposures = parts
    questionnaire.drop(columns="activity_band").to_csv(tmp_path / "q.csv", index=False)
    exposures.iloc[2:].to_csv(tmp_path / "e.csv", index=False)
    res = CliRunner().invoke(main, ["merge", "--cohort", str(tmp_path / "q.csv"), "--exposures", str(tmp_path / "e.csv"),
                                    "--out", str(tmp_path / "analysis.csv")])
    assert res.exit_code == 0, res.output
    assert "Merged lmm_ml" in res.output and "2 cohort participant(s) have no exposures" in res.output
    out = pd.read_csv(tmp_path / "analysis.csv")
    assert out["lmm_ml"].isna().sum() == 2 and len(out) == 120
    res = CliRunner().invoke(main, ["merge", "--cohort", str(tmp_path / "e.csv"), "--exposures", str(tmp_path / "e.csv"),
                                    "--out", str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and res.output.startswith("error: the cohort table already has")


def test_merge_carries_the_measurement_ses(parts, dictionary):
    """The segmentation's SE columns (role measurement_se) are cohort columns: they merge and validate."""
    _, questionnaire, exposures = parts
    ses = {f"{c}_se": 0.05 * exposures[c].abs() for c in EXPOSURE_COLS}
    with_se = exposures.assign(**ses).assign(imf_pct_se=np.nan)  # an engine without an SE writes NaN
    res = merge_exposures(questionnaire, with_se, dictionary)
    assert res.columns[-3:] == ["lmm_ml_se", "intermat_ml_se", "imf_pct_se"]
    np.testing.assert_array_equal(res.table["intermat_ml_se"], ses["intermat_ml_se"])
    report = validate_table(res.table, "cohort", dictionary)
    assert report.ok and not [p for p in report.warnings if p.column.endswith("_se")]  # missing SEs are allowed
    bad = merge_exposures(questionnaire, with_se.assign(lmm_ml_se=-1.0), dictionary)
    assert [p.column for p in validate_table(bad.table, "cohort", dictionary).errors] == ["lmm_ml_se"]
