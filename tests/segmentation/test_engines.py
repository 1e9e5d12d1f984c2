"""Engines behind one interface: existing label maps, label schemes, records that know what made them, erosion."""

import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from backpain_epi.errors import BackpainEpiError, InputFileError
from backpain_epi.segmentation.batch import segment_manifest
from backpain_epi.segmentation.engines import EngineSpec
from backpain_epi.segmentation.exposures import compute_exposures
from backpain_epi.segmentation.output import record_path
from backpain_epi.segmentation.schemes import BUILTIN, load_scheme

EXPOSURES = ["lmm_ml", "intermat_ml", "imf_pct", "autochthon_ml", "psoas_ml"]


@pytest.fixture()
def scans(phantom_dir, tmp_path):
    shutil.copytree(phantom_dir, tmp_path / "in")
    return tmp_path / "in" / "manifest.csv"


def _labels(manifest, out, **kw):
    return segment_manifest(manifest, out, engine="labels", progress=False, **kw)


def _remap(manifest, mapping, extra_ids=()):
    """Rewrite the manifest's label maps with other IDs (and stray IDs in the background)."""
    rng = np.random.default_rng(0)
    for rel in pd.read_csv(manifest)["label"]:
        path = manifest.parent / rel
        img = nib.load(path)
        lab = np.asarray(img.dataobj).astype(np.int16)
        out = np.zeros_like(lab)
        for src, dst in mapping.items():
            out[lab == src] = dst
        background = np.flatnonzero(lab.ravel() == 0)
        for sid in extra_ids:  # other structures of the tool, which are not ours
            out.ravel()[rng.choice(background, 200, replace=False)] = sid
        nib.save(nib.Nifti1Image(out, img.affine), path)


def test_true_label_maps_give_the_true_exposures_within_the_partial_volume_floor(scans, tmp_path):
    truth = pd.read_csv(scans.parent / "truth_exposures.csv").set_index("participant_id")
    got = _labels(scans, tmp_path / "out").exposures.set_index("participant_id").loc[truth.index]
    # volumes are counts of the same voxels: exact
    assert np.allclose(got["autochthon_ml"], truth["autochthon_ml"], rtol=1e-6)
    assert np.allclose(got["psoas_ml"], truth["psoas_ml"], rtol=1e-6)
    # composition: the noise-free fat fraction of the truth against the noisy, blurred one of the images
    assert (abs(got["lmm_ml"] / truth["lmm_ml"] - 1) < 0.03).all()
    assert (abs(got["imf_pct"] - truth["imf_pct"]) < 2.5).all()


def test_the_totalsegmentator_scheme_gives_exactly_what_our_scheme_gives(scans, tmp_path):
    ours = _labels(scans, tmp_path / "ours").exposures
    _remap(scans, {1: 46, 2: 47, 3: 48, 4: 49, 0: 0}, extra_ids=(1, 2, 3, 4, 10, 50, 80))
    theirs = _labels(scans, tmp_path / "ts", label_scheme="totalsegmentator-total_mr").exposures
    pd.testing.assert_frame_equal(ours, theirs)
    # read with our scheme instead, the same maps give other exposures (the IDs matter)
    wrong = _labels(scans, tmp_path / "wrong").exposures
    assert not np.allclose(wrong["autochthon_ml"], ours["autochthon_ml"])


def test_a_scheme_file_maps_any_ids(scans, tmp_path):
    ours = _labels(scans, tmp_path / "ours").exposures
    _remap(scans, {1: 7, 2: 8, 3: 21, 4: 22})
    scheme = tmp_path / "scheme.yaml"
    scheme.write_text("name: mine\nlabels:\n  7: autochthon_left\n  8: autochthon_right\n  21: iliopsoas_left\n  22: psoas_right\n")
    pd.testing.assert_frame_equal(ours, _labels(scans, tmp_path / "mine", label_scheme=scheme).exposures)


