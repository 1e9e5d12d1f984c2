"""Domain-randomised training examples (the SynthSeg approach, Billot et al., Med Image Anal 2023).

The network should learn the anatomy, not one generator's look. So it is trained on
tissue-class maps whose *appearance is drawn anew for every sample*:

1. **Anatomies** (:func:`draw_anatomy`): the phantom generator's anatomy with a wider
   habitus (:func:`draw_habitus`): round to wide and flat-backed trunks, thin to thick
   subcutaneous fat, back muscles rounded to flat, touching the subcutaneous fat or set
   off from it by fat or a muscle sheet, small to large psoas. Each voxel keeps its
   tissue class (:data:`~backpain_epi.segmentation.phantom.TISSUES`), lean muscle and
   InterMAT apart, on a fine grid.
2. **Geometry** (:class:`SynthRenderer`): a random affine (rotation about the
   craniocaudal axis up to ±20°, tilt, anisotropic scaling, shear) and a smooth elastic
   displacement, sampled onto a 1 × 1 × 2.5 mm render grid of one network patch; the
   psoas may be missing at the cranial slab end, the kidneys anywhere.
3. **Appearance**: per tissue class a proton density and a fat fraction drawn within
   physical bounds (:data:`APPEARANCE`: fat bright in the fat image and dark in the
   water image, muscle the reverse), with smooth texture; ``water = pd (1 − ff) g_w``,
   ``fat = pd ff g_f`` with a fat/water gain drawn per patch (by default within ±35 %;
   ``fat_gain`` widens it to the T1 weighting of gradient-echo Dixon), and optionally
   a share of the fat signal leaking into the water image (``fat_leak``).
4. **Acquisition**: a bias field, the scan's own voxel size (in-plane 0.9–2.6 mm,
   slices 2.5–6.5 mm) by exact partial-volume averaging, Rician noise, a field of view
   that may crop the body or end the slab, then the network grid by the same
   partial-volume resampling and the same channels as inference
   (:func:`~backpain_epi.segmentation.io.network_channels`).

The training targets are the fractions of each network voxel that each structure covers
on the render grid (partial volume), as for the phantom examples.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torch.utils.data
from monai.transforms import GaussianSmooth
from tqdm.auto import tqdm

from ..errors import BackpainEpiError, unknown_choice
from .exposures import mirror_table
from .io import network_channels, resize, signal_scale
from .phantom import TISSUE_LABEL, TISSUES, _anatomy, draw_targets

#: per tissue class: (proton density range, fat fraction range, texture SD of pd, texture SD of ff)
APPEARANCE = {
    "air": ((0.0, 0.03), (0.0, 1.0), 0.0, 0.0),
    "subcutaneous_fat": ((0.6, 1.3), (0.78, 0.98), 0.06, 0.02),
    "inner_fat": ((0.5, 1.3), (0.7, 0.98), 0.08, 0.04),
    "viscera": ((0.15, 1.1), (0.0, 0.5), 0.3, 0.15),
    "abdominal_wall": ((0.5, 1.1), (0.0, 0.25), 0.05, 0.03),
    "kidney": ((0.5, 1.2), (0.0, 0.12), 0.08, 0.02),
    "psoas_left": ((0.5, 1.1), (0.0, 0.2), 0.05, 0.03),
    "psoas_right": ((0.5, 1.1), (0.0, 0.2), 0.05, 0.03),
    "marrow": ((0.3, 1.0), (0.25, 0.85), 0.1, 0.08),
    "disc": ((0.4, 1.2), (0.0, 0.15), 0.06, 0.03),
    "cortex": ((0.0, 0.3), (0.0, 0.6), 0.1, 0.1),
    "posterior_bone": ((0.15, 0.8), (0.2, 0.8), 0.1, 0.08),
    "csf": ((0.5, 1.4), (0.0, 0.06), 0.04, 0.01),
    "quadratus": ((0.5, 1.1), (0.0, 0.25), 0.05, 0.03),
    "fascia": ((0.3, 1.0), (0.35, 0.95), 0.08, 0.08),
    "lean_left": ((0.5, 1.1), (0.0, 0.35), 0.05, 0.04),
    "lean_right": ((0.5, 1.1), (0.0, 0.35), 0.05, 0.04),
    "intermat_left": ((0.5, 1.3), (0.55, 0.97), 0.06, 0.06),
    "intermat_right": ((0.5, 1.3), (0.55, 0.97), 0.06, 0.06),
    "back_sheet": ((0.5, 1.1), (0.0, 0.25), 0.05, 0.03),
}
#: the fascia as Dixon shows it when its collagen's short T2* leaves little signal in either image (a patch's
#: ``dark_fascia`` draw): a thin line dark in water and fat alike, not the fatty-bright sheath of ``APPEARANCE``
DARK_FASCIA = ((0.03, 0.4), (0.0, 0.5), 0.08, 0.05)
#: tissue classes that share one draw (the two sides of a structure look alike in one scan)
_SAME = {"psoas_right": "psoas_left", "lean_right": "lean_left", "intermat_right": "intermat_left"}
#: tissue class -> the class of the same structure on the other side (a left-right mirror)
_MIRROR_SIDES = torch.tensor(mirror_table(TISSUES), dtype=torch.uint8)
RENDER_MM = (1.0, 1.0, 2.5)
#: fat/water signal gain per proton (log-uniform range): proton-density-like (stages 4-5 of the shipped weights)
PD_FAT_GAIN = (0.74, 1.35)
#: ... and wide enough for T1-weighted spoiled gradient-echo Dixon (``SynthRenderer``'s ``fat_gain``)
T1_FAT_GAIN = (0.74, 3.0)


def check_fat_gain(fat_gain, param: str = "fat_gain") -> tuple[float, float]:
    """``(lo, hi)`` with 0 < lo <= hi, or a one-line error about ``param``."""
    try:
        lo, hi = (float(v) for v in fat_gain)
    except (TypeError, ValueError):
        raise BackpainEpiError(f"{fat_gain!r}: give two numbers, the lowest and highest fat/water gain.",
                               param=param) from None
    if not 0 < lo <= hi:
        raise BackpainEpiError(f"{lo:g} {hi:g}: the fat/water gain range needs 0 < LO <= HI.", param=param)
    return lo, hi


def _number(value) -> float:
    """``value`` as a float; NaN (which every range check refuses) for what is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def check_probability(value, param: str) -> float:
    """A probability in [0, 1], or a one-line error about ``param``."""
    p = _number(value)
    if not 0.0 <= p <= 1.0:
        raise BackpainEpiError(f"{value!r}: a probability between 0 and 1.", param=param)
    return p


