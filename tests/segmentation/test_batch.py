"""Batch segmentation: outputs, resume after an interruption, failures that never stop the batch."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backpain_epi.errors import DataValidationError, InputFileError
from backpain_epi.segmentation.batch import process_one, read_manifest, segment_manifest
from backpain_epi.segmentation.output import SegmentationOutput, record_path


@pytest.fixture()
def scans(phantom_dir, tmp_path):
    """A writable copy of the coarse phantoms; returns the manifest path."""
    shutil.copytree(phantom_dir, tmp_path / "in")
    return tmp_path / "in" / "manifest.csv"


def _run(manifest, out, weights, **kw):
    return segment_manifest(manifest, out, weights=weights, device="cpu", progress=False, **kw)


def test_outputs_follow_the_contract(scans, tmp_path, tiny_weights, dictionary):
    import nibabel as nib

    from backpain_epi.tableio import read_table
    from backpain_epi.validation import validate_table

    out = tmp_path / "out"
    result = _run(scans, out, tiny_weights)
    assert result.n_processed == 3 and result.failures.empty
    table = read_table(out / "exposures.csv")
    assert validate_table(table, "exposures", dictionary).ok
    assert list(table["participant_id"]) == list(pd.read_csv(scans)["participant_id"])
    for row in read_manifest(scans):
        lab, water = nib.load(out / "labels" / f"{row['participant_id']}.nii.gz"), nib.load(row["water"])
        assert lab.shape == water.shape and np.allclose(lab.affine, water.affine)
        assert lab.get_data_dtype() == np.uint8
    assert list(pd.read_csv(out / "failures.csv").columns) == ["participant_id", "reason"]  # header only
    copy = pd.read_csv(out / "manifest.csv")  # absolute paths, for the report's QC overlays
    assert list(copy["water"]) == [r["water"] for r in read_manifest(scans)] and all(Path(p).is_absolute() for p in copy["water"])
    assert not list(out.rglob(".*.tmp*"))
    read = SegmentationOutput.read(out)  # the one reader gives back what the batch wrote
    pd.testing.assert_frame_equal(read.exposures, result.exposures, check_dtype=False)
    assert read.failures.empty and read.failed_ids == set() and len(read.manifest) == 3
    assert all(read.label_path(pid).is_file() for pid in read.exposures["participant_id"])


def test_an_output_folder_holding_the_manifest_keeps_it(scans, tmp_path, tiny_weights):
    before = scans.read_text()
    _run(scans, scans.parent, tiny_weights)
    assert scans.read_text() == before


def test_a_rerun_after_an_interruption_skips_what_is_done(scans, tmp_path, tiny_weights):
    out = tmp_path / "out"
    rows = read_manifest(scans)
    # an interrupted run: one participant done, a second killed while writing (a temporary file, no record)
    process_one(rows[0], out=out, weights=tiny_weights, device="cpu", batch_size=1)
    (out / "labels" / f".{rows[1]['participant_id']}.tmp.nii.gz").write_bytes(b"half")
    first = json.loads(record_path(out, rows[0]["participant_id"]).read_text())
    result = _run(scans, out, tiny_weights)
    assert (result.n_skipped, result.n_processed) == (1, 2)
    assert json.loads(record_path(out, rows[0]["participant_id"]).read_text()) == first
    assert len(result.exposures) == 3
    again = _run(scans, out, tiny_weights)
    assert (again.n_skipped, again.n_processed) == (3, 0)
    pd.testing.assert_frame_equal(again.exposures, result.exposures)


def test_bad_scans_go_to_failures_and_the_batch_goes_on(scans, tmp_path, tiny_weights):
    import nibabel as nib

    df = pd.read_csv(scans)
    base = scans.parent
    good = nib.load(base / df.loc[0, "water"])
    data, affine = np.asanyarray(good.dataobj), good.affine
    bad = {}
    bad["missing"] = ("images/nothing.nii.gz", df.loc[0, "fat"], "not found")
    (base / "corrupt.nii.gz").write_bytes((base / df.loc[0, "water"]).read_bytes()[:100])
    bad["corrupt"] = ("corrupt.nii.gz", df.loc[0, "fat"], "corrupt")
    nib.save(nib.Nifti1Image(data, affine * np.diag([2, 1, 1, 1])), base / "moved.nii.gz")
    bad["grids"] = ("moved.nii.gz", df.loc[0, "fat"], "different grids")
    nib.save(nib.Nifti1Image(data[..., 0], affine), base / "flat.nii.gz")
    bad["2d"] = ("flat.nii.gz", "flat.nii.gz", "2 dimensions")
    nib.save(nib.Nifti1Image(np.stack([data, data], -1), affine), base / "four.nii.gz")
    bad["4d"] = ("four.nii.gz", "four.nii.gz", "4 dimensions")
    nan = data.astype(np.float32)
    nan[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(nan, affine), base / "nan.nii.gz")
    bad["nan"] = ("nan.nii.gz", df.loc[0, "fat"], "NaN")
    nib.save(nib.Nifti1Image(np.zeros_like(data), affine), base / "zero.nii.gz")
    bad["zero"] = ("zero.nii.gz", "zero.nii.gz", "all zero")
    extra = pd.DataFrame([{"participant_id": f"bad-{k}", "water": w, "fat": f} for k, (w, f, _) in bad.items()])
    pd.concat([df, extra]).to_csv(scans, index=False)
    result = _run(scans, tmp_path / "out", tiny_weights)
    assert len(result.exposures) == 3
    reasons = result.failures.set_index("participant_id")["reason"]
    assert len(reasons) == len(bad)
    for key, (_, _, expected) in bad.items():
        assert expected in reasons[f"bad-{key}"]


@pytest.mark.parametrize("edit, error, message", [
    (lambda df: df.drop(columns="fat"), DataValidationError, "fat"),
    (lambda df: df.assign(participant_id=df["participant_id"].iloc[0]), DataValidationError, "participant_id"),
    (lambda df: df.assign(participant_id=["a/b", "c", "d"]), InputFileError, "file name"),
])
def test_a_bad_manifest_is_refused_before_any_work(scans, tmp_path, tiny_weights, edit, error, message):
    edit(pd.read_csv(scans)).to_csv(scans, index=False)
    with pytest.raises(error, match=message):
        _run(scans, tmp_path / "out", tiny_weights)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kw, message", [
    ({"workers": 0}, "^workers 0: must be at least 1."),
    ({"erode": -1}, "^erode -1: a whole number of voxels"),
    ({"erode": 1.5}, "^erode 1.5: a whole number of voxels"),
    ({"batch_size": 0}, "^batch_size 0: must be at least 1."),
])
def test_bad_settings_name_the_parameter(scans, tmp_path, tiny_weights, kw, message):
    from backpain_epi.errors import BackpainEpiError

    with pytest.raises(BackpainEpiError, match=message):
        _run(scans, tmp_path / "out", tiny_weights, **kw)
    (tmp_path / "file").write_text("")
    with pytest.raises(InputFileError, match=f"^out {tmp_path / 'file'}: is a file; give a folder."):
        _run(scans, tmp_path / "file", tiny_weights)


@pytest.mark.slow
def test_a_local_dask_cluster_gives_the_same_result(scans, tmp_path, tiny_weights):
    serial = _run(scans, tmp_path / "serial", tiny_weights)
    parallel = _run(scans, tmp_path / "dask", tiny_weights, workers=2)
    pd.testing.assert_frame_equal(parallel.exposures, serial.exposures)


def _semicolon_latin1_manifest(path, folder="Müller_scans"):
    """A manifest as a German spreadsheet exports it: ';' between fields, Latin-1 text (the 'ü' of a folder name)."""
    lines = ["participant_id;water;fat"] + [f"P{i};{folder}/p{i}_water.nii.gz;{folder}/p{i}_fat.nii.gz" for i in (1, 2)]
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return path


def test_a_semicolon_latin1_manifest_is_read_with_its_delimiter_and_encoding(tmp_path):
    manifest = _semicolon_latin1_manifest(tmp_path / "manifest.csv")
    assert "ü".encode("latin-1") in manifest.read_bytes() and "ü".encode() not in manifest.read_bytes()
    rows = read_manifest(manifest, sep=";", encoding="latin-1")
    assert [r["participant_id"] for r in rows] == ["P1", "P2"]
    assert rows[0]["water"] == str((tmp_path / "Müller_scans" / "p1_water.nii.gz").absolute())
    assert rows[1]["fat"] == str((tmp_path / "Müller_scans" / "p2_fat.nii.gz").absolute())
    assert read_manifest(manifest, sep="semicolon", encoding="latin-1") == rows  # the command line's names work too


def test_a_semicolon_manifest_read_on_commas_says_which_delimiter_to_give(tmp_path):
    manifest = _semicolon_latin1_manifest(tmp_path / "manifest.csv")
    with pytest.raises(InputFileError, match=r"looks semicolon-separated\. .*give the delimiter \(sep=';'\)\.$"):
        read_manifest(manifest, encoding="latin-1")
    with pytest.raises(InputFileError, match=r"not valid utf-8 text \(byte 0xfc on line 2\).*\(encoding=latin-1\)"):
        read_manifest(manifest)  # neither: the encoding is the first thing it meets


def test_read_manifest_passes_the_decimal_mark_on(phantom_dir):
    # decimal commas with the default comma delimiter cannot be: the refusal shows decimal reached read_table
    with pytest.raises(InputFileError, match="cannot have decimal commas and comma delimiters"):
        read_manifest(phantom_dir / "manifest.csv", decimal=",")
    assert len(read_manifest(phantom_dir / "manifest.csv", decimal=".")) == 3
