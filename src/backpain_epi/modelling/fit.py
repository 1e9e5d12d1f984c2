"""Fit a model spec to a cohort table: validate, design, sample, check, save.

:func:`fit_model` is the Python form of ``backpain-epi fit``; it returns a
:class:`FitResult` and, given ``out``, writes the run folder:

``posterior.nc``
    ArviZ InferenceData: posterior, sample_stats, observed_data, the log prior of the
    top-level priors (for :mod:`~backpain_epi.modelling.sensitivity`), and the
    pointwise log-likelihood (float32, on at most ``loo_draws`` evenly spaced
    draws, enough for PSIS-LOO; :func:`backpain_epi.modelling.compare.run_loo` computes LOO
    on exactly those draws, whereas ``az.loo`` on the whole file would take the relative
    efficiency from all draws).
``summary.csv``
    One row per term: odds ratios per 2 SD (numeric terms) or per level, 95%
    interval, log OR, P(OR > 1), R-hat, ESS.
``activity_curve.csv``
    The activity term's odds ratio against 1,500 MET-min/week on a grid.
``absolute_risk.csv``
    Per exposure, the absolute risks at its mean − 1 SD and mean + 1 SD by g-computation over the
    analysed participants, the risk difference per 1,000, the risk ratio, NNT/NNH and E-values, for
    the observed sites and for a new site (:mod:`backpain_epi.modelling.estimands`).
``effect_modification.csv``
    With ``effect_modifiers`` in the spec: stratum-specific ORs and RDs, the ratio of ORs and RERI.
``exposure_curves.csv``
    With a spline exposure: its odds ratio against its median on a grid.
``spec.yaml``
    The spec as used (command-line sampler settings included).
``provenance.json``
    Data hash, dropped rows, design recipe, priors, package versions, seed,
    sampler, timings, the diagnostics verdict and every attempt of the gate
    ladder (:mod:`backpain_epi.modelling.ladder`).

Every fit has a run id (``provenance.json``, the ``run_id`` column of
``summary.csv``, the attributes of ``posterior.nc``). The folder is written
whole into a temporary folder beside ``out`` and renamed into place, so an
interrupted refit leaves the previous run as it was; :func:`load_run` refuses
a folder whose files carry different run ids.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
import warnings
from dataclasses import dataclass, replace
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

import arviz as az
import xarray as xr

from ..cohort import add_activity_band, analysis_columns
from ..dictionary import DataDictionary, load_dictionary
from ..errors import BackpainEpiError, InputFileError, unknown_choice
from ..formatting import format_or, format_prob
from ..records import ids_hash, table_hash
from ..tableio import atomic_path, check_output_dir, write_table, write_text
from ..validation import INVALID_ROWS, load_table
from .design import Design, DesignRecipe, make_design
from .diagnostics import Diagnostics, GateFailedWarning, check_diagnostics
from .estimands import ABSOLUTE_RISK_FILE, EFFECT_MODIFICATION_FILE, absolute_risks, effect_modification
from .ladder import Attempt, GateLadder
from .params import BETA, activity_parameterization, auto_parts, group_parameterization
from .provenance import DataRecord, Provenance
from .imputed import pointwise_log_likelihood, row_latents
from .sensitivity import add_log_prior, prior_sensitivity, sensitivity_verdict
from .results import LinearPredictor, activity_curve, exposure_curves, odds_ratio_summary, predict, scale_parameters
from .spec import ModelSpec, load_spec

RUN_FILES = ("posterior.nc", "summary.csv", "spec.yaml", "provenance.json")
CURVE_FILE = "activity_curve.csv"
EXPOSURE_CURVES_FILE = "exposure_curves.csv"
#: Files a run folder may hold besides :data:`RUN_FILES`, each read into the FitResult attribute named.
OPTIONAL_FILES = {CURVE_FILE: "curve", ABSOLUTE_RISK_FILE: "absolute_risk", EFFECT_MODIFICATION_FILE: "effect_modification",
                  EXPOSURE_CURVES_FILE: "exposure_curves"}
#: The column of ``summary.csv`` that holds the run id (dropped again by :func:`load_run`).
RUN_ID_COLUMN = "run_id"
LOO_DRAWS = 1000
SUMMARY_STYLES = ("ascii", "markdown", "html", "latex")


@dataclass
class FitResult:
    """A fitted model: posterior, odds-ratio summary, activity curve, diagnostics and provenance.

    Made by :func:`fit_model` or read back from a run folder by :func:`load_run`;
    :func:`~backpain_epi.modelling.compare.compare_runs` and
    :func:`~backpain_epi.reporting.build_report` take it as it is, in memory or saved.

    Attributes
    ----------
    name
        The model's name in tables and comparisons (the spec's ``name`` unless set).
    spec, recipe
        The spec as fit and the design recipe (scaling, levels, bases).
    idata
        ArviZ InferenceData: posterior, sample_stats, observed_data, log_likelihood.
    summary
        One row per term: odds ratios per 2 SD or per level, 95% interval, P(OR > 1), R-hat, ESS.
    diagnostics
        The gate's verdict; ``diagnostics.passed`` says whether the estimates may be reported.
    provenance
        The typed :class:`~backpain_epi.modelling.provenance.Provenance`.
    curve
        The activity term's odds ratio on a grid (``None`` without an activity term).
    absolute_risk
        Absolute risks, risk difference, risk ratio and E-values per exposure by g-computation
        (:func:`~backpain_epi.modelling.estimands.absolute_risks`; ``None`` in a run folder of an older version).
    effect_modification
        Effects by stratum of the spec's ``effect_modifiers``
        (:func:`~backpain_epi.modelling.estimands.effect_modification`; ``None`` without modifiers).
    exposure_curves
        Each spline exposure's odds ratio against its median on a grid (``None`` without one).
    out
        The run folder, or ``None`` for a result kept in memory.
    """

    spec: ModelSpec
    recipe: DesignRecipe
    idata: az.InferenceData
    summary: pd.DataFrame
    diagnostics: Diagnostics
    provenance: Provenance
    curve: pd.DataFrame | None = None
    out: Path | None = None
    name: str = ""
    absolute_risk: pd.DataFrame | None = None
    effect_modification: pd.DataFrame | None = None
    exposure_curves: pd.DataFrame | None = None

    def __post_init__(self):
        self.name = self.name or self.spec.name

    @property
    def dropped(self) -> dict[str, int]:
        """Rows dropped before the fit, per reason (``any``: in total)."""
        return self.provenance.data.dropped

    @property
    def analysed_ids(self) -> list[str]:
        """The participant ids analysed, in the order of the log-likelihood."""
        outcome = self.spec.outcome
        return [str(i) for i in self.idata.observed_data[f"{outcome}_dim_0"].values]

    def predict(self, df: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
        """Predicted CBP probability (mean, 95% interval) for new participants; see :func:`results.predict`."""
        return predict(self.idata, self.recipe, df, seed=seed)

    def summary_table(self) -> pd.DataFrame:
        """The headline table with display text: term, per, OR (95% interval), P(OR > 1), R-hat, ESS."""
        t = self.summary
        return pd.DataFrame({
            "term": t["term"], "per": t["per"],
            "OR (95% interval)": [format_or(r.or_median, r.or_lo95, r.or_hi95) for r in t.itertuples()],
            "P(OR>1)": t["p_or_gt_1"].map(format_prob), "R-hat": t["r_hat"].map("{:.3f}".format),
            "ESS": t["ess_bulk"].map("{:.0f}".format),
        })

    def format_summary(self, style: str = "ascii") -> str:
        """The headline table as text in ``style``: ``ascii`` (a terminal), ``markdown``, ``html`` or ``latex``."""
        if style not in SUMMARY_STYLES:
            raise BackpainEpiError(": " + unknown_choice("style", style, SUMMARY_STYLES), param="style")
        if style == "ascii":
            t = self.summary
            lines = [f"{'term':24s} {'per':24s} {'OR':>6s}  {'95% interval':15s} {'P(OR>1)':>7s} {'R-hat':>6s} {'ESS':>6s}"]
            for r in t.itertuples():
                lines.append(f"{r.term:24s} {r.per:24s} {r.or_median:6.2f}  {r.or_lo95:5.2f} – {r.or_hi95:5.2f}   {r.p_or_gt_1:7.3f} "
                             f"{r.r_hat:6.3f} {r.ess_bulk:6.0f}")
            return "\n".join(lines)
        table = self.summary_table()
        if style == "markdown":
            return table.to_markdown(index=False)
        if style == "html":
            return table.to_html(index=False, border=0, escape=True)
        return table.to_latex(index=False, escape=True)

    def print_summary(self, style: str = "ascii") -> None:
        """Print the model, its odds ratios, the estimands beyond them and the gate's verdict; ``style`` as :meth:`format_summary`."""
        print(f"{self.name}: {' + '.join(self.spec.terms_text())}; {self.provenance.data.n_analysed:,} analysed, "
              f"{self.provenance.data.n_events:,} with {self.spec.outcome}")
        print(self.format_summary(style))
        estimands = self.format_estimands()  # once: it runs psens
        if estimands:
            print(estimands)
        print(self.diagnostics.format())

    def format_estimands(self) -> str:
        """The absolute risks with E-values, the effect modification, the spline exposures and the prior-sensitivity verdict, as text."""
        lines = []
        if self.absolute_risk is not None and len(self.absolute_risk):
            lines.append("Absolute risk at mean - 1 SD -> mean + 1 SD (g-computation over the analysed participants, observed sites):")
            for r in self.absolute_risk.itertuples():
                nnt = f"; {r.nnt_kind} {r.nnt:.0f}" if isinstance(r.nnt_kind, str) and r.nnt_kind else ""
                lines.append(f"  {r.term:16s} {100 * r.risk_low:5.1f}% -> {100 * r.risk_high:5.1f}%; RD {r.rd_per_1000:+6.1f} per 1,000 "
                             f"({r.rd_lo95:+.1f} to {r.rd_hi95:+.1f}); RR {format_or(r.rr, r.rr_lo95, r.rr_hi95)}; "
                             f"E-value {r.e_value:.2f} (CI {r.e_value_ci:.2f}){nnt}")
        if self.effect_modification is not None and len(self.effect_modification):
            lines.append("Effect modification (OR per 2 SD within the stratum; ratio of ORs and RERI against the reference):")
            for r in self.effect_modification.rename(columns={"or": "or_mid"}).itertuples():
                extra = "" if pd.isna(r.ratio_of_ors) else (f"; ratio {format_or(r.ratio_of_ors, r.ratio_lo95, r.ratio_hi95)}; "
                                                          f"RERI {format_or(r.reri, r.reri_lo95, r.reri_hi95)}")
                lines.append(f"  {r.term:16s} {r.modifier} {str(r.level):8s} OR {format_or(r.or_mid, r.or_lo95, r.or_hi95)}{extra}")
        if self.exposure_curves is not None:
            names = ", ".join(dict.fromkeys(self.exposure_curves["term"]))
            lines.append(f"Dose-response of {names}: exposure_curves.csv (OR against the median on a grid).")
        if "log_prior" in self.idata.groups():
            lines.append(sensitivity_verdict(prior_sensitivity(self.idata)))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        gate = "passed" if self.diagnostics.passed else "<b style='color:#C00000'>FAILED: do not report these estimates</b>"
        return (f"<p><b>{escape(self.name)}</b>: {escape(' + '.join(self.spec.terms_text()))}<br>"
                f"{self.provenance.data.n_analysed:,} analysed, {self.provenance.data.n_events:,} with {escape(self.spec.outcome)}; "
                f"diagnostics gate {gate}</p>" + self.format_summary("html"))

    def __repr__(self) -> str:
        where = f", out={str(self.out)!r}" if self.out else ""
        return (f"FitResult(name={self.name!r}, n_analysed={self.provenance.data.n_analysed}, "
                f"gate={'passed' if self.diagnostics.passed else 'FAILED'}{where})")


