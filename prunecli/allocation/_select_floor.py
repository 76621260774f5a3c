"""The common case of gradual pruning, selected in a few passes: a floor of ``-inf`` plus a few more units.

The pruner marks units that are already pruned with ``-inf`` (pruned units stay pruned), so between two nearby
mask updates the budget is the ``-inf`` block plus a small number of the lowest finite scores. Bracketing the
threshold over all units, as :class:`~prunecli.allocation._select._Selector` does, would put the pivot at the
edge of that block and gather thousands of candidates. :func:`select_above_floor` instead takes the whole block
and finds the few extra units directly:

1. One ``isneginf`` pass per tensor gives the block; it becomes the returned mask.
2. A small sample of the other units (rejection sampling: random positions, ``-inf`` ones dropped) places an
   upper cut ``hi`` at the sample rank ``q*m + Z*sqrt(m*q*(1-q)) + Z`` above the needed quantile ``q``.
3. One comparison pass per tensor gathers every unit with ``-inf < s <= hi``; these are a prefix of the
   finite units in score order, so sorting them by (score, tensor, flat index) and taking the longest prefix
   that fits the remaining budget is exactly the reference answer.

It answers ``None`` when it does not apply (no ``-inf``, a budget inside the block, more than a small
fraction of the finite units, an unlucky sample, NaN); the caller then runs the general selector.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from prunecli._bits import count_true
from prunecli.allocation._select_ops import _compare, _Cut, _flat, _free_positions

MAX_FRACTION = 1 / 16  # beyond this share of the finite units the general selector is as fast
SAMPLE = 1 << 12
_Z = 5.0
_SLACK = 4096


def select_above_floor(tensors: Sequence[torch.Tensor], weights: Sequence[int], budget: int,
                       gen: torch.Generator) -> list[torch.Tensor] | None:
    """Masks selecting every ``-inf`` unit and then the lowest finite ones up to ``budget`` (the
    :func:`~prunecli.allocation._select.select_lowest` contract), or ``None`` if this shortcut does not apply."""
    flats = [_flat(t) for t in tensors]
    masks = [torch.isneginf(f) for f in flats]
    floor_counts = [count_true(m) for m in masks]
    if not any(floor_counts):
        return None
    rest = [f.numel() - c for f, c in zip(flats, floor_counts)]
    left = budget - sum(w * c for w, c in zip(weights, floor_counts))
    mass = sum(w * r for w, r in zip(weights, rest))
    if left < 0 or mass == 0 or left / mass > MAX_FRACTION:
        return None
    if left == 0:
        return [m.view(t.shape) for m, t in zip(masks, tensors)]
    cut = _upper_cut(flats, masks, weights, rest, mass, left / mass, gen)
    if cut is None:
        return None
    hi, frac = cut
    which, vals, tids, idxs = [], [], [], []
    for i, (flat, mask) in enumerate(zip(flats, masks)):
        if rest[i] == 0:
            continue
        taken = _compare(flat, hi, torch.empty_like(mask), below=False)
        torch.logical_or(taken, mask, out=taken)
        idx = _free_positions(taken, 4 * frac * rest[i] + _SLACK)
        if idx is None:
            return None
        which.append(i)
        vals.append(flat.index_select(0, idx).double().cpu())
        tids.append(torch.full((idx.numel(),), i, dtype=torch.int64))
        idxs.append(idx)
    values = torch.cat(vals)
    if torch.isnan(values).any():
        return None  # the general selector raises the error
    unit_weight = torch.tensor(weights, dtype=torch.int64)[torch.cat(tids)]
    if int(unit_weight.sum()) <= left:
        return None  # the cut fell below the threshold (unlucky sample) or the budget is too large
    order = torch.sort(values, stable=True).indices  # candidates come in (tensor, index) order already
    take = int(torch.searchsorted(torch.cumsum(unit_weight[order], 0), left, right=True))
    chosen = torch.zeros(values.numel(), dtype=torch.bool)
    chosen[order[:take]] = True
    for i, part, idx in zip(which, chosen.split([v.numel() for v in vals]), idxs):
        masks[i][idx[part.to(idx.device)]] = True
    return [m.view(t.shape) for m, t in zip(masks, tensors)]


def _upper_cut(flats: list[torch.Tensor], masks: list[torch.Tensor], weights: Sequence[int], rest: list[int],
               mass: int, q: float, gen: torch.Generator) -> tuple[_Cut, float] | None:
    """``(hi, expected fraction of the finite units at or below hi)``: ``hi`` lies above the ``q`` quantile of
    the finite units (weighted) with high probability. Each tensor's share of the sample is proportional to its
    finite mass."""
    sample = []
    for flat, mask, w, r in zip(flats, masks, weights, rest):
        share = round(SAMPLE * w * r / mass)
        if share == 0:
            continue
        draws = math.ceil(share * flat.numel() / r * 1.25) + 16
        pos = torch.randint(flat.numel(), (draws,), generator=gen).to(flat.device)
        kept = pos[~mask.index_select(0, pos)][:share]
        sample.append(flat.index_select(0, kept).double().cpu())
    values = torch.cat(sample) if sample else torch.empty(0, dtype=torch.float64)
    m = values.numel()
    rank = math.ceil(q * m + _Z * math.sqrt(m * q * (1 - q)) + _Z)
    if m == 0 or rank > m or torch.isnan(values).any():
        return None
    value = torch.kthvalue(values, rank).values.item()
    return None if value == math.inf else (_Cut(value, True), rank / m)
