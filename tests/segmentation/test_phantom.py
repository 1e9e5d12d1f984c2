"""Phantoms: planted targets are recovered, seeds reproduce, files follow the manifest contract."""

import numpy as np
import pandas as pd
import pytest

from backpain_epi.segmentation.exposures import compute_exposures
from backpain_epi.segmentation.phantom import PROTOCOLS, PhantomTargets, make_phantom

from .conftest import COARSE


@pytest.mark.parametrize("targets", [PhantomTargets(600, 20, 3.0), PhantomTargets(1300, 250, 25.0)])
def test_planted_targets_are_recovered_from_the_true_label_map(targets):
    ph = make_phantom(3, targets, protocol=COARSE)
    e = ph.exposures
    assert e["lmm_ml"] == pytest.approx(targets.lmm_ml, rel=0.10)
    assert e["intermat_ml"] == pytest.approx(targets.intermat_ml, rel=0.10)
    assert e["imf_pct"] == pytest.approx(targets.imf_pct, rel=0.10)
    assert e["psoas_left_ml"] > 50 and e["psoas_right_ml"] > 50


def test_true_exposures_are_those_of_the_true_maps():
    ph = make_phantom(5, protocol=COARSE)
    voxel_ml = abs(np.linalg.det(ph.affine[:3, :3])) / 1000
    assert compute_exposures(ph.labels, ph.ff, voxel_ml) == pytest.approx(ph.exposures, rel=1e-9)


def test_same_seed_same_phantom_other_seed_other_phantom():
    a, b, c = make_phantom(7, protocol=COARSE), make_phantom(7, protocol=COARSE), make_phantom(8, protocol=COARSE)
    np.testing.assert_array_equal(a.water, b.water)
    np.testing.assert_array_equal(a.affine, b.affine)
    assert a.exposures == b.exposures
    assert a.water.shape != c.water.shape or not np.array_equal(a.water, c.water)


def test_left_labels_lie_on_the_patients_left():
    """Labels 1 and 3 (left) lie at world x < 0: in RAS, +x points to the patient's right."""
    ph = make_phantom(11, protocol=COARSE)
    for lab, sign in ((1, -1), (2, 1), (3, -1), (4, 1)):
        idx = np.argwhere(ph.labels == lab)
        world = idx @ ph.affine[:3, :3].T + ph.affine[:3, 3]
        assert np.sign(np.median(world[:, 0])) == sign


def test_train_protocol_keeps_the_slices_on_the_last_axis_and_leaves_out_extremes():
    from backpain_epi.segmentation.phantom import _orientation

    rng = np.random.default_rng(0)
    assert {_orientation(rng, PROTOCOLS["train"])[0][2] for _ in range(50)} == {2}
    assert {_orientation(rng, PROTOCOLS["heldout"])[0].index(2) for _ in range(50)} == {0, 1, 2}
    ph = make_phantom(0, protocol="train")
    lo, hi = PROTOCOLS["train"].slice_mm
    assert ph.meta["axis_order"][2] == 2 and lo <= ph.meta["spacing_mm"][2] <= hi


def test_images_vary_in_storage_scale_and_carry_noise():
    from backpain_epi.segmentation.phantom import _store

    rng = np.random.default_rng(0)
    img = np.random.default_rng(1).uniform(0, 1.5, (4, 4, 4)).astype(np.float32)
    stored = [_store(rng, img, img, PROTOCOLS["full"]) for _ in range(20)]
    assert {s[2] for s in stored} == {"int16", "float32"}
    scales = [float(s[0].max() / img.max()) for s in stored]
    assert max(scales) / min(scales) > 100  # arbitrary scanner scale
    ph = make_phantom(1, protocol=COARSE)
    assert (ph.water >= 0).all() and np.unique(ph.water).size > 100
    assert ph.labels.dtype == np.uint8 and set(np.unique(ph.labels)) == {0, 1, 2, 3, 4}


@pytest.mark.parametrize("bad", [dict(lmm_ml=50, intermat_ml=10, imf_pct=5), dict(lmm_ml=800, intermat_ml=-1, imf_pct=5),
                                 dict(lmm_ml=800, intermat_ml=10, imf_pct=70)])
def test_impossible_targets_are_refused(bad):
    with pytest.raises(ValueError):
        PhantomTargets(**bad)


def test_written_phantoms_follow_the_manifest_contract(phantom_dir, dictionary):
    import nibabel as nib

    from backpain_epi.tableio import read_table
    from backpain_epi.validation import validate_table

    manifest = read_table(phantom_dir / "manifest.csv")
    assert validate_table(manifest, "manifest", dictionary).ok
    truth = read_table(phantom_dir / "truth_exposures.csv")
    assert list(truth["participant_id"]) == list(manifest["participant_id"])
    row = manifest.iloc[0]
    w, lab = nib.load(phantom_dir / row["water"]), nib.load(phantom_dir / row["label"])
    assert w.shape == lab.shape and np.allclose(w.affine, lab.affine)


