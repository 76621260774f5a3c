"""Every target and allocation reaches the requested sparsity; pattern invariants hold in every group."""

import math

import pytest
import torch
from _models import small_cnn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from prunecli import build_pruner
from prunecli.errors import ConfigError

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def models(draw):
    """A random stack of Conv2d and Linear layers (shapes need not divide anything)."""
    torch.manual_seed(draw(st.integers(0, 10_000)))
    layers, channels = [], draw(st.integers(1, 12))
    for _ in range(draw(st.integers(1, 3))):
        out = draw(st.integers(2, 20))
        layers.append(nn.Conv2d(channels, out, draw(st.sampled_from([1, 3])), padding=1))
        channels = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    for _ in range(draw(st.integers(1, 3))):
        out = draw(st.integers(2, 40))
        layers.append(nn.Linear(channels, out))
        channels = out
    return nn.Sequential(*layers)


def unit_pruned(pruner, site):
    member = next(m for m in site.members if m.scored)
    return int((~member.layout.to_units(pruner.masks[member.name]).any(1)).sum())


def prune_once(model, target, allocation, sparsity, criterion="magnitude"):
    pruner = build_pruner(model, {"target": target, "criterion": criterion, "allocation": allocation,
                                  "layers": {"exclude_last": False},
                                  "schedule": {"name": "oneshot", "final_sparsity": sparsity}})
    pruner.on_train_begin()
    pruner.on_step_begin()
    return pruner


TARGETS = ["unstructured", "2:4", "1:4", "4x1", "1x4", "3x3", "channel"]


@SETTINGS
@given(model=models(), target=st.sampled_from(TARGETS), sparsity=st.floats(0.0, 0.99))
def test_local_allocation_reaches_sparsity_per_layer(model, target, sparsity):
    try:
        pruner = prune_once(model, target, "local", sparsity)
    except ConfigError as err:  # only acceptable refusals: no layer fits the pattern, or sparsity above its limit
        assert err.key in ("pruner.layers", "sparsity")
        return
    for site in pruner.sites.values():
        cap = math.floor(site.max_sparsity * site.num_units + 1e-9)
        expected = min(round(sparsity * site.num_units), cap)
        assert unit_pruned(pruner, site) == expected, site.name


@SETTINGS
@given(model=models(), target=st.sampled_from(TARGETS), sparsity=st.floats(0.0, 0.99))
def test_global_allocation_reaches_overall_sparsity(model, target, sparsity):
    try:
        pruner = prune_once(model, target, "global", sparsity)
    except ConfigError as err:
        assert err.key in ("pruner.layers", "sparsity")
        return
    sites = pruner.sites.values()
    budget = round(sparsity * sum(s.num_units * s.unit_size for s in sites))
    reached = sum(unit_pruned(pruner, s) * s.unit_size for s in sites)
    assert budget - max(s.unit_size for s in sites) < reached <= budget


@SETTINGS
@given(model=models(), nm=st.sampled_from([(2, 4), (1, 4), (4, 8), (1, 2)]), full=st.booleans(),
       allocation=st.sampled_from(["local", "global"]))
def test_nm_invariant_in_every_group(model, nm, full, allocation):
    n, m = nm
    sparsity = (m - n) / m if full else (m - n) / m / 2
    try:
        pruner = prune_once(model, f"{n}:{m}", allocation, sparsity)
    except ConfigError as err:
        assert err.key == "pruner.layers"
        return
    for site in pruner.sites.values():
        (member,) = site.members
        groups = member.layout.to_units(pruner.masks[member.name]).reshape(-1, m)
        kept = groups.sum(1)
        assert bool((kept >= n).all())
        if full:
            assert bool((kept == n).all())
        weight = member.param.detach()
        assert bool((weight[~pruner.masks[member.name]] == 0).all())


def test_nm_groups_run_over_conv_input_channels():
    conv = nn.Sequential(nn.Conv2d(8, 4, 3), nn.Conv2d(4, 2, 1))
    pruner = prune_once(conv, "2:4", "local", 0.5)
    mask = pruner.masks["0.weight"]                       # [Cout=4, Cin=8, 3, 3]
    per_group = mask.permute(0, 2, 3, 1).reshape(-1, 4).sum(1)
    assert per_group.tolist() == [2] * (4 * 3 * 3 * 2)


