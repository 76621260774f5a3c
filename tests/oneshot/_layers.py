"""A one-block model whose block is a single nn.Linear, and calibration inputs with outlier features."""

from __future__ import annotations

import torch
from torch import nn


class OneLinear(nn.Module):
    """``blocks[0]`` is one ``nn.Linear``: prune_oneshot prunes exactly that layer (``blocks.0.weight``)."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(weight.shape[1], weight.shape[0], bias=False)])
        with torch.no_grad():
            self.blocks[0].weight.copy_(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks[0](x)


def outlier_inputs(tokens: int, features: int, outliers: int = 4, scale: float = 20.0, seed: int = 0) -> torch.Tensor:
    """Correlated Gaussian inputs ``[tokens, features]`` (features mixed from half as many sources, as hidden
    states are) whose first ``outliers`` features are ``scale`` times larger (the few large-magnitude features
    of LLM activations that Wanda's paper builds on)."""
    gen = torch.Generator().manual_seed(seed)
    mixing = torch.randn(features // 2, features, generator=gen) / (features // 2) ** 0.5
    x = torch.randn(tokens, features // 2, generator=gen) @ mixing + 0.1 * torch.randn(tokens, features, generator=gen)
    x[:, :outliers] *= scale
    return x


def relative_error(w: torch.Tensor, pruned: torch.Tensor, x: torch.Tensor) -> float:
    """``||x w^T - x pruned^T|| / ||x w^T||``: the layer's output reconstruction error."""
    return float((x @ (w - pruned).T).norm() / (x @ w.T).norm())
