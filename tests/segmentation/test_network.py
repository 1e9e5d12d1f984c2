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


def _by_position(x, network=None):
    """Logits of a network that labels by position alone: autochthon left (1) on the left half of the x axis
    (RAS: low x is the patient's right, so the upper half), right (2) on the other half; mirror-equivariant."""
    import torch

    logits = torch.zeros(x.shape[0], 5, *x.shape[2:])
    half = x.shape[2] // 2
    logits[:, 1, half:] = 5.0
    logits[:, 2, :half] = 5.0
    return logits


def test_mirroring_leaves_a_mirror_equivariant_network_alone():
    import torch

    from backpain_epi.segmentation.network import MirrorInferer

    x = torch.rand(1, 3, 8, 6, 4)
    plain = torch.softmax(_by_position(x), 1)
    for axes in (("x",), ("x", "z"), ("x", "y", "z")):
        mirrored = torch.softmax(MirrorInferer(_by_position, axes)(x, None), 1)
        assert torch.allclose(mirrored, plain, atol=1e-6), axes


def test_mirroring_swaps_sides_and_averages():
    import torch

    from backpain_epi.segmentation.network import MirrorInferer

    def always_left(x, network):  # a network that calls every voxel the left autochthon
        logits = torch.full((x.shape[0], 5, *x.shape[2:]), -20.0)
        logits[:, 1] = 20.0
        return logits

    x = torch.rand(1, 3, 8, 6, 4)
    p = torch.softmax(MirrorInferer(always_left, ("x",))(x, None), 1)
    assert torch.allclose(p[:, 1], torch.full_like(p[:, 1], 0.5), atol=1e-5)  # once as left, once swapped to right
    assert torch.allclose(p[:, 2], torch.full_like(p[:, 2], 0.5), atol=1e-5)
    p = torch.softmax(MirrorInferer(always_left, ("z",))(x, None), 1)  # head-foot: no side swap
    assert torch.allclose(p[:, 1], torch.ones_like(p[:, 1]), atol=1e-5)


def test_mirror_axes_are_checked():
    from backpain_epi.segmentation.network import DEFAULT_CONFIG, check_mirror_axes, make_inferer

    assert check_mirror_axes("zx") == ("x", "z")
    with pytest.raises(BackpainEpiError, match=r"^mirror_axes: give distinct axes from x, y, z .*got \['x', 'w'\]"):
        check_mirror_axes(("x", "w"))
    with pytest.raises(BackpainEpiError, match="distinct"):
        check_mirror_axes("xx")
    assert type(make_inferer(dict(DEFAULT_CONFIG))).__name__ == "SlidingWindowInferer"
    assert type(make_inferer({**DEFAULT_CONFIG, "mirror_axes": ["x"]})).__name__ == "MirrorInferer"
