"""Synthetic Dixon MRI phantoms of the lumbar region with a known truth.

A phantom is an axial lumbar slab (default 200–260 mm long) drawn from analytic
shapes in millimetres: body outline, subcutaneous fat, abdominal wall, viscera
with texture, kidneys, vertebral bodies with fatty marrow alternating with
discs, spinal canal, laminae, spinous and transverse processes, quadratus
lumborum, psoas (growing caudally) and the paired autochthonous compartments
behind the laminae, wrapped in a thin fascia. Shapes change along the slices.

The autochthonous compartment carries planted *targets* (:class:`PhantomTargets`):
its volume is scaled to ``lmm_ml + intermat_ml``, the InterMAT streaks and blobs
fill exactly ``intermat_ml`` (to a voxel) and the lean voxels' mean fat fraction
is ``imf_pct``. **The targets refer to the imaged slab**, not to the whole
lumbar spine: a cohort's values (for example ``simulate_cohort``'s ``lmm_ml``,
mean about 1,000 mL) are used as they are, and give cross-sections of about
20 cm² per side over a 240 mm slab, as in adults. The true exposures written
with a phantom are computed exactly from its true label map and noise-free fat
fraction by :func:`~backpain_epi.segmentation.exposures.compute_exposures`, the
function inference uses; they match the targets to within a few percent.

Images then get a smooth bias field, blur (partial volume), Rician noise, a
random scanner scale, int16 or float storage, and a random axis order and
flips in the affine. Everything is drawn from one seed.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from tqdm.auto import tqdm

from ..dictionary import load_dictionary
from ..errors import BackpainEpiError, unknown_choice
from ..tableio import write_table
from .exposures import compute_exposures
from .independent import make_independent_phantom
from .io import save_nifti
# what a phantom is (shared with .independent); they are this module's names too, as before
from .phantom_types import PROTOCOLS, Phantom, PhantomTargets, Protocol  # noqa: F401

SLAB_MM = (200.0, 260.0)
#: Body outline scales tried in turn until the compartments hold :data:`MIN_FIT` of the targets' volume.
BODY_SCALES = (1.0, 1.15, 1.3, 1.5)
MIN_FIT = 0.9
#: Tissue classes of the anatomy (:func:`anatomy` records which one each voxel is); the domain-randomised
#: training (:mod:`.synth`) draws an appearance for each anew per sample. Lean and InterMAT parts of the
#: autochthonous compartments are separate classes, so label 1 = 15 + 17 and label 2 = 16 + 18.
TISSUES = {
    "air": 0, "subcutaneous_fat": 1, "inner_fat": 2, "viscera": 3, "abdominal_wall": 4, "kidney": 5,
    "psoas_left": 6, "psoas_right": 7, "marrow": 8, "disc": 9, "cortex": 10, "posterior_bone": 11, "csf": 12,
    "quadratus": 13, "fascia": 14, "lean_left": 15, "lean_right": 16, "intermat_left": 17, "intermat_right": 18,
    "back_sheet": 19,
}
#: the package label (0-4) of each tissue class
TISSUE_LABEL = {TISSUES["lean_left"]: 1, TISSUES["intermat_left"]: 1, TISSUES["lean_right"]: 2,
                TISSUES["intermat_right"]: 2, TISSUES["psoas_left"]: 3, TISSUES["psoas_right"]: 4}


def draw_targets(rng: np.random.Generator) -> PhantomTargets:
    """Targets like a cohort's (lean 450–1,700 mL, InterMAT 10–300 mL, IMF 2–30 %)."""
    lmm = float(np.clip(rng.normal(980, 200), 450, 1700))
    intermat = float(np.clip(rng.lognormal(np.log(60), 0.6), 10, 300))
    imf = float(rng.uniform(2, 30) if rng.random() < 0.35 else np.clip(rng.normal(8.5, 3.0), 2, 30))
    return PhantomTargets(lmm, intermat, imf)


