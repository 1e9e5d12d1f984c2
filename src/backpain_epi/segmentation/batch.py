"""Segment every scan of a manifest: resumable, one failure never stops the batch, serial or on Dask.

Every engine (:mod:`.engines`: the builtin UNet, nnU-Net, TotalSegmentator, existing
label maps) goes through this one path; only the label map differs.

The output folder's layout is defined in :mod:`.output`. Each participant's
result is a small JSON record (:func:`.output.record_path`) written atomically
after its label map (:func:`.output.label_path`, also written atomically). The
exposures and failures tables are rebuilt from those records at the end of
every run, so a killed run leaves no half file and a rerun skips the
participants already done (failed ones are retried). A
record remembers what made it (the engine and its settings, the edge erosion,
and the size and modification time of each input file); a participant whose
record differs is segmented again. The builtin engine also writes a standard error of
each primary exposure (``lmm_ml_se``, ``intermat_ml_se``, ``imf_pct_se``: see
:mod:`.uncertainty`; its method and calibration file are part of the record's key);
the other engines give no voxel probabilities, so their SE columns are missing and
the record says why.

With ``workers`` the scans run on a local Dask cluster (one process per
worker, one thread each); with ``scheduler`` on an existing Dask cluster.
Each worker loads the network once; where GPUs exist, worker ``i`` uses GPU
``i mod n_gpus``.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..dictionary import load_dictionary
from ..errors import BackpainEpiError, InputFileError
from ..tableio import read_table, write_table
from ..validation import validate_table
from .engines import EngineSpec, engine_key, make_engine
from .exposures import EXPOSURE_COLUMNS, compute_exposures, fat_fraction
from .io import ScanError, load_dixon, load_volume, save_nifti
from .network import default_weights_path
from .output import EXPOSURES_FILE, FAILURE_COLUMNS, FAILURES_FILE, MANIFEST_FILE, file_stamp, label_path, record_path
from .uncertainty import NO_SE_NOTE, SE_COLUMNS, missing_standard_errors, raw_spread, standard_errors

#: the exposures table: the id column, then these (the data dictionary's ``exposures`` table)
TABLE_COLUMNS = (*EXPOSURE_COLUMNS, *SE_COLUMNS)

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class BatchResult:
    """Outcome of :func:`segment_manifest`.

    Attributes
    ----------
    exposures, failures
        The exposures and failures tables written to the output folder (see :mod:`.output`).
    n_processed, n_skipped
        Participants segmented in this run, and skipped because already done.
    out
        The output folder.
    """

    exposures: pd.DataFrame
    failures: pd.DataFrame
    n_processed: int
    n_skipped: int
    out: Path


def read_manifest(path, *, require_label: bool | str = False, dictionary=None, sep: str | None = None,
                  encoding: str = "utf-8", decimal: str = ".") -> list[dict]:
    """Read and validate a manifest; return one dict per row with absolute paths.

    ``require_label``: ``True`` needs a ``label`` path in every row (training and
    evaluation); ``"column"`` needs the column only (a row without a label fails on
    its own, as a bad scan does).

    ``sep``, ``encoding``, ``decimal``: how the manifest's text is read (see
    :func:`backpain_epi.tableio.read_table`), e.g. ``sep=";", encoding="latin-1"``
    for a semicolon-separated Latin-1 export.

    Raises
    ------
    InputFileError
        Unreadable file (not in ``encoding``, split on another delimiter than
        ``sep``, ...), unsafe participant ids (they become file names), or no
        ``label`` path where ``require_label``.
    DataValidationError
        The manifest breaks the dictionary's ``manifest`` table (missing column,
        duplicate id, ...); the report lists every problem.
    """
    path = Path(path)
    df = read_table(path, sep=sep, encoding=encoding, decimal=decimal)
    validate_table(df, "manifest", dictionary, source=str(path)).raise_for_errors()
    bad = [str(p) for p in df["participant_id"] if not _SAFE_ID.match(str(p))]
    if bad:
        raise InputFileError(f"{path}: participant_id {', '.join(map(repr, bad[:5]))} cannot be used as a file name; "
                             "use letters, digits, '.', '_' and '-' only (starting with a letter or digit).")
    if require_label == "column" and "label" not in df.columns:
        raise InputFileError(f"{path}: engine=labels needs a 'label' column with each participant's label map.")
    if require_label is True and ("label" not in df.columns or df["label"].isna().any()):
        missing = df["participant_id"][df["label"].isna()].tolist() if "label" in df.columns else "all rows"
        raise InputFileError(f"{path}: a 'label' path (a reference label map) is needed in every row; missing for {missing}.")
    rows = []
    for rec in df.to_dict("records"):
        row = {"participant_id": str(rec["participant_id"])}
        for key in ("water", "fat", "label"):
            value = rec.get(key)
            if isinstance(value, str) and value:
                p = Path(value).expanduser()
                row[key] = str(p if p.is_absolute() else (path.parent / p).absolute())
        rows.append(row)
    return rows


def segment_manifest(manifest, out, *, engine="builtin", weights=None, model=None, label_scheme=None, erode: int = 0,
                     device: str = "auto", batch_size: int = 4, workers: int | None = None,
                     scheduler: str | None = None, progress: bool = True, dictionary=None, sep: str | None = None,
                     encoding: str = "utf-8", decimal: str = ".") -> BatchResult:
    """Segment the scans of ``manifest`` into ``out``.

    Parameters
    ----------
    manifest
        CSV with ``participant_id``, ``water``, ``fat`` (paths relative to it or absolute),
        and ``label`` for the ``labels`` engine.
    sep, encoding, decimal
        How the manifest's text is read (see :func:`read_manifest`); the copy in
        ``out`` is always written as comma-separated UTF-8.
    engine
        ``builtin``, ``nnunet``, ``totalsegmentator`` or ``labels`` (see :mod:`.engines`),
        or an :class:`~backpain_epi.segmentation.engines.EngineSpec`, which then
        supplies ``weights``, ``model``, ``label_scheme``, ``device`` and ``batch_size``.
    model
        ``nnunet``: the trained nnU-Net v2 model folder.
    label_scheme
        ``labels`` (and ``nnunet``): how the label IDs map to the package's labels: a
        built-in scheme name (``backpain-epi``, ``totalsegmentator-total_mr``) or a YAML file.
    erode
        Voxels to erode each compartment by in-plane before measuring its fat
        fraction and lean/InterMAT split (see :mod:`.exposures`); 0 uses the whole mask.
    out
        Output folder (its layout: :mod:`.output`): the label maps, the exposures,
        the failures, and the manifest with absolute paths (which the report's QC
        overlays read); read it back with :meth:`.output.SegmentationOutput.read`.
    weights
        Weights file; default: the shipped weights (see ``network.default_weights_path``).
    device
        ``auto``, ``cpu``, ``cuda`` (or ``cuda:N``).
    batch_size
        Patches per forward pass of the sliding-window inferer (larger is faster on a GPU).
    workers
        Run on a local Dask cluster with this many worker processes.
    scheduler
        Address of a Dask scheduler (``tcp://host:8786``) to run on instead.
    progress
        Show a progress bar with ETA.

    Returns
    -------
    BatchResult
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputFileError(f"{out}: is a file; give a folder.", param="out")
    if workers is not None and workers < 1:
        raise BackpainEpiError(f"{workers}: must be at least 1.", param="workers")
    if erode < 0 or int(erode) != erode:
        raise BackpainEpiError(f"{erode}: a whole number of voxels, 0 or more.", param="erode")
    if not isinstance(engine, EngineSpec):
        engine = EngineSpec(engine=str(engine), weights=str(weights) if weights else None, model=str(model) if model else None,
                            label_scheme=str(label_scheme) if label_scheme else None, device=device, batch_size=batch_size)
    if engine.engine == "builtin":  # the weights used are recorded, so a changed default is seen
        engine = replace(engine, weights=str(Path(engine.weights) if engine.weights else default_weights_path()))
    engine.check()  # a missing weights file, model folder or scheme fails here, before any work
    if engine.engine == "totalsegmentator" and workers:
        raise BackpainEpiError("totalsegmentator starts processes of its own, which Dask's daemonic workers cannot: "
                               "run it without workers=N (on a cluster, set distributed.worker.daemon: False and use "
                               "scheduler=ADDRESS).", param="engine")
    rows = read_manifest(manifest, require_label="column" if engine.engine == "labels" else False, dictionary=dictionary,
                         sep=sep, encoding=encoding, decimal=decimal)
    if not (out / MANIFEST_FILE).exists() or not (out / MANIFEST_FILE).samefile(manifest):  # never overwrite the input
        _write_manifest_copy(out, rows)
    reuse = not engine.engine_class().gives_probabilities  # the SEs need the probabilities: no label map is reused
    state = {r["participant_id"]: _state(out, r, record_key(engine, r, erode), reuse) for r in rows}
    todo = [r for r in rows if state[r["participant_id"]] != "done"]
    for r in todo:
        r["_reuse_labels"] = state[r["participant_id"]] == "labels"  # only the erosion changed: the label map stands
    spec = {"out": str(out), "engine": engine, "erode": int(erode)}
    bar = tqdm(total=len(todo), desc="segment", unit="scan", disable=not progress)
    if todo and (scheduler or workers):
        _run_dask(todo, spec, bar, workers=workers, scheduler=scheduler)
    else:
        for row in todo:
            process_one(row, **spec)
            bar.update()
    bar.close()
    exposures, failures = collect(out, [r["participant_id"] for r in rows], dictionary)
    return BatchResult(exposures, failures, len(todo), len(rows) - len(todo), out)


def record_key(engine, row: dict, erode: int = 0) -> dict:
    """What a participant's result depends on: the engine and what it reads (see :func:`.engines.engine_key`), the
    erosion, and the size and modification time of each input file."""
    files = {col: file_stamp(row.get(col)) for col in ("water", "fat") + (("label",) if engine.engine == "labels" else ())}
    return {"engine": engine_key(engine), "erode": int(erode), "files": files}


def process_one(row: dict, *, out, engine=None, erode: int = 0, weights=None, device: str = "auto", batch_size: int = 4) -> dict:
    """Segment one participant and record the result; never raises for a bad scan.

    ``engine`` is an :class:`~backpain_epi.segmentation.engines.EngineSpec`; without
    it, the builtin engine with ``weights``, ``device`` and ``batch_size``.
    """
    if engine is None:
        engine = EngineSpec("builtin", weights=str(weights or default_weights_path()), device=device, batch_size=batch_size)
    out, pid = Path(out), row["participant_id"]
    start = time.perf_counter()
    key = record_key(engine, row, erode)
    labels_file = label_path(out, pid)
    try:
        pair = load_dixon(row.get("water") or "", row.get("fat") or "")
        probabilities, runner = None, None
        if row.get("_reuse_labels") and labels_file.is_file():  # never for an engine with probabilities
            labels = np.rint(load_volume(labels_file, "label")[0]).astype(np.uint8)
        else:
            runner = make_engine(replace(engine, device=_worker_device(engine.device)))
            labels, probabilities = runner.segment_scan(pair, row)
        ff, reliable = fat_fraction(pair.water, pair.fat)
        exposures = compute_exposures(labels, ff, pair.voxel_ml, reliable, erode=erode, slice_axis=pair.slice_axis)
        if probabilities is not None:
            raw = raw_spread(probabilities, ff, pair.voxel_ml, reliable, erode=erode, slice_axis=pair.slice_axis)
            ses, se_record = standard_errors(raw, runner.calibration), {**runner.calibration.record(), "raw": raw}
        else:
            ses, se_record = missing_standard_errors(), {"method": None, "note": NO_SE_NOTE}
        save_nifti(labels_file, labels.astype(np.uint8), pair.affine)
        record = {"participant_id": pid, "status": "ok", "exposures": {**exposures, **ses}, "se": se_record}
    except ScanError as exc:
        labels_file.unlink(missing_ok=True)  # no label map of an earlier run beside a failure
        record = {"participant_id": pid, "status": "failed", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one bad scan never stops a batch; the reason names the error
        labels_file.unlink(missing_ok=True)
        record = {"participant_id": pid, "status": "failed", "reason": f"{type(exc).__name__}: {exc}".replace("\n", " ")}
    record["seconds"] = round(time.perf_counter() - start, 3)
    record["key"] = key
    _write_json(record_path(out, pid), record)
    return record


def collect(out, ids, dictionary=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rebuild the exposures and failures tables of ``ids`` (manifest order) from the per-participant records.

    The exposures table has the dictionary's id column, then :data:`TABLE_COLUMNS` (the exposures and their
    SEs; a record without SEs gives missing ones); its float columns (by the dictionary's types) are rounded
    to 4 decimals.
    """
    dd = dictionary or load_dictionary()
    out = Path(out)
    ok, failed = [], []
    for pid in ids:
        path = record_path(out, pid)
        if not path.exists():
            continue
        rec = json.loads(path.read_text())
        if rec["status"] == "ok":
            ok.append({dd.id_column: pid, **rec["exposures"]})
        else:
            failed.append(dict(zip(FAILURE_COLUMNS, (pid, rec["reason"]))))
    exposures = pd.DataFrame(ok, columns=[dd.id_column, *TABLE_COLUMNS])
    float_cols = [c for c in TABLE_COLUMNS if dd[c].type == "float"]
    exposures[float_cols] = exposures[float_cols].astype(float).round(4)
    failures = pd.DataFrame(failed, columns=list(FAILURE_COLUMNS))
    if len(exposures):
        as_read = exposures.astype(str).where(exposures.notna())  # what read_table would give back
        report = validate_table(as_read, "exposures", dd)
        if not report.ok:  # a bug, not a user error: say so loudly
            raise RuntimeError(f"{EXPOSURES_FILE} breaks the data dictionary:\n{report.format()}")
    write_table(exposures, out / EXPOSURES_FILE)
    write_table(failures, out / FAILURES_FILE)
    return exposures, failures


# --------------------------------------------------------------------------- helpers


def _state(out: Path, row: dict, key: dict, reuse_labels: bool = True) -> str:
    """``done`` (an ``ok`` record of the same key and its label map), ``labels`` (the same but for the erosion:
    the exposures are computed again from the label map; ``todo`` instead unless ``reuse_labels``), or ``todo``."""
    pid = row["participant_id"]
    path = record_path(out, pid)
    if not path.exists() or not label_path(out, pid).exists():
        return "todo"
    try:
        rec = json.loads(path.read_text())
    except ValueError:
        return "todo"
    have, want = rec.get("key") or {}, json.loads(json.dumps(key))
    if rec.get("status") != "ok" or {k: v for k, v in have.items() if k != "erode"} != {k: v for k, v in want.items() if k != "erode"}:
        return "todo"
    return "done" if have.get("erode") == want["erode"] else "labels" if reuse_labels else "todo"


def _worker_device(device: str) -> str:
    """On a Dask worker with several GPUs, worker ``i`` takes GPU ``i mod n``."""
    if device not in ("auto", "cuda"):
        return device
    # lazy: torch takes seconds to import; only a run on CUDA asks it for the GPUs
    import torch

    if not torch.cuda.is_available():
        return device
    try:
        # lazy: distributed is an optional extra and takes 0.7 s to import; only a run on Dask needs it
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return device
    index = name if isinstance(name, int) else int(re.sub(r"\D", "", str(name)) or 0)
    return f"cuda:{index % torch.cuda.device_count()}"


def _write_manifest_copy(out: Path, rows: list[dict]) -> None:
    cols = ["participant_id", "water", "fat"] + (["label"] if any(r.get("label") for r in rows) else [])
    write_table(pd.DataFrame([{c: r.get(c) for c in cols} for r in rows], columns=cols), out / MANIFEST_FILE)


def _write_json(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, allow_nan=True))
    os.replace(tmp, path)


def _run_dask(rows, spec, bar, *, workers, scheduler) -> None:
    # lazy: distributed is an optional extra and takes 0.7 s to import; only a run on Dask needs it
    from distributed import Client, LocalCluster, as_completed

    if scheduler:
        try:
            client, cluster = Client(scheduler, timeout="20s"), None
        except (OSError, TimeoutError) as exc:
            raise BackpainEpiError(f"{scheduler}: cannot connect to a Dask scheduler ({exc}).", param="scheduler") from None
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        futures = [client.submit(_process_remote, row, spec, key=f"segment-{row['participant_id']}-{time.time_ns()}", pure=False)
                   for row in rows]
        for _ in as_completed(futures):
            bar.update()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _process_remote(row, spec):
    # lazy: torch takes seconds to import; only a Dask worker sets its threads here
    import torch

    try:
        # lazy: distributed is an optional extra and takes 0.7 s to import; only a run on Dask needs it
        from distributed import get_worker

        torch.set_num_threads(max(1, get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        pass
    return process_one(row, **spec)
