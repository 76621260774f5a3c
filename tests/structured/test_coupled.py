"""Coupled channel groups: masked and physically compacted models compute the same function."""

from __future__ import annotations

import copy

import pytest
import torch
from _structured import prune, randomized
from torch import nn

from prunecli.models import build_model
from prunecli.structure import compact
from prunecli.targets import CoupledChannel, parse_target

# vit_b_16 (heads, residual stream through LayerNorm and attention, MLP) is in test_transformer_compact.py.
MODELS = ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small",
          pytest.param("vgg11_bn", marks=pytest.mark.slow),
          "efficientnet_b0", "densenet121"]


@pytest.mark.parametrize("name", MODELS)
def test_masked_equals_compact(name):
    torch.manual_seed(0)
    model = randomized(build_model(name, in_channels=3, num_classes=10, image_size=32))
    x = torch.randn(2, 3, 32, 32)
    pruner = prune(model, x)
    with torch.no_grad():
        masked = model(x)
    small = copy.deepcopy(model)
    plan = compact(small, pruner.masks, x[:1])
    with torch.no_grad():
        out = small(x)
    assert plan["history"] and plan["cuts"] == []  # conv/linear/BatchNorm groups: all by Torch-Pruning
    assert masked.abs().max() > 1e-3
    assert (out - masked).abs().max() <= 1e-4
    assert sum(p.numel() for p in small.parameters()) < 0.9 * sum(p.numel() for p in model.parameters())


def test_residual_group_covers_every_coupled_slice():
    model = build_model("resnet18", in_channels=3, num_classes=10, image_size=32).eval()
    pruner = prune(model, torch.randn(1, 3, 32, 32))
    site = next(s for s in pruner.sites.values() if s.member("layer1.0.conv2.weight"))
    names = {m.name for m in site.members}
    assert {"conv1.weight", "bn1.weight", "bn1.bias", "layer1.0.bn2.bias", "layer1.1.conv2.weight",
            "layer1.0.conv1.weight", "layer2.0.downsample.0.weight"} <= names
    kept = pruner.masks["bn1.bias"]
    assert torch.equal(kept, pruner.masks["layer1.0.bn2.bias"])
    assert torch.equal(pruner.masks["layer1.1.conv1.weight"].any(dim=(0, 2, 3)), kept)  # consumer input columns
    assert int(kept.sum()) == 32


def test_round_to_keeps_multiples_and_global_allocation_is_exact():
    model = randomized(build_model("resnet18", in_channels=3, num_classes=10, image_size=32))
    x = torch.randn(2, 3, 32, 32)
    pruner = prune(model, x, 0.6, target={"name": "channel", "round_to": 8}, allocation="global")
    for site in pruner.sites.values():
        assert int(pruner._keep[site.name].sum()) % 8 == 0
    small = copy.deepcopy(model)
    compact(small, pruner.masks, x[:1])
    with torch.no_grad():
        assert (small(x) - model(x)).abs().max() <= 1e-4
    assert all(m.out_channels % 8 == 0 for m in small.modules() if isinstance(m, nn.Conv2d))


def test_parse_channel_target():
    assert parse_target("channel") == CoupledChannel()
    assert parse_target({"name": "channel", "round_to": 8}).round_to == 8
