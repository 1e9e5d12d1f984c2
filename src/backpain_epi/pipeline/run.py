"""Images to odds ratios in one call: ``backpain-epi pipeline`` in Python.

:func:`run_pipeline` runs these stages, each in its own folder of ``config.out``:

=============  ======================================================================  =====================
stage          what it does                                                            folder
=============  ======================================================================  =====================
simulate       a cohort with a known truth; the questionnaire part and its truth       ``cohort/``
phantoms       one Dixon phantom per participant carrying that participant's           ``phantoms/``
               lean muscle, InterMAT and fat fraction (the *planted* exposures)
segment        the U-Net segments every phantom (GPU when present), resumable          ``segmentation/``
merge          measured exposures + questionnaire on ``participant_id``, validated      ``analysis/``
fit:<model>    one Bayesian model per spec of the configuration (``fit.workers`` at    ``runs/<model>/``
               once in local processes, or on the Dask cluster of ``scheduler``)
compare        PSIS-LOO comparison of the runs                                         ``comparison/``
crossval       leave-one-site-out cross-validation of the runs (``crossval.by: site``) ``crossval/``
report         the publication report, true ORs beside the estimates and the           ``report/``
               measured exposures against the planted ones
=============  ======================================================================  =====================

A rerun skips every stage whose inputs have not changed (see
:mod:`backpain_epi.pipeline.stages`), so after editing one model spec only that
model is refit, then compared and reported again.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..cohort import merge_exposures
from ..dictionary import DataDictionary, load_dictionary
from ..errors import BackpainEpiError, DataValidationError, unknown_choice
from ..modelling import fit_model, load_spec
from ..modelling.compare import compare_runs
from ..modelling.crossval import CV_FILE, cross_validate_sites
from ..modelling.parallel import map_tasks
from ..modelling.diagnostics import GateFailedWarning
from ..reporting.report import build_report
from ..segmentation.batch import segment_manifest
from ..segmentation.engines import EngineSpec
from ..segmentation.network import default_weights_path
from ..segmentation.output import EXPOSURES_FILE, FAILURES_FILE, SegmentationOutput
from ..segmentation.phantom import MANIFEST_FILE as PHANTOM_MANIFEST, TRUTH_EXPOSURES_FILE, PhantomTargets, Protocol, write_phantoms
from ..simulate import simulate_cohort
from ..tableio import read_table, write_table
from ..validation import validate_table
from .config import PipelineConfig, load_config
from .stages import Stage, StageOutcome, StageRunner, fingerprint


@dataclass
class PipelineResult:
    """What :func:`run_pipeline` did: each stage's outcome, and the paths a user opens next."""

    out: Path
    outcomes: list[StageOutcome]
    report: Path
    headline: pd.DataFrame | None = None
    failed_gates: list[str] = field(default_factory=list)

    @property
    def ran(self) -> list[str]:
        """Names of the stages that did work (ran or resumed) in this call."""
        return [o.name for o in self.outcomes if o.status != "cached"]


