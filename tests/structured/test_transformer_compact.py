"""Coupled channels through LayerNorm, GroupNorm, bare parameters and attention; heads; exact compaction."""

from __future__ import annotations

import copy

import pytest
import torch
from _structured import Block, prune, randomized
from torch import nn

from prunecli.models import build_model
from prunecli.structure import Attention, CountedGroupNorm, CountedLayerNorm, compact, replay
from prunecli.targets import CoupledChannel


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _compacted(model: nn.Module, x: torch.Tensor, sparsity: float = 0.5, **cfg):
    pruner = prune(model, x, sparsity, **cfg)
    with torch.no_grad():
        masked = model(x)
    small = copy.deepcopy(model)
    plan = compact(small, pruner.masks, x[:1])
    with torch.no_grad():
        diff = float((small(x) - masked).abs().max())
    return pruner, small, plan, masked, diff


class TinyTransformer(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 4, tokens: int = 6):
        super().__init__()
        self.embed = nn.Linear(8, dim)
        self.pos = nn.Parameter(torch.randn(1, tokens, dim) * 0.5)
        self.blocks = nn.Sequential(Block(dim, heads), Block(dim, heads))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 5)

    def forward(self, x):
        return self.head(self.norm(self.blocks(self.embed(x) + self.pos)).mean(1))


