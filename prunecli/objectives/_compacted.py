"""What a channel sparsity costs once compacted, and the bisection that meets a budget.

A structured objective asks: at requested sparsity ``s``, which masks would the allocation choose, and what
does the physically compacted model cost (FLOPs, parameters, latency)? :func:`compacted` answers the first two
with the pruner's own machinery (criterion scores, ``allocation.allocate``, ``site.rounded``, ``site.unit_masks``
and the AND of a parameter's masks over sites) and compacts a deep copy with
:func:`prunecli.structure.compact`, the code path of ``export format=compact``. :func:`solve` bisects
``s`` until the cost ratio meets ``keep``.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Callable

import torch
from torch import Tensor, nn

from prunecli.errors import ConfigError
from prunecli.sites import IndexLayout, Site

log = logging.getLogger(__name__)

MAX_STEPS = 24


def is_coupled(sites: list[Site]) -> bool:
    """Whether ``sites`` are coupled channel groups (``pruner.target=channel`` traced on example inputs)."""
    return bool(sites) and all(isinstance(m.layout, IndexLayout) for s in sites for m in s.members)


def forward(model: nn.Module, example_inputs: Any) -> Any:
    """``model`` called on a tensor, a tuple of positional inputs or a mapping of keyword inputs."""
    if isinstance(example_inputs, dict):
        return model(**example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return model(*example_inputs)
    return model(example_inputs)


def _l2(site: Site) -> Tensor:
    return site.reduce(lambda name, t: t.float() ** 2)


@torch.no_grad()
def simulated_masks(sites: list[Site], sparsity: float, allocation: Any = None,
                    criterion: Any = None) -> dict[str, Tensor]:
    """The masks :meth:`prunecli.pruner.Pruner.update_masks` would set at ``sparsity`` on a fresh pruner.

    ``allocation`` defaults to local (every group to the same sparsity: the kept channel counts, hence the
    compacted cost, do not depend on the criterion); ``criterion`` to L2 magnitude.
    """
    if allocation is None:
        from prunecli.allocation import Local

        allocation = Local()
    by_name = {s.name: s for s in sites}
    scores = {}
    for name, site in by_name.items():
        score = (criterion.score(site) if criterion is not None else _l2(site)).float()
        scores[name] = site.protect(score) if site.protect else score
    keep = allocation.allocate(scores, by_name, sparsity)
    masks: dict[str, Tensor] = {}
    for name, site in by_name.items():
        for pname, mask in site.unit_masks(site.rounded(keep[name], scores[name])).items():
            masks[pname] = mask if pname not in masks else masks[pname] & mask
    return masks


def compacted(model: nn.Module, sites: list[Site], sparsity: float, example_inputs: Any, **parts: Any) -> nn.Module:
    """A deep copy of ``model`` (eval mode) with the channels removed that the masks at ``sparsity`` remove."""
    from prunecli.structure import compact

    small = copy.deepcopy(model).eval()
    if sparsity > 0:
        compact(small, simulated_masks(sites, sparsity, **parts), example_inputs)
    return small


def reachable(sites: list[Site], allocation: Any = None) -> float:
    """The largest sparsity the allocation (default local) can request on ``sites``."""
    if allocation is None:
        from prunecli.allocation import Local

        allocation = Local()
    return float(allocation.reachable({s.name: s for s in sites}))


def check_keep(keep: Any) -> None:
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0.0 < keep <= 1.0:
        raise ConfigError("objective.keep", keep, "a fraction in (0, 1]")


def solve(ratio: Callable[[float], float], keep: float, high: float, tolerance: float, what: str) -> float:
    """The sparsity ``s`` in ``[0, high]`` with ``ratio(s)`` (cost kept, non-increasing in ``s``) within
    ``tolerance`` (relative) of ``keep``, by bisection; the closest one found (with a warning) if none is.

    Raises:
        ConfigError: ``ratio(high)`` is above ``keep`` by more than the tolerance: the budget cannot be met.
    """
    check_keep(keep)
    if keep >= 1.0:
        return 0.0
    lowest = ratio(high)
    if lowest > keep * (1 + tolerance):
        raise ConfigError("objective.keep", keep, f"a fraction >= {lowest:.4f}",
                          f"the prunable channels hold too little of the model's {what}")
    best = (abs(lowest - keep), high, lowest)
    lo, hi = 0.0, high
    for _ in range(MAX_STEPS):
        mid = (lo + hi) / 2
        r = ratio(mid)
        best = min(best, (abs(r - keep), mid, r))
        if abs(r - keep) <= keep * tolerance / 2:
            break
        lo, hi = (mid, hi) if r > keep else (lo, mid)
    # Local allocation moves every group together: a model of few narrow layers may have no closer step.
    level = logging.WARNING if best[0] > keep * tolerance else logging.INFO
    log.log(level, "objective: sparsity %.4f keeps %.4f of the %s (asked %.4f)", best[1], best[2], what, keep)
    return best[1]
