"""Weights of the same architecture with another stem or head load (as timm's ``pretrained`` + ``num_classes``):
the tensors whose shapes differ keep their fresh initialisation and are named in a log line; another
architecture is still refused."""

from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import save_file

from prunecli._torchvision import import_torchvision
from prunecli.errors import ConfigError
from prunecli.models import build_model


@pytest.fixture(scope="module")
def imagenet_resnet18(tmp_path_factory):
    """A random torchvision resnet18 (3-channel 7x7 stem, 1000 classes) saved as .safetensors: no download."""
    torch.manual_seed(3)
    model = import_torchvision().models.resnet18(weights=None)
    path = tmp_path_factory.mktemp("w") / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path, model.state_dict()


def test_imagenet_resnet18_loads_into_a_small_one_channel_resnet18(imagenet_resnet18, caplog):
    path, source = imagenet_resnet18
    torch.manual_seed(0)
    fresh = build_model("resnet18", in_channels=1, num_classes=10, image_size=8).state_dict()
    torch.manual_seed(0)  # same init as `fresh`, so kept tensors can be compared with it
    with caplog.at_level(logging.INFO, logger="prunecli.models.weights"):
        model = build_model("resnet18", in_channels=1, num_classes=10, image_size=8, weights=str(path))
    state = model.state_dict()
    differ = ["conv1.weight", "fc.weight", "fc.bias"]
    for key in differ:
        assert torch.equal(state[key], fresh[key]), key
    loaded = [k for k in state if k not in differ]
    assert len(loaded) == 119
    assert all(torch.equal(state[k], source[k]) for k in loaded)
    assert ("model.weights: kept fresh init for 3 tensors whose shapes differ: conv1.weight (64,3,7,7) vs "
            "(64,1,3,3), fc.weight (1000,512) vs (10,512), fc.bias (1000) vs (10)") in caplog.text


def test_another_architecture_is_still_refused(imagenet_resnet18):
    path, _ = imagenet_resnet18
    with pytest.raises(ConfigError) as err:
        build_model("resnet34", in_channels=1, num_classes=10, image_size=8, weights=str(path))
    assert err.value.key == "model.weights" and "missing keys layer1.2.conv1.weight" in str(err.value)


def test_more_than_half_the_tensors_differing_is_refused(tmp_path):
    path = tmp_path / "wide.safetensors"
    save_file(build_model("cnn", in_channels=1, image_size=8, channels=[16, 32]).state_dict(), str(path))
    with pytest.raises(ConfigError) as err:
        build_model("cnn", in_channels=1, image_size=8, weights=str(path))
    assert err.value.key == "model.weights"
    assert "tensors differ, more than a stem and a head" in str(err.value)
