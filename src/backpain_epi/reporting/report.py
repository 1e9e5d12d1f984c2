"""Build the publication report from saved runs: ``backpain-epi report`` in Python.

:func:`build_report` reads run folders (no refitting), checks they were fit on the
given cohort table, and writes a report folder::

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
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import pandas as pd

from ..records import VERSION as __version__
from ..dictionary import DataDictionary, load_dictionary
from ..errors import BackpainEpiError, InputFileError
from ..tableio import check_output_dir, read_table, write_text
from . import plots as P
from . import stats as S
from . import tables as T
from .plots.qc import MAX_OVERLAYS
from .style import DPI, save_figure

#: Exposure whose tertiles split the Kaplan–Meier curves.
KM_EXPOSURE = "intermat_ml"
SECTIONS = ("participants", "exposures", "odds ratios", "activity", "comparison", "diagnostics", "predictive check",
            "survival", "segmentation QC", "agreement", "text")


class ReportInputError(BackpainEpiError):
    """A run, the data or the segmentation folder cannot be used for the report."""


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


def build_report(
    runs: list[str | os.PathLike],
    data: str | os.PathLike | pd.DataFrame,
    *,
    out: str | os.PathLike,
    segmentation: str | os.PathLike | None = None,
    title: str = "Back-muscle composition and chronic back pain",
    table1_columns: list[str] | None = None,
    survival: bool = True,
    km_exposure: str = KM_EXPOSURE,
    truth: str | os.PathLike | dict | None = None,
    planted: str | os.PathLike | pd.DataFrame | None = None,
    dictionary: DataDictionary | None = None,
    progress: bool = True,
) -> Report:
    """Write the report of ``runs`` (run folders from ``fit``) on cohort table ``data`` to folder ``out``.

    Parameters
    ----------
    runs
        One or more run folders, all fit on ``data`` (checked by content hash). The
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
        Exposure whose tertiles split the Kaplan–Meier curves.
    truth
        Optional ``truth.json`` of a simulated cohort: the true odds ratios are shown beside the estimates.
    planted
        Optional table (path or DataFrame) of the exposures planted in phantom scans
        (``participant_id`` and exposure columns): adds their agreement with the measured
        exposures of ``data`` (ICC, limits of agreement, scatter).

    Raises
    ------
    ReportInputError, InputFileError
        A run folder is missing or incomplete, a run was fit on other data, a column is
        unknown, or the segmentation folder lacks its files.
    """
    from tqdm.auto import tqdm

    from ..modelling.fit import read_analysis_table, table_hash

    dd = dictionary or load_dictionary()
    if not runs:
        raise ReportInputError("give at least one run folder (from `backpain-epi fit`).")
    out = check_output_dir(out)
    table, source = read_analysis_table(data, dd)
    if table1_columns is not None:
        T.check_columns(table1_columns, table, dd, "--table1")
    if survival:
        T.check_columns([km_exposure], table, dd, "--km-exposure")
    loaded = load_runs(runs, table, table_hash(table), source, dd)
    seg = read_segmentation(segmentation) if segmentation is not None else None
    truth = _read_truth(truth)
    planted = _read_planted(planted) if planted is not None else None

    report = Report(out=out, index=out / "index.html")
    tdir, fdir = out / "tables", out / "figures"
    ctx: dict = {"title": title, "runs": loaded, "source": source, "n_rows": len(table), "sections": {}, "out": out}
    bar = tqdm(total=len(SECTIONS), desc="report", unit="section", disable=not progress)

    def step(name):
        bar.set_postfix_str(name)
        bar.update()

    def table_out(name, df, caption, numeric=None, index=False):
        report.tables[name] = T.write_formats(df, tdir, name, caption=caption, numeric=numeric, index=index)
        return {"name": name, "caption": caption, "html": _html_table(df), "files": report.tables[name], "df": df}

    def figure_out(name, fig, caption):
        report.figures[name] = save_figure(fig, fdir, name)
        return _figure_item(name, caption, report.figures[name])

    primary = loaded[0]
    # participants ----------------------------------------------------------------------------
    flow = S.participant_flow(table, loaded, dd, seg["failed_ids"] if seg else None)
    cols = table1_columns or T.table1_columns(loaded, dd, table)
    t1 = T.table1(primary.analysed, cols, dd, outcome=primary.result.spec.outcome)
    ctx["sections"]["participants"] = {
        "flow": table_out("flow", T.format_flow(flow), "Participant flow: exclusions in order, per model"),
        "flow_numbers": flow,
        "table1": table_out("table1", t1, f"Table 1. Characteristics of the {len(primary.analysed):,} participants analysed in "
                                          f"{primary.name}, by chronic back pain (median [Q1, Q3] or n (%); SMD: standardized mean difference)"),
    }
    step("participants")
    # exposures -------------------------------------------------------------------------------
    exposures = list(dict.fromkeys(e for r in loaded for e in r.result.spec.exposures))
    ctx["sections"]["exposures"] = {"figure": figure_out(
        "exposure_distributions", P.plot_exposure_distributions(primary.analysed, exposures, outcome=primary.result.spec.outcome,
                                                                dictionary=dd)[0].figure,
        "Distributions of the exposures by chronic back pain status (participants analysed in the primary model).")}
    step("exposures")
    # odds ratios -----------------------------------------------------------------------------
    t2_numeric, supp_numeric = S.exposure_odds_ratios(loaded), S.all_terms(loaded)
    t2, supp = T.format_odds_ratios(t2_numeric, dd), T.format_all_terms(supp_numeric)
    truth_table = _truth_table(truth, supp_numeric, dd) if truth else None
    ctx["sections"]["odds ratios"] = {
        "table2": table_out("table2_odds_ratios", t2, "Table 2. Odds ratios of chronic back pain per 2 SD of each exposure "
                            "(posterior median, 95% credible interval) and posterior probability that the OR exceeds 1, by model",
                            numeric=t2_numeric),
        "forest": figure_out("forest_exposures", P.plot_forest(t2_numeric, dictionary=dd).figure,
                             "Odds ratios per 2 SD (posterior median, 95% credible interval) of the exposures across models."),
        "supplementary": table_out("tableS1_all_terms", supp, "Supplementary Table S1. All terms of every model: odds ratios "
                                   "(95% CrI), P(OR > 1), R-hat and bulk effective sample size", numeric=supp_numeric),
        "truth": table_out("truth_vs_estimates", truth_table, "Odds ratios planted in the simulated cohort beside the estimates "
                           "(posterior median, 95% CrI; ✓ the interval covers the truth)") if truth_table is not None else None,
    }
    step("odds ratios")
    # activity --------------------------------------------------------------------------------
    curves = S.activity_long(loaded)
    if not curves.empty:
        act_table = T.format_activity(curves)
        ctx["sections"]["activity"] = {
            "figure": figure_out("activity_curve", P.plot_activity_curve(curves, primary.analysed["met_min_week"].dropna()
                                 if "met_min_week" in primary.analysed else table["met_min_week"].dropna(), who_met=T.WHO_MIN_MET,
                                 dictionary=dd)[0].figure,
                                 "Odds ratio of chronic back pain against physical activity (posterior median and 95% band), "
                                 "relative to the reference activity; dashed: WHO minimum of 600 MET-min/week; below: "
                                 "the distribution of activity."),
            "table": table_out("tableS2_activity", act_table, "Supplementary Table S2. Odds ratio (95% CrI) of chronic back pain at "
                               "selected activity levels, against each model's reference", numeric=curves),
        }
    else:
        report.notes.append("No model has an activity term: the activity section is empty.")
    step("activity")
    # comparison ------------------------------------------------------------------------------
    if len(loaded) >= 2:
        from ..modelling.compare import compare_runs

        comparison = compare_runs([r.path for r in loaded])
        names = {str(r.path): r.name for r in loaded}
        comparison["model"] = comparison["run"].map(lambda p: names.get(str(p), p))
        ctx["sections"]["comparison"] = {
            "table": table_out("model_comparison", T.format_comparison(comparison), "Model comparison by PSIS-LOO cross-validation "
                               "(expected log pointwise predictive density; higher is better)", numeric=comparison),
            "figure": figure_out("model_comparison", P.plot_loo(comparison).figure, "ELPD-LOO of each model (± SE) and its difference "
                                 "from the best (± SE of the difference)."),
            "verdict": T.comparison_verdict(comparison),
        }
    else:
        comparison = None
        report.notes.append("One run only: no model comparison (give two or more runs).")
    step("comparison")
    # diagnostics -----------------------------------------------------------------------------
    diag = T.format_diagnostics(loaded)
    report.failed_gates = [r.name for r in loaded if not r.provenance["diagnostics"]["passed"]]
    ctx["sections"]["diagnostics"] = {
        "table": table_out("diagnostics", diag, "Sampler diagnostics: every model must have R-hat ≤ 1.01, bulk ESS ≥ 400, "
                           "no divergent transitions and E-BFMI ≥ 0.3 in every chain"),
        "failed": report.failed_gates,
    }
    step("diagnostics")
    # posterior predictive check --------------------------------------------------------------
    ppc = pd.concat([S.ppc_by_decile(r) for r in loaded], ignore_index=True)
    ctx["sections"]["predictive check"] = {
        "figure": figure_out("ppc_calibration", P.plot_calibration(ppc)[0].figure, "Posterior predictive check: observed proportion with "
                             "chronic back pain against mean predicted risk, by decile of predicted risk; bars: 95% interval "
                             "of the proportion replicated from the posterior."),
        "table": table_out("ppc_deciles", T.format_ppc(ppc), "Observed and predicted chronic back pain by decile of predicted risk",
                           numeric=ppc),
        "inside": {m: int(g["inside"].sum()) for m, g in ppc.groupby("model", sort=False)},
    }
    step("predictive check")
    # survival --------------------------------------------------------------------------------
    surv = None
    has_onset = "cbp_onset_age" in table.columns and table["cbp_onset_age"].notna().any()
    if survival and has_onset:
        from ..modelling.survival import SurvivalError

        try:
            surv = _survival(table, loaded, dd, km_exposure, out / "survival")
        except SurvivalError as exc:  # a sensitivity analysis that cannot be fit does not block the report
            report.notes.append(f"Survival analysis not shown: {exc}")
    if surv is not None:
        ctx["sections"]["survival"] = {
            "hr": table_out("survival_hazard_ratios", T.format_hazard_ratios(surv.hazard_ratios),
                            "Cox proportional-hazards model with age as the time scale: hazard ratios of chronic back pain "
                            "onset (95% CI), stratified by site", numeric=surv.hazard_ratios),
            "ph": table_out("survival_ph_test", T.format_ph_test(surv.ph_test, surv.hazard_ratios),
                            "Proportional-hazards check (scaled Schoenfeld residuals, rank-transformed time)", numeric=surv.ph_test),
            "km": _figure_item("km_by_tertile", f"Kaplan–Meier estimates of CBP-free survival by tertile of "
                               f"{dd.label(km_exposure, unit=False)} (95% bands); log-rank p {_p(surv.logrank_p)}.",
                               {"png": out / "survival" / "km_by_tertile.png", "svg": out / "survival" / "km_by_tertile.svg"}),
            "result": surv,
        }
        report.figures["km_by_tertile"] = ctx["sections"]["survival"]["km"]["files"]
    elif survival and not has_onset:
        report.notes.append("Survival analysis not run: the table has no cbp_onset_age values.")
    step("survival")
    # segmentation QC -------------------------------------------------------------------------
    if seg is not None:
        samples = _overlay_samples(seg, report.notes)
        ctx["sections"]["segmentation QC"] = {
            "table": table_out("segmentation_qc", T.format_qc(S.qc_counts(seg["exposures"], seg["failures"])),
                               "Segmentation: scans segmented, failed and flagged by the QC rules"),
            "figure": figure_out("qc_overlays", P.plot_qc_overlays(samples)[0].figure, "Sample segmentations: label contours on the water "
                                 "image (axial slice through the muscles); QC-flagged participants first.") if samples else None,
        }
    step("segmentation QC")
    # measured against planted exposures ------------------------------------------------------
    if planted is not None:
        measured = [e for e in exposures if e in planted.columns]
        if not measured:
            raise ReportInputError(f"--planted: the table has none of the exposures {', '.join(exposures)}.")
        pairs = S.paired_exposures(table, planted, measured, id_col=dd.names(role="id")[0])
        if len(pairs) < 2:
            raise ReportInputError("--planted: fewer than two participants have both a planted and a measured exposure.")
        agreement = S.agreement_table(pairs, measured)
        ctx["sections"]["agreement"] = {
            "table": table_out("segmentation_agreement", T.format_agreement(agreement, dd),
                               "Exposures measured by segmentation against the values planted in the phantom images: mean "
                               "difference (measured − planted) with Bland–Altman 95% limits of agreement (LoA), the median absolute relative error, and the intraclass "
                               "correlation for absolute agreement", numeric=agreement),
            "figure": figure_out("segmentation_agreement", P.plot_agreement(pairs, measured, dd)[0].figure,
                                 "Measured against planted exposures, one point per participant; dashed: line of identity."),
            "numbers": agreement,
        }
    step("agreement")
    # text ------------------------------------------------------------------------------------
    from .text import methods_paragraph, results_paragraph

    methods = methods_paragraph(loaded, flow, comparison, surv, dd, segmentation=seg is not None)
    results = results_paragraph(loaded, flow, comparison, surv, dd)
    write_text(methods + "\n", out / "text" / "methods.md")
    write_text(results + "\n", out / "text" / "results.md")
    ctx["sections"]["text"] = {"methods": methods, "results": results}
    step("text")
    bar.close()

    report.headline = t2
    ctx |= {"notes": report.notes, "failed_gates": report.failed_gates, "versions": _versions(),
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "data_sha256": table_hash(table)}
    write_text(render_html(ctx), report.index)
    write_text(json.dumps(_manifest(report, loaded, source, table_hash(table), seg, segmentation), indent=2, default=str) + "\n",
               out / "report.json")
    return report


# --------------------------------------------------------------------------- inputs


def load_runs(runs, table: pd.DataFrame, sha256: str, source: str, dd: DataDictionary) -> list[T.RunTables]:
    """Read run folders and check each was fit on ``table`` (same content hash, same analysed rows)."""
    import hashlib

    from ..modelling.fit import load_run

    id_col = dd.names(role="id")[0]
    by_id = table.set_index(table[id_col].astype(str), drop=False)
    loaded, names = [], []
    for path in runs:
        path = Path(path)
        result = load_run(path, dd)
        d = result.provenance["data"]
        if d["sha256"] != sha256:
            raise ReportInputError(
                f"run {path} was fit on other data ({d['source']}, {d['n_rows']:,} rows) than {source} ({len(table):,} rows): "
                "the table's content differs. Give the table the runs were fit on, or refit them on this one."
            )
        outcome = result.spec.outcome
        ids = [str(i) for i in result.idata.observed_data[f"{outcome}_dim_0"].values]
        if hashlib.sha256("\n".join(ids).encode()).hexdigest() != d["analysed_sha256"]:
            raise ReportInputError(f"run {path}: posterior.nc does not match its provenance.json (analysed ids differ); refit the run.")
        name = result.spec.name if result.spec.name not in names else path.name
        if name in names:
            raise ReportInputError(f"two runs are both called '{name}'; give each model its own name (spec `name:`) or folder name.")
        names.append(name)
        loaded.append(T.RunTables(name=name, path=path, result=result, analysed=by_id.loc[ids].reset_index(drop=True)))
    return loaded


def read_segmentation(folder: str | os.PathLike) -> dict:
    """Read the outputs of ``backpain-epi segment``: exposures, failures, manifest (optional) and the labels folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(f"--segmentation {folder}: folder not found; give the --out folder of `backpain-epi segment`.")
    if not (folder / "exposures.csv").is_file():
        raise InputFileError(f"--segmentation {folder}: no exposures.csv; is this the --out folder of `backpain-epi segment`?")
    exposures = read_table(folder / "exposures.csv")
    for c in exposures.columns:
        if c != "participant_id":
            exposures[c] = pd.to_numeric(exposures[c])
    failures = pd.DataFrame(columns=["participant_id", "reason"])
    if (folder / "failures.csv").is_file():  # header only when every scan was segmented
        failures = pd.read_csv(folder / "failures.csv", dtype=str, keep_default_na=False)
    manifest = read_table(folder / "manifest.csv") if (folder / "manifest.csv").is_file() else None
    return {"folder": folder, "exposures": exposures, "failures": failures, "manifest": manifest,
            "failed_ids": set(failures["participant_id"].astype(str))}


