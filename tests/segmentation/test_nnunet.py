"""The nnU-Net engine: raw datasets, model-folder checks, and a tiny model trained and used end to end."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("nnunetv2")

from backpain_epi.errors import BackpainEpiError, InputFileError  # noqa: E402
from backpain_epi.segmentation import nnunet  # noqa: E402
from backpain_epi.segmentation.engines import EngineSpec, make_engine  # noqa: E402
from backpain_epi.segmentation.phantom import Protocol  # noqa: E402

#: Few, coarse voxels: the end-to-end training stays well under a minute on one core.
TINY = Protocol(inplane_mm=(3.5, 4.0), slice_mm=(6.0, 7.0))
EXPECTED_LABELS = {"background": 0, "autochthon_left": 1, "autochthon_right": 2, "psoas_left": 3, "psoas_right": 4}


def _load(path):
    import nibabel as nib

    img = nib.load(path)
    return np.asanyarray(img.dataobj), img.affine


# --------------------------------------------------------------------------- raw datasets


def test_dataset_from_manifest(phantom_dir, tmp_path):
    out = nnunet.write_nnunet_dataset(tmp_path / "raw", 12, manifest=phantom_dir / "manifest.csv")
    assert out == tmp_path / "raw" / "Dataset012_BackpainEpi"
    doc = json.loads((out / "dataset.json").read_text())
    assert doc["channel_names"] == {"0": "water", "1": "fat"}
    assert doc["labels"] == EXPECTED_LABELS and doc["numTraining"] == 3 and doc["file_ending"] == ".nii.gz"
    assert doc["overwrite_image_reader_writer"] == "NibabelIOWithReorient"
    manifest = pd.read_csv(phantom_dir / "manifest.csv")
    for row in manifest.itertuples():
        water, affine = _load(out / "imagesTr" / f"{row.participant_id}_0000.nii.gz")
        fat, _ = _load(out / "imagesTr" / f"{row.participant_id}_0001.nii.gz")
        label, label_affine = _load(out / "labelsTr" / f"{row.participant_id}.nii.gz")
        src_water, src_affine = _load(phantom_dir / row.water)
        src_label, _ = _load(phantom_dir / row.label)
        np.testing.assert_allclose(water, src_water)
        assert fat.shape == label.shape == water.shape
        assert np.allclose(affine, src_affine) and np.allclose(label_affine, src_affine)
        np.testing.assert_array_equal(label, src_label)
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == sorted(
        f"{pid}_{c}.nii.gz" for pid in manifest["participant_id"] for c in ("0000", "0001"))


def test_dataset_and_training_read_a_semicolon_latin1_manifest(phantom_dir, tmp_path):
    """``sep`` and ``encoding`` reach the manifest's reader in write_nnunet_dataset and in train_nnunet's case count."""
    shutil.copytree(phantom_dir, tmp_path / "Rücken")
    manifest = pd.read_csv(phantom_dir / "manifest.csv")
    for col in ("water", "fat", "label"):
        manifest[col] = "Rücken/" + manifest[col]
    manifest.to_csv(tmp_path / "m.csv", sep=";", index=False, encoding="latin-1")
    with pytest.raises(InputFileError, match="not valid utf-8 text"):
        nnunet.write_nnunet_dataset(tmp_path / "raw", 13, manifest=tmp_path / "m.csv")
    out = nnunet.write_nnunet_dataset(tmp_path / "raw", 13, manifest=tmp_path / "m.csv", sep=";", encoding="latin-1")
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == 3
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == sorted(f"{pid}.nii.gz" for pid in manifest["participant_id"])
    # the case count is read before any training: three cases are too few for fold 0
    with pytest.raises(BackpainEpiError, match=r"needs at least 5 cases \(3 given\)"):
        nnunet.train_nnunet(tmp_path / "model", manifest=tmp_path / "m.csv", fold=0, sep=";", encoding="latin-1")


def test_dataset_from_phantoms_water_only(tmp_path):
    out = nnunet.write_nnunet_dataset(tmp_path / "raw", 3, phantoms=(2, 5), channels=("water",), name="Tiny",
                                      phantom_protocol=TINY)
    doc = json.loads((out / "dataset.json").read_text())
    assert out.name == "Dataset003_Tiny" and doc["channel_names"] == {"0": "water"} and doc["numTraining"] == 2
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == ["PH5-0000_0000.nii.gz", "PH5-0001_0000.nii.gz"]
    label, _ = _load(out / "labelsTr" / "PH5-0000.nii.gz")
    assert set(np.unique(label).tolist()) == {0, 1, 2, 3, 4}


def test_dataset_refuses_bad_input(phantom_dir, tmp_path):
    import nibabel as nib

    src = tmp_path / "in"
    shutil.copytree(phantom_dir, src)
    manifest = pd.read_csv(src / "manifest.csv")
    label_path = src / manifest.loc[1, "label"]
    img = nib.load(label_path)
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj)[:-1], img.affine), label_path)  # one slice short
    with pytest.raises(InputFileError, match=f"{manifest.loc[1, 'participant_id']}.*not on the image grid"):
        nnunet.write_nnunet_dataset(tmp_path / "raw", 4, manifest=src / "manifest.csv")
    assert not (tmp_path / "raw" / "Dataset004_BackpainEpi").exists()  # no half dataset

    ok = nnunet.write_nnunet_dataset(tmp_path / "raw", 5, manifest=phantom_dir / "manifest.csv")
    with pytest.raises(InputFileError, match="^dataset_id 5: .*exists"):
        nnunet.write_nnunet_dataset(tmp_path / "raw", 5, manifest=phantom_dir / "manifest.csv", name="Other")
    assert ok.exists()
    with pytest.raises(BackpainEpiError, match=r"^channels \('fat', 't1'\): use \('water', 'fat'\)"):
        nnunet.write_nnunet_dataset(tmp_path / "raw", 6, manifest=phantom_dir / "manifest.csv", channels=("fat", "t1"))
    with pytest.raises(BackpainEpiError, match=r"either an annotated manifest \(manifest=FILE\) or phantoms"):
        nnunet.write_nnunet_dataset(tmp_path / "raw", 7)

    big = tmp_path / "big"
    shutil.copytree(phantom_dir, big)
    first = big / manifest.loc[0, "label"]
    data, affine = _load(first)
    nib.save(nib.Nifti1Image((data * 10).astype(np.uint8), affine), first)  # IDs 10-40: another tool's
    with pytest.raises(InputFileError, match="pass label_scheme=SCHEME to map them"):
        nnunet.write_nnunet_dataset(tmp_path / "raw", 8, manifest=big / "manifest.csv")


# --------------------------------------------------------------------------- model-folder checks


@pytest.fixture
def model_dir(tmp_path):
    """A model folder with the files ``check`` looks at (the checkpoint is an empty file: it is not loaded)."""
    folder = tmp_path / "Dataset777_X" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "water", "1": "fat"}, "labels": EXPECTED_LABELS,
                                                     "numTraining": 5, "file_ending": ".nii.gz"}))
    (folder / "plans.json").write_text(json.dumps({"image_reader_writer": "SimpleITKIO", "configurations": {}}))
    (folder / "fold_0" / "checkpoint_final.pth").write_bytes(b"")
    return folder


def _spec(folder, **kw):
    return EngineSpec(engine="nnunet", model=str(folder), device="cpu", **kw)


def test_check_accepts_a_complete_folder(model_dir):
    _spec(model_dir).check()
    info = nnunet.read_model_folder(_spec(model_dir))
    assert info["channels"] == ("water", "fat") and info["folds"] == [0]
    assert dict(info["scheme"].mapping) == {1: 1, 2: 2, 3: 3, 4: 4}


@pytest.mark.parametrize("remove, pattern", [
    ("dataset.json", r"dataset\.json not found"),
    ("plans.json", r"plans\.json not found"),
    ("fold_0/checkpoint_final.pth", r"no fold_N/checkpoint_final\.pth"),
])
def test_check_names_the_missing_file(model_dir, remove, pattern):
    (model_dir / remove).unlink()
    with pytest.raises(InputFileError, match=pattern) as err:
        _spec(model_dir).check()
    assert str(err.value).startswith(f"model {model_dir}") and err.value.param == "model" and "\n" not in str(err.value)


def test_check_hints(model_dir):
    with pytest.raises(InputFileError, match=f"did you mean model={model_dir}"):
        _spec(model_dir.parent).check()  # the dataset folder instead of the model folder
    with pytest.raises(InputFileError, match="^model .*nope: folder not found"):
        _spec(model_dir / "nope").check()
    with pytest.raises(BackpainEpiError, match="^engine nnunet needs model=FOLDER: a trained nnU-Net v2 model folder"):
        EngineSpec(engine="nnunet").check()
    (model_dir / "fold_0" / "checkpoint_final.pth").rename(model_dir / "fold_0" / "checkpoint_latest.pth")
    with pytest.raises(InputFileError, match="pass checkpoint=checkpoint_latest.pth"):
        _spec(model_dir).check()
    _spec(model_dir, checkpoint="checkpoint_latest.pth").check()
    with pytest.raises(InputFileError, match="^folds: .*fold_3"):
        _spec(model_dir, checkpoint="checkpoint_latest.pth", folds=(0, 3)).check()
    (model_dir / "plans.json").write_text("{not json")
    with pytest.raises(InputFileError, match="not readable JSON"):
        _spec(model_dir).check()


@pytest.mark.parametrize("names, ok", [
    ({"0": "water", "1": "fat"}, ("water", "fat")),
    ({"0": "Water"}, ("water",)),
    ({"0": "dixon_fat", "1": "W"}, ("fat", "water")),
    ({"0": "T1"}, None),
    ({"0": "CT"}, None),
    ({"0": "water", "1": "water"}, None),
    ({"0": "water", "2": "fat"}, None),
])
def test_channels(model_dir, names, ok):
    doc = json.loads((model_dir / "dataset.json").read_text())
    (model_dir / "dataset.json").write_text(json.dumps({**doc, "channel_names": names}))
    if ok:
        assert nnunet.read_model_folder(_spec(model_dir))["channels"] == ok
    else:
        with pytest.raises(InputFileError, match="cannot be fed from a Dixon pair"):
            _spec(model_dir).check()


def test_labels_need_our_structures_or_a_scheme(model_dir, tmp_path):
    doc = json.loads((model_dir / "dataset.json").read_text())
    labels = {"background": 0, "erector_spinae_left": 1, "erector_spinae_right": 2, "liver": 3, "iliopsoas_left": 4,
              "iliopsoas_right": 5}
    (model_dir / "dataset.json").write_text(json.dumps({**doc, "labels": labels}))
    assert dict(nnunet.read_model_folder(_spec(model_dir))["scheme"].mapping) == {1: 1, 2: 2, 4: 3, 5: 4}
    (model_dir / "dataset.json").write_text(json.dumps({**doc, "labels": {"background": 0, "muscle": 1}}))
    with pytest.raises(InputFileError, match=r"^model .*dataset\.json labels \(or pass label_scheme=SCHEME\): label scheme"):
        _spec(model_dir).check()
    scheme = tmp_path / "scheme.yaml"
    scheme.write_text("labels: {1: autochthon_left, 2: autochthon_right, 3: psoas_left, 4: psoas_right}\n")
    _spec(model_dir, label_scheme=str(scheme)).check()


# --------------------------------------------------------------------------- trainers and paths


@pytest.mark.slow
def test_trainer_lookup_avoids_timm():
    had_timm = "timm" in sys.modules
    assert nnunet.trainer_class("nnUNetTrainer_Tiny").__name__ == "nnUNetTrainer_Tiny"
    assert nnunet.trainer_class("nnUNetTrainer_2000epochs_NoMirroring").__name__ == "nnUNetTrainer_2000epochs_NoMirroring"
    assert had_timm or "timm" not in sys.modules
    from backpain_epi.segmentation.nnunet import nnUNetTrainer_Short  # module __getattr__

    assert nnUNetTrainer_Short is nnunet.trainer_class("nnUNetTrainer_Short")


def test_trainer_module_for_nnunet_commands(tmp_path, monkeypatch):
    path = nnunet.write_trainer_module(tmp_path / "trainers")
    monkeypatch.syspath_prepend(str(path.parent))
    module = __import__(path.stem)
    assert module.nnUNetTrainer_Tiny is nnunet.trainer_class("nnUNetTrainer_Tiny")


def test_paths_are_restored(tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_raw", "/elsewhere")
    monkeypatch.delenv("nnUNet_results", raising=False)
    with nnunet.nnunet_paths(tmp_path) as paths:
        from nnunetv2.paths import nnUNet_raw, nnUNet_results

        assert os.fspath(nnUNet_raw) == str(tmp_path / "nnUNet_raw") == str(paths["nnUNet_raw"])
        assert os.fspath(nnUNet_results) == str(tmp_path / "nnUNet_results")
    assert os.environ["nnUNet_raw"] == "/elsewhere" and "nnUNet_results" not in os.environ


def test_train_refuses_before_work(tmp_path):
    with pytest.raises(BackpainEpiError, match="^fold 0: .*at least 5 cases.*pass fold=all"):
        nnunet.train_nnunet(tmp_path / "m", n_phantoms=2, phantom_protocol=TINY, trainer="nnUNetTrainer_Tiny")
    with pytest.raises(BackpainEpiError, match="^configuration: unknown configuration '3d'"):
        nnunet.train_nnunet(tmp_path / "m", n_phantoms=2, configuration="3d", fold="all")
    with pytest.raises(InputFileError, match="^trainer: nnU-Net trainer 'nnUNetTrainer_Nope'"):
        nnunet.train_nnunet(tmp_path / "m", n_phantoms=2, trainer="nnUNetTrainer_Nope", fold="all")
    assert not (tmp_path / "m").exists()


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny nnU-Net trained on 3 coarse phantoms on the CPU (the one training of these tests); ``(folder, seconds)``."""
    tmp = tmp_path_factory.mktemp("nnunet")
    start = time.perf_counter()
    model = nnunet.train_nnunet(tmp / "model", n_phantoms=3, phantom_seed=11, phantom_protocol=TINY, fold="all",
                                trainer="nnUNetTrainer_Tiny", device="cpu", base_features=4, work_dir=tmp / "work")
    return model, time.perf_counter() - start


