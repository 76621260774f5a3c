"""Criteria computed from the weights alone."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import Tensor

from prunecli.criteria._base import CRITERIA, WeightCriterion, norm_weight
from prunecli.errors import ConfigError
from prunecli.sites import BlockLayout, ElementLayout, Site

# FPGM compares every unit of a layer with every other: beyond this many units it is quadratic nonsense.
FPGM_MAX_UNITS = 16384


@CRITERIA.register("magnitude")
@dataclass
class Magnitude(WeightCriterion):
    """Mean absolute weight of a unit; for single elements, ``|w|`` (Han et al. 2015, "Learning both Weights
    and Connections", https://arxiv.org/abs/1506.02626). The mean makes units of different sizes comparable."""

    def score(self, site: Site) -> Tensor:
        return site.reduce(lambda name, w: w.abs().float()) / site.unit_size


@CRITERIA.register("l1")
@dataclass
class L1(WeightCriterion):
    """L1 norm of a unit, ``sum |w|`` (Li et al. 2017, "Pruning Filters for Efficient ConvNets",
    https://arxiv.org/abs/1608.08710)."""

    def score(self, site: Site) -> Tensor:
        return site.reduce(lambda name, w: w.abs().float())


@CRITERIA.register("l2")
@dataclass
class L2(WeightCriterion):
    """L2 norm of a unit, ``sqrt(sum w^2)`` (He et al. 2018, soft filter pruning, https://arxiv.org/abs/1808.06866)."""

    def score(self, site: Site) -> Tensor:
        return site.reduce(lambda name, w: w.float().square()).sqrt()


@CRITERIA.register("random")
@dataclass
class Random(WeightCriterion):
    """Uniform random scores: the baseline any criterion must beat. Reproducible from ``seed`` and the number
    of updates so far."""

    seed: int = 0
    _draws: int = field(default=0, repr=False)

    def score(self, site: Site) -> Tensor:
        gen = torch.Generator().manual_seed(zlib.crc32(f"{self.seed}/{site.name}/{self._draws}".encode()))
        return torch.rand(site.num_units, generator=gen).to(site.weight.device)

    def after_update(self) -> None:
        self._draws += 1

    def state_dict(self) -> dict[str, Any]:
        return {"draws": self._draws}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._draws = int(state.get("draws", 0))


@CRITERIA.register("fpgm")
@dataclass
class FPGM(WeightCriterion):
    """Filter pruning via the geometric median: a unit close to all the others is redundant.

    ``score_i = sum_j ||u_i - u_j||_2`` over the units ``u`` of the same layer (rows of
    ``member.layout.to_units(weight)``, concatenated over the scored members: a filter, or an attention head's
    q/k/v rows and output columns); the units nearest the geometric median (smallest sums) are pruned first
    (He et al. 2019, "Filter Pruning via Geometric Median for Deep Convolutional Neural Networks Acceleration",
    https://arxiv.org/abs/1811.00250).
    """

    def bind(self, sites: Mapping[str, Site]) -> None:
        for site in sites.values():
            if any(isinstance(m.layout, (ElementLayout, BlockLayout)) for m in site.members):
                raise ConfigError("pruner.criterion", "fpgm", "a channel or head target (fpgm compares whole "
                                  "filters or heads)", f"the units of {site.name} are single weights or blocks")
            if site.num_units > FPGM_MAX_UNITS:
                raise ConfigError("pruner.criterion", "fpgm", f"layers of at most {FPGM_MAX_UNITS} filters "
                                  "(it compares every pair)", f"{site.name} has {site.num_units}")

    def score(self, site: Site) -> Tensor:
        units = torch.cat([m.layout.to_units(m.param.detach()).float() for m in site.members if m.scored], dim=1)
        return torch.cdist(units, units).sum(dim=1)


@CRITERIA.register("bn_scale")
@dataclass
class BNScale(WeightCriterion):
    """Network slimming: a channel is as important as the scale ``|gamma|`` of the norm layer after it.

    Needs a channel target whose layers each feed a BatchNorm (the norm's weight is a non-scored member of the
    site). Pair it with the ``l1_bn`` regulariser, which pushes unimportant scales to zero during training
    (Liu et al. 2017, "Learning Efficient Convolutional Networks through Network Slimming",
    https://arxiv.org/abs/1708.06519).
    """

    def bind(self, sites: Mapping[str, Site]) -> None:
        for site in sites.values():
            if norm_weight(site) is None:
                raise ConfigError("pruner.criterion", "bn_scale", "a channel target whose layers each feed a norm "
                                  "layer with a scale", f"layer {site.module or site.name} has no BatchNorm directly "
                                  "after it: leave it out with pruner.layers.exclude or pruner.layers.types")

    def score(self, site: Site) -> Tensor:
        return norm_weight(site).param.detach().abs().float()

