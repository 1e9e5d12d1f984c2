"""Reading Dixon image pairs and moving arrays between the input grid and the network grid.

Every check of an input raises :class:`ScanError` with a one-line reason, which
the batch records as that participant's failure. The way to the network grid is two exact
or separable steps, each undone on the way back: reorientation to RAS by axis
permutation and flips (no interpolation), then a per-axis rescaling to the
network's voxel spacing. Oblique affines are treated as their closest
axis-aligned orientation.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BackpainEpiError


class ScanError(BackpainEpiError):
    """One input cannot be processed; the message is the reason in the batch's failures table."""


@dataclass(frozen=True)
class DixonPair:
    """Water and fat images of one participant on the input's own grid."""

    water: np.ndarray
    fat: np.ndarray
    affine: np.ndarray

    @property
    def voxel_ml(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    @property
    def slice_axis(self) -> int:
        """The array axis across the slices: the one with the largest voxel size when one is clearly larger (by
        20 %), else the axis closest to the craniocaudal direction."""
        zooms = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        if zooms.max() > 1.2 * np.sort(zooms)[1]:
            return int(np.argmax(zooms))
        return int(np.argmax(np.abs(self.affine[2, :3]) / zooms))


def load_volume(path: str | os.PathLike, what: str = "image"):
    """Read a 3-D NIfTI image as ``(float32 array, affine)``; raise :class:`ScanError` on any problem.

    A 4-D image with one volume (last axis of size 1) is accepted as 3-D.
    """
    # lazy: nibabel takes 0.5 s to import; importing batch, engines or phantom stays quick until a scan is read
    import nibabel as nib

    path = Path(path)
    if not path.exists():
        raise ScanError(f"{what} file not found: {path}")
    try:
        img = nib.load(path)
        data = np.asanyarray(img.dataobj)
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile, ValueError, nib.filebasedimages.ImageFileError) as exc:
        raise ScanError(f"{what} file {path} is corrupt or not NIfTI ({type(exc).__name__}: {exc})") from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ScanError(f"{what} file {path} has {data.ndim} dimensions {tuple(data.shape)}; a 3-D volume is needed")
    if min(data.shape) < 2:
        raise ScanError(f"{what} file {path} has shape {tuple(data.shape)}; a 3-D volume with at least 2 voxels per axis is needed")
    data = np.asarray(data, dtype=np.float32)
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise ScanError(f"{what} file {path} has {bad} NaN or infinite voxel(s)")
    affine = np.asarray(img.affine, dtype=float)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise ScanError(f"{what} file {path} has a singular or missing affine")
    return data, affine


def load_dixon(water_path, fat_path) -> DixonPair:
    """Read and check a water/fat pair: same shape and affine, not all zero."""
    water, aw = load_volume(water_path, "water")
    fat, af = load_volume(fat_path, "fat")
    if water.shape != fat.shape:
        raise ScanError(f"water {water.shape} and fat {fat.shape} images have different shapes")
    if not np.allclose(aw, af, atol=1e-3):
        raise ScanError("water and fat images are on different grids (their affines differ)")
    if not (water.max() > 0 or fat.max() > 0):
        raise ScanError("water and fat images are all zero")
    if water.max() <= 0 or fat.max() <= 0:
        raise ScanError(f"the {'water' if water.max() <= 0 else 'fat'} image is all zero or negative")
    return DixonPair(water, fat, aw)


