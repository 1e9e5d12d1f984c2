"""Inference maps labels back onto the input's own grid, for any axis order, flips and spacing."""

import numpy as np
import pytest
import torch

from backpain_epi.segmentation.infer import Segmenter, dice, keep_largest_components, segment_pair
from backpain_epi.segmentation.io import DixonPair
from backpain_epi.segmentation.network import DEFAULT_CONFIG
from backpain_epi.segmentation.phantom import Protocol, make_phantom

LEVELS = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9])


class FFDecoder(torch.nn.Module):
    """A stand-in network: reads label k from a fat fraction of 0.1 + 0.2 k."""

    def forward(self, x):
        return -(((x[:, :1] - LEVELS.view(1, 5, 1, 1, 1)) / 0.05) ** 2)


def _encoded_pair(labels, affine):
    ff = (0.1 + 0.2 * labels).astype(np.float32)
    return DixonPair(100 * (1 - ff), 100 * ff, affine)


def _segmenter(inferer=None):
    return Segmenter(FFDecoder(), dict(DEFAULT_CONFIG), torch.device("cpu"), inferer)


@pytest.mark.parametrize("seed", [0, 1, pytest.param(2, marks=pytest.mark.slow), pytest.param(3, marks=pytest.mark.slow)])
def test_labels_land_on_the_input_grid_near_the_network_spacing(seed):
    near_network_grid = Protocol(inplane_mm=(2.0, 2.0), slice_mm=(5.0, 5.0))  # every axis order and flip
    ph = make_phantom(seed, protocol=near_network_grid)
    pred = _segmenter().segment(_encoded_pair(ph.labels, ph.affine))
    assert pred.shape == ph.labels.shape and pred.dtype == np.uint8
    # the y spacing differs from 2 mm by up to 3 %: interpolated fat fractions between labels decode
    # to a third label at a few boundary voxels
    assert (pred != ph.labels).mean() < 0.003
    for lab in range(1, 5):
        assert dice(pred, ph.labels, [lab]) > 0.95


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_labels_land_on_the_input_grid_at_other_spacings_without_a_shift(seed):
    """Fine grids: labels overlap, and their centroids stay within 0.5 mm in-plane (a half-voxel bug moves them 1 mm)."""
    ph = make_phantom(seed, protocol=Protocol(inplane_mm=(1.2, 1.4), slice_mm=(2.5, 3.0)))
    pred = _segmenter().segment(_encoded_pair(ph.labels, ph.affine))
    for lab in range(1, 5):
        assert dice(pred, ph.labels, [lab]) > 0.9
    for lab in (1, 2):
        shift = ph.affine[:3, :3] @ (np.argwhere(pred == lab).mean(0) - np.argwhere(ph.labels == lab).mean(0))
        assert np.abs(shift[:2]).max() < 0.5


def test_the_inferer_is_passed_in():
    calls = []

    def inferer(x, network):
        calls.append(tuple(x.shape))
        return network(x)

    ph = make_phantom(0, protocol=Protocol(inplane_mm=(2.4, 2.5), slice_mm=(5.5, 6.0)))
    labels, exposures = segment_pair(_segmenter(inferer), _encoded_pair(ph.labels, ph.affine))
    assert len(calls) == 1 and calls[0][:2] == (1, 3)
    assert exposures["autochthon_ml"] > 0


def test_keep_largest_components_drops_islands_only():
    labels = np.zeros((20, 20, 5), np.uint8)
    labels[2:8, 2:8] = 1
    labels[15, 15, 2] = 1  # island
    labels[10:14, 2:6] = 3
    out = keep_largest_components(labels)
    assert out[15, 15, 2] == 0
    assert (out[2:8, 2:8] == 1).all() and (out[10:14, 2:6] == 3).all()
