"""SparseGPT: prune a linear layer and update its remaining weights to reconstruct its outputs.

Frantar & Alistarh, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot", 2023,
https://arxiv.org/abs/2301.00774 (Algorithm 1). For a weight ``W [rows, cols]`` and calibration inputs ``X``
(``[tokens, cols]``), each row's error ``||X w^T - X w'^T||^2`` is a quadratic with Hessian ``H = 2 X^T X``.
Columns are visited left to right; when column ``i`` is fixed (to 0 where pruned), the Optimal Brain Surgeon
update moves the not yet visited columns ``j > i`` to their optimum given the fixed ones:

    err = (w_i - q_i) / U_ii,     w_j -= err * U_ij      (j > i)

where ``U`` is the upper Cholesky factor of ``H^-1`` (``H^-1 = U^T U``): row ``i`` of ``U`` holds, scaled, the
inverse Hessian of the columns ``>= i`` that the sequence of OBS steps needs, so one factorisation serves every
row. Updates are applied lazily: inside a block of ``blocksize`` columns at once, to the columns right of the
block as one matrix product.

The mask is chosen by the OBS saliency ``w^2 / U_ii^2`` of the current (already updated) weights, in groups of
columns: a whole block of ``blocksize`` columns (the paper's adaptive mask selection) for unstructured sparsity,
``m`` columns at a time for N:M. Within a column group the comparison is over the whole layer
(``group="layer"``, the paper's) or within each output row (``group="row"``, Wanda's comparison group).

Only weights right of a pruned column can compensate for it: for a fixed mask the result is the optimum of
that left-to-right sequence, which equals the global least-squares optimum when every row's pruned columns
come before its kept ones (see ``tests/oneshot/test_sparsegpt.py``).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

__all__ = ["Hessians", "inverse_factor", "column_selector", "prune_columns"]

Selector = Callable[[Tensor, int], Tensor]  # (saliency [rows, c], first column) -> prune mask [rows, c]


class Hessians:
    """``H = 2 X^T X / tokens`` per input, accumulated over calibration batches.

    Layers that read the same input tensor (q/k/v, gate/up) share one accumulator: ``observe_input(names, x)``
    is called once per distinct input with every parameter name that reads it.
    """

    def __init__(self, dtype: torch.dtype = torch.float32):
        self.dtype = dtype
        self._sums: dict[str, Tensor] = {}
        self._counts: dict[str, list[int]] = {}

    @torch.no_grad()
    def observe_input(self, names: tuple[str, ...], x: Tensor) -> None:
        """Add ``x`` (``[..., cols]``: every leading position is one token) to the Hessian of ``names``."""
        x2 = x.detach().reshape(-1, x.shape[-1]).to(self.dtype)
        total = self._sums.get(names[0])
        if total is None:
            total, count = x2.new_zeros(x2.shape[1], x2.shape[1]), [0]
            for name in names:
                self._sums[name], self._counts[name] = total, count
        total.addmm_(x2.T, x2)
        self._counts[names[0]][0] += x2.shape[0]

    def __contains__(self, name: str) -> bool:
        return name in self._sums

    def names(self) -> list[str]:
        """The parameter names with a Hessian."""
        return list(self._sums)

    def get(self, name: str) -> Tensor:
        """The Hessian ``2 X^T X / tokens`` of ``name``'s inputs (a new tensor)."""
        return self._sums[name] * (2.0 / self._counts[name][0])

    def shared(self, name: str) -> int:
        """An id equal for names that share one accumulator (so their factorisations can be shared)."""
        return id(self._sums[name])

    def clear(self) -> None:
        self._sums.clear()
        self._counts.clear()


def inverse_factor(hessian: Tensor, percdamp: float = 0.01) -> tuple[Tensor, Tensor]:
    """``(U, dead)``: the upper Cholesky factor of ``(H + λI)^-1`` with ``λ = percdamp * mean(diag H)``, and the
    columns whose input was always zero (``diag H == 0``: their weights are irrelevant and set to 0).

    Raises:
        torch.linalg.LinAlgError: ``H + λI`` is not positive definite (no dampening on rank-deficient inputs).
    """
    h = hessian.clone()
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1.0
    if percdamp:
        torch.diagonal(h).add_(percdamp * torch.diagonal(h).mean())
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(h))
    return torch.linalg.cholesky(inverse, upper=True), dead