def check_fat_leak(fat_leak, param: str = "fat_leak") -> float:
    """A share between 0 and 0.5, or a one-line error about ``param``."""
    leak = _number(fat_leak)
    if not 0 <= leak <= 0.5:
        raise BackpainEpiError(f"{fat_leak!r}: the fat leak is a share of the fat signal between 0 and 0.5.", param=param)
    return leak


def draw_habitus(rng: np.random.Generator) -> dict:
    """Body and muscle shape settings for :func:`~backpain_epi.segmentation.phantom._anatomy`, wider than the phantoms'."""
    gap = float(rng.uniform(3, 30)) if rng.random() < 0.6 else 0.0
    return {
        "body_ax": float(rng.uniform(105, 185)), "body_ay": float(rng.uniform(85, 140)),
        "fat_lat": float(rng.uniform(3, 70)), "fat_post": float(rng.uniform(3, 75)),
        "body_power": float(rng.uniform(1.8, 3.2)), "back_power": float(rng.uniform(1.8, 5.0)),
        "back_depth": float(rng.uniform(70, 115)),
        "back_gap_mm": gap, "back_sheet_muscle": bool(rng.random() < 0.5),
        "psoas_scale": float(rng.uniform(0.45, 1.3)),
        "top_shift_mm": float(rng.uniform(-4, 8)),
        "muscle_aspect": float(rng.uniform(0.65, 1.6)), "muscle_power": float(rng.uniform(1.6, 3.5)),
        "muscle_harm": float(rng.uniform(0.0, 0.09)),
    }


