"""Command-line verbs of the modelling stage (``fit``, ``compare``, ``survival``).

PyMC and ArviZ are imported inside the command bodies, so ``backpain-epi --help`` stays quick.
"""

from __future__ import annotations

import warnings
import sys
from pathlib import Path

import click

from ..errors import DataQualityWarning
from .options import DICTIONARY, EXCLUDE_INVALID_ROWS, text_table


@click.command()
@click.option("--data", "data", type=click.Path(path_type=Path), required=True, help="Cohort table (CSV, TSV or Parquet); validated first.")
@click.option("--spec", "spec", type=click.Path(path_type=Path), required=True, help="Model spec YAML, e.g. models/full.yaml.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run folder to write (posterior.nc, summary.csv, ...).")
@click.option("--draws", type=int, default=None, help="Posterior draws per chain [spec].")
@click.option("--tune", type=int, default=None, help="Tuning steps per chain [spec].")
@click.option("--chains", type=int, default=None, help="Number of chains [spec].")
@click.option("--seed", type=int, default=None, help="Random seed [spec].")
@click.option("--sampler", type=click.Choice(["nutpie", "pymc"]), default=None, help="nutpie (fast, default) or PyMC's NUTS [spec].")
@click.option("--allow-failed-diagnostics", is_flag=True, help="Exit 0 even if the diagnostics gate fails (the failure is still printed and recorded).")
@click.option("--include-qc-flagged", is_flag=True, help="Keep participants the segmentation QC flagged (qc_flag = 1); excluded by default.")
@EXCLUDE_INVALID_ROWS
@text_table
@click.option("--no-ladder", is_flag=True, help="One attempt: no refits with a higher target_accept and more tuning when the gate fails.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@DICTIONARY
def fit(data, spec, out, draws, tune, chains, seed, sampler, allow_failed_diagnostics, include_qc_flagged, no_ladder, quiet, dictionary_path,
        exclude_invalid_rows, sep, encoding, decimal):
    """Fit a Bayesian hierarchical logistic model of a spec to a cohort table.

    Prints the model and its priors, the rows dropped as incomplete, the odds ratios
    and the diagnostics gate. A fit failing the gate on divergences, ESS or R-hat
    is refit along the gate ladder (higher target_accept, more tuning and draws)
    unless --no-ladder; every attempt is printed and recorded. Exit status 3 when
    the gate still fails (unless --allow-failed-diagnostics), 2 for bad input.
    """

    # lazy: the modelling stage imports ArviZ and pandas; --help must not
    from ..dictionary import load_dictionary
    from ..modelling import fit_model, load_spec
    from ..modelling.fit import read_analysis_table
    from ..modelling.diagnostics import GateFailedWarning

    dd = load_dictionary(dictionary_path)
    model_spec = load_spec(spec, dd).with_sampler(draws=draws, tune=tune, chains=chains, seed=seed, sampler=sampler)
    click.echo(str(model_spec))
    reading = {"exclude_invalid_rows": exclude_invalid_rows, "sep": sep, "encoding": encoding, "decimal": decimal}
    read_analysis_table(data, dd, model_spec.columns(), **reading)  # refuses a bad table before anything is said of sampling
    s = model_spec.sampler
    click.echo(f"Sampling with {s.sampler}: {s.chains} chains × {s.draws} draws after {s.tune} tuning steps, seed {s.seed}.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GateFailedWarning)  # the gate's verdict is printed below, with its exit status
        warnings.simplefilter("ignore", DataQualityWarning)  # printed by the check above
        result = fit_model(data, model_spec, out=out, dictionary=dd, **reading, progress=not quiet, include_qc_flagged=include_qc_flagged,
                           ladder=not no_ladder)
    d = result.provenance.data
    dropped = {k: v for k, v in result.dropped.items() if k != "any"}
    if dropped:
        detail = ", ".join(f"{_drop_reason(k)} {v:,}" for k, v in dropped.items())
        click.echo(f"Dropped {result.dropped['any']:,} of {d.n_rows:,} rows: {detail}.")
    click.echo(f"Analysed {d.n_analysed:,} participants, {d.n_events:,} with {result.spec.outcome}.")
    info = result.provenance.sampler
    if info["fallback_reason"]:
        click.secho(f"note: {info['fallback_reason']}; used PyMC's NUTS.", fg="yellow")
    t = result.provenance.timings
    click.echo(f"Timings: compile {t.get('compile_s', 0):.1f} s, sampling {t['sampling_s']:.1f} s, total {t['total_s']:.1f} s.")
    attempts = result.provenance.attempts
    if len(attempts) > 1:
        click.echo(f"Gate ladder: {len(attempts)} attempts; the last is kept.")
        for a in attempts:
            click.echo(f"  {a.number}. {a.describe()}")
    click.echo(result.format_summary())
    estimands = result.format_estimands()
    if estimands:
        click.echo(estimands)
    gate = result.diagnostics
    click.secho(gate.format(), fg="green" if gate.passed else "red", bold=not gate.passed)
    written = ["posterior.nc", "summary.csv", *(name for name in sorted(p.name for p in Path(out).glob("*.csv")) if name != "summary.csv"),
               "spec.yaml", "provenance.json"]
    click.echo(f"Wrote {out}/ ({', '.join(written)}).")
    if not gate.passed and not allow_failed_diagnostics:
        sys.exit(3)


def _drop_reason(key: str) -> str:
    """A key of ``FitResult.dropped`` as words: ``qc_flag``, ``invalid <column> (<rule>)`` or a missing column."""
    if key == "qc_flag":
        return "segmentation QC flag"
    return key if key.startswith("invalid ") else f"missing {key}"


@click.command()
@click.argument("runs", nargs=-1, type=click.Path(path_type=Path), required=True)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Also write the comparison table here (.csv, .tsv, .parquet); with --cv, the leave-one-site-out tables beside it "
                   "(<name>_loso.csv, <name>_loso_summary.csv, <name>_loso_pointwise.csv).")
@click.option("--cv", "cv", type=click.Choice(["site"]), default=None,
              help="Also cross-validate leaving one site out: one refit per model and site (slow: folds × a fit).")
@click.option("--data", "data", type=click.Path(path_type=Path), default=None, help="With --cv: the cohort table the runs were fit on.")
@click.option("--workers", type=int, default=1, show_default=True, help="With --cv: local processes refitting folds at once.")
@click.option("--scheduler", default=None, help="With --cv: address of a Dask scheduler (tcp://host:8786) to refit on.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@EXCLUDE_INVALID_ROWS
@text_table
@DICTIONARY
def compare(runs, out, cv, data, workers, scheduler, quiet, exclude_invalid_rows, sep, encoding, decimal, dictionary_path):
    """Compare fitted RUNS (folders from `fit`) by PSIS-LOO, with stacking weights.

    Refuses runs fit on different data or on different rows of it. With --cv site, also
    refits every model once per held-out site (on the other sites) and scores the site
    as a new one: elpd by site and in total, and whether the PSIS-LOO ranking holds.
    """
    # lazy: ArviZ and pandas; --help must not import them
    from ..errors import BackpainEpiError
    from ..modelling.compare import compare_runs, format_comparison
    from ..tableio import check_output_path

    if cv is None:
        for given, flag in ((data, "--data"), (scheduler, "--scheduler"), (workers != 1 or None, "--workers")):
            if given is not None:
                raise BackpainEpiError(f"{flag} is used by leave-one-site-out cross-validation only; add --cv site, or leave it out.")
    elif data is None:
        raise BackpainEpiError(": needed by --cv site, which refits the models on the cohort table they were fit on; give --data TABLE.",
                               param="data")
    if out is not None:
        check_output_path(out)
    table = compare_runs(list(runs), out=out)
    click.echo(format_comparison(table))
    if out is not None:
        click.echo(f"Wrote {out}.")
    if cv is None:
        return
    # lazy: the refits import PyMC
    from ..dictionary import load_dictionary
    from ..modelling.crossval import cross_validate_sites, format_crossval

    where = out.with_name(f"{out.stem}_loso{out.suffix}") if out is not None else None
    result = cross_validate_sites(list(runs), data, workers=workers, scheduler=scheduler, progress=not quiet, out=where,
                                  dictionary=load_dictionary(dictionary_path), exclude_invalid_rows=exclude_invalid_rows, sep=sep,
                                  encoding=encoding, decimal=decimal)
    click.echo("")
    click.echo(format_crossval(result, table))
    if where is not None:
        click.echo(f"Wrote {where} (and its _summary and _pointwise tables).")


@click.command()
@click.option("--data", "data", type=click.Path(path_type=Path), required=True, help="Cohort table (CSV, TSV or Parquet) with cbp_onset_age; validated first.")
@click.option("--spec", "spec", type=click.Path(path_type=Path), default=Path("models/paper.yaml"), show_default=True,
              help="Model spec whose exposures and covariates the Cox model takes.")
@click.option("--exposure", default=None, help="Numeric column whose tertiles split the Kaplan–Meier curves [the dictionary's "
              "survival_default: intermat_ml].")
@click.option("--no-birth-cohort", is_flag=True, help="Drop age at examination from the covariates (kept by default as a birth-cohort adjustment).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder to write (hazard_ratios.csv, km_by_tertile.png, ...).")
@EXCLUDE_INVALID_ROWS
@text_table
@DICTIONARY
def survival(data, spec, exposure, no_birth_cohort, out, dictionary_path, exclude_invalid_rows, sep, encoding, decimal):
    """Survival sensitivity analysis: Cox hazard ratios with age as the time scale and CBP onset as the event.

    Participants without CBP are censored at their age; hazard ratios per 2 SD, adjusted
    as in the spec, stratified by its group column (site). Age at examination stays a
    covariate (birth cohort: onsets are recalled, so the young can only have early ones). Prints the counts,
    the hazard ratios, the proportional-hazards check and the log-rank test of the
    Kaplan–Meier curves by exposure tertile. Exit status 2 for bad input.
    """
    # lazy: lifelines, pandas and matplotlib; --help must not import them
    from ..dictionary import load_dictionary
    from ..modelling.survival import survival_analysis
    from ..reporting.sections import save_km_figure
    from ..tableio import check_output_dir

    dd = load_dictionary(dictionary_path)
    check_output_dir(out)
    result = survival_analysis(data, spec, exposure=exposure, birth_cohort=not no_birth_cohort, dictionary=dd,
                               exclude_invalid_rows=exclude_invalid_rows, sep=sep, encoding=encoding, decimal=decimal)
    click.echo(result.format())
    paths = result.save(out)
    paths |= save_km_figure(result, out, dd)
    click.echo(f"Wrote {out}/ ({', '.join(p.name for p in paths.values())}).")


COMMANDS: list[click.Command] = [fit, compare, survival]
