"""The TotalSegmentator engine: its scheme, its weights folder, and refusing (never downloading) without weights."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from backpain_epi.errors import InputFileError
from backpain_epi.segmentation import totalseg
from backpain_epi.segmentation.engines import EngineSpec, make_engine
from backpain_epi.segmentation.schemes import BUILTIN

ts = pytest.importorskip("totalsegmentator")
SPEC = EngineSpec(engine="totalsegmentator", device="cpu")


@pytest.fixture
def no_network(monkeypatch):
    """Any TotalSegmentator download or request fails the test."""
    import requests
    from totalsegmentator import libs

    def boom(*args, **kwargs):
        pytest.fail(f"TotalSegmentator tried to reach the network ({args[:1]})")

    for name in ("download_pretrained_weights", "download_url_and_unpack", "download_model_with_license_and_unpack"):
        monkeypatch.setattr(libs, name, boom)
    if "totalsegmentator.python_api" in sys.modules:
        monkeypatch.setattr(sys.modules["totalsegmentator.python_api"], "download_pretrained_weights", boom)
    monkeypatch.setattr(requests, "get", boom)
    monkeypatch.setattr(requests, "post", boom)


@pytest.fixture
def fake_weights(tmp_path, monkeypatch):
    """A TOTALSEG_HOME_DIR whose total_mr folders hold (empty) checkpoints: enough for ``check``."""
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "home"))
    folders, trainer = totalseg.total_mr_models()
    for name in folders.values():
        ckpt = tmp_path / "home" / "nnunet" / "results" / name / f"{trainer}__nnUNetPlans__3d_fullres" / "fold_0"
        ckpt.mkdir(parents=True)
        (ckpt / "checkpoint_final.pth").write_bytes(b"")
    return tmp_path / "home"


def test_scheme_matches_installed_class_map():
    from totalsegmentator.map_to_binary import class_map

    ids = {name: i for i, name in class_map["total_mr"].items()}
    expected = {ids["autochthon_left"]: 1, ids["autochthon_right"]: 2, ids["iliopsoas_left"]: 3, ids["iliopsoas_right"]: 4}
    assert dict(BUILTIN["totalsegmentator-total_mr"].mapping) == expected


def test_weights_dir_resolution_matches_totalsegmentator(tmp_path, monkeypatch):
    from totalsegmentator.config import get_weights_dir

    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    monkeypatch.delenv("TOTALSEG_HOME_DIR", raising=False)
    assert totalseg.totalseg_weights_dir() == get_weights_dir()
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "home"))
    assert totalseg.totalseg_weights_dir() == get_weights_dir() == tmp_path / "home" / "nnunet" / "results"
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "w"))
    assert totalseg.totalseg_weights_dir() == get_weights_dir() == tmp_path / "w"


def test_total_mr_models_are_850_and_851():
    folders, trainer = totalseg.total_mr_models()
    assert sorted(folders) == [850, 851]
    assert folders == totalseg.FALLBACK_MODELS and trainer == totalseg.FALLBACK_TRAINER


@pytest.mark.parametrize("variable", ["TOTALSEG_HOME_DIR", "TOTALSEG_WEIGHTS_PATH"])
def test_missing_weights_refused_without_download(tmp_path, monkeypatch, no_network, variable):
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    monkeypatch.setenv(variable, str(tmp_path))
    assert sorted(totalseg.missing_total_mr_weights()) == sorted(totalseg.FALLBACK_MODELS.values())
    with pytest.raises(InputFileError) as err:
        SPEC.check()
    message = str(err.value)
    assert message.startswith("engine totalsegmentator: ") and err.value.param == "engine"
    assert str(totalseg.totalseg_weights_dir()) in message and "Dataset850" in message and "Dataset851" in message
    assert "TOTALSEG_HOME_DIR" in message and "\n" not in message
    assert not any(p.name.startswith("Dataset") for p in tmp_path.rglob("*"))  # nothing fetched or created


def test_incomplete_weights_folder_is_missing(fake_weights):
    folders, trainer = totalseg.total_mr_models()
    (fake_weights / "nnunet" / "results" / folders[851] / f"{trainer}__nnUNetPlans__3d_fullres" / "fold_0"
     / "checkpoint_final.pth").unlink()
    assert totalseg.missing_total_mr_weights() == [folders[851]]


def test_check_passes_with_weights(fake_weights, no_network):
    assert totalseg.missing_total_mr_weights() == []
    SPEC.check()


def test_offline_guard_refuses_downloads_and_restores(fake_weights, monkeypatch):
    from totalsegmentator import nnunet as ts_nnunet
    from totalsegmentator import python_api

    monkeypatch.setenv("nnUNet_results", "/somewhere")
    before = (python_api.download_pretrained_weights, python_api.send_usage_stats)
    with totalseg.offline(python_api):
        python_api.download_pretrained_weights(850)  # present: no-op
        with pytest.raises(InputFileError, match="nothing is downloaded"):
            python_api.download_pretrained_weights(852)  # the roi_subset model: not here
        python_api.send_usage_stats({"send_usage_stats": True}, {})
        assert totalseg.FALLBACK_TRAINER in ts_nnunet.custom_trainers
        os.environ["nnUNet_results"] = "/changed/by/totalsegmentator"
    assert (python_api.download_pretrained_weights, python_api.send_usage_stats) == before
    assert totalseg.FALLBACK_TRAINER not in ts_nnunet.custom_trainers
    assert os.environ["nnUNet_results"] == "/somewhere"


def test_engine_through_totalsegmentator_pipeline(fake_weights, no_network, monkeypatch, phantom_dir):
    """TotalSegmentator's whole pipeline (resampling, reorienting, part merging) with nnU-Net replaced by a stub:
    the label map comes back on the input grid and maps to our labels."""
    import nibabel as nib
    import pandas as pd
    from totalsegmentator import nnunet as ts_nnunet
    from totalsegmentator.map_to_binary import class_map_parts_mr

    from backpain_epi.segmentation.io import load_dixon

    muscles = {name: i for i, name in class_map_parts_mr["class_map_part_muscles"].items()}

    def fake_predict(dir_in, dir_out, task_id, *args, **kwargs):
        from pathlib import Path

        for img in Path(dir_in).glob("*_0000.nii.gz"):
            src = nib.load(img)
            seg = np.zeros(src.shape, np.uint8)
            if task_id == 851:
                n = src.shape
                seg[: n[0] // 2, : n[1] // 2] = muscles["autochthon_left"]
                seg[n[0] // 2:, n[1] // 2:] = muscles["iliopsoas_right"]
            nib.save(nib.Nifti1Image(seg, src.affine), Path(dir_out) / img.name.replace("_0000", ""))

    monkeypatch.setattr(ts_nnunet, "nnUNetv2_predict", fake_predict)
    row = pd.read_csv(phantom_dir / "manifest.csv").iloc[0]
    pair = load_dixon(phantom_dir / row["water"], phantom_dir / row["fat"])
    engine = make_engine(SPEC)
    labels = engine.segment(pair, {"participant_id": row["participant_id"]})
    assert labels.shape == pair.water.shape and labels.dtype == np.uint8
    assert {1, 4} <= set(np.unique(labels).tolist()) <= {0, 1, 4}
