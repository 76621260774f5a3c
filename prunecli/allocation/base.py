"""What every allocation shares: the :class:`Allocation` protocol and the per-layer sparsity caps."""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

from torch import Tensor

from prunecli.errors import ConfigError
from prunecli.sites import Site

__all__ = ["Allocation", "check_caps", "unit_caps"]


@runtime_checkable
class Allocation(Protocol):
    """Spreads the sparsity budget over sites.

    Optional members, with their defaults when left out (:data:`prunecli._parts.DEFAULTS`):
    ``bind(model=, evaluator=)`` (no-op; a searched allocation keeps both) and ``report()`` (None; a search's
    evaluations and chosen per-layer sparsities, carried by the pruner's report and ``summary.json``).
    """

    def allocate(self, scores: dict[str, Tensor], sites: dict[str, Site], sparsity: float) -> dict[str, Tensor]:
        """Keep vectors (bool, ``[site.num_units]``) for every site."""
        ...

    def reachable(self, sites: dict[str, Site]) -> float:
        """The largest overall sparsity (over targeted elements) this allocation can reach on ``sites``."""
        ...


def check_caps(min_sparsity: float, max_sparsity: float, key: str) -> None:
    """Raise a one-line :class:`ConfigError` unless ``0 <= min_sparsity <= max_sparsity <= 1`` (``key``: the
    allocation's config key, e.g. ``pruner.allocation``)."""
    for name, value in (("min_sparsity", min_sparsity), ("max_sparsity", max_sparsity)):
        if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ConfigError(f"{key}.{name}", value, "a float in [0, 1]")
    if min_sparsity > max_sparsity:
        raise ConfigError(f"{key}.min_sparsity", min_sparsity, f"a value <= max_sparsity ({max_sparsity})")


def unit_caps(site: Site, min_sparsity: float, max_sparsity: float) -> tuple[int, int]:
    """(min, max) number of units of ``site`` that may be pruned."""
    high = math.floor(min(max_sparsity, site.max_sparsity) * site.num_units + 1e-9)
    low = min(math.ceil(min_sparsity * site.num_units - 1e-9), high)
    return low, high
