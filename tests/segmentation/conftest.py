"""Fixtures of the segmentation tests: small phantoms and a tiny untrained network, all generated."""

from __future__ import annotations

import numpy as np
import pytest

from backpain_epi.segmentation.phantom import Protocol

from ..conftest import shared

#: Coarse phantoms (few voxels) keep the quick tests quick; orientation and dtype still vary.
COARSE = Protocol(inplane_mm=(2.4, 2.5), slice_mm=(5.5, 6.0))
TINY_CONFIG = {"channels": (4, 8, 16), "strides": (2, 2), "roi_size": (48, 48, 16)}


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory):
    """Three coarse phantoms written with their manifest and truth (read-only: copy before changing); made once per run."""
    from backpain_epi.segmentation.phantom import write_phantoms

    def make(out):
        write_phantoms(out, 3, seed=42, protocol=COARSE, progress=False)
        return out

    return shared(tmp_path_factory, "phantoms", make, lambda out: out)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """Weights of a tiny, untrained UNet (seeded): fast, and enough for everything but accuracy; made once per run."""
    import torch

    from backpain_epi.segmentation.network import DEFAULT_CONFIG, build_network, save_weights

    def make(path):
        torch.manual_seed(0)
        config = {**DEFAULT_CONFIG, **TINY_CONFIG}
        return save_weights(path, build_network(config), config, {"note": "untrained"})

    return shared(tmp_path_factory, "tiny.pt", make, lambda path: path)


def rng_labels(shape, seed=0):
    """A blocky label map with all five labels."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint8)
    for lab in range(1, 5):
        corner = [rng.integers(0, n // 2) for n in shape]
        labels[tuple(slice(c, c + n // 3) for c, n in zip(corner, shape))] = lab
    return labels


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One torch thread: with two, a busy 2-core machine makes OpenMP spin and the tests 10x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
