"""The independent (evaluation-only) phantom family: reproducible, anatomically placed, varied storage."""

import ast
import inspect
import json

import nibabel as nib
import numpy as np
import pytest

from backpain_epi.segmentation import independent
from backpain_epi.segmentation.exposures import compute_exposures
from backpain_epi.segmentation.independent import FAMILY, make_independent_phantom
from backpain_epi.segmentation.phantom import Phantom, PhantomTargets, Protocol

#: Coarse pixels keep the tests quick; slice axis, directions and dtype still vary.
FAST = Protocol(inplane_mm=(2.0, 2.5), slice_mm=(4.5, 5.0))
SEEDS = range(10)


@pytest.fixture(scope="module")
def phantoms():
    return {seed: make_independent_phantom(seed, FAST) for seed in SEEDS}


def canonical(ph, arr):
    """``arr`` reoriented to RAS+ (x to the patient's right, y anterior, z superior) and its voxel sizes."""
    ornt = nib.orientations.io_orientation(ph.affine)
    zooms = np.sqrt((ph.affine[:3, :3] ** 2).sum(0))
    return nib.orientations.apply_orientation(arr, ornt), zooms[ornt[:, 0].argsort()]


def world(ph, mask):
    """World (RAS) coordinates (mm) of the voxel centres in ``mask``."""
    return nib.affines.apply_affine(ph.affine, np.argwhere(mask))


