"""OWL: non-uniform layer sparsity from each layer's share of outlier scores.

Yin et al., "Outlier Weighed Layerwise Sparsity (OWL)", 2023, https://arxiv.org/abs/2310.05175. A layer (a
transformer block) whose Wanda scores ``|W_ij| * ||X_j||`` hold many outliers matters more, so it is pruned
less. With ``D_l`` the share of block ``l``'s scores above ``m`` times their mean (the paper's M = 5):

    n_l = (D_l - min D) / (max D - min D)                      (0: fewest outliers, 1: most)
    u_l = (n_l - mean_w(n)) / max_k |n_k - mean_w(n)|          (mean_w: weighted by the block's weights)
    S_l = target - lam * u_l

so more outliers give lower sparsity, every ``S_l`` lies in ``[target - lam, target + lam]`` and the mean of
``S_l`` weighted by each block's prunable weights is ``target``: the model's overall sparsity is the one asked
for. The paper's code (and llmcompressor's ``sparsity_profile="owl"``) maps ``n`` to a band of width exactly
``2 lam`` and centres it on the *unweighted* mean; that band leaves ``[target - lam, target + lam]`` when the
ratios are skewed (one outlier-heavy block among four: ``target - 1.5 lam``) and misses the target when blocks
differ in size. Here the larger deviation reaches ``lam``; with blocks of one size whose ratios are symmetric
about their mean (two blocks, say) both give the same sparsities. Equal ratios give uniform sparsity.

This module is the pure arithmetic; the pass collecting ``D_l`` lives in :mod:`prunecli.oneshot.owl`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import Tensor

from prunecli.errors import ConfigError

__all__ = ["OWL", "LAYER_SPARSITIES", "parse_layer_sparsity"]

LAYER_SPARSITIES = ("uniform", "owl")
KEY = "pruner.layer_sparsity"


@dataclass(frozen=True)
class OWL:
    """Outlier-weighted layer sparsity: ``m`` the outlier threshold as a multiple of the mean score, ``lam``
    the largest deviation of a layer's sparsity from the target."""

    m: float = 5.0
    lam: float = 0.08

    def __post_init__(self) -> None:
        if isinstance(self.m, bool) or not isinstance(self.m, (int, float)) or not self.m > 0:
            raise ConfigError(f"{KEY}.m", self.m, "a number > 0 (outlier threshold, a multiple of the mean score)")
        if isinstance(self.lam, bool) or not isinstance(self.lam, (int, float)) or not 0 <= self.lam < 1:
            raise ConfigError(f"{KEY}.lam", self.lam, "a float in [0, 1) (largest change of a layer's sparsity)")

    @torch.no_grad()
    def outlier_ratio(self, scores: Iterable[Tensor]) -> float:
        """``D``: the share of all ``scores`` (one layer's, over its weight tensors) above ``m`` times their
        mean."""
        flat = [s.detach().reshape(-1).float() for s in scores]
        count = sum(s.numel() for s in flat)
        if not count:
            return 0.0
        mean = sum(float(s.sum()) for s in flat) / count
        return sum(int((s > self.m * mean).sum()) for s in flat) / count

    def check(self, target: float) -> None:
        """Raise a one-line :class:`ConfigError` if ``lam`` would take a layer below 0 or to 1 at ``target``."""
        if not (self.lam <= target and target + self.lam < 1):
            raise ConfigError(f"{KEY}.lam", self.lam, f"at most {target:g} and below {1 - target:g} at sparsity "
                              f"{target:g}", "every layer's sparsity must stay in [0, 1)")

    def sparsities(self, ratios: Sequence[float], sizes: Sequence[int], target: float) -> list[float]:
        """Each layer's sparsity from its outlier ratio ``ratios[l]`` and its number of prunable weights
        ``sizes[l]`` (the module docstring's formula).

        Raises:
            ConfigError: As :meth:`check`.
        """
        self.check(target)
        low, high = min(ratios), max(ratios)
        if high - low <= 0 or not sum(sizes):
            return [float(target)] * len(ratios)
        normal = [(r - low) / (high - low) for r in ratios]
        mean = sum(n * s for n, s in zip(normal, sizes)) / sum(sizes)
        spread = max(abs(n - mean) for n in normal)
        return [float(target - self.lam * (n - mean) / spread) for n in normal]


def parse_layer_sparsity(spec: Any) -> OWL | None:
    """``uniform`` (or None) -> None; ``owl``, ``{name: owl, m: 5, lam: 0.08}`` or an :class:`OWL` -> that."""
    if spec is None or isinstance(spec, OWL):
        return spec
    options = dict(spec) if isinstance(spec, Mapping) else {"name": spec}
    name = str(options.pop("name", "")).strip().lower()
    if name not in LAYER_SPARSITIES:
        raise ConfigError(KEY, name or spec, LAYER_SPARSITIES)
    allowed = ("m", "lam") if name == "owl" else ()
    for option, value in options.items():
        if option not in allowed:
            raise ConfigError(f"{KEY}.{option}", value, f"an option of {name}: {', '.join(allowed) or 'none'}")
    return OWL(**options) if name == "owl" else None
