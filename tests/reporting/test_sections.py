"""The sections and their writer: every section is on the page, one writer puts each output where the report says."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from backpain_epi.reporting.plots import plot_loo
from backpain_epi.reporting.report import Report, write_section
from backpain_epi.reporting.sections import SECTIONS, FigureItem, SectionOutput, TableItem

TEMPLATE = Path(__file__).resolve().parents[2] / "src" / "backpain_epi" / "reporting" / "templates" / "report.html.j2"


#: Sections shown by the page's generic block (they set a title), not by a place of their own in the template.
GENERIC = {"absolute_risk", "effect_modification", "dose_response", "missing_data", "crossval", "prior_sensitivity"}


def test_every_section_is_on_the_page_in_order():
    names = [s.__name__ for s in SECTIONS]
    assert names == ["participants", "exposures", "odds_ratios", "absolute_risk", "effect_modification", "activity",
                     "dose_response", "comparison", "missing_data", "crossval", "diagnostics", "predictive_check", "prior_sensitivity", "survival",
                     "segmentation_qc", "agreement", "text"]
    used = re.findall(r"sections\.(\w+)", TEMPLATE.read_text(encoding="utf-8"))
    assert set(used) - {"items"} == set(names) - GENERIC
    assert "sec.title" in TEMPLATE.read_text(encoding="utf-8")  # the generic block


class _Saved:
    def save(self, out_dir):
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "result.json").write_text("{}")


def test_write_section_writes_tables_figures_texts_and_results(tmp_path):
    comparison = pd.DataFrame({"model": ["a", "b"], "rank": [1, 2], "elpd_loo": [-10.0, -12.0], "se": [1.0, 1.0],
                               "elpd_diff": [0.0, 2.0], "dse": [0.0, 0.5]})
    section = SectionOutput(
        tables={"table": TableItem("numbers", pd.DataFrame({"Model": ["a", "b"], "ELPD": ["-10.0", "-12.0"]}), "Caption",
                                   numeric=comparison)},
        figures={"figure": FigureItem("loo", plot_loo(comparison).figure, "A figure", folder="extra")},
        notes=["a note"], values={"verdict": "a wins"}, texts={"text/verdict.md": "a wins\n"}, saves={"result": _Saved()},
    )
    report = Report(out=tmp_path, index=tmp_path / "index.html")
    page = write_section(section, report)
    assert page.shown and page.values == {"verdict": "a wins"}
    assert set(report.tables["numbers"]) == {"csv", "md", "tex", "numeric_csv"}
    assert report.tables["numbers"]["csv"] == tmp_path / "tables" / "numbers.csv"
    assert report.figures["loo"] == {"png": tmp_path / "extra" / "loo.png", "svg": tmp_path / "extra" / "loo.svg"}
    assert page.tables["table"]["caption"] == "Caption" and "<table" in page.tables["table"]["html"]
    assert page.figures["figure"]["png"].startswith("data:image/png;base64,")
    assert (tmp_path / "text" / "verdict.md").read_text() == "a wins\n" and (tmp_path / "result" / "result.json").is_file()
    assert report.notes == ["a note"]


def test_a_section_without_tables_or_figures_is_not_shown():
    assert not SectionOutput(notes=["One run only"]).shown
    assert not SectionOutput(values={"methods": "..."}).shown
