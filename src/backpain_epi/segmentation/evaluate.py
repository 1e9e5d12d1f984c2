"""Accuracy of the segmenter against a known truth, with the quality targets of the stage.

:func:`score` compares predicted label maps and exposures with reference ones
(pure, tables in, tables out); :func:`evaluate_segmenter` draws held-out
phantoms (protocol ``heldout``: spacings and axis orders the training set
leaves out), segments them and scores them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

#: (metric, statistic over scans, direction, threshold)
TARGETS = (
    ("dice_autochthon", "mean", ">=", 0.92),
    ("dice_psoas", "mean", ">=", 0.85),
    ("lmm_rel_err", "median", "<=", 0.05),
    ("imf_abs_err", "median", "<=", 1.5),
    ("intermat_rel_err", "median", "<=", 0.15),
)
EVALUATION_SEED = 777  # never used for training (training: 1000, validation: 555)


def score(pred_dir, truth_labels: dict, exposures: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """One row per participant: Dice per structure and exposure errors.

    Parameters
    ----------
    pred_dir
        Folder of predicted label maps ``<id>.nii.gz``.
    truth_labels
        ``{participant_id: path of the reference label map}``.
    exposures, truth
        Measured and true exposures (``participant_id``, ``lmm_ml``, ``intermat_ml``, ``imf_pct``).

    Returns
    -------
    pandas.DataFrame
        ``dice_autochthon`` is the mean of the left and right Dice, ``dice_psoas`` likewise;
        ``*_rel_err`` are absolute relative errors, ``imf_abs_err`` in percentage points.
    """
    import nibabel as nib

    from .infer import dice

    merged = exposures.merge(truth, on="participant_id", suffixes=("", "_true"))
    rows = []
    for r in merged.itertuples():
        pred = np.asanyarray(nib.load(Path(pred_dir) / f"{r.participant_id}.nii.gz").dataobj)
        ref = np.rint(np.asanyarray(nib.load(truth_labels[r.participant_id]).dataobj)).astype(np.uint8)
        rows.append({
            "participant_id": r.participant_id,
            "dice_autochthon": np.mean([dice(pred, ref, [1]), dice(pred, ref, [2])]),
            "dice_psoas": np.mean([dice(pred, ref, [3]), dice(pred, ref, [4])]),
            "lmm_rel_err": abs(r.lmm_ml - r.lmm_ml_true) / r.lmm_ml_true,
            "imf_abs_err": abs(r.imf_pct - r.imf_pct_true),
            "intermat_rel_err": abs(r.intermat_ml - r.intermat_ml_true) / max(r.intermat_ml_true, 1e-9),
            "qc_flag": r.qc_flag,
        })
    return pd.DataFrame(rows)


def summarise(scores: pd.DataFrame, n_failed: int = 0) -> pd.DataFrame:
    """The quality targets with the achieved value and pass/fail (a failed scan fails every target)."""
    rows = []
    for metric, stat, op, threshold in TARGETS:
        value = float(getattr(scores[metric], stat)()) if len(scores) else float("nan")
        ok = (value >= threshold if op == ">=" else value <= threshold) and n_failed == 0
        rows.append({"metric": metric, "statistic": stat, "target": f"{op} {threshold:g}", "value": round(value, 4),
                     "result": "pass" if ok else "FAIL"})
    return pd.DataFrame(rows)


def evaluate_segmenter(out, *, n: int = 50, seed: int = EVALUATION_SEED, manifest=None, truth=None, weights=None,
                       device: str = "auto", workers: int | None = None, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Segment held-out phantoms (or a manifest with reference labels) and score them against the targets.

    Parameters
    ----------
    out
        Folder: ``phantoms/`` (when drawn), ``segmentation/``, ``evaluation.csv``, ``evaluation_summary.csv``.
    n, seed
        Phantoms to draw (protocol ``heldout``) when no ``manifest`` is given.
    manifest, truth
        A manifest with a ``label`` column and a table of true exposures, instead of phantoms.
    weights, device, workers
        As for :func:`~backpain_epi.segmentation.batch.segment_manifest`.

    Returns
    -------
    (scores, summary) : tuple of pandas.DataFrame
    """
    from ..errors import BackpainEpiError
    from ..tableio import read_table, write_table
    from .batch import read_manifest, segment_manifest
    from .phantom import write_phantoms

    out = Path(out)
    if manifest is None:
        manifest = write_phantoms(out / "phantoms", n, seed, protocol="heldout", progress=progress)
        truth = out / "phantoms" / "truth_exposures.csv"
    elif truth is None:
        raise BackpainEpiError("--truth: give the true exposures (CSV with participant_id, lmm_ml, intermat_ml, imf_pct) with --manifest.")
    rows = read_manifest(manifest, require_label=True)
    result = segment_manifest(manifest, out / "segmentation", weights=weights, device=device, workers=workers, progress=progress)
    true = read_table(truth)[["participant_id", "lmm_ml", "intermat_ml", "imf_pct"]]
    true[["lmm_ml", "intermat_ml", "imf_pct"]] = true[["lmm_ml", "intermat_ml", "imf_pct"]].astype(float)
    scores = score(out / "segmentation" / "labels", {r["participant_id"]: r["label"] for r in rows}, result.exposures, true)
    summary = summarise(scores, len(result.failures))
    write_table(scores.round(5), out / "evaluation.csv")
    write_table(summary, out / "evaluation_summary.csv")
    return scores, summary
