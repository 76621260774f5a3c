"""Criteria computed from the weights alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import zlib

import torch
from torch import Tensor, nn

from prunecli.sites import Site


class _Static:
    """Shared no-op accumulation for criteria that look only at the weights."""

    needs_grad = False
    ready = True

    def observe(self, params: Mapping[str, nn.Parameter]) -> None:
        pass

    def after_update(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@dataclass
class Magnitude(_Static):
    """Mean absolute weight of a unit; for single elements, ``|w|`` (Han et al. 2015, "Learning both Weights
    and Connections", https://arxiv.org/abs/1506.02626). The mean makes units of different sizes comparable."""

    def score(self, site: Site) -> Tensor:
        return site.reduce(lambda name, w: w.abs().float()) / site.unit_size


@dataclass
class L1(_Static):
    """L1 norm of a unit, ``sum |w|`` (Li et al. 2017, "Pruning Filters for Efficient ConvNets",
    https://arxiv.org/abs/1608.08710)."""

    def score(self, site: Site) -> Tensor:
        return site.reduce(lambda name, w: w.abs().float())


@dataclass
class L2(_Static):
    """L2 norm of a unit, ``sqrt(sum w^2)`` (He et al. 2018, soft filter pruning, https://arxiv.org/abs/1808.06866)."""

    def score(self, site: Site) -> Tensor:
        return site.reduce(lambda name, w: w.float().square()).sqrt()


@dataclass
class Random(_Static):
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
