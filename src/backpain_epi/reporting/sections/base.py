"""What a section of the report returns: its tables and figures with captions, its notes, and values for later sections.

A section is a function ``section(ctx) -> SectionOutput`` of a
:class:`~backpain_epi.reporting.context.ReportContext`; it computes and draws but
writes nothing. :func:`~backpain_epi.reporting.report.build_report` writes what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd
from matplotlib.figure import Figure


@dataclass
class TableItem:
    """A table of the report: written as ``tables/<name>.csv|.md|.tex`` (and ``<name>_numeric.csv`` with ``numeric``)."""

    name: str
    df: pd.DataFrame
    caption: str
    numeric: pd.DataFrame | None = None


@dataclass
class FigureItem:
    """A figure of the report: written as ``<folder>/<name>.png|.svg``."""

    name: str
    figure: Figure
    caption: str
    folder: str = "figures"


class Saves(Protocol):
    """A result that writes its own files into a folder (as :class:`~backpain_epi.modelling.survival.SurvivalResult`)."""

    def save(self, out_dir) -> dict: ...


@dataclass
class SectionOutput:
    """Everything one section contributes to the report.

    Attributes
    ----------
    tables, figures
        By the name the page refers to them with (``"flow"``, ``"forest"``).
    notes
        Shown at the top of the page and returned in :attr:`Report.notes <backpain_epi.reporting.report.Report>`.
    values
        Numbers and objects the page, later sections or the text need (``ctx.built[name].values``).
    texts
        Text files, by their path in the report folder.
    saves
        Results that write their own files, by the folder of the report they go to.
    title, lead
        A section with a ``title`` is shown by the page's generic block: the title as a heading, the
        ``lead`` paragraphs, then every table and figure in order. Sections without one have their own place in the template.
    """

    tables: dict[str, TableItem] = field(default_factory=dict)
    figures: dict[str, FigureItem] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    saves: dict[str, Saves] = field(default_factory=dict)
    title: str = ""
    lead: list[str] = field(default_factory=list)

    @property
    def shown(self) -> bool:
        """Whether the page has the section: it has a table or a figure."""
        return bool(self.tables or self.figures)
