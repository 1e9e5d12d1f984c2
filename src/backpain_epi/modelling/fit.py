"""Fit a model spec to a cohort table: validate, design, sample, check, save.

:func:`fit_model` is the Python form of ``backpain-epi fit``; it returns a
:class:`FitResult` and, given ``out``, writes the run folder:

``posterior.nc``
    ArviZ InferenceData: posterior, sample_stats, observed_data, and the
    pointwise log-likelihood (float32, on at most ``loo_draws`` evenly spaced
    draws, enough for PSIS-LOO; :func:`backpain_epi.modelling.compare.run_loo` computes LOO
    on exactly those draws, whereas ``az.loo`` on the whole file would take the relative
    efficiency from all draws).
``summary.csv``
    One row per term: odds ratios per 2 SD (numeric terms) or per level, 95%
    interval, log OR, P(OR > 1), R-hat, ESS.
``activity_curve.csv``
    The activity term's odds ratio against 1,500 MET-min/week on a grid.
``spec.yaml``
    The spec as used (command-line sampler settings included).
``provenance.json``
    Data hash, dropped rows, design recipe, priors, package versions, seed,
    sampler, timings and the diagnostics verdict.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..cohort import add_activity_band, load_cohort
from ..dictionary import DataDictionary, load_dictionary
from ..errors import InputFileError
from ..tableio import atomic_path, check_output_dir, write_table, write_text
from ..validation import conform_table
from .design import Design, DesignRecipe, make_design
from .diagnostics import Check, Diagnostics, check_diagnostics
from .results import BETA, activity_curve, eta_from_arrays, odds_ratio_summary, predict, scale_parameters
from .spec import ModelSpec, load_spec

import arviz as az  # noqa: E402  (after the package's warning filter)

RUN_FILES = ("posterior.nc", "summary.csv", "spec.yaml", "provenance.json")
LOO_DRAWS = 1000
_VERSIONS = ("backpain-epi", "pymc", "pytensor", "nutpie", "arviz", "numpy", "pandas", "patsy", "scipy")


@dataclass
class FitResult:
    """A fitted model: posterior, odds-ratio summary, activity curve, diagnostics and provenance.

    Made by :func:`fit_model` or read back from a run folder by :func:`load_run`.
    """

    spec: ModelSpec
    recipe: DesignRecipe
    idata: az.InferenceData
    summary: pd.DataFrame
    diagnostics: Diagnostics
    provenance: dict
    curve: pd.DataFrame | None = None
    out: Path | None = None
    dropped: dict[str, int] = field(default_factory=dict)

    def predict(self, df: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
        """Predicted CBP probability (mean, 95% interval) for new participants; see :func:`results.predict`."""
        return predict(self.idata, self.recipe, df, seed=seed)

    def print_summary(self) -> str:
        """The headline table as text: odds ratios with 95% intervals, P(OR > 1), R-hat and ESS."""
        t = self.summary
        lines = [f"{'term':24s} {'per':24s} {'OR':>6s}  {'95% interval':15s} {'P(OR>1)':>7s} {'R-hat':>6s} {'ESS':>6s}"]
        for r in t.itertuples():
            lines.append(f"{r.term:24s} {r.per:24s} {r.or_median:6.2f}  {r.or_lo95:5.2f} – {r.or_hi95:5.2f}   {r.p_or_gt_1:7.3f} "
                         f"{r.r_hat:6.3f} {r.ess_bulk:6.0f}")
        return "\n".join(lines)


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
) -> FitResult:
    """Validate ``data``, build the model of ``spec``, sample it, check it and (with ``out``) save the run.

    Parameters
    ----------
    data
        Cohort table (CSV/TSV/Parquet path, or a DataFrame); validated against
        the dictionary first. Rows incomplete in the model's columns are dropped
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
        Draws kept for the pointwise log-likelihood in ``posterior.nc``.
    include_qc_flagged
        Keep rows with ``qc_flag`` = 1 (recorded in ``provenance.json``).

    Returns
    -------
    FitResult
        Also when the diagnostics gate fails: check ``result.diagnostics.passed``.
    """
    t0 = time.perf_counter()
    dd = dictionary or load_dictionary()
    spec = spec if isinstance(spec, ModelSpec) else load_spec(spec, dd)
    spec = spec.with_sampler(draws=draws, tune=tune, chains=chains, seed=seed, sampler=sampler)
    out = check_output_dir(out) if out is not None else None
    table, source = read_analysis_table(data, dd)
    design = make_design(table, spec, dd, include_qc_flagged=include_qc_flagged)
    timings = {"prepare_s": time.perf_counter() - t0}

    from .build import build_model
    from .sample import sample_model

    model = build_model(design)
    idata, sampler_info = sample_model(model, spec.sampler, progress=progress)
    timings |= sampler_info.pop("timings")
    t1 = time.perf_counter()
    _add_log_likelihood(idata, design, loo_draws)
    summary = odds_ratio_summary(idata, design.recipe, dd)
    curve = activity_curve(idata, design.recipe) if spec.activity else None
    diagnostics = check_diagnostics(idata, [BETA, *scale_parameters(design.recipe)])
    timings["summarise_s"] = time.perf_counter() - t1
    timings["total_s"] = time.perf_counter() - t0
    provenance = _provenance(spec, design, table, source, sampler_info, timings, diagnostics)
    result = FitResult(spec=spec, recipe=design.recipe, idata=idata, summary=summary, diagnostics=diagnostics,
                       provenance=provenance, curve=curve, out=out, dropped=design.dropped)
    if out is not None:
        save_run(result, out)
    return result


def save_run(result: FitResult, out: str | os.PathLike) -> Path:
    """Write the run folder of ``result`` (every file atomically; the posterior last but one, provenance last)."""
    out = Path(out)
    write_text(result.spec.to_yaml(), out / "spec.yaml")
    write_table(result.summary, out / "summary.csv")
    if result.curve is not None:
        write_table(result.curve, out / "activity_curve.csv")
    with atomic_path(out / "posterior.nc") as tmp:
        result.idata.to_netcdf(str(tmp), engine="h5netcdf")
    write_text(json.dumps(result.provenance, indent=2, default=_json_default) + "\n", out / "provenance.json")
    return out


def load_run(run: str | os.PathLike, dictionary: DataDictionary | None = None) -> FitResult:
    """Read a run folder written by :func:`fit_model` (no refitting).

    Raises
    ------
    InputFileError
        The folder is missing or lacks one of the run files.
    """
    run = Path(run)
    if not run.is_dir():
        raise InputFileError(f"run folder {run} not found; make one with `backpain-epi fit --out {run}`.")
    missing = [f for f in RUN_FILES if not (run / f).is_file()]
    if missing:
        raise InputFileError(f"{run} is not a complete run folder: {', '.join(missing)} missing (was the fit interrupted? fit again).")
    dd = dictionary or load_dictionary()
    spec = load_spec(run / "spec.yaml", dd)
    provenance = json.loads((run / "provenance.json").read_text(encoding="utf-8"))
    recipe = DesignRecipe.from_dict(spec, provenance["design"])
    idata = az.from_netcdf(str(run / "posterior.nc"))
    curve = pd.read_csv(run / "activity_curve.csv") if (run / "activity_curve.csv").is_file() else None
    diagnostics = Diagnostics(tuple(Check(**c) for c in provenance["diagnostics"]["checks"]))
    return FitResult(spec=spec, recipe=recipe, idata=idata, summary=pd.read_csv(run / "summary.csv"), diagnostics=diagnostics,
                     provenance=provenance, curve=curve, out=run, dropped=provenance["data"]["dropped"])


def table_hash(df: pd.DataFrame) -> str:
    """SHA-256 of a table's content (column names and values, in order), independent of file format."""
    h = hashlib.sha256()
    h.update("\x1f".join(map(str, df.columns)).encode())
    h.update(pd.util.hash_pandas_object(df.astype(str), index=False).to_numpy().tobytes())
    return h.hexdigest()


