"""Simulated annealing over per-layer sparsities.

Kirkpatrick et al. 1983, "Optimization by Simulated Annealing"; as a pruning allocation: NNI's
``SimulatedAnnealingPruner`` and the inner search of AutoCompress (Liu et al. 2020,
https://arxiv.org/abs/1907.03141).

Start from the uniform allocation meeting the target. At temperature ``T`` perturb every layer's sparsity by
``U(-m, m)`` (``m = perturbation_magnitude``), fit the result back onto the overall target (scale, else shift,
within the per-layer bounds), evaluate, and accept by the Metropolis rule: always if the score does not drop,
else with probability ``exp((new - current) / T)``. Then ``T <- cool_down_rate * T`` until
``T <= stop_temperature``. The best candidate seen is returned. Temperatures are in the evaluator's units
(the engine's evaluator returns the negative validation loss). Evaluations per search:
``1 + ceil(log(stop_temperature / start_temperature) / log(cool_down_rate))``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from prunecli.allocation.search.base import SearchBase, check_range, element_weights, fit, private
from prunecli.errors import ConfigError
from prunecli.sites import Site


@dataclass
class SimulatedAnnealing(SearchBase):
    """Metropolis search over per-layer sparsities with a geometric cooling schedule.

    Args:
        start_temperature: Initial temperature (evaluator units).
        stop_temperature: The search stops once the temperature is at or below this (> 0).
        cool_down_rate: Factor applied to the temperature after each candidate, in ``(0, 1)``.
        perturbation_magnitude: Half-width of the uniform perturbation of each layer's sparsity.
        seed: Seed of the perturbations and acceptance draws.
        min_sparsity, max_sparsity, eval_batches: see :class:`~prunecli.allocation.search.base.SearchBase`.
    """

    start_temperature: float = 0.1
    stop_temperature: float = 0.01
    cool_down_rate: float = 0.8
    perturbation_magnitude: float = 0.35
    seed: int = 0
    _total: int = private(0)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(f"{self.key}.stop_temperature", self.stop_temperature, 0.0, math.inf, open_low=True)
        check_range(f"{self.key}.cool_down_rate", self.cool_down_rate, 0.0, 1.0, open_low=True)
        check_range(f"{self.key}.perturbation_magnitude", self.perturbation_magnitude, 0.0, 1.0, open_low=True)
        if self.cool_down_rate == 1.0:
            raise ConfigError(f"{self.key}.cool_down_rate", 1.0, "a number in (0, 1)", "the search would never end")
        if not isinstance(self.start_temperature, (int, float)) or self.start_temperature <= self.stop_temperature:
            raise ConfigError(f"{self.key}.start_temperature", self.start_temperature,
                              f"a number > stop_temperature ({self.stop_temperature})",
                              "a search with zero evaluations after the first")

    @property
    def method(self) -> str:
        return "simulated_annealing"

    @property
    def steps(self) -> int:
        """Candidates evaluated after the initial one."""
        return math.ceil(math.log(self.stop_temperature / self.start_temperature) / math.log(self.cool_down_rate)
                         - 1e-9)

    def allocate(self, scores: dict[str, Tensor], sites: dict[str, Site], sparsity: float) -> dict[str, Tensor]:
        self.start(sites)
        lo, hi = self.bounds(scores, sites)
        w = element_weights(sites)
        rng = random.Random(self.seed + self._total)
        current = fit(torch.full_like(lo, sparsity), w, lo, hi, sparsity)
        current_score = self.evaluate(scores, sites, current, lo, hi)
        best, best_score = current, current_score
        temperature = float(self.start_temperature)
        for _ in range(self.steps):
            noise = torch.tensor([rng.uniform(-1, 1) for _ in range(len(lo))], dtype=torch.float64)
            candidate = fit((current + self.perturbation_magnitude * noise).clamp(lo, hi), w, lo, hi, sparsity)
            score = self.evaluate(scores, sites, candidate, lo, hi)
            delta = score - current_score
            if delta >= 0 or rng.random() < math.exp(delta / temperature):
                current, current_score = candidate, score
                if score > best_score:
                    best, best_score = candidate, score
            temperature *= self.cool_down_rate
        self._total += self._evaluations
        self.finish(sites, best, best_score)
        return self.keep_vectors(scores, sites, best, lo, hi)

    def report(self) -> dict[str, Any]:
        return {**super().report(), "total_evaluations": self._total}
