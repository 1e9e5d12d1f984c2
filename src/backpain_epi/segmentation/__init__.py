"""Segmentation stage: Dixon water/fat NIfTI in, label maps and per-participant exposures out.

Modules (torch, MONAI and nibabel are imported only where needed):

- :mod:`.phantom`: synthetic lumbar Dixon phantoms with planted exposures (``make_phantom``, ``write_phantoms``).
- :mod:`.independent`: a second phantom family, for evaluation only; :mod:`.phantom_types`: what both share
  (``PhantomTargets``, the dictionary's primary exposures; ``Protocol``; ``Phantom``).
- :mod:`.io`: reading and checking a water/fat pair (``load_dixon``), the input ↔ network grid mapping (``Grid``).
- :mod:`.network`: the UNet, its weights file, devices, the sliding-window inferer.
- :mod:`.infer`: ``Segmenter`` (network + inferer + device) and ``segment_pair``.
- :mod:`.exposures`: ``fat_fraction`` and ``compute_exposures`` (shared by phantoms and inference).
- :mod:`.batch`: ``segment_manifest``: resumable batches, serial or on Dask.
- :mod:`.train`: ``train_segmenter`` (training on phantoms, fine-tuning on labelled scans).
- :mod:`.evaluate`: ``evaluate_segmenter``: Dice and exposure errors against the quality targets.
- :mod:`.engines`: ``EngineSpec`` and the engines (builtin, nnU-Net, TotalSegmentator, existing labels).
- :mod:`.output`: ``SegmentationOutput``, the one reader of a segmentation folder.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submod_attrs={
    "batch": ["segment_manifest"],
    "engines": ["EngineSpec", "make_engine"],
    "evaluate": ["evaluate_segmenter"],
    "io": ["load_dixon"],
    "output": ["SegmentationOutput"],
    "phantom": ["PhantomTargets", "make_phantom", "write_phantoms"],
    "train": ["train_segmenter"],
})