def make_phantom(seed, targets: PhantomTargets | None = None, protocol: str | Protocol = "full",
                 fit_body: bool | None = None) -> Phantom:
    """Draw one phantom.

    Parameters
    ----------
    seed
        Anything :func:`numpy.random.default_rng` accepts; the same seed gives
        the same phantom.
    targets
        Exposures to plant; drawn by :func:`draw_targets` when ``None``.
    protocol
        A :class:`Protocol` or a name of ``PROTOCOLS``.
    fit_body
        Enlarge the body when it is too small for the targets (default: when
        ``targets`` are given). The body outline is drawn independently of the
        targets; when the compartments hold under :data:`MIN_FIT` of the planted
        volume, the same phantom is drawn again in a body scaled by the next of
        :data:`BODY_SCALES`. Drawn targets (training and evaluation phantoms)
        keep their first body, so those phantoms stay as they were.

    Returns
    -------
    Phantom
    """
    proto = PROTOCOLS[protocol] if isinstance(protocol, str) else protocol
    given = targets
    scales = BODY_SCALES if (given is not None if fit_body is None else fit_body) else BODY_SCALES[:1]
    for body_scale in scales:  # the same draws each time, in a larger body if the muscles did not fit
        rng = np.random.default_rng(seed)
        targets = given or draw_targets(rng)
        s_in = rng.uniform(*proto.inplane_mm)
        spacing = np.array([s_in, s_in * rng.uniform(0.97, 1.03), rng.uniform(*proto.slice_mm)])
        pd, ff, labels, grid = _anatomy(rng, spacing, targets, body_scale)
        voxel_ml = float(np.prod(spacing)) / 1000.0
        exposures = compute_exposures(labels, ff, voxel_ml)
        if exposures["autochthon_ml"] >= MIN_FIT * (targets.lmm_ml + targets.intermat_ml):
            break
    water, fat = _acquire(rng, pd, ff, spacing)
    water, fat, store = _store(rng, water, fat, proto)
    perm, flips = _orientation(rng, proto)
    affine = _affine(spacing, grid["origin"], perm, flips, labels.shape)
    arrays = [_reorient(a, perm, flips) for a in (water, fat, labels, ff.astype(np.float32))]
    meta = {"spacing_mm": spacing.round(3).tolist(), "axis_order": list(perm), "flips": list(flips), "dtype": store,
            "body_scale": body_scale}
    return Phantom(*arrays, affine=affine, exposures=exposures, targets=targets, meta=meta)


# --------------------------------------------------------------------------- anatomy


def _smooth_noise(rng, shape, sigma_vox) -> np.ndarray:
    """Zero-mean, unit-SD smooth random field, computed on a coarser grid when ``sigma`` is large."""
    sigma_vox = np.asarray(sigma_vox, dtype=float)
    factor = np.maximum(1, np.floor(sigma_vox / 2)).astype(int)
    coarse = tuple(int(np.ceil(n / f)) + 1 for n, f in zip(shape, factor))
    g = ndimage.gaussian_filter(rng.standard_normal(coarse).astype(np.float32), sigma_vox / factor, mode="wrap")
    if (factor > 1).any():
        g = ndimage.zoom(g, factor, order=1)
    g = g[tuple(slice(0, n) for n in shape)]
    return (g - g.mean()) / (g.std() + 1e-8)


def _superellipse(x, y, cx, cy, ax, ay, power=2.0):
    return np.abs((x - cx) / ax) ** power + np.abs((y - cy) / ay) ** power


def _body_shape(x, y, cx, cy, ax, ay, power, back_power):
    """Superellipse of ``power``, with ``back_power`` behind its centre (a flat back when larger)."""
    if back_power == power:
        return _superellipse(x, y, cx, cy, ax, ay, power)
    return np.abs((x - cx) / ax) ** np.where(y < cy, back_power, power) + np.abs((y - cy) / ay) ** np.where(y < cy, back_power, power)


