"""Derived variables, per-2-SD scaling, loading and the quick summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backpain_epi import BackpainEpiError, add_activity_band, describe_cohort, load_cohort, scale_per_2sd, table1


def test_activity_bands_follow_the_nako_edges(dictionary):
    df = pd.DataFrame({"met_min_week": [0, 499, 500, 5000, 5000.5, np.nan]})
    band = add_activity_band(df)["activity_band"]
    assert band.tolist()[:5] == ["<500", "<500", "500-5000", "500-5000", ">5000"]
    assert pd.isna(band.iloc[5])
    assert list(band.cat.categories) == list(dictionary["activity_band"].levels)


def test_scale_per_2sd():
    x = pd.Series([1.0, 2.0, 3.0, 4.0, np.nan], name="x")
    scaled, center, scale = scale_per_2sd(x)
    assert center == 2.5 and scale == pytest.approx(2 * np.std([1, 2, 3, 4], ddof=1))
    assert scaled.std() == pytest.approx(0.5) and scaled.mean() == pytest.approx(0)
    with pytest.raises(BackpainEpiError, match="cannot scale 'x' per 2 SD: it has no variation"):
        scale_per_2sd(pd.Series([3.0, 3.0], name="x"))


def test_load_cohort_types_and_band(small_csv):
    df, report = load_cohort(small_csv)
    assert report.ok and len(df) == 300
    assert isinstance(df["activity_band"].dtype, pd.CategoricalDtype)
    assert df["age"].dtype == "float64" and str(df["diabetes"].dtype) == "Int64"


def test_describe_is_the_table1_of_the_whole_table(small_csv, dictionary):
    df, _ = load_cohort(small_csv)
    summary = describe_cohort(df)
    cases, controls = int((df["cbp"] == 1).sum()), int((df["cbp"] == 0).sum())
    overall = f"Overall (n = {len(df):,})"
    assert list(summary.columns[3:6]) == [overall, f"No CBP (n = {controls:,})", f"CBP (n = {cases:,})"]
    female = int((df["sex"] == "female").sum())
    assert summary.loc[summary["Level"] == "female", overall].iloc[0].startswith(f"{female:,} (")
    age = summary[summary["Characteristic"].str.startswith(dictionary.label("age"))].iloc[0]
    assert age[overall].startswith(f"{df['age'].median():.1f}")
    assert summary["Characteristic"].str.startswith(dictionary.label("intermat_ml")).any()
    assert not summary["Characteristic"].str.startswith(dictionary.label("cbp_onset_age")).any()  # expected gaps: not a characteristic
    assert table1(df, ["age"], dictionary).shape[0] == 1
