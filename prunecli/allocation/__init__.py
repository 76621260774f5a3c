"""Allocation axis: how a sparsity budget is spread over the targeted layers.

``allocate(scores, sites, sparsity)`` gets one score vector per site (``+inf`` = must keep, ``-inf`` = must
prune) and returns one keep vector per site. Names in ``pruner.allocation``:

- ``local`` (:class:`Local`), ``global`` (:class:`Global`): the criterion's scores ranked per layer or over all
  layers (:mod:`prunecli.allocation.ranked`), selected by :func:`select_lowest`;
- ``per_row`` (:class:`PerRow`): the same share of every output row (Wanda's comparison group,
  :mod:`prunecli.allocation.rows`);
- ``sensitivity``, ``simulated_annealing``, ``amc``: searched allocations (:mod:`prunecli.allocation.search`)
  that evaluate candidate per-layer sparsities with ``evaluator(model) -> float``.

One-shot pruning (:mod:`prunecli.oneshot`) also takes a *layer sparsity*, the budget of each transformer block
before the comparison group above splits it: ``uniform``, or ``owl`` (:class:`OWL`, outlier-weighted,
:mod:`prunecli.allocation.owl`).
"""

from __future__ import annotations

from typing import Any

from prunecli._parts import build_part
from prunecli.allocation.base import Allocation, check_caps, unit_caps
from prunecli.allocation.owl import LAYER_SPARSITIES, OWL, parse_layer_sparsity
from prunecli.allocation.ranked import Global, Local
from prunecli.allocation.rows import PerRow
from prunecli.allocation.search import AMC, Sensitivity, SimulatedAnnealing
from prunecli.allocation.select import select_lowest

__all__ = ["Allocation", "Local", "Global", "PerRow", "Sensitivity", "SimulatedAnnealing", "AMC", "ALLOCATIONS",
           "parse_allocation", "check_caps", "unit_caps", "select_lowest", "OWL", "LAYER_SPARSITIES",
           "parse_layer_sparsity"]

ALLOCATIONS = {"local": Local, "global": Global, "per_row": PerRow, "sensitivity": Sensitivity,
               "simulated_annealing": SimulatedAnnealing, "amc": AMC}


def parse_allocation(spec: Any, key: str = "pruner.allocation") -> Allocation:
    """A name, ``{name: ..., min_sparsity: ..., max_sparsity: ...}`` or ``{_target_: ...}`` -> an allocation.
    Names: the keys of :data:`ALLOCATIONS`."""
    if isinstance(spec, tuple(ALLOCATIONS.values())):
        return spec
    return build_part(spec, ALLOCATIONS, key, default="local")
