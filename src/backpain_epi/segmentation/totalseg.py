"""TotalSegmentator ``total_mr`` behind the engine interface, with local weights only.

The water image goes to ``totalsegmentator.python_api.totalsegmentator`` in
memory (task ``total_mr``, its default models: datasets 850 and 851); its label
map comes back on the input grid and the scheme ``totalsegmentator-total_mr``
(see :mod:`.schemes`) maps autochthon and iliopsoas to the package's labels.

Nothing is downloaded. TotalSegmentator fetches missing weights from the
internet; :meth:`TotalSegEngine.check` refuses instead, naming the folder it
looked in (:func:`totalseg_weights_dir`, resolved as TotalSegmentator 2.18
resolves it), and during a prediction its download and usage-statistics calls
are replaced by ones that do nothing but refuse (:func:`offline`). Its trainer
class is looked up without nnU-Net's full search (which imports timm and
torchvision; see :func:`.nnunet.trainer_class`), and the ``nnUNet_*`` path
variables TotalSegmentator sets for itself are restored afterwards.

TotalSegmentator runs nnU-Net's file-based prediction, which starts worker
processes: on Dask use workers that are not daemonic, or run serially. On the
CPU it uses every core while it runs (and then restores torch's thread count).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import InputFileError
from .engines import Engine, EngineSpec
from .network import resolve_device
from .nnunet import trainer_class
from .schemes import load_scheme

TASK = "total_mr"
SCHEME = "totalsegmentator-total_mr"
INSTALL = "pip install 'backpain-epi[totalseg]'"
#: what TotalSegmentator 2.18 uses for total_mr when its own tables cannot be read
FALLBACK_MODELS = {850: "Dataset850_TotalSegMRI_part1_organs_1088subj", 851: "Dataset851_TotalSegMRI_part2_muscles_1088subj"}
FALLBACK_TRAINER = "nnUNetTrainer_2000epochs_NoMirroring"


def totalseg_weights_dir() -> Path:
    """The folder TotalSegmentator reads weights from (as ``totalsegmentator.config.get_weights_dir`` in 2.18).

    ``$TOTALSEG_WEIGHTS_PATH`` if set; else ``$TOTALSEG_HOME_DIR/nnunet/results``;
    else ``~/.totalsegmentator/nnunet/results`` (``/tmp/.totalsegmentator`` when the home is ``/``).
    """
    if "TOTALSEG_WEIGHTS_PATH" in os.environ:
        return Path(os.environ["TOTALSEG_WEIGHTS_PATH"])
    if "TOTALSEG_HOME_DIR" in os.environ:
        home = Path(os.environ["TOTALSEG_HOME_DIR"])
    else:
        home = (Path("/tmp") if str(Path.home()) == "/" else Path.home()) / ".totalsegmentator"
    return home / "nnunet" / "results"


def total_mr_models() -> tuple[dict, str]:
    """``({task ID: weights folder (relative)}, trainer)`` of ``total_mr``, from the installed TotalSegmentator's tables."""
    try:
        # lazy: TotalSegmentator is an optional extra, and importing it imports torch and nnU-Net
        from totalsegmentator.map_tasks_config import TASK_CONFIGS, TASK_ID_WEIGHTS_CONFIGS

        config = TASK_CONFIGS[TASK]["sub_modes"]["default"]
        ids = config["task_id"] if isinstance(config["task_id"], list) else [config["task_id"]]
        folders = {}
        for tid in ids:
            info = TASK_ID_WEIGHTS_CONFIGS[tid]
            folders[tid] = str(Path(info.get("rel_path") or "") / info["foldername"])
        return folders, config["trainer"]
    except (ImportError, KeyError, TypeError):
        return dict(FALLBACK_MODELS), FALLBACK_TRAINER


def missing_total_mr_weights() -> list[str]:
    """The ``total_mr`` weights folders absent from :func:`totalseg_weights_dir` (or without their fold-0 checkpoint)."""
    root = totalseg_weights_dir()
    folders, trainer = total_mr_models()
    checkpoint = Path(f"{trainer}__nnUNetPlans__3d_fullres") / "fold_0" / "checkpoint_final.pth"
    return [name for name in folders.values() if not (root / name / checkpoint).is_file()]


class TotalSegEngine(Engine):
    """TotalSegmentator ``total_mr`` on the water image (its IDs; scheme ``totalsegmentator-total_mr``)."""

    def __init__(self, spec: EngineSpec):
        self.check(spec)
        self.scheme = load_scheme(SCHEME)
        device = resolve_device(spec.device)
        self.device = "cpu" if device.type == "cpu" else f"gpu:{device.index or 0}"

    @classmethod
    def check(cls, spec: EngineSpec) -> None:
        if importlib.util.find_spec("totalsegmentator") is None:
            raise InputFileError(f"totalsegmentator needs TotalSegmentator, which is not installed; "
                                 f"install it with: {INSTALL}.", param="engine")
        missing = missing_total_mr_weights()
        if missing:
            raise InputFileError(
                f"totalsegmentator: TotalSegmentator {TASK} weights not found in {totalseg_weights_dir()} "
                f"(missing: {', '.join(missing)}); nothing is downloaded: copy those folders there (from a machine where "
                f"`TotalSegmentator --task {TASK}` has run once), or set TOTALSEG_HOME_DIR (weights in its nnunet/results) "
                "or TOTALSEG_WEIGHTS_PATH to a folder that holds them.", param="engine")

    def predict(self, pair, row):
        # lazy: TotalSegmentator is an optional extra, and importing it imports torch and nnU-Net
        from totalsegmentator import python_api

        image = nib.Nifti1Image(np.asarray(pair.water, np.float32), pair.affine)
        image.set_qform(pair.affine, code=1)
        image.set_sform(pair.affine, code=1)
        with offline(python_api), contextlib.redirect_stdout(io.StringIO()):  # its notices ignore quiet=True
            seg = python_api.totalsegmentator(image, None, task=TASK, ml=True, device=self.device, quiet=True,
                                              nr_thr_resamp=1, nr_thr_saving=1, statistics=False, preview=False)
        return np.rint(np.asanyarray(seg.dataobj)).astype(np.int64)


@contextlib.contextmanager
def offline(python_api):
    """While inside: TotalSegmentator cannot download (missing weights raise :class:`InputFileError`) or send
    usage statistics, finds its ``total_mr`` trainer without importing timm, and leaves ``nnUNet_*`` as they were."""
    # lazy: TotalSegmentator is an optional extra, and importing it imports torch and nnU-Net
    from totalsegmentator import nnunet as ts_nnunet

    def no_download(task_id):
        folders, _ = total_mr_models()
        name = folders.get(task_id)
        if name is None or not (totalseg_weights_dir() / name).exists():
            raise InputFileError(f"totalsegmentator: TotalSegmentator asked for the weights of task {task_id} "
                                 f"({name or 'not a total_mr model'}), which are not in {totalseg_weights_dir()}; "
                                 "nothing is downloaded: copy them there.", param="engine")

    _, trainer = total_mr_models()
    saved_env = {k: os.environ.get(k) for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    saved = {"download_pretrained_weights": python_api.download_pretrained_weights,
             "send_usage_stats": python_api.send_usage_stats}
    custom = getattr(ts_nnunet, "custom_trainers", None)
    added = isinstance(custom, dict) and trainer not in custom
    if added:
        custom[trainer] = trainer_class(trainer, param="engine", value="totalsegmentator")
    python_api.download_pretrained_weights = no_download
    python_api.send_usage_stats = lambda *args, **kwargs: None
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(python_api, name, fn)
        if added:
            custom.pop(trainer, None)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
