"""The ``backpain-epi`` command line: a thin shell over the Python API.

Each command parses its options, calls one function of the package and prints.
A :class:`~backpain_epi.errors.BackpainEpiError` (bad file, bad column, bad
option) is printed as ``error: ...`` with exit status 2 and no traceback: one
line, except a table refused by validation, which lists its problems below.
"""

from __future__ import annotations

import warnings
import re
import sys
from pathlib import Path

import click

from ..records import VERSION as __version__
from ..errors import BackpainEpiError, BackpainEpiWarning, DataQualityWarning
from ..truth import DEFAULT_SEED, N_NAKO, N_SITES, CohortTruth
from .modelling import COMMANDS as _MODELLING_COMMANDS
from .options import DICTIONARY as _DICTIONARY, parse_pairs as _parse_pairs, text_table as _text_table
from .options import wide_pandas as _wide_pandas
from .pipeline import COMMANDS as _PIPELINE_COMMANDS
from .reporting import COMMANDS as _REPORTING_COMMANDS
from .segmentation import COMMANDS as _SEGMENTATION_COMMANDS

_TRUTH = CohortTruth()  # the defaults shown in --help

class _Group(click.Group):
    """Turns package errors into a readable ``error: ...`` message and exit status 2, and the package's
    warnings (validation notices, ...) into ``warning: ...`` lines.

    An error about a parameter (``exc.param``, its Python name) is shown with the
    flag of that parameter in the command that was run (``batch_size`` -> ``--batch-size``).
    """

    def invoke(self, ctx):
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _notice_printer(warnings.showwarning)
                return super().invoke(ctx)
        except BackpainEpiError as exc:
            click.secho(f"error: {_cli_message(exc, ctx)}", err=True, fg="red")
            sys.exit(2)


def _notice_printer(show):
    """``warnings.showwarning`` that prints the package's own warnings as ``warning: <message>`` (no source line)
    and passes others to ``show``."""

    def show_warning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, BackpainEpiWarning):
            click.secho(f"warning: {message}", err=True, fg="yellow")
        else:
            show(message, category, filename, lineno, file, line)

    return show_warning


def _cli_message(exc: BackpainEpiError, ctx: click.Context) -> str:
    """The error as the command line says it: each Python parameter name replaced by its flag.

    The parameter at fault (``exc.param``) leads the message; other parameters a
    message mentions are written ``name=`` (``pass label_scheme=FILE``) and become
    ``--label-scheme FILE``.
    """
    command = ctx.command.get_command(ctx, ctx.invoked_subcommand) if ctx.invoked_subcommand else None
    flags, switches = {}, set()
    for p in command.params if command else ():
        flag = max(p.opts, key=len) if isinstance(p, click.Option) else p.human_readable_name
        flags[p.name] = flags[p.name.removesuffix("_path")] = flag
        if isinstance(p, click.Option) and p.is_flag:
            switches.add(p.name)
    message = exc.with_name(flags.get(exc.param, exc.param)) if exc.param else str(exc)
    for name, flag in sorted(flags.items(), key=lambda kv: -len(kv[0])):
        if name in switches:  # exclude_invalid_rows=True -> --exclude-invalid-rows
            message = re.sub(rf"(?<![\w-]){re.escape(name)}=True\b", flag, message)
        message = re.sub(rf"(?<![\w-]){re.escape(name)}=", f"{flag} ", message)
    return message


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="backpain-epi")
def main():
    """Back-muscle composition and chronic back pain: simulate, validate and summarise cohort tables.

    Every column is defined once in the data dictionary (`backpain-epi dictionary`).
    """


@main.command()
@click.option("--n", "n", type=int, default=N_NAKO, show_default=True, help="Number of participants.")
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True, help="Random seed; the same seed gives the same table.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Cohort table to write (.csv or .parquet).")
@click.option("--truth-out", type=click.Path(path_type=Path), default=None, help="Write the generating truth as JSON here.")
@click.option("--or", "odds_ratios", multiple=True, metavar="TERM=OR",
              help="Set a true odds ratio, e.g. --or intermat_ml=1.5 (per 2 SD for continuous terms). Repeatable. "
                   f"Defaults: {', '.join(f'{k}={v:g}' for k, v in _TRUTH.odds_ratios.items())}.")
@click.option("--prevalence", type=float, default=_TRUTH.prevalence, show_default=True, help="Target CBP prevalence.")
@click.option("--site-sd", type=float, default=_TRUTH.site_sd, show_default=True, help="SD of the site random intercept (log-odds).")
@click.option("--activity-or-at-0", type=float, default=_TRUTH.activity_or_at_0, show_default=True,
              help="True OR of CBP at 0 MET-min/week vs the optimal activity.")
@click.option("--activity-or-at-10000", type=float, default=_TRUTH.activity_or_at_10000, show_default=True,
              help="True OR at 10,000 MET-min/week vs the optimum.")
@click.option("--activity-optimum", type=float, default=_TRUTH.activity_optimum_met, show_default=True,
              help="Activity of lowest risk (MET-min/week).")
@click.option("--sites", "n_sites", type=int, default=N_SITES, show_default=True, help="Number of study sites.")
@click.option("--missing-frac", type=float, default=0.0, show_default=True, help="Fraction of missing bmi and met_min_week values to plant.")
def simulate(n, seed, out, truth_out, odds_ratios, prevalence, site_sd, activity_or_at_0, activity_or_at_10000,
             activity_optimum, n_sites, missing_frac):
    """Simulate a NAKO-like cohort with chronic back pain drawn from a known truth."""
    # lazy: `backpain-epi --help` must not import pandas, PyMC or torch
    from ..simulate import simulate_cohort

    truth = CohortTruth(
        odds_ratios=_parse_pairs(odds_ratios, "--or"),
        prevalence=prevalence,
        site_sd=site_sd,
        activity_or_at_0=activity_or_at_0,
        activity_or_at_10000=activity_or_at_10000,
        activity_optimum_met=activity_optimum,
    )
    sim = simulate_cohort(n=n, seed=seed, truth=truth, n_sites=n_sites, missing_frac=missing_frac)
    sim.write(out, truth_out)
    click.echo(f"Wrote {len(sim.data):,} participants to {out} (CBP prevalence {sim.truth['prevalence']:.1%}).")
    if truth_out:
        click.echo(f"Wrote the truth to {truth_out}.")


