"""Reading tables: every bad file gives one clear line naming the file and the fix."""

from __future__ import annotations

import gzip

import pandas as pd
import pytest

from backpain_epi import InputFileError, read_table, write_table


def test_csv_is_read_as_text(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("participant_id,age\n007,45\n008,\n009,NA\n", encoding="utf-8")
    df = read_table(path)
    assert df["participant_id"].tolist() == ["007", "008", "009"]  # leading zeros kept: nothing inferred
    assert df["age"].iloc[0] == "45" and pd.isna(df["age"].iloc[1])
    assert df["age"].iloc[2] == "NA"  # markers are the dictionary's business, not the reader's


def test_trailing_delimiter_does_not_shift_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("participant_id,site,age\nP1,s1,40,\nP2,s2,50,\n", encoding="utf-8")
    df = read_table(path)
    assert df.to_dict("list") == {"participant_id": ["P1", "P2"], "site": ["s1", "s2"], "age": ["40", "50"]}


def test_utf16_with_its_encoding(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes("a,b\n1,Münster\n".encode("utf-16"))
    with pytest.raises(InputFileError, match="is UTF-16 text; give its encoding"):
        read_table(path)
    assert read_table(path, encoding="utf-16")["b"].iloc[0] == "Münster"


def test_delimiter_must_be_one_character(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    for sep in ("", "ab"):
        with pytest.raises(InputFileError, match="delimiter must be one character"):
            read_table(path, sep=sep)


def test_parquet_round_trip_keeps_types(tmp_path):
    df = pd.DataFrame({"participant_id": ["a", "b"], "age": [40.5, 50.0], "cbp": [0, 1]})
    path = write_table(df, tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(read_table(path), df)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temporary file


def test_tsv_bom_and_explicit_options(tmp_path):
    tsv = tmp_path / "t.tsv"
    tsv.write_text("a\tb\n1\t2\n", encoding="utf-8")
    assert read_table(tsv).columns.tolist() == ["a", "b"]
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffa,b\n1,2\n".encode("utf-8"))
    assert read_table(bom).columns.tolist() == ["a", "b"]
    semi = tmp_path / "semi.csv"
    semi.write_text("a;b\n1;2\n", encoding="utf-8")
    assert read_table(semi, sep=";").columns.tolist() == ["a", "b"]
    latin = tmp_path / "latin.csv"
    latin.write_bytes("site,n\nMünster,1\n".encode("latin-1"))
    assert read_table(latin, encoding="latin-1")["site"].iloc[0] == "Münster"


def _bad_files(tmp_path):
    files = {}
    files["missing"] = (tmp_path / "absent.csv", "no such file")
    (tmp_path / "folder").mkdir()
    files["directory"] = (tmp_path / "folder", "is a directory")
    (tmp_path / "empty.csv").write_bytes(b"")
    files["empty"] = (tmp_path / "empty.csv", "the file is empty")
    (tmp_path / "blank.csv").write_text("\n\n  \n", encoding="utf-8")
    files["blank"] = (tmp_path / "blank.csv", "the file is empty")
    (tmp_path / "header.csv").write_text("participant_id,age\n", encoding="utf-8")
    files["header only"] = (tmp_path / "header.csv", "has a header but no data rows")
    (tmp_path / "semi.csv").write_text("participant_id;age;sex\nP1;45;male\n", encoding="utf-8")
    files["wrong delimiter"] = (tmp_path / "semi.csv", "looks semicolon-separated")
    (tmp_path / "book.xlsx").write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    files["excel"] = (tmp_path / "book.xlsx", "looks like an Excel workbook")
    (tmp_path / "book.csv").write_bytes(b"\xd0\xcf\x11\xe0" + b"\x00" * 100)
    files["old excel named csv"] = (tmp_path / "book.csv", "looks like an Excel workbook")
    (tmp_path / "blob.csv").write_bytes(bytes(range(256)) * 4)
    files["binary"] = (tmp_path / "blob.csv", "binary file")
    (tmp_path / "latin.csv").write_bytes("site,n\nMünster,1\n".encode("latin-1"))
    files["not utf-8"] = (tmp_path / "latin.csv", "not valid utf-8 text (byte 0xfc on line 2)")
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(b"a,b\n1,2\n"))
    files["gzip"] = (tmp_path / "t.csv.gz", "gzip-compressed")
    (tmp_path / "cohort.dta").write_bytes(b"<stata_dta><header>" + b"\x00" * 20)
    files["stata"] = (tmp_path / "cohort.dta", "is a Stata file")
    (tmp_path / "dup.csv").write_text("participant_id,age,age\nP1,40,999\n", encoding="utf-8")
    files["duplicate column"] = (tmp_path / "dup.csv", "'age' appear more than once")
    (tmp_path / "long.csv").write_text("participant_id,site\nP1,s1\nP2,Berlin,Mitte\n", encoding="utf-8")
    files["unquoted delimiter"] = (tmp_path / "long.csv", "line 3 has more fields than the header")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    files["corrupt parquet"] = (tmp_path / "bad.parquet", "not a readable Parquet file")
    return files


@pytest.mark.parametrize(
    "case",
    ["missing", "directory", "empty", "blank", "header only", "wrong delimiter", "excel",
     "old excel named csv", "binary", "not utf-8", "gzip", "stata", "duplicate column", "unquoted delimiter",
     "corrupt parquet"],
)
def test_bad_file_gives_one_clear_line(tmp_path, case):
    path, expected = _bad_files(tmp_path)[case]
    with pytest.raises(InputFileError) as info:
        read_table(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert expected in message
    assert "\n" not in message


def test_write_errors_are_clear(tmp_path):
    df = pd.DataFrame({"a": [1]})
    with pytest.raises(InputFileError, match="cannot write a table with suffix '.xlsx'"):
        write_table(df, tmp_path / "t.xlsx")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputFileError, match="cannot be written"):
        write_table(df, blocker / "t.csv")  # parent is a file
    assert write_table(df, tmp_path / "new" / "t.tsv").read_text() == "a\n1\n"


# --- decimal commas (issue 16, item 4) ---------------------------------------------------------------------

SEMICOLON_DECIMAL_COMMA = "participant_id;age;bmi\nP1;52,5;24,1\nP2;60;31,25\nP3;-0,5;NA\n"


def test_decimal_commas_are_read_with_the_decimal_option(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(SEMICOLON_DECIMAL_COMMA, encoding="utf-8")
    df = read_table(path, sep=";", decimal=",")
    assert df["age"].tolist() == ["52.5", "60", "-0.5"] and df["bmi"].tolist()[:2] == ["24.1", "31.25"]
    assert df["participant_id"].tolist() == ["P1", "P2", "P3"] and df["bmi"].iloc[2] == "NA"


def test_semicolon_export_with_decimal_commas_is_recognised(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(SEMICOLON_DECIMAL_COMMA, encoding="utf-8")
    with pytest.raises(InputFileError, match=r"semicolon-separated with decimal commas.*sep=';' decimal=','") as exc:
        read_table(path)
    assert "quote values" not in str(exc.value)
    plain = tmp_path / "plain.csv"
    plain.write_text("participant_id;age\nP1;52.5\n", encoding="utf-8")
    with pytest.raises(InputFileError, match=r"\(sep=';'\)"):
        read_table(plain)


def test_decimal_comma_needs_another_delimiter(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(InputFileError, match="sep=';'") as exc:
        read_table(path, decimal=",")
    assert exc.value.param == "decimal"
