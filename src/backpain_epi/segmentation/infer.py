"""Segment one Dixon pair: the pure core of inference.

:class:`Segmenter` holds a network, its config, a device and an inferer (any
callable ``inferer(inputs, network)``, by default MONAI's
:class:`~monai.inferers.SlidingWindowInferer`), so the model code never changes
when the inference strategy does. :meth:`Segmenter.segment` maps a
:class:`~backpain_epi.segmentation.io.DixonPair` to a label map on the input's
own grid; :func:`segment_pair` adds the exposures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .exposures import compute_exposures, fat_fraction
from .io import DixonPair, Grid, network_input, resize
from .network import load_weights, make_inferer, resolve_device


@dataclass
class Segmenter:
    """A network ready for inference.

    Attributes
    ----------
    network
        A torch module mapping ``(B, 3, X, Y, Z)`` to ``(B, 5, X, Y, Z)`` logits.
    config
        Its config (voxel spacing, patch size; see ``network.DEFAULT_CONFIG``).
    device
        ``torch.device``; mixed precision is used on CUDA.
    inferer
        Callable ``inferer(inputs, network) -> logits``; default: sliding window.
    """

    network: object
    config: dict
    device: object
    inferer: object = None

    def __post_init__(self):
        if self.inferer is None:
            self.inferer = make_inferer(self.config)

    @classmethod
    def load(cls, weights=None, device="auto", inferer=None) -> "Segmenter":
        """Load weights (default: the shipped ones) onto ``device`` (``auto``, ``cpu``, ``cuda``)."""
        dev = resolve_device(device) if isinstance(device, str) else device
        network, config, _ = load_weights(weights, dev)
        return cls(network, config, dev, inferer)

    def probabilities(self, pair: DixonPair, grid: Grid):
        """Class probabilities ``(5, X, Y, Z)`` on the canonical (RAS) input grid, float32 torch tensor on the CPU."""
        # lazy: torch takes seconds to import; the engines and the evaluation import this module (Segmenter, dice)
        import torch

        x = network_input(grid.to_canonical(pair.water), grid.to_canonical(pair.fat), grid,
                          self.config.get("input_resampling", "trilinear"))
        with torch.no_grad(), torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            logits = self.inferer(x[None].to(self.device), self.network)
        probs = torch.softmax(logits.float(), dim=1)[0].cpu()
        return resize(probs, grid.canonical_shape, "trilinear")

    def segment(self, pair: DixonPair) -> np.ndarray:
        """uint8 label map on the input's own grid (largest connected component per label)."""
        return self.segment_with_probabilities(pair)[0]

    def segment_with_probabilities(self, pair: DixonPair) -> tuple[np.ndarray, np.ndarray]:
        """The label map of :meth:`segment` and the probabilities of labels 1 and 2 (the compartment, left and
        right), ``(2, X, Y, Z)`` float32, both on the input's own grid (what :mod:`.uncertainty` reads)."""
        grid = Grid.plan(pair.water.shape, pair.affine, self.config["spacing_mm"])
        probs = self.probabilities(pair, grid)
        labels = grid.from_canonical(keep_largest_components(probs.argmax(dim=0).numpy().astype(np.uint8)))
        compartment = np.stack([grid.from_canonical(probs[k].numpy()) for k in (1, 2)])
        return labels, compartment


def keep_largest_components(labels: np.ndarray, n_labels: int = 4) -> np.ndarray:
    """Set to 0 every voxel of labels 1..``n_labels`` outside that label's largest 26-connected component."""
    out = labels.copy()
    structure = np.ones((3, 3, 3), bool)
    for lab in range(1, n_labels + 1):
        comp, n = ndimage.label(labels == lab, structure=structure)
        if n > 1:
            sizes = np.bincount(comp.ravel())
            sizes[0] = 0
            out[(comp > 0) & (comp != sizes.argmax())] = 0
    return out


def segment_pair(segmenter: Segmenter, pair: DixonPair) -> tuple[np.ndarray, dict]:
    """Label map on the input grid and the exposures computed from it and the pair's fat fraction."""
    labels = segmenter.segment(pair)
    ff, reliable = fat_fraction(pair.water, pair.fat)
    return labels, compute_exposures(labels, ff, pair.voxel_ml, reliable)


def dice(pred: np.ndarray, truth: np.ndarray, labels) -> float:
    """Dice overlap of the voxels with any of ``labels`` in ``pred`` and in ``truth`` (NaN if both empty)."""
    p, t = np.isin(pred, labels), np.isin(truth, labels)
    denom = p.sum() + t.sum()
    return float(2 * (p & t).sum() / denom) if denom else float("nan")