def _anatomy(rng, spacing, targets: PhantomTargets, body_scale: float = 1.0, habitus: dict | None = None):
    """The anatomy of one slab: proton density, fat fraction, labels and ``grid`` (origin, tissue classes).

    ``habitus`` (see :func:`backpain_epi.segmentation.synth.draw_habitus`) replaces the
    body and muscle shape draws by wider ones; ``None`` keeps the phantoms as they were.
    """
    hab = habitus or {}
    slab = rng.uniform(*SLAB_MM)
    nz = max(8, int(round(slab / spacing[2])))
    body_ax, body_ay = rng.uniform(125, 175) * body_scale, rng.uniform(95, 135) * body_scale
    fat_lat, fat_post = rng.uniform(6, 40), rng.uniform(6, 45)
    if hab:
        body_ax, body_ay = hab["body_ax"] * body_scale, hab["body_ay"] * body_scale
        fat_lat, fat_post = hab["fat_lat"], hab["fat_post"]
    p_body, p_back = hab.get("body_power", 2.2), hab.get("back_power", 2.2)
    fov = np.array([2 * (body_ax + fat_lat) + rng.uniform(10, 50), 2 * (body_ay + fat_post) + rng.uniform(20, 60)])
    nx, ny = (np.ceil(fov / spacing[:2])).astype(int)
    x = ((np.arange(nx) - (nx - 1) / 2) * spacing[0] + rng.uniform(-8, 8))[:, None, None]
    z_lin = (np.arange(nz) - (nz - 1) / 2) * spacing[2]
    t = ((z_lin - z_lin[0]) / max(z_lin[-1] - z_lin[0], 1))[None, None, :]  # 0 at the top slice... 1 at the bottom
    z = z_lin[None, None, :]
    # vertebral column: centre of the vertebral body at y = 0; body outline around it
    y_post_skin = -rng.uniform(75, 105) * body_scale - fat_post
    if hab:
        y_post_skin = -hab["back_depth"] * body_scale - fat_post
    cy_body = y_post_skin + body_ay + fat_post
    y = (np.arange(ny) - (ny - 1) / 2) * spacing[1]
    y = (y - y.mean() + cy_body + rng.uniform(-10, 10))[None, :, None]
    origin = np.array([x[0, 0, 0], y[0, 0, 0], z_lin[0]])
    shape = (nx, ny, nz)
    drift = (rng.uniform(-6, 6) * np.sin(np.pi * t + rng.uniform(0, np.pi)))  # lordosis: the column moves a.p.
    yv = y - drift
    lam_pd, ff = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.uint8)
    tissue = np.zeros(shape, np.uint8)

    def paint(mask, pd_val, ff_val, what):
        mask = np.broadcast_to(mask, shape)
        lam_pd[mask] = pd_val if np.isscalar(pd_val) else np.broadcast_to(pd_val, shape)[mask]
        ff[mask] = ff_val if np.isscalar(ff_val) else np.broadcast_to(ff_val, shape)[mask]
        tissue[mask] = TISSUES[what] if isinstance(what, str) else np.broadcast_to(what, shape)[mask]

    tex = _smooth_noise(rng, shape, 4.0 / spacing)
    wobble = 1 + 0.03 * np.sin(2 * np.pi * z / rng.uniform(80, 200) + rng.uniform(0, 6))
    outer = _body_shape(x, y, 0, cy_body, (body_ax + fat_lat) * wobble, body_ay + fat_post, p_body, p_back) <= 1
    cy_inner = cy_body + (fat_post - rng.uniform(6, 25)) / 2
    inner = _body_shape(x, y, 0, cy_inner, body_ax * wobble, body_ay, p_body, p_back) <= 1
    paint(outer, 1.0 + 0.03 * tex, np.clip(0.94 + 0.02 * tex, 0, 1), "subcutaneous_fat")
    visc_ff = np.clip(0.18 + 0.25 * _smooth_noise(rng, shape, 7.0 / spacing), 0, 0.95)
    paint(inner & (yv > -25), np.clip(0.55 + 0.2 * tex, 0.05, 1.2), visc_ff, "viscera")
    paint(inner & (yv <= -25), 0.95, np.clip(0.9 + 0.03 * tex, 0, 1), "inner_fat")
    wall = inner & ~(_body_shape(x, y, 0, cy_body, body_ax - rng.uniform(8, 16), body_ay - rng.uniform(8, 16), p_body, p_back) <= 1)
    paint(wall & (yv > -20), 0.8, np.clip(0.06 + 0.02 * tex, 0, 0.4), "abdominal_wall")
    muscle_room = inner  # where the back muscles may lie
    gap = hab.get("back_gap_mm", 0.0)
    if gap > 0:  # fat or a muscle sheet between the back muscles and the subcutaneous fat
        muscle_room = _body_shape(x, y, 0, cy_inner + gap / 2, body_ax * wobble - gap / 2, body_ay - gap / 2, p_body, p_back) <= 1
        sheet = inner & ~muscle_room & (yv < -25)
        paint(sheet, 0.8 if hab.get("back_sheet_muscle") else 0.95, 0.06 if hab.get("back_sheet_muscle") else 0.9,
              "back_sheet" if hab.get("back_sheet_muscle") else "inner_fat")
    kidney_top = rng.uniform(0.3, 0.6)
    for s in (-1, 1):
        kidney = (_superellipse(x, yv, s * rng.uniform(60, 80), rng.uniform(5, 25), 28, 22) <= 1) & (t < kidney_top)
        paint(kidney & inner, 0.9, 0.03, "kidney")
    # vertebral bodies alternate with discs
    period = rng.uniform(32, 42)
    disc = np.cos(2 * np.pi * (z - rng.uniform(0, period)) / period) > np.cos(np.pi * rng.uniform(8, 12) / period)
    vb_ax, vb_ay = rng.uniform(20, 27), rng.uniform(14, 18)
    vb = _superellipse(x, yv, 0, 0, vb_ax, vb_ay, 2.4) <= 1
    marrow_ff = rng.uniform(0.3, 0.65)
    # psoas, growing caudally, anterolateral to the vertebral body
    r_ps = rng.uniform(17, 26) * (0.45 + 0.55 * t ** 0.8) * hab.get("psoas_scale", 1.0)
    psoas = {}
    for s, lab in ((-1, 3), (1, 4)):
        r_s = r_ps * rng.uniform(0.92, 1.08)
        cx = s * (vb_ax * 0.75 + r_s * 0.9)
        psoas[lab] = (_superellipse(x, yv, cx, vb_ay * 0.1 + r_s * 0.2, r_s * 1.1, r_s * 0.9) <= 1) & ~vb & inner
        paint(psoas[lab], 0.8, np.clip(rng.uniform(0.02, 0.10) + 0.015 * tex, 0, 0.45), "psoas_left" if lab == 3 else "psoas_right")
    paint(vb, np.where(disc, 0.75, 0.55), np.where(disc, 0.04, np.clip(marrow_ff + 0.05 * tex, 0, 1)),
          np.where(disc, TISSUES["disc"], TISSUES["marrow"]))
    rim = vb & ~(_superellipse(x, yv, 0, 0, vb_ax - 1.5, vb_ay - 1.5, 2.4) <= 1) & ~disc
    paint(rim, 0.05, 0.3, "cortex")
    # spinal canal, laminae, spinous and transverse processes
    cy_canal = -vb_ay - rng.uniform(8, 11)
    r_canal = rng.uniform(7, 10)
    ring = np.hypot(x, yv - cy_canal)
    lamina = (ring < r_canal + rng.uniform(4, 7)) & (yv < cy_canal + 3)
    sp_w, sp_len = rng.uniform(5, 10), rng.uniform(28, 42)
    y_sp0 = cy_canal - r_canal
    spinous = (np.abs(x) < sp_w / 2) & (yv < y_sp0) & (yv > y_sp0 - sp_len * (0.8 + 0.2 * ~disc))
    transverse = (np.abs(yv - (cy_canal + 4)) < 4) & (np.abs(x) < rng.uniform(45, 58)) & ~disc
    bone = (lamina | spinous | transverse) & ~vb
    paint(bone & inner, 0.45, np.clip(0.5 + 0.05 * tex, 0, 1), "posterior_bone")
    paint(ring < r_canal, 0.95, 0.02, "csf")
    # autochthonous compartments: scaled so that their volume carries the targets
    y_top = cy_canal + rng.uniform(-2, 4) + hab.get("top_shift_mm", 0.0)
    shape_p = {s: dict(a=rng.uniform(0.9, 1.25), power=rng.uniform(2.0, 3.0), asym=rng.uniform(0.94, 1.06),
                       harm=rng.normal(0, 0.04, 3), phase=rng.uniform(0, 2 * np.pi, 3)) for s in (-1, 1)}
    if hab:  # rounded to flat muscles
        for s in (-1, 1):
            shape_p[s].update(a=hab["muscle_aspect"] * rng.uniform(0.95, 1.05), power=hab["muscle_power"],
                              harm=shape_p[s]["harm"] * hab["muscle_harm"] / 0.04)
    grow = 1 + rng.uniform(-0.15, 0.15) * (t - 0.5) + 0.05 * np.sin(2 * np.pi * z / rng.uniform(90, 160))
    voxel_ml = float(np.prod(spacing)) / 1000.0
    target_ml = targets.lmm_ml + targets.intermat_ml

    def compartments(k):
        masks, fvals = {}, {}
        for s, lab in ((-1, 1), (1, 2)):
            p = shape_p[s]
            b = 22.0 * k * grow * p["asym"]
            a = b * p["a"]
            cx, cy = s * (sp_w / 2 + 1.5 + a), y_top - b
            theta = np.arctan2(yv - cy, x - cx)
            r = 1 + sum(p["harm"][i] * np.cos((i + 2) * theta + p["phase"][i]) for i in range(3))
            f = _superellipse(x, yv, cx, cy, a * r, b * r, p["power"])
            masks[lab] = (f <= 1) & (s * x > sp_w / 2 + 1) & ~bone & muscle_room
            fvals[lab] = f ** (1 / p["power"])
        return masks, fvals

    k = np.sqrt(target_ml / 1000.0 / (slab / 240.0))
    tried = []
    for _ in range(5):
        masks, fvals = compartments(k)
        vol = (masks[1].sum() + masks[2].sum()) * voxel_ml
        tried.append((abs(vol - target_ml), k))
        k *= np.sqrt(target_ml / max(vol, 1e-6))
    masks, fvals = compartments(k)
    if (masks[1].sum() + masks[2].sum()) * voxel_ml < 0.5 * target_ml:
        # a body too small for the target: the scale ran away and left the outline; take the closest scale tried
        masks, fvals = compartments(min(tried)[1])
    ql_r = rng.uniform(12, 20)
    for s in (-1, 1):  # quadratus lumborum lateral to the compartment, behind the transverse process
        ql = _superellipse(x, yv, s * rng.uniform(55, 75), cy_canal + 2, ql_r * 1.4, ql_r * 0.8) <= 1
        paint(ql & inner & ~bone, 0.8, np.clip(0.07 + 0.02 * tex, 0, 0.45), "quadratus")
    fascia_mm = rng.uniform(1.0, 2.5)
    for lab in (1, 2):
        shell = (fvals[lab] <= 1 + fascia_mm / 25.0) & ~masks[lab] & inner & ~bone & (np.abs(x) > sp_w / 2)
        paint(shell, 0.8, rng.uniform(0.55, 0.9), "fascia")
    compartment = masks[1] | masks[2]
    labels[masks[1]], labels[masks[2]] = 1, 2
    labels[psoas[3] & ~compartment], labels[psoas[4] & ~compartment] = 3, 4
    _fill_compartment(rng, compartment, lam_pd, ff, spacing, voxel_ml, targets, hab)
    fatty = ff >= 0.5
    for lab, side in ((1, "left"), (2, "right")):
        tissue[(labels == lab) & ~fatty] = TISSUES[f"lean_{side}"]
        tissue[(labels == lab) & fatty] = TISSUES[f"intermat_{side}"]
    tissue[labels == 3], tissue[labels == 4] = TISSUES["psoas_left"], TISSUES["psoas_right"]
    return lam_pd, ff, labels, {"origin": origin, "tissue": tissue}


