"""Criteria that accumulate weight-gradient statistics between mask updates.

Every term here is summed over a unit's elements when the site is scored, and the accumulation is linear, so
the accumulator can hold unit scores directly: ``alpha * reduce(acc) + reduce(term) = reduce(alpha * acc +
term)``. With ``per_unit`` (the default) a criterion bound to the pruner's sites keeps one float32 vector per
site, keyed by site name: a 4x1 block target then accumulates a quarter of the values and skips the reduction
at each mask update (the same scores, less memory traffic on every step of the pruning window). Without it
(``per_unit: false``, or when progressive pruning needs the score of each single weight) accumulators are
per parameter FQN, of the parameter's shape.

A criterion is ready to score after ``batches`` observed optimizer steps (1 by default); a mask update due
earlier waits. Each step's term is written into one reused scratch buffer (the size of the largest
parameter), so observing allocates nothing large: fresh multi-megabyte tensors cost page faults every step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from prunecli.criteria._base import CRITERIA
from prunecli.errors import ConfigError
from prunecli.sites import Site

log = logging.getLogger(__name__)


@dataclass
class _Accumulating:
    """Holds the accumulators; subclasses define ``_term`` (written into ``out``) and ``_combine``."""

    needs_grad = True
    reset_on_update = False
    batches: int = 1
    per_unit: bool = True
    _acc: dict[str, Tensor] = field(default_factory=dict, repr=False)
    _count: int = field(default=0, repr=False)
    _sites: dict[str, Site] = field(default_factory=dict, repr=False)
    _scratch: dict = field(default_factory=dict, repr=False)  # device -> flat float32 buffer

    def __post_init__(self) -> None:
        if not isinstance(self.batches, int) or isinstance(self.batches, bool) or self.batches < 1:
            raise ConfigError("pruner.criterion.batches", self.batches, "an integer >= 1 (optimizer steps to "
                              "observe before a mask update)")
        if not isinstance(self.per_unit, bool):
            raise ConfigError("pruner.criterion.per_unit", self.per_unit, "true or false")

    def bind(self, sites: Mapping[str, Site]) -> None:
        """Remember the sites whose unit scores are accumulated (``per_unit``)."""
        self._sites = dict(sites)

    @property
    def _units(self) -> bool:
        return self.per_unit and bool(self._sites)

    def observe(self, params: Mapping[str, nn.Parameter]) -> None:
        with torch.no_grad():
            if self._units:
                self._observe_units(params)
            else:
                for name, p in params.items():
                    if p.grad is not None:
                        acc = self._acc.get(name)
                        if acc is None:
                            acc = self._acc[name] = torch.zeros_like(p, dtype=torch.float32)
                        self._combine(acc, self._term_of(p))
        self._count += 1

    def _observe_units(self, params: Mapping[str, nn.Parameter]) -> None:
        for name, site in self._sites.items():
            members = [m for m in site.members if m.scored and m.name in params and params[m.name].grad is not None]
            total = None
            for m in members:
                part = m.layout.reduce(self._term_of(params[m.name]))
                if total is None:  # a part may view the scratch buffer the next member's term overwrites
                    total = part.clone() if len(members) > 1 else part
                else:
                    total.add_(part)
            if total is not None:
                acc = self._acc.get(name)
                if acc is None:
                    acc = self._acc[name] = torch.zeros(site.num_units, dtype=torch.float32, device=total.device)
                self._combine(acc, total.float())

    def _term_of(self, p: Tensor) -> Tensor:
        """This step's term for parameter ``p`` (in the scratch buffer: consume it before the next call)."""
        buf = self._scratch.get(p.device)
        if buf is None or buf.numel() < p.numel():
            buf = self._scratch[p.device] = torch.empty(p.numel(), dtype=torch.float32, device=p.device)
        return self._term(p.detach().float(), p.grad.detach().float(), buf[: p.numel()].view(p.shape))

    def score(self, site: Site) -> Tensor:
        if self._units and self._sites.get(site.name) is site:
            acc = self._acc.get(site.name)
            return acc if acc is not None else torch.zeros(site.num_units, dtype=torch.float32,
                                                            device=site.weight.device)
        acc = self._acc
        return site.reduce(lambda name, w: acc[name] if name in acc else torch.zeros_like(w, dtype=torch.float32))

    @property
    def ready(self) -> bool:
        """Whether ``batches`` gradients were observed since the window opened."""
        return self._count >= self.batches

    def after_update(self) -> None:
        if self.reset_on_update:
            self._acc.clear()
            self._count = 0

    def state_dict(self) -> dict[str, Any]:
        return {"count": self._count, "acc": dict(self._acc), "per_unit": self._units}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._count = int(state.get("count", 0))
        acc = {k: v.clone() for k, v in state.get("acc", {}).items()}
        saved_units = bool(state.get("per_unit", False))
        if saved_units == self._units or not acc:
            self._acc = acc
        elif self._units:  # element accumulators from a run without per_unit: reduce them (exact)
            def saved(n: str, w: torch.Tensor) -> torch.Tensor:
                return acc[n] if n in acc else torch.zeros_like(w, dtype=torch.float32)

            self._acc = {name: site.reduce(saved) for name, site in self._sites.items()}
        else:
            raise ConfigError("pruner.criterion.per_unit", self.per_unit, "the setting the run was started with "
                              "(its checkpoint holds unit scores; single-weight scores cannot be recovered)")


@CRITERIA.register("taylor")
@dataclass
class Taylor(_Accumulating):
    """First-order Taylor importance, ``sum_t (w * g_t)^2`` accumulated since the last mask update (Molchanov et
    al. 2019, "Importance Estimation for Neural Network Pruning", https://arxiv.org/abs/1906.10771)."""

    reset_on_update = True

    def _term(self, w: Tensor, g: Tensor, out: Tensor) -> Tensor:
        return torch.mul(w, g, out=out).square_()

    def _combine(self, acc: Tensor, term: Tensor) -> Tensor:
        return acc.add_(term)


@CRITERIA.register("movement")
@dataclass
class Movement(_Accumulating):
    """Movement score ``-sum_t w * g_t``: weights moving away from zero are kept (Sanh et al. 2020, "Movement
    Pruning", https://arxiv.org/abs/2005.07683). Accumulates over the whole pruning window."""

    def _term(self, w: Tensor, g: Tensor, out: Tensor) -> Tensor:
        return torch.mul(w, g, out=out).neg_()

    def _combine(self, acc: Tensor, term: Tensor) -> Tensor:
        return acc.add_(term)


@CRITERIA.register("snip_momentum")
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


@CRITERIA.register("gradient")
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
