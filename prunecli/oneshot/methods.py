"""One-shot methods: what a block's linear layers are pruned with once their calibration inputs were seen.

A method composes the axes: a target's sites (:mod:`prunecli.targets`), a criterion (:mod:`prunecli.criteria`)
and an allocation, the comparison group (:mod:`prunecli.allocation`). ``observe_input(names, x)`` takes the
inputs of the layers (see :mod:`prunecli.oneshot.feeds`), ``prune(sites, sparsity, target)`` returns keep
masks keyed by parameter FQN and may update the weights in place, ``clear()`` drops the block's statistics.

- ``magnitude``: ``|W|``, per layer (the papers' baseline);
- ``wanda``: ``|W| * ||X_j||`` (:class:`~prunecli.criteria.Wanda`), per output row;
- ``sparsegpt``: OBS saliency with weight reconstruction (:mod:`prunecli.oneshot.sparsegpt`), per layer
  within each block of columns (the paper's adaptive mask selection) or per output row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

import torch
from torch import Tensor

from prunecli.allocation import Allocation, Local, PerRow, parse_allocation
from prunecli.criteria import Criterion, Magnitude, Wanda
from prunecli.errors import ConfigError
from prunecli.oneshot.sparsegpt import Hessians, column_selector, inverse_factor, prune_columns
from prunecli.sites import ElementLayout, Site
from prunecli.targets import NM, Target, Unstructured

METHODS = ("magnitude", "wanda", "sparsegpt")


class Method(Protocol):
    """Prunes the sites of one block from the statistics of their inputs."""

    needs_inputs: bool

    def observe_input(self, names: tuple[str, ...], x: Tensor) -> None: ...

    def prune(self, sites: dict[str, Site], sparsity: float, target: Target) -> dict[str, Tensor]: ...

    def clear(self) -> None: ...


@dataclass
class Ranked:
    """Score every unit with ``criterion``, select with ``allocation`` (the pruner's own mask computation)."""

    criterion: Criterion
    allocation: Allocation
    needs_inputs: bool = False

    def observe_input(self, names: tuple[str, ...], x: Tensor) -> None:
        self.criterion.observe_input(names, x)

    @torch.no_grad()
    def prune(self, sites: dict[str, Site], sparsity: float, target: Target) -> dict[str, Tensor]:
        scores = {}
        for name, site in sites.items():
            score = self.criterion.score(site).float()
            scores[name] = site.protect(score) if site.protect else score
        keep = self.allocation.allocate(scores, sites, sparsity)
        return {n: m for name, site in sites.items() for n, m in site.unit_masks(keep[name]).items()}

    def clear(self) -> None:
        self.criterion.after_update()


@dataclass
class SparseGPT:
    """SparseGPT on every site: ``Local`` allocation = the paper's per-layer comparison within each column
    block, ``PerRow`` = within each output row. ``percdamp``: dampening as a share of the mean Hessian
    diagonal; ``blocksize``: columns per lazy update."""

    allocation: Allocation = field(default_factory=Local)
    blocksize: int = 128
    percdamp: float = 0.01
    dtype: torch.dtype = torch.float32
    needs_inputs = True

    def __post_init__(self) -> None:
        if not isinstance(self.allocation, (Local, PerRow)):
            raise ConfigError("pruner.allocation", type(self.allocation).__name__, ["local", "per_row"],
                              "sparsegpt compares weights within a layer or within an output row")
        if not isinstance(self.blocksize, int) or self.blocksize < 1:
            raise ConfigError("pruner.blocksize", self.blocksize, "an integer >= 1")
        if not isinstance(self.percdamp, (int, float)) or not 0 <= self.percdamp < 1:
            raise ConfigError("pruner.percdamp", self.percdamp, "a float in [0, 1)")
        self.hessians = Hessians(self.dtype)

    def observe_input(self, names: tuple[str, ...], x: Tensor) -> None:
        self.hessians.observe_input(names, x)

    def prune(self, sites: dict[str, Site], sparsity: float, target: Target) -> dict[str, Tensor]:
        if not isinstance(target, (Unstructured, NM)):
            raise ConfigError("pruner.target", str(target), ["unstructured", "N:M (e.g. 2:4)"],
                              "sparsegpt prunes single weights")
        nm = (target.n, target.m) if isinstance(target, NM) else None
        if nm is not None and self.blocksize % nm[1]:
            raise ConfigError("pruner.blocksize", self.blocksize, f"a multiple of {nm[1]} (target {target})")
        group = "row" if isinstance(self.allocation, PerRow) else "layer"
        low, high = self.allocation.min_sparsity, self.allocation.max_sparsity
        factors: dict[int, tuple[Tensor, Tensor]] = {}
        masks = {}
        for name, site in sites.items():
            weight = site.weight
            if len(site.members) != 1 or weight.dim() != 2 or not isinstance(site.members[0].layout, ElementLayout):
                raise ConfigError("pruner.method", "sparsegpt", "linear layers", f"{name} is not a 2-D weight")
            key = self.hessians.shared(name)
            if key not in factors:  # q/k/v (and gate/up) read one input: one factorisation
                factors[key] = inverse_factor(self.hessians.get(name).to(weight.device), self.percdamp)
            select, columns = column_selector(min(max(sparsity, low), high, site.max_sparsity), group, nm)
            # a transformers Conv1D weight is [in, out] (units read as (1, 0)): solved as its [out, in] transpose
            transposed = site.members[0].layout.perm == (1, 0)
            new, keep = prune_columns(weight.T if transposed else weight, *factors[key], select, columns,
                                      self.blocksize)
            weight.data.copy_(new.T if transposed else new)
            masks[name] = keep.T.contiguous() if transposed else keep
        return masks

    def clear(self) -> None:
        self.hessians.clear()


def parse_method(spec: Any, allocation: Any = None) -> Method:
    """``magnitude`` / ``wanda`` / ``sparsegpt`` (or ``{name: sparsegpt, blocksize: .., percdamp: ..}``), or a
    method object, with an optional allocation (default: per layer; ``per_row`` for Wanda)."""
    if not isinstance(spec, (str, Mapping)):
        return spec
    options = dict(spec) if isinstance(spec, Mapping) else {"name": spec}
    name = str(options.pop("name", "")).strip().lower()
    if name not in METHODS:
        raise ConfigError("pruner.method", name, METHODS)
    default = "per_row" if name == "wanda" else "local"
    chosen = parse_allocation(allocation if allocation is not None else default)
    if name == "sparsegpt":
        for option, value in options.items():
            if option not in ("blocksize", "percdamp"):
                raise ConfigError(f"pruner.method.{option}", value, "blocksize, percdamp")
        return SparseGPT(chosen, **options)
    if options:
        raise ConfigError(f"pruner.method.{next(iter(options))}", next(iter(options.values())),
                          "no options for this method")
    if name == "wanda":
        return Ranked(Wanda(), chosen, needs_inputs=True)
    return Ranked(Magnitude(), chosen)
