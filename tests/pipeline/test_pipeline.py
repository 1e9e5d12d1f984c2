"""The pipeline end to end at a tiny size: images to odds ratios; a rerun does no work; a change reruns exactly its downstream."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from backpain_epi.cli import main
from backpain_epi.pipeline import run_pipeline

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # about 2 minutes on 2 cores: phantoms, segmentation and two fits


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipe")
    spec = yaml.safe_load((ROOT / "models" / "unadjusted.yaml").read_text())
    (folder / "unadjusted.yaml").write_text(yaml.safe_dump(spec))  # a copy the tests may edit
    config = {
        "out": "out",
        "cohort": {"n": 60, "seed": 5},  # a seed whose 60 participants include some with every comorbidity
        "phantoms": {"inplane_mm": [2.3, 2.5], "slice_mm": [5.5, 6.0], "workers": 2},
        "segmentation": {"workers": 1, "mirror_axes": "none"},  # one pass instead of the weights' 4 (xz)
        "models": ["unadjusted.yaml", str(ROOT / "models" / "full.yaml")],
        "sampler": {"draws": 200, "tune": 200, "chains": 2},
        "report": {"title": "tiny"},
    }
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    lines: list[str] = []
    result = run_pipeline(path, echo=lines.append, progress=False)
    return {"path": path, "folder": folder, "result": result, "lines": lines, "config": config}


def _rerun(tiny, **kw):
    return run_pipeline(tiny["path"], echo=lambda _: None, progress=False, **kw)


def test_first_run_goes_from_images_to_a_report(tiny):
    res = tiny["result"]
    assert res.ran == ["simulate", "phantoms", "segment", "merge", "fit:unadjusted", "fit:full", "compare", "report"]
    out = tiny["folder"] / "out"
    assert len(list((out / "phantoms" / "images").glob("*_water.nii.gz"))) == 60
    assert len(list((out / "segmentation" / "labels").glob("*.nii.gz"))) + len(pd.read_csv(out / "segmentation" / "failures.csv")) == 60
    html = res.report.read_text(encoding="utf-8")
    assert 'id="agreement"' in html and "Estimates against the planted truth" in html
    # the report puts the planted truth beside the estimates
    head = res.headline.set_index("Term")
    assert float(head.loc["InterMAT volume", "True OR"]) == 1.22
    assert head.loc["InterMAT volume", "full"].endswith(("✓", "✗"))


def test_exposures_come_from_segmentation_not_from_the_simulation(tiny):
    out = tiny["folder"] / "out"
    analysed = pd.read_csv(out / "analysis" / "cohort.csv").set_index("participant_id")
    measured = pd.read_csv(out / "segmentation" / "exposures.csv").set_index("participant_id")
    planted = pd.read_csv(out / "phantoms" / "planted_exposures.csv").set_index("participant_id")
    ids = measured.index
    pd.testing.assert_series_equal(analysed.loc[ids, "intermat_ml"], measured["intermat_ml"], check_names=False)
    assert (analysed.loc[ids, "intermat_ml"] - planted.loc[ids, "intermat_ml"]).abs().max() > 0  # measured, with error
    agreement = pd.read_csv(out / "report" / "tables" / "segmentation_agreement_numeric.csv").set_index("exposure")
    assert agreement.loc["lmm_ml", "icc_a1"] > 0.8 and agreement.loc["intermat_ml", "icc_a1"] > 0.8


def test_rerun_does_no_work(tiny):
    res = _rerun(tiny)
    assert res.ran == []
    assert all(o.status == "cached" for o in res.outcomes)


def test_changed_spec_reruns_exactly_its_fit_compare_and_report(tiny):
    path = tiny["folder"] / "unadjusted.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["description"] = spec.get("description", "") + " (edited)"
    path.write_text(yaml.safe_dump(spec))
    assert _rerun(tiny).ran == ["fit:unadjusted", "compare", "report"]


def test_changed_report_title_reruns_only_the_report(tiny):
    config = {**tiny["config"], "report": {"title": "tiny, retitled"}}
    tiny["path"].write_text(yaml.safe_dump(config))
    assert _rerun(tiny).ran == ["report"]
    assert "tiny, retitled" in (tiny["folder"] / "out" / "report" / "index.html").read_text(encoding="utf-8")


def test_cli_prints_the_headline_and_the_report_path(tiny):
    res = CliRunner().invoke(main, ["pipeline", "--config", str(tiny["path"]), "--quiet", "--allow-failed-diagnostics"])
    assert res.exit_code == 0, res.output
    assert "Stages run: none (everything up to date)" in res.output
    assert "True OR" in res.output and "InterMAT volume" in res.output
    assert res.output.rstrip().endswith(str((tiny["folder"] / "out" / "report" / "index.html").resolve()))
    strict = CliRunner().invoke(main, ["pipeline", "--config", str(tiny["path"]), "--quiet"])
    failed = json.loads((tiny["folder"] / "out" / "report" / "report.json").read_text())["failed_gates"]
    assert strict.exit_code == (3 if failed else 0)  # as `fit`: a failed gate is an exit status
    bad = CliRunner().invoke(main, ["pipeline", "--config", str(tiny["path"]), "--force", "fit:ful"])
    assert bad.exit_code == 2 and "did you mean 'fit:full'?" in bad.output


def test_fits_in_two_processes_equal_the_serial_ones_and_crossval_joins_the_report(tiny):
    """fit.workers: 2 refits both models at once (same draws: same summaries); crossval: by site adds its stage and section."""
    out = tiny["folder"] / "out"
    before = {m: pd.read_csv(out / "runs" / m / "summary.csv").drop(columns="run_id") for m in ("unadjusted", "full")}
    config = {**tiny["config"], "fit": {"workers": 2},
              "crossval": {"by": "site", "models": ["unadjusted"], "workers": 2, "draws": 100, "tune": 100, "chains": 1}}
    tiny["path"].write_text(yaml.safe_dump(config))
    res = _rerun(tiny, force={"fit:unadjusted", "fit:full"})
    assert res.ran == ["fit:unadjusted", "fit:full", "compare", "crossval", "report"]
    for m, table in before.items():
        pd.testing.assert_frame_equal(pd.read_csv(out / "runs" / m / "summary.csv").drop(columns="run_id"), table)
    by_site = pd.read_csv(out / "crossval" / "loso.csv")  # 60 participants: 16 of the 18 sites have analysed rows
    assert set(by_site["model"]) == {"unadjusted"} and by_site["n"].sum() == json.loads(
        (out / "runs" / "unadjusted" / "provenance.json").read_text())["data"]["n_analysed"]
    html = res.report.read_text(encoding="utf-8")
    assert "Leave-one-site-out cross-validation over 16 sites: elpd" in html  # one model: no ranking to set against PSIS-LOO
    assert _rerun(tiny).ran == []
    tiny["path"].write_text(yaml.safe_dump(tiny["config"]))