class GroupNormNet(nn.Module):
    """A residual stream and a bottleneck, both through GroupNorm (groups of 4 and of 6 channels)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.gn1 = nn.Conv2d(3, 16, 3, padding=1), nn.GroupNorm(4, 16)
        self.conv2, self.gn2 = nn.Conv2d(16, 24, 3, padding=1), nn.GroupNorm(4, 24)
        self.conv3, self.gn3 = nn.Conv2d(24, 16, 1), nn.GroupNorm(2, 16)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        h = torch.relu(self.gn1(self.conv1(x)))
        h = torch.relu(h + self.gn3(self.conv3(torch.relu(self.gn2(self.conv2(h))))))
        return self.fc(h.mean((2, 3)))


def test_tiny_transformer_heads_residual_and_hidden_shrink_exactly():
    torch.manual_seed(0)
    model = randomized(TinyTransformer())
    x = torch.randn(4, 6, 8)
    pruner, small, plan, masked, diff = _compacted(model, x)
    assert pruner.skipped == {}
    assert {"blocks.0.attn", "blocks.1.attn"} <= set(pruner.sites)  # one head site per attention module
    residual = next(s for s in pruner.sites.values() if s.member("pos"))
    assert {"embed.weight", "pos", "norm.weight", "blocks.0.ln_1.bias", "blocks.1.attn.in_proj_weight",
            "blocks.1.attn.out_proj.bias", "head.weight"} <= {m.name for m in residual.members}
    assert diff <= 1e-5 and masked.abs().max() > 1e-2
    attn = small.blocks[0].attn
    assert isinstance(attn, Attention) and attn.num_heads == 2 and attn.in_proj_weight.shape == (3 * 16, 16)
    assert isinstance(small.norm, CountedLayerNorm) and small.norm.count == 32 and small.pos.shape == (1, 6, 16)
    assert small.blocks[1].mlp[0].out_features == 32 and small.head.in_features == 16
    assert _params(small) < 0.35 * _params(model)
    fresh = TinyTransformer()
    replay(fresh, plan, x[:1]).load_state_dict(small.state_dict())
    with torch.no_grad():
        assert (fresh.eval()(x) - masked).abs().max() <= 1e-5


def test_groupnorm_groups_keep_their_dense_counts():
    torch.manual_seed(0)
    model = randomized(GroupNormNet())
    x = torch.randn(2, 3, 8, 8)
    pruner, small, plan, masked, diff = _compacted(model, x, target={"name": "channel"}, allocation="global")
    assert pruner.skipped == {} and diff <= 1e-5 and masked.abs().max() > 1e-2
    assert all(isinstance(getattr(small, f"gn{i}"), CountedGroupNorm) for i in (1, 2, 3))
    kept = torch.bincount(small.gn2.channel_group, minlength=4)
    assert int(kept.sum()) == small.conv2.out_channels < 24 and small.gn2.group_size == 6
    assert small.conv1.out_channels == small.gn1.weight.shape[0] == small.fc.in_features < 16


def test_vit_b_16_heads_residual_and_mlp_shrink_exactly():
    torch.manual_seed(0)
    model = randomized(build_model("vit_b_16", in_channels=3, num_classes=10, image_size=32))
    x = torch.randn(2, 3, 32, 32)
    pruner, small, plan, masked, diff = _compacted(model, x)
    assert pruner.skipped == {} and len(pruner.sites) == 12 + 12 + 1  # heads, MLP hidden, residual stream
    assert diff <= 1e-5 and masked.abs().max() > 1e-2
    block = small.encoder.layers[0]
    assert block.self_attention.num_heads == 6 and block.self_attention.in_proj_weight.shape == (3 * 384, 384)
    assert block.mlp[0].out_features == 1536 and small.class_token.shape == (1, 1, 384) and small.hidden_dim == 384
    assert small.encoder.pos_embedding.shape[-1] == 384 and small.encoder.ln.count == 768
    assert (_params(model), _params(small)) == (85_152_010, 21_342_346)


def test_head_target_compacts_to_fewer_heads():
    torch.manual_seed(0)
    model = randomized(TinyTransformer())
    x = torch.randn(4, 6, 8)
    pruner, small, plan, masked, diff = _compacted(model, x, target="head")
    assert diff <= 1e-5 and plan["history"] == []
    assert {c[0].rsplit(".", 1)[-1] for c in plan["cuts"]} == {"in_proj_weight", "in_proj_bias", "weight"}
    assert [b.attn.num_heads for b in small.blocks] == [2, 2] and small.blocks[0].attn.out_proj.in_features == 16
    assert small.norm.weight.shape == (32,) and isinstance(small.norm, nn.LayerNorm)  # residual stream untouched


def test_masked_attention_matches_compact_attention_with_weights_and_masks():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4).eval()
    keep_heads, keep_dims = [0, 2], [i for i in range(16) if i % 3]
    x = torch.randn(5, 3, 16)
    x[..., [i for i in range(16) if i not in keep_dims]] = 0
    with torch.no_grad():
        for h in (1, 3):
            for part in range(3):
                mha.in_proj_weight[part * 16 + 4 * h: part * 16 + 4 * h + 4] = 0
                mha.in_proj_bias[part * 16 + 4 * h: part * 16 + 4 * h + 4] = 0
            mha.out_proj.weight[:, 4 * h: 4 * h + 4] = 0
    attn = Attention.from_dense(mha)
    rows = [part * 16 + 4 * h + j for part in range(3) for h in keep_heads for j in range(4)]
    cols = [4 * h + j for h in keep_heads for j in range(4)]
    with torch.no_grad():
        attn.in_proj_weight = nn.Parameter(mha.in_proj_weight[rows][:, keep_dims])
        attn.in_proj_bias = nn.Parameter(mha.in_proj_bias[rows])
        attn.out_proj.weight = nn.Parameter(mha.out_proj.weight[keep_dims][:, cols])
        attn.out_proj.bias = nn.Parameter(mha.out_proj.bias[keep_dims])
        pad = torch.tensor([[False] * 4 + [True]] * 3)
        causal = torch.ones(5, 5, dtype=torch.bool).triu(1)
        for kwargs in ({}, {"need_weights": False}, {"key_padding_mask": pad}, {"attn_mask": causal},
                       {"attn_mask": causal.float() * -1e4, "need_weights": False}):
            dense, dense_w = mha(x, x, x, **kwargs)
            out, w = attn(x[..., keep_dims], x[..., keep_dims], x[..., keep_dims], **kwargs)
            assert (out - dense[..., keep_dims]).abs().max() <= 1e-5, kwargs
            assert (w is None) == (dense_w is None) and (w is None or (w - dense_w).abs().max() <= 1e-6), kwargs


@pytest.mark.parametrize("norm", [nn.LayerNorm(8), nn.GroupNorm(2, 8)])
def test_counted_norm_equals_dense_norm_on_zeroed_channels(norm):
    torch.manual_seed(0)
    shape = (3, 5, 8) if isinstance(norm, nn.LayerNorm) else (3, 8, 4, 4)
    dim = -1 if isinstance(norm, nn.LayerNorm) else 1
    kept = [0, 1, 2, 5]  # GroupNorm: group 0 keeps 3 of 4 channels, group 1 keeps 1
    x = torch.randn(shape).index_fill(dim, torch.tensor([3, 4, 6, 7]), 0.0)
    counted = (CountedLayerNorm if isinstance(norm, nn.LayerNorm) else CountedGroupNorm).from_dense(norm)
    with torch.no_grad():
        counted.weight = nn.Parameter(norm.weight[kept])
        counted.bias = nn.Parameter(norm.bias[kept])
        if isinstance(counted, CountedGroupNorm):
            counted.channel_group = counted.channel_group[kept]
        sub = torch.tensor(kept)
        assert (counted(x.index_select(dim, sub)) - norm(x).index_select(dim, sub)).abs().max() <= 1e-5


class NotAffine(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.gn, self.head = nn.Conv2d(3, 8, 3), nn.GroupNorm(2, 8, affine=False), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.head(self.gn(self.conv(x)))


def test_norm_without_affine_parameters_is_skipped_naming_the_layer():
    sites, skipped = CoupledChannel().sites(NotAffine(), {"conv": None}, torch.randn(1, 3, 8, 8))
    assert sites == []
    assert skipped["conv"] == "gn (GroupNorm) has no affine weight, so a masked channel is not zero after it"


def test_attention_with_separate_kdim_is_skipped_naming_the_layer():
    class Cross(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.attn = nn.Linear(6, 8), nn.MultiheadAttention(8, 2, kdim=6, vdim=6, batch_first=True)

        def forward(self, x):
            return self.attn(self.q(x), x, x, need_weights=False)[0].sum(-1)

    model = Cross()
    sites, skipped = CoupledChannel().sites(model, {"q": model.q, "attn": model.attn}, torch.randn(1, 3, 6))
    assert "separate q/k/v sizes" in skipped["attn"] and "attn (MultiheadAttention)" in skipped["attn"]


def test_fpgm_scores_heads_and_compacts_exactly():
    """fpgm compares whole units: heads (their q/k/v rows and output columns) as well as channels."""
    torch.manual_seed(0)
    model = randomized(TinyTransformer())
    x = torch.randn(4, 6, 8)
    pruner, small, _, masked, diff = _compacted(model, x, criterion="fpgm")
    head = pruner.sites["blocks.0.attn"]
    scores = pruner.criterion.score(head)
    assert scores.shape == (4,) and bool((scores > 0).all())
    assert small.blocks[0].attn.num_heads == 2 and diff <= 1e-5


def test_heads_false_keeps_heads_whole_for_activation_criteria():
    """Activation criteria read output channels, which head sites lack: the error says how to keep heads whole,
    and with ``heads: false`` the residual stream and MLP groups are still pruned and compact exactly."""
    from prunecli.errors import ConfigError

    torch.manual_seed(0)
    model = randomized(TinyTransformer())
    x = torch.randn(4, 6, 8)
    with pytest.raises(ConfigError, match=r"blocks\.0\.attn has no output channels.*pruner\.target\.heads=false"):
        prune(model, x, criterion="apoz")
    target = {"name": "channel", "heads": False}
    assert str(CoupledChannel(heads=False)) == "channel(heads=false)"
    pruner, small, _, masked, diff = _compacted(copy.deepcopy(model), x, target=target, criterion="l2")
    assert "blocks.0.attn" not in pruner.sites and "heads are kept whole" in pruner.skipped["blocks.0.attn"]
    assert small.blocks[0].attn.num_heads == 4 and small.blocks[0].mlp[0].out_features == 32
    assert diff <= 1e-5