@dataclass
class Anatomy:
    """Tissue classes of one slab on a RAS grid (``tissue``, uint8) with its voxel size in mm."""

    tissue: np.ndarray
    spacing: np.ndarray

    def __post_init__(self):
        every = 5  # candidate patch centres: every 5th voxel of the structures, and of the body
        flat = self.tissue.ravel()
        self.muscle_voxels = np.flatnonzero(np.isin(flat[::every], list(TISSUE_LABEL))) * every
        self.body_voxels = np.flatnonzero(flat[::every] > 0) * every

    @property
    def labels(self) -> np.ndarray:
        return label_of_tissue(self.tissue)


def label_of_tissue(tissue):
    """The package label (0–4) of each voxel of a tissue-class map (numpy or torch)."""
    lut = np.zeros(max(TISSUES.values()) + 1, np.uint8)
    for t, lab in TISSUE_LABEL.items():
        lut[t] = lab
    if isinstance(tissue, np.ndarray):
        return lut[tissue]
    return torch.from_numpy(lut).to(tissue.device)[tissue.long()]


#: what each anatomy variant adds: 1 the habitus of :func:`draw_habitus`; 2 also InterMAT from the core to the
#: edge of the compartment and along a septum, in 2-30 % of it (:func:`draw_intermat`)
ANATOMY_VARIANTS = (1, 2)


def draw_intermat(rng: np.random.Generator) -> dict:
    """Where InterMAT gathers and how much of the compartment it fills (anatomy variant 2)."""
    return {"intermat_edge": float(rng.uniform(-0.5, 2.0)), "intermat_frac": float(rng.uniform(0.02, 0.3)),
            "septum_weight": float(rng.uniform(0.5, 2.0)) if rng.random() < 0.5 else 0.0,
            "septum_angle": float(np.pi / 2 + rng.uniform(-0.6, 0.6)), "septum_offset": float(rng.uniform(-0.3, 0.3))}


def draw_anatomy(seed, spacing=None, variant: int = 1) -> Anatomy:
    """One anatomy with a random habitus and targets, on a fine grid (in-plane 1.2–1.6 mm, slices 2.5–3.5 mm).

    ``spacing`` (mm, three values) replaces the drawn grid (coarse grids keep tests quick);
    ``variant`` is one of :data:`ANATOMY_VARIANTS` (variant 1 anatomies stay as they were drawn).
    """
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    rng = np.random.default_rng(ss)
    s_in = rng.uniform(1.2, 1.6)
    spacing = np.array([s_in, s_in, rng.uniform(2.5, 3.5)]) if spacing is None else np.asarray(spacing, float)
    habitus = draw_habitus(rng)
    targets = draw_targets(rng)
    if variant == 2:  # its own stream, so that the draws above stay those of variant 1
        extra = draw_intermat(np.random.default_rng([*ss.generate_state(2), 2]))
        habitus.update(extra)
        targets = replace(targets, intermat_ml=min(extra["intermat_frac"], 0.6) * targets.lmm_ml)
    _, _, _, grid = _anatomy(rng, spacing, targets, 1.0, habitus)
    return Anatomy(grid["tissue"], spacing)


