"""Weight-level targets: elements, N:M along the input dim, and NxM blocks."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Callable

from torch import Tensor, nn

from prunecli.sites import BlockLayout, ElementLayout, Member, Site

log = logging.getLogger(__name__)

WEIGHT_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# Weight-level targets also prune nn.MultiheadAttention's input projection, a bare parameter of the module
# (``in_proj_weight`` [3E, E], or ``q/k/v_proj_weight`` when key and value sizes differ); its ``out_proj`` is an
# nn.Linear of its own.
ELEMENT_TYPES: tuple[type[nn.Module], ...] = (*WEIGHT_TYPES, nn.MultiheadAttention)
MHA_WEIGHTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")


def element_types() -> tuple[type[nn.Module], ...]:
    """:data:`ELEMENT_TYPES`, plus transformers' ``Conv1D`` (GPT-2's linear layers, weight ``[in, out]``) once
    transformers has defined it: a model holding one has imported it, and prunecli never imports transformers."""
    conv1d = getattr(sys.modules.get("transformers.pytorch_utils"), "Conv1D", None)
    return (*ELEMENT_TYPES, conv1d) if isinstance(conv1d, type) else ELEMENT_TYPES


def input_dim(module: nn.Module) -> int:
    """The weight dim that indexes a layer's inputs: 1, or 0 for transformers' ``Conv1D`` (``[in, out]``)."""
    return 0 if type(module).__name__ == "Conv1D" and hasattr(module, "nf") else 1

SiteOf = Callable[[str, str, nn.Parameter, int], "Site | str"]


def module_weights(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of the weight matrices a weight-level target prunes in ``module``."""
    names = MHA_WEIGHTS if isinstance(module, nn.MultiheadAttention) else ("weight",)
    return [(n, p) for n in names if isinstance(p := getattr(module, n, None), nn.Parameter)]


def weight_sites(modules: dict[str, nn.Module], site_of: SiteOf) -> tuple[list[Site], dict[str, str]]:
    """Sites of the modules' weights (:func:`module_weights`); ``site_of(module FQN, parameter FQN, weight, input
    dim)`` returns a Site or the reason to skip that weight."""
    sites, skipped = [], {}
    for name, module in modules.items():
        weights = module_weights(module)
        if not weights:
            skipped[name] = f"{type(module).__name__} has no weight parameter"
        for pname, weight in weights:
            site = site_of(name, f"{name}.{pname}", weight, input_dim(module))
            if isinstance(site, str):
                skipped[name] = site
            else:
                sites.append(site)
        if name in skipped:
            log.info("%s: skipped: %s", name, skipped[name])
    return sites, skipped


@dataclass(frozen=True)
class Unstructured:
    """Every weight element is pruned on its own (Han et al. 2015, https://arxiv.org/abs/1506.02626)."""

    @property
    def module_types(self) -> tuple[type[nn.Module], ...]:
        return element_types()

    def sites(self, model: nn.Module, modules: dict[str, nn.Module]) -> tuple[list[Site], dict[str, str]]:
        # Units run over [out, in] for every layer: a Conv1D weight [in, out] is read transposed, so that
        # per-row comparison groups (Wanda's) are output rows there too.
        return weight_sites(modules, lambda name, fqn, w, dim: Site(
            fqn, (Member(fqn, w, ElementLayout(tuple(w.shape), (1, 0) if dim == 0 else None)),), module=name))

    def __str__(self) -> str:
        return "unstructured"


@dataclass(frozen=True)
class NM:
    """Keep ``n`` of every ``m`` consecutive weights along the input dimension (``2:4`` = 50%).

    Conv weights ``[Cout, Cin, *k]`` are grouped over Cin (permuted to ``[Cout, *k, Cin]``), the layout sparse
    tensor cores need (Mishra et al., "Accelerating Sparse Deep Neural Networks", 2021,
    https://arxiv.org/abs/2104.08378). A layer whose input dimension is not a multiple of ``m`` is skipped.
    Below the pattern's full sparsity ``(m - n) / m``, each group loses at most ``m - n`` weights.
    """

    n: int
    m: int

    @property
    def module_types(self) -> tuple[type[nn.Module], ...]:
        return element_types()

    def protect(self, scores: Tensor) -> Tensor:
        """Set the ``n`` largest scores of each group of ``m`` to +inf so they are never pruned."""
        groups = scores.reshape(-1, self.m)
        top = groups.topk(self.n, dim=1).indices
        return groups.scatter(1, top, float("inf")).reshape(-1)

    def sites(self, model: nn.Module, modules: dict[str, nn.Module]) -> tuple[list[Site], dict[str, str]]:
        return weight_sites(modules, self._site)

    def _site(self, name: str, fqn: str, w: nn.Parameter, dim: int) -> Site | str:
        if w.shape[dim] % self.m:
            return f"input dimension {w.shape[dim]} is not a multiple of {self.m} (target {self})"
        perm = (1, 0) if dim == 0 else None if w.dim() == 2 else (0, *range(2, w.dim()), 1)
        layout = ElementLayout(tuple(w.shape), perm)
        return Site(fqn, (Member(fqn, w, layout),),
                    max_sparsity=(self.m - self.n) / self.m, protect=self.protect, module=name)

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"


@dataclass(frozen=True)
class Block:
    """``rows x cols`` blocks (rows along the output dim) of the weight viewed as ``[out, in * kernel]``.

    Shapes that don't divide are zero-padded at the edges; an edge block's score is scaled to a full block.
    Block sparsity as in Neural Compressor's ``NxM`` patterns (Gray et al., "GPU Kernels for Block-Sparse
    Weights", 2017).
    """

    rows: int
    cols: int

    @property
    def module_types(self) -> tuple[type[nn.Module], ...]:
        return element_types()

    def sites(self, model: nn.Module, modules: dict[str, nn.Module]) -> tuple[list[Site], dict[str, str]]:
        return weight_sites(modules, self._site)

    def _site(self, name: str, fqn: str, w: nn.Parameter, dim: int) -> Site:
        # A [in, out] weight (Conv1D) holds the same blocks transposed: rows x cols of [out, in] are cols x rows.
        rows, cols = (self.cols, self.rows) if dim == 0 else (self.rows, self.cols)
        return Site(fqn, (Member(fqn, w, BlockLayout(tuple(w.shape), rows, cols)),), module=name)

    def __str__(self) -> str:
        return f"{self.rows}x{self.cols}"