def test_nm_skips_layer_whose_input_does_not_divide():
    model = nn.Sequential(nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 2))
    pruner = prune_once(model, "2:4", "local", 0.5)
    assert set(pruner.sites) == {"1.weight", "2.weight"}
    assert "not a multiple of 4" in pruner.skipped["0"]


@SETTINGS
@given(model=models(), block=st.sampled_from([(4, 1), (1, 4), (2, 2), (8, 8), (3, 5)]), sparsity=st.floats(0.05, 0.95))
def test_block_invariant_every_block_all_or_nothing(model, block, sparsity):
    pruner = prune_once(model, f"{block[0]}x{block[1]}", "local", sparsity)
    for site in pruner.sites.values():
        (member,) = site.members
        mask = pruner.masks[member.name].reshape(member.param.shape[0], -1)
        r, c = block
        for i in range(0, mask.shape[0], r):
            for j in range(0, mask.shape[1], c):
                tile = mask[i:i + r, j:j + c]
                assert bool(tile.all()) or not bool(tile.any())


def test_channel_pruned_outputs_are_exactly_zero_including_norm_bias():
    model = small_cnn()
    for bn in (model[1], model[4]):   # non-trivial BN statistics and affine parameters
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.bias.data.uniform_(-1, 1)
    pruner = prune_once(model, "channel", "local", 0.5)
    assert {"1.weight", "1.bias", "4.weight", "4.bias"} <= set(pruner.masks)
    x = torch.randn(4, 3, 8, 8)
    for train_mode in (False, True):
        model.train(train_mode)
        with torch.no_grad():
            features = model[:5](x)             # after the second conv + BN
        pruned = ~pruner.masks["3.weight"].reshape(16, -1).any(1)
        assert int(pruned.sum()) == 8
        assert float(features[:, pruned].abs().max()) == 0.0


def test_head_target_zeroes_whole_heads_of_multihead_attention():
    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
            self.head = nn.Linear(16, 3)

        def forward(self, x):
            return self.head(self.attn(x, x, x, need_weights=False)[0])

    model = Block()
    pruner = build_pruner(model, {"target": "head", "criterion": "l2", "allocation": "local",
                                  "schedule": {"name": "oneshot", "final_sparsity": 0.5}})
    pruner.on_step_begin()
    keep = ~(pruner.masks["attn.out_proj.weight"] == 0).all(0).reshape(4, 4).all(1)
    assert keep.tolist().count(True) == 2
    # a model with the pruned heads removed by hand computes the same attention output
    x = torch.randn(2, 5, 16)
    full = model.attn(x, x, x, need_weights=False)[0]
    q, k, v = model.attn.in_proj_weight.chunk(3)
    bq, bk, bv = model.attn.in_proj_bias.chunk(3)
    out = torch.zeros(2, 5, 16)
    for h in keep.nonzero().flatten().tolist():
        s = slice(4 * h, 4 * h + 4)
        qh, kh, vh = x @ q[s].T + bq[s], x @ k[s].T + bk[s], x @ v[s].T + bv[s]
        att = torch.softmax(qh @ kh.transpose(1, 2) / 2.0, -1)
        out += (att @ vh) @ model.attn.out_proj.weight[:, s].T
    assert torch.allclose(full, out + model.attn.out_proj.bias, atol=1e-5)


def test_head_quartet_with_indivisible_heads_is_a_config_error():
    model = nn.ModuleDict({role: nn.Linear(12, 12) for role in "qkvo"})
    quartet = {"q": "q", "k": "k", "v": "v", "o": "o"}
    cfg = {"target": {"name": "head", "num_heads": 5, "quartets": [quartet]},
           "schedule": {"name": "oneshot", "final_sparsity": 0.5}}
    before = {n: p.clone() for n, p in model.named_parameters()}
    with pytest.raises(ConfigError, match="num_heads=5"):
        build_pruner(model, cfg)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    cfg["target"]["num_heads"] = 3
    cfg["schedule"]["final_sparsity"] = 0.34
    pruner = build_pruner(model, cfg)
    pruner.on_step_begin()
    assert pruner.report().per_layer["o.weight"] == pytest.approx(1 / 3)
    assert pruner.report().per_layer["q.bias"] == pytest.approx(1 / 3)


