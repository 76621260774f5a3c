"""Local and global allocation: the criterion's scores ranked per layer or over all targeted layers at once.

Both select with :func:`prunecli.allocation.select.select_lowest`, which finds the exact threshold without
concatenating the scores of all layers into one tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from prunecli._bits import count_true, logical_not
from prunecli.allocation.base import check_caps, unit_caps
from prunecli.allocation.select import select_lowest
from prunecli.errors import ConfigError
from prunecli.sites import Site

__all__ = ["Local", "Global"]


@dataclass(frozen=True)
class Local:
    """Every layer to the same sparsity (clamped to ``[min_sparsity, max_sparsity]`` and the pattern's limit)."""

    min_sparsity: float = 0.0
    max_sparsity: float = 1.0

    def __post_init__(self) -> None:
        check_caps(self.min_sparsity, self.max_sparsity, "pruner.allocation")

    def allocate(self, scores: dict[str, Tensor], sites: dict[str, Site], sparsity: float) -> dict[str, Tensor]:
        keep = {}
        for name, site in sites.items():
            low, high = unit_caps(site, self.min_sparsity, self.max_sparsity)
            k = min(max(round(sparsity * site.num_units), low), high)
            keep[name] = ~select_lowest([scores[name]], k)[0]
        return keep

    def reachable(self, sites: dict[str, Site]) -> float:
        return min(unit_caps(s, self.min_sparsity, self.max_sparsity)[1] / s.num_units for s in sites.values())


@dataclass(frozen=True)
class Global:
    """One ranking over all targeted layers, weighted by the elements each unit stands for.

    Per-layer caps are met by water-filling: layers whose share of the global selection falls outside
    ``[min_sparsity, max_sparsity]`` are fixed at the cap and the rest is re-ranked with the remaining budget.
    ``normalize: mean`` divides each layer's scores by their mean first (Torch-Pruning's global mode), so
    layers with larger weights do not dominate the ranking.
    """

    min_sparsity: float = 0.0
    max_sparsity: float = 1.0
    normalize: str = "none"

    def __post_init__(self) -> None:
        check_caps(self.min_sparsity, self.max_sparsity, "pruner.allocation")
        if self.normalize not in ("none", "mean"):
            raise ConfigError("pruner.allocation.normalize", self.normalize, ["none", "mean"])

    def allocate(self, scores: dict[str, Tensor], sites: dict[str, Site], sparsity: float) -> dict[str, Tensor]:
        if self.normalize == "mean":
            scores = {n: s / s[s.isfinite()].abs().mean().clamp_min(1e-12) for n, s in scores.items()}
        caps = {n: unit_caps(site, self.min_sparsity, self.max_sparsity) for n, site in sites.items()}
        weight = {n: site.unit_size for n, site in sites.items()}
        budget = round(sparsity * sum(site.num_units * weight[n] for n, site in sites.items()))
        pruned: dict[str, Tensor] = {}
        active = list(sites)
        while active:
            spent = sum(count_true(pruned[n]) * weight[n] for n in pruned)
            room = sum(caps[n][1] * weight[n] for n in active)
            chosen = select_lowest([scores[n] for n in active], min(max(budget - spent, 0), room),
                                   [weight[n] for n in active])
            out_of_caps = {}
            for n, mask in zip(active, chosen):
                count = count_true(mask)
                if not caps[n][0] <= count <= caps[n][1]:
                    out_of_caps[n] = min(max(count, caps[n][0]), caps[n][1])
            if not out_of_caps:
                pruned.update(zip(active, chosen))
                break
            for n, k in out_of_caps.items():
                pruned[n] = select_lowest([scores[n]], k)[0]
            active = [n for n in active if n not in out_of_caps]
        return {n: logical_not(mask) for n, mask in pruned.items()}

    def reachable(self, sites: dict[str, Site]) -> float:
        total = sum(s.num_units * s.unit_size for s in sites.values())
        room = sum(unit_caps(s, self.min_sparsity, self.max_sparsity)[1] * s.unit_size for s in sites.values())
        return room / total
