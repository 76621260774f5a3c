"""Criterion axis: how important each unit is (higher = keep).

A criterion only scores; it never selects. ``score(site)`` returns one value per unit of the site. Criteria
that need gradients say so with ``needs_grad`` and accumulate in ``observe(params)``, which the pruner calls
after backward (grads present) and before the optimizer step, only inside the pruning window.

A user's own criterion plugs in as ``{_target_: my.module.MyCriterion, ...}``; it implements the methods of
:class:`Criterion`.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, runtime_checkable

from torch import Tensor, nn

from prunecli.criteria._gradient import Movement, SnipMomentum, Taylor
from prunecli.criteria._weight import L1, L2, Magnitude, Random
from prunecli.errors import ConfigError
from prunecli.sites import Site

__all__ = ["Criterion", "Magnitude", "L1", "L2", "Random", "Taylor", "Movement", "SnipMomentum", "parse_criterion"]


@runtime_checkable
class Criterion(Protocol):
    """Scores units; may accumulate statistics from gradients."""

    needs_grad: bool
    ready: bool  # False while a gradient criterion has nothing accumulated yet

    def observe(self, params: Mapping[str, nn.Parameter]) -> None:
        """Accumulate from ``param.grad`` (called once per optimizer step while the schedule is active)."""
        ...

    def score(self, site: Site) -> Tensor:
        """Importance of each unit of ``site``: a float tensor ``[site.num_units]``."""
        ...

    def after_update(self) -> None:
        """Called after masks were recomputed (e.g. to start a new accumulation window)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


CRITERIA: dict[str, type] = {
    "magnitude": Magnitude,
    "l1": L1,
    "l2": L2,
    "random": Random,
    "taylor": Taylor,
    "movement": Movement,
    "snip_momentum": SnipMomentum,
}


def parse_criterion(spec: Any, key: str = "pruner.criterion") -> Criterion:
    """A name, ``{name: ..., **options}`` or ``{_target_: ...}`` -> a criterion."""
    if isinstance(spec, Criterion):
        return spec
    options: dict[str, Any] = {}
    if isinstance(spec, dict):
        options = dict(spec)
        if "_target_" in options:
            from hydra.utils import instantiate

            return instantiate(options)
        spec = options.pop("name", None)
    cls = CRITERIA.get(str(spec).strip().lower())
    if cls is None:
        raise ConfigError(key, spec, sorted(CRITERIA))
    fields = [f for f in getattr(cls, "__dataclass_fields__", {}) if not f.startswith("_")]
    for option in options:
        if option not in fields:
            raise ConfigError(f"{key}.{option}", options[option], f"an option of {spec}: {sorted(fields) or 'none'}")
    return cls(**options)
