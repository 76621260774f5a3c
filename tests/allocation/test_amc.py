import pytest
import torch
from _search_fixtures import mlp, penalise, per_layer, prune
from torch import nn

from prunecli.allocation import AMC
from prunecli.allocation.search.flops import site_flops
from prunecli.errors import ConfigError


def test_amc_spares_the_penalised_layer_under_a_parameter_budget():
    calls = []
    amc = {"name": "amc", "budget": "params", "episodes": 30, "warmup": 10, "max_sparsity": 0.99, "updates": 5}
    pruner = prune(mlp(), amc, penalise("1", calls))
    layers = per_layer(pruner)
    assert layers["1.weight"] < 0.2
    assert sum(layers[f"{i}.weight"] for i in (1, 3, 5)) / 3 == pytest.approx(0.5, abs=2 / 1024)
    report = pruner.allocation.report()
    assert report["evaluations"] == len(calls) == 1 + 30
    assert report["budget"] == "params"


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 10))


def run_model(model: nn.Module) -> float:
    with torch.no_grad():
        return -float(model(torch.ones(2, 1, 8, 8)).abs().mean())


def test_amc_meets_a_flops_budget_on_a_cnn_in_three_episodes():
    model = cnn()
    pruner = prune(model, {"name": "amc", "episodes": 3, "warmup": 1, "updates": 2, "max_sparsity": 0.9},
                   run_model, sparsity=0.5, target="channel", criterion="l1")
    sites = pruner.sites
    flops, _ = site_flops(model, sites, lambda: run_model(model))
    assert flops.tolist() == [4 * 72 * 64, 4 * 1152 * 16, 4 * 8192 * 1]   # 2 x MACs (weights x positions) x 2 samples
    kept = torch.tensor([float(pruner._keep[n].float().mean()) for n in sites], dtype=torch.float64)
    removed = float(((1 - kept) * flops).sum() / flops.sum())
    assert removed == pytest.approx(0.5, abs=0.04)   # channel rounding: 1/8, 1/16, 1/32 of each layer
    assert pruner.allocation.report()["evaluations"] == 1 + 3


def test_site_flops_count_one_position_when_the_evaluator_does_not_run_the_model():
    model = cnn()
    pruner = prune(model, {"name": "amc", "budget": "params", "episodes": 1, "warmup": 1}, run_model, target="channel")
    flops, value = site_flops(model, pruner.sites, lambda: 1.5)
    assert flops.tolist() == [2 * 72, 2 * 1152, 2 * 8192] and value == 1.5


def test_amc_errors():
    with pytest.raises(ConfigError, match=r"^pruner.allocation.episodes=0 .*zero episode"):
        AMC(episodes=0)
    with pytest.raises(ConfigError, match=r"^pruner.allocation.budget='latency'"):
        AMC(budget="latency")
    with pytest.raises(ConfigError, match=r"^pruner.allocation='amc' .*evaluator"):
        prune(mlp(), "amc", None)
