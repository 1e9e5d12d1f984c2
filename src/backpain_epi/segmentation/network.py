"""The segmentation network, its weights file, devices and the sliding-window inferer.

A weights file (``torch.save`` of a plain dict, loadable with
``weights_only=True``) holds the ``state_dict``, the ``config`` that rebuilds
the network (architecture, voxel spacing, patch size) and ``info`` about its
training. Nothing is downloaded: the default weights are
``models/segmentation/unet_phantom.pt`` of the source checkout, or the file
named by the ``BACKPAIN_EPI_SEGMENTER_WEIGHTS`` environment variable.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from pathlib import Path

from ..errors import BackpainEpiError, InputFileError, unknown_choice
from ..tableio import atomic_path
from .exposures import LABEL_NAMES, mirror_table

DEFAULT_CONFIG = {
    "architecture": "monai.networks.nets.UNet",
    "in_channels": 3,  # fat fraction, (water + fat) / scale, water / scale: see io.network_input
    "out_channels": 5,  # background, autochthon left/right, psoas left/right
    "channels": (16, 32, 64, 128),
    "strides": (2, 2, 2),
    "num_res_units": 0,
    "spacing_mm": (2.0, 2.0, 5.0),  # network grid, RAS axis order
    "roi_size": (96, 96, 32),
    "overlap": 0.25,
    # training targets on the network grid: "area" = fraction of each network voxel a structure
    # covers (partial volume, see train.volume_example), "nearest" = the label at the voxel centre
    "label_resampling": "area",
    # water and fat to the network grid (io.network_input): "area" (partial volume) or "trilinear"
    "input_resampling": "area",
    # test-time mirroring (nnU-Net's default): the softmax averaged over the input and its mirrors along
    # these RAS axes ("x" left-right, with the left and right labels swapped; "y"; "z" head-foot), every
    # combination of them; [] = none. 2**len times the inference cost.
    "mirror_axes": (),
}
#: what a weights file that predates a config key was made with
LEGACY_CONFIG = {"label_resampling": "nearest", "input_resampling": "trilinear", "mirror_axes": ()}
MIRROR_AXES = ("x", "y", "z")
WEIGHTS_ENV = "BACKPAIN_EPI_SEGMENTER_WEIGHTS"
WEIGHTS_NAME = "unet_phantom.pt"
DEVICES = ("auto", "cpu", "cuda")


def build_network(config: dict | None = None):
    """A MONAI 3-D UNet as described by ``config`` (default :data:`DEFAULT_CONFIG`)."""
    # lazy: MONAI takes seconds to import (torch with it); only building a network needs it
    from monai.networks.nets import UNet

    c = {**DEFAULT_CONFIG, **(config or {})}
    return UNet(spatial_dims=3, in_channels=c["in_channels"], out_channels=c["out_channels"], channels=tuple(c["channels"]),
                strides=tuple(c["strides"]), num_res_units=c["num_res_units"], norm="INSTANCE")


def default_weights_path() -> Path:
    """``$BACKPAIN_EPI_SEGMENTER_WEIGHTS`` if set, else ``models/segmentation/unet_phantom.pt`` of the checkout."""
    if os.environ.get(WEIGHTS_ENV):
        return Path(os.environ[WEIGHTS_ENV])
    here = Path(__file__).resolve()
    for parent in here.parents:  # src/backpain_epi/segmentation/network.py -> the repository root
        candidate = parent / "models" / "segmentation" / WEIGHTS_NAME
        if candidate.exists():
            return candidate
    return here.parents[3] / "models" / "segmentation" / WEIGHTS_NAME


def save_weights(path, model, config: dict, info: dict) -> Path:
    """Write ``model``'s weights with their ``config`` and training ``info`` (atomically)."""
    # lazy: torch takes seconds to import; the batch and the engines import this module (default_weights_path)
    import torch

    path = Path(path)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": state, "config": _plain(config), "info": _plain(info)}, tmp)
    return path


