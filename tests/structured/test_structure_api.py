"""``prunecli.structure`` as a library: compact a model pruned in your own loop, replay the plan, layering."""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import torch
from torch import nn

import prunecli.structure
from prunecli import build_pruner


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_own_training_loop_compacts_with_pruner_masks():
    model = _cnn()
    x, y = torch.randn(8, 3, 12, 12), torch.randint(0, 10, (8,))
    pruner = build_pruner(model, {"target": "channel", "criterion": "l2", "allocation": "local",
                                  "schedule": {"name": "oneshot", "final_sparsity": 0.5}}, example_inputs=x[:1])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner.on_train_begin()
    for _ in range(3):  # the hook order of prunecli.hooks
        pruner.on_step_begin()
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        pruner.on_before_optimizer_step()
        optimizer.step()
        pruner.on_after_optimizer_step()
        pruner.on_step_end()
    pruner.on_train_end()
    model.eval()
    with torch.no_grad():
        masked = model(x)
    small = copy.deepcopy(model)
    plan = prunecli.structure.compact(small, pruner.masks, x)
    with torch.no_grad():
        assert (small(x) - masked).abs().max() <= 1e-5
    assert masked.abs().max() > 1e-2
    assert small[0].out_channels == 8 and small[3].out_channels == 16 and small[8].in_features == 16
    assert _params(small) < 0.35 * _params(model)
    assert set(plan) == {"history", "cuts"} and sorted(h[0] for h in plan["history"]) == ["0", "3"]
    fresh = prunecli.structure.replay(_cnn().eval(), plan, x[:1])
    fresh.load_state_dict(small.state_dict())
    with torch.no_grad():
        assert (fresh(x) - masked).abs().max() <= 1e-5


def test_channel_groups_name_their_slices_and_refusals():
    model = _cnn().eval()
    groups = prunecli.structure.channel_groups(model, torch.randn(1, 3, 12, 12))
    by_root = {g.root: g for g in groups}
    assert sorted(by_root) == ["0", "3", "8"]
    assert {m.name for m in by_root["0"].site.members} == {"0.weight", "0.bias", "1.weight", "1.bias", "3.weight"}
    assert by_root["8"].site is None and by_root["8"].producers == ("8",)
    assert by_root["8"].reason == "its channels are outputs of the model (at 8)"
    only = prunecli.structure.channel_groups(model, torch.randn(1, 3, 12, 12), selected={"3": model[3]})
    assert [g.root for g in only] == ["3"] and only[0].site is not None


def test_structure_imports_only_primitives():
    """structure sits below the axes and export: it never imports targets, criteria, objectives, export..."""
    allowed = {"prunecli.sites", "prunecli.errors"}
    for path in Path(prunecli.structure.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("prunecli"):
                assert node.module in allowed or node.module.startswith("prunecli.structure"), (path.name, node.module)
