"""What every searched allocation shares: binding an evaluator, per-layer bounds, fitting per-layer sparsities to
the overall budget, turning them into keep vectors, and evaluating a candidate with its masks applied temporarily.

A candidate is a vector of per-layer sparsities (one per site, in the sites' order). The overall sparsity of a
candidate is ``sum_i w_i s_i / sum_i w_i`` with ``w_i`` the site's targeted elements (``num_units * unit_size``,
the weighting of :class:`prunecli.allocation.Global`), or another weighting a search chooses (AMC: FLOPs).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor, nn

from prunecli.allocation.base import check_caps
from prunecli.allocation.select import select_lowest
from prunecli.errors import ConfigError
from prunecli.sites import Site

log = logging.getLogger("prunecli.allocation.search")

Evaluator = Callable[[nn.Module], float]


def private(default: Any = None) -> Any:
    """A dataclass field that is no config option (``build_part`` skips names starting with ``_``)."""
    return field(default=default, init=False, repr=False, compare=False)


def check_range(key: str, value: Any, low: float, high: float, *, open_low: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
        low < value <= high if open_low else low <= value <= high)
    if not ok:
        raise ConfigError(key, value, f"a number in {'(' if open_low else '['}{low}, {high}]")


def check_count(key: str, value: Any, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(key, value, "an integer >= 1", f"a search with zero {what} evaluates nothing")


@dataclass
class SearchBase:
    """Base of the searched allocations (dataclasses): the options they share, checked here.

    Args:
        min_sparsity: Lower cap of every layer's sparsity.
        max_sparsity: Upper cap of every layer's sparsity.
        eval_batches: Validation batches of the evaluator the engine builds
            (:func:`prunecli.engine.evaluator.run_evaluator`).
    """

    min_sparsity: float = 0.0
    max_sparsity: float = 1.0
    eval_batches: int = 4

    def __post_init__(self) -> None:
        check_caps(self.min_sparsity, self.max_sparsity, self.key)
        check_count(f"{self.key}.eval_batches", self.eval_batches, "batch")

    needs_evaluator = True
    key = "pruner.allocation"
    # Class-level defaults (not dataclass fields: unannotated) until bind() and a search set them.
    _model = None
    _evaluator = None
    _evaluations = 0
    _best_score = None
    _chosen = {}  # replaced per search, never mutated

    # ----------------------------------------------------------------- binding and reporting
    def bind(self, model: nn.Module | None = None, evaluator: Evaluator | None = None) -> None:
        """Called by :class:`prunecli.pruner.Pruner`: the model whose parameters the candidates mask, and the
        evaluator (``evaluator(model) -> float``, higher is better)."""
        self._model, self._evaluator = model, evaluator

    def report(self) -> dict[str, Any]:
        """``{"method", "evaluations", "best_score", "sparsity": {site: chosen sparsity}}`` of the last search."""
        return {"method": self.method, "evaluations": self._evaluations, "best_score": self._best_score,
                "sparsity": dict(self._chosen)}

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to search and report as an uninterrupted one: the last search's result and
        the evaluations spent so far (searches seed their draws from that count)."""
        return {"evaluations": self._evaluations, "best_score": self._best_score, "chosen": dict(self._chosen),
                "total": getattr(self, "_total", 0)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._evaluations, self._best_score = int(state.get("evaluations", 0)), state.get("best_score")
        self._chosen = dict(state.get("chosen", {}))
        if "_total" in self.__dataclass_fields__:
            self._total = int(state.get("total", 0))

    @property
    def method(self) -> str:
        return type(self).__name__.lower()

    # ----------------------------------------------------------------- bounds and budget
    def bounds(self, scores: dict[str, Tensor], sites: dict[str, Site]) -> tuple[Tensor, Tensor]:
        """Per-site sparsity bounds: the caps, raised to what is pruned already (``-inf`` scores stay pruned) and
        lowered to leave the units that must be kept (``+inf``)."""
        lo, hi = [], []
        for name, site in sites.items():
            n = site.num_units
            cap = math.floor(min(self.max_sparsity, site.max_sparsity) * n + 1e-9)
            low = min(math.ceil(self.min_sparsity * n - 1e-9), cap)
            s = scores.get(name)
            if s is not None:
                cap = min(cap, n - int(torch.isposinf(s).sum()))
                low = max(low, int(torch.isneginf(s).sum()))
            lo.append(low / n)
            hi.append(max(cap, low) / n)
        return torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64)

    def reachable(self, sites: dict[str, Site]) -> float:
        w = element_weights(sites)
        return float((w * self.bounds({}, sites)[1]).sum() / w.sum())

    # ----------------------------------------------------------------- candidates
    def keep_vectors(self, scores: dict[str, Tensor], sites: dict[str, Site], sparsities: Tensor,
                     lo: Tensor, hi: Tensor) -> dict[str, Tensor]:
        """Per-site keep vectors pruning ``round(s_i * num_units)`` lowest-scored units (within the bounds)."""
        keep = {}
        for i, (name, site) in enumerate(sites.items()):
            n = site.num_units
            k = min(max(round(float(sparsities[i]) * n), round(float(lo[i]) * n)), round(float(hi[i]) * n))
            keep[name] = ~select_lowest([scores[name]], k)[0]
        return keep

    @torch.no_grad()
    def evaluate(self, scores: dict[str, Tensor], sites: dict[str, Site], sparsities: Tensor, lo: Tensor,
                 hi: Tensor) -> float:
        """The evaluator's score of the model with the candidate's masks applied; the weights are restored."""
        keep = self.keep_vectors(scores, sites, sparsities, lo, hi)
        saved: dict[int, tuple[Tensor, Tensor]] = {}  # a parameter of several sites (coupled) is saved once
        for name, site in sites.items():
            units = site.rounded(keep[name], scores[name]) if hasattr(site, "rounded") else keep[name]
            for pname, mask in site.unit_masks(units).items():
                param = site.member(pname).param
                saved.setdefault(id(param), (param, param.detach().clone()))
                param.mul_(mask.to(param.dtype))
        try:
            value = float(self._evaluator(self._model))
        finally:
            for param, data in saved.values():
                param.copy_(data)
        self._evaluations += 1
        return value

    def start(self, sites: dict[str, Site]) -> None:
        """Check the evaluator is there and reset the counters of one search."""
        if getattr(self, "_evaluator", None) is None:
            raise ConfigError(self.key, self.method, "an allocation with an evaluator",
                              "a searched allocation needs evaluator(model) -> float (higher is better): "
                              "pass build_pruner(..., evaluator=fn); the engine passes one from its val loader")
        self._evaluations, self._best_score = 0, None

    def finish(self, sites: dict[str, Site], sparsities: Tensor, score: float | None) -> None:
        self._chosen = {name: round(float(s), 4) for name, s in zip(sites, sparsities)}
        self._best_score = score
        log.info("%s: %d evaluations, best score %s, per-layer sparsity %s", self.method, self._evaluations,
                 None if score is None else f"{score:.4g}", self._chosen)


