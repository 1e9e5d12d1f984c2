"""Options and helpers shared by the command-line verbs of every stage."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import BackpainEpiError

SEP = click.option("--sep", default=None, help="Field delimiter of a text table: a character, or tab / semicolon (default: comma; tab for .tsv).")
ENCODING = click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of a text table, e.g. latin-1.")
DECIMAL = click.option("--decimal", type=click.Choice([".", ","]), default=".", show_default=True,
                       help="Decimal mark of numbers in a text table: ',' for exports with decimal commas (then --sep ';').")


def refuse_unread_table_options(reads: str) -> None:
    """Refuse ``--sep``, ``--encoding`` and ``--decimal`` given on a command line that reads no text table.

    ``reads`` names the options that would bring one (``"--manifest"``); a silently
    ignored option would let a user believe a table was read their way.
    """
    ctx = click.get_current_context()
    given = [f"--{name}" for name in ("sep", "encoding", "decimal")
             if ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)]
    if given:
        them = "it" if len(given) == 1 else "them"
        raise BackpainEpiError(f"{', '.join(given)}: this command line reads no text table (only with {reads}); "
                               f"leave {them} out.")


def text_table(command):
    """``--sep``, ``--encoding`` and ``--decimal``: how a command reads a text table, in this order."""
    return SEP(ENCODING(DECIMAL(command)))


EXCLUDE_INVALID_ROWS = click.option(
    "--exclude-invalid-rows", is_flag=True,
    help="Leave out rows with errors in single rows of the columns the analysis uses (counted by rule in the participant "
         "flow) instead of refusing the table. Errors in columns it does not use are warnings either way.",
)
DICTIONARY = click.option(
    "--dictionary", "dictionary_path", type=click.Path(path_type=Path), default=None,
    help="Data dictionary YAML (default: the one shipped with the package).",
)


def parse_pairs(items, option: str) -> dict[str, float]:
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise BackpainEpiError(f"{option} {item!r}: expected TERM=NUMBER, e.g. {option} intermat_ml=1.5.") from None
    return out


def wide_pandas():
    # lazy: `backpain-epi --help` must not import pandas, PyMC or torch
    import pandas as pd

    return pd.option_context("display.width", 200, "display.max_columns", None, "display.max_rows", None)
