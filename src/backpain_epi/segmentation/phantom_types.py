"""What a phantom is, apart from how it is drawn: planted targets, acquisition protocols, the phantom record.

Shared by the training generator (:mod:`.phantom`) and the independent one
(:mod:`.independent`), which both return a :class:`Phantom`; :mod:`.phantom`
writes either to a phantom folder. The targets are the data dictionary's primary
exposures (``load_dictionary().primary_exposures``), for the imaged slab.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import BackpainEpiError

#: What a phantom slab can hold: lean muscle (mL), InterMAT as a fraction of it, intramuscular fat (%).

class PhantomTargetError(BackpainEpiError, ValueError):
    """Exposures a phantom slab cannot hold."""

TARGET_LIMITS = {"lmm_ml": (150.0, 3000.0), "intermat_per_lmm": 0.6, "imf_pct": (1.0, 40.0)}


@dataclass(frozen=True)
class PhantomTargets:
    """Exposures to plant in one phantom, for the imaged slab: the dictionary's primary exposures, by name.

    Attributes
    ----------
    lmm_ml
        Lean muscle volume of both autochthonous compartments (mL).
    intermat_ml
        InterMAT volume inside them (mL).
    imf_pct
        Mean fat fraction of the lean compartment voxels (%), 1–40.
    """

    lmm_ml: float
    intermat_ml: float
    imf_pct: float

    def __post_init__(self):
        lo, hi = TARGET_LIMITS["lmm_ml"]
        if not lo <= self.lmm_ml <= hi:
            raise PhantomTargetError(f"lmm_ml={self.lmm_ml}: a phantom slab holds {lo:g}–{hi:g} mL of lean muscle")
        if not 0 <= self.intermat_ml <= TARGET_LIMITS["intermat_per_lmm"] * self.lmm_ml:
            raise PhantomTargetError(f"intermat_ml={self.intermat_ml}: must be between 0 and {TARGET_LIMITS['intermat_per_lmm']:g} × lmm_ml")
        lo, hi = TARGET_LIMITS["imf_pct"]
        if not lo <= self.imf_pct <= hi:
            raise PhantomTargetError(f"imf_pct={self.imf_pct}: must be between {lo:g} and {hi:g}")

    @classmethod
    def nearest(cls, lmm_ml: float, intermat_ml: float, imf_pct: float) -> "PhantomTargets":
        """The targets closest to the given exposures that a phantom can hold (each clipped to its limits)."""
        lmm = float(np.clip(lmm_ml, *TARGET_LIMITS["lmm_ml"]))
        return cls(lmm, float(np.clip(intermat_ml, 0.0, TARGET_LIMITS["intermat_per_lmm"] * lmm)),
                   float(np.clip(imf_pct, *TARGET_LIMITS["imf_pct"])))


@dataclass(frozen=True)
class Protocol:
    """Acquisition settings phantoms are drawn from.

    Attributes
    ----------
    inplane_mm, slice_mm
        Ranges of the in-plane pixel size and of the slice spacing (mm).
    slice_axes
        Array axes the slice direction may be stored on (0, 1, 2).
    int16_prob
        Probability of storing the images as int16 (else float32).
    """

    inplane_mm: tuple[float, float] = (1.2, 2.5)
    slice_mm: tuple[float, float] = (2.5, 6.0)
    slice_axes: tuple[int, ...] = (0, 1, 2)
    int16_prob: float = 0.5


#: ``train`` leaves out the extreme spacings and any slice axis but the last;
#: ``heldout`` (= ``full``) covers them, so an evaluation on it includes unseen ones.
PROTOCOLS = {
    "full": Protocol(),
    "train": Protocol(inplane_mm=(1.4, 2.2), slice_mm=(3.0, 5.5), slice_axes=(2,)),
    "heldout": Protocol(),
}


@dataclass
class Phantom:
    """One phantom: stored images, truth, affine (all arrays in the stored orientation)."""

    water: np.ndarray
    fat: np.ndarray
    labels: np.ndarray
    ff: np.ndarray
    affine: np.ndarray
    exposures: dict
    targets: PhantomTargets
    meta: dict = field(default_factory=dict)
