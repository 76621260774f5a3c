"""Exact weighted k-smallest selection over many score tensors, without concatenating them.

Global pruning ranks the scores of all layers together and prunes the lowest. The textbook way,
``torch.cat`` of every score and then ``torch.kthvalue``, costs ~15 extra bytes per parameter (the copy, the
copy ``kthvalue`` makes, its int64 indices) and selects over far more values than it needs to.
:func:`select_lowest` gives the same answer with one comparison pass per tensor, after a small random sample
has bracketed the threshold (and, in the common case of gradual pruning, a block of ``-inf`` scores plus a few
more units, with the shortcut of :mod:`prunecli.allocation._select_floor`). This is the
sampling idea of Floyd & Rivest, "Expected time bounds for selection" (CACM 18(3), 1975), applied to a list of
tensors and to weighted units:

1. **Bracket.** Draw ``SAMPLE_SIZE`` scores at random, each unit with probability proportional to its weight.
   The pivot sits at quantile ``q = budget / total_weight``; the number of sample points below it is
   ``Binomial(m, q)``, so the sample order statistics at ranks ``q*m -/+ (Z*sqrt(m*q*(1-q)) + Z)`` give
   ``lo <= θ <= hi`` except with probability ~1e-6.
2. **Partition.** One pass per tensor writes ``s < lo`` straight into the returned mask, marks ``s > hi`` in a
   reused scratch buffer, and gathers the few candidates ``lo <= s <= hi`` (flat index and value). Candidates
   are found 8 at a time by viewing the bool buffer as int64 words. A tensor holding a large block of ties at
   ``lo`` or ``hi`` has those ties counted, not gathered.
3. **Verify.** The bracket holds the answer iff weighted ``#(s < lo) <= budget < weighted #(s <= hi)``. If
   not, or if far too many candidates came back, the bracket is narrowed (a fresh sample is drawn from inside
   it) and step 2 repeats.
4. **Finish.** θ is found among the candidates (``kthvalue``, or a weighted sort), the candidates below θ are
   set in the masks, and the ties at θ are filled in tensor order, then flat index order, while they fit.

The result equals the naive reference: sort all units stably by score (ties in tensor order, then flat index
order) and take the longest prefix whose total weight does not exceed the budget. θ is the score of the
first unit left out. Extra memory: two bool scratch buffers the size of the largest tensor plus the
candidates (~0.6% of all units at the default sample size): ~0.3 bytes per score on 24 x 2048 x 2048.
Many tiny tensors (channel scores) skip all this: their few values are sorted once (``_sort_prefix``).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Sequence

import torch

from prunecli._bits import count_true, true_positions
from prunecli.allocation._select_floor import select_above_floor
from prunecli.allocation._select_ops import (
    _check_nan,
    _compare,
    _count_equal,
    _Cut,
    _flat,
    _free_positions,
    _segment_counts,
)

SAMPLE_SIZE = 1 << 18  # most sample points per bracket; brackets below the sample size are gathered whole
_MIN_SAMPLE = 1 << 12
_Z = 5.0  # bracket half-width in binomial standard deviations
_MAX_ROUNDS = 32  # each round narrows the bracket ~50x; reaching this is a bug
_SEED = 0x5E1EC7  # a private generator keeps results reproducible and the global RNG untouched
_SORT_MEAN_SIZE = 2048  # many tiny tensors: one sort beats ~15 torch ops per tensor
_SLACK = 4096  # candidates a tensor may return beyond 4x its expected share before ties are split off


@dataclass
class _Part:
    """What one partition pass learnt about one tensor."""

    below: int  # units below the lower cut (already set in the mask)
    cand: int  # units between the cuts, gathered or not (NaN counts here)
    idx: torch.Tensor | None = None  # flat indices of gathered candidates, ascending; None if overflowed
    vals: torch.Tensor | None = None  # their scores
    blocks: list[tuple[float, int]] = field(default_factory=list)  # (value, count) of ties not gathered


def select_lowest(
    scores: Sequence[torch.Tensor], budget: int, weights: Sequence[int] | None = None
) -> list[torch.Tensor]:
    """Mark the globally lowest-scoring units of many tensors, up to a weighted budget.

    For each score tensor, returns a bool tensor of the same shape marking the units to prune (True = prune),
    choosing the globally lowest scores so that ``sum_i weights[i] * count_i`` equals ``budget`` exactly, or
    comes as close as possible without exceeding it when weights differ. Precisely: units are ordered by score,
    ties in tensor order and then flat (row-major) index order, and the longest prefix of that order whose
    weight is at most ``budget`` is selected. See the module docstring for the algorithm.

    Args:
        scores: Float tensors (float16, bfloat16, float32 or float64, may be mixed) of any shapes. Negative
            values and ``-inf`` are allowed; ``+inf`` marks units that must never be selected.
        budget: Total weight to select, ``0 <= budget <=`` the weighted count of units with finite scores.
        weights: ``weights[i]`` is how many elements one unit of ``scores[i]`` stands for (a channel of a
            conv layer stands for all its weights). Positive ints, one per tensor; default all 1.

    Returns:
        One contiguous bool tensor per score tensor, same shape and device.

    Raises:
        ValueError: A score is NaN, a weight is not positive, or the budget is negative or exceeds the
            weighted count of finite scores.
        TypeError: A score tensor is not floating point.
    """
    tensors, weights, budget = _validate(scores, budget, weights)
    total = sum(w * t.numel() for t, w in zip(tensors, weights))
    if budget == 0 or budget >= total:
        return _trivial(tensors, budget, total)
    if sum(t.numel() for t in tensors) <= min(SAMPLE_SIZE, _SORT_MEAN_SIZE * len(tensors)):
        return _sort_prefix(tensors, weights, budget)
    few = select_above_floor(tensors, weights, budget, torch.Generator().manual_seed(_SEED))
    return few if few is not None else _Selector(tensors, weights, budget).run()


def _validate(scores, budget, weights) -> tuple[list[torch.Tensor], list[int], int]:
    tensors = list(scores)
    for i, t in enumerate(tensors):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(f"scores[{i}] must be a floating-point tensor, got {getattr(t, 'dtype', type(t))}")
    weights = [1] * len(tensors) if weights is None else [operator.index(w) for w in weights]
    if len(weights) != len(tensors):
        raise ValueError(f"weights has {len(weights)} entries for {len(tensors)} score tensors")
    if any(w < 1 for w in weights):
        raise ValueError(f"weights must be positive ints, got {weights}")
    if isinstance(budget, bool) or operator.index(budget) < 0:
        raise ValueError(f"budget must be a non-negative int, got {budget!r}")
    return [t.detach() for t in tensors], weights, operator.index(budget)


def _trivial(tensors: list[torch.Tensor], budget: int, total: int) -> list[torch.Tensor]:
    """Budget 0 selects nothing; budget == total selects everything if every score is finite or -inf."""
    for t in tensors:
        top = t.max() if t.numel() else None  # max propagates NaN
        if top is not None and torch.isnan(top):
            raise ValueError("scores contain NaN")
        if budget and top is not None and top == math.inf:
            budget = total + 1  # an +inf unit would have to be selected
    if budget > total:
        raise ValueError(f"budget {budget} exceeds the weighted count of finite scores")
    return [torch.full_like(t, bool(budget), dtype=torch.bool, memory_format=torch.contiguous_format)
            for t in tensors]


def _sort_prefix(tensors: list[torch.Tensor], weights: list[int], budget: int) -> list[torch.Tensor]:
    """The definition itself, for many small tensors (at most ``SAMPLE_SIZE`` units in all): one stable sort."""
    sizes = [t.numel() for t in tensors]
    values = torch.cat([_flat(t).to("cpu", torch.float64) for t in tensors])
    _check_nan(values)
    unit_weight = torch.repeat_interleave(torch.tensor(weights), torch.tensor(sizes))
    values, order = torch.sort(values, stable=True)
    take = int(torch.searchsorted(torch.cumsum(unit_weight[order], 0), budget, right=True))
    if take and values[take - 1] == math.inf:
        raise ValueError(f"budget {budget} exceeds the weighted count of finite scores")
    chosen = torch.zeros(len(values), dtype=torch.bool)
    chosen[order[:take]] = True
    return [part.view(t.shape).to(t.device, copy=True) for part, t in zip(chosen.split(sizes), tensors)]


class _Selector:
    """One call of :func:`select_lowest`: the bracket search state and the masks being written."""

    def __init__(self, tensors: list[torch.Tensor], weights: list[int], budget: int):
        self.tensors, self.weights, self.budget = tensors, weights, budget
        self.sizes = [t.numel() for t in tensors]
        self.masks = [torch.empty(n, dtype=torch.bool, device=t.device) for t, n in zip(tensors, self.sizes)]
        self.gen = torch.Generator().manual_seed(_SEED)
        # The sample need not grow with n: ~n^(2/3) points keep the bracket (and the candidates) small while
        # the sample's own sort stays cheap; a fixed 2^18 sample would cost half the work on 0.5M units.
        total = sum(self.sizes)
        self.sample_size = min(SAMPLE_SIZE, max(_MIN_SAMPLE, int(8 * total ** (2 / 3))))
        self._scratch: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def scratch(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Two bool buffers for tensor ``i``, reused across tensors (sized for the largest)."""
        dev, n = self.tensors[i].device, self.sizes[i]
        if dev not in self._scratch:
            big = max(s for t, s in zip(self.tensors, self.sizes) if t.device == dev)
            self._scratch[dev] = (torch.empty(big, dtype=torch.bool, device=dev),
                                  torch.empty(big, dtype=torch.bool, device=dev))
        a, b = self._scratch[dev]
        return a[:n], b[:n]

    def wsum(self, counts: Sequence[int]) -> int:
        return sum(w * c for w, c in zip(self.weights, counts))

    def run(self) -> list[torch.Tensor]:
        k = self.budget
        lower = _Cut(-math.inf, False, [0] * len(self.sizes))
        upper = _Cut(math.inf, True, list(self.sizes))  # NaN is booked below +inf until it is found
        stalled = False  # the last round overflowed without narrowing: gather the next interior whole
        for _ in range(_MAX_ROUNDS):
            inside = [hi - lo for hi, lo in zip(upper.counts, lower.counts)]
            if sum(inside) <= self.sample_size:
                lo, hi, limits = lower, upper, [math.inf] * len(inside)
            else:
                lo, hi, frac = self.bracket(self.sample(lower, upper, inside), lower, upper)
                limits = [4 * frac * c + _SLACK for c in inside]
            parts = [self.partition(i, lo, hi, limit, math.inf if stalled else limit)
                     for i, limit in enumerate(limits)]
            lo.counts = [p.below for p in parts]
            hi.counts = [p.below + p.cand for p in parts]
            if self.wsum(lo.counts) > k:  # θ < lo: unlucky sample
                upper = lo
            elif self.wsum(hi.counts) <= k:  # θ > hi: unlucky sample
                lower = hi
            elif all(p.vals is not None for p in parts):
                return self.finish(parts)
            else:  # too many candidates: narrow to this bracket and sample inside it
                stalled = (lo.key, hi.key) == (lower.key, upper.key)
                lower, upper = lo, hi
        raise RuntimeError("select_lowest did not converge")  # pragma: no cover

    def sample(self, lower: _Cut, upper: _Cut, inside: list[int]) -> torch.Tensor:
        """About ``sample_size`` scores drawn between the cuts, each unit with probability proportional to its
        weight. Per-tensor counts are Poisson (one vectorised draw); given their total the sample is iid."""
        mass = torch.tensor([w * c for w, c in zip(self.weights, inside)], dtype=torch.float64)
        per = torch.poisson(mass * (self.sample_size / mass.sum()), generator=self.gen).long().tolist()
        whole = all(c == 0 for c in lower.counts) and upper.counts == self.sizes
        vals = []
        for i, m in enumerate(per):
            if m == 0:
                continue
            flat = _flat(self.tensors[i])
            if whole:
                pos = torch.randint(self.sizes[i], (m,), generator=self.gen)
            else:  # rare path: only after an unlucky bracket
                taken, other = self.scratch(i)
                _compare(flat, lower, taken, below=True)
                torch.logical_or(taken, _compare(flat, upper, other, below=False), out=taken)
                free = _free_positions(taken, math.inf)
                pos = free[torch.randint(free.numel(), (m,), generator=self.gen).to(free.device)]
            vals.append(flat.index_select(0, pos.to(flat.device)).to("cpu", torch.float64))
        sample = torch.cat(vals) if vals else torch.empty(0, dtype=torch.float64)
        _check_nan(sample)
        return sample

    def bracket(self, sample: torch.Tensor, lower: _Cut, upper: _Cut) -> tuple[_Cut, _Cut, float]:
        """Cuts ``lo <= θ <= hi`` from sample order statistics, and the expected fraction between them."""
        k_in = self.budget - self.wsum(lower.counts)
        q = k_in / (self.wsum(upper.counts) - self.wsum(lower.counts))
        m = sample.numel()
        if m == 0:  # only possible with a tiny SAMPLE_SIZE: take the whole bracket
            return _Cut(lower.value, lower.inclusive), _Cut(upper.value, upper.inclusive), 1.0
        half = _Z * math.sqrt(m * q * (1 - q)) + _Z
        r_lo, r_hi = math.floor(q * m - half), max(math.ceil(q * m + half), 1)
        lo = lower if r_lo < 1 else _Cut(torch.kthvalue(sample, r_lo).values.item(), False)
        hi = upper if r_hi > m else _Cut(torch.kthvalue(sample, r_hi).values.item(), True)
        lo, hi = _Cut(lo.value, lo.inclusive), _Cut(hi.value, hi.inclusive)  # fresh counts
        return lo, hi, (min(r_hi, m) - max(r_lo, 1) + 1) / m

    def partition(self, i: int, lo: _Cut, hi: _Cut, limit: float, interior_limit: float) -> _Part:
        """Write ``below lo`` into mask ``i`` and gather the units between the cuts (see module docstring).

        Over ``limit`` candidates, ties at the cut values are counted instead, and the rest gathered if there
        are at most ``interior_limit``; otherwise only counts come back.
        """
        n, flat, below = self.sizes[i], _flat(self.tensors[i]), self.masks[i]
        if n == 0:
            return _Part(0, 0, torch.empty(0, dtype=torch.int32), flat)
        taken, eq = self.scratch(i)
        _compare(flat, lo, below, below=True)
        _compare(flat, hi, taken, below=False)
        nb = count_true(below)
        torch.logical_or(taken, below, out=taken)
        if lo.value == hi.value and not lo.inclusive and hi.inclusive:  # lo <= s <= lo: ties, counted
            cand = n - count_true(taken)
            if _count_equal(flat, lo.value, eq) != cand:
                raise ValueError("scores contain NaN")
            return _Part(nb, cand, torch.empty(0, dtype=torch.int32), flat[:0], [(lo.value, cand)] if cand else [])
        idx = _free_positions(taken, limit)
        if idx is not None:
            return self._gathered(flat, nb, idx, [])
        cand = n - count_true(taken)
        blocks = []  # too many: count the ties at the cut values, gather the rest
        for cut, has_ties in ((lo, not lo.inclusive), (hi, hi.inclusive)):
            if has_ties and (c := _count_equal(flat, cut.value, eq)):
                blocks.append((cut.value, c))
                torch.logical_or(taken, eq, out=taken)
        idx = _free_positions(taken, interior_limit)
        if idx is None:
            return _Part(nb, cand)
        return self._gathered(flat, nb, idx, blocks)

    @staticmethod
    def _gathered(flat: torch.Tensor, nb: int, idx: torch.Tensor, blocks: list) -> _Part:
        vals = flat.index_select(0, idx)
        _check_nan(vals)
        small = idx.to(torch.int32) if flat.numel() < 2**31 else idx  # halves candidate memory
        return _Part(nb, idx.numel() + sum(c for _, c in blocks), small, vals, blocks)

    def threshold(self, parts: list[_Part]) -> float:
        """θ: the score of the first unit that does not fit, found among the candidates."""
        k_in = self.budget - self.wsum([p.below for p in parts])
        same_dtype = len({p.vals.dtype for p in parts}) == 1
        if same_dtype and len(set(self.weights)) == 1 and not any(p.blocks for p in parts):
            vals = torch.cat([p.vals for p in parts])
            return torch.kthvalue(vals, k_in // self.weights[0] + 1).values.item()
        vals = torch.cat([p.vals.double() for p in parts]
                         + [torch.tensor([v for p in parts for v, _ in p.blocks], dtype=torch.float64)])
        wts = torch.cat([torch.full((p.vals.numel(),), w, dtype=torch.int64) for p, w in zip(parts, self.weights)]
                        + [torch.tensor([w * c for p, w in zip(parts, self.weights) for _, c in p.blocks],
                                        dtype=torch.int64)])
        vals, order = torch.sort(vals.cpu())
        pos = torch.searchsorted(torch.cumsum(wts[order], 0), k_in, right=True)
        return vals[pos].item()

    def finish(self, parts: list[_Part]) -> list[torch.Tensor]:
        """Set the candidates below θ, then fill the ties at θ in tensor order while they fit the budget.

        The candidates of all tensors are compared with θ in one batch (``cat`` promotes mixed dtypes to one
        that holds them all exactly), so each tensor costs a single ``index_put`` here.
        """
        theta = self.threshold(parts)
        vals, idx = torch.cat([p.vals for p in parts]), torch.cat([p.idx for p in parts])
        ends = torch.tensor([p.vals.numel() for p in parts]).cumsum(0)
        below, at = vals < theta, vals == theta
        below_idx = idx[below].split(_segment_counts(below, ends))
        at_idx = idx[at].split(_segment_counts(at, ends))
        left = self.budget
        ties: list[torch.Tensor | int] = []
        for i, (p, w) in enumerate(zip(parts, self.weights)):
            self.masks[i][below_idx[i]] = True
            left -= w * (p.below + below_idx[i].numel())
            ties.append(at_idx[i])
            for value, count in p.blocks:
                if value < theta:
                    self.masks[i] |= torch.eq(_flat(self.tensors[i]), value)
                    left -= w * count
                elif value == theta:
                    ties[i] = count  # the ties were counted, not gathered
        assert left >= 0, "selected more than the budget"
        if theta == math.inf and left:
            raise ValueError(f"budget {self.budget} exceeds the weighted count of finite scores")
        for i, (tie, w) in enumerate(zip(ties, self.weights)):
            have = tie if isinstance(tie, int) else tie.numel()
            take = min(have, left // w)
            self.fill_ties(i, tie, take, theta)
            left -= take * w
            if take < have:  # the first unit that does not fit ends the prefix
                break
        return [m.view(t.shape) for m, t in zip(self.masks, self.tensors)]

    def fill_ties(self, i: int, tie: torch.Tensor | int, take: int, theta: float) -> None:
        if take == 0:
            return
        mask = self.masks[i]
        if not isinstance(tie, int):
            mask[tie[:take]] = True
            return
        equal = torch.eq(_flat(self.tensors[i]), theta)
        if take == tie:
            mask |= equal
        else:
            mask[true_positions(equal)[:take]] = True
