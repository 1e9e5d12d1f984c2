"""Exception and warning classes of backpain-epi.

Every error a user can cause (a bad file, a bad column, a bad option) is a
:class:`BackpainEpiError`; its message names the file, column or option and
says how to fix it. The command line prints the message (one line; a refused
table also lists its problems) and exits with status 2; no traceback is shown.
"""

from __future__ import annotations

import difflib


class BackpainEpiError(Exception):
    """Base class of all errors raised for bad input or bad settings."""


class InputFileError(BackpainEpiError):
    """A file is missing, unreadable, not in the expected format, or cannot be written."""


class DictionaryError(BackpainEpiError, KeyError):
    """The data dictionary is malformed, or a column is not defined in it."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataValidationError(BackpainEpiError):
    """A table breaks the data dictionary; ``report`` lists every problem.

    The message is the report: its headline, then one line per problem.
    """

    def __init__(self, report):
        self.report = report
        super().__init__(report.format())


class BackpainEpiWarning(UserWarning):
    """Base class of the warnings of backpain-epi."""


class DataQualityWarning(BackpainEpiWarning):
    """A table passed validation, with problems worth a look (see the report)."""


def unknown_choice(kind: str, value: object, allowed) -> str:
    """``"unknown column 'agee'; did you mean 'age'?"`` (or the list of choices when nothing is close)."""
    choices = sorted(str(a) for a in allowed)
    close = difflib.get_close_matches(str(value), choices, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"choose one of: {', '.join(choices)}."
    return f"unknown {kind} {value!r}; {hint}"
