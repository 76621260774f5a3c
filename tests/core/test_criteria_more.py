"""FPGM, BN scale, APoZ, mean activation and gradient criteria against hand-computed values."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from prunecli import build_pruner
from prunecli.criteria import FPGM, APoZ, Gradient, MeanActivation
from prunecli.errors import ConfigError

ONESHOT = {"name": "oneshot", "final_sparsity": 1 / 3}


def keep_rows(pruner, fqn):
    return pruner.masks[fqn].reshape(pruner.masks[fqn].shape[0], -1).all(1).tolist()


# ----------------------------------------------------------------------------- FPGM
@pytest.mark.parametrize("shape", [(3, 2), (3, 1, 1, 2)])
def test_fpgm_scores_are_sums_of_distances_to_the_other_filters(shape):
    # filters (0, 0), (3, 0), (0, 4): distances 3, 4, 5 -> sums 7, 8, 9
    layer = nn.Linear(2, 3) if len(shape) == 2 else nn.Conv2d(1, 3, (1, 2))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]]).reshape(shape))
    model = nn.Sequential(OrderedDict(layer=layer))
    pruner = build_pruner(model, {"target": "channel", "criterion": "fpgm", "layers": {"exclude_last": False},
                                  "schedule": ONESHOT})
    site = pruner.sites["layer.weight"]
    assert FPGM().score(site).tolist() == pytest.approx([7.0, 8.0, 9.0])
    pruner.on_step_begin()
    assert keep_rows(pruner, "layer.weight") == [False, True, True]   # nearest the geometric median goes first
    assert keep_rows(pruner, "layer.bias") == [False, True, True]


def test_fpgm_refuses_units_that_are_not_filters():
    with pytest.raises(ConfigError, match=r"^pruner.criterion=.fpgm.*channel or head target"):
        build_pruner(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)), {"criterion": "fpgm", "schedule": ONESHOT})


# ----------------------------------------------------------------------------- BN scale
def conv_bn(gamma):
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 4, 3), bn=nn.BatchNorm2d(4), act=nn.ReLU(),
                                      pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), head=nn.Linear(4, 2)))
    with torch.no_grad():
        model.bn.weight.copy_(torch.tensor(gamma))
    return model


def test_bn_scale_prunes_the_channels_with_the_smallest_gamma():
    model = conv_bn([0.5, -2.0, 0.1, 1.0])
    pruner = build_pruner(model, {"target": "channel", "criterion": "bn_scale",
                                  "schedule": {"name": "oneshot", "final_sparsity": 0.5}})
    assert pruner.criterion.score(pruner.sites["conv.weight"]).tolist() == pytest.approx([0.5, 2.0, 0.1, 1.0])
    pruner.on_step_begin()
    assert keep_rows(pruner, "conv.weight") == [False, True, False, True]
    assert model.bn.weight.tolist() == [0.0, -2.0, 0.0, 1.0] and model.bn.bias[[0, 2]].tolist() == [0.0, 0.0]


def test_bn_scale_on_a_layer_without_batchnorm_names_the_layer():
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(4, 8), act=nn.ReLU(), fc2=nn.Linear(8, 2)))
    with pytest.raises(ConfigError) as info:
        build_pruner(model, {"target": "channel", "criterion": "bn_scale", "schedule": ONESHOT})
    message = str(info.value)
    assert message.startswith("pruner.criterion='bn_scale'") and "layer fc1 has no BatchNorm" in message
    assert "\n" not in message


# ----------------------------------------------------------------------------- activations
def relu_net():
    """fc: units x, -2x + 2.5 and -1 (constant); the classifier after the ReLU is left dense."""
    model = nn.Sequential(OrderedDict(fc=nn.Linear(1, 3), act=nn.ReLU(), head=nn.Linear(3, 2)))
    with torch.no_grad():
        model.fc.weight.copy_(torch.tensor([[1.0], [-2.0], [0.0]]))
        model.fc.bias.copy_(torch.tensor([0.0, 2.5, -1.0]))
    return model


X = torch.tensor([[1.0], [-1.0], [2.0], [-3.0]])
# relu outputs per unit over X: [1, 0, 2, 0], [0.5, 4.5, 0, 8.5], [0, 0, 0, 0]
APOZ = [0.5, 0.25, 1.0]
MEAN = [0.75, 3.375, 0.0]


@pytest.mark.parametrize("criterion, expected", [("apoz", [1 - a for a in APOZ]), ("mean_activation", MEAN)])
def test_activation_criteria_from_known_patterns(criterion, expected):
    model = relu_net()
    pruner = build_pruner(model, {"target": "channel", "criterion": {"name": criterion, "batches": 2},
                                  "schedule": ONESHOT})
    pruner.on_train_begin()
    for step in range(2):
        pruner.on_step_begin(step)
        assert pruner.report().sparsity == 0.0    # the one-shot update of step 0 waits for 2 batches
        model(X)
        pruner.on_after_optimizer_step()
    assert pruner.criterion.score(pruner.sites["fc.weight"]).tolist() == pytest.approx(expected)
    pruner.on_step_begin(2)
    assert keep_rows(pruner, "fc.weight") == [True, True, False]
    assert not model.fc._forward_hooks


def test_apoz_after_batchnorm_reads_the_norm_layers_output():
    model = conv_bn([1.0, 1.0, 1.0, 1.0])
    with torch.no_grad():
        model.bn.bias.copy_(torch.tensor([-10.0, 10.0, 0.0, 10.0]))  # channel 0 always zero after the ReLU
    model.eval()  # BN with running statistics (0, 1): output = conv output + bias
    pruner = build_pruner(model, {"target": "channel", "criterion": {"name": "apoz", "batches": 1},
                                  "schedule": {"name": "oneshot", "final_sparsity": 0.25}})
    pruner.on_step_begin(0)
    assert model.bn._forward_hooks and not model.conv._forward_hooks
    model(torch.randn(2, 1, 5, 5, generator=torch.Generator().manual_seed(0)))
    scores = pruner.criterion.score(pruner.sites["conv.weight"])
    assert scores[0] == 0.0 and scores[1] == 1.0 and scores[3] == 1.0 and 0.0 < scores[2] < 1.0
    pruner.on_step_begin(1)
    assert keep_rows(pruner, "conv.weight") == [False, True, True, True]
    assert not model.bn._forward_hooks


def test_activation_criterion_needs_output_channels():
    with pytest.raises(ConfigError, match=r"^pruner.criterion='apoz'.*channel target"):
        build_pruner(relu_net(), {"target": "unstructured", "criterion": "apoz", "schedule": ONESHOT})


# ----------------------------------------------------------------------------- gradient
@pytest.mark.parametrize("decay, expected", [(0.0, [2.0, 1.0]), (1.0, [5.0, 1.5]), (0.5, [3.5, 1.25])])
def test_gradient_criterion_is_decayed_sum_of_abs_grad(decay, expected):
    model = nn.Sequential(nn.Linear(2, 1, bias=False))
    pruner = build_pruner(model, {"criterion": {"name": "gradient", "decay": decay},
                                  "layers": {"exclude_last": False}, "schedule": {"name": "linear", "end_step": 9}})
    for g in ([[-3.0, 0.5]], [[2.0, -1.0]]):
        model[0].weight.grad = torch.tensor(g)
        pruner.on_before_optimizer_step()
    assert pruner.criterion.score(pruner.sites["0.weight"]).tolist() == pytest.approx(expected)


def test_batches_option_makes_gradient_criteria_wait():
    criterion = Gradient(batches=3)
    layer = nn.Linear(2, 1)
    layer.weight.grad = torch.ones(1, 2)
    for _ in range(2):
        criterion.observe({"w": layer.weight})
    assert not criterion.ready
    criterion.observe({"w": layer.weight})
    assert criterion.ready


@pytest.mark.parametrize("cfg, key", [
    ({"name": "apoz", "batches": 0}, "pruner.criterion.batches"),
    ({"name": "taylor", "batches": -1}, "pruner.criterion.batches"),
    ({"name": "gradient", "decay": 2}, "pruner.criterion.decay"),
])
def test_bad_criterion_options(cfg, key):
    with pytest.raises(ConfigError) as info:
        build_pruner(relu_net(), {"target": "channel", "criterion": cfg, "schedule": ONESHOT})
    assert str(info.value).startswith(key + "=")


def test_criteria_registered_by_name():
    from prunecli.criteria import CRITERIA

    assert CRITERIA["apoz"] is APoZ and CRITERIA["mean_activation"] is MeanActivation and CRITERIA["fpgm"] is FPGM


def test_snip_momentum_is_alpha_s_plus_beta_abs_wg():
    from prunecli.criteria import SnipMomentum

    w = nn.Parameter(torch.tensor([[1.0, -2.0], [0.5, 3.0]]))
    crit = SnipMomentum(alpha=0.5, beta=2.0)
    grads = [torch.tensor([[1.0, 1.0], [-2.0, 0.0]]), torch.tensor([[0.0, -1.0], [1.0, 1.0]])]
    expected = torch.zeros(2, 2)
    for g in grads:
        w.grad = g
        crit.observe({"w": w})
        expected = 0.5 * expected + 2.0 * (w.detach() * g).abs()
    assert torch.equal(crit._acc["w"], expected)


# ----------------------------------------------------------------------------- per-unit accumulation
@pytest.mark.parametrize("criterion", ["snip_momentum", "taylor", "movement", "gradient"])
@pytest.mark.parametrize("target", ["4x1", "2x3", "2:4", "channel"])
def test_per_unit_accumulation_gives_the_element_scores_reduced(criterion, target):
    """Unit accumulators (default) score exactly what per-element accumulators reduced at scoring time score;
    channel sites are coupled (several scored members per site, IndexLayout)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from _models import batch, small_cnn

    pruners = []
    for per_unit in (True, False):
        model = small_cnn()
        cfg = {"target": target, "criterion": {"name": criterion, "per_unit": per_unit}, "allocation": "global",
               "schedule": {"name": "oneshot", "final_sparsity": 0.5, "start_step": 5}}
        pruner = build_pruner(model, cfg, example_inputs=batch()[0][:2] if target == "channel" else None)
        for step in range(3):
            x, y = batch(seed=step)
            model.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            pruner.criterion.observe(pruner._scored)
        pruners.append(pruner)
    unit, element = pruners
    assert set(unit.criterion._acc) == set(unit.sites) and set(element.criterion._acc) <= set(element.params)
    for name, site in unit.sites.items():
        got, want = unit.criterion.score(site), element.criterion.score(element.sites[name])
        assert got.shape == (site.num_units,)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
        assert want.abs().sum() > 0
    # element accumulators from a checkpoint convert exactly; unit ones cannot go back
    unit.criterion.load_state_dict(element.criterion.state_dict())
    for name, site in unit.sites.items():
        torch.testing.assert_close(unit.criterion.score(site), element.criterion.score(element.sites[name]))
    with pytest.raises(ConfigError, match="per_unit"):
        element.criterion.load_state_dict(unit.criterion.state_dict())


def test_progressive_pruning_keeps_single_weight_scores():
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    pruner = build_pruner(model, {"target": "4x1", "criterion": "snip_momentum", "progressive": {"steps": 2},
                                  "schedule": {"name": "linear", "final_sparsity": 0.5, "end_step": 20,
                                               "frequency": 5}})
    assert pruner.criterion.per_unit is False