def read_analysis_table(data, dd: DataDictionary) -> tuple[pd.DataFrame, str]:
    """The cohort table as every analysis reads it: validated, typed, ``activity_band`` derived; and its source.

    ``data`` is a path (CSV/TSV/Parquet) or a DataFrame. :func:`table_hash` of the
    returned table is the ``data.sha256`` a run records, so a report can check
    that it was given the data the runs were fit on.
    """
    if isinstance(data, pd.DataFrame):
        frame = data.drop(columns=["activity_band"], errors="ignore")
        return add_activity_band(conform_table(frame, "cohort", dd), dd), "DataFrame"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        table, _ = load_cohort(data, dd)
    return table, str(data)


def _add_log_likelihood(idata: az.InferenceData, design: Design, max_draws: int) -> None:
    """Pointwise Bernoulli log-likelihood (float32) on evenly spaced draws, as an ArviZ ``log_likelihood`` group."""
    post = idata.posterior
    nchain, ndraw = post.sizes["chain"], post.sizes["draw"]
    keep = max(1, min(ndraw, max_draws // nchain))
    draw_idx = np.unique(np.linspace(0, ndraw - 1, keep).round().astype(int))
    thin = idata.sel(draw=draw_idx)
    eta = eta_from_arrays(thin, design.recipe, design.X, design.A, design.group)
    y = design.y[None, :]
    ll = (y * eta - np.logaddexp(0.0, eta)).astype(np.float32).reshape(nchain, len(draw_idx), design.n)
    import xarray as xr

    name = design.recipe.spec.outcome
    ds = xr.Dataset({name: (("chain", "draw", f"{name}_dim_0"), ll)},
                    coords={"chain": post.chain.values, "draw": post.draw.values[draw_idx], f"{name}_dim_0": design.ids})
    idata.add_groups({"log_likelihood": ds})
    if "observed_data" not in idata.groups():
        idata.add_groups({"observed_data": xr.Dataset({name: ((f"{name}_dim_0",), design.y)}, coords={f"{name}_dim_0": design.ids})})


def _provenance(spec, design: Design, table, source, sampler_info, timings, diagnostics) -> dict:
    from .build import activity_parameterization

    versions = {}
    for name in _VERSIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": spec.name,
        "formula": spec.terms_text(),
        "priors": {k: str(v) for k, v in spec.priors.items()},
        "data": {
            "source": source, "sha256": table_hash(table), "n_rows": len(table), "n_analysed": design.n,
            "n_events": int(design.y.sum()), "dropped": design.dropped,
            "analysed_sha256": hashlib.sha256("\n".join(design.ids).encode()).hexdigest(),
            "qc_flagged_included": bool(design.include_qc_flagged),
        },
        "design": design.recipe.to_dict(),
        "activity_parameterization": activity_parameterization(design),
        "sampler": sampler_info,
        "settings": {"draws": spec.sampler.draws, "tune": spec.sampler.tune, "chains": spec.sampler.chains,
                     "target_accept": spec.sampler.target_accept, "seed": spec.sampler.seed},
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "diagnostics": diagnostics.to_dict(),
        "versions": {**versions, "python": platform.python_version()},
        "backpain_epi": __version__,
    }


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)
