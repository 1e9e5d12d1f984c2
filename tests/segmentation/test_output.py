"""The segmentation folder's one reader, and what reading it costs."""

import subprocess
import sys

import pandas as pd
import pytest

from backpain_epi.errors import InputFileError
from backpain_epi.segmentation.output import EXPOSURES_FILE, FAILURES_FILE, SegmentationOutput, label_path, record_path


def test_read_gives_numbers_failures_and_the_label_paths(tmp_path):
    pd.DataFrame({"participant_id": ["a", "b"], "lmm_ml": ["1.5", "2"]}).to_csv(tmp_path / EXPOSURES_FILE, index=False)
    pd.DataFrame({"participant_id": ["c"], "reason": ["corrupt"]}).to_csv(tmp_path / FAILURES_FILE, index=False)
    out = SegmentationOutput.read(tmp_path)
    assert out.exposures["lmm_ml"].tolist() == [1.5, 2.0] and out.failed_ids == {"c"} and out.manifest is None
    assert out.label_path("a") == label_path(tmp_path, "a") and label_path(tmp_path, "a").name == "a.nii.gz"
    assert record_path(tmp_path, "a").parent.name == ".parts"


def test_a_wrong_folder_names_the_parameter(tmp_path):
    with pytest.raises(InputFileError, match=f"^segmentation {tmp_path / 'none'}: folder not found"):
        SegmentationOutput.read(tmp_path / "none")
    with pytest.raises(InputFileError, match=f"^seg {tmp_path}: no {EXPOSURES_FILE}"):
        SegmentationOutput.read(tmp_path, param="seg")


def test_reading_and_batching_import_no_torch():
    """Reading a segmentation folder, its tables and label schemes, and importing the batch, need no torch."""
    modules = ("output", "exposures", "io", "schemes", "batch", "engines", "evaluate")
    code = ("import sys\n" + "".join(f"import backpain_epi.segmentation.{m}\n" for m in modules)
            + "print(','.join(m for m in ('torch', 'monai', 'nibabel') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_a_manifest_pointed_at_other_scans_makes_the_folder_stale(phantom_dir, tmp_path):
    """Issue 16: a manifest row pointed at another participant's images, without segmenting again, is caught on reading."""
    from backpain_epi.segmentation.batch import segment_manifest
    from backpain_epi.tableio import read_table, write_table

    out = tmp_path / "seg"
    segment_manifest(phantom_dir / "manifest.csv", out, engine="labels", progress=False)
    seg = SegmentationOutput.read(out)
    assert seg.stale() == [] and seg.check_current() is seg
    manifest = read_table(out / "manifest.csv")
    first, second = manifest["participant_id"].iloc[:2]
    manifest.loc[0, ["water", "fat"]] = manifest.loc[1, ["water", "fat"]].to_numpy()  # edited by hand
    write_table(manifest, out / "manifest.csv")
    assert SegmentationOutput.read(out).stale() == [first]
    with pytest.raises(InputFileError, match=rf"^segmentation {out}: the exposures of 1 participant\(s\) \({first}\) were not made"):
        SegmentationOutput.read(out).check_current()
