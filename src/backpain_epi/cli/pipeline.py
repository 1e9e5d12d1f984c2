"""Command-line verb of the end-to-end pipeline (``pipeline``), added to ``backpain-epi`` by :mod:`backpain_epi.cli.main`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .options import DICTIONARY, wide_pandas


@click.command()
@click.option("--config", "config", type=click.Path(path_type=Path), default=Path("reports/demo.yaml"), show_default=True,
              help="Pipeline configuration (YAML; relative paths in it are relative to the file).")
@click.option("--n", "n", type=int, default=None, help="Participants to simulate and image [config cohort.n].")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Pipeline folder [config out].")
@click.option("--force", multiple=True, metavar="STAGE",
              help="Rerun a stage even if its inputs are unchanged (simulate, phantoms, segment, merge, fit:<model>, compare, crossval, report). Repeatable.")
@click.option("--allow-failed-diagnostics", is_flag=True,
              help="Exit 0 even if a model's diagnostics gate failed (the report flags it either way).")
@click.option("--scheduler", default=None,
              help="Address of a Dask scheduler (tcp://host:8786): the model fits and the cross-validation refits run on its workers "
                   "(they must see the pipeline folder); otherwise in local processes (config fit.workers, crossval.workers).")
@click.option("--quiet", is_flag=True, help="No progress bars inside the stages.")
@DICTIONARY
def pipeline(config, n, out, force, allow_failed_diagnostics, scheduler, quiet, dictionary_path):
    """Images to odds ratios: simulate a cohort, image each participant as a Dixon phantom carrying
    their exposures, segment, merge, validate, fit every model of the config, compare and report.

    A rerun skips every stage whose inputs have not changed and redoes those that have.
    Ends by printing the true odds ratios beside the estimates and the report's path.
    Exit status 2 for bad input; 3 when a model's diagnostics gate failed (the report is
    written and flags it) unless --allow-failed-diagnostics is given.
    """
    # lazy: `backpain-epi --help` must not import pandas, PyMC or torch
    from ..dictionary import load_dictionary
    from ..pipeline.config import load_config
    from ..pipeline.run import run_pipeline

    cfg = load_config(config).with_overrides(n=n, out=out)
    result = run_pipeline(cfg, force=set(force), echo=click.echo, progress=not quiet, dictionary=load_dictionary(dictionary_path),
                          scheduler=scheduler)
    ran = result.ran
    click.echo(f"\nStages run: {', '.join(ran) if ran else 'none (everything up to date)'}.")
    if result.failed_gates:
        click.secho(f"warning: the diagnostics gate failed for {', '.join(result.failed_gates)}; the report flags it.", fg="red", err=True)
    if result.headline is not None:
        click.echo("\nOdds ratios planted in the images (True OR) beside the estimates from the segmented exposures "
                   "(posterior median, 95% CrI; ✓ covers the truth):")
        with wide_pandas():
            click.echo(result.headline.to_string(index=False))
    click.echo(f"\nReport: {result.report.resolve()}")
    if result.failed_gates and not allow_failed_diagnostics:
        sys.exit(3)


COMMANDS: list[click.Command] = [pipeline]
