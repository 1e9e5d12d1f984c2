"""The shipped weights meet the Dice targets on held-out phantoms (a seed and protocol never used in training)."""

import numpy as np
import pytest

from backpain_epi.segmentation.evaluate import EVALUATION_SEED
from backpain_epi.segmentation.infer import Segmenter, dice, segment_pair
from backpain_epi.segmentation.io import DixonPair
from backpain_epi.segmentation.network import default_weights_path
from backpain_epi.segmentation.phantom import make_phantom


@pytest.fixture(scope="module")
def segmenter():
    assert default_weights_path().is_file(), "the shipped weights are missing from models/segmentation/"
    return Segmenter.load(device="cpu")


@pytest.mark.parametrize("index", [0, 1])
def test_shipped_weights_meet_the_dice_targets(segmenter, index):
    ph = make_phantom(np.random.SeedSequence(EVALUATION_SEED + 1).spawn(2)[index], protocol="heldout")
    labels, exposures = segment_pair(segmenter, DixonPair(ph.water.astype(np.float32), ph.fat.astype(np.float32), ph.affine))
    assert np.mean([dice(labels, ph.labels, [1]), dice(labels, ph.labels, [2])]) >= 0.92
    assert np.mean([dice(labels, ph.labels, [3]), dice(labels, ph.labels, [4])]) >= 0.85
    assert exposures["lmm_ml"] == pytest.approx(ph.exposures["lmm_ml"], rel=0.10)
