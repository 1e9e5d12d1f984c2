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
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..dictionary import DataDictionary
from ..errors import BackpainEpiError
from ..tableio import write_text

#: Activity levels (MET-min/week) reported in the supplementary activity table; 600 is the WHO minimum.
ACTIVITY_TABLE_MET = (0.0, 600.0, 3000.0, 5000.0, 10_000.0)
WHO_MIN_MET = 600.0


# --------------------------------------------------------------------------- formatting


def fmt_or(mid: float, lo: float, hi: float, digits: int = 2) -> str:
    """``1.30 (1.20–1.41)``: an estimate and its 95% interval."""
    return f"{mid:.{digits}f} ({lo:.{digits}f}–{hi:.{digits}f})"


def fmt_prob(p: float) -> str:
    """A posterior probability to three decimals, with ``<0.001`` / ``>0.999`` at the ends (never 0 or 1)."""
    if p < 0.0005:
        return "<0.001"
    if p > 0.9995:
        return ">0.999"
    return f"{p:.3f}"


def fmt_int(n: float) -> str:
    return f"{int(n):,}"


def write_formats(df: pd.DataFrame, out_dir: str | os.PathLike, stem: str, *, caption: str = "", index: bool = False,
                  numeric: pd.DataFrame | None = None) -> dict[str, Path]:
    """Write ``df`` as ``<stem>.csv``, ``<stem>.md`` and ``<stem>.tex`` (and ``numeric`` as ``<stem>_numeric.csv``)."""
    out_dir = Path(out_dir)
    frame = df.reset_index() if index else df
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


# --------------------------------------------------------------------------- inputs


@dataclass
class RunTables:
    """What the report needs of one run folder (read by :func:`backpain_epi.reporting.report.load_runs`)."""

    name: str
    path: Path
    result: object  # FitResult
    analysed: pd.DataFrame  # the cohort rows this run analysed, in its order

    @property
    def summary(self) -> pd.DataFrame:
        return self.result.summary

    @property
    def provenance(self) -> dict:
        return self.result.provenance


# --------------------------------------------------------------------------- participant flow


def format_flow(flow: pd.DataFrame) -> pd.DataFrame:
    """The participant flow (:func:`~backpain_epi.reporting.stats.participant_flow`) with thousands separators."""
    return flow.map(fmt_int).reset_index()


# --------------------------------------------------------------------------- Table 1


def table1_columns(runs: list[RunTables], dictionary: DataDictionary, data: pd.DataFrame) -> list[str]:
    """Characteristics for Table 1: every column the models use (raw activity too), outcome and site excepted, in dictionary order."""
    used: set[str] = set()
    for run in runs:
        spec = run.result.spec
        used |= set(spec.columns()) - {spec.outcome, spec.group}
        if spec.activity is not None:
            used |= {"met_min_week", spec.activity.variable} - {None}
    return [c for c in dictionary.names() if c in used and c in data.columns]


def check_columns(columns, data: pd.DataFrame, dictionary: DataDictionary, what: str) -> list[str]:
    """Refuse columns the dictionary does not know or the data does not have (with did-you-mean)."""
    from ..errors import unknown_choice

    for c in columns:
        if c not in dictionary:
            raise BackpainEpiError(f"{what}: " + unknown_choice("column", c, dictionary.columns))
        if c not in data.columns:
            raise BackpainEpiError(f"{what}: the data has no column '{c}'.")
    return list(columns)


def table1(df: pd.DataFrame, columns: list[str], dictionary: DataDictionary, *, outcome: str = "cbp") -> pd.DataFrame:
    """Characteristics by outcome (Table 1) with tableone: n, median [Q1, Q3] or n (%), missing counts and SMD.

    Binary columns show the count with the condition; categorical ones every level in
    dictionary order. Labels carry units from the dictionary.
    """
    from tableone import TableOne

    frame = df[[*columns, outcome]].copy()
    categorical, nonnormal, order, limit, rename = [], [], {}, {}, {}
    for c in columns:
        col = dictionary[c]
        rename[c] = col.label_with_unit()
        if col.type == "binary":
            frame[c] = frame[c].map({1: "yes", 0: "no", 1.0: "yes", 0.0: "no"})
            categorical.append(c)
            order[c], limit[c] = ["yes", "no"], 1
        elif col.type in ("category", "string"):
            categorical.append(c)
            present = [str(v) for v in frame[c].dropna().unique()]
            order[c] = [lv for lv in (col.levels or ()) if lv in present] or sorted(present)
        else:
            nonnormal.append(c)
    labels = {0: "No CBP", 1: "CBP"}
    frame[outcome] = frame[outcome].astype(int).map(labels)
    t1 = TableOne(frame, columns=columns, categorical=categorical, nonnormal=nonnormal, groupby=outcome, order={**order, outcome: list(labels.values())},
                  limit=limit, rename=rename, overall=True, missing=True, pval=False, smd=True, decimals=1,
                  include_null=False, label_suffix=True)
    table = t1.tableone.copy()
    table.columns = [c[1] if isinstance(c, tuple) else c for c in table.columns]
    table = table.rename(columns={"SMD (CBP,No CBP)": "SMD", "SMD (No CBP,CBP)": "SMD"})
    n = frame[outcome].value_counts()
    table = table.rename(columns={"Overall": f"Overall (n = {len(frame):,})", "No CBP": f"No CBP (n = {n.get('No CBP', 0):,})",
                                  "CBP": f"CBP (n = {n.get('CBP', 0):,})"})
    table = table.reset_index()
    table.columns = ["Characteristic", "Level", *table.columns[2:]]
    table["Level"] = table["Level"].replace({"yes": ""})
    table = table[table["Characteristic"] != "n"].reset_index(drop=True)
    table["Characteristic"] = table["Characteristic"].where(~table["Characteristic"].duplicated(), "")
    return table.fillna("")


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
            rows.append({"Exposure": label if i == 0 else "", "Per": r.per if i == 0 or not same_per else "", "Model": r.model,
                         "OR (95% CrI)": fmt_or(r.or_median, r.or_lo95, r.or_hi95), "P(OR > 1)": fmt_prob(r.p_or_gt_1)})
    return pd.DataFrame(rows, columns=["Exposure", "Per", "Model", "OR (95% CrI)", "P(OR > 1)"])