def element_weights(sites: dict[str, Site]) -> Tensor:
    """Targeted elements of each site (the weighting of the overall sparsity)."""
    return torch.tensor([s.num_units * s.unit_size for s in sites.values()], dtype=torch.float64)


def fit(s: Tensor, w: Tensor, lo: Tensor, hi: Tensor, target: float, key: str = "sparsity") -> Tensor:
    """Per-layer sparsities closest in shape to ``s`` whose weighted mean is ``target``, within ``[lo, hi]``.

    First scales ``s`` (``clip(l * s)``: a spared layer stays spared), and if that cannot reach the target,
    shifts it (``clip(s + t)``); both by bisection on a monotone function.

    Raises:
        ConfigError: ``target`` lies outside what the bounds allow.
    """
    total = float(w.sum())

    def mean(x: Tensor) -> float:
        return float((w * x).sum()) / total

    check_budget(w, lo, hi, target, key)
    s = s.clamp(lo, hi).to(torch.float64)
    if mean(torch.where(s > 0, hi, lo)) >= target:
        a, b = 0.0, 1.0
        while mean((s * b).clamp(lo, hi)) < target:
            b *= 2
        fn = lambda t: (s * t).clamp(lo, hi)  # noqa: E731
    else:
        a, b = -1.0, 1.0
        fn = lambda t: (s + t).clamp(lo, hi)  # noqa: E731
    for _ in range(60):
        mid = (a + b) / 2
        if mean(fn(mid)) < target:
            a = mid
        else:
            b = mid
    return fn(b)


def check_budget(w: Tensor, lo: Tensor, hi: Tensor, target: float, key: str = "sparsity") -> None:
    """Raise a one-line :class:`ConfigError` when no sparsities within ``[lo, hi]`` have weighted mean ``target``."""
    least, most = float((w * lo).sum() / w.sum()), float((w * hi).sum() / w.sum())
    if not least - 1e-9 <= target <= most + 1e-9:
        raise ConfigError(key, round(target, 6), f"a value in [{least:.4g}, {most:.4g}]",
                          "the per-layer bounds of the search cannot meet this budget")
