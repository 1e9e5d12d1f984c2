"""Accuracy of a segmentation engine against a known truth, with the quality targets of the stage.

:func:`score` compares predicted label maps and exposures with reference ones
(pure, tables in, tables out); :func:`evaluate_segmenter` draws phantoms of two
families, segments them and scores each against its own targets:

- ``training``: the training generator's held-out phantoms (:mod:`.phantom`, protocol
  ``heldout``: spacings and axis orders the training set leaves out, seeds never trained on);
- ``independent``: phantoms of a second generator written apart from the training one
  (:mod:`.independent`: its own shapes, intensity model and orientations), never used in
  training or tuning. This is the family that says whether the network learned anatomy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..dictionary import load_dictionary
from ..errors import BackpainEpiError, InputFileError, unknown_choice
from ..tableio import read_table, write_table
from .batch import read_manifest, segment_manifest
from .infer import dice
from .io import load_volume
from .output import SegmentationOutput
from .phantom import TRUTH_EXPOSURES_FILE, write_phantoms

#: (metric, statistic over scans, direction, threshold) on the training generator's held-out phantoms
TARGETS = (
    ("dice_autochthon", "mean", ">=", 0.92),
    ("dice_psoas", "mean", ">=", 0.85),
    ("lmm_rel_err", "median", "<=", 0.05),
    ("imf_abs_err", "median", "<=", 1.5),
    ("intermat_rel_err", "median", "<=", 0.15),
)
#: the targets on the independent family
INDEPENDENT_TARGETS = (
    ("dice_autochthon", "mean", ">=", 0.85),
    ("dice_psoas", "mean", ">=", 0.75),
    ("lmm_rel_err", "median", "<=", 0.08),
    ("imf_abs_err", "median", "<=", 2.0),
    ("intermat_rel_err", "median", "<=", 0.25),
)
FAMILY_TARGETS = {"training": TARGETS, "independent": INDEPENDENT_TARGETS}
EVALUATION_SEED = 777  # never used for training (training: 1000, validation: 555, anatomies: 2000)


def score(predicted: SegmentationOutput, truth_labels: dict, truth: pd.DataFrame) -> pd.DataFrame:
    """One row per segmented participant: Dice per structure and exposure errors.

    Parameters
    ----------
    predicted
        A segmentation folder as read by :meth:`SegmentationOutput.read`: its label maps and measured exposures.
    truth_labels
        ``{participant_id: path of the reference label map}``.
    truth
        True exposures: the id column and the primary exposures of the data dictionary
        (``participant_id``, ``lmm_ml``, ``intermat_ml``, ``imf_pct``).

    Returns
    -------
    pandas.DataFrame
        ``dice_autochthon`` is the mean of the left and right Dice, ``dice_psoas`` likewise;
        ``*_rel_err`` are absolute relative errors, ``imf_abs_err`` in percentage points.
    """
    id_column = load_dictionary().id_column
    merged = predicted.exposures.merge(truth, on=id_column, suffixes=("", "_true"))
    rows = []
    for r in merged.to_dict("records"):
        pid = r[id_column]
        pred, ref = _label_map(predicted.label_path(pid)), _label_map(truth_labels[pid])
        rows.append({
            id_column: pid,
            "dice_autochthon": np.mean([dice(pred, ref, [1]), dice(pred, ref, [2])]),
            "dice_psoas": np.mean([dice(pred, ref, [3]), dice(pred, ref, [4])]),
            "lmm_rel_err": abs(r["lmm_ml"] - r["lmm_ml_true"]) / r["lmm_ml_true"],
            "imf_abs_err": abs(r["imf_pct"] - r["imf_pct_true"]),
            "intermat_rel_err": abs(r["intermat_ml"] - r["intermat_ml_true"]) / max(r["intermat_ml_true"], 1e-9),
            "qc_flag": r["qc_flag"],
        })
    return pd.DataFrame(rows)


def _label_map(path) -> np.ndarray:
    return np.rint(load_volume(path, "label")[0]).astype(np.uint8)


def summarise(scores: pd.DataFrame, n_failed: int = 0, targets=TARGETS) -> pd.DataFrame:
    """The quality ``targets`` with the achieved value and pass/fail (a failed scan fails every target)."""
    rows = []
    for metric, stat, op, threshold in targets:
        value = float(getattr(scores[metric], stat)()) if len(scores) else float("nan")
        ok = (value >= threshold if op == ">=" else value <= threshold) and n_failed == 0
        rows.append({"metric": metric, "statistic": stat, "target": f"{op} {threshold:g}", "value": round(value, 4),
                     "result": "pass" if ok else "FAIL"})
    return pd.DataFrame(rows)


def _as_numbers(true: pd.DataFrame, columns, path) -> pd.DataFrame:
    """``columns`` of the truth table as floats, or an :class:`InputFileError` naming the column and a value."""
    out = true.copy()
    for col in columns:
        numbers = pd.to_numeric(out[col], errors="coerce")
        bad = out[col][numbers.isna() & out[col].notna()]
        if len(bad):
            hint = " (decimal commas: give decimal=',')" if "," in str(bad.iloc[0]) else ""
            raise InputFileError(f"{path}: {col} {bad.iloc[0]!r} is not a number{hint}.", param="truth")
        out[col] = numbers.astype(float)
    return out


def evaluate_segmenter(out, *, n: int = 50, seed: int = EVALUATION_SEED, family: str = "both", manifest=None, truth=None,
                       engine="builtin", weights=None, erode: int = 0, device: str = "auto", workers: int | None = None,
                       progress: bool = True, sep: str | None = None, encoding: str = "utf-8",
                       decimal: str = ".") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Segment phantoms of one or both families (or a manifest with reference labels) and score them against the targets.

    Parameters
    ----------
    out
        Folder: ``<family>/phantoms/`` (when drawn), ``<family>/segmentation/``,
        ``evaluation.csv`` and ``evaluation_summary.csv`` (a ``family`` column in both).
    n, seed
        Phantoms to draw per family when no ``manifest`` is given.
    family
        ``training``, ``independent`` or ``both``.
    manifest, truth
        A manifest with a ``label`` column and a table of true exposures, instead of
        phantoms (scored as family ``manifest`` against the training targets).
    sep, encoding, decimal
        How the text of ``manifest`` and ``truth`` is read (see
        :func:`backpain_epi.tableio.read_table`); the phantoms drawn without a
        ``manifest`` are read as written.
    engine, weights, erode, device, workers
        As for :func:`~backpain_epi.segmentation.batch.segment_manifest`.

    Returns
    -------
    (scores, summary) : tuple of pandas.DataFrame
    """
    dd = load_dictionary()
    truth_columns = [dd.id_column, *dd.primary_exposures]
    out = Path(out)
    if manifest is None and n < 1:
        raise BackpainEpiError(f"{n}: draw at least one phantom per family.", param="n")
    if manifest is not None:
        if truth is None:
            raise BackpainEpiError(f": give the true exposures (a table with {', '.join(truth_columns)}) "
                                   "with manifest=FILE.", param="truth")
        sets = [("manifest", Path(manifest), Path(truth), TARGETS)]
        reading = {"sep": sep, "encoding": encoding, "decimal": decimal}
    else:
        if family not in (*FAMILY_TARGETS, "both"):
            raise BackpainEpiError(f": {unknown_choice('phantom family', family, (*FAMILY_TARGETS, 'both'))}", param="family")
        sets, reading = [], {}  # the package's own files
        for fam in FAMILY_TARGETS if family == "both" else (family,):
            folder = out / fam / "phantoms"
            m = write_phantoms(folder, n, seed, protocol="heldout", family=fam, progress=progress, resume=True)
            sets.append((fam, m, folder / TRUTH_EXPOSURES_FILE, FAMILY_TARGETS[fam]))
    all_scores, summaries = [], []
    for fam, m, t, targets in sets:
        rows = read_manifest(m, require_label=True, **reading)
        true = read_table(t, **reading)
        missing = [c for c in truth_columns if c not in true.columns]
        if missing:  # before any scan is segmented
            raise InputFileError(f"{t}: missing column(s) {', '.join(missing)}.", param="truth")
        true = _as_numbers(true[truth_columns], dd.primary_exposures, t)
        seg_dir = out / fam / "segmentation" if manifest is None else out / "segmentation"
        segment_manifest(m, seg_dir, engine=engine, weights=weights, erode=erode, device=device, workers=workers,
                         progress=progress, **reading)
        predicted = SegmentationOutput.read(seg_dir)
        scores = score(predicted, {r["participant_id"]: r["label"] for r in rows}, true)
        all_scores.append(scores.assign(family=fam))
        summaries.append(summarise(scores, len(predicted.failures), targets).assign(family=fam, n=len(scores)))
    scores, summary = pd.concat(all_scores, ignore_index=True), pd.concat(summaries, ignore_index=True)
    summary = summary[["family", "n", "metric", "statistic", "target", "value", "result"]]
    write_table(scores.round(5), out / "evaluation.csv")
    write_table(summary, out / "evaluation_summary.csv")
    return scores, summary
