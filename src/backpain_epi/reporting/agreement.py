"""Exposures measured by segmentation against the values planted in the images.

When the scans are phantoms made from a simulated cohort (``backpain-epi pipeline``),
each participant's lean muscle, InterMAT and fat fraction are known, so the report
can say how well the segmentation measured them: intraclass correlation for
absolute agreement (ICC(A,1), McGraw & Wong 1996; Shrout & Fleiss ICC(2,1)),
the mean difference and the Bland–Altman 95% limits of agreement, and a scatter
of measured against planted values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..dictionary import DataDictionary
from ..errors import BackpainEpiError
from .style import DOUBLE_COLUMN_IN, figure_style

PLANTED_SUFFIX = "_planted"


def icc_absolute_agreement(ratings: np.ndarray) -> float:
    """ICC(A,1): two-way model, absolute agreement, single measurement.

    Parameters
    ----------
    ratings
        ``(n subjects, k raters)`` array without missing values; here k = 2
        (planted, measured).

    Returns
    -------
    float
        ``(MSR - MSE) / (MSR + (k-1) MSE + k (MSC - MSE) / n)`` from the two-way ANOVA
        mean squares of rows (R), columns (C) and error (E). Systematic bias
        between raters lowers it, unlike a correlation.
    """
    x = np.asarray(ratings, dtype=float)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2 or not np.isfinite(x).all():
        raise BackpainEpiError("ICC needs an (n ≥ 2 subjects × k ≥ 2 raters) table of finite numbers.")
    n, k = x.shape
    grand = x.mean()
    ss_rows = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_err = ((x - grand) ** 2).sum() - ss_rows - ss_cols
    msr, msc, mse = ss_rows / (n - 1), ss_cols / (k - 1), ss_err / ((n - 1) * (k - 1))
    return float((msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n))


def paired_exposures(measured: pd.DataFrame, planted: pd.DataFrame, exposures: Sequence[str], id_col: str = "participant_id") -> pd.DataFrame:
    """Measured and planted values side by side (``<col>`` and ``<col>_planted``), for participants with both."""
    missing = [c for c in exposures if c not in measured.columns or c not in planted.columns]
    if missing:
        raise BackpainEpiError(f"agreement: exposure column(s) {', '.join(missing)} missing from the measured or the planted table.")
    m = measured[[id_col, *exposures]].astype({id_col: str})
    p = planted[[id_col, *exposures]].astype({id_col: str}).rename(columns={c: c + PLANTED_SUFFIX for c in exposures})
    return m.merge(p, on=id_col, how="inner").dropna()


def agreement_table(pairs: pd.DataFrame, exposures: Sequence[str]) -> pd.DataFrame:
    """One row per exposure: n, planted and measured medians, mean difference, limits of agreement, median relative error, ICC, r."""
    rows = []
    for c in exposures:
        planted, measured = pairs[c + PLANTED_SUFFIX].to_numpy(float), pairs[c].to_numpy(float)
        diff = measured - planted
        sd = diff.std(ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.abs(diff) / np.abs(planted)
        rows.append({
            "exposure": c, "n": len(pairs),
            "planted_median": np.median(planted), "measured_median": np.median(measured),
            "mean_difference": diff.mean(), "loa_lo": diff.mean() - 1.96 * sd, "loa_hi": diff.mean() + 1.96 * sd,
            "median_abs_rel_error_pct": 100 * float(np.nanmedian(rel[np.isfinite(rel)])) if np.isfinite(rel).any() else np.nan,
            "icc_a1": icc_absolute_agreement(np.column_stack([planted, measured])),
            "pearson_r": float(np.corrcoef(planted, measured)[0, 1]),
        })
    return pd.DataFrame(rows)


def format_agreement(table: pd.DataFrame, dictionary: DataDictionary) -> pd.DataFrame:
    """The agreement table for a manuscript."""
    return pd.DataFrame({
        "Exposure": table["exposure"].map(dictionary.label),
        "n": table["n"].map(lambda v: f"{v:,}"),
        "Planted, median": table["planted_median"].map(lambda v: f"{v:,.1f}"),
        "Measured, median": table["measured_median"].map(lambda v: f"{v:,.1f}"),
        "Mean difference (95% LoA)": [f"{d:+,.1f} ({lo:+,.1f} to {hi:+,.1f})"
                                                       for d, lo, hi in table[["mean_difference", "loa_lo", "loa_hi"]].to_numpy()],
        "Median abs. rel. error (%)": table["median_abs_rel_error_pct"].map(lambda v: f"{v:.1f}"),
        "ICC(A,1)": table["icc_a1"].map(lambda v: f"{v:.3f}"),
    })


def agreement_plot(pairs: pd.DataFrame, exposures: Sequence[str], dictionary: DataDictionary) -> Figure:
    """Measured against planted value of each exposure (one panel each), with the line of identity."""
    from .figures import _new_figure

    with figure_style():
        fig = _new_figure(DOUBLE_COLUMN_IN, 2.5)
        axes = fig.subplots(1, len(exposures), squeeze=False)[0]
        for ax, c in zip(axes, exposures):
            x, y = pairs[c + PLANTED_SUFFIX].to_numpy(float), pairs[c].to_numpy(float)
            lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
            pad = 0.04 * (hi - lo or 1.0)
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], ls="--", lw=0.8, color="0.45", zorder=1)
            ax.scatter(x, y, s=6, alpha=0.6, color="#0072B2", edgecolors="none", zorder=2)
            ax.set_xlim(lo - pad, hi + pad)
            ax.set_ylim(lo - pad, hi + pad)
            ax.set_aspect("equal", adjustable="box")
            ax.set_xlabel(f"Planted: {dictionary.label(c)}")
            ax.set_ylabel("Measured by segmentation")
            ax.set_title(f"ICC {icc_absolute_agreement(np.column_stack([x, y])):.3f}", fontsize=7.5)
            ax.locator_params(nbins=4)
    return fig
