"""Coupled channel pruning on torchvision classifiers: exact after compaction, or refused in one line.

A fast subset runs by default; the test over every classifier (``scripts/bench_torchvision_structured.py``'s
per-model check, in a subprocess with time and memory limits) is marked ``slow`` and runs with
``PRUNECLI_SLOW=1`` or ``-m slow``.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from _structured import prune, randomized
from torch import nn

from prunecli.checkpoint import Checkpoint, model_from_spec
from prunecli.errors import ConfigError
from prunecli.export import compact as compact_export
from prunecli.export import export
from prunecli.models.torchvision_models import torchvision_model_names
from prunecli.structure import _graph, channel_groups, compact, output_gap
from prunecli.structure._compact import check_widths
from prunecli.structure._groups import out_of_range

SCRIPT = Path(__file__).parents[2] / "scripts" / "bench_torchvision_structured.py"


def spec(name: str, size: int = 32) -> dict:
    return {"config": {"_target_": "prunecli.models.build_model", "_partial_": True, "name": name},
            "in_channels": 3, "num_classes": 10, "image_size": size}


def pruned(name: str, size: int = 32):
    torch.manual_seed(0)
    model = randomized(model_from_spec(spec(name, size)))
    x = torch.randn(2, 3, size, size)
    return model, x, prune(model, x)


@pytest.mark.parametrize("name, grouped", [("mnasnet0_5", False), ("squeezenet1_0", False),
                                           ("regnet_x_400mf", True), ("resnext50_32x4d", True),
                                           ("convnext_tiny", False)])
def test_small_classifiers_compact_exactly(name, grouped):
    torch.set_num_threads(1)
    model, x, pruner = pruned(name)
    small = copy.deepcopy(model)
    compact(small, pruner.masks, x[:1])
    with torch.no_grad():
        diff, scale = output_gap(model(x), small(x))
    assert diff <= 1e-5 * scale and scale > 0
    dense, left = (sum(p.numel() for p in m.parameters()) for m in (model, small))
    assert left < 0.75 * dense  # convnext_tiny too: its LayerNorm2d groups are compacted (CountedLayerNorm2d)
    assert not any("grouped convolution" in r for r in pruner.skipped.values())
    groups = [(a.groups, b.groups) for a, b in zip(model.modules(), small.modules())
              if isinstance(a, nn.Conv2d) and 1 < a.groups < a.in_channels]  # grouped, not depthwise
    assert bool(groups) == grouped and all(1 <= after < before for before, after in groups)  # whole groups went


def test_shufflenet_is_pruned_or_refused_in_one_line():
    torch.set_num_threads(1)
    try:
        model, x, pruner = pruned("shufflenet_v2_x0_5")
    except ConfigError as err:  # the channel shuffle defeats the graph: one line naming why
        assert "\n" not in str(err) and "pruner.target" in str(err)
        return
    small = copy.deepcopy(model)
    compact(small, pruner.masks, x[:1])
    with torch.no_grad():
        diff, scale = output_gap(model(x), small(x))
    assert diff <= 1e-5 * scale


def test_mnasnet_compact_export_reloads(tmp_path):
    """safetensors drops the state dict's metadata; MNASNet's loader needs its version (2)."""
    torch.set_num_threads(1)
    model, x, pruner = pruned("mnasnet0_5")
    ckpt = Checkpoint(tmp_path / "ckpt", {"model": spec("mnasnet0_5"), "config": {"dataset": {"name": "digits"}}},
                      model.state_dict(), pruner.masks)
    result = export(ckpt, "compact", tmp_path / "model.safetensors")
    assert result["max_rel_diff"] <= 1e-5 and result["params_compact"] < result["params_dense"]
    small = compact_export.load(tmp_path / "model.safetensors")
    with torch.no_grad():
        diff, scale = output_gap(model(x), small(x))
    assert diff <= 1e-5 * scale


def test_positions_beyond_a_parameter_skip_the_group():
    params = {"fc.weight": nn.Parameter(torch.zeros(4, 3))}
    assert out_of_range({("fc.weight", 0): {0: 0, 3: 1}}, params, 2) is None
    reason = out_of_range({("fc.weight", 1): {0: 0, 5: 1}}, params, 2)
    assert "beyond fc.weight's size 3 along dim 1 (max 5)" in reason
    assert "beyond the root's 2" in out_of_range({("fc.weight", 0): {0: 0, 1: 2}}, params, 2)


def test_compaction_that_removes_kept_slices_is_refused():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    masks = {"0.weight": torch.tensor([[True] * 3, [True] * 3, [False] * 3, [True] * 3])}
    with torch.no_grad():
        model[0].weight = nn.Parameter(model[0].weight[:3])  # keeps 3 rows: what the mask keeps
    check_widths(model, shapes, masks)
    with torch.no_grad():
        model[0].weight = nn.Parameter(model[0].weight[:2])
    with pytest.raises(ConfigError, match=r"0\.weight would keep 2 of 4 slices along dim 0 where its mask keeps 3"):
        check_widths(model, shapes, masks)
    model[2].weight = nn.Parameter(model[2].weight[:, :3])  # no mask: no slice may go
    with pytest.raises(ConfigError, match=r"2\.weight would keep 3 of 4 slices along dim 1"):
        check_widths(model, shapes, {"0.weight": torch.tensor([[True] * 3] + [[False] * 3] * 3)})


class FunctionalNorm(nn.Module):
    """A norm layer that calls ``F.batch_norm`` itself (no BatchNorm module for the graph to know)."""

    def __init__(self, c: int):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(c)), nn.Parameter(torch.zeros(c))
        self.register_buffer("mean", torch.zeros(c))
        self.register_buffer("var", torch.ones(c))

    def forward(self, x):
        return F.batch_norm(x, self.mean, self.var, self.weight, self.bias, False)


def test_all_groups_skipped_blames_the_ops_not_the_layers():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), FunctionalNorm(8), nn.ReLU(), nn.Conv2d(8, 8, 3), FunctionalNorm(8),
                          nn.Flatten(), nn.LazyLinear(2))
    x = torch.randn(1, 3, 8, 8)
    model(x)
    with pytest.raises(ConfigError) as err:
        prune(model, x)
    line = str(err.value)
    assert line.startswith("pruner.target='channel'") and "\n" not in line
    assert line.endswith("(every coupled group of Sequential is unprunable: op NativeBatchNormBackward0 mixes "
                         "channels (2 layers))")


def test_analysis_over_budget_skips_the_group_naming_the_op(monkeypatch):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3), nn.Flatten(), nn.Linear(64, 2))
    x = torch.randn(1, 3, 8, 8)
    monkeypatch.setattr(_graph, "INDEX_BUDGET", 100)  # the flatten maps conv 2's 4 channels to 64 positions
    monkeypatch.setattr(_graph, "INDEX_PER_CHANNEL", 10)
    assert _graph.index_budget(4) == 100 and _graph.index_budget(50) == 500
    groups = {g.root: g for g in channel_groups(model, x)}
    assert groups["0"].site is not None
    assert groups["2"].site is None and "over budget: its index mapping reached" in groups["2"].reason
    from torch_pruning.dependency import graph as tp_graph
    assert tp_graph.Group.__name__ == "Group"  # the counting subclass is gone again


def _slow(config) -> bool:
    return os.environ.get("PRUNECLI_SLOW") == "1" or "slow" in (config.getoption("markexpr") or "")


@pytest.mark.slow
@pytest.mark.parametrize("name", torchvision_model_names())
def test_every_classifier_is_exact_or_refused_in_one_line(name, request):
    if not _slow(request.config):
        pytest.skip("every torchvision classifier: PRUNECLI_SLOW=1 or -m slow")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--child", name, "prunecli", "--mem-gb", "8"],
                          capture_output=True, text=True, timeout=900)
    result = json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])
    assert result["outcome"] in ("exact", "refused"), result
    if result["outcome"] == "refused":
        assert "\n" not in result["reason"] and result["reason"]
    else:
        assert result["max_rel_diff"] <= 1e-5


class SubclassedNorm(nn.LayerNorm):
    """A LayerNorm subclass (timm's PVTv2 has one): groups through it are skipped."""


class SpatialReduction(nn.Module):
    """PVTv2's attention keys: ``norm(sr(x).reshape(B, C, -1))`` with ``C`` read from the input, so removing
    ``sr``'s channels breaks the reshape although masking them is exact."""

    def __init__(self, dim: int):
        super().__init__()
        self.sr, self.norm, self.kv = nn.Conv2d(dim, dim, 2, 2), nn.LayerNorm(dim), nn.Linear(dim, dim)
        self.pre, self.out = SubclassedNorm(dim), nn.Linear(dim, 2)

    def forward(self, x):
        b, c, _, _ = x.shape
        y = self.norm(self.sr(x).reshape(b, c, -1).transpose(1, 2))
        return self.out(self.pre(self.kv(y)).mean(1))


def test_a_compact_model_that_cannot_run_is_refused_in_one_line():
    model = randomized(SpatialReduction(8))
    x = torch.randn(2, 8, 8, 8)  # C: the model's input channels, which stay
    pruner = prune(model, x)
    assert "subclasses a norm layer" in pruner.skipped["kv"] and "sr" not in pruner.skipped
    with pytest.raises(ConfigError) as err:
        compact(copy.deepcopy(model), pruner.masks, x[:1])
    assert str(err.value).startswith("format='compact'") and "\n" not in str(err.value)
    assert "the compacted SpatialReduction fails: RuntimeError" in str(err.value)
