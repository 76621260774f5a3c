"""Sensitivity analysis: scan each layer's score-vs-sparsity curve, then spread the budget where it hurts least.

Han et al. 2015, "Learning both Weights and Connections for Efficient Neural Networks"
(https://arxiv.org/abs/1506.02626), section 4; NNI's ``SensitivityPruner``.

For every layer ``i`` and grid sparsity ``g`` the evaluator scores the model with only layer ``i`` pruned to ``g``
(by the criterion's scores): ``drop_i(g) = score(dense) - score(i at g)``, made non-decreasing in ``g``. For a
tolerated drop ``d`` each layer takes the largest sparsity whose (linearly interpolated) drop is at most ``d``;
``d`` is found by bisection so that the overall sparsity meets the target (as NNI bisects its accuracy-drop
threshold), then the sparsities are scaled to meet it exactly. The scan costs ``1 + layers * len(grid)``
evaluations and is cached across mask updates (a multi-step schedule rescans nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from prunecli.allocation.search.base import SearchBase, element_weights, fit, private
from prunecli.errors import ConfigError
from prunecli.sites import Site

DEFAULT_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


@dataclass
class Sensitivity(SearchBase):
    """Per-layer sensitivity scan, then the allocation with the least predicted score drop.

    Args:
        grid: Sparsities scanned per layer (each in ``(0, 1]``).
        min_sparsity, max_sparsity, eval_batches: see :class:`~prunecli.allocation.search.base.SearchBase`.
    """

    grid: Any = DEFAULT_GRID
    _curves: Any = private()

    def __post_init__(self) -> None:
        super().__post_init__()
        grid = list(self.grid) if isinstance(self.grid, (list, tuple)) else None
        if not grid or not all(isinstance(g, (int, float)) and 0 < g <= 1 for g in grid):
            raise ConfigError(f"{self.key}.grid", self.grid, "a non-empty list of sparsities in (0, 1]",
                              "an empty grid evaluates nothing")
        self.grid = tuple(sorted(set(float(g) for g in grid)))

    @property
    def method(self) -> str:
        return "sensitivity"

    def allocate(self, scores: dict[str, Tensor], sites: dict[str, Site], sparsity: float) -> dict[str, Tensor]:
        self.start(sites)
        lo, hi = self.bounds(scores, sites)
        if self._curves is None or set(self._curves) != set(sites):
            self._curves = self._scan(scores, sites, lo, hi)
        w = element_weights(sites)
        chosen = fit(self._tolerate(sites, lo, hi, w, sparsity), w, lo, hi, sparsity)
        self._evaluations = self._scanned
        self.finish(sites, chosen, None)
        return self.keep_vectors(scores, sites, chosen, lo, hi)

    def _scan(self, scores: dict[str, Tensor], sites: dict[str, Site], lo: Tensor, hi: Tensor) -> dict[str, Any]:
        base = self.evaluate(scores, sites, lo, lo, hi)
        curves = {}
        for i, name in enumerate(sites):
            xs, drops = [float(lo[i])], [0.0]
            for g in self.grid:
                if g <= float(lo[i]) or g > float(hi[i]) + 1e-9:
                    continue
                candidate = lo.clone()
                candidate[i] = g
                xs.append(g)
                drops.append(max(base - self.evaluate(scores, sites, candidate, lo, hi), drops[-1]))
            curves[name] = (torch.tensor(xs, dtype=torch.float64), torch.tensor(drops, dtype=torch.float64))
        self._scanned = self._evaluations
        return curves

    def _tolerate(self, sites: dict[str, Site], lo: Tensor, hi: Tensor, w: Tensor, target: float) -> Tensor:
        """Per-layer sparsities at the smallest tolerated drop whose overall sparsity reaches ``target``."""
        def at(d: float) -> Tensor:
            return torch.stack([_largest_within(*self._curves[n], d) for n in sites]).clamp(lo, hi)

        a, b = 0.0, max(float(c[1][-1]) for c in self._curves.values()) + 1.0
        for _ in range(60):
            mid = (a + b) / 2
            if float((w * at(mid)).sum() / w.sum()) < target:
                a = mid
            else:
                b = mid
        return at(b)

    def state_dict(self) -> dict[str, Any]:
        """The base state plus the scanned curves (a resume must not scan again on other weights)."""
        curves = {n: [xs, drops] for n, (xs, drops) in (self._curves or {}).items()}
        return {**super().state_dict(), "curves": curves, "scanned": getattr(self, "_scanned", 0)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        curves = state.get("curves") or {}
        self._curves = {n: (xs.to(torch.float64), drops.to(torch.float64)) for n, (xs, drops) in curves.items()} or None
        self._scanned = int(state.get("scanned", 0))

    def report(self) -> dict[str, Any]:
        out = super().report()
        out["curves"] = {n: {"sparsity": [round(float(x), 4) for x in c[0]], "drop": [float(y) for y in c[1]]}
                         for n, c in (self._curves or {}).items()}
        return out


def _largest_within(xs: Tensor, drops: Tensor, tolerated: float) -> Tensor:
    """The largest sparsity whose linearly interpolated drop is at most ``tolerated`` (``drops`` non-decreasing)."""
    over = (drops > tolerated).nonzero()
    if len(over) == 0:
        return xs[-1]
    j = int(over[0])
    if j == 0:
        return xs[0]
    frac = (tolerated - drops[j - 1]) / (drops[j] - drops[j - 1])
    return xs[j - 1] + frac * (xs[j] - xs[j - 1])
