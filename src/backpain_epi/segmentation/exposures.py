"""Exposures of one participant from a label map and a fat-fraction map.

The same functions compute the true exposures of a phantom (from its true
label map and noise-free fat fraction) and the measured exposures of a scan
(from the predicted label map and the fat fraction of the Dixon images), so
the two are comparable by construction.

Labels: 0 background, 1 autochthonous compartment left, 2 right, 3 psoas left,
4 psoas right. The autochthonous compartment (labels 1 and 2) is split at a fat
fraction of 0.5 into lean muscle (``lmm``) and InterMAT (``intermat``);
``imf_pct`` is the mean fat fraction of its lean voxels, in percent.

**Fat fraction at the mask edge.** A mask drawn on the fascia (by another tool, or by
hand) includes partial-volume voxels that mix muscle with the fat around it, which lift
the fat fraction: averaging F/(F+W) over the whole mask (as MuscleMap does) counts them.
With ``erode`` = n, the composition (the lean/InterMAT split and ``imf_pct``) is measured
on the compartment eroded by n voxels *in-plane* (the slices keep their thickness), and
the split is applied to the volume of the whole mask: ``lmm_ml`` = ``autochthon_ml`` ×
the lean share of the core. Volumes of the whole mask are unchanged. A compartment too
thin to erode keeps its whole mask.
"""

from __future__ import annotations

import numpy as np

LABEL_NAMES = {1: "autochthon_left", 2: "autochthon_right", 3: "psoas_left", 4: "psoas_right"}


def mirror_table(ids: dict[str, int]) -> tuple[int, ...]:
    """ID -> the ID of the same structure on the other side, for a left-right mirror.

    ``ids`` maps names to IDs; ``x_left`` and ``x_right`` swap, every other ID maps to itself.
    """
    table = list(range(max(ids.values()) + 1))
    for name, i in ids.items():
        for this, other in (("_left", "_right"), ("_right", "_left")):
            if name.endswith(this):
                table[i] = ids[name[: -len(this)] + other]
    return tuple(table)

LEAN_FF_THRESHOLD = 0.5  # compartment voxels below it are lean muscle, at or above it InterMAT
UNRELIABLE_SIGNAL_REL = 0.02  # water + fat below this fraction of the 99th percentile: fat fraction undefined

#: QC rules: a participant is flagged (``qc_flag`` = 1) when any of them fails.
QC_MAX_ASYMMETRY = 0.35
QC_MAX_UNRELIABLE_FRAC = 0.05
QC_MIN_STRUCTURE_ML = 5.0  # each of the four structures must be at least this large

#: What :func:`compute_exposures` returns, in the order of the exposures table: the data dictionary's
#: ``exposures`` table after its id column (``tests/segmentation/test_exposures.py`` checks that they agree).
EXPOSURE_COLUMNS = (
    "lmm_ml", "intermat_ml", "imf_pct", "autochthon_ml", "psoas_ml",
    "autochthon_left_ml", "autochthon_right_ml", "psoas_left_ml", "psoas_right_ml",
    "lmm_left_ml", "lmm_right_ml", "intermat_left_ml", "intermat_right_ml", "imf_left_pct", "imf_right_pct",
    "qc_asymmetry", "qc_ff_unreliable_frac", "qc_flag",
)