def _fill_compartment(rng, compartment, pd, ff, spacing, voxel_ml, targets: PhantomTargets, hab: dict | None = None):
    """Lean muscle with texture at mean fat fraction ``imf_pct``, InterMAT streaks and blobs of ``intermat_ml``.

    With ``hab["intermat_edge"]`` the InterMAT leans towards the compartment's edge (> 0) or its core
    (< 0), and with ``hab["septum_weight"]`` > 0 it gathers along a septum in each compartment.
    """
    idx = np.nonzero(compartment.any(axis=(1, 2)))[0], np.nonzero(compartment.any(axis=(0, 2)))[0], np.nonzero(compartment.any(axis=(0, 1)))[0]
    box = tuple(slice(i[0], i[-1] + 1) for i in idx)
    sub = compartment[box]
    n = int(sub.sum())
    streaks = _smooth_noise(rng, sub.shape, np.array([1.2, 2.5, 18.0]) / spacing)
    blobs = _smooth_noise(rng, sub.shape, np.array([5.0, 5.0, 8.0]) / spacing)
    w = rng.uniform(0.2, 0.9)
    field = (w * streaks + (1 - w) * blobs)[sub]
    if hab and "intermat_edge" in hab:
        field = field + _intermat_geometry(sub, spacing, hab)
    n_int = int(round(targets.intermat_ml / voxel_ml))
    n_int = min(n_int, n - 1)
    order = np.argpartition(-field, n_int)[:n_int] if n_int > 0 else np.array([], int)
    is_int = np.zeros(n, bool)
    is_int[order] = True
    tex = _smooth_noise(rng, sub.shape, np.array([2.0, 2.0, 6.0]) / spacing)[sub]
    lean_ff = np.clip(targets.imf_pct / 100 + rng.uniform(0.01, 0.03) * tex[~is_int], 0.0, 0.45)
    for _ in range(6):  # shift so that the mean is the target despite the clipping
        lean_ff = np.clip(lean_ff + targets.imf_pct / 100 - lean_ff.mean(), 0.0, 0.45)
    values = np.empty(n, np.float32)
    values[~is_int] = lean_ff
    values[is_int] = np.clip(rng.uniform(0.65, 0.92) + 0.04 * tex[is_int], 0.55, 1.0)
    ff_box, pd_box = ff[box], pd[box]
    ff_box[sub] = values
    pd_box[sub] = np.where(is_int, 0.95, 0.8 + 0.03 * tex)


