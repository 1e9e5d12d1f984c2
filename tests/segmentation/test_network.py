"""Devices, weights files and their errors."""

import pytest

from backpain_epi.errors import BackpainEpiError, InputFileError
from backpain_epi.segmentation.network import WEIGHTS_ENV, default_weights_path, load_weights, resolve_device


@pytest.mark.parametrize("name, hint", [("cdua", "did you mean 'cuda'"), ("CPUU", "did you mean 'cpu'"), ("atuo", "did you mean 'auto'"), ("gpu", "did you mean 'cuda'")])
def test_a_wrong_device_says_did_you_mean(name, hint):
    with pytest.raises(BackpainEpiError, match=f"^device.*{hint}"):
        resolve_device(name)


def test_cpu_and_auto_resolve():
    import torch

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_cuda_without_a_gpu_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(BackpainEpiError, match="^device cuda: CUDA is not available.*use device=cpu or auto"):
        resolve_device("cuda")


def test_missing_weights_name_the_parameter(tmp_path):
    with pytest.raises(InputFileError, match=f"^weights {tmp_path / 'none.pt'}: segmentation weights not found"):
        load_weights(tmp_path / "none.pt")
    with pytest.raises(InputFileError, match="^init_weights "):
        load_weights(tmp_path / "none.pt", param="init_weights")


def test_a_file_that_is_not_weights_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("hello")
    with pytest.raises(InputFileError, match=f"^weights {bad}: not a segmentation weights file"):
        load_weights(bad)


def test_weights_round_trip_with_their_config(tiny_weights):
    model, config, info = load_weights(tiny_weights)
    assert tuple(config["channels"]) == (4, 8, 16) and info["note"] == "untrained"
    assert not model.training


def test_the_environment_variable_names_the_default_weights(monkeypatch, tmp_path):
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "w.pt"))
    assert default_weights_path() == tmp_path / "w.pt"
    monkeypatch.delenv(WEIGHTS_ENV)
    assert default_weights_path().parts[-3:] == ("models", "segmentation", "unet_phantom.pt")
