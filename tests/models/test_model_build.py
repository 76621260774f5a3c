"""Every built-in and the commonly used torchvision models build and map images to logits of the right shape."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunecli.errors import ConfigError
from prunecli.models import build_model, list_models, model_spec, torchvision_model_names
from prunecli.models._registry import builtin_models

# Models the project promises to run at 32x32 with 3 and 1 channels (one real forward each, batch 1).
TORCHVISION_LISTED = [
    "resnet18", "resnet34", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "vgg11_bn", "efficientnet_b0",
    "regnet_y_400mf", "densenet121", "vit_b_16",
]


@pytest.mark.parametrize("name", [n for n in builtin_models() if n != "tiny_lm"])  # tiny_lm: test_tiny_lm.py
@pytest.mark.parametrize("in_channels,image_size", [(1, 8), (3, 32), (1, 28)])
def test_builtin_forward_and_backward(name, in_channels, image_size):
    model = build_model(name, in_channels=in_channels, num_classes=7, image_size=image_size)
    out = model(torch.randn(2, in_channels, image_size, image_size))
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", TORCHVISION_LISTED)
@pytest.mark.parametrize("in_channels", [3, 1])
def test_torchvision_model_forward_at_32(name, in_channels):
    model = build_model(name, in_channels=in_channels, num_classes=7, image_size=32).eval()
    with torch.no_grad():
        out = model(torch.randn(1, in_channels, 32, 32))
    assert out.shape == (1, 7)
    assert torch.isfinite(out).all()


def test_torchvision_model_trains_on_8x8_digits_shape():
    model = build_model("resnet18", in_channels=1, num_classes=10, image_size=8)
    out = model(torch.randn(2, 1, 8, 8))
    assert out.shape == (2, 10)


def test_builtins_do_not_shadow_torchvision_names():
    assert set(builtin_models()) == {"mlp", "cnn", "resnet20", "resnet56", "tiny_lm"}
    assert not set(builtin_models()) & set(torchvision_model_names())
    assert list_models() == builtin_models() + torchvision_model_names()
    assert set(TORCHVISION_LISTED) <= set(torchvision_model_names())


@pytest.mark.parametrize("name,depth,params", [("resnet20", 20, 272_474), ("resnet56", 56, 855_770)])
def test_cifar_resnet_depth_and_size(name, depth, params):
    model = build_model(name)
    shortcut_convs = sum(isinstance(m, nn.Conv2d) for n, m in model.named_modules() if "shortcut" in n)
    weighted = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
    assert shortcut_convs == 2  # option B: a 1x1 projection where stages 2 and 3 change shape
    assert weighted - shortcut_convs == depth
    assert sum(p.numel() for p in model.parameters()) == params


def test_small_stem_auto_follows_image_size():
    small = build_model("resnet18", image_size=32)
    large = build_model("resnet18", image_size=64)
    assert (small.conv1.kernel_size, small.conv1.stride) == ((3, 3), (1, 1))
    assert isinstance(small.maxpool, nn.Identity)
    assert (large.conv1.kernel_size, large.conv1.stride) == ((7, 7), (2, 2))
    assert isinstance(large.maxpool, nn.MaxPool2d)
    forced = build_model("resnet18", image_size=32, small_stem=False)
    assert forced.conv1.stride == (2, 2)


def test_in_channels_replaces_first_conv_keeping_its_settings():
    model = build_model("resnet18", in_channels=1, image_size=224)
    assert (model.conv1.in_channels, model.conv1.out_channels) == (1, 64)
    assert (model.conv1.kernel_size, model.conv1.stride, model.conv1.padding) == ((7, 7), (2, 2), (3, 3))
    assert model.conv1.bias is None


@pytest.mark.parametrize("image_size,small_stem,patch", [(32, True, 4), (32, False, 16), (8, True, 1),
                                                        (28, True, 4), (100, False, 10)])
def test_vit_patch_size_divides_the_image(image_size, small_stem, patch):
    with torch.device("meta"):
        model = build_model("vit_b_16", image_size=image_size, small_stem=small_stem, in_channels=1)
    assert model.patch_size == patch
    assert model.conv_proj.in_channels == 1
    assert model.seq_length == (image_size // patch) ** 2 + 1


def test_vgg_small_stem_drops_leading_pools_only_when_needed():
    def pools(model):
        return sum(isinstance(m, nn.MaxPool2d) for m in model.features)

    with torch.device("meta"):
        assert pools(build_model("vgg11", image_size=32)) == 5
        assert pools(build_model("vgg11", image_size=28)) == 4
        assert pools(build_model("vgg11", image_size=8)) == 3


def test_architecture_is_a_function_of_the_arguments():
    first, second = build_model("mobilenet_v2", in_channels=1), build_model("mobilenet_v2", in_channels=1)
    assert {k: v.shape for k, v in first.state_dict().items()} == {k: v.shape for k, v in second.state_dict().items()}


def test_model_spec_rebuilds_the_architecture():
    from omegaconf import OmegaConf

    hidden = OmegaConf.create({"h": [32, 16]}).h
    spec = model_spec("mlp", in_channels=1, image_size=8, hidden=hidden, weights="ignored.pt")
    assert spec == {"name": "mlp", "in_channels": 1, "num_classes": 10, "image_size": 8, "small_stem": True,
                    "hidden": [32, 16]}
    rebuilt = build_model(**spec)
    assert [m.out_features for m in rebuilt.modules() if isinstance(m, nn.Linear)] == [32, 16, 10]


@pytest.mark.parametrize(
    "kwargs,key",
    [
        ({"name": "resnet81"}, "model.name"),
        ({"name": "mlp", "depth": 3}, "model.depth"),
        ({"name": "mlp", "hidden": [0]}, "model.hidden"),
        ({"name": "cnn", "channels": [8, 8, 8]}, "model.channels"),
        ({"name": "resnet18", "small_stem": "maybe"}, "model.small_stem"),
        ({"name": "cnn", "image_size": 0}, "model.image_size"),
        ({"name": "resnet18", "depth": 3}, "model"),
    ],
)
def test_bad_settings_raise_config_error(kwargs, key):
    with pytest.raises(ConfigError) as err:
        build_model(**kwargs)
    assert err.value.key == key


def test_unknown_name_message_lists_builtins_and_suggests():
    with pytest.raises(ConfigError) as err:
        build_model("resnet81")
    message = str(err.value)
    assert "cnn, mlp, resnet20, resnet56, tiny_lm" in message
    assert "any torchvision classification model" in message
    assert "did you mean resnet18" in message
    assert "\n" not in message