@pytest.mark.slow
def test_targets_from_a_cohort_table(tmp_path):
    from backpain_epi import simulate_cohort
    from backpain_epi.segmentation.phantom import write_phantoms
    from backpain_epi.tableio import read_table

    cohort = simulate_cohort(n=50, seed=3).data[["participant_id", "lmm_ml", "intermat_ml", "imf_pct"]].head(2)
    write_phantoms(tmp_path, n=0, seed=1, protocol=COARSE, targets=cohort, progress=False)
    truth = read_table(tmp_path / "truth_exposures.csv").set_index("participant_id")
    for r in cohort.itertuples():
        assert float(truth.loc[r.participant_id, "lmm_ml"]) == pytest.approx(r.lmm_ml, rel=0.10)
        assert float(truth.loc[r.participant_id, "intermat_ml"]) == pytest.approx(r.intermat_ml, rel=0.10)
        assert float(truth.loc[r.participant_id, "imf_pct"]) == pytest.approx(r.imf_pct, rel=0.10)


def test_the_targets_are_the_dictionarys_primary_exposures():
    from dataclasses import fields

    from backpain_epi.dictionary import load_dictionary

    assert [f.name for f in fields(PhantomTargets)] == load_dictionary().primary_exposures


def test_a_wrong_family_or_targets_for_the_independent_family_name_the_parameter(tmp_path):
    from backpain_epi.errors import BackpainEpiError
    from backpain_epi.segmentation.phantom import write_phantoms

    with pytest.raises(BackpainEpiError, match="^family: unknown phantom family 'indep'; did you mean 'independent'"):
        write_phantoms(tmp_path, 1, 0, family="indep", progress=False)
    targets = pd.DataFrame({"participant_id": ["a"], "lmm_ml": [900.0], "intermat_ml": [90.0], "imf_pct": [5.0]})
    with pytest.raises(BackpainEpiError, match="^targets: the independent phantom family .* family=training"):
        write_phantoms(tmp_path, 1, 0, family="independent", targets=targets, progress=False)
    with pytest.raises(BackpainEpiError, match="^targets: missing column.s. imf_pct."):
        write_phantoms(tmp_path, 1, 0, targets=targets.drop(columns="imf_pct"), progress=False)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_a_body_too_small_for_the_planted_muscle_is_enlarged():
    from backpain_epi.segmentation.phantom import Protocol

    seed = np.random.SeedSequence(1).spawn(60)[0]  # its first body holds about half of 1,386 mL
    targets = PhantomTargets(1213.8, 172.8, 16.93)
    proto = Protocol(inplane_mm=(2.3, 2.5), slice_mm=(5.5, 6.0), int16_prob=1.0)
    first = make_phantom(seed, targets, proto, fit_body=False)
    assert first.meta["body_scale"] == 1.0 and first.exposures["lmm_ml"] < 0.8 * targets.lmm_ml
    fitted = make_phantom(seed, targets, proto)  # planted targets: the body is fitted by default
    assert fitted.meta["body_scale"] > 1.0
    assert fitted.exposures["lmm_ml"] == pytest.approx(targets.lmm_ml, rel=0.05)
    assert fitted.exposures["intermat_ml"] == pytest.approx(targets.intermat_ml, rel=0.05)
    drawn = make_phantom(seed, protocol=proto)  # drawn targets keep their first body (training phantoms unchanged)
    assert drawn.meta["body_scale"] == 1.0


@pytest.mark.slow
def test_an_interrupted_batch_resumes_without_drawing_again(tmp_path, monkeypatch):
    import backpain_epi.segmentation.phantom as P

    P.write_phantoms(tmp_path, 3, seed=4, protocol=COARSE, progress=False, resume=True)
    manifest = (tmp_path / "manifest.csv").read_text()
    truth = (tmp_path / "truth_exposures.csv").read_text()
    (tmp_path / "records" / "PH4-0001.json").unlink()  # as if stopped while drawing the second phantom
    drawn = []
    real = P.make_phantom
    monkeypatch.setattr(P, "make_phantom", lambda seed, *a, **k: drawn.append(seed) or real(seed, *a, **k))
    P.write_phantoms(tmp_path, 3, seed=4, protocol=COARSE, progress=False, resume=True)
    assert len(drawn) == 1
    assert (tmp_path / "manifest.csv").read_text() == manifest
    assert (tmp_path / "truth_exposures.csv").read_text() == truth
    P.write_phantoms(tmp_path, 3, seed=4, protocol=COARSE, progress=False)  # without resume: all drawn again
    assert len(drawn) == 4