def _intermat_geometry(sub, spacing, hab) -> np.ndarray:
    """Where InterMAT gathers beyond streaks and blobs: the edge (or core) and a septum per side; one value per voxel of ``sub``."""
    depth = ndimage.distance_transform_edt(sub, sampling=spacing)[sub]
    extra = hab["intermat_edge"] * -(depth - depth.mean()) / (depth.std() + 1e-6)
    if hab.get("septum_weight", 0) > 0:
        x, y = (np.nonzero(sub)[a] * spacing[a] for a in (0, 1))
        mid = (x.min() + x.max()) / 2
        d = np.zeros_like(depth)
        for side in (x < mid, x >= mid):  # one septum per compartment, through its centre, tilted in-plane
            if side.any():
                cx, cy, half = x[side].mean(), y[side].mean(), np.ptp(x[side]) / 2
                theta = hab["septum_angle"]
                d[side] = np.abs(np.cos(theta) * (x[side] - cx) + np.sin(theta) * (y[side] - cy) - hab["septum_offset"] * half)
        extra = extra + 3 * hab["septum_weight"] * np.exp(-((d / 2.5) ** 2))
    return extra


# --------------------------------------------------------------------------- acquisition and storage


def _acquire(rng, pd, ff, spacing):
    """Noise-free water/fat → bias field, blur, Rician noise (float32, muscle ≈ 0.8 before the bias)."""
    pd = pd * rng.uniform(0.85, 1.15)
    water, fat = pd * (1 - ff), pd * ff
    coords = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in pd.shape], indexing="ij", sparse=True)
    log_bias = sum(rng.normal(0, 0.25) * c for c in coords) + sum(rng.normal(0, 0.15) * c ** 2 for c in coords)
    log_bias = log_bias + rng.normal(0, 0.15) * coords[0] * coords[1]
    bias = np.exp(log_bias - np.mean(log_bias)).astype(np.float32)
    # point spread beyond the voxel (k-space apodisation, motion), in voxels
    sigma_blur = np.array([rng.uniform(0.2, 0.5), rng.uniform(0.2, 0.5), rng.uniform(0.1, 0.4)])
    sigma_noise = rng.uniform(0.004, 0.025)
    out = []
    for img in (water, fat):
        img = ndimage.gaussian_filter(img * bias, sigma_blur)
        n1 = rng.standard_normal(img.shape, dtype=np.float32) * sigma_noise
        n2 = rng.standard_normal(img.shape, dtype=np.float32) * sigma_noise
        out.append(np.sqrt((img + n1) ** 2 + n2 ** 2).astype(np.float32))
    return out


