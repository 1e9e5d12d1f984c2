"""Scoring against the truth and the pass/fail of the quality targets."""

import shutil

import pandas as pd
import pytest

from backpain_epi.segmentation.evaluate import TARGETS, score, summarise
from backpain_epi.segmentation.output import SegmentationOutput


def test_a_perfect_segmentation_scores_perfectly(phantom_dir, tmp_path):
    manifest = pd.read_csv(phantom_dir / "manifest.csv")
    truth = pd.read_csv(phantom_dir / "truth_exposures.csv")
    predicted = SegmentationOutput(folder=tmp_path, exposures=truth)
    for r in manifest.itertuples():
        predicted.label_path(r.participant_id).parent.mkdir(exist_ok=True)
        shutil.copy(phantom_dir / r.label, predicted.label_path(r.participant_id))
    labels = {r.participant_id: phantom_dir / r.label for r in manifest.itertuples()}
    scores = score(predicted, labels, truth)
    assert (scores["dice_autochthon"] == 1).all() and (scores["dice_psoas"] == 1).all()
    assert (scores[["lmm_rel_err", "imf_abs_err", "intermat_rel_err"]] == 0).all().all()
    assert (summarise(scores)["result"] == "pass").all()


def test_each_target_fails_on_its_own():
    good = {"dice_autochthon": 0.95, "dice_psoas": 0.9, "lmm_rel_err": 0.01, "imf_abs_err": 0.5, "intermat_rel_err": 0.05}
    for metric, _, op, threshold in TARGETS:
        bad = dict(good, **{metric: threshold - 0.01 if op == ">=" else threshold + 0.01})
        result = summarise(pd.DataFrame([bad] * 3)).set_index("metric")["result"]
        assert result[metric] == "FAIL" and (result.drop(metric) == "pass").all()


def test_a_failed_scan_fails_the_evaluation():
    good = {"dice_autochthon": 0.95, "dice_psoas": 0.9, "lmm_rel_err": 0.01, "imf_abs_err": 0.5, "intermat_rel_err": 0.05}
    assert (summarise(pd.DataFrame([good]), n_failed=1)["result"] == "FAIL").all()


def test_the_independent_targets_each_fail_on_their_own():
    from backpain_epi.segmentation.evaluate import INDEPENDENT_TARGETS

    good = {"dice_autochthon": 0.9, "dice_psoas": 0.8, "lmm_rel_err": 0.05, "imf_abs_err": 1.5, "intermat_rel_err": 0.2}
    for metric, _, op, threshold in INDEPENDENT_TARGETS:
        bad = dict(good, **{metric: threshold - 0.01 if op == ">=" else threshold + 0.01})
        result = summarise(pd.DataFrame([bad] * 3), targets=INDEPENDENT_TARGETS).set_index("metric")["result"]
        assert result[metric] == "FAIL" and (result.drop(metric) == "pass").all()


@pytest.mark.slow
def test_evaluation_scores_both_families_against_their_own_targets(tmp_path):
    from backpain_epi.errors import BackpainEpiError
    from backpain_epi.segmentation.evaluate import INDEPENDENT_TARGETS, evaluate_segmenter

    scores, summary = evaluate_segmenter(tmp_path, n=1, seed=5, engine="labels", progress=False)
    assert sorted(scores["family"]) == ["independent", "training"]
    assert (scores["dice_autochthon"] == 1).all()  # the phantoms' own label maps
    indep = summary[summary["family"] == "independent"].set_index("metric")
    assert indep.loc["dice_psoas", "target"] == f">= {dict((m, t) for m, _, _, t in INDEPENDENT_TARGETS)['dice_psoas']:g}"
    written = pd.read_csv(tmp_path / "evaluation_summary.csv")
    assert list(written.columns) == ["family", "n", "metric", "statistic", "target", "value", "result"] and len(written) == 10
    assert scores["participant_id"].str.startswith("IN5-").sum() == 1
    with pytest.raises(BackpainEpiError, match="^family: unknown phantom family 'independant'; did you mean 'independent'"):
        evaluate_segmenter(tmp_path / "x", n=1, family="independant", engine="labels", progress=False)
    with pytest.raises(BackpainEpiError, match="^n 0: draw at least one phantom"):
        evaluate_segmenter(tmp_path / "x", n=0, engine="labels", progress=False)
    with pytest.raises(BackpainEpiError, match=r"^truth: give the true exposures \(a table with participant_id, lmm_ml, "
                                               r"intermat_ml, imf_pct\) with manifest=FILE"):
        evaluate_segmenter(tmp_path / "x", manifest=tmp_path / "m.csv", engine="labels", progress=False)


def test_a_truth_table_without_an_exposure_is_refused_before_segmenting(phantom_dir, tmp_path):
    from backpain_epi.errors import InputFileError
    from backpain_epi.segmentation.evaluate import evaluate_segmenter

    pd.read_csv(phantom_dir / "truth_exposures.csv").drop(columns="imf_pct").to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(InputFileError, match=f"^truth {tmp_path / 't.csv'}: missing column.s. imf_pct."):
        evaluate_segmenter(tmp_path / "e", manifest=phantom_dir / "manifest.csv", truth=tmp_path / "t.csv", engine="labels",
                           progress=False)
    assert not (tmp_path / "e" / "segmentation").exists()