def format_all_terms(terms: pd.DataFrame) -> pd.DataFrame:
    """Supplementary Table S1: every term of every model, OR (95% CrI), P(OR > 1), R-hat, bulk ESS.

    ``terms`` is :func:`~backpain_epi.reporting.stats.all_terms`; the model is named on its first row only.
    """
    table = pd.DataFrame({
        "Model": terms["model"], "Term": terms["label"], "Per": terms["per"],
        "OR (95% CrI)": [fmt_or(m, lo, hi) for m, lo, hi in terms[["or_median", "or_lo95", "or_hi95"]].to_numpy()],
        "P(OR > 1)": terms["p_or_gt_1"].map(fmt_prob),
        "R-hat": terms["r_hat"].map(lambda v: f"{v:.3f}"), "ESS (bulk)": terms["ess_bulk"].map(fmt_int),
    })
    table["Model"] = table["Model"].where(~table["Model"].duplicated(), "")
    return table.reset_index(drop=True)


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
                col[f"{m:,.0f}"] = fmt_or(*c.loc[m, ["or_median", "or_lo95", "or_hi95"]])
        out[f"{model} (vs {ref:,.0f})"] = col
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


def format_diagnostics(runs: list[RunTables]) -> pd.DataFrame:
    """One row per model: the gate verdict and each check's value (R-hat, ESS, divergences, E-BFMI), sampler and time."""
    rows = []
    for run in runs:
        p = run.provenance
        checks = {c["name"]: c for c in p["diagnostics"]["checks"]}
        s = p["settings"]
        row = {"Model": run.name, "Gate": "passed" if p["diagnostics"]["passed"] else "FAILED"}
        for name in ("R-hat", "bulk ESS", "divergences", "E-BFMI"):
            c = checks.get(name)
            row[name] = "" if c is None else c["value"] + ("" if c["passed"] else f" ✗ (allowed: {c['rule']}; {c['worst']})".replace("; )", ")"))
        row["Sampler"] = p["sampler"]["used"] + (" (fallback)" if p["sampler"].get("fallback_reason") else "")
        row["Chains × draws"] = f"{s['chains']} × {s['draws']:,} (tune {s['tune']:,})"
        row["Time (s)"] = f"{p['timings'].get('total_s', float('nan')):.0f}"
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- posterior predictive check


def format_ppc(ppc: pd.DataFrame) -> pd.DataFrame:
    """The posterior predictive check by decile (:func:`~backpain_epi.reporting.stats.ppc_by_decile`) in percent."""
    return pd.DataFrame({
        "Model": ppc["model"].where(~ppc["model"].duplicated(), ""), "Decile": ppc["decile"], "n": ppc["n"].map(fmt_int),
        "Predicted (%)": (100 * ppc["predicted"]).map(lambda v: f"{v:.1f}"),
        "Observed (%)": (100 * ppc["observed"]).map(lambda v: f"{v:.1f}"),
        "Replicated 95% interval (%)": [f"{100 * a:.1f}–{100 * b:.1f}" for a, b in ppc[["rep_lo95", "rep_hi95"]].to_numpy()],
        "Observed inside": ppc["inside"].map({True: "yes", False: "no"}),
    })


# --------------------------------------------------------------------------- survival and segmentation QC


def format_hazard_ratios(hr: pd.DataFrame) -> pd.DataFrame:
    """Cox hazard ratios for a manuscript: term, per, HR (95% CI), p."""
    return pd.DataFrame({
        "Term": hr["label"], "Per": hr["per"],
        "HR (95% CI)": [fmt_or(h, lo, hi) for h, lo, hi in hr[["hr", "hr_lo95", "hr_hi95"]].to_numpy()],
        "p": hr["p"].map(lambda v: "<0.001" if v < 0.001 else f"{v:.3f}"),
    })


def format_ph_test(ph: pd.DataFrame, hr: pd.DataFrame) -> pd.DataFrame:
    labels = dict(zip(hr["term"], hr["label"]))
    return pd.DataFrame({
        "Term": ph["term"].map(lambda t: labels.get(t, t)), "Test statistic": ph["test_statistic"].map(lambda v: f"{v:.2f}"),
        "p": ph["p"].map(lambda v: "<0.001" if v < 0.001 else f"{v:.3f}"),
        "Proportional hazards": ph["ph_violated"].map({True: "violated (p < 0.05)", False: "not rejected"}),
    })


def format_qc(counts: pd.DataFrame) -> pd.DataFrame:
    """Segmentation QC counts (:func:`~backpain_epi.reporting.stats.qc_counts`) with thousands separators."""
    return counts.assign(Participants=counts["Participants"].map(fmt_int))


def format_agreement(table: pd.DataFrame, dictionary: DataDictionary) -> pd.DataFrame:
    """The agreement of measured with planted exposures (:func:`~backpain_epi.reporting.stats.agreement_table`) for a manuscript."""
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
