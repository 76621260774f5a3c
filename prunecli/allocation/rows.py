"""Per-row allocation: every output row of every layer loses the same share of its weights.

Wanda's comparison group (Sun et al. 2023, https://arxiv.org/abs/2306.11695, section 3): scores are compared
only within the output row they belong to, so every output neuron keeps the same number of inputs. It works
on element units (``unstructured``, and ``N:M``, whose groups run along the input dim within a row); a row
is the first dim of the weight (of its units' order: the output dim of a transformers ``Conv1D`` ``[in, out]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from prunecli.allocation.base import check_caps
from prunecli.errors import ConfigError
from prunecli.sites import ElementLayout, Site

__all__ = ["PerRow"]


def _rows(site: Site) -> tuple[int, int]:
    """(rows, units per row) of an element site."""
    layout = site.members[0].layout
    if len(site.members) != 1 or not isinstance(layout, ElementLayout):
        raise ConfigError("pruner.allocation", "per_row", "an unstructured or N:M target (rows of single weights)",
                          f"the units of {site.name} are not single weights")
    rows = layout.shape[layout.perm[0] if layout.perm else 0]  # units run over [out, ...]: Conv1D's too
    return rows, site.num_units // rows


@dataclass(frozen=True)
class PerRow:
    """``round(sparsity * row length)`` lowest-scored weights of each output row (clamped to
    ``[min_sparsity, max_sparsity]`` and the pattern's limit)."""

    min_sparsity: float = 0.0
    max_sparsity: float = 1.0

    def __post_init__(self) -> None:
        check_caps(self.min_sparsity, self.max_sparsity, "pruner.allocation")

    def _per_row(self, site: Site, sparsity: float) -> int:
        _, length = _rows(site)
        high = math.floor(min(self.max_sparsity, site.max_sparsity) * length + 1e-9)
        low = min(math.ceil(self.min_sparsity * length - 1e-9), high)
        return min(max(round(sparsity * length), low), high)

    def allocate(self, scores: dict[str, Tensor], sites: dict[str, Site], sparsity: float) -> dict[str, Tensor]:
        keep = {}
        for name, site in sites.items():
            rows, length = _rows(site)
            k = self._per_row(site, sparsity)
            row_keep = torch.ones(rows, length, dtype=torch.bool, device=scores[name].device)
            if k:
                lowest = scores[name].reshape(rows, length).topk(k, dim=1, largest=False).indices
                row_keep.scatter_(1, lowest, False)
            keep[name] = row_keep.reshape(-1)
        return keep

    def reachable(self, sites: dict[str, Site]) -> float:
        return min(self._per_row(s, 1.0) / _rows(s)[1] for s in sites.values())
