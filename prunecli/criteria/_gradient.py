"""Criteria that accumulate weight-gradient statistics between mask updates.

Accumulators are float32 tensors keyed by parameter FQN, created (zero) at the first ``observe``. A criterion
is ready to score after ``batches`` observed optimizer steps (1 by default); a mask update due earlier waits.
Each step's term is written into one reused scratch buffer (the size of the largest parameter), so observing
allocates nothing: fresh multi-megabyte tensors cost page faults on every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from prunecli.errors import ConfigError
from prunecli.sites import Site


@dataclass
class _Accumulating:
    """Holds per-parameter accumulators; subclasses define ``_term`` (written into ``out``) and ``_combine``."""

    needs_grad = True
    reset_on_update = False
    batches: int = 1
    _acc: dict[str, Tensor] = field(default_factory=dict, repr=False)
    _count: int = field(default=0, repr=False)
    _scratch: dict = field(default_factory=dict, repr=False)  # device -> flat float32 buffer

    def __post_init__(self) -> None:
        if not isinstance(self.batches, int) or isinstance(self.batches, bool) or self.batches < 1:
            raise ConfigError("pruner.criterion.batches", self.batches, "an integer >= 1 (optimizer steps to "
                              "observe before a mask update)")

    def observe(self, params: Mapping[str, nn.Parameter]) -> None:
        with torch.no_grad():
            for name, p in params.items():
                if p.grad is None:
                    continue
                acc = self._acc.get(name)
                if acc is None:
                    acc = self._acc[name] = torch.zeros_like(p, dtype=torch.float32)
                w, g = p.detach(), p.grad.detach()
                self._combine(acc, self._term(w.float(), g.float(), self._buffer(acc)))
        self._count += 1

    def _buffer(self, like: Tensor) -> Tensor:
        """A float32 scratch view shaped like ``like`` (one buffer per device, grown to the largest need)."""
        buf = self._scratch.get(like.device)
        if buf is None or buf.numel() < like.numel():
            buf = self._scratch[like.device] = torch.empty(like.numel(), dtype=torch.float32, device=like.device)
        return buf[: like.numel()].view(like.shape)

    def score(self, site: Site) -> Tensor:
        return site.reduce(lambda name, w: self._acc[name] if name in self._acc else torch.zeros_like(w, dtype=torch.float32))

    @property
    def ready(self) -> bool:
        """Whether ``batches`` gradients were observed since the window opened."""
        return self._count >= self.batches

    def after_update(self) -> None:
        if self.reset_on_update:
            self._acc.clear()
            self._count = 0

    def state_dict(self) -> dict[str, Any]:
        return {"count": self._count, "acc": dict(self._acc)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._count = int(state.get("count", 0))
        self._acc = {k: v.clone() for k, v in state.get("acc", {}).items()}


@dataclass
class Taylor(_Accumulating):
    """First-order Taylor importance, ``sum_t (w * g_t)^2`` accumulated since the last mask update (Molchanov et
    al. 2019, "Importance Estimation for Neural Network Pruning", https://arxiv.org/abs/1906.10771)."""

    reset_on_update = True

    def _term(self, w: Tensor, g: Tensor, out: Tensor) -> Tensor:
        return torch.mul(w, g, out=out).square_()

    def _combine(self, acc: Tensor, term: Tensor) -> Tensor:
        return acc.add_(term)


@dataclass
class Movement(_Accumulating):
    """Movement score ``-sum_t w * g_t``: weights moving away from zero are kept (Sanh et al. 2020, "Movement
    Pruning", https://arxiv.org/abs/2005.07683). Accumulates over the whole pruning window."""

    def _term(self, w: Tensor, g: Tensor, out: Tensor) -> Tensor:
        return torch.mul(w, g, out=out).neg_()

    def _combine(self, acc: Tensor, term: Tensor) -> Tensor:
        return acc.add_(term)


@dataclass
class SnipMomentum(_Accumulating):
    """SNIP with momentum as Neural Compressor defines it: ``s <- alpha * s + beta * |w * g|`` (Lee et al. 2019,
    "SNIP", https://arxiv.org/abs/1810.02340; Intel Neural Compressor's ``snip_momentum``)."""

    alpha: float = 0.9
    beta: float = 1.0

    def _term(self, w: Tensor, g: Tensor, out: Tensor) -> Tensor:
        term = torch.mul(w, g, out=out).abs_()
        return term if self.beta == 1.0 else term.mul_(self.beta)  # the default skips a pass

    def _combine(self, acc: Tensor, term: Tensor) -> Tensor:
        return torch.add(term, acc, alpha=self.alpha, out=acc)  # alpha * acc + term in one pass


@dataclass
class Gradient(_Accumulating):
    """Gradient magnitude ``s <- decay * s + |g|``: with the default ``decay = 0`` the ``|g|`` of the latest
    step, as Neural Compressor's ``gradient`` criterion defines it; ``decay = 1`` accumulates ``sum_t |g_t|``
    over the pruning window (Neural Compressor, ``neural_compressor/compression/pruner/criteria.py``)."""

    decay: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.decay, (int, float)) or not 0.0 <= self.decay <= 1.0:
            raise ConfigError("pruner.criterion.decay", self.decay, "a float in [0, 1]")

    def _term(self, w: Tensor, g: Tensor, out: Tensor) -> Tensor:
        return torch.abs(g, out=out)

    def _combine(self, acc: Tensor, term: Tensor) -> Tensor:
        return torch.add(term, acc, alpha=self.decay, out=acc)
