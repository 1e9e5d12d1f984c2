"""Publication reports: tables, figures and the self-contained HTML report built from fitted runs.

>>> from backpain_epi.reporting import build_report   # doctest: +SKIP
>>> build_report([paper, full], "cohort.csv", out="report/")

- :mod:`.stats`: the statistics (DataFrames; nothing drawn or formatted);
- :mod:`.plots`: the plots (``ax=None``; they return their axes);
- :mod:`.tables`: numbers as display text, and the CSV / Markdown / LaTeX writer;
- :mod:`.sections`: the report as a list of sections of one :class:`~.context.ReportContext`;
- :mod:`.report`: :func:`build_report`, which builds the sections and writes them.

Names load on first use.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submodules=["plots", "sections", "stats", "tables"], submod_attrs={
    "report": ["Report", "build_report"],
    "runs": ["ReportInputError"],
})
