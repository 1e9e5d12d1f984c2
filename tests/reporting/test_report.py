"""The report: its numbers equal the runs', Table 1 counts equal the data's, the page is offline, bad input is refused clearly."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from backpain_epi import simulate_cohort
from backpain_epi.cli import main
from backpain_epi.errors import BackpainEpiError, InputFileError
from backpain_epi.formatting import format_or, format_prob
from backpain_epi.modelling.design import make_design
from backpain_epi.modelling.fit import read_analysis_table
from backpain_epi.modelling.spec import load_spec
from backpain_epi.reporting import ReportInputError, build_report
from backpain_epi.reporting.sections import survival as survival_section
from backpain_epi.reporting.stats import participant_flow

from ..conftest import MODELS

OR_TEXT = re.compile(r"^(\d+\.\d+) \((\d+\.\d+)–(\d+\.\d+)\)")


@pytest.fixture(scope="module")
def report(full_run, unadjusted_run, cohort_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "rep"
    result = build_report([full_run.out, unadjusted_run.out], cohort_csv[0], out=out, truth=cohort_csv[1].truth, progress=False)
    return result


@pytest.fixture(scope="module")
def html(report):
    return report.index.read_text(encoding="utf-8")


def _csv(report, name, kind="csv"):
    """A table the report wrote: the shown (text) tables as strings, the numeric companions as numbers."""
    return pd.read_csv(report.tables[name][kind], keep_default_na=False, dtype=None if kind == "numeric_csv" else str)


# --------------------------------------------------------------------------- numbers equal the runs'


def test_table2_numbers_equal_the_summary_csvs(report, full_run, unadjusted_run):
    numeric = _csv(report, "table2_odds_ratios", "numeric_csv")
    shown = _csv(report, "table2_odds_ratios")
    for run in (full_run, unadjusted_run):
        summary = pd.read_csv(run.out / "summary.csv")
        exposures = summary[summary["kind"] == "exposure"].set_index("term")
        mine = numeric[numeric["model"] == run.spec.name].set_index("term")
        assert set(mine.index) == set(exposures.index)
        for col in ("or_median", "or_lo95", "or_hi95", "p_or_gt_1", "r_hat", "ess_bulk"):
            np.testing.assert_allclose(mine.loc[exposures.index, col].to_numpy(), exposures[col].to_numpy(), rtol=1e-12)
        rows = shown[shown["Model"] == run.spec.name]
        assert len(rows) == len(exposures)
        for (_, row), term in zip(rows.iterrows(), [t for t in numeric["term"].unique() if t in exposures.index]):
            med, lo, hi = map(float, OR_TEXT.match(row["OR (95% CrI)"]).groups())
            e = exposures.loc[term]
            assert (med, lo, hi) == (round(e["or_median"], 2), round(e["or_lo95"], 2), round(e["or_hi95"], 2))
            assert row["P(OR > 1)"] == format_prob(e["p_or_gt_1"])


def test_supplementary_table_has_every_term_of_every_model(report, full_run, unadjusted_run):
    numeric = _csv(report, "tableS1_all_terms", "numeric_csv")
    shown = _csv(report, "tableS1_all_terms")
    for run in (full_run, unadjusted_run):
        summary = pd.read_csv(run.out / "summary.csv").set_index("term")
        mine = numeric[numeric["model"] == run.spec.name].set_index("term")
        assert sorted(mine.index) == sorted(summary.index)
        np.testing.assert_array_equal(mine.loc[summary.index, "or_median"], summary["or_median"])
    assert len(shown) == len(numeric)
    assert all(OR_TEXT.match(v) for v in shown["OR (95% CrI)"])


def test_activity_table_and_curve_numbers_equal_the_run(report, full_run):
    curve = pd.read_csv(full_run.out / "activity_curve.csv")
    numeric = _csv(report, "tableS2_activity", "numeric_csv")
    np.testing.assert_array_equal(numeric[numeric["model"] == "full"]["or_median"].to_numpy(), curve["or_median"].to_numpy())
    shown = _csv(report, "tableS2_activity").set_index("MET-min/week")
    at0 = curve.set_index("met_min_week").loc[0.0]
    med = float(OR_TEXT.match(shown.loc["0", "full (vs 1,500)"]).group(1))
    assert med == round(at0["or_median"], 2)


def test_comparison_table_matches_compare_runs(report, full_run, unadjusted_run):
    from backpain_epi.modelling.compare import compare_runs

    numeric = _csv(report, "model_comparison", "numeric_csv")
    direct = compare_runs([full_run.out, unadjusted_run.out])
    np.testing.assert_allclose(numeric["elpd_loo"], direct["elpd_loo"])
    assert list(numeric["model"]) == list(direct["model"])


def test_truth_table_marks_coverage(report, cohort_csv):
    table = _csv(report, "truth_vs_estimates")
    truth = cohort_csv[1].truth["odds_ratios_per_2sd"]
    row = table[table["Term"] == "InterMAT volume"].iloc[0]
    assert float(row["True OR"]) == round(truth["intermat_ml"], 2)
    med, lo, hi = map(float, OR_TEXT.match(row["full"]).groups())
    assert row["full"].endswith("✓") == (lo <= truth["intermat_ml"] <= hi)


# --------------------------------------------------------------------------- Table 1 and flow equal the data


def test_table1_counts_equal_the_data(report, cohort_csv, dictionary):
    data, _ = read_analysis_table(cohort_csv[0], dictionary)
    t1 = _csv(report, "table1")
    n_cbp, n_no = int(data["cbp"].sum()), int((data["cbp"] == 0).sum())
    assert f"CBP (n = {n_cbp:,})" in t1.columns and f"No CBP (n = {n_no:,})" in t1.columns
    diabetes = t1[t1["Characteristic"].str.startswith("Diabetes")].iloc[0]
    count = int(diabetes[f"CBP (n = {n_cbp:,})"].split(" ")[0])
    assert count == int(((data["cbp"] == 1) & (data["diabetes"] == 1)).sum())
    female = t1[t1["Level"] == "female"].iloc[0]
    assert int(female[f"Overall (n = {len(data):,})"].split(" ")[0]) == int((data["sex"] == "female").sum())
    age = t1[t1["Characteristic"].str.startswith("Age (years)")].iloc[0]
    assert age[f"No CBP (n = {n_no:,})"].startswith(f"{data.loc[data['cbp'] == 0, 'age'].median():.1f} [")
    assert "Chronic back pain" not in set(t1["Characteristic"])  # the outcome is the grouping, not a row


def test_flow_excludes_in_order_and_ends_at_the_analysed_count(dictionary):
    sim = simulate_cohort(n=400, seed=3)
    df, _ = read_analysis_table(sim.data.drop(columns="activity_band"), dictionary)
    df = df.assign(qc_flag=0)
    df.loc[0:4, "qc_flag"] = 1
    df.loc[3:9, "intermat_ml"] = np.nan  # rows 3-4 flagged and missing: counted once, as flagged
    df.loc[8:14, "bmi"] = np.nan  # rows 8-9 also miss an exposure
    spec = load_spec(MODELS / "full.yaml", dictionary)
    design = make_design(df, spec, dictionary)
    run = SimpleNamespace(name="full", spec=spec, provenance=SimpleNamespace(
        data=SimpleNamespace(n_analysed=design.n, qc_flagged_included=False)))
    flow = participant_flow(df, [run], dictionary)["full"]
    assert flow["Excluded: segmentation QC flag"] == 5
    assert flow["Excluded: missing exposure"] == 5  # rows 5-9
    assert flow["Excluded: missing covariate or activity"] == 5  # rows 10-14
    assert flow["Analysed"] == design.n == 400 - 15
    run.provenance.data.n_analysed = design.n + 1
    with pytest.raises(BackpainEpiError, match="another version of the data"):
        participant_flow(df, [run], dictionary)


def test_ppc_deciles_cover_the_analysed_rows(report, cohort_csv):
    ppc = _csv(report, "ppc_deciles", "numeric_csv")
    data = cohort_csv[1].data
    for _, g in ppc.groupby("model"):
        assert g["n"].sum() == len(data) and list(g["decile"]) == list(range(1, 11))
        np.testing.assert_allclose((g["observed"] * g["n"]).sum(), data["cbp"].sum())
        assert (g["rep_lo95"] <= g["rep_hi95"]).all() and g["predicted"].is_monotonic_increasing
        assert g["inside"].astype(str).eq("True").sum() >= 7  # a well-specified model is calibrated


# --------------------------------------------------------------------------- files and the page


def test_every_table_in_three_formats_and_figures_as_png_and_svg(report):
    from PIL import Image

    for name, files in report.tables.items():
        assert {"csv", "md", "tex"} <= set(files), name
        tex = files["tex"].read_text(encoding="utf-8")
        assert "\\toprule" in tex and "\\bottomrule" in tex, name
        assert re.search(r"(?<!\\)%", tex) is None, f"{name}: unescaped % in LaTeX"
        assert "|" in files["md"].read_text(encoding="utf-8")
    for name in ("forest_exposures", "activity_curve", "exposure_distributions", "model_comparison", "ppc_calibration", "km_by_tertile"):
        files = report.figures[name]
        with Image.open(files["png"]) as im:
            assert round(im.info["dpi"][0]) == 300, name
        assert "<svg" in files["svg"].read_text(encoding="utf-8")[:2000]


def test_html_is_self_contained(report, html):
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "external reference"
    assert "<link" not in html and "<script" not in html and "@import" not in html and "url(" not in html
    for src in re.findall(r'src="([^"]+)"', html):
        assert src.startswith("data:image/png;base64,")
    for href in re.findall(r'href="([^"]+)"', html):
        assert href.startswith("#") or (report.out / href).is_file(), href
    assert html.count("<img") >= 6


def test_html_has_every_section_and_the_headline_numbers(report, html, full_run):
    for anchor in ("participants", "exposures", "odds-ratios", "activity", "comparison", "diagnostics", "ppc", "survival", "text"):
        assert f'id="{anchor}"' in html
    s = full_run.summary.set_index("term").loc["intermat_ml"]
    assert format_or(s["or_median"], s["or_lo95"], s["or_hi95"]) in html
    assert "Every model passed the diagnostics gate." in html or "Diagnostics gate failed" in html
    results = (report.out / "text" / "results.md").read_text(encoding="utf-8")
    assert f"{s['or_median']:.2f}, 95% CrI {s['or_lo95']:.2f}–{s['or_hi95']:.2f}" in results
    methods = (report.out / "text" / "methods.md").read_text(encoding="utf-8")
    assert "nutpie" in methods and "normal(0, 1)" in methods and "Cox" in methods
    manifest = json.loads((report.out / "report.json").read_text())
    assert [r["name"] for r in manifest["runs"]] == ["full", "unadjusted"]


def test_survival_section_numbers_equal_the_survival_files(report):
    hr = pd.read_csv(report.out / "survival" / "hazard_ratios.csv").set_index("term")
    shown = _csv(report, "survival_hazard_ratios")
    row = shown[shown["Term"] == "InterMAT volume"].iloc[0]
    med, lo, hi = map(float, OR_TEXT.match(row["HR (95% CI)"]).groups())
    assert (med, lo, hi) == tuple(round(hr.loc["intermat_ml", c], 2) for c in ("hr", "hr_lo95", "hr_hi95"))


def test_a_failed_gate_is_flagged_in_the_report(full_run, cohort_csv, tmp_path):
    run = tmp_path / "bad"
    shutil.copytree(full_run.out, run)
    prov = json.loads((run / "provenance.json").read_text())
    prov["diagnostics"]["passed"] = False
    prov["diagnostics"]["checks"][2] |= {"passed": False, "value": "12"}
    (run / "provenance.json").write_text(json.dumps(prov))
    rep = build_report([run], cohort_csv[0], out=tmp_path / "rep", survival=False, progress=False)
    html = rep.index.read_text(encoding="utf-8")
    assert rep.failed_gates == ["full"] and "Diagnostics gate failed for full" in html
    diag = _csv(rep, "diagnostics")
    assert diag.loc[0, "Gate"] == "FAILED" and "✗" in diag.loc[0, "divergences"]
    assert str(diag.loc[0, "Attempts"]) == "1"  # the quick fit kept its one attempt (ladder=False)
    assert "One run only" in " ".join(rep.notes)


# --------------------------------------------------------------------------- clear errors


def test_missing_run_folder(cohort_csv, tmp_path):
    with pytest.raises(InputFileError, match="nowhere is not a run folder"):
        build_report([tmp_path / "nowhere"], cohort_csv[0], out=tmp_path / "rep", progress=False)


def test_run_fit_on_other_data(full_run, tmp_path):
    other = tmp_path / "other.csv"
    simulate_cohort(n=3000, seed=8).write(other)
    with pytest.raises(ReportInputError, match="fit on other data"):
        build_report([full_run.out], other, out=tmp_path / "rep", progress=False)


def test_unknown_column(full_run, cohort_csv, tmp_path):
    with pytest.raises(BackpainEpiError, match="did you mean 'intermat_ml'"):
        build_report([full_run.out], cohort_csv[0], out=tmp_path / "rep", table1_columns=["age", "intermat"], progress=False)
    with pytest.raises(BackpainEpiError, match="km_exposure"):
        build_report([full_run.out], cohort_csv[0], out=tmp_path / "rep", km_exposure="lmm", progress=False)


def test_cli_report_and_its_errors(full_run, unadjusted_run, cohort_csv, tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["report", "--runs", str(full_run.out), str(unadjusted_run.out), "--data", str(cohort_csv[0]),
                               "--out", str(tmp_path / "rep"), "--no-survival", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "Table 2" in res.output and "InterMAT volume" in res.output and (tmp_path / "rep" / "index.html").is_file()
    res = runner.invoke(main, ["report", "--runs", str(tmp_path / "missing"), "--data", str(cohort_csv[0]), "--out", str(tmp_path / "r2")])
    assert res.exit_code == 2 and res.output.startswith("error:") and "Traceback" not in res.output
    res = runner.invoke(main, ["report", "--runs", str(full_run.out), "--data", str(cohort_csv[0]), "--out", str(tmp_path / "r3"),
                               "--table1", "age,sexx"])
    assert res.exit_code == 2 and "did you mean 'sex'" in res.output


# --------------------------------------------------------------------------- segmentation QC


def test_segmentation_qc_section_with_overlays(full_run, cohort_csv, tmp_path):
    from backpain_epi.segmentation.io import load_volume
    from backpain_epi.segmentation.phantom import Protocol, write_phantoms
    from backpain_epi.tableio import write_table

    src = tmp_path / "phantoms"
    write_phantoms(src, 3, seed=1, protocol=Protocol(inplane_mm=(2.4, 2.5), slice_mm=(5.5, 6.0)), progress=False)
    manifest = pd.read_csv(src / "manifest.csv")
    seg = tmp_path / "seg"
    (seg / "labels").mkdir(parents=True)
    rows = []
    for _, r in manifest.iterrows():
        shutil.copy(src / r["label"], seg / "labels" / f"{r['participant_id']}.nii.gz")
        rows.append({"participant_id": r["participant_id"], "water": str(src / r["water"]), "fat": str(src / r["fat"])})
    write_table(pd.DataFrame(rows), seg / "manifest.csv")
    truth = pd.read_csv(src / "truth_exposures.csv")
    from backpain_epi.segmentation.exposures import EXPOSURE_COLUMNS

    exposures = truth[["participant_id", *[c for c in EXPOSURE_COLUMNS if c in truth.columns]]].copy()
    for c in EXPOSURE_COLUMNS:
        if c not in exposures:
            exposures[c] = 0.1 if c.startswith("qc_") else 100.0
    exposures["qc_flag"] = [1, 0, 0]
    exposures["qc_asymmetry"] = [0.5, 0.1, 0.1]
    write_table(exposures.iloc[:2], seg / "exposures.csv")
    write_table(pd.DataFrame({"participant_id": [manifest["participant_id"].iloc[2]], "reason": ["water file not found: x"]}),
                seg / "failures.csv")
    assert load_volume(seg / "labels" / f"{manifest['participant_id'].iloc[0]}.nii.gz")[0].max() == 4
    rep = build_report([full_run.out], cohort_csv[0], out=tmp_path / "rep", segmentation=seg, survival=False, progress=False)
    qc = _csv(rep, "segmentation_qc").set_index("Step")["Participants"]
    assert qc["Scans in the manifest"] == "3" and qc["Segmented"] == "2" and qc["Failed (no exposures)"] == "1"
    assert qc["QC flagged (excluded from the models)"] == "1" and "  flagged: left/right asymmetry above 0.35" in qc.index
    assert "qc_overlays" in rep.figures and 'id="qc"' in rep.index.read_text(encoding="utf-8")


def test_segmentation_folder_errors(full_run, cohort_csv, tmp_path):
    with pytest.raises(InputFileError, match="folder not found"):
        build_report([full_run.out], cohort_csv[0], out=tmp_path / "rep", segmentation=tmp_path / "none", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="no exposures.csv"):
        build_report([full_run.out], cohort_csv[0], out=tmp_path / "rep", segmentation=tmp_path / "empty", progress=False)


@pytest.mark.slow
def test_a_cox_model_that_cannot_be_fit_becomes_a_note(full_run, cohort_csv, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise survival_section.SurvivalError("the Cox model of spec 'paper' did not converge (singular); simplify the spec.")

    monkeypatch.setattr(survival_section, "survival_analysis", fail)
    rep = build_report([full_run.out], cohort_csv[0], out=tmp_path / "rep", progress=False)
    assert any(n.startswith("Survival analysis not shown (report --no-survival leaves the section out): the Cox model")
               for n in rep.notes)
    html = rep.index.read_text(encoding="utf-8")
    assert 'id="survival"' not in html and "did not converge" in html and "Table 1" in html


def test_planted_exposures_agreement_and_its_errors(full_run, cohort_csv, tmp_path):
    data = pd.read_csv(cohort_csv[0])
    planted = data[["participant_id", "lmm_ml", "intermat_ml"]].assign(lmm_ml=lambda d: d["lmm_ml"] + 10.0)
    rep = build_report([full_run.out], cohort_csv[0], out=tmp_path / "rep", planted=planted, survival=False, progress=False)
    numbers = pd.read_csv(rep.tables["segmentation_agreement"]["numeric_csv"]).set_index("exposure")
    assert list(numbers.index) == ["intermat_ml", "lmm_ml"]  # the exposures the planted table has
    assert numbers.loc["lmm_ml", "mean_difference"] == pytest.approx(-10.0)
    assert numbers.loc["intermat_ml", "icc_a1"] == pytest.approx(1.0)
    assert 'id="agreement"' in rep.index.read_text(encoding="utf-8")
    with pytest.raises(InputFileError, match="planted .*: file not found"):
        build_report([full_run.out], cohort_csv[0], out=tmp_path / "r2", planted=tmp_path / "none.csv", progress=False)
    with pytest.raises(ReportInputError, match="none of the exposures"):
        build_report([full_run.out], cohort_csv[0], out=tmp_path / "r3", planted=data[["participant_id", "age"]], progress=False)


def test_fits_in_memory_and_folders_alike_and_the_survival_spec(full_run, unadjusted_run, cohort_csv, tmp_path):
    in_memory = replace(full_run, out=None)  # as fit_model(..., out=None) returns it
    rep = build_report([in_memory, unadjusted_run.out], cohort_csv[0], out=tmp_path / "rep", survival_spec=full_run.spec,
                       progress=False)
    manifest = json.loads((rep.out / "report.json").read_text())
    assert [(r["name"], r["path"]) for r in manifest["runs"]] == [("full", None), ("unadjusted", str(unadjusted_run.out))]
    assert "in memory (not saved)" in rep.index.read_text(encoding="utf-8")
    assert "model_comparison" in rep.tables  # compared in memory
    survival = json.loads((rep.out / "survival" / "survival.json").read_text())
    assert survival["spec"] == "full" and (rep.out / "survival" / "km_by_tertile.png").is_file()


def test_a_stale_segmentation_folder_is_refused_before_anything_is_written(full_run, cohort_csv, tmp_path):
    """Issue 16: a manifest row pointed at another participant's images used to crash the overlays with a traceback."""
    from backpain_epi.segmentation.batch import segment_manifest
    from backpain_epi.segmentation.phantom import Protocol, write_phantoms
    from backpain_epi.tableio import read_table, write_table

    src = tmp_path / "phantoms"
    write_phantoms(src, 2, seed=3, protocol=Protocol(inplane_mm=(2.4, 2.5), slice_mm=(5.5, 6.0)), progress=False)
    seg = tmp_path / "seg"
    segment_manifest(src / "manifest.csv", seg, engine="labels", progress=False)
    manifest = read_table(seg / "manifest.csv")
    manifest.loc[0, ["water", "fat"]] = manifest.loc[1, ["water", "fat"]].to_numpy()
    write_table(manifest, seg / "manifest.csv")
    with pytest.raises(InputFileError, match="were not made from the scans its manifest names"):
        build_report([full_run.out], cohort_csv[0], out=tmp_path / "rep", segmentation=seg, survival=False, progress=False)
    assert not (tmp_path / "rep" / "index.html").exists() and not any((tmp_path / "rep").glob("*/*"))