def anatomy_bank(n: int, seed: int, progress: bool = True, workers: int = 1, cache=None, variant: int = 1) -> list[Anatomy]:
    """``n`` anatomies; anatomy ``i`` depends only on ``(seed, i)``.

    ``cache`` (a folder) keeps each anatomy as ``anatomy-<seed>-<i>.npz`` and reads it back
    on the next call, since drawing one takes a few seconds.
    """
    seeds = np.random.SeedSequence(seed).spawn(n)
    if variant not in ANATOMY_VARIANTS:
        raise BackpainEpiError(f": {unknown_choice('anatomy variant', variant, ANATOMY_VARIANTS)}", param="variant")
    stem = "anatomy" if variant == 1 else f"anatomy-v{variant}"
    paths = [Path(cache) / f"{stem}-{seed}-{i}.npz" for i in range(n)] if cache else [None] * n
    out: list = [None] * n
    for i, path in enumerate(paths):
        if path is not None and path.is_file():
            with np.load(path) as f:
                out[i] = Anatomy(f["tissue"], f["spacing"])
    todo = [i for i in range(n) if out[i] is None]
    bar = tqdm(total=n, initial=n - len(todo), desc="anatomies", unit="vol", disable=not progress)

    def keep(i, anat):
        out[i] = anat
        if paths[i] is not None:  # each one as it comes, so an interrupted call keeps what it drew
            paths[i].parent.mkdir(parents=True, exist_ok=True)
            tmp = paths[i].with_name(f".{paths[i].stem}.tmp.npz")
            np.savez_compressed(tmp, tissue=anat.tissue, spacing=anat.spacing)
            tmp.replace(paths[i])
        bar.update()

    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for i, anat in zip(todo, pool.map(draw_anatomy, [seeds[i] for i in todo], [None] * len(todo), [variant] * len(todo))):
                keep(i, anat)
    else:
        for i in todo:
            keep(i, draw_anatomy(seeds[i], variant=variant))
    bar.close()
    return out


