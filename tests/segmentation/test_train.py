"""Training: a tiny network trains, reproduces from its seed, and fine-tunes from annotated scans."""

from dataclasses import replace

import pytest
import torch

from backpain_epi.errors import BackpainEpiError, InputFileError
from backpain_epi.segmentation.network import DEFAULT_CONFIG, load_weights
from backpain_epi.segmentation.train import TrainSettings, train_segmenter

from .conftest import COARSE, TINY_CONFIG

TINY = TrainSettings(steps=2, n_phantoms=2, phantom_protocol=COARSE, config={**DEFAULT_CONFIG, **TINY_CONFIG})


def _state(path):
    return load_weights(path)[0].state_dict()


@pytest.mark.slow
def test_tiny_training_writes_loadable_weights_and_reproduces(tmp_path):
    info = train_segmenter(tmp_path / "a.pt", settings=TINY, device="cpu", n_validation=0, progress=False)
    assert info["steps"] == 2 and info["final_loss"] > 0
    _, config, saved = load_weights(tmp_path / "a.pt")
    assert tuple(config["channels"]) == (4, 8, 16) and saved["settings"]["steps"] == 2
    train_segmenter(tmp_path / "b.pt", settings=TINY, device="cpu", n_validation=0, progress=False)
    a, b = _state(tmp_path / "a.pt"), _state(tmp_path / "b.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    train_segmenter(tmp_path / "c.pt", settings=replace(TINY, seed=1), device="cpu", n_validation=0, progress=False)
    c = _state(tmp_path / "c.pt")
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_fine_tuning_starts_from_the_given_weights_on_labelled_scans(tmp_path, phantom_dir, tiny_weights):
    info = train_segmenter(tmp_path / "ft.pt", settings=replace(TINY, steps=1), manifest=phantom_dir / "manifest.csv",
                           init_weights=tiny_weights, device="cpu", n_validation=0, progress=False)
    assert info["init_weights"] == str(tiny_weights) and info["n_examples"] == 3
    before, after = _state(tiny_weights), _state(tmp_path / "ft.pt")
    assert before.keys() == after.keys() and not all(torch.equal(before[k], after[k]) for k in before)


def test_fine_tuning_needs_label_maps(tmp_path, phantom_dir):
    import pandas as pd

    pd.read_csv(phantom_dir / "manifest.csv").drop(columns="label").to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(InputFileError, match="label"):
        train_segmenter(tmp_path / "x.pt", settings=TINY, manifest=tmp_path / "m.csv", device="cpu", progress=False)


def test_mirror_axes_are_kept_from_the_initial_weights_unless_given(tmp_path, phantom_dir, tiny_weights):
    from backpain_epi.segmentation.network import save_weights

    model, config, info = load_weights(tiny_weights)
    mirrored = save_weights(tmp_path / "xz.pt", model, {**config, "mirror_axes": ("x", "z")}, info)
    common = dict(manifest=phantom_dir / "manifest.csv", device="cpu", n_validation=0, progress=False)
    kept = replace(TINY, steps=1, config={**TINY.config, "mirror_axes": None})  # the CLI's default
    train_segmenter(tmp_path / "kept.pt", settings=kept, init_weights=mirrored, **common)
    assert tuple(load_weights(tmp_path / "kept.pt")[1]["mirror_axes"]) == ("x", "z")
    given = replace(TINY, steps=1, config={**TINY.config, "mirror_axes": "x"})
    train_segmenter(tmp_path / "x.pt", settings=given, init_weights=mirrored, **common)
    assert tuple(load_weights(tmp_path / "x.pt")[1]["mirror_axes"]) == ("x",)
    train_segmenter(tmp_path / "none.pt", settings=replace(TINY, steps=1), init_weights=mirrored, **common)
    assert tuple(load_weights(tmp_path / "none.pt")[1]["mirror_axes"]) == ()  # Python's default: DEFAULT_CONFIG's none


@pytest.mark.parametrize("change, message", [
    ({"synth_fraction": 1.5}, r"^synth_fraction 1\.5: a probability between 0 and 1"),
    ({"flip_x": -0.1}, r"^flip_x -0\.1: a probability between 0 and 1"),
    ({"synth_dark_fascia": "often"}, r"^synth_dark_fascia 'often': a probability between 0 and 1"),
    ({"synth_fat_gain": (3.0, 1.0)}, r"^synth_fat_gain 3 1: the fat/water gain range needs 0 < LO <= HI"),
    ({"synth_fat_leak": 0.9}, r"^synth_fat_leak 0\.9: the fat leak is a share"),
    ({"synth_workers": -1}, r"^synth_workers -1: a whole number of at least 0"),
    ({"n_anatomies": 0}, r"^n_anatomies 0: a whole number of at least 1"),
    ({"n_phantoms": -2}, r"^n_phantoms -2: a whole number of at least 0"),
    ({"steps": 2.5}, r"^steps 2\.5: a whole number of at least 1"),
    ({"learning_rate": 0}, r"^learning_rate 0: must be positive"),
    ({"anatomy_variant": 3}, r"^anatomy_variant 3: the anatomy variant is 1 or 2"),
])
def test_train_settings_refuse_bad_values_at_once_with_their_name(change, message):
    # found from outside: TrainSettings(synth_fraction=1.5) used to be accepted and fail later, in a DataLoader worker
    with pytest.raises(BackpainEpiError, match=message):
        TrainSettings(**change)


def test_train_settings_normalise_what_they_check():
    settings = TrainSettings(synth_fat_gain=[0.74, 3], synth_fraction=1, synth_fat_leak="0.1")
    assert settings.synth_fat_gain == (0.74, 3.0) and settings.synth_fraction == 1.0 and settings.synth_fat_leak == 0.1
    assert replace(settings, steps=5).steps == 5  # replace() checks too, and keeps the rest


def test_training_on_nothing_is_refused_before_any_work(tmp_path):
    with pytest.raises(BackpainEpiError, match=r"^n_phantoms 0: nothing to train on"):
        train_segmenter(tmp_path / "w.pt", settings=replace(TINY, n_phantoms=0), progress=False)
    assert not (tmp_path / "w.pt").exists()
