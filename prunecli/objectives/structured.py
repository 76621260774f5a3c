"""Budgets of the compacted model: FLOPs, parameters and measured latency kept.

Each objective bisects the requested channel sparsity until the model that ``export format=compact`` would
write keeps ``keep`` of the dense model's cost (:mod:`prunecli.objectives._compacted`): FLOPs counted by
:class:`torch.utils.flop_counter.FlopCounterMode` on the pruner's ``example_inputs`` (within 2%), parameters
physically removed by compaction (within 2%), or the median forward latency on the current device (within 5%).
They need the coupled channel target (``pruner.target=channel``) and ``example_inputs``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from prunecli.errors import ConfigError
from prunecli.metrics import module_flops
from prunecli.objectives._compacted import compacted, forward, is_coupled, reachable, solve
from prunecli.sites import Site

__all__ = ["Flops", "Latency", "count_flops", "compacted_params_sparsity"]


@torch.no_grad()
def count_flops(model: nn.Module, example_inputs: Any) -> int:
    """FLOPs of one eval-mode forward pass (``FlopCounterMode``; MACs are half of it)."""
    was_training = model.training
    model.eval()
    total, _, _ = module_flops(model, lambda: forward(model, example_inputs))
    model.train(was_training)
    return total


def _require(name: str, sites: list[Site], example_inputs: Any) -> None:
    if example_inputs is None or not is_coupled(sites):
        raise ConfigError("objective", name, "an objective the target supports",
                          f"objective={name} needs pruner.target=channel and example inputs (build_pruner("
                          "..., example_inputs=batch)) to compact the model it measures")


def _solve(cost, name: str, keep: float, tolerance: float, model: nn.Module, sites: list[Site],
           example_inputs: Any, what: str, parts: dict[str, Any]) -> float:
    _require(name, sites, example_inputs)
    dense = cost(model)

    def ratio(sparsity: float) -> float:
        return cost(compacted(model, sites, sparsity, example_inputs, **parts)) / dense

    return solve(ratio, keep, reachable(sites, parts.get("allocation")), tolerance, what)


@dataclass(frozen=True)
class Flops:
    """Keep a fraction ``keep`` of the dense model's FLOPs on ``example_inputs``, within ``tolerance``."""

    keep: float = 0.5
    tolerance: float = 0.02
    needs_example_inputs = True

    def to_sparsity(self, requested: float, model: nn.Module, sites: list[Site], example_inputs: Any = None,
                    **parts: Any) -> float:
        return _solve(lambda m: count_flops(m, example_inputs), "flops", self.keep, self.tolerance, model, sites,
                      example_inputs, "FLOPs", parts)


def compacted_params_sparsity(keep: float, model: nn.Module, sites: list[Site], example_inputs: Any,
                              tolerance: float = 0.02, **parts: Any) -> float:
    """The sparsity whose compacted model keeps ``keep`` of all the model's parameters: the parameters counted
    as removed are those compaction physically removes (coupled slices, norm weights, consumers' columns)."""
    return _solve(lambda m: sum(p.numel() for p in m.parameters()), "params", keep, tolerance, model, sites,
                  example_inputs, "parameters", parts)


@dataclass(frozen=True)
class Latency:
    """Keep a fraction ``keep`` of the dense model's forward latency, measured on the model's current device
    with ``example_inputs`` (``warmup`` untimed passes, median of ``repeats``), within ``tolerance``."""

    keep: float = 0.5
    tolerance: float = 0.05
    warmup: int = 3
    repeats: int = 15
    needs_example_inputs = True

    def measure(self, model: nn.Module, example_inputs: Any) -> float:
        from prunecli.metrics import measure_latency

        if not isinstance(example_inputs, (torch.Tensor, Mapping)):
            raise ConfigError("objective", "latency", "example inputs that are a tensor or keyword tensors")
        return measure_latency(model, example_inputs, warmup=self.warmup,
                               repeats=self.repeats)["latency_ms_median"]

    def to_sparsity(self, requested: float, model: nn.Module, sites: list[Site], example_inputs: Any = None,
                    **parts: Any) -> float:
        _require("latency", sites, example_inputs)

        def ratio(sparsity: float) -> float:
            # Dense and candidate are timed in turns, so drift of a shared machine falls on both alike.
            small = compacted(model, sites, sparsity, example_inputs, **parts)
            pairs = [(self.measure(small, example_inputs), self.measure(model, example_inputs)) for _ in range(3)]
            return statistics.median(s for s, _ in pairs) / statistics.median(d for _, d in pairs)

        return solve(ratio, self.keep, reachable(sites, parts.get("allocation")), self.tolerance, "latency")