class SynthRenderer:
    """Draws one training patch from an anatomy: ``{"image": (3, *roi), "soft": (5, *roi)}`` torch tensors.

    Parameters
    ----------
    config
        The network config (``spacing_mm``, ``roi_size``).
    flip_z
        Probability of mirroring the patch head to foot. The training generator's
        anatomy has the psoas growing cranially (the wrong way round: real psoas grow
        caudally), so mirroring half the patches teaches both.
    deform
        ``False`` samples the anatomy as it is (no affine, no elastic field, no jitter
        of the centre): what the tests check the geometry with.
    flip_x
        Probability of mirroring the patch left to right, with the left and right
        structures' classes swapped (so that left stays the patient's left): what makes
        the network treat both sides alike.
    fat_gain
        Range of the fat/water signal gain per patch (drawn log-uniform). The default
        (0.74, 1.35) is proton-density-like; a spoiled gradient-echo Dixon (VIBE, flip
        5–15°, TR 4–8 ms) weights by T1, and fat (T1 about 250–400 ms) then gives 1.5–3
        times the signal of muscle water (T1 about 900–1,500 ms) per proton: use
        :data:`T1_FAT_GAIN` to cover such scans.
    fat_leak
        Largest share of the fat signal that lands in the water image (a single-peak
        reconstruction of multi-peak fat), drawn uniformly from 0 per patch; 0 (the
        default) draws nothing, so earlier runs reproduce.
    dark_fascia
        Probability that a patch draws the fascia round the back muscles from
        :data:`DARK_FASCIA` (dark in both images, as collagen with a short T2* looks)
        instead of :data:`APPEARANCE`; 0 (the default) draws nothing, so earlier runs
        reproduce.
    """

    def __init__(self, config: dict, flip_z: float = 0.0, deform: bool = True,
                 fat_gain: tuple[float, float] = PD_FAT_GAIN, fat_leak: float = 0.0, flip_x: float = 0.0,
                 dark_fascia: float = 0.0):
        self.flip_z, self.flip_x, self.deform = flip_z, flip_x, deform
        self.fat_gain, self.fat_leak = check_fat_gain(fat_gain), check_fat_leak(fat_leak)
        self.dark_fascia = check_probability(dark_fascia, "dark_fascia")
        self.net_mm = np.asarray(config["spacing_mm"], float)
        self.roi = tuple(int(r) for r in config["roi_size"])
        self.extent = self.net_mm * np.asarray(self.roi)
        self.render_shape = tuple(int(round(e / r)) for e, r in zip(self.extent, RENDER_MM))
        self._names = sorted(TISSUES, key=TISSUES.get)
        axes = [(np.arange(n) - (n - 1) / 2) * r for n, r in zip(self.render_shape, RENDER_MM)]
        self._points = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3).astype(np.float32)  # mm, centred

    def __call__(self, anat: Anatomy, rng: np.random.Generator) -> dict:
        tissue, centre_mm = self._sample_geometry(anat, rng)
        water, fat = self._appearance(tissue, rng)
        labels = label_of_tissue(tissue)
        x, keep = self._acquire(water, fat, rng)
        onehot = (labels[None] == torch.arange(5, dtype=labels.dtype)[:, None, None, None]).float()
        factor = tuple(r // n for r, n in zip(self.render_shape, self.roi))
        if all(f * n == r for f, n, r in zip(factor, self.roi, self.render_shape)):  # the default: exact 2 x 2 x 2 blocks
            soft = torch.nn.functional.avg_pool3d(onehot[None], factor)[0]
        else:
            soft = resize(onehot, self.roi, "area")
        if keep is not None:  # outside the field of view: nothing to see, nothing to find
            soft = soft * keep
            soft[0] += 1 - keep
        return {"image": x, "soft": soft, "centre_mm": centre_mm}

    # ------------------------------------------------------------------ geometry

    def _sample_geometry(self, anat: Anatomy, rng):
        """Tissue classes on the render grid, through a random affine and elastic deformation."""
        tissue = anat.tissue
        # patch centre: 3 of 4 on a muscle voxel, else anywhere in the body
        idx = anat.muscle_voxels if rng.random() < 0.75 and len(anat.muscle_voxels) else anat.body_voxels
        centre_vox = np.array(np.unravel_index(idx[rng.integers(len(idx))], tissue.shape), float) if len(idx) else np.array(tissue.shape) / 2
        centre_mm = centre_vox * anat.spacing + (rng.normal(0, [15, 15, 20]) if self.deform else 0)
        # render grid positions (mm, centred), through the deformation
        if self.deform:
            q = self._points @ _random_affine(rng).T.astype(np.float32)
            q += _elastic(rng, self.render_shape).reshape(-1, 3)
        else:
            q = self._points.copy()
        index = (q + centre_mm.astype(np.float32)) / anat.spacing.astype(np.float32)
        lo = np.clip(np.floor(index.min(0)).astype(int) - 1, 0, np.array(tissue.shape) - 1)
        hi = np.clip(np.ceil(index.max(0)).astype(int) + 2, lo + 1, np.array(tissue.shape))
        crop = torch.from_numpy(np.ascontiguousarray(tissue[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]])).float()
        local = index - lo
        size = (hi - lo).astype(np.float32)
        norm = 2 * local / np.maximum(size - 1, 1) - 1  # align_corners=True coordinates; outside -> 0 (air)
        grid = torch.from_numpy(norm[:, ::-1].astype(np.float32)).view(1, *self.render_shape, 3)  # (z, y, x) order for grid_sample
        out = F.grid_sample(crop[None, None], grid, mode="nearest", padding_mode="zeros", align_corners=True)
        out = out[0, 0].round().to(torch.uint8)
        if rng.random() < 0.3:  # psoas missing at the slab end where it is thin (the generator's index 0)
            zcut = rng.uniform(0.05, 0.3) * tissue.shape[2]
            top = torch.from_numpy(index[:, 2].reshape(self.render_shape) < zcut)
            out[top & ((out == TISSUES["psoas_left"]) | (out == TISSUES["psoas_right"]))] = TISSUES["inner_fat"]
        if rng.random() < 0.5:
            out[out == TISSUES["kidney"]] = TISSUES["viscera"]
        if rng.random() < self.flip_z:
            out = out.flip(2)
        if self.flip_x > 0 and rng.random() < self.flip_x:  # drawn only when asked: earlier runs reproduce
            out = _MIRROR_SIDES[out.long()].flip(0)
        return out, centre_mm

    # ------------------------------------------------------------------ appearance

    def _appearance(self, tissue, rng):
        n = len(self._names)
        pd, ff, sd_pd, sd_ff = (np.zeros(n, np.float32) for _ in range(4))
        drawn = {}
        looks = APPEARANCE
        if self.dark_fascia > 0 and rng.random() < self.dark_fascia:  # drawn only when asked: earlier runs reproduce
            looks = {**APPEARANCE, "fascia": DARK_FASCIA}
        for i, name in enumerate(self._names):
            src = _SAME.get(name, name)
            if src not in drawn:
                (p_lo, p_hi), (f_lo, f_hi), s_p, s_f = looks[src]
                drawn[src] = (rng.uniform(p_lo, p_hi), rng.uniform(f_lo, f_hi), s_p * rng.uniform(0.3, 2), s_f * rng.uniform(0.3, 2))
            pd[i], ff[i], sd_pd[i], sd_ff[i] = drawn[src]
        # the two sides of a structure differ a little
        for right, left in _SAME.items():
            i, j = TISSUES[right], TISSUES[left]
            pd[i], ff[i] = pd[j] * rng.uniform(0.95, 1.05), np.clip(ff[j] + rng.normal(0, 0.02), *looks[left][1])
        t = tissue.long()
        tex_pd, tex_ff = _texture(rng, self.render_shape), _texture(rng, self.render_shape)
        pd_v = torch.from_numpy(pd)[t] * (1 + torch.from_numpy(sd_pd)[t] * tex_pd)
        lo = torch.from_numpy(np.array([looks[_SAME.get(nm, nm)][1][0] for nm in self._names], np.float32))[t]
        hi = torch.from_numpy(np.array([looks[_SAME.get(nm, nm)][1][1] for nm in self._names], np.float32))[t]
        ff_v = torch.minimum(torch.maximum(torch.from_numpy(ff)[t] + torch.from_numpy(sd_ff)[t] * tex_ff, lo), hi)
        pd_v = pd_v.clamp_min(0)
        gain_fat = float(np.exp(rng.uniform(*np.log(self.fat_gain))))
        water, fat = pd_v * (1 - ff_v), pd_v * ff_v * gain_fat
        if self.fat_leak > 0:
            leak = float(rng.uniform(0, self.fat_leak))
            water, fat = water + leak * fat, (1 - leak) * fat
        return water, fat

    # ------------------------------------------------------------------ acquisition

    def _acquire(self, water, fat, rng):
        """Bias, the scan's voxel size (partial volume), noise, field of view; then the network grid and channels."""
        x = torch.stack([water, fat])
        x = x * _bias(rng, self.render_shape)[None]
        s_in = rng.uniform(0.9, 2.6)
        acq_mm = np.array([s_in, s_in * rng.uniform(0.95, 1.05), rng.uniform(2.5, 6.5)])
        acq_shape = tuple(max(2, int(round(e / s))) for e, s in zip(self.extent, acq_mm))
        x = resize(x, acq_shape, "area")
        if rng.random() < 0.5:  # point spread beyond the voxel
            x = GaussianSmooth(sigma=tuple(rng.uniform(0.1, 0.6, 3)))(x)
        sigma = rng.uniform(0.003, 0.04)
        n1, n2 = torch.randn(x.shape, generator=_torch_rng(rng)) * sigma, torch.randn(x.shape, generator=_torch_rng(rng)) * sigma
        x = torch.sqrt((x + n1) ** 2 + n2 ** 2)
        keep = None
        if rng.random() < 0.3:  # the field of view (or the slab) ends inside the patch
            keep = torch.ones(self.roi)
            axis = int(rng.choice([0, 1, 2], p=[0.35, 0.25, 0.4]))
            cut = int(rng.uniform(0.15, 0.6) * self.roi[axis])
            sl = [slice(None)] * 3
            sl[axis] = slice(0, cut) if rng.random() < 0.5 else slice(self.roi[axis] - cut, None)
            keep[tuple(sl)] = 0
        x = resize(x, self.roi, "area")
        if keep is not None:
            x = x * keep
        total = x[0] + x[1]
        scale = signal_scale(total) * float(rng.uniform(0.75, 1.3))
        return network_channels(x, scale), keep


