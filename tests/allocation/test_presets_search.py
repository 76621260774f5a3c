"""The search presets build through build_pruner with an evaluator and report their evaluations."""

import pytest
import torch

from prunecli import build_pruner

PRESETS = {"sensitivity": 1 + 3 * 10, "simulated_annealing": 1 + 11, "auto_compress": 1 + 11, "amc": 1 + 30}


@pytest.fixture(scope="module")
def compose():
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module("prunecli.conf", version_base="1.3"):
        yield hydra_compose


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_search_preset_builds_with_an_evaluator_and_reports(compose, name):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = compose("prune", overrides=[f"pruner={name}", "sparsity=0.5"])
    plain = OmegaConf.to_container(cfg.pruner, resolve=True)
    plain["schedule"] = OmegaConf.to_container(cfg.schedule, resolve=True)
    torch.manual_seed(0)
    model = instantiate(cfg.model)(in_channels=1, num_classes=10, image_size=8)
    x = torch.randn(8, 1, 8, 8)
    calls = []

    def evaluator(m):
        calls.append(1)
        with torch.no_grad():
            return -float(m(x).pow(2).mean())

    pruner = build_pruner(model, plain, total_steps=10, evaluator=evaluator)
    pruner.on_train_begin()
    pruner.on_step_begin(0)
    report = pruner.allocation.report()
    assert report["evaluations"] == len(calls) == PRESETS[name]
    assert set(report["sparsity"]) == set(pruner.sites)