def load_label_map(path, pair: DixonPair) -> np.ndarray:
    """A label map (int64) that must lie on the grid of ``pair`` and hold whole numbers; :class:`ScanError` otherwise."""
    labels, affine = load_volume(path, "label")
    if labels.shape != pair.water.shape or not np.allclose(affine, pair.affine, atol=1e-3):
        raise ScanError(f"label map {path} {labels.shape} is not on the image grid {pair.water.shape} "
                        "(shape or affine differ); resample it to the water image first")
    ids = np.rint(labels)
    if np.abs(labels - ids).max() > 1e-3:
        raise ScanError(f"label map {path} holds non-integer values (a probability map or an interpolated image?)")
    if len(np.unique(ids.ravel()[:: max(1, ids.size // 200_000)])) > 300:
        raise ScanError(f"label map {path} holds hundreds of distinct values: an image, not a label map?")
    return ids.astype(np.int64)


def save_nifti(path: str | os.PathLike, data: np.ndarray, affine: np.ndarray) -> Path:
    """Write ``data`` with ``affine`` (as sform and qform) to ``path`` atomically: a temporary file, then a rename."""
    # lazy: nibabel takes 0.5 s to import; importing batch, engines or phantom stays quick until a scan is read
    import nibabel as nib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    stem = path.name[:-7] if path.name.endswith(".nii.gz") else path.stem
    tmp = path.with_name(f".{stem}.tmp{''.join(path.suffixes[-2:]) or '.nii'}")
    try:
        nib.save(img, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@dataclass(frozen=True)
class Grid:
    """How an input array maps to RAS (exactly) and then to the network spacing (by rescaling).

    Attributes
    ----------
    shape
        Shape of the input array.
    ornt
        nibabel orientation of the input axes (``io_orientation`` of its affine).
    canonical_shape
        Shape after reorientation.
    spacing
        Voxel size (mm) after reorientation.
    network_shape
        Shape on the network grid.
    """

    shape: tuple
    ornt: np.ndarray
    canonical_shape: tuple
    spacing: tuple
    network_shape: tuple

    @classmethod
    def plan(cls, shape, affine, target_spacing) -> "Grid":
        # lazy: nibabel takes 0.5 s to import; importing batch, engines or phantom stays quick until a scan is read
        import nibabel as nib

        ornt = nib.orientations.io_orientation(affine)
        zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
        canonical_shape, spacing = [0] * 3, [0.0] * 3
        for i, axis in enumerate(ornt[:, 0].astype(int)):
            canonical_shape[axis], spacing[axis] = int(shape[i]), float(zooms[i])
        network_shape = tuple(max(1, int(round(n * s / t))) for n, s, t in zip(canonical_shape, spacing, target_spacing))
        return cls(tuple(shape), ornt, tuple(canonical_shape), tuple(spacing), network_shape)

    def to_canonical(self, arr: np.ndarray) -> np.ndarray:
        """``arr`` (input axes) reoriented to RAS, exactly."""
        # lazy: nibabel takes 0.5 s to import; importing batch, engines or phantom stays quick until a scan is read
        import nibabel as nib

        ras = nib.orientations.axcodes2ornt("RAS")
        return np.ascontiguousarray(nib.orientations.apply_orientation(arr, nib.orientations.ornt_transform(self.ornt, ras)))

    def from_canonical(self, arr: np.ndarray) -> np.ndarray:
        """``arr`` (RAS axes) back to the input's axes, exactly."""
        # lazy: nibabel takes 0.5 s to import; importing batch, engines or phantom stays quick until a scan is read
        import nibabel as nib

        ras = nib.orientations.axcodes2ornt("RAS")
        return np.ascontiguousarray(nib.orientations.apply_orientation(arr, nib.orientations.ornt_transform(ras, self.ornt)))


def resize(x, shape, mode: str):
    """Resize a ``(C, X, Y, Z)`` torch tensor to ``shape``: ``"trilinear"``, ``"nearest"`` or ``"area"``.

    All modes keep the volume's outer edges in place (voxel centres aligned);
    ``"nearest"`` is torch's ``"nearest-exact"``, as torch's own ``"nearest"``
    shifts the result by half an output voxel. ``"area"`` gives each output
    voxel the mean of the input over its footprint, weighted by the overlap of
    the voxels (exact partial volume, for any ratio): resizing one-hot labels
    with it gives the fraction of each output voxel that a structure covers.
    """
    # lazy: torch takes seconds to import; reading and checking scans (the batch, every engine) must not need it
    import torch.nn.functional as F

    if tuple(x.shape[1:]) == tuple(shape):
        return x
    if mode == "trilinear":
        return F.interpolate(x[None], size=tuple(shape), mode="trilinear", align_corners=False)[0]
    if mode == "nearest":
        return F.interpolate(x[None], size=tuple(shape), mode="nearest-exact")[0]
    if mode == "area":
        for axis in sorted(range(1, 4), key=lambda a: shape[a - 1] / x.shape[a]):  # most shrunk axis first: less work
            if x.shape[axis] != shape[axis - 1]:
                x = _area_resize_axis(x, axis, shape[axis - 1])
        return x.contiguous()
    raise ValueError(f"mode {mode!r}: use 'trilinear', 'nearest' or 'area'")


def _area_resize_axis(x, axis: int, n_out: int):
    """Exact overlap-weighted mean along one axis, in O(n): differences of the running integral at the output edges."""
    # lazy: torch takes seconds to import; reading and checking scans (the batch, every engine) must not need it
    import torch

    n_in = x.shape[axis]
    v = x.movedim(axis, 0)
    integral = torch.cat([torch.zeros_like(v[:1]), v.cumsum(0)])  # at the input edges 0..n_in
    edges = torch.arange(n_out + 1, dtype=torch.float64) * (n_in / n_out)
    left = edges.floor().long().clamp(0, n_in - 1)
    frac = (edges - left).to(x.dtype).to(x.device).view(-1, *[1] * (v.dim() - 1))
    left = left.to(x.device)
    at_edges = torch.lerp(integral[left], integral[left + 1], frac)  # the integral is linear between input edges
    return ((at_edges[1:] - at_edges[:-1]) * (n_out / n_in)).movedim(0, axis)


def network_input(water_c: np.ndarray, fat_c: np.ndarray, grid: Grid, mode: str = "trilinear"):
    """Channels for the network on its grid: fat fraction, (water + fat) and water, both scaled robustly.

    The fat fraction does not depend on the scanner scale or the bias field;
    the signal channels are divided by the 99.5th percentile of water + fat
    and clipped to [0, 3]. ``mode`` resamples water and fat to the network
    grid (see :func:`resize`): ``"area"`` gives each network voxel the signal
    of its whole footprint (partial volume, so a layer thinner than a voxel,
    such as the fascia, is never skipped), ``"trilinear"`` samples at its centre.
    """
    # lazy: torch takes seconds to import; reading and checking scans (the batch, every engine) must not need it
    import torch

    x = torch.from_numpy(np.stack([np.clip(water_c, 0, None), np.clip(fat_c, 0, None)]).astype(np.float32))
    return network_channels(resize(x, grid.network_shape, mode))


def signal_scale(total):
    """The robust signal scale of a ``water + fat`` tensor: its 99.5th percentile over the positive voxels."""
    # lazy: torch takes seconds to import; reading and checking scans (the batch, every engine) must not need it
    import torch

    sample = total.flatten()[:: max(1, total.numel() // 200_000)]
    return torch.quantile(sample[sample > 0], 0.995) if (sample > 0).any() else torch.tensor(1.0)


def network_channels(x, scale=None):
    """The network's three channels from a ``(2, X, Y, Z)`` water/fat tensor on its grid (see :func:`network_input`).

    ``scale`` defaults to :func:`signal_scale` of water + fat; the domain-randomised
    training (:mod:`.synth`) passes it, as a patch does not see the whole volume.
    """
    # lazy: torch takes seconds to import; reading and checking scans (the batch, every engine) must not need it
    import torch

    total = x[0] + x[1]
    scale = signal_scale(total) if scale is None else scale
    ff = torch.where(total > 0.02 * scale, x[1] / total.clamp_min(1e-12), torch.zeros_like(total))
    return torch.stack([ff, (total / scale).clamp(0, 3), (x[0] / scale).clamp(0, 3)])