def load_weights(path=None, device="cpu", *, param: str = "weights"):
    """Load a weights file; returns ``(model in eval mode on device, config, info)``.

    ``param`` names the caller's parameter that gave ``path``, for the errors.

    Raises
    ------
    InputFileError
        The file is missing or not a weights file.
    """
    # lazy: torch takes seconds to import; the batch and the engines import this module (default_weights_path)
    import torch

    path = Path(path) if path is not None else default_weights_path()
    if not path.is_file():
        raise InputFileError(
            f"{path}: segmentation weights not found; pass a weights file, set {WEIGHTS_ENV}, or train them "
            f"with `backpain-epi train-segmenter --out {path}`.", param=param)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        config = {**DEFAULT_CONFIG, **LEGACY_CONFIG, **saved["config"]}
        model = build_network(config)
        model.load_state_dict(saved["state_dict"])
    except Exception as exc:  # torch raises many types for a wrong file
        raise InputFileError(f"{path}: not a segmentation weights file of this package ({type(exc).__name__}: {exc}).",
                             param=param) from None
    return model.to(device).eval(), config, saved.get("info", {})


def resolve_device(name: str):
    """``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` as a ``torch.device``.

    Raises
    ------
    BackpainEpiError
        Unknown name (with "did you mean ...?"), or CUDA asked for but not available; the error names
        the parameter ``device``, as every caller calls it.
    """
    # lazy: torch takes seconds to import; the batch and the engines import this module (default_weights_path)
    import torch

    key = str(name).strip().lower()
    if key == "gpu":
        raise BackpainEpiError("gpu: unknown device; did you mean 'cuda'? (cuda:N picks a GPU).", param="device")
    if key not in DEVICES and not (key.startswith("cuda:") and key[5:].isdigit()):
        raise BackpainEpiError(f": {unknown_choice('device', key, DEVICES)} (cuda:N picks a GPU).", param="device")
    if key == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if key.startswith("cuda") and not torch.cuda.is_available():
        raise BackpainEpiError(f"{name}: CUDA is not available on this machine (torch {torch.__version__}); "
                               "use device=cpu or auto.", param="device")
    return torch.device(key)


def make_inferer(config: dict, sw_batch_size: int = 1):
    """The sliding-window inferer for ``config``'s patch size and overlap (Gaussian blending)."""
    # lazy: MONAI takes seconds to import (torch with it); only making the inferer needs it
    from monai.inferers import SlidingWindowInferer

    window = SlidingWindowInferer(roi_size=tuple(config["roi_size"]), sw_batch_size=sw_batch_size,
                                  overlap=config["overlap"], mode="gaussian")
    axes = check_mirror_axes(config.get("mirror_axes", ()))
    return MirrorInferer(window, axes) if axes else window


def check_mirror_axes(axes, param: str = "mirror_axes") -> tuple[str, ...]:
    """``axes`` as a tuple of distinct names from :data:`MIRROR_AXES`, in RAS order; one-line error otherwise."""
    if isinstance(axes, str):
        axes = tuple(axes)  # "xz"
    bad = [a for a in axes if a not in MIRROR_AXES]
    if bad or len(set(axes)) != len(axes):
        raise BackpainEpiError(f"{param}: give distinct axes from {', '.join(MIRROR_AXES)} (or none), got {list(axes)}")
    return tuple(a for a in MIRROR_AXES if a in axes)


class MirrorInferer:
    """Test-time mirroring around another inferer: the mean of the class probabilities over the input and
    its mirrors along ``axes`` (all combinations), returned as log-probabilities, so that a softmax of the
    output gives the mean. A left-right (x) mirror swaps the left and right labels back."""

    def __init__(self, inferer, axes: tuple[str, ...]):
        self.inferer, self.axes = inferer, check_mirror_axes(axes)
        self.swap = list(mirror_table({name: lab for lab, name in LABEL_NAMES.items()}))

    def __call__(self, inputs, network):
        # lazy: torch takes seconds to import; the batch and the engines import this module (default_weights_path)
        import torch

        total, n = None, 0
        for k in range(len(self.axes) + 1):
            for combo in itertools.combinations(self.axes, k):
                dims = [2 + MIRROR_AXES.index(a) for a in combo]  # (B, C, X, Y, Z)
                x = inputs.flip(dims) if dims else inputs
                p = torch.softmax(self.inferer(x, network).float(), dim=1)
                p = p.flip(dims) if dims else p
                if "x" in combo:
                    p = p[:, self.swap]
                total = p if total is None else total + p
                n += 1
        return torch.log((total / n).clamp_min(1e-12))


def _plain(obj):
    """Dataclasses to dicts, tuples to lists, numpy scalars to Python: what ``torch.load(weights_only=True)`` reads back."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _plain(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item"):
        return obj.item()
    return obj