def _store(rng, water, fat, proto: Protocol):
    if rng.random() < proto.int16_prob:
        scale = np.exp(rng.uniform(np.log(300), np.log(6000)))
        conv = [np.clip(np.round(a * scale), 0, 32767).astype(np.int16) for a in (water, fat)]
        return conv[0], conv[1], "int16"
    scale = np.exp(rng.uniform(np.log(0.01), np.log(5000)))
    return (water * scale).astype(np.float32), (fat * scale).astype(np.float32), "float32"


def _orientation(rng, proto: Protocol):
    slice_axis = int(rng.choice(proto.slice_axes))
    inplane = [0, 1] if rng.random() < 0.5 else [1, 0]
    perm = inplane[:slice_axis] + [2] + inplane[slice_axis:]
    flips = tuple(bool(rng.random() < 0.5) for _ in range(3))
    return tuple(perm), flips


def _reorient(arr, perm, flips):
    out = np.transpose(arr, perm)
    for ax, f in enumerate(flips):
        if f:
            out = np.flip(out, axis=ax)
    return np.ascontiguousarray(out)


def _affine(spacing, origin, perm, flips, canonical_shape):
    """Affine of the stored array: stored index n maps to canonical index c, then to RAS mm."""
    base = np.diag([*spacing, 1.0])
    base[:3, 3] = origin
    t = np.zeros((4, 4))
    t[3, 3] = 1
    for d, c in enumerate(perm):
        if flips[d]:
            t[c, d], t[c, 3] = -1, canonical_shape[c] - 1
        else:
            t[c, d] = 1
    return base @ t


