"""The channel target's sites and masks and compaction's removal plans equal saved expectations.

``golden_channel.json`` was written by this file (``python tests/structured/test_golden.py --write``) before
compaction moved to :mod:`prunecli.structure`; any change to which slices are coupled, which units a mask
removes or what a compact export's plan says shows up here as a digest mismatch naming the case.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from _structured import Block
from torch import nn

from prunecli.config import build_pruner
from prunecli.models import build_model
from prunecli.structure import compact

GOLDEN = Path(__file__).with_name("golden_channel.json")


class Transformer(nn.Module):
    """Two blocks, a bare positional parameter and a final LayerNorm."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(8, 32)
        self.pos = nn.Parameter(torch.randn(1, 6, 32) * 0.5)
        self.blocks = nn.Sequential(Block(32, 4), Block(32, 4))
        self.norm = nn.LayerNorm(32)
        self.head = nn.Linear(32, 5)

    def forward(self, x):
        return self.head(self.norm(self.blocks(self.embed(x) + self.pos)).mean(1))


class GroupNormNet(nn.Module):
    """A residual stream and a bottleneck through GroupNorm, and a concatenation."""

    def __init__(self):
        super().__init__()
        self.conv1, self.gn1 = nn.Conv2d(3, 16, 3, padding=1), nn.GroupNorm(4, 16)
        self.conv2, self.gn2 = nn.Conv2d(16, 24, 3, padding=1), nn.GroupNorm(4, 24)
        self.conv3, self.gn3 = nn.Conv2d(24, 16, 1), nn.GroupNorm(2, 16)
        self.side = nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(24, 5)

    def forward(self, x):
        h = torch.relu(self.gn1(self.conv1(x)))
        h = torch.relu(h + self.gn3(self.conv3(torch.relu(self.gn2(self.conv2(h))))))
        return self.fc(torch.cat([h, self.side(h)], 1).mean((2, 3)))


class Skips(nn.Module):
    """Groups masks cannot make exact: a norm without affine parameters, a grouped convolution, a softmax over
    channels, model outputs."""

    def __init__(self):
        super().__init__()
        self.conv1, self.gn = nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(2, 8, affine=False)
        self.conv2, self.conv3 = nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.Conv2d(8, 8, 1)
        self.conv4, self.conv5 = nn.Conv2d(8, 8, 1), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        h = self.conv2(self.gn(self.conv1(x)))
        h = self.conv4(torch.softmax(self.conv3(torch.relu(h)), dim=1))
        return self.conv5(torch.relu(h)).mean((2, 3))


def _cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def _resnet18() -> nn.Module:
    return build_model("resnet18", in_channels=3, num_classes=10, image_size=32)


def _mobilenet_v2() -> nn.Module:
    return build_model("mobilenet_v2", in_channels=3, num_classes=10, image_size=32)


# name: (model builder, input shape, pruner config, traced on example inputs?)
CASES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], dict[str, Any], bool]] = {
    "resnet18": (_resnet18, (2, 3, 32, 32), {}, True),
    "resnet18_round8_global": (_resnet18, (2, 3, 32, 32), {"target": {"name": "channel", "round_to": 8},
                                                           "allocation": "global"}, True),
    "mobilenet_v2": (_mobilenet_v2, (2, 3, 32, 32), {}, True),
    "transformer": (Transformer, (2, 6, 8), {}, True),
    "transformer_heads_false": (Transformer, (2, 6, 8), {"target": {"name": "channel", "heads": False}}, True),
    "transformer_head_target": (Transformer, (2, 6, 8), {"target": "head"}, True),
    "groupnorm": (GroupNormNet, (2, 3, 8, 8), {"allocation": "global"}, True),
    "skips": (Skips, (2, 3, 8, 8), {}, True),
    "cnn_no_example_inputs": (_cnn, (2, 3, 8, 8), {}, False),
    "resnet18_no_example_inputs": (_resnet18, (2, 3, 32, 32), {}, False),
}


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def record(case: str) -> dict[str, Any]:
    """Sites (member names), skipped layers, masks (shape, kept count, digest) and the compaction plan."""
    build, shape, cfg, traced = CASES[case]
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    pruner = build_pruner(model, {"target": "channel", "criterion": "l2", "allocation": "local",
                                  "schedule": {"name": "oneshot", "final_sparsity": 0.5}, **cfg},
                          example_inputs=x[:1] if traced else None)
    pruner.update_masks(0.5)
    masks = {name: [list(m.shape), int(m.sum()), _digest(m.flatten().int().tolist())]
             for name, m in sorted(pruner.masks.items())}
    plan = compact(copy.deepcopy(model), pruner.masks, x[:1])
    return {"sites": {name: [m.name for m in site.members] for name, site in pruner.sites.items()},
            "skipped": dict(pruner.skipped), "masks": masks,
            "plan": {"history": len(plan["history"]), "cuts": len(plan["cuts"]), "digest": _digest(plan)}}


@pytest.mark.parametrize("case", sorted(CASES))
def test_channel_target_and_compaction_match_saved_expectations(case):
    expected = json.loads(GOLDEN.read_text())[case]
    got = record(case)
    assert got["sites"] == expected["sites"]
    assert got["skipped"] == expected["skipped"]
    assert got["masks"] == expected["masks"]
    assert got["plan"] == expected["plan"]


def _write() -> None:
    """The expectations as JSON, one line per site, skipped layer and mask (readable diffs)."""
    cases = []
    for case in sorted(CASES):
        sections = []
        for section, values in sorted(record(case).items()):
            rows = ",\n".join(f"   {json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(values.items()))
            sections.append(f"  {json.dumps(section)}: {{\n{rows}\n  }}" if rows else f"  {json.dumps(section)}: {{}}")
        cases.append(f" {json.dumps(case)}: {{\n" + ",\n".join(sections) + "\n }")
    GOLDEN.write_text("{\n" + ",\n".join(cases) + "\n}\n")


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    _write()
