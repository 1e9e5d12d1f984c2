"""The report's tables as they are shown: numbers turned into display text, and how a table is written.

The numbers come from :mod:`backpain_epi.reporting.stats` (or the runs' own
tables); each ``format_*`` function takes such a table and returns a DataFrame of
display text, with labels and units from the data dictionary. :func:`write_formats`
writes one as CSV, Markdown and LaTeX (booktabs, escaped), ready to paste into a
manuscript, with the numbers behind it as ``<name>_numeric.csv``.

Numbers shown as text (``1.30 (1.20–1.41)``) are the runs' ``summary.csv`` values
rounded to two decimals; the ``*_numeric.csv`` companions carry them unrounded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..dictionary import DataDictionary
from ..formatting import format_int, format_or, format_p, format_prob
from ..tableio import write_text

if TYPE_CHECKING:
    from .runs import ReportRun

#: Activity levels (MET-min/week) reported in the supplementary activity table; 600 is the WHO minimum.
ACTIVITY_TABLE_MET = (0.0, 600.0, 3000.0, 5000.0, 10_000.0)


# --------------------------------------------------------------------------- writing


def write_formats(frame: pd.DataFrame, out_dir: str | os.PathLike, stem: str, *, caption: str = "",
                  numeric: pd.DataFrame | None = None) -> dict[str, Path]:
    """Write ``frame`` as ``<stem>.csv``, ``<stem>.md`` and ``<stem>.tex`` (and ``numeric`` as ``<stem>_numeric.csv``).

    Returns the paths by kind: ``csv``, ``md``, ``tex`` and ``numeric_csv``.
    """
    out_dir = Path(out_dir)
    paths = {"csv": out_dir / f"{stem}.csv", "md": out_dir / f"{stem}.md", "tex": out_dir / f"{stem}.tex"}
    write_text(frame.to_csv(index=False), paths["csv"])
    md = frame.to_markdown(index=False, disable_numparse=True)
    write_text((f"**{caption}**\n\n" if caption else "") + md + "\n", paths["md"])
    write_text(to_latex(frame, caption=caption, label=f"tab:{stem}"), paths["tex"])
    if numeric is not None:
        paths["numeric_csv"] = out_dir / f"{stem}_numeric.csv"
        write_text(numeric.to_csv(index=False), paths["numeric_csv"])
    return paths


def to_latex(df: pd.DataFrame, *, caption: str = "", label: str = "") -> str:
    """A booktabs LaTeX table with every cell escaped (``%``, ``_``, ``&``, ...)."""
    frame = df.copy()
    frame.columns = [str(c) for c in frame.columns]
    styler = frame.style.hide(axis="index").format(escape="latex", na_rep="").format_index(escape="latex", axis=1)
    return styler.to_latex(hrules=True, caption=latex_escape(caption) or None, label=label or None, position="htbp",
                           column_format="l" + "r" * (frame.shape[1] - 1))


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (as pandas' Styler escapes the cells)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


# --------------------------------------------------------------------------- participant flow


def format_flow(flow: pd.DataFrame) -> pd.DataFrame:
    """The participant flow (:func:`~backpain_epi.reporting.stats.participant_flow`) with thousands separators."""
    return flow.map(format_int).reset_index()


# --------------------------------------------------------------------------- odds ratios


def format_odds_ratios(ors: pd.DataFrame, dictionary: DataDictionary) -> pd.DataFrame:
    """Table 2: odds ratio per 2 SD (95% CrI) and P(OR > 1) of each exposure in each model.

    Parameters
    ----------
    ors
        The exposure rows of the runs, term by term, with a ``model`` column
        (:func:`~backpain_epi.reporting.stats.exposure_odds_ratios`).
    dictionary
        Gives the exposures' labels.

    Returns
    -------
    pandas.DataFrame
        One block of rows per exposure, one row per model (narrow enough for a journal page).
    """
    rows = []
    for term, sub in ors.groupby("term", sort=False):
        label = dictionary.label(term, unit=False) if term in dictionary else term
        same_per = sub["per"].nunique() == 1  # the analysed rows, so the SD, can differ between models
        for i, r in enumerate(sub.itertuples()):
            row = {"Exposure": label if i == 0 else "", "Per": r.per if i == 0 or not same_per else "", "Model": r.model,
                   "OR (95% CrI)": format_or(r.or_median, r.or_lo95, r.or_hi95), "P(OR > 1)": format_prob(r.p_or_gt_1)}
            if "e_value" in ors.columns:
                row["E-value"] = f"{r.e_value:.2f} ({r.e_value_ci:.2f})" if pd.notna(r.e_value) else ""
            rows.append(row)
    columns = ["Exposure", "Per", "Model", "OR (95% CrI)", "P(OR > 1)"] + (["E-value"] if "e_value" in ors.columns else [])
    return pd.DataFrame(rows, columns=columns)


def format_all_terms(terms: pd.DataFrame) -> pd.DataFrame:
    """Supplementary Table S1: every term of every model, OR (95% CrI), P(OR > 1), R-hat, bulk ESS.

    ``terms`` is :func:`~backpain_epi.reporting.stats.all_terms`; the model is named on its first row only.
    """
    table = pd.DataFrame({
        "Model": terms["model"], "Term": terms["label"], "Per": terms["per"],
        "OR (95% CrI)": [format_or(m, lo, hi) for m, lo, hi in terms[["or_median", "or_lo95", "or_hi95"]].to_numpy()],
        "P(OR > 1)": terms["p_or_gt_1"].map(format_prob),
        "R-hat": terms["r_hat"].map(lambda v: f"{v:.3f}"), "ESS (bulk)": terms["ess_bulk"].map(format_int),
    })
    table["Model"] = table["Model"].where(~table["Model"].duplicated(), "")
    return table.reset_index(drop=True)


def format_truth(coverage: pd.DataFrame) -> pd.DataFrame:
    """The true odds ratios of a simulated cohort beside each model's estimate, ✓ where its interval covers the truth.

    ``coverage`` is :func:`~backpain_epi.reporting.stats.truth_coverage`; one row per term, one column per model
    (``–`` where a model lacks the term).
    """
    rows = []
    for _, sub in coverage.groupby("term", sort=False):
        row = {"Term": sub["label"].iloc[0], "Per": sub["per"].iloc[0], "True OR": f"{sub['true_or'].iloc[0]:.2f}"}
        for r in sub.itertuples():
            row[r.model] = format_or(r.or_median, r.or_lo95, r.or_hi95) + (" ✓" if r.covered else " ✗")
        rows.append(row)
    return pd.DataFrame(rows).fillna("–")


def format_activity(curves: pd.DataFrame, met=ACTIVITY_TABLE_MET) -> pd.DataFrame:
    """Supplementary Table S2: OR (95% CrI) of CBP at the activity levels ``met`` against each curve's reference.

    ``curves`` is :func:`~backpain_epi.reporting.stats.activity_long`; one column per model, one row per level.
    """
    if curves.empty:
        return pd.DataFrame()
    out = {}
    for model, c in curves.groupby("model", sort=False):
        c = c.set_index("met_min_week")
        ref = c["reference_met"].iloc[0]
        col = {}
        for m in met:
            if m in c.index:
                col[format_int(m)] = format_or(*c.loc[m, ["or_median", "or_lo95", "or_hi95"]])
        out[f"{model} (vs {format_int(ref)})"] = col
    table = pd.DataFrame(out)
    table.index.name = "MET-min/week"
    return table.reset_index()


# --------------------------------------------------------------------------- comparison and diagnostics


def format_comparison(comparison: pd.DataFrame) -> pd.DataFrame:
    """The LOO comparison for a manuscript: ELPD (SE), difference from the best (SE), p_loo, weight, Pareto k."""
    c = comparison
    return pd.DataFrame({
        "Rank": c["rank"].astype(int), "Model": c["model"],
        "ELPD-LOO (SE)": [f"{e:,.1f} ({s:.1f})" for e, s in c[["elpd_loo", "se"]].to_numpy()],
        "ΔELPD (SE)": [f"{d:.1f} ({s:.1f})" if r > 1 else "0 (best)" for d, s, r in c[["elpd_diff", "dse", "rank"]].to_numpy()],
        "p_loo": c["p_loo"].map(lambda v: f"{v:.1f}"),
        "Stacking weight": c["weight"].map(lambda v: f"{v:.2f}"),
        "Pareto k > 0.7": c["n_pareto_k_gt_0_7"].astype(int),
    })


def comparison_verdict(comparison: pd.DataFrame) -> str:
    """One sentence: is the best model clearly better than the next (ΔELPD more than 2 SE)?"""
    if len(comparison) < 2:
        return ""
    best, second = comparison.iloc[0], comparison.iloc[1]
    clear = second["elpd_diff"] > 2 * second["dse"]
    return (f"{best['model']} has the highest expected log predictive density; "
            + (f"it is clearly better than {second['model']} (ΔELPD {second['elpd_diff']:.1f}, SE {second['dse']:.1f})."
               if clear else f"{second['model']} is within 2 SE of it (ΔELPD {second['elpd_diff']:.1f}, SE {second['dse']:.1f}), "
                             "so the data do not distinguish them."))


def format_diagnostics(runs: list[ReportRun]) -> pd.DataFrame:
    """One row per model: the gate verdict and each check's value (R-hat, ESS, divergences, E-BFMI), sampler and time.

    The checks are those of the posterior kept (the gate ladder's last attempt); ``Attempts`` counts the
    attempts and, when there was more than one, lists each one's settings and verdict.
    """
    rows = []
    for run in runs:
        p = run.provenance
        checks = {c.name: c for c in p.diagnostics.checks}
        s = p.settings
        row = {"Model": run.name, "Gate": "passed" if p.diagnostics.passed else "FAILED"}
        for name in ("R-hat", "bulk ESS", "divergences", "E-BFMI"):
            c = checks.get(name)
            row[name] = "" if c is None else c.value + ("" if c.passed else f" ✗ (allowed: {c.rule}; {c.worst})".replace("; )", ")"))
        row["Sampler"] = p.sampler["used"] + (" (fallback)" if p.sampler.get("fallback_reason") else "")
        row["Chains × draws"] = f"{s['chains']} × {format_int(s['draws'])} (tune {format_int(s['tune'])})"
        row["Time (s)"] = f"{p.timings.get('total_s', float('nan')):.0f}"
        row["Attempts"] = str(p.n_attempts) + "".join(f"; {a.number}. {a.describe()}" for a in p.attempts if len(p.attempts) > 1)
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- posterior predictive check


def format_ppc(ppc: pd.DataFrame) -> pd.DataFrame:
    """The posterior predictive check by decile (:func:`~backpain_epi.reporting.stats.ppc_by_decile`) in percent."""
    return pd.DataFrame({
        "Model": ppc["model"].where(~ppc["model"].duplicated(), ""), "Decile": ppc["decile"], "n": ppc["n"].map(format_int),
        "Predicted (%)": (100 * ppc["predicted"]).map(lambda v: f"{v:.1f}"),
        "Observed (%)": (100 * ppc["observed"]).map(lambda v: f"{v:.1f}"),
        "Replicated 95% interval (%)": [f"{100 * a:.1f}–{100 * b:.1f}" for a, b in ppc[["rep_lo95", "rep_hi95"]].to_numpy()],
        "Observed inside": ppc["inside"].map({True: "yes", False: "no"}),
    })


def format_corp(corp: pd.DataFrame) -> pd.DataFrame:
    """The CORP Brier score decomposition (:func:`~backpain_epi.reporting.stats.corp_decomposition`), four decimals."""
    out = pd.DataFrame({"Model": corp["model"], "n": corp["n"].map(format_int)})
    for col, name in (("bs", "Brier score"), ("mcb", "MCB"), ("dsc", "DSC"), ("unc", "UNC")):
        out[name] = corp[col].map(lambda v: f"{v:.4f}")
    out["PAV curve inside the band (points)"] = [f"{i}/{p}" for i, p in corp[["inside", "points"]].to_numpy()]
    return out


# --------------------------------------------------------------------------- survival and segmentation QC


def format_hazard_ratios(hr: pd.DataFrame) -> pd.DataFrame:
    """Cox hazard ratios for a manuscript: term, per, HR (95% CI), p."""
    return pd.DataFrame({
        "Term": hr["label"], "Per": hr["per"],
        "HR (95% CI)": [format_or(h, lo, hi) for h, lo, hi in hr[["hr", "hr_lo95", "hr_hi95"]].to_numpy()],
        "p": hr["p"].map(format_p),
    })


def format_ph_test(ph: pd.DataFrame, hr: pd.DataFrame) -> pd.DataFrame:
    """The proportional-hazards check for a manuscript: term (labelled as in ``hr``), statistic, p, verdict."""
    labels = dict(zip(hr["term"], hr["label"]))
    return pd.DataFrame({
        "Term": ph["term"].map(lambda t: labels.get(t, t)), "Test statistic": ph["test_statistic"].map(lambda v: f"{v:.2f}"),
        "p": ph["p"].map(format_p),
        "Proportional hazards": ph["ph_violated"].map({True: "violated (p < 0.05)", False: "not rejected"}),
    })


def format_qc(counts: pd.DataFrame) -> pd.DataFrame:
    """Segmentation QC counts (:func:`~backpain_epi.reporting.stats.qc_counts`) with thousands separators."""
    return counts.assign(Participants=counts["Participants"].map(format_int))


def format_agreement(table: pd.DataFrame, dictionary: DataDictionary) -> pd.DataFrame:
    """The agreement of measured with planted exposures (:func:`~backpain_epi.reporting.stats.agreement_table`) for a manuscript."""
    return pd.DataFrame({
        "Exposure": table["exposure"].map(dictionary.label),
        "n": table["n"].map(format_int),
        "Planted, median": table["planted_median"].map(lambda v: f"{v:,.1f}"),
        "Measured, median": table["measured_median"].map(lambda v: f"{v:,.1f}"),
        "Mean difference (95% LoA)": [f"{d:+,.1f} ({lo:+,.1f} to {hi:+,.1f})"
                                      for d, lo, hi in table[["mean_difference", "loa_lo", "loa_hi"]].to_numpy()],
        "Median abs. rel. error (%)": table["median_abs_rel_error_pct"].map(lambda v: f"{v:.1f}"),
        "ICC(A,1)": table["icc_a1"].map(lambda v: f"{v:.3f}"),
    })