def run_pipeline(
    config: str | os.PathLike | PipelineConfig,
    *,
    force: set[str] | None = None,
    echo: Callable[[str], None] = print,
    progress: bool = True,
    dictionary: DataDictionary | None = None,
    scheduler: str | None = None,
) -> PipelineResult:
    """Run the pipeline of ``config`` (a YAML path or a :class:`PipelineConfig`); skip stages whose inputs are unchanged.

    Parameters
    ----------
    config
        The configuration (``reports/demo.yaml`` is the demo's).
    force
        Stage names to rerun even if their inputs are unchanged (``fit:full``, ``report``, ...).
    echo
        Receives the stage view, one line at a time.
    progress
        Progress bars inside the long stages.
    scheduler
        Address of a Dask scheduler (``tcp://host:8786``): the model fits and the cross-validation's refits run on its
        workers (which must see the pipeline folder); without it they run in ``fit.workers`` / ``crossval.workers`` local
        processes. The results are the same either way, so it is not part of any stage's key.

    Returns
    -------
    PipelineResult
    """
    cfg = config if isinstance(config, PipelineConfig) else load_config(config)
    dd = dictionary or load_dictionary()
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise BackpainEpiError(f"out {out}: is a file; give a folder.")
    d = _Folders(out)
    stages = _stages(cfg, d, dd, progress, scheduler)
    echo(f"Pipeline {cfg.path or '(config)'} -> {out.resolve()}: {len(stages)} stages "
         f"({cfg.cohort['n']:,} participants, {len(cfg.models)} model(s)).")
    runner = StageRunner(out, echo=echo, force=force)
    unknown = set(force or ()) - {s.name for s in stages}
    if unknown:
        raise BackpainEpiError(": " + unknown_choice("stage", sorted(unknown)[0], [s.name for s in stages]), param="force")
    fits = [s for s in stages if s.name.startswith("fit:")]
    positions = {s.name: f"{i}/{len(stages)}" for i, s in enumerate(stages, 1)}
    for stage in stages:
        if stage in fits and (cfg.fit["workers"] > 1 or scheduler) and len(fits) > 1:
            if stage is fits[0]:  # the fits are independent: run those not up to date together
                runner.run_together(fits, [positions[s.name] for s in fits], lambda todo: map_tasks(
                    run_fit_task, [s.task for s in todo], workers=cfg.fit["workers"], scheduler=scheduler, desc="fit",
                    labels=[s.name for s in todo], progress=progress))
            continue
        runner.run(stage, position=positions[stage.name])
    meta = json.loads((d.report / "report.json").read_text(encoding="utf-8"))
    headline = read_table(d.report / "tables" / "truth_vs_estimates.csv") if (d.report / "tables" / "truth_vs_estimates.csv").is_file() else None
    return PipelineResult(out, runner.outcomes, d.report / "index.html", headline, meta.get("failed_gates", []))


# --------------------------------------------------------------------------- the stages


class _Folders:
    """Where each stage writes, under the pipeline folder ``out``."""

    def __init__(self, out: Path):
        self.out = out
        self.cohort, self.phantoms, self.seg = out / "cohort", out / "phantoms", out / "segmentation"
        self.analysis, self.runs, self.comparison, self.report = out / "analysis", out / "runs", out / "comparison", out / "report"
        self.crossval = out / "crossval"
        self.questionnaire, self.truth = self.cohort / "questionnaire.csv", self.cohort / "truth.json"
        self.planted, self.analysis_table = self.phantoms / "planted_exposures.csv", self.analysis / "cohort.csv"


def _stages(cfg: PipelineConfig, d: _Folders, dd: DataDictionary, progress: bool, scheduler: str | None = None) -> list[Stage]:
    run_dirs = [d.runs / p.stem for p in cfg.models]
    run_files = [f for r in run_dirs for f in (r / "provenance.json", r / "summary.csv")]
    seg_files = [d.seg / EXPOSURES_FILE, d.seg / FAILURES_FILE]
    stages = [
        Stage("simulate", lambda: _simulate(cfg, d, dd), d.cohort, params={"cohort": cfg.cohort}),
        Stage("phantoms", lambda: _phantoms(cfg, d, dd, progress), d.phantoms, inputs=[d.cohort / "cohort_simulated.csv"],
              params={"phantoms": {k: v for k, v in cfg.phantoms.items() if k != "workers"}}),
        Stage("segment", lambda: _segment(cfg, d, dd, progress), d.seg, inputs=[d.phantoms / PHANTOM_MANIFEST, d.phantoms / "images"],
              params={"weights": fingerprint(_weights(cfg)), **_mirror_key(_engine(cfg))}),
        Stage("merge", lambda: _merge(d, dd), d.analysis, inputs=[d.questionnaire, *seg_files]),
    ]
    serial = cfg.fit["workers"] == 1 and not scheduler
    for spec, run_dir in zip(cfg.models, run_dirs):
        task = FitTask(d.analysis_table, spec, cfg.sampler, run_dir, dd, progress and serial)
        stages.append(Stage(f"fit:{spec.stem}", lambda task=task: run_fit_task(task), run_dir, inputs=[d.analysis_table, spec],
                            params={"sampler": cfg.sampler}, task=task))
    if len(run_dirs) >= 2:
        stages.append(Stage("compare", lambda: _compare(run_dirs, d), d.comparison, inputs=run_files))
    cv_file = None
    if cfg.crossval["by"]:
        chosen = cfg.crossval["models"] or [p.stem for p in cfg.models]
        cv_runs = [r for r in run_dirs if r.name in chosen]
        cv_file = d.crossval / CV_FILE
        stages.append(Stage("crossval", lambda: _crossval(cfg, cv_runs, d, dd, progress, scheduler), d.crossval,
                            inputs=[d.analysis_table, *(f for r in cv_runs for f in (r / "provenance.json", r / "summary.csv"))],
                            params={"crossval": {k: v for k, v in cfg.crossval.items() if k != "workers"}}))
    stages.append(Stage("report", lambda: _report(cfg, d, dd, run_dirs, progress, cv_file), d.report,
                        inputs=[d.analysis_table, d.truth, d.planted, *seg_files, *run_files, *([cv_file] if cv_file else [])],
                        params={"report": cfg.report}))
    return stages