@pytest.mark.parametrize("text, message", [
    ("labels:\n  1: autochton_left\n  2: autochthon_right\n  3: psoas_left\n  4: psoas_right\n", "did you mean 'autochthon_left'"),
    ("labels:\n  1: autochthon_left\n  2: autochthon_right\n", "no source ID for psoas_left, psoas_right"),
    ("labels:\n  one: autochthon_left\n", "label ID 'one' is not an integer"),
    ("labels:\n  1.5: autochthon_left\n", "label ID 1.5 is not an integer"),
    ("- 1\n- 2\n", "expected a mapping"),
])
def test_a_broken_scheme_file_is_named_with_the_problem(tmp_path, text, message):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(InputFileError, match=message) as err:
        load_scheme(path)
    assert str(err.value).startswith(f"label_scheme {path}: ") and err.value.param == "label_scheme"


def test_unknown_scheme_and_engine_names_get_a_suggestion():
    with pytest.raises(InputFileError, match="^label_scheme totalsegmentator-total-mr: .*did you mean 'totalsegmentator-total_mr'"):
        load_scheme("totalsegmentator-total-mr")
    with pytest.raises(BackpainEpiError, match="^engine: unknown engine 'nnunnet'; did you mean 'nnunet'"):
        EngineSpec(engine="nnunnet")
    assert set(BUILTIN) == {"backpain-epi", "totalsegmentator-total_mr"}


def test_the_labels_engine_needs_a_label_column_and_a_row_without_one_fails_alone(scans, tmp_path):
    table = pd.read_csv(scans)
    table.loc[0, "label"] = None
    table.to_csv(scans, index=False)
    result = _labels(scans, tmp_path / "out")
    assert "no label map" in result.failures["reason"].iloc[0] and len(result.exposures) == 2
    table.drop(columns="label").to_csv(scans, index=False)
    with pytest.raises(InputFileError, match="engine=labels needs a 'label' column"):
        _labels(scans, tmp_path / "out2")


def test_label_maps_off_the_image_grid_or_not_whole_numbers_fail_that_scan_only(scans, tmp_path):
    rows = pd.read_csv(scans)
    bad_grid, bad_values = scans.parent / rows["label"][0], scans.parent / rows["label"][1]
    img = nib.load(bad_grid)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:-1], img.affine), bad_grid)
    img = nib.load(bad_values)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj).astype(np.float32) * 0.5, img.affine), bad_values)
    result = _labels(scans, tmp_path / "out")
    reasons = result.failures.set_index("participant_id")["reason"]
    assert "not on the image grid" in reasons[rows["participant_id"][0]]
    assert "non-integer" in reasons[rows["participant_id"][1]]
    assert list(result.exposures["participant_id"]) == [rows["participant_id"][2]]


def test_a_rerun_redoes_what_another_engine_setting_or_a_changed_input_made(scans, tmp_path):
    out = tmp_path / "out"
    first = _labels(scans, out)
    assert first.n_processed == 3 and _labels(scans, out).n_skipped == 3
    assert _labels(scans, out, erode=1).n_processed == 3  # another erosion: every record is stale
    rows = pd.read_csv(scans)
    label = scans.parent / rows["label"][0]
    img = nib.load(label)  # the label map of one participant is edited
    lab = np.asarray(img.dataobj).copy()
    lab[lab == 3] = 0
    nib.save(nib.Nifti1Image(lab, img.affine), label)
    again = _labels(scans, out, erode=1)
    assert again.n_processed == 1 and again.n_skipped == 2
    assert again.exposures.set_index("participant_id").loc[rows["participant_id"][0], "psoas_left_ml"] == 0
    record = json.loads(record_path(out, rows["participant_id"][0]).read_text())
    assert record["key"]["engine"] == {"engine": "labels", "label_scheme": [[1, 1], [2, 2], [3, 3], [4, 4]]}
    assert record["key"]["erode"] == 1


def test_an_edited_scheme_file_redoes_the_exposures(scans, tmp_path):
    scheme = tmp_path / "scheme.yaml"
    scheme.write_text("labels: {1: autochthon_left, 2: autochthon_right, 3: psoas_left, 4: psoas_right}\n")
    out = tmp_path / "out"
    before = _labels(scans, out, label_scheme=scheme).exposures
    scheme.write_text("labels: {2: autochthon_left, 1: autochthon_right, 3: psoas_left, 4: psoas_right}\n")  # sides swapped
    after = _labels(scans, out, label_scheme=scheme)
    assert after.n_processed == 3
    assert np.allclose(after.exposures["autochthon_left_ml"], before["autochthon_right_ml"])


