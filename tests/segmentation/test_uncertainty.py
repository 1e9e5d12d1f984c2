"""Standard errors of the exposures: the probability-band spread, its calibration file, and the batch's SE columns."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from backpain_epi.errors import InputFileError
from backpain_epi.segmentation import uncertainty as unc
from backpain_epi.segmentation.batch import TABLE_COLUMNS, segment_manifest
from backpain_epi.segmentation.output import record_path


def _band_phantom():
    """Left compartment: a sure core (q = 1) in a shell of q = 0.5, fat fraction 0.1 in the core and 0.8 in the shell."""
    shape = (12, 12, 4)
    probs = np.zeros((2, *shape), np.float32)
    ff = np.zeros(shape, np.float32)
    probs[0, 2:10, 2:10] = 0.5
    probs[0, 4:8, 4:8] = 1.0
    ff[2:10, 2:10] = 0.8
    ff[4:8, 4:8] = 0.1
    return probs, ff


def test_raw_spread_is_half_the_difference_of_the_band_maps():
    probs, ff = _band_phantom()
    raw = unc.raw_spread(probs, ff, voxel_ml=0.5)
    shell = (8 * 8 - 4 * 4) * 4  # voxels of q = 0.5: in the outer map (q >= 0.25), not in the inner one (q >= 0.75)
    assert raw["lmm_ml"] == 0.0  # the shell is all InterMAT
    assert raw["intermat_ml"] == pytest.approx(shell * 0.5 / 2)
    assert raw["imf_pct"] == pytest.approx(0.0, abs=1e-5)  # the lean voxels are the core in both maps
    # a lean shell moves the lean volume and the mean fat fraction of the lean voxels instead
    ff[2:10, 2:10][ff[2:10, 2:10] == 0.8] = 0.3
    raw = unc.raw_spread(probs, ff, voxel_ml=0.5)
    n_core = 4 * 4 * 4
    assert raw["lmm_ml"] == pytest.approx(shell * 0.5 / 2) and raw["intermat_ml"] == pytest.approx(0.0)
    assert raw["imf_pct"] == pytest.approx(abs(100 * (n_core * 0.1 + shell * 0.3) / (n_core + shell) - 10) / 2, rel=1e-5)
    # a sure network has no spread
    sure = np.where(probs >= 0.75, 1.0, 0.0).astype(np.float32)
    assert unc.raw_spread(sure, ff, voxel_ml=0.5) == {e: 0.0 for e in unc.SE_EXPOSURES}


def test_factors_are_fitted_to_cover_95_percent():
    rng = np.random.default_rng(0)
    raw = {e: rng.uniform(1, 3, size=4000) for e in unc.SE_EXPOSURES}
    errors = {e: 2.5 * raw[e] * rng.standard_normal(4000) for e in unc.SE_EXPOSURES}  # true SE = 2.5 x raw
    factors = unc.fit_factors(raw, errors)
    assert factors == pytest.approx({e: 2.5 for e in unc.SE_EXPOSURES}, rel=0.06)
    held = {e: 2.5 * raw[e] * rng.standard_normal(4000) for e in unc.SE_EXPOSURES}
    cov = unc.coverage(factors["lmm_ml"] * raw["lmm_ml"], held["lmm_ml"])
    assert cov["coverage_95"] == pytest.approx(0.95, abs=0.015) and cov["z_sd"] == pytest.approx(1.0, abs=0.06)
    assert unc.coverage(raw["lmm_ml"], held["lmm_ml"])["coverage_95"] < 0.7  # uncalibrated, it would not cover
    with pytest.raises(ValueError, match="at least 10"):
        unc.fit_factors({e: np.zeros(4000) for e in unc.SE_EXPOSURES}, errors)


@pytest.fixture()
def weights(tiny_weights, tmp_path):
    """A private copy of the tiny weights, so that a calibration file beside it touches no other test."""
    return shutil.copy(tiny_weights, tmp_path / "tiny.pt")


def test_calibration_file_beside_the_weights(weights, tmp_path):
    from pathlib import Path

    weights = Path(weights)
    assert unc.calibration_path(weights) == tmp_path / "tiny.se.json"
    none = unc.load_calibration(weights)
    assert not none.calibrated and "no calibration file tiny.se.json" in none.note
    assert unc.standard_errors({"lmm_ml": 2.0, "intermat_ml": 1.0, "imf_pct": 0.5}, none) == {
        "lmm_ml_se": 2.0, "intermat_ml_se": 1.0, "imf_pct_se": 0.5}
    factors = {"lmm_ml": 1.5, "intermat_ml": 0.4, "imf_pct": 3.0}
    unc.write_calibration(weights, factors, {"fitted_on": "test"})
    cal = unc.load_calibration(weights)
    assert cal.calibrated and cal.factors == factors and cal.note == ""
    assert unc.standard_errors({"lmm_ml": 2.0, "intermat_ml": 1.0, "imf_pct": 0.5}, cal) == {
        "lmm_ml_se": 3.0, "intermat_ml_se": 0.4, "imf_pct_se": 1.5}
    assert cal.record()["factors"] == factors and cal.record()["method"] == unc.METHOD
    other = shutil.copy(weights, tmp_path / "other.pt")
    shutil.copy(unc.calibration_path(weights), unc.calibration_path(other))
    with open(other, "ab") as f:
        f.write(b"changed")
    stale = unc.load_calibration(other)
    assert not stale.calibrated and "fitted for other weights" in stale.note
    path = unc.calibration_path(weights)
    body = json.loads(path.read_text())
    path.write_text(json.dumps({**body, "factors": {**factors, "imf_pct": -1}}))
    with pytest.raises(InputFileError, match="imf_pct must be a positive number"):
        unc.load_calibration(weights)
    path.write_text("{not json")
    with pytest.raises(InputFileError, match="not an SE calibration file"):
        unc.load_calibration(weights)


def test_batch_writes_standard_errors_and_their_key(phantom_dir, weights, tmp_path, dictionary):
    from backpain_epi.tableio import read_table
    from backpain_epi.validation import validate_table

    shutil.copytree(phantom_dir, tmp_path / "in")
    manifest, out = tmp_path / "in" / "manifest.csv", tmp_path / "out"
    run = lambda **kw: segment_manifest(manifest, out, weights=weights, device="cpu", progress=False, **kw)  # noqa: E731
    first = run()
    table = read_table(out / "exposures.csv")
    assert list(table.columns) == ["participant_id", *TABLE_COLUMNS] == dictionary.names(table="exposures")
    assert validate_table(table, "exposures", dictionary).ok
    se = first.exposures[list(unc.SE_COLUMNS)]
    assert se.notna().all().all() and (se >= 0).all().all()
    pid = first.exposures["participant_id"].iloc[0]
    rec = json.loads(record_path(out, pid).read_text())
    assert rec["se"]["method"] == unc.METHOD and rec["se"]["calibrated"] is False and "no calibration file" in rec["se"]["note"]
    assert rec["key"]["engine"]["se"]["method"] == unc.METHOD
    for e in unc.SE_EXPOSURES:  # uncalibrated: the SE is the raw spread
        assert rec["exposures"][f"{e}_se"] == pytest.approx(rec["se"]["raw"][e])
    assert run().n_skipped == 3  # unchanged inputs: skipped
    # a calibration written beside the weights changes every record's key: all are done again, now calibrated
    unc.write_calibration(weights, {"lmm_ml": 2.0, "intermat_ml": 0.5, "imf_pct": 4.0}, {})
    second = run()
    assert second.n_processed == 3
    rec = json.loads(record_path(out, pid).read_text())
    assert rec["se"]["calibrated"] is True
    assert rec["exposures"]["intermat_ml_se"] == pytest.approx(0.5 * rec["se"]["raw"]["intermat_ml"])
    assert run().n_skipped == 3
    # another erosion: the builtin engine segments again (its SEs need the probabilities), SEs still there
    eroded = run(erode=1)
    assert eroded.n_processed == 3 and eroded.exposures[list(unc.SE_COLUMNS)].notna().all().all()


def test_engines_without_probabilities_write_missing_ses_with_a_note(phantom_dir, tmp_path):
    shutil.copytree(phantom_dir, tmp_path / "in")
    manifest = tmp_path / "in" / "manifest.csv"
    res = segment_manifest(manifest, tmp_path / "out", engine="labels", label_scheme="backpain-epi", progress=False)
    assert res.exposures[list(unc.SE_COLUMNS)].isna().all().all() and res.exposures["lmm_ml"].notna().all()
    rec = json.loads(record_path(tmp_path / "out", res.exposures["participant_id"].iloc[0]).read_text())
    assert rec["se"] == {"method": None, "note": unc.NO_SE_NOTE}
    assert list(pd.read_csv(tmp_path / "out" / "exposures.csv").columns)[-3:] == list(unc.SE_COLUMNS)


def test_a_band_map_without_lean_voxels_gives_the_spread_of_their_fat():
    probs, ff = _band_phantom()
    probs[0][probs[0] == 1.0] = 0.5  # nothing is sure: the inner map is empty
    ff[2:10, 2:10] = np.where(np.arange(8)[:, None] % 2, 0.1, 0.3)[..., None]
    raw = unc.raw_spread(probs, ff, voxel_ml=0.5)
    assert raw["imf_pct"] == pytest.approx(10.0, rel=1e-5)  # SD of 10 % and 30 %, in equal numbers
    assert raw["lmm_ml"] == pytest.approx(8 * 8 * 4 * 0.5 / 2)
    assert np.isnan(unc.raw_spread(np.zeros_like(probs), ff, voxel_ml=0.5)["imf_pct"])


def test_another_mirroring_than_the_weights_own_reruns_and_leaves_the_ses_uncalibrated(weights, phantom_dir, tmp_path):
    from backpain_epi.errors import BackpainEpiError
    from backpain_epi.segmentation.engines import EngineSpec, make_engine
    from backpain_epi.segmentation.network import load_weights, save_weights

    model, config, info = load_weights(weights)
    save_weights(weights, model, {**config, "mirror_axes": ["x", "z"]}, info)  # weights that ask for mirroring
    unc.write_calibration(weights, {"lmm_ml": 2.0, "intermat_ml": 0.5, "imf_pct": 4.0}, {})
    own = make_engine(EngineSpec("builtin", weights=str(weights), device="cpu"))
    assert own.calibration.calibrated and own.segmenter.inferer.axes == ("x", "z")
    single = make_engine(EngineSpec("builtin", weights=str(weights), device="cpu", mirror_axes="none"))
    assert type(single.segmenter.inferer).__name__ == "SlidingWindowInferer"
    assert not single.calibration.calibrated
    assert "fitted with test-time mirroring xz, this run mirrors none" in single.calibration.note
    same = make_engine(EngineSpec("builtin", weights=str(weights), device="cpu", mirror_axes="zx"))  # = the weights' own
    assert same.calibration.calibrated
    with pytest.raises(BackpainEpiError, match="^mirror_axes: not an option of engine=labels"):
        EngineSpec("labels", mirror_axes="x")

    shutil.copytree(phantom_dir, tmp_path / "in")
    manifest, out = tmp_path / "in" / "manifest.csv", tmp_path / "out"
    assert segment_manifest(manifest, out, weights=weights, device="cpu", progress=False).n_processed == 3
    spec = EngineSpec("builtin", weights=str(weights), device="cpu", mirror_axes="none")
    res = segment_manifest(manifest, out, engine=spec, progress=False)
    assert res.n_processed == 3  # another mirroring made these label maps: none is kept
    rec = json.loads(record_path(out, res.exposures["participant_id"].iloc[0]).read_text())
    assert rec["se"]["calibrated"] is False and rec["key"]["engine"]["mirror_axes"] == []