def _simulate(cfg: PipelineConfig, d: _Folders, dd: DataDictionary) -> str:
    c = cfg.cohort
    sim = simulate_cohort(n=c["n"], seed=c["seed"], truth=cfg.truth(), n_sites=c["sites"])
    sim.write(d.cohort / "cohort_simulated.csv", truth_out=d.truth)
    exposure_cols = [x for x in dd.names(table="exposures") if x in sim.data.columns and dd[x].role != "id"]
    write_table(sim.data.drop(columns=exposure_cols), d.questionnaire)
    return (f"{len(sim.data):,} participants, CBP {sim.truth['prevalence']:.1%}; "
            f"questionnaire without the exposures in {d.questionnaire.name}, truth in {d.truth.name}.")


def planted_targets(cohort: pd.DataFrame, dictionary: DataDictionary | None = None) -> tuple[pd.DataFrame, int]:
    """The exposures to plant in each participant's phantom (the dictionary's primary exposures, the fields of
    :class:`~backpain_epi.segmentation.phantom.PhantomTargets`), kept inside what a phantom slab can hold; and how many were moved."""
    dd = dictionary or load_dictionary()
    exposures, id_col = dd.primary_exposures, dd.id_column
    nearest = [PhantomTargets.nearest(**dict(zip(exposures, row))) for row in cohort[exposures].to_numpy(float)]
    t = pd.DataFrame({id_col: cohort[id_col].to_numpy(), **{c: [getattr(n, c) for n in nearest] for c in exposures}})
    moved = int((~np.isclose(t[exposures].to_numpy(float), cohort[exposures].to_numpy(float))).any(axis=1).sum())
    return t, moved


def _phantoms(cfg: PipelineConfig, d: _Folders, dd: DataDictionary, progress: bool) -> str:
    p = cfg.phantoms
    exposures, id_col = dd.primary_exposures, dd.id_column
    cohort = read_table(d.cohort / "cohort_simulated.csv")
    for c in exposures:
        cohort[c] = pd.to_numeric(cohort[c])
    targets, moved = planted_targets(cohort, dd)
    protocol = Protocol(inplane_mm=tuple(p["inplane_mm"]), slice_mm=tuple(p["slice_mm"]), int16_prob=1.0)
    write_phantoms(d.phantoms, len(targets), p["seed"], protocol=protocol, targets=targets, progress=progress, workers=p["workers"],
                   resume=True)  # the stage's folder is emptied whenever its inputs change
    # what the images hold, from each phantom's true label map and fat fraction (the targets to within a few percent)
    truth = read_table(d.phantoms / TRUTH_EXPOSURES_FILE)
    planted = truth[[id_col, *exposures]].astype({c: float for c in exposures})
    write_table(planted, d.planted)
    lean = exposures[0]
    off = (planted.set_index(id_col)[lean] / cohort.set_index(id_col)[lean] - 1).abs() > 0.10
    notes = [f"{moved} participant(s) had exposures outside what a phantom holds and were planted at the nearest limit"] if moved else []
    if off.any():
        notes.append(f"{int(off.sum())} phantom(s) hold a {dd.label(lean, unit=False).lower()} more than 10 % from the "
                     "participant's (body outline too small)")
    return f"{len(targets):,} phantoms" + (f"; {'; '.join(notes)}" if notes else "") + "."


def _weights(cfg: PipelineConfig) -> Path:
    return Path(cfg.segmentation["weights"]) if cfg.segmentation["weights"] else default_weights_path()


def _engine(cfg: PipelineConfig) -> EngineSpec:
    s = cfg.segmentation
    return EngineSpec("builtin", weights=str(_weights(cfg)), device=s["device"], batch_size=s["batch_size"],
                      mirror_axes=s["mirror_axes"])


def _mirror_key(engine: EngineSpec) -> dict:
    """The segment stage's key for the mirroring, as each scan's record keys it (normalised: zx is xz); nothing
    for the weights' own, so folders made before the setting existed keep their key."""
    return {} if engine.mirror_axes is None else {"mirror_axes": list(engine.mirror_axes)}