# --------------------------------------------------------------------------- files


FAMILIES = ("training", "independent")
#: the files of a phantom folder (its own layout, apart from a segmentation folder's: see :mod:`.output`)
MANIFEST_FILE = "manifest.csv"
TRUTH_EXPOSURES_FILE = "truth_exposures.csv"
RECORDS_DIR = "records"


def write_phantoms(out: str | os.PathLike, n: int, seed: int, protocol: str | Protocol = "full", targets=None,
                   progress: bool = True, workers: int = 1, resume: bool = False, family: str = "training"):
    """Write ``n`` phantoms, their manifest and their true exposures.

    Parameters
    ----------
    out
        Folder; gets ``images/<id>_water.nii.gz``, ``images/<id>_fat.nii.gz``,
        ``truth/<id>_label.nii.gz``, ``truth/<id>_ff.nii.gz``, ``manifest.csv``
        (with a ``label`` column) and ``truth_exposures.csv`` (true exposures,
        the planted ``target_*`` values and the acquisition settings).
    n, seed
        Number of phantoms and the seed; phantom ``i`` depends only on
        ``(seed, i)``.
    protocol
        A :class:`Protocol` or a name of ``PROTOCOLS``.
    targets
        Optional table (DataFrame) with the id column and the primary exposures
        of the data dictionary (``participant_id``, ``lmm_ml``, ``intermat_ml``,
        ``imf_pct``): one phantom per row (``n`` is then ignored), carrying those exposures.
    progress
        Show a progress bar.
    workers
        Processes drawing phantoms in parallel (the result does not depend on it).
    resume
        Keep the phantoms an interrupted call into the same ``out`` (same ``n``,
        ``seed``, ``protocol`` and ``targets``) finished: each phantom's record
        (``records/<id>.json``) is written after its images, and a phantom with a
        record is not drawn again.
    family
        ``training``: this module's generator; ``independent``: the evaluation-only
        generator of :mod:`.independent` (its own acquisition: ``protocol`` and
        ``targets`` do not apply; ids ``IN<seed>-<i>``).

    Returns
    -------
    pathlib.Path
        The manifest's path.
    """
    out = Path(out)
    if family not in FAMILIES:
        raise BackpainEpiError(f": {unknown_choice('phantom family', family, FAMILIES)}", param="family")
    if family == "independent" and targets is not None:
        raise BackpainEpiError(": the independent phantom family draws its own anatomy; plant targets in phantoms of "
                               "family=training.", param="targets")
    dd = load_dictionary()
    if targets is not None:
        missing = [c for c in (dd.id_column, *dd.primary_exposures) if c not in targets.columns]
        if missing:
            raise BackpainEpiError(f": missing column(s) {', '.join(missing)}.", param="targets")
        ids = [str(p) for p in targets[dd.id_column]]
        planted = [PhantomTargets(**{k: float(r[k]) for k in dd.primary_exposures}) for r in targets.to_dict("records")]
    else:
        ids = [f"{'PH' if family == 'training' else 'IN'}{seed}-{i:04d}" for i in range(n)]
        planted = [None] * n
    seeds = np.random.SeedSequence(seed).spawn(len(ids))
    jobs = list(zip(ids, seeds, planted))
    done = {pid: _read_record(out, pid) for pid in ids} if resume else {}
    rows = {pid: rec for pid, rec in done.items() if rec is not None}
    jobs = [j for j in jobs if j[0] not in rows]
    bar = tqdm(total=len(ids), initial=len(rows), desc="phantoms", unit="vol", disable=not progress)
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for job, row in zip(jobs, pool.map(_write_one, [out] * len(jobs), *zip(*jobs), [protocol] * len(jobs),
                                               [family] * len(jobs), chunksize=4)):
                rows[job[0]] = row
                bar.update()
    else:
        for job in jobs:
            rows[job[0]] = _write_one(out, *job, protocol, family)
            bar.update()
    bar.close()
    ordered = [rows[pid] for pid in ids]
    write_table(pd.DataFrame([t for _, t in ordered]), out / TRUTH_EXPOSURES_FILE)
    return write_table(pd.DataFrame([m for m, _ in ordered]), out / MANIFEST_FILE)


