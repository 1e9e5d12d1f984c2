"""Segmentation engines behind one interface.

Every engine turns a checked :class:`~backpain_epi.segmentation.io.DixonPair` (and
its manifest row) into a label map on the input's own grid; the batch
(:mod:`.batch`) does everything else the same way for all of them: reading and
checking the scans, the fat fraction, the exposures and QC, atomic writing,
resume, Dask and the failures table (the folder's layout: :mod:`.output`).

=====================  ======================================================================
``builtin``            the package's MONAI UNet (``weights``; default the shipped weights)
``nnunet``             a trained nnU-Net v2 model folder (``model``), through ``nnUNetPredictor``
``totalsegmentator``   TotalSegmentator ``total_mr`` on the water image, with local weights only
``labels``             existing label maps: the manifest's ``label`` column, mapped by ``label_scheme``
=====================  ======================================================================

An :class:`EngineSpec` is plain data (picklable for Dask workers, and the key
recorded with each participant's result); :func:`make_engine` builds the engine
once per process and spec. :meth:`EngineSpec.check` fails before any work, with a
message naming the parameter (``param``) and the fix.
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from ..errors import BackpainEpiError, unknown_choice
from .infer import Segmenter
from .io import DixonPair, ScanError, load_label_map
from .network import check_mirror_axes, default_weights_path, load_weights, make_inferer, resolve_device
from .output import file_stamp
from .schemes import LabelScheme, load_scheme
from .uncertainty import METHOD as SE_METHOD, SeCalibration, calibration_path, load_calibration

#: engine name -> "module:Class" (imported only when used: nnU-Net and TotalSegmentator are optional extras)
ENGINES = {
    "builtin": f"{__name__}:BuiltinEngine",
    "nnunet": "backpain_epi.segmentation.nnunet:NnunetEngine",
    "totalsegmentator": "backpain_epi.segmentation.totalseg:TotalSegEngine",
    "labels": f"{__name__}:LabelsEngine",
}
_CACHE: dict = {}  # one engine per spec and process
#: settings that only some engines take
_OPTIONS = {"weights": ("builtin",), "model": ("nnunet",), "folds": ("nnunet",), "label_scheme": ("labels", "nnunet")}


@dataclass(frozen=True)
class EngineSpec:
    """Which engine, with which settings.

    Attributes
    ----------
    engine
        One of :data:`ENGINES`.
    weights
        ``builtin``: weights file (default: the shipped weights).
    model
        ``nnunet``: the trained model folder (``dataset.json``, ``plans.json``, ``fold_*/``).
    folds
        ``nnunet``: folds to ensemble (default: every ``fold_*`` with a checkpoint).
    checkpoint
        ``nnunet``: checkpoint file name in each fold folder.
    label_scheme
        ``labels`` and ``nnunet``: a built-in scheme name or a scheme YAML
        (see :mod:`.schemes`); ``nnunet`` defaults to the names in its ``dataset.json``.
    device
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    batch_size
        ``builtin``: patches per forward pass of the sliding window.
    mirror_axes
        ``builtin``: test-time mirroring instead of the weights' own (``config["mirror_axes"]``): axes
        among ``x``, ``y``, ``z`` (``"xz"`` or ``("x", "z")``), ``()`` or ``"none"`` for one pass; ``None``:
        the weights' own. Any other choice leaves the SEs uncalibrated (their factors were fitted with the
        weights' own mirroring).
    """

    engine: str = "builtin"
    weights: str | None = None
    model: str | None = None
    folds: tuple | None = None
    checkpoint: str = "checkpoint_final.pth"
    label_scheme: str | None = None
    device: str = "auto"
    batch_size: int = 4
    mirror_axes: tuple | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise BackpainEpiError(f": {unknown_choice('engine', self.engine, ENGINES)}", param="engine")
        if self.batch_size < 1:
            raise BackpainEpiError(f"{self.batch_size}: must be at least 1.", param="batch_size")
        if self.folds is not None and not isinstance(self.folds, tuple):
            object.__setattr__(self, "folds", tuple(self.folds))
        if self.mirror_axes is not None:
            if self.engine != "builtin":
                raise BackpainEpiError(f": not an option of engine={self.engine}; it is for engine=builtin.", param="mirror_axes")
            axes = "" if self.mirror_axes == "none" else self.mirror_axes
            object.__setattr__(self, "mirror_axes", check_mirror_axes(axes))
        for name, engines in _OPTIONS.items():
            if getattr(self, name) not in (None, ()) and self.engine not in engines:
                raise BackpainEpiError(f": not an option of engine={self.engine}; it is for engine={' or '.join(engines)}.",
                                       param=name)

    def engine_class(self):
        module, name = ENGINES[self.engine].split(":")
        try:
            return getattr(importlib.import_module(module), name)
        except ImportError as exc:
            extra = {"nnunet": "nnunet", "totalsegmentator": "totalseg"}.get(self.engine, "")
            raise BackpainEpiError(f"{self.engine} needs an optional dependency that is not installed ({exc.name}); "
                                   f"install it with: pip install 'backpain-epi[{extra}]'.", param="engine") from None

    def check(self) -> None:
        """Fail now, before any scan is read, if the engine cannot run (missing weights, model folder, scheme)."""
        resolve_device(self.device)
        self.engine_class().check(self)

    def key(self) -> dict:
        """What made a label map, as recorded with each participant's result (see :func:`engine_key`)."""
        return engine_key(self)


