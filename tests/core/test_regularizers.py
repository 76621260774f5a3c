"""Regularisers add exactly their penalty's gradient, inside their window, after the criterion observed and
without ever moving a pruned weight."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from prunecli import build_pruner
from prunecli.errors import ConfigError
from prunecli.regularizers import L1BN, GroupLasso, Window, parse_regularizer


def conv_bn_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(conv=nn.Conv2d(2, 4, 3), bn=nn.BatchNorm2d(4), act=nn.ReLU(),
                                     pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), head=nn.Linear(4, 3)))


def loss_grads(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(8, 2, 6, 6, generator=g), torch.randint(0, 3, (8,), generator=g)
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_l1_bn_adds_strength_times_sign_of_gamma():
    model = conv_bn_net()
    with torch.no_grad():
        model.bn.weight.copy_(torch.tensor([0.5, -1.5, 0.0, 2.0]))
    pruner = build_pruner(model, {"target": "channel", "criterion": "bn_scale",
                                  "regularizer": {"name": "l1_bn", "strength": 0.01},
                                  "schedule": {"name": "oneshot", "final_sparsity": 0.25, "start_step": 5}})
    pruner.on_train_begin()
    pruner.on_step_begin(0)
    grads = loss_grads(model)
    pruner.on_before_optimizer_step()
    assert torch.allclose(model.bn.weight.grad, grads["bn.weight"] + 0.01 * torch.tensor([1.0, -1.0, 0.0, 1.0]))
    for name in ("conv.weight", "bn.bias", "head.weight"):
        assert torch.equal(model.get_parameter(name).grad, grads[name]), name


def test_group_lasso_gradient_equals_autograd_of_the_penalty():
    model = conv_bn_net()
    with torch.no_grad():
        model.conv.weight[1] = 0.0   # an all-zero unit contributes no gradient (the subgradient 0)
    pruner = build_pruner(model, {"target": "4x1", "regularizer": {"name": "group_lasso", "strength": 0.03},
                                  "layers": {"exclude_last": False},
                                  "schedule": {"name": "oneshot", "final_sparsity": 0.5, "start_step": 5}})
    pruner.on_train_begin()
    pruner.on_step_begin(0)
    grads = loss_grads(model)
    pruner.on_before_optimizer_step()
    for name, param in (("conv.weight", model.conv.weight), ("head.weight", model.head.weight)):
        w = param.detach().clone().requires_grad_(True)
        blocks = pruner.sites[name].members[0].layout.to_units(w)      # [units, 4] (zero-padded at edges)
        norms = blocks.square().sum(1)
        penalty = 0.03 * norms[norms > 0].sqrt().sum()
        (expected,) = torch.autograd.grad(penalty, w)
        assert torch.allclose(param.grad, grads[name] + expected, atol=1e-7), name
    assert torch.equal(model.conv.weight.grad[1], grads["conv.weight"][1])


def test_group_lasso_by_hand_on_channel_rows():
    model = nn.Sequential(OrderedDict(fc=nn.Linear(3, 2, bias=False), head=nn.Linear(2, 1)))
    with torch.no_grad():
        model.fc.weight.copy_(torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]]))
    pruner = build_pruner(model, {"target": "channel", "criterion": "l2",
                                  "schedule": {"name": "oneshot", "final_sparsity": 0.5}})
    model.fc.weight.grad = torch.zeros(2, 3)
    GroupLasso(strength=0.5).penalize(pruner.sites)
    assert model.fc.weight.grad.flatten().tolist() == pytest.approx([0.3, 0.4, 0.0, 0.0, 0.0, 0.0])


def test_criterion_sees_the_loss_gradient_and_pruned_weights_get_no_penalty():
    model = conv_bn_net()
    pruner = build_pruner(model, {"target": "channel", "criterion": "taylor",
                                  "regularizer": {"name": "group_lasso", "strength": 0.1},
                                  "schedule": {"name": "linear", "final_sparsity": 0.5, "end_step": 4}})
    pruner.on_train_begin()
    pruner.on_step_begin(0)
    grads = loss_grads(model)
    pruner.on_before_optimizer_step()
    w = model.conv.weight.detach()
    expected = (w * grads["conv.weight"]).square().reshape(4, -1).sum(1)
    assert torch.allclose(pruner.criterion.score(pruner.sites["conv.weight"]), expected)
    assert not torch.equal(model.conv.weight.grad, grads["conv.weight"])   # the penalty was added after
    pruner.on_after_optimizer_step()
    for step in range(1, 5):
        pruner.on_step_begin(step)
        loss_grads(model, seed=step)
        pruner.on_before_optimizer_step()
        pruner.on_after_optimizer_step()
    pruned = ~pruner.masks["conv.weight"].reshape(4, -1).all(1)
    assert int(pruned.sum()) == 2
    assert float(model.conv.weight.grad[pruned].abs().max()) == 0.0


def test_window_fractions_and_schedule_end():
    _, window = parse_regularizer({"name": "l1_bn", "start": 0.1, "end": 0.5}, total_steps=100)
    assert window == Window(10, 50) and 9 not in window and 10 in window and 49 in window and 50 not in window
    _, window = parse_regularizer({"name": "l1_bn", "end": "schedule"}, total_steps=100, schedule_end=30)
    assert window == Window(0, 30)
    regularizer, window = parse_regularizer("group_lasso")
    assert isinstance(regularizer, GroupLasso) and window == Window() and 10**9 in window


def test_penalty_stops_at_the_end_of_its_window():
    model = conv_bn_net()
    pruner = build_pruner(model, {"target": "channel", "criterion": "bn_scale",
                                  "regularizer": {"name": "l1_bn", "strength": 1.0, "end_step": 1},
                                  "schedule": {"name": "oneshot", "final_sparsity": 0.25, "start_step": 9}})
    pruner.on_train_begin()
    for step, penalised in ((0, True), (1, False)):
        pruner.on_step_begin(step)
        grads = loss_grads(model, seed=step)
        pruner.on_before_optimizer_step()
        assert torch.equal(model.bn.weight.grad, grads["bn.weight"]) is not penalised
        pruner.on_after_optimizer_step()


@pytest.mark.parametrize("spec, key", [
    ({"name": "l2_everything"}, "pruner.regularizer"),
    ({"name": "l1_bn", "strength": -1}, "pruner.regularizer.strength"),
    ({"name": "l1_bn", "alpha": 1}, "pruner.regularizer.alpha"),
    ({"name": "l1_bn", "end": 1.5}, "pruner.regularizer.end"),
    ({"name": "l1_bn", "start": 0.2, "start_step": 3}, "pruner.regularizer.start"),
])
def test_bad_regularizer_config(spec, key):
    with pytest.raises(ConfigError) as info:
        build_pruner(conv_bn_net(), {"target": "channel", "regularizer": spec,
                                     "schedule": {"name": "oneshot", "final_sparsity": 0.5}}, total_steps=10)
    assert str(info.value).startswith(key + "=") and "\n" not in str(info.value)


def test_l1_bn_needs_a_batchnorm_after_each_layer():
    model = nn.Sequential(OrderedDict(fc=nn.Linear(3, 4), head=nn.Linear(4, 2)))
    with pytest.raises(ConfigError, match=r"^pruner.regularizer='l1_bn'.*layer fc has no BatchNorm"):
        build_pruner(model, {"target": "channel", "regularizer": "l1_bn",
                             "schedule": {"name": "oneshot", "final_sparsity": 0.5}})
    assert isinstance(parse_regularizer({"name": "l1_bn"})[0], L1BN)
