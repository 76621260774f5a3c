"""Wanda's criterion: a weight's magnitude times the norm of the input feature it multiplies.

Sun et al., "A Simple and Effective Pruning Approach for Large Language Models", 2023,
https://arxiv.org/abs/2306.11695: ``S_ij = |W_ij| * ||X_j||_2`` for a linear layer ``y = x W^T`` over the
calibration tokens ``X``. The paper compares scores within each output row (the ``per_row`` allocation);
rows then differ only by ``|W_ij|`` weighted alike, so a weight on an outlier input feature survives.

The statistic comes from the layer's *inputs*, fed by the one-shot runner (:mod:`prunecli.oneshot`) through
``observe_input(names, x)``; the pruner's training-time activation taps (output channels) do not feed it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from prunecli.criteria._base import CRITERIA
from prunecli.errors import ConfigError
from prunecli.sites import Site


@CRITERIA.register("wanda")
@dataclass
class Wanda:
    """``|W_ij| * ||X_j||_2`` with ``||X_j||_2`` the root mean square of input feature ``j`` over the
    calibration tokens (the mean instead of the sum: the same ranking within a layer, and layers seen on
    different token counts stay comparable under a global allocation)."""

    needs_grad = False
    needs_activations = False
    calibration_only = True  # fed by prunecli.oneshot only: the training-time pruner refuses it up front
    _squares: dict[str, Tensor] = field(default_factory=dict, repr=False)
    _counts: dict[str, list[int]] = field(default_factory=dict, repr=False)

    @property
    def ready(self) -> bool:
        """Whether any calibration input has been observed."""
        return bool(self._squares)

    @torch.no_grad()
    def observe_input(self, names: tuple[str, ...], x: Tensor) -> None:
        """Add the inputs ``x`` (``[..., in_features]``) read by the parameters ``names`` (FQNs)."""
        x2 = x.detach().reshape(-1, x.shape[-1]).float()
        total = self._squares.get(names[0])
        if total is None:
            total, count = x2.new_zeros(x2.shape[1]), [0]
            for name in names:
                self._squares[name], self._counts[name] = total, count
        total.add_(x2.square().sum(0))
        self._counts[names[0]][0] += x2.shape[0]

    def input_norm(self, name: str) -> Tensor:
        """``||X_j||_2`` (root mean square over tokens) of each input feature of parameter ``name``."""
        if name not in self._squares:
            raise ConfigError("pruner.criterion", "wanda", "layers whose inputs the calibration data reached",
                              f"no calibration input was observed for {name}")
        return (self._squares[name] / self._counts[name][0]).sqrt()

    def score(self, site: Site) -> Tensor:
        def element(name: str, w: Tensor) -> Tensor:
            return w.abs().float() * _along_input(self.input_norm(name).to(w.device), w, site.member(name).layout)

        return site.reduce(element)

    def observe(self, params: Mapping[str, nn.Parameter]) -> None:
        """Nothing comes from gradients."""

    def after_update(self) -> None:
        """Drop the statistics (one-shot pruning moves to the next block)."""
        self._squares.clear()
        self._counts.clear()

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Statistics are not saved: they belong to one pruning pass."""


def _along_input(norm: Tensor, w: Tensor, layout: Any) -> Tensor:
    """``norm`` shaped to broadcast along ``w``'s input dim: the last dim, or the last one of the layout's unit
    order (a transformers ``Conv1D`` weight ``[in, out]`` is read as ``(1, 0)``: its input dim is 0)."""
    perm = getattr(layout, "perm", None)
    if perm is None:
        return norm
    shape = [1] * w.dim()
    shape[perm[-1]] = -1
    return norm.reshape(shape)