def test_same_seed_same_phantom_other_seed_other_phantom(phantoms):
    a = phantoms[7]
    for b in (make_independent_phantom(7, FAST), make_independent_phantom(np.random.SeedSequence(7), FAST)):
        for name in ("water", "fat", "labels", "ff", "affine"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert a.exposures == b.exposures and a.meta == b.meta
    c = phantoms[8]
    assert a.water.shape != c.water.shape or not np.array_equal(a.water, c.water)
    assert a.exposures["lmm_ml"] != c.exposures["lmm_ml"]


def test_containers_types_and_family(phantoms):
    for ph in phantoms.values():
        assert isinstance(ph, Phantom) and isinstance(ph.targets, PhantomTargets)
        assert ph.labels.dtype == np.uint8 and ph.ff.dtype == np.float32
        assert ph.water.shape == ph.fat.shape == ph.labels.shape == ph.ff.shape
        assert ph.water.dtype == ph.fat.dtype == np.dtype(ph.meta["dtype"])
        assert ph.meta["family"] == FAMILY == "independent"
        json.dumps(ph.meta)  # plain values, writable next to the images
        assert set(np.unique(ph.labels)) == {0, 1, 2, 3, 4}
        assert 0.0 <= ph.ff.min() and ph.ff.max() <= 1.0


def test_exposures_and_targets_are_those_of_the_returned_arrays(phantoms):
    for ph in phantoms.values():
        voxel_ml = abs(np.linalg.det(ph.affine[:3, :3])) / 1000
        assert compute_exposures(ph.labels, ph.ff, voxel_ml) == pytest.approx(ph.exposures, rel=1e-12)
        e, t = ph.exposures, ph.targets
        assert t.lmm_ml == pytest.approx(np.clip(e["lmm_ml"], 150, 3000))
        assert t.intermat_ml == pytest.approx(min(e["intermat_ml"], 0.6 * t.lmm_ml))
        assert t.imf_pct == pytest.approx(np.clip(e["imf_pct"], 1, 40))


def test_all_four_structures_with_plausible_sizes(phantoms):
    for seed, ph in phantoms.items():
        e = ph.exposures
        assert e["psoas_left_ml"] >= 10 and e["psoas_right_ml"] >= 10, seed
        assert e["qc_flag"] == 0, seed  # every structure >= 5 mL, left/right within 35 %
        lab, zooms = canonical(ph, ph.labels)
        for side in (1, 2):
            area_cm2 = (lab == side).sum((0, 1)) * zooms[0] * zooms[1] / 100  # per axial slice
            assert 8 <= np.median(area_cm2) <= 25, (seed, side, np.median(area_cm2))
            assert area_cm2.min() > 4 and area_cm2.max() < 30, (seed, side)
        assert 150 <= e["lmm_ml"] <= 3000 and e["intermat_ml"] > 0, seed


def test_left_labels_lie_on_the_patients_left(phantoms):
    """Labels 1 and 3 lie at world x < 0 (RAS: +x is the patient's right), 2 and 4 at x > 0, whatever the storage."""
    for seed, ph in phantoms.items():
        for lab, sign in ((1, -1), (2, 1), (3, -1), (4, 1)):
            x = world(ph, ph.labels == lab)[:, 0]
            assert np.all(sign * x > 0), (seed, lab, ph.meta["axcodes"])


def test_autochthon_behind_the_vertebral_body_psoas_in_front_and_lateral(phantoms):
    for seed, ph in phantoms.items():
        vb = np.array(ph.meta["vertebral_body_mm"])
        # the landmark lies on fatty marrow (tissue ff 0.3-0.7, in the images' T1 weighting up to about 0.9) in most
        # slices (discs in between)
        ff_c, zooms = canonical(ph, ph.ff)
        can_aff = ph.affine @ nib.orientations.inv_ornt_aff(nib.orientations.io_orientation(ph.affine), ph.ff.shape)
        i, j, _ = np.rint(nib.affines.apply_affine(np.linalg.inv(can_aff), vb)).astype(int)
        column = ff_c[i, j, :]
        assert np.mean((column > 0.25) & (column < 0.92)) > 0.5, seed
        c = {lab: world(ph, ph.labels == lab).mean(0) for lab in (1, 2, 3, 4)}
        for lab in (1, 2):
            assert c[lab][1] < vb[1] - 25, seed  # posterior
            assert abs(c[lab][0] - vb[0]) > 10, seed
        for lab in (3, 4):
            assert c[lab][1] > vb[1] - 5, seed  # not behind the body
            assert abs(c[lab][0] - vb[0]) > 25, seed  # lateral to it
            assert c[lab][1] > max(c[1][1], c[2][1]) + 30, seed  # well anterior to the back muscles


def test_autochthon_is_rounded_and_away_from_the_skin(phantoms):
    """Behind each compartment: fat, a fascia, subcutaneous fat; its posterior outline is convex, not flat."""
    for seed, ph in phantoms.items():
        lab, zooms = canonical(ph, ph.labels)
        ff, _ = canonical(ph, ph.ff)
        total, _ = canonical(ph, ph.water.astype(np.float32) + ph.fat.astype(np.float32))
        body = total > 0.15 * np.percentile(total, 99)
        dy = zooms[1]
        layered, rises = [], []
        for k in range(0, lab.shape[2], 2):
            for side in (1, 2):
                m = lab[:, :, k] == side
                cols = np.flatnonzero(m.any(1))
                back = np.array([np.flatnonzero(m[i]).min() for i in cols])  # posterior-most voxel per column
                skin = np.array([np.flatnonzero(body[i, :, k]).min() for i in cols])
                assert ((back - skin) * dy).min() >= 10.0, (seed, k, side)
                for i, b, s in zip(cols, back, skin):
                    fat = ff[i, s:b, k] >= 0.5  # from the skin forwards to the compartment
                    run = np.flatnonzero(fat)
                    layered.append(run.size > 1 and not fat[run[0]:run[-1]].all())  # fat, not fat (fascia), fat
                # rounded, not flat-backed: few columns reach to within 2 mm of its posterior-most point, and the
                # outline rises towards its sides
                assert ((back - back.min()) * dy <= 2.0).mean() < 0.75, (seed, k, side)
                n = len(cols)
                rises.append((back[[round(0.15 * (n - 1)), round(0.85 * (n - 1))]].mean() - back.min()) * dy)
        assert np.mean(layered) > 0.95, seed
        assert min(rises) > 1.0 and np.median(rises) > 3.0, seed


def test_fat_fraction_inside_the_compartments(phantoms):
    for seed, ph in phantoms.items():
        ff = ph.ff[(ph.labels == 1) | (ph.labels == 2)]
        lean, inter = ff[ff < 0.5], ff[ff >= 0.5]
        assert 0.01 < inter.size / ff.size < 0.3, seed
        assert 0.01 <= lean.mean() <= 0.35 and lean.std() > 0.003, seed
        assert inter.max() <= 0.99, seed
        # the images' fat fraction is not the tissue's: T1 weighting lifts fat (the exposures are defined on the images)
        assert ph.exposures["imf_pct"] > ph.meta["pdff_exposures"]["imf_pct"], seed
        # the images agree: InterMAT voxels are fattier than lean voxels in the Dixon fat fraction too
        w, f = ph.water.astype(np.float64), ph.fat.astype(np.float64)
        comp = (ph.labels == 1) | (ph.labels == 2)
        img_ff = (f / np.maximum(w + f, 1e-9))[comp]
        assert np.median(img_ff[ph.ff[comp] >= 0.5]) > np.median(img_ff[ph.ff[comp] < 0.5]) + 0.2, seed


def test_images_are_finite_non_negative_and_fit_their_dtype(phantoms):
    for ph in phantoms.values():
        for img in (ph.water, ph.fat):
            assert np.isfinite(img).all() and img.min() >= 0
            if img.dtype == np.int16:
                assert 1000 < img.max() <= np.iinfo(np.int16).max
        assert np.isfinite(ph.ff).all()


def test_orientations_and_dtypes_vary_and_the_affine_is_consistent(phantoms):
    codes, slice_axes, dtypes = set(), set(), set()
    for ph in phantoms.values():
        code = "".join(nib.aff2axcodes(ph.affine))
        assert code == ph.meta["axcodes"]
        codes.add(code)
        m = ph.affine[:3, :3]
        assert (np.count_nonzero(m, axis=0) == 1).all() and (np.count_nonzero(m, axis=1) == 1).all()
        np.testing.assert_allclose(np.abs(m).sum(0), ph.meta["spacing_mm"])
        slice_axes.add(ph.meta["slice_axis"])
        assert code[ph.meta["slice_axis"]] in "SI"
        dtypes.add(ph.meta["dtype"])
    assert len(codes) >= 5 and {"LAS", "LPI"} <= codes, codes
    assert len(slice_axes) >= 2 and dtypes == {"int16", "float32"}


def test_default_protocol_geometry():
    ph = make_independent_phantom(3)
    sp = ph.meta["spacing_mm"]
    k = ph.meta["slice_axis"]
    inplane = [s for i, s in enumerate(sp) if i != k]
    assert all(1.0 <= s <= 2.0 for s in inplane) and 3.0 <= sp[k] <= 5.0
    assert 150 <= ph.labels.shape[k] * sp[k] <= 250 + sp[k]
    fov = sorted(n * s for i, (n, s) in enumerate(zip(ph.labels.shape, sp)) if i != k)
    assert 255 <= fov[0] <= 305 and 335 <= fov[1] <= 405


def test_protocol_by_name_and_slice_axes():
    for seed in range(2):
        ph = make_independent_phantom(seed, Protocol(inplane_mm=(2.4, 2.5), slice_mm=(5.0, 5.0), slice_axes=(2,),
                                                     int16_prob=1.0))
        assert ph.meta["slice_axis"] == 2 and ph.water.dtype == np.int16
        assert ph.meta["spacing_mm"][2] == pytest.approx(5.0)
    assert make_independent_phantom(0, "train").meta["slice_axis"] == 2


def test_independent_of_the_training_generators():
    """Only the containers come from ``phantom``; nothing comes from ``synth``."""
    tree = ast.parse(inspect.getsource(independent))
    imported = {(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    from_phantom = {name for module, name in imported if module and module.endswith("phantom")}
    assert from_phantom <= {"Phantom", "PhantomTargets", "Protocol", "PROTOCOLS"}
    assert not any(module and "synth" in module for module, _ in imported)
    assert not any(isinstance(node, ast.Import) and any("synth" in a.name or "phantom" in a.name for a in node.names)
                   for node in ast.walk(tree))
