"""nnU-Net v2 behind the engine interface, and training one on the package's data.

- :class:`NnunetEngine` (``engine="nnunet"``, ``model=FOLDER``) segments with a
  trained nnU-Net v2 model folder (``dataset.json``, ``plans.json``,
  ``fold_*/checkpoint_final.pth``), in memory (``predict_single_npy_array``),
  without worker processes, so it also runs inside Dask workers.
- :func:`write_nnunet_dataset` writes an nnU-Net raw dataset from an annotated
  manifest or from phantoms; :func:`train_nnunet` plans, preprocesses and trains
  on it and copies the model folder out.

**Channels.** Channel ``0000`` is the water image, ``0001`` the fat image; the
model's ``dataset.json`` ``channel_names`` say which it was trained on (``water``
alone or both). **Orientation.** The datasets written here use nnU-Net's
``NibabelIOWithReorient`` (named in ``dataset.json``): every case is reoriented to
RAS, so scans stored with any axis order train one consistent model. The engine
feeds each model as its own reader did in training (``plans.json``
``image_reader_writer``): reoriented for that reader, as stored for
``SimpleITKIO``/``NibabelIO``; arrays go to nnU-Net in its (z, y, x) order.

**Paths.** nnU-Net reads ``nnUNet_raw``, ``nnUNet_preprocessed`` and
``nnUNet_results`` from the environment; :func:`train_nnunet` points them into its
``work_dir`` only while it runs and restores them afterwards (:func:`nnunet_paths`:
nnunetv2 2.8.1 reads them at each use; for a release that copied them at import,
the loaded modules' copies are patched too).

**Trainers.** :data:`TRAINERS` adds ``nnUNetTrainer_Tiny`` (1 epoch of 3
iterations, 1 validation iteration, no mirroring, for tests and smoke runs) and
``nnUNetTrainer_Short`` (50 epochs of 50); :func:`train_nnunet` and the engine
find them without nnU-Net's search. For nnU-Net's own command line, write a
module that exposes them (:func:`write_trainer_module`) and set
``nnUNet_extTrainer`` to its folder. Trainer classes are looked up among
nnU-Net's plain trainers and ``variants`` before nnU-Net's full search, which
imports the Primus trainers and with them timm and torchvision: a broken
torchvision build then does not stop plain U-Net models.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import io
import json
import os
import re
import shutil
import sys
import tempfile
from multiprocessing.pool import ThreadPool
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from ..errors import BackpainEpiError, InputFileError, unknown_choice
from .batch import read_manifest
from .engines import Engine, EngineSpec
from .exposures import LABEL_NAMES
from .io import Grid, ScanError, load_dixon, load_label_map, save_nifti
from .network import resolve_device
from .phantom import write_phantoms
from .schemes import load_scheme, scheme_from_label_names

#: nnU-Net ``labels`` of the datasets written here: the package's structure names and IDs
NNUNET_LABELS = {"background": 0, **{name: lab for lab, name in LABEL_NAMES.items()}}
CHANNELS = ("water", "fat")
READER = "NibabelIOWithReorient"
CONFIGURATIONS = ("2d", "3d_fullres", "3d_lowres")
PATH_VARS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
INSTALL = "pip install 'backpain-epi[nnunet]'"
#: extra trainers: name -> (epochs, iterations per epoch, validation iterations, mirroring)
TRAINERS = {"nnUNetTrainer_Tiny": (1, 3, 1, False), "nnUNetTrainer_Short": (50, 50, 10, True)}
_TRAINER_CLASSES: dict = {}


# --------------------------------------------------------------------------- the engine


class NnunetEngine(Engine):
    """A trained nnU-Net v2 model folder (``spec.model``), its folds ensembled, on ``spec.device``."""

    def __init__(self, spec: EngineSpec):
        self.info = read_model_folder(spec)
        self.scheme = self.info["scheme"]
        self.channels = self.info["channels"]
        self.reorient = self.info["plans"].get("image_reader_writer") == READER
        self.device = resolve_device(spec.device)
        self.predictor = _build_predictor(Path(spec.model), self.info, spec.checkpoint, self.device)

    @classmethod
    def check(cls, spec: EngineSpec) -> None:
        read_model_folder(spec)

    def predict(self, pair, row):
        grid = Grid.plan(pair.water.shape, pair.affine, (1.0, 1.0, 1.0))
        images = {"water": pair.water, "fat": pair.fat}
        if self.reorient:
            arrays, spacing = [grid.to_canonical(images[c]) for c in self.channels], grid.spacing
        else:
            arrays = [images[c] for c in self.channels]
            spacing = tuple(float(s) for s in np.sqrt((pair.affine[:3, :3] ** 2).sum(axis=0)))
        data = np.stack(arrays).transpose(0, 3, 2, 1).astype(np.float32)  # nibabel (x, y, z) -> nnU-Net (z, y, x)
        seg = np.asarray(self.predictor.predict_single_npy_array(data, {"spacing": list(spacing[::-1])})).transpose(2, 1, 0)
        return grid.from_canonical(seg) if self.reorient else np.ascontiguousarray(seg)


def read_model_folder(spec: EngineSpec) -> dict:
    """Check an nnU-Net model folder without loading weights.

    Returns
    -------
    dict
        ``dataset_json``, ``plans``, ``channels`` (:func:`model_channels`), ``folds``
        (:func:`model_folds`) and ``scheme`` (``spec.label_scheme``, else from the labels' names).

    Raises
    ------
    BackpainEpiError
        nnunetv2 not installed, or no ``model``.
    InputFileError
        A missing or unreadable file (named, with the fix), channels other than
        water and fat, labels the scheme cannot map, no fold with the checkpoint.
    """
    if importlib.util.find_spec("nnunetv2") is None:
        raise BackpainEpiError(f"nnunet needs nnU-Net v2, which is not installed; install it with: {INSTALL}.",
                               param="engine")
    if not spec.model:
        raise BackpainEpiError("nnunet needs model=FOLDER: a trained nnU-Net v2 model folder "
                               "(dataset.json, plans.json, fold_*/checkpoint_final.pth).", param="engine")
    folder = Path(spec.model).expanduser()
    if not folder.is_dir():
        raise InputFileError(f"{folder}: folder not found; give a trained nnU-Net v2 model folder "
                             "(nnUNet_results/DatasetXXX_Name/<trainer>__<plans>__<configuration>).", param="model")
    docs = {}
    for name in ("dataset.json", "plans.json"):
        path = folder / name
        if not path.is_file():
            inner = sorted(p.parent.name for p in folder.glob(f"*__*__*/{name}"))
            hint = (f"did you mean model={folder / inner[0]}?" if inner else
                    "give the model folder that nnU-Net training wrote "
                    "(nnUNet_results/DatasetXXX_Name/<trainer>__<plans>__<configuration>)")
            raise InputFileError(f"{folder}: {name} not found; {hint}.", param="model")
        try:
            docs[name] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputFileError(f"{path}: not readable JSON ({type(exc).__name__}); "
                                 "copy it again from the nnU-Net results folder.", param="model") from None
    dataset_json, plans = docs["dataset.json"], docs["plans.json"]
    channels = model_channels(dataset_json, folder / "dataset.json", param="model")
    if spec.label_scheme:
        scheme = load_scheme(spec.label_scheme)
    else:
        labels = dataset_json.get("labels")
        if not isinstance(labels, dict):
            raise InputFileError(f"{folder / 'dataset.json'}: no 'labels' mapping; pass label_scheme=SCHEME.", param="model")
        scheme = scheme_from_label_names(labels, name=f"nnunet:{folder.name}", param="model",
                                         source=f"{folder / 'dataset.json'} labels (or pass label_scheme=SCHEME)")
    return {"dataset_json": dataset_json, "plans": plans, "channels": channels, "scheme": scheme,
            "folds": model_folds(folder, spec.folds, spec.checkpoint)}


def model_channels(dataset_json: dict, source, param: str | None = None) -> tuple[str, ...]:
    """The images a model takes, in channel order (``("water",)``, ``("water", "fat")``, ...), from ``channel_names``.

    Names are matched loosely (``Water``, ``dixon_water``, ``W`` are water). Errors start with
    ``source`` (the file) and name the parameter ``param`` that gave it.
    """
    names = dataset_json.get("channel_names", dataset_json.get("modality"))
    if not isinstance(names, dict) or not names:
        raise InputFileError(f"{source}: no 'channel_names'; expected e.g. {{\"0\": \"water\", \"1\": \"fat\"}}.",
                             param=param)
    try:
        ordered = [names[k] for k in sorted(names, key=int)]
    except ValueError:
        raise InputFileError(f"{source}: channel_names keys {list(names)} are not channel numbers 0, 1, ...",
                             param=param) from None
    found = []
    for name in ordered:
        key = re.sub(r"[^a-z]", "", str(name).lower())
        found.append("water" if key in ("w", "water") or key.endswith("water") else
                     "fat" if key in ("f", "fat") or key.endswith("fat") else None)
    if None in found or len(set(found)) != len(found) or sorted(names, key=int) != [str(i) for i in range(len(names))]:
        raise InputFileError(f"{source}: channels {ordered} cannot be fed from a Dixon pair; this engine gives "
                             "water and/or fat images (channel_names such as {\"0\": \"water\", \"1\": \"fat\"}): "
                             "use a model trained on them.", param=param)
    return tuple(found)


def model_folds(folder: Path, folds, checkpoint: str) -> list:
    """``folds`` checked to hold ``checkpoint``; default every ``fold_N`` that holds it (else ``fold_all``)."""
    folder = Path(folder)
    if folds:
        wanted = [f if str(f) == "all" else int(f) for f in folds]
        missing = [folder / f"fold_{f}" / checkpoint for f in wanted if not (folder / f"fold_{f}" / checkpoint).is_file()]
        if missing:
            raise InputFileError(f": {missing[0]} not found; choose folds that hold {checkpoint} "
                                 f"({_fold_summary(folder, checkpoint)}).", param="folds")
        return wanted
    numbered = sorted(int(p.parent.name[5:]) for p in folder.glob(f"fold_*/{checkpoint}") if p.parent.name[5:].isdigit())
    if numbered:
        return numbered
    if (folder / "fold_all" / checkpoint).is_file():
        return ["all"]
    others = sorted({p.name for p in folder.glob("fold_*/checkpoint_*.pth")})
    hint = f"; found {', '.join(others)}: pass checkpoint={others[0]} (or finish the training)" if others else \
        "; train the model first or copy its fold_N folders here"
    raise InputFileError(f"{folder}: no fold_N/{checkpoint}{hint}.", param="model")


def _fold_summary(folder: Path, checkpoint: str) -> str:
    have = sorted(p.parent.name for p in folder.glob(f"fold_*/{checkpoint}"))
    return "found: " + ", ".join(have) if have else "none found"


def _build_predictor(folder: Path, info: dict, checkpoint_name: str, device):
    """``nnUNetPredictor`` initialised like ``initialize_from_trained_model_folder``, with our trainer lookup."""
    # lazy: nnU-Net v2 is an optional extra (this module must import without it) and slow to import
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans_manager = PlansManager(info["plans"])
    parameters, first = [], None
    for fold in info["folds"]:
        path = folder / f"fold_{fold}" / checkpoint_name
        try:  # nnU-Net checkpoints hold more than tensors (as nnU-Net itself loads them)
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
            parameters.append(ckpt["network_weights"])
        except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
            raise InputFileError(f"{path}: not an nnU-Net checkpoint ({type(exc).__name__}: {exc}); "
                                 "copy the fold folder again or pass checkpoint=NAME.", param="model") from None
        first = first or ckpt
    try:
        configuration_manager = plans_manager.get_configuration(first["init_args"]["configuration"])
    except (KeyError, RuntimeError) as exc:
        raise InputFileError(f"{folder}: plans.json and the checkpoint do not match ({exc}); "
                             "copy plans.json from the same training.", param="model") from None
    trainer = trainer_class(first["trainer_name"], param="model", value=folder)
    dataset_json = info["dataset_json"]
    channels = determine_num_input_channels(plans_manager, configuration_manager, dataset_json)
    heads = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    if "plans_manager" in inspect.signature(trainer.build_network_architecture).parameters:
        network = trainer.build_network_architecture(plans_manager, configuration_manager, channels, heads,
                                                     enable_deep_supervision=False)
    else:  # the older signature (nnU-Net still accepts it, with a warning)
        cm = configuration_manager
        network = trainer.build_network_architecture(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                                     cm.network_arch_init_kwargs_req_import, channels, heads,
                                                     enable_deep_supervision=False)
    network.load_state_dict(parameters[0])
    with contextlib.redirect_stdout(io.StringIO()):  # it prints a notice on the CPU whatever it is given
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                    perform_everything_on_device=device.type == "cuda", device=device,
                                    verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    predictor.manual_initialization(network, plans_manager, configuration_manager, parameters, dataset_json,
                                    first["trainer_name"], first.get("inference_allowed_mirroring_axes"))
    return predictor


# --------------------------------------------------------------------------- trainers


def trainer_class(name: str, param: str = "trainer", value=None):
    """The nnU-Net trainer class called ``name``: ours, nnU-Net's plain and ``variants`` ones, then nnU-Net's search.

    An error names the parameter ``param`` that asked for it (with ``value``, when that is not the name itself).
    """
    # lazy: nnU-Net v2 is an optional extra (this module must import without it) and slow to import
    import nnunetv2
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    if name in TRAINERS:
        return _tiny_trainers()[name]
    if name == "nnUNetTrainer":
        return nnUNetTrainer
    variants = os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer", "variants")
    found = recursive_find_python_class(variants, name, "nnunetv2.training.nnUNetTrainer.variants")
    if found is not None:
        return found
    try:  # nnU-Net's own search: the Primus trainers (imports timm, torchvision) and nnUNet_extTrainer
        # lazy: this search imports timm and torchvision; only a trainer found nowhere else needs it
        from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

        return recursive_find_trainer_class_by_name(name)
    except Exception as exc:  # noqa: BLE001 - an import deep in nnU-Net or its dependencies failed
        raise InputFileError(f"{'' if value is None else value}: nnU-Net trainer {name!r} not found or not importable "
                             f"({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}); set nnUNet_extTrainer to the folder "
                             "of its module, or repair the install (a torchvision that does not match torch breaks "
                             "nnU-Net's trainer search).", param=param) from None


def _tiny_trainers() -> dict:
    """The classes of :data:`TRAINERS` (built on first use: importing nnU-Net is slow)."""
    if _TRAINER_CLASSES:
        return _TRAINER_CLASSES
    # lazy: nnU-Net v2 is an optional extra (this module must import without it) and slow to import
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    def make(name, epochs, iterations, val_iterations, mirroring):
        def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                     device: torch.device = torch.device("cuda")):
            nnUNetTrainer.__init__(self, plans, configuration, fold, dataset_json, device)
            self.num_epochs, self.num_iterations_per_epoch = epochs, iterations
            self.num_val_iterations_per_epoch = val_iterations

        def configure(self):
            rotation, dummy_2d, patch, axes = nnUNetTrainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size(self)
            if not mirroring:
                self.inference_allowed_mirroring_axes = axes = None
            return rotation, dummy_2d, patch, axes

        doc = f"nnU-Net trainer of backpain-epi: {epochs} epoch(s) of {iterations} iterations" + \
            ("" if mirroring else ", no mirroring (in augmentation and at inference)") + "."
        return type(name, (nnUNetTrainer,), {"__init__": __init__, "__doc__": doc, "__module__": __name__,
                                             "configure_rotation_dummyDA_mirroring_and_inital_patch_size": configure})

    _TRAINER_CLASSES.update({name: make(name, *cfg) for name, cfg in TRAINERS.items()})
    return _TRAINER_CLASSES


def __getattr__(name):  # ``from backpain_epi.segmentation.nnunet import nnUNetTrainer_Tiny`` (see write_trainer_module)
    if name in TRAINERS:
        return _tiny_trainers()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def write_trainer_module(folder) -> Path:
    """Write ``backpain_epi_nnunet_trainers.py`` into ``folder``: set ``nnUNet_extTrainer`` to ``folder`` and
    nnU-Net's own commands (``nnUNetv2_train -tr nnUNetTrainer_Tiny``, ``nnUNetv2_predict``) find :data:`TRAINERS`."""
    path = Path(folder).expanduser() / "backpain_epi_nnunet_trainers.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('"""Trainers of backpain-epi for nnU-Net (nnUNet_extTrainer)."""\n'
                    f"from backpain_epi.segmentation.nnunet import {', '.join(TRAINERS)}  # noqa: F401\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- datasets and training


@contextlib.contextmanager
def nnunet_paths(work_dir):
    """Point ``nnUNet_raw``/``_preprocessed``/``_results`` at ``work_dir/<name>`` while inside; restored afterwards."""
    work = Path(work_dir)
    values = {var: str(work / var) for var in PATH_VARS}
    saved_env = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    patched = []
    for mod in [m for n, m in list(sys.modules.items()) if n.startswith("nnunetv2") and m is not None]:
        for var in PATH_VARS:  # copies made at import (plain strings); 2.8.1 holds lazy objects that read os.environ
            if isinstance(getattr(mod, var, 0), (str, type(None))):
                patched.append((mod, var, getattr(mod, var)))
                setattr(mod, var, values[var])
    try:
        for var in PATH_VARS:
            Path(values[var]).mkdir(parents=True, exist_ok=True)
        yield {var: Path(values[var]) for var in PATH_VARS}
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for mod, var, v in patched:
            setattr(mod, var, v)


def write_nnunet_dataset(raw_dir, dataset_id: int, *, manifest=None, phantoms=None, channels=CHANNELS,
                         name: str = "BackpainEpi", label_scheme=None, phantom_protocol="train", progress: bool = False,
                         sep: str | None = None, encoding: str = "utf-8", decimal: str = ".") -> Path:
    """Write an nnU-Net v2 raw dataset ``raw_dir/DatasetXXX_<name>`` and return its folder.

    Parameters
    ----------
    raw_dir
        The ``nnUNet_raw`` folder.
    dataset_id
        nnU-Net dataset ID, 1–999.
    manifest
        An annotated manifest (``participant_id``, ``water``, ``fat``, ``label``); labels on the image grid.
    phantoms
        ``(n, seed)``: draw that many phantoms instead (:func:`~.phantom.write_phantoms`, ``phantom_protocol``).
    channels
        ``("water", "fat")`` (channels 0000, 0001) or ``("water",)``.
    label_scheme
        How the manifest's label IDs map to ours (see :mod:`.schemes`); default: they are ours (0–4).
    sep, encoding, decimal
        How the manifest's text is read (see :func:`.batch.read_manifest`); the phantoms' manifest
        is read as written.

    Returns
    -------
    pathlib.Path
        ``imagesTr/<id>_0000.nii.gz`` (water), ``_0001`` (fat), ``labelsTr/<id>.nii.gz`` and
        ``dataset.json`` (``channel_names``, ``labels`` with our structure names, ``numTraining``,
        ``file_ending``, ``overwrite_image_reader_writer``).
    """
    channels = tuple(channels)
    if channels not in (("water",), ("water", "fat"), ("fat", "water")):
        raise BackpainEpiError(f"{channels}: use ('water', 'fat') or ('water',).", param="channels")
    if not 1 <= int(dataset_id) <= 999:
        raise BackpainEpiError(f"{dataset_id}: nnU-Net dataset IDs are 1–999.", param="dataset_id")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise BackpainEpiError(f"{name!r}: use letters, digits, '_' and '-' only.", param="name")
    if (manifest is None) == (phantoms is None):
        raise BackpainEpiError("give either an annotated manifest (manifest=FILE) or phantoms (phantoms=(N, SEED)), "
                               "not both or neither.")
    raw_dir = Path(raw_dir)
    taken = [p.name for p in raw_dir.glob(f"Dataset{int(dataset_id):03d}_*")]
    if taken:
        raise InputFileError(f"{dataset_id}: {raw_dir / taken[0]} exists; choose another ID or remove it.", param="dataset_id")
    with tempfile.TemporaryDirectory(prefix="backpain_phantoms_") as tmp:
        reading = {"sep": sep, "encoding": encoding, "decimal": decimal}
        if phantoms is not None:
            n, seed = phantoms
            manifest = write_phantoms(tmp, int(n), seed=int(seed), protocol=phantom_protocol, progress=progress)
            reading = {}  # the package's own file
        rows = read_manifest(manifest, require_label=True, **reading)
        scheme = load_scheme(label_scheme) if label_scheme else None
        out = raw_dir / f"Dataset{int(dataset_id):03d}_{name}"
        try:
            _write_cases(out, rows, manifest, channels, scheme)
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)  # no half dataset left behind
            raise
    doc = {"name": name, "description": "written by backpain-epi (segmentation.nnunet.write_nnunet_dataset)",
           "channel_names": {str(i): c for i, c in enumerate(channels)}, "labels": NNUNET_LABELS,
           "numTraining": len(rows), "file_ending": ".nii.gz", "overwrite_image_reader_writer": READER}
    (out / "dataset.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return out


def _write_cases(out: Path, rows: list, manifest, channels, scheme) -> None:
    """Each row's images and label map, checked, into ``imagesTr``/``labelsTr``."""
    for row in rows:
        pid = row["participant_id"]
        try:
            pair = load_dixon(row["water"], row["fat"])
            ids = load_label_map(row["label"], pair)
        except ScanError as exc:
            raise InputFileError(f"{manifest}: participant {pid}: {exc}.") from None
        labels = scheme.apply(ids) if scheme else ids
        if labels.min() < 0 or labels.max() > 4:
            raise InputFileError(f"{manifest}: participant {pid}: label IDs {sorted(np.unique(labels).tolist())[:8]} "
                                 "are not the package's 0–4; pass label_scheme=SCHEME to map them.")
        images = {"water": pair.water, "fat": pair.fat}
        for i, channel in enumerate(channels):
            save_nifti(out / "imagesTr" / f"{pid}_{i:04d}.nii.gz", images[channel], pair.affine)
        save_nifti(out / "labelsTr" / f"{pid}.nii.gz", labels.astype(np.uint8), pair.affine)


def train_nnunet(out, *, manifest=None, n_phantoms: int | None = None, phantom_seed: int = 0,
                 phantom_protocol="train", channels=CHANNELS, configuration: str = "3d_fullres", fold=0,
                 trainer: str = "nnUNetTrainer", device: str = "cpu", work_dir=None, dataset_id: int = 777,
                 label_scheme=None, gpu_memory_target_gb: float | None = None, base_features: int | None = None,
                 validate: bool = False, da_processes: int = 0, quiet: bool = True, sep: str | None = None,
                 encoding: str = "utf-8", decimal: str = ".") -> Path:
    """Train an nnU-Net v2 model on an annotated manifest or phantoms; the model folder for :class:`NnunetEngine`.

    Writes the raw dataset (:func:`write_nnunet_dataset`), extracts the fingerprint,
    plans (``ExperimentPlanner``) and preprocesses ``configuration`` with one
    process each, trains ``fold``, and copies ``dataset.json``, ``plans.json``,
    ``dataset_fingerprint.json`` and ``fold_<fold>/`` to ``out``.

    Parameters
    ----------
    out
        Where the model folder goes (must not hold a model yet).
    manifest, n_phantoms, phantom_seed, phantom_protocol, channels, label_scheme
        The training data (see :func:`write_nnunet_dataset`).
    sep, encoding, decimal
        How the manifest's text is read (see :func:`.batch.read_manifest`).
    configuration, fold, trainer
        As for ``nnUNetv2_train``; ``trainer`` may be one of :data:`TRAINERS`
        (``nnUNetTrainer_Tiny`` for smoke tests) or any nnU-Net trainer.
    device
        ``cpu``, ``cuda`` or ``cuda:N``.
    work_dir
        Holds ``nnUNet_raw``, ``nnUNet_preprocessed``, ``nnUNet_results`` (kept);
        default a temporary folder, removed afterwards.
    gpu_memory_target_gb
        Passed to the planner (smaller: smaller patches).
    base_features
        Features of the first U-Net stage (nnU-Net's default 32, at most 10 times that
        deeper down); small values (4) give the quick models of smoke tests.
    validate
        Run nnU-Net's final validation (in worker processes) after training.
    da_processes
        Data-augmentation worker processes (``nnUNet_n_proc_DA``); 0: in the main process.
    quiet
        Send nnU-Net's console output to ``work_dir/nnunet.log``.
    """
    out = Path(out)
    if (out / "plans.json").exists():
        raise InputFileError(f"{out}: already holds an nnU-Net model; choose another folder or remove it.", param="out")
    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index:
        raise BackpainEpiError(f"{device}: nnU-Net training uses the first visible GPU; "
                               f"set CUDA_VISIBLE_DEVICES={dev.index} and pass device=cuda.", param="device")
    if configuration not in CONFIGURATIONS:
        raise BackpainEpiError(f": {unknown_choice('configuration', configuration, CONFIGURATIONS)}", param="configuration")
    fold = "all" if str(fold) == "all" else int(fold)
    if (manifest is None) == (n_phantoms is None):
        raise BackpainEpiError("give either an annotated manifest (manifest=FILE) or phantoms (n_phantoms=N), "
                               "not both or neither.")
    if fold != "all":
        n_cases = int(n_phantoms) if manifest is None else len(read_manifest(manifest, require_label=True, sep=sep,
                                                                             encoding=encoding, decimal=decimal))
        if n_cases < 5:
            raise BackpainEpiError(f"{fold}: nnU-Net's 5-fold split needs at least 5 cases ({n_cases} given); "
                                   "pass fold=all (train on all cases) or add cases.", param="fold")
    cls = trainer_class(trainer)
    owned = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="backpain_nnunet_") if owned else work_dir)
    try:
        with nnunet_paths(work) as paths:
            dataset = write_nnunet_dataset(paths["nnUNet_raw"], dataset_id, manifest=manifest, channels=channels,
                                           phantoms=None if manifest is not None else (n_phantoms, phantom_seed),
                                           label_scheme=label_scheme, phantom_protocol=phantom_protocol,
                                           sep=sep, encoding=encoding, decimal=decimal)
            log = open(work / "nnunet.log", "a", encoding="utf-8") if quiet else None
            with log or contextlib.nullcontext(), contextlib.redirect_stdout(log or sys.stdout):
                folder = _plan_and_train(int(dataset_id), configuration, fold, cls, torch.device(dev.type), validate,
                                         gpu_memory_target_gb, base_features, da_processes)
        out.mkdir(parents=True, exist_ok=True)
        for name in ("dataset.json", "plans.json", "dataset_fingerprint.json"):
            shutil.copy2(folder / name, out / name)
        shutil.copytree(folder / f"fold_{fold}", out / f"fold_{fold}", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("checkpoint_latest.pth", "validation"))
        (out / "backpain_epi.json").write_text(json.dumps({
            "trained_by": "backpain_epi.segmentation.nnunet.train_nnunet", "dataset": dataset.name,
            "source": str(manifest) if manifest is not None else f"{n_phantoms} phantoms, seed {phantom_seed}",
            "configuration": configuration, "fold": fold, "trainer": trainer}, indent=2), encoding="utf-8")
    finally:
        if owned:
            shutil.rmtree(work, ignore_errors=True)
    return out