def column_selector(sparsity: float, group: str = "layer", nm: tuple[int, int] | None = None,
                    mask: Tensor | None = None) -> tuple[Selector, int | None]:
    """``(select, columns)``: how the prune mask of each column group is chosen, and the group's width
    (``None``: one block; ``m`` for N:M).

    ``select(saliency, first)`` returns the prune mask of the columns ``first ..`` of the saliency given. A fixed
    ``mask`` (bool, True = kept, the weight's shape) is used as is instead of the saliency.
    """
    if mask is not None:
        return (lambda saliency, first: ~mask[:, first:first + saliency.shape[1]]), None
    if group not in ("layer", "row"):
        raise ValueError(f"group must be 'layer' or 'row', got {group!r}")

    def select(saliency: Tensor, first: int) -> Tensor:
        if nm is not None:
            groups = saliency.reshape(saliency.shape[0], -1, nm[1])
            top = groups.topk(nm[0], dim=2).indices
            saliency = groups.scatter(2, top, float("inf")).reshape(saliency.shape)
        if group == "row":
            k = round(sparsity * saliency.shape[1])
            prune = torch.zeros_like(saliency, dtype=torch.bool)
            return prune.scatter_(1, saliency.topk(k, dim=1, largest=False).indices, True) if k else prune
        k = round(sparsity * saliency.numel())
        flat = saliency.reshape(-1)
        if not k:
            return torch.zeros_like(saliency, dtype=torch.bool)
        # the k lowest by their k-th value (4x faster than topk on a 128 x 2048 block), ties at it filled in order
        threshold = flat.kthvalue(k).values
        prune = flat < threshold
        short = k - int(prune.sum())
        if short:
            prune[(flat == threshold).nonzero().reshape(-1)[:short]] = True
        return prune.reshape(saliency.shape)

    return select, (nm[1] if nm is not None else None)


@torch.no_grad()
def prune_columns(weight: Tensor, factor: Tensor, dead: Tensor, select: Selector, columns: int | None = None,
              blocksize: int = 128) -> tuple[Tensor, Tensor]:
    """Prune ``weight`` ``[rows, cols]`` column by column with OBS updates; returns ``(new weight, keep mask)``.

    Args:
        weight: The layer's weight (not modified); computed in ``factor``'s dtype, returned in its own.
        factor, dead: From :func:`inverse_factor` of the layer's input Hessian.
        select: From :func:`column_selector`: the prune mask of a column group from its saliency.
        columns: Width of a mask group (``None``: one block, the paper's adaptive mask selection).
        blocksize: Columns updated together before the lazy update of the rest (a multiple of ``columns``).
    """
    # Work on the transpose: a column of the weight is a contiguous row, and each OBS step is one rank-1 update.
    wt = weight.detach().to(factor.dtype).T.clone()
    wt[dead] = 0
    cols, rows = wt.shape
    keep = torch.ones(cols, rows, dtype=torch.bool, device=wt.device)
    width = columns or blocksize
    for start in range(0, cols, blocksize):
        end = min(start + blocksize, cols)
        block, u = wt[start:end], factor[start:end, start:end]
        errors = torch.zeros_like(block)
        diag = torch.diagonal(u)
        scale = torch.empty_like(block)  # pruned / U_ii: the error of column i is its weight times this
        for i in range(end - start):
            if i % width == 0:
                group = slice(i, min(i + width, end - start))
                saliency = block[group].square() / diag[group, None].square()
                prune = select(saliency.T, start + group.start).T
                keep[start + group.start:start + group.stop] = ~prune
                torch.div(prune, diag[group, None], out=scale[group])
            # two kernel launches per column: the Python loop is the cost of small layers
            torch.mul(block[i], scale[i], out=errors[i])
            block[i + 1:].addr_(u[i, i + 1:], errors[i], alpha=-1)
        block.mul_(keep[start:end])  # column i is not read after step i: its pruned weights are zeroed here
        wt[end:].sub_(factor[start:end, end:].T @ errors)
    return wt.T.to(weight.dtype), keep.T
