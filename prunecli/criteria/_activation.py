"""Criteria computed from the activations of output channels, collected by forward hooks the pruner installs.

The pruner hooks the module that produces a channel site's units (the norm layer after the layer if there is
one, else the layer; see :attr:`prunecli.sites.Site.output_module`) only while a mask update is due within the
next ``batches`` training forward passes, and removes the hooks once the criterion is ready. Statistics are
taken of ``relu(output)``: the values the following ReLU passes on, whether or not the model has one (the
ReLU usually comes right after the norm layer). NNI hooks the conv itself and applies its ``activation``
option; measuring after the norm layer is what the ReLU actually sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from prunecli.criteria._base import CRITERIA
from prunecli.errors import ConfigError
from prunecli.sites import Site


@dataclass
class _ActivationStats:
    """Per-unit sums of a statistic of ``relu(output)`` over ``batches`` forward passes; subclasses define
    ``_statistic`` (element-wise) and ``_importance`` (of the per-unit mean)."""

    name = "activation"
    needs_grad = False
    needs_activations = True
    batches: int = 8
    _sums: dict[str, Tensor] = field(default_factory=dict, repr=False)
    _positions: dict[str, int] = field(default_factory=dict, repr=False)
    _seen: dict[str, int] = field(default_factory=dict, repr=False)
    _sites: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.batches, int) or isinstance(self.batches, bool) or self.batches < 1:
            raise ConfigError("pruner.criterion.batches", self.batches, "an integer >= 1 (training batches to "
                              "collect activations from before a mask update)")

    def bind(self, sites: Mapping[str, Site]) -> None:
        """Check that every site's units are output channels whose activations can be read."""
        for site in sites.values():
            if site.unit_dim is None or site.output_module is None:
                heads = site.module == site.name
                hint = " (attention heads: keep them whole with pruner.target.heads=false)" if heads else ""
                raise ConfigError("pruner.criterion", self.name, "a channel target (activation statistics are "
                                  "per output channel)", f"site {site.name} has no output channels{hint}")
        self._sites = tuple(sites)

    def observe(self, params: Mapping[str, nn.Parameter]) -> None:
        pass

    @torch.no_grad()
    def observe_activation(self, site: Site, output: Tensor) -> None:
        """Add one forward pass's ``output`` of ``site.output_module`` (units along ``site.unit_dim``)."""
        if self._seen.get(site.name, 0) >= self.batches:
            return
        if not isinstance(output, Tensor) or output.dim() < 2 or output.shape[site.unit_dim] != site.num_units:
            shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
            raise ConfigError("pruner.criterion", self.name, "a model whose pruned layers output their channels",
                              f"{site.output_module} output {shape}, expected {site.num_units} channels along "
                              f"dim {site.unit_dim}")
        unit_dim = site.unit_dim % output.dim()
        dims = [d for d in range(output.dim()) if d != unit_dim]
        part = self._statistic(output.detach().float().relu()).sum(dim=dims)
        acc = self._sums.get(site.name)
        self._sums[site.name] = part if acc is None else acc.add_(part)
        self._positions[site.name] = self._positions.get(site.name, 0) + output.numel() // site.num_units
        self._seen[site.name] = self._seen.get(site.name, 0) + 1

    @property
    def ready(self) -> bool:
        """Whether every bound site has seen ``batches`` forward passes since the last mask update."""
        return bool(self._sites) and all(self._seen.get(n, 0) >= self.batches for n in self._sites)

    def score(self, site: Site) -> Tensor:
        return self._importance(self._sums[site.name] / self._positions[site.name])

    def after_update(self) -> None:
        self._sums.clear()
        self._positions.clear()
        self._seen.clear()

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self._sums), "positions": dict(self._positions), "seen": dict(self._seen)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._sums = {k: v.clone() for k, v in state.get("sums", {}).items()}
        self._positions = {k: int(v) for k, v in state.get("positions", {}).items()}
        self._seen = {k: int(v) for k, v in state.get("seen", {}).items()}


@CRITERIA.register("apoz")
@dataclass
class APoZ(_ActivationStats):
    """Average percentage of zeros: ``APoZ_c = mean over batches and positions of [relu(out_c) == 0]``; the
    score is ``1 - APoZ_c``, so mostly-silent channels are pruned first (Hu et al. 2016, "Network Trimming: A
    Data-Driven Neuron Pruning Approach towards Efficient Deep Architectures", https://arxiv.org/abs/1607.03250).
    """

    name = "apoz"

    def _statistic(self, act: Tensor) -> Tensor:
        return (act == 0).float()

    def _importance(self, mean: Tensor) -> Tensor:
        return 1.0 - mean


@CRITERIA.register("mean_activation")
@dataclass
class MeanActivation(_ActivationStats):
    """Mean activation ``mean over batches and positions of relu(out_c)``; channels with the smallest mean are
    pruned first (Molchanov et al. 2017, "Pruning Convolutional Neural Networks for Resource Efficient
    Inference", https://arxiv.org/abs/1611.06440, the activation criterion of section 2.2)."""

    name = "mean_activation"

    def _statistic(self, act: Tensor) -> Tensor:
        return act

    def _importance(self, mean: Tensor) -> Tensor:
        return mean