def _overlay_samples(seg: dict, notes: list[str]) -> list[dict]:
    import numpy as np

    from ..segmentation.io import Grid, ScanError, load_volume

    if seg["manifest"] is None:
        notes.append(f"{seg['folder']} has no manifest.csv (segmented with an older version): no overlays.")
        return []
    ex = seg["exposures"]
    flagged = ex[ex["qc_flag"] == 1]["participant_id"].tolist()
    others = ex[ex["qc_flag"] != 1]["participant_id"].tolist()
    pick = flagged[: MAX_OVERLAYS // 2] + others[: MAX_OVERLAYS - min(len(flagged), MAX_OVERLAYS // 2)]
    paths = seg["manifest"].set_index("participant_id")
    samples = []
    for pid in pick[:MAX_OVERLAYS]:
        label_path = seg["folder"] / "labels" / f"{pid}.nii.gz"
        if pid not in paths.index or not label_path.is_file():
            continue
        try:
            water, affine = load_volume(paths.loc[pid, "water"], "water image")
            labels = load_volume(label_path, "label map")[0].round().astype(np.uint8)
        except ScanError as exc:
            notes.append(f"QC overlay of {pid} skipped: {exc}.")
            continue
        grid = Grid.plan(water.shape, affine, (1.0, 1.0, 1.0))  # RAS, as the overlays expect
        samples.append({"participant_id": pid, "water": grid.to_canonical(water), "labels": grid.to_canonical(labels), "spacing": grid.spacing,
                        "flagged": pid in flagged, "note": ""})
    return samples


def _read_truth(truth) -> dict | None:
    if truth is None or isinstance(truth, dict):
        return truth
    path = Path(truth)
    if not path.is_file():
        raise InputFileError(f"--truth {path}: file not found (it is written by `backpain-epi simulate --truth-out`).")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputFileError(f"--truth {path}: not JSON ({exc}).") from None


def _read_planted(planted) -> pd.DataFrame:
    if isinstance(planted, pd.DataFrame):
        return planted
    path = Path(planted)
    if not path.is_file():
        raise InputFileError(f"--planted {path}: file not found (the pipeline writes it as cohort/planted_exposures.csv).")
    frame = read_table(path)
    if "participant_id" not in frame.columns:
        raise InputFileError(f"--planted {path}: no participant_id column.")
    for c in frame.columns:
        if c != "participant_id":
            frame[c] = pd.to_numeric(frame[c], errors="raise")
    return frame


def _truth_table(truth: dict, terms_numeric: pd.DataFrame, dd: DataDictionary) -> pd.DataFrame | None:
    """True odds ratios of a simulated cohort (``truth.json``) beside each model's estimate, marked covered or not."""
    ors = {**(truth.get("odds_ratios_binary") or {}), **(truth.get("odds_ratios_per_2sd") or truth.get("odds_ratios") or {})}
    rows = []
    for term, sub in terms_numeric.groupby("term", sort=False):
        if term not in ors:
            continue
        row = {"Term": sub["label"].iloc[0], "Per": sub["per"].iloc[0], "True OR": f"{ors[term]:.2f}"}
        for _, r in sub.iterrows():
            covered = r["or_lo95"] <= ors[term] <= r["or_hi95"]
            row[r["model"]] = T.fmt_or(r["or_median"], r["or_lo95"], r["or_hi95"]) + (" ✓" if covered else " ✗")
        rows.append(row)
    return pd.DataFrame(rows).fillna("–") if rows else None


def _survival(table, loaded, dd, km_exposure, out):
    from ..modelling.survival import survival_analysis

    paper = next((r for r in loaded if r.name == "paper"), None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lifelines' StatisticalWarnings are summarised in the result's notes
        kwargs = {"spec": paper.result.spec} if paper is not None else {}
        result = survival_analysis(table, exposure=km_exposure, dictionary=dd, **kwargs)
    result.save(out)
    save_figure(P.plot_km(result.km, result.km_groups, result.logrank_p, dd).figure, out, "km_by_tertile")
    return result


# --------------------------------------------------------------------------- HTML


def render_html(ctx: dict) -> str:
    """Render the report page from its context with the package's jinja2 template (autoescaped)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("backpain_epi.reporting", "templates"), autoescape=select_autoescape(["html", "j2"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["relpath"] = lambda p: Path(p).relative_to(ctx["out"]).as_posix() if "out" in ctx else Path(p).name
    return env.get_template("report.html.j2").render(**ctx)


def _html_table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, border=0, classes="tbl", escape=True, na_rep="")


def _figure_item(name: str, caption: str, files: dict[str, Path]) -> dict:
    """A figure for the page: embedded PNG shown at 1.5 times its print size (so a one-column figure stays one column wide)."""
    from PIL import Image

    with Image.open(files["png"]) as im:
        width_px = im.size[0]
    return {"name": name, "caption": caption, "png": _data_uri(files["png"]), "files": files,
            "width": round(width_px / DPI * 96 * 1.5)}


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _versions() -> dict[str, str | None]:
    out = {}
    for name in ("backpain-epi", "pymc", "nutpie", "arviz", "lifelines", "tableone", "pandas", "matplotlib", "monai", "torch"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _manifest(report: Report, loaded, source, sha256, seg, segmentation) -> dict:
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "backpain_epi": __version__,
        "data": {"source": source, "sha256": sha256},
        "runs": [{"name": r.name, "path": str(r.path), "gate_passed": r.provenance["diagnostics"]["passed"]} for r in loaded],
        "segmentation": str(segmentation) if seg is not None else None,
        "tables": {k: {f: str(p.relative_to(report.out)) for f, p in v.items()} for k, v in report.tables.items()},
        "figures": {k: {f: str(p.relative_to(report.out)) for f, p in v.items()} for k, v in report.figures.items()},
        "notes": report.notes,
        "failed_gates": report.failed_gates,
    }
