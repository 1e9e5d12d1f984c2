"""Reading and writing tables (CSV, TSV, Parquet) with errors a user can act on.

Text files are read with every column as text (``dtype=str``) and only empty
cells as missing, so that nothing is inferred or coerced here: turning text into
numbers, and markers such as ``NA`` into missing values, is the job of the
validation against the data dictionary, which reports every value it changes or
rejects. Parquet files keep their stored types.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import warnings
from pathlib import Path

import pandas as pd

from .errors import InputFileError

_PARQUET_MAGIC = b"PAR1"
_ZIP_MAGIC = b"PK\x03\x04"  # .xlsx, .docx, .zip
_OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # legacy .xls, .doc
_GZIP_MAGIC = b"\x1f\x8b"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_SEP_ALIASES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";"}  # names usable on a command line
_TEXT_SUFFIXES = {".csv": ",", ".txt": ",", ".tsv": "\t", ".tab": "\t"}
_PARQUET_SUFFIXES = {".parquet", ".pq"}
_DECIMAL_COMMA = re.compile(r"\s*[-+]?\d*,\d+(?:[eE][-+]?\d+)?\s*")  # 1,5  -0,25  ,5  1,5e-3
_OTHER_FORMATS = {  # suffixes of formats epidemiologists often hold, and what they are
    ".xlsx": "an Excel workbook", ".xls": "an Excel workbook", ".ods": "a spreadsheet",
    ".sav": "an SPSS file", ".dta": "a Stata file", ".sas7bdat": "a SAS file", ".rds": "an R data file",
    ".json": "a JSON file", ".feather": "a Feather file",
}


def read_table(path: str | os.PathLike, *, sep: str | None = None, encoding: str = "utf-8", decimal: str = ".") -> pd.DataFrame:
    """Read a CSV, TSV or Parquet table.

    Parameters
    ----------
    path
        File to read. ``.parquet``/``.pq`` is read as Parquet, ``.tsv``/``.tab``
        as tab-separated text, anything else as comma-separated text, unless the
        file's first bytes say it is Parquet.
    sep
        Field delimiter of a text file; by default ``","`` (``"\\t"`` for
        ``.tsv``). ``"tab"``, ``"semicolon"`` and ``"comma"`` name them.
    encoding
        Text encoding of a text file (for example ``"latin-1"``).
    decimal
        Decimal mark of numbers in a text file: ``"."`` or ``","`` (German and
        French exports: ``1,5``; then the delimiter must be another character,
        usually ``";"``). Values written with a decimal comma are given a
        decimal point; nothing else changes.

    Returns
    -------
    pandas.DataFrame
        Text files: every column as text, empty cells as NaN, everything else
        (``NA`` included) as written. Parquet: as stored.

    Raises
    ------
    InputFileError
        The file is missing, a directory, empty, binary, a spreadsheet or
        another format, not in ``encoding``, split on another delimiter, has a
        column name twice, or has no data rows. The message names the file and
        the fix.
    """
    path = Path(path)
    sep = _SEP_ALIASES.get(sep, sep)
    if sep is not None and len(sep) != 1:
        raise InputFileError(f"{path}: the delimiter must be one character, got {sep!r}.")
    if decimal not in (".", ","):
        raise InputFileError(f"{decimal!r}: the decimal mark must be '.' or ','.", param="decimal")
    head = _check_readable(path)
    if path.suffix.lower() in _PARQUET_SUFFIXES or head.startswith(_PARQUET_MAGIC):
        df = _read_parquet(path)
    else:
        _refuse_other_formats(path, head, encoding)
        sep = sep or _TEXT_SUFFIXES.get(path.suffix.lower(), ",")
        if decimal == sep:
            raise InputFileError(f"',': {path} cannot have decimal commas and comma delimiters; give its delimiter "
                                 "(sep=';').", param="decimal")
        df = _read_text(path, sep=sep, encoding=encoding)
        if decimal == ",":
            df = df.apply(_decimal_points)
    _refuse_duplicate_names(path, list(df.columns))
    return df


def _decimal_points(s: pd.Series) -> pd.Series:
    """Text values written with a decimal comma (``1,5``), with a decimal point; other values unchanged."""
    comma = s.str.fullmatch(_DECIMAL_COMMA, na=False).astype(bool)
    return s.where(~comma, s.str.replace(",", ".", regex=False)) if comma.any() else s


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``df`` as Parquet (``.parquet``/``.pq``), TSV (``.tsv``/``.tab``) or CSV.

    The file is written to a temporary name beside ``path`` and renamed, so an
    interrupted write never leaves a half file. Parent folders are created.
    """
    path = Path(path)
    check_output_path(path)
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix in _PARQUET_SUFFIXES:
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False, sep=_TEXT_SUFFIXES[suffix])
    return path


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`write_table`)."""
    path = Path(path)
    check_output_path(path, table=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    On failure the temporary file is removed and an :class:`InputFileError`
    naming ``path`` is raised for operating-system errors.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise InputFileError(f"{path}: cannot be written ({exc.strerror or exc}).") from None
        raise


def check_output_path(path: str | os.PathLike, *, table: bool = True) -> None:
    """Raise :class:`InputFileError` unless ``path`` can be written as an output file.

    It must not be a directory, no folder on its way may be a file, and a
    table (``table=True``) must end in .csv, .tsv or .parquet.
    """
    path = Path(path)
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory; give a file name.")
    _check_parents(path)
    suffix = path.suffix.lower()
    if table and suffix not in _PARQUET_SUFFIXES and suffix not in _TEXT_SUFFIXES:
        raise InputFileError(f"{path}: cannot write a table with suffix {suffix or '(none)'!r}; use .csv, .tsv or .parquet.")


def check_output_dir(path: str | os.PathLike) -> Path:
    """Raise :class:`InputFileError` unless ``path`` can be an output folder (it is not a file, nor is a folder on its way)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputFileError(f"{path}: is a file; give a folder.")
    _check_parents(path)
    return path


