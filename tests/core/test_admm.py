"""ADMM regulariser: the projection meets the constraint, training pulls W onto Z, and its state round-trips."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunecli import build_pruner
from prunecli.errors import ConfigError
from prunecli.regularizers import ADMM


def _setup(rho=0.5, every=2):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = build_pruner(model, {
        "allocation": "global", "layers": {"exclude_last": False},
        "schedule": {"name": "oneshot", "final_sparsity": 0.75, "start_step": 40},
        "regularizer": {"name": "admm", "sparsity": 0.75, "rho": rho, "every": every, "allocation": "global",
                        "end": "schedule"},
    }, total_steps=50, optimizer=opt)
    return model, opt, pruner


def _train(model, opt, pruner, steps):
    g = torch.Generator().manual_seed(1)
    for step in range(steps):
        x = torch.randn(32, 16, generator=g)
        pruner.on_step_begin(step)
        opt.zero_grad()
        nn.functional.mse_loss(model(x), x[:, :4] * 2).backward()
        pruner.on_before_optimizer_step()
        opt.step()
        pruner.on_after_optimizer_step()


def test_projection_zeroes_the_target_fraction():
    model, _, pruner = _setup()
    z = pruner.regularizer.project(pruner.sites, {n: p.detach() for n, p in pruner.params.items()})
    zeros = sum(int((t == 0).sum()) for t in z.values() if t.dim() > 1)
    total = sum(t.numel() for t in z.values() if t.dim() > 1)
    assert zeros / total == pytest.approx(0.75, abs=1e-3)


def test_training_pulls_weights_onto_the_projection_and_state_round_trips():
    def off_support(pruner):   # relative weight energy outside the projection onto 75% sparsity
        w = {n: p.detach() for n, p in pruner.params.items()}
        z = pruner.regularizer.project(pruner.sites, w)
        return max(float((w[n] - z[n]).norm() / w[n].norm()) for n in w if w[n].dim() > 1)

    model, opt, pruner = _setup()
    pruner.on_train_begin()
    before = off_support(pruner)
    _train(model, opt, pruner, 30)
    assert off_support(pruner) < 0.5 * before
    state = pruner.state_dict()["regularizer"]
    assert state["step"] == 30 and set(state["z"]) == set(pruner.params)
    fresh = ADMM(sparsity=0.75)
    fresh.load_state_dict(state)
    assert fresh.state_dict()["step"] == 30


@pytest.mark.parametrize("options, key", [({"sparsity": None}, "sparsity"), ({"sparsity": 0.5, "rho": 0}, "rho"),
                                          ({"sparsity": 0.5, "every": 0}, "every")])
def test_bad_admm_options_name_their_key(options, key):
    with pytest.raises(ConfigError, match=rf"^pruner.regularizer.{key}="):
        ADMM(**options)


def test_admm_can_project_with_the_pruners_own_allocation():
    from prunecli.allocation import Local

    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    pruner = build_pruner(model, {"allocation": {"name": "local", "max_sparsity": 0.6},
                                  "regularizer": {"name": "admm", "sparsity": 0.5, "allocation": "pruner"},
                                  "schedule": {"name": "oneshot", "final_sparsity": 0.5}})
    assert isinstance(pruner.allocation, Local) and pruner.regularizer._allocation is pruner.allocation
    z = pruner.regularizer.project(pruner.sites, {n: p.detach() for n, p in pruner.params.items()})
    for name in ("0.weight", "2.weight"):
        assert float((z[name] == 0).float().mean()) == pytest.approx(0.5, abs=0.01)
    with pytest.raises(ConfigError, match="pruner.regularizer.sparsity"):
        build_pruner(model, {"allocation": {"name": "local", "max_sparsity": 0.4},
                             "regularizer": {"name": "admm", "sparsity": 0.5, "allocation": "pruner"},
                             "schedule": {"name": "oneshot", "final_sparsity": 0.3}})


@pytest.mark.parametrize("objective", [{"name": "params", "keep": 0.5}, {"name": "flops", "keep": 0.5}])
def test_an_objective_with_admm_is_refused_not_ignored(objective):
    """ADMM's constraint is its own ``sparsity``: with a budget objective the hard pruning would reach another
    sparsity than the one ADMM drove the weights to."""
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    cfg = {"schedule": {"name": "oneshot", "final_sparsity": 0.5},
           "regularizer": {"name": "admm", "sparsity": 0.5, "allocation": "global"}}
    with pytest.raises(ConfigError, match=rf"^objective='{objective['name']}' is not allowed: .*pruner=admm"):
        build_pruner(model, {**cfg, "objective": objective})
    assert build_pruner(model, {**cfg, "objective": "sparsity"}).schedule.final_sparsity == 0.5
