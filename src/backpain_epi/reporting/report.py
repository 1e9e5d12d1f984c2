"""Build the publication report from fitted runs: ``backpain-epi report`` in Python.

:func:`build_report` takes fits (run folders or :class:`~backpain_epi.modelling.fit.FitResult`
objects; no refitting), checks they were fit on the given cohort table, builds the
sections of :data:`~backpain_epi.reporting.sections.SECTIONS` in order and writes a report folder::

    <out>/index.html            self-contained: figures embedded, no external references
    <out>/tables/<name>.csv|.md|.tex   (+ <name>_numeric.csv with unrounded numbers)
    <out>/figures/<name>.png|.svg      PNG at 300 dpi, SVG with editable text
    <out>/survival/             the Cox and Kaplan–Meier sensitivity analysis
    <out>/text/methods.md, results.md  paragraphs to paste and edit
    <out>/report.json           what the report was built from (runs, data hash, versions)
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape
from PIL import Image
from tqdm.auto import tqdm

from ..dictionary import DataDictionary, load_dictionary
from ..modelling.crossval import CVResult
from ..modelling.spec import ModelSpec
from ..records import REPORT_PACKAGES, VERSION, package_versions, table_hash
from ..tableio import check_output_dir, write_text
from .context import ReportContext, ReportOptions
from .sections import SECTIONS, SectionOutput
from .style import DPI, save_figure
from .tables import write_formats


@dataclass
class Report:
    """What :func:`build_report` wrote: the folder, its index page, tables and figures by name, and notes."""

    out: Path
    index: Path
    tables: dict[str, dict[str, Path]] = field(default_factory=dict)
    figures: dict[str, dict[str, Path]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    failed_gates: list[str] = field(default_factory=list)
    headline: pd.DataFrame | None = None


@dataclass
class SectionPage:
    """What the page shows of a section: whether it has one, its tables and figures for the template, and its values."""

    shown: bool
    values: dict
    title: str = ""
    lead: list[str] = field(default_factory=list)
    tables: dict[str, dict] = field(default_factory=dict)
    figures: dict[str, dict] = field(default_factory=dict)


def build_report(
    runs: list,
    data: str | os.PathLike | pd.DataFrame,
    *,
    out: str | os.PathLike,
    segmentation: str | os.PathLike | None = None,
    title: str = ReportOptions.title,
    table1_columns: list[str] | None = None,
    survival: bool = True,
    km_exposure: str | None = None,
    survival_spec: ModelSpec | str | os.PathLike | None = None,
    truth: str | os.PathLike | dict | None = None,
    planted: str | os.PathLike | pd.DataFrame | None = None,
    crossval: CVResult | str | os.PathLike | None = None,
    dictionary: DataDictionary | None = None,
    progress: bool = True,
    exclude_invalid_rows: bool = False,
    sep: str | None = None,
    encoding: str = "utf-8",
    decimal: str = ".",
) -> Report:
    """Write the report of ``runs`` on cohort table ``data`` to folder ``out``.

    Parameters
    ----------
    runs
        One or more fits, all on ``data`` (checked by content hash): run folders from
        ``fit`` or :class:`~backpain_epi.modelling.fit.FitResult` objects, alike. The
        first is the primary model: Table 1 describes its analysed participants.
    data
        The cohort table the runs were fit on (path or DataFrame).
    out
        Report folder to write (created; files in it are replaced).
    segmentation
        Output folder of ``backpain-epi segment``: adds the segmentation QC section
        (counts, flags and overlays of label contours on water images).
    title
        Title of the report.
    table1_columns
        Characteristics in Table 1 (dictionary names); default: every column the models use.
    survival
        Run the Cox / Kaplan–Meier sensitivity analysis (needs ``cbp_onset_age``).
    km_exposure
        Exposure whose tertiles split the Kaplan–Meier curves; default: the dictionary's ``survival_exposure``.
    survival_spec
        Spec (or its path) whose terms the Cox model takes; default: the survival module's default spec.
    truth
        Optional ``truth.json`` of a simulated cohort: the true odds ratios are shown beside the estimates.
    planted
        Optional table (path or DataFrame) of the exposures planted in phantom scans
        (``participant_id`` and exposure columns): adds their agreement with the measured
        exposures of ``data`` (ICC, limits of agreement, scatter).
    crossval
        Optional leave-one-site-out cross-validation of the runs: a
        :class:`~backpain_epi.modelling.crossval.CVResult`, or the table (or folder) that
        ``backpain-epi compare --cv site --out`` writes. Adds its section: elpd by site and in
        total, and whether the PSIS-LOO ranking holds.
    exclude_invalid_rows
        Leave out rows with errors in single rows of the columns each analysis uses, counted
        per rule in the participant flow; give it when the runs were fit with it. Without it
        such errors refuse the table. Errors in columns the report does not use are warnings.
    sep, encoding, decimal
        How a text file ``data`` is read (:func:`~backpain_epi.tableio.read_table`).

    Raises
    ------
    ReportInputError, InputFileError
        A run folder is missing or incomplete, a run was fit on other data, a column is
        unknown, or the segmentation folder lacks its files.
    """
    dd = dictionary or load_dictionary()
    out = check_output_dir(out)
    options = ReportOptions(title=title, table1_columns=table1_columns, survival=survival, km_exposure=km_exposure,
                            survival_spec=survival_spec, exclude_invalid_rows=exclude_invalid_rows)
    ctx = ReportContext.load(runs, data, dd, options=options, segmentation=segmentation, truth=truth, planted=planted,
                             crossval=crossval, sep=sep, encoding=encoding, decimal=decimal)
    report = Report(out=out, index=out / "index.html")
    pages = {}
    bar = tqdm(SECTIONS, desc="report", unit="section", disable=not progress)
    for section in bar:
        bar.set_postfix_str(section.__name__.replace("_", " "))
        ctx.built[section.__name__] = built = section(ctx)
        pages[section.__name__] = write_section(built, report)
    report.failed_gates = ctx.built["diagnostics"].values["failed"]
    report.headline = ctx.built["odds_ratios"].tables["table2"].df
    sha256 = table_hash(ctx.table)
    page = {"title": title, "runs": ctx.runs, "source": ctx.source, "n_rows": len(ctx.table), "sections": pages, "out": out,
            "notes": report.notes, "failed_gates": report.failed_gates, "versions": package_versions(REPORT_PACKAGES),
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "data_sha256": sha256}
    write_text(render_html(page), report.index)
    write_text(json.dumps(_manifest(report, ctx, sha256), indent=2, default=str) + "\n", out / "report.json")
    return report


def write_section(section: SectionOutput, report: Report) -> SectionPage:
    """Write a section's tables, figures, texts and results under ``report.out``; return what the page shows of it.

    The page gets, per table, its caption, HTML and files; per figure, its caption,
    embedded PNG and files; and the section's values. Paths are recorded in ``report``.
    """
    page = SectionPage(shown=section.shown, values=section.values, title=section.title, lead=section.lead)
    for key, t in section.tables.items():
        files = report.tables[t.name] = write_formats(t.df, report.out / "tables", t.name, caption=t.caption, numeric=t.numeric)
        page.tables[key] = {"name": t.name, "caption": t.caption, "html": _html_table(t.df), "files": files}
    for folder, result in section.saves.items():
        result.save(report.out / folder)
    for key, f in section.figures.items():
        files = report.figures[f.name] = save_figure(f.figure, report.out / f.folder, f.name)
        page.figures[key] = _figure_item(f.name, f.caption, files)
    for path, text in section.texts.items():
        write_text(text, report.out / path)
    report.notes += section.notes
    return page


# --------------------------------------------------------------------------- HTML


def render_html(page: dict) -> str:
    """Render the report page from its content with the package's jinja2 template (autoescaped)."""
    env = Environment(loader=PackageLoader("backpain_epi.reporting", "templates"), autoescape=select_autoescape(["html", "j2"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["relpath"] = lambda p: Path(p).relative_to(page["out"]).as_posix() if "out" in page else Path(p).name
    return env.get_template("report.html.j2").render(**page)


def _html_table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, border=0, classes="tbl", escape=True, na_rep="")


def _figure_item(name: str, caption: str, files: dict[str, Path]) -> dict:
    """A figure for the page: embedded PNG shown at 1.5 times its print size (so a one-column figure stays one column wide)."""
    with Image.open(files["png"]) as im:
        width_px = im.size[0]
    return {"name": name, "caption": caption, "png": _data_uri(files["png"]), "files": files,
            "width": round(width_px / DPI * 96 * 1.5)}


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _manifest(report: Report, ctx: ReportContext, sha256: str) -> dict:
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "backpain_epi": VERSION,
        "data": {"source": ctx.source, "sha256": sha256},
        "runs": [{"name": r.name, "path": str(r.path) if r.path is not None else None,
                  "gate_passed": r.provenance.diagnostics.passed} for r in ctx.runs],
        "segmentation": str(ctx.segmentation.folder) if ctx.segmentation is not None else None,
        "tables": {k: {f: str(p.relative_to(report.out)) for f, p in v.items()} for k, v in report.tables.items()},
        "figures": {k: {f: str(p.relative_to(report.out)) for f, p in v.items()} for k, v in report.figures.items()},
        "notes": report.notes,
        "failed_gates": report.failed_gates,
    }