def _check_parents(path: Path) -> None:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputFileError(f"{path}: cannot be written: {parent} is a file, not a folder.")
            break


def _check_readable(path: Path) -> bytes:
    if not path.exists():
        raise InputFileError(f"{path}: no such file.")
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory; give the path of a CSV or Parquet file.")
    try:
        with path.open("rb") as fh:
            head = fh.read(8192)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot be read ({exc.strerror}).") from None
    if not head:
        raise InputFileError(f"{path}: the file is empty.")
    return head


def _refuse_other_formats(path: Path, head: bytes, encoding: str) -> None:
    if head.startswith(_ZIP_MAGIC) or head.startswith(_OLE_MAGIC):
        raise InputFileError(
            f"{path}: looks like an Excel workbook, not a CSV file; export the sheet as CSV "
            "(File > Save As > CSV UTF-8) or as Parquet."
        )
    if path.suffix.lower() in _OTHER_FORMATS:
        raise InputFileError(
            f"{path}: is {_OTHER_FORMATS[path.suffix.lower()]}, not a CSV file; export it as CSV or Parquet "
            "(for example with pandas: pd.read_stata / pd.read_spss, then .to_parquet)."
        )
    wide = encoding.lower().replace("-", "").replace("_", "").startswith(("utf16", "utf32"))
    if head.startswith(_UTF16_BOMS) and not wide:
        raise InputFileError(f"{path}: is UTF-16 text; give its encoding (encoding=utf-16) or re-save it as UTF-8.")
    if head.startswith(_GZIP_MAGIC):
        raise InputFileError(f"{path}: is gzip-compressed; decompress it (gunzip) and pass the CSV file.")
    if b"\x00" in head and not wide:
        raise InputFileError(f"{path}: is a binary file, not CSV text or Parquet.")


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
        raise InputFileError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc}).") from None
    return _require_rows(df, path)


def _read_text(path: Path, *, sep: str, encoding: str) -> pd.DataFrame:
    try:
        text = path.read_bytes().decode(encoding)
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise InputFileError(
            f"{path}: not valid {encoding} text (byte 0x{exc.object[exc.start]:02x} on line {line}); "
            "re-save it as UTF-8, or give its encoding (encoding=latin-1)."
        ) from None
    except LookupError:
        raise InputFileError(f"{path}: unknown text encoding {encoding!r}.") from None
    if not text.strip():
        raise InputFileError(f"{path}: the file is empty.")
    _refuse_duplicate_names(path, next(csv.reader(io.StringIO(text), delimiter=sep)))  # pandas would rename them
    _check_delimiter(path, sep, text)
    try:
        with warnings.catch_warnings():
            # pandas only warns (and drops the data) when a row has more fields than the header
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_values=[""],
                             index_col=False, engine="c")
    except (pd.errors.ParserWarning, pd.errors.ParserError) as exc:
        line = _first_long_line(text, sep)
        if line:
            raise InputFileError(
                f"{path}: line {line} has more fields than the header; quote values that contain '{sep}'."
            ) from None
        detail = " ".join(str(exc).split())
        raise InputFileError(f"{path}: cannot be parsed as {_sep_name(sep)}-separated text ({detail}).") from None
    return _require_rows(df, path)


def _first_long_line(text: str, sep: str) -> int:
    rows = csv.reader(io.StringIO(text), delimiter=sep)
    width = len(next(rows))
    for row in rows:
        if len(row) > width and any(field.strip() for field in row[width:]):
            return rows.line_num
    return 0


def _refuse_duplicate_names(path: Path, names: list) -> None:
    seen, duplicated = set(), []
    for name in names:
        if name in seen and name not in duplicated:
            duplicated.append(name)
        seen.add(name)
    if duplicated:
        raise InputFileError(
            f"{path}: column name(s) {', '.join(map(repr, duplicated))} appear more than once in the header; "
            "rename or drop the copies."
        )


def _check_delimiter(path: Path, sep: str, text: str) -> None:
    """Refuse a file whose header is one column on ``sep`` but several on another delimiter, naming both the
    delimiter and, when the values have decimal commas, the decimal mark to give."""
    lines = text.splitlines()
    header = lines[0]
    if len(next(csv.reader([header], delimiter=sep))) != 1:
        return
    try:
        found = csv.Sniffer().sniff(header, delimiters=",;\t|").delimiter
    except csv.Error:
        return
    if found == sep:
        return
    sample = [field for row in csv.reader(lines[1:51], delimiter=found) for field in row]
    commas = found != "," and any(_DECIMAL_COMMA.fullmatch(field) for field in sample)
    fix = f"sep={_sep_option(found)} decimal=','" if commas else f"sep={_sep_option(found)}"
    raise InputFileError(
        f"{path}: the header splits into one column on {_sep_name(sep)} but into "
        f"{len(header.split(found))} on {_sep_name(found)}; the file looks {_sep_name(found)}-separated"
        f"{' with decimal commas' if commas else ''}. Re-save it with commas{' and decimal points' if commas else ''}, "
        f"or give the {'delimiter and decimal mark' if commas else 'delimiter'} ({fix})."
    )


def _require_rows(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    if df.empty:
        raise InputFileError(f"{path}: has a header but no data rows.")
    return df


def _sep_option(sep: str) -> str:
    return "tab" if sep == "\t" else f"'{sep}'"


def _sep_name(sep: str) -> str:
    return {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}.get(sep, repr(sep))
