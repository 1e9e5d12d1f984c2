"""The segmentation: its QC counts and overlays, and the agreement of measured with planted exposures of phantom scans."""

from __future__ import annotations

import numpy as np

from ...segmentation.io import Grid, ScanError, load_volume
from ...segmentation.output import SegmentationOutput
from ..context import ReportContext
from ..plots import plot_agreement, plot_qc_overlays
from ..plots.qc import MAX_OVERLAYS
from ..stats import agreement_table, paired_exposures, qc_counts
from ..tables import format_agreement, format_qc
from .base import FigureItem, SectionOutput, TableItem


def overlay_samples(seg: SegmentationOutput, notes: list[str]) -> list[dict]:
    """The participants shown in the QC overlays (flagged ones first, then others; at most six), read in RAS.

    A scan that cannot be read is skipped with a note in ``notes``.
    """
    if seg.manifest is None:
        notes.append(f"{seg.folder} has no manifest.csv (segmented with an older version): no overlays.")
        return []
    ex = seg.exposures
    flagged = ex[ex["qc_flag"] == 1]["participant_id"].tolist()
    others = ex[ex["qc_flag"] != 1]["participant_id"].tolist()
    pick = flagged[: MAX_OVERLAYS // 2] + others[: MAX_OVERLAYS - min(len(flagged), MAX_OVERLAYS // 2)]
    paths = seg.manifest.set_index("participant_id")
    samples = []
    for pid in pick[:MAX_OVERLAYS]:
        label_path = seg.label_path(pid)
        if pid not in paths.index or not label_path.is_file():
            continue
        try:
            water, affine = load_volume(paths.loc[pid, "water"], "water image")
            labels = load_volume(label_path, "label map")[0].round().astype(np.uint8)
        except ScanError as exc:
            notes.append(f"QC overlay of {pid} skipped: {exc}.")
            continue
        if labels.shape != water.shape:
            notes.append(f"QC overlay of {pid} skipped: its label map ({'×'.join(map(str, labels.shape))}) is not on the grid "
                         f"of its water image ({'×'.join(map(str, water.shape))}); segment it again.")
            continue
        grid = Grid.plan(water.shape, affine, (1.0, 1.0, 1.0))  # RAS, as the overlays expect
        samples.append({"participant_id": pid, "water": grid.to_canonical(water), "labels": grid.to_canonical(labels),
                        "spacing": grid.spacing, "flagged": pid in flagged, "note": ""})
    return samples


def segmentation_qc(ctx: ReportContext) -> SectionOutput:
    """With a segmentation folder: scans segmented, failed and flagged, and sample overlays of the label contours."""
    seg = ctx.segmentation
    if seg is None:
        return SectionOutput()
    notes: list[str] = []
    samples = overlay_samples(seg, notes)
    figures = {"figure": FigureItem("qc_overlays", plot_qc_overlays(samples)[0].figure, "Sample segmentations: label contours "
                                    "on the water image (axial slice through the muscles); QC-flagged participants first.")
               } if samples else {}
    return SectionOutput(
        tables={"table": TableItem("segmentation_qc", format_qc(qc_counts(seg.exposures, seg.failures)),
                                   "Segmentation: scans segmented, failed and flagged by the QC rules")},
        figures=figures, notes=notes,
    )


def agreement(ctx: ReportContext) -> SectionOutput:
    """With planted exposures: their agreement with the measured ones (ICC, limits of agreement) and the scatter.

    Values: ``numbers``, the agreement table (:func:`~backpain_epi.reporting.stats.agreement_table`).
    """
    if ctx.planted is None:
        return SectionOutput()
    measured = ctx.planted_exposures
    pairs = paired_exposures(ctx.table, ctx.planted, measured, id_col=ctx.dictionary.id_column)
    numbers = agreement_table(pairs, measured)
    return SectionOutput(
        tables={"table": TableItem("segmentation_agreement", format_agreement(numbers, ctx.dictionary), "Exposures measured by "
                                   "segmentation against the values planted in the phantom images: mean difference (measured − "
                                   "planted) with Bland–Altman 95% limits of agreement (LoA), the median absolute relative error, "
                                   "and the intraclass correlation for absolute agreement", numeric=numbers)},
        figures={"figure": FigureItem("segmentation_agreement", plot_agreement(pairs, measured, ctx.dictionary)[0].figure,
                                      "Measured against planted exposures, one point per participant; dashed: line of identity.")},
        values={"numbers": numbers},
    )