def _torch_rng(rng):
    return torch.Generator().manual_seed(int(rng.integers(2**62)))


def _random_affine(rng) -> np.ndarray:
    """Rotation (±20° about the craniocaudal axis, ±5° tilt), scaling (0.85–1.2 in-plane, 0.9–1.1 through-plane), shear."""
    az, ax_, ay_ = rng.uniform(-0.35, 0.35), rng.uniform(-0.09, 0.09), rng.uniform(-0.09, 0.09)
    cz, sz = np.cos(az), np.sin(az)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(ax_), -np.sin(ax_)], [0, np.sin(ax_), np.cos(ax_)]])
    ry = np.array([[np.cos(ay_), 0, np.sin(ay_)], [0, 1, 0], [-np.sin(ay_), 0, np.cos(ay_)]])
    scale = np.diag([rng.uniform(0.85, 1.2), rng.uniform(0.85, 1.2), rng.uniform(0.9, 1.1)])
    shear = np.eye(3)
    shear[0, 1], shear[1, 0] = rng.uniform(-0.08, 0.08), rng.uniform(-0.08, 0.08)
    return rz @ rx @ ry @ shear @ scale


def _elastic(rng, shape) -> np.ndarray:
    """A smooth displacement field (mm) on ``shape``: coarse Gaussian control points, trilinearly upsampled."""
    amp = rng.uniform(0, 6)
    coarse = torch.from_numpy(rng.normal(0, amp, (3, 5, 5, 4)).astype(np.float32))
    coarse[2] *= 0.5  # less through-plane
    field = F.interpolate(coarse[None], size=shape, mode="trilinear", align_corners=True)[0]
    return field.permute(1, 2, 3, 0).numpy()