def _segment(cfg: PipelineConfig, d: _Folders, dd: DataDictionary, progress: bool) -> str:
    s = cfg.segmentation
    res = segment_manifest(d.phantoms / PHANTOM_MANIFEST, d.seg, engine=_engine(cfg),
                           workers=s["workers"] if s["workers"] > 1 else None, progress=progress, dictionary=dd)
    flagged = int((res.exposures["qc_flag"] == 1).sum()) if len(res.exposures) else 0
    return (f"{len(res.exposures):,} segmented ({res.n_skipped:,} of them done before), {len(res.failures):,} failed, "
            f"{flagged:,} QC-flagged.")


def _merge(d: _Folders, dd: DataDictionary) -> str:
    seg = SegmentationOutput.read(d.seg)
    if len(seg.exposures) == 0:
        raise BackpainEpiError(f"no scan could be segmented; the reasons are in {d.seg / FAILURES_FILE}.")
    merged = merge_exposures(read_table(d.questionnaire), read_table(d.seg / EXPOSURES_FILE), dd)
    report = validate_table(merged.table, "cohort", dd)
    write_table(report.to_frame(), d.analysis / "validation.csv")
    if not report.ok:
        raise DataValidationError(report)
    write_table(merged.table, d.analysis_table)
    return merged.format().replace("\n", " ") + f" Validation: {len(report.errors)} errors, {len(report.warnings)} warnings."


@dataclass(frozen=True)
class FitTask:
    """One model fit of the pipeline, picklable for :func:`~backpain_epi.modelling.parallel.map_tasks`."""

    data: Path
    spec: Path
    sampler: dict
    out: Path
    dictionary: DataDictionary
    progress: bool = False


def run_fit_task(task: FitTask) -> str:
    """Fit ``task.spec`` (its sampler settings overridden by the config's) and write the run folder; return the stage's summary."""
    model = load_spec(task.spec, task.dictionary).with_sampler(**task.sampler)  # None values keep the spec's settings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GateFailedWarning)  # said below, in the report, and by the exit status
        res = fit_model(task.data, model, out=task.out, dictionary=task.dictionary, progress=task.progress)
    n = res.provenance.n_attempts
    tried = f" after {n} attempts of the gate ladder" if n > 1 else ""
    gate = f"gate passed{tried}" if res.diagnostics.passed else f"GATE FAILED{tried} (see the report's diagnostics)"
    ex = res.summary[res.summary["kind"] == "exposure"]
    ors = ", ".join(f"{t} {m:.2f} ({lo:.2f}–{hi:.2f})" for t, m, lo, hi in ex[["term", "or_median", "or_lo95", "or_hi95"]].to_numpy())
    return f"{res.provenance.data.n_analysed:,} analysed; {gate}; OR per 2 SD: {ors}."


def _crossval(cfg: PipelineConfig, run_dirs: list[Path], d: _Folders, dd: DataDictionary, progress: bool, scheduler: str | None) -> str:
    c = cfg.crossval
    cv = cross_validate_sites(run_dirs, d.analysis_table, workers=c["workers"], scheduler=scheduler, progress=progress,
                              out=d.crossval / CV_FILE, draws=c["draws"], tune=c["tune"], chains=c["chains"], dictionary=dd)
    return f"{len(cv.by_site)} refits; " + cv.verdict(compare_runs(run_dirs) if len(run_dirs) > 1 else None)


def _compare(run_dirs: list[Path], d: _Folders) -> str:
    table = compare_runs(run_dirs)
    write_table(table, d.comparison / "comparison.csv")
    return f"best by PSIS-LOO: {Path(str(table['run'].iloc[0])).name}."


def _report(cfg: PipelineConfig, d: _Folders, dd: DataDictionary, run_dirs: list[Path], progress: bool, crossval: Path | None) -> str:
    r = cfg.report
    rep = build_report(run_dirs, d.analysis_table, out=d.report, segmentation=d.seg, title=r["title"], survival=r["survival"],
                       survival_spec=r["survival_spec"] or cfg.models[0], truth=d.truth, planted=d.planted, crossval=crossval, dictionary=dd,
                       progress=progress)
    notes = f" Notes: {' '.join(rep.notes)}" if rep.notes else ""
    return f"{len(rep.tables)} tables, {len(rep.figures)} figures.{notes}"