def test_only_a_new_erosion_keeps_the_label_maps(scans, tmp_path, monkeypatch):
    from backpain_epi.segmentation import engines

    out = tmp_path / "out"
    _labels(scans, out)
    monkeypatch.setattr(engines.LabelsEngine, "predict", lambda *a: pytest.fail("segmented again for a new erosion"))
    again = _labels(scans, out, erode=1)
    assert again.n_processed == 3 and again.failures.empty


def test_options_of_another_engine_are_refused():
    with pytest.raises(BackpainEpiError, match="^label_scheme: not an option of engine=builtin; it is for engine=labels or nnunet"):
        EngineSpec(engine="builtin", label_scheme="backpain-epi")
    with pytest.raises(BackpainEpiError, match="^weights: not an option of engine=labels"):
        EngineSpec(engine="labels", weights="w.pt")
    assert EngineSpec(engine="nnunet", model="m", folds=[0, 1]).folds == (0, 1)  # a list from Python works as a key


def test_erosion_measures_composition_away_from_the_mask_edge():
    labels = np.zeros((12, 12, 3), np.uint8)
    labels[2:10, 2:10, :] = 1
    ff = np.full(labels.shape, 0.05)
    inner = np.zeros_like(labels, bool)
    inner[3:9, 3:9, :] = True
    ff[(labels == 1) & ~inner] = 0.7  # a partial-volume rim of fat at the fascia
    whole = compute_exposures(labels, ff, 1.0)
    core = compute_exposures(labels, ff, 1.0, erode=1, slice_axis=2)
    assert whole["intermat_ml"] == 28 * 3 and whole["imf_pct"] == pytest.approx(5.0)
    assert core["intermat_ml"] == 0 and core["lmm_ml"] == 64 * 3 and core["imf_pct"] == pytest.approx(5.0)
    assert core["autochthon_ml"] == whole["autochthon_ml"]  # volumes of the whole mask
    # the slices keep their thickness: eroding along the slice axis would have emptied a 3-slice compartment
    assert compute_exposures(labels, ff, 1.0, erode=1, slice_axis=0)["lmm_ml"] < core["lmm_ml"]
    with pytest.raises(ValueError, match="erode"):
        compute_exposures(labels, ff, 1.0, erode=-1)


def test_erosion_brings_the_fat_fraction_of_true_masks_closer_to_the_truth(scans, tmp_path):
    truth = pd.read_csv(scans.parent / "truth_exposures.csv").set_index("participant_id")
    err = {}
    for n in (0, 1):
        got = _labels(scans, tmp_path / f"e{n}", erode=n).exposures.set_index("participant_id").loc[truth.index]
        err[n] = (got["imf_pct"] - truth["imf_pct"]).abs().mean()
    assert err[1] < err[0]


def test_cli_segments_existing_label_maps_with_a_scheme(scans, tmp_path):
    from backpain_epi.cli import main

    _remap(scans, {1: 46, 2: 47, 3: 48, 4: 49})
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["segment", "--manifest", str(scans), "--out", str(out), "--engine", "labels",
                                    "--label-scheme", "totalsegmentator-total_mr", "--erode", "1"])
    assert res.exit_code == 0, res.output
    assert "Segmented 3 scan(s)" in res.output and len(pd.read_csv(out / "exposures.csv")) == 3
    res = CliRunner().invoke(main, ["segment", "--manifest", str(scans), "--out", str(out), "--engine", "labels",
                                    "--label-scheme", "totalsegmentator_total_mr"])
    assert res.exit_code == 2 and "did you mean 'totalsegmentator-total_mr'" in res.output


