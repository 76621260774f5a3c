"""Helpers of the structured tests: models with non-trivial outputs, one-shot coupled channel pruning."""

from __future__ import annotations

import torch
from torch import nn

from prunecli.config import build_pruner


class Block(nn.Module):
    """Pre-norm transformer block (LayerNorm, sequence-first attention called with its default
    need_weights=True, MLP) on a residual stream."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, h):
        y = self.ln_1(h).transpose(0, 1)
        a, _ = self.attn(y, y, y)
        h = h + a.transpose(0, 1)
        return h + self.mlp(self.ln_2(h))


def randomized(model: nn.Module) -> nn.Module:
    """Eval-mode model whose norm statistics, norm affine parameters and linear layers are random, so outputs are
    not near zero."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            elif isinstance(m, (nn.LayerNorm, nn.GroupNorm)) and m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.weight.shape[1] ** 0.5)
    return model.eval()


def prune(model: nn.Module, x: torch.Tensor, sparsity: float = 0.5, **cfg) -> object:
    pruner = build_pruner(model, {"target": "channel", "criterion": "l2", "allocation": "local",
                                  "schedule": {"name": "oneshot", "final_sparsity": sparsity}, **cfg},
                          example_inputs=x[:1])
    pruner.update_masks(sparsity)
    return pruner
