"""The segmentation folder: its layout, defined once, and its one reader.

``segment_manifest`` writes, under its output folder::

    labels/<participant_id>.nii.gz   uint8 label map on the input's grid and affine
    exposures.csv                    one row per segmented participant (dictionary table ``exposures``: the
                                     exposures, QC, and the SEs of the primary exposures, see :mod:`.uncertainty`)
    failures.csv                     participant_id, reason: the inputs that could not be processed
    manifest.csv                     the manifest as segmented, with absolute paths
    .parts/<participant_id>.json     per-participant records, the basis of resuming

:class:`SegmentationOutput` reads it back for the report, the pipeline and the
evaluation; nothing else spells out these names.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import InputFileError
from ..tableio import read_table

LABELS_DIR = "labels"
EXPOSURES_FILE = "exposures.csv"
FAILURES_FILE = "failures.csv"
MANIFEST_FILE = "manifest.csv"
RECORDS_DIR = ".parts"
FAILURE_COLUMNS = ("participant_id", "reason")


def file_stamp(path) -> list:
    """``[absolute path, size, mtime in ns]`` of a file (``None`` for the last two when it does not exist).

    A record keeps the stamp of every file it was made from, so that a rerun, and a reader, can tell a changed input.
    """
    p = Path(path or "").expanduser().absolute()
    st = p.stat() if p.is_file() else None
    return [str(p), st.st_size, st.st_mtime_ns] if st else [str(p), None, None]


def label_path(folder: str | os.PathLike, participant_id: str) -> Path:
    """Where the label map of ``participant_id`` lies in segmentation folder ``folder``."""
    return Path(folder) / LABELS_DIR / f"{participant_id}.nii.gz"


def record_path(folder: str | os.PathLike, participant_id: str) -> Path:
    """Where the per-participant record of ``participant_id`` lies in segmentation folder ``folder``."""
    return Path(folder) / RECORDS_DIR / f"{participant_id}.json"


@dataclass
class SegmentationOutput:
    """What a segmentation folder holds: exposures, failures, the manifest as segmented, and the label maps.

    Attributes
    ----------
    folder
        The folder.
    exposures
        ``exposures.csv``, numeric columns as numbers.
    failures
        ``failures.csv`` (``participant_id``, ``reason``); empty when every scan was segmented.
    manifest
        ``manifest.csv`` with absolute paths, or ``None`` for a folder of an older version.
    """

    folder: Path
    exposures: pd.DataFrame
    failures: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(FAILURE_COLUMNS)))
    manifest: pd.DataFrame | None = None

    @classmethod
    def read(cls, folder: str | os.PathLike, *, param: str = "segmentation") -> SegmentationOutput:
        """Read the folder that ``segment_manifest`` wrote; ``param`` names the argument in errors."""
        folder = Path(folder)
        if not folder.is_dir():
            raise InputFileError(f"{folder}: folder not found; give the output folder of `segment_manifest` "
                                 "(`backpain-epi segment --out`).", param=param)
        if not (folder / EXPOSURES_FILE).is_file():
            raise InputFileError(f"{folder}: no {EXPOSURES_FILE}; is this the output folder of `segment_manifest` "
                                 "(`backpain-epi segment --out`)?", param=param)
        exposures = read_table(folder / EXPOSURES_FILE)
        for c in exposures.columns:
            if c != "participant_id":
                exposures[c] = pd.to_numeric(exposures[c])
        failures = pd.DataFrame(columns=list(FAILURE_COLUMNS))
        if (folder / FAILURES_FILE).is_file():  # header only when every scan was segmented
            failures = pd.read_csv(folder / FAILURES_FILE, dtype=str, keep_default_na=False)
        manifest = read_table(folder / MANIFEST_FILE) if (folder / MANIFEST_FILE).is_file() else None
        return cls(folder=folder, exposures=exposures, failures=failures, manifest=manifest)

    def stale(self) -> list[str]:
        """Participants whose exposures no longer describe the scans the manifest names.

        One is stale when it is missing from the manifest, or its record was made from other
        files than the manifest's (another path, or a file changed since: size and
        modification time). A participant without a record (a folder not written by
        ``segment_manifest``) cannot be checked and is not counted.
        """
        if self.manifest is None:
            return []
        rows = self.manifest.set_index("participant_id")
        stale = []
        for pid in self.exposures["participant_id"].astype(str):
            path = record_path(self.folder, pid)
            if pid not in rows.index:
                stale.append(pid)
                continue
            if not path.is_file():
                continue
            files = (json.loads(path.read_text(encoding="utf-8")).get("key") or {}).get("files", {})
            for column, stamp in files.items():
                if column in rows.columns and file_stamp(rows.loc[pid, column]) != stamp:
                    stale.append(pid)
                    break
        return stale

    def check_current(self, *, param: str = "segmentation") -> SegmentationOutput:
        """``self`` when every participant's exposures come from the scans the manifest names; else a clear error."""
        stale = self.stale()
        if stale:
            shown = ", ".join(stale[:5]) + (f" and {len(stale) - 5} more" if len(stale) > 5 else "")
            raise InputFileError(f"{self.folder}: the exposures of {len(stale)} participant(s) ({shown}) were not made from the "
                                 "scans its manifest names (the manifest or the images changed since); segment again "
                                 "(`backpain-epi segment` redoes what changed).", param=param)
        return self

    @property
    def failed_ids(self) -> set[str]:
        return set(self.failures["participant_id"].astype(str))

    def label_path(self, participant_id: str) -> Path:
        return label_path(self.folder, participant_id)
