"""Structured objectives: the compacted model keeps the FLOPs, parameters or latency asked for."""

from __future__ import annotations

import copy
import os

import pytest
import torch
from _structured import prune, randomized

from prunecli.errors import ConfigError
from prunecli.metrics import measure_latency
from prunecli.models import build_model
from prunecli.objectives import Flops, parse_objective
from prunecli.objectives._compacted import solve
from prunecli.objectives.structured import count_flops
from prunecli.structure import compact


def _compacted(name: str, objective: dict, image_size: int = 32, **cfg):
    torch.manual_seed(0)
    model = randomized(build_model(name, in_channels=3, num_classes=10, image_size=image_size))
    x = torch.randn(1, 3, image_size, image_size)
    dense = copy.deepcopy(model)
    pruner = prune(model, x, sparsity=0.0, objective=objective, **cfg)
    pruner.update_masks(pruner.schedule.final_sparsity)
    small = copy.deepcopy(model)
    compact(small, pruner.masks, x)
    return dense, model, small, x


def test_flops_budget_met_within_2_percent():
    dense, masked, small, x = _compacted("resnet18", {"name": "flops", "keep": 0.5})
    assert abs(count_flops(small, x) / count_flops(dense, x) - 0.5) <= 0.02 * 0.5
    with torch.no_grad():
        assert (small(x) - masked(x)).abs().max() <= 1e-4


@pytest.mark.parametrize("criterion", ["l2", "l1"])
def test_budgets_hold_under_global_allocation(criterion):
    """The objective simulates the pruner's own allocation and weight criterion: global rankings concentrate the
    cuts in some layers, so simulating local L2 instead missed the FLOPs budget (0.46 and 0.15 for 0.5)."""
    for objective, cost in (("flops", None), ("params", "params")):
        dense, masked, small, x = _compacted("resnet18", {"name": objective, "keep": 0.5}, allocation="global",
                                             criterion=criterion)
        if cost is None:
            kept = count_flops(small, x) / count_flops(dense, x)
        else:
            kept = sum(p.numel() for p in small.parameters()) / sum(p.numel() for p in dense.parameters())
        assert abs(kept - 0.5) <= 0.02 * 0.5, (objective, kept)


def test_params_budget_counts_physically_removed_parameters():
    dense, _, small, _ = _compacted("resnet18", {"name": "params", "keep": 0.5}, target={"name": "channel",
                                                                                          "round_to": 4})
    kept = sum(p.numel() for p in small.parameters()) / sum(p.numel() for p in dense.parameters())
    assert abs(kept - 0.5) <= 0.02 * 0.5


def test_latency_budget_met_within_5_percent():
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        # the objective measures latency: with more runnable jobs than cores the timings are the neighbours'
        pytest.skip(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: latency is not measurable")
    dense, _, small, x = _compacted("resnet18", {"name": "latency", "keep": 0.5, "repeats": 21}, image_size=64)
    ratios = []
    for _ in range(5):  # shared CPUs: dense and compact timed in turns (as the objective does), best of five
        pairs = [(measure_latency(small, x, warmup=3, repeats=21)["latency_ms_median"],
                  measure_latency(dense, x, warmup=3, repeats=21)["latency_ms_median"]) for _ in range(3)]
        ratios.append(sorted(s for s, _ in pairs)[1] / sorted(d for _, d in pairs)[1])
        if abs(ratios[-1] - 0.5) <= 0.05 * 0.5:
            break
    assert min(abs(r - 0.5) for r in ratios) <= 0.05 * 0.5, ratios


def test_small_cnn_gets_the_closest_step():
    dense, _, small, x = _compacted("cnn", {"name": "flops", "keep": 0.5})  # 16/32/64 channels: coarse steps
    assert abs(count_flops(small, x) / count_flops(dense, x) - 0.5) <= 0.03


def test_unreachable_budget_is_one_line_config_error():
    with pytest.raises(ConfigError, match=r"objective.keep=0.001 is not allowed: expected a fraction >= 0\.\d+"):
        _compacted("cnn", {"name": "flops", "keep": 0.001})


@pytest.mark.parametrize("keep", [0.0, 1.5, "half", True])
def test_keep_must_be_a_fraction(keep):
    with pytest.raises(ConfigError, match="objective.keep"):
        _compacted("cnn", {"name": "flops", "keep": keep})


def test_flops_needs_the_coupled_channel_target():
    model = build_model("cnn", in_channels=3, num_classes=10, image_size=32)
    with pytest.raises(ConfigError, match="pruner.target=channel"):
        Flops().to_sparsity(0.5, model, [], example_inputs=torch.randn(1, 3, 32, 32))


def test_registry_builds_structured_objectives():
    assert parse_objective({"name": "flops", "keep": 0.3}).keep == 0.3
    assert parse_objective({"name": "latency"}).tolerance == 0.05


@pytest.mark.parametrize("keep,expected", [(0.5, 0.5), (0.25, 0.75), (1.0, 0.0)])
def test_solve_bisects_a_monotone_ratio(keep, expected):
    assert solve(lambda s: 1 - s, keep, 0.9, 1e-6, "cost") == pytest.approx(expected, abs=1e-5)
