"""Objective axis: what the user wants, translated into the sparsity over the targeted parameters.

``to_sparsity(requested, model, sites)`` gets the configured sparsity (``sparsity=`` on the command line) and
returns the final sparsity the schedule must reach over the targeted parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from torch import nn

from prunecli._parts import build_part
from prunecli.errors import ConfigError
from prunecli.sites import Site

__all__ = ["Objective", "Sparsity", "Params", "parse_objective"]


@runtime_checkable
class Objective(Protocol):
    def to_sparsity(self, requested: float, model: nn.Module, sites: list[Site]) -> float: ...


@dataclass(frozen=True)
class Sparsity:
    """The requested sparsity, as is."""

    def to_sparsity(self, requested: float, model: nn.Module, sites: list[Site]) -> float:
        return requested


@dataclass(frozen=True)
class Params:
    """Keep a fraction ``keep`` of all the model's parameters (prunable or not)."""

    keep: float = 0.5

    def to_sparsity(self, requested: float, model: nn.Module, sites: list[Site]) -> float:
        if not isinstance(self.keep, (int, float)) or not 0.0 < self.keep <= 1.0:
            raise ConfigError("objective.keep", self.keep, "a fraction in (0, 1]")
        total = sum(p.numel() for p in model.parameters())
        targeted = sum(m.param.numel() for s in sites for m in s.members)
        sparsity = (1.0 - self.keep) * total / targeted
        if sparsity >= 1.0:
            raise ConfigError("objective.keep", self.keep, f"a fraction > {1 - targeted / total:.4f}",
                              "the targeted layers hold too few of the model's parameters")
        return sparsity


OBJECTIVES = {"sparsity": Sparsity, "params": Params}


def parse_objective(spec: Any, key: str = "objective") -> Objective:
    """``sparsity`` (default), ``{name: params, keep: 0.5}``, or ``{_target_: ...}``."""
    if spec is None:
        return Sparsity()
    if isinstance(spec, Objective):
        return spec
    return build_part(spec, OBJECTIVES, key, default="sparsity")