def _texture(rng, shape):
    """A smooth zero-mean, unit-SD random field (two scales) on ``shape``."""
    g = _torch_rng(rng)
    fine = F.interpolate(torch.randn((1, 1, shape[0] // 6, shape[1] // 6, max(2, shape[2] // 4)), generator=g),
                         size=shape, mode="trilinear", align_corners=False)[0, 0]
    coarse = F.interpolate(torch.randn((1, 1, 6, 6, 4), generator=g), size=shape, mode="trilinear", align_corners=False)[0, 0]
    w = rng.uniform(0.2, 0.8)
    t = w * fine / (fine.std() + 1e-6) + (1 - w) * coarse / (coarse.std() + 1e-6)
    return t / (t.std() + 1e-6)


def _bias(rng, shape):
    """A smooth multiplicative bias field (log-quadratic with random coefficients, up to about ±40 %)."""
    c = [torch.linspace(-1, 1, n) for n in shape]
    xx, yy, zz = torch.meshgrid(*c, indexing="ij")
    k = rng.normal(0, [0.2, 0.2, 0.1, 0.12, 0.12, 0.06, 0.1])
    log_b = k[0] * xx + k[1] * yy + k[2] * zz + k[3] * xx ** 2 + k[4] * yy ** 2 + k[5] * zz ** 2 + k[6] * xx * yy
    return torch.exp(log_b - log_b.mean())


class SynthPatches(torch.utils.data.IterableDataset):
    """An endless, seeded stream of domain-randomised patches (a torch ``IterableDataset`` for a DataLoader).

    Parameters
    ----------
    anatomies
        The :func:`anatomy_bank`.
    config
        Network config.
    seed
        Seed of the stream (each DataLoader worker offsets it by its id).
    flip_z, fat_gain, fat_leak, flip_x, dark_fascia
        Passed to :class:`SynthRenderer`.
    """

    def __init__(self, anatomies: list[Anatomy], config: dict, seed: int, flip_z: float = 0.0,
                 fat_gain: tuple[float, float] = PD_FAT_GAIN, fat_leak: float = 0.0, flip_x: float = 0.0,
                 dark_fascia: float = 0.0):
        self.anatomies, self.config, self.seed, self.flip_z = anatomies, config, seed, flip_z
        self.fat_gain, self.fat_leak, self.flip_x, self.dark_fascia = fat_gain, fat_leak, flip_x, dark_fascia

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        render = SynthRenderer(self.config, self.flip_z, fat_gain=self.fat_gain, fat_leak=self.fat_leak,
                               flip_x=self.flip_x, dark_fascia=self.dark_fascia)
        torch.set_num_threads(1)
        while True:
            yield render(self.anatomies[rng.integers(len(self.anatomies))], rng)
