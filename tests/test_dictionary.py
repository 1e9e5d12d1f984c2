"""The data dictionary: complete, well-formed, and strict about bad entries."""

from __future__ import annotations

import re

import pytest
import yaml

from backpain_epi import DictionaryError, InputFileError, load_dictionary
from backpain_epi.dictionary import ROLES, SOURCES, TYPES

# The columns that ../shared/DESIGN.md's file contracts name, by table.
DESIGN_COHORT = [
    "participant_id", "site", "age", "sex", "bmi", "met_min_week", "diabetes", "dyslipidemia",
    "osteoporosis", "osteoarthritis", "cbp", "cbp_onset_age", "lmm_ml", "intermat_ml", "imf_pct",
]
DESIGN_EXPOSURES = ["participant_id", "lmm_ml", "intermat_ml", "imf_pct", "autochthon_ml", "psoas_ml"]
DESIGN_MANIFEST = ["participant_id", "water", "fat"]
DESIGN_FAILURES = ["participant_id", "reason"]


def test_every_design_column_is_defined_in_its_table(dictionary):
    for table, names in (("cohort", DESIGN_COHORT), ("exposures", DESIGN_EXPOSURES), ("manifest", DESIGN_MANIFEST),
                          ("failures", DESIGN_FAILURES)):
        defined = dictionary.names(table=table)
        missing = [n for n in names if n not in defined]
        assert not missing, f"{table}: {missing}"


def test_design_units_and_ranges(dictionary):
    assert (dictionary["age"].min, dictionary["age"].max, dictionary["age"].unit) == (18, 80, "years")
    assert (dictionary["bmi"].min, dictionary["bmi"].max) == (14, 60)
    assert dictionary["met_min_week"].min == 0 and dictionary["met_min_week"].unit == "MET-min/week"
    assert dictionary["sex"].levels == ("female", "male")
    for name in ("diabetes", "dyslipidemia", "osteoporosis", "osteoarthritis", "cbp"):
        assert dictionary[name].type == "binary"
    assert dictionary["cbp"].role == "outcome" and dictionary["site"].role == "group"
    assert dictionary["participant_id"].unique


def test_every_column_is_complete(dictionary):
    for c in dictionary.columns.values():
        assert c.label and c.description, c.name
        assert c.type in TYPES and c.role in ROLES and c.source in SOURCES, c.name
        assert re.fullmatch(r"[a-z][a-z0-9_]*", c.name), c.name


def test_exposures_come_from_segmentation(dictionary):
    exposures = dictionary.names(table="cohort", role="exposure")
    assert {"lmm_ml", "intermat_ml", "imf_pct"} <= set(exposures)
    assert all(dictionary[e].source == "segmentation" for e in exposures)


def test_labels_carry_units(dictionary):
    assert dictionary.label("met_min_week") == "Physical activity (MET-min/week)"
    assert dictionary.label("met_min_week", unit=False) == "Physical activity"
    assert dictionary.label("sex") == "Sex"


def test_unknown_column_suggests_the_closest(dictionary):
    with pytest.raises(DictionaryError, match="did you mean 'intermat_ml'"):
        dictionary["intermat"]
    with pytest.raises(DictionaryError, match="unknown table 'cohorts'; did you mean 'cohort'"):
        dictionary.names(table="cohorts")


def test_root_file_is_the_packaged_dictionary(dictionary):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "data_dictionary.yaml"
    assert root.resolve() == Path(dictionary.path).resolve()


def _write(tmp_path, mutate):
    raw = yaml.safe_load(load_dictionary().path.read_text(encoding="utf-8"))
    mutate(raw)
    path = tmp_path / "dd.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["columns"]["age"].pop("type"), "column 'age': missing field 'type'"),
        (lambda d: d["columns"]["age"].update(type="floot"), "unknown type 'floot'; did you mean 'float'"),
        (lambda d: d["columns"]["age"].update(tables={"cohrt": "required"}), "unknown table 'cohrt'"),
        (lambda d: d["columns"]["sex"].pop("levels"), "column 'sex': 'levels' is needed"),
        (lambda d: d["columns"]["age"].update(unti="years"), "unknown field 'unti'; did you mean 'unit'"),
        (lambda d: d["columns"]["age"].update(min="eighteen"), "'min' must be a number"),
        (lambda d: d["columns"]["age"].update(tables={"cohort": "maybe"}), "must be 'required' or 'optional'"),
        (lambda d: d.update(columns={}), "needs a 'columns:' mapping"),
        (lambda d: d["rules"].append({"name": "onset_befor_age", "description": "x", "severity": "error"}),
         "unknown rule 'onset_befor_age'; did you mean 'onset_not_after_age'"),
        (lambda d: d["rules"][0].update(severity="fatal"), "unknown severity 'fatal'"),
    ],
)
def test_malformed_dictionary_names_the_problem(tmp_path, mutate, message):
    with pytest.raises(DictionaryError, match=re.escape(message)):
        load_dictionary(_write(tmp_path, mutate))


def test_every_broken_entry_is_reported(tmp_path):
    def two_errors(d):
        d["columns"]["age"]["role"] = "covariat"
        d["columns"]["sex"]["levels"] = None
        d["columns"]["sex"].pop("levels")

    with pytest.raises(DictionaryError) as info:
        load_dictionary(_write(tmp_path, two_errors))
    lines = str(info.value).splitlines()
    assert len(lines) == 2 and "column 'age'" in lines[0] and "column 'sex'" in lines[1]


def test_dictionary_file_errors(tmp_path):
    with pytest.raises(InputFileError, match="no such dictionary file"):
        load_dictionary(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("columns: [unclosed", encoding="utf-8")
    with pytest.raises(InputFileError, match="not a readable YAML file"):
        load_dictionary(bad)


def test_a_custom_dictionary_changes_validation(tmp_path, small_raw):
    """Ranges come from the dictionary, not from code."""
    from backpain_epi import validate_table

    path = _write(tmp_path, lambda d: d["columns"]["age"].update(max=40))
    report = validate_table(small_raw, dictionary=load_dictionary(path))
    assert [p.rule for p in report.errors] == ["range"]
    assert "18–40 years" in report.errors[0].message
