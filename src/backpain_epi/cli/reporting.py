"""Command-line verb of the reporting stage (``report``), added to ``backpain-epi`` by :mod:`backpain_epi.cli.main`."""

from __future__ import annotations

from pathlib import Path

import click

from .options import DICTIONARY, EXCLUDE_INVALID_ROWS, text_table


@click.command()
@click.option("--runs", "runs", type=click.Path(path_type=Path), multiple=True, required=True,
              help="Run folder from `backpain-epi fit`; repeat for several models (the first is the primary model). "
                   "Several folders may also follow one --runs.")
@click.argument("more_runs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--data", "data", type=click.Path(path_type=Path), required=True, help="The cohort table the runs were fit on (checked by content hash).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Report folder to write (index.html, tables/, figures/, ...).")
@click.option("--segmentation", type=click.Path(path_type=Path), default=None, help="Output folder of `backpain-epi segment`: adds the QC section.")
@click.option("--title", default="Back-muscle composition and chronic back pain", show_default=True, help="Title of the report.")
@click.option("--table1", "table1_columns", default=None, metavar="COL,COL,...", help="Columns of Table 1 [every column the models use].")
@click.option("--km-exposure", default=None, help="Exposure whose tertiles split the Kaplan–Meier curves [the dictionary's survival "
              "exposure: intermat_ml].")
@click.option("--survival-spec", type=click.Path(path_type=Path), default=None,
              help="Model spec whose exposures and covariates the Cox model takes [models/paper.yaml].")
@click.option("--truth", type=click.Path(path_type=Path), default=None, help="truth.json of a simulated cohort: show the true ORs beside the estimates.")
@click.option("--planted", type=click.Path(path_type=Path), default=None,
              help="Exposures planted in phantom scans (participant_id + exposure columns): adds their agreement with the measured ones.")
@click.option("--cv", "crossval", type=click.Path(path_type=Path), default=None,
              help="Leave-one-site-out table from `compare --cv site --out` (or its folder): adds the cross-validation section.")
@click.option("--no-survival", is_flag=True, help="Leave out the survival sensitivity analysis.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@EXCLUDE_INVALID_ROWS
@text_table
@DICTIONARY
def report(runs, more_runs, data, out, segmentation, title, table1_columns, km_exposure, survival_spec, truth, planted, crossval, no_survival, quiet,
           dictionary_path, exclude_invalid_rows, sep, encoding, decimal):
    """Build the publication report from saved runs (no refitting).

    Writes a self-contained index.html (figures embedded; opens offline), every table as
    CSV, Markdown and LaTeX, figures as PNG (300 dpi) and SVG, the survival analysis and
    methods/results paragraphs to paste. Example:

      backpain-epi report --runs runs/paper runs/full --data cohort.csv --out report/
    """
    # lazy: `backpain-epi --help` must not import pandas, PyMC or torch
    from ..dictionary import load_dictionary
    from ..reporting.report import build_report

    dd = load_dictionary(dictionary_path)
    columns = [c.strip() for c in table1_columns.split(",") if c.strip()] if table1_columns else None
    result = build_report([*runs, *more_runs], data, out=out, segmentation=segmentation, title=title, table1_columns=columns,
                          survival=not no_survival, km_exposure=km_exposure, survival_spec=survival_spec, truth=truth, planted=planted, crossval=crossval,
                          dictionary=dd, progress=not quiet, exclude_invalid_rows=exclude_invalid_rows, sep=sep, encoding=encoding,
                          decimal=decimal)
    for note in result.notes:
        click.secho(f"note: {note}", fg="yellow")
    if result.failed_gates:
        click.secho(f"warning: the diagnostics gate failed for {', '.join(result.failed_gates)}; the report flags it.", fg="red", err=True)
    click.echo("Table 2: odds ratios per 2 SD (95% CrI)")
    click.echo(result.headline.to_string(index=False))
    click.echo(f"Wrote {result.out}/ ({len(result.tables)} tables, {len(result.figures)} figures); open {result.index}")


COMMANDS: list[click.Command] = [report]