def test_cli_refuses_options_of_another_engine_and_bad_training_settings(scans, tmp_path):
    from backpain_epi.cli import main

    run = CliRunner().invoke
    res = run(main, ["segment", "--manifest", str(scans), "--out", str(tmp_path / "o"), "--engine", "labels", "--weights", "w.pt"])
    assert res.exit_code == 2 and "--weights: not an option of --engine labels" in res.output
    res = run(main, ["segment", "--manifest", str(scans), "--out", str(tmp_path / "o"), "--engine", "labels", "--mirror-axes", "x"])
    assert res.exit_code == 2 and "--mirror-axes: not an option of --engine labels" in res.output
    res = run(main, ["segment", "--manifest", str(scans), "--out", str(tmp_path / "o"), "--mirror-axes", "xq"])
    assert res.exit_code == 2 and "give distinct axes from x, y, z (or none), got ['x', 'q']" in res.output
    res = run(main, ["segment", "--manifest", str(scans), "--out", str(tmp_path / "o"), "--engine", "nnunet", "--folds", "0,x",
                     "--model", str(tmp_path)])
    assert res.exit_code == 2 and "--folds x: expected comma-separated fold numbers" in res.output
    res = run(main, ["train-segmenter", "--out", str(tmp_path / "w.pt"), "--synth-fraction", "1.5"])
    assert res.exit_code == 2 and "--synth-fraction 1.5: a probability between 0 and 1" in res.output
    res = run(main, ["train-segmenter", "--out", str(tmp_path / "w.pt"), "--synth-fat-gain", "3", "1"])
    assert res.exit_code == 2 and "--synth-fat-gain 3 1: the fat/water gain range needs 0 < LO <= HI" in res.output
    res = run(main, ["train-segmenter", "--out", str(tmp_path / "w.pt"), "--synth-fat-leak", "0.9"])
    assert res.exit_code == 2 and "--synth-fat-leak 0.9: the fat leak is a share" in res.output
    res = run(main, ["train-segmenter", "--out", str(tmp_path / "w.pt"), "--synth-dark-fascia", "1.2"])
    assert res.exit_code == 2 and "--synth-dark-fascia 1.2: a probability between 0 and 1" in res.output
    res = run(main, ["train-segmenter", "--out", str(tmp_path / "w.pt"), "--mirror-axes", "xw"])
    assert res.exit_code == 2 and "--mirror-axes: give distinct axes from x, y, z (or none), got ['x', 'w']" in res.output
    # text-table options on a command line that reads no table are refused, not ignored
    res = run(main, ["train-segmenter", "--out", str(tmp_path / "w.pt"), "--sep", ";"])
    assert res.exit_code == 2 and "--sep: this command line reads no text table (only with --manifest)" in res.output
    res = run(main, ["evaluate-segmenter", "--out", str(tmp_path / "e"), "--encoding", "latin-1", "--decimal", ","])
    assert res.exit_code == 2 and "--encoding, --decimal: this command line reads no text table" in res.output
    res = run(main, ["phantoms", "--out", str(tmp_path / "p"), "--n", "1", "--sep", ";"])
    assert res.exit_code == 2 and "only with --targets" in res.output and not (tmp_path / "p").exists()
    res = run(main, ["segment", "--manifest", str(scans), "--out", str(tmp_path / "o"), "--engine", "totalsegmentator",
                     "--workers", "2"])
    assert res.exit_code == 2 and "error:" in res.output and "Traceback" not in res.output


def test_an_image_in_the_label_column_fails_that_scan(scans, tmp_path):
    rows = pd.read_csv(scans)
    shutil.copy(scans.parent / rows["water"][0], scans.parent / rows["label"][0])  # the water image as a "label map"
    img = nib.load(scans.parent / rows["label"][0])
    data = np.rint(np.asarray(img.dataobj, dtype=np.float32) * 1000 / max(1.0, float(np.asarray(img.dataobj).max())))
    nib.save(nib.Nifti1Image(data.astype(np.int16), img.affine), scans.parent / rows["label"][0])
    reasons = _labels(scans, tmp_path / "out").failures.set_index("participant_id")["reason"]
    assert "an image, not a label map" in reasons[rows["participant_id"][0]]
