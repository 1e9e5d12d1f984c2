"""Training and fine-tuning of the segmentation network (seeded, CPU or GPU).

Training examples are volumes on the network grid (the same preprocessing as
inference, :func:`~backpain_epi.segmentation.io.network_input`), drawn either
from phantoms (:func:`~backpain_epi.segmentation.phantom.make_phantom`) or from
a manifest with a ``label`` column (fine-tuning on annotated scans). Each step
takes random patches, biased to the muscles, through MONAI augmentations
(:func:`augmentations`) and one AdamW step on the Dice + cross-entropy loss.

With ``synth_fraction`` > 0, that share of every step's patches is
domain-randomised instead (:mod:`.synth`: anatomies with a wide habitus whose
appearance, geometry and acquisition are drawn anew for every patch), made by
DataLoader worker processes while the network trains.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from monai import transforms as T
from monai.losses import DiceCELoss
from monai.utils import set_determinism
from tqdm.auto import tqdm

from ..errors import BackpainEpiError, InputFileError
from .batch import read_manifest
from .exposures import LABEL_NAMES, mirror_table
from .infer import Segmenter, dice
from .io import DixonPair, Grid, ScanError, load_dixon, load_label_map, network_input, resize
from .network import DEFAULT_CONFIG, build_network, check_mirror_axes, load_weights, resolve_device, save_weights
from .phantom import make_phantom
from .phantom_types import Protocol
from .synth import PD_FAT_GAIN, SynthPatches, anatomy_bank, check_fat_gain, check_fat_leak, check_probability


@dataclass(frozen=True)
class TrainSettings:
    """Settings of one training run (all recorded in the weights file).

    Attributes
    ----------
    steps
        Optimiser steps.
    volumes_per_step, patches_per_volume
        Each step draws this many volumes and this many patches from each.
    learning_rate
        Peak learning rate (linear warm-up over the first tenth of the steps, then cosine decay).
    n_phantoms, phantom_seed, phantom_protocol
        Training phantoms (ignored when training from a manifest).
    seed
        Seed of the network initialisation, patch sampling and augmentation.
    synth_fraction
        Share of each step's patches that are domain-randomised (:mod:`.synth`); 0 trains
        on the phantoms (or the manifest's scans) alone, 1 on domain-randomised patches alone.
    n_anatomies, anatomy_seed
        The anatomies the domain-randomised patches are drawn from (:func:`.synth.anatomy_bank`).
    synth_workers
        DataLoader processes making domain-randomised patches (the result depends on it).
    anatomy_cache
        Folder keeping the drawn anatomies between runs (a few seconds each to draw).
    anatomy_variant
        1: the habitus of :func:`.synth.draw_habitus`; 2: also InterMAT from the core to the edge
        and along septa (:func:`.synth.draw_intermat`).
    flip_z
        Probability of mirroring a patch head to foot (phantom and domain-randomised
        patches alike): the training generator's psoas grows the wrong way (cranially).
    flip_x
        Probability of mirroring a patch left to right with the sided labels swapped
        (phantom and domain-randomised patches alike).
    synth_fat_gain, synth_fat_leak
        The domain-randomised patches' fat/water gain range and largest fat-to-water
        leak (:class:`.synth.SynthRenderer`); the defaults are those of stages 4 and 5.
    synth_dark_fascia
        Probability that a domain-randomised patch draws its fascia dark in both images
        (:data:`.synth.DARK_FASCIA`); 0, the default, is what stages 4-8 used.
    """

    steps: int = 2000
    volumes_per_step: int = 2
    patches_per_volume: int = 2
    learning_rate: float = 3e-3
    n_phantoms: int = 40
    phantom_seed: int = 1000
    phantom_protocol: str | Protocol = "train"
    seed: int = 0
    synth_fraction: float = 0.0
    n_anatomies: int = 80
    anatomy_seed: int = 2000
    synth_workers: int = 1
    anatomy_cache: str | None = None
    anatomy_variant: int = 1
    flip_z: float = 0.0
    flip_x: float = 0.0
    synth_fat_gain: tuple[float, float] = PD_FAT_GAIN
    synth_fat_leak: float = 0.0
    synth_dark_fascia: float = 0.0
    config: dict = field(default_factory=lambda: dict(DEFAULT_CONFIG))

    def __post_init__(self):
        """Check every setting here, so a bad one fails at once with its name, not later in a DataLoader worker."""
        for name in ("steps", "volumes_per_step", "patches_per_volume", "n_anatomies"):
            _check_count(getattr(self, name), name, least=1)
        for name in ("n_phantoms", "synth_workers", "seed", "phantom_seed", "anatomy_seed"):
            _check_count(getattr(self, name), name, least=0)
        rate = self.learning_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < float("inf"):
            raise BackpainEpiError(f"{rate!r}: must be positive.", param="learning_rate")
        if self.anatomy_variant not in (1, 2) or isinstance(self.anatomy_variant, bool):
            raise BackpainEpiError(f"{self.anatomy_variant!r}: the anatomy variant is 1 or 2.", param="anatomy_variant")
        checked = {name: check_probability(getattr(self, name), name)
                   for name in ("synth_fraction", "flip_z", "flip_x", "synth_dark_fascia")}
        checked["synth_fat_gain"] = check_fat_gain(self.synth_fat_gain, "synth_fat_gain")
        checked["synth_fat_leak"] = check_fat_leak(self.synth_fat_leak, "synth_fat_leak")
        for name, value in checked.items():  # frozen: the checked, normalised values replace the given ones
            object.__setattr__(self, name, value)


def _check_count(value, name: str, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise BackpainEpiError(f"{value!r}: a whole number of at least {least}.", param=name)


def volume_example(water, fat, affine, labels, config) -> dict:
    """One training example on the network grid: ``ff`` (1 channel), ``signal`` (2 channels), ``label``.

    ``label`` is the label map sampled at the network voxel centres (nearest
    neighbour; it picks the patch centres). With ``config["label_resampling"]
    == "area"`` the example also has ``soft``: per class, the fraction of each
    network voxel the structure covers on the input grid (partial volume, like
    the image). It is the training target then: inference maps probabilities
    back to the input grid by trilinear interpolation and takes the argmax, so
    a network that predicts the covered fraction puts the boundary at its true
    sub-voxel position, whereas targets sampled at voxel centres only teach a
    boundary quantised to the network grid (see ``tests/segmentation/test_boundary.py``).
    """
    grid = Grid.plan(water.shape, affine, config["spacing_mm"])
    x = network_input(grid.to_canonical(water), grid.to_canonical(fat), grid, config.get("input_resampling", "trilinear"))
    canonical = torch.from_numpy(grid.to_canonical(np.asarray(labels, np.float32)))[None]
    example = {"ff": x[:1], "signal": x[1:], "label": resize(canonical, grid.network_shape, "nearest")}
    if config.get("label_resampling", "nearest") == "area":
        n_classes = config.get("out_channels", DEFAULT_CONFIG["out_channels"])
        onehot = torch.nn.functional.one_hot(canonical[0].long().clamp(0, n_classes - 1), n_classes)
        example["soft"] = resize(onehot.permute(3, 0, 1, 2).float(), grid.network_shape, "area")
    return example


def phantom_examples(settings: TrainSettings, progress: bool = True) -> list[dict]:
    """Training examples from ``settings.n_phantoms`` phantoms of ``settings.phantom_seed``."""
    seeds = np.random.SeedSequence(settings.phantom_seed).spawn(settings.n_phantoms)
    out = []
    for ss in tqdm(seeds, desc="training phantoms", unit="vol", disable=not progress):
        ph = make_phantom(ss, protocol=settings.phantom_protocol)
        out.append(volume_example(ph.water, ph.fat, ph.affine, ph.labels, settings.config))
    return out


def manifest_examples(manifest, config, progress: bool = True, *, sep: str | None = None, encoding: str = "utf-8",
                      decimal: str = ".") -> list[dict]:
    """Training examples from a manifest with ``water``, ``fat`` and ``label`` paths (see ``batch.read_manifest``,
    which reads it with ``sep``, ``encoding`` and ``decimal``)."""
    rows = read_manifest(manifest, require_label=True, sep=sep, encoding=encoding, decimal=decimal)
    out = []
    for row in tqdm(rows, desc="training scans", unit="vol", disable=not progress):
        try:
            pair = load_dixon(row["water"], row["fat"])
            labels = load_label_map(row["label"], pair)
        except ScanError as exc:
            raise InputFileError(f"{manifest}: participant {row['participant_id']}: {exc}") from None
        out.append(volume_example(pair.water, pair.fat, pair.affine, labels, config))
    return out


#: label -> the label of the same structure on the other side (1/2 autochthon, 3/4 psoas)
SIDE_SWAP = mirror_table({name: lab for lab, name in LABEL_NAMES.items()})


class RandMirrorSidesd(T.RandomizableTransform, T.MapTransform):
    """Mirror a patch left to right (canonical axis 0) with probability ``prob``, swapping left and right labels.

    A plain flip would put a left label on the patient's right; with the swap the
    patch stays anatomically true, and the network learns both sides alike.
    ``label_keys`` hold label maps (values swapped), ``soft_keys`` one channel per
    label (channels swapped); the other keys are only flipped.
    """

    def __init__(self, keys, prob: float, label_keys=("label",), soft_keys=("soft",)):
        T.MapTransform.__init__(self, keys, allow_missing_keys=True)
        T.RandomizableTransform.__init__(self, prob)
        self.label_keys, self.soft_keys = set(label_keys), set(soft_keys)

    def __call__(self, data):
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        lut = torch.tensor(SIDE_SWAP)
        for key in self.key_iterator(d):
            x = d[key].flip(1)  # (C, X, Y, Z): X is left-right
            if key in self.label_keys:
                x = lut.to(x.device)[x.long()].to(x.dtype)
            elif key in self.soft_keys:
                x = x[list(SIDE_SWAP)]
            d[key] = x
        return d


def augmentations(config: dict, seed: int, patches_per_volume: int, flip_z: float = 0.0, flip_x: float = 0.0):
    """MONAI transforms from an example to augmented patches with an ``image`` key.

    Patches (3 of 4 centred on a muscle voxel), small rotations about the
    craniocaudal axis and scaling, a smooth bias field, contrast (gamma) and
    scale changes of the signal channels, noise and blur; a head-to-foot flip
    with probability ``flip_z``; a left-right mirror with the sided labels
    swapped (:class:`RandMirrorSidesd`) with probability ``flip_x``.
    """
    soft = config.get("label_resampling", "nearest") == "area"
    keys = ["ff", "signal", "label"] + (["soft"] if soft else [])
    roi = tuple(config["roi_size"])
    aug = T.Compose([
        T.SpatialPadd(keys, spatial_size=roi),
        T.RandCropByPosNegLabeld(keys, label_key="label", spatial_size=roi, pos=3, neg=1, num_samples=patches_per_volume),
        T.RandAffined(keys, prob=0.7, rotate_range=(0.05, 0.05, 0.3), scale_range=(0.15, 0.15, 0.1),
                      mode=("bilinear", "bilinear", "nearest") + (("bilinear",) if soft else ()), padding_mode="border"),
        *([T.RandFlipd(keys, prob=flip_z, spatial_axis=2)] if flip_z else []),  # absent at 0: earlier runs reproduce
        *([RandMirrorSidesd(keys, prob=flip_x)] if flip_x else []),
        T.RandBiasFieldd("signal", prob=0.5, coeff_range=(0.0, 0.3)),
        T.RandAdjustContrastd("signal", prob=0.3, gamma=(0.7, 1.5)),
        T.RandScaleIntensityd("signal", factors=0.25, prob=0.5),
        T.RandGaussianNoised(["ff", "signal"], prob=0.3, std=0.02),
        T.RandGaussianSmoothd(["ff", "signal"], prob=0.2, sigma_x=(0.3, 1.0), sigma_y=(0.3, 1.0), sigma_z=(0.2, 0.6)),
        T.ConcatItemsd(["ff", "signal"], "image"),
    ])
    aug.set_random_state(seed=seed)
    return aug


def train(examples: list[dict], settings: TrainSettings, device, init_weights=None, progress: bool = True):
    """Train (or fine-tune from ``init_weights``) on ``examples``; returns ``(network, info)``."""
    set_determinism(seed=settings.seed)
    config = dict(settings.config)
    if init_weights is not None:
        network, config, _ = load_weights(init_weights, device, param="init_weights")
        network.train()
    else:
        network = build_network(config).to(device)
    # record how the examples were made (with settings.config), whatever the initial weights used
    soft = "soft" in examples[0] if examples else config.get("label_resampling") == "area"  # partial-volume targets
    config["label_resampling"] = "area" if soft else "nearest"
    config["input_resampling"] = settings.config.get("input_resampling", "trilinear")
    mirror = settings.config.get("mirror_axes")  # inference only; None: as the initial weights have it
    config["mirror_axes"] = check_mirror_axes((config.get("mirror_axes") or ()) if mirror is None else mirror)
    aug = augmentations(config, settings.seed + 1, settings.patches_per_volume, settings.flip_z, settings.flip_x)
    rng = np.random.default_rng(settings.seed + 2)
    synth = _synth_stream(settings, config, soft) if settings.synth_fraction > 0 else None
    n_patches = settings.volumes_per_step * settings.patches_per_volume
    loss_fn = DiceCELoss(to_onehot_y=not soft, softmax=True, batch=True)
    target_key = "soft" if soft else "label"
    opt = torch.optim.AdamW(network.parameters(), lr=settings.learning_rate, weight_decay=1e-4)
    warmup = max(1, settings.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then cosine decay to 0
        opt, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * min(i, settings.steps) / settings.steps)))
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda")
    losses, start = [], time.perf_counter()
    bar = tqdm(range(settings.steps), desc="training", unit="step", disable=not progress)
    for _ in bar:
        n_synth = int(rng.binomial(n_patches, settings.synth_fraction)) if synth is not None else 0
        n_vol = -(-(n_patches - n_synth) // settings.patches_per_volume) if examples else 0
        patches = [p for i in rng.choice(max(1, len(examples)), n_vol) for p in aug(examples[i])][: n_patches - n_synth]
        patches += [next(synth) for _ in range(n_synth if examples else n_patches)]
        x = torch.stack([p["image"].as_tensor() if hasattr(p["image"], "as_tensor") else p["image"] for p in patches]).to(device)
        y = torch.stack([p[target_key].as_tensor() if hasattr(p[target_key], "as_tensor") else p[target_key] for p in patches]).to(device)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            loss = loss_fn(network(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        losses.append(float(loss.detach()))
        if len(losses) % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    network.eval()
    info = {"steps": settings.steps, "seed": settings.seed, "train_seconds": round(time.perf_counter() - start, 1),
            "final_loss": round(float(np.mean(losses[-50:])), 4), "device": str(device), "config": config,
            "n_examples": len(examples), "init_weights": str(init_weights) if init_weights else None}
    return network, info


def _synth_stream(settings: TrainSettings, config: dict, soft: bool):
    """An endless iterator of domain-randomised patches, made by ``settings.synth_workers`` processes."""
    if not soft:
        raise BackpainEpiError(f"{settings.synth_fraction}: domain-randomised training needs partial-volume targets; "
                               "use label_resampling=area.", param="synth_fraction")
    bank = anatomy_bank(settings.n_anatomies, settings.anatomy_seed, workers=max(1, settings.synth_workers),
                        cache=settings.anatomy_cache, variant=settings.anatomy_variant)
    data = SynthPatches(bank, config, settings.seed + 3, settings.flip_z, fat_gain=settings.synth_fat_gain,
                        fat_leak=settings.synth_fat_leak, flip_x=settings.flip_x,
                        dark_fascia=settings.synth_dark_fascia)
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=settings.synth_workers,
                                         prefetch_factor=4 if settings.synth_workers else None, persistent_workers=False)
    return iter(loader)


def validate(network, config, device, n: int, seed: int, protocol: str = "heldout", progress: bool = True) -> dict:
    """Mean Dice (compartment, psoas) of the full inference pipeline on ``n`` phantoms, on their own grids."""
    seg = Segmenter(network, config, device)
    scores = {"dice_autochthon": [], "dice_psoas": []}
    for ss in tqdm(np.random.SeedSequence(seed).spawn(n), desc="validation", unit="vol", disable=not progress):
        ph = make_phantom(ss, protocol=protocol)
        pred = seg.segment(DixonPair(ph.water.astype(np.float32), ph.fat.astype(np.float32), ph.affine))
        scores["dice_autochthon"].append(np.mean([dice(pred, ph.labels, [1]), dice(pred, ph.labels, [2])]))
        scores["dice_psoas"].append(np.mean([dice(pred, ph.labels, [3]), dice(pred, ph.labels, [4])]))
    return {k: round(float(np.mean(v)), 4) for k, v in scores.items()} | {"n": n, "seed": seed, "protocol": protocol}


def train_segmenter(out, *, settings: TrainSettings | None = None, manifest=None, init_weights=None, device="auto",
                    n_validation: int = 6, validation_seed: int = 555, threads: int | None = None, progress: bool = True,
                    sep: str | None = None, encoding: str = "utf-8", decimal: str = ".") -> dict:
    """Train (or fine-tune) the segmenter and write its weights to ``out``.

    Parameters
    ----------
    out
        Weights file to write (``.pt``).
    settings
        :class:`TrainSettings`; defaults reproduce the shipped weights.
    manifest
        Manifest with a ``label`` column: train on these scans instead of phantoms.
    sep, encoding, decimal
        How the manifest's text is read (see :func:`.batch.read_manifest`).
    init_weights
        Start from these weights (fine-tuning) instead of a random initialisation.
    device
        ``auto``, ``cpu`` or ``cuda``.
    n_validation, validation_seed
        Phantoms (held-out protocol) for the validation Dice recorded in the file.
    threads
        CPU threads for torch (default: torch's choice).

    Returns
    -------
    dict
        The ``info`` stored in the weights file (settings, time, loss, validation Dice).
    """
    settings = settings or TrainSettings()
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device) if isinstance(device, str) else device
    start = time.perf_counter()
    if not manifest and settings.n_phantoms == 0 and settings.synth_fraction == 0:
        raise BackpainEpiError("0: nothing to train on; give phantoms, a manifest or a synth_fraction above 0.", param="n_phantoms")
    examples = (manifest_examples(manifest, settings.config, progress, sep=sep, encoding=encoding, decimal=decimal)
                if manifest else phantom_examples(settings, progress))
    prep_seconds = time.perf_counter() - start
    network, info = train(examples, settings, dev, init_weights, progress)
    info["data_seconds"] = round(prep_seconds, 1)
    info["settings"] = {k: v for k, v in settings.__dict__.items() if k != "config"}
    info["data"] = str(manifest) if manifest else f"{settings.n_phantoms} phantoms, seed {settings.phantom_seed}, protocol {settings.phantom_protocol}"
    if n_validation:
        info["validation"] = validate(network, info["config"], dev, n_validation, validation_seed, progress=progress)
    info["total_seconds"] = round(time.perf_counter() - start, 1)
    save_weights(Path(out), network, info["config"], info)
    return info
