"""Weight-level targets: elements, N:M along the input dim, and NxM blocks."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from torch import Tensor, nn

from prunecli.sites import BlockLayout, ElementLayout, Member, Site

log = logging.getLogger(__name__)

WEIGHT_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _weight(name: str, module: nn.Module) -> nn.Parameter | str:
    weight = getattr(module, "weight", None)
    if not isinstance(weight, nn.Parameter):
        return f"{type(module).__name__} has no weight parameter"
    return weight


@dataclass(frozen=True)
class Unstructured:
    """Every weight element is pruned on its own (Han et al. 2015, https://arxiv.org/abs/1506.02626)."""

    module_types = WEIGHT_TYPES

    def sites(self, model: nn.Module, modules: dict[str, nn.Module]) -> tuple[list[Site], dict[str, str]]:
        sites, skipped = [], {}
        for name, module in modules.items():
            w = _weight(name, module)
            if isinstance(w, str):
                skipped[name] = w
                continue
            sites.append(Site(f"{name}.weight", (Member(f"{name}.weight", w, ElementLayout(tuple(w.shape))),),
                              module=name))
        return sites, skipped

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
    module_types = WEIGHT_TYPES

    def protect(self, scores: Tensor) -> Tensor:
        """Set the ``n`` largest scores of each group of ``m`` to +inf so they are never pruned."""
        groups = scores.reshape(-1, self.m)
        top = groups.topk(self.n, dim=1).indices
        return groups.scatter(1, top, float("inf")).reshape(-1)

    def sites(self, model: nn.Module, modules: dict[str, nn.Module]) -> tuple[list[Site], dict[str, str]]:
        sites, skipped = [], {}
        for name, module in modules.items():
            w = _weight(name, module)
            if isinstance(w, str):
                skipped[name] = w
                continue
            if w.shape[1] % self.m:
                skipped[name] = f"input dimension {w.shape[1]} is not a multiple of {self.m}"
                log.info("%s: %s: skipped by target %s", name, skipped[name], self)
                continue
            perm = None if w.dim() == 2 else (0, *range(2, w.dim()), 1)
            layout = ElementLayout(tuple(w.shape), perm)
            sites.append(Site(f"{name}.weight", (Member(f"{name}.weight", w, layout),),
                              max_sparsity=(self.m - self.n) / self.m, protect=self.protect, module=name))
        return sites, skipped

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
    module_types = WEIGHT_TYPES

    def sites(self, model: nn.Module, modules: dict[str, nn.Module]) -> tuple[list[Site], dict[str, str]]:
        sites, skipped = [], {}
        for name, module in modules.items():
            w = _weight(name, module)
            if isinstance(w, str):
                skipped[name] = w
                continue
            layout = BlockLayout(tuple(w.shape), self.rows, self.cols)
            sites.append(Site(f"{name}.weight", (Member(f"{name}.weight", w, layout),), module=name))
        return sites, skipped

    def __str__(self) -> str:
        return f"{self.rows}x{self.cols}"

