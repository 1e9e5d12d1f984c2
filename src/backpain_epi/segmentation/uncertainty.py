"""Standard errors of the primary exposures from the network's voxel probabilities, calibrated on phantoms.

**Method** (``probability-band``). The network gives each voxel a probability of
belonging to the autochthonous compartment, ``q = p(left) + p(right)``. Where the
network is sure, ``q`` is near 0 or 1; along an uncertain boundary it passes through
a band of intermediate values. The exposures are measured again on two label maps
drawn at the edges of that band, an *outer* one (``q >= 0.25``) and an *inner* one
(``q >= 0.75``), each voxel keeping the side of its larger probability, with the
same fat fraction, erosion and definitions as the exposures themselves
(:func:`~.exposures.compute_exposures`). Half their difference is the raw spread of
each exposure: a whole boundary moving together (the errors of neighbouring voxels
are strongly correlated, so a sum of independent voxel variances would be far too
small). It costs two exposure computations and no extra network pass.

**Calibration.** The raw spread is a scale, not yet an SE. One factor per exposure,
fitted on held-out phantoms of the training generator, turns it into one: the
factor is the 95th percentile of ``|measured - true| / raw`` divided by 1.96, so
that ``measured ± 1.96 SE`` covers the truth in 95 % of those phantoms. The factors
live in a JSON file beside the weights (:func:`calibration_path`), with the SHA-256
of the weights they were fitted for; ``benchmarks/bench_segmentation.py
se-calibration`` fits them (:func:`fit_factors`) and reports the coverage on other
seeds and on the independent phantom family (BENCHMARKS.md). Weights without a
matching calibration file get the raw spread, and the record says so.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputFileError
from ..tableio import write_text
from .exposures import LEAN_FF_THRESHOLD, compute_exposures

METHOD = "probability-band"
BAND = (0.25, 0.75)  # the outer and inner edges of the boundary band, on q = p(left) + p(right)
SE_EXPOSURES = ("lmm_ml", "intermat_ml", "imf_pct")  # the data dictionary's primary exposures
SE_COLUMNS = tuple(f"{e}_se" for e in SE_EXPOSURES)
Z95 = 1.959963984540054
CALIBRATION_SUFFIX = ".se.json"
#: the note of a record whose engine gives no voxel probabilities
NO_SE_NOTE = "this engine gives no voxel probabilities: the SE columns are missing (NaN)"


@dataclass(frozen=True)
class SeCalibration:
    """The factors that turn the raw spread into SEs, for one weights file.

    Attributes
    ----------
    factors
        ``{exposure: factor}``; ``SE = factor × raw spread``. Empty: uncalibrated (SE = raw spread).
    path
        The calibration file, ``None`` when there is none.
    note
        Why the SEs are uncalibrated, ``""`` when they are calibrated.
    """

    factors: dict = field(default_factory=dict)
    path: Path | None = None
    note: str = ""

    @property
    def calibrated(self) -> bool:
        return bool(self.factors)

    def record(self) -> dict:
        """What a segmentation record keeps about the SEs."""
        out = {"method": METHOD, "band": list(BAND), "calibrated": self.calibrated,
               "factors": {e: self.factors.get(e) for e in SE_EXPOSURES}}
        if self.note:
            out["note"] = self.note
        return out


def calibration_path(weights) -> Path:
    """The calibration file of a weights file: ``unet_phantom.pt`` -> ``unet_phantom.se.json`` beside it."""
    weights = Path(weights)
    return weights.with_name(weights.stem + CALIBRATION_SUFFIX)


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_calibration(weights) -> SeCalibration:
    """The calibration of ``weights`` (see :func:`calibration_path`); uncalibrated, with a note, if it has none.

    Raises
    ------
    InputFileError
        The calibration file exists but is not one (unreadable JSON, a factor that is not a positive number).
    """
    path = calibration_path(weights)
    if not path.is_file():
        return SeCalibration(note=f"no calibration file {path.name} beside the weights: SE = the raw probability-band "
                                  "spread, not calibrated (fit one with `benchmarks/bench_segmentation.py se-calibration`)")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        factors = {e: float(saved["factors"][e]) for e in SE_EXPOSURES}
        sha = saved["weights_sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputFileError(f"{path}: not an SE calibration file ({type(exc).__name__}: {exc}); delete it or fit it "
                             "again with `benchmarks/bench_segmentation.py se-calibration`.", param="weights") from None
    bad = [e for e, f in factors.items() if not (np.isfinite(f) and f > 0)]
    if bad:
        raise InputFileError(f"{path}: the factor of {', '.join(bad)} must be a positive number.", param="weights")
    if saved.get("method") != METHOD:
        raise InputFileError(f"{path}: calibrates method {saved.get('method')!r}, this package computes {METHOD!r}; fit it again.",
                             param="weights")
    if sha != file_sha256(weights):
        return SeCalibration(path=path, note=f"{path.name} was fitted for other weights (SHA-256 differs): SE = the raw "
                                             "probability-band spread, not calibrated")
    return SeCalibration(factors=factors, path=path)


def raw_spread(probabilities: np.ndarray, ff: np.ndarray, voxel_ml: float, reliable: np.ndarray | None = None,
               erode: int = 0, slice_axis: int = 2) -> dict:
    """Half the difference of each primary exposure between the outer and inner band label maps.

    Parameters
    ----------
    probabilities
        ``(2, X, Y, Z)``: the probabilities of the left and right compartment (labels 1 and 2) on the input grid.
    ff, voxel_ml, reliable, erode, slice_axis
        As for :func:`~.exposures.compute_exposures`.

    Returns
    -------
    dict
        ``{exposure: raw spread}`` for ``lmm_ml``, ``intermat_ml``, ``imf_pct``. When a band map has no lean
        voxel (its ``imf_pct`` is undefined), that of ``imf_pct`` is the SD of the fat fraction (%) of the lean
        voxels of the outer map, NaN if it has none either.
    """
    left, right = np.asarray(probabilities[0]), np.asarray(probabilities[1])
    q = left + right
    side = np.where(left >= right, 1, 2).astype(np.uint8)
    outer, inner = (compute_exposures(np.where(q >= t, side, 0).astype(np.uint8), ff, voxel_ml, reliable, erode, slice_axis)
                    for t in BAND)
    raw = {e: abs(outer[e] - inner[e]) / 2 for e in SE_EXPOSURES}
    if np.isnan(raw["imf_pct"]):  # a band map without lean voxels (a network sure of nothing): the spread of their fat
        lean = np.asarray(ff)[(q >= BAND[0]) & (np.asarray(ff) < LEAN_FF_THRESHOLD)]
        raw["imf_pct"] = float(100 * lean.std()) if lean.size else float("nan")
    return raw


def standard_errors(raw: dict, calibration: SeCalibration) -> dict:
    """``{<exposure>_se: factor × raw}`` (factor 1 when uncalibrated)."""
    return {f"{e}_se": float(calibration.factors.get(e, 1.0) * raw[e]) for e in SE_EXPOSURES}


def missing_standard_errors() -> dict:
    """The SE columns of an engine that cannot give them: all NaN."""
    return {c: float("nan") for c in SE_COLUMNS}


def fit_factors(raw: dict, errors: dict) -> dict:
    """One factor per exposure: the 95th percentile of ``|error| / raw`` over the scans, divided by 1.96.

    ``raw`` and ``errors`` map each exposure to arrays over the same scans (measured - true); scans with a
    non-finite or zero raw spread are left out.
    """
    factors = {}
    for e in SE_EXPOSURES:
        r, err = np.asarray(raw[e], float), np.asarray(errors[e], float)
        ok = np.isfinite(r) & np.isfinite(err) & (r > 0)
        if ok.sum() < 10:
            raise ValueError(f"{e}: {ok.sum()} scans with a usable raw spread; at least 10 are needed to calibrate")
        factors[e] = float(np.quantile(np.abs(err[ok]) / r[ok], 0.95) / Z95)
    return factors


def coverage(se: np.ndarray, error: np.ndarray) -> dict:
    """How ``measured ± 1.96 SE`` covers the truth: coverage, SD of the z-scores, and their median |z|."""
    se, error = np.asarray(se, float), np.asarray(error, float)
    ok = np.isfinite(se) & np.isfinite(error) & (se > 0)
    z = error[ok] / se[ok]
    return {"n": int(ok.sum()), "coverage_95": float(np.mean(np.abs(z) <= Z95)) if ok.any() else float("nan"),
            "z_sd": float(np.std(z, ddof=1)) if ok.sum() > 1 else float("nan"),
            "median_abs_z": float(np.median(np.abs(z))) if ok.any() else float("nan")}


def write_calibration(weights, factors: dict, info: dict) -> Path:
    """Write the calibration file of ``weights`` (atomically), with its SHA-256 and what it was fitted on."""
    path = calibration_path(weights)
    body = {"method": METHOD, "band": list(BAND), "weights": Path(weights).name, "weights_sha256": file_sha256(weights),
            "factors": {e: factors[e] for e in SE_EXPOSURES}, **info}
    write_text(json.dumps(body, indent=2) + "\n", path)
    return path
