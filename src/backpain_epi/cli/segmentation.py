"""Command-line verbs of the segmentation stage, added to ``backpain-epi`` by :mod:`backpain_epi.cli.main`.

Heavy libraries are imported inside the command bodies, so ``backpain-epi --help`` stays quick.
Shared options (``--dictionary``, ``--sep``, ...) come from :mod:`backpain_epi.cli.options`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from ..errors import BackpainEpiError, InputFileError
from .options import DICTIONARY as _DICTIONARY, refuse_unread_table_options, text_table, wide_pandas

_PATH = click.Path(path_type=Path)
_DEVICE = click.option("--device", default="auto", show_default=True,
                       help="auto (CUDA if available), cpu, cuda or cuda:N. Mixed precision on CUDA.")
_WEIGHTS = click.option("--weights", type=_PATH, default=None,
                        help="Network weights (.pt); default: models/segmentation/unet_phantom.pt of the checkout.")
_WORKERS = click.option("--workers", type=int, default=None, help="Run on a local Dask cluster with N worker processes.")


@click.command("phantoms")
@click.option("--n", "n", type=int, default=10, show_default=True, help="Number of phantoms.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed; phantom i depends only on (seed, i).")
@click.option("--out", type=_PATH, required=True, help="Folder for images/, truth/, manifest.csv, truth_exposures.csv.")
@click.option("--protocol", type=click.Choice(["full", "train", "heldout"]), default="full", show_default=True,
              help="Spacing and orientation ranges (train leaves out the extremes).")
@click.option("--family", type=click.Choice(["training", "independent"]), default="training", show_default=True,
              help="training: the generator the network was trained on; independent: the evaluation-only generator.")
@click.option("--targets", type=_PATH, default=None,
              help="Table with participant_id, lmm_ml, intermat_ml, imf_pct: one phantom per row carrying those "
                   "exposures (for the imaged slab); --n is then ignored.")
@text_table
def phantoms(n, seed, out, protocol, family, targets, sep, encoding, decimal):
    """Write synthetic lumbar Dixon phantoms with true label maps and true exposures."""
    if targets is None:
        refuse_unread_table_options("--targets")
    # lazy: `backpain-epi --help` must not import pandas, PyMC or torch
    from ..dictionary import load_dictionary
    from ..segmentation.phantom import TRUTH_EXPOSURES_FILE, write_phantoms
    from ..tableio import read_table

    table = None
    if targets is not None:
        table = read_table(targets, sep=sep, encoding=encoding, decimal=decimal)
        dd = load_dictionary()
        missing = [c for c in (dd.id_column, *dd.primary_exposures) if c not in table.columns]
        if missing:
            raise InputFileError(f"--targets {targets}: missing column(s) {', '.join(missing)}.")
    manifest = write_phantoms(out, n, seed, protocol=protocol, targets=table, family=family)
    click.echo(f"Wrote {n if table is None else len(table)} phantoms; manifest {manifest}, truth {out / TRUTH_EXPOSURES_FILE}.")


@click.command("train-segmenter")
@click.option("--out", type=_PATH, required=True, help="Weights file to write (.pt); with --engine nnunet, the model folder to write.")
@click.option("--manifest", type=_PATH, default=None, help="Fine-tune on these scans (manifest with a label column) instead of phantoms.")
@click.option("--init-weights", type=_PATH, default=None, help="Start from these weights (fine-tuning).")
@click.option("--steps", type=int, default=None, help="Optimiser steps [default: 2000].")
@click.option("--n-phantoms", type=int, default=None, help="Training phantoms [default: 40].")
@click.option("--learning-rate", type=float, default=None, help="Peak learning rate [default: 0.003].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of initialisation, patches and augmentation.")
@click.option("--n-validation", type=int, default=6, show_default=True, help="Held-out phantoms for the validation Dice.")
@click.option("--threads", type=int, default=None, help="CPU threads for torch (1 is fastest on a busy 2-core machine).")
@click.option("--label-resampling", type=click.Choice(["area", "nearest"]), default="area", show_default=True,
              help="Training targets on the network grid: covered fraction per voxel (area) or the label at its centre (nearest).")
@click.option("--input-resampling", type=click.Choice(["area", "trilinear"]), default="area", show_default=True,
              help="Water and fat to the network grid: partial volume (area) or sampled at voxel centres (trilinear).")
@click.option("--synth-fraction", type=float, default=0.0, show_default=True,
              help="Share of the patches that are domain-randomised (appearance, geometry and acquisition drawn anew per "
                   "patch from anatomies of a wide habitus; see the model card).")
@click.option("--n-anatomies", type=int, default=80, show_default=True, help="Anatomies the domain-randomised patches come from.")
@click.option("--anatomy-seed", type=int, default=2000, show_default=True, help="Seed of those anatomies.")
@click.option("--synth-workers", type=int, default=1, show_default=True, help="Processes making domain-randomised patches.")
@click.option("--anatomy-cache", type=_PATH, default=None, help="Folder keeping the drawn anatomies between runs.")
@click.option("--anatomy-variant", type=click.Choice(["1", "2"]), default="1", show_default=True,
              help="Anatomies: 1 the wide habitus; 2 also InterMAT from the core to the edge and along septa.")
@click.option("--flip-z", type=float, default=0.0, show_default=True,
              help="Probability of mirroring a training patch head to foot (the phantoms' psoas grows cranially).")
@click.option("--flip-x", type=float, default=0.0, show_default=True,
              help="Probability of mirroring a training patch left to right, with left and right labels swapped.")
@click.option("--synth-fat-gain", type=(float, float), default=(0.74, 1.35), show_default=True, metavar="LO HI",
              help="Range of the domain-randomised patches' fat/water signal gain (log-uniform); 0.74 3 also covers "
                   "T1-weighted gradient-echo Dixon, where fat is 1.5-3x brighter than muscle water per proton.")
@click.option("--synth-fat-leak", type=float, default=0.0, show_default=True,
              help="Largest share of the fat signal leaking into the water image in domain-randomised patches.")
@click.option("--synth-dark-fascia", type=float, default=0.0, show_default=True,
              help="Probability that a domain-randomised patch draws the fascia round the back muscles dark in both "
                   "images (collagen with a short T2*), instead of as a fatty-bright sheath.")
@click.option("--mirror-axes", default=None,
              help="Test-time mirroring the weights ask for at inference: RAS axes among x, y, z (e.g. xz: the softmax "
                   "averaged over the 4 mirrors, the left-right ones with the sides swapped back), or none "
                   "[default: as the --init-weights have it; none without them].")
@click.option("--engine", type=click.Choice(["builtin", "nnunet"]), default="builtin", show_default=True,
              help="builtin: the package's UNet (--out is a .pt file); nnunet: write an nnU-Net v2 raw dataset from "
                   "--manifest or --n-phantoms phantoms, plan, preprocess and train it (--out is the model folder for "
                   "segment --engine nnunet --model).")
@click.option("--configuration", default="3d_fullres", show_default=True, help="--engine nnunet: the nnU-Net configuration.")
@click.option("--fold", default="0", show_default=True, help="--engine nnunet: the fold to train (0-4, or all).")
@click.option("--trainer", default="nnUNetTrainer", show_default=True,
              help="--engine nnunet: the nnU-Net trainer (nnUNetTrainer_Tiny: 1 epoch of 3 iterations, for a smoke test).")
@click.option("--work-dir", type=_PATH, default=None,
              help="--engine nnunet: folder for nnUNet_raw, nnUNet_preprocessed and nnUNet_results (default: temporary).")
@click.option("--base-features", type=int, default=None, help="--engine nnunet: features of the first stage (nnU-Net: 32).")
@_DEVICE
@text_table
def train_segmenter_command(out, manifest, init_weights, steps, n_phantoms, learning_rate, seed, n_validation, threads,
                            label_resampling, input_resampling, synth_fraction, n_anatomies, anatomy_seed, synth_workers,
                            anatomy_cache, anatomy_variant, flip_z, flip_x, synth_fat_gain, synth_fat_leak, synth_dark_fascia, mirror_axes,
                            engine,
                            configuration, fold, trainer, work_dir, base_features, device,
                            sep, encoding, decimal):
    """Train the segmentation network on phantoms, or fine-tune it on annotated scans (or train an nnU-Net)."""
    if manifest is None:
        refuse_unread_table_options("--manifest")
    # lazy: `backpain-epi --help` must not import pandas, PyMC or torch
    from ..segmentation.network import check_mirror_axes
    from ..segmentation.train import TrainSettings, train_segmenter

    if engine == "nnunet":
        # lazy: `backpain-epi --help` must not import pandas, PyMC or torch
        from ..segmentation.engines import EngineSpec

        EngineSpec(engine="nnunet").engine_class()  # the extra is installed, or say how to install it
        # lazy: `backpain-epi --help` must not import pandas, PyMC or torch
        from ..segmentation.nnunet import train_nnunet

        model = train_nnunet(out, manifest=manifest, n_phantoms=None if manifest else (n_phantoms or 40), phantom_seed=seed,
                             configuration=configuration, fold="all" if fold == "all" else _int_option("--fold", fold),
                             trainer=trainer, device=device, work_dir=work_dir,
                             base_features=base_features, sep=sep, encoding=encoding, decimal=decimal)
        click.echo(f"Wrote the nnU-Net model folder {model}; segment with: backpain-epi segment --engine nnunet --model {model} ...")
        return

    # TrainSettings checks every value (the error names its flag here)
    changes = {k: v for k, v in {"steps": steps, "n_phantoms": n_phantoms, "learning_rate": learning_rate}.items() if v is not None}
    changes.update(synth_fraction=synth_fraction, n_anatomies=n_anatomies, anatomy_seed=anatomy_seed,
                   synth_workers=synth_workers, anatomy_cache=str(anatomy_cache) if anatomy_cache else None, flip_z=flip_z, flip_x=flip_x,
                   anatomy_variant=int(anatomy_variant), synth_fat_gain=synth_fat_gain, synth_fat_leak=synth_fat_leak,
                   synth_dark_fascia=synth_dark_fascia)
    base = TrainSettings(seed=seed)
    mirror = None if mirror_axes is None else check_mirror_axes("" if mirror_axes == "none" else mirror_axes, "--mirror-axes")
    settings = replace(base, config={**base.config, "label_resampling": label_resampling, "input_resampling": input_resampling,
                                     "mirror_axes": mirror}, **changes)
    info = train_segmenter(out, settings=settings, manifest=manifest, init_weights=init_weights, device=device,
                           n_validation=n_validation, threads=threads, sep=sep, encoding=encoding, decimal=decimal)
    val = info.get("validation", {})
    click.echo(f"Wrote {out} ({info['steps']} steps, {info['total_seconds']:.0f} s). "
               + (f"Validation Dice: autochthon {val['dice_autochthon']:.3f}, psoas {val['dice_psoas']:.3f}." if val else ""))


_ENGINE = click.option("--engine", type=click.Choice(["builtin", "nnunet", "totalsegmentator", "labels"]), default="builtin",
                       show_default=True, help="builtin: the package's UNet; nnunet: your trained nnU-Net v2 (--model); "
                       "totalsegmentator: total_mr with local weights; labels: existing label maps (the manifest's label column).")
_MIRROR = click.option("--mirror-axes", default=None,
                       help="--engine builtin: test-time mirroring instead of the weights' own: axes among x, y, z (e.g. xz) "
                            "or none (one pass; the shipped weights mirror on xz, 4 passes). The SEs are then uncalibrated.")
_ERODE = click.option("--erode", type=int, default=0, show_default=True,
                      help="Erode each compartment by N voxels in-plane before measuring its fat fraction and lean/InterMAT split "
                           "(masks drawn on the fascia include partial-volume fat; 1 is a good choice for other tools' masks).")


@click.command("segment")
@click.option("--manifest", type=_PATH, required=True,
              help="CSV with participant_id, water, fat (NIfTI paths, relative to the CSV), and label for --engine labels.")
@click.option("--out", type=_PATH, required=True, help="Output folder: labels/, exposures.csv, failures.csv.")
@_ENGINE
@click.option("--model", type=_PATH, default=None, help="--engine nnunet: the trained model folder (dataset.json, plans.json, fold_*/).")
@click.option("--folds", default=None, help="--engine nnunet: comma-separated folds to ensemble, or all (default: every fold with a checkpoint).")
@click.option("--checkpoint", default="checkpoint_final.pth", show_default=True, help="--engine nnunet: checkpoint file in each fold folder.")
@click.option("--label-scheme", default=None,
              help="How label IDs map to ours: backpain-epi, totalsegmentator-total_mr or a scheme .yaml "
                   "(--engine labels; --engine nnunet defaults to its dataset.json names).")
@_ERODE
@_DEVICE
@click.option("--batch-size", type=int, default=4, show_default=True, help="Patches per forward pass of the sliding window.")
@_MIRROR
@_WORKERS
@click.option("--scheduler", default=None, help="Address of a Dask scheduler (tcp://host:8786) to run on.")
@_WEIGHTS
@_DICTIONARY
@text_table
def segment(manifest, out, engine, model, folds, checkpoint, label_scheme, erode, device, batch_size, mirror_axes, workers,
            scheduler, weights, dictionary_path, sep, encoding, decimal):
    """Segment the back muscles of every scan in MANIFEST and compute the exposures (resumable)."""
    # lazy: `backpain-epi --help` must not import pandas, PyMC or torch
    from ..dictionary import load_dictionary
    from ..segmentation.batch import segment_manifest
    from ..segmentation.engines import EngineSpec
    from ..segmentation.output import EXPOSURES_FILE, FAILURES_FILE

    spec = EngineSpec(engine=engine, weights=str(weights) if weights else None, model=str(model) if model else None,
                      folds=_parse_folds(folds), checkpoint=checkpoint, label_scheme=label_scheme, device=device,
                      batch_size=batch_size, mirror_axes=mirror_axes)
    result = segment_manifest(manifest, out, engine=spec, erode=erode, workers=workers,
                              scheduler=scheduler, dictionary=load_dictionary(dictionary_path), sep=sep, encoding=encoding,
                              decimal=decimal)
    flagged = int(result.exposures["qc_flag"].sum()) if len(result.exposures) else 0
    click.echo(f"Segmented {result.n_processed} scan(s), skipped {result.n_skipped} already done: "
               f"{len(result.exposures)} in {out / EXPOSURES_FILE} ({flagged} QC-flagged), "
               f"{len(result.failures)} in {out / FAILURES_FILE}.")


@click.command("evaluate-segmenter")
@click.option("--out", type=_PATH, required=True, help="Folder for the phantoms, the segmentation and the scores.")
@click.option("--n", "n", type=int, default=50, show_default=True, help="Held-out phantoms to draw per family.")
@click.option("--seed", type=int, default=777, show_default=True, help="Seed of the held-out phantoms (not used in training).")
@click.option("--family", type=click.Choice(["both", "training", "independent"]), default="both", show_default=True,
              help="Phantom family: the training generator's held-out phantoms, the independent generator's, or both.")
@click.option("--manifest", type=_PATH, default=None, help="Evaluate on these scans (with a label column) instead of phantoms.")
@click.option("--truth", type=_PATH, default=None, help="True exposures of the --manifest scans.")
@_ENGINE
@click.option("--model", type=_PATH, default=None, help="--engine nnunet: the trained model folder.")
@click.option("--label-scheme", default=None, help="--engine labels / nnunet: how label IDs map to ours (see segment --help).")
@_ERODE
@_WEIGHTS
@_MIRROR
@_DEVICE
@_WORKERS
@text_table
def evaluate_segmenter_command(out, n, seed, family, manifest, truth, engine, model, label_scheme, erode, weights, mirror_axes,
                               device, workers, sep, encoding, decimal):
    """Score a segmentation engine on held-out phantoms of both families: Dice and exposure errors, pass/fail per target.

    With --engine labels the phantoms' own true label maps are scored: the floor that
    partial volume and noise leave in the exposures.
    """
    if manifest is None and truth is None:
        refuse_unread_table_options("--manifest and --truth")
    # lazy: `backpain-epi --help` must not import pandas, PyMC or torch
    from ..segmentation.engines import EngineSpec
    from ..segmentation.evaluate import evaluate_segmenter

    spec = EngineSpec(engine=engine, weights=str(weights) if weights else None, model=str(model) if model else None,
                      label_scheme=label_scheme, device=device, mirror_axes=mirror_axes)
    scores, summary = evaluate_segmenter(out, n=n, seed=seed, family=family, manifest=manifest, truth=truth, engine=spec,
                                         erode=erode, workers=workers, sep=sep, encoding=encoding, decimal=decimal)
    with wide_pandas():
        click.echo(f"{len(scores)} scan(s) scored; per scan: {out / 'evaluation.csv'}")
        click.echo(summary.to_string(index=False))
    if (summary["result"] != "pass").any():
        raise SystemExit(1)


def _parse_folds(folds):
    if not folds:
        return None
    if str(folds).strip() == "all":
        return ("all",)
    return tuple(_int_option("--folds", f, "comma-separated fold numbers or all, e.g. --folds 0,1,2") for f in str(folds).split(","))


def _int_option(option: str, value, expected: str = "a whole number"):
    try:
        return int(value)
    except ValueError:
        raise BackpainEpiError(f"{option} {value}: expected {expected}.") from None


COMMANDS: list[click.Command] = [phantoms, train_segmenter_command, segment, evaluate_segmenter_command]
