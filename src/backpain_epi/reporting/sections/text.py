"""The methods and results paragraphs, from the runs and what the earlier sections computed."""

from __future__ import annotations

from ..context import ReportContext
from ..text import methods_paragraph, results_paragraph
from .base import SectionOutput


def text(ctx: ReportContext) -> SectionOutput:
    """Both paragraphs, shown on the page and written as ``text/methods.md`` and ``text/results.md``.

    Reads the flow (``participants``), the comparison (``comparison``) and the survival result (``survival``).
    """
    flow = ctx.built["participants"].values["flow"]
    comparison = ctx.built["comparison"].values.get("comparison")
    survival = ctx.built["survival"].values.get("result")
    methods = methods_paragraph(ctx.runs, flow, comparison, survival, ctx.dictionary, segmentation=ctx.segmentation is not None)
    results = results_paragraph(ctx.runs, flow, comparison, survival, ctx.dictionary)
    return SectionOutput(values={"methods": methods, "results": results},
                         texts={"text/methods.md": methods + "\n", "text/results.md": results + "\n"})