def fit_model(
    data: str | os.PathLike | pd.DataFrame,
    spec: str | os.PathLike | ModelSpec,
    *,
    out: str | os.PathLike | None = None,
    dictionary: DataDictionary | None = None,
    draws: int | None = None,
    tune: int | None = None,
    chains: int | None = None,
    seed: int | None = None,
    sampler: str | None = None,
    progress: bool = True,
    loo_draws: int = LOO_DRAWS,
    include_qc_flagged: bool = False,
    exclude_invalid_rows: bool = False,
    sep: str | None = None,
    encoding: str = "utf-8",
    decimal: str = ".",
    ladder: GateLadder | bool | None = None,
    estimands: bool = True,
    reuse_compiled: bool = False,
) -> FitResult:
    """Validate ``data``, build the model of ``spec``, sample it, check it and (with ``out``) save the run.

    Parameters
    ----------
    data
        Cohort table (CSV/TSV/Parquet path, or a DataFrame); validated against
        the dictionary first, blocking on errors in the columns the model uses only
        (see :func:`read_analysis_table`). Rows incomplete in the model's columns are dropped
        and counted per column (``FitResult.dropped``, ``provenance.json``), and so
        are rows the segmentation QC flagged (``qc_flag`` = 1), as the data
        dictionary says, unless ``include_qc_flagged``.
    spec
        Model spec (path to YAML, or a :class:`ModelSpec`).
    out
        Run folder to write (see the module notes); ``None`` writes nothing.
    draws, tune, chains, seed, sampler
        Override the spec's sampler settings.
    progress
        Show the sampler's progress bar.
    loo_draws
        Draws kept for the pointwise log-likelihood in ``posterior.nc`` (fewer above 100,000 rows, to
        no fewer than 400: :func:`loo_draw_count`, so that it stays within 400 MB).
    include_qc_flagged
        Keep rows with ``qc_flag`` = 1 (recorded in ``provenance.json``).
    exclude_invalid_rows
        Leave out rows with errors in single rows of the model's columns (a value out of
        range, an onset after the age, ...) instead of refusing the table; they are counted
        per rule in ``FitResult.dropped`` (``"invalid <column> (<rule>)"``).
    sep, encoding, decimal
        How a text file is read (:func:`~backpain_epi.tableio.read_table`): delimiter, encoding, decimal mark.
    ladder
        Refits tried when the gate fails on divergences, bulk ESS or R-hat (a
        :class:`~backpain_epi.modelling.ladder.GateLadder`; ``None``/``True``: the default
        ladder, ``False``: one attempt). The result is the last attempt's; its spec holds
        that attempt's sampler settings, and ``provenance.attempts`` records every attempt.

    estimands
        Compute the absolute risks, the effect modification and the log prior (for the prior
        sensitivity check); ``False`` skips them, for refits used only to predict (cross-validation).
    reuse_compiled
        Keep the model's data in ``pm.Data`` containers and reuse a model of the same structure compiled
        earlier in this process (nutpie's ``with_data``): for many fits of one spec on other rows, as the
        folds of a cross-validation. ``False`` (the default) compiles the data in as constants, which
        samples about 20 % faster per gradient (BENCHMARKS.md) but compiles every fit.

    Returns
    -------
    FitResult
        Also when the diagnostics gate fails after the ladder; then a
        :class:`~backpain_epi.modelling.diagnostics.GateFailedWarning` says which checks
        failed and what to do, and ``result.diagnostics.passed`` is False.
    """
    t0 = time.perf_counter()
    dd = dictionary or load_dictionary()
    spec = spec if isinstance(spec, ModelSpec) else load_spec(spec, dd)
    spec = spec.with_sampler(draws=draws, tune=tune, chains=chains, seed=seed, sampler=sampler)
    out = _check_run_dir(check_output_dir(out)) if out is not None else None
    table, source = read_analysis_table(data, dd, spec.columns(), exclude_invalid_rows=exclude_invalid_rows, sep=sep,
                                        encoding=encoding, decimal=decimal)
    design = make_design(table, spec, dd, include_qc_flagged=include_qc_flagged)
    timings = {"prepare_s": time.perf_counter() - t0}

    idata, sampler_info, design, attempts, model = _sample_along_ladder(design, spec, GateLadder.of(ladder), progress,
                                                                        reuse_compiled)
    last = attempts[-1]
    spec = spec.with_sampler(**{k: last.settings[k] for k in ("draws", "tune", "target_accept")})
    diagnostics = last.diagnostics
    for key in ("compile_s", "sampling_s"):
        timings[key] = sum(a.timings.get(key, 0.0) for a in attempts)
    for key in ("true_values_s", "imputed_values_s"):
        if key in sampler_info:
            timings[key] = sampler_info.pop(key)
    run_id = uuid.uuid4().hex
    idata.attrs["run_id"] = run_id
    t1 = time.perf_counter()
    analysed = _analysed_rows(table, design, dd)
    _add_log_likelihood(idata, design, loo_draws, analysed, model)
    if estimands:
        add_log_prior(idata, design)  # the top-level priors on the same draws, for power-scaling sensitivity (psens)
    summary = odds_ratio_summary(idata, design.recipe, dd)
    curve = activity_curve(idata, design.recipe) if spec.activity else None
    curves = exposure_curves(idata, design.recipe)
    timings["summarise_s"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    risks = absolute_risks(idata, design.recipe, analysed) if estimands else None
    modification = effect_modification(idata, design.recipe, analysed) if spec.effect_modifiers and estimands else None
    timings["gcomputation_s"] = time.perf_counter() - t1
    timings["total_s"] = time.perf_counter() - t0
    provenance = _provenance(spec, design, table, source, sampler_info, timings, diagnostics, run_id, attempts)
    result = FitResult(spec=spec, recipe=design.recipe, idata=idata, summary=summary, diagnostics=diagnostics,
                       provenance=provenance, curve=curve, out=out, absolute_risk=risks, effect_modification=modification,
                       exposure_curves=curves)
    if out is not None:
        save_run(result, out)
    if not diagnostics.passed:
        warnings.warn(GateFailedWarning.for_model(spec.name, diagnostics, attempts=len(attempts)), stacklevel=2)
    return result


def save_run(result: FitResult, out: str | os.PathLike) -> Path:
    """Write the run folder of ``result`` whole or not at all.

    The files are written into a temporary folder beside ``out``, which is then
    renamed to ``out``; an existing run folder there is renamed aside first and
    deleted only once the new one is in place. An interruption at any point
    leaves either the old run folder or the new one, never a mix. ``out`` must
    be absent, empty or a run folder: other files in it are refused, not deleted.
    """
    out = _check_run_dir(Path(out))
    run_id = result.provenance.run_id
    result.idata.attrs["run_id"] = run_id
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.mkdir(parents=True)
        write_text(result.spec.to_yaml(), tmp / "spec.yaml")
        write_table(result.summary.assign(**{RUN_ID_COLUMN: run_id}), tmp / "summary.csv")
        for name, attribute in OPTIONAL_FILES.items():
            if getattr(result, attribute) is not None:
                write_table(getattr(result, attribute), tmp / name)
        with atomic_path(tmp / "posterior.nc") as nc:
            result.idata.to_netcdf(str(nc), engine="h5netcdf")
        write_text(result.provenance.to_json(), tmp / "provenance.json")
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _check_run_dir(out: Path) -> Path:
    """``out`` if it may be (re)written as a run folder: absent, empty, or holding only a run's files."""
    if out.is_dir():
        own = {*RUN_FILES, *OPTIONAL_FILES}
        other = sorted(p.name for p in out.iterdir() if p.name not in own and not p.name.startswith("."))
        if other:
            shown = ", ".join(other[:5]) + (", ..." if len(other) > 5 else "")
            raise InputFileError(f"{out}: holds files that are not a run's ({shown}); a fit replaces its run folder "
                                 "whole, so give a new or empty folder, or an earlier run's folder.")
    return out


def _swap_in(new: Path, out: Path) -> None:
    """Rename the finished folder ``new`` to ``out``, replacing a run folder there (renamed aside, then deleted)."""
    try:
        if not out.exists():
            os.rename(new, out)
            return
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(out, old)
        try:
            os.rename(new, out)
        except BaseException:
            os.rename(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        raise InputFileError(f"{out}: the run folder cannot be written ({exc.strerror or exc}).") from None


def load_run(run: str | os.PathLike, dictionary: DataDictionary | None = None) -> FitResult:
    """Read a run folder written by :func:`fit_model` (no refitting); PyMC is not imported.

    Raises
    ------
    InputFileError
        The folder is missing, lacks one of the run files, its files carry
        different run ids (they come from different fits), or its posterior and
        provenance disagree on the participants analysed.
    """
    run = Path(run)
    if not run.is_dir():
        raise InputFileError(f"{run} is not a run folder (not found); make one with `backpain-epi fit --out {run}`.")
    missing = [f for f in RUN_FILES if not (run / f).is_file()]
    if missing:
        raise InputFileError(f"{run} is not a complete run folder: {', '.join(missing)} missing (was the fit interrupted? fit again).")
    dd = dictionary or load_dictionary()
    spec = load_spec(run / "spec.yaml", dd)
    provenance = Provenance.read(run / "provenance.json")
    recipe = DesignRecipe.from_dict(spec, provenance.design)
    idata = az.from_netcdf(str(run / "posterior.nc"))
    summary = pd.read_csv(run / "summary.csv", dtype={RUN_ID_COLUMN: str})
    _check_run_ids(run, provenance, idata, summary)
    summary = summary.drop(columns=[RUN_ID_COLUMN], errors="ignore")
    optional = {attribute: pd.read_csv(run / name, keep_default_na=True) if (run / name).is_file() else None
                for name, attribute in OPTIONAL_FILES.items()}
    if optional["absolute_risk"] is not None:
        optional["absolute_risk"]["nnt_kind"] = optional["absolute_risk"]["nnt_kind"].fillna("")
    result = FitResult(spec=spec, recipe=recipe, idata=idata, summary=summary,
                       diagnostics=provenance.diagnostics, provenance=provenance, out=run, **optional)
    if ids_hash(result.analysed_ids) != provenance.data.analysed_sha256:
        raise InputFileError(f"run {run}: posterior.nc does not match its provenance.json (analysed ids differ); refit the run.")
    return result


def as_fit_result(run: FitResult | str | os.PathLike, dictionary: DataDictionary | None = None) -> FitResult:
    """``run`` itself when it is a :class:`FitResult`, else the run folder it names, read by :func:`load_run`."""
    if isinstance(run, FitResult):
        return run
    if isinstance(run, (str, os.PathLike)):
        return load_run(run, dictionary)
    raise BackpainEpiError(f"runs: expected a FitResult or a run folder, got {type(run).__name__}.")


def _check_run_ids(run: Path, provenance: Provenance, idata: az.InferenceData, summary: pd.DataFrame) -> None:
    """Raise :class:`InputFileError` unless provenance.json, posterior.nc and summary.csv carry one run id.

    A folder written before run ids (none of the three has one) is accepted as it is.
    """
    column = summary[RUN_ID_COLUMN].dropna().unique() if RUN_ID_COLUMN in summary else []
    ids = {"provenance.json": provenance.run_id, "posterior.nc": str(idata.attrs.get("run_id", "")),
           "summary.csv": ", ".join(map(str, column))}
    if not any(ids.values()) or len(set(ids.values())) == 1:
        return
    seen = "; ".join(f"{name} {value or '(none)'}" for name, value in ids.items())
    raise InputFileError(f"run {run}: its files come from different fits (run id: {seen}); a write was interrupted or "
                         f"files were copied in. Refit the run: `backpain-epi fit --out {run}`.")


def _sample_along_ladder(design: Design, spec: ModelSpec, ladder: GateLadder, progress: bool, reuse: bool = False):
    """Sample the model of ``design`` with the spec's settings, then along ``ladder`` while the gate fails.

    An attempt with automatically parameterized (scaled) parts that fails with a funnel's signs is followed by one at the same
    settings with those parts non-centred (:mod:`.ladder`). Returns the last attempt's InferenceData, sampler
    record and design (``noncentred`` set after that switch), every :class:`Attempt`, and the model when it
    integrates latent values out (for the marginal log-likelihood; else ``None``).
    """
    # lazy: PyMC and PyTensor take seconds to import; reading, comparing and reporting runs never need them
    from .build import build_model, model_data, structure_key
    from .sample import sample_model

    var_names = [BETA, *scale_parameters(design.recipe)]
    attempts: list[Attempt] = []
    plan, step, switched = ladder.settings(spec.sampler), 0, ()
    while step < len(plan):
        if not attempts or attempts[-1].noncentred != switched:  # the first attempt, or the switch: (re)build
            model = build_model(design, shared=reuse)
            key, data = (structure_key(design), model_data(design)) if reuse else (None, None)
            cache: dict = {}  # the compiled model, shared by the attempts of one parameterization
        settings = plan[step]
        idata, info = sample_model(model, settings, progress=progress, cache=cache, key=key, data=data)
        diagnostics = check_diagnostics(idata, var_names)
        attempts.append(Attempt(len(attempts) + 1, _settings_record(settings), diagnostics,
                                {k: round(v, 2) for k, v in info.pop("timings").items()}, switched))
        if diagnostics.passed:
            break
        parts = () if switched or not ladder.noncentre else tuple(auto_parts(design))
        if parts and ladder.funnel(diagnostics, settings.draws * settings.chains):
            switched, design = parts, replace(design, noncentred=True)
            continue  # the same settings, non-centred
        if not ladder.retry(diagnostics, settings.chains):
            break
        step += 1
    if getattr(model, "measured_marginal", None) is not None:  # exposures with measurement error integrated out
        # lazy: build_latent imports PyMC, as build does above
        from .build_latent import draw_true_values

        t = time.perf_counter()
        draw_true_values(model, idata, design, seed=settings.seed or 0)
        info["true_values_s"] = round(time.perf_counter() - t, 2)
        info.setdefault("options", {})["measurement_error"] = "marginal"
    elif design.recipe.latent and design.recipe.latent.get("measured"):
        info.setdefault("options", {})["measurement_error"] = "sampled"
    if getattr(model, "imputed_quadrature", None) is not None:  # continuous imputed columns integrated out
        # lazy: build_latent imports PyMC, as build does above
        from .build_latent import draw_imputed_values

        t = time.perf_counter()
        draw_imputed_values(model, idata, design, seed=settings.seed or 0)
        info["imputed_values_s"] = round(time.perf_counter() - t, 2)
        info.setdefault("options", {})["imputation"] = "quadrature"
    elif design.recipe.latent and any(e["kind"] in ("continuous", "activity") for e in design.recipe.latent["imputed"]):
        info.setdefault("options", {})["imputation"] = "sampled"
    # lazy: build_latent imports PyMC, as build does above
    from .build_latent import integrated

    if integrated(model):  # the pointwise log-likelihood is the model's own, latent values integrated out
        info.setdefault("options", {})["log_likelihood"] = "marginal"
        return idata, info, design, tuple(attempts), model
    return idata, info, design, tuple(attempts), None


def _analysed_rows(table: pd.DataFrame, design: Design, dd: DataDictionary) -> pd.DataFrame:
    """The rows of ``table`` the fit analysed, in the design's order."""
    id_col = dd.id_column
    return table.set_index(table[id_col].astype(str), drop=False).loc[design.ids].reset_index(drop=True)


def _settings_record(s) -> dict:
    return {"draws": s.draws, "tune": s.tune, "chains": s.chains, "target_accept": s.target_accept, "seed": s.seed}


def read_analysis_table(data, dd: DataDictionary, columns=None, *, exclude_invalid_rows: bool = False,
                        sep: str | None = None, encoding: str = "utf-8", decimal: str = ".") -> tuple[pd.DataFrame, str]:
    """The cohort table as every analysis reads it: validated, typed, ``activity_band`` derived; and its source.

    ``data`` is a path (CSV/TSV/Parquet, read with ``sep``, ``encoding`` and ``decimal``) or a DataFrame.
    :func:`~backpain_epi.records.table_hash` of the returned table is the ``data.sha256`` a run records,
    so a report can check that it was given the data the runs were fit on.

    ``columns`` are the columns the analysis uses (``None``: all). Only errors in those (and in the id,
    ``qc_flag`` and the sources of derived columns: :func:`~backpain_epi.cohort.analysis_columns`) block;
    errors in other columns are issued as :class:`~backpain_epi.errors.DataQualityWarning`, one each.
    With ``exclude_invalid_rows``, errors that sit in single rows of the used columns do not block either:
    the rows stay in the table, so that its hash is that of the file for every analysis, and are listed, by
    rule, in ``table.attrs["invalid_rows"]``, which :func:`~backpain_epi.modelling.design.complete_rows`
    leaves out and counts.
    """
    scope = None if columns is None else analysis_columns(columns, dd)
    frame = data.drop(columns=["activity_band"], errors="ignore") if isinstance(data, pd.DataFrame) else data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        table, report = load_table(frame, "cohort", dd, sep=sep, encoding=encoding, decimal=decimal, columns=scope,
                                   allow_row_errors=exclude_invalid_rows)
    table = add_activity_band(table, dd)
    if exclude_invalid_rows:
        table.attrs[INVALID_ROWS] = report.invalid_rows()
    return table, "DataFrame" if isinstance(data, pd.DataFrame) else str(data)


#: Rows × draws of float64 held at once while the pointwise log-likelihood is computed (about 100 MB).
LL_CHUNK_CELLS = 12_500_000


#: Rows × draws of the stored log-likelihood at most (400 MB of float32): above 100,000 rows the draws kept
#: for LOO fall below ``loo_draws``, to no fewer than :data:`LOO_MIN_DRAWS`.
LL_MAX_CELLS = 100_000_000
LOO_MIN_DRAWS = 400


def loo_draw_count(n_rows: int, max_draws: int) -> int:
    """Draws of the pointwise log-likelihood kept for LOO: ``max_draws``, capped so that rows × draws ≤ :data:`LL_MAX_CELLS`."""
    return max(min(max_draws, LOO_MIN_DRAWS), min(max_draws, LL_MAX_CELLS // max(n_rows, 1)))


def _add_log_likelihood(idata: az.InferenceData, design: Design, max_draws: int, rows: pd.DataFrame | None = None,
                        model=None) -> None:
    """Pointwise Bernoulli log-likelihood (float32) on evenly spaced draws, as an ArviZ ``log_likelihood`` group.

    Computed in chunks of rows, so that no draws × rows array of float64 is held whole:
    at 300,000 rows and 1,000 draws that would be 2.4 GB, where the float32 result is 1.2 GB;
    the draws kept are also capped (:func:`loo_draw_count`: 400 at 300,000 rows, 480 MB).
    With imputed or measurement-error columns (``rows``: the analysed rows, needed then), a row's
    log-likelihood is at each draw's imputed (true) values, and the log of the mixture where a
    discrete covariate is marginalised (:func:`~backpain_epi.modelling.latent.pointwise_log_likelihood`).
    With ``model``, one that integrates its latent values out, it is the marginal log-likelihood of its own graph
    instead (:func:`~backpain_epi.modelling.build_latent.outcome_log_likelihood`), the form PSIS-LOO needs.
    """
    post = idata.posterior
    nchain, ndraw = post.sizes["chain"], post.sizes["draw"]
    max_draws = loo_draw_count(design.n, max_draws)
    keep = max(1, min(ndraw, max_draws // nchain))
    draw_idx = np.unique(np.linspace(0, ndraw - 1, keep).round().astype(int))
    thin = idata.sel(draw=draw_idx)
    if model is not None:
        # lazy: build_latent imports PyMC, which reading a run never needs
        from .build_latent import outcome_log_likelihood

        ll = outcome_log_likelihood(model, thin.posterior, design.recipe.spec.outcome)
    else:
        ll = _conditional_log_likelihood(thin, design, rows)
    ll = ll.reshape(nchain, len(draw_idx), design.n)
    name = design.recipe.spec.outcome
    ds = xr.Dataset({name: (("chain", "draw", f"{name}_dim_0"), ll)},
                    coords={"chain": post.chain.values, "draw": post.draw.values[draw_idx], f"{name}_dim_0": design.ids})
    idata.add_groups({"log_likelihood": ds})
    if "observed_data" in idata.groups() and idata.observed_data.sizes.get(f"{name}_dim_0", design.n) != design.n:
        del idata["observed_data"]  # a model with marginalised rows observes the outcome in two parts; keep one, of every row
    if "observed_data" not in idata.groups():
        idata.add_groups({"observed_data": xr.Dataset({name: ((f"{name}_dim_0",), design.y)}, coords={f"{name}_dim_0": design.ids})})


def _conditional_log_likelihood(thin: az.InferenceData, design: Design, rows: pd.DataFrame | None) -> np.ndarray:
    """(draws, rows) float32 from the posterior's linear predictor in chunks of rows, at the drawn latent values."""
    post = thin.posterior
    n_draws = post.sizes["chain"] * post.sizes["draw"]
    chunk = max(1, LL_CHUNK_CELLS // n_draws)
    ll = np.empty((n_draws, design.n), dtype=np.float32)
    if design.recipe.latent and rows is None:
        raise BackpainEpiError("the model has imputed or measurement-error columns: pass the analysed rows to the log-likelihood.")
    lp = LinearPredictor(thin, design.recipe)
    for start in range(0, design.n, chunk):
        part = slice(start, start + chunk)
        eta = lp.eta(design.X[part], None if design.A is None else design.A[part],
                     None if design.group is None else design.group[part], S=None if design.S is None else design.S[part])
        lat = row_latents(thin, design.recipe, rows.iloc[part], np.arange(n_draws)) if design.recipe.latent else None
        ll[:, part] = pointwise_log_likelihood(design.y[part], eta, lat)
    return ll


def _provenance(spec, design: Design, table, source, sampler_info, timings, diagnostics, run_id, attempts) -> Provenance:
    data = DataRecord(source=source, sha256=table_hash(table), n_rows=len(table), n_analysed=design.n,
                      n_events=int(design.y.sum()), dropped=design.dropped, analysed_sha256=ids_hash(design.ids),
                      qc_flagged_included=bool(design.include_qc_flagged), imputed=dict(design.imputed),
                      measurement_error={m["exposure"]: {k: m[k] for k in ("se", "sd_observed", "sd_true", "mean_se", "reliability")}
                                         for m in design.recipe.latent.get("measured", ())})
    settings = _settings_record(spec.sampler)
    return Provenance(model=spec.name, formula=spec.terms_text(), priors={k: str(v) for k, v in spec.priors.items()}, data=data,
                      design=design.recipe.to_dict(), activity_parameterization=activity_parameterization(design),
                      sampler=sampler_info, settings=settings, timings={k: round(v, 2) for k, v in timings.items()},
                      diagnostics=diagnostics, run_id=run_id, attempts=attempts,
                      group_parameterization=group_parameterization(design))
