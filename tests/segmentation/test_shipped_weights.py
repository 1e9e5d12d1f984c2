"""The shipped weights on held-out phantoms of both families (seeds never used in training).

The thresholds are per scan; the family-wide targets (means and medians over 50 scans) are
checked by ``backpain-epi evaluate-segmenter`` and recorded in the model card.
"""

import numpy as np
import pytest

from backpain_epi.segmentation.evaluate import EVALUATION_SEED
from backpain_epi.segmentation.independent import make_independent_phantom
from backpain_epi.segmentation.infer import Segmenter, dice, segment_pair
from backpain_epi.segmentation.io import DixonPair
from backpain_epi.segmentation.network import default_weights_path
from backpain_epi.segmentation.phantom import make_phantom

SEEDS = np.random.SeedSequence(EVALUATION_SEED + 1).spawn(2)


@pytest.fixture(scope="module")
def segmenter():
    assert default_weights_path().is_file(), "the shipped weights are missing from models/segmentation/"
    return Segmenter.load(device="cpu")


def _scores(segmenter, ph):
    labels, exposures = segment_pair(segmenter, DixonPair(ph.water.astype(np.float32), ph.fat.astype(np.float32), ph.affine))
    return (np.mean([dice(labels, ph.labels, [1]), dice(labels, ph.labels, [2])]),
            np.mean([dice(labels, ph.labels, [3]), dice(labels, ph.labels, [4])]),
            exposures["lmm_ml"] / ph.exposures["lmm_ml"] - 1)


@pytest.mark.parametrize("index", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_shipped_weights_on_the_training_generators_held_out_phantoms(segmenter, index):
    auto, psoas, lmm = _scores(segmenter, make_phantom(SEEDS[index], protocol="heldout"))
    assert auto >= 0.92 and psoas >= 0.85 and abs(lmm) <= 0.10


@pytest.mark.parametrize("index", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_shipped_weights_on_the_independent_family(segmenter, index):
    # the weights before domain randomisation gave a psoas Dice of about 0.25 on this family
    auto, psoas, lmm = _scores(segmenter, make_independent_phantom(SEEDS[index]))
    assert auto >= 0.75 and psoas >= 0.6 and abs(lmm) <= 0.30


def test_shipped_weights_carry_their_se_calibration():
    """The SE factors beside the shipped weights were fitted for them (SHA-256) and say where they were checked."""
    import json

    from backpain_epi.segmentation.uncertainty import SE_EXPOSURES, calibration_path, load_calibration

    cal = load_calibration(default_weights_path())
    assert cal.calibrated, cal.note
    assert set(cal.factors) == set(SE_EXPOSURES) and all(f > 0 for f in cal.factors.values())
    saved = json.loads(calibration_path(default_weights_path()).read_text())
    assert saved["fitted_on"]["family"] == "training" and set(saved["validation"]) == {"heldout", "independent"}
    assert saved["fitted_on"]["seed"] not in {saved["validation"][k]["seed"] for k in saved["validation"]}
