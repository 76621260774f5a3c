"""The common case of gradual pruning, selected in a few passes: a floor of ``-inf`` plus a few more units.

The pruner marks units that are already pruned with ``-inf`` (pruned units stay pruned), so between two nearby
mask updates the budget is the ``-inf`` block plus a small number of the lowest finite scores. Bracketing the
threshold over all units, as :class:`~prunecli.allocation.select._Selector` does, would put the pivot at the
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

import numpy as np
import torch

from prunecli._bits import as_numpy, count_true, false_positions
from prunecli.allocation._select_ops import _Cut, _flat

MAX_FRACTION = 1 / 16  # beyond this share of the finite units the general selector is as fast
SAMPLE = 1 << 12
_Z = 5.0
_SLACK = 4096


def select_above_floor(tensors: Sequence[torch.Tensor], weights: Sequence[int], budget: int,
                       gen: torch.Generator) -> list[torch.Tensor] | None:
    """Masks selecting every ``-inf`` unit and then the lowest finite ones up to ``budget`` (the
    :func:`~prunecli.allocation.select.select_lowest` contract), or ``None`` if this shortcut does not apply.
    The passes over the tensors run on their device; the few sampled and gathered values go through numpy."""
    flats = [_flat(t) for t in tensors]
    masks = [_floor_mask(f) for f in flats]
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
    cut = _upper_cut(flats, weights, rest, mass, left / mass, gen)
    if cut is None:
        return None
    hi, frac = cut
    tids, idxs = [], []
    for i, (flat, mask) in enumerate(zip(flats, masks)):
        idx = _candidates(flat, mask, hi) if rest[i] else flat.new_empty(0, dtype=torch.int64)
        if idx.numel() > 4 * frac * rest[i] + _SLACK:
            return None
        tids.append(np.full(idx.numel(), i))
        idxs.append(idx)
    values = np.concatenate([_gather(f, i) for f, i in zip(flats, idxs)])
    if np.isnan(values).any():
        return None  # the general selector raises the error
    unit_weight = np.asarray(weights, dtype=np.int64)[np.concatenate(tids)]
    if int(unit_weight.sum()) <= left:
        return None  # the cut fell below the threshold (unlucky sample) or the budget is too large
    order = np.argsort(values, kind="stable")  # candidates come in (tensor, index) order already
    take = int(np.searchsorted(np.cumsum(unit_weight[order]), left, side="right"))
    chosen = np.zeros(values.size, dtype=bool)
    chosen[order[:take]] = True
    for mask, part, idx in zip(masks, np.split(chosen, np.cumsum([i.numel() for i in idxs])[:-1]), idxs):
        if mask.device.type == "cpu":
            mask.numpy()[idx.numpy()[part]] = True
        else:
            mask[idx[torch.from_numpy(part).to(idx.device)]] = True
    return [m.view(t.shape) for m, t in zip(masks, tensors)]


def _gather(flat: torch.Tensor, idx: torch.Tensor) -> np.ndarray:
    """``flat[idx]`` as float64 on the host (float64 holds every float16/bfloat16/float32 exactly)."""
    a = as_numpy(flat)
    if a is not None:
        return a[idx.numpy()].astype(np.float64)
    return flat[idx.to(flat.device)].detach().to("cpu", torch.float64).numpy()


def _floor_mask(flat: torch.Tensor) -> torch.Tensor:
    a = as_numpy(flat)
    return torch.isneginf(flat) if a is None else torch.from_numpy(np.equal(a, -np.inf))


def _candidates(flat: torch.Tensor, floor: torch.Tensor, hi: _Cut) -> torch.Tensor:
    """Ascending flat indices of the units neither in the ``-inf`` floor nor above ``hi`` (NaN included)."""
    value, inclusive = hi.for_dtype(flat.dtype)
    a = as_numpy(flat)
    if a is None:
        above = (torch.gt if inclusive else torch.ge)(flat, value)
        return false_positions(torch.logical_or(above, floor, out=above))
    above = np.greater(a, value) if inclusive else np.greater_equal(a, value)
    np.logical_or(above, floor.numpy(), out=above)
    return torch.from_numpy(np.flatnonzero(np.logical_not(above, out=above)))


def _upper_cut(flats: list[torch.Tensor], weights: Sequence[int], rest: list[int], mass: int, q: float,
               gen: torch.Generator) -> tuple[_Cut, float] | None:
    """``(hi, expected fraction of the finite units at or below hi)``: ``hi`` lies above the ``q`` quantile of
    the finite units (weighted) with high probability. Each tensor's share of the sample is proportional to its
    finite mass; ``-inf`` draws are dropped (rejection sampling)."""
    sample = []
    for flat, w, r in zip(flats, weights, rest):
        share = round(SAMPLE * w * r / mass)
        if share == 0:
            continue
        draws = math.ceil(share * flat.numel() / r * 1.25) + 16
        drawn = _gather(flat, torch.randint(flat.numel(), (draws,), generator=gen))
        sample.append(drawn[drawn != -np.inf][:share])
    values = np.concatenate(sample) if sample else np.empty(0)
    m = values.size
    rank = math.ceil(q * m + _Z * math.sqrt(m * q * (1 - q)) + _Z)
    if m == 0 or rank > m or np.isnan(values).any():
        return None
    value = float(np.partition(values, rank - 1)[rank - 1])
    return None if value == math.inf else (_Cut(value, True), rank / m)
