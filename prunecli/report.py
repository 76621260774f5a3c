"""Sparsity report: per-layer and overall sparsity, total and non-zero parameter counts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class SparsityReport:
    """Sparsity of a model under its masks.

    Attributes:
        sparsity: Fraction of targeted (masked) elements that are pruned.
        params_total: Every parameter element of the model.
        params_nonzero: Parameter elements that are not exactly zero.
        per_layer: Masked parameter FQN -> its pruned fraction.
    """

    sparsity: float
    params_total: int
    params_nonzero: int
    per_layer: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def sparsity_report(model: nn.Module, masks: Mapping[str, Tensor]) -> SparsityReport:
    """Report for ``model`` and its masks (True = kept), keyed by parameter FQN."""
    per_layer, pruned, targeted = {}, 0, 0
    for name, mask in masks.items():
        n_pruned = mask.numel() - int(mask.count_nonzero())
        per_layer[name] = n_pruned / mask.numel()
        pruned += n_pruned
        targeted += mask.numel()
    params = list(model.parameters())
    return SparsityReport(
        sparsity=pruned / targeted if targeted else 0.0,
        params_total=sum(p.numel() for p in params),
        params_nonzero=sum(int(p.count_nonzero()) for p in params),
        per_layer=per_layer,
    )
