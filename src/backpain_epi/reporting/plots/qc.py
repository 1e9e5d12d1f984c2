"""Segmentation QC overlays: an axial water slice per participant with the label contours."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import Patch

from ..style import DOUBLE_COLUMN_IN, FLAG_COLOUR, SEGMENTATION_LABELS
from ._axes import legend, own_grid

QC_KEYS = ("participant_id", "water", "labels", "spacing")
#: Panels of the overlay figure at most.
MAX_OVERLAYS = 6


def _qc_slice(labels: np.ndarray) -> int:
    """Index (last axis) of the slice through the middle of the labelled muscle; the middle slice if none."""
    z = np.flatnonzero((labels > 0).any(axis=(0, 1)))
    return int((z[0] + z[-1]) // 2) if z.size else labels.shape[2] // 2


def _overlay(ax: Axes, s: dict, crop_mm: float | None) -> None:
    """One participant's panel: the slice, the contours, the crop window, the title and the note."""
    water, labels = np.asarray(s["water"], dtype=float), np.asarray(s["labels"])
    if water.ndim != 3 or labels.shape != water.shape:
        raise ValueError(f"{s['participant_id']}: water {water.shape} and labels {labels.shape} "
                         "must be 3-D arrays of the same shape")
    sx, sy = (float(v) for v in s["spacing"][:2])
    k = _qc_slice(labels)
    img, lab = water[:, :, k], labels[:, :, k]
    vmin, vmax = np.percentile(img, [1, 99])
    if vmax <= vmin:
        vmax = vmin + 1
    nx, ny = img.shape
    extent = (-0.5 * sx, (nx - 0.5) * sx, -0.5 * sy, (ny - 0.5) * sy)
    ax.imshow(img.T, cmap="gray", vmin=vmin, vmax=vmax, origin="lower", extent=extent,
              interpolation="nearest", aspect="equal")
    xc, yc = np.arange(nx) * sx, np.arange(ny) * sy
    for value, (_, colour) in SEGMENTATION_LABELS.items():
        mask = lab == value
        if mask.any():
            ax.contour(xc, yc, mask.T.astype(float), levels=[0.5], colors=[colour], linewidths=0.9)
    if crop_mm is not None and (lab > 0).any():
        # a square window around the labelled muscle, so that all panels have the same size
        ix, iy = np.nonzero(lab > 0)
        cx, cy = (ix.min() + ix.max()) / 2 * sx, (iy.min() + iy.max()) / 2 * sy
        half = max((ix.max() - ix.min() + 1) * sx, (iy.max() - iy.min() + 1) * sy) / 2 + crop_mm
        ax.set_xlim(cx - half, cx + half)
        ax.set_ylim(cy - half, cy + half)
        ax.set_facecolor("black")
    else:
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
    ax.invert_xaxis()  # radiological view: the patient's right (+x in RAS) on the left
    ax.set_xticks([]), ax.set_yticks([])
    flagged = bool(s.get("flagged", False))
    title = str(s["participant_id"]) + (" \u00b7 QC flagged" if flagged else "")
    ax.set_title(title, color=FLAG_COLOUR if flagged else "black", fontweight="bold" if flagged else "normal")
    for sp in ax.spines.values():
        sp.set_visible(flagged)
        if flagged:
            sp.set_color(FLAG_COLOUR)
            sp.set_linewidth(1.2)
    note = str(s.get("note") or "")
    label = f"slice {k + 1}/{labels.shape[2]}" + (f" \u00b7 {note}" if note else "")
    ax.set_xlabel(textwrap.fill(label, 48), fontsize=6.5)


def plot_qc_overlays(samples: Sequence[dict], *, crop_mm: float | None = 30.0, axes=None) -> np.ndarray:
    """Segmentation QC: an axial water slice per participant with the label contours.

    Parameters
    ----------
    samples
        Up to 6 dicts (more are ignored), each with ``participant_id`` (str),
        ``water`` (3-D array), ``labels`` (3-D int array, same shape; 0
        background, 1/2 autochthonous left/right, 3/4 psoas left/right),
        ``spacing`` (voxel size in mm per axis) and optionally ``flagged``
        (bool) and ``note`` (str). Arrays are in RAS orientation, as
        :meth:`backpain_epi.segmentation.io.Grid.to_canonical` gives them:
        axis 0 left→right, axis 1 posterior→anterior, the last axis the slice
        axis; ``spacing`` is then ``Grid.spacing``.
    crop_mm
        Margin (mm) around the labelled muscle of the shown slice: each panel is a
        square window centred on it (black outside the image); ``None`` shows the whole slice.
    axes
        At least one axes per sample shown (the others are hidden); by default a
        new double-column figure of up to 3 panels a row.

    Returns
    -------
    numpy.ndarray
        The axes. Each panel shows the slice through the middle of the labelled
        muscle in radiological view (anterior up, patient's right on the left),
        windowed to the slice's 1st–99th percentile, with true aspect from the
        spacing; contours in four colours with a shared legend (above the panels
        of a figure the plot made, in the first panel otherwise); the title is
        red with "· QC flagged" when flagged, and the note is written below the panel.
    """
    samples = list(samples)[:MAX_OVERLAYS]
    if not samples:
        raise ValueError("samples is empty: give at least one participant")
    for i, s in enumerate(samples):
        missing = [k for k in QC_KEYS if k not in s]
        if missing:
            raise ValueError(f"sample {i} lacks key(s) {', '.join(missing)}")
    n = len(samples)
    ncol = min(n, 3)
    nrow = math.ceil(n / ncol)
    panel = (DOUBLE_COLUMN_IN - 0.1) / 3
    with own_grid(axes, n, nrow, ncol, DOUBLE_COLUMN_IN, 0.35 + (panel + 0.5) * nrow) as (axes, own):
        if own:
            axes[0].figure.get_layout_engine().set(h_pad=0.06, hspace=0.06)
        for ax, s in zip(axes, samples):
            _overlay(ax, s, crop_mm)
        for ax in axes[n:]:
            ax.set_visible(False)
        handles = [Patch(facecolor="none", edgecolor=colour, lw=1.2, label=name)
                   for name, colour in SEGMENTATION_LABELS.values()]
        legend(axes[0], own, 4, handles=handles)
    return axes
