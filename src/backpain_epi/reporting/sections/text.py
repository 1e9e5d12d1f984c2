"""The methods and results paragraphs, from the runs and what the earlier sections computed."""

from __future__ import annotations

from ..context import ReportContext
from ..text import methods_paragraph, results_paragraph
from .base import SectionOutput

#: Keys of a section's ``values`` whose sentences the text adds, in section order, after the core paragraphs.
METHODS_TEXT, RESULTS_TEXT = "methods_text", "results_text"


def text(ctx: ReportContext) -> SectionOutput:
    """Both paragraphs, shown on the page and written as ``text/methods.md`` and ``text/results.md``.

    Reads the flow (``participants``), the comparison (``comparison``) and the survival result (``survival``);
    then appends, in section order, the ``methods_text`` and ``results_text`` sentences any section put in its values.
    """
    flow = ctx.built["participants"].values["flow"]
    comparison = ctx.built["comparison"].values.get("comparison")
    survival = ctx.built["survival"].values.get("result")
    methods = methods_paragraph(ctx.runs, flow, comparison, survival, ctx.dictionary, segmentation=ctx.segmentation is not None)
    results = results_paragraph(ctx.runs, flow, comparison, survival, ctx.dictionary)
    extra_methods = [s.values[METHODS_TEXT] for s in ctx.built.values() if s.values.get(METHODS_TEXT)]
    extra_results = [s.values[RESULTS_TEXT] for s in ctx.built.values() if s.values.get(RESULTS_TEXT)]
    methods = " ".join([methods, *extra_methods])
    results = " ".join([results, *extra_results])
    return SectionOutput(values={"methods": methods, "results": results},
                         texts={"text/methods.md": methods + "\n", "text/results.md": results + "\n"})