@SETTINGS
@given(rows=st.integers(1, 9), cols=st.integers(1, 9), out=st.integers(1, 20), inner=st.integers(1, 20))
def test_block_reduce_matches_unit_view(rows, cols, out, inner):
    from prunecli.sites import BlockLayout

    layout = BlockLayout((out, inner), rows, cols)
    t = torch.rand(out, inner)
    counts = layout.to_units(torch.ones(out, inner)).sum(1)
    expected = layout.to_units(t).sum(1) * rows * cols / counts
    assert torch.allclose(layout.reduce(t), expected, atol=1e-5)
    keep = torch.rand(layout.num_units) > 0.5
    assert torch.equal(layout.to_units(layout.expand(keep).float()).amax(1).bool(), keep)


@pytest.mark.parametrize("target,shape", [("unstructured", (6, 5, 3)), ("2:4", (6, 8, 3, 3)), ("4x1", (10, 7)),
                                          ("2x3", (7, 5, 2)), ("channel", (6, 4, 3))])
def test_element_positions_match_expand(target, shape):
    """Each layout's element positions of a set of units are exactly the elements expand() masks for them."""
    from prunecli.sites import element_positions
    from prunecli.targets import parse_target

    layer = torch.nn.Conv2d(1, 1, 1) if len(shape) == 4 else torch.nn.Linear(1, 1)
    layer.weight = torch.nn.Parameter(torch.randn(shape))
    if len(shape) == 3:
        layer = torch.nn.Conv1d(1, 1, 1)
        layer.weight = torch.nn.Parameter(torch.randn(shape))
    layer.bias = None
    sites, _ = parse_target(target).sites(torch.nn.Sequential(layer), {"0": layer})
    gen = torch.Generator().manual_seed(0)
    for member in sites[0].members:
        units = torch.randperm(member.layout.num_units, generator=gen)[: member.layout.num_units // 3]
        keep = torch.ones(member.layout.num_units, dtype=torch.bool)
        keep[units] = False
        want = (~member.layout.expand(keep)).reshape(-1).nonzero().squeeze(1)
        assert torch.equal(element_positions(member.layout, units).sort().values, want)


def test_weight_targets_prune_multihead_attention_input_projection():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16))
    model.add_module("attn", nn.MultiheadAttention(16, 4))
    for target, expected in (("unstructured", 0.75), ("4x1", 0.75), ("2:4", 0.5)):
        pruner = build_pruner(model, {"target": target, "layers": {"exclude_last": False},
                                      "schedule": {"name": "oneshot", "final_sparsity": expected}})
        pruner.prune_to(expected)
        per_layer = pruner.report().per_layer
        assert per_layer["attn.in_proj_weight"] == pytest.approx(expected)
        assert (model.attn.in_proj_weight == 0).float().mean().item() >= expected
        pruner.remove_hooks()


def test_weight_targets_prune_gpt2_conv1d_along_its_input_dim():
    pytest.importorskip("transformers")
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_embd=32, n_layer=1, n_head=4, vocab_size=64, n_positions=16, bos_token_id=0, eos_token_id=0)
    for target in ("unstructured", "2:4", "4x1"):
        torch.manual_seed(0)
        model = GPT2LMHeadModel(config)
        pruner = build_pruner(model, {"target": target, "schedule": {"name": "oneshot", "final_sparsity": 0.5}})
        pruner.prune_to(0.5)
        assert sorted(pruner.masks) == [f"transformer.h.0.{n}.weight" for n in
                                        ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]
        w = model.transformer.h[0].mlp.c_fc.weight.t()  # Conv1D holds [in, out]: as [out, in] = [128, 32]
        assert float((w == 0).float().mean()) == pytest.approx(0.5)
        if target == "2:4":  # 2 of every 4 consecutive inputs of each output kept
            assert int((w.reshape(128, 8, 4) != 0).sum(-1).max()) == 2
        if target == "4x1":  # 4 consecutive outputs of one input go together
            kept = (w.reshape(32, 4, 32) != 0).sum(1)
            assert bool(((kept == 0) | (kept == 4)).all())
        pruner.remove_hooks()