@main.command()
@click.argument("table_path", metavar="TABLE", type=click.Path(path_type=Path))
@click.option("--table", "table", default="cohort", show_default=True, help="Which table of the dictionary: cohort, exposures or manifest.")
@_DICTIONARY
@_text_table
@click.option("--report-out", type=click.Path(path_type=Path), default=None, help="Also write the problems as CSV here.")
def validate(table_path, table, dictionary_path, sep, encoding, decimal, report_out):
    """Check TABLE (CSV, TSV or Parquet) against the data dictionary; list every problem.

    Exit status 0 when the table passes (warnings allowed), 2 when it has errors.
    """
    # lazy: `backpain-epi --help` must not import pandas, PyMC or torch
    from ..dictionary import load_dictionary
    from ..tableio import check_output_path, read_table, write_table
    from ..validation import validate_table

    if report_out:
        check_output_path(report_out)
    dd = load_dictionary(dictionary_path)
    report = validate_table(read_table(table_path, sep=sep, encoding=encoding, decimal=decimal), table, dd, source=str(table_path))
    click.echo(report.format())
    if report_out:
        write_table(report.to_frame(), report_out)
        click.echo(f"Wrote {len(report.problems)} problem(s) to {report_out}.")
    if not report.ok:
        sys.exit(2)


@main.command()
@click.option("--cohort", "cohort_path", type=click.Path(path_type=Path), required=True, help="Questionnaire/cohort table without the exposures.")
@click.option("--exposures", "exposures_path", type=click.Path(path_type=Path), required=True,
              help="exposures.csv of `backpain-epi segment` (or a table with the same columns).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Analysis table to write (.csv or .parquet), validated.")
@_DICTIONARY
@_text_table
def merge(cohort_path, exposures_path, out, dictionary_path, sep, encoding, decimal):
    """Add the segmentation's exposures to a cohort table on participant_id, validate, and write the analysis table.

    Cohort participants without exposures keep missing values (the models exclude
    them and the report counts them); segmented participants not in the cohort are
    listed and left out. Exit status 2 when the merged table fails validation.
    """
    # lazy: `backpain-epi --help` must not import pandas, PyMC or torch
    from ..cohort import merge_exposures
    from ..dictionary import load_dictionary
    from ..tableio import check_output_path, read_table, write_table
    from ..validation import validate_table

    check_output_path(out)
    dd = load_dictionary(dictionary_path)
    merged = merge_exposures(read_table(cohort_path, sep=sep, encoding=encoding, decimal=decimal), read_table(exposures_path), dd)
    click.echo(merged.format())
    report = validate_table(merged.table, "cohort", dd, source=str(out))
    click.echo(report.format())
    if not report.ok:
        sys.exit(2)
    write_table(merged.table, out)
    click.echo(f"Wrote {len(merged.table):,} participants to {out}.")


@main.command()
@click.argument("table_path", metavar="TABLE", type=click.Path(path_type=Path))
@_DICTIONARY
@_text_table
def describe(table_path, dictionary_path, sep, encoding, decimal):
    """Summarise a cohort TABLE overall and by CBP status (after validating it)."""

    # lazy: `backpain-epi --help` must not import pandas, PyMC or torch
    from ..cohort import load_cohort
    from ..dictionary import load_dictionary
    from ..table1 import describe_cohort

    dd = load_dictionary(dictionary_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)  # the report's headline is printed below
        df, report = load_cohort(table_path, dd, sep=sep, encoding=encoding, decimal=decimal)
    click.echo(report.format())
    with _wide_pandas():
        click.echo(describe_cohort(df, dd).to_string(index=False))


@main.command()
@click.option("--table", default=None, help="Only the columns of this table (cohort, exposures, manifest).")
@_DICTIONARY
def dictionary(table, dictionary_path):
    """List the columns of the data dictionary: name, label, unit, type, allowed values, role, source, tables."""
    # lazy: `backpain-epi --help` must not import pandas, PyMC or torch
    import pandas as pd

    # lazy: `backpain-epi --help` must not import pandas, PyMC or torch
    from ..dictionary import load_dictionary

    dd = load_dictionary(dictionary_path)
    rows = [
        {"name": c.name, "label": c.label, "unit": c.unit or "", "type": c.type, "allowed": _allowed(c),
         "role": c.role, "source": c.source, "tables": ", ".join(f"{t}{'' if p == 'required' else '?'}" for t, p in c.tables.items())}
        for c in (dd[name] for name in dd.names(table=table))
    ]
    with _wide_pandas():
        click.echo(pd.DataFrame(rows).to_string(index=False))
    click.echo("(table? = optional in that table)")


def _allowed(c) -> str:
    if c.levels:
        return " / ".join(c.levels)
    if c.type == "binary":
        return "0 / 1"
    if c.min is not None or c.max is not None:
        return f"{'' if c.min is None else f'{c.min:g}'}–{'' if c.max is None else f'{c.max:g}'}"
    return ""


for _command in (*_MODELLING_COMMANDS, *_SEGMENTATION_COMMANDS, *_REPORTING_COMMANDS, *_PIPELINE_COMMANDS):
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    main()
