"""Sparsity report: per-layer and overall sparsity, total and non-zero parameter counts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Optional

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
        unit_sparsity: Fraction of the target's units (channels, heads, ...) removed, or None when only masks
            are known (see :meth:`prunecli.pruner.Pruner.unit_sparsity`).
        per_layer_kind: Masked parameter FQN -> ``units`` (its own units are pruned) or ``inputs`` (it only
            loses input columns of units pruned elsewhere; its outputs stay); empty when only masks are known.
    """

    sparsity: float
    params_total: int
    params_nonzero: int
    per_layer: dict[str, float] = field(default_factory=dict)
    unit_sparsity: Optional[float] = None
    per_layer_kind: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict; ``unit_sparsity`` and ``per_layer_kind`` only when known (from a pruner)."""
        out = asdict(self)
        if self.unit_sparsity is None:
            del out["unit_sparsity"], out["per_layer_kind"]
        return out


@dataclass(frozen=True)
class PrunerReport(SparsityReport):
    """A :class:`~prunecli.report.SparsityReport` plus what only the pruner knows.

    Attributes:
        target_sparsity: The final sparsity the schedule reaches (what the objective made of the requested one).
        search: A searched allocation's report (evaluations spent, the per-layer sparsities chosen), or None.
    """

    target_sparsity: Optional[float] = None
    search: Optional[dict[str, Any]] = None

    def to_dict(self) -> dict[str, Any]:
        """The sparsity fields as a dict, as a checkpoint's ``meta.json`` keeps them (its format is unchanged);
        ``target_sparsity`` and ``search`` go to the prune command's ``summary.json`` instead."""
        out = super().to_dict()
        del out["target_sparsity"], out["search"]
        return out


@torch.no_grad()
def sparsity_report(model: nn.Module, masks: Mapping[str, Tensor], *, unit_sparsity: Optional[float] = None,
                    kinds: Optional[Mapping[str, str]] = None) -> SparsityReport:
    """Report for ``model`` and its masks (True = kept), keyed by parameter FQN; the pruner adds what only its
    target knows: ``unit_sparsity`` and the per-parameter ``kinds``."""
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
        unit_sparsity=unit_sparsity,
        per_layer_kind=dict(kinds or {}),
    )