def engine_key(spec: EngineSpec) -> dict:
    """The engine and what changes its label maps: the weights or model files (by size and mtime), the folds, the
    label scheme's mapping, and for the builtin engine the SE method and its calibration file (see
    :mod:`.uncertainty`); not the device or batch size."""
    key: dict = {"engine": spec.engine}
    if spec.engine == "builtin":
        weights = spec.weights or default_weights_path()
        key["weights"] = file_stamp(weights)
        key["se"] = {"method": SE_METHOD, "calibration": file_stamp(calibration_path(weights))}
        if spec.mirror_axes is not None:  # otherwise the weights' own, which their stamp covers
            key["mirror_axes"] = list(spec.mirror_axes)
    if spec.engine == "nnunet":
        folder = Path(spec.model or "").expanduser()
        key["model"] = [file_stamp(folder / name) for name in ("dataset.json", "plans.json")]
        key["checkpoints"] = [file_stamp(p) for p in sorted(folder.glob(f"fold_*/{spec.checkpoint}"))
                              if spec.folds is None or p.parent.name.removeprefix("fold_") in {str(f) for f in spec.folds}]
    if spec.engine == "totalsegmentator":
        try:
            key["version"] = metadata.version("TotalSegmentator")
        except metadata.PackageNotFoundError:
            key["version"] = None
    if spec.engine in ("labels", "nnunet") and (spec.engine == "labels" or spec.label_scheme):
        key["label_scheme"] = [list(pair) for pair in load_scheme(spec.label_scheme).mapping]
    return key


def make_engine(spec: EngineSpec) -> "Engine":
    """The engine of ``spec``, built once per process (and again when the files it reads have changed)."""
    key = (spec, json.dumps(engine_key(spec)))
    if key not in _CACHE:
        _CACHE[key] = spec.engine_class()(spec)
    return _CACHE[key]


class Engine(ABC):
    """One way of making label maps. Subclasses set :attr:`scheme` and implement :meth:`predict`.

    An engine that also gives voxel probabilities (:attr:`gives_probabilities`) overrides
    :meth:`segment_scan` and sets :attr:`calibration`, from which the batch computes the
    exposures' standard errors (:mod:`.uncertainty`); the others get missing SEs.
    """

    scheme: LabelScheme
    gives_probabilities: bool = False
    calibration: SeCalibration | None = None

    @classmethod
    def check(cls, spec: EngineSpec) -> None:
        """Raise :class:`~backpain_epi.errors.BackpainEpiError` (naming the parameter and the fix) if ``spec`` cannot run."""

    @abstractmethod
    def predict(self, pair: DixonPair, row: dict) -> np.ndarray:
        """The engine's own label map (its IDs) on the input grid of ``pair``."""

    def segment(self, pair: DixonPair, row: dict) -> np.ndarray:
        """uint8 label map in the package's labels (0–4) on the input grid; raises :class:`ScanError` for a bad scan."""
        labels = np.asarray(self.predict(pair, row))
        if labels.shape != pair.water.shape:
            raise ScanError(f"the {type(self).__name__} label map {labels.shape} is not on the image grid {pair.water.shape}")
        return self.scheme.apply(labels)

    def segment_scan(self, pair: DixonPair, row: dict) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`segment`'s label map and, where the engine has them, the ``(2, X, Y, Z)`` probabilities of labels
        1 and 2 on the input grid (``None`` here)."""
        return self.segment(pair, row), None


class BuiltinEngine(Engine):
    """The package's MONAI UNet (:class:`~backpain_epi.segmentation.infer.Segmenter`), with the SE calibration
    beside its weights (:func:`.uncertainty.load_calibration`)."""

    gives_probabilities = True

    def __init__(self, spec: EngineSpec):
        self.segmenter = Segmenter.load(spec.weights, spec.device)
        own = check_mirror_axes(self.segmenter.config.get("mirror_axes") or ())
        changed = spec.mirror_axes is not None and spec.mirror_axes != own
        if changed:
            self.segmenter.config = {**self.segmenter.config, "mirror_axes": spec.mirror_axes}
        self.segmenter.inferer = make_inferer(self.segmenter.config, sw_batch_size=spec.batch_size)
        self.scheme = load_scheme("backpain-epi")
        self.calibration = load_calibration(spec.weights or default_weights_path())
        if changed and self.calibration.calibrated:
            self.calibration = SeCalibration(
                path=self.calibration.path,
                note=f"{self.calibration.path.name} was fitted with test-time mirroring {''.join(own) or 'none'}, this run "
                     f"mirrors {''.join(spec.mirror_axes) or 'none'}: SE = the raw probability-band spread, not calibrated")

    @classmethod
    def check(cls, spec: EngineSpec) -> None:
        load_weights(spec.weights, "cpu")  # a missing or wrong file fails here, naming weights
        load_calibration(spec.weights or default_weights_path())  # and a broken calibration file

    def predict(self, pair, row):
        return self.segmenter.segment(pair)

    def segment_scan(self, pair, row):
        labels, probabilities = self.segmenter.segment_with_probabilities(pair)
        return self.scheme.apply(labels), probabilities


class LabelsEngine(Engine):
    """Existing label maps (the manifest's ``label`` column), from any tool, mapped by a label scheme.

    The label map must lie on the grid of the water and fat images (same shape and
    affine) and hold whole numbers; IDs not in the scheme are background.
    """

    def __init__(self, spec: EngineSpec):
        self.scheme = load_scheme(spec.label_scheme)

    @classmethod
    def check(cls, spec: EngineSpec) -> None:
        load_scheme(spec.label_scheme)

    def predict(self, pair, row):
        if not row.get("label"):
            raise ScanError("no label map in the manifest's 'label' column (the labels engine needs one per participant)")
        return load_label_map(row["label"], pair)
