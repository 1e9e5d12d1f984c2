"""Exposures from a known label map and fat-fraction map are exact."""

import numpy as np
import pytest

from backpain_epi.segmentation.exposures import (
    EXPOSURE_COLUMNS, LABEL_NAMES, compute_exposures, fat_fraction, mirror_table, qc_failures,
)


def _known():
    labels = np.zeros((10, 10, 4), np.uint8)
    ff = np.zeros(labels.shape, np.float32)
    labels[:3, :, :] = 1  # 120 voxels left compartment
    labels[3:5, :, :] = 2  # 80 voxels right compartment
    labels[6, :5, :] = 3  # 20 voxels psoas left
    labels[7, :4, :] = 4  # 16 voxels psoas right
    ff[:3] = 0.1
    ff[0, :5, :] = 0.8  # 20 InterMAT voxels on the left
    ff[3:5] = 0.2
    ff[3, 0, 0] = 0.5  # exactly 0.5 counts as InterMAT
    return labels, ff


def test_the_columns_are_the_dictionarys_exposures_table():
    from backpain_epi.dictionary import load_dictionary

    from backpain_epi.segmentation.uncertainty import SE_COLUMNS, SE_EXPOSURES

    dd = load_dictionary()
    assert [dd.id_column, *EXPOSURE_COLUMNS, *SE_COLUMNS] == dd.names(table="exposures")
    assert list(EXPOSURE_COLUMNS[:3]) == dd.primary_exposures == list(SE_EXPOSURES)
    assert list(SE_COLUMNS) == dd.names(table="exposures", role="measurement_se")


def test_exposures_are_exact_counts_and_means():
    labels, ff = _known()
    e = compute_exposures(labels, ff, voxel_ml=0.02)
    assert set(e) == set(EXPOSURE_COLUMNS)
    assert e["autochthon_left_ml"] == pytest.approx(120 * 0.02)
    assert e["autochthon_right_ml"] == pytest.approx(80 * 0.02)
    assert e["intermat_left_ml"] == pytest.approx(20 * 0.02)
    assert e["intermat_right_ml"] == pytest.approx(1 * 0.02)
    assert e["lmm_ml"] == pytest.approx((100 + 79) * 0.02)
    assert e["intermat_ml"] == pytest.approx(21 * 0.02)
    assert e["lmm_ml"] + e["intermat_ml"] == pytest.approx(e["autochthon_ml"])
    assert e["imf_left_pct"] == pytest.approx(10.0, rel=1e-6)
    assert e["imf_right_pct"] == pytest.approx(20.0, rel=1e-6)
    assert e["imf_pct"] == pytest.approx(100 * (100 * 0.1 + 79 * 0.2) / 179, rel=1e-6)
    assert e["psoas_ml"] == pytest.approx(36 * 0.02)
    assert e["qc_asymmetry"] == pytest.approx(abs(120 - 80) / 100)


def test_fat_fraction_is_zero_and_unreliable_where_there_is_no_signal():
    water = np.array([[[0.0, 30.0, 10.0, 100.0]]])
    fat = np.array([[[0.0, 10.0, 30.0, 0.0]]])
    ff, reliable = fat_fraction(water, fat)
    np.testing.assert_allclose(ff.ravel(), [0.0, 0.25, 0.75, 0.0])
    assert reliable.ravel().tolist() == [False, True, True, True]


def test_fat_fraction_does_not_depend_on_scale():
    rng = np.random.default_rng(0)
    w, f = rng.uniform(0, 1, (5, 5, 5)), rng.uniform(0, 1, (5, 5, 5))
    np.testing.assert_allclose(fat_fraction(w, f)[0], fat_fraction(w * 3000, f * 3000)[0], rtol=1e-5)


def test_qc_flags_asymmetry_missing_structures_and_unreliable_voxels():
    labels, ff = _known()
    assert compute_exposures(labels, ff, 1.0)["qc_flag"] == 1  # 40 % asymmetry
    labels[3:6] = 2  # now 120 vs 120 voxels
    good = compute_exposures(labels, ff, 1.0)
    assert good["qc_flag"] == 0 and qc_failures(good) == []
    unreliable = np.ones(labels.shape, bool)
    unreliable[:2] = False
    assert "unreliable" in " ".join(qc_failures(compute_exposures(labels, ff, 1.0, unreliable)))
    labels[labels == 3] = 0
    assert "psoas_left_ml" in " ".join(qc_failures(compute_exposures(labels, ff, 1.0)))


def test_mirror_table_swaps_sides_and_keeps_the_rest():
    labels = mirror_table({name: lab for lab, name in LABEL_NAMES.items()})
    assert labels == (0, 2, 1, 4, 3)
    tissues = mirror_table({"air": 0, "psoas_left": 3, "spine": 1, "psoas_right": 2})
    assert tissues == (0, 1, 3, 2)
    assert all(tissues[tissues[i]] == i for i in range(len(tissues)))  # a mirror twice is no change
