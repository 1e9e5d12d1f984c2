"""Exception and warning classes of backpain-epi.

Every error a user can cause (a bad file, a bad column, a bad option) is a
:class:`BackpainEpiError`; its message names the file, column or parameter and
says how to fix it. An error about a parameter carries its Python name
(``param="batch_size"``) and reads ``batch_size 0: must be at least 1.``; the
command line prints the same message with the flag of that parameter
(``--batch-size 0: must be at least 1.``), then exits with status 2 and no
traceback (one line; a refused table also lists its problems).
"""

from __future__ import annotations

import difflib


class BackpainEpiError(Exception):
    """Base class of all errors raised for bad input or bad settings.

    Parameters
    ----------
    message
        What is wrong and how to fix it; for a parameter, without its name
        (``"0: must be at least 1."``, or ``": unknown engine 'x'; ..."``).
    param
        The Python name of the parameter at fault, put before the message; the
        command line puts its flag there instead.
    """

    def __init__(self, message: str = "", *, param: str | None = None):
        super().__init__(message)
        self.param = param

    @property
    def message(self) -> str:
        """The message without the parameter's name."""
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return self.with_name(self.param) if self.param else self.message

    def with_name(self, name: str) -> str:
        """The message with ``name`` (a command-line flag) in place of the parameter's Python name."""
        message = self.message
        return f"{name}{message}" if message.startswith(":") else f"{name} {message}"


class InputFileError(BackpainEpiError):
    """A file is missing, unreadable, not in the expected format, or cannot be written."""


class DictionaryError(BackpainEpiError, KeyError):
    """The data dictionary is malformed, or a column is not defined in it."""

    __str__ = BackpainEpiError.__str__  # KeyError would quote the message


class DataValidationError(BackpainEpiError):
    """A table breaks the data dictionary; ``report`` lists every problem.

    The message is the report: its headline, then one line per problem, then
    ``hint`` (how to get past it), if any.
    """

    def __init__(self, report, hint: str | None = None):
        self.report = report
        super().__init__(report.format() + (f"\n{hint}" if hint else ""))


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