def _read_record(out: Path, pid: str) -> tuple[dict, dict] | None:
    path = _record_path(out, pid)
    if not path.is_file():
        return None
    rec = json.loads(path.read_text(encoding="utf-8"))
    return rec["manifest"], rec["truth"]


def _record_path(out: Path, pid: str) -> Path:
    return out / RECORDS_DIR / f"{pid}.json"


def _write_one(out: Path, pid: str, ss, tgt, protocol, family: str = "training") -> tuple[dict, dict]:
    """Draw and save one phantom; its manifest row and truth row."""
    if family == "independent":
        ph = make_independent_phantom(ss)
    else:
        ph = make_phantom(ss, tgt, protocol)
    paths = {"water": f"images/{pid}_water.nii.gz", "fat": f"images/{pid}_fat.nii.gz",
             "label": f"truth/{pid}_label.nii.gz", "ff": f"truth/{pid}_ff.nii.gz"}
    for key, arr in (("water", ph.water), ("fat", ph.fat), ("label", ph.labels), ("ff", ph.ff)):
        save_nifti(out / paths[key], arr, ph.affine)
    dd = load_dictionary()
    manifest = {dd.id_column: pid, "water": paths["water"], "fat": paths["fat"], "label": paths["label"]}
    truth = {dd.id_column: pid, **ph.exposures, **{f"target_{k}": getattr(ph.targets, k) for k in dd.primary_exposures},
             "spacing_mm": "x".join(f"{s:g}" for s in ph.meta["spacing_mm"]),
             "axis_order": "".join(map(str, ph.meta.get("axis_order", ph.meta.get("axcodes", "")))), "dtype": ph.meta["dtype"]}
    _write_record(out, pid, manifest, truth)
    return manifest, truth


def _write_record(out: Path, pid: str, manifest: dict, truth: dict) -> None:
    """The phantom's manifest and truth rows, written atomically after its images (what ``resume`` reads)."""
    path = _record_path(out, pid)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"manifest": manifest, "truth": truth}, default=lambda o: o.item()), encoding="utf-8")
    os.replace(tmp, path)