@pytest.mark.slow
def test_tiny_nnunet_end_to_end(tiny_model, tmp_path, phantom_dir):
    """Train (fixture), then segment through the engine and the batch: our labels, on the input grid."""
    from backpain_epi.segmentation import batch
    from backpain_epi.segmentation.io import DixonPair
    from backpain_epi.segmentation.phantom import make_phantom

    model, _ = tiny_model
    for name in ("dataset.json", "plans.json", "fold_all/checkpoint_final.pth", "backpain_epi.json"):
        assert (model / name).is_file()
    assert not (model / "fold_all" / "checkpoint_latest.pth").exists()
    assert not os.environ.get("nnUNet_raw", "").startswith(str(model.parent))  # the work paths were restored

    spec = EngineSpec(engine="nnunet", model=str(model), device="cpu")
    engine = make_engine(spec)
    assert isinstance(engine, nnunet.NnunetEngine) and engine.channels == ("water", "fat") and engine.reorient
    for seed in (101, 102):  # other axis orders and flips than the training phantoms
        ph = make_phantom(seed, protocol=TINY)
        pair = DixonPair(ph.water.astype(np.float32), ph.fat.astype(np.float32), ph.affine)
        labels = engine.segment(pair, {"participant_id": f"s{seed}"})
        assert labels.shape == ph.water.shape and labels.dtype == np.uint8 and labels.max() <= 4

    result = batch.segment_manifest(phantom_dir / "manifest.csv", tmp_path / "out", engine=spec, progress=False)
    assert result.failures.empty and len(result.exposures) == 3
    for pid in result.exposures["participant_id"]:
        label, affine = _load(tmp_path / "out" / "labels" / f"{pid}.nii.gz")
        water, water_affine = _load(next(r["water"] for r in batch.read_manifest(phantom_dir / "manifest.csv")
                                         if r["participant_id"] == pid))
        assert label.shape == water.shape and np.allclose(affine, water_affine) and label.max() <= 4


@pytest.mark.slow
def test_nnunet_engine_on_a_dask_worker(tiny_model, tmp_path, phantom_dir):
    """Inside a (daemonic) Dask worker process: the engine starts no processes of its own."""
    from backpain_epi.segmentation import batch

    spec = EngineSpec(engine="nnunet", model=str(tiny_model[0]), device="cpu")
    result = batch.segment_manifest(phantom_dir / "manifest.csv", tmp_path / "out", engine=spec, workers=1, progress=False)
    assert result.failures.empty and len(result.exposures) == 3
