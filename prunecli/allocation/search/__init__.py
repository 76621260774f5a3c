"""Searched allocations: per-layer sparsities chosen by evaluating candidates, then each layer masked locally by
the criterion's scores. Each is an :class:`prunecli.allocation.Allocation` named in ``pruner.allocation``:

- ``sensitivity`` (:class:`Sensitivity`): per-layer scan, then the allocation with the least predicted drop;
- ``simulated_annealing`` (:class:`SimulatedAnnealing`): Metropolis search with a cooling schedule;
- ``amc`` (:class:`AMC`): a DDPG agent under a FLOPs or parameter budget.

They need ``evaluator(model) -> float`` (higher is better): ``build_pruner(..., evaluator=fn)`` hands it over
(the engine builds one with :func:`prunecli.engine.evaluator.run_evaluator`). After a search,
``allocation.report()`` gives ``{"method", "evaluations", "best_score", "sparsity": {site: s}, ...}``; each search
also logs it. What they share: :mod:`prunecli.allocation.search.base`.
"""

from prunecli.allocation.search.amc import AMC
from prunecli.allocation.search.annealing import SimulatedAnnealing
from prunecli.allocation.search.sensitivity import Sensitivity

__all__ = ["AMC", "SimulatedAnnealing", "Sensitivity"]