def fat_fraction(water: np.ndarray, fat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fat fraction ``fat / (water + fat)`` and the mask of voxels where it is defined.

    Parameters
    ----------
    water, fat
        Dixon magnitude images on the same grid, any scale; negative values
        are treated as 0.

    Returns
    -------
    ff : numpy.ndarray (float32)
        Fat fraction in [0, 1]; 0 where water + fat is below
        ``UNRELIABLE_SIGNAL_REL`` times the 99th percentile of water + fat
        (over at most a million regularly spaced voxels).
    reliable : numpy.ndarray (bool)
        True where the fat fraction is defined.
    """
    w = np.clip(np.asarray(water, dtype=np.float32), 0, None)
    f = np.clip(np.asarray(fat, dtype=np.float32), 0, None)
    total = w + f
    sample = total.ravel()[:: max(1, total.size // 1_000_000)]  # a regular subsample keeps the percentile cheap
    positive = sample[sample > 0]
    floor = UNRELIABLE_SIGNAL_REL * float(np.percentile(positive, 99)) if positive.size else np.inf
    reliable = total > floor
    ff = np.zeros_like(total)
    np.divide(f, total, out=ff, where=reliable)
    return np.clip(ff, 0.0, 1.0), reliable


def compute_exposures(labels: np.ndarray, ff: np.ndarray, voxel_ml: float, reliable: np.ndarray | None = None,
                      erode: int = 0, slice_axis: int = 2) -> dict:
    """Volumes, InterMAT, intramuscular fat and QC of one label map.

    Parameters
    ----------
    labels
        Integer label map (0–4, see the module docstring).
    ff
        Fat fraction on the same grid, in [0, 1].
    voxel_ml
        Volume of one voxel in mL.
    reliable
        Voxels where the fat fraction is defined (see :func:`fat_fraction`);
        ``None`` means all (a noise-free phantom).
    erode
        Voxels to erode each compartment by, in-plane, before measuring its
        composition (see the module docstring); 0 measures the whole mask.
    slice_axis
        The array axis across the slices (the erosion leaves it alone).

    Returns
    -------
    dict
        One value per name of ``EXPOSURE_COLUMNS``. ``imf_*`` is NaN where a
        compartment has no lean voxel, ``qc_asymmetry`` where both sides are
        empty.
    """
    labels = np.asarray(labels)
    ff = np.asarray(ff, dtype=np.float64)
    if labels.shape != ff.shape:
        raise ValueError(f"labels {labels.shape} and fat fraction {ff.shape} have different shapes")
    if erode < 0 or int(erode) != erode:
        raise ValueError(f"erode={erode}: a whole number of voxels, 0 or more")
    out: dict = {}
    side, cores = {}, {}
    for name, lab in (("left", 1), ("right", 2)):
        mask = labels == lab
        cores[name] = core = _core(mask, int(erode), slice_axis)
        side[name] = mask.sum() * voxel_ml
        out[f"autochthon_{name}_ml"] = side[name]
        lean_ml, out[f"imf_{name}_pct"] = _composition(ff[core], side[name])
        out[f"lmm_{name}_ml"], out[f"intermat_{name}_ml"] = lean_ml, side[name] - lean_ml
    out["psoas_left_ml"] = (labels == 3).sum() * voxel_ml
    out["psoas_right_ml"] = (labels == 4).sum() * voxel_ml
    compartment = (labels == 1) | (labels == 2)
    out["autochthon_ml"] = compartment.sum() * voxel_ml
    out["lmm_ml"] = out["lmm_left_ml"] + out["lmm_right_ml"]  # so that the sides add up, eroded or not
    out["intermat_ml"] = out["autochthon_ml"] - out["lmm_ml"]
    out["imf_pct"] = _composition(ff[cores["left"] | cores["right"]], out["autochthon_ml"])[1]
    out["psoas_ml"] = out["psoas_left_ml"] + out["psoas_right_ml"]
    mean_side = (side["left"] + side["right"]) / 2
    out["qc_asymmetry"] = abs(side["left"] - side["right"]) / mean_side if mean_side > 0 else np.nan
    n_c = int(compartment.sum())
    out["qc_ff_unreliable_frac"] = float((~reliable[compartment]).sum() / n_c) if reliable is not None and n_c else 0.0
    out["qc_flag"] = int(qc_failures(out) != [])
    return {k: (float(out[k]) if k != "qc_flag" else out[k]) for k in EXPOSURE_COLUMNS}


def _core(mask: np.ndarray, erode: int, slice_axis: int) -> np.ndarray:
    """``mask`` eroded by ``erode`` voxels in-plane; the whole mask when that would leave nothing."""
    if erode == 0 or not mask.any():
        return mask
    # lazy: scipy.ndimage takes about 0.4 s to import and only an erosion (erode > 0, rarely used) needs it
    from scipy import ndimage

    structure = np.zeros((3, 3, 3), bool)
    plane = [slice(None)] * 3
    plane[slice_axis] = 1
    structure[tuple(plane)] = ndimage.generate_binary_structure(2, 1)
    core = ndimage.binary_erosion(mask, structure, iterations=erode)
    return core if core.any() else mask


def _composition(ff_core: np.ndarray, volume_ml: float) -> tuple[float, float]:
    """Lean volume (the lean share of ``ff_core`` times ``volume_ml``) and the mean lean fat fraction (%)."""
    if ff_core.size == 0:
        return 0.0, np.nan
    lean = ff_core < LEAN_FF_THRESHOLD
    return float(volume_ml * lean.mean()), (100.0 * ff_core[lean].mean() if lean.any() else np.nan)


def qc_failures(exposures: dict) -> list[str]:
    """Names of the QC rules that ``exposures`` breaks (empty when it passes)."""
    failed = []
    small = [n for n in ("autochthon_left_ml", "autochthon_right_ml", "psoas_left_ml", "psoas_right_ml")
             if not exposures[n] >= QC_MIN_STRUCTURE_ML]
    if small:
        failed.append(f"structure below {QC_MIN_STRUCTURE_ML:g} mL: {', '.join(small)}")
    if not exposures["qc_asymmetry"] <= QC_MAX_ASYMMETRY:  # NaN fails too
        failed.append(f"left/right asymmetry above {QC_MAX_ASYMMETRY:g}")
    if exposures["qc_ff_unreliable_frac"] > QC_MAX_UNRELIABLE_FRAC:
        failed.append(f"unreliable fat fraction in more than {QC_MAX_UNRELIABLE_FRAC:.0%} of the compartment")
    return failed
