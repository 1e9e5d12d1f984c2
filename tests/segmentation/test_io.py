"""Reading inputs: every bad input gives a ScanError with a clear reason; the grid mapping round-trips."""

import gzip
import itertools

import numpy as np
import pytest

from backpain_epi.segmentation.io import Grid, ScanError, load_dixon, load_volume
from backpain_epi.segmentation.phantom import _affine, _reorient


def _save(path, data, affine=None):
    import nibabel as nib

    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), path)
    return path


@pytest.mark.parametrize("perm", list(itertools.permutations(range(3))))
@pytest.mark.parametrize("flips", list(itertools.product([False, True], repeat=3)))
def test_grid_maps_every_axis_order_to_ras_and_back(perm, flips):
    canonical = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    spacing = np.array([1.5, 2.0, 4.0])
    stored = _reorient(canonical, perm, flips)
    affine = _affine(spacing, np.array([-10.0, 5.0, 3.0]), perm, flips, canonical.shape)
    grid = Grid.plan(stored.shape, affine, (2.0, 2.0, 5.0))
    np.testing.assert_array_equal(grid.to_canonical(stored), canonical)
    np.testing.assert_array_equal(grid.from_canonical(grid.to_canonical(stored)), stored)
    assert grid.spacing == pytest.approx(tuple(spacing))
    assert grid.network_shape == (3, 5, 5)  # round(4*1.5/2), round(5*2/2), round(6*4/5)


def test_a_good_pair_is_read_as_float32(tmp_path):
    w = _save(tmp_path / "w.nii.gz", np.full((4, 4, 3), 7, np.int16))
    f = _save(tmp_path / "f.nii.gz", np.ones((4, 4, 3), np.float32))
    pair = load_dixon(w, f)
    assert pair.water.dtype == np.float32 and pair.voxel_ml == pytest.approx(0.001)


def test_a_single_volume_4d_image_counts_as_3d(tmp_path):
    data, _ = load_volume(_save(tmp_path / "a.nii.gz", np.ones((4, 4, 3, 1), np.float32)))
    assert data.shape == (4, 4, 3)


@pytest.mark.parametrize("case, reason", [
    ("missing", "water file not found"),
    ("corrupt_gzip", "corrupt or not NIfTI"),
    ("not_nifti", "corrupt or not NIfTI"),
    ("2d", "2 dimensions"),
    ("4d", "4 dimensions"),
    ("nan", "NaN or infinite"),
    ("all_zero", "all zero"),
    ("fat_zero", "fat image is all zero"),
    ("grids_differ", "different grids"),
    ("shapes_differ", "different shapes"),
])
def test_each_bad_input_has_a_clear_reason(tmp_path, case, reason):
    good = np.ones((6, 6, 4), np.float32)
    water, fat = tmp_path / "w.nii.gz", _save(tmp_path / "f.nii.gz", good)
    if case == "missing":
        water = tmp_path / "nowhere.nii.gz"
    elif case == "corrupt_gzip":
        _save(water, good)
        water.write_bytes(water.read_bytes()[:60])
    elif case == "not_nifti":
        water.write_bytes(gzip.compress(b"this is not an image" * 50))
    elif case == "2d":
        _save(water, np.ones((6, 6), np.float32))
    elif case == "4d":
        _save(water, np.ones((6, 6, 4, 2), np.float32))
    elif case == "nan":
        bad = good.copy()
        bad[1, 1, 1] = np.nan
        _save(water, bad)
    elif case == "all_zero":
        _save(water, np.zeros_like(good))
        _save(fat, np.zeros_like(good))
    elif case == "fat_zero":
        _save(water, good)
        _save(fat, np.zeros_like(good))
    elif case == "grids_differ":
        _save(water, good, np.diag([2.0, 2.0, 2.0, 1.0]))
    elif case == "shapes_differ":
        _save(water, np.ones((6, 6, 5), np.float32))
    with pytest.raises(ScanError, match=reason):
        load_dixon(water, fat)


@pytest.mark.parametrize("n_out", [70, 130, 310])
@pytest.mark.parametrize("mode", ["nearest", "trilinear"])
def test_resizing_keeps_structures_in_place(n_out, mode):
    """Voxel centres are aligned: on average a block's centre does not move (torch's plain 'nearest' moves it half a voxel)."""
    import torch

    from backpain_epi.segmentation.io import resize

    errors = []
    for start in np.linspace(10, 150, 41):
        x = torch.zeros(1, 200, 1, 1)
        x[0, int(start):int(start) + 30] = 1
        y = resize(x, (n_out, 1, 1), mode)[0, :, 0, 0].numpy()
        centre = ((np.arange(n_out) + 0.5) * 200 / n_out - 0.5) @ y / y.sum()
        errors.append((centre - (int(start) + 14.5)) * n_out / 200)  # in output voxels
    assert abs(np.mean(errors)) < 0.1
