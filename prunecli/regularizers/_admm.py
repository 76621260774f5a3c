"""ADMM: the sparsity constraint as an augmented-Lagrangian penalty with its own state (Z, U).

Zhang et al. 2018, "A Systematic DNN Weight Pruning Framework using Alternating Direction Method of
Multipliers", https://arxiv.org/abs/1804.03294, eqs. 4-7. With W the weights, Z their projection onto the
constraint set S (at most the target sparsity, in the target's units) and U the scaled dual variable:

- W-step: train on ``loss(W) + rho/2 * ||W - Z + U||^2``, i.e. add ``rho * (W - Z + U)`` to the gradient;
- every ``every`` W-steps: ``Z = proj_S(W + U)`` (keep the units of ``W + U`` with the largest L2 norm, spread
  over layers by the pruner's allocation), then ``U = U + W - Z``.

The hard pruning at the end is the preset's schedule (its criterion scores W, which ADMM has driven onto Z's
support); the penalty's window ends there (``end: schedule``) and fine-tuning runs without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor

from prunecli.allocation import parse_allocation
from prunecli.errors import ConfigError
from prunecli.sites import Site


@dataclass
class ADMM:
    """ADMM penalty ``rho/2 ||W - Z + U||^2`` with projection every ``every`` steps (see module docstring).

    Args:
        sparsity: The constraint: the fraction of the target's weights Z must be zero in (required).
        rho: Penalty strength (the paper's rho_i, one value for all layers).
        every: Optimizer steps between two Z/U updates.
        allocation: How the projection spreads the sparsity over layers (same spelling as ``pruner.allocation``),
            or ``pruner``: the pruner's own allocation, e.g. a searched one (AutoCompress projects onto the
            per-layer sparsities simulated annealing chooses).
    """

    sparsity: Any = None
    rho: float = 1e-3
    every: int = 10
    allocation: Any = "global"

    def __post_init__(self) -> None:
        key = "pruner.regularizer"
        if isinstance(self.sparsity, bool) or not isinstance(self.sparsity, (int, float)) \
                or not 0.0 <= self.sparsity < 1.0:
            raise ConfigError(f"{key}.sparsity", self.sparsity, "a float in [0, 1): the sparsity ADMM projects "
                              "onto (the admm preset sets ${sparsity})")
        if isinstance(self.rho, bool) or not isinstance(self.rho, (int, float)) or not 0.0 < self.rho < math.inf:
            raise ConfigError(f"{key}.rho", self.rho, "a float > 0")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ConfigError(f"{key}.every", self.every, "an integer >= 1")
        self._allocation = None if self.allocation == "pruner" else parse_allocation(self.allocation)
        self._step = 0
        self._z: dict[str, Tensor] = {}
        self._u: dict[str, Tensor] = {}

    def share_allocation(self, allocation: Any) -> None:
        """The pruner hands over its allocation; used only with ``allocation: pruner``."""
        if self.allocation == "pruner":
            self._allocation = allocation

    def bind(self, sites: Mapping[str, Site]) -> None:
        assert self._allocation is not None, "allocation: pruner needs share_allocation() before bind()"
        reachable = self._allocation.reachable(dict(sites))
        if self.sparsity > reachable + 1e-9:
            raise ConfigError("pruner.regularizer.sparsity", self.sparsity, f"a value <= {reachable:.4g}")

    @torch.no_grad()
    def project(self, sites: Mapping[str, Site], values: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``proj_S(values)``: zero the units with the smallest L2 norm of ``values`` (keyed by parameter FQN)."""
        scores = {}
        for name, site in sites.items():
            scored = [m for m in site.members if m.scored]
            score = sum(m.layout.to_units(values[m.name].float()).square().sum(1) for m in scored)
            scores[name] = site.protect(score) if site.protect else score
        keep = self._allocation.allocate(scores, dict(sites), float(self.sparsity))
        out = {}
        for name, site in sites.items():
            for member, mask in site.unit_masks(keep[name]).items():
                out[member] = values[member] * mask.to(values[member].dtype)
        return out

    @torch.no_grad()
    def penalize(self, sites: Mapping[str, Site]) -> None:
        params = {m.name: m.param for s in sites.values() for m in s.members}
        if not self._z:
            self._z = self.project(sites, {n: p.detach() for n, p in params.items()})
            self._u = {n: torch.zeros_like(p) for n, p in params.items()}
        elif self._step % self.every == 0:
            w_plus_u = {n: p.detach() + self._u[n] for n, p in params.items()}
            self._z = self.project(sites, w_plus_u)
            for n, p in params.items():
                self._u[n].add_(p.detach() - self._z[n])
        for n, p in params.items():
            if p.grad is not None:
                p.grad.add_(p.detach() - self._z[n] + self._u[n], alpha=self.rho)
        self._step += 1

    def state_dict(self) -> dict[str, Any]:
        return {"step": self._step, "z": {n: t.clone() for n, t in self._z.items()},
                "u": {n: t.clone() for n, t in self._u.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._step = int(state.get("step", 0))
        self._z = {n: t.clone() for n, t in state.get("z", {}).items()}
        self._u = {n: t.clone() for n, t in state.get("u", {}).items()}
