"""One figure style for the report: journal column widths, fonts, colours, and how figures are saved.

Every plot of :mod:`backpain_epi.reporting.plots` takes its data as a DataFrame and
``ax=None``: given none, it makes its own figure at a column width below and draws it
inside :func:`figure_style`; it returns its axes and never shows or saves the figure.
:func:`save_figure` writes the PNG (300 dpi) and SVG pair of ``ax.figure`` that the
report embeds and a manuscript uses.

Widths follow the common journal columns: a single column is 89 mm (3.5 in),
a double column 183 mm (7.2 in). Fonts are 7–8 pt at those widths, the size
journals ask for, so a figure reads at print size without rescaling.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the report never opens a window

import matplotlib.pyplot as plt  # noqa: E402

#: Width of one journal column and of a full page width, in inches.
SINGLE_COLUMN_IN = 3.5
DOUBLE_COLUMN_IN = 7.2
DPI = 300

#: One colour per model, in the order the runs are given (colour-blind safe: Okabe–Ito).
MODEL_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
#: CBP status colours: no CBP, CBP.
OUTCOME_COLOURS = ("#56B4E9", "#D55E00")
#: Tertile colours of the Kaplan–Meier curves, low to high exposure (Okabe–Ito: blue, orange, vermillion).
TERTILE_COLOURS = ("#0072B2", "#E69F00", "#D55E00")

RC = {
    "font.size": 7.5,
    "axes.titlesize": 8,
    "axes.labelsize": 7.5,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "lines.linewidth": 1.2,
    "svg.fonttype": "none",  # text stays text in the SVG: editable in Illustrator/Inkscape
    "figure.dpi": 100,
    "savefig.dpi": DPI,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.03,
}


@contextlib.contextmanager
def figure_style():
    """Context in which the report's figures are drawn (rcParams restored afterwards)."""
    with plt.rc_context(RC):
        yield


def model_colour(i: int) -> str:
    """Colour of the ``i``-th model (cycles after eight)."""
    return MODEL_COLOURS[i % len(MODEL_COLOURS)]


def save_figure(fig, out_dir: str | os.PathLike, stem: str) -> dict[str, Path]:
    """Write ``fig`` as ``<stem>.png`` (300 dpi) and ``<stem>.svg`` in ``out_dir``; close it; return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"png": out_dir / f"{stem}.png", "svg": out_dir / f"{stem}.svg"}
    # SVG without a date, so the same figure gives the same file
    with figure_style():  # savefig.* and svg.fonttype are read when saving, not when drawing
        fig.savefig(paths["png"], dpi=DPI, metadata={"Software": None})
        fig.savefig(paths["svg"], metadata={"Date": None})
    plt.close(fig)
    return paths


#: Contour colour and legend name of each segmentation label (1–4), distinct from a grey image.
SEGMENTATION_LABELS = {
    1: ("Autochthonous L", "#E69F00"),
    2: ("Autochthonous R", "#D55E00"),
    3: ("Psoas L", "#56B4E9"),
    4: ("Psoas R", "#009E73"),
}
#: Colour of a "QC flagged" warning in titles.
FLAG_COLOUR = "#C00000"
