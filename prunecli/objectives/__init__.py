"""Objective axis: what the user wants, translated into the sparsity over the targeted parameters.

``to_sparsity(requested, model, sites)`` gets the configured sparsity (``sparsity=`` on the command line) and
returns the final sparsity the schedule must reach over the targeted parameters. Objectives that declare
``needs_example_inputs`` also get ``example_inputs=`` (the pruner's input batch, or None).

``flops``, ``latency`` and ``params`` on the coupled channel target budget the compacted model
(:mod:`prunecli.objectives.structured`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from torch import nn

from prunecli.errors import ConfigError
from prunecli.objectives._compacted import check_keep, is_coupled
from prunecli.objectives.structured import Flops, Latency, compacted_params_sparsity
from prunecli.registry import Registry
from prunecli.sites import Site

__all__ = ["OBJECTIVES", "Objective", "Sparsity", "Params", "Flops", "Latency", "parse_objective"]


@runtime_checkable
class Objective(Protocol):
    """Turns the requested sparsity into the final sparsity over the sites. Optional member, with its default
    when left out (:data:`prunecli._parts.DEFAULTS`): ``needs_example_inputs`` (False)."""

    def to_sparsity(self, requested: float, model: nn.Module, sites: list[Site]) -> float: ...


OBJECTIVES = Registry("objective")
OBJECTIVES.add("flops", Flops)
OBJECTIVES.add("latency", Latency)


@OBJECTIVES.register("sparsity")
@dataclass(frozen=True)
class Sparsity:
    """The requested sparsity, as is."""

    def to_sparsity(self, requested: float, model: nn.Module, sites: list[Site]) -> float:
        return requested


@OBJECTIVES.register("params")
@dataclass(frozen=True)
class Params:
    """Keep a fraction ``keep`` of all the model's parameters (prunable or not).

    On coupled channel sites (``pruner.target=channel`` with example inputs) the parameters counted as removed
    are those compaction physically removes, met within ``tolerance``
    (:func:`~prunecli.objectives.structured.compacted_params_sparsity`); on other targets, the masked elements.
    """

    keep: float = 0.5
    tolerance: float = 0.02
    needs_example_inputs = True

    def to_sparsity(self, requested: float, model: nn.Module, sites: list[Site], example_inputs: Any = None,
                    **parts: Any) -> float:
        check_keep(self.keep)
        if example_inputs is not None and is_coupled(sites):
            return compacted_params_sparsity(self.keep, model, sites, example_inputs, self.tolerance, **parts)
        total = sum(p.numel() for p in model.parameters())
        targeted = sum(m.param.numel() for s in sites for m in s.members)
        sparsity = (1.0 - self.keep) * total / targeted
        if sparsity >= 1.0:
            raise ConfigError("objective.keep", self.keep, f"a fraction > {1 - targeted / total:.4f}",
                              "the targeted layers hold too few of the model's parameters")
        return sparsity


def parse_objective(spec: Any, key: str = "objective") -> Objective:
    """``sparsity`` (default), ``{name: params|flops|latency, keep: 0.5}``, or ``{_target_: ...}``."""
    if spec is None:
        return Sparsity()
    if isinstance(spec, Objective):
        return spec
    return OBJECTIVES.build(spec, key, default="sparsity")