def _plan_and_train(dataset_id, configuration, fold, cls, device, validate, gpu_memory_target_gb, base_features,
                    da_processes) -> Path:
    """Fingerprint, plan, preprocess (one process each), train; the trainer's output folder."""
    # lazy: nnU-Net v2 (and its batchgenerators) is an optional extra; its paths are read inside nnunet_paths()
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprint_dataset, plan_experiment_dataset
    from nnunetv2.experiment_planning.plan_and_preprocess_api import preprocess_dataset
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    with _pools_in_process():
        extract_fingerprint_dataset(dataset_id, num_processes=1, check_dataset_integrity=False, clean=True,
                                    verbose=False, show_progress_bar=False)
        planner = ExperimentPlanner
        if base_features:
            def __init__(self, *args, **kwargs):
                ExperimentPlanner.__init__(self, *args, **kwargs)
                self.UNet_base_num_features = int(base_features)
                self.UNet_max_features_2d = self.UNet_max_features_3d = 10 * int(base_features)

            planner = type("BackpainEpiPlanner", (ExperimentPlanner,), {"__init__": __init__})
        _, plans_name = plan_experiment_dataset(dataset_id, planner, gpu_memory_target_in_gb=gpu_memory_target_gb)
        preprocess_dataset(dataset_id, plans_name, configurations=(configuration,), num_processes=[1],
                           verbose=False, show_progress_bar=False)
    base = Path(os.fspath(nnUNet_preprocessed)) / convert_id_to_dataset_name(dataset_id)
    plans = load_json(str(base / f"{plans_name}.json"))
    if configuration not in plans["configurations"]:
        raise BackpainEpiError(f"{configuration}: nnU-Net did not plan it for these images "
                               f"(planned: {', '.join(plans['configurations'])}).", param="configuration")
    plans["continue_training"] = False
    trainer = cls(plans=plans, configuration=configuration, fold=fold, dataset_json=load_json(str(base / "dataset.json")),
                  device=device)
    saved = os.environ.get("nnUNet_n_proc_DA")
    os.environ["nnUNet_n_proc_DA"] = str(int(da_processes))  # 0: augmentation in this process (read when training starts)
    try:
        trainer.run_training()
        if validate:
            trainer.perform_actual_validation(False)
    finally:
        if saved is None:
            os.environ.pop("nnUNet_n_proc_DA", None)
        else:
            os.environ["nnUNet_n_proc_DA"] = saved
    return Path(trainer.output_folder_base)


@contextlib.contextmanager
def _pools_in_process():
    """Run the fingerprint and preprocessing "pools" as one thread in this process.

    nnU-Net 2.8 starts a ``spawn`` process pool there even for one process: each
    child imports torch and nnU-Net again (seconds) and re-runs the caller's main
    script, which breaks scripts without an ``if __name__ == "__main__":`` guard
    and daemonic Dask workers. A one-thread ``ThreadPool`` has the same interface.
    """
    # lazy: nnU-Net v2 is an optional extra (this module must import without it) and slow to import
    from nnunetv2.experiment_planning.dataset_fingerprint import fingerprint_extractor
    from nnunetv2.preprocessing.preprocessors import default_preprocessor

    shim = SimpleNamespace(get_context=lambda method=None: SimpleNamespace(Pool=lambda n=1: ThreadPool(1)))
    modules = [m for m in (fingerprint_extractor, default_preprocessor) if hasattr(m, "multiprocessing")]
    saved = [m.multiprocessing for m in modules]
    for m in modules:
        m.multiprocessing = shim
    try:
        yield
    finally:
        for m, orig in zip(modules, saved):
            m.multiprocessing = orig
